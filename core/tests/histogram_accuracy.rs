#![cfg(not(miri))]
//! Accuracy of [`Histogram`] percentiles against exact percentiles of the
//! sorted samples and against the `hdrhistogram` crate.
//!
//! Exact reference: the nearest-rank percentile `sorted[k − 1]` with
//! `k = max(1, ⌈q·n/100⌉)`, the rank computed in integers (the histogram's
//! rank is computed in `f64`; these tests also check that the two agree for
//! percentiles given with a few decimals). A reported value must satisfy
//! `|reported − exact| ≤ exact · RELATIVE_ERROR`, except that rank 1 must
//! be the exact minimum and any other rank whose exact value lies above
//! `MAX_VALUE` (a clamped sample) must be reported as the maximum.
//!
//! Run with `cargo test -p fusebox --test histogram -- histogram_accuracy:: --nocapture`
//! to see the worst relative error measured per distribution.

use fusebox::histogram::{buckets_for, Histogram, RELATIVE_ERROR};
use proptest::prelude::*;

/// Whether this build keeps the statistics in 32-bit words (Cortex-M, or a
/// host built with `--cfg fusebox_narrow_words`).
const NARROW: bool = !cfg!(target_has_atomic = "64") || cfg!(fusebox_narrow_words);

/// SplitMix64: a small deterministic PRNG, enough for test samples.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    #[allow(clippy::cast_precision_loss)]
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Exponential with the given mean.
    fn exponential(&mut self, mean: f64) -> f64 {
        -(1.0 - self.unit()).ln() * mean
    }

    /// Standard normal (Box–Muller).
    fn normal(&mut self) -> f64 {
        let (u, v) = (1.0 - self.unit(), self.unit());
        (-2.0 * u.ln()).sqrt() * (core::f64::consts::TAU * v).cos()
    }
}

#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn to_u64(x: f64) -> u64 {
    x as u64
}

const SAMPLES: usize = 200_000;

fn uniform(rng: &mut SplitMix) -> u64 {
    rng.below(10_000_000)
}

fn exponential(rng: &mut SplitMix) -> u64 {
    to_u64(rng.exponential(2_000.0))
}

/// A fast mode around 1 ms, a slow mode around 50 ms and a 1 % tail near
/// 1 s (microseconds).
fn bimodal(rng: &mut SplitMix) -> u64 {
    match rng.below(100) {
        0..=78 => 900 + rng.below(200),
        79..=98 => 45_000 + rng.below(10_000),
        _ => 900_000 + rng.below(200_000),
    }
}

fn log_normal(rng: &mut SplitMix) -> u64 {
    to_u64((8.0 + 1.5 * rng.normal()).exp())
}

/// Rank of the percentile `per / scale` of `n` samples, in integers.
fn exact_rank(per: u64, scale: u64, n: u64) -> u64 {
    (per * n).div_ceil(100 * scale).max(1)
}

/// The rank `hdrhistogram` uses: `max(1, ⌈(q/100)·n⌉)` in `f64`.
#[allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]
fn hdr_rank(q: f64, n: u64) -> u64 {
    ((q / 100.0 * n as f64).ceil() as u64).max(1)
}

#[allow(clippy::cast_precision_loss)]
fn relative_error(got: u64, exact: u64) -> f64 {
    if got == exact {
        0.0
    } else {
        got.abs_diff(exact) as f64 / exact as f64
    }
}

/// Checks every percentile in steps of 0.1 (and a few finer tail ones)
/// against the exact value and against `hdrhistogram` (3 significant
/// digits: its values are within 1/1024 of exact). Returns the worst
/// relative error of the histogram.
#[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
fn check_distribution(name: &str, sample: fn(&mut SplitMix) -> u64, seed: u64) -> f64 {
    let mut rng = SplitMix(seed);
    let mut values: Vec<u64> = (0..SAMPLES).map(|_| sample(&mut rng)).collect();
    let ours: Histogram = Histogram::new();
    let mut hdr = hdrhistogram::Histogram::<u64>::new(3).expect("sigfig 3");
    for &v in &values {
        ours.record(v);
        hdr.record(v).expect("auto-resizing");
    }
    values.sort_unstable();
    let n = values.len() as u64;
    assert_eq!(ours.count(), n);
    assert_eq!(ours.sum(), values.iter().sum::<u64>());
    assert_eq!(ours.min(), values.first().copied());
    assert_eq!(ours.max(), values.last().copied());
    assert_eq!(ours.clamped(), 0);
    let exact_mean = values.iter().map(|&v| u128::from(v)).sum::<u128>() as f64 / n as f64;
    assert!((ours.mean().unwrap() - exact_mean).abs() <= exact_mean * 1e-12);
    assert!((hdr.mean() - exact_mean).abs() <= exact_mean / 1024.0);

    let mut worst = 0.0f64;
    let mut compared_with_hdr = 0;
    let per_ten_thousand = (0..=1_000u64)
        .map(|tenths| tenths * 1_000)
        .chain([990_500, 999_000, 999_500, 999_900, 999_990, 999_999]);
    for per in per_ten_thousand {
        // per / 10_000 percent.
        let q = per as f64 / 10_000.0;
        let k = exact_rank(per, 10_000, n);
        let exact = values[(k - 1) as usize];
        let got = ours.percentile(q).unwrap().unwrap();
        let err = relative_error(got, exact);
        assert!(
            err <= RELATIVE_ERROR,
            "{name}: p{q} = {got}, exact {exact} (rank {k}), error {err}"
        );
        worst = worst.max(err);

        let k_hdr = hdr_rank(q, n);
        let theirs = hdr.value_at_percentile(q);
        let hdr_exact = values[(k_hdr - 1) as usize];
        assert!(
            relative_error(theirs, hdr_exact) <= 1.0 / 1024.0,
            "{name}: hdrhistogram p{q} = {theirs}, exact {hdr_exact}"
        );
        if k_hdr == k {
            compared_with_hdr += 1;
            assert!(
                relative_error(got, theirs) <= RELATIVE_ERROR + 1.0 / 1024.0 + 1e-9,
                "{name}: p{q}: ours {got}, hdrhistogram {theirs}, exact {exact}"
            );
        }
    }
    assert!(
        compared_with_hdr > 500,
        "{name}: ranks agreed only {compared_with_hdr} times"
    );
    eprintln!(
        "{name}: worst relative error {worst:.6} ({:.4} %), bound {RELATIVE_ERROR:.6}",
        worst * 100.0
    );
    worst
}

#[test]
fn uniform_samples() {
    check_distribution("uniform", uniform, 1);
}

#[test]
fn exponential_samples() {
    check_distribution("exponential", exponential, 2);
}

#[test]
fn bimodal_samples() {
    check_distribution("bimodal", bimodal, 3);
}

#[test]
fn log_normal_samples() {
    check_distribution("log-normal", log_normal, 4);
}

/// Values spread so that many land on bucket starts, where the midpoint
/// error peaks: the worst case approaches the bound.
#[test]
fn bucket_edges_reach_but_never_exceed_the_bound() {
    let mut rng = SplitMix(5);
    let ours: Histogram = Histogram::new();
    let mut values = Vec::new();
    for _ in 0..20_000 {
        let shift = rng.below(20);
        let v = (128 + rng.below(128)) << (shift + 1);
        values.push(v);
        ours.record(v);
    }
    values.sort_unstable();
    let n = values.len() as u64;
    let mut worst = 0.0f64;
    for per in 0..=1_000u64 {
        let k = exact_rank(per, 10, n);
        #[allow(clippy::cast_possible_truncation)]
        let exact = values[(k - 1) as usize];
        #[allow(clippy::cast_precision_loss)]
        let got = ours.percentile(per as f64 / 10.0).unwrap().unwrap();
        worst = worst.max(relative_error(got, exact));
    }
    eprintln!("bucket starts: worst relative error {worst:.6}, bound {RELATIVE_ERROR:.6}");
    assert!(worst <= RELATIVE_ERROR);
    assert!(worst > 0.99 * RELATIVE_ERROR, "{worst}");
}

/// Values up to 1 s in microseconds, and beyond it (clamped).
type Small = Histogram<{ buckets_for(1_000_000) }>;

fn values_strategy() -> impl Strategy<Value = Vec<u64>> {
    prop::collection::vec(
        prop_oneof![
            0..300u64,
            0..2_000_000u64,
            any::<u64>(),
            (0u32..64).prop_map(|s| 1u64 << s),
        ],
        1..400,
    )
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Any percentile (five decimals) of any values is within the bound of
    /// the exact one, or the max for a clamped rank; the statistics are
    /// exact.
    #[test]
    fn percentiles_are_within_the_bound(
        mut values in values_strategy(),
        per in 0..=10_000_000u64,
    ) {
        let h = Small::new();
        for &v in &values {
            h.record(v);
        }
        values.sort_unstable();
        let n = values.len() as u64;
        prop_assert_eq!(h.count(), n);
        prop_assert_eq!(h.sum(), values.iter().fold(0u64, |s, &v| s.wrapping_add(v)));
        let (min, max) = (values[0], values[values.len() - 1]);
        let (got_min, got_max) = (h.min().unwrap(), h.max().unwrap());
        if NARROW {
            // `Histogram::min`/`max`: exact below 2³¹ on 32-bit words, else
            // rounded outward by at most a relative 2⁻²⁵.
            prop_assert!(got_min <= min && min - got_min <= min >> 25, "min {} for {}", got_min, min);
            prop_assert!(got_max >= max && got_max - max <= max >> 25, "max {} for {}", got_max, max);
            prop_assert!(min >= 1 << 31 || got_min == min);
            prop_assert!(max >= 1 << 31 || got_max == max);
        } else {
            prop_assert_eq!((got_min, got_max), (min, max));
        }
        let clamped = values.iter().filter(|&&v| v > Small::MAX_VALUE).count() as u64;
        prop_assert_eq!(h.clamped(), clamped);

        #[allow(clippy::cast_precision_loss)]
        let q = per as f64 / 100_000.0;
        let k = exact_rank(per, 100_000, n);
        #[allow(clippy::cast_possible_truncation)]
        let exact = values[(k - 1) as usize];
        let got = h.percentile(q).unwrap().unwrap();
        if k == 1 {
            prop_assert_eq!(got, got_min);
        } else if exact > Small::MAX_VALUE {
            prop_assert_eq!(Some(got), h.max());
        } else {
            prop_assert!(
                relative_error(got, exact) <= RELATIVE_ERROR,
                "p{} = {}, exact {} (rank {} of {})", q, got, exact, k, n
            );
        }
    }

    /// Recording into two histograms and merging equals recording into one.
    #[test]
    fn merge_is_recording_into_one(values in values_strategy(), split in any::<prop::sample::Index>()) {
        let (a, b, one) = (Small::new(), Small::new(), Small::new());
        let at = split.index(values.len() + 1);
        for (i, &v) in values.iter().enumerate() {
            if i < at { &a } else { &b }.record(v);
            one.record(v);
        }
        a.merge(&b);
        prop_assert_eq!(a.count(), one.count());
        prop_assert_eq!(a.sum(), one.sum());
        prop_assert_eq!(a.min(), one.min());
        prop_assert_eq!(a.max(), one.max());
        prop_assert_eq!(a.clamped(), one.clamped());
        for q in [0.0, 0.5, 10.0, 33.3, 50.0, 90.0, 99.0, 99.9, 100.0] {
            prop_assert_eq!(a.percentile(q), one.percentile(q));
        }
        prop_assert_eq!(a.mean(), one.mean());
    }

    /// Against hdrhistogram on values it tracks at 3 significant digits:
    /// both are within their bound of the exact value at the same rank.
    #[test]
    fn agrees_with_hdrhistogram(
        values in prop::collection::vec(0..5_000_000_000u64, 1..400),
        tenths in 0..=1_000u64,
    ) {
        let ours: Histogram<{ buckets_for(5_000_000_000) }> = Histogram::new();
        let mut hdr = hdrhistogram::Histogram::<u64>::new(3).unwrap();
        for &v in &values {
            ours.record(v);
            hdr.record(v).unwrap();
        }
        let mut sorted = values.clone();
        sorted.sort_unstable();
        let n = sorted.len() as u64;
        #[allow(clippy::cast_precision_loss)]
        let q = tenths as f64 / 10.0;
        let got = ours.percentile(q).unwrap().unwrap();
        let theirs = hdr.value_at_percentile(q);
        let k = exact_rank(tenths, 10, n);
        #[allow(clippy::cast_possible_truncation)]
        let exact = sorted[(k - 1) as usize];
        prop_assert!(relative_error(got, exact) <= RELATIVE_ERROR);
        if hdr_rank(q, n) == k {
            prop_assert!(relative_error(theirs, exact) <= 1.0 / 1024.0);
            prop_assert!(
                relative_error(got, theirs) <= RELATIVE_ERROR + 1.0 / 1024.0 + 1e-9,
                "p{}: ours {}, hdrhistogram {}, exact {}", q, got, theirs, exact
            );
        }
        prop_assert_eq!(ours.count(), hdr.len());
    }
}
