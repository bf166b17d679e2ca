//! Histogram record: fusebox (lock-free, `&self`, one RMW) against
//! hdrhistogram (`&mut self`, 3 significant figures, the closest to
//! fusebox's 0.39 %) and against a bare `AtomicU64` counter, on one thread
//! and on two sharing the histogram; and the reads an exporter makes
//! (`buckets()`, `sum()`, `merge_buckets`) over the default 3 328 buckets.
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use criterion::Criterion;
use fusebox::Histogram;
use fusebox_benches::{note, pair, Rng};

const LEN: usize = 1 << 16;

pub fn bench(c: &mut Criterion) {
    // Latencies spread log-uniformly over 1 µs .. ~0.5 s (at most
    // 2^19 + 1 023 µs), as the report's title says.
    let mut rng = Rng::new(7);
    let values: Vec<u64> = (0..LEN)
        .map(|_| (1 << (rng.next_u64() % 20)) | (rng.next_u64() % 1024))
        .collect();
    let fb: Box<Histogram> = Box::new(Histogram::new());
    let mut hdr =
        hdrhistogram::Histogram::<u64>::new_with_bounds(1, u64::from(u32::MAX), 3).expect("bounds");
    let counter = AtomicU64::new(0);
    let mut g = c.benchmark_group("histogram");
    g.bench_function("fusebox_record", |b| {
        b.iter_custom(|n| {
            let t = Instant::now();
            for i in 0..n {
                fb.record(black_box(values[i as usize & (LEN - 1)]));
            }
            t.elapsed()
        });
    });
    g.bench_function("hdrhistogram_record", |b| {
        b.iter_custom(|n| {
            let t = Instant::now();
            for i in 0..n {
                hdr.record(black_box(values[i as usize & (LEN - 1)]))
                    .expect("in range");
            }
            t.elapsed()
        });
    });
    g.bench_function("atomic_counter", |b| {
        b.iter_custom(|n| {
            let t = Instant::now();
            for i in 0..n {
                counter.fetch_add(black_box(values[i as usize & (LEN - 1)]), Relaxed);
            }
            t.elapsed()
        });
    });
    g.finish();

    let mut g = c.benchmark_group("histogram_2t");
    g.bench_function("fusebox_record", |b| {
        b.iter_custom(|n| {
            pair(n, |t, n| {
                for i in 0..n {
                    let v = values[(i as usize + t * LEN / 2) & (LEN - 1)];
                    black_box(&fb).record(black_box(v));
                }
            })
        });
    });
    g.bench_function("atomic_counter", |b| {
        b.iter_custom(|n| {
            pair(n, |t, n| {
                for i in 0..n {
                    let v = values[(i as usize + t * LEN / 2) & (LEN - 1)];
                    counter.fetch_add(black_box(v), Relaxed);
                }
            })
        });
    });
    g.finish();

    // What a Prometheus scrape or a fleet merge costs: `fb` now holds
    // every value recorded above.
    note("histogram.nonempty_buckets", fb.buckets().count());
    let mut g = c.benchmark_group("histogram_read");
    g.bench_function("fusebox_buckets", |b| {
        b.iter(|| black_box(&fb).buckets().fold(0, |n, b| n + b.count));
    });
    g.bench_function("fusebox_sum", |b| b.iter(|| black_box(&fb).sum()));
    let into: Box<Histogram> = Box::new(Histogram::new());
    // Reset first (3 328 stores), so that the counts never saturate.
    g.bench_function("fusebox_reset_merge_buckets", |b| {
        b.iter(|| {
            into.reset();
            black_box(&into).merge_buckets(fb.buckets()).is_ok()
        });
    });
    g.finish();
}
