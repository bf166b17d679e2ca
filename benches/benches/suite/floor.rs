//! The floor: one relaxed `fetch_add`, one load + successful
//! `compare_exchange`, and a `std::time::Instant::now()` read; on one
//! thread and on two pinned threads sharing the word, plus the control
//! (independent words on two threads).
use std::hint::black_box;
use std::sync::atomic::{
    AtomicU64,
    Ordering::{AcqRel, Relaxed},
};
use std::time::Instant;

use criterion::Criterion;
use fusebox_benches::{pair, Padded};

/// A load and a CAS until it succeeds (once, without contention).
#[inline]
pub fn cas_inc(word: &AtomicU64) {
    let mut cur = word.load(Relaxed);
    while let Err(seen) = word.compare_exchange_weak(cur, cur + 1, AcqRel, Relaxed) {
        cur = seen;
    }
}

pub fn bench(c: &mut Criterion) {
    let word = AtomicU64::new(0);
    let mut g = c.benchmark_group("floor");
    g.bench_function("fetch_add", |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                black_box(word.fetch_add(1, Relaxed));
            }
            t.elapsed()
        });
    });
    g.bench_function("load+cas", |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                cas_inc(black_box(&word));
            }
            t.elapsed()
        });
    });
    g.bench_function("std_instant_now", |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                black_box(Instant::now());
            }
            t.elapsed()
        });
    });
    g.finish();

    let mut g = c.benchmark_group("floor_2t");
    g.bench_function("fetch_add", |b| {
        b.iter_custom(|iters| {
            pair(iters, |_, n| {
                for _ in 0..n {
                    black_box(word.fetch_add(1, Relaxed));
                }
            })
        });
    });
    g.bench_function("load+cas", |b| {
        b.iter_custom(|iters| {
            pair(iters, |_, n| {
                for _ in 0..n {
                    cas_inc(black_box(&word));
                }
            })
        });
    });
    let own = [Padded(AtomicU64::new(0)), Padded(AtomicU64::new(0))];
    g.bench_function("control_independent_fetch_add", |b| {
        b.iter_custom(|iters| {
            pair(iters, |t, n| {
                for _ in 0..n {
                    black_box(own[t].0.fetch_add(1, Relaxed));
                }
            })
        });
    });
    g.finish();
}
