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
//! 64-bit atomics and 32-bit (wrapping) elsewhere. The two `u64` statistics
//! that must not wrap early follow the same split: [`Sum`] is one 64-bit
//! word or two 32-bit halves with a carry, and [`Extremes`] (a running
//! minimum and maximum) is two 64-bit words or two 32-bit order-preserving
//! codes (see [`Compact`]).

pub(crate) use imp::{fence, AtomicU16, AtomicU32, Ordering};

#[cfg(loom)]
mod imp {
    #[cfg(not(fusebox_narrow_words))]
    pub(crate) use loom::sync::atomic::AtomicU64;
    pub(crate) use loom::sync::atomic::{fence, AtomicU16, AtomicU32, Ordering};
}

#[cfg(not(loom))]
mod imp {
    #[cfg(target_has_atomic = "64")]
    pub(crate) use portable_atomic::AtomicU64;
    pub(crate) use portable_atomic::{fence, AtomicU16, AtomicU32, Ordering};
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

#[cfg(all(any(loom, target_has_atomic = "64"), not(fusebox_narrow_words)))]
type CounterWord = imp::AtomicU64;
#[cfg(not(all(any(loom, target_has_atomic = "64"), not(fusebox_narrow_words))))]
type CounterWord = imp::AtomicU32;

/// The word holding a token bucket's wrapped arrival time: 64-bit where the
/// target has native 64-bit atomics, 32-bit on Cortex-M.
#[cfg(all(any(loom, target_has_atomic = "64"), not(fusebox_narrow_words)))]
pub(crate) type TatWord = imp::AtomicU64;
#[cfg(not(all(any(loom, target_has_atomic = "64"), not(fusebox_narrow_words))))]
pub(crate) type TatWord = imp::AtomicU32;
/// Width of [`TatWord`] in bits.
#[cfg(all(any(loom, target_has_atomic = "64"), not(fusebox_narrow_words)))]
pub(crate) const TAT_BITS: u32 = 64;
#[cfg(not(all(any(loom, target_has_atomic = "64"), not(fusebox_narrow_words))))]
pub(crate) const TAT_BITS: u32 = 32;

/// The word holding a breaker's full generation number (its epoch): 64-bit
/// where the target has native 64-bit atomics (it never wraps), 32-bit on
/// Cortex-M (wraps after 2³² transitions).
#[cfg(all(any(loom, target_has_atomic = "64"), not(fusebox_narrow_words)))]
pub(crate) type EpochWord = imp::AtomicU64;
#[cfg(not(all(any(loom, target_has_atomic = "64"), not(fusebox_narrow_words))))]
pub(crate) type EpochWord = imp::AtomicU32;
/// A full generation number, the value type of [`EpochWord`].
#[cfg(all(any(loom, target_has_atomic = "64"), not(fusebox_narrow_words)))]
pub(crate) type Epoch = u64;
/// A full generation number, the value type of [`EpochWord`].
#[cfg(not(all(any(loom, target_has_atomic = "64"), not(fusebox_narrow_words))))]
pub(crate) type Epoch = u32;

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

    /// Adds `n`, truncated to the counter's width (so wrapping on 32 bits).
    #[inline]
    pub(crate) fn add(&self, n: u64) {
        self.0.fetch_add(n as _, Ordering::Relaxed);
    }

    /// Sets the counter, truncating to the counter's width.
    #[allow(clippy::useless_conversion)]
    pub(crate) fn set(&self, value: u64) {
        self.0.store(value as _, Ordering::Relaxed);
    }
}

/// A `u64` accumulator, exact modulo 2⁶⁴ on every target.
#[cfg(all(any(loom, target_has_atomic = "64"), not(fusebox_narrow_words)))]
pub(crate) type Sum = WideSum;
/// A `u64` accumulator, exact modulo 2⁶⁴ on every target.
#[cfg(not(all(any(loom, target_has_atomic = "64"), not(fusebox_narrow_words))))]
pub(crate) type Sum = SplitSum;

/// [`Sum`] in one native 64-bit word.
#[cfg(all(any(loom, target_has_atomic = "64"), not(fusebox_narrow_words)))]
#[derive(Debug)]
pub(crate) struct WideSum(imp::AtomicU64);

#[cfg(all(any(loom, target_has_atomic = "64"), not(fusebox_narrow_words)))]
impl WideSum {
    const_fn_unless_loom! {
        pub(crate) fn new() -> Self {
            Self(imp::AtomicU64::new(0))
        }
    }

    /// Adds `v`, wrapping at 2⁶⁴.
    #[inline]
    pub(crate) fn add(&self, v: u64) {
        self.0.fetch_add(v, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    pub(crate) fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }
}

/// [`Sum`] in two 32-bit halves, for targets without 64-bit atomics.
///
/// `add` adds the low half with one `fetch_add`; the thread whose addition
/// carried out of it adds the carry (with the high half of the value) to
/// the high word. The total is therefore exact modulo 2⁶⁴ once the adds
/// have returned; a read racing an add may see the low word wrapped before
/// the carry arrives (off by 2³² for that moment).
#[derive(Debug)]
#[cfg_attr(
    all(any(loom, target_has_atomic = "64"), not(fusebox_narrow_words)),
    allow(dead_code)
)]
pub(crate) struct SplitSum {
    lo: AtomicU32,
    hi: AtomicU32,
}

#[cfg_attr(
    all(any(loom, target_has_atomic = "64"), not(fusebox_narrow_words)),
    allow(dead_code)
)]
impl SplitSum {
    const_fn_unless_loom! {
        pub(crate) fn new() -> Self {
            Self {
                lo: AtomicU32::new(0),
                hi: AtomicU32::new(0),
            }
        }
    }

    /// Adds `v`, wrapping at 2⁶⁴.
    #[inline]
    pub(crate) fn add(&self, v: u64) {
        let lo = v as u32;
        let old = self.lo.fetch_add(lo, Ordering::Relaxed);
        let carry = u32::from(old.checked_add(lo).is_none());
        let hi = ((v >> 32) as u32).wrapping_add(carry);
        if hi != 0 {
            self.hi.fetch_add(hi, Ordering::Relaxed);
        }
    }

    pub(crate) fn get(&self) -> u64 {
        let hi = self.hi.load(Ordering::Relaxed);
        let lo = self.lo.load(Ordering::Relaxed);
        u64::from(hi) << 32 | u64::from(lo)
    }

    pub(crate) fn set(&self, v: u64) {
        self.lo.store(v as u32, Ordering::Relaxed);
        self.hi.store((v >> 32) as u32, Ordering::Relaxed);
    }
}

/// The running minimum and maximum of `u64` values: exact where the target
/// has 64-bit atomics, else [`Compact`].
#[cfg(all(any(loom, target_has_atomic = "64"), not(fusebox_narrow_words)))]
pub(crate) type Extremes = WideExtremes;
/// The running minimum and maximum of `u64` values: exact where the target
/// has 64-bit atomics, else [`Compact`].
#[cfg(not(all(any(loom, target_has_atomic = "64"), not(fusebox_narrow_words))))]
pub(crate) type Extremes = Compact;

/// [`Extremes`] in two native 64-bit words: exact.
#[cfg(all(any(loom, target_has_atomic = "64"), not(fusebox_narrow_words)))]
#[derive(Debug)]
pub(crate) struct WideExtremes {
    /// `u64::MAX` while empty.
    min: imp::AtomicU64,
    /// 0 while empty.
    max: imp::AtomicU64,
}

#[cfg(all(any(loom, target_has_atomic = "64"), not(fusebox_narrow_words)))]
impl WideExtremes {
    const_fn_unless_loom! {
        pub(crate) fn new() -> Self {
            Self {
                min: imp::AtomicU64::new(u64::MAX),
                max: imp::AtomicU64::new(0),
            }
        }
    }

    /// Folds `v` in. A plain load first: once the extremes have settled,
    /// recording is two loads and no read-modify-write.
    #[inline]
    pub(crate) fn record(&self, v: u64) {
        if v < self.min.load(Ordering::Relaxed) {
            self.min.fetch_min(v, Ordering::Relaxed);
        }
        if v > self.max.load(Ordering::Relaxed) {
            self.max.fetch_max(v, Ordering::Relaxed);
        }
    }

    /// Folds in everything `other` has seen.
    pub(crate) fn merge(&self, other: &Self) {
        // An empty side holds (u64::MAX, 0), which changes nothing.
        self.min
            .fetch_min(other.min.load(Ordering::Relaxed), Ordering::Relaxed);
        self.max
            .fetch_max(other.max.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// `(min, max)`, or `None` before the first value.
    pub(crate) fn get(&self) -> Option<(u64, u64)> {
        let min = self.min.load(Ordering::Relaxed);
        let max = self.max.load(Ordering::Relaxed);
        (min <= max).then_some((min, max))
    }

    pub(crate) fn reset(&self) {
        self.min.store(u64::MAX, Ordering::Relaxed);
        self.max.store(0, Ordering::Relaxed);
    }
}

/// [`Extremes`] in two 32-bit words, for targets without 64-bit atomics.
///
/// Each word holds an order-preserving 32-bit *code* of a `u64` (so
/// `fetch_min`/`fetch_max` on codes track the extremes): values below 2³¹
/// are their own code (exact); above, the code keeps the exponent and the 25
/// bits below the leading one, a relative precision of 2⁻²⁵ ≈ 3·10⁻⁸. The
/// minimum decodes to the *lowest* and the maximum to the *highest* value
/// with its code, so `[min, max]` always contains every recorded value.
#[derive(Debug)]
#[cfg_attr(
    all(any(loom, target_has_atomic = "64"), not(fusebox_narrow_words)),
    allow(dead_code)
)]
pub(crate) struct Compact {
    /// Code of the minimum; `u32::MAX` (no value's code) while empty.
    min: AtomicU32,
    /// Code of the maximum; 0 while empty.
    max: AtomicU32,
}

/// Values below `1 << EXACT_BITS` are their own code.
const EXACT_BITS: u32 = 31;
/// Mantissa bits kept above it (33 exponents × 2²⁵ codes fit in 2³¹).
const MANTISSA_BITS: u32 = 25;
const MANTISSA_MASK: u32 = (1 << MANTISSA_BITS) - 1;

/// The order-preserving 32-bit code of `v`.
#[cfg_attr(
    all(any(loom, target_has_atomic = "64"), not(fusebox_narrow_words)),
    allow(dead_code)
)]
const fn encode(v: u64) -> u32 {
    if v < 1 << EXACT_BITS {
        return v as u32;
    }
    let top = v.ilog2(); // 31..=63
    let exponent = top - EXACT_BITS; // 0..=32
    let mantissa = (v >> (top - MANTISSA_BITS)) as u32 & MANTISSA_MASK;
    (1 << EXACT_BITS) + (exponent << MANTISSA_BITS) + mantissa
}

/// The lowest and highest value whose code is `code`.
#[cfg_attr(
    all(any(loom, target_has_atomic = "64"), not(fusebox_narrow_words)),
    allow(dead_code)
)]
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

#[cfg_attr(
    all(any(loom, target_has_atomic = "64"), not(fusebox_narrow_words)),
    allow(dead_code)
)]
impl Compact {
    const_fn_unless_loom! {
        pub(crate) fn new() -> Self {
            Self {
                min: AtomicU32::new(u32::MAX),
                max: AtomicU32::new(0),
            }
        }
    }

    /// Folds `v` in (loads first, read-modify-write only on a new extreme).
    #[inline]
    pub(crate) fn record(&self, v: u64) {
        let code = encode(v);
        if code < self.min.load(Ordering::Relaxed) {
            self.min.fetch_min(code, Ordering::Relaxed);
        }
        if code > self.max.load(Ordering::Relaxed) {
            self.max.fetch_max(code, Ordering::Relaxed);
        }
    }

    /// Folds in everything `other` has seen.
    pub(crate) fn merge(&self, other: &Self) {
        self.min
            .fetch_min(other.min.load(Ordering::Relaxed), Ordering::Relaxed);
        self.max
            .fetch_max(other.max.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// `(min, max)` rounded outward, or `None` before the first value.
    pub(crate) fn get(&self) -> Option<(u64, u64)> {
        let min = self.min.load(Ordering::Relaxed);
        let max = self.max.load(Ordering::Relaxed);
        (min <= max).then(|| (decode(min).0, decode(max).1))
    }

    pub(crate) fn reset(&self) {
        self.min.store(u32::MAX, Ordering::Relaxed);
        self.max.store(0, Ordering::Relaxed);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
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
                // Relative precision 2^-25.
                assert!((high - low) <= probe >> 25, "{probe}: {low}..={high}");
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
    fn compact_extremes_contain_every_value() {
        let e = Compact::new();
        assert_eq!(e.get(), None);
        e.record(5_000_000_123);
        e.record(7);
        let (min, max) = e.get().unwrap();
        assert_eq!(min, 7);
        assert!(max >= 5_000_000_123 && max - 5_000_000_123 <= 5_000_000_123 >> 25);
        let other = Compact::new();
        e.merge(&other);
        assert_eq!(e.get(), Some((min, max)));
        other.record(3);
        e.merge(&other);
        assert_eq!(e.get().unwrap().0, 3);
        e.reset();
        assert_eq!(e.get(), None);
        e.record(u64::MAX);
        assert_eq!(e.get().unwrap().1, u64::MAX);
    }

    #[test]
    fn split_sum_carries() {
        let s = SplitSum::new();
        s.add(u64::from(u32::MAX));
        s.add(1);
        assert_eq!(s.get(), 1 << 32);
        s.add(u64::MAX); // wraps: 2^32 - 1
        assert_eq!(s.get(), (1 << 32) - 1);
        s.add(0x1234_5678_9abc_def0);
        assert_eq!(s.get(), 0x1234_5679_9abc_deef);
        s.set(42);
        assert_eq!(s.get(), 42);
    }
}

mod bytes;
pub(crate) use bytes::AtomicBytes;
mod lock;
pub(crate) use lock::TableLock;
