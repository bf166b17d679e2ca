//! The clamped-values counter past its word's range. On Cortex-M (and on a
//! host built with `--cfg fusebox_narrow_words`) it is a 32-bit word, like
//! the buckets' counts, whose documented limit is
//! [`BUCKET_CAPACITY`] = 2³² − 1: "Merges and `record_n` saturate there".
//! The top bucket's count saturated, but the clamped counter wrapped, so
//! the values above `MAX_VALUE` were then listed, and reported, as the
//! top bucket's own: one `record_n(1_000, 1 << 32)` into a
//! `Histogram<256>` (values 0..=255) made `clamped()` 0, `buckets()` list
//! 4 294 967 295 values in 255..=255 and `percentile(50.0)` 255, below
//! every value recorded there, where a clamped value is "reported as
//! `max`". The counter now saturates where the top bucket's count does
//! (at [`BUCKET_CAPACITY`] on both layouts), on every path that adds to
//! it: `record`, `record_n`, `merge` and `merge_buckets`.

use fusebox::histogram::{Bucket, Histogram, BUCKET_CAPACITY};

/// What the clamped counter holds after `n` clamped values: at most the
/// capacity, as the top bucket's count that holds them, on both layouts
/// (2^32 - 1 narrow, 2^44 - 1 wide).
fn clamped(n: u64) -> u64 {
    n.min(BUCKET_CAPACITY)
}

/// The clamped values are listed last, as the clamped bucket, and the
/// top bucket lists none of them; percentiles of their ranks are `max`.
fn clamped_listed_as_such(h: &Histogram<256>, n: u64) {
    let listed: Vec<Bucket> = h.buckets().collect();
    assert_eq!(h.clamped(), clamped(n));
    assert_eq!(
        listed.last(),
        Some(&Bucket {
            low: 256,
            high: u64::MAX,
            count: clamped(n).min(BUCKET_CAPACITY),
        })
    );
    assert!(listed.iter().all(|b| b.high != 255), "{listed:?}");
    assert_eq!(h.percentile(50.0), Ok(h.max()));
    assert_eq!(h.percentile(99.0), Ok(h.max()));
}

#[test]
fn record_n_past_the_word_saturates_the_clamped_count() {
    let h: Histogram<256> = Histogram::new();
    h.record(3);
    h.record_n(1_000, 1 << 32);
    clamped_listed_as_such(&h, 1 << 32);
    h.record(1_000);
    h.record_n(2_000, 5);
    clamped_listed_as_such(&h, (1 << 32) + 6);
}

#[test]
fn record_on_a_saturated_top_bucket_saturates_the_clamped_count() {
    let h: Histogram<256> = Histogram::new();
    h.record(3);
    h.record_n(1_000, BUCKET_CAPACITY);
    clamped_listed_as_such(&h, BUCKET_CAPACITY);
    h.record(1_000); // the 2^32nd on the narrow layout
    clamped_listed_as_such(&h, BUCKET_CAPACITY + 1);
}

#[test]
fn merges_saturate_the_clamped_count() {
    let a: Histogram<256> = Histogram::new();
    a.record(3);
    a.record_n(1_000, BUCKET_CAPACITY);
    let b: Histogram<256> = Histogram::new();
    b.merge(&a);
    b.merge(&a);
    clamped_listed_as_such(&b, 2 * BUCKET_CAPACITY);

    let c: Histogram<256> = Histogram::new();
    c.merge_buckets(a.buckets()).unwrap();
    c.merge_buckets(a.buckets()).unwrap();
    clamped_listed_as_such(&c, 2 * BUCKET_CAPACITY);
}

/// With 64-bit atomics the top bucket's count saturates at
/// [`BUCKET_CAPACITY`] = 2^44 - 1 while the clamped counter went on to
/// `u64::MAX`: one `record_n` of 2^44 clamped values made `clamped()`
/// 2^44, more than `count()` (2^44 - 1 + 1) held in the top bucket, and
/// `count() - clamped()` (the values in range) underflow; merges carried
/// the excess on (found by a second hostile review). Both layouts now
/// saturate it at the capacity.
#[test]
fn the_clamped_count_never_exceeds_the_top_bucket_count() {
    let h: Histogram<256> = Histogram::new();
    h.record(3);
    h.record_n(1_000, BUCKET_CAPACITY + 1);
    assert_eq!(
        (h.count(), h.clamped()),
        (BUCKET_CAPACITY + 1, BUCKET_CAPACITY)
    );
    h.record(2_000);
    assert_eq!(h.clamped(), BUCKET_CAPACITY);
    let merged: Histogram<256> = Histogram::new();
    merged.merge(&h);
    merged.merge(&h);
    assert_eq!(merged.clamped(), BUCKET_CAPACITY);
    let listed: Histogram<256> = Histogram::new();
    listed.merge_buckets(h.buckets()).unwrap();
    listed.merge_buckets(h.buckets()).unwrap();
    assert_eq!(listed.clamped(), BUCKET_CAPACITY);
    for x in [&h, &merged, &listed] {
        assert!(x.clamped() < x.count(), "{x:?}");
    }
}
