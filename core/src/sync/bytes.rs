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

/// Round trips and racing copies on both chunk sizes (run under Miri:
/// no data race, no mixed-size access, no uninitialised byte read).
#[cfg(all(test, not(loom)))]
mod tests {
    extern crate std;

    use super::AtomicBytes;

    /// A value made of `k` in every element.
    fn fill<T: Copy, const L: usize>(k: T) -> [T; L] {
        [k; L]
    }

    /// The value, when no store races the load.
    fn get<T: Copy>(cell: &AtomicBytes<T>) -> T {
        // SAFETY: single-threaded callers: the bytes are one value's,
        // stored whole or zeroed (every `T` used here is valid zeroed).
        unsafe { cell.load().assume_init() }
    }

    #[test]
    fn values_round_trip_on_both_paths() {
        let words = AtomicBytes::<[u32; 3]>::zeroed();
        assert_eq!(get(&words), [0; 3]);
        words.store(&[1, u32::MAX, 7]);
        assert_eq!(get(&words), [1, u32::MAX, 7]);
        let bytes = AtomicBytes::<[u16; 3]>::zeroed(); // align 2: byte chunks
        bytes.store(&[0xabcd, 1, 0xffff]);
        assert_eq!(get(&bytes), [0xabcd, 1, 0xffff]);
        let odd = AtomicBytes::<[u8; 5]>::zeroed();
        odd.store(&[1, 2, 3, 4, 5]);
        assert_eq!(get(&odd), [1, 2, 3, 4, 5]);
        let unit = AtomicBytes::<()>::zeroed();
        unit.store(&());
        get(&unit);
    }

    /// One writer, two readers: every chunk a reader copies out is one
    /// that was written whole (a copy may mix writes across chunks, which
    /// callers' sequence locks catch; never within one).
    #[test]
    fn racing_copies_are_made_of_written_chunks() {
        const WRITES: u32 = if cfg!(miri) { 30 } else { 20_000 };
        let words = AtomicBytes::<[u32; 2]>::zeroed();
        let bytes = AtomicBytes::<[u8; 3]>::zeroed();
        std::thread::scope(|s| {
            s.spawn(|| {
                for k in 1..=WRITES {
                    words.store(&fill(k << 16 | k));
                    bytes.store(&fill((k % 250) as u8));
                }
            });
            for _ in 0..2 {
                s.spawn(|| {
                    for _ in 0..WRITES {
                        // Every byte is initialised (zeroed, then only
                        // whole values stored), so reading them is sound;
                        // whether they form one value is what is checked.
                        let w = words.load();
                        let b = bytes.load();
                        // SAFETY: `[u32; 2]` and `[u8; 3]` are valid for
                        // any initialised bytes.
                        let (w, b) = unsafe { (w.assume_init(), b.assume_init()) };
                        for word in w {
                            // `k << 16 | k`: both halves of one write.
                            let ok = word >> 16 == word & 0xffff && word >> 16 <= WRITES;
                            assert!(ok, "torn word {word:#x}");
                        }
                        assert!(b.iter().all(|&x| x < 250), "{b:?}");
                    }
                });
            }
        });
    }
}
