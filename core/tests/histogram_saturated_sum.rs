//! `Histogram::record_n` at the bucket capacity, from its contract
//! ("The bucket's count saturates at `BUCKET_CAPACITY` (...); the sum adds
//! `value · n` modulo 2⁶⁴") and `Histogram::sum` ("exact modulo 2⁶⁴").

use fusebox::histogram::{Histogram, BUCKET_CAPACITY};

/// The sum the contract promises after recording `(value, n)` pairs.
fn expected_sum(records: &[(u64, u64)]) -> u64 {
    records
        .iter()
        .fold(0u64, |s, &(v, n)| s.wrapping_add(v.wrapping_mul(n)))
}

#[test]
fn record_n_past_the_bucket_capacity_still_adds_value_times_n_to_the_sum() {
    for &(value, n) in &[
        (1_000u64, BUCKET_CAPACITY + 1),
        (1_000, 1 << 45),
        (7, u64::MAX),
        (300, BUCKET_CAPACITY * 3),
        (1 << 30, BUCKET_CAPACITY + 5), // a wide offset's bucket
    ] {
        let h: Histogram = Histogram::new();
        h.record_n(value, n);
        assert_eq!(
            h.count(),
            BUCKET_CAPACITY,
            "({value}, {n}): the count saturates"
        );
        assert_eq!(
            h.sum(),
            expected_sum(&[(value, n)]),
            "({value}, {n}): the sum must add value·n modulo 2^64"
        );
    }
}

#[test]
fn record_n_into_a_saturated_bucket_still_adds_to_the_sum() {
    let h: Histogram = Histogram::new();
    h.record_n(500, BUCKET_CAPACITY);
    h.record_n(500, 10);
    h.record(500); // wraps the bucket (documented); not used below
    let h2: Histogram = Histogram::new();
    h2.record_n(500, BUCKET_CAPACITY);
    h2.record_n(500, 10);
    assert_eq!(h2.sum(), expected_sum(&[(500, BUCKET_CAPACITY), (500, 10)]));
}

#[test]
fn clamped_record_n_past_the_capacity_still_adds_value_times_n_to_the_sum() {
    let h: Histogram<256> = Histogram::new(); // MAX_VALUE = 255
    let value = 10_000u64;
    h.record_n(value, BUCKET_CAPACITY + 7);
    assert_eq!(
        h.sum(),
        expected_sum(&[(value, BUCKET_CAPACITY + 7)]),
        "a clamped value's sum must add value·n modulo 2^64"
    );
}

#[test]
fn merge_into_a_saturating_bucket_keeps_the_sum_exact() {
    // `Histogram::merge`: "sum, minimum and maximum exact. Counts saturate
    // at BUCKET_CAPACITY."
    let a: Histogram = Histogram::new();
    let b: Histogram = Histogram::new();
    a.record_n(1_000, BUCKET_CAPACITY - 3);
    b.record_n(1_000, 10);
    b.record(77);
    let expected = expected_sum(&[(1_000, BUCKET_CAPACITY - 3), (1_000, 10), (77, 1)]);
    a.merge(&b);
    assert_eq!(
        a.count(),
        BUCKET_CAPACITY + 1,
        "the 1 000s saturate, the 77 counts"
    );
    assert_eq!(a.sum(), expected, "the merged sum must stay exact");
}
