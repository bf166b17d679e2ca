//! go-redis/redis_rate's `rate_test.go` (v10) re-expressed against
//! fusebox's leased Redis limiter ([`LeasedLimiter`]), on a real
//! redis-server started by the test.
//!
//! redis_rate's `AllowAtMost` takes as many tokens as the bucket holds, up
//! to `n`; fusebox's counterpart is the lease a [`LeasedLimiter`] takes
//! from Redis ("`lease` tokens, or when Redis holds fewer, all it holds if
//! that covers the request"). `TestAllowAtMost` drains a bucket in
//! uneven steps and expects every request that the tokens left cover to
//! be admitted, and a refusal to name the wait for the tokens missing
//! (its `RetryAfter` after an `AllowAtMost` on an empty bucket is the
//! time to earn one token, not `n`). Where the contracts differ, fusebox's
//! docs are followed: a request larger than the burst is an error
//! (`InsufficientCapacity`), not a refusal with a wait of -1 or 99 s.
//!
//! The quotas refill one token every 5 s and the tests take well under
//! that: no scheduling delay changes a count (a token refilled by a slow
//! run can only turn an expected refusal into an admission, and no test
//! here expects a refusal before the bucket is drained).

use std::time::Duration;

use crate::common::redis_server::RedisServer;
use fusebox::bucket::Quota;
use fusebox_std::backend::{
    BackendError, Degrade, LeasedLimiter, RedisBackend, RedisConfig, RedisLimiter, Rules, Source,
};

async fn leased(server: &RedisServer, name: &str, rules: Rules, lease: u32) -> LeasedLimiter {
    let backend =
        RedisBackend::connect(RedisConfig::new(server.url()).timeout(Duration::from_secs(5)))
            .await
            .unwrap();
    let limiter = RedisLimiter::builder(name, rules, backend).build().unwrap();
    LeasedLimiter::new(limiter, "k", lease, Duration::from_secs(600)).unwrap()
}

/// redis_rate `TestAllowAtMost`: 10 a second, take 1, then at most 2 (2
/// taken, 7 left), then at most 10 (the 7 left). Here: 12 a minute leased
/// 5 at a time, requests of 3. After three requests this instance holds 1
/// leased token and Redis 2: the fourth request for 3 is covered by them
/// and must be admitted (all 12 tokens then spent, none twice), and only
/// the fifth refused, with a wait of at most the time to earn its 3 tokens.
#[tokio::test]
async fn a_request_covered_by_held_and_redis_tokens_is_admitted() {
    let server = RedisServer::start();
    let rules = Rules::single("per_minute", Quota::per_minute(12).unwrap()).unwrap();
    let leased = leased(&server, "atmost", rules, 5).await;
    for i in 0..4 {
        let d = leased.try_acquire_n(3).await.unwrap();
        assert!(d.allowed, "request {i} of 3 tokens (12 in all): {d:?}");
    }
    let d = leased.try_acquire_n(3).await.unwrap();
    assert!(!d.allowed, "the 13th to 15th tokens: {d:?}");
    assert!(d.retry_after <= Duration::from_secs(15), "{d:?}");
    // Nothing was spent beyond what Redis handed out: a peek of the
    // instance shows no token held, and Redis none left.
    let peek = leased.try_acquire_n(0).await.unwrap();
    assert_eq!((peek.allowed, peek.remaining), (true, 0), "{peek:?}");
    let redis = leased.limiter().try_acquire_n("k", 0).await.unwrap();
    assert_eq!(
        (redis.source, redis.remaining),
        (Source::Redis, 0),
        "{redis:?}"
    );
}

/// redis_rate `TestAllowAtMost`'s last step, `AllowN(1000)` with a burst
/// of 10: never admissible. fusebox's contract makes it an error at once,
/// whatever this instance holds (documented as `RedisLimiter`'s), never a
/// refusal whose wait a client would sleep forever.
#[tokio::test]
async fn more_than_the_burst_is_an_error_even_with_tokens_held() {
    let server = RedisServer::start();
    let rules = Rules::single("per_minute", Quota::per_minute(12).unwrap()).unwrap();
    let leased = leased(&server, "over", rules, 5).await;
    let e = leased.try_acquire_n(13).await.unwrap_err();
    assert_eq!(
        e,
        BackendError::InsufficientCapacity {
            requested: 13,
            burst: 12
        }
    );
    assert!(leased.try_acquire().await.unwrap().allowed);
    let e = leased.try_acquire_n(13).await.unwrap_err();
    assert!(
        matches!(e, BackendError::InsufficientCapacity { .. }),
        "{e:?}"
    );
}

/// redis_rate `TestAllowAtMost`: `AllowAtMost` on an empty bucket names
/// the wait for what is missing (99 ms, one token of 10 a second), not for
/// all it asked. Here: 11 a minute leased 5 at a time, requests of 3:
/// after three this instance holds 1 token and Redis 1, so a fourth
/// request of 3 misses one token, earned in 60/11 s; the refusal must name
/// at most that (asking Redis for all 3 named two tokens' time, 10.9 s).
#[tokio::test]
async fn a_refusal_names_the_wait_for_the_tokens_missing() {
    let server = RedisServer::start();
    let rules = Rules::single("per_minute", Quota::per_minute(11).unwrap()).unwrap();
    let leased = leased(&server, "missing", rules, 5).await;
    for i in 0..3 {
        let d = leased.try_acquire_n(3).await.unwrap();
        assert!(d.allowed, "request {i}: {d:?}");
    }
    let d = leased.try_acquire_n(3).await.unwrap();
    assert!(!d.allowed, "9 spent, 1 held, 1 in Redis: {d:?}");
    assert!(
        d.retry_after <= Duration::from_micros(5_454_546) && d.retry_after > Duration::from_secs(3),
        "one token's time (60/11 s, less the run so far, which a loaded machine may make long): {d:?}"
    );
    // The token held is still held: a request of 1 is spent from it,
    // without a round trip.
    let before = leased.limiter().metrics().redis_decisions;
    let one = leased.try_acquire().await.unwrap();
    assert_eq!((one.allowed, one.source), (true, Source::Lease), "{one:?}");
    assert_eq!(leased.limiter().metrics().redis_decisions, before);
}

/// redis_rate's fallback limiter (`TestRedisIsDown`: a local limiter
/// decides while Redis is unreachable) meets the lease: with Redis gone,
/// a request of 3 from an instance holding 1 leased token is decided by
/// the `Local` policy as a request of 3 (its documented share of the
/// quota), not as the 2 tokens the lease would have added to the one held.
#[tokio::test]
async fn while_redis_is_down_the_local_policy_decides_the_whole_request() {
    let mut server = RedisServer::start();
    let rules = Rules::single("per_minute", Quota::per_minute(12).unwrap()).unwrap();
    let backend = RedisBackend::connect(server.outage_config(Duration::from_millis(300)))
        .await
        .unwrap();
    let limiter = RedisLimiter::builder("down", rules, backend)
        .degrade(Degrade::Local { instances: 1 })
        .background_probe(false)
        .probe_backoff(Duration::from_secs(600), Duration::from_secs(600))
        .build()
        .unwrap();
    let leased = LeasedLimiter::new(limiter, "k", 5, Duration::from_secs(600)).unwrap();
    // 4 spent from a lease of 5: 1 held.
    let d = leased.try_acquire_n(4).await.unwrap();
    assert_eq!((d.allowed, d.source), (true, Source::Lease), "{d:?}");
    server.kill();
    let d = leased.try_acquire_n(3).await.unwrap();
    assert_eq!((d.allowed, d.source), (true, Source::Local), "{d:?}");
    // The local share (12, one instance) was charged the whole request.
    let peek = leased.limiter().try_acquire_n("k", 0).await.unwrap();
    assert_eq!(
        (peek.source, peek.remaining),
        (Source::Local, 9),
        "{peek:?}"
    );
}

/// redis_rate's and node-rate-limiter-flexible's concurrency cases (many
/// goroutines on one key, never more admitted than the limit), with
/// requests of mixed sizes on leased instances: 3 instances of 3 tasks
/// each ask for 1 to 7 tokens at a time from one bucket of 60 (refilled
/// one a minute, so none during the run). Every token Redis handed out is
/// spent once or still held, never both and never lost: admitted + held +
/// left in Redis = 60 exactly; and each admission was at most its request.
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn mixed_sizes_on_shared_leases_spend_each_token_once() {
    let server = RedisServer::start();
    let rules = Rules::single("per_hour", Quota::per_hour(60).unwrap()).unwrap();
    let start = std::time::Instant::now();
    let mut instances = Vec::new();
    for i in 0..3 {
        instances.push(std::sync::Arc::new(
            leased(&server, "mixed", rules.clone(), 4 + i).await,
        ));
    }
    let mut tasks = Vec::new();
    for (i, leased) in instances.iter().enumerate() {
        for t in 0..3u64 {
            let leased = std::sync::Arc::clone(leased);
            let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ (i as u64 * 3 + t + 1);
            tasks.push(tokio::spawn(async move {
                let mut spent = 0u64;
                for _ in 0..40 {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let n = 1 + (seed % 7) as u32;
                    let d = leased.try_acquire_n(n).await.unwrap();
                    assert!(matches!(d.source, Source::Redis | Source::Lease), "{d:?}");
                    if d.allowed {
                        spent += u64::from(n);
                    }
                    tokio::task::yield_now().await;
                }
                spent
            }));
        }
    }
    let mut admitted = 0;
    for task in tasks {
        admitted += task.await.unwrap();
    }
    let mut held = 0;
    for leased in &instances {
        let peek = leased.try_acquire_n(0).await.unwrap();
        held += peek.remaining;
    }
    let left = instances[0]
        .limiter()
        .try_acquire_n("k", 0)
        .await
        .unwrap()
        .remaining;
    assert!(
        start.elapsed() < Duration::from_secs(55),
        "a token refilled"
    );
    assert_eq!(
        admitted + held + left,
        60,
        "admitted {admitted}, held {held}, left in Redis {left}"
    );
}

/// redis_rate `TestRetryAfter`: one a millisecond, burst 1, a thousand
/// calls as fast as they come; every refusal names a wait of at most a
/// millisecond (here from Redis, from the refusal the instance remembers,
/// or from its local pace alike), never zero, and the instance admits no
/// more than the documented bound, `burst + rate·T + instances × lease`.
#[tokio::test]
async fn every_refusal_at_one_a_millisecond_names_at_most_a_millisecond() {
    let server = RedisServer::start();
    let quota = Quota::new(1, fusebox::Duration::from_millis(1)).unwrap();
    let rules = Rules::single("per_ms", quota).unwrap();
    let leased = leased(&server, "per_ms", rules, 1).await;
    let start = std::time::Instant::now();
    let mut admitted = 0u64;
    for _ in 0..1_000 {
        let d = leased.try_acquire().await.unwrap();
        if d.allowed {
            admitted += 1;
        } else {
            assert!(
                d.retry_after > Duration::ZERO && d.retry_after <= Duration::from_millis(1),
                "{d:?}"
            );
        }
    }
    let ms = u64::try_from(start.elapsed().as_millis()).unwrap();
    assert!(admitted <= 1 + ms + 1 + 1, "{admitted} in {ms} ms");
}
