//! `ConcurrentCache` with a key whose `Eq` or `Hash` calls back into the
//! cache that is comparing or hashing it (a hostile or careless user), in a
//! long seeded history against a model of one set (`SETS = 1`) written from
//! the rustdoc:
//!
//! * `Hash` runs before any lock: the nested call is simply an earlier
//!   call;
//! * `Eq` runs under the set's writer lock in `insert` and `remove` ("A
//!   writer compares keys while it holds its set's lock"): a nested
//!   `insert` or `remove` of that set finds the lock held and returns
//!   [`Contended`], counted, nothing written ("if another writer holds it
//!   they give up at once"); a nested `get` (lock-free) goes through, and
//!   the outer insert still evicts the victim it chose when it took the
//!   lock (the one race the docs allow);
//! * a `get` holds no lock: any nested call goes through, and the outer
//!   `get` returns `None` or a value the key held at some moment during
//!   the call.
//!
//! Keys are chosen so that every key shares the set and most share the tag
//! (tags are 8 bits of the hash, and the hasher here returns the key's own
//! bits): every `Eq` call site runs. After each operation the cache must
//! agree with the model: every key's value, the LRU order (through which
//! key an insert evicts) and the counters; no set is left locked, nothing
//! deadlocks. A review's probe ("sound-but-checked"): no defect found.
#![cfg(not(miri))]

use std::cell::RefCell;
use std::collections::VecDeque;
use std::hash::{BuildHasher, Hash, Hasher};

use fusebox::cache::{CacheMetrics, ConcurrentCache, Contended};

use crate::common::SplitMix;

const WAYS: usize = 4;
type Cache = ConcurrentCache<Key, u64, 1, WAYS, Bits>;

/// A hasher that returns the key's own bits: the tests choose the tags.
#[derive(Default, Clone, Copy)]
struct Bits;
struct BitsHasher(u64);
impl BuildHasher for Bits {
    type Hasher = BitsHasher;
    fn build_hasher(&self) -> BitsHasher {
        BitsHasher(0)
    }
}
impl Hasher for BitsHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0 << 8 | u64::from(b);
        }
    }
    fn write_u64(&mut self, x: u64) {
        self.0 = x;
    }
}

#[derive(Clone, Copy, Debug, bytemuck::NoUninit)]
#[repr(transparent)]
struct Key(u64);

/// Which user call runs the armed nested call.
#[derive(Clone, Copy, PartialEq, Debug)]
enum At {
    Hash,
    Eq,
}

type Nested = Box<dyn FnOnce()>;

thread_local! {
    static HOOK: RefCell<Option<(At, Nested)>> = RefCell::new(None);
}

fn trip(at: At) {
    let hook = HOOK.with(|h| {
        let mut h = h.borrow_mut();
        match h.as_ref() {
            Some((armed, _)) if *armed == at => h.take().map(|(_, f)| f),
            _ => None,
        }
    });
    if let Some(f) = hook {
        f();
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        trip(At::Hash);
        // Tags are the top byte: keys 0 mod 3 get tag 0 (stored as 1, the
        // tag of keys 1 mod 3), keys 2 mod 3 tag 2.
        state.write_u64((self.0 % 3) << 56 | self.0 << 8);
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        trip(At::Eq);
        self.0 == other.0
    }
}
impl Eq for Key {}

/// One set, most recently used first.
#[derive(Default)]
struct Model {
    set: VecDeque<(u64, u64)>,
    m: CacheMetrics,
}

impl Model {
    fn pos(&self, k: u64) -> Option<usize> {
        self.set.iter().position(|e| e.0 == k)
    }
    fn promote(&mut self, k: u64) {
        if let Some(p) = self.pos(k) {
            let e = self.set.remove(p).unwrap();
            self.set.push_front(e);
        }
    }
    /// An insert whose victim (if the set is full and `k` absent) was
    /// chosen, as the least recent key, before `between` ran.
    fn insert(&mut self, k: u64, v: u64, between: impl FnOnce(&mut Self)) {
        let victim =
            (self.pos(k).is_none() && self.set.len() == WAYS).then(|| self.set[WAYS - 1].0);
        between(self);
        self.m.inserts += 1;
        if let Some(p) = self.pos(k) {
            self.set.remove(p);
        } else if let Some(victim) = victim {
            let p = self.pos(victim).unwrap();
            self.set.remove(p);
            self.m.evictions += 1;
        }
        self.set.push_front((k, v));
    }
    fn remove(&mut self, k: u64) -> Option<u64> {
        let p = self.pos(k)?;
        self.set.remove(p).map(|e| e.1)
    }
    fn get(&mut self, k: u64) -> Option<u64> {
        let v = self.pos(k).map(|p| self.set[p].1);
        match v {
            Some(_) => {
                self.m.hits += 1;
                self.promote(k);
            }
            None => self.m.misses += 1,
        }
        v
    }
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Get(u64),
    Insert(u64, u64),
    Remove(u64),
}

type Outcome = Result<Option<u64>, Contended>;

fn run(cache: &Cache, op: Op) -> Outcome {
    match op {
        Op::Get(k) => Ok(cache.get(&Key(k))),
        Op::Insert(k, v) => cache.insert(Key(k), v).map(|()| None),
        Op::Remove(k) => cache.remove(&Key(k)),
    }
}

/// The model's effect of a nested `inner` run while `outer` (an insert or
/// a remove) holds the lock: a write is turned away, a read goes through.
fn nested_under_lock(model: &mut Model, inner: Op) -> Outcome {
    match inner {
        Op::Get(k) => Ok(model.get(k)),
        Op::Insert(..) | Op::Remove(_) => {
            model.m.contended += 1;
            Err(Contended)
        }
    }
}

/// The model's effect of `op` run with no lock held: it goes through.
fn free(model: &mut Model, op: Op) -> Option<u64> {
    match op {
        Op::Get(k) => model.get(k),
        Op::Insert(k, v) => {
            model.insert(k, v, |_| {});
            None
        }
        Op::Remove(k) => model.remove(k),
    }
}

fn random_op(rng: &mut SplitMix, keys: u64, value: &mut u64) -> Op {
    let k = rng.next() % keys;
    match rng.next() % 3 {
        0 => Op::Get(k),
        1 => {
            *value += 1;
            Op::Insert(k, *value)
        }
        _ => Op::Remove(k),
    }
}

#[test]
#[allow(clippy::too_many_lines)]
fn calls_back_from_eq_and_hash_keep_the_set_exact_and_unlocked() {
    let cache: &'static Cache = Box::leak(Box::new(
        ConcurrentCache::with_hasher(Bits).with_lookup_counters(),
    ));
    let mut model = Model::default();
    let mut rng = SplitMix(0x5eed_cafe);
    let mut value = 0;
    let (mut nested_eq, mut nested_hash) = (0u64, 0u64);
    let keys = 3 * WAYS as u64;
    for step in 0..150_000u64 {
        let outer = random_op(&mut rng, keys, &mut value);
        let inner = random_op(&mut rng, keys, &mut value);
        let at = match rng.next() % 4 {
            0 => Some(At::Hash),
            1 | 2 => Some(At::Eq),
            _ => None,
        };
        let got_inner = std::rc::Rc::new(RefCell::new(None));
        if let Some(at) = at {
            let slot = std::rc::Rc::clone(&got_inner);
            HOOK.with(|h| {
                *h.borrow_mut() = Some((
                    at,
                    Box::new(move || {
                        *slot.borrow_mut() = Some(run(cache, inner));
                    }),
                ));
            });
        }
        let before = model.set.clone();
        let got = run(cache, outer);
        // The hook fired (a nested call ran) or it did not: an outer
        // call with no `Eq` to make (an empty or tag-less set) leaves it.
        let fired = HOOK.with(|h| h.borrow_mut().take()).is_none() && at.is_some();
        let got_inner = got_inner.borrow_mut().take();
        assert_eq!(fired, got_inner.is_some(), "step {step}");
        let want_inner = match (fired, at, outer) {
            (false, ..) => {
                let want = Ok(free(&mut model, outer));
                assert_eq!(got, want, "step {step}: {outer:?}");
                None
            }
            (true, Some(At::Hash), _) => {
                // Before the outer call did anything: an earlier call.
                nested_hash += 1;
                let inner_want = Ok(free(&mut model, inner));
                let want = Ok(free(&mut model, outer));
                assert_eq!(got, want, "step {step}: {outer:?} after {inner:?}");
                Some(inner_want)
            }
            (true, _, Op::Insert(k, v)) => {
                nested_eq += 1;
                let mut inner_want = None;
                model.insert(k, v, |m| inner_want = Some(nested_under_lock(m, inner)));
                assert_eq!(got, Ok(None), "step {step}");
                inner_want
            }
            (true, _, Op::Remove(k)) => {
                nested_eq += 1;
                let inner_want = nested_under_lock(&mut model, inner);
                assert_eq!(
                    got,
                    Ok(model.remove(k)),
                    "step {step}: {outer:?} around {inner:?}"
                );
                Some(inner_want)
            }
            (true, _, Op::Get(k)) => {
                // Lock-free: the nested call went through mid-scan; the
                // outer get returns the key's value before or after it.
                nested_eq += 1;
                let old = before.iter().find(|e| e.0 == k).map(|e| e.1);
                let inner_want = Ok(free(&mut model, inner));
                let new = model.pos(k).map(|p| model.set[p].1);
                let v = got.unwrap();
                assert!(
                    v.is_none() || v == old || v == new,
                    "step {step}: {v:?}, {old:?}, {new:?}"
                );
                if v.is_some() {
                    model.m.hits += 1;
                    model.promote(k);
                } else {
                    model.m.misses += 1;
                }
                // A miss is allowed only if the key was absent at one end.
                assert!(v.is_some() || old.is_none() || new.is_none(), "step {step}");
                Some(inner_want)
            }
        };
        if let Some(w) = want_inner {
            assert_eq!(
                got_inner,
                Some(w),
                "step {step}: nested {inner:?} in {outer:?}"
            );
        }
        assert_eq!(cache.metrics(), model.m, "step {step}");
        // Every modelled key holds its value; no other key is found. The
        // reads go in least-recent-first order, so they end in the model's
        // order (and count as hits and misses in both).
        for &(k, v) in model.set.clone().iter().rev() {
            assert_eq!(cache.get(&Key(k)), Some(v), "step {step}: key {k}");
            model.get(k);
        }
        for k in 0..keys {
            if model.pos(k).is_none() {
                assert_eq!(cache.get(&Key(k)), None, "step {step}: key {k}");
                model.m.misses += 1;
            }
        }
    }
    assert!(
        nested_eq > 30_000 && nested_hash > 10_000,
        "{nested_eq} {nested_hash}"
    );
}
