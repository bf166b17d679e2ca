//! Heap construction in place (feature `alloc`) of every large structure,
//! at sizes Miri can run: `scripts/test.sh` runs this file under Miri (the
//! 1 M-entry tables of `large_tables.rs` are too slow there), so the unsafe
//! in-place writes behind `new_boxed` are checked for undefined behaviour.
#![cfg(feature = "alloc")]

use fusebox::bucket::{FullPolicy, KeyedLimiter, Quota};
use fusebox::cache::{ConcurrentCache, LruCache};
use fusebox::hash::FixedState;
use fusebox::histogram::Histogram;
use fusebox::{Duration, Instant};

#[test]
fn keyed_limiter_boxed_works_like_the_stack_one() {
    let quota = Quota::per_second(2).unwrap();
    let boxed = KeyedLimiter::<u64, 64>::new_boxed(quota, FullPolicy::Reject).unwrap();
    let stack = KeyedLimiter::<u64, 64>::new(quota, FullPolicy::Reject).unwrap();
    let now = Instant::from_secs(1);
    for key in 0..40u64 {
        for _ in 0..3 {
            assert_eq!(
                boxed.try_acquire(&key, now).is_ok(),
                stack.try_acquire(&key, now).is_ok()
            );
        }
    }
    assert_eq!(boxed.metrics(), stack.metrics());
    let tiers = KeyedLimiter::<u32, 16, 2>::with_hasher_boxed(
        [quota, Quota::per_second(5).unwrap()],
        FullPolicy::Reject,
        FixedState::with_seed(7),
    )
    .unwrap();
    assert_eq!(tiers.quota(1).map(|q| q.burst()), Some(5));
    assert!(tiers.try_acquire_tier(&3, 1, now).is_ok());
    assert!(tiers.try_acquire(&3, now + Duration::from_secs(1)).is_ok());
}

#[test]
fn caches_boxed_start_empty_and_work() {
    let mut lru = LruCache::<u32, u64, 32>::new_boxed();
    assert!(lru.is_empty());
    for k in 0..40u32 {
        lru.put(k, u64::from(k) * 10);
    }
    assert_eq!(lru.len(), 32);
    assert_eq!(lru.get(&39), Some(&390));
    assert_eq!(lru.get(&0), None);
    let seeded = LruCache::<u32, u32, 8, FixedState>::with_hasher_boxed(FixedState::with_seed(1));
    assert_eq!(seeded.capacity(), 8);

    let cc = ConcurrentCache::<u32, u32, 8, 4>::new_boxed();
    cc.insert(5, 50).unwrap();
    assert_eq!(cc.get(&5), Some(50));
    let seeded =
        ConcurrentCache::<u32, u32, 8, 4, FixedState>::with_hasher_boxed(FixedState::with_seed(2));
    assert_eq!(seeded.get(&5), None);
}

#[test]
fn histogram_boxed_records() {
    let h = Histogram::<256>::new_boxed();
    assert_eq!(h.count(), 0);
    for v in [1u64, 10, 100, 1_000] {
        h.record(v);
    }
    assert_eq!((h.count(), h.min(), h.max()), (4, Some(1), Some(1_000)));
}

/// A hasher owning heap memory, for `keyed_limiter_boxed_with_heap_keys_and_hasher`.
#[derive(Clone)]
struct BoxedSeed(Box<u64>);

impl core::hash::BuildHasher for BoxedSeed {
    type Hasher = std::collections::hash_map::DefaultHasher;
    fn build_hasher(&self) -> Self::Hasher {
        use core::hash::Hasher;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        h.write_u64(*self.0);
        h
    }
}

/// Heap keys and a hasher owning heap memory, built in place on the heap:
/// each written once (the hasher moved in, not copied), each key cloned
/// into its slot, moved out on eviction, and all dropped exactly once with
/// the table (Miri reports a leak or double free); also zero-sized and
/// 1 KiB keys.
#[test]
fn keyed_limiter_boxed_with_heap_keys_and_hasher() {
    let quota = Quota::per_second(1).unwrap();
    let l = KeyedLimiter::<String, 2, 1, BoxedSeed>::with_hasher_boxed(
        [quota],
        FullPolicy::Reject,
        BoxedSeed(Box::new(7)),
    )
    .unwrap();
    for (i, name) in ["alice", "bob", "carol", "dave", "erin"].iter().enumerate() {
        let now = Instant::from_secs(10 * i as u64 + 1); // each key idle by the next
        l.try_acquire(&(*name).to_owned(), now).unwrap();
    }
    let m = l.metrics();
    assert_eq!((m.keys, m.evictions, m.allowed), (2, 3, 5));
    drop(l);

    let unit = KeyedLimiter::<(), 1>::new_boxed(quota, FullPolicy::Reject).unwrap();
    unit.try_acquire(&(), Instant::from_secs(1)).unwrap();
    assert!(unit.try_acquire(&(), Instant::from_secs(1)).is_err());
    assert_eq!(unit.metrics().keys, 1);

    let big = KeyedLimiter::<[u64; 128], 2>::new_boxed(quota, FullPolicy::Reject).unwrap();
    for k in 0..5u64 {
        big.try_acquire(&[k; 128], Instant::from_secs(10 * k + 1))
            .unwrap();
    }
    assert_eq!(big.metrics().evictions, 3);
}
