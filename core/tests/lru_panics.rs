//! `LruCache` with keys whose `Hash` or `Eq` panic, and values whose `Drop`
//! (or `Clone`) panics: after the panic is caught the cache is still whole (its
//! entries, order and length as before the failed call) and its counters
//! count only what happened — `inserts` is "entries stored"
//! (`CacheMetrics` docs), so a `put` that panicked before storing anything
//! is not one.

use std::cell::Cell;
use std::hash::{Hash, Hasher};
use std::panic::{catch_unwind, AssertUnwindSafe};

use fusebox::cache::{CacheMetrics, Displaced, LruCache};
use fusebox::{Duration, Instant};

thread_local! {
    /// Panic in `Hash` of the key with this id.
    static PANIC_HASH: Cell<Option<u32>> = const { Cell::new(None) };
    /// Panic in `Eq` comparisons involving the key with this id.
    static PANIC_EQ: Cell<Option<u32>> = const { Cell::new(None) };
}

#[derive(Clone, Copy, Debug)]
struct Key(u32);

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        assert!(
            PANIC_HASH.with(Cell::get) != Some(self.0),
            "hash of {}",
            self.0
        );
        // Two hashes only: long chains, so `Eq` runs on most lookups.
        (self.0 & 1).hash(state);
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        let bad = PANIC_EQ.with(Cell::get);
        assert!(
            bad != Some(self.0) && bad != Some(other.0),
            "eq of {} and {}",
            self.0,
            other.0
        );
        self.0 == other.0
    }
}

impl Eq for Key {}

thread_local! {
    /// Drops of [`Bomb`]s on this test's thread.
    static DROPS: Cell<u32> = const { Cell::new(0) };
}

/// A value whose `Drop` panics if it holds `true`; every drop is counted
/// in [`DROPS`].
struct Bomb(bool);

impl Drop for Bomb {
    fn drop(&mut self) {
        DROPS.with(|d| d.set(d.get() + 1));
        assert!(!self.0, "boom");
    }
}

fn contents<const N: usize>(cache: &LruCache<Key, u32, N>) -> Vec<(u32, u32)> {
    cache.iter().map(|(k, v)| (k.0, *v)).collect()
}

fn full_cache() -> LruCache<Key, u32, 4> {
    let mut cache = LruCache::new();
    for k in 0..4 {
        cache.put(Key(k), k * 10);
    }
    cache
}

/// `put` whose key panics while being hashed, or compared, or whose
/// eviction victim panics while being hashed: nothing stored, nothing
/// counted, the cache unchanged and usable.
#[test]
fn a_put_that_panics_stores_and_counts_nothing() {
    // (what panics, the key put, the key whose `Hash`, and whose `Eq`, panics)
    let cases = [
        ("the new key's Hash", 9, Some(9), None),
        ("Eq against the new key", 8, None, Some(8)),
        // A full cache evicts key 0 (least recent) and rehashes it.
        ("the victim's Hash", 7, Some(0), None),
    ];
    for (what, key, bad_hash, bad_eq) in cases {
        let mut cache = full_cache();
        let before = (contents(&cache), cache.metrics());
        PANIC_HASH.with(|c| c.set(bad_hash));
        PANIC_EQ.with(|c| c.set(bad_eq));
        let result = catch_unwind(AssertUnwindSafe(|| cache.put(Key(key), 1)));
        PANIC_HASH.with(|c| c.set(None));
        PANIC_EQ.with(|c| c.set(None));
        assert!(result.is_err(), "{what}: expected a panic");
        assert_eq!((contents(&cache), cache.metrics()), before, "{what}");
        // Still usable: the same put now succeeds, evicting key 0.
        assert_eq!(
            cache.put(Key(key), 1),
            Some(Displaced::Evicted(Key(0), 0)),
            "{what}"
        );
        assert_eq!(cache.get(&Key(key)), Some(&1), "{what}");
        assert_eq!(cache.len(), 4, "{what}");
        let m = cache.metrics();
        assert_eq!((m.inserts, m.evictions), (5, 1), "{what}");
    }
}

/// A lookup whose `Eq` panics counts no hit or miss and moves nothing.
#[test]
fn a_get_that_panics_counts_and_promotes_nothing() {
    let mut cache = full_cache();
    let before = (contents(&cache), cache.metrics());
    PANIC_EQ.with(|c| c.set(Some(2)));
    let result = catch_unwind(AssertUnwindSafe(|| cache.get(&Key(2)).copied()));
    PANIC_EQ.with(|c| c.set(None));
    assert!(result.is_err());
    assert_eq!((contents(&cache), cache.metrics()), before);
    assert_eq!(cache.get(&Key(2)), Some(&20));
    assert_eq!(
        cache.metrics(),
        CacheMetrics {
            hits: 1,
            ..before.1
        }
    );
}

/// A value whose `Drop` panics, dropped by `clear`: the cache is empty
/// afterwards and works; the other values are dropped exactly once.
#[test]
fn clear_with_a_value_whose_drop_panics_leaves_an_empty_working_cache() {
    let mut cache: LruCache<u32, Bomb, 4> = LruCache::new();
    for k in 0..4 {
        cache.put(k, Bomb(k == 1));
    }
    let result = catch_unwind(AssertUnwindSafe(|| cache.clear()));
    assert!(result.is_err());
    assert!(cache.is_empty());
    assert_eq!(cache.iter().count(), 0);
    for k in 10..14 {
        assert!(cache.put(k, Bomb(false)).is_none());
    }
    assert_eq!(cache.len(), 4);
    drop(cache);
    // 4 bombs and 4 duds, each dropped once.
    assert_eq!(DROPS.with(Cell::get), 8);
}

/// Two values whose `Drop` panics, dropped by `clear`: the first panic
/// leaves later entries in their nodes, to be dropped when a `put` reuses
/// them. Found by a hostile review: that `put` stored its entry in the
/// recency list (`iter` and `len` showed it) but, when the leftover's
/// `Drop` panicked, not in the hash index, so `get`, `contains` and
/// `remove` never found the key again (key 13 below).
#[test]
fn a_put_reusing_a_node_a_panicking_clear_left_keeps_its_entry_findable() {
    let mut cache: LruCache<u32, Bomb, 4> = LruCache::new();
    for k in 0..4 {
        cache.put(k, Bomb(k == 1 || k == 3));
    }
    assert!(catch_unwind(AssertUnwindSafe(|| cache.clear())).is_err());
    assert!(cache.is_empty());
    // Keys 0 and 1 dropped; 2 and 3 wait in their nodes.
    assert_eq!(DROPS.with(Cell::get), 2);
    let mut panicked = Vec::new();
    for k in 10..14 {
        if catch_unwind(AssertUnwindSafe(|| cache.put(k, Bomb(false)))).is_err() {
            panicked.push(k);
        }
    }
    // The put reusing key 3's node met its panicking `Drop`, after storing.
    assert_eq!(panicked.len(), 1);
    assert_eq!(DROPS.with(Cell::get), 4);
    assert_eq!(cache.len(), 4);
    let listed: Vec<u32> = cache.iter().map(|(k, _)| *k).collect();
    assert_eq!(listed, [13, 12, 11, 10]);
    for k in listed {
        assert!(cache.contains(&k), "key {k} is listed but not found");
        assert!(cache.get(&k).is_some(), "key {k}");
    }
    let m = cache.metrics();
    assert_eq!((m.inserts, m.hits, m.misses), (8, 4, 0));
    assert!(cache.remove(&13).is_some());
    assert_eq!(cache.len(), 3);
    drop(cache);
    assert_eq!(DROPS.with(Cell::get), 8);
}

/// A value whose `Drop` panics if it holds `true`.
struct TtlBomb(bool);

impl Drop for TtlBomb {
    fn drop(&mut self) {
        assert!(!self.0, "boom");
    }
}

type TtlCache = LruCache<u32, TtlBomb, 4>;
/// A timed lookup of key 1.
type Lookup = fn(&mut TtlCache, Instant);

/// An expired value whose `Drop` panics, freed by a timed lookup or a
/// purge: the freeing is counted (in `expirations`, and the lookup as a
/// miss) before the value is dropped. Found by a hostile review: the
/// counters were bumped after the drop, so the entry was gone but neither
/// `expirations` nor `misses` said so (both 0 below).
#[test]
fn an_expired_value_whose_drop_panics_is_counted_when_freed() {
    let ttl = Duration::from_secs(1);
    let later = Instant::from_secs(2);
    let lookups: [(&str, Lookup); 3] = [
        ("get_at", |c, t| assert!(c.get_at(&1, t).is_none())),
        ("peek_at", |c, t| assert!(c.peek_at(&1, t).is_none())),
        ("contains_at", |c, t| assert!(!c.contains_at(&1, t))),
    ];
    for (what, lookup) in lookups {
        let mut cache: TtlCache = LruCache::new();
        cache.put_with_ttl(1, TtlBomb(true), ttl, Instant::ZERO);
        let result = catch_unwind(AssertUnwindSafe(|| lookup(&mut cache, later)));
        assert!(result.is_err(), "{what}");
        assert!(cache.is_empty(), "{what}");
        let m = cache.metrics();
        let miss = u64::from(what == "get_at");
        assert_eq!((m.expirations, m.misses, m.hits), (1, miss, 0), "{what}");
    }
    // A purge stops at the panicking entry, which it freed and counted.
    let mut cache: TtlCache = LruCache::new();
    cache.put_with_ttl(1, TtlBomb(false), ttl, Instant::ZERO);
    cache.put_with_ttl(2, TtlBomb(true), ttl, Instant::ZERO);
    cache.put_with_ttl(3, TtlBomb(false), ttl, Instant::ZERO);
    let result = catch_unwind(AssertUnwindSafe(|| cache.purge_expired(later)));
    assert!(result.is_err());
    assert_eq!(cache.metrics().expirations, 2, "keys 1 and 2 freed");
    assert_eq!(cache.len(), 1);
    assert_eq!(cache.purge_expired(later), 1);
    assert_eq!(cache.metrics().expirations, 3);
}

/// `Clone` of a cache whose value's `clone` panics partway: the clones
/// made so far are dropped once, the original keeps its entries and
/// order, and a later clone works. Sound: a review's check.
#[test]
fn a_clone_whose_value_clone_panics_leaks_nothing() {
    thread_local! {
        static LIVE: Cell<i64> = const { Cell::new(0) };
        static CLONES_LEFT: Cell<u32> = const { Cell::new(u32::MAX) };
    }
    struct Counted(u32);
    impl Counted {
        fn new(v: u32) -> Self {
            LIVE.with(|l| l.set(l.get() + 1));
            Self(v)
        }
    }
    impl Clone for Counted {
        fn clone(&self) -> Self {
            let left = CLONES_LEFT.with(Cell::get);
            assert!(left > 0, "clone panics");
            CLONES_LEFT.with(|c| c.set(left - 1));
            Self::new(self.0)
        }
    }
    impl Drop for Counted {
        fn drop(&mut self) {
            LIVE.with(|l| l.set(l.get() - 1));
        }
    }
    let mut cache: LruCache<u32, Counted, 8> = LruCache::new();
    for k in 0..6 {
        cache.put(k, Counted::new(k));
    }
    cache.remove(&2);
    cache.get(&0);
    assert_eq!(LIVE.with(Cell::get), 5);
    CLONES_LEFT.with(|c| c.set(3));
    let result = catch_unwind(AssertUnwindSafe(|| cache.clone()));
    CLONES_LEFT.with(|c| c.set(u32::MAX));
    assert!(result.is_err());
    assert_eq!(LIVE.with(Cell::get), 5, "the 3 clones made were dropped");
    let copy = cache.clone();
    assert_eq!(LIVE.with(Cell::get), 10);
    let keys = |c: &LruCache<u32, Counted, 8>| c.iter().map(|(k, v)| (*k, v.0)).collect::<Vec<_>>();
    assert_eq!(keys(&cache), [(0, 0), (5, 5), (4, 4), (3, 3), (1, 1)]);
    assert_eq!(keys(&copy), keys(&cache));
    drop(copy);
    drop(cache);
    assert_eq!(LIVE.with(Cell::get), 0);
}
