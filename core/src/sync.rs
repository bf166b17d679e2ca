//! The one place that chooses atomics.
//!
//! * `cfg(loom)`: loom's model-checked atomics. Only ever built through
//!   `-p fusebox-loom` with `RUSTFLAGS="--cfg loom"`.
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
//! 64-bit atomics and 32-bit (wrapping) elsewhere.

pub(crate) use imp::{fence, AtomicU32, Ordering};

#[cfg(loom)]
mod imp {
    pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
}

#[cfg(not(loom))]
mod imp {
    #[cfg(target_has_atomic = "64")]
    pub(crate) use portable_atomic::AtomicU64;
    pub(crate) use portable_atomic::{fence, AtomicU32, Ordering};
}

/// Runs `f` inside the critical section that serialises rare writers (the
/// keyed limiter's inserts): `critical-section` normally (interrupts off on
/// a single-core MCU; a global mutex on the host), a loom mutex under loom
/// so the model checker sees it.
#[cfg(not(loom))]
pub(crate) fn critical<R>(f: impl FnOnce() -> R) -> R {
    critical_section::with(|_| f())
}

#[cfg(loom)]
pub(crate) fn critical<R>(f: impl FnOnce() -> R) -> R {
    loom::lazy_static! {
        static ref LOCK: loom::sync::Mutex<()> = loom::sync::Mutex::new(());
    }
    let _guard = LOCK.lock().unwrap();
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

#[cfg(any(loom, target_has_atomic = "64"))]
type CounterWord = imp::AtomicU64;
#[cfg(not(any(loom, target_has_atomic = "64")))]
type CounterWord = imp::AtomicU32;

/// The word holding a token bucket's wrapped arrival time: 64-bit where the
/// target has native 64-bit atomics, 32-bit on Cortex-M.
#[cfg(any(loom, target_has_atomic = "64"))]
pub(crate) type TatWord = imp::AtomicU64;
#[cfg(not(any(loom, target_has_atomic = "64")))]
pub(crate) type TatWord = imp::AtomicU32;
/// Width of [`TatWord`] in bits.
#[cfg(any(loom, target_has_atomic = "64"))]
pub(crate) const TAT_BITS: u32 = 64;
#[cfg(not(any(loom, target_has_atomic = "64")))]
pub(crate) const TAT_BITS: u32 = 32;

/// A monotonically increasing statistics counter.
///
/// 64 bits where the target has native 64-bit atomics; 32 bits (wrapping at
/// 2³²) on 32-bit microcontrollers. Only ever updated with `Relaxed`
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

    /// Sets the counter, truncating to the counter's width.
    #[allow(clippy::useless_conversion)]
    pub(crate) fn set(&self, value: u64) {
        self.0.store(value as _, Ordering::Relaxed);
    }
}

pub(crate) use bytes::AtomicBytes;

/// A `Copy` value that one writer may overwrite while readers copy it out,
/// without a data race: every byte moves through an atomic (`Relaxed`)
/// load or store. A copy may therefore mix two writes; callers validate it
/// with a sequence lock before trusting it, which is why `load` returns
/// `MaybeUninit`.
#[cfg(not(loom))]
mod bytes {
    use core::cell::UnsafeCell;
    use core::mem::{align_of, size_of, MaybeUninit};

    use portable_atomic::{AtomicU32, AtomicU8, Ordering};

    pub(crate) struct AtomicBytes<T> {
        /// Only ever accessed through atomic views of one chunk size (4
        /// bytes when `T` allows, else 1), so accesses never mix sizes.
        /// Zeroed at creation: a load never reads uninitialised memory.
        cell: UnsafeCell<MaybeUninit<T>>,
    }

    impl<T: Copy> AtomicBytes<T> {
        /// 4-byte chunks when size and alignment allow, else bytes.
        const WORDS: bool = align_of::<T>() >= 4 && size_of::<T>() % 4 == 0;

        pub(crate) const fn zeroed() -> Self {
            Self {
                cell: UnsafeCell::new(MaybeUninit::zeroed()),
            }
        }

        /// Copies the bytes out, chunk by chunk.
        #[inline]
        pub(crate) fn load(&self) -> MaybeUninit<T> {
            let mut out = MaybeUninit::<T>::uninit();
            let src = self.cell.get().cast::<u8>();
            let dst = out.as_mut_ptr().cast::<u8>();
            if Self::WORDS {
                for i in (0..size_of::<T>()).step_by(4) {
                    // SAFETY: `src + i` is 4-aligned (T is) and inside the
                    // cell, which lives as long as `self`; all accesses to it
                    // are atomic and 4 bytes wide (see `cell`). `dst + i` is
                    // a 4-aligned place inside `out`.
                    unsafe {
                        let word = AtomicU32::from_ptr(src.add(i).cast()).load(Ordering::Relaxed);
                        #[allow(clippy::cast_ptr_alignment)] // 4-aligned: see above
                        dst.add(i).cast::<u32>().write(word);
                    }
                }
            } else {
                for i in 0..size_of::<T>() {
                    // SAFETY: as above, with 1-byte chunks.
                    unsafe {
                        let byte = AtomicU8::from_ptr(src.add(i)).load(Ordering::Relaxed);
                        dst.add(i).write(byte);
                    }
                }
            }
            out
        }

        /// Writes `value`'s bytes, chunk by chunk. `NoUninit`: `T` has no
        /// padding, so every byte read from `value` is initialised.
        #[inline]
        pub(crate) fn store(&self, value: &T)
        where
            T: bytemuck::NoUninit,
        {
            let bytes = bytemuck::bytes_of(value);
            let dst = self.cell.get().cast::<u8>();
            if Self::WORDS {
                for (i, chunk) in bytes.chunks_exact(4).enumerate() {
                    let word = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
                    // SAFETY: see `load`.
                    unsafe {
                        AtomicU32::from_ptr(dst.add(i * 4).cast()).store(word, Ordering::Relaxed);
                    };
                }
            } else {
                for (i, &byte) in bytes.iter().enumerate() {
                    // SAFETY: see `load`.
                    unsafe { AtomicU8::from_ptr(dst.add(i)).store(byte, Ordering::Relaxed) };
                }
            }
        }
    }

    // SAFETY: all shared access to the cell is atomic; the value is `Copy`
    // data that may be sent between threads.
    unsafe impl<T: Send> Sync for AtomicBytes<T> {}
}

/// Under loom: the same interface over up to 32 bytes of loom atomics, so
/// the model checker sees every access.
#[cfg(loom)]
mod bytes {
    use core::marker::PhantomData;
    use core::mem::{size_of, MaybeUninit};

    use loom::sync::atomic::{AtomicU64, Ordering};

    pub(crate) struct AtomicBytes<T> {
        words: [AtomicU64; 4],
        _value: PhantomData<T>,
    }

    impl<T: Copy> AtomicBytes<T> {
        const FITS: () = assert!(
            size_of::<T>() <= 32,
            "loom models use values up to 32 bytes"
        );

        pub(crate) fn zeroed() -> Self {
            let () = Self::FITS;
            Self {
                words: [(); 4].map(|()| AtomicU64::new(0)),
                _value: PhantomData,
            }
        }

        pub(crate) fn load(&self) -> MaybeUninit<T> {
            let mut buf = [0u8; 32];
            for (i, w) in self.words.iter().enumerate() {
                buf[i * 8..i * 8 + 8].copy_from_slice(&w.load(Ordering::Relaxed).to_ne_bytes());
            }
            let mut out = MaybeUninit::<T>::uninit();
            // SAFETY: copies size_of::<T>() <= 32 initialised bytes into `out`.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    buf.as_ptr(),
                    out.as_mut_ptr().cast(),
                    size_of::<T>(),
                );
            }
            out
        }

        pub(crate) fn store(&self, value: &T)
        where
            T: bytemuck::NoUninit,
        {
            let mut buf = [0u8; 32];
            buf[..size_of::<T>()].copy_from_slice(bytemuck::bytes_of(value));
            for (i, w) in self.words.iter().enumerate() {
                let mut word = [0u8; 8];
                word.copy_from_slice(&buf[i * 8..i * 8 + 8]);
                w.store(u64::from_ne_bytes(word), Ordering::Relaxed);
            }
        }
    }
}
