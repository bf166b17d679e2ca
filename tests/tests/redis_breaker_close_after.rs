//! A fleet breaker whose core needs several trial successes to close
//! (`close_after` above 1): once one instance's trials have closed its
//! local breaker, the fleet's decision must be closed too ("their result
//! closes or reopens it for all", `FleetBreaker`'s docs), both for the
//! instance that tripped and for one started after the trip (a restart,
//! or the README's second storm loading the stored open decision).

use std::sync::Arc;
use std::time::Duration;

use crate::common::fleet::{instance_over, stored, sync_ok, trip, until_state};
use crate::common::redis_server::RedisServer;
use fusebox::breaker::{CircuitBreaker, Config, State};
use fusebox_std::backend::FleetBreaker;
use tokio::time::Instant;

/// The storm demo's shape: two failures trip it, three trials at once,
/// two successes close it.
fn core(open_for: Duration) -> Arc<CircuitBreaker> {
    Arc::new(CircuitBreaker::new(
        Config::builder()
            .consecutive_failures(2)
            .open_for(open_for.into())
            .half_open_permits(3)
            .close_after(2)
            .build()
            .unwrap(),
    ))
}

async fn instance(url: &str, name: &str, open_for: Duration) -> FleetBreaker {
    instance_over(url, name, core(open_for), Duration::from_millis(50)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_breaker_trials_that_close_the_local_breaker_close_the_fleet() {
    closes_the_fleet(false).await;
}

/// The same through `FleetBreaker::policy()` (a `Policy`'s path, the storm
/// demo's), whose trials take no fleet slot: the local close is reported
/// by the next reconciliation, worth the `close_after` successes it took.
/// Counted as one success, it left the fleet decision open for good with
/// `close_after(2)` (local Closed, fleet `fb1:1:o:…`: found running the
/// storm demo with `--redis` after an earlier storm).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_breaker_trials_through_the_policy_that_close_the_local_breaker_close_the_fleet() {
    closes_the_fleet(true).await;
}

/// Trips an instance, lets its open time run out (on it, or on one
/// started afterwards), runs three trials at once (through the policy
/// if `via_policy`) and expects the fleet's decision closed.
async fn closes_the_fleet(via_policy: bool) {
    for restarted in [false, true] {
        let server = RedisServer::start();
        let url = server.url();
        let name = "close_after";
        let open_for = Duration::from_millis(300);
        let tripped = instance(&url, name, open_for).await;
        trip(&tripped).await;
        sync_ok(&tripped).await;
        let b = if restarted {
            drop(tripped);
            // Started after the open time ran out, as the README's second
            // storm against the first one's stored decision.
            tokio::time::sleep(open_for * 2).await;
            instance(&url, name, open_for).await
        } else {
            tripped
        };
        until_state(&b, State::HalfOpen, Duration::from_secs(3)).await;
        // Three trials at once, as under load; each takes a little while.
        let work = || async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok::<_, ()>(())
        };
        let (first, second, third) = if via_policy {
            let p = b.policy();
            tokio::join!(p.call(work()), p.call(work()), p.call(work()))
        } else {
            tokio::join!(b.call(work()), b.call(work()), b.call(work()))
        };
        assert!(
            first.is_ok() && second.is_ok() && third.is_ok(),
            "{first:?} {second:?} {third:?}"
        );
        assert_eq!(
            b.state(),
            State::Closed,
            "restarted {restarted}: the successes close locally"
        );
        // Every success's slot is given back by a spawned task: a few
        // syncs later the fleet has counted them.
        let start = Instant::now();
        let mut decision = stored(&url, b.decision_key()).await;
        while !decision.contains(":c:") && start.elapsed() < Duration::from_secs(3) {
            tokio::time::sleep(Duration::from_millis(50)).await;
            sync_ok(&b).await;
            decision = stored(&url, b.decision_key()).await;
        }
        assert!(
            decision.contains(":c:"),
            "restarted {restarted}, via policy {via_policy}: local Closed, fleet decision {decision}"
        );
    }
}
