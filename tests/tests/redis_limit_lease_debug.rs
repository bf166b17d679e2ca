//! A [`LeasedLimiter`] keeps the caller's key, which is often taken from
//! a request (an API key, an upstream's URL): its `Debug`, what a `?leased`
//! in the application's own log lines prints, shows it redacted, as the
//! `Debug` of every type keeping a name does (tests/debug_redacts_names.rs).
//! A key is not a name, though: a per-client limit is keyed by the
//! client's credential itself, a bare API key that no pattern of
//! `redact()` recognises, so the key is never shown at all.

use std::time::Duration;

use fusebox::bucket::Quota;
use fusebox_std::backend::{LeasedLimiter, RedisBackend, RedisConfig, RedisLimiter, Rules};

#[tokio::test]
async fn redis_limit_lease_debug_redacts_the_key() {
    for (key, secret) in [
        ("redis://app:hunter2@cache:6379", "hunter2"),
        ("upstream?token=s3cret", "s3cret"),
        // The credential as the key, bare (found by a hostile review:
        // `redact()` masks credentials it recognises by their context, a
        // URL's user info or a `token=` pair, and showed this one whole).
        (
            "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
            "4eC39HqLyjWDarjtT1zdp7dc",
        ),
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
