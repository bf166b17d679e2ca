//! `KeyedLimiter` on long random histories against per-key buckets written
//! from the documented contract (the `bucket::keyed` docs): many keys, some
//! chosen to collide entirely (fingerprint, home slot, eviction mark), on a
//! few slots, so keys are evicted and come back all the time, while time
//! runs far past the backward tolerance, jumps forward by hours (and
//! years where the word is 64 bits), starts next to the words' wraps, and
//! readings go stale by up to the tolerance behind the latest.
//!
//! Each key of the model is GCRA on exact, unbounded time, never evicted,
//! with the emission interval `T` the `gcra` module docs define (rounded
//! up to `1/scale` µs where the scale is clamped), in units of `1/L` µs,
//! `L` the least common multiple of the quotas' scales. The check is one-sided (the limiter may admit less: rounding,
//! marks shared by colliding keys, a word read across its wrap): every
//! admission is one the key's model bucket admits, and is charged to it.
//! A second history keeps the clock monotonic and changes the tiers'
//! quotas meanwhile: every key of the tier, in the table or not, carries
//! its tokens over at the change's `now` (clamped to the new burst, an
//! overdraft kept as time), except that a key full at the change may have
//! been evicted and then starts with the new burst, like a new key.
#![cfg(not(miri))]

use std::collections::HashMap;

use fusebox::bucket::{FullPolicy, KeyedError, KeyedLimiter, Quota};
use fusebox::Instant;

use crate::common;
use crate::common::{gcd, scaled, Key, Rng, COLLIDE_FROM, NARROW, STALE};

#[allow(clippy::trivially_copy_pass_by_ref)] // the signature `with_tier_fn` takes
fn tier_of(key: &Key) -> usize {
    (key.0 / 2) as usize % 2
}

/// Two sets of quotas, whose token counts have a small enough common
/// multiple for the model's exact arithmetic: long periods, fast and
/// clamped rates.
fn quotas(set: u64) -> Vec<Quota> {
    let set: &[(u32, u64, u32)] = if set % 2 == 0 {
        &[
            (1, 1_000, 2),
            (4, 1_001, 3),
            (3, 1_000_000, 5),
            (1, 600_000_000, 1),
            (7, 1_000, 1),
            (1_000, 1_000_000, 40),
        ]
    } else {
        &[
            (1, 1_000, 2),
            (u32::MAX, 1_000_000, 2),
            (65_537, 1_000_000, 100),
            (7, 1_000, 1),
        ]
    };
    common::representable(set)
}

struct Model {
    l: u128,
    tiers: [Quota; 2],
    tat: HashMap<u32, u128>,
}

impl Model {
    fn t(&self, q: Quota) -> u128 {
        let (scale, interval) = scaled(q);
        interval * (self.l / scale)
    }
    fn ahead(&self, key: u32, now: u64) -> u128 {
        let now = u128::from(now) * self.l;
        self.tat.get(&key).map_or(0, |tat| tat.saturating_sub(now))
    }
    fn decide(&self, key: u32, n: u32, now: u64) -> Option<u128> {
        let q = self.tiers[tier_of(&Key(key))];
        let needed = self.ahead(key, now) + u128::from(n) * self.t(q);
        (needed <= self.t(q) * u128::from(q.burst())).then(|| u128::from(now) * self.l + needed)
    }
    fn set_quota(&mut self, tier: usize, q: Quota, now: u64) {
        let old = self.tiers[tier];
        let (old_t, new_t) = (self.t(old), self.t(q));
        let (old_cap, new_cap) = (
            old_t * u128::from(old.burst()),
            new_t * u128::from(q.burst()),
        );
        let keys: Vec<u32> = self.tat.keys().copied().collect();
        for key in keys {
            if tier_of(&Key(key)) != tier {
                continue;
            }
            let ahead = self.ahead(key, now);
            if ahead == 0 {
                // Full at the change: it may have been evicted (idle), and
                // an absent key starts with the new burst (documented:
                // "a new key: the new burst").
                self.tat.remove(&key);
                continue;
            }
            let new_ahead = if ahead > old_cap {
                new_cap + (ahead - old_cap)
            } else {
                (new_cap * old_t).saturating_sub((old_cap - ahead) * new_t) / old_t
            };
            self.tat.insert(key, u128::from(now) * self.l + new_ahead);
        }
        self.tiers[tier] = q;
    }
}

fn run<const N: usize>(seed: u64, start: u64, ops: usize, requote: bool) {
    let qs = quotas(seed);
    let l = qs
        .iter()
        .map(|&q| scaled(q).0)
        .fold(1, |a, b| a / gcd(a, b) * b);
    let mut rng = Rng(seed | 1);
    let tiers = [0, 1].map(|_| qs[rng.below(qs.len() as u64) as usize]);
    let limiter: KeyedLimiter<Key, N, 2> = KeyedLimiter::with_tiers(tiers, FullPolicy::Reject)
        .expect("representable")
        .with_tier_fn(tier_of);
    let mut model = Model {
        l,
        tiers,
        tat: HashMap::new(),
    };
    let mut latest = start;
    let mut log: Vec<String> = Vec::new();
    let mut recent = [0u32; 8];
    for i in 0..ops {
        latest += match rng.below(2_000) {
            0 => 3_600_000_000 * (1 + rng.below(30)),
            1 if !NARROW => 31_557_600_000_000 * (1 + rng.below(3)),
            2..=20 => rng.below(3_000_000_000),
            21..=200 => rng.below(2_000_000),
            _ => rng.below(3_000),
        };
        let now = if requote {
            latest
        } else {
            match rng.below(5) {
                0 => latest - rng.below(STALE.min(latest)),
                1 => latest - rng.below(2_000.min(latest)),
                _ => latest,
            }
        };
        let at = Instant::from_micros(now);
        if requote && rng.below(200) == 0 {
            let tier = rng.below(2) as usize;
            let q = qs[rng.below(qs.len() as u64) as usize];
            let old = limiter.set_quota(tier, q, at).expect("representable");
            assert_eq!(old, model.tiers[tier]);
            model.set_quota(tier, q, now);
            log.push(format!("{i}: tier {tier} -> {q:?} at {now}"));
            continue;
        }
        let key = match rng.below(4) {
            0 => recent[rng.below(8) as usize],
            1 => COLLIDE_FROM + rng.below(16) as u32,
            _ => rng.below(24) as u32,
        };
        let q = model.tiers[tier_of(&Key(key))];
        let n = match rng.below(10) {
            0 => q.burst().min(2),
            1 => q.burst(),
            _ => 1,
        };
        let got = if n == 1 {
            limiter.try_acquire(&Key(key), at)
        } else {
            limiter.try_acquire_n(&Key(key), n, at)
        };
        log.push(format!("{i}: key {key} n {n} at {now} -> {got:?}"));
        match got {
            Ok(()) => {
                let Some(tat) = model.decide(key, n, now) else {
                    panic!(
                        "key {key} ({q:?}) admitted {n} at {now}; the contract refuses \
                         (ahead {} units of 1/{l} µs): {:#?}",
                        model.ahead(key, now),
                        &log[log.len().saturating_sub(40)..]
                    );
                };
                model.tat.insert(key, tat);
                recent[i % 8] = key;
            }
            Err(KeyedError::RateLimited(_) | KeyedError::TableFull) => {}
            Err(e) => panic!("key {key} at {now}: {e:?}"),
        }
        if log.len() > 400 {
            log.drain(..200);
        }
    }
    assert!(limiter.metrics().evictions > 0, "{:?}", limiter.metrics());
}

fn starts() -> Vec<u64> {
    let mut starts = vec![
        1,
        (1 << 31) - 5_000,
        (1 << 32) - 5_000,
        (1 << 46) - 5_000,
        (1 << 48) - 5_000,
    ];
    let mut rng = Rng(0x5151_7777);
    for _ in 0..5 {
        starts.push(rng.below(1 << 56));
    }
    starts
}

#[test]
fn stale_and_jumping_clocks_never_get_more_than_each_keys_contract() {
    for (k, &start) in starts().iter().enumerate() {
        for s in 0..3u64 {
            run::<4>(0x7f4a_7c15 ^ (k as u64) << 24 ^ s, start, 20_000, false);
            run::<16>(0x1f4a_7c15 ^ (k as u64) << 24 ^ s, start, 20_000, false);
        }
    }
}

#[test]
fn quota_changes_on_long_histories_never_exceed_each_keys_contract() {
    for (k, &start) in starts().iter().enumerate() {
        for s in 0..3u64 {
            run::<4>(0x2545_f491 ^ (k as u64) << 24 ^ s, start, 20_000, true);
            run::<16>(0x3545_f491 ^ (k as u64) << 24 ^ s, start, 20_000, true);
        }
    }
}
