//! Building the largest histogram without a stack temporary: on the heap
//! (`new_boxed`, feature `alloc`) and in place (`new_in_place`), on
//! threads whose stacks are smaller than the histogram itself.
//!
//! Run with `cargo test -p fusebox --features alloc --test histogram_boxed`.
#![cfg(feature = "alloc")]

use std::mem::{size_of, MaybeUninit};
use std::thread;

use fusebox::histogram::{Histogram, MAX_BUCKETS};

/// The largest histogram: every `u64` tracked, 59 KiB on x86-64. Small
/// under Miri, which checks the unsafe code, not the stack, and whose
/// borrow tracker walks every atomic of the histogram on each `&self` call.
type Largest = Histogram<
    {
        if cfg!(miri) {
            300
        } else {
            MAX_BUCKETS
        }
    },
>;

/// Runs `f` on a thread with a `stack`-byte stack.
fn on_stack(stack: usize, f: impl FnOnce() + Send + 'static) {
    thread::Builder::new()
        .stack_size(stack)
        .spawn(f)
        .expect("spawn")
        .join()
        .expect("no stack overflow");
}

/// The histogram works like one from `new`.
fn exercise<const B: usize>(h: &Histogram<B>) {
    assert_eq!((h.count(), h.sum(), h.min(), h.max()), (0, 0, None, None));
    assert_eq!(h.buckets().next(), None);
    for v in [0, 1, 1_000, u64::MAX] {
        h.record(v);
    }
    assert_eq!(h.count(), 4);
    assert_eq!(h.sum(), 1_001u64.wrapping_add(u64::MAX));
    assert_eq!((h.min(), h.max()), (Some(0), Some(u64::MAX)));
    assert_eq!(h.percentile(100.0), Ok(Some(u64::MAX)));
}

#[test]
fn new_boxed_on_a_256_kib_stack() {
    on_stack(256 * 1024, || {
        let h: Box<Largest> = Histogram::new_boxed();
        exercise(&h);
    });
}

/// A stack smaller than the histogram: any stack temporary would overflow
/// it (the guard page turns that into an abort, failing the run).
#[test]
fn new_boxed_and_in_place_on_a_stack_smaller_than_the_histogram() {
    let stack = 32 * 1024;
    assert!(
        cfg!(miri) || size_of::<Largest>() > stack,
        "{}",
        size_of::<Largest>()
    );
    on_stack(stack, || {
        let h: Box<Largest> = Histogram::new_boxed();
        exercise(&h);
        let h = Largest::try_new_boxed().expect("memory");
        exercise(&h);
        let mut slot: Box<MaybeUninit<Largest>> = Box::new_uninit_in_place();
        exercise(Histogram::new_in_place(&mut slot));
    });
}

#[test]
fn in_place_over_garbage_is_empty() {
    let mut slot = MaybeUninit::<Histogram<300>>::uninit();
    // SAFETY: writing bytes into a `MaybeUninit` is always sound.
    unsafe {
        slot.as_mut_ptr()
            .cast::<u8>()
            .write_bytes(0xA5, size_of::<Histogram<300>>());
    }
    let h = Histogram::new_in_place(&mut slot);
    exercise(h);
    h.reset();
    exercise(h);
}

/// `Box::new(MaybeUninit::uninit())` for the test, spelled without
/// `Box::new_uninit` (Rust 1.82, above the MSRV).
trait NewUninit {
    fn new_uninit_in_place() -> Self;
}

impl<T> NewUninit for Box<MaybeUninit<T>> {
    fn new_uninit_in_place() -> Self {
        let layout = std::alloc::Layout::new::<T>();
        // SAFETY: `T` here is a histogram, whose layout has a non-zero size.
        let ptr = unsafe { std::alloc::alloc(layout) }.cast::<MaybeUninit<T>>();
        assert!(!ptr.is_null(), "memory");
        // SAFETY: allocated by the global allocator with `T`'s layout,
        // which is `MaybeUninit<T>`'s; uninitialised bytes are a valid
        // `MaybeUninit<T>`.
        unsafe { Box::from_raw(ptr) }
    }
}
