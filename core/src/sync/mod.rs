//! The one place that chooses atomics.
//!
//! * `cfg(loom)`: loom's model-checked atomics. Only ever built through
//!   `-p fusebox-loom` with `RUSTFLAGS="--cfg loom"`. Loom has 64-bit
//!   atomics, so it checks the 64-bit word layouts; adding
//!   `--cfg fusebox_narrow_words` makes every width choice below take the
//!   32-bit (Cortex-M) side instead, so the loom models check that too
//!   (`scripts/test.sh` runs both).
//! * otherwise: [`portable_atomic`], which compiles to the native
//!   instruction wherever one exists. On cores without compare-and-swap
//!   (Cortex-M0, `thumbv6m-none-eabi`) the core's manifest enables
//!   portable-atomic's `critical-section` feature, which is interrupt-safe.
//!
//! # Word widths
//!
//! Every piece of *decision state* in the core (breaker state, window,
//! generations) lives in [`AtomicU32`] words, so that Cortex-M3/M4 use their
//! native `LDREX`/`STREX` and nothing ever reaches portable-atomic's
//! global-lock `fallback` (which is not lock-free and can deadlock when an
//! interrupt handler touches the same atomic). The core depends on
//! portable-atomic with default features off, so on those targets an
//! `AtomicU64` does not even exist: using one by mistake is a compile error
//! on `thumbv7em-none-eabihf`.
//!
//! Statistics counters ([`Counter`]) are 64-bit where the target has native
//! 64-bit atomics and 32-bit (wrapping) elsewhere. [`CounterWord`] and
//! [`CounterInt`] name that word and its integer for structures that pack
//! statistics themselves (the histogram's buckets, sum and extremes live in
//! `crate::histogram` and are written for either width).

/// Native 64-bit atomics: only where `fusebox_wide_words` is set.
#[cfg(fusebox_wide_words)]
pub(crate) use imp::AtomicU64;
pub(crate) use imp::{fence, AtomicU16, AtomicU32, Ordering};

#[cfg(loom)]
mod imp {
    #[cfg(fusebox_wide_words)]
    pub(crate) use loom::sync::atomic::AtomicU64;
    pub(crate) use loom::sync::atomic::{fence, AtomicU16, AtomicU32, Ordering};
}

#[cfg(not(loom))]
mod imp {
    #[cfg(fusebox_wide_words)]
    pub(crate) use portable_atomic::AtomicU64;
    pub(crate) use portable_atomic::{fence, AtomicU16, AtomicU32, Ordering};
}

/// Runs `f` inside the process-wide critical section that serialises the
/// rarest writers (a `TokenBucket`'s quota changes, resets and restores):
/// `critical-section` normally (interrupts off on a single-core MCU; a
/// global mutex on the host, from the `std` feature), a loom mutex under
/// loom so the model checker sees it. Tables use their own [`TableLock`].
#[cfg(not(loom))]
pub(crate) fn critical<R>(f: impl FnOnce() -> R) -> R {
    critical_section::with(|_| f())
}

#[cfg(loom)]
pub(crate) fn critical<R>(f: impl FnOnce() -> R) -> R {
    loom::lazy_static! {
        static ref LOCK: loom::sync::Mutex<()> = loom::sync::Mutex::new(());
    }
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    f()
}

/// Declares a `const fn` in normal builds and a plain `fn` under loom,
/// whose atomics cannot be created in a const context.
macro_rules! const_fn_unless_loom {
    ($(#[$meta:meta])* $vis:vis fn $name:ident $($rest:tt)*) => {
        #[cfg(not(loom))]
        $(#[$meta])* $vis const fn $name $($rest)*
        #[cfg(loom)]
        $(#[$meta])* $vis fn $name $($rest)*
    };
}
pub(crate) use const_fn_unless_loom;

/// `[$atomic::new($value); $n]`: in a const context normally, built at run
/// time under loom.
macro_rules! atomic_array {
    ($atomic:ident, $value:expr, $n:expr) => {{
        #[cfg(not(loom))]
        let array = [const { $atomic::new($value) }; $n];
        #[cfg(loom)]
        let array = core::array::from_fn(|_| $atomic::new($value));
        array
    }};
}
pub(crate) use atomic_array;

/// The statistics word: 64-bit where the target has native 64-bit atomics,
/// 32-bit on Cortex-M.
#[cfg(fusebox_wide_words)]
pub(crate) type CounterWord = imp::AtomicU64;
/// The statistics word: 64-bit where the target has native 64-bit atomics,
/// 32-bit on Cortex-M.
#[cfg(not(fusebox_wide_words))]
pub(crate) type CounterWord = imp::AtomicU32;
/// The integer [`CounterWord`] holds.
#[cfg(fusebox_wide_words)]
pub(crate) type CounterInt = u64;
/// The integer [`CounterWord`] holds.
#[cfg(not(fusebox_wide_words))]
pub(crate) type CounterInt = u32;

/// The word holding a token bucket's wrapped arrival time: 64-bit where the
/// target has native 64-bit atomics, 32-bit on Cortex-M.
#[cfg(fusebox_wide_words)]
pub(crate) type TatWord = imp::AtomicU64;
#[cfg(not(fusebox_wide_words))]
pub(crate) type TatWord = imp::AtomicU32;
/// The value type of [`TatWord`].
#[cfg(fusebox_wide_words)]
pub(crate) type Tat = u64;
/// The value type of [`TatWord`].
#[cfg(not(fusebox_wide_words))]
pub(crate) type Tat = u32;
/// Width of [`TatWord`] in bits.
#[cfg(fusebox_wide_words)]
pub(crate) const TAT_BITS: u32 = 64;
#[cfg(not(fusebox_wide_words))]
pub(crate) const TAT_BITS: u32 = 32;

/// A time-window bucket of the breaker (feature `time-window`): 64-bit
/// (four 16-bit fields) where the target has native 64-bit atomics, 32-bit
/// (four 8-bit fields) on Cortex-M.
#[cfg(all(feature = "time-window", fusebox_wide_words))]
pub(crate) type BucketWord = imp::AtomicU64;
#[cfg(all(feature = "time-window", not(fusebox_wide_words)))]
pub(crate) type BucketWord = imp::AtomicU32;
/// The value type of [`BucketWord`].
#[cfg(all(feature = "time-window", fusebox_wide_words))]
pub(crate) type BucketInt = u64;
/// The value type of [`BucketWord`].
#[cfg(all(feature = "time-window", not(fusebox_wide_words)))]
pub(crate) type BucketInt = u32;

/// The word holding a breaker's full generation number (its epoch): 64-bit
/// where the target has native 64-bit atomics (it never wraps), 32-bit on
/// Cortex-M (wraps after 2³² transitions).
#[cfg(fusebox_wide_words)]
pub(crate) type EpochWord = imp::AtomicU64;
#[cfg(not(fusebox_wide_words))]
pub(crate) type EpochWord = imp::AtomicU32;
/// A full generation number, the value type of [`EpochWord`].
#[cfg(fusebox_wide_words)]
pub(crate) type Epoch = u64;
/// A full generation number, the value type of [`EpochWord`].
#[cfg(not(fusebox_wide_words))]
pub(crate) type Epoch = u32;

/// A monotonically increasing statistics counter.
///
/// 64 bits where the target has native 64-bit atomics; 32 bits (wrapping at
/// 2³², except through [`add_saturating`](Self::add_saturating)) on 32-bit
/// microcontrollers. Only ever updated with `Relaxed`
/// read-modify-writes: counters order nothing.
#[derive(Debug)]
pub(crate) struct Counter(CounterWord);

impl Counter {
    const_fn_unless_loom! {
        pub(crate) fn new() -> Self {
            Self(CounterWord::new(0))
        }
    }

    #[inline]
    pub(crate) fn incr(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    #[inline]
    #[allow(clippy::useless_conversion)]
    pub(crate) fn get(&self) -> u64 {
        u64::from(self.0.load(Ordering::Relaxed))
    }

    /// Adds `n`, saturating at `limit` (or the counter's largest value,
    /// `u64::MAX` or `u32::MAX` on 32 bits, if lower) instead of wrapping:
    /// one compare-and-swap loop, for a counter that must not go back to 0
    /// nor pass what another saturating count holds (the histogram's
    /// clamped values, which the top bucket's count, saturating at
    /// `BUCKET_CAPACITY`, holds too). Never lowers the counter.
    #[allow(clippy::useless_conversion)]
    pub(crate) fn add_saturating(&self, n: u64, limit: u64) {
        let mut current = self.0.load(Ordering::Relaxed);
        loop {
            let sum = u64::from(current).saturating_add(n).min(limit);
            let new = CounterInt::try_from(sum).unwrap_or(CounterInt::MAX);
            if new <= current {
                return;
            }
            match self
                .0
                .compare_exchange_weak(current, new, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(seen) => current = seen,
            }
        }
    }

    /// Adds `n`, truncated to the counter's width (so wrapping on 32
    /// bits), with `Release`: a reader
    /// that sees the sum through [`get_acquire`](Self::get_acquire) also
    /// sees what this thread wrote before (a keyed limiter's batch taken
    /// out of its slot, so that a read of the counter first and the slots
    /// after never counts the batch twice).
    #[inline]
    pub(crate) fn add_release(&self, n: u64) {
        self.0.fetch_add(n as _, Ordering::Release);
    }

    /// The value, with `Acquire` (see [`add_release`](Self::add_release)).
    #[inline]
    #[allow(clippy::useless_conversion)]
    pub(crate) fn get_acquire(&self) -> u64 {
        u64::from(self.0.load(Ordering::Acquire))
    }

    /// Sets the counter, truncating to the counter's width.
    #[allow(clippy::useless_conversion)]
    pub(crate) fn set(&self, value: u64) {
        self.0.store(value as _, Ordering::Relaxed);
    }
}

mod bytes;
pub(crate) use bytes::AtomicBytes;
mod lock;
pub(crate) use lock::TableLock;
