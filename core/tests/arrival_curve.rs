//! The rate limiters' one promise that needs no model of their internals,
//! checked over long seeded histories: "Over any interval of length `T`, a
//! bucket admits at most `burst + ⌊rate · T⌋` tokens, whatever the
//! interleaving of callers" (the `bucket` module docs, "Exactness"), for a
//! `TokenBucket` and for every key of a `KeyedLimiter` (whose evicted keys
//! "return no fuller than they left").
//!
//! A set of admissions meets that bound over every interval of `now`s iff
//! a token bucket of depth `burst` and rate `rate`, full at the start, can
//! pay for them taken in the order of their `now`s (the arrival-curve
//! equivalence of network calculus), so the check sorts the admissions by
//! `now` and runs that exact bucket in integers: nothing in it comes from
//! the code under test. The histories read clocks up to the documented
//! backward tolerance stale, jump forward by hours (and years where the
//! words are 64 bits), and start at zero, next to wraps of 32- and 48-bit
//! words and next to `Instant::MAX`.
#![cfg(not(miri))]

use fusebox::bucket::{AcquireError, FullPolicy, KeyedError, KeyedLimiter, Quota, TokenBucket};
use fusebox::{Duration, Instant};

use crate::common::{check_curve, Rng, NARROW, STALE};

const SEC: u64 = 1_000_000;
const HOUR: u64 = 3_600 * SEC;
const YEAR: u64 = 365 * 24 * HOUR;

/// `(tokens, period µs, burst)`.
const QUOTAS: &[(u32, u64, u32)] = &[
    (1, SEC, 1),
    (10, SEC, 10),
    (3, 7 * SEC, 5),
    (1_000, SEC, 50),
    (7, 1_000, 3),
    (1, 60 * SEC, 4),
    (10_000_000, SEC, 100),
    (999_983, SEC, 17),
    (2, 3, 1),
    // The documented extremes: one per µs, billions per µs or per hour,
    // one per 12.7 days, rates that round (prime counts over prime
    // periods), and 541 a second (coarsened on 32-bit words).
    (1, 1, 1),
    (u32::MAX, 1, 1),
    (u32::MAX, HOUR, u32::MAX),
    (1, 1 << 40, 2),
    (65_537, SEC, 1_000),
    (4_294_967_291, 3_600_000_007, 7),
    (541, SEC, 541),
    (3, 1 << 33, 3),
];

/// A clock: mostly forward by about one emission interval, sometimes
/// stale by up to `stale`, sometimes jumping far ahead, and now and then
/// one reading up to `spike` ahead that the clock then comes back from
/// (the readings after it are that far behind it: within the documented
/// backward tolerance).
struct Clock {
    latest: u64,
    step: u64,
    stale: u64,
    spike: u64,
}

impl Clock {
    fn next(&mut self, rng: &mut Rng) -> u64 {
        let r = rng.below(1_000);
        if r < 5 && self.spike > 0 {
            return self.latest.saturating_add(1 + rng.below(self.spike));
        }
        let now = if r < 250 {
            self.latest.saturating_sub(rng.below(self.stale + 1))
        } else if r < 997 {
            self.latest.saturating_add(rng.below(2 * self.step + 1))
        } else if r < 999 {
            self.latest.saturating_add(rng.below(10 * HOUR))
        } else if NARROW {
            self.latest.saturating_add(HOUR * rng.below(100))
        } else {
            self.latest.saturating_add(rng.below(2 * YEAR))
        };
        self.latest = self.latest.max(now);
        now
    }
}

/// Where histories start: zero, next to wraps of 31-, 32- and 48-bit words
/// (in µs and in half-µs), and next to `Instant::MAX`.
fn starts() -> Vec<u64> {
    let mut v = vec![0, 1 << 30, (1 << 31) - 3, 1 << 32, (1 << 47) - 5, 1 << 48];
    v.push(u64::MAX - 10 * SEC);
    v.push(u64::MAX - HOUR);
    v.push(u64::MAX / 2);
    v
}

fn quotas() -> Vec<(u32, u64, u32, Quota)> {
    QUOTAS
        .iter()
        .filter_map(|&(t, p, b)| {
            let q = Quota::new(t, Duration::from_micros(p))
                .ok()?
                .with_burst(b)
                .ok()?;
            Some((t, p, b, q))
        })
        .collect()
}

fn bucket_history(seed: u64, start: u64, steps: usize) {
    let mut rng = Rng(seed | 1);
    for (tokens, period, burst, quota) in quotas() {
        let bucket = TokenBucket::new(quota);
        let step = (period / u64::from(tokens)).max(1);
        let mut clock = Clock {
            latest: start,
            step,
            stale: STALE,
            spike: if NARROW { 0 } else { 50 * SEC },
        };
        let mut admitted = Vec::new();
        for _ in 0..steps {
            let now = clock.next(&mut rng);
            let n = match rng.below(10) {
                0 => burst,
                1 => 1 + rng.below(u64::from(burst)) as u32,
                _ => 1,
            };
            match bucket.try_acquire_n(n, Instant::from_micros(now)) {
                Ok(()) => admitted.push((now, n)),
                Err(AcquireError::RateLimited(_)) => {}
                Err(e) => panic!("{e:?} for {n} of burst {burst}"),
            }
        }
        let what = format!("bucket seed {seed} start {start}");
        check_curve(&what, admitted, tokens, period, burst);
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
struct K(u16);

fn keyed_history(seed: u64, start: u64, steps: usize) {
    let mut rng = Rng(seed | 1);
    for (tokens, period, burst, quota) in quotas() {
        let Ok(limiter) = KeyedLimiter::<K, 8>::new(quota, FullPolicy::Reject) else {
            continue; // a quota too long for the keyed word
        };
        let step = (period / u64::from(tokens)).max(1);
        let mut clock = Clock {
            latest: start,
            step: step / 4 + 1,
            stale: STALE,
            // The keyed word's tolerance is 67 s at the largest scale.
            spike: if NARROW { 0 } else { 50 * SEC },
        };
        let keys = 24;
        let mut admitted = vec![Vec::new(); keys];
        let (mut allowed, mut limited) = (0u64, 0u64);
        for _ in 0..steps {
            let now = clock.next(&mut rng);
            let k = rng.below(keys as u64) as usize;
            let n = if rng.below(8) == 0 { burst } else { 1 };
            let key = K(k as u16);
            match limiter.try_acquire_n(&key, n, Instant::from_micros(now)) {
                Ok(()) => {
                    allowed += 1;
                    admitted[k].push((now, n));
                }
                Err(KeyedError::RateLimited(_) | KeyedError::TableFull) => limited += 1,
                Err(e) => panic!("{e:?}"),
            }
        }
        let m = limiter.metrics();
        assert_eq!(
            (m.allowed, m.limited),
            (allowed, limited),
            "metrics, seed {seed}"
        );
        assert!(m.keys <= 8, "{m:?}");
        for (k, a) in admitted.into_iter().enumerate() {
            let what = format!("keyed seed {seed} start {start} key {k}");
            check_curve(&what, a, tokens, period, burst);
        }
    }
}

/// Across quota changes, with clocks that never go back: "the larger
/// burst plus the larger rate times `T`" (the `bucket` module docs).
fn requota_history(seed: u64, start: u64, steps: usize) {
    let mut rng = Rng(seed | 1);
    let all = quotas();
    for _ in 0..4 {
        let a = &all[rng.below(all.len() as u64) as usize];
        let b = &all[rng.below(all.len() as u64) as usize];
        // The larger rate: tokens/period compared by cross-multiplying.
        let faster = if u128::from(a.0) * u128::from(b.1) >= u128::from(b.0) * u128::from(a.1) {
            a
        } else {
            b
        };
        let burst = a.2.max(b.2);
        let step = (faster.1 / u64::from(faster.0)).max(1);
        let mut clock = Clock {
            latest: start,
            step,
            stale: 0,
            spike: 0,
        };
        let bucket = TokenBucket::new(a.3);
        let Ok(limiter) = KeyedLimiter::<K, 4>::new(a.3, FullPolicy::Reject) else {
            continue;
        };
        if KeyedLimiter::<K, 4>::new(b.3, FullPolicy::Reject).is_err() {
            continue; // too long for the keyed word
        }
        let mut admitted = Vec::new();
        let mut keyed = vec![Vec::new(); 6];
        for _ in 0..steps {
            let now = clock.next(&mut rng);
            let at = Instant::from_micros(now);
            if rng.below(50) == 0 {
                let q = if rng.below(2) == 0 { a.3 } else { b.3 };
                bucket.set_quota(q, at);
                limiter.set_quota(0, q, at).unwrap();
                continue;
            }
            let n = if rng.below(8) == 0 {
                1 + rng.below(u64::from(burst)) as u32
            } else {
                1
            };
            if bucket.try_acquire_n(n, at).is_ok() {
                admitted.push((now, n));
            }
            let k = rng.below(6) as usize;
            if limiter.try_acquire_n(&K(k as u16), n, at).is_ok() {
                keyed[k].push((now, n));
            }
        }
        let what = format!("requota seed {seed} start {start} {a:?} {b:?}");
        check_curve(&what, admitted, faster.0, faster.1, burst);
        for (k, a) in keyed.into_iter().enumerate() {
            check_curve(&format!("{what} key {k}"), a, faster.0, faster.1, burst);
        }
    }
}

/// Under `FullPolicy::Overflow`, the keys that found no slot share one
/// bucket ("charge a shared overflow bucket. Never an unlimited pass"),
/// and the keys with a slot keep their own curves.
fn overflow_history(seed: u64, start: u64, steps: usize) {
    let mut rng = Rng(seed | 1);
    let all = quotas();
    for _ in 0..3 {
        let own = &all[rng.below(all.len() as u64) as usize];
        let shared = &all[rng.below(all.len() as u64) as usize];
        let Ok(limiter) = KeyedLimiter::<K, 4>::new(own.3, FullPolicy::Overflow(shared.3)) else {
            continue;
        };
        let step = (own.1 / u64::from(own.0)).max(1) / 8 + 1;
        let mut clock = Clock {
            latest: start,
            step,
            stale: STALE,
            // The keyed word's tolerance is 67 s at the largest scale.
            spike: if NARROW { 0 } else { 50 * SEC },
        };
        let keys = 16;
        let mut mine = vec![Vec::new(); keys];
        let mut overflow = Vec::new();
        for _ in 0..steps {
            let now = clock.next(&mut rng);
            let k = rng.below(keys as u64) as usize;
            match limiter.try_acquire_left(&K(k as u16), Instant::from_micros(now)) {
                Ok(Some(_)) => mine[k].push((now, 1)),
                Ok(None) => overflow.push((now, 1)),
                Err(KeyedError::RateLimited(_)) => {}
                Err(e) => panic!("{e:?}"),
            }
        }
        let what = format!("overflow seed {seed} start {start} {own:?} {shared:?}");
        check_curve(&what, overflow, shared.0, shared.1, shared.2);
        for (k, a) in mine.into_iter().enumerate() {
            check_curve(&format!("{what} key {k}"), a, own.0, own.1, own.2);
        }
    }
}

#[test]
fn quota_changes_meet_the_larger_curve() {
    for (i, start) in starts().into_iter().enumerate() {
        for seed in 0..seeds() {
            requota_history(seed * 37 + i as u64, start, 3_000);
        }
    }
}

#[test]
fn overflow_and_own_buckets_meet_their_curves() {
    for (i, start) in starts().into_iter().enumerate() {
        for seed in 0..seeds() {
            overflow_history(seed * 41 + i as u64, start, 4_000);
        }
    }
}

#[test]
fn token_bucket_meets_the_arrival_curve() {
    for (i, start) in starts().into_iter().enumerate() {
        for seed in 0..seeds() {
            bucket_history(seed * 31 + i as u64, start, 6_000);
        }
    }
}

#[test]
fn keyed_limiter_meets_the_arrival_curve_per_key() {
    for (i, start) in starts().into_iter().enumerate() {
        for seed in 0..seeds() {
            keyed_history(seed * 31 + i as u64, start, 6_000);
        }
    }
}

fn seeds() -> u64 {
    std::env::var("ARRIVAL_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2)
}
