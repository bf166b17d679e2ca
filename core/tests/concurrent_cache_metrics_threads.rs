//! `ConcurrentCache`'s counters under racing threads (`CacheMetrics`:
//! "hits ... misses ... only when lookups are counted", "inserts: entries
//! stored, new keys and replacements alike", "contended: writes given up
//! because another writer held the set"): four threads insert, get and
//! remove over a key space four times the capacity, in few sets so that
//! writers collide, and tally what each call returned. Afterwards the
//! counters equal the tallies exactly, evictions never exceed the inserts,
//! and every value read belongs to its key (values carry their key).
#![cfg(not(miri))]

use std::sync::Barrier;
use std::thread;

use fusebox::cache::{ConcurrentCache, Contended};

use crate::common::Rng;

const THREADS: u64 = 4;
const OPS: usize = 100_000;

#[derive(Default)]
struct Tally {
    hits: u64,
    misses: u64,
    inserts: u64,
    contended: u64,
}

#[test]
fn counters_equal_what_the_calls_returned() {
    let cache: ConcurrentCache<u32, [u32; 2], 4, 4> = ConcurrentCache::new().with_lookup_counters();
    let barrier = Barrier::new(THREADS as usize);
    let tallies: Vec<Tally> = thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (cache, barrier) = (&cache, &barrier);
                s.spawn(move || {
                    let mut rng = Rng((t + 7).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                    let mut tally = Tally::default();
                    barrier.wait();
                    for i in 0..OPS as u32 {
                        let key = rng.below(64) as u32;
                        match rng.below(4) {
                            0 | 1 => match cache.get(&key) {
                                Some(v) => {
                                    assert_eq!(v[0], key, "a value stored under another key");
                                    tally.hits += 1;
                                }
                                None => tally.misses += 1,
                            },
                            2 => match cache.insert(key, [key, i]) {
                                Ok(()) => tally.inserts += 1,
                                Err(Contended) => tally.contended += 1,
                            },
                            _ => match cache.remove(&key) {
                                Ok(Some(v)) => assert_eq!(v[0], key),
                                Ok(None) => {}
                                Err(Contended) => tally.contended += 1,
                            },
                        }
                    }
                    tally
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let sum = |f: fn(&Tally) -> u64| tallies.iter().map(f).sum::<u64>();
    let m = cache.metrics();
    assert_eq!(m.hits, sum(|t| t.hits));
    assert_eq!(m.misses, sum(|t| t.misses));
    assert_eq!(m.inserts, sum(|t| t.inserts));
    assert_eq!(m.contended, sum(|t| t.contended));
    assert!(m.evictions <= m.inserts, "{m:?}");
    assert_eq!(m.expirations, 0);
}
