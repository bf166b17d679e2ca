//! `AtomicBytes`: `Copy` values copied through atomics (seqlock storage).
//!
//! A `Copy` value that one writer may overwrite while readers copy it out,
//! without a data race: every byte moves through an atomic (`Relaxed`)
//! load or store. A copy may therefore mix two writes; callers validate it
//! with a sequence lock before trusting it, which is why `load` returns
//! `MaybeUninit`.

pub(crate) use imp::AtomicBytes;

#[cfg(not(loom))]
mod imp {
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
mod imp {
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
