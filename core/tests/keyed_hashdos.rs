//! Keys chosen by an attacker. With the default hasher's public seed, 16
//! keys sharing a victim's home slot are found offline by brute force (a
//! few tens of thousands of hashes); kept busy, they lock the victim's new
//! key out of the table: `TableFull` under `FullPolicy::Reject`, the shared
//! overflow bucket under `FullPolicy::Overflow`. With a per-instance secret
//! seed (`RandomState`, or, for these one-word keys, `FixedState::with_seed`
//! from an RNG) the same keys land anywhere and the victim gets its own
//! bucket. (`FixedState::with_seed` does not protect `u128`, multi-word or
//! string keys: `hash_multiword_keys.rs`.)
//!
//! The offline search needs the home slot of a key: for a power-of-two `N`
//! it is the hash's low bits (`bucket/keyed.rs`, `locate`), as anyone
//! reading the source knows.
#![cfg(feature = "std")]

use std::hash::BuildHasher;

use fusebox::bucket::{FullPolicy, KeyedError, KeyedLimiter, Quota, PROBE};
use fusebox::hash::{FixedState, RandomState};
use fusebox::{Duration, Instant};

const N: usize = 4096;
const NOW: Instant = Instant::from_secs(1_000);
const VICTIM: u64 = 0x00C0_FFEE;

fn home(hasher: &impl BuildHasher, key: u64) -> usize {
    hasher.hash_one(key) as usize & (N - 1)
}

/// The attack, computed offline from the public default seed: `PROBE`
/// keys whose home slot is the victim's.
fn colliding_keys() -> Vec<u64> {
    let public = FixedState::new();
    let target = home(&public, VICTIM);
    let keys: Vec<u64> = (1u64..)
        .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .filter(|&k| k != VICTIM && home(&public, k) == target)
        .take(PROBE)
        .collect();
    assert_eq!(keys.len(), 16);
    keys
}

/// 10 per second, burst 10: one request every 100 ms keeps a key busy
/// (never idle, so never evicted). 160 requests a second for the attack.
fn quota() -> Quota {
    Quota::per_second(10).unwrap()
}

/// The attacker's keys, each charged once at `NOW`: all inserted.
fn attack<const T: usize, S: BuildHasher>(l: &KeyedLimiter<u64, N, T, S>, keys: &[u64]) {
    for k in keys {
        l.try_acquire(k, NOW).expect("an attacker key is admitted");
    }
}

#[test]
fn the_public_seed_lets_16_keys_lock_a_victim_out() {
    let keys = colliding_keys();
    let l: KeyedLimiter<u64, N> = KeyedLimiter::new(quota(), FullPolicy::Reject).unwrap();
    attack(&l, &keys);
    // The table is almost empty, yet the victim gets no slot, for as long
    // as the attacker keeps its keys busy.
    for t in 0..5 {
        let now = NOW + Duration::from_millis(90 * t);
        for k in &keys {
            l.try_acquire(k, now).unwrap();
        }
        assert_eq!(l.try_acquire(&VICTIM, now), Err(KeyedError::TableFull));
    }
    let m = l.metrics();
    assert_eq!((m.keys, m.table_full), (16, 5));

    // Under `Overflow` the victim is charged to the bucket shared by every
    // key that found no slot (burst 1 here), not to its own.
    let l: KeyedLimiter<u64, N> =
        KeyedLimiter::new(quota(), FullPolicy::Overflow(Quota::per_second(1).unwrap())).unwrap();
    attack(&l, &keys);
    l.try_acquire(&VICTIM, NOW).unwrap();
    assert!(matches!(
        l.try_acquire(&VICTIM, NOW),
        Err(KeyedError::RateLimited(_))
    ));
    assert_eq!(l.metrics().keys, 16, "the victim never got a slot");
}

#[test]
fn a_random_seed_defeats_the_offline_search() {
    let keys = colliding_keys();
    for _ in 0..20 {
        let l: KeyedLimiter<u64, N, 1, RandomState> =
            KeyedLimiter::with_hasher([quota()], FullPolicy::Reject, RandomState::new()).unwrap();
        attack(&l, &keys);
        for _ in 0..10 {
            l.try_acquire(&VICTIM, NOW)
                .expect("the victim has its own bucket");
        }
        assert!(l.try_acquire(&VICTIM, NOW).is_err());
        let m = l.metrics();
        assert_eq!((m.keys, m.table_full), (17, 0));
    }
    // A secret seed in a FixedState (a firmware with an RNG) does the same.
    let l: KeyedLimiter<u64, N> = KeyedLimiter::with_hasher(
        [quota()],
        FullPolicy::Reject,
        FixedState::with_seed(RandomState::new().hash_one(0u8)),
    )
    .unwrap();
    attack(&l, &keys);
    l.try_acquire(&VICTIM, NOW).unwrap();
    assert_eq!(l.metrics().table_full, 0);
}

/// The search itself: under the random seed the attack keys scatter like
/// any keys (a handful per 16-slot window at most), while under the public
/// seed they all sit in one.
#[test]
fn the_colliding_keys_scatter_under_a_random_seed() {
    let keys = colliding_keys();
    let public = FixedState::new();
    assert!(keys
        .iter()
        .all(|&k| home(&public, k) == home(&public, VICTIM)));
    let random = RandomState::new();
    let victim_home = home(&random, VICTIM);
    let near = keys
        .iter()
        .filter(|&&k| home(&random, k).wrapping_sub(victim_home) % N < PROBE)
        .count();
    assert!(near < 8, "{near} of 16 keys near the victim's slot");
}
