//! Degraded conditions in the health report: one the user sets with
//! `Registry::set_degraded` lasts until the user clears it, whatever a
//! component of the registry reports under the same source name. A Redis
//! limiter built with `.registry(..)` reports its outages as the condition
//! `redis_<name>`, a name any user may also pick for a dependency of
//! their own (`set_degraded` reserves none).

use std::sync::Arc;
use std::time::Duration;

use fusebox::bucket::Quota;
use fusebox_std::backend::{Degrade, RedisBackend, RedisConfig, RedisLimiter, Rules};
use fusebox_std::Registry;

/// A limiter named `cache` over a Redis that is not there, reporting to
/// `registry`.
fn unreachable_limiter(registry: &Arc<Registry>) -> Arc<RedisLimiter> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let config = RedisConfig::new(format!("redis://127.0.0.1:{port}"))
        .timeout(Duration::from_millis(50))
        .connect_timeout(Duration::from_millis(50));
    let backend = RedisBackend::connect_lazy(config).expect("a valid URL");
    let rules = Rules::single("per_second", Quota::per_second(100).unwrap()).unwrap();
    Arc::new(
        RedisLimiter::builder("cache", rules, backend)
            .degrade(Degrade::FailOpen)
            .probe_backoff(Duration::from_secs(3_600), Duration::from_secs(3_600))
            .registry(Arc::clone(registry))
            .build()
            .expect("a valid limiter"),
    )
}

fn has(reasons: &[String], text: &str) -> bool {
    reasons.iter().any(|r| r.contains(text))
}

#[tokio::test]
async fn a_users_condition_outlives_a_component_reporting_under_its_name() {
    let registry = Arc::new(Registry::new());
    // The user's own view of their Redis cache, under a name of their choice.
    registry
        .set_degraded("redis_cache", Some("replica lag 30 s"))
        .unwrap();
    let limiter = unreachable_limiter(&registry);
    // Its first call finds Redis out: the limiter reports its outage.
    let _ = limiter.try_acquire("client-1").await;
    assert!(limiter.is_degraded());
    let report = registry.health();
    assert!(report.degraded);
    assert!(
        has(&report.reasons, "replica lag 30 s"),
        "the user's condition was replaced: {:?}",
        report.reasons
    );
    // The limiter goes away (its outage with it): the user's condition,
    // never cleared, is still reported.
    drop(limiter);
    let report = registry.health();
    assert!(report.degraded, "{:?}", report.reasons);
    assert_eq!(report.reasons, ["redis_cache: replica lag 30 s"]);
    // Until the user clears it.
    registry.set_degraded("redis_cache", None).unwrap();
    assert!(!registry.health().degraded);
}

#[tokio::test]
async fn clearing_a_users_condition_leaves_a_components_outage_reported_with_its_fault() {
    let registry = Arc::new(Registry::new());
    let limiter = unreachable_limiter(&registry);
    let _ = limiter.try_acquire("client-1").await;
    assert!(limiter.is_degraded());
    let before = registry.health().reasons;
    assert_eq!(before.len(), 1, "{before:?}");
    // The user clears a condition of theirs that happens to share the name.
    registry.set_degraded("redis_cache", None).unwrap();
    assert_eq!(registry.health().reasons, before);
}
