//! The performance tracker: one timed operation through fusebox-std's
//! `Tracker` (`track_operation` and dropping its guard: two clock reads,
//! the name's redaction, the series lookup under a read lock, the record)
//! against what it is built on: the core histogram's record, alone and
//! with the two `std::time::Instant` reads that time an operation by hand.
//! Every row records every call (`sample_rate` 1.0) but one, the default
//! 10 % sampling, where nine calls in ten skip the record.
use std::hint::black_box;
use std::time::Instant;

use criterion::Criterion;
use fusebox::histogram::{buckets_for, Histogram};
use fusebox_std::{Tracker, TrackerConfig};

/// The tracker's own histogram size (latencies up to 60 s in µs).
type Latency = Histogram<{ buckets_for(60_000_000) }>;

pub fn bench(c: &mut Criterion) {
    let hist: Box<Latency> = Box::new(Latency::new());
    let every = Tracker::new(TrackerConfig {
        sample_rate: 1.0,
        ..TrackerConfig::default()
    })
    .expect("tracker config");
    let sampled = Tracker::new(TrackerConfig::default()).expect("tracker config");
    let mut g = c.benchmark_group("tracker");
    g.bench_function("core_histogram_record", |b| {
        let mut v = 1u64;
        b.iter(|| {
            v = v.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            hist.record(black_box(v >> 44));
        });
    });
    g.bench_function("core_histogram_timed_by_hand", |b| {
        b.iter(|| {
            let start = Instant::now();
            black_box(());
            let micros = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
            hist.record(black_box(micros));
        });
    });
    g.bench_function("tracker_operation", |b| {
        b.iter(|| drop(black_box(every.track_operation("search"))));
    });
    g.bench_function("tracker_operation_sampled_10pct", |b| {
        b.iter(|| drop(black_box(sampled.track_operation("search"))));
    });
    g.finish();
    // Absent when a filter (`cargo bench -- histogram`) left the tracker's
    // benchmarks out; present and counted whenever they ran.
    if let Some(search) = every.stats().get("search") {
        assert!(search.calls > 0, "the tracker recorded");
    }
}
