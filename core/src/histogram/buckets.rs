//! Iterating the non-empty buckets with their bounds, and the totals a
//! bucket list does not carry.

use core::iter::FusedIterator;

use super::layout::bounds;
use super::Histogram;

/// One non-empty bucket: `count` values in `low..=high`, both bounds
/// **inclusive** (so the last bucket can end at `u64::MAX`).
///
/// [`Histogram::buckets`] yields them in increasing order, and
/// [`Histogram::merge_buckets`] takes them back. For a Prometheus
/// histogram, `high` is the bucket's `le` (values are integers, so
/// `v ≤ high` exactly when `v` is in this bucket or a lower one), with the
/// clamped bucket (`high == u64::MAX`) as `le="+Inf"`.
///
/// ```
/// use fusebox::histogram::{Bucket, Histogram};
///
/// let h: Histogram = Histogram::new();
/// h.record(300);
/// h.record(301);
/// assert_eq!(
///     h.buckets().collect::<Vec<_>>(),
///     [Bucket { low: 300, high: 301, count: 2 }]
/// );
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Bucket {
    /// The lowest value in the bucket.
    pub low: u64,
    /// The highest value in the bucket (inclusive).
    pub high: u64,
    /// How many values the bucket holds.
    pub count: u64,
}

/// What a bucket list leaves out: the exact sum and extremes, from
/// [`Histogram::totals`], for
/// [`Histogram::merge_buckets_with_totals`].
///
/// ```
/// use fusebox::histogram::{Histogram, Totals};
///
/// let h: Histogram = Histogram::new();
/// assert_eq!(h.totals(), None);
/// h.record(5);
/// h.record(1_000_003);
/// assert_eq!(h.totals(), Some(Totals { sum: 1_000_008, min: 5, max: 1_000_003 }));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Totals {
    /// [`Histogram::sum`]: the values' sum modulo 2⁶⁴.
    pub sum: u64,
    /// [`Histogram::min`].
    pub min: u64,
    /// [`Histogram::max`].
    pub max: u64,
}

/// The iterator of [`Histogram::buckets`]: the non-empty buckets in
/// increasing order, then the clamped values (if any) as one last bucket
/// `MAX_VALUE + 1 ..= u64::MAX`.
///
/// `Clone` (a clone restarts from where the original stands, re-reading
/// the counts), so it can be passed to [`Histogram::merge_buckets`].
///
/// ```
/// use fusebox::histogram::{Bucket, Histogram};
///
/// let h: Histogram<256> = Histogram::new(); // values 0..=255
/// h.record(7);
/// h.record(1_000); // clamped
/// let mut it = h.buckets();
/// assert_eq!(it.next(), Some(Bucket { low: 7, high: 7, count: 1 }));
/// assert_eq!(it.next(), Some(Bucket { low: 256, high: u64::MAX, count: 1 }));
/// assert_eq!(it.next(), None);
/// ```
#[derive(Clone, Debug)]
pub struct Buckets<'a, const BUCKETS: usize> {
    histogram: &'a Histogram<BUCKETS>,
    /// The next bucket to read; `BUCKETS`: the clamped bucket; above: done.
    next: usize,
    /// The clamped count, read once with the top bucket.
    clamped: u64,
}

impl<const BUCKETS: usize> Iterator for Buckets<'_, BUCKETS> {
    type Item = Bucket;

    fn next(&mut self) -> Option<Bucket> {
        // One slice iterator for the whole walk, not an indexing call per
        // bucket: Miri retags the whole array at each such call, which
        // made a walk of a default histogram quadratic there.
        let cells = self.histogram.cells.get(self.next..).unwrap_or_default();
        for cell in cells {
            let i = self.next;
            self.next += 1;
            let top = i == BUCKETS - 1;
            let mut count = if top {
                cell.count_acquire()
            } else {
                cell.count()
            };
            if top {
                // The clamped values are counted in the top bucket too,
                // and in `clamped` before it: read after it, `clamped`
                // holds every clamped value the count holds.
                self.clamped = self.histogram.clamped.get().min(count);
                count -= self.clamped;
            }
            if count != 0 {
                let (low, high) = bounds(i);
                return Some(Bucket { low, high, count });
            }
        }
        if self.next == BUCKETS {
            self.next += 1;
            if self.clamped != 0 {
                return Some(Bucket {
                    low: Histogram::<BUCKETS>::CLAMPED_LOW,
                    high: u64::MAX,
                    count: self.clamped,
                });
            }
        }
        None
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some((BUCKETS + 1).saturating_sub(self.next)))
    }
}

impl<const BUCKETS: usize> FusedIterator for Buckets<'_, BUCKETS> {}

impl<const BUCKETS: usize> Histogram<BUCKETS> {
    /// The lowest value of the clamped bucket (unused when `MAX_VALUE` is
    /// `u64::MAX`: nothing is clamped then).
    pub(super) const CLAMPED_LOW: u64 = Self::MAX_VALUE.saturating_add(1);

    /// The non-empty buckets with their bounds, in increasing order,
    /// allocation-free; values above [`MAX_VALUE`](Self::MAX_VALUE) come
    /// last as one bucket `MAX_VALUE + 1 ..= u64::MAX`. Their counts add up
    /// to [`count`](Self::count).
    ///
    /// Each count is read once, `Relaxed`: exact once recording has
    /// stopped. Feed the list to [`merge_buckets`](Self::merge_buckets)
    /// (here, or after shipping it elsewhere) to add it to another
    /// histogram of the same `BUCKETS`.
    ///
    /// ```
    /// use fusebox::histogram::{Bucket, Histogram};
    ///
    /// let h: Histogram = Histogram::new();
    /// for v in [3, 3, 1_000, 1_001, 1_007] {
    ///     h.record(v);
    /// }
    /// let buckets: Vec<Bucket> = h.buckets().collect();
    /// assert_eq!(
    ///     buckets,
    ///     [
    ///         Bucket { low: 3, high: 3, count: 2 },
    ///         Bucket { low: 1_000, high: 1_003, count: 2 },
    ///         Bucket { low: 1_004, high: 1_007, count: 1 },
    ///     ]
    /// );
    /// // Prometheus-style cumulative counts:
    /// let le: Vec<(u64, u64)> = buckets
    ///     .iter()
    ///     .scan(0, |n, b| {
    ///         *n += b.count;
    ///         Some((b.high, *n))
    ///     })
    ///     .collect();
    /// assert_eq!(le, [(3, 2), (1_003, 4), (1_007, 5)]);
    /// ```
    pub fn buckets(&self) -> Buckets<'_, BUCKETS> {
        Buckets {
            histogram: self,
            next: 0,
            clamped: 0,
        }
    }

    /// The sum, minimum and maximum, or `None` if empty: what
    /// [`buckets`](Self::buckets) leaves out, to ship alongside it to
    /// [`merge_buckets_with_totals`](Self::merge_buckets_with_totals).
    /// From a histogram still recording, read the buckets first and the
    /// totals second (the extremes then cover every value in the list).
    ///
    /// ```
    /// use fusebox::histogram::{Histogram, Totals};
    ///
    /// let h: Histogram = Histogram::new();
    /// h.record(10);
    /// h.record(20);
    /// assert_eq!(h.totals(), Some(Totals { sum: 30, min: 10, max: 20 }));
    /// ```
    pub fn totals(&self) -> Option<Totals> {
        let (min, max) = self.extremes.get()?;
        Some(Totals {
            sum: self.sum(),
            min,
            max,
        })
    }
}
