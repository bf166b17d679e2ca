//! Instances sharing one fleet breaker with different `open_for` (a new
//! configuration rolled out one instance at a time), against a real
//! redis-server. The contract: an instance adopts the fleet's open-until.
//! While the fleet's decision it holds is open, it refuses every call and
//! reads Open, whatever its own, shorter, open time; a local close of
//! that decision the fleet refused (its opening not over) is sent again
//! once the opening ends, and closes the fleet then.
//!
//! Found by a hostile review: an instance whose own open time ran out
//! read half-open under the open fleet, and one closed by a trial decided
//! locally (through `policy()`, or while Redis was out) read Closed and
//! admitted every call until the fleet's opening ended, its close refused
//! by the fleet and never sent again.

use std::time::Duration;

use crate::common::core_breaker;
use crate::common::fleet::{instance_over, stored, trip, until_state};
use crate::common::redis_server::RedisServer;
use fusebox::breaker::State;
use fusebox::Clock;
use fusebox_std::backend::FleetBreaker;
use fusebox_std::CallError;

/// An instance of `name` tripping on two failures in a row, open for
/// `open_for`.
async fn instance(url: &str, name: &str, open_for: Duration) -> FleetBreaker {
    instance_over(
        url,
        name,
        core_breaker(2, open_for),
        Duration::from_millis(50),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_breaker_a_shorter_open_for_adopts_the_fleets_open_until() {
    let server = RedisServer::start();
    let url = server.url();
    let short = instance(&url, "ledger", Duration::from_millis(200)).await;
    let long = instance(&url, "ledger", Duration::from_secs(3)).await;
    trip(&long).await;
    until_state(&short, State::Open, Duration::from_secs(2)).await;
    // The short instance's own open time runs out; the fleet's does not.
    let local_half_open = tokio::time::Instant::now() + Duration::from_millis(400);
    while short.core().state(short.policy().clock().now()) != State::HalfOpen {
        assert!(tokio::time::Instant::now() < local_half_open);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(stored(&url, short.decision_key()).await.contains(":o:"));
    assert_eq!(short.state(), State::Open, "the fleet is open");
    let refused = short.call(async { Ok::<_, ()>(()) }).await;
    assert!(
        matches!(refused, Err(CallError::Open { .. })),
        "{refused:?}"
    );

    // A trial decided locally (the policy takes no fleet slot) closes the
    // short instance's core; the fleet refuses the close.
    short
        .policy()
        .call(async { Ok::<_, ()>(()) })
        .await
        .expect("a local trial");
    assert_eq!(
        short.core().state(short.policy().clock().now()),
        State::Closed
    );
    short.sync().await.unwrap();
    assert!(stored(&url, short.decision_key()).await.contains(":o:"));
    assert_eq!(short.fleet_state(), Some(State::Open));
    assert_eq!(short.state(), State::Open, "closed locally, the fleet open");
    let called = std::sync::atomic::AtomicBool::new(false);
    let refused = short
        .call(async {
            called.store(true, std::sync::atomic::Ordering::SeqCst);
            Ok::<_, ()>(())
        })
        .await;
    assert!(
        matches!(refused, Err(CallError::Open { .. })),
        "{refused:?}"
    );
    assert!(!called.into_inner(), "admitted while the fleet is open");
    assert!(short.fleet_metrics().trials_refused >= 2);

    // Once the fleet's opening ends, the refused close is sent again and
    // closes the fleet: the long instance follows.
    until_state(&long, State::Closed, Duration::from_secs(6)).await;
    assert!(stored(&url, short.decision_key()).await.contains(":c:"));
    short
        .call(async { Ok::<_, ()>(()) })
        .await
        .expect("closed everywhere");
}

/// The same with the local trial decided while Redis was out: back, the
/// instance finds the fleet still open, refuses calls until the fleet's
/// opening ends, and its close, sent again, closes the fleet then.
/// Before, it read Closed and admitted every call for the rest of the
/// fleet's opening, its close refused once and never sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_breaker_a_local_close_while_degraded_waits_for_the_fleets_opening() {
    let mut server = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let url = server.url();
    let short = instance(&url, "refunds", Duration::from_millis(200)).await;
    let long = instance(&url, "refunds", Duration::from_secs(8)).await;
    trip(&long).await;
    until_state(&short, State::Open, Duration::from_secs(2)).await;
    server.kill();
    until_state(&short, State::HalfOpen, Duration::from_secs(2)).await;
    short
        .call(async { Ok::<_, ()>(()) })
        .await
        .expect("a local trial while degraded");
    assert!(short.is_degraded());
    assert_eq!(short.state(), State::Closed);
    server.restart();
    back_and_synced(&short).await;
    assert!(stored(&url, short.decision_key()).await.contains(":o:"));
    assert_eq!(short.state(), State::Open, "the fleet is still open");
    let refused = short.call(async { Ok::<_, ()>(()) }).await;
    assert!(
        matches!(refused, Err(CallError::Open { .. })),
        "{refused:?}"
    );
    until_state(&long, State::Closed, Duration::from_secs(14)).await;
    assert!(stored(&url, short.decision_key()).await.contains(":c:"));
}

/// An operator's `force_close` that failed (Redis out) closes this
/// instance locally only, as documented, and stays: back, the instance
/// does not take the fleet's opening it was closed under for one to
/// hold again (a newer decision still applies).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_breaker_a_failed_force_close_is_not_undone_by_the_fleets_opening() {
    let mut server = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let url = server.url();
    let short = instance(&url, "payouts", Duration::from_millis(200)).await;
    let long = instance(&url, "payouts", Duration::from_secs(8)).await;
    trip(&long).await;
    until_state(&short, State::Open, Duration::from_secs(2)).await;
    server.kill();
    assert!(short.force_close().await.is_err());
    assert_eq!(short.state(), State::Closed);
    server.restart();
    back_and_synced(&short).await;
    assert!(stored(&url, short.decision_key()).await.contains(":o:"));
    assert_eq!(short.state(), State::Closed, "closed by the operator");
    short
        .call(async { Ok::<_, ()>(()) })
        .await
        .expect("admitted, as before Redis came back");
    // A newer decision still applies: the long instance's force_open.
    long.force_open().await.unwrap();
    short.sync().await.unwrap();
    assert_eq!(short.state(), State::ForcedOpen);
}

/// Waits (3 s at most) for `instance` to reconnect after its Redis came
/// back, then reconciles it with the fleet.
async fn back_and_synced(instance: &FleetBreaker) {
    let start = tokio::time::Instant::now();
    while instance.is_degraded() {
        assert!(start.elapsed() < Duration::from_secs(3), "not reconnected");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    instance.sync().await.unwrap();
}
