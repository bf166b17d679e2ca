//! Building a histogram without a stack temporary: in place, or on the
//! heap (feature `alloc`). A `Histogram<MAX_BUCKETS>` is 59 KiB, more than
//! some threads' and most tasks' stacks, and `Box::new(Histogram::new())`
//! may build it on the stack first.
//!
//! Both write zeros, which is sound because all-zero bytes are an empty
//! histogram (the invariant on [`Histogram`]'s fields); not built under
//! loom, whose atomics are not plain integers.

use core::mem::MaybeUninit;

use super::Histogram;

impl<const BUCKETS: usize> Histogram<BUCKETS> {
    /// Initialises `slot` as an empty histogram, in place (by zeroing it),
    /// and returns it: for memory that is not a `static` (which
    /// [`new`](Self::new), being `const`, already covers), e.g. a buffer
    /// handed out by an allocator or a `StaticCell`.
    ///
    /// ```
    /// use core::mem::MaybeUninit;
    /// use fusebox::histogram::{Histogram, MAX_BUCKETS};
    ///
    /// let mut slot = Box::new(MaybeUninit::<Histogram<MAX_BUCKETS>>::uninit());
    /// let h = Histogram::new_in_place(&mut slot);
    /// h.record(u64::MAX);
    /// assert_eq!(h.count(), 1);
    /// ```
    pub fn new_in_place(slot: &mut MaybeUninit<Self>) -> &mut Self {
        Self::check_buckets();
        let ptr = slot.as_mut_ptr();
        // SAFETY: `ptr` is valid for writes of one `Self` (it comes from a
        // `&mut MaybeUninit<Self>`), and after the zeroing `*slot` is a
        // valid, empty `Self`: all-zero bytes are an empty histogram (the
        // invariant documented on `Histogram`'s fields).
        unsafe {
            ptr.write_bytes(0, 1);
            slot.assume_init_mut()
        }
    }
}

#[cfg(feature = "alloc")]
mod boxed {
    use alloc::alloc::{alloc_zeroed, handle_alloc_error, Layout};
    use alloc::boxed::Box;

    use super::Histogram;

    impl<const BUCKETS: usize> Histogram<BUCKETS> {
        /// An empty histogram on the heap, allocated zeroed: never built
        /// on the stack, however large `BUCKETS` is (feature `alloc`).
        ///
        /// # Panics
        ///
        /// On allocation failure, like [`Box::new`] (through
        /// [`handle_alloc_error`], which by default aborts);
        /// [`try_new_boxed`](Self::try_new_boxed) returns `None` instead.
        ///
        /// # Examples
        ///
        /// ```
        /// use fusebox::histogram::{Histogram, MAX_BUCKETS};
        ///
        /// let h: Box<Histogram<MAX_BUCKETS>> = Histogram::new_boxed();
        /// h.record(42);
        /// assert_eq!(h.count(), 1);
        /// ```
        pub fn new_boxed() -> Box<Self> {
            Self::try_new_boxed().unwrap_or_else(|| handle_alloc_error(Layout::new::<Self>()))
        }

        /// [`new_boxed`](Self::new_boxed), or `None` if the allocator
        /// fails.
        ///
        /// ```
        /// use fusebox::histogram::Histogram;
        ///
        /// let h: Box<Histogram> = Histogram::try_new_boxed().expect("memory");
        /// assert_eq!(h.count(), 0);
        /// ```
        pub fn try_new_boxed() -> Option<Box<Self>> {
            Self::check_buckets();
            let layout = Layout::new::<Self>();
            // SAFETY: `layout` has a non-zero size: a histogram holds at
            // least one bucket word and its other fields.
            let ptr = unsafe { alloc_zeroed(layout) }.cast::<Self>();
            if ptr.is_null() {
                return None;
            }
            // SAFETY: `ptr` is non-null, was allocated by the global
            // allocator with `Self`'s layout (as `Box` requires), and
            // points to zeroed bytes, which are a valid, empty `Self` (the
            // invariant on `Histogram`'s fields). The box takes ownership.
            Some(unsafe { Box::from_raw(ptr) })
        }
    }
}
