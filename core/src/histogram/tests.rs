//! Unit tests of the histogram.

extern crate std;

use super::layout::{bucket, index_of, midpoint};
use super::read::rank;
use super::*;
use std::vec::Vec;

/// Large under plain `cargo test`, small under Miri (whose atomics are
/// slow: every read walks all the buckets).
const fn scale(large: u64, small: u64) -> u64 {
    if cfg!(miri) {
        small
    } else {
        large
    }
}

/// The value range of the randomised tests.
const TOP: u64 = scale(3_000_000, 2_000);
type Test = Histogram<{ buckets_for(TOP) }>;

fn assert_within(got: u64, exact: u64) {
    #[allow(clippy::cast_precision_loss)]
    let ok = got.abs_diff(exact) as f64 <= exact as f64 * RELATIVE_ERROR;
    assert!(ok, "got {got}, exact {exact}");
}

#[test]
fn layout_is_contiguous_and_monotone() {
    assert_eq!(index_of(0), 0);
    assert_eq!(index_of(255), 255);
    assert_eq!(index_of(256), 256);
    assert_eq!(index_of(u64::MAX), MAX_BUCKETS - 1);
    assert_eq!(MAX_BUCKETS, 7_424);
    assert_eq!(bucket(0), (0, 1));
    // Under Miri: the exact range, the first octaves and the top ones.
    let checked = if cfg!(miri) { 768 } else { MAX_BUCKETS };
    let mut next = 0u64;
    for i in (0..checked).chain(MAX_BUCKETS - 256..MAX_BUCKETS) {
        let (low, width) = bucket(i);
        if i == MAX_BUCKETS - 256 {
            next = low;
        }
        assert_eq!(low, next, "bucket {i}");
        let high = low + (width - 1);
        assert_eq!(index_of(low), i);
        assert_eq!(index_of(high), i);
        assert_eq!(index_of(midpoint(i)), i);
        next = high.wrapping_add(1);
    }
    assert_eq!(next, 0, "the last bucket ends at u64::MAX");
}

#[test]
fn midpoints_are_within_the_bound_and_the_bound_is_tight() {
    #[allow(clippy::cast_precision_loss)]
    let mut worst = 0.0f64;
    let checked = if cfg!(miri) { 768 } else { MAX_BUCKETS };
    for i in (0..checked).chain(MAX_BUCKETS - 256..MAX_BUCKETS) {
        let (low, width) = bucket(i);
        let high = low + (width - 1);
        let mid = midpoint(i);
        for v in [low, high] {
            #[allow(clippy::cast_precision_loss)]
            let err = mid.abs_diff(v) as f64 / v.max(1) as f64;
            worst = worst.max(err);
        }
    }
    assert!(worst <= RELATIVE_ERROR, "{worst}");
    // Attained at the first bucket of width 2: 256 is reported as 257.
    assert!((worst - RELATIVE_ERROR).abs() < 1e-15, "{worst}");
    assert_eq!(midpoint(index_of(256)), 257);
}

#[test]
fn empty() {
    let h: Histogram = Histogram::new();
    assert_eq!(h.count(), 0);
    assert_eq!(h.sum(), 0);
    assert_eq!((h.min(), h.max(), h.mean()), (None, None, None));
    for q in [0.0, 50.0, 100.0] {
        assert_eq!(h.percentile(q), Ok(None));
    }
    assert_eq!(h.clamped(), 0);
}

#[test]
fn single_value() {
    let values: &[u64] = if cfg!(miri) {
        &[0, 1_003]
    } else {
        &[0, 1, 255, 256, 1_000_003, u64::from(u32::MAX)]
    };
    for &v in values {
        let h: Histogram<
            {
                if cfg!(miri) {
                    1_000
                } else {
                    DEFAULT_BUCKETS
                }
            },
        > = Histogram::new();
        h.record(v);
        assert_eq!((h.count(), h.sum()), (1, v));
        if cfg!(fusebox_wide_words) || v < 1 << 31 {
            assert_eq!((h.min(), h.max()), (Some(v), Some(v)));
        } else {
            // 32-bit extremes words: a code of 25 bits below the leading
            // one, rounded outwards (see `extremes.rs`).
            let (min, max) = (h.min().unwrap(), h.max().unwrap());
            assert!(
                min <= v && v <= max && max - min <= v >> 25,
                "{v}: [{min}, {max}]"
            );
        }
        #[allow(clippy::cast_precision_loss)]
        let mean = v as f64;
        assert_eq!(h.mean(), Some(mean));
        for q in [0.0, 0.001, 99.999, 100.0] {
            let got = h.percentile(q).unwrap().unwrap();
            if cfg!(fusebox_wide_words) || v < 1 << 31 {
                assert_eq!(got, v, "{v} at {q}");
            } else {
                assert!(got.abs_diff(v) <= v >> 25, "{v} at {q}: {got}");
            }
        }
    }
}

#[test]
fn small_values_are_exact() {
    let h: Histogram<256> = Histogram::new();
    for v in 0..256 {
        h.record(v);
    }
    assert_eq!(h.count(), 256);
    for k in (1..=256u64).step_by(if cfg!(miri) { 37 } else { 1 }) {
        #[allow(clippy::cast_precision_loss)]
        let q = k as f64 * 100.0 / 256.0;
        assert_eq!(h.percentile(q), Ok(Some(k - 1)), "rank {k}");
    }
    assert_eq!(h.clamped(), 0);
    assert_eq!(h.mean(), Some(127.5));
}

#[test]
fn rank_is_nearest_rank() {
    assert_eq!(rank(0.0, 10), 1);
    assert_eq!(rank(10.0, 10), 1);
    assert_eq!(rank(10.1, 10), 2);
    assert_eq!(rank(50.0, 2), 1);
    assert_eq!(rank(50.0, 3), 2);
    assert_eq!(rank(100.0, 3), 3);
    assert_eq!(rank(99.9, 1_000), 999);
    assert_eq!(rank(99.99, 10_000), 9_999);
    assert_eq!(rank(0.1, 1_000), 1);
    assert_eq!(rank(0.2, 1_000), 2);
    assert_eq!(rank(100.0, u64::MAX), u64::MAX);
    // Exact for every q with three decimals over these n.
    for n in [1u64, 7, 1_000, 12_345] {
        for permille in (0..=100_000u64).step_by(if cfg!(miri) { 997 } else { 7 }) {
            #[allow(clippy::cast_precision_loss)]
            let q = permille as f64 / 1_000.0;
            let exact = (permille * n).div_ceil(100_000).max(1);
            assert_eq!(rank(q, n), exact, "q {q}, n {n}");
        }
    }
}

#[test]
fn min_max_mean_and_percentiles_of_a_known_set() {
    let h: Histogram<{ buckets_for(1_000_000) }> = Histogram::new();
    let values = [5u64, 300, 7_000, 7_001, 90_000, 1_000_000];
    for v in values {
        h.record(v);
    }
    assert_eq!((h.min(), h.max()), (Some(5), Some(1_000_000)));
    assert_eq!(h.sum(), values.iter().sum::<u64>());
    #[allow(clippy::cast_precision_loss)]
    let mean = values.iter().sum::<u64>() as f64 / 6.0;
    assert_eq!(h.mean(), Some(mean));
    for (k, &exact) in values.iter().enumerate() {
        #[allow(clippy::cast_precision_loss)]
        let q = (k + 1) as f64 * 100.0 / 6.0;
        assert_within(h.percentile(q).unwrap().unwrap(), exact);
    }
}

#[test]
fn huge_values() {
    let h: Histogram<{ MAX_BUCKETS }> = Histogram::new();
    assert_eq!(Histogram::<MAX_BUCKETS>::MAX_VALUE, u64::MAX);
    h.record(u64::MAX);
    h.record(u64::MAX - 1);
    h.record(1 << 63);
    assert_eq!(h.clamped(), 0);
    assert_eq!((h.min(), h.max()), (Some(1 << 63), Some(u64::MAX)));
    assert_eq!(h.percentile(0.0), Ok(Some(1 << 63)));
    assert_eq!(h.percentile(100.0), Ok(Some(u64::MAX)));
    if cfg!(miri) {
        return; // 7 424 buckets: each walk is slow under Miri
    }
    assert_within(h.percentile(50.0).unwrap().unwrap(), u64::MAX - 1);
    // The sum wrapped; the mean is estimated from the buckets instead.
    let mean = h.mean().unwrap();
    #[allow(clippy::cast_precision_loss)]
    let exact = (u64::MAX as f64 * 2.0 + (1u64 << 63) as f64) / 3.0;
    assert!((mean - exact).abs() <= exact * RELATIVE_ERROR, "{mean}");
}

#[test]
fn values_above_the_range_are_clamped_and_counted() {
    type Small = Histogram<{ buckets_for(1_000) }>;
    assert_eq!(Small::MAX_VALUE, 1_003);
    let h = Small::new();
    for v in [10, 1_000, 1_003, 1_004, 5_000, u64::MAX] {
        h.record(v);
    }
    assert_eq!(h.clamped(), 3);
    assert_eq!(h.count(), 6);
    assert_eq!(h.max(), Some(u64::MAX));
    assert_eq!(h.sum(), 8_017u64.wrapping_add(u64::MAX));
    assert_eq!(h.percentile(0.0), Ok(Some(10)));
    assert_within(h.percentile(20.0).unwrap().unwrap(), 1_000); // rank 2
    assert_within(h.percentile(50.0).unwrap().unwrap(), 1_003); // rank 3
                                                                // Ranks 4 and 5 are clamped values: reported as the max.
    assert_eq!(h.percentile(60.0), Ok(Some(u64::MAX)));
    assert_eq!(h.percentile(80.0), Ok(Some(u64::MAX)));
    assert_eq!(h.percentile(100.0), Ok(Some(u64::MAX)));
    assert!(h.mean().unwrap() > 3.0e18);

    let exact: Histogram<1> = Histogram::new();
    assert_eq!(Histogram::<1>::MAX_VALUE, 0);
    exact.record(0);
    exact.record(0);
    exact.record(3);
    assert_eq!((exact.count(), exact.clamped()), (3, 1));
    assert_eq!(exact.percentile(50.0), Ok(Some(0)));
    assert_eq!(exact.percentile(66.7), Ok(Some(3)));
    assert_eq!(exact.mean(), Some(1.0));
}

#[test]
fn record_n() {
    let h: Histogram<{ buckets_for(1_000) }> = Histogram::new();
    h.record_n(1_000, 0);
    assert_eq!((h.count(), h.max()), (0, None));
    h.record_n(1_000, 3);
    h.record_n(10, 1);
    assert_eq!((h.count(), h.sum()), (4, 3_010));
    assert_eq!(h.percentile(25.0), Ok(Some(10)));
    assert_eq!(h.percentile(50.0), Ok(Some(1_000)));
}

#[test]
fn merge_equals_recording_into_one() {
    let (a, b, both) = (Test::new(), Test::new(), Test::new());
    for i in 0..scale(10_000, 300) {
        let v = (i * i % 1_000_003 + i) % TOP;
        if i % 3 == 0 { &a } else { &b }.record(v);
        both.record(v);
    }
    b.record(u64::MAX);
    both.record(u64::MAX);
    a.merge(&b);
    assert_eq!(a.count(), both.count());
    assert_eq!(a.sum(), both.sum());
    assert_eq!((a.min(), a.max()), (both.min(), both.max()));
    assert_eq!(a.clamped(), 1);
    for q in [0.0, 1.0, 25.0, 50.0, 90.0, 99.0, 99.9, 100.0] {
        assert_eq!(a.percentile(q), both.percentile(q), "{q}");
    }
    // Merging an empty one changes nothing; merging itself doubles.
    a.merge(&Test::new());
    assert_eq!((a.min(), a.max()), (both.min(), both.max()));
    let n = a.count();
    a.merge(&a);
    assert_eq!(a.count(), 2 * n);
    assert_eq!(a.percentile(50.0), both.percentile(50.0));
}

#[test]
fn reset_empties() {
    let h: Histogram<{ buckets_for(100) }> = Histogram::new();
    for v in [1, 50, 5_000] {
        h.record(v);
    }
    h.reset();
    assert_eq!((h.count(), h.sum(), h.clamped()), (0, 0, 0));
    assert_eq!((h.min(), h.max(), h.mean()), (None, None, None));
    assert_eq!(h.percentile(50.0), Ok(None));
    h.record(7);
    assert_eq!(
        (h.min(), h.max(), h.percentile(99.0)),
        (Some(7), Some(7), Ok(Some(7)))
    );
}

#[test]
fn invalid_percentiles_are_errors_not_panics() {
    let h: Histogram = Histogram::new();
    for filled in [false, true] {
        if filled {
            h.record(1);
        }
        assert_eq!(h.percentile(f64::NAN), Err(PercentileError::NotANumber));
        assert_eq!(h.percentile(-f64::NAN), Err(PercentileError::NotANumber));
        for q in [
            -0.001,
            100.000_001,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -1e300,
        ] {
            assert_eq!(h.percentile(q), Err(PercentileError::OutOfRange), "{q}");
        }
        assert!(h.percentile(-0.0).is_ok());
        assert!(h.percentile(f64::MIN_POSITIVE).is_ok());
    }
    assert_eq!(
        std::format!("{}", PercentileError::OutOfRange),
        "percentile is outside 0..=100"
    );
}

#[test]
fn statics_and_debug() {
    static H: Histogram<{ buckets_for(1_000_000) }> = Histogram::new();
    H.record(3);
    let s = std::format!("{H:?}");
    assert!(
        s.starts_with("Histogram { buckets: 1781, count: 1, min: Some(3)"),
        "{s}"
    );
    let d: Histogram<8> = Histogram::default();
    assert_eq!(d.count(), 0);
}

#[test]
fn size_is_as_documented() {
    #[cfg(fusebox_wide_words)]
    {
        assert_eq!(core::mem::size_of::<Histogram>(), 8 * DEFAULT_BUCKETS + 40);
        assert_eq!(core::mem::size_of::<Histogram<100>>(), 8 * 100 + 40);
    }
}

/// Threads record disjoint deterministic streams concurrently; once they
/// have joined, count, sum, min, max and every bucket (hence every
/// percentile) equal a sequential recording of the same values.
#[test]
fn concurrent_records_are_exact() {
    const THREADS: u64 = 4;
    let per_thread = scale(50_000, 100);
    let value = |t: u64, i: u64| (t * 7_919 + i * 104_729) % TOP + t;
    let shared = Test::new();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let h = &shared;
            s.spawn(move || {
                for i in 0..per_thread {
                    if i % 16 == 0 {
                        h.record_n(value(t, i), 2);
                    } else {
                        h.record(value(t, i));
                    }
                }
            });
        }
    });
    let sequential = Test::new();
    let mut all = Vec::new();
    for t in 0..THREADS {
        for i in 0..per_thread {
            let n = if i % 16 == 0 { 2 } else { 1 };
            sequential.record_n(value(t, i), n);
            for _ in 0..n {
                all.push(value(t, i));
            }
        }
    }
    assert_eq!(shared.count(), all.len() as u64);
    assert_eq!(shared.sum(), all.iter().sum::<u64>());
    assert_eq!(shared.min(), all.iter().copied().min());
    assert_eq!(shared.max(), all.iter().copied().max());
    for (a, b) in shared.cells.iter().zip(&sequential.cells) {
        assert_eq!(a.count(), b.count());
    }
    assert!(shared.buckets().eq(sequential.buckets()));
    all.sort_unstable();
    for q in [0.0, 10.0, 50.0, 99.0, 100.0] {
        let k = rank(q, all.len() as u64);
        #[allow(clippy::cast_possible_truncation)]
        let exact = all[(k - 1) as usize];
        assert_within(shared.percentile(q).unwrap().unwrap(), exact);
    }
}

/// Concurrent merges into one target while another thread records
/// into it.
#[test]
fn concurrent_merges_are_exact() {
    type H = Histogram<{ buckets_for(10_000) }>;
    let (a, b, c) = (H::new(), H::new(), H::new());
    let n = scale(2_000, 50);
    for (s, h) in (1u64..).zip([&a, &b, &c]) {
        for i in 0..n {
            h.record(i * s);
        }
    }
    let target = H::new();
    std::thread::scope(|scope| {
        for h in [&a, &b, &c] {
            let target = &target;
            scope.spawn(move || target.merge(h));
        }
        let target = &target;
        scope.spawn(move || (0..n).for_each(|_| target.record(20_000)));
    });
    assert_eq!(target.count(), 4 * n);
    assert_eq!(target.clamped(), n);
    assert_eq!(target.sum(), (n - 1) * n / 2 * 6 + 20_000 * n);
    assert_eq!((target.min(), target.max()), (Some(0), Some(20_000)));
}

/// Offsets overflowing a bucket word's offset field, and offsets too wide
/// for it, reach the spill: the sum stays exact, the counts too.
#[test]
fn sum_is_exact_across_offset_carries_and_wide_offsets() {
    type Wide = Histogram<{ buckets_for(1 << 40) }>;
    let h = Wide::new();
    let n = scale(20_000, 600);
    let mut exact = 0u64;
    for i in 0..n {
        // Bucket [2^26, 2^26 + 2^19): offsets up to 2^19, a carry every
        // few values; then values around 2^33, in buckets 2^26 wide:
        // offsets mostly of 2^20 and more, spilled whole.
        for v in [(1 << 26) + (i * 7_919) % (1 << 19), (1 << 33) + i * 12_345] {
            h.record(v);
            exact = exact.wrapping_add(v);
        }
    }
    assert_eq!(h.sum(), exact);
    assert_eq!(h.count(), 2 * n);
    assert_eq!(
        h.buckets().next().map(|b| (b.low, b.count)),
        Some((1 << 26, n))
    );
    // record_n of a wide value, and a merge, keep it exact.
    h.record_n((1 << 26) + 5, 1_000);
    exact = exact.wrapping_add(1_000 * ((1 << 26) + 5));
    assert_eq!(h.sum(), exact);
    let twice = Wide::new();
    twice.merge(&h);
    twice.merge(&h);
    assert_eq!(twice.sum(), exact.wrapping_mul(2));
}

/// Threads recording into the same wide buckets, where offsets carry out
/// of the bucket words all the time: exact once joined.
#[test]
fn concurrent_carries_are_exact() {
    type Wide = Histogram<{ buckets_for(1 << 27) }>;
    const THREADS: u64 = 4;
    let per_thread = scale(40_000, 200);
    let value = |t: u64, i: u64| (1 << 26) + ((t * 1_000_003 + i * 7_919) % (1 << 20));
    let h = Wide::new();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let h = &h;
            s.spawn(move || (0..per_thread).for_each(|i| h.record(value(t, i))));
        }
    });
    let all = (0..THREADS).flat_map(|t| (0..per_thread).map(move |i| value(t, i)));
    assert_eq!(h.sum(), all.clone().sum::<u64>());
    assert_eq!(h.count(), THREADS * per_thread);
    assert_eq!((h.min(), h.max()), (all.clone().min(), all.max()));
}

#[test]
fn zeroed_in_place_equals_new() {
    let mut slot = core::mem::MaybeUninit::<Histogram<300>>::uninit();
    let h = Histogram::new_in_place(&mut slot);
    assert_eq!(
        (h.count(), h.sum(), h.min(), h.totals()),
        (0, 0, None, None)
    );
    h.record(299);
    h.record(0);
    assert_eq!((h.min(), h.max(), h.sum()), (Some(0), Some(299), 299));
}

#[cfg(feature = "alloc")]
#[test]
fn new_boxed_is_empty_and_works() {
    let h: alloc::boxed::Box<Histogram<MAX_BUCKETS>> = Histogram::new_boxed();
    assert_eq!((h.count(), h.sum(), h.max()), (0, 0, None));
    h.record(u64::MAX);
    h.record(7);
    assert_eq!((h.min(), h.max(), h.count()), (Some(7), Some(u64::MAX), 2));
    assert_eq!(h.sum(), 6);
}
