//! The monitor's async APIs and the events channel's `recv`, cancelled
//! after every number of polls (as in `cancellation.rs`): `stop` and
//! `probe` leave no task nor check future alive, an HTTP check cut by its
//! timeout closes its connection, and `recv` loses no event.

use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use crate::common::{poll_once, poll_then_drop};
use fusebox_std::events::{Component, Event};
use fusebox_std::Registry;

const MS: Duration = Duration::from_millis(1);

/// The most polls any harness below needs (each completes well before).
const MAX_POLLS: u32 = 400;

/// Counts the futures of a check (or a recovery action) made and dropped.
#[derive(Default)]
struct Lives {
    made: AtomicU32,
    dropped: AtomicU32,
}

struct Life(Arc<Lives>);

impl Life {
    fn new(lives: &Arc<Lives>) -> Self {
        lives.made.fetch_add(1, SeqCst);
        Self(Arc::clone(lives))
    }
}

impl Drop for Life {
    fn drop(&mut self) {
        self.0.dropped.fetch_add(1, SeqCst);
    }
}

/// A monitor whose check hangs until its 5 ms timeout every 10 ms, and
/// whose recovery action hangs until its own 3 ms timeout: `stop` dropped
/// after every number of polls still ends every task (the runtime's alive
/// tasks are back to what they were, every check and action future made
/// was dropped, its subscriptions end once drained), and so does a
/// `probe` of the check.
#[tokio::test(start_paused = true)]
async fn monitor_stop_and_probe_dropped_after_any_poll_leave_nothing_running() {
    use fusebox_std::monitor::{
        probe, CheckSpec, FnCheck, HealthMonitor, RecoveryAction, RecoveryRule,
    };
    let metrics = tokio::runtime::Handle::current().metrics();
    let alive = metrics.num_alive_tasks();
    for polls in 0..MAX_POLLS {
        let lives = Arc::new(Lives::default());
        let hung = |lives: &Arc<Lives>| {
            let lives = Arc::clone(lives);
            move || {
                let life = Life::new(&lives);
                async move {
                    let _life = life;
                    std::future::pending::<Result<Option<String>, fusebox_std::monitor::CheckError>>()
                        .await
                }
            }
        };
        let check = FnCheck::new(hung(&lives));
        let action_lives = Arc::clone(&lives);
        let action = RecoveryAction::new("restart", move || {
            let life = Life::new(&action_lives);
            async move {
                let _life = life;
                std::future::pending::<Result<(), String>>().await
            }
        });
        let monitor = HealthMonitor::new()
            .check(
                CheckSpec::new("hung", check)
                    .interval(10 * MS)
                    .timeout(5 * MS)
                    .recovery(RecoveryRule::new(1, action).timeout(3 * MS)),
            )
            .spawn();
        // Let it run a few checks and a recovery attempt first.
        let mut events = monitor.subscribe();
        for _ in 0..27 {
            tokio::time::advance(MS).await;
        }
        let out = poll_then_drop(monitor.stop(), polls).await;
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
        let at = format!("{polls} polls: {out:?}");
        assert_eq!(metrics.num_alive_tasks(), alive, "{at}");
        let (made, dropped) = (lives.made.load(SeqCst), lives.dropped.load(SeqCst));
        assert!(made >= 3, "{at}: {made} made");
        assert_eq!(dropped, made, "{at}");
        // The subscription ends once drained: nothing sends any more.
        let mut sent = 0;
        while events.try_recv().is_some() {
            sent += 1;
        }
        assert!(sent > 0, "{at}: the check's health changed");
        let end = poll_once(std::pin::pin!(events.recv()));
        assert!(matches!(end, Poll::Ready(None)), "{at}: {end:?}");

        let probed = poll_then_drop(probe(&FnCheck::new(hung(&lives)), 5 * MS), polls).await;
        let at = format!("probe, {polls} polls: {probed:?}");
        let (made, dropped) = (lives.made.load(SeqCst), lives.dropped.load(SeqCst));
        assert_eq!(dropped, made, "{at}");
        if out.is_some() && probed.is_some() {
            break;
        }
    }
}

/// A subscription's `recv` dropped after every number of polls, an event
/// published between two of them: the event is not lost (cancel-safe, as
/// documented), whether the dropped `recv` had seen it or not.
#[tokio::test(start_paused = true)]
async fn an_events_recv_dropped_after_any_poll_loses_nothing() {
    let registry = Registry::new();
    let mut sub = registry.events().subscribe();
    for polls in 0..4u32 {
        let event = Event::Recovered {
            name: "db".into(),
            component: Component::Breaker,
            at: fusebox::Instant::from_micros(u64::from(polls)),
        };
        let out = {
            let mut recv = std::pin::pin!(sub.recv());
            let mut out = None;
            for poll in 0..polls {
                if poll == 1 {
                    registry.events().publish(event.clone());
                }
                if let Poll::Ready(got) = poll_once(recv.as_mut()) {
                    out = Some(got);
                    break;
                }
            }
            out
        };
        let at = format!("{polls} polls: {out:?}");
        if let Some(got) = out {
            assert_eq!(got, Some(event), "{at}");
        } else {
            if polls <= 1 {
                registry.events().publish(event.clone());
            }
            assert_eq!(sub.try_recv(), Some(event), "{at}");
        }
        assert_eq!(sub.try_recv(), None, "{at}");
        assert_eq!(sub.missed(), 0, "{at}");
    }
}

/// An HTTP check of a server that accepts, reads the request and never
/// answers, cut by its timeout: the client's connection is closed (the
/// server reads its end) and no connection task outlives the run.
#[tokio::test]
async fn an_http_check_cut_by_its_timeout_closes_its_connection() {
    use fusebox_std::monitor::{probe, ErrorKind, HttpCheck};
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let metrics = tokio::runtime::Handle::current().metrics();
    let alive = metrics.num_alive_tasks();
    let check = HttpCheck::new(&format!("http://{addr}/hang")).unwrap();
    let run = probe(&check, Duration::from_millis(50));
    let (result, accepted) = tokio::join!(run, listener.accept());
    assert_eq!(result.error.map(|e| e.kind()), Some(ErrorKind::Timeout));
    let (mut conn, _) = accepted.unwrap();
    let mut buf = vec![0; 4096];
    let closed = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the client kept its connection open");
    tokio::time::timeout(Duration::from_secs(2), async {
        while metrics.num_alive_tasks() != alive {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("a connection task outlived the run");
}
