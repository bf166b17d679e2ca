//! A crowd on one key: 72 threads charge the same key of a
//! `KeyedLimiter`, and the key's `Eq` yields the thread (a careless `Eq`,
//! or just preemption), so callers stay pinned (registered) on its slot
//! while others arrive: more than the slot's 62 pins (63 registrations on
//! Cortex-M) are wanted at once, and the rest take the locked path ("A key
//! with 62 callers pinned at once ... sends the next ones through the
//! lock, which charges the bucket without pinning"). Other keys come and
//! go meanwhile: 40 neighbours, with a plain `Eq`, share the third of the
//! calls not on the crowded key, each idle (its bucket full again) between
//! its calls, so they evict one another from the table's other slots under
//! it.
//!
//! The crowded key is in the table before the crowd starts. A key that
//! finds no idle slot is refused (`TableFull`), as documented, and a key
//! with a caller pinned on it is never idle: with every key's `Eq`
//! yielding, a loaded core parked callers pinned on whichever neighbours
//! held the other slots, and those held them for the whole run (9 to 12
//! evictions in 108 000 calls), shutting out the crowded key until the
//! last threads ended (2 runs in about 2 000 on one core shared with
//! another run). Before, with 4 busy neighbours for the 4 slots,
//! whichever keys came first held the table for good (CI, once).
//!
//! What must hold whatever the schedule: the key's admissions meet
//! `burst + rate·T` over every interval (`common::check_curve`), no
//! request is charged to another key (each key's own curve), and
//! `metrics().allowed` equals the admissions once everyone is done.
//! The virtual clock spans 0.2 s, within the 32-bit words' ~1.05 s
//! backward tolerance, so any thread's reading is within it of any call.
#![cfg(not(miri))]

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Barrier;
use std::thread;

use fusebox::bucket::{FullPolicy, KeyedError, KeyedLimiter, Quota};
use fusebox::{Duration, Instant};

use crate::common::{check_curve, Rng};

const THREADS: u64 = 72;
const CALLS: usize = 1_500;
const KEYS: u32 = 41;

/// A key whose comparison yields the thread while the caller is pinned,
/// when the crowded key (0) is compared.
#[derive(Clone, Copy, Debug)]
struct Slow(u32);

impl PartialEq for Slow {
    fn eq(&self, other: &Self) -> bool {
        if self.0 == 0 || other.0 == 0 {
            thread::yield_now();
        }
        self.0 == other.0
    }
}

impl Eq for Slow {}

impl Hash for Slow {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

#[test]
fn a_crowded_key_keeps_its_curve() {
    // One token per 100 µs, burst 5.
    let quota = Quota::new(1, Duration::from_micros(100))
        .unwrap()
        .with_burst(5)
        .unwrap();
    let limiter: KeyedLimiter<Slow, 4> = KeyedLimiter::new(quota, FullPolicy::Reject).unwrap();
    let clock = AtomicU64::new(1 << 32);
    // The crowded key's first call, before the crowd: it holds a slot from
    // here on (pinned, or drained by the crowd, so never idle).
    let first = clock.fetch_add(1, Ordering::Relaxed);
    limiter
        .try_acquire(&Slow(0), Instant::from_micros(first))
        .unwrap();
    let barrier = Barrier::new(THREADS as usize);
    let logs: Vec<Vec<Vec<(u64, u32)>>> = thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (limiter, clock, barrier) = (&limiter, &clock, &barrier);
                s.spawn(move || {
                    let mut rng = Rng((t + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                    let mut mine = vec![Vec::new(); KEYS as usize];
                    barrier.wait();
                    for _ in 0..CALLS {
                        // Two calls in three on key 0.
                        let k = if rng.below(3) < 2 {
                            0
                        } else {
                            1 + rng.below(u64::from(KEYS - 1)) as u32
                        };
                        let now = clock.fetch_add(rng.below(3), Ordering::Relaxed);
                        match limiter.try_acquire(&Slow(k), Instant::from_micros(now)) {
                            Ok(()) => mine[k as usize].push((now, 1)),
                            Err(KeyedError::RateLimited(_) | KeyedError::TableFull) => {}
                            Err(e) => panic!("{e:?}"),
                        }
                    }
                    mine
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut keyed = vec![Vec::new(); KEYS as usize];
    keyed[0].push((first, 1));
    for log in logs {
        for (k, v) in log.into_iter().enumerate() {
            keyed[k].extend(v);
        }
    }
    let allowed: usize = keyed.iter().map(Vec::len).sum();
    assert!(
        keyed[0].len() > 100,
        "the crowded key was served: {}",
        keyed[0].len()
    );
    for (k, v) in keyed.into_iter().enumerate() {
        check_curve(&format!("key {k}"), v, 1, 100, 5);
    }
    let metrics = limiter.metrics();
    assert_eq!(metrics.allowed, allowed as u64);
    assert!(metrics.evictions > 100, "neighbours churned: {metrics:?}");
}
