//! A [`LeasedLimiter`] keeps the caller's key, which is often taken from
//! a request (an API key, an upstream's URL): its `Debug`, what a `?leased`
//! in the application's own log lines prints, shows it redacted, as the
//! `Debug` of every type keeping a name does (tests/debug_redacts_names.rs).

use std::time::Duration;

use fusebox::bucket::Quota;
use fusebox_std::backend::{LeasedLimiter, RedisBackend, RedisConfig, RedisLimiter, Rules};

#[tokio::test]
async fn redis_limit_lease_debug_redacts_the_key() {
    for (key, secret) in [
        ("redis://app:hunter2@cache:6379", "hunter2"),
        ("upstream?token=s3cret", "s3cret"),
    ] {
        // Connects on first use: nothing here talks to Redis.
        let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:1")).unwrap();
        let rules = Rules::single("per_second", Quota::per_second(5).unwrap()).unwrap();
        let limiter = RedisLimiter::builder("api", rules, backend)
            .build()
            .unwrap();
        let leased = LeasedLimiter::new(limiter, key, 2, Duration::from_secs(1)).unwrap();
        let debug = format!("{leased:?}");
        assert!(!debug.contains(secret), "{debug}");
        assert!(debug.contains("***"), "{debug}");
        assert!(debug.starts_with("LeasedLimiter"), "{debug}");
    }
}
