//! The fleet breaker (`FleetBreaker`) when a trip's script runs but its
//! reply is lost (Redis stalled past the command timeout, then resumed),
//! against a real redis-server: the instance cannot tell the trip was
//! taken, so it publishes it again, and that repeat must not count as a
//! second trip, whatever the fleet decided meanwhile.

use std::sync::Arc;
use std::time::Duration;

use crate::common::fleet::{backend, stored, trip, until_state};
use crate::common::redis_server::RedisServer;
use fusebox::breaker::{CircuitBreaker, Config, State};
use fusebox_std::backend::FleetBreaker;

/// Two failures trip it; open 300 ms.
fn core() -> Arc<CircuitBreaker> {
    Arc::new(CircuitBreaker::new(
        Config::builder()
            .consecutive_failures(2)
            .open_for(Duration::from_millis(300).into())
            .build()
            .unwrap(),
    ))
}

/// An instance reconciled at once on a local transition, otherwise by
/// hand (`sync`).
async fn instance(url: &str) -> FleetBreaker {
    FleetBreaker::builder("ledger", core(), backend(url).await)
        .sync_interval(Duration::from_secs(3_600))
        .build()
        .await
        .expect("fleet breaker")
}

/// Trips `a` while Redis is stopped, so that the trip's script is sent
/// but its reply never comes in time, then resumes Redis and waits for
/// the stalled script to open the fleet; returns the stored decision.
async fn trip_with_its_reply_lost(server: &RedisServer, a: &FleetBreaker) -> String {
    let url = server.url();
    server.signal("STOP");
    trip(a).await;
    let start = tokio::time::Instant::now();
    while !a.is_degraded() {
        assert!(start.elapsed() < Duration::from_secs(5), "never timed out");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.signal("CONT");
    let start = tokio::time::Instant::now();
    loop {
        let decision = stored(&url, a.decision_key()).await;
        if decision.contains(":o:") {
            assert!(decision.ends_with(":0"), "streak 0: {decision}");
            return decision;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "{decision}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Reconciles `a` by hand until Redis answers it.
async fn sync_until_answered(a: &FleetBreaker) {
    let start = tokio::time::Instant::now();
    while a.sync().await.is_err() {
        assert!(start.elapsed() < Duration::from_secs(5), "no reconnect");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// When the repeat comes after the fleet's open time ran out, it does not
/// reopen the fleet with a longer open time. Before, the script reopened
/// any expired or half-open decision on a trip, even one the caller had
/// never seen: the repeat of one trip reopened the fleet for twice the
/// open time (streak 1), and on every instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_breaker_a_trip_published_twice_reopens_nothing() {
    let server = RedisServer::start();
    let url = server.url();
    let a = instance(&url).await;
    let opened = trip_with_its_reply_lost(&server, &a).await;
    // The fleet's open time (300 ms) runs out before the next
    // reconciliation, which publishes the trip again.
    tokio::time::sleep(Duration::from_millis(400)).await;
    sync_until_answered(&a).await;
    assert_eq!(stored(&url, a.decision_key()).await, opened, "not reopened");
    assert_eq!(a.state(), State::HalfOpen);
}

/// When the repeat comes after the fleet closed again (another instance's
/// trial succeeded), it does not reopen the closed fleet: the trip it
/// repeats was taken, and its open time served. Before, the script took
/// the repeat for a new trip of a closed fleet and opened every instance
/// again, for a trip the fleet had already served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_breaker_a_trip_published_twice_does_not_reopen_a_fleet_closed_since() {
    let server = RedisServer::start();
    let url = server.url();
    let a = instance(&url).await;
    trip_with_its_reply_lost(&server, &a).await;
    // Another instance holds the open decision, and once its time is up
    // its trial succeeds: the fleet closes.
    let b = instance(&url).await;
    until_state(&b, State::Open, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    b.call(async { Ok::<_, &str>(()) }).await.expect("a trial");
    let start = tokio::time::Instant::now();
    let closed = loop {
        let decision = stored(&url, b.decision_key()).await;
        if decision.contains(":c:") {
            break decision;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "{decision}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    // The stalled instance reconnects and publishes its trip again.
    sync_until_answered(&a).await;
    assert_eq!(stored(&url, a.decision_key()).await, closed, "not reopened");
    b.sync().await.expect("sync");
    assert_eq!(b.state(), State::Closed);
    // The instance takes the fleet's decision: its own open time is up.
    assert_eq!(a.state(), State::Closed);
    // A trip made after the repeat is a trip: it opens the fleet.
    trip(&a).await;
    sync_until_answered(&a).await;
    let reopened = stored(&url, a.decision_key()).await;
    assert!(reopened.contains(":o:"), "{reopened}");
}

/// A force-close sent while a reconciliation publishing a trip below the
/// quorum is in flight (Redis slow to answer both): the trip's reply,
/// older than the force-close, comes back first. Before, it marked the
/// instance open on its own trip again after `force_close` had cleared
/// that, and the force-close's closed decision, applied next, was ignored
/// for it: the instance stayed open, refusing every call, though the
/// operator closed it. `force_open` and `force_close` now wait for the
/// reconciliation in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_force_close_racing_a_trip_in_flight_closes_the_instance() {
    let server = RedisServer::start();
    let url = server.url();
    let a = FleetBreaker::builder("ledger", core(), backend(&url).await)
        .quorum(2, Duration::from_secs(60))
        .sync_interval(Duration::from_secs(3_600))
        .build()
        .await
        .expect("fleet breaker");
    let a = Arc::new(a);
    // Redis stalls (for less than the 500 ms timeout): the trip's
    // reconciliation is sent, then the force-close.
    server.signal("STOP");
    trip(&a).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let closing = tokio::spawn({
        let a = Arc::clone(&a);
        async move { a.force_close().await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.signal("CONT");
    closing.await.unwrap().expect("the force-close answered");
    assert_eq!(a.state(), State::Closed);
    assert!(a.call(async { Ok::<_, &str>(()) }).await.is_ok());
}
