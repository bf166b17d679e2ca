//! `ConcurrentCache` used from one thread, against a model written from its
//! rustdoc: with a single set (`SETS = 1`) the whole cache is one set of
//! `WAYS` slots in exact LRU order, so it must behave like an LRU list of
//! `WAYS` entries — `get` returns the value last inserted and not removed,
//! and promotes it; `insert` replaces (promoting) or evicts the least
//! recently used entry of a full set; `remove` takes the entry out. Counters
//! as documented on `CacheMetrics`. Long seeded histories over a few
//! hundred keys, so the 8-bit tags collide all the time.
#![cfg(not(miri))]

use std::collections::VecDeque;

use fusebox::cache::{CacheMetrics, ConcurrentCache};

use crate::common::SplitMix;

/// Most recently used first; at most `ways` entries.
struct Model {
    ways: usize,
    entries: VecDeque<(u64, u64)>,
    metrics: CacheMetrics,
}

impl Model {
    fn position(&self, k: u64) -> Option<usize> {
        self.entries.iter().position(|&(key, _)| key == k)
    }

    fn get(&mut self, k: u64) -> Option<u64> {
        let Some(p) = self.position(k) else {
            self.metrics.misses += 1;
            return None;
        };
        let e = self.entries.remove(p).unwrap();
        self.entries.push_front(e);
        self.metrics.hits += 1;
        Some(e.1)
    }

    fn insert(&mut self, k: u64, v: u64) {
        self.metrics.inserts += 1;
        if let Some(p) = self.position(k) {
            self.entries.remove(p);
        } else if self.entries.len() == self.ways {
            self.entries.pop_back();
            self.metrics.evictions += 1;
        }
        self.entries.push_front((k, v));
    }

    fn remove(&mut self, k: u64) -> Option<u64> {
        let p = self.position(k)?;
        self.entries.remove(p).map(|(_, v)| v)
    }
}

fn run<const WAYS: usize>(seed: u64, steps: usize, keys: u64) {
    let cache: ConcurrentCache<u64, u64, 1, WAYS> = ConcurrentCache::new().with_lookup_counters();
    let mut model = Model {
        ways: WAYS,
        entries: VecDeque::new(),
        metrics: CacheMetrics::default(),
    };
    let mut rng = SplitMix(seed);
    for step in 0..steps {
        let r = rng.next();
        // Mostly keys already cached (hits, promotions, replacements),
        // sometimes any of `keys` (misses, evictions, tag collisions).
        let k = if r % 3 != 0 && !model.entries.is_empty() {
            model.entries[(r >> 8) as usize % model.entries.len()].0
        } else {
            (r >> 8) % keys
        };
        let v = rng.next();
        let what = match (r >> 40) % 8 {
            0..=3 => {
                let got = cache.get(&k);
                assert_eq!(got, model.get(k), "seed {seed} step {step}: get({k})");
                "get"
            }
            4..=6 => {
                cache.insert(k, v).expect("one thread: never contended");
                model.insert(k, v);
                "insert"
            }
            _ => {
                let got = cache.remove(&k).expect("one thread: never contended");
                assert_eq!(got, model.remove(k), "seed {seed} step {step}: remove({k})");
                "remove"
            }
        };
        assert_eq!(
            cache.metrics(),
            model.metrics,
            "seed {seed} step {step}: metrics after {what}({k})"
        );
    }
    // Every entry the model holds is in the cache, and no other.
    for k in 0..keys {
        let expected = model.position(k).map(|p| model.entries[p].1);
        assert_eq!(cache.get(&k), expected, "seed {seed}: final get({k})");
        if expected.is_some() {
            model.get(k);
        }
    }
}

const STEPS: usize = 20_000;

#[test]
fn one_way() {
    for seed in 0..8 {
        run::<1>(seed, STEPS, 300);
    }
}

#[test]
fn two_ways() {
    for seed in 0..8 {
        run::<2>(seed, STEPS, 300);
    }
}

#[test]
fn three_ways() {
    for seed in 0..8 {
        run::<3>(seed, STEPS, 300);
    }
}

#[test]
fn four_ways() {
    for seed in 0..8 {
        run::<4>(seed, STEPS, 300);
    }
}

#[test]
fn seven_ways() {
    for seed in 0..8 {
        run::<7>(seed, STEPS, 300);
    }
}

#[test]
fn eight_ways() {
    for seed in 0..8 {
        run::<8>(seed, STEPS, 300);
    }
}

#[test]
fn eight_ways_few_keys() {
    for seed in 0..8 {
        run::<8>(seed, STEPS, 10);
    }
}
