//! Unit tests: every method and edge, with the internal invariants checked
//! after each mutation.

extern crate std;

use core::cell::Cell;
use core::hash::{Hash, Hasher};
use std::format;
use std::vec::Vec;

use super::list::Links;
use super::*;
use crate::Duration;

const T0: Instant = Instant::from_secs(100);
const SEC: Duration = Duration::from_secs(1);
const US: Duration = Duration::from_micros(1);

/// Checks every structural invariant: recency list, free list, never-used
/// tail, hash chains and `len`.
fn check<K: Hash + Eq, V, const N: usize>(c: &LruCache<K, V, N>) {
    let list = &c.list;
    let fresh = usize::from(list.fresh);
    let len = c.len();
    assert!(fresh <= N && len <= fresh);
    for i in fresh..N {
        assert!(c.entries[i].is_none());
        assert_eq!(list.links[i], Links::NONE);
        assert_eq!(c.index.chain[i], NIL);
    }
    // Recency list, both directions: exactly the occupied nodes.
    let mut seen = [false; N];
    let (mut i, mut prev, mut count) = (list.head, NIL, 0);
    while i != NIL {
        let at = usize::from(i);
        assert!(at < fresh, "listed node past the high-water mark");
        assert!(!seen[at], "cycle in the recency list");
        seen[at] = true;
        assert!(c.entries[at].is_some(), "vacant node on the recency list");
        assert_eq!(list.links[at].prev, prev);
        prev = i;
        i = list.links[at].next;
        count += 1;
    }
    assert_eq!(list.tail, prev);
    assert_eq!(count, len);
    assert_eq!(usize::from(list.len), len);
    // Free list: exactly the vacant nodes below the high-water mark.
    let (mut i, mut free) = (list.free, 0);
    while i != NIL {
        let at = usize::from(i);
        assert!(at < fresh);
        assert!(!seen[at], "node both listed and free");
        seen[at] = true;
        assert!(c.entries[at].is_none());
        assert_eq!(c.index.chain[at], NIL, "free node in a chain");
        i = list.links[at].next;
        free += 1;
    }
    assert_eq!(len + free, fresh);
    // Hash chains: every entry exactly once, in its own bucket.
    let mut chained = 0;
    for (b, &first) in c.index.heads.as_flattened().iter().enumerate() {
        let mut i = first;
        while i != NIL {
            let entry = c.entries[usize::from(i)]
                .as_ref()
                .expect("vacant node in a chain");
            assert_eq!(c.bucket_of(&entry.key), b);
            chained += 1;
            assert!(chained <= len, "cycle in a chain");
            i = c.index.chain[usize::from(i)];
        }
    }
    assert_eq!(chained, len);
}

/// The keys of bucket `b`'s chain, in chain order.
fn chain<K: Copy, V, const N: usize>(c: &LruCache<K, V, N>, b: usize) -> Vec<K> {
    let mut keys = Vec::new();
    let mut i = c.index.first(b);
    while i != NIL {
        keys.push(c.entries[usize::from(i)].as_ref().unwrap().key);
        i = c.index.chain[usize::from(i)];
    }
    keys
}

fn keys<K: Copy, V, const N: usize>(c: &LruCache<K, V, N>) -> Vec<K> {
    c.iter().map(|(k, _)| *k).collect()
}

fn filled<const N: usize>(keys: impl IntoIterator<Item = u32>) -> LruCache<u32, u32, N> {
    let mut c = LruCache::new();
    for k in keys {
        c.put(k, k * 10);
        check(&c);
    }
    c
}

fn metrics(hits: u64, misses: u64, inserts: u64, evictions: u64, expirations: u64) -> CacheMetrics {
    CacheMetrics {
        hits,
        misses,
        inserts,
        evictions,
        expirations,
        contended: 0,
    }
}

/// Equal and hashed by `id` only: shows which key object is stored.
#[derive(Clone, Copy, Debug)]
struct Tagged(u32, &'static str);
impl PartialEq for Tagged {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl Eq for Tagged {}
impl Hash for Tagged {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

/// Every key hashes the same: one bucket, one long chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Collide(u32);
impl Hash for Collide {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u8(0);
    }
}

/// Counts its drops.
struct Dropper<'a>(&'a Cell<u32>);
impl Drop for Dropper<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

#[test]
fn new_is_empty_and_const() {
    static CACHE: LruCache<u32, u32, 4> = LruCache::new();
    let c: LruCache<u32, u32, 4> = LruCache::default();
    for c in [&CACHE, &c] {
        check(c);
        assert_eq!(c.len(), 0);
        assert!(c.is_empty());
        assert_eq!(c.capacity(), 4);
        assert_eq!(c.iter().next(), None);
        assert_eq!(c.iter().next_back(), None);
        assert_eq!(c.peek(&1), None);
        assert!(!c.contains(&1));
        assert_eq!(c.metrics(), CacheMetrics::default());
    }
}

#[test]
fn capacity_one() {
    let mut c: LruCache<u32, u32, 1> = LruCache::new();
    assert_eq!(c.put(1, 10), None);
    check(&c);
    assert_eq!(c.get(&1), Some(&10));
    assert_eq!(c.put(1, 11), Some(Displaced::Replaced(1, 10)));
    check(&c);
    assert_eq!(c.put(2, 20), Some(Displaced::Evicted(1, 11)));
    check(&c);
    assert_eq!(keys(&c), [2]);
    assert_eq!(c.get(&1), None);
    assert_eq!(c.remove(&2), Some((2, 20)));
    check(&c);
    assert!(c.is_empty());
    assert_eq!(c.put(3, 30), None);
    check(&c);
    assert_eq!(keys(&c), [3]);
    assert_eq!(c.metrics(), metrics(1, 1, 4, 1, 0));
}

#[test]
fn replacing_returns_old_pair_and_stores_new_key() {
    let mut c: LruCache<Tagged, u32, 3> = LruCache::new();
    c.put(Tagged(1, "first"), 10);
    c.put(Tagged(2, "x"), 20);
    c.put(Tagged(3, "x"), 30);
    let old = c.put(Tagged(1, "second"), 11);
    check(&c);
    match old {
        Some(Displaced::Replaced(k, v)) => assert_eq!((k.1, v), ("first", 10)),
        other => panic!("expected a replacement, got {other:?}"),
    }
    assert_eq!(c.len(), 3, "a replacement evicts nothing");
    let (k, v) = c.iter().next().unwrap();
    assert_eq!(
        (k.0, k.1, *v),
        (1, "second", 11),
        "replaced entry is the MRU"
    );
    assert_eq!(c.metrics(), metrics(0, 0, 4, 0, 0));
}

#[test]
fn eviction_is_least_recently_used() {
    let mut c = filled::<3>([1, 2, 3]);
    assert_eq!(c.put(4, 40), Some(Displaced::Evicted(1, 10)));
    check(&c);
    c.get(&2); // order: 2 4 3
    assert_eq!(c.put(5, 50), Some(Displaced::Evicted(3, 30)));
    check(&c);
    *c.get_mut(&4).unwrap() += 1; // order: 4 5 2
    assert_eq!(keys(&c), [4, 5, 2]);
    assert_eq!(c.put(6, 60), Some(Displaced::Evicted(2, 20)));
    assert_eq!(c.put(7, 70), Some(Displaced::Evicted(5, 50)));
    assert_eq!(c.put(8, 80), Some(Displaced::Evicted(4, 41)));
    check(&c);
    assert_eq!(keys(&c), [8, 7, 6]);
    assert_eq!(c.metrics().evictions, 5);
}

/// The node of `key`, found by walking the list.
fn node_of<const N: usize>(c: &LruCache<u32, u32, N>, key: u32) -> Idx {
    let mut i = c.list.head;
    while c.entries[usize::from(i)].as_ref().unwrap().key != key {
        i = c.list.links[usize::from(i)].next;
    }
    i
}

#[test]
fn a_full_put_reuses_the_least_recently_used_node() {
    let mut c = filled::<4>([1, 2, 3, 4]);
    c.get(&1); // order: 1 4 3 2
    for (new, old) in [(5, 2), (6, 3), (7, 4), (8, 1)] {
        let lru = node_of(&c, old);
        assert_eq!(
            c.put(new, new * 10),
            Some(Displaced::Evicted(old, old * 10))
        );
        check(&c);
        assert_eq!(node_of(&c, new), lru, "the evicted node is reused in place");
        assert_eq!(c.list.head, lru);
        assert_eq!((c.list.free, c.list.fresh), (NIL, 4), "nothing freed");
    }
    assert_eq!(keys(&c), [8, 7, 6, 5]);
}

#[test]
fn get_and_get_mut_promote_and_count() {
    let mut c = filled::<3>([1, 2, 3]);
    assert_eq!(c.get(&1), Some(&10));
    assert_eq!(keys(&c), [1, 3, 2]);
    assert_eq!(c.get(&1), Some(&10)); // already the head
    assert_eq!(keys(&c), [1, 3, 2]);
    *c.get_mut(&2).unwrap() = 99;
    check(&c);
    assert_eq!(keys(&c), [2, 1, 3]);
    assert_eq!(c.peek(&2), Some(&99));
    assert_eq!(c.get(&4), None);
    assert_eq!(c.get_mut(&4), None);
    assert_eq!(c.metrics(), metrics(3, 2, 3, 0, 0));
}

#[test]
fn peek_and_contains_do_not_promote_or_count() {
    let mut c = filled::<3>([1, 2, 3]);
    assert_eq!(c.peek(&1), Some(&10));
    assert!(c.contains(&1));
    assert!(!c.contains(&9));
    assert_eq!(c.peek(&9), None);
    assert_eq!(keys(&c), [3, 2, 1]);
    assert_eq!(c.put(4, 40), Some(Displaced::Evicted(1, 10)));
    assert_eq!(c.metrics().lookups(), 0);
}

#[test]
fn borrowed_lookups() {
    let mut c: LruCache<&'static str, u32, 2> = LruCache::new();
    c.put("alpha", 1);
    let key: &str = "alpha";
    assert_eq!(c.get(key), Some(&1));
    assert_eq!(c.peek("alpha"), Some(&1));
    assert!(c.contains("alpha"));
    assert_eq!(c.remove("alpha"), Some(("alpha", 1)));
}

#[test]
fn remove_then_reinsert() {
    let mut c = filled::<3>([1, 2, 3]);
    assert_eq!(c.remove(&2), Some((2, 20))); // from the middle
    check(&c);
    assert_eq!(c.remove(&2), None);
    assert_eq!(keys(&c), [3, 1]);
    assert_eq!(c.put(2, 21), None, "room again: nothing displaced");
    check(&c);
    assert_eq!(keys(&c), [2, 3, 1]);
    assert_eq!(c.remove(&2), Some((2, 21))); // the head
    assert_eq!(c.remove(&1), Some((1, 10))); // the tail
    check(&c);
    assert_eq!(keys(&c), [3]);
    c.put(1, 1);
    c.put(2, 2);
    check(&c);
    assert_eq!(
        c.list.fresh, 3,
        "freed nodes are reused before the fresh ones"
    );
    assert_eq!(c.put(4, 4), Some(Displaced::Evicted(3, 30)));
    assert_eq!(c.remove(&9), None);
    assert_eq!(c.metrics(), metrics(0, 0, 7, 1, 0));
}

#[test]
fn clear_drops_everything_and_keeps_metrics() {
    let drops = Cell::new(0);
    let mut c: LruCache<u32, Dropper<'_>, 4> = LruCache::new();
    for k in 0..3 {
        c.put(k, Dropper(&drops));
    }
    c.remove(&1);
    assert_eq!(drops.get(), 1);
    c.clear();
    check(&c);
    assert_eq!(drops.get(), 3);
    assert!(c.is_empty());
    assert!(!c.contains(&0));
    assert_eq!(c.iter().count(), 0);
    assert_eq!(c.metrics().inserts, 3);
    for k in 0..5 {
        c.put(k, Dropper(&drops)); // the fifth evicts: dropped by the caller
    }
    check(&c);
    assert_eq!(drops.get(), 4);
    assert_eq!(c.len(), 4);
    drop(c);
    assert_eq!(drops.get(), 8);
}

#[test]
fn values_are_dropped_exactly_once() {
    let drops = Cell::new(0);
    let mut c: LruCache<u32, Dropper<'_>, 2> = LruCache::new();
    c.put(1, Dropper(&drops));
    drop(c.put(1, Dropper(&drops))); // replaced
    assert_eq!(drops.get(), 1);
    c.put(2, Dropper(&drops));
    drop(c.put(3, Dropper(&drops))); // evicted
    assert_eq!(drops.get(), 2);
    c.put_with_ttl(4, Dropper(&drops), Duration::ZERO, T0);
    assert_eq!(drops.get(), 3);
    assert!(c.get_at(&4, T0).is_none()); // expired: freed and dropped
    assert_eq!(drops.get(), 4);
    c.reset_metrics();
    drop(c);
    assert_eq!(drops.get(), 5);
}

#[test]
fn iter_order_both_ways() {
    let mut c = filled::<5>([1, 2, 3, 4, 5]);
    c.get(&3);
    assert_eq!(keys(&c), [3, 5, 4, 2, 1]);
    let rev: Vec<u32> = c.iter().rev().map(|(k, _)| *k).collect();
    assert_eq!(rev, [1, 2, 4, 5, 3]);
    let mut it = c.iter();
    assert_eq!(it.len(), 5);
    assert_eq!(it.next(), Some((&3, &30)));
    assert_eq!(it.next_back(), Some((&1, &10)));
    assert_eq!(it.next_back(), Some((&2, &20)));
    assert_eq!(it.size_hint(), (2, Some(2)));
    assert_eq!(it.next(), Some((&5, &50)));
    assert_eq!(it.next(), Some((&4, &40)));
    assert_eq!(it.next(), None);
    assert_eq!(it.next_back(), None);
    assert_eq!(it.len(), 0);
    let via_ref: Vec<_> = (&c).into_iter().collect();
    assert_eq!(via_ref.len(), 5);
    assert_eq!(
        format!("{:?}", c.iter().take(2)),
        "Take { iter: [(3, 30), (5, 50), (4, 40), (2, 20), (1, 10)], n: 2 }"
    );
    assert_eq!(format!("{c:?}"), "{3: 30, 5: 50, 4: 40, 2: 20, 1: 10}");
}

#[test]
fn clone_is_independent() {
    let mut a = filled::<3>([1, 2, 3]);
    let b = a.clone();
    a.get(&1);
    a.put(4, 40);
    check(&b);
    assert_eq!(keys(&b), [3, 2, 1]);
    assert_eq!(keys(&a), [4, 1, 3]);
}

#[test]
fn ttl_expires_exactly_at_the_boundary() {
    let mut c: LruCache<u32, u32, 4> = LruCache::new();
    assert_eq!(c.put_with_ttl(1, 10, SEC, T0), None);
    let deadline = T0 + SEC;
    assert_eq!(c.get_at(&1, deadline - US), Some(&10), "live before");
    assert_eq!(
        c.get_at(&1, deadline),
        None,
        "expired at now == inserted + ttl"
    );
    check(&c);
    assert!(c.is_empty(), "the expired entry was freed");
    assert_eq!(c.metrics(), metrics(1, 1, 1, 0, 1));
    // A later lookup is a plain miss: nothing left to expire.
    assert_eq!(c.get_at(&1, deadline + SEC), None);
    assert_eq!(c.metrics(), metrics(1, 2, 1, 0, 1));
}

#[test]
fn zero_ttl_is_expired_immediately() {
    let mut c: LruCache<u32, u32, 2> = LruCache::new();
    c.put_with_ttl(1, 10, Duration::ZERO, T0);
    assert_eq!(c.len(), 1, "stored...");
    assert!(!c.contains_at(&1, T0), "...but already expired at `now`");
    assert_eq!(c.len(), 0);
    // An earlier `now` (a clock that went back) sees it live.
    c.put_with_ttl(2, 20, Duration::ZERO, T0);
    assert_eq!(c.peek_at(&2, T0 - US), Some(&20));
    assert_eq!(c.metrics().expirations, 1);
}

type Lookup = fn(&mut LruCache<u32, u32, 4>, Instant) -> bool;

#[test]
fn every_timed_lookup_misses_and_frees_an_expired_entry() {
    let fresh = || {
        let mut c: LruCache<u32, u32, 4> = LruCache::new();
        c.put_with_ttl(1, 10, SEC, T0);
        c.put(2, 20);
        c
    };
    let late = T0 + SEC;
    let lookups: [(&str, Lookup, CacheMetrics); 5] = [
        (
            "get_at",
            |c, t| c.get_at(&1, t).is_some(),
            metrics(0, 1, 2, 0, 1),
        ),
        (
            "get_mut_at",
            |c, t| c.get_mut_at(&1, t).is_some(),
            metrics(0, 1, 2, 0, 1),
        ),
        (
            "peek_at",
            |c, t| c.peek_at(&1, t).is_some(),
            metrics(0, 0, 2, 0, 1),
        ),
        (
            "contains_at",
            |c, t| c.contains_at(&1, t),
            metrics(0, 0, 2, 0, 1),
        ),
        (
            "remove_at",
            |c, t| c.remove_at(&1, t).is_some(),
            metrics(0, 0, 2, 0, 1),
        ),
    ];
    for (name, lookup, expected) in lookups {
        let mut c = fresh();
        assert!(lookup(&mut c, late - US), "{name}: live just before");
        let mut c = fresh();
        assert!(!lookup(&mut c, late), "{name}: expired at the deadline");
        check(&c);
        assert_eq!(keys(&c), [2], "{name}: expired entry freed");
        assert_eq!(c.metrics(), expected, "{name}");
        // The entry without TTL never expires.
        assert_eq!(c.get_at(&2, Instant::MAX), Some(&20), "{name}");
    }
}

#[test]
fn timed_lookups_of_live_entries() {
    let mut c: LruCache<u32, u32, 3> = LruCache::new();
    for k in 1..=3 {
        c.put_with_ttl(k, k * 10, SEC, T0);
    }
    assert_eq!(c.peek_at(&1, T0), Some(&10));
    assert!(c.contains_at(&1, T0));
    assert_eq!(keys(&c), [3, 2, 1], "peek_at/contains_at do not promote");
    assert_eq!(c.get_at(&1, T0), Some(&10));
    *c.get_mut_at(&2, T0).unwrap() = 21;
    assert_eq!(keys(&c), [2, 1, 3], "get_at/get_mut_at promote");
    assert_eq!(c.remove_at(&3, T0), Some((3, 30)));
    assert_eq!(c.remove_at(&3, T0), None);
    assert_eq!(c.get_at(&9, T0), None);
    check(&c);
    assert_eq!(c.metrics(), metrics(2, 1, 3, 0, 0));
}

#[test]
fn time_less_methods_see_expired_entries() {
    let mut c: LruCache<u32, u32, 2> = LruCache::new();
    c.put_with_ttl(1, 10, Duration::ZERO, T0);
    assert_eq!(c.get(&1), Some(&10));
    assert_eq!(c.get_mut(&1), Some(&mut 10));
    assert_eq!(c.peek(&1), Some(&10));
    assert!(c.contains(&1));
    assert_eq!(c.len(), 1);
    assert_eq!(keys(&c), [1]);
    assert_eq!(c.put(2, 20), None);
    // `put` does not know the time: a replaced or evicted expired entry is
    // reported as replaced or evicted.
    c.put_with_ttl(2, 21, Duration::ZERO, T0);
    assert_eq!(c.put(2, 22), Some(Displaced::Replaced(2, 21)));
    assert_eq!(c.put(3, 30), Some(Displaced::Evicted(1, 10)));
    assert_eq!(c.remove(&2), Some((2, 22)));
    assert_eq!(c.metrics(), metrics(2, 0, 5, 1, 0));
}

#[test]
fn put_clears_a_ttl_and_put_with_ttl_sets_one() {
    let mut c: LruCache<u32, u32, 2> = LruCache::new();
    c.put_with_ttl(1, 10, SEC, T0);
    assert_eq!(c.put(1, 11), Some(Displaced::Replaced(1, 10)));
    assert_eq!(c.get_at(&1, Instant::MAX), Some(&11), "no TTL any more");
    assert_eq!(
        c.put_with_ttl(1, 12, SEC, T0),
        Some(Displaced::Replaced(1, 11))
    );
    assert_eq!(c.get_at(&1, T0 + SEC), None);
    check(&c);
}

#[test]
fn put_with_ttl_reports_expired_displacements() {
    let mut c: LruCache<u32, u32, 2> = LruCache::new();
    c.put_with_ttl(1, 10, SEC, T0);
    c.put_with_ttl(2, 20, SEC.saturating_mul(5), T0);
    let late = T0 + SEC;
    // Same key, expired at `now`.
    assert_eq!(
        c.put_with_ttl(1, 11, SEC, late),
        Some(Displaced::Expired(1, 10))
    );
    assert_eq!(keys(&c), [1, 2]);
    // Full: the LRU entry (2, live until T0 + 5 s) is evicted.
    assert_eq!(
        c.put_with_ttl(3, 30, SEC, late),
        Some(Displaced::Evicted(2, 20))
    );
    // Full: the LRU entry (1, expired at late + 1 s) is reported expired.
    assert_eq!(
        c.put_with_ttl(4, 40, SEC, late + SEC),
        Some(Displaced::Expired(1, 11))
    );
    check(&c);
    assert_eq!(c.metrics(), metrics(0, 0, 5, 1, 2));
}

#[test]
fn eviction_stays_lru_even_when_another_entry_expired() {
    let mut c: LruCache<u32, u32, 2> = LruCache::new();
    c.put(1, 10);
    c.put_with_ttl(2, 20, SEC, T0);
    let late = T0 + SEC;
    assert_eq!(
        c.put_with_ttl(3, 30, SEC, late),
        Some(Displaced::Evicted(1, 10))
    );
    // With a purge first, the expired entry makes the room instead.
    let mut c: LruCache<u32, u32, 2> = LruCache::new();
    c.put(1, 10);
    c.put_with_ttl(2, 20, SEC, T0);
    assert_eq!(c.purge_expired(late), 1);
    assert_eq!(c.put_with_ttl(3, 30, SEC, late), None);
    assert_eq!(keys(&c), [3, 1]);
}

#[test]
fn huge_now_and_ttl_do_not_overflow() {
    let mut c: LruCache<u32, u32, 8> = LruCache::new();
    // now + ttl beyond Instant::MAX: never expires.
    c.put_with_ttl(1, 10, Duration::MAX, Instant::MAX);
    c.put_with_ttl(2, 20, Duration::MAX, T0);
    c.put_with_ttl(3, 30, US, Instant::MAX);
    // Exactly Instant::MAX: expired only at Instant::MAX.
    c.put_with_ttl(4, 40, US, Instant::MAX - US);
    c.put_with_ttl(5, 50, Duration::from_micros(u64::MAX), Instant::ZERO);
    // Zero TTL at Instant::MAX: expired at once.
    c.put_with_ttl(6, 60, Duration::ZERO, Instant::MAX);
    check(&c);
    assert_eq!(c.purge_expired(Instant::MAX - US), 0);
    assert_eq!(c.get_at(&4, Instant::MAX - US), Some(&40));
    for k in [1, 2, 3] {
        assert!(c.contains_at(&k, Instant::MAX), "{k} never expires");
    }
    assert!(!c.contains_at(&4, Instant::MAX));
    assert!(!c.contains_at(&5, Instant::MAX));
    assert_eq!(c.purge_expired(Instant::MAX), 1); // key 6
    assert_eq!(keys(&c), [3, 2, 1]);
    assert_eq!(c.metrics().expirations, 3);
}

#[test]
fn purge_expired_frees_only_expired_and_keeps_order() {
    let mut c: LruCache<u32, u32, 6> = LruCache::new();
    c.put(0, 0);
    for k in 1..=5 {
        c.put_with_ttl(k, k, SEC.saturating_mul(u64::from(k % 3)), T0);
    }
    // TTLs: 1 → 1 s, 2 → 2 s, 3 → 0, 4 → 1 s, 5 → 2 s.
    assert_eq!(c.purge_expired(T0), 1);
    check(&c);
    assert_eq!(keys(&c), [5, 4, 2, 1, 0]);
    assert_eq!(c.purge_expired(T0 + SEC), 2);
    check(&c);
    assert_eq!(keys(&c), [5, 2, 0]);
    assert_eq!(c.purge_expired(T0 + SEC), 0);
    assert_eq!(c.purge_expired(Instant::MAX), 2);
    check(&c);
    assert_eq!(keys(&c), [0]);
    assert_eq!(c.metrics().expirations, 5);
    let mut empty: LruCache<u32, u32, 1> = LruCache::new();
    assert_eq!(empty.purge_expired(Instant::MAX), 0);
}

#[test]
fn colliding_keys_share_one_chain() {
    let mut c: LruCache<Collide, u32, 5> = LruCache::new();
    for k in 0..5 {
        c.put(Collide(k), k);
    }
    check(&c);
    let b = c.bucket_of(&Collide(0));
    assert!(c
        .index
        .heads
        .as_flattened()
        .iter()
        .enumerate()
        .all(|(i, &h)| (i == b) == (h != NIL)));
    // New keys go to the end of the chain.
    assert_eq!(chain(&c, b), [0, 1, 2, 3, 4].map(Collide));
    assert_eq!(c.remove(&Collide(2)), Some((Collide(2), 2))); // mid-chain
    check(&c);
    assert_eq!(c.remove(&Collide(4)), Some((Collide(4), 4))); // chain end
    check(&c);
    assert_eq!(c.remove(&Collide(0)), Some((Collide(0), 0))); // chain head
    check(&c);
    assert_eq!(chain(&c, b), [1, 3].map(Collide));
    for k in 5..10 {
        c.put(Collide(k), k); // the last two evict 1 and 3
    }
    check(&c);
    // An evicted node reused for a key of its own bucket keeps its place.
    assert_eq!(chain(&c, b), [8, 9, 5, 6, 7].map(Collide));
    assert_eq!(c.get(&Collide(1)), None);
    assert_eq!(c.get(&Collide(3)), None);
    for k in 5..10 {
        assert_eq!(c.get(&Collide(k)), Some(&k));
    }
    assert_eq!(
        c.put_with_ttl(Collide(10), 10, Duration::ZERO, T0),
        Some(Displaced::Evicted(Collide(5), 5))
    );
    assert_eq!(c.purge_expired(T0), 1);
    check(&c);
    assert_eq!(keys(&c), [Collide(9), Collide(8), Collide(7), Collide(6)]);
}

#[test]
fn seed_changes_buckets_not_behaviour() {
    let mut a: LruCache<u32, u32, 8> = LruCache::new();
    let mut b: LruCache<u32, u32, 8> = LruCache::with_seed(12_345);
    for k in 0..20 {
        assert_eq!(a.put(k, k), b.put(k, k));
        assert_eq!(a.get(&(k / 2)), b.get(&(k / 2)));
    }
    check(&a);
    check(&b);
    assert_eq!(keys(&a), keys(&b));
    let differs = (0..64u32).any(|k| a.bucket_of(&k) != b.bucket_of(&k));
    assert!(differs);
}

#[test]
fn buckets_are_in_range_for_extreme_hashes() {
    // Two buckets per node.
    assert_eq!(Index::<1>::BUCKETS, 2);
    assert_eq!(Index::<1>::bucket(u64::MAX), 1);
    assert_eq!(Index::<1>::bucket(u64::MAX >> 33), 0);
    assert_eq!(Index::<7>::bucket(u64::MAX), 13);
    assert_eq!(Index::<7>::bucket(0), 0);
    assert_eq!(
        Index::<MAX_CAPACITY>::bucket(u64::MAX),
        2 * MAX_CAPACITY - 1
    );
}

#[test]
fn metrics_reset() {
    let mut c = filled::<2>([1, 2, 3]);
    c.get(&3);
    c.get(&1);
    assert_eq!(c.metrics(), metrics(1, 1, 3, 1, 0));
    assert_eq!(c.metrics().hit_ratio(), Some(0.5));
    c.reset_metrics();
    assert_eq!(c.metrics(), CacheMetrics::default());
    assert_eq!(keys(&c), [3, 2]);
}

#[test]
fn displaced_accessors() {
    for d in [
        Displaced::Replaced(1, 'a'),
        Displaced::Evicted(1, 'a'),
        Displaced::Expired(1, 'a'),
    ] {
        assert_eq!((*d.key(), *d.value()), (1, 'a'));
        assert_eq!(d.into_pair(), (1, 'a'));
    }
}

#[test]
fn documented_sizes() {
    use core::mem::size_of;
    assert_eq!(size_of::<Links>(), 4);
    assert_eq!(
        size_of::<Option<Entry<u32, u32>>>(),
        24,
        "occupancy uses the niche"
    );
    assert_eq!(size_of::<LruCache<u32, u32, 32>>(), 1_160);
    // 34 bytes per entry: +1 entry adds an entry (24), links (4), a chain
    // link (2) and two bucket heads (4).
    assert_eq!(
        size_of::<LruCache<u32, u32, 36>>() - size_of::<LruCache<u32, u32, 32>>(),
        4 * 34
    );
}

/// The largest capacity: indices up to 65 534, `fresh` and `len` reach
/// 65 535 (the sentinel's value) without being confused with it.
#[test]
#[cfg_attr(miri, ignore = "65 535 inserts are too slow under Miri")]
fn max_capacity_fills_and_evicts() {
    std::thread::Builder::new()
        .stack_size(16 << 20)
        .spawn(|| {
            let mut c: LruCache<u32, u8, MAX_CAPACITY> = LruCache::new();
            let n = MAX_CAPACITY as u32;
            for k in 0..n {
                assert_eq!(c.put(k, 0), None);
            }
            assert_eq!(c.len(), MAX_CAPACITY);
            assert_eq!(usize::from(c.list.fresh), MAX_CAPACITY);
            assert_eq!(c.put(n, 1), Some(Displaced::Evicted(0, 0)));
            assert_eq!(c.get(&1), Some(&0));
            assert_eq!(c.put(n + 1, 1), Some(Displaced::Evicted(2, 0)));
            assert_eq!(c.remove(&n), Some((n, 1)));
            assert_eq!(c.put(n + 2, 2), None);
            assert_eq!(c.len(), MAX_CAPACITY);
            check(&c);
            let mut it = c.iter();
            assert_eq!(it.next(), Some((&(n + 2), &2)));
            assert_eq!(it.next_back(), Some((&3, &0)));
            assert_eq!(it.len(), MAX_CAPACITY - 2);
        })
        .unwrap()
        .join()
        .unwrap();
}
