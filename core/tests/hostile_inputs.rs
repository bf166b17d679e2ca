//! a hostile or careless caller on every primitive, never a panic
//! (the core promises saturating time arithmetic and a panic-free hot
//! path), with extreme `now`s (0, `Instant::MAX`, around every word's
//! wrap), huge `n`, quotas at the limits `Quota` accepts and durations at
//! `Duration::MAX`. Run in debug builds, where integer overflow panics.
#![cfg(not(miri))]

use fusebox::breaker::{CircuitBreaker, Config, Outcome};
use fusebox::bucket::{FullPolicy, KeyedLimiter, Quota, TokenBucket};
use fusebox::histogram::Histogram;
use fusebox::{Duration, Instant};
use proptest::prelude::*;

fn instant() -> impl Strategy<Value = Instant> {
    prop_oneof![
        Just(Instant::ZERO),
        Just(Instant::MAX),
        Just(Instant::from_micros(u64::MAX - 1)),
        (0u32..64, -3i64..=3)
            .prop_map(|(b, d)| { Instant::from_micros((1u64 << b).wrapping_add_signed(d)) }),
        any::<u64>().prop_map(Instant::from_micros),
        (0u64..1 << 40).prop_map(Instant::from_micros),
    ]
}

fn quota() -> impl Strategy<Value = Quota> {
    (
        prop_oneof![Just(1u32), Just(u32::MAX), any::<u32>(), 1u32..1_000],
        prop_oneof![
            Just(1u64),
            Just(u64::MAX),
            any::<u64>(),
            1u64..10_000_000,
            Just(1u64 << 60)
        ],
        prop_oneof![Just(1u32), Just(u32::MAX), any::<u32>(), 1u32..100],
    )
        .prop_map(|(t, p, b)| {
            // An unrepresentable one falls back to its rate with burst 1,
            // then to 1/s (no rejections: long runs stay long).
            let rate = Quota::new(t.max(1), Duration::from_micros(p.max(1)));
            rate.and_then(|q| q.with_burst(b.max(1)))
                .or_else(|_| rate.and_then(|q| q.with_burst(1)))
                .or_else(|_| Quota::per_second(1))
                .unwrap()
        })
}

#[derive(Clone, Debug)]
enum BucketOp {
    Take(u32, Instant),
    Available(Instant),
    Snapshot(Instant),
    Restore(u64, Instant),
    SetQuota(Quota, Instant),
    Reset,
}

fn bucket_op() -> impl Strategy<Value = BucketOp> {
    prop_oneof![
        4 => (prop_oneof![Just(1u32), Just(u32::MAX), any::<u32>(), 0u32..4], instant())
            .prop_map(|(n, t)| BucketOp::Take(n, t)),
        1 => instant().prop_map(BucketOp::Available),
        1 => instant().prop_map(BucketOp::Snapshot),
        1 => (any::<u64>(), instant()).prop_map(|(d, t)| BucketOp::Restore(d, t)),
        1 => (quota(), instant()).prop_map(|(q, t)| BucketOp::SetQuota(q, t)),
        1 => Just(BucketOp::Reset),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn token_bucket_never_panics(q in quota(), ops in prop::collection::vec(bucket_op(), 1..40)) {
        let b = TokenBucket::new(q);
        for op in ops {
            match op {
                BucketOp::Take(n, t) => { let _ = b.try_acquire_n(n, t); let _ = b.try_acquire(t); }
                BucketOp::Available(t) => { prop_assert!(b.available(t) <= b.quota().burst()); }
                BucketOp::Snapshot(t) => { let _ = b.snapshot(t); }
                BucketOp::Restore(d, t) => b.restore(&fusebox::bucket::BucketSnapshot { until_full: Duration::from_micros(d) }, t),
                BucketOp::SetQuota(q, t) => { let _ = b.set_quota(q, t); }
                BucketOp::Reset => b.reset(),
            }
        }
    }

    #[test]
    fn keyed_limiter_never_panics(
        q0 in quota(), q1 in quota(),
        ops in prop::collection::vec((0u8..12, bucket_op()), 1..60),
    ) {
        let Ok(k) = KeyedLimiter::<u8, 4, 2>::with_tiers([q0, q1], FullPolicy::Overflow(q0)) else {
            return Ok(());
        };
        let k = k.with_tier_fn(|key| usize::from(*key % 2));
        for (key, op) in ops {
            match op {
                BucketOp::Take(n, t) => { let _ = k.try_acquire_n(&key, n, t); let _ = k.try_acquire_left(&key, t); }
                BucketOp::Available(t) | BucketOp::Snapshot(t) => { let _ = k.available(&key, t); }
                BucketOp::Restore(_, t) => { let _ = k.try_acquire_tier(&key, usize::from(key % 3), t); }
                BucketOp::SetQuota(q, t) => { let _ = k.set_quota(usize::from(key % 3), q, t); let _ = k.set_overflow_quota(q, t); }
                BucketOp::Reset => { let _ = k.metrics(); }
            }
        }
    }

    #[test]
    fn breaker_never_panics(
        open_ms in prop_oneof![Just(1u64), Just(17_179_000u64), 1u64..100_000],
        ops in prop::collection::vec((0u8..4, instant(), prop_oneof![Just(Duration::MAX), Just(Duration::ZERO), any::<u64>().prop_map(Duration::from_micros)]), 1..80),
    ) {
        let configs = [
            Config::builder().consecutive_failures(2).open_for(Duration::from_millis(open_ms)).build(),
            Config::builder().failure_rate(50).window(8).minimum_calls(2).slow_call(Duration::from_micros(u64::MAX / 2), 50).open_for(Duration::from_millis(open_ms)).max_open_for(Duration::from_millis(open_ms).saturating_mul(1 << 15)).build(),
        ];
        for c in configs.into_iter().flatten() {
            let b = CircuitBreaker::new(c);
            let mut held = Vec::new();
            for &(what, now, elapsed) in &ops {
                match what {
                    0 => if let Ok(p) = b.try_acquire(now) { p.record(Outcome::Failure, now, elapsed); },
                    1 => if let Ok(p) = b.try_acquire(now) { p.record(Outcome::Success, now, elapsed); },
                    2 => if let Ok(p) = b.try_acquire(now) { held.push(p); },
                    _ => {
                        if let Some(p) = held.pop() { p.record(Outcome::Failure, now, elapsed); }
                        let s = b.snapshot(now);
                        let _ = b.restore(&s, now);
                        let _ = b.state(now);
                    }
                }
            }
        }
    }

    #[test]
    fn histogram_never_panics(values in prop::collection::vec((any::<u64>(), prop_oneof![Just(0u64), Just(1), Just(u64::MAX), any::<u64>()]), 1..40), q in 0.0f64..=100.0) {
        let h: Histogram<300> = Histogram::new();
        for &(v, n) in &values {
            h.record(v);
            h.record_n(v, n);
        }
        let _ = (h.count(), h.sum(), h.mean(), h.percentile(q), h.min(), h.max(), h.clamped());
        let other: Histogram<300> = Histogram::new();
        let _ = other.merge_buckets(h.buckets());
    }
}
