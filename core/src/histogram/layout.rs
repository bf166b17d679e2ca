//! The bucket layout: which bucket a value falls in, and each bucket's
//! bounds. Pure arithmetic, shared by every histogram size.

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
/// `B` a [`Histogram<B>`](super::Histogram) accepts.
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

/// The number of buckets a [`Histogram`](super::Histogram) needs to track
/// values up to `max_value` without clamping (its `MAX_VALUE` may be a
/// little larger: the top bucket's end).
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
pub(super) const fn index_of(v: u64) -> usize {
    locate(v).0
}

/// The bucket of `v` and `v`'s offset above the bucket's lowest value
/// (below the bucket's width, `2^(h − 7)` for `v` in `[2ʰ, 2ʰ⁺¹)`, and 0
/// below 256).
#[inline]
pub(super) const fn locate(v: u64) -> (usize, u64) {
    let top = (v | 1).ilog2();
    let shift = top.saturating_sub(SUB_BITS);
    let mantissa = v >> shift;
    let index = ((shift as u64) << SUB_BITS) + mantissa;
    (index as usize, v - (mantissa << shift))
}

/// The lowest value of bucket `i` and the bucket's width.
#[inline]
pub(super) const fn bucket(i: usize) -> (u64, u64) {
    let i = i as u64;
    let shift = (i >> SUB_BITS).saturating_sub(1);
    let mantissa = i - (shift << SUB_BITS);
    (mantissa << shift, 1 << shift)
}

/// The lowest and the highest value of bucket `i`.
#[inline]
pub(super) const fn bounds(i: usize) -> (u64, u64) {
    let (low, width) = bucket(i);
    (low, low + (width - 1))
}

/// The value a percentile landing in bucket `i` reports: its midpoint.
#[inline]
pub(super) const fn midpoint(i: usize) -> u64 {
    let (low, width) = bucket(i);
    low + width / 2
}

/// The bucket whose bounds are exactly `low..=high`, if any.
pub(super) const fn bucket_at(low: u64, high: u64) -> Option<usize> {
    let i = index_of(low);
    let (l, h) = bounds(i);
    if l == low && h == high {
        Some(i)
    } else {
        None
    }
}
