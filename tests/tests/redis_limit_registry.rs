//! The registry and a Redis limiter on a real redis-server: its counters
//! in `to_prometheus` (valid text, each family once), its outage in
//! `health()` while Redis is down, and back.

use std::sync::Arc;
use std::time::Duration;

use crate::common::redis_server::RedisServer;
use crate::common::shared_limit::{config, redis_limiter, wait_within, DEADLINE, SLACK, TIMEOUT};
use fusebox::bucket::Quota;
use fusebox_std::backend::{Degrade, RedisBackend, RedisLimiter, Rules, Source};
use fusebox_std::policy::{LimitError, Limiter};
use fusebox_std::{Registry, RegistryError};
use tokio::time::Instant;

/// The value of the sample `line` starts with in `text` (counters and
/// gauges here are whole numbers).
fn sample(text: &str, line: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(line)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {line} in:\n{text}"))
        .parse()
        .unwrap()
}

/// A registry with two Redis limiters: `api` (FailClosed, reporting its
/// condition to the registry, waited on through `Limiter`) and `other`
/// (FailOpen, registered only).
struct Reported {
    registry: Arc<Registry>,
    api: Arc<RedisLimiter>,
    limiter: Limiter,
    other: Arc<RedisLimiter>,
}

async fn reported(server: &RedisServer) -> Reported {
    let registry = Arc::new(Registry::new());
    let quota = Quota::per_second(100).unwrap().with_burst(5).unwrap();
    let backend = RedisBackend::connect(config(server, TIMEOUT))
        .await
        .unwrap();
    let api = Arc::new(
        RedisLimiter::builder("api", Rules::single("quota", quota).unwrap(), backend)
            .degrade(Degrade::FailClosed)
            .probe_backoff(Duration::from_millis(20), Duration::from_millis(200))
            .registry(Arc::clone(&registry))
            .build()
            .unwrap(),
    );
    let limiter = registry.redis_limiter_policy(Arc::clone(&api)).unwrap();
    let other = Arc::new(redis_limiter(server, "other", quota, Degrade::FailOpen, TIMEOUT).await);
    registry.register_redis_limiter(&other).unwrap();
    Reported {
        registry,
        api,
        limiter,
        other,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_limit_registry_prometheus_has_the_redis_limiters() {
    let server = RedisServer::start();
    let Reported {
        registry,
        api,
        limiter,
        other,
    } = reported(&server).await;
    registry.register_redis_limiter(&other).unwrap(); // again: nothing
    let quota = Quota::per_second(100).unwrap();
    let impostor =
        Arc::new(redis_limiter(&server, "other", quota, Degrade::FailOpen, TIMEOUT).await);
    assert!(matches!(
        registry.register_redis_limiter(&impostor),
        Err(RegistryError::Conflict { .. })
    ));
    assert!(Arc::ptr_eq(
        &registry.get_redis_limiter("api").unwrap(),
        &api
    ));

    limiter.until_n_ready(5).await.unwrap(); // one admission of 5 tokens
    let soon = Instant::now() + Duration::from_millis(1);
    assert!(limiter.until_n_ready_by(1, Some(soon)).await.is_err());
    assert!(other.try_acquire("").await.unwrap().allowed);

    let text = registry.to_prometheus();
    // Valid text format, each family's metadata once, both limiters in it.
    let parsed = prometheus_parse::Scrape::parse(std::io::BufRead::lines(text.as_bytes()))
        .expect("valid exposition");
    let admitted = parsed
        .samples
        .iter()
        .filter(|s| s.metric == "fusebox_redis_limiter_admitted_total")
        .count();
    assert_eq!(admitted, 2, "{text}");
    for family in [
        "# TYPE fusebox_redis_limiter_decisions_total counter\n",
        "# TYPE fusebox_redis_limiter_admitted_total counter\n",
        "# TYPE fusebox_redis_limiter_faults_total counter\n",
        "# TYPE fusebox_redis_limiter_corrupt_values_total counter\n",
        "# TYPE fusebox_redis_limiter_degraded gauge\n",
    ] {
        assert_eq!(text.matches(family).count(), 1, "{family}{text}");
    }
    let api_admitted = "fusebox_redis_limiter_admitted_total{name=\"api\"}";
    assert_eq!(sample(&text, api_admitted), 1);
    let other_admitted = "fusebox_redis_limiter_admitted_total{name=\"other\"}";
    assert_eq!(sample(&text, other_admitted), 1);
    let api_redis = "fusebox_redis_limiter_decisions_total{name=\"api\",source=\"redis\"}";
    assert_eq!(sample(&text, api_redis), 2);
    assert_eq!(
        sample(&text, "fusebox_redis_limiter_faults_total{name=\"api\"}"),
        0
    );
    assert_eq!(
        sample(&text, "fusebox_redis_limiter_degraded{name=\"api\"}"),
        0
    );
    assert_eq!(sample(&text, "fusebox_degraded"), 0);
    assert!(!registry.health().degraded);

    // A limiter dropped everywhere leaves the reports and frees its name.
    drop(other);
    assert!(registry.get_redis_limiter("other").is_none());
    assert!(!registry.to_prometheus().contains("name=\"other\""));
    registry.register_redis_limiter(&impostor).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_limit_registry_health_is_degraded_while_redis_is_down() {
    let mut server = RedisServer::start();
    let Reported {
        registry,
        api,
        limiter,
        other,
    } = reported(&server).await;
    limiter.until_ready().await.unwrap();
    assert!(!registry.health().degraded);

    // Redis down: both limiters degrade; health says so, once each.
    server.kill();
    let (r, took) = wait_within(&limiter, DEADLINE).await;
    assert!(
        matches!(r, Err(LimitError::DeadlineExceeded { .. })),
        "{r:?}"
    );
    assert!(took <= DEADLINE + TIMEOUT + SLACK, "{took:?}");
    let d = other.try_acquire("").await.unwrap();
    assert_eq!((d.allowed, d.source), (true, Source::FailOpen));
    let health = registry.health();
    assert!(health.ready && health.degraded, "{health:?}");
    assert_eq!(health.reasons.len(), 2, "{:?}", health.reasons);
    // `api` set its condition itself (with the fault); `other` is
    // reported by the registry.
    assert!(
        health.reasons[0].starts_with("redis_api: redis"),
        "{:?}",
        health.reasons
    );
    assert_eq!(
        health.reasons[1],
        "redis_other: redis limiter other is degraded"
    );
    let text = registry.to_prometheus();
    assert_eq!(sample(&text, "fusebox_degraded"), 1);
    assert_eq!(
        sample(&text, "fusebox_redis_limiter_degraded{name=\"api\"}"),
        1
    );
    assert_eq!(
        sample(&text, "fusebox_redis_limiter_degraded{name=\"other\"}"),
        1
    );
    assert!(sample(&text, "fusebox_redis_limiter_faults_total{name=\"api\"}") >= 1);
    let other_degraded =
        "fusebox_redis_limiter_decisions_total{name=\"other\",source=\"degraded\"}";
    assert!(sample(&text, other_degraded) >= 1);

    // Back: the first answered probe of each clears it.
    server.restart();
    let back = Instant::now();
    while api.is_degraded() || other.is_degraded() {
        assert!(back.elapsed() < Duration::from_secs(5), "still degraded");
        let soon = Instant::now() + Duration::from_millis(50);
        let _ = limiter.until_n_ready_by(1, Some(soon)).await;
        let _ = other.try_acquire("").await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let health = registry.health();
    assert!(!health.degraded, "{:?}", health.reasons);
    let text = registry.to_prometheus();
    assert_eq!(sample(&text, "fusebox_degraded"), 0);
}
