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
