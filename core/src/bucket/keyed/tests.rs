//! White-box tests: the slot words' admission counting, slot sizes, the
//! table's lock (per table with `std`, never taken by `available` for an
//! absent key) and in-place construction. The public behaviour is tested
//! in `core/tests/keyed*.rs`.

extern crate std;

use super::*;
use crate::{Duration, Instant};

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

/// Runs `f` on a thread of its own and waits up to 20 s for its result:
/// `None` if it is still blocked by then (the thread is left behind).
fn within_20s<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> Option<R> {
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    let got = rx.recv_timeout(std::time::Duration::from_secs(20)).ok()?;
    thread.join().expect("sent, so it does not panic");
    Some(got)
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
fn a_key_with_every_pin_taken_uses_the_lock() {
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

#[test]
fn sizes_per_entry() {
    // State word + arrival-time word + the key, padded.
    #[cfg(fusebox_wide_words)]
    assert_eq!(core::mem::size_of::<Slot<u64>>(), 24);
    #[cfg(fusebox_wide_words)]
    assert_eq!(core::mem::size_of::<Slot<u32>>(), 16);
}

/// With `std`, each table has its own lock: a new key in one table goes
/// in while another table's lock is held, and only that table's new keys
/// wait for it.
#[cfg(feature = "std")]
#[test]
fn two_tables_do_not_share_a_lock() {
    use std::sync::Arc;
    let a: Arc<KeyedLimiter<u32, 8>> = Arc::new(
        KeyedLimiter::new(per_sec(10), FullPolicy::Reject).expect("quota within the keyed range"),
    );
    let b = Arc::new(
        KeyedLimiter::<u32, 8>::new(per_sec(10), FullPolicy::Reject)
            .expect("quota within the keyed range"),
    );
    a.try_acquire(&1, T0).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let mut waiter = None;
    a.lock.with(|| {
        let b = b.clone();
        let got = within_20s(move || b.try_acquire(&7, T0));
        assert_eq!(got, Some(Ok(())), "B's insert waited for A's lock");
        // A's own new keys do wait, its present keys do not.
        let a2 = a.clone();
        waiter = Some(std::thread::spawn(move || {
            tx.send(a2.try_acquire(&2, T0)).unwrap();
        }));
        let a3 = a.clone();
        assert_eq!(within_20s(move || a3.try_acquire(&1, T0)), Some(Ok(())));
        let waiting = rx.recv_timeout(std::time::Duration::from_millis(50));
        assert!(waiting.is_err(), "A's insert ran under A's held lock");
    });
    let inserted = rx.recv_timeout(std::time::Duration::from_secs(20));
    assert_eq!(inserted, Ok(Ok(())));
    waiter.expect("spawned").join().unwrap();
    assert_eq!((a.metrics().keys, b.metrics().keys), (2, 1));
}

/// `available` takes no lock for an absent key (or a present one): with the
/// table's lock held (the critical section, without `std`) by this thread,
/// another thread reads an absent key, whose eviction mark it reads
/// lock-free, and a present one.
#[test]
fn available_never_takes_the_lock_for_an_absent_key() {
    use std::sync::Arc;
    let quota = Quota::with_period(Duration::from_micros(1_000)).unwrap();
    let l: Arc<KeyedLimiter<u64, 2>> = Arc::new(
        KeyedLimiter::new(quota, FullPolicy::Reject).expect("quota within the keyed range"),
    );
    let at = Instant::from_micros;
    l.try_acquire(&1, at(1_000)).unwrap();
    l.try_acquire(&2, at(10_000)).unwrap();
    l.try_acquire(&3, at(11_000)).unwrap(); // evicts key 2: full at 11 000
    assert_eq!(l.metrics().evictions, 1);
    l.lock.with(|| {
        let l = l.clone();
        let got = within_20s(move || {
            [
                l.available(&2, at(10_500)), // absent, from its mark
                l.available(&2, at(11_000)),
                l.available(&99, at(11_000)), // absent, never seen
                l.available(&3, at(11_000)),  // present, charged at 11 000
            ]
        });
        assert_eq!(got, Some([0, 1, 1, 0]), "available waited for the lock");
    });
}

/// Every construction goes through the same in-place initialisation
/// (checked by Miri): by value, and on the heap with `alloc`.
#[test]
fn constructions_in_place_start_empty() {
    let by_value: KeyedLimiter<std::string::String, 16, 2> =
        KeyedLimiter::with_tiers([per_sec(1), per_sec(3)], FullPolicy::Overflow(per_sec(2)))
            .expect("quota within the keyed range");
    let check = |l: &KeyedLimiter<std::string::String, 16, 2>| {
        assert_eq!(l.metrics(), KeyedMetrics::default());
        assert!(l
            .slots
            .iter()
            .all(|s| KeyedLimiter::<std::string::String, 16, 2>::callers(s) == 0));
        for k in 0..20 {
            let key = std::format!("k{k}");
            let _ = l.try_acquire_tier(&key, k % 2, T0);
        }
        assert_eq!(l.available(&"k1".into(), T0), 2);
        assert!(l.metrics().keys > 0);
    };
    check(&by_value);
    #[cfg(feature = "alloc")]
    {
        let boxed = KeyedLimiter::<std::string::String, 16, 2>::with_hasher_boxed(
            [per_sec(1), per_sec(3)],
            FullPolicy::Overflow(per_sec(2)),
            crate::hash::FixedState::with_seed(3),
        )
        .expect("quota within the keyed range");
        check(&boxed);
        let one = KeyedLimiter::<u8, 4>::new_boxed(per_sec(1), FullPolicy::Reject).unwrap();
        one.try_acquire(&1, T0).unwrap();
        assert_eq!(one.metrics().keys, 1);
    }
}

/// A word the sweep has not reached (a decision racing a change) is
/// converted by the decision itself, to the state the sweep gives it.
#[test]
fn a_decision_converts_a_word_the_sweep_has_not_reached() {
    let cases = [
        (per_sec(10), per_sec(100)),
        (per_sec(100), per_sec(3)),
        (
            per_sec(7),
            Quota::per_second(2).unwrap().with_burst(20).unwrap(),
        ),
    ];
    for (old, new) in cases {
        let swept: KeyedLimiter<u32, 8> = KeyedLimiter::new(old, FullPolicy::Reject).unwrap();
        let lazy: KeyedLimiter<u32, 8> = KeyedLimiter::new(old, FullPolicy::Reject).unwrap();
        for l in [&swept, &lazy] {
            l.try_acquire_n(&1, old.burst() - 1, T0).unwrap();
            l.try_acquire(&2, T0).unwrap();
        }
        let at = T0 + Duration::from_millis(30);
        swept.set_quota(0, new, at).unwrap();
        // Published, not swept: every word still has the old tag.
        let params = design::params(&new).unwrap();
        lazy.lock
            .with(|| lazy.tiers.publish(0, &new, &params, at.as_micros()));
        for ms in [30, 31, 45, 100, 250, 1_000] {
            let now = T0 + Duration::from_millis(ms);
            assert_eq!(lazy.available(&1, now), swept.available(&1, now), "{ms} ms");
        }
        // Decisions, refused or admitted, agree; an admission writes the
        // converted word with the new tag, which the sweep then leaves.
        for ms in [30, 40, 60, 90, 200, 200, 200, 700] {
            let now = T0 + Duration::from_millis(ms);
            for key in [1, 2] {
                assert_eq!(
                    lazy.try_acquire(&key, now),
                    swept.try_acquire(&key, now),
                    "{ms} ms"
                );
            }
        }
        let words = |l: &KeyedLimiter<u32, 8>| {
            l.slots
                .iter()
                .map(|s| s.tat.load(Ordering::Relaxed))
                .collect::<std::vec::Vec<_>>()
        };
        assert_eq!(words(&lazy), words(&swept));
        lazy.lock
            .with(|| lazy.slots.iter().for_each(|s| lazy.sweep(s, 0)));
        assert_eq!(words(&lazy), words(&swept));
    }
}

/// `try_acquire_left` against the documented contract: admitted into the
/// key's own bucket, it reads exactly what `available` reads right after
/// (on every path: lock-free, inserted, found under the lock with every
/// pin taken, across a quota change and time wrapping the narrow words
/// past 2^31 units); charged to the overflow bucket, `None`; refused, the
/// same error as `try_acquire`.
#[test]
fn tokens_left_after_an_admission_are_what_available_reads() {
    type L = KeyedLimiter<u32, 4>;
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for policy in [FullPolicy::Reject, FullPolicy::Overflow(per_sec(50))] {
        let l: KeyedLimiter<u32, 8> =
            KeyedLimiter::new(Quota::new(7, Duration::from_millis(1_300)).unwrap(), policy)
                .expect("quota within the keyed range");
        let twin: KeyedLimiter<u32, 8> =
            KeyedLimiter::new(Quota::new(7, Duration::from_millis(1_300)).unwrap(), policy)
                .expect("quota within the keyed range");
        let (mut now, mut own, mut overflow, mut refused) = (T0, 0, 0, 0);
        // ~60 h of simulated time: past the narrow words' 35.8-minute wrap.
        // Miri checks the memory accesses, not the statistics: fewer steps.
        let steps: u32 = if cfg!(miri) { 300 } else { 40_000 };
        for step in 0..steps {
            if step == steps / 2 {
                let at = now;
                l.set_quota(0, per_sec(11), at).unwrap();
                twin.set_quota(0, per_sec(11), at).unwrap();
            }
            // Mostly a burst (refusals), now and then a jump of up to
            // 10 min (refills, evictions, wrapping).
            now += Duration::from_micros(if next() % 50 == 0 {
                next() % 600_000_000
            } else {
                next() % 2_000
            });
            // Few keys most of the time (found lock-free), bursts of many
            // (insertions, evictions, a full table).
            let key = if next() % 8 == 0 {
                (next() % 64) as u32
            } else {
                (next() % 3) as u32
            };
            let expected = twin.try_acquire(&key, now);
            match l.try_acquire_left(&key, now) {
                Ok(Some(left)) => {
                    assert_eq!(expected, Ok(()));
                    assert_eq!(
                        left.tokens,
                        l.available(&key, now),
                        "step {step}, key {key}"
                    );
                    // Full again exactly `until_full` later (to the µs,
                    // rounded up), by what `available` reads then.
                    let burst = l.quota(0).unwrap().burst();
                    let full = now + left.until_full;
                    assert_eq!(l.available(&key, full), burst, "step {step}, key {key}");
                    if left.until_full > Duration::ZERO {
                        let before = full - Duration::from_micros(1);
                        assert!(l.available(&key, before) < burst, "step {step}, key {key}");
                    }
                    own += 1;
                }
                Ok(None) => {
                    assert_eq!(expected, Ok(()));
                    assert!(matches!(policy, FullPolicy::Overflow(_)));
                    overflow += 1;
                }
                Err(e) => {
                    assert_eq!(expected, Err(e));
                    refused += 1;
                }
            }
        }
        assert!(own > steps / 4 && refused > steps / 100, "{own} {refused}");
        assert_eq!(overflow > 0, matches!(policy, FullPolicy::Overflow(_)));
        assert_eq!(l.metrics(), twin.metrics());
    }
    // Found under the lock, with every pin (registration) taken.
    let l: L = KeyedLimiter::new(per_sec(100), FullPolicy::Reject).unwrap();
    let ten_ms = Duration::from_millis(10);
    let left = |tokens, until_full| Ok(Some(KeyedLeft { tokens, until_full }));
    assert_eq!(l.try_acquire_left(&1, T0), left(99, ten_ms));
    let (fp, home) = l.locate(&1);
    let i = L::window(home)
        .find(|&i| l.slots[i].state.load(Ordering::Relaxed) >> state::FP_SHIFT == fp)
        .unwrap();
    let guards: std::vec::Vec<_> = (0..L::MAX_CALLERS)
        .map(|_| l.hold(&l.slots[i], fp, &1).unwrap())
        .collect();
    assert_eq!(
        l.try_acquire_left(&1, T0),
        left(98, Duration::from_millis(20))
    );
    drop(guards);
    assert_eq!(l.available(&1, T0), 98);
}

/// The counters are one atomic word each, as `KeyedMetrics` documents:
/// 64 bits with 64-bit atomics, 32 bits on Cortex-M, where they wrap at
/// 2³² (and a read after the wrap is lower than the one before).
#[test]
#[cfg_attr(
    miri,
    ignore = "counter arithmetic over 3 200 calls of one key: run natively (its slot paths are the other tests')"
)]
fn metrics_counters_wrap_at_the_word_width() {
    let l: KeyedLimiter<u32, 4> = KeyedLimiter::new(plenty(), FullPolicy::Reject).unwrap();
    let base = u64::from(u32::MAX) - 100;
    l.allowed.set(base);
    l.limited.set(base);
    // Enough admissions of one key for its slot to fold batches into the
    // global counter, past 2^32.
    for _ in 0..3_000 {
        l.try_acquire(&1, T0).unwrap();
    }
    for _ in 0..200 {
        assert!(l.try_acquire_n(&2, 2_000_000, T0).is_err());
    }
    let m = l.metrics();
    let wrap = if cfg!(fusebox_wide_words) { 0 } else { 1 << 32 };
    assert_eq!(m.allowed, base + 3_000 - wrap);
    assert_eq!(m.limited, base + 200 - wrap);
}
