//! The keyed limiter's per-key bound under eviction churn and stale clocks:
//! many keys (some chosen to collide) on a few slots, callers whose clocks
//! step back by up to the documented tolerance, arrival-time words driven
//! across their wrap.
//!
//! # The bound checked, and why
//!
//! The contract (`bucket` and `bucket::keyed` docs): each key is a GCRA
//! bucket of its tier's quota; a call at `now` moves the key's arrival
//! time `tat` to `max(tat, now) + n·T` and is admitted iff that is at most
//! `burst·T` ahead of `now`; a `now` behind a previous call's (by at most
//! the tolerance δ: 2^42 scaled units on 64-bit words, 2^20 µs on 32-bit)
//! only denies; evicting an idle key and inserting it again must not
//! change that.
//!
//! Take any admissions of one key whose `now`s (each caller's own clock
//! reading) lie in `[t, t + W]`, in the order they took effect. The first
//! leaves `tat ≥ t + n₁·T`; each later one adds at least its `nᵢ·T` (the
//! arrival time never moves back: not between calls, not across an
//! eviction); the last leaves `tat ≤ now + burst·T ≤ t + W + burst·T`.
//! Hence
//!
//! ```text
//! Σ nᵢ ≤ burst + ⌊W / T⌋        (W: spread of the admitted calls' own nows)
//! ```
//!
//! which is what [`check_windows`] asserts for every pair of admissions of
//! every key. There is no δ term because windows are measured on the
//! readings themselves. Measured on a "true" time axis that each reading
//! trails by at most δ, the same admissions satisfy the weaker
//! `burst + rate·(W + δ)`, which this implies. What would be wrong is to
//! stamp admissions with the latest reading of any clock: a stale call
//! would land in a window its own `now` is not in.
//!
//! The run keeps every reading inside one interval `[LO, HI]` of length δ,
//! so every call is within the tolerance of every other, whatever the
//! interleaving (a thread's reading cannot be more than δ behind a call
//! that completed before it).
#![cfg(not(miri))]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;

use fusebox::bucket::{FullPolicy, KeyedError, KeyedLimiter, Quota};
use fusebox::{Duration, Instant};
use proptest::prelude::*;

use crate::common::{Key, COLLIDE_FROM};

/// The tiers as exact rates: `(tokens, period µs, burst)`. Tier 0 runs at
/// scale 1 (T = 1 000 µs), tier 1 at scale 4 (T = 1 001 scaled units, 250.25
/// µs), so an arrival time crosses the µs/scaled-unit conversion of the
/// eviction marks both ways. Both wrap at 2^48 µs (the 48-bit word: 2^48
/// and 2^46 µs) and at every multiple of 2^32 µs (32-bit words).
const TIERS: [(u32, u64, u32); 2] = [(1, 1_000, 2), (4, 1_001, 3)];

#[allow(clippy::trivially_copy_pass_by_ref)] // the signature `with_tier_fn` takes
fn tier_of(key: &Key) -> usize {
    key.0 as usize % 2
}

/// δ in µs for the tiers above: 2^42 scaled units at scale 4 on 64-bit
/// words, 2^20 µs on 32-bit ones.
const DELTA: u64 = if cfg!(any(fusebox_narrow_words, not(target_has_atomic = "64"))) {
    1 << 20
} else {
    1 << 40
};

/// The run's time goes forward from `START` to `HI`, across 2^48 µs: 4 s
/// (0.9 s where δ is ~1.05 s).
const SPAN: u64 = if DELTA > 1 << 30 { 4_000_000 } else { 900_000 };
const START: u64 = (1 << 48) - SPAN / 3;
/// Every reading lies in `[LO, HI]`: `HI - LO = δ`.
const HI: u64 = START + SPAN;
const LO: u64 = HI - DELTA;

fn limiter<const N: usize>() -> KeyedLimiter<Key, N, 2> {
    let quota = |(tokens, period, burst): (u32, u64, u32)| {
        Quota::new(tokens, Duration::from_micros(period))
            .unwrap()
            .with_burst(burst)
            .unwrap()
    };
    KeyedLimiter::with_tiers(TIERS.map(quota), FullPolicy::Reject)
        .expect("quotas within the keyed range")
        .with_tier_fn(tier_of)
}

fn call<const N: usize>(
    l: &KeyedLimiter<Key, N, 2>,
    key: Key,
    n: u32,
    now: u64,
) -> Result<(), KeyedError> {
    let now = Instant::from_micros(now);
    if n == 1 {
        l.try_acquire(&key, now)
    } else {
        l.try_acquire_n(&key, n, now)
    }
}

/// An admitted call: key, the caller's `now`, tokens.
type Admission = (Key, u64, u32);

/// For every key, every pair of its admissions `i ≤ j` (sorted by `now`):
/// the tokens admitted with `now`s in `[nowᵢ, nowⱼ]` are at most
/// `burst + ⌊(nowⱼ - nowᵢ)·tokens / period⌋` (see the module docs).
fn check_windows(admissions: &[Admission]) {
    let mut per_key: HashMap<Key, Vec<(u64, u32)>> = HashMap::new();
    for &(key, now, n) in admissions {
        per_key.entry(key).or_default().push((now, n));
    }
    for (key, mut calls) in per_key {
        let (tokens, period, burst) = TIERS[tier_of(&key)];
        calls.sort_unstable();
        for i in 0..calls.len() {
            let mut taken = 0u64;
            for j in i..calls.len() {
                taken += u64::from(calls[j].1);
                let span = u128::from(calls[j].0 - calls[i].0);
                let allowed = u128::from(burst) + span * u128::from(tokens) / u128::from(period);
                assert!(
                    u128::from(taken) <= allowed,
                    "{key:?}: {taken} tokens admitted with nows in [{}, {}] ({span} µs), \
                     at most {allowed} allowed: {:?}",
                    calls[i].0,
                    calls[j].0,
                    &calls[i..=j],
                );
            }
        }
    }
}

/// xorshift64*: a seeded, dependency-free stream for the threads.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// One caller. The run's time advances 0–14 µs a call, shared by all
/// callers, and 1 call in 128 leaves a quiet gap of up to 5 ms (so keys
/// sit idle in the table for different times). This caller's clock reads
/// it `skew` µs behind, plus a lag: 1 in 32 calls the clock steps back by
/// up to 5 ms and stays that far behind (still advancing) for up to 64
/// calls; 1 in 512 it steps back anywhere down to `LO` (a whole δ behind
/// `HI`) for up to 16 calls; 1 in 8 readings is a further 0–2 ms stale.
/// A third of the calls bring back one of the last 8 keys this caller was
/// admitted for (likely evicted since, by now), the rest a key uniform
/// over 64 (16 colliding); 1 in 8 calls takes two tokens.
fn caller(
    l: &KeyedLimiter<Key, 4, 2>,
    time: &AtomicU64,
    skew: u64,
    seed: u64,
    calls: usize,
) -> Vec<Admission> {
    let mut rng = Rng(seed);
    let (mut lag, mut lag_calls) = (0, 0);
    let mut recent = [Key(0); 8];
    let mut admitted = Vec::new();
    for i in 0..calls {
        let dt = if rng.below(128) == 0 {
            rng.below(5_000)
        } else {
            rng.below(15)
        };
        let clock = time.fetch_add(dt, Ordering::Relaxed).min(HI) - skew;
        if lag_calls == 0 {
            lag = 0;
        } else {
            lag_calls -= 1;
        }
        match rng.below(512) {
            0 => (lag, lag_calls) = (rng.below(clock - LO), rng.below(16)),
            r if r % 32 == 1 => (lag, lag_calls) = (rng.below(5_000), rng.below(64)),
            _ => {}
        }
        let stale = if rng.below(8) == 0 {
            rng.below(2_000)
        } else {
            0
        };
        let now = clock - (lag + stale).min(clock - LO);
        let key = if rng.below(3) == 0 {
            recent[rng.below(8) as usize]
        } else {
            Key(rng.below(64) as u32)
        };
        let n = if rng.below(8) == 0 { 2 } else { 1 };
        match call(l, key, n, now) {
            Ok(()) => {
                admitted.push((key, now, n));
                recent[i % 8] = key;
            }
            Err(KeyedError::RateLimited(_) | KeyedError::TableFull) => {}
            Err(e) => panic!("{key:?} at {now}: {e:?}"),
        }
    }
    admitted
}

/// Three threads with skewed, stepping-back clocks churn 64 keys through 4
/// slots: per key, never more than the bound of the module docs.
#[test]
fn skewed_threads_never_over_admit_a_key() {
    const THREADS: u64 = 3;
    const CALLS: usize = 40_000;
    let l = limiter::<4>();
    let time = AtomicU64::new(START);
    let admitted: Vec<Admission> = thread::scope(|s| {
        let (l, time) = (&l, &time);
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let seed = 0x9e37_79b9_7f4a_7c15 ^ (t + 1);
                s.spawn(move || caller(l, time, 300 * t, seed, CALLS))
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let m = l.metrics();
    // The run did churn: many evictions, many admissions.
    assert!(m.evictions > 1_000, "{m:?}");
    assert_eq!(m.allowed, admitted.len() as u64, "{m:?}");
    check_windows(&admitted);
}

/// One key's bucket as the documented contract describes it, never
/// evicted: GCRA on exact, unbounded time. Time is counted in units of
/// `1/tokens` µs, so the emission interval is `period` units and nothing
/// rounds. Written from the docs (`max(tat, now) + n·T`, admitted iff at
/// most `burst·T` ahead of `now`; refused with the wait until it would
/// be, rounded up to a µs), with none of the limiter's word widths,
/// scales, wraps, slots or marks.
#[derive(Default)]
struct Contract {
    tat: HashMap<Key, u128>,
}

impl Contract {
    /// `Ok(new tat)` or `Err(wait µs)`; changes nothing.
    fn decide(&self, key: Key, n: u32, now: u64) -> Result<u128, u64> {
        let (tokens, period, burst) = TIERS[tier_of(&key)];
        let (tokens, period) = (u128::from(tokens), u128::from(period));
        let now = u128::from(now) * tokens;
        let tat = self.tat.get(&key).copied().unwrap_or(0).max(now) + u128::from(n) * period;
        let capacity = u128::from(burst) * period;
        if tat - now <= capacity {
            Ok(tat)
        } else {
            Err((tat - now - capacity).div_ceil(tokens) as u64)
        }
    }
}

/// One schedule step: a key, tokens, and what the caller's clock does.
#[derive(Clone, Copy, Debug)]
enum Clock {
    /// Advances by this many µs.
    Forward(u64),
    /// This reading only is this many µs stale (down to `LO`).
    Stale(u64),
    /// Steps back to this fraction (of 2^16) of the way from `LO` to
    /// where it was.
    Back(u64),
}

fn step(back: bool) -> impl Strategy<Value = (u32, u32, Clock)> {
    let forward = (0u64..3_000).prop_map(Clock::Forward);
    let clock = if back {
        prop_oneof![
            8 => forward,
            3 => (0u64..5_000).prop_map(Clock::Stale),
            1 => (0u64..1 << 16).prop_map(Clock::Back),
        ]
        .boxed()
    } else {
        forward.boxed()
    };
    // 12 keys on 4 slots; keys 8.. collide (see `COLLIDE_FROM`).
    let key = prop_oneof![0u32..8, COLLIDE_FROM..COLLIDE_FROM + 4];
    (key, prop_oneof![3 => Just(1u32), 1 => Just(2u32)], clock)
}

/// Runs a schedule on one thread, the clock starting at `start` and kept
/// in `lo..=hi`; every admission must be one the never-evicted contract
/// bucket (charged with the admissions only) also admits. With `exact`,
/// refusals must match it too (same wait).
fn replay(
    (lo, start, hi): (u64, u64, u64),
    steps: &[(u32, u32, Clock)],
    exact: bool,
) -> Result<(), TestCaseError> {
    assert!(lo <= start && start <= hi && hi - lo <= DELTA);
    let l = limiter::<4>();
    let mut contract = Contract::default();
    let mut admitted = Vec::new();
    let mut clock = start;
    for &(key, n, step) in steps {
        let key = Key(key);
        let now = match step {
            Clock::Forward(dt) => {
                clock = (clock + dt).min(hi);
                clock
            }
            Clock::Stale(dt) => clock - dt.min(clock - lo),
            Clock::Back(f) => {
                clock = lo + ((u128::from(clock - lo) * u128::from(f)) >> 16) as u64;
                clock
            }
        };
        let want = contract.decide(key, n, now);
        match call(&l, key, n, now) {
            Ok(()) => {
                let Ok(tat) = want else {
                    return Err(TestCaseError::fail(format!(
                        "{key:?} admitted {n} at {now}; the contract refuses: {want:?}"
                    )));
                };
                contract.tat.insert(key, tat);
                admitted.push((key, now, n));
            }
            Err(KeyedError::RateLimited(e)) if exact => prop_assert_eq!(
                Err(e.retry_after.as_micros()),
                want,
                "{:?} at {} ({} tokens)",
                key,
                now,
                n
            ),
            Err(KeyedError::RateLimited(_) | KeyedError::TableFull) => {}
            Err(e) => return Err(TestCaseError::fail(format!("{key:?} at {now}: {e:?}"))),
        }
    }
    check_windows(&admitted);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Random schedules, clocks stepping back by up to δ, across the wrap
    /// of 2^48 µs: the limiter never admits what the contract refuses.
    #[test]
    fn a_stale_clock_never_gets_more_than_the_contract(
        steps in prop::collection::vec(step(true), 1..400),
    ) {
        replay((LO, START, HI), &steps, false)?;
    }

    /// Time only moving forward: eviction loses nothing either, every
    /// decision is the contract's. Away from the words' wraps (2^40 + 2^31
    /// µs is half-way between multiples of 2^32, far from 2^46 and 2^48),
    /// where an arrival time landing exactly on zero is stored one unit
    /// later (documented: it only admits less).
    #[test]
    fn monotonic_clocks_get_exactly_the_contract(
        steps in prop::collection::vec(step(false), 1..400),
    ) {
        let start = (1 << 40) + (1 << 31);
        replay((start, start, start + (1 << 20)), &steps, true)?;
    }
}
