//! `ConcurrentCache` with keys whose `Hash` is not stable (it changes on
//! every call) or disagrees with `Eq` (equal keys, different hashes): a
//! logic error of the key type, after which the cache may miss a key or
//! hold it twice, but must never return a value stored under a key that
//! is not equal to the one asked for, never panic, and never read a slot
//! it did not validate (the unsafe reads run under Miri with the small
//! variant). Sound: a review's check, no defect found.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;

use fusebox::cache::ConcurrentCache;

const OPS: u32 = if cfg!(miri) { 300 } else { 200_000 };

/// Bumped by every hash of a [`Drifting`] key.
static DRIFT: AtomicU64 = AtomicU64::new(0);

/// A key whose hash changes every 64 hashes (of any key): stable long
/// enough for some hits, then stored keys move to other sets and tags.
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::NoUninit)]
#[repr(transparent)]
struct Drifting(u32);

impl Hash for Drifting {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
        (DRIFT.fetch_add(1, Ordering::Relaxed) >> 6).hash(state);
    }
}

/// A key equal to another of the same `id / 4` but hashed by its whole
/// `id`: equal keys land in different sets, with different tags.
#[derive(Clone, Copy, Debug, bytemuck::NoUninit)]
#[repr(transparent)]
struct Coarse(u32);

impl Hash for Coarse {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl PartialEq for Coarse {
    fn eq(&self, other: &Self) -> bool {
        self.0 / 4 == other.0 / 4
    }
}

impl Eq for Coarse {}

fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// Random inserts, gets and removes of 16 ids; every value is `[id,
/// version]`, and any value returned must come from a key equal (by
/// `same`) to the one asked for. Returns the inserts that succeeded.
fn history<K, const SETS: usize, const WAYS: usize>(
    cache: &ConcurrentCache<K, [u32; 2], SETS, WAYS>,
    seed: u64,
    key: impl Fn(u32) -> K,
    same: impl Fn(u32, u32) -> bool,
) -> u64
where
    K: Copy + Eq + Hash + bytemuck::NoUninit,
{
    let mut x = seed | 1;
    let mut stored = 0;
    for version in 0..OPS {
        let r = xorshift(&mut x);
        let id = (r >> 8) as u32 % 16;
        match r % 8 {
            0..=2 => {
                if cache.insert(key(id), [id, version]).is_ok() {
                    stored += 1;
                }
            }
            3 => {
                if let Ok(Some([got, _])) = cache.remove(&key(id)) {
                    assert!(same(id, got), "remove({id}) returned id {got}'s value");
                }
            }
            _ => {
                if let Some([got, _]) = cache.get(&key(id)) {
                    assert!(same(id, got), "get({id}) returned id {got}'s value");
                }
            }
        }
    }
    stored
}

#[test]
fn a_drifting_hash_never_yields_another_keys_value() {
    let cache: ConcurrentCache<Drifting, [u32; 2], 4, 4> =
        ConcurrentCache::new().with_lookup_counters();
    let stored = history(&cache, 7, Drifting, |a, b| a == b);
    let m = cache.metrics();
    assert_eq!(m.inserts, stored);
    assert_eq!(m.contended, 0, "one thread: no writer ever waits");
    assert!(m.evictions <= m.inserts);
    if !cfg!(miri) {
        assert!(m.hits > 0 && m.misses > 0, "{m:?}");
    }
    // Still a working cache for keys with a sane hash in its own type.
    let sane: ConcurrentCache<u32, u32, 4, 4> = ConcurrentCache::new();
    sane.insert(1, 1).unwrap();
    assert_eq!(sane.get(&1), Some(1));
}

#[test]
fn equal_keys_with_different_hashes_never_yield_an_unequal_keys_value() {
    let cache: ConcurrentCache<Coarse, [u32; 2], 4, 2> =
        ConcurrentCache::new().with_lookup_counters();
    let stored = history(&cache, 11, Coarse, |a, b| a / 4 == b / 4);
    let m = cache.metrics();
    assert_eq!((m.inserts, m.contended), (stored, 0));
    assert!(m.evictions <= m.inserts);
    if !cfg!(miri) {
        assert!(m.hits > 0 && m.misses > 0, "{m:?}");
    }
}

/// Both kinds at once from threads: writers contend, readers race them;
/// the same checks hold for every value any thread sees.
#[test]
fn hostile_keys_from_threads() {
    let drifting: ConcurrentCache<Drifting, [u32; 2], 2, 4> = ConcurrentCache::new();
    let coarse: ConcurrentCache<Coarse, [u32; 2], 2, 4> = ConcurrentCache::new();
    let stored = thread::scope(|s| {
        let handles: Vec<_> = (0..4u64)
            .map(|t| {
                let (drifting, coarse) = (&drifting, &coarse);
                s.spawn(move || {
                    history(drifting, 3 + t, Drifting, |a, b| a == b)
                        + history(coarse, 5 + t, Coarse, |a, b| a / 4 == b / 4)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
    });
    let (d, c) = (drifting.metrics(), coarse.metrics());
    assert_eq!(d.inserts + c.inserts, stored);
    assert!(d.evictions <= d.inserts && c.evictions <= c.inserts);
}
