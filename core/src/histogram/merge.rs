//! Merging: another histogram of the same size, or a bucket list (from
//! [`Histogram::buckets`], possibly shipped over the network) validated
//! before anything is applied.

use core::fmt;

use super::buckets::{Bucket, Totals};
use super::cell::CAPACITY;
use super::layout::{bounds, bucket_at, midpoint};
use super::Histogram;

/// A bucket list [`Histogram::merge_buckets`] refused. Nothing was applied,
/// except after [`Changed`](Self::Changed).
///
/// ```
/// use fusebox::histogram::{Bucket, Histogram, MergeError};
///
/// let h: Histogram = Histogram::new();
/// let foreign = [Bucket { low: 1_000, high: 1_009, count: 1 }];
/// assert_eq!(
///     h.merge_buckets(foreign),
///     Err(MergeError::NotABucket { low: 1_000, high: 1_009 })
/// );
/// assert_eq!(h.count(), 0);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum MergeError {
    /// `low..=high` is not one of this histogram's buckets (nor its clamped
    /// bucket `MAX_VALUE + 1 ..= u64::MAX`): a list from a histogram of
    /// another `BUCKETS` or layout, or corrupt data.
    NotABucket {
        /// The bucket's `low`.
        low: u64,
        /// The bucket's `high`.
        high: u64,
    },
    /// The buckets are not in strictly increasing order (or one repeats).
    OutOfOrder {
        /// The `low` of the first bucket out of order.
        low: u64,
    },
    /// A count above [`BUCKET_CAPACITY`](super::BUCKET_CAPACITY), more
    /// than one bucket can hold.
    CountTooLarge {
        /// The bucket's `low`.
        low: u64,
        /// Its count.
        count: u64,
    },
    /// The [`Totals`] contradict the buckets: `min > max`, `min` above the
    /// lowest non-empty bucket, `max` below the highest, or totals for an
    /// empty list.
    BadTotals,
    /// The list's iterator yielded a different, invalid list the second
    /// time (a `Clone` that does not replay): the buckets before it were
    /// applied, with their sum and extremes estimated as
    /// [`Histogram::merge_buckets`] estimates them (so `min` and `max`
    /// cover every bucket counted).
    Changed,
}

impl fmt::Display for MergeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NotABucket { low, high } => {
                write!(f, "{low}..={high} is not a bucket of this histogram")
            }
            Self::OutOfOrder { low } => write!(f, "bucket at {low} is out of order"),
            Self::CountTooLarge { low, count } => {
                write!(
                    f,
                    "bucket at {low}: count {count} exceeds the bucket capacity"
                )
            }
            Self::BadTotals => f.write_str("totals contradict the buckets"),
            Self::Changed => f.write_str("bucket list changed between validation and merge"),
        }
    }
}

impl core::error::Error for MergeError {}

/// What the writing pass counted: the sum the counts added through the
/// buckets' lowest values and the sum of the listed values estimated at
/// [`Histogram::estimate`], both modulo 2⁶⁴, and the slots of the lowest
/// and the highest non-empty bucket counted.
struct Applied {
    added: u64,
    estimate: u64,
    first: Option<usize>,
    last: usize,
}

/// What the validation pass learns about a list.
struct Checked {
    /// Slots of the lowest and the highest non-empty bucket.
    first: Option<usize>,
    last: usize,
}

impl<const BUCKETS: usize> Histogram<BUCKETS> {
    /// Adds everything `other` recorded to `self` (bucket by bucket, so
    /// percentiles of the merge are as accurate as of one histogram; sum,
    /// minimum and maximum exact). Counts saturate at
    /// [`BUCKET_CAPACITY`](super::BUCKET_CAPACITY). Not atomic as a whole:
    /// concurrent readers may see part of it.
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
        let mut offsets = 0u64;
        for (i, (mine, theirs)) in self.cells.iter().zip(&other.cells).enumerate() {
            let (n, off) = theirs.get();
            if n != 0 {
                // Values a saturated count cannot hold still add their
                // bucket's lowest value to the sum.
                let lost = mine.add_count(n);
                if lost != 0 {
                    offsets = offsets.wrapping_add(bounds(i).0.wrapping_mul(lost));
                }
            }
            offsets = offsets.wrapping_add(off);
        }
        self.clamped
            .add_saturating(other.clamped.get(), crate::histogram::BUCKET_CAPACITY);
        self.spill.add(offsets.wrapping_add(other.spill.get()));
        self.extremes.merge(&other.extremes);
    }

    /// Adds a bucket list, such as [`buckets`](Self::buckets) of a
    /// histogram with the same `BUCKETS`, possibly shipped over the
    /// network: the counts exactly (bucket by bucket, so percentiles are
    /// as accurate as of one histogram), the rest estimated:
    ///
    /// * the **sum** counts every merged value as its bucket's midpoint
    ///   (the value a percentile reports, within
    ///   [`RELATIVE_ERROR`](super::RELATIVE_ERROR)), and a clamped one as
    ///   `MAX_VALUE + 1`;
    /// * the **minimum and maximum** take in the midpoints of the lowest
    ///   and the highest merged bucket the same way.
    ///
    /// Ship [`totals`](Self::totals) along and use
    /// [`merge_buckets_with_totals`](Self::merge_buckets_with_totals) to
    /// keep all three exact.
    ///
    /// Every `Histogram<B>` shares one layout and differs only in its
    /// range, so a list from another `B` merges exactly when all its
    /// buckets are buckets of this one: a smaller histogram's without
    /// clamped values, a larger one's with nothing above this `MAX_VALUE`.
    ///
    /// The whole list is validated first (which is why its iterator must
    /// be `Clone`: it is walked twice); nothing is applied unless all of it
    /// is valid. The second walk is the one applied: from a histogram
    /// still recording, it may hold values the first did not see, and the
    /// extremes are estimated from it, so they cover every bucket counted. Empty buckets are allowed and skipped. A count that does
    /// not fit on top of this histogram's saturates the bucket at
    /// [`BUCKET_CAPACITY`](super::BUCKET_CAPACITY) (the sum still takes the
    /// whole count). Not atomic as a whole: concurrent readers may see part
    /// of it.
    ///
    /// # Errors
    ///
    /// [`MergeError`]: a bucket that is not one of this histogram's, out of
    /// increasing order, or with a count above `BUCKET_CAPACITY`.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::histogram::{buckets_for, Bucket, Histogram, MergeError};
    ///
    /// let a: Histogram = Histogram::new();
    /// for v in [7, 1_000, 1_001] {
    ///     a.record(v);
    /// }
    /// let b: Histogram = Histogram::new();
    /// b.merge_buckets(a.buckets())?;
    /// assert_eq!(b.buckets().collect::<Vec<_>>(), a.buckets().collect::<Vec<_>>());
    /// assert_eq!(b.count(), 3);
    /// // 7 is exact; 1 000 and 1 001 count as their bucket's midpoint, 1 002.
    /// assert_eq!(b.sum(), 7 + 2 * 1_002);
    /// assert_eq!((b.min(), b.max()), (Some(7), Some(1_002)));
    ///
    /// // A list from a histogram of another size is refused whole.
    /// let small: Histogram<{ buckets_for(500) }> = Histogram::new();
    /// small.record(3);
    /// small.record(900); // clamped: its last bucket is 502..=u64::MAX
    /// assert_eq!(
    ///     b.merge_buckets(small.buckets()),
    ///     Err(MergeError::NotABucket { low: 502, high: u64::MAX })
    /// );
    /// assert_eq!(b.count(), 3);
    /// # Ok::<(), MergeError>(())
    /// ```
    pub fn merge_buckets<I>(&self, buckets: I) -> Result<(), MergeError>
    where
        I: IntoIterator<Item = Bucket>,
        I::IntoIter: Clone,
    {
        let buckets = buckets.into_iter();
        let checked = Self::validate(buckets.clone())?;
        if checked.first.is_none() {
            return Ok(());
        }
        let (applied, result) = self.apply(buckets);
        self.estimated(&applied);
        result
    }

    /// [`merge_buckets`](Self::merge_buckets) with the source's exact sum,
    /// minimum and maximum ([`totals`](Self::totals)): the merge is then
    /// as exact as [`merge`](Self::merge) — a round trip through
    /// `buckets()` and `totals()` into an empty histogram reproduces every
    /// count, the sum, the extremes and so every percentile.
    ///
    /// The sum is taken as given (modulo 2⁶⁴). The extremes must agree
    /// with the list: `min ≤ max`, `min` no higher than the lowest
    /// non-empty bucket's `high`, `max` no lower than the highest one's
    /// `low` (extremes wider than the list are accepted: they come from
    /// a source still recording whose totals were read after its buckets).
    /// A non-empty bucket the applying walk reads below or above every one
    /// the validating walk saw (a source recording between the two) widens
    /// them to its estimate, as in `merge_buckets`.
    ///
    /// # Errors
    ///
    /// As [`merge_buckets`](Self::merge_buckets), and
    /// [`MergeError::BadTotals`] for totals that contradict the list
    /// (totals with no non-empty bucket included).
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::histogram::{Histogram, MergeError, Totals};
    ///
    /// let a: Histogram = Histogram::new();
    /// for v in [7, 1_000, 1_001] {
    ///     a.record(v);
    /// }
    /// let b: Histogram = Histogram::new();
    /// b.merge_buckets_with_totals(a.buckets(), a.totals().unwrap())?;
    /// assert_eq!((b.count(), b.sum(), b.min(), b.max()), (3, 2_008, Some(7), Some(1_001)));
    /// assert_eq!(b.percentile(50.0), a.percentile(50.0));
    ///
    /// let lie = Totals { sum: 0, min: 2_000, max: 3_000 };
    /// assert_eq!(b.merge_buckets_with_totals(a.buckets(), lie), Err(MergeError::BadTotals));
    /// # Ok::<(), MergeError>(())
    /// ```
    pub fn merge_buckets_with_totals<I>(&self, buckets: I, totals: Totals) -> Result<(), MergeError>
    where
        I: IntoIterator<Item = Bucket>,
        I::IntoIter: Clone,
    {
        let buckets = buckets.into_iter();
        let checked = Self::validate(buckets.clone())?;
        let Some(first) = checked.first else {
            return Err(MergeError::BadTotals);
        };
        let Totals { sum, min, max } = totals;
        if min > max || min > Self::slot_bounds(first).1 || max < Self::slot_bounds(checked.last).0
        {
            return Err(MergeError::BadTotals);
        }
        let (applied, result) = self.apply(buckets);
        if result.is_err() {
            // Part of another list: the totals describe none of it.
            self.estimated(&applied);
            return result;
        }
        self.spill.add(sum.wrapping_sub(applied.added));
        self.extremes.record_range(min, max);
        // A bucket the validating walk did not see (a source recording
        // between the two walks) is outside what the totals checked:
        // covered as `merge_buckets` covers its ends.
        if let Some(low) = applied.first.filter(|&s| s < first) {
            self.extremes
                .record_range(Self::estimate(low), Self::estimate(low));
        }
        if applied.last > checked.last {
            let high = Self::estimate(applied.last);
            self.extremes.record_range(high, high);
        }
        result
    }

    /// What [`merge_buckets`](Self::merge_buckets) adds besides the
    /// counts, for the buckets `apply` counted: their sum and extremes
    /// estimated at [`estimate`](Self::estimate). Taken from the walk that
    /// applied them, not the one that validated the list: the two differ
    /// when the list is read from a histogram still recording (or from an
    /// iterator whose clones do not replay), and extremes that missed a
    /// counted bucket would leave `max` below it (or no `min` and `max` at
    /// all, with values counted: percentiles `None`).
    fn estimated(&self, applied: &Applied) {
        self.spill.add(applied.estimate.wrapping_sub(applied.added));
        if let Some(first) = applied.first {
            self.extremes
                .record_range(Self::estimate(first), Self::estimate(applied.last));
        }
    }

    /// The slot of a listed bucket: its index, or `BUCKETS` for the clamped
    /// bucket; `None` if it is not one of this histogram's.
    fn slot(b: &Bucket) -> Option<usize> {
        if Self::MAX_VALUE < u64::MAX && b.low == Self::CLAMPED_LOW && b.high == u64::MAX {
            return Some(BUCKETS);
        }
        bucket_at(b.low, b.high).filter(|&i| i < BUCKETS)
    }

    /// The bounds of a slot.
    fn slot_bounds(slot: usize) -> (u64, u64) {
        if slot >= BUCKETS {
            (Self::CLAMPED_LOW, u64::MAX)
        } else {
            bounds(slot)
        }
    }

    /// The value a bucket-list merge assumes for each value of a slot.
    fn estimate(slot: usize) -> u64 {
        if slot >= BUCKETS {
            Self::CLAMPED_LOW
        } else {
            midpoint(slot)
        }
    }

    /// The slot of a listed bucket, checked against the previous slot and
    /// the capacity.
    fn check(b: &Bucket, previous: Option<usize>) -> Result<usize, MergeError> {
        let slot = Self::slot(b).ok_or(MergeError::NotABucket {
            low: b.low,
            high: b.high,
        })?;
        if previous.is_some_and(|p| slot <= p) {
            return Err(MergeError::OutOfOrder { low: b.low });
        }
        if b.count > CAPACITY {
            return Err(MergeError::CountTooLarge {
                low: b.low,
                count: b.count,
            });
        }
        Ok(slot)
    }

    /// The validation pass: every bucket checked, nothing written.
    fn validate(buckets: impl Iterator<Item = Bucket>) -> Result<Checked, MergeError> {
        let mut previous = None;
        let mut checked = Checked {
            first: None,
            last: 0,
        };
        for b in buckets {
            let slot = Self::check(&b, previous)?;
            previous = Some(slot);
            if b.count != 0 {
                checked.first.get_or_insert(slot);
                checked.last = slot;
            }
        }
        Ok(checked)
    }

    /// The writing pass (each bucket re-checked, in case the iterator does
    /// not replay): what it counted, and whether the whole list was valid
    /// ([`MergeError::Changed`] if not: the buckets before the invalid one
    /// were counted, and are in the [`Applied`] all the same).
    fn apply(&self, buckets: impl Iterator<Item = Bucket>) -> (Applied, Result<(), MergeError>) {
        let mut applied = Applied {
            added: 0,
            estimate: 0,
            first: None,
            last: 0,
        };
        let mut previous = None;
        for b in buckets {
            let Ok(slot) = Self::check(&b, previous) else {
                return (applied, Err(MergeError::Changed));
            };
            previous = Some(slot);
            if b.count == 0 {
                continue;
            }
            let i = slot.min(BUCKETS - 1);
            let Some(cell) = self.cells.get(i) else {
                return (applied, Err(MergeError::Changed));
            };
            let stored = b.count - cell.add_count(b.count);
            if slot == BUCKETS {
                self.clamped
                    .add_saturating(b.count, crate::histogram::BUCKET_CAPACITY);
            }
            applied.first.get_or_insert(slot);
            applied.last = slot;
            applied.added = applied.added.wrapping_add(stored.wrapping_mul(bounds(i).0));
            applied.estimate = applied
                .estimate
                .wrapping_add(b.count.wrapping_mul(Self::estimate(slot)));
        }
        (applied, Ok(()))
    }
}
