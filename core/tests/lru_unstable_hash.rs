//! `LruCache` with keys whose hash changes while they are stored (a `Hash`
//! reading a `Cell`, a clock, an address: a logic error, as for std's
//! maps). Lookups may then miss such a key, but the cache must stay a
//! cache: no operation hangs or panics, `len` stays the number of entries
//! iterated, and keys whose hash never changed are still found.
//!
//! The hasher passes the key's chosen hash through, so the buckets are
//! known: with capacity `N` there are `2 N` buckets, picked by the hash's
//! top bits.

use std::cell::RefCell;
use std::collections::HashSet;
use std::hash::{BuildHasher, Hash, Hasher};

use fusebox::LruCache;

use crate::common::SplitMix;

/// Hashes to what the key writes (one `u64`).
#[derive(Clone, Copy, Default)]
struct PassThrough;

struct PassThroughHasher(u64);

impl Hasher for PassThroughHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, _: &[u8]) {
        unreachable!("keys write one u64");
    }
    fn write_u64(&mut self, h: u64) {
        self.0 = h;
    }
}

impl BuildHasher for PassThrough {
    type Hasher = PassThroughHasher;
    fn build_hasher(&self) -> PassThroughHasher {
        PassThroughHasher(0)
    }
}

thread_local! {
    /// Keys whose hash is currently the other one.
    static MOVED: RefCell<HashSet<u32>> = RefCell::new(HashSet::new());
}

/// A key in one of two buckets (the top bit of its hash), swapped while
/// its id is in `MOVED`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Key(u32);

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let moved = MOVED.with(|m| m.borrow().contains(&self.0));
        let top = u64::from(self.0 & 1) ^ u64::from(moved);
        state.write_u64(top << 63 | u64::from(self.0));
    }
}

fn moved(id: u32, on: bool) {
    MOVED.with(|m| {
        let mut m = m.borrow_mut();
        if on {
            m.insert(id);
        } else {
            m.remove(&id);
        }
    });
}

/// Capacity 1: the one stored key's hash changes, then a new key of the
/// bucket it was stored in evicts it.
#[test]
fn evicting_a_key_whose_hash_changed_keeps_lookups_finite() {
    let mut cache: LruCache<Key, u32, 1, PassThrough> = LruCache::with_hasher(PassThrough);
    cache.put(Key(0), 0); // bucket 0
    moved(0, true); // now hashes to bucket 1
    cache.put(Key(2), 2); // bucket 0: evicts Key(0)
    moved(0, false);
    // Key(4) is in bucket 0 too and absent: the walk must end.
    assert_eq!(cache.get(&Key(4)), None);
    assert_eq!(cache.get(&Key(2)), Some(&2));
    assert_eq!(cache.get(&Key(0)), None);
    assert_eq!(cache.len(), 1);
    assert_eq!(cache.iter().count(), 1);
}

/// Long random histories in which keys 0..8 change hash at random while
/// keys 8..32 never do: every operation returns, `len` matches the
/// iteration, and the stable keys are found exactly when stored.
#[test]
fn random_hash_changes_never_hang_and_spare_the_stable_keys() {
    const N: usize = 8;
    let steps = if cfg!(miri) { 100 } else { 20_000 };
    for seed in 0..if cfg!(miri) { 1 } else { 16 } {
        MOVED.with(|m| m.borrow_mut().clear());
        let mut rng = SplitMix(seed);
        let mut cache: LruCache<Key, u32, N, PassThrough> = LruCache::with_hasher(PassThrough);
        for step in 0..steps {
            let r = rng.next();
            let k = Key((r >> 8) as u32 % 32);
            match r % 8 {
                0 => moved((r >> 16) as u32 % 8, (r >> 24) & 1 == 1),
                1..=3 => {
                    cache.put(k, step);
                }
                4 | 5 => {
                    cache.get(&k);
                }
                6 => {
                    cache.remove(&k);
                }
                _ => {
                    cache.peek(&k);
                }
            }
            assert_eq!(cache.iter().count(), cache.len(), "seed {seed} step {step}");
            assert!(cache.len() <= N);
            // A stable key is found iff it is stored.
            let stored: Vec<Key> = cache.iter().map(|(k, _)| *k).collect();
            for id in 8..32 {
                let key = Key(id);
                assert_eq!(
                    cache.contains(&key),
                    stored.contains(&key),
                    "seed {seed} step {step}: stable key {id}"
                );
            }
        }
    }
}
