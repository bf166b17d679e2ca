//! The seam a dashboard will use: the registry handed to
//! [`fusebox_demo::storm`] by its caller holds, after the storm, the
//! protected run's breaker, rate limit, stale cache and the clients'
//! latency tracker, in its health report and its Prometheus text.

use std::sync::Arc;

use clap::Parser;
use fusebox_demo::cli::Args;
use fusebox_demo::clients::{BREAKER, CACHE, LIMITER};
use fusebox_demo::run::TRACKER;
use fusebox_std::{Registry, TokioClock};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callers_registry_reports_the_protected_run() {
    let args = Args::try_parse_from(["storm", "--duration", "2", "--clients", "60", "--seed", "3"])
        .expect("valid arguments");
    let clock = TokioClock::new();
    let registry = Arc::new(Registry::builder().clock(clock).build());
    let result = fusebox_demo::storm(&args, &registry, clock)
        .await
        .expect("the storm runs");

    let health = registry.health();
    let breaker = &health.breakers[BREAKER];
    assert_eq!(
        breaker.metrics.trips,
        result
            .protected
            .breaker_trips
            .expect("the protected run has a breaker")
    );
    assert!(health.limiters.contains_key(LIMITER));
    assert!(health.caches[CACHE].metrics.inserts > 0);
    let clients = &health.trackers[TRACKER];
    assert_eq!(clients["unprotected"].calls, result.unprotected.requests);
    assert_eq!(clients["protected"].calls, result.protected.requests);

    let text = registry.to_prometheus();
    for needle in [
        "fusebox_breaker_trips_total{name=\"upstream\"}",
        "fusebox_limiter_available_tokens{name=\"upstream\"}",
        "fusebox_cache_inserts_total{name=\"upstream_items\"}",
        "fusebox_operation_calls_total{tracker=\"clients\",operation=\"protected\"}",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
}
