//! A slot's sequence lock: one 64-bit sequence
//!
//! ```text
//! [version: 62][occupied: 1][writing: 1]
//! ```
//!
//! held in one `AtomicU64` where the target has native 64-bit atomics, and
//! in two `AtomicU32` words (`lo` = bits 0..32, `hi` = bits 32..64) on
//! 32-bit targets (Cortex-M), whose 64-bit atomics would be emulated with a
//! critical section. A write that carries the low word's 30 version bits
//! into the high word stores the high word before the low one; a reader
//! reads `hi, lo` before its copy and `lo, hi` after it (the order of
//! crossbeam-utils' wide sequence lock), so that:
//!
//! * before the copy, `hi` is at most the high word that belongs to the
//!   `lo` read after it (an `Acquire` of a newer `hi` makes every earlier
//!   `lo` store visible to the `lo` load, which then sees that write's odd
//!   word or a later one);
//! * after the copy, `hi` is at least the high word that belongs to the
//!   `lo` read before it (the `Acquire` of that `lo` store, a `Release`,
//!   sees the carry's `hi` store, which came before it: in the same write
//!   or in an earlier one, writers being ordered by the set's lock).
//!
//! If any write overlapped or followed the validated copy while `lo` came
//! back to the same value, the version advanced by a non-zero multiple of
//! 2³⁰, so the high word read after is greater than the one read before:
//! the stamps differ unless the high word itself went round its 2³² values,
//! i.e. unless at least 2⁶² − 2³⁰ writes of the slot happened during the
//! read. With one 64-bit word a stale stamp matches only after a multiple of
//! 2⁶² writes. At one write per nanosecond either takes over 140 years.

use crate::sync::{fence, Ordering};

#[cfg(not(fusebox_wide_words))]
use crate::sync::AtomicU32;
#[cfg(fusebox_wide_words)]
use crate::sync::AtomicU64;

/// Sequence: a write is in progress.
pub(super) const WRITING: u64 = 1;
/// Sequence: the slot holds an entry.
pub(super) const OCCUPIED: u64 = 2;
/// The flag bits; the version counts in units of [`VERSION_ONE`].
const FLAGS: u64 = WRITING | OCCUPIED;
/// One version step.
const VERSION_ONE: u64 = 4;

/// The sequence after `old`'s write: the next version (wrapping at 2⁶²),
/// occupied or not, not writing.
#[inline]
const fn next(old: u64, occupied: bool) -> u64 {
    (old & !FLAGS).wrapping_add(VERSION_ONE) | if occupied { OCCUPIED } else { 0 }
}

/// One slot's sequence lock; zero (version 0, empty) when new.
#[cfg(fusebox_wide_words)]
pub(super) struct Seq(AtomicU64);

/// One slot's sequence lock; zero (version 0, empty) when new.
#[cfg(not(fusebox_wide_words))]
pub(super) struct Seq {
    /// Bits 0..32: the flags and the version's low 30 bits.
    lo: AtomicU32,
    /// Bits 32..64: the version's high 32 bits.
    hi: AtomicU32,
}

#[cfg(fusebox_wide_words)]
impl Seq {
    pub(super) fn new() -> Self {
        Self(AtomicU64::new(0))
    }

    /// Reader, before its copy: the stamp to validate against.
    #[inline]
    pub(super) fn begin(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    /// Reader, after its copy: whether the sequence is still `stamp`.
    #[inline]
    pub(super) fn unchanged(&self, stamp: u64) -> bool {
        // Orders the copy's loads before the re-check (seqlock read side).
        fence(Ordering::Acquire);
        self.0.load(Ordering::Relaxed) == stamp
    }

    /// Writer, holding the set's lock: marks the slot as being written
    /// (before any byte store) and returns the sequence before.
    #[inline]
    pub(super) fn start_write(&self) -> u64 {
        let old = self.0.load(Ordering::Relaxed);
        self.0.store(old | WRITING, Ordering::Relaxed);
        // Orders the odd sequence before the byte stores (seqlock write side).
        fence(Ordering::Release);
        old
    }

    /// Writer, after the byte stores: publishes the next version.
    #[inline]
    pub(super) fn publish(&self, old: u64, occupied: bool) {
        self.0.store(next(old, occupied), Ordering::Release);
    }

    #[cfg(any(test, loom))]
    pub(super) fn load(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    #[cfg(any(test, loom))]
    pub(super) fn store(&self, seq: u64) {
        self.0.store(seq, Ordering::Relaxed);
    }
}

#[cfg(not(fusebox_wide_words))]
impl Seq {
    pub(super) fn new() -> Self {
        Self {
            lo: AtomicU32::new(0),
            hi: AtomicU32::new(0),
        }
    }

    /// Reader, before its copy: the stamp to validate against (`hi`, then
    /// `lo`; see the module docs).
    #[inline]
    pub(super) fn begin(&self) -> u64 {
        let hi = self.hi.load(Ordering::Acquire);
        let lo = self.lo.load(Ordering::Acquire);
        u64::from(hi) << 32 | u64::from(lo)
    }

    /// Reader, after its copy: whether the sequence is still `stamp`
    /// (`lo`, then `hi`; see the module docs).
    #[inline]
    pub(super) fn unchanged(&self, stamp: u64) -> bool {
        // Orders the copy's loads before the re-check (seqlock read side).
        fence(Ordering::Acquire);
        let lo = self.lo.load(Ordering::Acquire);
        let hi = self.hi.load(Ordering::Relaxed);
        (u64::from(hi) << 32 | u64::from(lo)) == stamp
    }

    /// Writer, holding the set's lock: marks the slot as being written
    /// (before any byte store) and returns the sequence before.
    #[inline]
    pub(super) fn start_write(&self) -> u64 {
        let lo = self.lo.load(Ordering::Relaxed);
        self.lo.store(lo | WRITING as u32, Ordering::Relaxed);
        // Orders the odd sequence before the byte stores (seqlock write side).
        fence(Ordering::Release);
        // Only writers store `hi`, under the set's lock.
        u64::from(self.hi.load(Ordering::Relaxed)) << 32 | u64::from(lo)
    }

    /// Writer, after the byte stores: publishes the next version, carrying
    /// into `hi` (stored first) when the low word's version wraps.
    #[inline]
    pub(super) fn publish(&self, old: u64, occupied: bool) {
        let new = next(old, occupied);
        if new >> 32 != old >> 32 {
            self.hi.store((new >> 32) as u32, Ordering::Release);
        }
        self.lo.store(new as u32, Ordering::Release);
    }

    #[cfg(any(test, loom))]
    pub(super) fn load(&self) -> u64 {
        u64::from(self.hi.load(Ordering::Relaxed)) << 32
            | u64::from(self.lo.load(Ordering::Relaxed))
    }

    #[cfg(any(test, loom))]
    pub(super) fn store(&self, seq: u64) {
        self.hi.store((seq >> 32) as u32, Ordering::Relaxed);
        self.lo.store(seq as u32, Ordering::Relaxed);
    }
}
