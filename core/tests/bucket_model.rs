//! Property tests of `TokenBucket`: against an independent sequential
//! token-bucket model, and the exactness invariant under any schedule.
#![cfg(not(miri))]

use fusebox::bucket::{AcquireError, Quota, TokenBucket};
use fusebox::{Duration, Instant};
use proptest::prelude::*;

/// A textbook token bucket: the level is kept in units of 1/period_µs of a
/// token, so refills are exact integers.
struct Reference {
    tokens: u128,
    period: u128,
    burst: u128,
    level: u128,
    last: u64,
}

impl Reference {
    fn new(tokens: u32, period: u64, burst: u32) -> Self {
        let (tokens, period, burst) = (u128::from(tokens), u128::from(period), u128::from(burst));
        Self {
            tokens,
            period,
            burst,
            level: burst * period,
            last: 0,
        }
    }

    /// Monotonic `now` only.
    fn acquire(&mut self, n: u32, now: u64) -> Result<(), u64> {
        let elapsed = u128::from(now - self.last);
        self.level = (self.level + elapsed * self.tokens).min(self.burst * self.period);
        self.last = now;
        let cost = u128::from(n) * self.period;
        if self.level >= cost {
            self.level -= cost;
            Ok(())
        } else {
            Err(((cost - self.level).div_ceil(self.tokens)) as u64)
        }
    }
}

fn quota() -> impl Strategy<Value = (u32, u64, u32)> {
    prop_oneof![
        // Everyday rates.
        (
            1u32..200,
            prop_oneof![Just(1_000_000u64), Just(60_000_000)],
            1u32..50
        ),
        // Awkward ratios: tokens coprime with the period.
        (1u32..65_536, 1u64..5_000_000, 1u32..1_000),
        // Very fast and very slow.
        (Just(10_000_000u32), Just(1_000_000u64), 1u32..1_000),
        (Just(1u32), Just(86_400_000_000u64), 1u32..5),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 384, ..ProptestConfig::default() })]

    #[test]
    fn matches_the_reference_on_monotonic_time(
        (tokens, period, burst) in quota(),
        start in 0u64..(1 << 50),
        steps in prop::collection::vec((0u64..3_000_000, 1u32..8), 1..200),
    ) {
        let q = Quota::new(tokens, Duration::from_micros(period)).unwrap().with_burst(burst).unwrap();
        let bucket = TokenBucket::new(q);
        let mut model = Reference::new(tokens, period, burst);
        model.last = start;
        let mut now = start;
        for (dt, n) in steps {
            now += dt;
            let n = n.min(burst);
            let got = bucket.try_acquire_n(n, Instant::from_micros(now));
            let want = model.acquire(n, now);
            match (got, want) {
                (Ok(()), Ok(())) => {}
                (Err(AcquireError::RateLimited(r)), Err(wait)) => {
                    prop_assert_eq!(r.retry_after.as_micros(), wait);
                }
                (got, want) => prop_assert!(false, "at {}: got {:?}, model {:?}", now, got, want),
            }
            let level_tokens = (model.level / model.period) as u32;
            prop_assert_eq!(bucket.available(Instant::from_micros(now)), level_tokens);
        }
    }

    #[test]
    fn never_admits_more_than_burst_plus_rate_times_t(
        (tokens, period, burst) in quota(),
        steps in prop::collection::vec((-2_000_000i64..3_000_000, 1u32..4), 1..150),
    ) {
        let q = Quota::new(tokens, Duration::from_micros(period)).unwrap().with_burst(burst).unwrap();
        let bucket = TokenBucket::new(q);
        let mut now: i64 = 1 << 40;
        let mut admitted: Vec<(u64, u32)> = Vec::new();
        for (dt, n) in steps {
            // Time mostly moves forward but may jump back (a stale clock read).
            now = (now + dt).max(0);
            let n = n.min(burst);
            let at = u64::try_from(now).expect("clamped at 0");
            if bucket.try_acquire_n(n, Instant::from_micros(at)).is_ok() {
                admitted.push((at, n));
            }
        }
        admitted.sort_unstable();
        for i in 0..admitted.len() {
            let mut count = 0u128;
            for j in i..admitted.len() {
                count += u128::from(admitted[j].1);
                let span = u128::from(admitted[j].0 - admitted[i].0);
                let limit = u128::from(burst) + span * u128::from(tokens) / u128::from(period);
                prop_assert!(count <= limit, "{} tokens in {} µs > {}", count, span, limit);
            }
        }
    }

    #[test]
    fn retry_after_is_exact(
        (tokens, period, burst) in quota(),
        used in 1u32..50,
        n in 1u32..10,
    ) {
        let q = Quota::new(tokens, Duration::from_micros(period)).unwrap().with_burst(burst).unwrap();
        let bucket = TokenBucket::new(q);
        let now = Instant::from_secs(1_000);
        let _ = bucket.try_acquire_n(used.min(burst), now);
        let n = n.min(burst);
        if let Err(AcquireError::RateLimited(r)) = bucket.try_acquire_n(n, now) {
            let early = now + r.retry_after - Duration::from_micros(1);
            prop_assert!(bucket.try_acquire_n(n, early).is_err());
            prop_assert!(bucket.try_acquire_n(n, now + r.retry_after).is_ok());
        }
    }
}
