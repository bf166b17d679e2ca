//! A lock-free, allocation-free log-linear (HDR-style) histogram of `u64`
//! values — latencies in microseconds, nanoseconds or any other unit.
//!
//! # Layout
//!
//! Bucket `i` holds the values whose index is `i`, where, with
//! [`SUB_BITS`] = 7 and `h` the position of the leading one of `v`:
//!
//! * `v < 256`: `i = v` — every value below 256 has a bucket of its own;
//! * `v ≥ 256`: `i = (h − 7)·128 + (v >> (h − 7))` — each power of two
//!   `[2ʰ, 2ʰ⁺¹)` is split into 128 buckets of width `2ʰ⁻⁷`.
//!
//! The buckets are contiguous, monotone in `v`, and [`MAX_BUCKETS`] = 7 424
//! of them cover all of `u64`. A [`Histogram<B>`](Histogram) keeps the
//! first `B`: it tracks `0..=`[`Histogram::MAX_VALUE`], and a larger value
//! is *clamped* into the top bucket and counted in
//! [`Histogram::clamped`] (it still counts in `count`, `sum`, `min`, `max`
//! and `mean` with its true value). [`buckets_for`] gives the `B` for a
//! largest value; the default, [`DEFAULT_BUCKETS`] = 3 328, covers
//! `0..=2³²−1` (71 min in microseconds, 4.29 s in nanoseconds).
//!
//! # Accuracy
//!
//! Counts, `sum`, `min` and `max` are exact (on targets with 64-bit
//! atomics; see the crate docs for 32-bit microcontrollers). A percentile
//! (nearest rank, see [`Histogram::percentile`]) is the midpoint of the
//! bucket holding the sample of that rank, clamped into
//! `[min, max]`: it differs from the exact sample by at most
//! [`RELATIVE_ERROR`] = 2⁻⁸ = 1/256 ≈ 0.39 % of it (half a bucket width
//! over the bucket's lowest value, `w/2 ÷ 128w`), and values below 256 are
//! exact.
//!
//! # Size
//!
//! One statistics counter per bucket, a clamped-values counter, the sum and
//! the two extremes: `8·B + 32` bytes on x86-64 (the default: 26 656) and
//! `4·B + 20` bytes on Cortex-M (the default: 13 332;
//! `Histogram<{ buckets_for(1_000_000) }>`, one second in microseconds:
//! 7 144). Both are checked at compile time.
//!
//! # Examples
//!
//! ```
//! use fusebox::histogram::{buckets_for, Histogram};
//!
//! // Up to 10 s in microseconds; `new` is const, so it can be a static.
//! static LATENCY: Histogram<{ buckets_for(10_000_000) }> = Histogram::new();
//!
//! for micros in [120, 130, 180, 2_000, 950] {
//!     LATENCY.record(micros);
//! }
//! assert_eq!(LATENCY.count(), 5);
//! assert_eq!(LATENCY.percentile(50.0), Ok(Some(180)));
//! assert_eq!(LATENCY.percentile(100.0), Ok(Some(2_000)));
//! assert_eq!(LATENCY.max(), Some(2_000));
//! ```

use core::fmt;

use crate::sync::{const_fn_unless_loom, Counter, Extremes, Sum};

/// Bits of sub-bucket precision: each power of two is split into
/// 2<sup>`SUB_BITS`</sup> = 128 buckets.
///
/// ```
/// assert_eq!(fusebox::histogram::SUB_BITS, 7);
/// ```
pub const SUB_BITS: u32 = 7;

/// The bound on a percentile's relative error: `|reported − exact| ≤
/// exact · RELATIVE_ERROR`, i.e. 1/256 ≈ 0.39 %.
///
/// ```
/// use fusebox::histogram::{Histogram, RELATIVE_ERROR};
///
/// let h: Histogram = Histogram::new();
/// h.record(1_000_000);
/// h.record(1_000_001);
/// let p50 = h.percentile(50.0).unwrap().unwrap();
/// assert!(p50.abs_diff(1_000_000) as f64 <= 1_000_000.0 * RELATIVE_ERROR);
/// ```
pub const RELATIVE_ERROR: f64 = 1.0 / (2 << SUB_BITS) as f64;

/// The number of buckets that covers all of `u64` (7 424): the largest
/// `B` a [`Histogram<B>`](Histogram) accepts.
///
/// ```
/// use fusebox::histogram::{buckets_for, MAX_BUCKETS};
///
/// assert_eq!(buckets_for(u64::MAX), MAX_BUCKETS);
/// ```
pub const MAX_BUCKETS: usize = buckets_for(u64::MAX);

/// The default number of buckets (3 328): values `0..=2³²−1` — 71 minutes
/// in microseconds, 4.29 s in nanoseconds.
///
/// ```
/// use fusebox::histogram::{Histogram, DEFAULT_BUCKETS};
///
/// assert_eq!(DEFAULT_BUCKETS, 3_328);
/// assert_eq!(Histogram::<DEFAULT_BUCKETS>::MAX_VALUE, u64::from(u32::MAX));
/// ```
pub const DEFAULT_BUCKETS: usize = buckets_for(u32::MAX as u64);

/// The number of buckets a [`Histogram`] needs to track values up to
/// `max_value` without clamping (its `MAX_VALUE` may be a little larger:
/// the top bucket's end).
///
/// ```
/// use fusebox::histogram::{buckets_for, Histogram};
///
/// const B: usize = buckets_for(1_000_000); // one second in microseconds
/// assert_eq!(B, 1_781);
/// assert!(Histogram::<B>::MAX_VALUE >= 1_000_000);
/// assert!(Histogram::<{ B - 1 }>::MAX_VALUE < 1_000_000);
/// ```
pub const fn buckets_for(max_value: u64) -> usize {
    index_of(max_value) + 1
}

/// The bucket of `v` (see the module docs); below [`MAX_BUCKETS`].
#[inline]
const fn index_of(v: u64) -> usize {
    let top = (v | 1).ilog2();
    let shift = top.saturating_sub(SUB_BITS);
    (((shift as u64) << SUB_BITS) + (v >> shift)) as usize
}

/// The lowest value of bucket `i` and the bucket's width.
const fn bucket(i: usize) -> (u64, u64) {
    let i = i as u64;
    let shift = (i >> SUB_BITS).saturating_sub(1);
    let mantissa = i - (shift << SUB_BITS);
    (mantissa << shift, 1 << shift)
}

/// The value a percentile landing in bucket `i` reports: its midpoint.
const fn midpoint(i: usize) -> u64 {
    let (low, width) = bucket(i);
    low + width / 2
}

/// The 1-based rank of the `q`-th percentile of `n` samples (nearest rank):
/// `max(1, ⌈q·n/100⌉)`, computed in `f64` but ignoring a few ulps of
/// rounding noise, so that e.g. `q = 99.9, n = 1000` gives 999, not 1000.
#[allow(
    clippy::cast_precision_loss,
    clippy::cast_sign_loss,
    clippy::cast_possible_truncation
)]
fn rank(q: f64, n: u64) -> u64 {
    let x = q * n as f64 / 100.0;
    // Noise of a few ulps; at most half a rank (beyond 2^50 samples the
    // f64 product cannot resolve single ranks anyway).
    let x = x - (x * 4.0 * f64::EPSILON).min(0.5);
    // `x` is in 0.0..=n; `as` saturates. `f64::ceil` needs std.
    let floor = x as u64;
    let ceil = if (floor as f64) < x {
        floor.saturating_add(1)
    } else {
        floor
    };
    ceil.max(1).min(n.max(1))
}

/// [`Histogram::percentile`] was asked for an invalid percentile.
///
/// ```
/// use fusebox::histogram::{Histogram, PercentileError};
///
/// let h: Histogram = Histogram::new();
/// assert_eq!(h.percentile(f64::NAN), Err(PercentileError::NotANumber));
/// assert_eq!(h.percentile(100.5), Err(PercentileError::OutOfRange));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum PercentileError {
    /// The percentile was NaN.
    NotANumber,
    /// The percentile was outside `0.0..=100.0` (infinities included).
    OutOfRange,
}

impl fmt::Display for PercentileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotANumber => "percentile is NaN",
            Self::OutOfRange => "percentile is outside 0..=100",
        })
    }
}

impl core::error::Error for PercentileError {}

/// A log-linear histogram of `u64` values in `BUCKETS` atomic counters.
///
/// Every method takes `&self` and is lock-free (on Cortex-M0, interrupt-safe
/// critical sections): share it between threads and interrupt handlers, or
/// put it in a `static` ([`new`](Self::new) is `const`). Recording is one
/// counter `fetch_add`, one sum `fetch_add` and two loads of the extremes
/// (a `fetch_min`/`fetch_max` only on a new minimum or maximum). Reads walk
/// the buckets (`O(BUCKETS)`) with `Relaxed` loads: exact once recording
/// has stopped, not one atomic snapshot while it goes on.
///
/// See the [module docs](self) for the bucket layout, the value range, the
/// error bound and the size.
///
/// # Examples
///
/// ```
/// use fusebox::histogram::Histogram;
///
/// let h: Histogram = Histogram::new();
/// for v in 1..=1_000 {
///     h.record(v);
/// }
/// assert_eq!(h.count(), 1_000);
/// assert_eq!((h.min(), h.max()), (Some(1), Some(1_000)));
/// assert_eq!(h.mean(), Some(500.5));
/// let p99 = h.percentile(99.0)?.unwrap();
/// assert!(p99.abs_diff(990) <= 990 / 256);
/// # Ok::<(), fusebox::histogram::PercentileError>(())
/// ```
pub struct Histogram<const BUCKETS: usize = DEFAULT_BUCKETS> {
    buckets: [Counter; BUCKETS],
    /// Values above `MAX_VALUE`, all in the top bucket.
    clamped: Counter,
    sum: Sum,
    extremes: Extremes,
}

#[cfg(not(loom))]
const fn zeroed<const B: usize>() -> [Counter; B] {
    [const { Counter::new() }; B]
}

#[cfg(loom)]
fn zeroed<const B: usize>() -> [Counter; B] {
    core::array::from_fn(|_| Counter::new())
}

impl<const BUCKETS: usize> Histogram<BUCKETS> {
    /// The largest value tracked without clamping: the end of the top
    /// bucket.
    ///
    /// ```
    /// use fusebox::histogram::Histogram;
    ///
    /// assert_eq!(Histogram::<256>::MAX_VALUE, 255);
    /// assert_eq!(Histogram::<384>::MAX_VALUE, 511);
    /// ```
    pub const MAX_VALUE: u64 = {
        let (low, width) = bucket(BUCKETS - 1);
        low + (width - 1)
    };

    const_fn_unless_loom! {
        /// An empty histogram.
        ///
        /// `BUCKETS` must be in `1..=`[`MAX_BUCKETS`]; anything else fails
        /// to compile.
        ///
        /// ```
        /// use fusebox::histogram::Histogram;
        ///
        /// static H: Histogram = Histogram::new();
        /// assert_eq!(H.count(), 0);
        /// ```
        pub fn new() -> Self {
            const {
                assert!(
                    BUCKETS >= 1 && BUCKETS <= MAX_BUCKETS,
                    "Histogram<BUCKETS>: BUCKETS must be in 1..=MAX_BUCKETS"
                );
            }
            Self {
                buckets: zeroed(),
                clamped: Counter::new(),
                sum: Sum::new(),
                extremes: Extremes::new(),
            }
        }
    }

    /// Records one `value`.
    ///
    /// ```
    /// use fusebox::histogram::Histogram;
    ///
    /// let h: Histogram = Histogram::new();
    /// h.record(42);
    /// assert_eq!(h.percentile(50.0), Ok(Some(42)));
    /// ```
    #[inline]
    pub fn record(&self, value: u64) {
        self.record_n(value, 1);
    }

    /// Records `value` `n` times (`n = 0` changes nothing). The sum adds
    /// `value · n` modulo 2⁶⁴; on targets without 64-bit atomics each
    /// bucket counter wraps at 2³².
    ///
    /// ```
    /// use fusebox::histogram::Histogram;
    ///
    /// let h: Histogram = Histogram::new();
    /// h.record_n(10, 3);
    /// h.record_n(99, 0);
    /// assert_eq!((h.count(), h.sum(), h.max()), (3, 30, Some(10)));
    /// ```
    #[inline]
    pub fn record_n(&self, value: u64, n: u64) {
        if n == 0 {
            return;
        }
        self.extremes.record(value);
        self.sum.add(value.wrapping_mul(n));
        let mut i = index_of(value);
        if i >= BUCKETS {
            self.clamped.add(n);
            i = BUCKETS - 1;
        }
        if let Some(bucket) = self.buckets.get(i) {
            bucket.add(n);
        }
    }

    /// The number of recorded values (the sum of the bucket counters).
    ///
    /// ```
    /// use fusebox::histogram::Histogram;
    ///
    /// let h: Histogram = Histogram::new();
    /// assert_eq!(h.count(), 0);
    /// h.record(7);
    /// assert_eq!(h.count(), 1);
    /// ```
    pub fn count(&self) -> u64 {
        self.buckets
            .iter()
            .fold(0, |n, bucket| n.saturating_add(bucket.get()))
    }

    /// The sum of the recorded values, exact modulo 2⁶⁴ (2⁶⁴ µs is
    /// 584 942 years).
    ///
    /// ```
    /// use fusebox::histogram::Histogram;
    ///
    /// let h: Histogram = Histogram::new();
    /// h.record(5_000_000_000); // above MAX_VALUE: clamped, summed exactly
    /// h.record(1);
    /// assert_eq!(h.sum(), 5_000_000_001);
    /// ```
    pub fn sum(&self) -> u64 {
        self.sum.get()
    }

    /// The smallest recorded value, or `None` if empty.
    ///
    /// Exact where the target has 64-bit atomics; on 32-bit
    /// microcontrollers exact below 2³¹ and otherwise rounded *down* by at
    /// most a relative 2⁻²⁵.
    ///
    /// ```
    /// use fusebox::histogram::Histogram;
    ///
    /// let h: Histogram = Histogram::new();
    /// assert_eq!(h.min(), None);
    /// h.record(9);
    /// h.record(3);
    /// assert_eq!(h.min(), Some(3));
    /// ```
    pub fn min(&self) -> Option<u64> {
        self.extremes.get().map(|(min, _)| min)
    }

    /// The largest recorded value, or `None` if empty.
    ///
    /// Exact where the target has 64-bit atomics; on 32-bit
    /// microcontrollers exact below 2³¹ and otherwise rounded *up* by at
    /// most a relative 2⁻²⁵.
    ///
    /// ```
    /// use fusebox::histogram::Histogram;
    ///
    /// let h: Histogram = Histogram::new();
    /// assert_eq!(h.max(), None);
    /// h.record(u64::MAX);
    /// assert_eq!(h.max(), Some(u64::MAX));
    /// ```
    pub fn max(&self) -> Option<u64> {
        self.extremes.get().map(|(_, max)| max)
    }

    /// The arithmetic mean, or `None` if empty.
    ///
    /// `sum / count` whenever the sum cannot have wrapped (`count · max <
    /// 2⁶⁴`); otherwise estimated from the buckets, each value taken as its
    /// bucket's midpoint (within [`RELATIVE_ERROR`]) and clamped values as
    /// `max`.
    ///
    /// ```
    /// use fusebox::histogram::Histogram;
    ///
    /// let h: Histogram = Histogram::new();
    /// assert_eq!(h.mean(), None);
    /// h.record(1);
    /// h.record(2);
    /// assert_eq!(h.mean(), Some(1.5));
    /// h.record_n(u64::MAX, 2); // the sum wraps; the estimate does not
    /// assert!(h.mean().unwrap() > 9.2e18);
    /// ```
    #[allow(clippy::cast_precision_loss)]
    pub fn mean(&self) -> Option<f64> {
        let (min, max) = self.extremes.get()?;
        let n = self.count();
        if n == 0 {
            return None;
        }
        if n.checked_mul(max).is_some() {
            return Some(self.sum() as f64 / n as f64);
        }
        let mut total = 0.0;
        for (i, bucket) in self.buckets.iter().enumerate() {
            let mut c = bucket.get();
            if i == BUCKETS - 1 {
                let clamped = self.clamped.get().min(c);
                total += clamped as f64 * max as f64;
                c -= clamped;
            }
            total += c as f64 * midpoint(i).max(min).min(max) as f64;
        }
        Some(total / n as f64)
    }

    /// The `q`-th percentile, `q` in `0.0..=100.0`; `Ok(None)` if empty.
    ///
    /// Nearest rank: the `k`-th smallest value, `k = max(1, ⌈q·n/100⌉)`
    /// (ignoring a few ulps of `f64` rounding noise), so `percentile(0.0)`
    /// is the minimum, `percentile(50.0)` of 4 values the 2nd and
    /// `percentile(100.0)` the maximum. Rank 1 is reported as `min` and
    /// rank `n` as `max`, exactly. Any other rank is reported as the
    /// midpoint of its value's bucket clamped into `[min, max]` — within
    /// [`RELATIVE_ERROR`] of the exact value, exact below 256 — except that
    /// a value above [`MAX_VALUE`](Self::MAX_VALUE) (a clamped one) is
    /// reported as `max`, an upper bound.
    ///
    /// # Errors
    ///
    /// [`PercentileError`] if `q` is NaN or outside `0.0..=100.0`, whether
    /// or not the histogram is empty.
    ///
    /// ```
    /// use fusebox::histogram::{Histogram, PercentileError};
    ///
    /// let h: Histogram = Histogram::new();
    /// assert_eq!(h.percentile(99.0), Ok(None));
    /// for v in [10, 20, 30, 40] {
    ///     h.record(v);
    /// }
    /// assert_eq!(h.percentile(0.0), Ok(Some(10)));
    /// assert_eq!(h.percentile(50.0), Ok(Some(20)));
    /// assert_eq!(h.percentile(50.1), Ok(Some(30)));
    /// assert_eq!(h.percentile(100.0), Ok(Some(40)));
    /// assert_eq!(h.percentile(-1.0), Err(PercentileError::OutOfRange));
    /// ```
    pub fn percentile(&self, q: f64) -> Result<Option<u64>, PercentileError> {
        if q.is_nan() {
            return Err(PercentileError::NotANumber);
        }
        if !(0.0..=100.0).contains(&q) {
            return Err(PercentileError::OutOfRange);
        }
        // Emptiness, the minimum and the maximum cost O(1); only the other
        // percentiles walk the buckets.
        let Some((min, max)) = self.extremes.get() else {
            return Ok(None);
        };
        #[allow(clippy::float_cmp)] // exactly the ends: ranks 1 and n
        {
            if q == 0.0 {
                return Ok(Some(min));
            }
            if q == 100.0 {
                return Ok(Some(max));
            }
        }
        let n = self.count();
        if n == 0 {
            return Ok(None);
        }
        let k = rank(q, n);
        if k == 1 {
            return Ok(Some(min));
        }
        if k == n {
            return Ok(Some(max));
        }
        let mut below = 0u64;
        for (i, bucket) in self.buckets.iter().enumerate() {
            let c = bucket.get();
            if below.saturating_add(c) >= k {
                if i == BUCKETS - 1 {
                    // The clamped values are the largest in the top bucket.
                    let in_range = c - self.clamped.get().min(c);
                    if k - below > in_range {
                        return Ok(Some(max));
                    }
                }
                return Ok(Some(midpoint(i).max(min).min(max)));
            }
            below += c;
        }
        // Only a concurrent `reset` gets here.
        Ok(Some(max))
    }

    /// How many recorded values were above [`MAX_VALUE`](Self::MAX_VALUE)
    /// and clamped into the top bucket.
    ///
    /// ```
    /// use fusebox::histogram::Histogram;
    ///
    /// let h: Histogram<256> = Histogram::new(); // exact, values 0..=255
    /// h.record(255);
    /// h.record(1_000);
    /// assert_eq!(h.clamped(), 1);
    /// assert_eq!(h.percentile(50.0), Ok(Some(255)));
    /// assert_eq!(h.percentile(100.0), Ok(Some(1_000))); // the exact max
    /// ```
    pub fn clamped(&self) -> u64 {
        self.clamped.get()
    }

    /// Adds everything `other` recorded to `self` (bucket by bucket, so
    /// percentiles of the merge are as accurate as of one histogram). Not
    /// atomic as a whole: concurrent readers may see part of it.
    ///
    /// ```
    /// use fusebox::histogram::Histogram;
    ///
    /// let a: Histogram = Histogram::new();
    /// let b: Histogram = Histogram::new();
    /// a.record(1);
    /// b.record(100);
    /// a.merge(&b);
    /// assert_eq!((a.count(), a.min(), a.max()), (2, Some(1), Some(100)));
    /// ```
    pub fn merge(&self, other: &Self) {
        for (mine, theirs) in self.buckets.iter().zip(&other.buckets) {
            let c = theirs.get();
            if c != 0 {
                mine.add(c);
            }
        }
        self.clamped.add(other.clamped.get());
        self.sum.add(other.sum.get());
        self.extremes.merge(&other.extremes);
    }

    /// Empties the histogram. Not atomic as a whole: a value recorded
    /// concurrently may be kept in part (e.g. in `sum` but not `count`).
    ///
    /// ```
    /// use fusebox::histogram::Histogram;
    ///
    /// let h: Histogram = Histogram::new();
    /// h.record(5);
    /// h.reset();
    /// assert_eq!((h.count(), h.sum(), h.max()), (0, 0, None));
    /// ```
    pub fn reset(&self) {
        for bucket in &self.buckets {
            bucket.set(0);
        }
        self.clamped.set(0);
        self.sum.set(0);
        self.extremes.reset();
    }
}

impl<const BUCKETS: usize> Default for Histogram<BUCKETS> {
    /// [`Histogram::new`].
    fn default() -> Self {
        Self::new()
    }
}

impl<const BUCKETS: usize> fmt::Debug for Histogram<BUCKETS> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Histogram")
            .field("buckets", &BUCKETS)
            .field("count", &self.count())
            .field("min", &self.min())
            .field("max", &self.max())
            .field("clamped", &self.clamped())
            .finish_non_exhaustive()
    }
}

// The documented sizes, checked by every build, the thumb targets included.
#[cfg(not(loom))]
const _: () = {
    let wide = cfg!(target_has_atomic = "64");
    assert!(core::mem::size_of::<Histogram>() == if wide { 26_656 } else { 13_332 });
    assert!(
        core::mem::size_of::<Histogram<{ buckets_for(1_000_000) }>>()
            == if wide { 14_280 } else { 7_144 }
    );
};

#[cfg(all(test, not(loom)))]
mod tests;
