//! A long history of one series, checked against the exact nearest-rank
//! percentiles the [`Latency`](super::Latency) docs define (never the
//! code), runs past the histogram's 60 s range included.

use std::time::Duration;

use super::{Tracker, TrackerConfig};

/// The end of the histogram's range: 60 s rounded up to the end of its
/// bucket (the `Latency` docs).
const RANGE_END_US: u64 = 60_030_975;

/// Sound, kept as a test (hostile review): 200 000 runs on paused time,
/// a fifth of them longer than the histogram's range (up to 10 hours).
/// Every call is counted and sampled; each percentile whose rank falls on
/// a run within the range is within 1/256 (or 1 µs) of the exact one,
/// one whose rank falls on a longer run reads the maximum; the maximum
/// and the mean are exact.
#[tokio::test(start_paused = true)]
async fn two_hundred_thousand_runs_past_the_range_keep_the_documented_bounds() {
    let tracker = Tracker::new(TrackerConfig {
        sample_rate: 1.0,
        ..TrackerConfig::default()
    })
    .unwrap();
    let mut rng = fastrand::Rng::with_seed(99);
    let n = 200_000usize;
    let mut runs: Vec<u64> = (0..n)
        .map(|_| match rng.u8(0..5) {
            0 => rng.u64(0..1_000),
            1 => rng.u64(0..60_000_000),
            2 => rng.u64(1_000..5_000),
            3 => rng.u64(RANGE_END_US + 1..36_000_000_000),
            _ => 1_000 * rng.u64(0..100),
        })
        .collect();
    for &micros in &runs {
        let op = tracker.track_operation("op");
        tokio::time::advance(Duration::from_micros(micros)).await;
        drop(op);
    }
    let stats = tracker.stats()["op"];
    assert_eq!(
        (stats.calls, stats.errors, stats.sampled),
        (n as u64, 0, n as u64)
    );
    let latency = stats.latency_us.unwrap();
    runs.sort_unstable();
    let max = runs[n - 1];
    // Rank k = max(1, ⌈q·n/100⌉), in integers (q in tenths of a percent).
    let exact = |tenths: usize| runs[(tenths * n).div_ceil(1_000).max(1) - 1];
    let mut in_range = 0;
    for (tenths, got) in [
        (500, latency.p50),
        (950, latency.p95),
        (990, latency.p99),
        (999, latency.p999),
    ] {
        let want = exact(tenths);
        if want <= RANGE_END_US {
            in_range += 1;
            assert!(
                got.abs_diff(want) <= 1 || got.abs_diff(want) * 256 <= want,
                "q {tenths}‰: {got} for {want}"
            );
        } else {
            assert_eq!(got, max, "q {tenths}‰ falls on a run past the range");
        }
    }
    assert_eq!(in_range, 1, "the median in range, the tail past it");
    assert_eq!(latency.max, max);
    let sum: u64 = runs.iter().sum();
    #[allow(clippy::cast_precision_loss)]
    let mean = sum as f64 / n as f64;
    assert!(
        (latency.mean - mean).abs() <= 1e-9 * mean,
        "{} for {mean}",
        latency.mean
    );
}
