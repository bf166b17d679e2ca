#![cfg(not(miri))]
//! Model-based tests of [`LruCache`] against a naive reference model of its
//! documented semantics.
//!
//! The model is a `Vec` ordered from most to least recently used, each
//! entry carrying its exact deadline as a `u128` (`inserted + ttl`, never
//! overflowing), with "expired at `t` iff `t >= deadline`". Every operation
//! of a random sequence — time-less and timed lookups, puts with and
//! without TTL, removes, purges, clears, on a virtual clock that advances
//! by small steps and occasionally jumps to the end of time — is applied to
//! both; after each one the return value, `len`, `is_empty`, the iteration
//! order both ways, every key's `peek` and the metrics are compared.
//!
//! Keys come from a small domain so that replacements, evictions and
//! (with [`Clash`], whose hash ignores all but one bit) long hash chains
//! are common. Capacities 1, 2, 3, 4 and 7 are exercised.
//!
//! Run with `cargo test -p fusebox --test cache -- lru_model::`.

use core::fmt::Debug;
use core::hash::{Hash, Hasher};

use fusebox::cache::{CacheMetrics, Displaced, LruCache};
use fusebox::{Duration, Instant};
use proptest::prelude::*;

/// Keys 0..KEYS.
const KEYS: u8 = 10;

/// A key whose hash is one bit of it: at most two distinct hashes, so
/// chains get long and removals hit every chain position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Clash(u8);

impl Hash for Clash {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self.0 & 1).hash(state);
    }
}

impl From<u8> for Clash {
    fn from(k: u8) -> Self {
        Clash(k)
    }
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Put(u8),
    PutTtl(u8, u64),
    Get(u8),
    GetMut(u8),
    Peek(u8),
    Contains(u8),
    Remove(u8),
    GetAt(u8),
    GetMutAt(u8),
    PeekAt(u8),
    ContainsAt(u8),
    RemoveAt(u8),
    Purge,
    Clear,
    ResetMetrics,
    /// Advance the clock (saturating).
    Advance(u64),
    /// Jump the clock to `Instant::MAX - back`.
    JumpToEnd(u64),
}

/// Everything an operation can return, in one comparable shape.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Ret<K> {
    Unit,
    Displaced(Option<Displaced<K, u32>>),
    Value(Option<u32>),
    Bool(bool),
    Pair(Option<(K, u32)>),
    Count(usize),
}

#[derive(Debug)]
struct Model<K> {
    capacity: usize,
    /// Most recently used first: (key, value, deadline).
    entries: Vec<(K, u32, Option<u128>)>,
    metrics: CacheMetrics,
}

fn expired(deadline: Option<u128>, now: u64) -> bool {
    deadline.is_some_and(|d| u128::from(now) >= d)
}

impl<K: Copy + Eq> Model<K> {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: Vec::new(),
            metrics: CacheMetrics::default(),
        }
    }

    fn pos(&self, k: K) -> Option<usize> {
        self.entries.iter().position(|e| e.0 == k)
    }

    /// The position of `k` if live at `now` (`None`: ignore expiry); an
    /// expired entry is removed and counted.
    fn live(&mut self, k: K, now: Option<u64>) -> Option<usize> {
        let p = self.pos(k)?;
        if now.is_some_and(|now| expired(self.entries[p].2, now)) {
            self.entries.remove(p);
            self.metrics.expirations += 1;
            return None;
        }
        Some(p)
    }

    fn promote(&mut self, p: usize) {
        let e = self.entries.remove(p);
        self.entries.insert(0, e);
    }

    /// get / get_mut (writing `new` if given) / get_at / get_mut_at.
    fn get(&mut self, k: K, now: Option<u64>, new: Option<u32>) -> Option<u32> {
        let Some(p) = self.live(k, now) else {
            self.metrics.misses += 1;
            return None;
        };
        self.metrics.hits += 1;
        self.promote(p);
        let old = self.entries[0].1;
        if let Some(new) = new {
            self.entries[0].1 = new;
        }
        Some(old)
    }

    fn put(&mut self, k: K, v: u32, ttl: Option<u64>, now: u64) -> Option<Displaced<K, u32>> {
        self.metrics.inserts += 1;
        let deadline = ttl.map(|ttl| u128::from(now) + u128::from(ttl));
        let timed = ttl.is_some();
        let displaced = if let Some(p) = self.pos(k) {
            let (ok, ov, od) = self.entries.remove(p);
            Some(if timed && expired(od, now) {
                self.metrics.expirations += 1;
                Displaced::Expired(ok, ov)
            } else {
                Displaced::Replaced(ok, ov)
            })
        } else if self.entries.len() == self.capacity {
            let (ok, ov, od) = self.entries.pop().expect("full");
            Some(if timed && expired(od, now) {
                self.metrics.expirations += 1;
                Displaced::Expired(ok, ov)
            } else {
                self.metrics.evictions += 1;
                Displaced::Evicted(ok, ov)
            })
        } else {
            None
        };
        self.entries.insert(0, (k, v, deadline));
        displaced
    }

    fn purge(&mut self, now: u64) -> usize {
        let before = self.entries.len();
        self.entries.retain(|e| !expired(e.2, now));
        let freed = before - self.entries.len();
        self.metrics.expirations += freed as u64;
        freed
    }
}

fn apply_model<K: Copy + Eq + From<u8>>(
    m: &mut Model<K>,
    op: Op,
    now: &mut u64,
    value: u32,
) -> Ret<K> {
    let t = *now;
    match op {
        Op::Put(k) => Ret::Displaced(m.put(k.into(), value, None, t)),
        Op::PutTtl(k, ttl) => Ret::Displaced(m.put(k.into(), value, Some(ttl), t)),
        Op::Get(k) => Ret::Value(m.get(k.into(), None, None)),
        Op::GetMut(k) => Ret::Value(m.get(k.into(), None, Some(value))),
        Op::GetAt(k) => Ret::Value(m.get(k.into(), Some(t), None)),
        Op::GetMutAt(k) => Ret::Value(m.get(k.into(), Some(t), Some(value))),
        Op::Peek(k) => Ret::Value(m.pos(k.into()).map(|p| m.entries[p].1)),
        Op::PeekAt(k) => Ret::Value(m.live(k.into(), Some(t)).map(|p| m.entries[p].1)),
        Op::Contains(k) => Ret::Bool(m.pos(k.into()).is_some()),
        Op::ContainsAt(k) => Ret::Bool(m.live(k.into(), Some(t)).is_some()),
        Op::Remove(k) => Ret::Pair(m.pos(k.into()).map(|p| {
            let (k, v, _) = m.entries.remove(p);
            (k, v)
        })),
        Op::RemoveAt(k) => Ret::Pair(m.live(k.into(), Some(t)).map(|p| {
            let (k, v, _) = m.entries.remove(p);
            (k, v)
        })),
        Op::Purge => Ret::Count(m.purge(t)),
        Op::Clear => {
            m.entries.clear();
            Ret::Unit
        }
        Op::ResetMetrics => {
            m.metrics = CacheMetrics::default();
            Ret::Unit
        }
        Op::Advance(d) => {
            *now = now.saturating_add(d);
            Ret::Unit
        }
        Op::JumpToEnd(back) => {
            *now = (*now).max(u64::MAX - back);
            Ret::Unit
        }
    }
}

fn apply_cache<K: Copy + Eq + Hash + From<u8>, const N: usize>(
    c: &mut LruCache<K, u32, N>,
    op: Op,
    now: u64,
    value: u32,
) -> Ret<K> {
    let t = Instant::from_micros(now);
    let set = |v: Option<&mut u32>| {
        v.map(|v| {
            let old = *v;
            *v = value;
            old
        })
    };
    match op {
        Op::Put(k) => Ret::Displaced(c.put(k.into(), value)),
        Op::PutTtl(k, ttl) => {
            Ret::Displaced(c.put_with_ttl(k.into(), value, Duration::from_micros(ttl), t))
        }
        Op::Get(k) => Ret::Value(c.get(&k.into()).copied()),
        Op::GetMut(k) => Ret::Value(set(c.get_mut(&k.into()))),
        Op::GetAt(k) => Ret::Value(c.get_at(&k.into(), t).copied()),
        Op::GetMutAt(k) => Ret::Value(set(c.get_mut_at(&k.into(), t))),
        Op::Peek(k) => Ret::Value(c.peek(&k.into()).copied()),
        Op::PeekAt(k) => Ret::Value(c.peek_at(&k.into(), t).copied()),
        Op::Contains(k) => Ret::Bool(c.contains(&k.into())),
        Op::ContainsAt(k) => Ret::Bool(c.contains_at(&k.into(), t)),
        Op::Remove(k) => Ret::Pair(c.remove(&k.into())),
        Op::RemoveAt(k) => Ret::Pair(c.remove_at(&k.into(), t)),
        Op::Purge => Ret::Count(c.purge_expired(t)),
        Op::Clear => {
            c.clear();
            Ret::Unit
        }
        Op::ResetMetrics => {
            c.reset_metrics();
            Ret::Unit
        }
        Op::Advance(_) | Op::JumpToEnd(_) => Ret::Unit,
    }
}

fn run<K, const N: usize>(ops: &[Op]) -> Result<(), TestCaseError>
where
    K: Copy + Eq + Hash + Debug + From<u8>,
{
    let mut cache: LruCache<K, u32, N> = LruCache::new();
    let mut model = Model::<K>::new(N);
    let mut now = 0u64;
    for (step, &op) in ops.iter().enumerate() {
        let value = step as u32;
        let before = now;
        let expected = apply_model(&mut model, op, &mut now, value);
        let got = apply_cache(&mut cache, op, before, value);
        let ctx = || format!("step {step}: {op:?} at {before}");
        prop_assert_eq!(&got, &expected, "return value, {}", ctx());
        prop_assert_eq!(cache.len(), model.entries.len(), "len, {}", ctx());
        prop_assert_eq!(cache.is_empty(), model.entries.is_empty(), "{}", ctx());
        prop_assert_eq!(cache.capacity(), N);
        let order: Vec<(K, u32)> = cache.iter().map(|(k, v)| (*k, *v)).collect();
        let model_order: Vec<(K, u32)> = model.entries.iter().map(|e| (e.0, e.1)).collect();
        prop_assert_eq!(&order, &model_order, "iter order, {}", ctx());
        let mut back: Vec<(K, u32)> = cache.iter().rev().map(|(k, v)| (*k, *v)).collect();
        back.reverse();
        prop_assert_eq!(&back, &model_order, "reverse iter order, {}", ctx());
        prop_assert_eq!(cache.iter().len(), model.entries.len());
        for k in 0..KEYS {
            let k = K::from(k);
            let want = model.pos(k).map(|p| model.entries[p].1);
            prop_assert_eq!(cache.peek(&k).copied(), want, "peek {:?}, {}", k, ctx());
        }
        prop_assert_eq!(cache.metrics(), model.metrics, "metrics, {}", ctx());
    }
    Ok(())
}

fn key() -> impl Strategy<Value = u8> {
    0..KEYS
}

fn ttl() -> impl Strategy<Value = u64> {
    prop_oneof![
        1 => Just(0u64),
        6 => 1u64..=40,
        1 => 40u64..=1_000,
        1 => Just(u64::MAX),
        1 => (u64::MAX - 50)..=u64::MAX,
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => key().prop_map(Op::Put),
        8 => (key(), ttl()).prop_map(|(k, t)| Op::PutTtl(k, t)),
        4 => key().prop_map(Op::Get),
        2 => key().prop_map(Op::GetMut),
        2 => key().prop_map(Op::Peek),
        2 => key().prop_map(Op::Contains),
        2 => key().prop_map(Op::Remove),
        6 => key().prop_map(Op::GetAt),
        2 => key().prop_map(Op::GetMutAt),
        3 => key().prop_map(Op::PeekAt),
        3 => key().prop_map(Op::ContainsAt),
        2 => key().prop_map(Op::RemoveAt),
        1 => Just(Op::Purge),
        1 => prop_oneof![Just(Op::Clear), Just(Op::ResetMetrics)],
        // Time. Jumps to the end of time (where `now + ttl` overflows u64)
        // are rare, so that about a third of the sequences end there and
        // the rest stay at small times.
        8 => prop_oneof![
            80 => (0u64..=10).prop_map(Op::Advance),
            10 => (10u64..=2_000).prop_map(Op::Advance),
            1 => Just(Op::Advance(u64::MAX)),
            1 => (0u64..=60).prop_map(Op::JumpToEnd),
        ],
    ]
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(op(), 1..200)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn capacity_1_matches_model(ops in ops()) {
        run::<u8, 1>(&ops)?;
    }

    #[test]
    fn capacity_2_matches_model(ops in ops()) {
        run::<u8, 2>(&ops)?;
    }

    #[test]
    fn capacity_3_matches_model(ops in ops()) {
        run::<u8, 3>(&ops)?;
    }

    #[test]
    fn capacity_4_matches_model(ops in ops()) {
        run::<u8, 4>(&ops)?;
    }

    #[test]
    fn capacity_7_matches_model(ops in ops()) {
        run::<u8, 7>(&ops)?;
    }

    #[test]
    fn clashing_hashes_match_model(ops in ops()) {
        run::<Clash, 7>(&ops)?;
    }

    #[test]
    fn clashing_hashes_small_capacity_match_model(ops in ops()) {
        run::<Clash, 3>(&ops)?;
    }
}
