//! A Redis busy running someone else's endless script: past its
//! `busy-reply-threshold` it answers every other command `BUSY` (an error
//! reply, at once) until `SCRIPT KILL`. A limiter then degrades (here
//! `FailClosed`: no admission while Redis cannot decide) and a fleet
//! breaker keeps its trip local; once the script is killed both recover
//! by themselves, the trip is published, and no more than the quota was
//! admitted over the whole run. Sound when written; kept as coverage (no
//! test had a busy server: the stall tests stop it with SIGSTOP, which
//! answers nothing, not an error).

use std::sync::Arc;
use std::time::Duration;

use crate::common::fleet::{instance_over, sync_ok, trip, until_state};
use crate::common::redis_server::{cli, RedisServer};
use fusebox::breaker::{CircuitBreaker, Config, State};
use fusebox::bucket::Quota;
use fusebox_std::backend::{Degrade, RedisBackend, RedisLimiter, Rules, Source};
use tokio::time::Instant;

/// Polls `f` every 10 ms until it holds, failing after 5 s.
async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{what}: not within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn core() -> Arc<CircuitBreaker> {
    Arc::new(CircuitBreaker::new(
        Config::builder()
            .consecutive_failures(2)
            .open_for(Duration::from_secs(30).into())
            .build()
            .unwrap(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_redis_degrades_both_and_both_recover_after_script_kill() {
    let server = RedisServer::start_with(&["--busy-reply-threshold", "50"]);
    let url = server.url();
    let backend = RedisBackend::connect(server.outage_config(Duration::from_millis(500)))
        .await
        .unwrap();
    let rules = Rules::single("per_hour", Quota::per_hour(5).unwrap()).unwrap();
    let limiter = RedisLimiter::builder("busy", rules, backend)
        .degrade(Degrade::FailClosed)
        .probe_backoff(Duration::from_millis(20), Duration::from_millis(100))
        .build()
        .unwrap();
    let sync = Duration::from_millis(50);
    let a = instance_over(&url, "busy", core(), sync).await;
    let b = instance_over(&url, "busy", core(), sync).await;
    let mut admitted = 0;
    for _ in 0..2 {
        let d = limiter.try_acquire("k").await.unwrap();
        assert_eq!((d.allowed, d.source), (true, Source::Redis));
        admitted += 1;
    }
    sync_ok(&a).await;

    let port = server.port();
    let hog = std::thread::spawn(move || {
        cli(
            port,
            &["eval", "local i = 0 while true do i = i + 1 end", "0"],
        )
    });
    // Busy once the threshold passed: a request fails, the limiter refuses.
    until("BUSY", || cli(port, &["ping"]).contains("BUSY")).await;
    for _ in 0..20 {
        let d = limiter.try_acquire("k").await.unwrap();
        assert_eq!((d.allowed, d.source), (false, Source::FailClosed), "{d:?}");
    }
    assert!(limiter.is_degraded());
    assert!(limiter.metrics().faults >= 1);
    trip(&a).await;
    until("the tripping instance degraded", || a.is_degraded()).await;
    assert_eq!(b.state(), State::Closed);

    let killed = cli(port, &["script", "kill"]);
    assert!(killed.contains("OK"), "{killed}");
    hog.join().unwrap();
    // Both recover with no request: the limiter by its background probe,
    // the breakers by their reconciliation.
    until("the limiter recovered", || !limiter.is_degraded()).await;
    until_state(&b, State::Open, Duration::from_secs(5)).await;
    until("the tripping instance recovered", || !a.is_degraded()).await;
    // The quota was only ever spent by Redis: 3 more at most.
    for _ in 0..10 {
        let d = limiter.try_acquire("k").await.unwrap();
        assert_eq!(d.source, Source::Redis, "{d:?}");
        if d.allowed {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 5, "{:?}", limiter.metrics());
    assert_eq!(limiter.metrics().corrupt_values, 0);
    assert_eq!(a.fleet_metrics().corrupt + b.fleet_metrics().corrupt, 0);
}
