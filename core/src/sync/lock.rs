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

#[cfg(all(not(loom), feature = "std"))]
mod imp {
    pub(crate) struct Lock(std::sync::Mutex<()>);

    impl Lock {
        pub(crate) const fn new() -> Self {
            Self(std::sync::Mutex::new(()))
        }

        #[inline]
        pub(crate) fn with<R>(&self, f: impl FnOnce() -> R) -> R {
            let _guard = self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            f()
        }
    }
}

#[cfg(all(not(loom), not(feature = "std")))]
mod imp {
    pub(crate) struct Lock;

    impl Lock {
        pub(crate) const fn new() -> Self {
            Self
        }

        #[inline]
        #[allow(clippy::unused_self)] // the other locks' signature
        pub(crate) fn with<R>(&self, f: impl FnOnce() -> R) -> R {
            critical_section::with(|_| f())
        }
    }
}
