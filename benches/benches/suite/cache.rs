//! Caches on one pre-generated Zipf(1) key stream over 2 × capacity:
//! `ConcurrentCache` against quick_cache and moka (get on a warmed cache,
//! mostly hits, and insert), on one thread and on two pinned threads
//! sharing the cache; `LruCache` against lru-rs (single owner). Hit ratios
//! of the get stream go to the notes.
use std::hint::black_box;
use std::num::NonZeroUsize;
use std::time::Instant;

use criterion::Criterion;
use fusebox::{ConcurrentCache, LruCache};
use fusebox_benches::{note, pair, zipf_keys};

const CAP: usize = 4096;
const LEN: usize = 1 << 16;
type Fb = ConcurrentCache<u64, u64, 512, 8>;

/// Get and insert, behind one interface for the concurrent caches.
trait Shared: Sync {
    fn get(&self, k: u64) -> Option<u64>;
    fn insert(&self, k: u64, v: u64);
}
impl Shared for Fb {
    fn get(&self, k: u64) -> Option<u64> {
        ConcurrentCache::get(self, &k)
    }
    fn insert(&self, k: u64, v: u64) {
        let _ = ConcurrentCache::insert(self, k, v);
    }
}
impl Shared for quick_cache::sync::Cache<u64, u64> {
    fn get(&self, k: u64) -> Option<u64> {
        quick_cache::sync::Cache::get(self, &k)
    }
    fn insert(&self, k: u64, v: u64) {
        quick_cache::sync::Cache::insert(self, k, v);
    }
}
impl Shared for moka::sync::Cache<u64, u64> {
    fn get(&self, k: u64) -> Option<u64> {
        moka::sync::Cache::get(self, &k)
    }
    fn insert(&self, k: u64, v: u64) {
        moka::sync::Cache::insert(self, k, v);
    }
}

/// Warms `cache` with get-or-insert passes, then returns the hit ratio of
/// one get pass over the stream.
#[allow(clippy::cast_precision_loss, reason = "a ratio")]
fn warm<C: Shared + ?Sized>(cache: &C, keys: &[u64]) -> f64 {
    for _ in 0..3 {
        for &k in keys {
            if cache.get(k).is_none() {
                cache.insert(k, k);
            }
        }
    }
    keys.iter().filter(|&&k| cache.get(k).is_some()).count() as f64 / keys.len() as f64
}

fn run<C: Shared + ?Sized>(cache: &C, keys: &[u64], from: u64, n: u64, insert: bool) {
    for i in from..from + n {
        let k = keys[i as usize & (LEN - 1)];
        if insert {
            cache.insert(black_box(k), k);
        } else {
            black_box(cache.get(black_box(k)));
        }
    }
}

pub fn bench(c: &mut Criterion) {
    let keys = zipf_keys(2 * CAP, LEN, 3);
    let fb = Fb::new_boxed();
    let mut fb_counted = Fb::new_boxed();
    fb_counted.set_lookup_counters(true);
    let qc = quick_cache::sync::Cache::<u64, u64>::new(CAP);
    let mk = moka::sync::Cache::<u64, u64>::new(CAP as u64);
    let caches: [(&str, &dyn Shared); 4] = [
        ("fusebox", &*fb),
        ("fusebox_with_lookup_counters", &*fb_counted),
        ("quick_cache", &qc),
        ("moka", &mk),
    ];
    for (name, cache) in caches {
        note(
            &format!("hit_ratio.concurrent.{name}"),
            format!("{:.4}", warm(cache, &keys)),
        );
    }
    for (group, insert) in [("concurrent_get", false), ("concurrent_insert", true)] {
        let mut g = c.benchmark_group(group);
        for (name, cache) in caches {
            g.bench_function(name, |b| {
                b.iter_custom(|n| {
                    let t = Instant::now();
                    run(cache, &keys, 0, n, insert);
                    t.elapsed()
                });
            });
        }
        g.finish();
    }
    let mut g = c.benchmark_group("concurrent_get_2t");
    for (name, cache) in caches {
        warm(cache, &keys);
        g.bench_function(name, |b| {
            b.iter_custom(|n| {
                pair(n, |t, n| {
                    run(cache, &keys, t as u64 * (LEN as u64 / 2), n, false);
                })
            });
        });
    }
    // Control: the same work on two private caches, nothing shared.
    let private: [Box<Fb>; 2] = [Fb::new_boxed(), Fb::new_boxed()];
    for cache in &private {
        warm(&**cache, &keys);
    }
    g.bench_function("control_private_caches", |b| {
        b.iter_custom(|n| {
            pair(n, |t, n| {
                run(&*private[t], &keys, t as u64 * (LEN as u64 / 2), n, false);
            })
        });
    });
    g.finish();
    lru_bench(c, &keys);
}

#[allow(clippy::cast_precision_loss, reason = "a ratio")]
fn lru_bench(c: &mut Criterion, keys: &[u64]) {
    let mut fb = LruCache::<u64, u64, CAP>::new_boxed();
    let mut lr = lru::LruCache::<u64, u64>::new(NonZeroUsize::new(CAP).expect("non-zero"));
    for _ in 0..3 {
        for &k in keys {
            if fb.get(&k).is_none() {
                fb.put(k, k);
            }
            if lr.get(&k).is_none() {
                lr.put(k, k);
            }
        }
    }
    let len = keys.len() as f64;
    note(
        "hit_ratio.lru.fusebox",
        format!(
            "{:.4}",
            keys.iter().filter(|k| fb.get(k).is_some()).count() as f64 / len
        ),
    );
    note(
        "hit_ratio.lru.lru_rs",
        format!(
            "{:.4}",
            keys.iter().filter(|k| lr.get(k).is_some()).count() as f64 / len
        ),
    );
    let key = |i: u64| keys[i as usize & (LEN - 1)];
    let mut g = c.benchmark_group("lru_get");
    g.bench_function("fusebox", |b| {
        b.iter_custom(|n| {
            let t = Instant::now();
            for i in 0..n {
                black_box(fb.get(&black_box(key(i))));
            }
            t.elapsed()
        });
    });
    g.bench_function("lru_rs", |b| {
        b.iter_custom(|n| {
            let t = Instant::now();
            for i in 0..n {
                black_box(lr.get(&black_box(key(i))));
            }
            t.elapsed()
        });
    });
    g.finish();
    let mut g = c.benchmark_group("lru_put");
    g.bench_function("fusebox", |b| {
        b.iter_custom(|n| {
            let t = Instant::now();
            for i in 0..n {
                black_box(fb.put(black_box(key(i)), i));
            }
            t.elapsed()
        });
    });
    g.bench_function("lru_rs", |b| {
        b.iter_custom(|n| {
            let t = Instant::now();
            for i in 0..n {
                black_box(lr.put(black_box(key(i)), i));
            }
            t.elapsed()
        });
    });
    g.finish();
}
