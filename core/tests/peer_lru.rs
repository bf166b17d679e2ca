//! Cache scenarios from the `lru` crate's tests (`test_put_and_get`,
//! `test_put_update`, `test_peek`, `test_contains`, `test_get_with_borrow`,
//! `test_no_memory_leaks`, `test_pop_lru`), quick_cache / moka's
//! "same-hash keys" and TTL-edge tests, re-expressed against fusebox's
//! `LruCache` and `ConcurrentCache` from their documented contract. Keys
//! are chosen to collide (a hasher with one output), TTLs end at
//! `Instant::MAX`, clocks go backwards, and histories run long.

// Long histories of the public, safe API: native runs only (Miri runs
// the unit tests and the shorter integration tests, which take the same
// unsafe paths).
#![cfg(not(miri))]

use std::cell::Cell;
use std::collections::VecDeque;
use std::hash::{BuildHasher, Hash, Hasher};
use std::rc::Rc;

use fusebox::cache::{ConcurrentCache, Displaced, LruCache};
use fusebox::{Duration, Instant};

/// A hasher whose every key hashes alike: all keys share one chain
/// (`LruCache`) or one set and one tag (`ConcurrentCache`).
#[derive(Clone, Copy, Default)]
struct OneBucket;
struct OneHasher;
impl Hasher for OneHasher {
    fn finish(&self) -> u64 {
        0xDEAD_BEEF_0000_0001
    }
    fn write(&mut self, _: &[u8]) {}
}
impl BuildHasher for OneBucket {
    type Hasher = OneHasher;
    fn build_hasher(&self) -> OneHasher {
        OneHasher
    }
}

/// A key equal to another by `id` only, so a replacement's stored key can
/// be told apart from the old one.
#[derive(Clone, Copy, Debug)]
struct Tagged {
    id: u32,
    tag: u32,
}
impl PartialEq for Tagged {
    fn eq(&self, o: &Self) -> bool {
        self.id == o.id
    }
}
impl Eq for Tagged {}
impl Hash for Tagged {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.id.hash(h);
    }
}

/// lru `test_put_update`: "The key passed in is stored; the old one is
/// returned", and the value replaced, promoted, `len` unchanged.
#[test]
fn lru_put_update_stores_the_new_key() {
    let mut c: LruCache<Tagged, &str, 2> = LruCache::new();
    assert!(c.put(Tagged { id: 1, tag: 10 }, "a").is_none());
    assert!(c.put(Tagged { id: 2, tag: 20 }, "b").is_none());
    let old = c.put(Tagged { id: 1, tag: 11 }, "a2").unwrap();
    match old {
        Displaced::Replaced(k, v) => assert_eq!((k.tag, v), (10, "a")),
        other => panic!("{other:?}"),
    }
    assert_eq!(c.len(), 2);
    let stored: Vec<_> = c.iter().map(|(k, v)| (k.tag, *v)).collect();
    assert_eq!(
        stored,
        [(11, "a2"), (20, "b")],
        "replacement is most recent"
    );
    // The LRU is now 2.
    match c.put(Tagged { id: 3, tag: 30 }, "c").unwrap() {
        Displaced::Evicted(k, _) => assert_eq!(k.id, 2),
        other => panic!("{other:?}"),
    }
    let m = c.metrics();
    assert_eq!((m.inserts, m.evictions), (4, 1));
}

/// lru `test_peek` / `test_contains`: neither promotes, neither counts.
#[test]
fn lru_peek_and_contains_do_not_promote() {
    let mut c: LruCache<u32, u32, 2> = LruCache::new();
    c.put(1, 10);
    c.put(2, 20);
    assert_eq!(c.peek(&1), Some(&10));
    assert!(c.contains(&1));
    assert_eq!(c.put(3, 30), Some(Displaced::Evicted(1, 10)));
    let m = c.metrics();
    assert_eq!((m.hits, m.misses), (0, 0));
}

/// lru `test_get_with_borrow`: `String` keys looked up by `&str`.
#[test]
fn lru_get_with_borrow() {
    let mut c: LruCache<String, u32, 4> = LruCache::new();
    c.put("alpha".to_string(), 1);
    assert_eq!(c.get("alpha"), Some(&1));
    assert_eq!(c.peek("alpha"), Some(&1));
    assert!(c.contains("alpha"));
    assert_eq!(c.remove("alpha"), Some(("alpha".to_string(), 1)));
    assert!(c.is_empty());
}

/// lru `test_no_memory_leaks` (and its `_with_pop`/`_with_resize` kin):
/// every value stored is dropped exactly once, whatever removed it.
#[test]
fn lru_no_memory_leaks() {
    struct Counted(Rc<Cell<u64>>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.set(self.0.get() + 1);
        }
    }
    let drops = Rc::new(Cell::new(0u64));
    let mut made = 0u64;
    {
        let mut c: LruCache<u32, Counted, 16> = LruCache::new();
        let mut t = Instant::from_secs(1);
        for i in 0..10_000u32 {
            t += Duration::from_millis(1);
            made += 1;
            let v = Counted(Rc::clone(&drops));
            match i % 7 {
                0 => drop(c.put_with_ttl(i % 40, v, Duration::from_millis(u64::from(i % 5)), t)),
                1 => {
                    drop(c.put(i % 40, v));
                    drop(c.remove(&(i % 23)));
                }
                2 => {
                    drop(c.put(i % 40, v));
                    c.purge_expired(t);
                }
                3 => {
                    drop(c.put(i % 40, v));
                    let _ = c.get_at(&(i % 17), t);
                }
                4 if i % 1_000 == 4 => {
                    drop(c.put(i % 40, v));
                    c.clear();
                }
                _ => drop(c.put(i % 40, v)),
            }
            assert_eq!(drops.get() + c.len() as u64, made, "step {i}");
        }
    }
    assert_eq!(drops.get(), made, "dropping the cache drops every entry");
}

/// A model of "exact LRU of `N`": most recent at the front.
struct Model<const N: usize>(VecDeque<(u32, u32)>);
impl<const N: usize> Model<N> {
    fn get(&mut self, k: u32) -> Option<u32> {
        let i = self.0.iter().position(|e| e.0 == k)?;
        let e = self.0.remove(i).unwrap();
        self.0.push_front(e);
        Some(e.1)
    }
    fn put(&mut self, k: u32, v: u32) -> Option<(u32, u32)> {
        if let Some(i) = self.0.iter().position(|e| e.0 == k) {
            let old = self.0.remove(i).unwrap();
            self.0.push_front((k, v));
            return Some(old);
        }
        let out = if self.0.len() == N {
            self.0.pop_back()
        } else {
            None
        };
        self.0.push_front((k, v));
        out
    }
    fn remove(&mut self, k: u32) -> Option<(u32, u32)> {
        let i = self.0.iter().position(|e| e.0 == k)?;
        self.0.remove(i)
    }
}

fn lcg(s: &mut u64) -> u64 {
    *s = s
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    *s >> 33
}

/// quick_cache's "keys with equal hashes" case on the exact cache: every
/// key in one chain, a long random history against the LRU model.
#[test]
fn lru_all_keys_colliding_match_model() {
    const N: usize = 48;
    let mut cache: LruCache<u32, u32, N, OneBucket> = LruCache::with_hasher(OneBucket);
    let mut model: Model<N> = Model(VecDeque::new());
    let mut seed = 7;
    for step in 0..300_000u32 {
        let k = (lcg(&mut seed) % 80) as u32;
        match lcg(&mut seed) % 10 {
            0..=3 => assert_eq!(cache.get(&k).copied(), model.get(k), "step {step} get {k}"),
            4..=7 => {
                let got = cache.put(k, step).map(|d| match d {
                    Displaced::Replaced(k, v) | Displaced::Evicted(k, v) => (k, v),
                    Displaced::Expired(..) => panic!("put never returns Expired"),
                });
                assert_eq!(got, model.put(k, step), "step {step} put {k}");
            }
            8 => assert_eq!(cache.remove(&k), model.remove(k), "step {step} remove {k}"),
            _ => assert_eq!(
                cache.peek(&k).copied(),
                model.0.iter().find(|e| e.0 == k).map(|e| e.1)
            ),
        }
        assert_eq!(cache.len(), model.0.len());
        if step % 10_000 == 0 {
            let order: Vec<_> = cache.iter().map(|(k, v)| (*k, *v)).collect();
            assert_eq!(
                order,
                model.0.iter().copied().collect::<Vec<_>>(),
                "step {step}"
            );
        }
    }
}

/// Capacity 1 over a million puts and gets: counters exact (lru
/// `test_put_removes_oldest` at N = 1, long).
#[test]
fn lru_capacity_one_long_history() {
    let mut c: LruCache<u64, u64, 1> = LruCache::new();
    for i in 0..1_000_000u64 {
        let out = c.put(i % 3, i);
        if i > 0 {
            let prev = (i - 1) % 3;
            if prev == i % 3 {
                assert_eq!(out, Some(Displaced::Replaced(prev, i - 1)));
            } else {
                assert_eq!(out, Some(Displaced::Evicted(prev, i - 1)));
            }
        }
        assert_eq!(c.get(&(i % 3)), Some(&i));
        assert_eq!(c.get(&((i + 1) % 3)), None);
    }
    let m = c.metrics();
    assert_eq!(
        (m.inserts, m.evictions, m.hits, m.misses),
        (1_000_000, 999_999, 1_000_000, 1_000_000)
    );
}

/// TTLs ending at the end of time: "expired at `t` iff `t >= deadline`",
/// "a deadline past `Instant::MAX` is never reached".
#[test]
fn ttl_deadlines_at_instant_max() {
    let mut c: LruCache<u32, u32, 8> = LruCache::new();
    let now = Instant::MAX - Duration::from_micros(5);
    c.put_with_ttl(1, 1, Duration::from_micros(5), now); // deadline = MAX
    c.put_with_ttl(2, 2, Duration::from_micros(6), now); // past MAX: never
    c.put_with_ttl(3, 3, Duration::MAX, Instant::MAX); // past MAX: never
    c.put_with_ttl(4, 4, Duration::ZERO, Instant::MAX); // already expired
    c.put_with_ttl(5, 5, Duration::MAX, Instant::ZERO); // deadline = MAX
    assert_eq!(
        c.get_at(&1, Instant::MAX - Duration::from_micros(1)),
        Some(&1)
    );
    assert_eq!(
        c.get_at(&1, Instant::MAX),
        None,
        "deadline MAX is reached at MAX"
    );
    assert_eq!(c.get_at(&2, Instant::MAX), Some(&2));
    assert_eq!(c.get_at(&3, Instant::MAX), Some(&3));
    assert_eq!(c.get_at(&4, Instant::MAX), None);
    assert_eq!(
        c.get_at(&5, Instant::MAX - Duration::from_micros(1)),
        Some(&5)
    );
    assert_eq!(c.get_at(&5, Instant::MAX), None);
    assert_eq!(c.metrics().expirations, 3);
    assert_eq!(c.purge_expired(Instant::MAX), 0);
    assert_eq!(c.len(), 2);
}

/// Stale clocks against TTLs (moka's `expire_after_write` with a mock
/// clock, which never goes backwards; fusebox takes any `now`): an entry
/// read at a `now` before it was stored is live (its deadline is later).
/// A timed `put_with_ttl` on a full cache evicts exact LRU, reporting an
/// already-expired victim as `Expired`.
#[test]
fn ttl_stale_clock_and_expired_victims() {
    let mut c: LruCache<u32, u32, 2> = LruCache::new();
    let t = Instant::from_secs(100);
    c.put_with_ttl(1, 1, Duration::from_secs(1), t);
    assert_eq!(c.get_at(&1, t - Duration::from_secs(50)), Some(&1));
    assert_eq!(c.peek_at(&1, Instant::ZERO), Some(&1));
    c.put_with_ttl(2, 2, Duration::from_secs(10), t);
    // 1 is the LRU (2 is newer, and the peeks did not promote; get_at did,
    // before 2 was stored). At t + 2 s it has expired.
    let out = c.put_with_ttl(3, 3, Duration::from_secs(10), t + Duration::from_secs(2));
    assert_eq!(out, Some(Displaced::Expired(1, 1)));
    // Same key replaced after its expiry: Expired, not Replaced.
    let out = c.put_with_ttl(2, 22, Duration::from_secs(1), t + Duration::from_secs(10));
    assert_eq!(out, Some(Displaced::Expired(2, 2)));
    let m = c.metrics();
    assert_eq!((m.expirations, m.evictions, m.inserts), (2, 0, 4));
    // A stale clock does not resurrect or expire anything wrongly.
    assert_eq!(c.get_at(&2, t), Some(&22));
}

/// The concurrent cache with all keys in one set of 4 ways and one tag
/// (quick_cache's colliding-keys case): "Sequentially the order is exact"
/// — an exact LRU of 4 — and `get` never returns another key's value.
#[test]
fn concurrent_cache_colliding_keys_match_model() {
    let c: ConcurrentCache<u32, u32, 1, 4, OneBucket> = ConcurrentCache::with_hasher(OneBucket);
    let mut m: Model<4> = Model(VecDeque::new());
    let mut s = 11;
    for step in 0..200_000u32 {
        let k = (lcg(&mut s) % 9) as u32;
        match lcg(&mut s) % 10 {
            0..=4 => assert_eq!(c.get(&k), m.get(k), "step {step} get {k}"),
            5..=8 => {
                c.insert(k, step).expect("no other writer");
                m.put(k, step);
            }
            _ => assert_eq!(
                c.remove(&k).unwrap(),
                m.remove(k).map(|e| e.1),
                "step {step}"
            ),
        }
    }
    assert_eq!(c.metrics().contended, 0);
}

/// Many sets, keys spread normally: capacity is `SETS × WAYS`, a freshly
/// inserted key is always found, and a set never holds more than `WAYS`.
#[test]
fn concurrent_cache_insert_then_get() {
    let c: ConcurrentCache<u64, u64, 16, 2> = ConcurrentCache::new();
    assert_eq!(c.capacity(), 32);
    for i in 0..100_000u64 {
        c.insert(i, i * 3).unwrap();
        assert_eq!(c.get(&i), Some(i * 3));
    }
    let present = (99_000..100_000u64).filter(|k| c.get(k).is_some()).count();
    assert!((2..=32).contains(&present), "{present}");
    let m = c.metrics();
    assert_eq!(m.inserts, 100_000);
    assert_eq!(
        m.evictions,
        100_000 - 32,
        "every insert beyond capacity evicts one"
    );
}
