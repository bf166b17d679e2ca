//! [`TableLock`]: the lock that serialises one table's rare writers (the
//! keyed limiter's inserts and evictions), chosen by target:
//!
//! * `cfg(loom)`: a loom mutex per table, so the model checker sees it.
//! * feature `std`: a `std::sync::Mutex<()>` per table. A server's tables
//!   never share a lock, and user code run under it (`Clone`, `Eq`) holds
//!   up only that table's new keys; a waiter parks rather than spins.
//! * otherwise (firmware): the `critical-section` crate, one process-wide
//!   critical section, because an interrupt handler may insert into the
//!   table that the code it interrupted was inserting into: a per-table
//!   spin lock would deadlock there, interrupts off cannot.
//!
//! The lock is released when the closure unwinds (a panicking `Eq` or
//! `Clone`): the std mutex is then poisoned, which is ignored, because the
//! table restores its invariants before any user code can panic.
//!
//! The lock is not re-entrant: taking it again from code run under it
//! (a key's `Eq` or `Clone` calling back into the same table) panics,
//! before the nested caller touches anything, with both real locks. The
//! critical section nests, so the nested call would otherwise rewrite the
//! table in the middle of the outer caller's insert (overwriting the key
//! it had just filled the chosen slot with, or evicting the key the outer
//! lookup holds a `&K` to: undefined behaviour); the std mutex would
//! deadlock. Unwinding from there leaves the table consistent, as above.

/// See the module docs.
pub(crate) struct TableLock(imp::Lock);

impl TableLock {
    super::const_fn_unless_loom! {
        pub(crate) fn new() -> Self {
            Self(imp::Lock::new())
        }
    }

    /// Runs `f` holding the lock.
    #[inline]
    pub(crate) fn with<R>(&self, f: impl FnOnce() -> R) -> R {
        self.0.with(f)
    }
}

#[cfg(loom)]
mod imp {
    pub(crate) struct Lock(loom::sync::Mutex<()>);

    impl Lock {
        pub(crate) fn new() -> Self {
            Self(loom::sync::Mutex::new(()))
        }

        pub(crate) fn with<R>(&self, f: impl FnOnce() -> R) -> R {
            let _guard = self.0.lock().unwrap_or_else(|e| e.into_inner());
            f()
        }
    }
}

/// The panic of a nested lock (see the module docs).
#[cfg(not(loom))]
#[cold]
#[inline(never)]
#[track_caller]
fn reentered() -> ! {
    panic!("a KeyedLimiter was used from its own key's Eq or Clone (run under its lock)")
}

#[cfg(all(not(loom), feature = "std"))]
mod imp {
    use std::sync::atomic::{AtomicUsize, Ordering};

    pub(crate) struct Lock {
        mutex: std::sync::Mutex<()>,
        /// The holding thread's [`me`], `0` when free: set after the mutex
        /// is taken, cleared before it is released, so a thread reads its
        /// own id here only while it holds the lock.
        owner: AtomicUsize,
    }

    /// This thread's id: the address of a thread-local, unique among
    /// live threads and never 0 (no destructor, so always accessible).
    fn me() -> usize {
        std::thread_local! {
            static ME: u8 = const { 0 };
        }
        ME.with(|me| core::ptr::from_ref(me) as usize)
    }

    /// Clears the owner, also when the closure unwinds.
    struct Owner<'a>(&'a AtomicUsize);

    impl Drop for Owner<'_> {
        fn drop(&mut self) {
            self.0.store(0, Ordering::Relaxed);
        }
    }

    impl Lock {
        pub(crate) const fn new() -> Self {
            Self {
                mutex: std::sync::Mutex::new(()),
                owner: AtomicUsize::new(0),
            }
        }

        #[inline]
        pub(crate) fn with<R>(&self, f: impl FnOnce() -> R) -> R {
            let me = me();
            // Relaxed: only this thread ever stores `me`, and it clears it
            // before unlocking, so reading it means this thread holds it.
            if self.owner.load(Ordering::Relaxed) == me {
                super::reentered();
            }
            let _guard = self
                .mutex
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            self.owner.store(me, Ordering::Relaxed);
            let _owner = Owner(&self.owner); // dropped before `_guard`
            f()
        }
    }
}

#[cfg(all(not(loom), not(feature = "std")))]
mod imp {
    use portable_atomic::{AtomicBool, Ordering};

    /// Whether this table's lock is held. Only read and written inside
    /// the critical section, where no other context runs: found set
    /// there, it was set by this context, which is nesting.
    pub(crate) struct Lock(AtomicBool);

    /// Clears the flag, also when the closure unwinds.
    struct Held<'a>(&'a AtomicBool);

    impl Drop for Held<'_> {
        fn drop(&mut self) {
            self.0.store(false, Ordering::Relaxed);
        }
    }

    impl Lock {
        pub(crate) const fn new() -> Self {
            Self(AtomicBool::new(false))
        }

        #[inline]
        pub(crate) fn with<R>(&self, f: impl FnOnce() -> R) -> R {
            critical_section::with(|_| {
                // Load and store, not a swap: no CAS on Cortex-M0, and
                // nothing else runs inside the critical section.
                if self.0.load(Ordering::Relaxed) {
                    super::reentered();
                }
                self.0.store(true, Ordering::Relaxed);
                let _held = Held(&self.0);
                f()
            })
        }
    }
}
