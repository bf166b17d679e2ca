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
//! narrow words' tolerance, and changes come at stale instants too.

#![cfg(not(miri))]

use fusebox::bucket::{AcquireError, FullPolicy, KeyedError, KeyedLimiter, Quota, TokenBucket};
use fusebox::{Duration, Instant};

mod common;
use common::SplitMix;

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
    let mut now: u64 = 1 << 40;
    let mut changes = 0;
    // The key enters the table with its first admission (an absent key
    // reads a full burst at any instant; a bucket's state is dated).
    let at = Instant::from_micros(now);
    assert!(same(keyed.try_acquire(&1, at), bucket.try_acquire_n(1, at)));
    for step in 0..steps {
        let span = u64::from(q.burst()) * q.period().as_micros() / u64::from(q.tokens());
        now = match rng.next() % 10 {
            0 => now.saturating_sub(rng.next() % 500_000),
            1 => now + rng.next() % (2 * span + 1),
            _ => now + rng.next() % (span / 4 + 2),
        };
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
            let k = keyed.try_acquire_n(&1, n, at);
            let b = bucket.try_acquire_n(n, at);
            assert!(
                same(k, b),
                "seed {seed} step {step}: {n} of {q:?} at {now}: keyed {k:?}, bucket {b:?}"
            );
        }
        assert_eq!(
            keyed.available(&1, at),
            bucket.available(at),
            "seed {seed} step {step}: {q:?} at {now}"
        );
    }
    changes
}

#[test]
fn one_key_answers_as_a_token_bucket_through_quota_changes() {
    let mut changes = 0;
    for seed in 1..=100 {
        changes += history(seed, 5_000);
    }
    assert!(changes > 25_000, "{changes}");
}
