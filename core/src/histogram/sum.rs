//! `Sum`: the histogram's spill, a `u64` accumulator exact modulo 2⁶⁴
//! built from two statistics words.
//!
//! It holds the part of the sum the buckets cannot: offsets carried out of
//! a bucket word, offsets too wide for one, clamped values and merged sums
//! (see `cell.rs`). It is touched only on those rare paths.
//!
//! `add` adds the value's low word with one `fetch_add`; the thread whose
//! addition carried out of it adds the carry (with the value's high word)
//! to `hi`. With 32-bit words (Cortex-M) the two words are the two halves
//! of the `u64`; with 64-bit words `lo` is the whole `u64` and `hi` only
//! counts its wraps (never read). The total is exact modulo 2⁶⁴ once the
//! adds have returned; with 32-bit words a read racing an add may see the
//! low word wrapped before the carry arrives (2³² low for that moment).
//!
//! The all-zero value is an empty sum.

use crate::sync::{
    const_fn_unless_loom, CounterInt, CounterWord,
    Ordering::{Acquire, Relaxed, Release},
};

#[derive(Debug)]
pub(super) struct Sum {
    lo: CounterWord,
    hi: CounterWord,
}

impl Sum {
    const_fn_unless_loom! {
        pub(super) fn new() -> Self {
            Self {
                lo: CounterWord::new(0),
                hi: CounterWord::new(0),
            }
        }
    }

    /// Adds `v`, wrapping at 2⁶⁴.
    pub(super) fn add(&self, v: u64) {
        let lo = v as CounterInt;
        // Release, with `get`'s Acquire: a reader that sees this addition
        // also sees the bucket word the recorder changed before it (a
        // carry out of its offsets), so `Histogram::sum`, which reads the
        // spill before the buckets, never counts a carry twice.
        let old = self.lo.fetch_add(lo, Release);
        let carry = CounterInt::from(old.checked_add(lo).is_none());
        let hi = (v.checked_shr(CounterInt::BITS).unwrap_or(0) as CounterInt).wrapping_add(carry);
        if hi != 0 {
            self.hi.fetch_add(hi, Relaxed);
        }
    }

    #[allow(clippy::useless_conversion)]
    pub(super) fn get(&self) -> u64 {
        let hi = u64::from(self.hi.load(Relaxed));
        let lo = u64::from(self.lo.load(Acquire));
        hi.checked_shl(CounterInt::BITS).unwrap_or(0) | lo
    }

    pub(super) fn reset(&self) {
        self.lo.store(0, Relaxed);
        self.hi.store(0, Relaxed);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn carries_and_wraps() {
        let s = Sum::new();
        s.add(u64::from(u32::MAX));
        s.add(1);
        assert_eq!(s.get(), 1 << 32);
        s.add(u64::MAX); // wraps: 2^32 - 1
        assert_eq!(s.get(), (1 << 32) - 1);
        s.add(0x1234_5678_9abc_def0);
        assert_eq!(s.get(), 0x1234_5679_9abc_deef);
        s.add(u64::MAX - 0x1234_5679_9abc_deed); // wraps to 1
        assert_eq!(s.get(), 1);
        s.reset();
        assert_eq!(s.get(), 0);
    }
}
