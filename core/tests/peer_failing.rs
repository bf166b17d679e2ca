//! FAILING scenarios found by re-expressing peer suites (HdrHistogram's
//! saturating/overflowing-count tests) against fusebox's documented
//! contract. Kept apart from the passing `peer_*` files, not `#[ignore]`d:
//! each test fails on the product code at the commit it was written
//! against, and each names the documented sentence it contradicts.

// Means are compared in f64 on purpose.
#![allow(clippy::cast_precision_loss)]

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
fn failing_mean_after_record_n_past_capacity_reads_below_min() {
    let v = 1u64 << 20;
    let h: Histogram = Histogram::new();
    h.record_n(v, BUCKET_CAPACITY + 10);
    assert_eq!((h.min(), h.max()), (Some(v), Some(v)));
    assert_eq!(
        h.sum(),
        v.wrapping_mul(BUCKET_CAPACITY + 10),
        "the sum is as documented"
    );
    let mean = h.mean().unwrap();
    assert!(
        mean >= v as f64,
        "mean {mean} of values all {v}: documented to read high"
    );
}

/// The same through `merge` ("Counts saturate at `BUCKET_CAPACITY`";
/// "sum, minimum and maximum exact"): the merged mean of values that are
/// all 2²⁰ reads 64.
#[test]
fn failing_mean_after_saturating_merge_reads_below_min() {
    let v = 1u64 << 20;
    let a: Histogram = Histogram::new();
    let b: Histogram = Histogram::new();
    a.record_n(v, BUCKET_CAPACITY);
    b.record_n(v, 1 << 30);
    a.merge(&b);
    let mean = a.mean().unwrap();
    assert!(mean >= v as f64, "merged mean {mean} of values all {v}");
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
fn failing_sum_after_record_wraps_a_full_bucket() {
    for v in [5u64, 255, 300, 70_000, 1 << 30] {
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
fn failing_mean_outside_min_max_after_wrap() {
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
