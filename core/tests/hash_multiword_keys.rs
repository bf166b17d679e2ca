//! Keys of more than one machine word chosen by an attacker, against
//! `RandomState`, the hasher the `hash` module docs recommend for keys
//! chosen by clients ("a per-instance secret seed makes that search
//! impossible").
//!
//! foldhash folds a 128-bit input as `folded_multiply(lo ^ seed, hi ^ s0)`,
//! where `seed` is the per-hasher seed and `s0` the first word of its
//! *shared* seed. If `s0` is public (foldhash's fixed shared seed, digits
//! of π printed in its source), a key whose high word is `s0` multiplies
//! by zero: every such `u128` (a UUID, an IPv6 address as an integer, a
//! `(u64, u64)` pair) hashes to 0 whatever the secret per-hasher seed.
//! These tests play that attacker: they know the public constant and no
//! seed, and check that the keys still scatter.
#![cfg(feature = "std")]

use std::cell::Cell;
use std::collections::BTreeSet;
use std::hash::{BuildHasher, Hash, Hasher};

use fusebox::cache::{ConcurrentCache, LruCache};
use fusebox::hash::RandomState;

/// foldhash 0.2's fixed shared seed word `s0` (`ARBITRARY6` in its
/// `lib.rs`): public, like everything in a published crate.
const PUBLIC_S0: u64 = 0xc0ac_29b7_c97c_50dd;

/// The attacker's `i`-th key: any low word, the public constant above it.
fn key(i: u64) -> u128 {
    u128::from(i.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | u128::from(PUBLIC_S0) << 64
}

const KEYS: u64 = if cfg!(miri) { 64 } else { 1_024 };

#[test]
fn random_state_scatters_u128_keys_sharing_a_public_high_word() {
    for _ in 0..4 {
        let state = RandomState::new();
        let hashes: BTreeSet<u64> = (0..KEYS).map(|i| state.hash_one(key(i))).collect();
        // A keyed hash of distinct keys: collisions among 2^10 values of
        // 64 bits have probability ~2^-44.
        assert_eq!(
            hashes.len() as u64,
            KEYS,
            "u128 keys collide under a secret seed"
        );
    }
}

#[test]
fn random_state_scatters_u64_pairs_sharing_a_public_second_word() {
    let state = RandomState::new();
    let hashes: BTreeSet<u64> = (0..KEYS)
        .map(|i| state.hash_one((i.wrapping_mul(0x9E37_79B9_7F4A_7C15), PUBLIC_S0)))
        .collect();
    assert_eq!(
        hashes.len() as u64,
        KEYS,
        "(u64, u64) keys collide under a secret seed"
    );
}

thread_local! {
    static COMPARISONS: Cell<u64> = const { Cell::new(0) };
}

/// A `u128` key (hashed exactly like one) that counts its comparisons.
#[derive(Clone, Copy, Debug)]
struct Counted(u128);

impl Hash for Counted {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl PartialEq for Counted {
    fn eq(&self, other: &Self) -> bool {
        COMPARISONS.with(|c| c.set(c.get() + 1));
        self.0 == other.0
    }
}

impl Eq for Counted {}

/// An LRU cache keyed by client-chosen `u128`s, hashed with `RandomState`
/// as the docs advise: the attacker's keys must not share one chain. With
/// `2 N` buckets a hit compares 1¼ keys on average; one shared chain makes
/// it `N / 2`.
#[test]
fn lru_lookups_of_chosen_u128_keys_stay_short_under_random_state() {
    const N: usize = 512;
    let mut cache: LruCache<Counted, u32, N, RandomState> =
        LruCache::with_hasher(RandomState::new());
    let keys: Vec<Counted> = (0..N as u64).map(|i| Counted(key(i))).collect();
    for (v, k) in (0u32..).zip(&keys) {
        cache.put(*k, v);
    }
    COMPARISONS.with(|c| c.set(0));
    for (v, k) in (0u32..).zip(&keys) {
        assert_eq!(cache.get(k), Some(&v));
    }
    let comparisons = COMPARISONS.with(Cell::get);
    assert!(
        comparisons < 4 * N as u64,
        "{comparisons} key comparisons for {N} hits: the keys share a chain"
    );
}

/// A concurrent cache of 64 sets × 4 ways keyed by client-chosen `u128`s,
/// hashed with `RandomState`: 64 such keys spread over the sets (about 40
/// distinct sets with a uniform hash; none evicts another unless 5 share a
/// set), so most stay cached. Sharing one set, only 4 would.
#[test]
fn concurrent_cache_keeps_chosen_u128_keys_apart_under_random_state() {
    let cache: ConcurrentCache<u128, u32, 64, 4, RandomState> =
        ConcurrentCache::with_hasher(RandomState::new());
    for (v, i) in (0u32..).zip(0..64) {
        cache.insert(key(i), v).unwrap();
    }
    let kept = (0..64).filter(|&i| cache.get(&key(i)).is_some()).count();
    assert!(kept > 32, "only {kept} of 64 keys kept: they share a set");
}

/// The documented limit of `FixedState::with_seed`: its secret keys
/// foldhash's per-hasher seed only, so these keys still collide under it
/// (its docs send such keys to `RandomState`).
#[test]
fn fixed_state_with_a_secret_seed_does_not_protect_u128_keys() {
    let secret = fusebox::hash::FixedState::with_seed(RandomState::new().hash_one(0u8));
    let hashes: BTreeSet<u64> = (0..KEYS).map(|i| secret.hash_one(key(i))).collect();
    assert_eq!(hashes.len(), 1);
}
