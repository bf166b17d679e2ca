//! The Lua GCRA decides exactly as the core `TokenBucket` on the same
//! schedule of (time, n) requests.
//!
//! How the time is shared: the script takes an optional last argument
//! `now` (µs) in place of Redis `TIME`; only `RedisBackend::decide_at`
//! sends it (production calls never do). Each case replays one random
//! schedule against a core bucket at the same instants and against the
//! script under a fresh key, and compares every decision: allowed or not,
//! the wait, the tokens left and the time until full. A second property
//! checks multi-rule requests against the contract written on core
//! buckets: all or none, the longest wait, the fewest tokens left.

use std::time::Duration;

use crate::common::redis_server::RedisServer;
use fusebox::bucket::{AcquireError, Quota, TokenBucket};
use fusebox::Instant;
use fusebox_std::backend::{BackendError, Decision, RedisBackend, RedisConfig, Rule, Rules};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// A realistic Unix time in µs (2027), where the script's arithmetic is
/// closest to its 2^53 limit.
const T0: u64 = 1_800_000_000_000_000;
/// Schedules stop 50 years after `T0`: the script's time range ends where
/// `now + burst·T` reaches 2^53 µs (2255, less the rule's refill time).
const HORIZON: u64 = 50 * 365 * 86_400_000_000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn connect(rt: &tokio::runtime::Runtime, server: &RedisServer) -> RedisBackend {
    rt.block_on(RedisBackend::connect(
        RedisConfig::new(server.url()).timeout(Duration::from_secs(2)),
    ))
    .expect("connect")
}

/// What the core says about `n` tokens at `now`, as the backend would.
fn core_decision(bucket: &TokenBucket, n: u32, now: u64) -> Result<(bool, Duration), BackendError> {
    let at = Instant::from_micros(now);
    match bucket.try_acquire_n(n, at) {
        Ok(()) => Ok((true, Duration::ZERO)),
        Err(AcquireError::RateLimited(l)) => Ok((false, l.retry_after.into())),
        Err(AcquireError::InsufficientCapacity(e)) => Err(BackendError::InsufficientCapacity {
            requested: e.requested,
            burst: e.burst,
        }),
        Err(e) => panic!("unexpected {e:?}"),
    }
}

fn quota() -> impl Strategy<Value = Quota> {
    let tokens = prop_oneof![
        Just(1u32),
        Just(3),
        Just(7),
        Just(1_000),
        Just(65_537),
        Just(100_003),
        Just(10_000_000),
        1u32..=500,
    ];
    let period = prop_oneof![
        Just(1_000_000u64),
        Just(60_000_000),
        Just(86_400_000_000),
        Just(1_000),
        Just(7),
        1u64..=10_000_000,
    ];
    let burst = prop_oneof![1u32..=20, 1u32..=10_000];
    (tokens, period, burst).prop_filter_map("representable", |(t, p, b)| {
        let q = Quota::new(t, fusebox::Duration::from_micros(p))
            .ok()?
            .with_burst(b)
            .ok()?;
        Rule::new("r", q).ok().map(|_| q)
    })
}

/// A schedule: steps forward in thousandths of the time to refill the
/// whole burst (often zero), and raw `n`s reduced to `0..=burst + 1`.
fn schedule() -> impl Strategy<Value = Vec<(u32, u32)>> {
    proptest::collection::vec(
        (
            prop_oneof![Just(0u32), 0u32..=30, 0u32..=1_500],
            any::<u32>(),
        ),
        1..60,
    )
}

#[test]
fn redis_limit_script_decides_as_the_core_bucket_on_random_schedules() {
    let server = RedisServer::start();
    let rt = runtime();
    let backend = connect(&rt, &server);
    let mut runner = TestRunner::new(Config {
        cases: 48,
        failure_persistence: None,
        ..Config::default()
    });
    let case = std::cell::Cell::new(0u32);
    runner
        .run(&(quota(), schedule()), |(quota, steps)| {
            case.set(case.get() + 1);
            let key = format!("case{}", case.get());
            let rules = Rules::single("r", quota).unwrap();
            let bucket = TokenBucket::new(quota);
            let fill = u128::from(quota.burst()) * u128::from(quota.period().as_micros())
                / u128::from(quota.tokens())
                + 1;
            let mut now = T0;
            for (i, (step, raw_n)) in steps.into_iter().enumerate() {
                now += (fill * u128::from(step) / 1_000) as u64;
                if now - T0 > HORIZON {
                    break; // past the script's documented time range
                }
                let n = raw_n % (quota.burst() + 2);
                let expected = core_decision(&bucket, n, now);
                let got: Result<Decision, BackendError> =
                    rt.block_on(backend.decide_at("diff", &key, &rules, n, now));
                let context = format!("{quota:?}, step {i}, n {n}, t+{}", now - T0);
                match (expected, got) {
                    (Ok((allowed, retry)), Ok(d)) => {
                        prop_assert_eq!(
                            (d.allowed, d.retry_after),
                            (allowed, retry),
                            "{}",
                            context
                        );
                        let at = Instant::from_micros(now);
                        prop_assert_eq!(
                            d.remaining,
                            u64::from(bucket.available(at)),
                            "{}",
                            context
                        );
                        let until_full: Duration = bucket.snapshot(at).until_full.into();
                        prop_assert_eq!(d.reset, until_full, "{}", context);
                    }
                    (Err(e), Err(g)) => prop_assert_eq!(e, g, "{}", context),
                    (e, g) => {
                        return Err(TestCaseError::fail(format!(
                            "{context}: core {e:?}, redis {g:?}"
                        )))
                    }
                }
            }
            Ok(())
        })
        .unwrap();
}

/// The contract of a multi-rule request, on core buckets: admitted iff
/// every bucket has `n` tokens at `now`, then taken from each; refused
/// with the longest wait among the buckets that lack them, taking none.
fn core_all_or_none(buckets: &[TokenBucket], n: u32, now: u64) -> (bool, Duration, u64) {
    let at = Instant::from_micros(now);
    let allowed = buckets.iter().all(|b| b.available(at) >= n);
    let mut wait = Duration::ZERO;
    for b in buckets {
        if allowed {
            b.try_acquire_n(n, at).expect("available");
        } else if b.available(at) < n {
            match b.try_acquire_n(n, at) {
                Err(AcquireError::RateLimited(l)) => wait = wait.max(l.retry_after.into()),
                other => panic!("{other:?}"),
            }
        }
    }
    let remaining = buckets
        .iter()
        .map(|b| u64::from(b.available(at)))
        .min()
        .unwrap();
    (allowed, wait, remaining)
}

#[test]
fn redis_limit_multi_rule_script_is_all_or_none_over_core_buckets() {
    let server = RedisServer::start();
    let rt = runtime();
    let backend = connect(&rt, &server);
    let mut runner = TestRunner::new(Config {
        cases: 32,
        failure_persistence: None,
        ..Config::default()
    });
    let case = std::cell::Cell::new(0u32);
    let rules = proptest::collection::vec(quota(), 2..4);
    runner
        .run(&(rules, schedule()), |(quotas, steps)| {
            case.set(case.get() + 1);
            let key = format!("multi{}", case.get());
            let names = ["a", "b", "c"];
            let rules = Rules::new(
                quotas
                    .iter()
                    .zip(names)
                    .map(|(q, name)| Rule::new(name, *q).unwrap()),
            )
            .unwrap();
            let buckets: Vec<TokenBucket> = quotas.iter().map(|q| TokenBucket::new(*q)).collect();
            let burst = rules.min_burst();
            let fill = quotas
                .iter()
                .map(|q| {
                    u128::from(q.burst()) * u128::from(q.period().as_micros())
                        / u128::from(q.tokens())
                })
                .min()
                .unwrap()
                + 1;
            let mut now = T0;
            for (i, (step, raw_n)) in steps.into_iter().enumerate() {
                now += (fill * u128::from(step) / 1_000) as u64;
                if now - T0 > HORIZON {
                    break;
                }
                let n = raw_n % (burst + 1);
                let (allowed, wait, remaining) = core_all_or_none(&buckets, n, now);
                let d = rt
                    .block_on(backend.decide_at("multi", &key, &rules, n, now))
                    .unwrap();
                let context = format!("{quotas:?}, step {i}, n {n}, t+{}", now - T0);
                prop_assert_eq!(
                    (d.allowed, d.retry_after, d.remaining),
                    (allowed, wait, remaining),
                    "{}",
                    context
                );
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn redis_limit_rates_from_one_per_day_to_ten_million_per_second() {
    let server = RedisServer::start();
    let rt = runtime();
    let backend = connect(&rt, &server);
    let decide = |key: &str, quota: Quota, n: u32, now: u64| {
        let rules = Rules::single("r", quota).unwrap();
        rt.block_on(backend.decide_at("rates", key, &rules, n, now))
            .unwrap()
    };
    // 10 M/s: the whole burst at once, then exactly 10 tokens per µs.
    let fast = Quota::per_second(10_000_000).unwrap();
    assert!(decide("fast", fast, 10_000_000, T0).allowed);
    let d = decide("fast", fast, 1, T0);
    assert_eq!(
        (d.allowed, d.retry_after),
        (false, Duration::from_micros(1))
    );
    assert!(decide("fast", fast, 10, T0 + 1).allowed);
    assert!(!decide("fast", fast, 1, T0 + 1).allowed);
    assert_eq!(decide("fast", fast, 1_000, T0 + 101).remaining, 0);
    // 1/day.
    let slow = Quota::new(1, fusebox::Duration::from_secs(86_400)).unwrap();
    assert!(decide("slow", slow, 1, T0).allowed);
    let d = decide("slow", slow, 1, T0 + 1);
    assert_eq!(d.retry_after, Duration::from_micros(86_400_000_000 - 1));
    assert!(!decide("slow", slow, 1, T0 + 86_400_000_000 - 1).allowed);
    assert!(decide("slow", slow, 1, T0 + 86_400_000_000).allowed);
    // A rate that is no whole number of µs per token: 3/s.
    let third = Quota::per_second(3).unwrap().with_burst(1).unwrap();
    assert!(decide("third", third, 1, T0).allowed);
    assert_eq!(
        decide("third", third, 1, T0).retry_after,
        Duration::from_micros(333_334)
    );
    assert!(decide("third", third, 1, T0 + 333_334).allowed);
    assert!(
        !decide("third", third, 1, T0 + 666_667).allowed,
        "2/3 s after the first, 1 µs early"
    );
    assert!(decide("third", third, 1, T0 + 666_668).allowed);
}
