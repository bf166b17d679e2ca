//! The Redis builders' `Debug` hides a secret in the name they were given.
//!
//! A fleet breaker's or Redis limiter's name is checked (a registry name,
//! which holds no secret) only when the builder builds; until then the
//! builder holds whatever it was given, a name made from an upstream URL
//! (`redis://app:hunter2@cache:6379`) or a query included, and an
//! application logging the builder with `{:?}` (or `?builder`) wrote it
//! whole. The in-process `BreakerBuilder` redacts its name since b935e5c;
//! these two printed it as given.

use std::sync::Arc;

use fusebox::breaker::{CircuitBreaker, Config};
use fusebox::bucket::Quota;
use fusebox_std::backend::{FleetBreaker, RedisBackend, RedisConfig, RedisLimiter, Rules};

const NAME: &str = "redis://app:hunter2@cache:6379/?token=s3cret";

fn hides(what: &str, shown: &str) {
    for secret in ["hunter2", "s3cret"] {
        assert!(!shown.contains(secret), "{what} shows {secret}: {shown}");
    }
    assert!(shown.contains("cache:6379"), "{what}: {shown}");
}

#[tokio::test]
async fn the_redis_builders_debug_redacts_the_name() {
    // Nothing listens on port 1: nothing here talks to Redis.
    let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:1")).unwrap();
    let core = Arc::new(CircuitBreaker::new(
        Config::builder().consecutive_failures(1).build().unwrap(),
    ));
    let fleet = FleetBreaker::builder(NAME, core, backend.clone());
    hides("FleetBreakerBuilder", &format!("{fleet:?}"));
    hides("FleetBreakerBuilder (alternate)", &format!("{fleet:#?}"));

    let rules = Rules::single("per_second", Quota::per_second(5).unwrap()).unwrap();
    let limiter = RedisLimiter::builder(NAME, rules, backend);
    hides("RedisLimiterBuilder", &format!("{limiter:?}"));
    hides("RedisLimiterBuilder (alternate)", &format!("{limiter:#?}"));
    // Such a name is refused when built, without showing it either.
    let refused = limiter.build().unwrap_err().to_string();
    assert!(!refused.contains("hunter2"), "{refused}");
}
