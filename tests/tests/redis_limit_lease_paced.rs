//! A [`LeasedLimiter`]'s local pace and its remembered refusals, from its
//! documented contract: an instance holds at most a lease of tokens (the
//! over-admission bound is `instances × lease`), and a decision made in
//! process (`Source::Lease`) reports no corrupt value (`Decision::corrupt`
//! counts the values Redis found and replaced; a request answered from
//! memory found none).

use std::time::Duration;

use crate::common::redis_server::RedisServer;
use fusebox::bucket::Quota;
use fusebox_std::backend::{
    storage_keys, LeasedLimiter, RedisBackend, RedisConfig, RedisLimiter, Rules, Source,
};

/// 12 an hour: nothing refills within the test.
fn rules() -> Rules {
    Rules::single("per_hour", Quota::per_hour(12).unwrap()).unwrap()
}

async fn connect(server: &RedisServer) -> RedisBackend {
    RedisBackend::connect(RedisConfig::new(server.url()).timeout(Duration::from_secs(2)))
        .await
        .unwrap()
}

fn leased(backend: &RedisBackend, name: &str, lease: u32) -> LeasedLimiter {
    let limiter = RedisLimiter::builder(name, rules(), backend.clone())
        .build()
        .unwrap();
    LeasedLimiter::new(limiter, "k", lease, Duration::from_secs(3_600)).unwrap()
}

async fn raw(backend: &RedisBackend, args: &[&str]) {
    let mut conn = backend.connection();
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    let _: redis::Value = cmd.query_async(&mut conn).await.unwrap();
}

/// An instance whose local pace (the first rule's quota, "so one instance
/// never spends faster than the whole fleet may") has fewer tokens than
/// a request while Redis has more: here the instance spent 11 of its 12
/// and Redis lost the key (a restart without persistence, a `FLUSHALL`);
/// the same comes when tokens held across Redis's refill are spent after
/// it. Before, the request took a lease of 12 from Redis, then the pace
/// refused it: the instance held 13 tokens with a lease of 12 (beyond the
/// `instances × lease` bound), and the fleet's 12 tokens sat in one
/// instance that could not spend them for an hour. Now the pace is asked
/// first: the request is refused in process, with the pace's wait, and
/// Redis is not asked.
#[tokio::test]
async fn redis_limit_lease_a_request_the_pace_refuses_takes_no_lease() {
    let server = RedisServer::start();
    let backend = connect(&server).await;
    let leased = leased(&backend, "paced", 12);
    assert!(leased.try_acquire().await.unwrap().allowed);
    assert!(leased.try_acquire_n(10).await.unwrap().allowed);
    assert_eq!(leased.try_acquire_n(0).await.unwrap().remaining, 1);
    let key = &storage_keys(backend.prefix(), "paced", "k", &rules()).unwrap()[0];
    raw(&backend, &["DEL", key]).await;
    let asked = leased.limiter().metrics().redis_decisions;

    let d = leased.try_acquire_n(2).await.unwrap();
    assert_eq!((d.allowed, d.source), (false, Source::Lease), "{d:?}");
    // One token of the pace back: 5 minutes at 12 an hour.
    assert!(d.retry_after > Duration::from_secs(290), "{d:?}");
    assert!(d.retry_after <= Duration::from_secs(300), "{d:?}");
    let held = leased.try_acquire_n(0).await.unwrap().remaining;
    assert!(held <= 12, "{held} tokens held with a lease of 12");
    assert_eq!(held, 1);
    assert_eq!(leased.limiter().metrics().redis_decisions, asked);
    // Redis's 12 are still there for the fleet.
    let other = leased_peek(&backend).await;
    assert_eq!(other, 12);
    // The token held is still spent, as the pace allows.
    assert!(leased.try_acquire().await.unwrap().allowed);
}

/// Tokens left in Redis for the key `k` of `paced`.
async fn leased_peek(backend: &RedisBackend) -> u64 {
    let limiter = RedisLimiter::builder("paced", rules(), backend.clone())
        .build()
        .unwrap();
    limiter.try_acquire_n("k", 0).await.unwrap().remaining
}

/// A refusal Redis gave with a corrupt value replaced is remembered and
/// repeated in process until its wait passes; the repeats reported the
/// same corrupt count, as if each request had found the value corrupt
/// again (a caller summing `corrupt` counted one value many times, while
/// the limiter's own counter said one).
#[tokio::test]
async fn redis_limit_lease_a_remembered_refusal_reports_no_corrupt_value() {
    let server = RedisServer::start();
    let backend = connect(&server).await;
    let leased = leased(&backend, "memo", 4);
    let key = &storage_keys(backend.prefix(), "memo", "k", &rules()).unwrap()[0];
    raw(&backend, &["SET", key, "garbage"]).await;
    let first = leased.try_acquire().await.unwrap();
    assert_eq!(
        (first.allowed, first.source, first.corrupt),
        (false, Source::Redis, 1),
        "{first:?}"
    );
    for _ in 0..3 {
        let again = leased.try_acquire().await.unwrap();
        assert_eq!(
            (again.allowed, again.source, again.corrupt),
            (false, Source::Lease, 0),
            "{again:?}"
        );
    }
    assert_eq!(leased.limiter().metrics().corrupt_values, 1);
}
