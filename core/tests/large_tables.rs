//! Tables larger than a thread's stack, built in place on the heap
//! (feature `alloc`): each on a thread with a 256 KiB stack, far below the
//! table's size, so a construction that passed the table through the stack
//! (as `Box::new(T::new())` may) would overflow it and abort the run.
#![cfg(all(feature = "alloc", not(miri)))]

use std::mem::size_of;

use fusebox::bucket::{FullPolicy, KeyedLimiter, Quota};
use fusebox::cache::{ConcurrentCache, LruCache};
use fusebox::hash::FixedState;
use fusebox::Instant;

const STACK: usize = 256 * 1024;

/// Runs `f` on a new thread with a [`STACK`]-byte stack.
fn on_small_stack<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    std::thread::Builder::new()
        .stack_size(STACK)
        .spawn(f)
        .expect("spawn")
        .join()
        .expect("the thread panicked")
}

const NOW: Instant = Instant::from_secs(1);

#[test]
fn a_million_slot_keyed_limiter() {
    type Big = KeyedLimiter<u64, { 1 << 20 }>;
    assert!(size_of::<Big>() > 64 * STACK, "{} bytes", size_of::<Big>());
    let keys = on_small_stack(|| {
        let l = Big::new_boxed(Quota::per_second(10).unwrap(), FullPolicy::Reject).unwrap();
        for k in 0..100_000 {
            l.try_acquire(&k, NOW).unwrap();
        }
        assert_eq!(l.available(&7, NOW), 9);
        assert_eq!(l.available(&u64::MAX, NOW), 10);
        l.metrics().keys
    });
    assert_eq!(keys, 100_000);
}

#[test]
fn a_million_slot_keyed_limiter_with_tiers_and_a_hasher() {
    type Big = KeyedLimiter<u64, 1_048_576, 2>;
    let allowed = on_small_stack(|| {
        let mut l = Big::with_hasher_boxed(
            [Quota::per_second(1).unwrap(), Quota::per_second(5).unwrap()],
            FullPolicy::Reject,
            FixedState::with_seed(0x5eed),
        )
        .unwrap();
        l.set_tier_fn(|k| usize::from(k % 2 == 1));
        for k in 0..10_000 {
            l.try_acquire(&k, NOW).unwrap();
        }
        assert_eq!([0, 1].map(|k| l.available(&k, NOW)), [0, 4]);
        l.metrics().allowed
    });
    assert_eq!(allowed, 10_000);
}

#[cfg(feature = "std")]
#[test]
fn a_million_slot_keyed_limiter_with_a_random_seed() {
    use fusebox::hash::RandomState;
    type Big = KeyedLimiter<u64, { 1 << 20 }, 1, RandomState>;
    let keys = on_small_stack(|| {
        let l = Big::with_hasher_boxed(
            [Quota::per_second(10).unwrap()],
            FullPolicy::Reject,
            RandomState::new(),
        )
        .unwrap();
        for k in 0..50_000 {
            l.try_acquire(&k, NOW).unwrap();
        }
        l.metrics().keys
    });
    assert_eq!(keys, 50_000);
}

#[test]
fn a_million_entry_concurrent_cache() {
    type Big = ConcurrentCache<u64, u64, 131_072, 8>;
    assert!(size_of::<Big>() > 64 * STACK, "{} bytes", size_of::<Big>());
    let capacity = on_small_stack(|| {
        let c = Big::new_boxed();
        for k in 0..200_000 {
            c.insert(k, k * 2).unwrap();
        }
        assert_eq!(c.get(&4_321), Some(8_642));
        let seeded =
            ConcurrentCache::<u64, u64, 131_072, 8, _>::with_hasher_boxed(FixedState::with_seed(9));
        seeded.insert(1, 1).unwrap();
        assert_eq!(seeded.get(&1), Some(1));
        c.capacity()
    });
    assert_eq!(capacity, 1 << 20);
}

/// `LruCache` indexes nodes with `u16`, so its largest capacity is 65 535
/// entries (2.7 MiB of `u64` pairs): the largest table it can have, built
/// on a stack a tenth of its size.
#[test]
fn the_largest_lru_cache() {
    type Big = LruCache<u64, u64, 65_535>;
    assert!(size_of::<Big>() > 10 * STACK, "{} bytes", size_of::<Big>());
    let len = on_small_stack(|| {
        let mut c = Big::new_boxed();
        for k in 0..100_000 {
            c.put(k, k);
        }
        assert_eq!(c.get(&99_999), Some(&99_999));
        assert_eq!(c.get(&0), None, "evicted");
        let mut seeded =
            LruCache::<u64, u64, 65_535, _>::with_hasher_boxed(FixedState::with_seed(1));
        seeded.put(1, 1);
        c.len()
    });
    assert_eq!(len, 65_535);
}
