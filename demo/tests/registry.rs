//! The seam a dashboard will use: the registry handed to
//! [`fusebox_demo::storm`] by its caller holds, after the storm, the
//! protected run's breaker, rate limit, stale cache and the clients'
//! latency tracker, in its health report and its Prometheus text.

use std::sync::Arc;

use clap::{CommandFactory, FromArgMatches};
use fusebox_demo::cli::Args;
use fusebox_demo::clients::{BREAKER, CACHE, LIMITER};
use fusebox_demo::run::TRACKER;
use fusebox_std::{Registry, TokioClock};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callers_registry_reports_the_protected_run() {
    // Blind to `FUSEBOX_REDIS_URL`, which a shell or CI job may export:
    // this storm is the in-process one.
    let command = Args::command().mut_arg("redis", |arg| arg.env(None::<&'static str>));
    let matches = command
        .try_get_matches_from(["storm", "--duration", "2", "--clients", "60", "--seed", "3"])
        .expect("valid arguments");
    let args = Args::from_arg_matches(&matches).expect("valid arguments");
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
