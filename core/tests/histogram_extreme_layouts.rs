//! `Histogram` at the extreme sizes its docs allow — `BUCKETS` from 1 (a
//! `MAX_VALUE` of 0: every other value clamped) through the first
//! log-linear buckets (255, 256, 257, 384, 385) to `MAX_BUCKETS` — against
//! the sorted samples, from the documented contract alone:
//!
//! * `count` the number of values, `sum` "exact modulo 2⁶⁴" (clamped
//!   values "summed exactly"), `min`/`max` the extremes, `clamped` the
//!   values above `MAX_VALUE`;
//! * `percentile(q)`: nearest rank `k = max(1, ⌈q·n/100⌉)`, "rank 1 ... as
//!   `min` and rank `n` as `max`, exactly", any other rank "within
//!   `RELATIVE_ERROR` of the exact value, exact below 256 — except that a
//!   value above `MAX_VALUE` (a clamped one) is reported as `max`";
//! * `merge` and `merge_buckets_with_totals` of its own `buckets()` and
//!   `totals()` reproduce count, sum, extremes and clamped exactly.
//!
//! Values: 0, small, every magnitude, `MAX_VALUE` and its neighbours, and
//! within 2 of `u64::MAX` (so the sum wraps many times), through `record`
//! and `record_n`. 3 000 records per size, checked every 97.
#![cfg(not(miri))]

use crate::common::Rng;
use fusebox::histogram::{Histogram, MAX_BUCKETS, RELATIVE_ERROR};

/// The nearest-rank percentile of the sorted samples, and its rank.
fn exact(sorted: &[u64], q: f64) -> (usize, u64) {
    let n = sorted.len();
    // Integer rank for the few percentiles used (q·n/100 exact in f64 here).
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let k = ((q * n as f64 / 100.0).ceil() as usize).max(1);
    (k, sorted[k - 1])
}

fn check<const B: usize>(h: &Histogram<B>, sorted: &[u64], ctx: &str) {
    let max_value = Histogram::<B>::MAX_VALUE;
    assert_eq!(h.count(), sorted.len() as u64, "{ctx}");
    let sum = sorted.iter().fold(0u64, |a, &v| a.wrapping_add(v));
    assert_eq!(h.sum(), sum, "{ctx}: sum");
    assert_eq!(
        (h.min(), h.max()),
        (sorted.first().copied(), sorted.last().copied()),
        "{ctx}"
    );
    let clamped = sorted.iter().filter(|&&v| v > max_value).count() as u64;
    assert_eq!(h.clamped(), clamped, "{ctx}: clamped");
    for q in [0.0, 1.0, 25.0, 50.0, 90.0, 99.9, 100.0] {
        let (k, want) = exact(sorted, q);
        let got = h.percentile(q).unwrap().unwrap();
        if k == 1 {
            assert_eq!(got, sorted[0], "{ctx}: q {q} is the minimum");
        } else if k == sorted.len() || want > max_value {
            assert_eq!(got, *sorted.last().unwrap(), "{ctx}: q {q} is the maximum");
        } else if want < 256 {
            assert_eq!(got, want, "{ctx}: q {q} exact below 256");
        } else {
            #[allow(clippy::cast_precision_loss)]
            let (error, bound) = (got.abs_diff(want) as f64, want as f64 * RELATIVE_ERROR);
            assert!(error <= bound, "{ctx}: q {q}: {got} for {want}");
        }
    }
}

fn sizes<const B: usize>(seed: u64) {
    let h: Histogram<B> = Histogram::new();
    let max_value = Histogram::<B>::MAX_VALUE;
    let mut rng = Rng(seed | 1);
    let mut values = Vec::new();
    for i in 0..3_000 {
        let x = rng.next();
        let v = match i % 5 {
            0 => 0,
            1 => x % 300,
            2 => x >> (x % 64),
            3 => u64::MAX - x % 3,
            _ => max_value.saturating_add(x % 3).saturating_sub(1),
        };
        if i % 7 == 0 {
            h.record_n(v, 3);
            values.extend([v; 3]);
        } else {
            h.record(v);
            values.push(v);
        }
        if i % 97 == 0 || i == 2_999 {
            let mut sorted = values.clone();
            sorted.sort_unstable();
            check(&h, &sorted, &format!("BUCKETS {B} record {i}"));
        }
    }
    values.sort_unstable();
    let merged: Histogram<B> = Histogram::new();
    merged.merge(&h);
    check(&merged, &values, &format!("BUCKETS {B} merged"));
    let listed: Histogram<B> = Histogram::new();
    listed
        .merge_buckets_with_totals(h.buckets(), h.totals().unwrap())
        .unwrap();
    check(
        &listed,
        &values,
        &format!("BUCKETS {B} merged from its bucket list"),
    );
}

#[test]
fn the_smallest_layouts() {
    sizes::<1>(1);
    sizes::<2>(2);
    sizes::<3>(3);
}

#[test]
fn around_the_first_log_linear_buckets() {
    sizes::<255>(4);
    sizes::<256>(5);
    sizes::<257>(6);
    sizes::<384>(7);
    sizes::<385>(8);
}

#[test]
fn the_largest_layouts() {
    sizes::<{ MAX_BUCKETS - 1 }>(9);
    sizes::<MAX_BUCKETS>(10);
}
