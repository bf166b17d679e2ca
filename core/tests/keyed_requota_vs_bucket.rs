//! A keyed limiter's key against a [`TokenBucket`], over long seeded
//! histories of admissions and quota changes: `KeyedLimiter::set_quota`
//! carries every key of the tier over "exactly as
//! [`TokenBucket::set_quota`] documents", and a key's bucket decides as a
//! token bucket of its tier's quota does, so one key of a one-tier limiter
//! and a token bucket given the same calls must answer the same: every
//! admission or refusal (with its `retry_after`), every `available`.
//!
//! Quotas are drawn wide (1 to 1 000 000 tokens, periods from 1 µs to a
//! week, odd ones, bursts up to 100 000; those the keyed slot word cannot
//! hold are refused by both constructors alike or skipped), the clock
//! jumps ahead by up to twice the burst's span and back by less than the
//! narrow words' tolerance, and changes come at stale instants too. With
//! several keys, each stays idle well within the slot word's range (see
//! [`tick`]).

#![cfg(not(miri))]

use fusebox::bucket::{AcquireError, FullPolicy, KeyedError, KeyedLimiter, Quota, TokenBucket};
use fusebox::{Duration, Instant};

use crate::common::SplitMix;

fn quota(rng: &mut SplitMix) -> Option<Quota> {
    let tokens = match rng.next() % 4 {
        0 => 1 + (rng.next() % 10) as u32,
        1 => 1 + (rng.next() % 1_000) as u32,
        2 => 1 + (rng.next() % 1_000_000) as u32,
        _ => [3, 7, 60, 997, 86_400][(rng.next() % 5) as usize],
    };
    let period = match rng.next() % 5 {
        0 => 1_000_000,
        1 => 1 + rng.next() % 1_000,
        2 => 1 + rng.next() % 10_000_000,
        3 => [333_333, 86_400_000_000, 604_800_000_000, 7][(rng.next() % 4) as usize],
        _ => 1 + rng.next() % 3_600_000_000,
    };
    let burst = match rng.next() % 3 {
        0 => 1 + (rng.next() % 5) as u32,
        1 => 1 + (rng.next() % 200) as u32,
        _ => 1 + (rng.next() % 100_000) as u32,
    };
    let q = Quota::new(tokens, Duration::from_micros(period)).ok()?;
    let q = q.with_burst(burst).ok()?;
    // Only quotas a keyed slot can hold.
    KeyedLimiter::<u32, 4>::new(q, FullPolicy::Reject)
        .ok()
        .map(|_| q)
}

/// The next instant: mostly a step ahead of the latest (by up to a quarter
/// of `span`, the burst's span, or twice it now and then, each capped at
/// `cap` µs), sometimes up to 0.3 s behind the latest (a stale caller,
/// within every layout's tolerance). `cap` keeps every key's idle time
/// far below the slot word's wrap (see `KeyedLimiter`'s "Range": 71.6
/// minutes at the largest scale with 64-bit atomics, 2^31 scaled units on
/// Cortex-M), beyond which a key documentedly reads partly drained.
fn tick(rng: &mut SplitMix, latest: &mut u64, span: u64, cap: u64) -> u64 {
    match rng.next() % 10 {
        0 => latest.saturating_sub(rng.next() % 300_000),
        1 => {
            *latest += rng.next() % (2 * span).clamp(1, cap);
            *latest
        }
        _ => {
            *latest += rng.next() % (span / 4 + 2).min(cap);
            *latest
        }
    }
}

/// The cap of [`tick`]'s steps: 20 s, or 50 µs on the narrow layout, whose
/// wrap comes after 2^31 scaled units (32.8 ms at the largest scale).
const CAP: u64 = if cfg!(fusebox_wide_words) {
    20_000_000
} else {
    50
};

fn same(keyed: Result<(), KeyedError>, bucket: Result<(), AcquireError>) -> bool {
    match (keyed, bucket) {
        (Ok(()), Ok(())) => true,
        (Err(KeyedError::RateLimited(a)), Err(AcquireError::RateLimited(b))) => a == b,
        (Err(KeyedError::InsufficientCapacity(a)), Err(AcquireError::InsufficientCapacity(b))) => {
            a == b
        }
        _ => false,
    }
}

fn history(seed: u64, steps: u32) -> u32 {
    let mut rng = SplitMix(seed);
    let mut q = loop {
        if let Some(q) = quota(&mut rng) {
            break q;
        }
    };
    let keyed: KeyedLimiter<u32, 4> = KeyedLimiter::new(q, FullPolicy::Reject).unwrap();
    let bucket = TokenBucket::new(q);
    let mut latest: u64 = 1 << 40;
    let mut now = latest;
    let mut changes = 0;
    // The key enters the table with its first admission (an absent key
    // reads a full burst at any instant; a bucket's state is dated).
    let at = Instant::from_micros(now);
    assert!(same(keyed.try_acquire(&1, at), bucket.try_acquire_n(1, at)));
    for step in 0..steps {
        let span = u64::from(q.burst()) * q.period().as_micros() / u64::from(q.tokens());
        now = tick(&mut rng, &mut latest, span, u64::MAX);
        let at = Instant::from_micros(now);
        if rng.next() % 8 == 0 {
            if let Some(new) = quota(&mut rng) {
                let old = keyed.set_quota(0, new, at).unwrap();
                assert_eq!(old, bucket.set_quota(new, at), "seed {seed} step {step}");
                q = new;
                changes += 1;
            }
        } else {
            let n = match rng.next() % 3 {
                0 => 1,
                1 => 1 + (rng.next() % u64::from(q.burst())) as u32,
                _ => 1 + (rng.next() % (u64::from(q.burst()) + 2)) as u32,
            };
            if rng.next() % 4 == 0 {
                // One token, and what is left: the whole tokens and the
                // exact time until full, as the bucket's snapshot says.
                let k = keyed.try_acquire_left(&1, at);
                let b = bucket.try_acquire_n(1, at);
                assert!(
                    same(k.map(drop), b),
                    "seed {seed} step {step}: {k:?}, {b:?}"
                );
                if let Ok(left) = k {
                    let left = left.expect("its own bucket");
                    assert_eq!(left.tokens, bucket.available(at), "seed {seed} step {step}");
                    assert_eq!(
                        left.until_full,
                        bucket.snapshot(at).until_full,
                        "seed {seed} step {step}: {q:?} at {now}"
                    );
                }
            } else {
                let k = keyed.try_acquire_n(&1, n, at);
                let b = bucket.try_acquire_n(n, at);
                assert!(
                    same(k, b),
                    "seed {seed} step {step}: {n} of {q:?} at {now}: keyed {k:?}, bucket {b:?}"
                );
            }
        }
        assert_eq!(
            keyed.available(&1, at),
            bucket.available(at),
            "seed {seed} step {step}: {q:?} at {now}"
        );
    }
    changes
}

/// Eight keys in two tiers, each against its own [`TokenBucket`] (made at
/// the key's first admission attempt, when the key enters the table: an
/// absent key reads its tier's full burst), every change of a tier applied
/// to the buckets of that tier's keys: keys of the other tier are
/// unaffected, keys of the changed one all carried over. The table has
/// room for every key, so none is evicted.
fn tiers_history(seed: u64, steps: u32) -> u32 {
    let mut rng = SplitMix(seed);
    let mut quotas = [0, 1].map(|_| loop {
        if let Some(q) = quota(&mut rng) {
            break q;
        }
    });
    let keyed: KeyedLimiter<u32, 64, 2> = KeyedLimiter::with_tiers(quotas, FullPolicy::Reject)
        .unwrap()
        .with_tier_fn(|k| (k % 2) as usize);
    let mut twins: [Option<TokenBucket>; 8] = Default::default();
    let mut latest: u64 = 1 << 40;
    let mut changes = 0;
    for step in 0..steps {
        let key = (rng.next() % 8) as u32;
        let tier = (key % 2) as usize;
        let q = quotas[tier];
        let span = u64::from(q.burst()) * q.period().as_micros() / u64::from(q.tokens());
        let now = tick(&mut rng, &mut latest, span, CAP);
        let at = Instant::from_micros(now);
        if rng.next() % 8 == 0 {
            if let Some(new) = quota(&mut rng) {
                assert_eq!(keyed.set_quota(tier, new, at), Ok(quotas[tier]));
                for twin in twins.iter().skip(tier).step_by(2).flatten() {
                    twin.set_quota(new, at);
                }
                quotas[tier] = new;
                changes += 1;
            }
        } else {
            let n = match rng.next() % 3 {
                0 => 1,
                _ => 1 + (rng.next() % (u64::from(q.burst()) + 1)) as u32,
            };
            let k = keyed.try_acquire_n(&key, n, at);
            if n <= q.burst() && twins[key as usize].is_none() {
                twins[key as usize] = Some(TokenBucket::new(q));
            }
            match &twins[key as usize] {
                Some(twin) => {
                    let b = twin.try_acquire_n(n, at);
                    assert!(
                        same(k, b),
                        "seed {seed} step {step}: key {key} {n} of {q:?}: {k:?}, {b:?}"
                    );
                }
                None => assert!(
                    matches!(k, Err(KeyedError::InsufficientCapacity(_))),
                    "seed {seed} step {step}: {k:?}"
                ),
            }
        }
        for (key, twin) in (0u32..).zip(&twins) {
            let want = twin
                .as_ref()
                .map_or(quotas[key as usize % 2].burst(), |t| t.available(at));
            assert_eq!(
                keyed.available(&key, at),
                want,
                "seed {seed} step {step}: key {key}"
            );
        }
    }
    assert_eq!(keyed.metrics().evictions, 0);
    changes
}

#[test]
fn keys_of_two_tiers_answer_as_their_own_token_buckets() {
    let mut changes = 0;
    for seed in 8..=40 {
        changes += tiers_history(seed, 5_000);
    }
    assert!(changes > 10_000, "{changes}");
}

#[test]
fn one_key_answers_as_a_token_bucket_through_quota_changes() {
    let mut changes = 0;
    for seed in 1..=100 {
        changes += history(seed, 5_000);
    }
    assert!(changes > 25_000, "{changes}");
}
