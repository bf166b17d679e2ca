//! White-box tests of the state word's admission counting (the public
//! behaviour is tested in `bucket/keyed_tests.rs`).

extern crate std;

use super::*;
use crate::Duration;

const T0: Instant = Instant::from_secs(100);

fn per_sec(n: u32) -> Quota {
    Quota::per_second(n).unwrap()
}

/// A quota that never runs out within a test.
fn plenty() -> Quota {
    Quota::per_second(1_000_000)
        .unwrap()
        .with_burst(1_000_000)
        .unwrap()
}

fn pending_in_slots<K: Eq + core::hash::Hash + Clone, const N: usize, const T: usize>(
    l: &KeyedLimiter<K, N, T>,
) -> u64 {
    l.slots
        .iter()
        .map(KeyedLimiter::<K, N, T>::slot_pending)
        .sum()
}

#[test]
fn admissions_fold_into_the_global_counter_exactly() {
    let l: KeyedLimiter<u32, 8> =
        KeyedLimiter::new(plenty(), FullPolicy::Reject).expect("quota within the keyed range");
    let total = 3 * design::FOLD_AT + 5;
    for i in 0..total {
        l.try_acquire(&(i as u32 % 2), T0).unwrap();
        assert_eq!(l.metrics().allowed, i + 1);
    }
    // Most went through folds; what is left waits in the slots, below the
    // threshold.
    assert!(l.allowed.get() >= 2 * design::FOLD_AT);
    assert!(pending_in_slots(&l) < 2 * design::FOLD_AT);
    assert_eq!(l.allowed.get() + pending_in_slots(&l), total);
    // Refusals are counted globally, admissions still exact.
    l.try_acquire_n(&0, 2_000_000, T0).unwrap_err();
    assert_eq!((l.metrics().allowed, l.metrics().limited), (total, 1));
}

#[test]
fn eviction_folds_the_evicted_keys_pending_admissions() {
    let l: KeyedLimiter<u32, 1> = KeyedLimiter::new(per_sec(1_000), FullPolicy::Reject)
        .expect("quota within the keyed range");
    for _ in 0..10 {
        l.try_acquire(&1, T0).unwrap();
    }
    assert_eq!(pending_in_slots(&l), 9, "the first one was an insertion");
    l.try_acquire(&2, T0 + Duration::from_secs(5)).unwrap(); // evicts key 1
    assert_eq!(pending_in_slots(&l), 0);
    let m = l.metrics();
    assert_eq!((m.allowed, m.evictions, m.keys), (11, 1, 1));
}

#[test]
fn a_key_with_every_reader_slot_taken_uses_the_critical_section() {
    type L = KeyedLimiter<u32, 4>;
    let l: KeyedLimiter<u32, 4> =
        KeyedLimiter::new(per_sec(100), FullPolicy::Reject).expect("quota within the keyed range");
    l.try_acquire(&1, T0).unwrap();
    let (fp, home) = l.locate(&1);
    let i = KeyedLimiter::<u32, 4>::window(home)
        .find(|&i| l.slots[i].state.load(Ordering::Relaxed) >> state::FP_SHIFT == fp)
        .unwrap();
    // Hold every pin (registration on Cortex-M) the slot has room for.
    let guards: std::vec::Vec<_> = (0..L::MAX_CALLERS)
        .map(|_| l.hold(&l.slots[i], fp, &1).unwrap())
        .collect();
    assert!(l.hold(&l.slots[i], fp, &1).is_none());
    // Callers still get the key's own bucket, through `charge_locked`.
    for _ in 0..9 {
        l.try_acquire(&1, T0).unwrap();
    }
    assert_eq!(l.available(&1, T0), 90);
    drop(guards);
    assert_eq!(L::callers(&l.slots[i]), 0);
    let m = l.metrics();
    assert_eq!((m.allowed, m.keys), (10, 1));
}

#[test]
fn threads_count_every_admission() {
    let threads = 4;
    let per_thread = if cfg!(miri) {
        60
    } else {
        3 * design::FOLD_AT as u32
    };
    let l: KeyedLimiter<u32, 16> =
        KeyedLimiter::new(plenty(), FullPolicy::Reject).expect("quota within the keyed range");
    std::thread::scope(|s| {
        for t in 0..threads {
            let l = &l;
            s.spawn(move || {
                for i in 0..per_thread {
                    l.try_acquire(&((i + t) % 3), T0).unwrap();
                }
            });
        }
    });
    let m = l.metrics();
    assert_eq!(
        (m.allowed, m.limited, m.keys),
        (u64::from(threads * per_thread), 0, 3)
    );
    for slot in &l.slots {
        assert_eq!(KeyedLimiter::<u32, 16>::callers(slot), 0);
    }
}
