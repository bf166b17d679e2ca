//! A histogram bucket past its capacity: the sum stays exact (modulo 2⁶⁴)
//! and the mean stays in `[min, max]`, whether the count saturated
//! (`record_n`, `merge`) or wrapped (`record`). Found by re-expressing
//! HdrHistogram's saturating- and overflowing-count tests against the
//! documented contract: each test failed before the fix (the mean read
//! 5.4e-7 for values all 2²⁰; the sum read 1 for values all 5 after a
//! wrap; the mean 6.5e15 for values all 70 000).

// Each test walks every bucket many times: native runs only (under Miri
// it took about a minute; the unit tests take the same paths there).
#![cfg(not(miri))]
// Means are compared in f64 on purpose: values all equal have an exact mean.
#![allow(clippy::cast_precision_loss, clippy::float_cmp)]

use fusebox::histogram::{Histogram, BUCKET_CAPACITY};

/// hdrhistogram `total_count_exceeds_bucket_type`, via `record_n`.
///
/// `Histogram::mean`: "Past a bucket's `BUCKET_CAPACITY` the count stops
/// while the sum stays exact, so the mean then reads high." And `record_n`:
/// "the sum adds `value · n` modulo 2⁶⁴". With `value ≥ 2²⁰` and
/// `n > BUCKET_CAPACITY` the sum wraps while `count · max < 2⁶⁴`, so the
/// mean takes `sum / count` and reads *low*, far below `min`: 5.4e-7 for
/// values that are all 1 048 576.
#[test]
fn mean_after_record_n_past_capacity_stays_in_range() {
    let v = 1u64 << 20;
    let h: Histogram = Histogram::new();
    h.record_n(v, BUCKET_CAPACITY + 10);
    assert_eq!((h.min(), h.max()), (Some(v), Some(v)));
    assert_eq!(
        h.sum(),
        v.wrapping_mul(BUCKET_CAPACITY + 10),
        "the sum is as documented"
    );
    assert_eq!(h.mean(), Some(v as f64), "values all {v}");
}

/// The same through `merge` ("Counts saturate at `BUCKET_CAPACITY`";
/// "sum, minimum and maximum exact"): the merged mean of values that are
/// all 2²⁰ reads 64.
#[test]
fn mean_after_a_saturating_merge_stays_in_range() {
    let v = 1u64 << 20;
    let a: Histogram = Histogram::new();
    let b: Histogram = Histogram::new();
    a.record_n(v, BUCKET_CAPACITY);
    b.record_n(v, 1 << 30);
    a.merge(&b);
    assert_eq!(a.mean(), Some(v as f64), "merged values all {v}");
}

/// `record` on a full bucket. `record` documents "A bucket that already
/// counts `BUCKET_CAPACITY` values wraps to 0" (the count), but the crate
/// and module docs promise "Counts and `sum` are exact (the sum modulo
/// 2⁶⁴)" and the crate's table "exact modulo 2⁶⁴" for the sum. After the
/// wrap `sum()` reads 1 (for 5, 255, 300, 2³⁰) or an unrelated number
/// (6 473 924 464 345 089 for 70 000) instead of `v · (CAPACITY + 1)`
/// mod 2⁶⁴; one more `record` then gives a mean far outside `[min, max]`
/// (6.5e15 for values all 70 000).
#[test]
fn sum_stays_exact_when_record_wraps_a_full_bucket() {
    // 2³⁰ + 2²¹ + 3 sits 2²¹ + 3 above its bucket's lowest value: an
    // offset too wide for the bucket word, recorded through the spill.
    for v in [5u64, 255, 300, 70_000, 1 << 30, (1 << 30) + (1 << 21) + 3] {
        let h: Histogram = Histogram::new();
        h.record_n(v, BUCKET_CAPACITY);
        assert_eq!(
            h.sum(),
            v.wrapping_mul(BUCKET_CAPACITY),
            "v {v} before the wrap"
        );
        h.record(v);
        assert_eq!(h.count(), 0, "v {v}: the count wraps to 0, as documented");
        assert_eq!(
            h.sum(),
            v.wrapping_mul(BUCKET_CAPACITY + 1),
            "v {v}: sum after the wrap"
        );
    }
}

/// Consequence of the above on the mean: values all `v`, mean outside
/// `[min, max]` after the wrap and one more record.
#[test]
fn mean_stays_in_range_after_a_wrap() {
    let v = 70_000u64;
    let h: Histogram = Histogram::new();
    h.record_n(v, BUCKET_CAPACITY);
    h.record(v);
    h.record(v);
    let mean = h.mean().unwrap();
    assert!(
        mean <= h.max().unwrap() as f64 && mean >= h.min().unwrap() as f64,
        "mean {mean}"
    );
}

/// The wrapping record carries the bucket word's offsets out too (their
/// field at 2¹⁹ + 1 plus 2¹⁹ + 1 plus the count's carry): the sum stays
/// exact, over several wraps, with single records between them.
#[test]
fn sum_stays_exact_when_the_wrap_also_carries_the_offsets_out() {
    // 2²⁸ is a bucket's lowest value; its buckets are 2²¹ wide.
    let v = (1u64 << 28) + (1 << 19) + 1;
    let h: Histogram = Histogram::new();
    let mut n: u64 = 0;
    for _ in 0..3 {
        h.record(v);
        h.record_n(v, BUCKET_CAPACITY - 1);
        h.record(v); // wraps the count
        h.record(v);
        n += BUCKET_CAPACITY + 2;
        assert_eq!(h.sum(), v.wrapping_mul(n), "after {n} values");
        assert_eq!(h.mean(), Some(v as f64));
    }
}
