//! Key hashers for the keyed structures: [`FixedState`], the default, and
//! (feature `std`) `RandomState`, the one for servers.
//!
//! [`KeyedLimiter`](crate::KeyedLimiter),
//! [`ConcurrentCache`](crate::ConcurrentCache) and
//! [`LruCache`](crate::LruCache) take their hasher as a type parameter
//! `S: BuildHasher`, as `std`'s and heapless's maps do, defaulting to
//! [`FixedState`]. Both types here hash with [foldhash] (fast, good
//! distribution) and differ only in where the seed comes from.
//!
//! # Which one
//!
//! **Keys chosen by an attacker** (client ids, IP addresses, URLs on a
//! server): use `RandomState` (or any other keyed [`BuildHasher`], e.g.
//! `std::hash::RandomState`). With a seed the attacker knows, they can
//! search offline for keys that share a victim's slot, and 16 such keys
//! lock the victim out of a [`KeyedLimiter`](crate::KeyedLimiter)
//! (`KeyedError::TableFull`) or turn an [`LruCache`](crate::LruCache)
//! lookup into a walk of every entry. A per-instance secret seed makes that
//! search impossible. (`core/tests/keyed_hashdos.rs` builds such a key set
//! against the fixed default and shows it stops working.)
//!
//! **No entropy, or keys you choose yourself** (a firmware without an RNG
//! at boot, sensor ids): the fixed default. It is a `const` value, so the
//! structures that are `const`-constructible stay so (an `LruCache` in a
//! `static`). Where a hardware RNG exists, [`FixedState::with_seed`] with a
//! seed read from it at boot protects keys of one machine word (integers
//! up to 64 bits, and `usize`), but not wider ones: see the next section.
//!
//! # The two halves of a foldhash seed
//!
//! foldhash is keyed by a 64-bit *per-hasher* seed and a *shared* seed of
//! six words. [`FixedState`] (whatever its [`with_seed`](FixedState::with_seed))
//! uses foldhash's fixed shared seed, whose words are printed in foldhash's
//! source. foldhash folds a 128-bit input as `(lo ^ seed) × (hi ^ s0)`, so a
//! key whose high word is the public `s0` multiplies by zero: every `u128`
//! (a UUID, an IPv6 address as an integer) or `(u64, u64)` pair of that
//! form hashes alike under *every* per-hasher seed, and byte strings of 9
//! to 16 bytes ending in another public word do too. `RandomState` draws
//! both halves: the shared seed once per process, the per-hasher seed per
//! instance. (`core/tests/hash_multiword_keys.rs` plays that attacker.)
//!
//! Why the default does not switch to random with the `std` feature:
//! features must be additive, and a default type parameter that changed
//! with a feature would change the type of every `KeyedLimiter<K, N>` in
//! the dependency graph as soon as any crate enabled `std`. So the random
//! seed is chosen by naming `RandomState` (or calling a constructor that
//! takes a hasher), and these docs and the README's server example say so.
//!
//! [foldhash]: https://docs.rs/foldhash

use core::fmt;
use core::hash::BuildHasher;

/// The seed of [`FixedState::new`], public by nature: it is in the source.
const DEFAULT_SEED: u64 = 0x6675_7365_626f_785f; // "fusebox_"

/// foldhash with a fixed seed: the default hasher of the keyed structures.
///
/// Deterministic and `const`. Its default seed is public, so keys chosen
/// by an attacker can be made to collide: see the [module docs](self) for
/// when to use `RandomState` or a secret [`with_seed`](Self::with_seed).
///
/// # Examples
///
/// ```
/// use core::hash::BuildHasher;
/// use fusebox::hash::FixedState;
///
/// let (a, b) = (FixedState::new(), FixedState::new());
/// assert_eq!(a.hash_one(42u64), b.hash_one(42u64)); // deterministic
/// let secret = FixedState::with_seed(0x5eed_f00d);
/// assert_ne!(a.hash_one(42u64), secret.hash_one(42u64));
/// ```
#[derive(Clone)]
pub struct FixedState(foldhash::fast::FixedState);

impl FixedState {
    /// The default: a fixed, public seed.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::hash::FixedState;
    /// use fusebox::LruCache;
    ///
    /// // What `LruCache::new` hashes with, `const` like it.
    /// static CACHE: LruCache<u32, u32, 4, FixedState> = LruCache::with_hasher(FixedState::new());
    /// assert!(CACHE.is_empty());
    /// ```
    pub const fn new() -> Self {
        Self::with_seed(DEFAULT_SEED)
    }

    /// Hashes with `seed`; secret if it comes from an RNG (e.g. a hardware
    /// RNG read at boot).
    ///
    /// The seed keys foldhash's per-hasher half only; the shared half stays
    /// foldhash's public one. That protects keys of one machine word (`u8`
    /// to `u64`, `usize`), not `u128`s, tuples of several words or byte
    /// strings: keys of those chosen with foldhash's public constants
    /// collide whatever `seed` is (see the [module docs](self)). For such
    /// keys use `RandomState` (feature `std`) or `std::hash::RandomState`.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::bucket::{FullPolicy, KeyedLimiter, Quota};
    /// use fusebox::hash::FixedState;
    ///
    /// let seed_from_rng = 0x9e37_79b9_7f4a_7c15; // e.g. the MCU's TRNG at boot
    /// let limiter: KeyedLimiter<u32, 64> = KeyedLimiter::with_hasher(
    ///     [Quota::per_second(5)?],
    ///     FullPolicy::Reject,
    ///     FixedState::with_seed(seed_from_rng),
    /// )?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub const fn with_seed(seed: u64) -> Self {
        Self(foldhash::fast::FixedState::with_seed(seed))
    }
}

impl Default for FixedState {
    /// [`FixedState::new`].
    fn default() -> Self {
        Self::new()
    }
}

impl BuildHasher for FixedState {
    type Hasher = Hasher;

    #[inline]
    fn build_hasher(&self) -> Hasher {
        Hasher(self.0.build_hasher())
    }
}

impl fmt::Debug for FixedState {
    /// Does not show the seed, which may be a secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FixedState").finish_non_exhaustive()
    }
}

/// foldhash with secret seeds drawn from the operating system's
/// randomness (through `std::hash::RandomState`): the hasher for keys
/// chosen by clients. Requires the `std` feature.
///
/// Both halves of foldhash's seed are secret (see the [module
/// docs](self)): the shared one is drawn once per process, the per-hasher
/// one by every [`new`](Self::new), so neither another process nor
/// another table reveals this one's. It hashes at the speed of
/// [`FixedState`] (the seed is drawn once, at construction). foldhash is
/// not a cryptographic function: the seed defeats the offline search for
/// colliding keys; an attacker who can probe one table adaptively for
/// hours is a threat model for SipHash (`std::hash::RandomState`, which
/// every keyed structure also accepts, at several times the hashing cost).
///
/// # Examples
///
/// ```
/// use core::hash::BuildHasher;
/// use fusebox::hash::RandomState;
///
/// let (a, b) = (RandomState::new(), RandomState::new());
/// assert_eq!(a.hash_one("client-7"), a.hash_one("client-7"));
/// assert_ne!(a.hash_one("client-7"), b.hash_one("client-7")); // per instance
/// ```
#[cfg(feature = "std")]
#[derive(Clone)]
pub struct RandomState(foldhash::fast::SeedableRandomState);

#[cfg(feature = "std")]
impl RandomState {
    /// A fresh secret seed from the operating system's randomness.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::cache::ConcurrentCache;
    /// use fusebox::hash::RandomState;
    ///
    /// let sessions: ConcurrentCache<u64, u32, 256, 4, RandomState> =
    ///     ConcurrentCache::with_hasher(RandomState::new());
    /// sessions.insert(7, 1)?;
    /// # Ok::<(), fusebox::cache::Contended>(())
    /// ```
    pub fn new() -> Self {
        // std's RandomState keys SipHash with OS randomness (once per
        // thread) and changes the key for every instance; hashing a
        // constant with it yields an unpredictable, per-instance seed.
        fn random() -> u64 {
            std::hash::RandomState::new().hash_one(DEFAULT_SEED)
        }
        // foldhash's fixed shared seed is public: a secret per-hasher seed
        // alone leaves wide keys colliding (module docs). One secret shared
        // seed per process, as foldhash's own RandomState does.
        static SHARED: std::sync::OnceLock<foldhash::SharedSeed> = std::sync::OnceLock::new();
        let shared = SHARED.get_or_init(|| foldhash::SharedSeed::from_u64(random()));
        Self(foldhash::fast::SeedableRandomState::with_seed(
            random(),
            shared,
        ))
    }
}

#[cfg(feature = "std")]
impl Default for RandomState {
    /// [`RandomState::new`].
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "std")]
impl BuildHasher for RandomState {
    type Hasher = Hasher;

    #[inline]
    fn build_hasher(&self) -> Hasher {
        Hasher(self.0.build_hasher())
    }
}

#[cfg(feature = "std")]
impl fmt::Debug for RandomState {
    /// Does not show the seed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RandomState").finish_non_exhaustive()
    }
}

/// The [`core::hash::Hasher`] of [`FixedState`] and `RandomState`
/// (foldhash's fast variant, whose integer writes it forwards as they are).
///
/// # Examples
///
/// ```
/// use core::hash::{BuildHasher, Hash, Hasher as _};
/// use fusebox::hash::FixedState;
///
/// let state = FixedState::new();
/// let mut hasher = state.build_hasher();
/// 42u64.hash(&mut hasher);
/// assert_eq!(hasher.finish(), state.hash_one(42u64));
/// ```
#[derive(Clone)]
pub struct Hasher(foldhash::fast::FoldHasher<'static>);

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hasher").finish_non_exhaustive()
    }
}

/// Forwards each `write_*` so foldhash's specialised integer paths stay.
macro_rules! forward {
    ($($name:ident($t:ty)),*) => {$(
        #[inline(always)]
        fn $name(&mut self, i: $t) {
            self.0.$name(i);
        }
    )*};
}

// foldhash's own attributes, kept so the integer paths inline as they do
// there.
#[allow(clippy::inline_always)]
impl core::hash::Hasher for Hasher {
    #[inline(always)]
    fn finish(&self) -> u64 {
        self.0.finish()
    }

    #[inline(always)]
    fn write(&mut self, bytes: &[u8]) {
        self.0.write(bytes);
    }

    forward!(
        write_u8(u8),
        write_u16(u16),
        write_u32(u32),
        write_u64(u64),
        write_u128(u128),
        write_usize(usize),
        write_i8(i8),
        write_i16(i16),
        write_i32(i32),
        write_i64(i64),
        write_i128(i128),
        write_isize(isize)
    );
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn fixed_state_hashes_like_foldhash_with_the_same_seed() {
        let ours = FixedState::with_seed(7);
        let theirs = foldhash::fast::FixedState::with_seed(7);
        for k in [0u64, 1, u64::MAX] {
            assert_eq!(ours.hash_one(k), theirs.hash_one(k));
        }
        assert_eq!(ours.hash_one("key"), theirs.hash_one("key"));
        assert_eq!(ours.hash_one((1u8, -3i32)), theirs.hash_one((1u8, -3i32)));
    }

    #[cfg(feature = "std")]
    #[test]
    fn random_states_differ_per_instance_and_hide_their_seed() {
        extern crate std;
        let states: std::vec::Vec<RandomState> = (0..8).map(|_| RandomState::new()).collect();
        let hashes: std::collections::BTreeSet<u64> =
            states.iter().map(|s| s.hash_one(1u64)).collect();
        assert_eq!(hashes.len(), 8);
        assert_eq!(std::format!("{:?}", states[0]), "RandomState { .. }");
    }
}
