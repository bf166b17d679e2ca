//! A half-open fleet breaker refused in a longer fleet opening remembers
//! the refusal (7efb57d): hostile probes against a real redis-server.
//! The docs: its half-open calls are refused locally "until the opening
//! ends ... or a newer decision is applied". Sound-but-checked: the
//! background reconciliation alone (no notifications, no manual sync)
//! applies an operator's close, and the remembered refusal stops there;
//! a newer opening is asked about again, not shadowed.

use std::sync::Arc;
use std::time::Duration;

use crate::common::fleet::{
    backend, sync_ok, trip, until_core_half_open_under_the_fleet, until_state,
};
use crate::common::redis_server::RedisServer;
use fusebox::breaker::{CircuitBreaker, Config, State};
use fusebox_std::backend::FleetBreaker;
use fusebox_std::CallError;

async fn instance(url: &str, open_for: Duration, sync: Duration) -> FleetBreaker {
    let core = Arc::new(CircuitBreaker::new(
        Config::builder()
            .consecutive_failures(2)
            .open_for(open_for.into())
            .build()
            .unwrap(),
    ));
    FleetBreaker::builder("memory", core, backend(url).await)
        .sync_interval(sync)
        .build()
        .await
        .unwrap()
}

/// Calls `short` until one passes (at most 5 s): how many were refused.
async fn refused_until_one_passes(short: &FleetBreaker) -> u64 {
    let start = tokio::time::Instant::now();
    let mut refused = 0;
    loop {
        match short.call(async { Ok::<_, &str>(()) }).await {
            Ok(()) => return refused,
            Err(CallError::Open { .. }) => refused += 1,
            Err(e) => panic!("{e:?}"),
        }
        assert!(start.elapsed() < Duration::from_secs(5), "still refused");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_sync_ends_a_remembered_refusal() {
    let server = RedisServer::start();
    let url = server.url();
    let long = instance(&url, Duration::from_secs(600), Duration::from_secs(3_600)).await;
    // Reconciled every 50 ms, with no notifications: a close elsewhere is
    // learnt from the background sync alone.
    let short = instance(&url, Duration::from_millis(100), Duration::from_millis(50)).await;
    trip(&long).await;
    sync_ok(&long).await;
    until_state(&short, State::Open, Duration::from_secs(5)).await;
    until_core_half_open_under_the_fleet(&short).await;
    let first = short.call(async { Ok::<_, &str>(()) }).await;
    assert!(matches!(first, Err(CallError::Open { .. })), "{first:?}");
    assert_eq!(short.fleet_metrics().trials_refused, 1);

    long.force_close().await.unwrap();
    refused_until_one_passes(&short).await;
    assert_eq!(short.state(), State::Closed);
    assert_eq!(short.fleet_state(), Some(State::Closed));

    // A newer opening (another trip of the long instance): the short one
    // adopts it, then its calls are refused again, locally (the opening
    // adopted from the merge; trials_refused counts every refusal).
    let before = short.fleet_metrics().trials_refused;
    trip(&long).await;
    sync_ok(&long).await;
    until_state(&short, State::Open, Duration::from_secs(5)).await;
    until_core_half_open_under_the_fleet(&short).await;
    for _ in 0..3 {
        let r = short.call(async { Ok::<_, &str>(()) }).await;
        assert!(matches!(r, Err(CallError::Open { .. })), "{r:?}");
    }
    assert_eq!(short.fleet_metrics().trials_refused - before, 3);
    long.force_close().await.unwrap();
    refused_until_one_passes(&short).await;
    assert_eq!(short.state(), State::Closed);
}
