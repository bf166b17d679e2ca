//! Leasing: instances take tokens from Redis in batches and spend them
//! locally; over any window the fleet admits at most
//! `burst + rate·T + instances × lease`, and far fewer round trips are made.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use crate::common::redis_server::RedisServer;
use fusebox::bucket::Quota;
use fusebox_std::backend::{
    BackendError, LeasedLimiter, RedisBackend, RedisConfig, RedisLimiter, Rules, Source,
};
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_limit_leases_over_admit_at_most_instances_times_lease() {
    let server = RedisServer::start();
    let (rate, burst, lease, instances) = (200u32, 40u32, 10u32, 4u32);
    let rules = Rules::single(
        "per_second",
        Quota::per_second(rate).unwrap().with_burst(burst).unwrap(),
    )
    .unwrap();
    let run_for = Duration::from_millis(1_500);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..instances {
        let backend =
            RedisBackend::connect(RedisConfig::new(server.url()).timeout(Duration::from_secs(2)))
                .await
                .unwrap();
        let limiter = RedisLimiter::builder("leased", rules.clone(), backend)
            .build()
            .unwrap();
        let leased =
            Arc::new(LeasedLimiter::new(limiter, "shared", lease, Duration::from_secs(1)).unwrap());
        // Two tasks per instance, sharing its lease.
        for _ in 0..2 {
            let leased = Arc::clone(&leased);
            tasks.push(tokio::spawn(async move {
                let mut admitted = Vec::new();
                let mut from_lease = 0u64;
                while start.elapsed() < run_for {
                    let sent = start.elapsed();
                    let d = leased.try_acquire().await.unwrap();
                    let received = start.elapsed();
                    assert!(matches!(d.source, Source::Redis | Source::Lease), "{d:?}");
                    if d.allowed {
                        admitted.push((sent, received));
                        from_lease += u64::from(d.source == Source::Lease);
                    } else {
                        tokio::task::yield_now().await;
                    }
                }
                (
                    admitted,
                    from_lease,
                    leased.limiter().metrics().redis_decisions,
                )
            }));
        }
    }
    let mut admitted = Vec::new();
    let mut from_lease = 0;
    let mut round_trips = 0;
    for task in tasks {
        let (a, l, r) = task.await.unwrap();
        admitted.extend(a);
        from_lease += l;
        round_trips = round_trips.max(r); // per instance, counted twice
    }
    let extra = u64::from(instances * lease);
    common::assert_window_bound(&mut admitted, burst.into(), rate.into(), extra);
    // Over the whole run nothing beyond what Redis handed out.
    let total = start.elapsed();
    let handed_out = u64::from(burst) + (u128::from(rate) * total.as_micros() / 1_000_000) as u64;
    assert!(
        admitted.len() as u64 <= handed_out,
        "{} > {handed_out}",
        admitted.len()
    );
    assert!(
        admitted.len() as u64 >= u64::from(burst + rate),
        "{} admitted",
        admitted.len()
    );
    // Most tokens were spent locally, without a round trip.
    assert!(
        from_lease * 10 >= admitted.len() as u64 * 8,
        "{from_lease} of {}",
        admitted.len()
    );
}

#[tokio::test]
async fn redis_limit_lease_larger_than_the_burst_is_refused() {
    let server = RedisServer::start();
    let backend = RedisBackend::connect(RedisConfig::new(server.url()))
        .await
        .unwrap();
    let rules = Rules::single("per_second", Quota::per_second(5).unwrap()).unwrap();
    let limiter = RedisLimiter::builder("lease_size", rules, backend)
        .build()
        .unwrap();
    assert_eq!(
        LeasedLimiter::new(limiter, "k", 6, Duration::from_secs(1)).unwrap_err(),
        BackendError::InsufficientCapacity {
            requested: 6,
            burst: 5
        }
    );
}

/// A zero time to live gave every lease up at the next request: each
/// request leased anew and wasted the rest, so 100 requests on a quota of
/// 100 an hour with leases of 10 admitted 10 (found by a hostile review).
/// Refused, as zero timeouts are.
#[tokio::test]
async fn redis_limit_a_zero_lease_ttl_is_refused() {
    // Nothing listens on port 1: refused before any round trip.
    let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:1")).unwrap();
    let rules = Rules::single("per_hour", Quota::per_hour(100).unwrap()).unwrap();
    let limiter = RedisLimiter::builder("lease_ttl", rules, backend)
        .build()
        .unwrap();
    let refused = LeasedLimiter::new(limiter, "k", 10, Duration::ZERO).map(|l| l.lease());
    assert!(
        matches!(refused, Err(BackendError::InvalidConfig(_))),
        "{refused:?}"
    );
}

#[tokio::test]
async fn redis_limit_lease_takes_what_is_left_when_less_than_a_lease() {
    let server = RedisServer::start();
    let backend =
        RedisBackend::connect(RedisConfig::new(server.url()).timeout(Duration::from_secs(2)))
            .await
            .unwrap();
    let rules = Rules::single("per_minute", Quota::per_minute(12).unwrap()).unwrap();
    let limiter = RedisLimiter::builder("lease_rest", rules.clone(), backend.clone())
        .build()
        .unwrap();
    let leased = LeasedLimiter::new(limiter, "k", 5, Duration::from_secs(60)).unwrap();
    // Two leases of 5, then the 2 left: 12 admitted, the 13th refused.
    for i in 0..12 {
        assert!(leased.try_acquire().await.unwrap().allowed, "token {i}");
    }
    // This instance spent the whole burst: its local pace refuses the
    // 13th before any round trip (a lease it could not spend would be
    // taken from the fleet for nothing).
    let d = leased.try_acquire().await.unwrap();
    assert_eq!((d.allowed, d.source), (false, Source::Lease));
    assert!(d.retry_after > Duration::ZERO && d.retry_after <= Duration::from_secs(5));
    assert_eq!(
        leased.limiter().metrics().redis_decisions,
        3,
        "lease, lease, the 2 left in one round trip"
    );
    // Another instance, whose pace is full, is refused by Redis; the
    // refusal is remembered until its wait passes: no round trip.
    let other = RedisLimiter::builder("lease_rest", rules, backend)
        .build()
        .unwrap();
    let other = LeasedLimiter::new(other, "k", 5, Duration::from_secs(60)).unwrap();
    let d = other.try_acquire().await.unwrap();
    assert_eq!((d.allowed, d.source), (false, Source::Redis));
    for _ in 0..10 {
        let again = other.try_acquire().await.unwrap();
        assert_eq!((again.allowed, again.source), (false, Source::Lease));
        assert!(again.retry_after <= d.retry_after && again.retry_after > Duration::ZERO);
    }
    assert_eq!(other.limiter().metrics().redis_decisions, 1);
}
