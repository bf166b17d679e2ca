//! `Histogram::buckets`, `totals` and `merge_buckets(_with_totals)`
//! against a reference model written from the documented layout (not from
//! the implementation): a value `v < 256` has the bucket `v..=v`; above,
//! with `h` its leading one's position, the bucket of width `w = 2^(h−7)`
//! that holds it, `v − v % w ..= v − v % w + w − 1`; a value above
//! `MAX_VALUE` the clamped bucket `MAX_VALUE + 1 ..= u64::MAX`.
//!
//! Refused lists: `histogram_merge_refusals.rs`.

use std::collections::BTreeMap;

use fusebox::histogram::{buckets_for, Bucket, Histogram, Totals, RELATIVE_ERROR};
use proptest::prelude::*;

/// The tracked range: 1 s in microseconds (beyond it, clamped); 2 ms
/// under Miri, whose checks cost per bucket on every read and call.
const RANGE: u64 = if cfg!(miri) { 2_000 } else { 1_000_000 };
/// The histogram most tests use.
type Small = Histogram<{ buckets_for(RANGE) }>;

/// The reference bucket of `v` in a histogram tracking `0..=max_value`.
fn reference_bounds(v: u64, max_value: u64) -> (u64, u64) {
    if v > max_value {
        return (max_value + 1, u64::MAX);
    }
    if v < 256 {
        return (v, v);
    }
    let w = 1u64 << (v.ilog2() - 7);
    let low = v - v % w;
    (low, low + (w - 1))
}

/// The reference bucket list of `values`.
fn reference_buckets(values: &[u64], max_value: u64) -> Vec<Bucket> {
    let mut map = BTreeMap::new();
    for &v in values {
        *map.entry(reference_bounds(v, max_value)).or_insert(0u64) += 1;
    }
    map.into_iter()
        .map(|((low, high), count)| Bucket { low, high, count })
        .collect()
}

/// The reference totals of `values`, `None` if there are none.
fn reference_totals(values: &[u64]) -> Option<Totals> {
    Some(Totals {
        sum: values.iter().fold(0u64, |s, &v| s.wrapping_add(v)),
        min: *values.iter().min()?,
        max: *values.iter().max()?,
    })
}

const QS: [f64; 10] = [0.0, 0.5, 10.0, 25.0, 50.0, 75.0, 90.0, 99.0, 99.9, 100.0];

/// Every observable of `a` and `b` is equal.
fn assert_same<const B: usize>(a: &Histogram<B>, b: &Histogram<B>) {
    assert!(a.buckets().eq(b.buckets()));
    assert_eq!(a.count(), b.count());
    assert_eq!(a.sum(), b.sum());
    assert_eq!((a.min(), a.max()), (b.min(), b.max()));
    assert_eq!(a.clamped(), b.clamped());
    assert_eq!(a.totals(), b.totals());
    assert_eq!(a.mean(), b.mean());
    for q in QS {
        assert_eq!(a.percentile(q), b.percentile(q), "p{q}");
    }
}

/// Large under plain `cargo test`, small under Miri (every read walks all
/// the buckets, and every call retags the whole histogram).
const fn scale(large: u64, small: u64) -> u64 {
    if cfg!(miri) {
        small
    } else {
        large
    }
}

fn values_strategy() -> impl Strategy<Value = Vec<u64>> {
    prop::collection::vec(
        prop_oneof![
            0..300u64,
            0..2 * RANGE,
            any::<u64>(),
            (0u32..64).prop_map(|s| 1u64 << s),
        ],
        0..scale(300, 20) as usize,
    )
}

#[test]
fn buckets_match_the_reference_and_add_up_to_count() {
    let values = [
        0,
        1,
        255,
        256,
        257,
        1_000,
        1_003,
        1_004,
        RANGE - 1,
        RANGE + 3,
        5 * RANGE,
    ];
    let h = Small::new();
    for &v in &values {
        h.record(v);
    }
    let listed: Vec<Bucket> = h.buckets().collect();
    assert_eq!(listed, reference_buckets(&values, Small::MAX_VALUE));
    assert_eq!(listed.iter().map(|b| b.count).sum::<u64>(), h.count());
    assert!(listed.windows(2).all(|w| w[0].high < w[1].low));
    assert_eq!(listed.last().unwrap().high, u64::MAX); // the clamped bucket
    assert_eq!(h.buckets().size_hint().1, Some(buckets_for(RANGE) + 1));
    // Fused: stays done.
    let mut it = h.buckets();
    it.by_ref().for_each(drop);
    assert_eq!((it.next(), it.next()), (None, None));
}

#[test]
fn round_trip_with_totals_is_exact() {
    let a = Small::new();
    for i in 0..scale(5_000, 100) {
        a.record(i * i % (RANGE + RANGE / 10) + i % 7);
    }
    a.record(u64::MAX);
    a.record(3);
    let b = Small::new();
    b.merge_buckets_with_totals(a.buckets(), a.totals().unwrap())
        .unwrap();
    assert_same(&a, &b);
    // Twice is the same as merging the histogram twice.
    let c = Small::new();
    c.merge(&a);
    c.merge(&a);
    b.merge_buckets_with_totals(a.buckets(), a.totals().unwrap())
        .unwrap();
    assert_same(&b, &c);
}

/// Without totals: counts (so buckets) identical, each merged value taken
/// as its bucket's midpoint — the sum between the buckets' bounds and
/// within the relative error of the exact one, the extremes the midpoints
/// of the end buckets, every percentile within the error bound.
#[test]
fn round_trip_without_totals_estimates_sum_and_extremes() {
    let values: Vec<u64> = (0..scale(3_000, 100))
        .map(|i| 200 + i * 311 % (RANGE * 9 / 10))
        .collect();
    let a = Small::new();
    for &v in &values {
        a.record(v);
    }
    let b = Small::new();
    b.merge_buckets(a.buckets()).unwrap();
    assert!(a.buckets().eq(b.buckets()));
    assert_eq!(b.count(), a.count());
    let (low, high) = a.buckets().fold((0u64, 0u64), |(l, h), bk| {
        (l + bk.count * bk.low, h + bk.count * bk.high)
    });
    let (sum, exact) = (b.sum(), a.sum());
    assert!(low <= sum && sum <= high, "{low} <= {sum} <= {high}");
    #[allow(clippy::cast_precision_loss)]
    let error = sum.abs_diff(exact) as f64 / exact as f64;
    assert!(error <= RELATIVE_ERROR, "{error}");
    let first = a.buckets().next().unwrap();
    let last = a.buckets().last().unwrap();
    let mid = |b: Bucket| b.low + (b.high - b.low).div_ceil(2); // + width / 2
    assert_eq!((b.min(), b.max()), (Some(mid(first)), Some(mid(last))));
    let mut sorted = values.clone();
    sorted.sort_unstable();
    for tenths in [0u64, 5, 100, 250, 500, 750, 900, 990, 999, 1_000] {
        let k = (tenths * sorted.len() as u64).div_ceil(1_000).max(1);
        #[allow(clippy::cast_possible_truncation)]
        let exact = sorted[k as usize - 1];
        #[allow(clippy::cast_precision_loss)]
        let q = tenths as f64 / 10.0;
        let got = b.percentile(q).unwrap().unwrap();
        #[allow(clippy::cast_precision_loss)]
        let error = got.abs_diff(exact) as f64 / exact as f64;
        assert!(error <= RELATIVE_ERROR, "p{q}: {got} vs {exact}");
    }
}

#[test]
fn clamped_values_merge_as_max_value_plus_one() {
    let a: Histogram<256> = Histogram::new();
    a.record(10);
    a.record(1_000);
    a.record(2_000);
    let b: Histogram<256> = Histogram::new();
    b.merge_buckets(a.buckets()).unwrap();
    assert_eq!(b.clamped(), 2);
    assert_eq!(b.sum(), 10 + 2 * 256);
    assert_eq!((b.min(), b.max()), (Some(10), Some(256)));
    assert_eq!(b.percentile(100.0), Ok(Some(256)));
    let c: Histogram<256> = Histogram::new();
    c.merge_buckets_with_totals(a.buckets(), a.totals().unwrap())
        .unwrap();
    assert_same(&a, &c);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: if cfg!(miri) { 4 } else { 512 },
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Merging the reference bucket list and totals of some values is
    /// recording them: every observable equal. Without the totals, the
    /// buckets and count are equal.
    #[test]
    fn merge_buckets_is_recording(values in values_strategy(), pre in values_strategy()) {
        let (recorded, merged, estimated) = (Small::new(), Small::new(), Small::new());
        for &v in &pre {
            recorded.record(v);
            merged.record(v);
            estimated.record(v);
        }
        for &v in &values {
            recorded.record(v);
        }
        let list = reference_buckets(&values, Small::MAX_VALUE);
        match reference_totals(&values) {
            Some(totals) => merged.merge_buckets_with_totals(list.iter().copied(), totals).unwrap(),
            None => merged.merge_buckets(list.iter().copied()).unwrap(),
        }
        assert_same(&recorded, &merged);
        estimated.merge_buckets(list).unwrap();
        prop_assert!(recorded.buckets().eq(estimated.buckets()));
        prop_assert_eq!(recorded.count(), estimated.count());
        prop_assert_eq!(recorded.clamped(), estimated.clamped());
    }
}

/// `h.merge(&h)`: a histogram merged into itself (both arguments are
/// `&Self`, so nothing stops it) is the same as merging an equal copy —
/// every count doubled (the `buckets()` list), the sum doubled modulo 2⁶⁴,
/// `clamped` doubled, the extremes unchanged — values below 256, at bucket
/// edges, clamped ones and `u64::MAX` included. Sound: a review's check of
/// the aliasing, no defect found.
#[test]
fn a_histogram_merged_into_itself_is_doubled() {
    let values = [
        0,
        1,
        255,
        256,
        257,
        511,
        512,
        999,
        1_000,
        1_023,
        5_000,
        u64::MAX,
    ];
    let h: Histogram<{ buckets_for(1_000) }> = Histogram::new();
    let copy: Histogram<{ buckets_for(1_000) }> = Histogram::new();
    for v in values {
        h.record(v);
        copy.record(v);
    }
    h.merge(&h);
    let twice: Histogram<{ buckets_for(1_000) }> = Histogram::new();
    twice.merge(&copy);
    twice.merge(&copy);
    let doubled: Vec<Bucket> = copy
        .buckets()
        .map(|b| Bucket {
            count: 2 * b.count,
            ..b
        })
        .collect();
    assert_eq!(h.buckets().collect::<Vec<_>>(), doubled);
    assert_eq!(
        h.buckets().collect::<Vec<_>>(),
        twice.buckets().collect::<Vec<_>>()
    );
    assert_eq!(h.count(), 2 * values.len() as u64);
    assert_eq!(h.sum(), copy.sum().wrapping_mul(2));
    // 1 023, 5 000 and u64::MAX are above MAX_VALUE.
    assert_eq!(copy.clamped(), 3);
    assert_eq!(h.clamped(), 6);
    assert_eq!((h.min(), h.max()), (Some(0), Some(u64::MAX)));
    for q in [0.0, 10.0, 50.0, 90.0, 100.0] {
        assert_eq!(h.percentile(q), twice.percentile(q), "q = {q}");
    }
}
