//! The fleet breaker's trial slots written by another hand, against a
//! real redis-server: a slot kept longer than its writer could have set
//! (longer than the TTL its value claims, or with no claim, longer than
//! the reader's own trial TTL) is forged, reclaimed and counted; a slot
//! an instance configured with a longer trial TTL holds is not stolen.

use std::sync::Arc;
use std::time::Duration;

use crate::common::fleet::{backend, raw, trip, until_state};
use crate::common::redis_server::RedisServer;
use fusebox::breaker::{CircuitBreaker, Config, State};
use fusebox_std::backend::FleetBreaker;

/// Two failures trip it, open 300 ms, one trial at a time.
fn core() -> Arc<CircuitBreaker> {
    Arc::new(CircuitBreaker::new(
        Config::builder()
            .consecutive_failures(2)
            .open_for(Duration::from_millis(300).into())
            .half_open_permits(1)
            .build()
            .unwrap(),
    ))
}

/// An instance of `name` whose trial slots last `ttl`.
async fn instance(url: &str, name: &str, ttl: Duration) -> FleetBreaker {
    FleetBreaker::builder(name, core(), backend(url).await)
        .sync_interval(Duration::from_millis(50))
        .trial_ttl(ttl)
        .build()
        .await
        .expect("fleet breaker")
}

/// The version of the open decision `b`'s trip published, waited for (at
/// most 30 s): the background task publishes a trip after the call that
/// made it, so a read right after [`trip`] can find the closed decision
/// before it (on a loaded machine), and a slot forged for the half-open
/// decision after that one is no slot of the coming decision.
async fn open_version(conn: &mut redis::aio::MultiplexedConnection, b: &FleetBreaker) -> u64 {
    let start = tokio::time::Instant::now();
    loop {
        let stored: String = redis::cmd("GET")
            .arg(b.decision_key())
            .query_async(conn)
            .await
            .unwrap();
        if stored.contains(":o:") {
            return stored.split(':').nth(1).unwrap().parse().unwrap();
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{}: the trip is still unpublished after 30 s: {stored}",
            b.name()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Sets `b`'s only trial slot to `value` for `px_ms`.
async fn forge_slot(
    conn: &mut redis::aio::MultiplexedConnection,
    b: &FleetBreaker,
    value: &str,
    px_ms: u64,
) {
    let () = redis::cmd("SET")
        .arg(b.decision_key().replace(":decision", ":trial:1"))
        .arg(value)
        .arg("PX")
        .arg(px_ms)
        .query_async(conn)
        .await
        .unwrap();
}

/// A slot of the coming half-open decision written by hand for a day
/// (the longest TTL the script itself would set), in the format of the
/// version before (no claim) or claiming a TTL shorter than it is kept:
/// before, no instance got a trial for that day (the script took only a
/// slot with no TTL or one over a day for forged); now the instance,
/// whose own trial TTL is 2 s, reclaims it, counts it corrupt, and its
/// trial closes the fleet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_breaker_a_slot_kept_longer_than_its_writer_could_set_is_reclaimed() {
    let server = RedisServer::start();
    let url = server.url();
    let day_ms = 86_400_000;
    for (name, forged) in [
        ("ledger", "{v}:forged"),
        ("refunds", "{v}:ttl1000:forged:0000000000000001:0"),
    ] {
        let a = instance(&url, name, Duration::from_secs(2)).await;
        trip(&a).await;
        let mut conn = raw(&url).await;
        let half_open = open_version(&mut conn, &a).await + 1;
        let value = forged.replace("{v}", &half_open.to_string());
        forge_slot(&mut conn, &a, &value, day_ms).await;
        until_state(&a, State::HalfOpen, Duration::from_secs(2)).await;
        let corrupt = a.fleet_metrics().corrupt;
        a.call(async { Ok::<_, ()>(()) })
            .await
            .unwrap_or_else(|e| panic!("{name}: the forged slot blocks the trial: {e:?}"));
        assert!(a.fleet_metrics().corrupt > corrupt, "{name}: counted");
        assert_eq!(a.fleet_metrics().trials_refused, 0, "{name}");
        a.sync().await.unwrap();
        assert_eq!(a.fleet_state(), Some(State::Closed), "{name}");
    }
}

/// The other side: an instance configured with a 60 s trial TTL holds the
/// only slot (its trial hangs); an instance of the same breaker whose
/// trial TTL is 2 s finds it kept longer than it would ever set, but
/// within the TTL the slot's value claims: it is refused, it does not
/// take the slot for a second trial (which would run two trials where
/// the configuration allows one), and counts nothing corrupt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_breaker_a_slot_of_a_longer_configured_trial_ttl_is_not_stolen() {
    let server = RedisServer::start();
    let url = server.url();
    let long = instance(&url, "payouts", Duration::from_secs(60)).await;
    let short = instance(&url, "payouts", Duration::from_secs(2)).await;
    trip(&long).await;
    until_state(&short, State::Open, Duration::from_secs(2)).await;
    until_state(&long, State::HalfOpen, Duration::from_secs(2)).await;
    let (started, running) = tokio::sync::oneshot::channel();
    let hung = {
        let long = long.clone();
        tokio::spawn(async move {
            long.call(async move {
                let _ = started.send(());
                std::future::pending::<Result<(), ()>>().await
            })
            .await
        })
    };
    running.await.expect("the long instance's trial runs");
    until_state(&short, State::HalfOpen, Duration::from_secs(2)).await;
    let refused = short.call(async { Ok::<_, ()>(()) }).await;
    assert!(refused.is_err(), "a second trial ran: {refused:?}");
    assert_eq!(short.fleet_metrics().trials_refused, 1);
    assert_eq!(short.fleet_metrics().corrupt, 0);
    assert_eq!(long.fleet_metrics().corrupt, 0);
    hung.abort();
}

/// Two failures trip it, open 300 ms, two trials at a time, two
/// successes close.
fn core_closing_after_two() -> Arc<CircuitBreaker> {
    Arc::new(CircuitBreaker::new(
        Config::builder()
            .consecutive_failures(2)
            .open_for(Duration::from_millis(300).into())
            .half_open_permits(2)
            .close_after(2)
            .build()
            .unwrap(),
    ))
}

/// Values of a size no instance writes (a success count followed by a
/// megabyte of "tokens", a trial slot of a megabyte) are rejected
/// unread: deleted, counted corrupt, never copied into the script at
/// every call. Before, the count was taken as one success counted
/// already, so the fleet closed on one trial where two are configured,
/// and the megabyte was copied (and written back, grown) at each close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_breaker_values_of_a_size_no_instance_writes_are_rejected() {
    let server = RedisServer::start();
    let url = server.url();
    let a = FleetBreaker::builder("payouts", core_closing_after_two(), backend(&url).await)
        .sync_interval(Duration::from_millis(50))
        .trial_ttl(Duration::from_secs(2))
        .build()
        .await
        .expect("fleet breaker");
    trip(&a).await;
    let mut conn = raw(&url).await;
    let half_open = open_version(&mut conn, &a).await + 1;
    let junk = "x".repeat(1 << 20);
    let ok_key = a.decision_key().replace(":decision", ":trial:ok");
    let counted = format!("{half_open}:1:{junk}");
    let written = counted.len();
    let () = redis::pipe()
        .cmd("SET")
        .arg(&ok_key)
        .arg(counted)
        .ignore()
        .cmd("SET")
        .arg(a.decision_key().replace(":decision", ":trial:2"))
        .arg(format!("{half_open}:ttl1000:{junk}"))
        .arg("PX")
        .arg(1000)
        .ignore()
        .query_async(&mut conn)
        .await
        .unwrap();
    until_state(&a, State::HalfOpen, Duration::from_secs(2)).await;
    let corrupt = a.fleet_metrics().corrupt;
    a.call(async { Ok::<_, ()>(()) })
        .await
        .expect("first trial");
    // The trial's success is counted by a task the slot spawns when the
    // call ends, after `call` returned: until it has run, the count is
    // the one written above, and the decision half-open whatever the
    // count. It has run once the stored length changes (rejected:
    // deleted and written anew; before, written back grown).
    let start = tokio::time::Instant::now();
    let len = loop {
        let len: usize = redis::cmd("STRLEN")
            .arg(&ok_key)
            .query_async(&mut conn)
            .await
            .unwrap();
        if len != written {
            break len;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the trial's success still uncounted after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    a.sync().await.unwrap();
    let stored: String = redis::cmd("GET")
        .arg(a.decision_key())
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(stored.contains(":h:"), "one success of two: {stored}");
    assert!(a.fleet_metrics().corrupt > corrupt, "counted");
    assert!(len < 1024, "the megabyte is gone: {len} bytes");
    // The second success closes it.
    a.call(async { Ok::<_, ()>(()) })
        .await
        .expect("second trial");
    a.sync().await.unwrap();
    assert_eq!(a.fleet_state(), Some(State::Closed));
}
