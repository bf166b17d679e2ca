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
//! [`Histogram::buckets`] lists the non-empty buckets with their bounds
//! (for a Prometheus `_bucket{le}` series, or to ship a histogram over the
//! network) and [`Histogram::merge_buckets`] adds such a list back,
//! refusing one of another layout.
//!
//! # Recording: one read-modify-write
//!
//! Each bucket is one statistics word holding the bucket's count *and* the
//! sum of its values' offsets above the bucket's lowest value, so
//! [`record`](Histogram::record) is one `fetch_add` plus two loads of the
//! extremes; `count` and `sum` are derived from the buckets when read
//! (`O(BUCKETS)`). A rarer second RMW moves overflowing offsets to a spill
//! sum, and a new minimum or maximum costs a `fetch_max`:
//!
//! | value recorded | RMWs, 64-bit atomics | RMWs, Cortex-M |
//! |---|---|---|
//! | below 256 | 1 | 1 |
//! | 256 ..= 2¹⁹ − 1 | 1, + 1 per ≥ 512 values into one bucket | 2 |
//! | 2¹⁹ ..= 2²⁸ − 1 | 1, + 1 per ≥ 256 (at 2¹⁹) down to ≥ 1 (near 2²⁸) values into one bucket | 2 |
//! | 2²⁸ ..= `MAX_VALUE` | 2 (1 if the offset in its bucket is below 2²⁰) | 2 |
//! | above `MAX_VALUE` (clamped) | 3 | 3 |
//!
//! The price is the bucket's capacity: [`BUCKET_CAPACITY`] = 2⁴⁴ − 1 values
//! (2³² − 1 on Cortex-M, as before). See `histogram/cell.rs` for the word.
//!
//! # Accuracy
//!
//! Counts are exact up to [`BUCKET_CAPACITY`] values a bucket, `sum` is
//! exact modulo 2⁶⁴ (past a bucket's capacity too), and so are `min` and
//! `max` on targets with 64-bit atomics (see [`Histogram::min`] for 32-bit
//! microcontrollers). A percentile (nearest rank, see
//! [`Histogram::percentile`]) is the midpoint of the bucket holding the
//! sample of that rank, clamped into `[min, max]`: it differs from the
//! exact sample by at most [`RELATIVE_ERROR`] = 2⁻⁸ = 1/256 ≈ 0.39 % of it
//! (half a bucket width over the bucket's lowest value, `w/2 ÷ 128w`), and
//! values below 256 are exact.
//!
//! # Size
//!
//! One statistics word per bucket, a clamped-values counter, the two-word
//! spill sum and the two extremes: `8·B + 40` bytes on x86-64 (the default:
//! 26 664) and `4·B + 20` bytes on Cortex-M (the default: 13 332;
//! `Histogram<{ buckets_for(1_000_000) }>`, one second in microseconds:
//! 7 144). Both are checked at compile time. The all-zero bytes are an
//! empty histogram, so a large one can be built in place
//! ([`Histogram::new_in_place`]) or on the heap (`Histogram::new_boxed`,
//! feature `alloc`) without a stack temporary.
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
//! assert_eq!(LATENCY.sum(), 3_380);
//! assert_eq!(LATENCY.percentile(50.0), Ok(Some(180)));
//! assert_eq!(LATENCY.percentile(100.0), Ok(Some(2_000)));
//! assert_eq!(LATENCY.max(), Some(2_000));
//! ```

use core::fmt;

use crate::sync::{const_fn_unless_loom, Counter};

mod buckets;
mod cell;
mod extremes;
#[cfg(not(loom))]
mod in_place;
mod layout;
mod merge;
mod read;
mod record;
mod sum;

pub use buckets::{Bucket, Buckets, Totals};
pub use cell::CAPACITY as BUCKET_CAPACITY;
pub use layout::{buckets_for, DEFAULT_BUCKETS, MAX_BUCKETS, RELATIVE_ERROR, SUB_BITS};
pub use merge::MergeError;
pub use read::PercentileError;

use cell::Cell;
use extremes::Extremes;
use sum::Sum;

/// A log-linear histogram of `u64` values in `BUCKETS` atomic words.
///
/// Every method takes `&self` and is lock-free (on Cortex-M0, interrupt-safe
/// critical sections): share it between threads and interrupt handlers, or
/// put it in a `static` ([`new`](Self::new) is `const`). Recording is one
/// read-modify-write of the value's bucket and two loads of the extremes
/// (see the [module docs](self) for the rare extra RMWs). Reads walk the
/// buckets (`O(BUCKETS)`) with `Relaxed` loads: exact once recording has
/// stopped, not one atomic snapshot while it goes on.
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
    // Invariant: all-zero bytes are an empty histogram. Every field is,
    // recursively, an atomic integer from `crate::sync` (portable-atomic's
    // have their integer's in-memory representation) whose zero is its
    // empty state. `new` builds exactly that; `new_in_place` and
    // `new_boxed` (in_place.rs) write zeros and rely on it.
    /// Per bucket: its count and its values' offsets (`cell.rs`).
    cells: [Cell; BUCKETS],
    /// Values above `MAX_VALUE`, all counted in the top bucket.
    clamped: Counter,
    /// The part of the sum the cells do not hold (`sum.rs`).
    spill: Sum,
    extremes: Extremes,
}

#[cfg(not(loom))]
const fn empty_cells<const B: usize>() -> [Cell; B] {
    [const { Cell::new() }; B]
}

#[cfg(loom)]
fn empty_cells<const B: usize>() -> [Cell; B] {
    core::array::from_fn(|_| Cell::new())
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
    pub const MAX_VALUE: u64 = layout::bounds(BUCKETS - 1).1;

    /// Fails to compile unless `BUCKETS` is in `1..=MAX_BUCKETS`.
    const fn check_buckets() {
        const {
            assert!(
                BUCKETS >= 1 && BUCKETS <= MAX_BUCKETS,
                "Histogram<BUCKETS>: BUCKETS must be in 1..=MAX_BUCKETS"
            );
        }
    }

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
            Self::check_buckets();
            Self {
                cells: empty_cells(),
                clamped: Counter::new(),
                spill: Sum::new(),
                extremes: Extremes::new(),
            }
        }
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
    let wide = cfg!(fusebox_wide_words);
    assert!(core::mem::size_of::<Histogram>() == if wide { 26_664 } else { 13_332 });
    assert!(
        core::mem::size_of::<Histogram<{ buckets_for(1_000_000) }>>()
            == if wide { 14_288 } else { 7_144 }
    );
};

#[cfg(all(test, not(loom)))]
mod tests;
