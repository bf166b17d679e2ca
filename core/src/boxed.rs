//! Heap construction in place (feature `alloc`): tables larger than a
//! thread's stack are written field by field into their allocation, never
//! built on the stack and moved (which `Box::new(T::new())` does, at least
//! without optimisations, and which overflows a 2 MiB tokio worker stack
//! for a 3 MiB table).

use alloc::alloc::{alloc, handle_alloc_error, Layout};
use alloc::boxed::Box;
use core::ptr::NonNull;

/// A `Box<T>` whose contents `init` writes in place.
///
/// # Safety
///
/// * `init` initialises every byte of `T` that `T`'s validity requires
///   (every field; padding and `MaybeUninit` contents excepted), through
///   the pointer it is given, before it returns. (If it panics, the
///   allocation leaks.)
#[allow(clippy::unnecessary_box_returns)] // the box is the point
pub(crate) unsafe fn new_in_place<T>(init: impl FnOnce(*mut T)) -> Box<T> {
    let layout = Layout::new::<T>();
    let ptr = if layout.size() == 0 {
        NonNull::<T>::dangling().as_ptr()
    } else {
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc(layout) }.cast::<T>();
        if ptr.is_null() {
            handle_alloc_error(layout);
        }
        ptr
    };
    init(ptr);
    // SAFETY: `ptr` was allocated by the global allocator with `T`'s
    // layout (or is dangling for a zero-sized `T`), and `init` initialised
    // it (the caller's contract).
    unsafe { Box::from_raw(ptr) }
}
