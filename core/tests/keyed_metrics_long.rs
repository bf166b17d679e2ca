//! `KeyedLimiter::metrics` over long single-threaded histories: "exact
//! whenever no call is in flight" (`KeyedMetrics`, the `keyed` module
//! docs), while each key's admissions run far past the slot's pending
//! count (9 bits with 64-bit atomics, 12 on Cortex-M) and its batch (256,
//! 2 048), and keys are evicted (which folds their remainder) and come
//! back all the time. Checked every 97 calls and at the end: `allowed`
//! (requests admitted), `limited` (refused for any reason), `table_full`,
//! and `keys` (at most `N`); evictions must have happened; requests for 0
//! tokens succeed and are not counted.
#![cfg(not(miri))]

use fusebox::bucket::{FullPolicy, KeyedError, KeyedLimiter, Quota};
use fusebox::{Duration, Instant};

use crate::common::Rng;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
struct K(u32);

/// `cold` calls in 1 000 go to a key of `keys` (the rest to keys 0 to 2):
/// with few, the hot keys stay in their slots for thousands of admissions
/// between evictions.
fn history<const N: usize>(seed: u64, quota: Quota, policy: FullPolicy, keys: u32, cold: u64) {
    let steps = 60_000;
    let limiter: KeyedLimiter<K, N> = KeyedLimiter::new(quota, policy).unwrap();
    let mut rng = Rng(seed | 1);
    let (mut allowed, mut limited, mut full) = (0u64, 0u64, 0u64);
    let mut now = 1u64 << 33;
    for step in 0..steps {
        // Hot keys mostly (their pending counts pass the batch), a cold
        // tail that forces evictions.
        let k = if rng.below(1_000) < cold {
            rng.below(u64::from(keys)) as u32
        } else {
            rng.below(3) as u32
        };
        now += rng.below(3);
        let n = rng.below(4) as u32;
        let at = Instant::from_micros(now);
        let mode = rng.below(3);
        let result = match mode {
            // `n = 0` "always succeeds and touches nothing: ... nothing is
            // evicted or counted".
            0 if n == 0 => {
                assert_eq!(limiter.try_acquire_n(&K(k), 0, at), Ok(()));
                continue;
            }
            0 => limiter.try_acquire_n(&K(k), n, at),
            1 => limiter.try_acquire_left(&K(k), at).map(|_| ()),
            _ => limiter.try_acquire(&K(k), at),
        };
        match result {
            Ok(()) => allowed += 1,
            Err(KeyedError::TableFull) => {
                full += 1;
                limited += 1;
            }
            Err(_) => limited += 1,
        }
        if step % 97 == 0 || step + 1 == steps {
            let m = limiter.metrics();
            assert_eq!(
                (m.allowed, m.limited, m.table_full),
                (allowed, limited, full),
                "seed {seed} step {step}: {m:?}"
            );
            assert!(m.keys <= N as u64, "{m:?}");
        }
    }
    let m = limiter.metrics();
    assert!(
        m.evictions > 0 || keys as usize <= N,
        "no eviction happened: {m:?}"
    );
}

/// A rate so high that nearly every request is admitted: the pending
/// counts pass their range hundreds of times.
#[test]
fn metrics_stay_exact_past_the_slot_counters() {
    let fast = Quota::new(4, Duration::from_micros(1))
        .unwrap()
        .with_burst(1_000)
        .unwrap();
    for seed in 0..3 {
        history::<4>(seed, fast, FullPolicy::Reject, 40, 250);
        history::<4>(seed, fast, FullPolicy::Reject, 40, 2);
        history::<8>(seed, fast, FullPolicy::Overflow(fast), 64, 1);
    }
}

/// A rate that refuses about half: refusals, admissions and evictions mix.
#[test]
fn metrics_stay_exact_with_refusals() {
    let slow = Quota::new(1, Duration::from_micros(3))
        .unwrap()
        .with_burst(4)
        .unwrap();
    for seed in 10..13 {
        history::<4>(seed, slow, FullPolicy::Reject, 40, 250);
        history::<16>(seed, slow, FullPolicy::Overflow(slow), 64, 20);
    }
}
