//! What a `KeyedLimiter` *reports* on long random histories, against
//! per-key GCRA buckets written from the documented contract, not from
//! `core/src/bucket/keyed/`: `try_acquire_left`'s [`KeyedLeft`] ("its whole
//! tokens, what `available(key, now)` would read then, and the exact time
//! until it is full again", `until_full` "rounded up to a microsecond (never
//! early): exact"), `RateLimited::retry_after` ("time until enough tokens
//! are back (rounded up to a microsecond)"), `available` of present and
//! absent keys ("a key not in the table reads what it would start with if
//! inserted now: the full burst of its tier"), `try_acquire_tier` ("inserting
//! it in `tier` if new": a present key keeps its tier), `try_acquire_n`
//! (`n = 0` "always succeeds and touches nothing"; more than the burst is
//! `InsufficientCapacity`), and `metrics()` ("exact whenever no call is in
//! flight"; `limited` counts "requests refused, for any `KeyedError`").
//!
//! The model is the `gcra` module docs' kernel on unbounded integers: time
//! in scaled units of `1/scale` µs, `scale = tokens / gcd(tokens, period)`,
//! `T = period / gcd`; `n` tokens at `now` move `tat` to `max(tat, now) +
//! n·T`, allowed iff that is at most `burst·T` ahead of `now`. The table
//! has room for every key (12 keys, 64 slots, a probe window of 16), so
//! nothing is evicted and no eviction mark is ever written.
//!
//! Time starts at 0, at `u64::MAX` less a little, and just before a
//! multiple of the slots' word wrap; it runs by small steps, goes stale
//! (within the documented backward tolerance), and jumps forward by many
//! wraps of the arrival-time word (2^48 scaled units, or 2^31 on the 32-bit
//! layout), approaching `Instant::MAX`. The docs let a key idle for close
//! to a multiple of the wrap read partly drained ("admits *less* ... never
//! more"); the generator never lets a key's idle time fall in that zone,
//! so every figure is checked exactly. 14 histories of 30 000 requests,
//! each crossing the word's wrap thousands of times (those from 0 and
//! from a wrap), or ending at `Instant::MAX` itself.
//!
//! A request for more than the burst is refused and touches nothing, as
//! `n = 0` does: an absent key is not inserted (`try_acquire_n`'s docs).
#![cfg(not(miri))]

use crate::common::{gcd, Rng, NARROW};
use fusebox::bucket::{FullPolicy, KeyedError, KeyedLeft, KeyedLimiter, Quota};
use fusebox::{Duration, Instant, RetryAfter};

const KEYS: u32 = 12;
const STEPS: usize = 30_000;

/// (tokens, period µs, burst): exact scales only (the `gcra` docs' scale
/// at most 65 536; on the 32-bit layout small enough that the span plus
/// ~1.05 s of tolerance fits 2^30 units uncoarsened).
const WIDE: &[(u32, u64, u32)] = &[
    (3, 1_000_000, 1),
    (7, 100_000, 5),
    (1_000, 60_000_000, 1_000),
    (1, 86_400_000_000, 2),
    (10_000_000, 1_000_000, 1),
    (65_536, 1_000_000, 3),
    (65_521, 1_000_000, 1),
];
const NARROW_SET: &[(u32, u64, u32)] = &[
    (3, 1_000_000, 1),
    (7, 100_000, 5),
    (1_000, 60_000_000, 1_000),
    (10_000_000, 1_000_000, 1),
    (1, 60_000_000, 2),
];

#[derive(Clone, Copy, Debug)]
struct Tier {
    scale: u128,
    t: u128,
    burst: u128,
}

impl Tier {
    fn of(tokens: u32, period: u64, burst: u32) -> Self {
        let g = gcd(u128::from(tokens), u128::from(period));
        Self {
            scale: u128::from(tokens) / g,
            t: u128::from(period) / g,
            burst: u128::from(burst),
        }
    }
    fn cap(self) -> u128 {
        self.burst * self.t
    }
    /// The documented backward tolerance, in scaled units.
    fn tolerance(self) -> u128 {
        if NARROW {
            (1 << 20) * self.scale
        } else {
            1 << 42
        }
    }
}

/// The slots' arrival-time word wraps at this many scaled units.
const WRAP: u128 = if NARROW { 1 << 31 } else { 1 << 48 };

/// The model: each present key's tier and arrival time (scaled units).
struct Model {
    tiers: [Tier; 2],
    keys: [Option<(usize, u128)>; KEYS as usize],
    allowed: u64,
    limited: u64,
}

fn ceil_div(a: u128, b: u128) -> u128 {
    a.div_ceil(b)
}

impl Model {
    fn tier_fn(key: u32) -> usize {
        (key % 2) as usize
    }
    /// `(tier, tat)` of `key`: absent keys are full (tat = now).
    fn state(&self, key: u32, now: u64, tier: usize) -> (Tier, u128) {
        if let Some((t, tat)) = self.keys[key as usize] {
            (self.tiers[t], tat)
        } else {
            let tier = self.tiers[tier];
            (tier, u128::from(now) * tier.scale)
        }
    }
    fn available(&self, key: u32, now: u64) -> u32 {
        let (tier, tat) = self.state(key, now, Self::tier_fn(key));
        let n = u128::from(now) * tier.scale;
        let ahead = tat.max(n) - n;
        (tier.cap().saturating_sub(ahead) / tier.t) as u32
    }
    /// A request of `n` tokens; `Ok(left)` with the model charged.
    fn acquire(
        &mut self,
        key: u32,
        n: u32,
        tier: usize,
        now: u64,
    ) -> Result<KeyedLeft, KeyedError> {
        let tier_i = self.keys[key as usize].map_or(tier, |(t, _)| t);
        let (p, tat) = self.state(key, now, tier_i);
        if u128::from(n) > p.burst {
            self.limited += 1;
            // Never granted: an absent key is not inserted for it.
            return Err(KeyedError::InsufficientCapacity(
                fusebox::bucket::InsufficientCapacity {
                    requested: n,
                    burst: p.burst as u32,
                },
            ));
        }
        let now_s = u128::from(now) * p.scale;
        let new = tat.max(now_s) + u128::from(n) * p.t;
        if new - now_s > p.cap() {
            self.limited += 1;
            // The key is inserted anyway only if it was absent; an absent
            // key is full, so a refusal here means it was present.
            let wait = ceil_div(new - now_s - p.cap(), p.scale) as u64;
            return Err(KeyedError::RateLimited(fusebox::bucket::RateLimited {
                retry_after: Duration::from_micros(wait),
            }));
        }
        self.keys[key as usize] = Some((tier_i, new));
        self.allowed += 1;
        let tokens = ((p.cap() - (new - now_s)) / p.t) as u32;
        let until_full = Duration::from_micros(ceil_div(new - now_s, p.scale) as u64);
        Ok(KeyedLeft { tokens, until_full })
    }
    /// Whether `now` puts some present key's idle time in the zone the
    /// docs leave open (close below a multiple of the word's wrap), with
    /// a margin of twice the documented horizon.
    fn in_zone(&self, now: u64) -> bool {
        self.keys.iter().flatten().any(|&(t, tat)| {
            let p = self.tiers[t];
            let n = u128::from(now) * p.scale;
            // (0: no arrival time stored yet.)
            tat != 0 && n > tat && {
                let idle = (n - tat) % WRAP;
                idle + 2 * (p.cap() + p.tolerance()) >= WRAP
            }
        })
    }
}

type Limiter = KeyedLimiter<u32, 64, 2>;

/// The next `now` after `latest`: the same instant, a small step, a stale
/// reading, a few burst spans, or up to four word wraps (at most half the
/// room left before `Instant::MAX`); never one that puts a key's idle time
/// in the zone the docs leave open. `None` if 64 draws all did.
fn next_now(rng: &mut Rng, m: &Model, latest: u64) -> Option<u64> {
    let tiers = m.tiers;
    let max_scale = tiers[0].scale.max(tiers[1].scale);
    let step = tiers.iter().map(|p| p.t / p.scale + 1).max().unwrap() as u64;
    let span = tiers.iter().map(|p| p.cap() / p.scale + 1).max().unwrap() as u64;
    let stale_max = if NARROW {
        1 << 19
    } else {
        ((1u128 << 41) / max_scale).min(60_000_000) as u64
    };
    let wrap_us = tiers.iter().map(|p| WRAP / p.scale).max().unwrap() as u64;
    (0..64).find_map(|_| {
        let now = match rng.below(100) {
            0..=14 => latest,
            15..=59 => latest.saturating_add(rng.below(2 * step)),
            60..=74 => latest.saturating_sub(rng.below(stale_max + 1)),
            75..=89 => latest.saturating_add(rng.below(3 * span)),
            _ => {
                let room = (u64::MAX - latest) / 2;
                latest.saturating_add(rng.below(4 * wrap_us).min(room))
            }
        };
        (!m.in_zone(now)).then_some(now)
    })
}

/// One random request on `key` at `now`, checked against the model.
fn request(rng: &mut Rng, m: &mut Model, limiter: &Limiter, key: u32, now: u64, ctx: &str) {
    let at = Instant::from_micros(now);
    match rng.below(6) {
        0 | 1 => {
            let want = m.acquire(key, 1, Model::tier_fn(key), now);
            let got = limiter.try_acquire_left(&key, at);
            assert_eq!(got, want.map(Some), "{ctx}");
            if let Ok(Some(left)) = got {
                assert_eq!(left.tokens, limiter.available(&key, at), "{ctx}");
            }
        }
        2 => {
            let want = m.acquire(key, 1, Model::tier_fn(key), now).map(drop);
            assert_eq!(limiter.try_acquire(&key, at), want, "{ctx}");
        }
        3 => {
            let tier = m.keys[key as usize].map_or(Model::tier_fn(key), |k| k.0);
            let burst = m.tiers[tier].burst as u32;
            let n = [0, 1, 2, burst, burst + 1, u32::MAX][rng.below(6) as usize];
            let want = if n == 0 {
                Ok(())
            } else {
                m.acquire(key, n, Model::tier_fn(key), now).map(drop)
            };
            let got = limiter.try_acquire_n(&key, n, at);
            assert_eq!(got, want, "{ctx} n {n}");
            if let Err(e) = got {
                let expect = match e {
                    KeyedError::RateLimited(r) => Some(r.retry_after),
                    _ => None,
                };
                assert_eq!(e.retry_after(), expect, "{ctx}");
            }
        }
        4 => {
            let tier = rng.below(3) as usize;
            let got = limiter.try_acquire_tier(&key, tier, at);
            if tier >= 2 {
                m.limited += 1;
                assert_eq!(got, Err(KeyedError::TierOutOfRange { tier }), "{ctx}");
            } else {
                let want = m.acquire(key, 1, tier, now).map(drop);
                assert_eq!(got, want, "{ctx} tier {tier}");
            }
        }
        _ => {}
    }
}

fn history(seed: u64, start: u64) {
    let mut rng = Rng(seed | 1);
    let set = if NARROW { NARROW_SET } else { WIDE };
    let pick = |rng: &mut Rng| set[rng.below(set.len() as u64) as usize];
    let picked = [pick(&mut rng), pick(&mut rng)];
    let quota = |(tokens, period, burst): (u32, u64, u32)| {
        Quota::new(tokens, Duration::from_micros(period))
            .unwrap()
            .with_burst(burst)
            .unwrap()
    };
    let limiter: Limiter = KeyedLimiter::with_tiers(picked.map(quota), FullPolicy::Reject)
        .unwrap()
        .with_tier_fn(|k| (*k % 2) as usize);
    let mut m = Model {
        tiers: picked.map(|(tokens, period, burst)| Tier::of(tokens, period, burst)),
        keys: [None; KEYS as usize],
        allowed: 0,
        limited: 0,
    };
    let wrap = m.tiers.iter().map(|p| WRAP / p.scale).max().unwrap() as u64;
    let (mut latest, mut wraps, mut done) = (start, 0, 0);
    for i in 0..STEPS {
        let Some(now) = next_now(&mut rng, &m, latest) else {
            continue;
        };
        done += 1;
        if now > latest {
            wraps += (now - latest) / wrap;
            latest = now;
        }
        let key = rng.below(u64::from(KEYS)) as u32;
        let ctx = format!("seed {seed} step {i} key {key} now {now} tiers {picked:?}");
        request(&mut rng, &mut m, &limiter, key, now, &ctx);
        let at = Instant::from_micros(now);
        for k in [key, rng.below(u64::from(KEYS)) as u32] {
            let got = limiter.available(&k, at);
            assert_eq!(got, m.available(k, now), "{ctx} available of {k}");
        }
        if i % 97 == 0 || i + 1 == STEPS {
            let got = limiter.metrics();
            let keys = m.keys.iter().flatten().count() as u64;
            let got = (
                got.allowed,
                got.limited,
                got.evictions,
                got.table_full,
                got.keys,
            );
            assert_eq!(got, (m.allowed, m.limited, 0, 0, keys), "{ctx}");
        }
    }
    assert!(done * 10 >= STEPS * 9, "seed {seed}: only {done} steps ran");
    let near_max = start > u64::MAX / 2;
    assert!(
        wraps >= 1 || near_max,
        "seed {seed}: the history never wrapped"
    );
}

#[test]
fn reports_match_the_model_from_zero() {
    for seed in 1..=6 {
        history(seed * 0x9E37_79B9, 0);
    }
}

#[test]
fn reports_match_the_model_near_instant_max() {
    for seed in 11..=14 {
        history(seed * 0x2545_F491, u64::MAX - (1 << 40));
    }
}

#[test]
fn reports_match_the_model_across_word_wraps() {
    // Just below a multiple of the slots' word wrap at scale 1 (and at
    // every power-of-two scale below it).
    let wrap = if NARROW { 1u64 << 31 } else { 1u64 << 48 };
    for (seed, k) in [(21u64, 1u64), (22, 3), (23, 255), (24, 4_095)] {
        history(seed * 0x51_7CC1_B727, wrap * k - 1_000);
    }
}

/// `quota_version`: "A number that changes whenever `tier`'s quota is
/// replaced ... Two equal readings saw the same quota unless a multiple of
/// 2^32 replacements came in between"; `None` for a tier the limiter does
/// not have.
#[test]
fn every_quota_change_changes_the_version() {
    let q = |t| Quota::per_second(t).unwrap();
    let limiter: KeyedLimiter<u32, 8, 2> =
        KeyedLimiter::with_tiers([q(1), q(9)], FullPolicy::Reject).unwrap();
    assert_eq!(limiter.quota_version(2), None);
    let mut now = Instant::from_secs(1);
    for i in 0..3_000u32 {
        let (v0, v1) = (limiter.quota_version(0), limiter.quota_version(1));
        let tier = (i % 3 == 0) as usize;
        limiter.set_quota(tier, q(1 + i % 5), now).unwrap();
        assert_ne!(
            limiter.quota_version(tier),
            if tier == 0 { v0 } else { v1 },
            "change {i}"
        );
        let other = 1 - tier;
        assert_eq!(
            limiter.quota_version(other),
            if other == 0 { v0 } else { v1 },
            "change {i}"
        );
        assert_eq!(limiter.quota(tier), Some(q(1 + i % 5)));
        let _ = limiter.try_acquire(&(i % 7), now);
        now += Duration::from_millis(3);
    }
}
