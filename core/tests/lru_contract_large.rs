//! `LruCache` at capacities the proptest model (`lru_model.rs`, N ≤ 7)
//! does not reach — 1, 5, 64, 100, 1 000 and the largest, 65 535 — against
//! a reference written from the rustdoc: an exact LRU list (most recent
//! first) whose entries carry `deadline = now + ttl` (exact, `None` for
//! `put` or past `Instant::MAX`), expired at `t` iff `t >= deadline`;
//! time-less methods treat every stored entry as live, timed ones free an
//! expired entry they meet and count it in `expirations`; `put_with_ttl`
//! reports a displaced entry expired at `now` as `Expired`. Long seeded
//! histories over `2 N` keys (so replacements, misses and evictions all
//! happen), with the full iteration order compared every few hundred steps.
#![cfg(not(miri))]
// `new_boxed`: the largest capacity does not fit a test thread's stack.
#![cfg(feature = "alloc")]

use std::collections::VecDeque;

use fusebox::cache::{CacheMetrics, Displaced, LruCache};
use fusebox::{Duration, Instant};

use crate::common::SplitMix;

type Entry = (u32, u64, Option<u128>);

struct Model {
    capacity: usize,
    /// Most recently used first.
    entries: VecDeque<Entry>,
    metrics: CacheMetrics,
}

fn expired(deadline: Option<u128>, now: Instant) -> bool {
    deadline.is_some_and(|d| u128::from(now.as_micros()) >= d)
}

impl Model {
    fn position(&self, k: u32) -> Option<usize> {
        self.entries.iter().position(|e| e.0 == k)
    }

    fn promote(&mut self, p: usize) -> u64 {
        let e = self.entries.remove(p).unwrap();
        self.entries.push_front(e);
        e.1
    }

    fn get(&mut self, k: u32) -> Option<u64> {
        if let Some(p) = self.position(k) {
            self.metrics.hits += 1;
            Some(self.promote(p))
        } else {
            self.metrics.misses += 1;
            None
        }
    }

    /// A timed lookup: frees an expired entry; `None` if absent or expired.
    fn live(&mut self, k: u32, now: Instant) -> Option<usize> {
        let p = self.position(k)?;
        if expired(self.entries[p].2, now) {
            self.entries.remove(p);
            self.metrics.expirations += 1;
            return None;
        }
        Some(p)
    }

    fn get_at(&mut self, k: u32, now: Instant) -> Option<u64> {
        if let Some(p) = self.live(k, now) {
            self.metrics.hits += 1;
            Some(self.promote(p))
        } else {
            self.metrics.misses += 1;
            None
        }
    }

    fn put(
        &mut self,
        k: u32,
        v: u64,
        deadline: Option<u128>,
        now: Option<Instant>,
    ) -> Option<Displaced<u32, u64>> {
        self.metrics.inserts += 1;
        let gone = |m: &mut Self, old: Entry, fallback: fn(u32, u64) -> Displaced<u32, u64>| {
            if now.is_some_and(|now| expired(old.2, now)) {
                m.metrics.expirations += 1;
                Displaced::Expired(old.0, old.1)
            } else {
                fallback(old.0, old.1)
            }
        };
        let out = if let Some(p) = self.position(k) {
            let old = self.entries.remove(p).unwrap();
            Some(gone(self, old, Displaced::Replaced))
        } else if self.entries.len() == self.capacity {
            let old = self.entries.pop_back().unwrap();
            let d = gone(self, old, Displaced::Evicted);
            if matches!(d, Displaced::Evicted(..)) {
                self.metrics.evictions += 1;
            }
            Some(d)
        } else {
            None
        };
        self.entries.push_front((k, v, deadline));
        out
    }

    fn remove(&mut self, k: u32) -> Option<(u32, u64)> {
        let p = self.position(k)?;
        self.entries.remove(p).map(|e| (e.0, e.1))
    }

    fn remove_at(&mut self, k: u32, now: Instant) -> Option<(u32, u64)> {
        let p = self.position(k)?;
        let e = self.entries.remove(p).unwrap();
        if expired(e.2, now) {
            self.metrics.expirations += 1;
            None
        } else {
            Some((e.0, e.1))
        }
    }

    fn purge(&mut self, now: Instant) -> usize {
        let before = self.entries.len();
        self.entries.retain(|e| !expired(e.2, now));
        let freed = before - self.entries.len();
        self.metrics.expirations += freed as u64;
        freed
    }
}

fn run<const N: usize>(seed: u64, steps: usize) {
    let mut cache = LruCache::<u32, u64, N>::new_boxed();
    let mut model = Model {
        capacity: N,
        entries: VecDeque::new(),
        metrics: CacheMetrics::default(),
    };
    let keys = 2 * N as u64;
    let mut rng = SplitMix(seed);
    let mut now = Instant::from_secs(1);
    for step in 0..steps {
        let r = rng.next();
        let k = ((r >> 16) % keys) as u32;
        let v = rng.next();
        let ttl = Duration::from_micros(rng.next() % 2_000);
        let ctx = |what: &str| format!("N {N} seed {seed} step {step}: {what}({k})");
        match r % 16 {
            0..=3 => assert_eq!(
                cache.put(k, v),
                model.put(k, v, None, None),
                "{}",
                ctx("put")
            ),
            4..=5 => {
                // Past `Instant::MAX`: never expires.
                let deadline = now.checked_add(ttl).map(|d| u128::from(d.as_micros()));
                assert_eq!(
                    cache.put_with_ttl(k, v, ttl, now),
                    model.put(k, v, deadline, Some(now)),
                    "{}",
                    ctx("put_with_ttl")
                );
            }
            6..=7 => assert_eq!(cache.get(&k).copied(), model.get(k), "{}", ctx("get")),
            8..=9 => assert_eq!(
                cache.get_at(&k, now).copied(),
                model.get_at(k, now),
                "{}",
                ctx("get_at")
            ),
            10 => {
                let expected = model.position(k).map(|p| model.entries[p].1);
                assert_eq!(cache.peek(&k).copied(), expected, "{}", ctx("peek"));
            }
            11 => {
                let expected = model.live(k, now).map(|p| model.entries[p].1);
                assert_eq!(
                    cache.peek_at(&k, now).copied(),
                    expected,
                    "{}",
                    ctx("peek_at")
                );
            }
            12 => assert_eq!(cache.remove(&k), model.remove(k), "{}", ctx("remove")),
            13 => assert_eq!(
                cache.remove_at(&k, now),
                model.remove_at(k, now),
                "{}",
                ctx("remove_at")
            ),
            14 => {
                let step = Duration::from_micros(rng.next() % 500);
                now = now.checked_add(step).unwrap_or(Instant::MAX);
                if rng.next() % 512 == 0 {
                    // Near the end of time: deadlines past `Instant::MAX`.
                    now = Instant::from_micros(u64::MAX - rng.next() % 4_000);
                }
                if rng.next() % 64 == 0 {
                    assert_eq!(
                        cache.purge_expired(now),
                        model.purge(now),
                        "{}",
                        ctx("purge")
                    );
                }
            }
            _ => {
                if rng.next() % 1_024 == 0 {
                    cache.clear();
                    model.entries.clear();
                } else {
                    let expected = model.live(k, now).is_some();
                    assert_eq!(
                        cache.contains_at(&k, now),
                        expected,
                        "{}",
                        ctx("contains_at")
                    );
                }
            }
        }
        assert_eq!(cache.len(), model.entries.len(), "{}", ctx("len"));
        assert_eq!(cache.metrics(), model.metrics, "{}", ctx("metrics"));
        if step % 257 == 0 || step + 1 == steps {
            let got: Vec<(u32, u64)> = cache.iter().map(|(k, v)| (*k, *v)).collect();
            let want: Vec<(u32, u64)> = model.entries.iter().map(|e| (e.0, e.1)).collect();
            assert_eq!(got, want, "{}", ctx("iter"));
            let back: Vec<(u32, u64)> = cache.iter().rev().map(|(k, v)| (*k, *v)).collect();
            assert!(back.iter().eq(want.iter().rev()), "{}", ctx("iter().rev()"));
        }
    }
}

#[test]
fn capacity_1() {
    for seed in 0..8 {
        run::<1>(seed, 20_000);
    }
}

#[test]
fn capacity_5() {
    for seed in 0..8 {
        run::<5>(seed, 20_000);
    }
}

#[test]
fn capacity_64() {
    for seed in 0..4 {
        run::<64>(seed, 40_000);
    }
}

#[test]
fn capacity_100() {
    for seed in 0..4 {
        run::<100>(seed, 40_000);
    }
}

#[test]
fn capacity_1000() {
    run::<1_000>(1, 60_000);
}

/// The largest capacity (node indices up to `u16::MAX - 1`), not filled.
#[test]
fn capacity_65535() {
    run::<65_535>(2, 5_000);
}
