//! `TokenBucket` checked *both ways* on long random histories: with exact
//! scales ("Every decision is then exact", `gcra` module docs) the bucket
//! must admit exactly what GCRA admits, refuse with exactly its wait, and
//! report exactly its state — where `bucket_long_history` (one-sided, for
//! every quota) only checks that it never admits more. From the docs of
//! `try_acquire` ("the exact time until a token is back"), `try_acquire_n`
//! (`n = 0` always succeeds; over the burst `InsufficientCapacity`),
//! `available` ("whole tokens available"), `snapshot` (`until_full` "rounded
//! up"), `restore` ("an `until_full` beyond an empty bucket is clamped to
//! empty"), `reset` ("full for any `now` within years of its last
//! admission, either way") and `RetryAfter`.
//!
//! The model is the `gcra` module docs' kernel on unbounded integers, in
//! units of `1/scale` µs (`scale = tokens / gcd(tokens, period)`): `n`
//! tokens at `now` move `tat` to `max(tat, now) + n·T`, allowed iff at most
//! `burst·T` ahead of `now`. Clocks go stale within the documented
//! tolerance, jump by several wraps of the arrival-time word (2^63 scaled
//! units, 2^31 on the 32-bit layout) and run into `Instant::MAX`; the
//! generator keeps the bucket's idle time out of the range the docs leave
//! open (64 bits: beyond the 2^62-unit horizon, modulo the wrap; 32 bits:
//! close below a multiple of the wrap). `reset` is exercised on 64 bits
//! only (its 32-bit range is a fraction of the wrap). 18 histories of
//! 20 000 operations, from 0, from just below a wrap and from near
//! `Instant::MAX`.
#![cfg(not(miri))]

use crate::common::{gcd, Rng, NARROW};
use fusebox::bucket::{
    AcquireError, BucketSnapshot, InsufficientCapacity, Quota, RateLimited, TokenBucket,
};
use fusebox::{Duration, Instant, RetryAfter};

const STEPS: usize = 20_000;
const WRAP: u128 = if NARROW { 1 << 31 } else { 1 << 63 };

/// (tokens, period µs, burst), exact scales that fit both layouts.
const SET: &[(u32, u64, u32)] = &[
    (3, 1_000_000, 1),
    (7, 100_000, 5),
    (1_000, 60_000_000, 1_000),
    (10_000_000, 1_000_000, 1),
    (1, 60_000_000, 2),
    (64, 1_000, 3),
];

struct Model {
    scale: u128,
    t: u128,
    burst: u128,
    /// `None`: full at any time (never used, or reset).
    tat: Option<u128>,
    /// The arrival time a `reset` replaced.
    anchor: Option<u128>,
}

impl Model {
    fn cap(&self) -> u128 {
        self.burst * self.t
    }
    fn ahead(&self, now: u64) -> u128 {
        let now = u128::from(now) * self.scale;
        self.tat.map_or(0, |tat| tat.saturating_sub(now))
    }
    fn acquire(&mut self, n: u32, now: u64) -> Result<(), AcquireError> {
        if u128::from(n) > self.burst {
            let burst = self.burst as u32;
            return Err(InsufficientCapacity {
                requested: n,
                burst,
            }
            .into());
        }
        if n == 0 {
            return Ok(());
        }
        let needed = self.ahead(now) + u128::from(n) * self.t;
        if needed > self.cap() {
            let wait = (needed - self.cap()).div_ceil(self.scale) as u64;
            return Err(RateLimited {
                retry_after: Duration::from_micros(wait),
            }
            .into());
        }
        self.tat = Some(u128::from(now) * self.scale + needed);
        Ok(())
    }
    fn available(&self, now: u64) -> u32 {
        (self.cap().saturating_sub(self.ahead(now)) / self.t) as u32
    }
    fn until_full(&self, now: u64) -> Duration {
        Duration::from_micros(self.ahead(now).div_ceil(self.scale) as u64)
    }
    fn restore(&mut self, until_full: u64, now: u64) {
        let drain = (u128::from(until_full) * self.scale).min(self.cap());
        self.tat = Some(u128::from(now) * self.scale + drain);
    }
    /// Whether `now` puts the bucket's idle time where the docs allow
    /// another reading, with a margin of twice the burst span: on 64 bits
    /// idle beyond the 2^62-unit horizon (modulo the 2^63 wrap), or a
    /// reset bucket more than 2^61 units (a conservative "years") from
    /// its last admission; on 32 bits close below a multiple of the wrap.
    fn in_zone_after_reset(&self, now: u64) -> bool {
        let now = u128::from(now) * self.scale;
        self.tat
            .or(self.anchor)
            .is_some_and(|a| now.abs_diff(a) >= 1 << 61)
    }
    fn in_zone(&self, now: u64) -> bool {
        let now = u128::from(now) * self.scale;
        let Some(tat) = self.tat else {
            return self.anchor.is_some_and(|a| now.abs_diff(a) >= 1 << 61);
        };
        if now <= tat {
            return false;
        }
        let idle = (now - tat) % WRAP;
        if NARROW {
            idle + 2 * (self.cap() + (1 << 20) * self.scale) >= WRAP
        } else {
            idle + 2 * self.cap() + 2 >= 1 << 62
        }
    }
}

/// The next reading after `latest`: the same, a small step, a stale one
/// (within the tolerance), a few burst spans, or up to four wraps (at most
/// half the room left before `Instant::MAX`); never one in the zone the
/// docs leave open. `None` if 64 draws all were.
fn next_now(rng: &mut Rng, m: &Model, latest: u64) -> Option<u64> {
    let step = (m.t / m.scale + 1) as u64;
    let span = (m.cap() / m.scale + 1) as u64;
    let wrap = u64::try_from(WRAP / m.scale).unwrap_or(u64::MAX);
    let stale_max = if NARROW { 1 << 19 } else { 3_600_000_000 };
    (0..64).find_map(|_| {
        let now = match rng.below(100) {
            0..=14 => latest,
            15..=59 => latest.saturating_add(rng.below(2 * step)),
            60..=74 => latest.saturating_sub(rng.below(stale_max + 1)),
            75..=94 => latest.saturating_add(rng.below(3 * span)),
            _ => {
                let room = (u64::MAX - latest) / 2;
                latest.saturating_add(rng.below(wrap.saturating_mul(4)).min(room))
            }
        };
        (!m.in_zone(now)).then_some(now)
    })
}

fn history(seed: u64, start: u64) {
    let mut rng = Rng(seed | 1);
    let (tokens, period, burst) = SET[rng.below(SET.len() as u64) as usize];
    let quota = Quota::new(tokens, Duration::from_micros(period))
        .unwrap()
        .with_burst(burst)
        .unwrap();
    let bucket = TokenBucket::new(quota);
    let g = gcd(u128::from(tokens), u128::from(period));
    let mut m = Model {
        scale: u128::from(tokens) / g,
        t: u128::from(period) / g,
        burst: u128::from(burst),
        tat: None,
        anchor: None,
    };
    let span = (m.cap() / m.scale + 1) as u64;
    let (mut latest, mut ran) = (start, 0);
    for i in 0..STEPS {
        let Some(now) = next_now(&mut rng, &m, latest) else {
            continue;
        };
        ran += 1;
        latest = latest.max(now);
        let at = Instant::from_micros(now);
        let ctx = format!("seed {seed} step {i} now {now} quota {tokens}/{period}µs burst {burst}");
        match rng.below(12) {
            0..=4 => {
                let want = m.acquire(1, now).map_err(|e| match e {
                    AcquireError::RateLimited(r) => r,
                    _ => unreachable!(),
                });
                let got = bucket.try_acquire(at);
                assert_eq!(got, want, "{ctx}");
                assert_eq!(
                    got.err().and_then(|e| e.retry_after()),
                    want.err().map(|e| e.retry_after),
                    "{ctx}"
                );
            }
            5..=7 => {
                let b = burst;
                let n = [0, 1, 2, b, b.saturating_add(1), u32::MAX][rng.below(6) as usize];
                let want = m.acquire(n, now);
                let got = bucket.try_acquire_n(n, at);
                assert_eq!(got, want, "{ctx} n {n}");
                if let Err(e) = got {
                    let wait = if let AcquireError::RateLimited(r) = e {
                        Some(r.retry_after)
                    } else {
                        None
                    };
                    assert_eq!(e.retry_after(), wait, "{ctx}");
                }
            }
            8 => {
                let until = [
                    0,
                    1,
                    m.until_full(now).as_micros(),
                    span / 2,
                    span,
                    span + 1,
                    u64::MAX,
                ];
                let until = until[rng.below(until.len() as u64) as usize];
                m.restore(until, now);
                bucket.restore(
                    &BucketSnapshot {
                        until_full: Duration::from_micros(until),
                    },
                    at,
                );
            }
            // Within "years" of the last admission (2^61 units) only.
            9 if !NARROW && !m.in_zone_after_reset(now) => {
                m.anchor = m.tat.or(m.anchor);
                m.tat = None;
                bucket.reset();
            }
            _ => {}
        }
        assert_eq!(bucket.available(at), m.available(now), "{ctx} available");
        assert_eq!(
            bucket.snapshot(at).until_full,
            m.until_full(now),
            "{ctx} until_full"
        );
    }
    assert!(ran * 10 >= STEPS * 9, "seed {seed}: only {ran} steps ran");
}

#[test]
fn exact_from_zero() {
    for seed in 1..=6 {
        history(seed * 0x9E37_79B9, 0);
    }
}

#[test]
fn exact_below_a_wrap() {
    for seed in 7..=12 {
        // Just below a multiple of the word's wrap at scale 1.
        let wrap = if NARROW { 1u64 << 31 } else { 1u64 << 62 };
        history(seed * 0x2545_F491, wrap * (1 + seed % 3) - 1_000);
    }
}

#[test]
fn exact_into_instant_max() {
    for seed in 13..=18 {
        history(seed * 0x51_7CC1_B727, u64::MAX - (1 << (20 + seed)));
    }
}
