//! `Cell`: one bucket's counter and the sum of its values' offsets, packed
//! into one statistics word so that recording is one `fetch_add`.
//!
//! # Word layout
//!
//! With native 64-bit atomics (`CounterWord` = `AtomicU64`):
//!
//! ```text
//!  63            44 43                                   0
//! [ offsets: 20   ][ count: 44                            ]
//! ```
//!
//! * `count`: values recorded in the bucket, up to [`CAPACITY`] = 2⁴⁴ − 1
//!   (1.76·10¹³: 203 days of one million values a second into one bucket).
//! * `offsets`: the sum of the recorded values' offsets above the bucket's
//!   lowest value (`v − low`), modulo 2²⁰.
//!
//! Recording `v` adds `offset << 44 | 1` with one `fetch_add`. The offsets
//! sit *above* the count, so when they overflow the carry leaves the word
//! and corrupts nothing; the recorder sees it in the value `fetch_add`
//! returns and hands the lost 2²⁰ to the histogram's spill sum (a second
//! RMW, once per ≥ 2²⁰ of offsets: never below 256, where offsets are 0;
//! once per ≥ 512 values below 2¹⁹). An offset that does not fit 20 bits at
//! all (only values ≥ 2²⁸ have such offsets) goes to the spill directly:
//! two RMWs.
//!
//! On Cortex-M (`CounterWord` = `AtomicU32`) the word is the count alone
//! (32 bits, [`CAPACITY`] = 2³² − 1) and every non-zero offset goes to the
//! spill: one RMW below 256, two above.
//!
//! The bucket's exact sum is `count · low + offsets` plus its share of the
//! spill, so the histogram's sum stays exact modulo 2⁶⁴ with one RMW.
//!
//! The all-zero word is an empty bucket.

use crate::sync::{
    const_fn_unless_loom, CounterInt, CounterWord,
    Ordering::{Acquire, Relaxed, Release},
};

/// Bits of the statistics word.
const WORD_BITS: u32 = CounterInt::BITS;
/// Bits of the count: 44 of 64, or all 32 of a 32-bit word.
const COUNT_BITS: u32 = if WORD_BITS == 64 { 44 } else { WORD_BITS };
/// Bits of the offset sum above the count: 20, or none.
const OFFSET_BITS: u32 = WORD_BITS - COUNT_BITS;
/// The count field.
const COUNT_MASK: CounterInt = CounterInt::MAX >> OFFSET_BITS;

/// What a carry out of the offset field is worth.
const CARRY: u64 = 1 << OFFSET_BITS;

/// A word's integer as `u64` (a no-op with 64-bit words).
#[allow(clippy::unnecessary_cast)]
#[inline]
const fn to_u64(x: CounterInt) -> u64 {
    x as u64
}

/// The most values one bucket counts: 2⁴⁴ − 1 with native 64-bit atomics,
/// 2³² − 1 on Cortex-M. Merges and [`record_n`](super::Histogram::record_n)
/// saturate there; [`record`](super::Histogram::record) cannot check in its
/// one `fetch_add` and wraps the bucket's count, which takes 2⁴⁴ values in
/// one bucket (2³² on Cortex-M). The sum stays exact (modulo 2⁶⁴) either
/// way: what a count cannot hold goes to the spill.
///
/// ```
/// use fusebox::histogram::BUCKET_CAPACITY;
///
/// assert!(BUCKET_CAPACITY >= u64::from(u32::MAX));
/// ```
pub const CAPACITY: u64 = to_u64(COUNT_MASK);

/// One bucket. See the module docs for the word layout.
#[derive(Debug)]
pub(super) struct Cell(CounterWord);

impl Cell {
    const_fn_unless_loom! {
        pub(super) fn new() -> Self {
            Self(CounterWord::new(0))
        }
    }

    /// Counts one value `off` above the bucket's lowest, `low`. Returns
    /// what the caller must add to the spill sum: 0, except on an offset
    /// carry ([`CARRY`]), for an offset too wide for the field (`off`), or
    /// when this value wraps the count (see [`wrapped`]).
    #[inline]
    pub(super) fn record(&self, off: u64, low: u64) -> u64 {
        if off >> OFFSET_BITS != 0 {
            let old = self.0.fetch_add(1, Relaxed);
            let (_, carried) = old.overflowing_add(1);
            if old & COUNT_MASK == COUNT_MASK {
                return off.wrapping_add(wrapped(low, carried));
            }
            return off;
        }
        // `off` fits OFFSET_BITS; with no offset field it is 0 (and so is
        // the shift below, by the full width).
        let add = (off as CounterInt).checked_shl(COUNT_BITS).unwrap_or(0) | 1;
        let old = self.0.fetch_add(add, Relaxed);
        // The offsets are the word's top bits: they carried out exactly
        // when the whole addition did.
        let (_, carried) = old.overflowing_add(add);
        if old & COUNT_MASK == COUNT_MASK {
            return wrapped(low, carried);
        }
        if OFFSET_BITS != 0 && carried {
            CARRY
        } else {
            0
        }
    }

    /// Adds `n` to the count, saturating at [`CAPACITY`] (a CAS loop).
    /// Returns how many did not fit.
    pub(super) fn add_count(&self, n: u64) -> u64 {
        let mut cur = self.0.load(Relaxed);
        loop {
            let room = to_u64(COUNT_MASK - (cur & COUNT_MASK));
            let add = n.min(room);
            if add == 0 {
                return n;
            }
            // `add ≤ room`: the count cannot carry into the offsets.
            let new = cur + add as CounterInt;
            // Release: see `Histogram::record_clamped`.
            match self.0.compare_exchange_weak(cur, new, Release, Relaxed) {
                Ok(_) => return n - add,
                Err(seen) => cur = seen,
            }
        }
    }

    /// The count and the offset sum (modulo 2^OFFSET_BITS).
    #[inline]
    pub(super) fn get(&self) -> (u64, u64) {
        let word = self.0.load(Relaxed);
        let offsets = word.checked_shr(COUNT_BITS).unwrap_or(0);
        (to_u64(word & COUNT_MASK), to_u64(offsets))
    }

    /// The count alone.
    #[inline]
    pub(super) fn count(&self) -> u64 {
        to_u64(self.0.load(Relaxed) & COUNT_MASK)
    }

    /// The count alone, with `Acquire` (see `Histogram::record_clamped`).
    #[inline]
    pub(super) fn count_acquire(&self) -> u64 {
        to_u64(self.0.load(Acquire) & COUNT_MASK)
    }

    pub(super) fn reset(&self) {
        self.0.store(0, Relaxed);
    }
}

/// What the spill must get back from a record whose `+1` wrapped its
/// bucket's count (the one record that moved it from [`CAPACITY`] to 0;
/// exactly one per wrap, however many record at once): the `CAPACITY + 1`
/// values the count no longer holds, at the bucket's lowest value `low`;
/// less the 1 that the count's carry added to the offsets above it (none
/// on a word with no offset field); plus [`CARRY`] if the whole word
/// carried out (`carried`). The count wraps; the sum stays exact modulo
/// 2⁶⁴.
///
/// Inline, not a cold call: a call kept a stack frame (three pushes and
/// pops) on `record`'s common path; inline it is a shift, a decrement and
/// an add on a branch taken once per 2⁴⁴ values.
#[inline]
fn wrapped(low: u64, carried: bool) -> u64 {
    let lost = (CAPACITY + 1).wrapping_mul(low);
    if OFFSET_BITS == 0 {
        return lost;
    }
    let carry = if carried { CARRY } else { 0 };
    lost.wrapping_sub(1).wrapping_add(carry)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn layout_constants() {
        if WORD_BITS == 64 {
            assert_eq!((COUNT_BITS, OFFSET_BITS), (44, 20));
            assert_eq!(CAPACITY, (1 << 44) - 1);
        } else {
            assert_eq!((COUNT_BITS, OFFSET_BITS), (32, 0));
            assert_eq!(CAPACITY, u64::from(u32::MAX));
        }
    }

    #[test]
    fn offsets_carry_out_into_the_spill() {
        let c = Cell::new();
        let mut spill = 0u64;
        let mut exact = 0u64;
        for k in 0..5_000u64 {
            let off = (k * 7_919) % (1 << 19);
            exact += off;
            spill += c.record(off, 0);
        }
        let (n, offsets) = c.get();
        assert_eq!(n, 5_000);
        assert_eq!(offsets + spill, exact);
        if OFFSET_BITS != 0 {
            assert!(spill > 0 && offsets > 0);
        }
        // An offset too wide for the field is handed back whole.
        assert_eq!(c.record(1 << 40, 0), 1 << 40);
        assert_eq!(c.count(), 5_001);
    }

    #[test]
    fn add_count_saturates() {
        let c = Cell::new();
        c.record(3, 0);
        assert_eq!(c.add_count(CAPACITY), 1);
        assert_eq!(c.count(), CAPACITY);
        assert_eq!(c.add_count(5), 5);
        assert_eq!(c.add_count(0), 0);
        // The offsets are untouched by saturation.
        assert_eq!(c.get().1, if OFFSET_BITS != 0 { 3 } else { 0 });
        c.reset();
        assert_eq!(c.get(), (0, 0));
        assert_eq!(c.add_count(u64::MAX), u64::MAX - CAPACITY);
    }
}
