//! `ConcurrentCache` under real threads, and against a sequential model.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Barrier;
use std::thread;

use fusebox::cache::ConcurrentCache;

const THREADS: usize = 4;
const OPS: u64 = if cfg!(miri) { 60 } else { 200_000 };

/// A value that proves which key and write it came from: torn or foreign
/// values fail `check`.
fn value_for(key: u64, version: u64) -> [u64; 3] {
    let mix = (key ^ 0x9e37_79b9_7f4a_7c15)
        .wrapping_mul(version | 1)
        .rotate_left(17);
    [key, version, mix]
}

fn check(key: u64, v: [u64; 3]) -> bool {
    v[0] == key && value_for(key, v[1]) == v
}

#[test]
fn no_torn_or_foreign_values_under_contention() {
    // Few sets and keys: every set sees racing inserts, removes and gets.
    let cache: ConcurrentCache<u64, [u64; 3], 2, 4> = ConcurrentCache::new().with_lookup_counters();
    let hits = AtomicU64::new(0);
    let bad = AtomicBool::new(false);
    let barrier = Barrier::new(THREADS);
    thread::scope(|s| {
        for t in 0..THREADS as u64 {
            let (cache, hits, bad, barrier) = (&cache, &hits, &bad, &barrier);
            s.spawn(move || {
                barrier.wait();
                let mut x = 0x2545_f491_4f6c_dd1d ^ t;
                for i in 0..OPS {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let key = x % 24;
                    match x % 10 {
                        0..=3 => {
                            let _ = cache.insert(key, value_for(key, i * 8 + t));
                        }
                        4 => {
                            if let Ok(Some(v)) = cache.remove(&key) {
                                if !check(key, v) {
                                    bad.store(true, Ordering::Relaxed);
                                }
                            }
                        }
                        _ => {
                            if let Some(v) = cache.get(&key) {
                                hits.fetch_add(1, Ordering::Relaxed);
                                if !check(key, v) {
                                    bad.store(true, Ordering::Relaxed);
                                }
                            }
                        }
                    }
                }
            });
        }
    });
    assert!(
        !bad.load(Ordering::Relaxed),
        "a torn or foreign value was returned"
    );
    if !cfg!(miri) {
        assert!(
            hits.load(Ordering::Relaxed) > OPS / 10,
            "the test exercised hits"
        );
    }
    let m = cache.metrics();
    assert_eq!(m.hits, hits.load(Ordering::Relaxed));
}

/// The rustdoc's promise is stronger than "not torn, not foreign": a
/// `get(k)` returns `None` or a value that was, at some moment during the
/// call, the one most recently inserted for `k`. So a value whose
/// replacement had returned before the `get` began must never come back.
/// Each key has one writer, which inserts versions 1, 2, … and publishes
/// (release) each version whose insert returned `Ok`; readers load it
/// (acquire) before their `get` and must get that version or a later one.
/// Two writers of four keys each share one set of 4 ways, so keys are
/// evicted and come back in other ways all the time, and readers race
/// the seqlock of every way until the writers are done. Sound: a
/// review's check, no defect found.
#[test]
fn a_get_never_returns_a_value_replaced_before_it_began() {
    const KEYS: u64 = 8;
    let cache: ConcurrentCache<u64, [u64; 3], 1, 4> = ConcurrentCache::new();
    let done: [AtomicU64; KEYS as usize] = std::array::from_fn(|_| AtomicU64::new(0));
    let (hits, stale, written) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    let writing = AtomicU64::new(2);
    let barrier = Barrier::new(4);
    thread::scope(|s| {
        for w in 0..2u64 {
            let (cache, done, barrier, written, writing) =
                (&cache, &done, &barrier, &written, &writing);
            s.spawn(move || {
                barrier.wait();
                let mut version = [0u64; KEYS as usize];
                for i in 0..OPS {
                    let key = w + 2 * (i % (KEYS / 2));
                    let k = key as usize;
                    version[k] += 1;
                    if cache.insert(key, value_for(key, version[k])).is_ok() {
                        done[k].store(version[k], Ordering::Release);
                        written.fetch_add(1, Ordering::Relaxed);
                    }
                }
                writing.fetch_sub(1, Ordering::Release);
            });
        }
        for r in 0..2u64 {
            let (cache, done, barrier, hits, stale, writing) =
                (&cache, &done, &barrier, &hits, &stale, &writing);
            s.spawn(move || {
                barrier.wait();
                let mut x = 0x9e37_79b9_7f4a_7c15 ^ r;
                // While the writers write, then 1 000 reads more.
                let mut after = 0;
                while after < 1_000 {
                    if writing.load(Ordering::Acquire) == 0 {
                        after += 1;
                    }
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let key = x % KEYS;
                    let floor = done[key as usize].load(Ordering::Acquire);
                    if let Some(v) = cache.get(&key) {
                        hits.fetch_add(1, Ordering::Relaxed);
                        if !check(key, v) || v[1] < floor {
                            stale.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
    });
    assert_eq!(
        stale.load(Ordering::Relaxed),
        0,
        "stale, torn or foreign values"
    );
    // Both sides did work: the writers inserted, the readers hit (4 of
    // the 8 keys are present once the writers are done, if not before).
    assert!(hits.load(Ordering::Relaxed) > 0, "the test exercised hits");
    assert!(written.load(Ordering::Relaxed) >= 4, "the writers wrote");
}

/// "A key present throughout a `get` is never hidden by its tag": five
/// keys stay in one 8-way set (both tag words in use) while two writers
/// insert and remove other keys in it, rewriting the tag words, and two
/// readers look the five up. At most two other keys are ever present, so
/// nothing is evicted and the five are present throughout: every lookup
/// must hit (their slots are never written, so no read gives up either).
/// Sound: a review's check, no defect found.
#[test]
fn keys_present_throughout_are_always_found() {
    const PINNED: u64 = 5;
    let cache: ConcurrentCache<u64, u64, 1, 8> = ConcurrentCache::new().with_lookup_counters();
    for k in 0..PINNED {
        cache.insert(k, k * 10).unwrap();
    }
    let writing = AtomicU64::new(2);
    let (missed, churned) = (AtomicU64::new(0), AtomicU64::new(0));
    let barrier = Barrier::new(4);
    thread::scope(|s| {
        for w in 0..2u64 {
            let (cache, writing, churned, barrier) = (&cache, &writing, &churned, &barrier);
            s.spawn(move || {
                barrier.wait();
                for i in 0..OPS / 4 {
                    let k = 1_000 + w * OPS + i;
                    if cache.insert(k, i).is_ok() {
                        churned.fetch_add(1, Ordering::Relaxed);
                        // Retried until done: a key left behind could
                        // make a later insert evict one of the five.
                        while cache.remove(&k).is_err() {}
                    }
                }
                writing.fetch_sub(1, Ordering::Release);
            });
        }
        for r in 0..2u64 {
            let (cache, writing, missed, barrier) = (&cache, &writing, &missed, &barrier);
            s.spawn(move || {
                barrier.wait();
                let mut k = r;
                while writing.load(Ordering::Acquire) != 0 {
                    k = (k + 1) % PINNED;
                    if cache.get(&k) != Some(k * 10) {
                        missed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert_eq!(
        missed.load(Ordering::Relaxed),
        0,
        "a present key was missed"
    );
    let m = cache.metrics();
    assert_eq!((m.misses, m.evictions), (0, 0));
    assert!(churned.load(Ordering::Relaxed) > 0, "the writers wrote");
    for k in 0..PINNED {
        assert_eq!(cache.get(&k), Some(k * 10));
    }
}

#[cfg(not(miri))]
mod model {
    use fusebox::cache::ConcurrentCache;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Get(u8),
        Insert(u8, u32),
        Remove(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..12).prop_map(Op::Get),
            (0u8..12, any::<u32>()).prop_map(|(k, v)| Op::Insert(k, v)),
            (0u8..12).prop_map(Op::Remove),
        ]
    }

    proptest! {
        /// One set of 4 ways against a recency-ordered Vec (front = most
        /// recent): same hits, values, evictions.
        #[test]
        fn one_set_is_an_exact_lru(ops in prop::collection::vec(op(), 1..300)) {
            let cache: ConcurrentCache<u8, u32, 1, 4> = ConcurrentCache::new();
            let mut model: Vec<(u8, u32)> = Vec::new();
            let mut evictions = 0;
            for op in ops {
                match op {
                    Op::Get(k) => {
                        let want = model.iter().position(|e| e.0 == k).map(|i| {
                            let e = model.remove(i);
                            model.insert(0, e);
                            e.1
                        });
                        prop_assert_eq!(cache.get(&k), want);
                    }
                    Op::Insert(k, v) => {
                        if let Some(i) = model.iter().position(|e| e.0 == k) {
                            model.remove(i);
                        } else if model.len() == 4 {
                            model.pop();
                            evictions += 1;
                        }
                        model.insert(0, (k, v));
                        prop_assert_eq!(cache.insert(k, v), Ok(()));
                    }
                    Op::Remove(k) => {
                        let want = model.iter().position(|e| e.0 == k).map(|i| model.remove(i).1);
                        prop_assert_eq!(cache.remove(&k), Ok(want));
                    }
                }
                prop_assert_eq!(cache.metrics().evictions, evictions);
            }
        }
    }
}

/// A key whose `Eq` panics while this thread's trap is armed.
#[derive(Clone, Copy, Debug, bytemuck::NoUninit)]
#[repr(transparent)]
struct TrapKey(u32);

impl std::hash::Hash for TrapKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

thread_local! {
    static ARMED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl PartialEq for TrapKey {
    fn eq(&self, other: &Self) -> bool {
        assert!(!ARMED.get(), "K::eq panics");
        self.0 == other.0
    }
}
impl Eq for TrapKey {}

/// `K::eq` runs under the set's writer lock in `insert` and `remove`: a
/// panic there unwinds through the lock's guard, so the set is not left
/// locked for ever (every later write would be `Contended`).
#[test]
fn a_panicking_eq_never_leaves_a_set_locked() {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    // One set: every key meets every other.
    let cache: ConcurrentCache<TrapKey, u64, 1, 4> = ConcurrentCache::new();
    cache.insert(TrapKey(1), 10).unwrap();
    let armed = |f: &dyn Fn()| {
        ARMED.set(true);
        let got = catch_unwind(AssertUnwindSafe(f));
        ARMED.set(false);
        assert!(got.is_err(), "the trap did not fire");
    };
    // Replacing key 1 compares it under the lock.
    armed(&|| {
        let _ = cache.insert(TrapKey(1), 11);
    });
    cache
        .insert(TrapKey(2), 20)
        .expect("the set is not left locked");
    armed(&|| {
        let _ = cache.remove(&TrapKey(1));
    });
    assert_eq!(cache.remove(&TrapKey(1)), Ok(Some(10)));
    // A reader holds no lock; still fine after its panic.
    armed(&|| {
        let _ = cache.get(&TrapKey(2));
    });
    assert_eq!(cache.get(&TrapKey(2)), Some(20));
    cache.insert(TrapKey(3), 30).unwrap();
    let m = cache.metrics();
    assert_eq!((m.inserts, m.contended), (3, 0));
}
