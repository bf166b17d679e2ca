//! Reading: `count`, `sum`, `min`, `max`, `mean`, `percentile`, `clamped`.

use core::fmt;

use super::layout::{bounds, bucket, midpoint};
use super::Histogram;

/// The 1-based rank of the `q`-th percentile of `n` samples (nearest rank):
/// `max(1, ⌈q·n/100⌉)`, computed in `f64` but ignoring a few ulps of
/// rounding noise, so that e.g. `q = 99.9, n = 1000` gives 999, not 1000.
#[allow(
    clippy::cast_precision_loss,
    clippy::cast_sign_loss,
    clippy::cast_possible_truncation
)]
pub(super) fn rank(q: f64, n: u64) -> u64 {
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
#[non_exhaustive]
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

impl<const BUCKETS: usize> Histogram<BUCKETS> {
    /// The number of recorded values (the sum of the bucket counts,
    /// saturating at `u64::MAX`).
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
        self.cells
            .iter()
            .fold(0, |n, cell| n.saturating_add(cell.count()))
    }

    /// The sum of the recorded values, exact modulo 2⁶⁴ (2⁶⁴ µs is
    /// 584 942 years). Derived from the buckets (`O(BUCKETS)`): each
    /// bucket's `count · lowest value + offsets`, plus the spill.
    ///
    /// After [`merge_buckets`](Self::merge_buckets) (no totals) the merged
    /// values count as their buckets' midpoints, so the sum is then an
    /// estimate, within [`RELATIVE_ERROR`](super::RELATIVE_ERROR) of the
    /// merged values' sum.
    ///
    /// Read while values are recorded, it counts each at most once, but
    /// may miss part of one being recorded: a carry of a bucket's offsets
    /// (2²⁰ on 64-bit words) moved to the spill between this read of the
    /// spill, first, and of the bucket, after. So a later read can be
    /// lower than an earlier one while values are recorded; a reader that
    /// needs a counter that never goes back keeps the largest sum it read.
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
        let mut sum = self.spill.get();
        for (i, cell) in self.cells.iter().enumerate() {
            let (n, offsets) = cell.get();
            if n != 0 || offsets != 0 {
                let low = bucket(i).0;
                sum = sum.wrapping_add(n.wrapping_mul(low)).wrapping_add(offsets);
            }
        }
        sum
    }

    /// The smallest recorded value, or `None` if empty.
    ///
    /// Exact where the target has 64-bit atomics; on 32-bit
    /// microcontrollers exact below 2³¹ and otherwise rounded *down* by at
    /// most a relative 2⁻²⁵. After a [`merge_buckets`](Self::merge_buckets)
    /// without totals, possibly the lowest merged bucket's midpoint.
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
    /// most a relative 2⁻²⁵. After a [`merge_buckets`](Self::merge_buckets)
    /// without totals, possibly the highest merged bucket's midpoint.
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
    /// `sum / count` whenever that is exact: the sum cannot have wrapped
    /// (`count · max < 2⁶⁴`), no bucket is full (at
    /// [`BUCKET_CAPACITY`](super::BUCKET_CAPACITY) a count stops, or
    /// wraps, while the sum goes on, so the sum also holds values no count
    /// does), the sum lies between what the counted values sum to at the
    /// least and at the most given their buckets (a count that wrapped is
    /// not full, but its lost values are in the sum), and the quotient
    /// lies in `[min, max]`. Otherwise estimated
    /// from the buckets, each value taken as its bucket's midpoint (within
    /// [`RELATIVE_ERROR`](super::RELATIVE_ERROR)) and clamped values as
    /// `max`. Never outside `[min, max]`.
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
        // The count, whether a bucket is full, and what the counted values
        // sum to at the least and at the most (each value somewhere in its
        // bucket, a clamped one in `CLAMPED_LOW..=max`), exactly.
        let (mut n, mut full) = (0_u64, false);
        let (mut least, mut most) = (0_u128, 0_u128);
        for (i, cell) in self.cells.iter().enumerate() {
            let mut c = cell.count();
            if c == 0 {
                // Most buckets: no 128-bit products (libcalls on Cortex-M).
                continue;
            }
            n = n.saturating_add(c);
            full |= c == super::BUCKET_CAPACITY;
            if i == BUCKETS - 1 {
                let clamped = self.clamped.get().min(c);
                least += u128::from(clamped) * u128::from(Self::CLAMPED_LOW);
                most += u128::from(clamped) * u128::from(max);
                c -= clamped;
            }
            let (low, high) = bounds(i);
            least += u128::from(c) * u128::from(low);
            most += u128::from(c) * u128::from(high);
        }
        if n == 0 {
            return None;
        }
        // A sum outside those bounds holds values no count does: a count
        // that wrapped (a `record` on a full bucket, here or in a merged
        // histogram) is no longer full, yet the sum kept what it dropped.
        let sum = u128::from(self.sum());
        if !full && n.checked_mul(max).is_some() && (least..=most).contains(&sum) {
            let mean = sum as f64 / n as f64;
            if (min as f64..=max as f64).contains(&mean) {
                return Some(mean);
            }
        }
        let mut total = 0.0;
        for (i, cell) in self.cells.iter().enumerate() {
            let mut c = cell.count();
            if i == BUCKETS - 1 {
                let clamped = self.clamped.get().min(c);
                total += clamped as f64 * max as f64;
                c -= clamped;
            }
            total += c as f64 * midpoint(i).max(min).min(max) as f64;
        }
        Some((total / n as f64).clamp(min as f64, max as f64))
    }

    /// The `q`-th percentile, `q` in `0.0..=100.0`; `Ok(None)` if empty.
    ///
    /// Nearest rank: the `k`-th smallest value, `k = max(1, ⌈q·n/100⌉)`
    /// (ignoring a few ulps of `f64` rounding noise), so `percentile(0.0)`
    /// is the minimum, `percentile(50.0)` of 4 values the 2nd and
    /// `percentile(100.0)` the maximum. Rank 1 is reported as `min` and
    /// rank `n` as `max`, exactly. Any other rank is reported as the
    /// midpoint of its value's bucket clamped into `[min, max]` — within
    /// [`RELATIVE_ERROR`](super::RELATIVE_ERROR) of the exact value, exact
    /// below 256 — except that a value above [`MAX_VALUE`](Self::MAX_VALUE)
    /// (a clamped one) is reported as `max`, an upper bound.
    ///
    /// # Errors
    ///
    /// [`PercentileError`] if `q` is NaN or outside `0.0..=100.0`, whether
    /// or not the histogram is empty.
    ///
    /// # Examples
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
        for (i, cell) in self.cells.iter().enumerate() {
            let c = cell.count();
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
    /// and clamped into the top bucket. Saturates, like the top bucket's
    /// count that holds them, at [`BUCKET_CAPACITY`](super::BUCKET_CAPACITY)
    /// (2³² − 1 on Cortex-M, 2⁴⁴ − 1 where the target has 64-bit atomics):
    /// never more than [`count`](Self::count).
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
}
