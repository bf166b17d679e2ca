//! `Extremes`: the running minimum and maximum of `u64` values in two
//! statistics words, each holding an order-preserving *code* of a value.
//!
//! * 64-bit words: the code is the value itself — exact.
//! * 32-bit words (Cortex-M): values below 2³¹ are their own code (exact);
//!   above, the code keeps the exponent and the 25 bits below the leading
//!   one, a relative precision of 2⁻²⁵ ≈ 3·10⁻⁸. The minimum decodes to the
//!   *lowest* and the maximum to the *highest* value with its code, so
//!   `[min, max]` always contains every recorded value, and both stay in
//!   the histogram bucket of the value they round (a bucket keeps 7 bits
//!   below the leading one, the code 25).
//!
//! The minimum is stored inverted (`!code`, tracked with `fetch_max`) so
//! that the all-zero value is the empty state: `min` decodes to the
//! largest code and `max` to 0, and `min > max` means empty.
//!
//! Recording is two loads; a `fetch_max` follows only on a new extreme.

use crate::sync::{const_fn_unless_loom, CounterInt, CounterWord, Ordering::Relaxed};

#[derive(Debug)]
pub(super) struct Extremes {
    /// `!code(min)`; 0 (no value's code inverted) while empty.
    inv_min: CounterWord,
    /// `code(max)`; 0 while empty.
    max: CounterWord,
}

/// Whether codes are the values themselves.
const EXACT: bool = CounterInt::BITS == 64;

/// The order-preserving code of `v` in a statistics word.
#[allow(clippy::unnecessary_cast)]
#[inline]
const fn code(v: u64) -> CounterInt {
    if EXACT {
        v as CounterInt
    } else {
        encode(v) as CounterInt
    }
}

/// The lowest and highest value whose code is `code`.
#[allow(clippy::useless_conversion, clippy::unnecessary_cast)]
fn decode_code(code: CounterInt) -> (u64, u64) {
    if EXACT {
        (u64::from(code), u64::from(code))
    } else {
        decode(code as u32)
    }
}

impl Extremes {
    const_fn_unless_loom! {
        pub(super) fn new() -> Self {
            Self {
                inv_min: CounterWord::new(0),
                max: CounterWord::new(0),
            }
        }
    }

    /// Folds `v` in.
    #[inline]
    pub(super) fn record(&self, v: u64) {
        let c = code(v);
        if !c > self.inv_min.load(Relaxed) {
            self.inv_min.fetch_max(!c, Relaxed);
        }
        if c > self.max.load(Relaxed) {
            self.max.fetch_max(c, Relaxed);
        }
    }

    /// Folds in a range known to contain values (`min ≤ max`).
    pub(super) fn record_range(&self, min: u64, max: u64) {
        self.inv_min.fetch_max(!code(min), Relaxed);
        self.max.fetch_max(code(max), Relaxed);
    }

    /// Folds in everything `other` has seen.
    pub(super) fn merge(&self, other: &Self) {
        // An empty side holds zeros, which change nothing.
        self.inv_min.fetch_max(other.inv_min.load(Relaxed), Relaxed);
        self.max.fetch_max(other.max.load(Relaxed), Relaxed);
    }

    /// `(min, max)` (rounded outward on Cortex-M), or `None` while empty.
    pub(super) fn get(&self) -> Option<(u64, u64)> {
        let min = !self.inv_min.load(Relaxed);
        let max = self.max.load(Relaxed);
        (min <= max).then(|| (decode_code(min).0, decode_code(max).1))
    }

    pub(super) fn reset(&self) {
        self.inv_min.store(0, Relaxed);
        self.max.store(0, Relaxed);
    }
}

/// Values below `1 << EXACT_BITS` are their own 32-bit code.
const EXACT_BITS: u32 = 31;
/// Mantissa bits kept above it (33 exponents × 2²⁵ codes fit in 2³¹).
const MANTISSA_BITS: u32 = 25;
const MANTISSA_MASK: u32 = (1 << MANTISSA_BITS) - 1;

/// The order-preserving 32-bit code of `v`.
const fn encode(v: u64) -> u32 {
    if v < 1 << EXACT_BITS {
        return v as u32;
    }
    let top = v.ilog2(); // 31..=63
    let exponent = top - EXACT_BITS; // 0..=32
    let mantissa = (v >> (top - MANTISSA_BITS)) as u32 & MANTISSA_MASK;
    (1 << EXACT_BITS) + (exponent << MANTISSA_BITS) + mantissa
}

/// The lowest and highest value whose 32-bit code is `code`.
const fn decode(code: u32) -> (u64, u64) {
    if code < 1 << EXACT_BITS {
        return (code as u64, code as u64);
    }
    let exponent = (code - (1 << EXACT_BITS)) >> MANTISSA_BITS;
    // Only `u32::MAX` (the empty minimum) lies beyond exponent 32.
    let exponent = if exponent > 32 { 32 } else { exponent };
    let shift = exponent + EXACT_BITS - MANTISSA_BITS;
    let low = ((code & MANTISSA_MASK) as u64 | 1 << MANTISSA_BITS) << shift;
    (low, low + ((1 << shift) - 1))
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::super::layout::index_of;
    use super::*;

    #[test]
    fn codes_are_exact_below_2_pow_31_and_preserve_order() {
        for v in [0, 1, 2, 1000, (1 << 31) - 1] {
            assert_eq!(encode(v), v as u32);
            assert_eq!(decode(encode(v)), (v, v));
        }
        let mut prev = 0;
        let mut v: u64 = 1;
        while v < u64::MAX / 3 {
            for probe in [v - 1, v, v + 1, v + v / 3] {
                let (low, high) = decode(encode(probe));
                assert!(low <= probe && probe <= high, "{probe}: {low}..={high}");
                // Relative precision 2^-25, inside the value's bucket.
                assert!((high - low) <= probe >> 25, "{probe}: {low}..={high}");
                assert_eq!(index_of(low), index_of(probe));
                assert_eq!(index_of(high), index_of(probe));
            }
            assert!(encode(v) >= prev);
            prev = encode(v);
            v = v * 3 / 2 + 1;
        }
        assert!(encode(u64::MAX) < u32::MAX);
        assert_eq!(decode(encode(u64::MAX)).1, u64::MAX);
        assert_eq!(decode(encode(1 << 31)), (1 << 31, (1 << 31) + 63));
    }

    #[test]
    fn extremes_contain_every_value_and_zero_is_empty() {
        let e = Extremes::new();
        assert_eq!(e.get(), None);
        e.record(5_000_000_123);
        e.record(7);
        let (min, max) = e.get().unwrap();
        assert_eq!(min, 7);
        assert!(max >= 5_000_000_123 && max - 5_000_000_123 <= 5_000_000_123 >> 25);
        let other = Extremes::new();
        e.merge(&other);
        assert_eq!(e.get(), Some((min, max)));
        other.record(3);
        e.merge(&other);
        assert_eq!(e.get().unwrap().0, 3);
        e.reset();
        assert_eq!(e.get(), None);
        e.record(u64::MAX);
        assert_eq!(e.get(), Some((decode_code(code(u64::MAX)).0, u64::MAX)));
        e.reset();
        e.record(0);
        assert_eq!(e.get(), Some((0, 0)));
        e.record_range(10, 20);
        assert_eq!(e.get(), Some((0, 20)));
    }
}
