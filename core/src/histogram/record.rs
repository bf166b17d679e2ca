//! Writing: `record`, `record_n`, `reset`.

use super::layout::{bucket, locate};
use super::Histogram;

impl<const BUCKETS: usize> Histogram<BUCKETS> {
    /// Records one `value`.
    ///
    /// One `fetch_add` on the value's bucket and two loads of the extremes
    /// (their `fetch_max` only on a new minimum or maximum); see the
    /// [module docs](super) for the rarer extra RMWs. Never panics, never
    /// allocates. A bucket that already counts
    /// [`BUCKET_CAPACITY`](super::BUCKET_CAPACITY) values wraps its count
    /// to 0; the sum stays exact (modulo 2⁶⁴).
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
        self.extremes.record(value);
        let (i, off) = locate(value);
        match self.cells.get(i) {
            Some(cell) => {
                let spill = cell.record(off, value - off);
                if spill != 0 {
                    self.spill.add(spill);
                }
            }
            None => self.record_clamped(value, 1),
        }
    }

    /// Records `value` `n` times (`n = 0` changes nothing). The bucket's
    /// count saturates at [`BUCKET_CAPACITY`](super::BUCKET_CAPACITY) (a
    /// compare-and-swap loop, unlike [`record`](Self::record)); the sum adds
    /// `value · n` modulo 2⁶⁴.
    ///
    /// ```
    /// use fusebox::histogram::Histogram;
    ///
    /// let h: Histogram = Histogram::new();
    /// h.record_n(10, 3);
    /// h.record_n(99, 0);
    /// assert_eq!((h.count(), h.sum(), h.max()), (3, 30, Some(10)));
    /// ```
    pub fn record_n(&self, value: u64, n: u64) {
        match n {
            0 => return,
            1 => return self.record(value),
            _ => {}
        }
        self.extremes.record(value);
        let (i, off) = locate(value);
        match self.cells.get(i) {
            Some(cell) => {
                // Values the saturated count cannot hold still add their
                // bucket's lowest value (`value - off`) to the sum.
                let lost = cell.add_count(n);
                let low = value - off;
                self.spill
                    .add(off.wrapping_mul(n).wrapping_add(low.wrapping_mul(lost)));
            }
            None => self.record_clamped(value, n),
        }
    }

    /// A value above `MAX_VALUE`: counted in the top bucket and in
    /// `clamped`, its whole offset above the top bucket spilled.
    #[cold]
    #[inline(never)]
    fn record_clamped(&self, value: u64, n: u64) {
        let top = BUCKETS - 1;
        let low = bucket(top).0;
        // Values the saturated top bucket cannot count still add their
        // whole value (its lowest plus the offset) to the sum.
        // `clamped` first, the top bucket's count after (with Release): a
        // reader of the top count (with Acquire), then of `clamped`, never
        // finds a clamped value in the first but not in the second, which
        // would list it in the top bucket (found by a review: a scrape
        // racing a run past the range counted it at the bound of 60 s,
        // and the next scrape went back).
        // Saturating, as the top bucket's count does: on Cortex-M both are
        // 32 bits, and a wrapped `clamped` listed the clamped values as
        // the top bucket's own (found by a review: one `record_n` of 2^32
        // values above the range made `percentile(50.0)` the range's end).
        self.clamped
            .add_saturating(n, crate::histogram::BUCKET_CAPACITY);
        let lost = self.cells.get(top).map_or(0, |cell| cell.add_count(n));
        self.spill.add(
            value
                .wrapping_sub(low)
                .wrapping_mul(n)
                .wrapping_add(low.wrapping_mul(lost)),
        );
    }

    /// Empties the histogram. Not atomic as a whole: a value recorded
    /// concurrently may be kept in part (e.g. in `max` but not `count`).
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
        for cell in &self.cells {
            cell.reset();
        }
        self.clamped.set(0);
        self.spill.reset();
        self.extremes.reset();
    }
}
