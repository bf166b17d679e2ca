//! `ConcurrentCache` with many sets, used from one thread, against what its
//! rustdoc promises whatever set each key hashes to (the mapping is not
//! documented, so the model does not assume one; `concurrent_cache_contract`
//! models a single set exactly):
//!
//! * "A `get(k)` returns either `None` or a value `v` such that ... `v` was
//!   the value most recently inserted for `k` and not yet replaced or
//!   removed" — sequentially: a key never inserted, or removed and not
//!   inserted again, reads `None`; any other reads `None` or its last value;
//! * "exact LRU order inside each set", `insert` "evicting the set's least
//!   recently used entry if the set is full", `get` "marking it most
//!   recently used in its set": a key is evicted only by an insert of a new
//!   key into its set while it is that set's least recently used entry, so
//!   only after at least `WAYS` *other* keys were inserted or hit since it
//!   was last inserted or hit. A key touched more recently than that must
//!   still be found;
//! * `remove` returns the value a `get` would have (the last inserted, if
//!   the entry is still there) and takes the entry out;
//! * the counters (`CacheMetrics`): `inserts` counts every insert ("new
//!   keys and replacements of an existing key alike"), `hits`/`misses`
//!   every lookup when counted, `contended` stays 0 with one thread, and at
//!   the end the entries found are the inserts of absent keys less the
//!   evictions and the removals.
//!
//! 14 histories of 30 000 operations: 2 to 64 sets of 1 to 8 ways, over a
//! key space three times the capacity (tags of 8 bits collide all the
//! time), with the fixed-seed hasher and a seeded one.
#![cfg(not(miri))]

use crate::common::Rng;
use fusebox::cache::ConcurrentCache;

const STEPS: usize = 30_000;

struct Model {
    /// The value last inserted for each key and not removed since.
    value: Vec<Option<[u32; 2]>>,
    /// When each key was last inserted or hit (0: never).
    touched: Vec<u64>,
    clock: u64,
}

impl Model {
    fn touch(&mut self, k: usize) {
        self.clock += 1;
        self.touched[k] = self.clock;
    }
    /// Whether fewer than `ways` other keys were touched since `k` was.
    fn must_be_present(&self, k: usize, ways: usize) -> bool {
        self.value[k].is_some()
            && self
                .touched
                .iter()
                .filter(|&&t| t > self.touched[k])
                .count()
                < ways
    }
}

fn history<const SETS: usize, const WAYS: usize>(seed: u64, seeded_hasher: bool) {
    let mut rng = Rng(seed | 1);
    let cache: ConcurrentCache<u32, [u32; 2], SETS, WAYS> = if seeded_hasher {
        ConcurrentCache::new()
            .with_seed(seed)
            .with_lookup_counters()
    } else {
        ConcurrentCache::new().with_lookup_counters()
    };
    let keys = 3 * SETS * WAYS;
    let mut m = Model {
        value: vec![None; keys],
        touched: vec![0; keys],
        clock: 0,
    };
    let (mut inserts, mut lookups, mut hits) = (0u64, 0u64, 0u64);
    let (mut new_inserts, mut removed) = (0u64, 0u64);
    for i in 0..STEPS {
        let k = rng.below(keys as u64) as usize;
        let key = k as u32;
        let ctx = format!("seed {seed} SETS {SETS} WAYS {WAYS} step {i} key {key}");
        let must = m.must_be_present(k, WAYS);
        match rng.below(10) {
            0..=3 => {
                // Whether the key is there before the insert: a `get`
                // answers it, and promotes it as the insert would.
                let there = cache.get(&key);
                lookups += 1;
                assert!(there.is_none() || there == m.value[k], "{ctx}: {there:?}");
                assert!(!must || there.is_some(), "{ctx}: evicted too early");
                if there.is_some() {
                    hits += 1;
                } else {
                    new_inserts += 1;
                }
                let v = [key, i as u32];
                assert_eq!(cache.insert(key, v), Ok(()), "{ctx}");
                inserts += 1;
                m.value[k] = Some(v);
                m.touch(k);
            }
            4 => {
                let got = cache.remove(&key);
                assert!(got == Ok(None) || got == Ok(m.value[k]), "{ctx}: {got:?}");
                assert!(
                    !must || got.is_ok_and(|v| v.is_some()),
                    "{ctx}: evicted too early"
                );
                if got.is_ok_and(|v| v.is_some()) {
                    removed += 1;
                }
                m.value[k] = None;
            }
            _ => {
                let got = cache.get(&key);
                lookups += 1;
                assert!(got.is_none() || got == m.value[k], "{ctx}: {got:?}");
                assert!(!must || got.is_some(), "{ctx}: evicted too early");
                if got.is_some() {
                    hits += 1;
                    m.touch(k);
                }
            }
        }
    }
    let metrics = cache.metrics();
    let want = (inserts, hits, lookups - hits, 0);
    let got = (
        metrics.inserts,
        metrics.hits,
        metrics.misses,
        metrics.contended,
    );
    assert_eq!(got, want, "seed {seed} SETS {SETS} WAYS {WAYS}");
    assert!(metrics.evictions <= new_inserts);
    let found = (0..keys as u32).filter(|k| cache.get(k).is_some()).count() as u64;
    assert_eq!(
        found,
        new_inserts - metrics.evictions - removed,
        "seed {seed} SETS {SETS} WAYS {WAYS}: entries found"
    );
    assert!(found <= (SETS * WAYS) as u64);
    assert!(
        metrics.evictions > 0,
        "seed {seed}: nothing was ever evicted"
    );
}

#[test]
fn one_way_sets() {
    history::<2, 1>(1, false);
    history::<64, 1>(2, true);
}

#[test]
fn two_and_three_way_sets() {
    history::<2, 2>(3, false);
    history::<16, 2>(4, true);
    history::<8, 3>(5, false);
    history::<32, 3>(6, true);
}

#[test]
fn four_way_sets() {
    history::<2, 4>(7, true);
    history::<16, 4>(8, false);
    history::<64, 4>(9, true);
}

#[test]
fn eight_way_sets() {
    history::<2, 8>(10, false);
    history::<4, 8>(11, true);
    history::<16, 8>(12, false);
    history::<32, 8>(13, true);
    history::<64, 8>(14, false);
}
