//! Threads churning many keys (some chosen to collide entirely) through a
//! few slots of a `KeyedLimiter` while another thread keeps changing the
//! tiers' quotas between two of different scales, bursts and rates, over
//! a long history (across the 48-bit and 32-bit words' wraps).
//!
//! The contract across changes (`bucket` module docs, `KeyedLimiter::
//! set_quota`): with no call's `now` earlier than one already made, each
//! key admits at most the larger burst plus the larger rate times `W` over
//! any window `W`, whether it stays in the table (its state carried over
//! at each change) or is evicted (idle, full) and comes back (with the
//! burst in force). The run keeps every `now` monotonic: time advances
//! between phases, behind a barrier, and every call of a phase (the
//! changes included) uses the phase's `now`.
#![cfg(not(miri))]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Barrier;
use std::thread;

use fusebox::bucket::{FullPolicy, KeyedError, KeyedLimiter, Quota};
use fusebox::{Duration, Instant};

use crate::common::{Key, Rng, COLLIDE_FROM};

#[allow(clippy::trivially_copy_pass_by_ref)] // the signature `with_tier_fn` takes
fn tier_of(key: &Key) -> usize {
    key.0 as usize % 2
}

/// The two quotas every tier switches between: `(tokens, period µs,
/// burst)`, scale 1 and scale 4.
const QUOTAS: [(u32, u64, u32); 2] = [(1, 1_000, 2), (4, 1_001, 3)];
/// The larger burst, and the larger rate as `RATE.0` per `RATE.1` µs.
const MAX_BURST: u64 = 3;
const RATE: (u64, u64) = (4, 1_001);

fn quota(i: usize) -> Quota {
    let (tokens, period, burst) = QUOTAS[i];
    Quota::new(tokens, Duration::from_micros(period))
        .unwrap()
        .with_burst(burst)
        .unwrap()
}

type Admission = (u32, u64, u32);

/// Per key, every window between two admissions: at most the larger burst
/// plus the larger rate times its length.
fn check_windows(admissions: &[Admission]) {
    let mut per_key: HashMap<u32, Vec<(u64, u32)>> = HashMap::new();
    for &(key, now, n) in admissions {
        per_key.entry(key).or_default().push((now, n));
    }
    for (key, mut calls) in per_key {
        calls.sort_unstable();
        for i in 0..calls.len() {
            let mut taken = 0u64;
            for j in i..calls.len() {
                taken += u64::from(calls[j].1);
                let w = calls[j].0 - calls[i].0;
                if w > 20_000 {
                    break;
                }
                let allowed = MAX_BURST + w * RATE.0 / RATE.1;
                assert!(
                    taken <= allowed,
                    "key {key}: {taken} tokens with nows in [{}, {}] ({w} µs), at most {allowed}: {:?}",
                    calls[i].0,
                    calls[j].0,
                    &calls[i..=j]
                );
            }
        }
    }
}

fn run(start: u64, phases: usize, seed: u64) {
    const DECIDERS: usize = 3;
    let limiter: KeyedLimiter<Key, 4, 2> =
        KeyedLimiter::with_tiers([quota(0), quota(1)], FullPolicy::Reject)
            .unwrap()
            .with_tier_fn(tier_of);
    let time = AtomicU64::new(start);
    let barrier = Barrier::new(DECIDERS + 1);
    let admitted: Vec<Admission> = thread::scope(|s| {
        let (limiter, time, barrier) = (&limiter, &time, &barrier);
        // The changer: each phase, a few changes racing the deciders.
        s.spawn(move || {
            let mut rng = Rng(seed ^ 0xc4a7);
            for _ in 0..phases {
                barrier.wait();
                let now = Instant::from_micros(time.load(Ordering::Relaxed));
                for _ in 0..rng.below(3) {
                    let tier = rng.below(2) as usize;
                    limiter
                        .set_quota(tier, quota(rng.below(2) as usize), now)
                        .unwrap();
                }
                barrier.wait();
                // The phase is over: time moves on (one thread only).
                time.fetch_add(rng.below(2_500), Ordering::Relaxed);
            }
        });
        let handles: Vec<_> = (0..DECIDERS as u64)
            .map(|d| {
                s.spawn(move || {
                    let mut rng = Rng(seed ^ (d + 1) << 32);
                    let mut admitted = Vec::new();
                    for _ in 0..phases {
                        barrier.wait();
                        let now = time.load(Ordering::Relaxed);
                        for _ in 0..4 {
                            let key = if rng.below(3) == 0 {
                                COLLIDE_FROM + rng.below(8) as u32
                            } else {
                                rng.below(12) as u32
                            };
                            let n = if rng.below(6) == 0 { 2 } else { 1 };
                            match limiter.try_acquire_n(&Key(key), n, Instant::from_micros(now)) {
                                Ok(()) => admitted.push((key, now, n)),
                                Err(
                                    KeyedError::RateLimited(_)
                                    | KeyedError::TableFull
                                    | KeyedError::InsufficientCapacity(_),
                                ) => {}
                                Err(e) => panic!("{e:?}"),
                            }
                        }
                        barrier.wait();
                    }
                    admitted
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let m = limiter.metrics();
    assert!(m.evictions > 100, "{m:?}");
    assert_eq!(m.allowed, admitted.len() as u64, "{m:?}");
    check_windows(&admitted);
}

/// Across the 48-bit word's wrap (2^48 µs at scale 1, 2^46 µs at scale 4)
/// and a 32-bit one.
#[test]
fn churn_and_quota_changes_never_exceed_the_larger_quota() {
    for (k, start) in [
        (1u64 << 48) - 2_000_000,
        (1 << 46) - 2_000_000,
        (1 << 32) - 1_000_000,
    ]
    .into_iter()
    .enumerate()
    {
        run(start, 3_000, 0x5eed_0000 + k as u64);
    }
}
