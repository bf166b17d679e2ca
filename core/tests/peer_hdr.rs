//! Histogram scenarios from HdrHistogram's test suites (`hdrhistogram`
//! crate `tests/data_access.rs`, `quantile.rs`, `value_calculation.rs`:
//! quantile 0 and 1, the highest trackable value, saturating counts, sums
//! near overflow), re-expressed against fusebox's `Histogram` from its
//! documented contract: nearest-rank percentiles "within RELATIVE_ERROR of
//! the exact value, exact below 256", rank 1 and rank n exact, "`sum` is
//! exact modulo 2⁶⁴ (past a bucket's capacity too)", `record_n` saturating at
//! `BUCKET_CAPACITY` while "the sum adds `value · n` modulo 2⁶⁴".

// Long histories of the public, safe API: native runs only (Miri runs
// the unit tests and the shorter integration tests, which take the same
// unsafe paths).
#![cfg(not(miri))]
// Quantiles and error bounds are compared in f64 on purpose.
#![allow(clippy::cast_precision_loss, clippy::cast_sign_loss)]

use fusebox::histogram::{Histogram, BUCKET_CAPACITY, MAX_BUCKETS, RELATIVE_ERROR};

fn nearest_rank(sorted: &[u64], q: f64) -> u64 {
    let n = sorted.len() as f64;
    let k = ((q * n / 100.0) - 1e-9).ceil().max(1.0) as usize;
    sorted[k.min(sorted.len()) - 1]
}

/// Whether this build keeps the statistics in 32-bit words (Cortex-M, or a
/// host built with `--cfg fusebox_narrow_words`).
const NARROW: bool = !cfg!(target_has_atomic = "64") || cfg!(fusebox_narrow_words);

#[derive(Clone, Copy)]
enum Round {
    Down,
    Up,
}

/// `Histogram::min` and `max`: exact with 64-bit words, and below 2³¹ with
/// 32-bit ones; above it rounded outward (`Down` for the minimum, `Up` for
/// the maximum) by at most a relative 2⁻²⁵.
fn extreme_is(got: Option<u64>, v: u64, round: Round) -> bool {
    let Some(got) = got else { return false };
    if !NARROW || v < 1 << 31 {
        return got == v;
    }
    match round {
        Round::Down => got <= v && v - got <= v >> 25,
        Round::Up => got >= v && got - v <= v >> 25,
    }
}

fn within(got: u64, exact: u64) -> bool {
    if exact < 256 {
        return got == exact;
    }
    (got.abs_diff(exact) as f64) <= exact as f64 * RELATIVE_ERROR
}

/// hdrhistogram `value_at_quantile` over data spanning every magnitude of
/// `u64` (a histogram of all `MAX_BUCKETS`, tracking the whole range), for
/// many quantiles, against the exact nearest-rank value.
#[test]
fn hdr_quantiles_across_all_magnitudes() {
    let h: Box<Histogram<MAX_BUCKETS>> = Box::new(Histogram::new());
    let mut data = Vec::new();
    let mut s: u64 = 3;
    for i in 0..20_000u64 {
        s = s
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let shift = i % 64;
        let v = (s >> shift) | (i & 1);
        data.push(v);
        h.record(v);
    }
    for v in [
        0,
        1,
        255,
        256,
        257,
        u64::MAX,
        u64::MAX - 1,
        1 << 63,
        (1 << 63) - 1,
    ] {
        data.push(v);
        h.record(v);
    }
    data.sort_unstable();
    assert_eq!(h.count(), data.len() as u64);
    assert_eq!(h.min(), Some(0));
    assert_eq!(h.max(), Some(u64::MAX));
    assert_eq!(h.clamped(), 0, "MAX_BUCKETS covers all of u64");
    let exact_sum = data.iter().fold(0u64, |a, &v| a.wrapping_add(v));
    assert_eq!(h.sum(), exact_sum, "sum exact modulo 2^64");
    let mut q = 0.0;
    while q <= 100.0 {
        let got = h.percentile(q).unwrap().unwrap();
        let exact = nearest_rank(&data, q);
        assert!(within(got, exact), "q {q}: got {got}, exact {exact}");
        q += 0.37;
    }
    assert_eq!(h.percentile(0.0), Ok(Some(0)));
    assert_eq!(h.percentile(100.0), Ok(Some(u64::MAX)));
}

/// hdrhistogram `quantile_0_and_1` / tiny quantiles: rank 1 is the exact
/// minimum, rank n the exact maximum, for the smallest positive `q`.
#[test]
fn hdr_extreme_quantiles_are_exact() {
    let h: Histogram = Histogram::new();
    for v in [1_000_003u64, 7_777_777, 123_456_789, 4_000_000_001] {
        h.record(v);
    }
    for q in [0.0, f64::MIN_POSITIVE, 5e-324, 1e-9, 25.0] {
        assert_eq!(h.percentile(q), Ok(Some(1_000_003)), "q {q}");
    }
    for q in [75.000_000_001, 99.999_999, 100.0] {
        assert_eq!(h.percentile(q), Ok(h.max()), "q {q}");
    }
    assert!(extreme_is(h.max(), 4_000_000_001, Round::Up));
    let mid = h.percentile(50.0).unwrap().unwrap();
    assert!(within(mid, 7_777_777), "{mid}");
}

/// The `k/n` boundaries ("ignoring a few ulps of `f64` rounding noise, so
/// that e.g. `q = 99.9, n = 1000` gives 999"): for exact values (< 256)
/// and all `n` up to 255, `percentile(100·k/n)` is exactly the `k`-th.
#[test]
fn percentile_rank_boundaries_are_exact() {
    for n in 1..=255u64 {
        let h: Histogram<256> = Histogram::new();
        for v in 0..n {
            h.record(v);
        }
        for k in 1..=n {
            let q = 100.0 * k as f64 / n as f64;
            assert_eq!(h.percentile(q), Ok(Some(k - 1)), "n {n}, k {k}, q {q}");
        }
    }
}

/// hdrhistogram `total_count_exceeds_bucket_type` / saturating adds:
/// `record_n` saturates a bucket's count at `BUCKET_CAPACITY`; "the sum
/// adds `value · n` modulo 2⁶⁴", so past the capacity "the count stops
/// while the sum stays exact, so the mean then reads high".
#[test]
fn record_n_saturates_count_but_not_sum() {
    for v in [
        0u64,
        7,
        255,
        256,
        1_000,
        1 << 20,
        (1 << 28) + 12_345,
        u64::from(u32::MAX),
    ] {
        let h: Histogram = Histogram::new();
        let n = BUCKET_CAPACITY + 10;
        h.record_n(v, n);
        assert_eq!(h.count(), BUCKET_CAPACITY, "v {v}");
        assert_eq!(h.sum(), v.wrapping_mul(n), "v {v}: sum must add v·n");
        assert!(
            extreme_is(h.min(), v, Round::Down),
            "v {v}: min {:?}",
            h.min()
        );
        assert!(
            extreme_is(h.max(), v, Round::Up),
            "v {v}: max {:?}",
            h.max()
        );
        // Where `v · n` wraps the mean misreads: see `peer_failing.rs`.
        if v > 0 && v.checked_mul(n).is_some() {
            let mean = h.mean().unwrap();
            assert!(mean >= v as f64, "v {v}: mean {mean} should read high");
        }
    }
}

/// hdrhistogram `sum` near overflow: `u64::MAX` recorded twice in the
/// default histogram (clamped: "it still counts in `count`, `sum`, `min`,
/// `max` and `mean` with its true value").
#[test]
fn clamped_values_sum_and_mean() {
    let h: Histogram = Histogram::new();
    h.record(u64::MAX);
    h.record(u64::MAX);
    assert_eq!(h.count(), 2);
    assert_eq!(h.clamped(), 2);
    assert_eq!(h.sum(), u64::MAX.wrapping_mul(2));
    let mean = h.mean().unwrap();
    assert!(
        (mean - u64::MAX as f64).abs() <= u64::MAX as f64 * RELATIVE_ERROR,
        "{mean}"
    );
    // Rank 1 of 2: the minimum, rounded down on 32-bit words.
    assert_eq!(h.percentile(50.0), Ok(h.min()));
    assert!(extreme_is(h.min(), u64::MAX, Round::Down));
    h.record(3);
    assert_eq!(h.percentile(0.0), Ok(Some(3)));
    assert_eq!(
        h.percentile(60.0),
        Ok(h.max()),
        "a clamped value reads as max"
    );
}

/// hdrhistogram `add` (merge): counts, sum, min, max exact after merging,
/// and percentiles as accurate as one histogram's; counts saturate.
#[test]
fn merge_is_exact_and_saturates() {
    let a: Histogram = Histogram::new();
    let b: Histogram = Histogram::new();
    let mut all = Vec::new();
    for i in 0..5_000u64 {
        let v = i * i * 37 + 11;
        if i % 3 == 0 {
            a.record(v);
        } else {
            b.record(v);
        }
        all.push(v);
    }
    a.merge(&b);
    all.sort_unstable();
    assert_eq!(a.count(), 5_000);
    assert_eq!(a.sum(), all.iter().sum::<u64>());
    assert_eq!(
        (a.min(), a.max()),
        (all.first().copied(), all.last().copied())
    );
    for q in [1.0, 10.0, 50.0, 90.0, 99.0, 99.9] {
        let got = a.percentile(q).unwrap().unwrap();
        assert!(within(got, nearest_rank(&all, q)), "q {q}: {got}");
    }
    let c: Histogram = Histogram::new();
    let d: Histogram = Histogram::new();
    c.record_n(400, BUCKET_CAPACITY - 1);
    d.record_n(400, 5);
    c.merge(&d);
    assert_eq!(c.count(), BUCKET_CAPACITY, "merge saturates");
}

/// Side by side with the `hdrhistogram` crate on a latency-like
/// distribution: ours within `RELATIVE_ERROR` of the exact nearest-rank
/// quantile; count equal to hdrhistogram's, min and max exact.
#[test]
fn agrees_with_hdrhistogram_on_latencies() {
    let ours: Histogram = Histogram::new();
    let mut theirs = hdrhistogram::Histogram::<u64>::new(3).unwrap();
    let mut data = Vec::new();
    let mut s: u64 = 99;
    for _ in 0..50_000 {
        s = s
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let u = (s >> 11) as f64 / (1u64 << 53) as f64;
        let v = (200.0 * (-(1.0 - u).ln()).powf(1.7)) as u64 + 50;
        ours.record(v);
        theirs.record(v).unwrap();
        data.push(v);
    }
    data.sort_unstable();
    for q in [50.0, 90.0, 99.0, 99.9, 99.99] {
        let exact = nearest_rank(&data, q);
        let a = ours.percentile(q).unwrap().unwrap();
        let b = theirs.value_at_quantile(q / 100.0);
        assert!(within(a, exact), "q {q}: ours {a}, exact {exact}");
        // hdrhistogram's own answer is not nearest rank (at q 99.9 here it
        // reports 5 335 where the 99.9th sample is ~5 230; at q 90, 880
        // where fusebox's midpoint is 882): it is only printed.
        let _ = b;
    }
    assert_eq!(ours.count(), theirs.len());
    // hdrhistogram's min/max are its buckets' equivalents; ours exact.
    assert_eq!(ours.max(), data.last().copied());
    assert_eq!(ours.min(), data.first().copied());
    assert!(theirs.max() >= data[data.len() - 1]);
}
