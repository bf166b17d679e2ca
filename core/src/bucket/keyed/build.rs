//! Building a [`KeyedLimiter`]: the constructors (inline or in place on
//! the heap), the hasher and its seed, the tier function.

use core::hash::{BuildHasher, Hash};
use core::mem::MaybeUninit;
use core::ptr::addr_of_mut;

use super::marks::Marks;
use super::tiers::Tiers;
use super::{design, FullPolicy, KeyedLimiter, Slot, MAX_TIERS};
use crate::bucket::gcra::Params;
use crate::bucket::{Quota, QuotaError, TokenBucket};
use crate::hash::FixedState;
use crate::sync::{AtomicU32, Counter, TableLock};

/// Constructors with the default hasher, [`FixedState`] (fixed public seed).
impl<K: Eq + Hash + Clone, const N: usize> KeyedLimiter<K, N, 1> {
    /// One quota for every key, hashed with the fixed default seed (for
    /// keys from clients see [`with_hasher`](KeyedLimiter::with_hasher)).
    ///
    /// # Errors
    ///
    /// As [`with_tiers`](KeyedLimiter::with_tiers).
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::bucket::{FullPolicy, KeyedLimiter, Quota};
    /// use fusebox::Instant;
    ///
    /// let limiter: KeyedLimiter<u8, 16> =
    ///     KeyedLimiter::new(Quota::per_second(1)?, FullPolicy::Reject)?;
    /// limiter.try_acquire(&3, Instant::from_secs(1))?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(quota: Quota, policy: FullPolicy) -> Result<Self, QuotaError> {
        Self::with_tiers([quota], policy)
    }

    /// [`new`](Self::new), built in place on the heap (feature `alloc`):
    /// for tables larger than the stack (see [Large
    /// tables](KeyedLimiter#large-tables)).
    ///
    /// # Errors
    ///
    /// As [`with_tiers`](KeyedLimiter::with_tiers).
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::bucket::{FullPolicy, KeyedLimiter, Quota};
    ///
    /// // 24 MiB: far beyond any thread's stack.
    /// let big = KeyedLimiter::<u64, { 1 << 20 }>::new_boxed(Quota::per_second(5)?, FullPolicy::Reject)?;
    /// assert_eq!(big.metrics().keys, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(feature = "alloc")]
    pub fn new_boxed(
        quota: Quota,
        policy: FullPolicy,
    ) -> Result<alloc::boxed::Box<Self>, QuotaError> {
        Self::with_hasher_boxed([quota], policy, FixedState::new())
    }
}

/// Constructors with the default hasher, [`FixedState`] (fixed public seed).
impl<K: Eq + Hash + Clone, const N: usize, const TIERS: usize> KeyedLimiter<K, N, TIERS> {
    /// A limiter with one quota per tier, hashing with the fixed default
    /// seed: for keys an attacker cannot choose (see
    /// [`with_hasher`](Self::with_hasher) otherwise). `N == 0` or a tier
    /// count outside `1..=4` fails to compile.
    ///
    /// # Errors
    ///
    /// [`QuotaError::TooLong`] if a tier's `burst × period / tokens` does
    /// not fit the slots' bucket word. Where the target has 64-bit atomics
    /// the arrival time shares its word with the slot's bookkeeping and has
    /// 48 bits: `burst × T` must stay below 2^46 scaled units (`T` the
    /// emission interval in units of `1/scale` µs, see [`Quota`]), i.e.
    /// a burst span under 814 days at scale 1, 19.5 hours at scale 1 000,
    /// 17.9 minutes at the largest scale (65 536). On Cortex-M every valid
    /// [`Quota`] fits.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::bucket::{FullPolicy, KeyedError, KeyedLimiter, Quota};
    /// use fusebox::Instant;
    ///
    /// // Tier 0: 1 a second for everyone; tier 1: 100 a second for key 0.
    /// let tiers = [Quota::per_second(1)?, Quota::per_second(100)?];
    /// let limiter: KeyedLimiter<u32, 8, 2> = KeyedLimiter::with_tiers(tiers, FullPolicy::Reject)?
    ///     .with_tier_fn(|key| usize::from(*key == 0));
    /// let now = Instant::from_secs(1);
    /// limiter.try_acquire(&0, now)?;
    /// limiter.try_acquire(&0, now)?;
    /// limiter.try_acquire(&5, now)?;
    /// assert!(matches!(limiter.try_acquire(&5, now), Err(KeyedError::RateLimited(_))));
    /// # Ok::<(), KeyedError>(())
    /// ```
    ///
    /// See also [`KeyedLimiter`].
    pub fn with_tiers(tiers: [Quota; TIERS], policy: FullPolicy) -> Result<Self, QuotaError> {
        Self::with_hasher(tiers, policy, FixedState::new())
    }

    /// Uses `seed` for the key hash: pick a secret one (e.g. from a
    /// hardware RNG) if keys come from untrusted clients. That protects
    /// keys of one machine word (integers up to 64 bits); `u128`,
    /// multi-word and string keys can still be chosen to collide whatever
    /// the seed: hash those with `RandomState` (feature `std`) through
    /// [`with_hasher`](KeyedLimiter::with_hasher). Moves the table:
    /// for a large one, pass `FixedState::with_seed(seed)` to
    /// `with_hasher_boxed` instead.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::bucket::{FullPolicy, KeyedLimiter, Quota};
    ///
    /// let limiter: KeyedLimiter<u32, 8> =
    ///     KeyedLimiter::new(Quota::per_second(1)?, FullPolicy::Reject)?.with_seed(0x5eed);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.hasher = FixedState::with_seed(seed);
        self
    }
}

impl<K: Eq + Hash + Clone, const N: usize, const TIERS: usize, S: BuildHasher>
    KeyedLimiter<K, N, TIERS, S>
{
    const CHECKS: () = {
        assert!(N > 0, "a KeyedLimiter needs at least one slot");
        assert!(N <= (u32::MAX as usize), "too many slots");
        assert!(
            TIERS > 0 && TIERS <= MAX_TIERS,
            "a KeyedLimiter has 1 to 4 quota tiers"
        );
    };

    /// A limiter with one quota per tier, hashing keys with `hasher`. With
    /// the `std` feature, `RandomState` is the one for keys that clients
    /// choose: a per-instance secret seed, at the speed of the default.
    ///
    /// # Errors
    ///
    /// As [`with_tiers`](KeyedLimiter::with_tiers).
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::bucket::{FullPolicy, KeyedLimiter, Quota};
    /// use fusebox::Instant;
    /// # #[cfg(feature = "std")] {
    /// use fusebox::hash::RandomState;
    ///
    /// let per_client: KeyedLimiter<u64, 1024, 1, RandomState> =
    ///     KeyedLimiter::with_hasher([Quota::per_second(10)?], FullPolicy::Reject, RandomState::new())?;
    /// per_client.try_acquire(&42, Instant::from_secs(1))?;
    /// # }
    /// // Any BuildHasher works, e.g. std's SipHash.
    /// let sip: KeyedLimiter<&str, 64, 1, std::hash::RandomState> =
    ///     KeyedLimiter::with_hasher([Quota::per_second(1)?], FullPolicy::Reject, Default::default())?;
    /// sip.try_acquire(&"alice", Instant::from_secs(1))?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_hasher(
        tiers: [Quota; TIERS],
        policy: FullPolicy,
        hasher: S,
    ) -> Result<Self, QuotaError> {
        let params = Self::params_of_tiers(&tiers)?;
        let mut this = MaybeUninit::<Self>::uninit();
        // SAFETY: `this` is valid for writes and aligned; `init` writes
        // every field, so it is initialised afterwards.
        unsafe {
            Self::init(this.as_mut_ptr(), tiers, params, policy, hasher);
            Ok(this.assume_init())
        }
    }

    /// [`with_hasher`](Self::with_hasher), built in place on the heap
    /// (feature `alloc`): no table-sized value ever passes through the
    /// stack, so a table of any size can be built on any thread (see
    /// [Large tables](KeyedLimiter#large-tables)).
    ///
    /// # Errors
    ///
    /// As [`with_tiers`](KeyedLimiter::with_tiers).
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::bucket::{FullPolicy, KeyedLimiter, Quota};
    /// use fusebox::hash::FixedState;
    ///
    /// let big = KeyedLimiter::<u64, 131_072, 2>::with_hasher_boxed(
    ///     [Quota::per_second(10)?, Quota::per_second(100)?],
    ///     FullPolicy::Reject,
    ///     FixedState::with_seed(0x5eed), // or `RandomState::new()` with `std`
    /// )?;
    /// assert_eq!(big.quota(1).map(|q| q.burst()), Some(100));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(feature = "alloc")]
    pub fn with_hasher_boxed(
        tiers: [Quota; TIERS],
        policy: FullPolicy,
        hasher: S,
    ) -> Result<alloc::boxed::Box<Self>, QuotaError> {
        let params = Self::params_of_tiers(&tiers)?;
        // SAFETY: `init` writes every field of the allocation it is given.
        Ok(unsafe {
            crate::boxed::new_in_place(|this| Self::init(this, tiers, params, policy, hasher))
        })
    }

    /// Each tier's parameters for the slots' bucket words.
    pub(super) fn params_of_tiers(tiers: &[Quota; TIERS]) -> Result<[Params; TIERS], QuotaError> {
        let () = Self::CHECKS;
        let mut params = [*tiers[0].params(); TIERS];
        for (p, quota) in params.iter_mut().zip(tiers) {
            *p = design::params(quota)?;
        }
        Ok(params)
    }

    /// Writes an empty limiter into `this`, field by field and slot by
    /// slot, so that nothing of the table's size is ever on the stack.
    ///
    /// # Safety
    ///
    /// * `this` is valid for writes of `Self` and aligned; whatever it
    ///   holds is overwritten, not dropped.
    unsafe fn init(
        this: *mut Self,
        tiers: [Quota; TIERS],
        params: [Params; TIERS],
        policy: FullPolicy,
        hasher: S,
    ) {
        // SAFETY: (the caller's contract) every place below lies inside
        // `*this` and is written once, without reading or dropping what
        // was there; an array of `N` slots has room for `N` writes.
        unsafe {
            let slots = addr_of_mut!((*this).slots).cast::<Slot<K>>();
            for i in 0..N {
                slots.add(i).write(design::empty());
            }
            addr_of_mut!((*this).tiers).write(Tiers::new(&tiers, &params));
            addr_of_mut!((*this).overflow).write(match policy {
                FullPolicy::Reject => None,
                FullPolicy::Overflow(q) => Some(TokenBucket::new(q)),
            });
            addr_of_mut!((*this).hasher).write(hasher);
            addr_of_mut!((*this).tier_of).write(None);
            addr_of_mut!((*this).keys).write(AtomicU32::new(0));
            addr_of_mut!((*this).lock).write(TableLock::new());
            addr_of_mut!((*this).marks).write(Marks::new());
            addr_of_mut!((*this).allowed).write(Counter::new());
            addr_of_mut!((*this).limited).write(Counter::new());
            addr_of_mut!((*this).evictions).write(Counter::new());
            addr_of_mut!((*this).table_full).write(Counter::new());
        }
    }

    /// Picks the tier of a new key with `tier_of`. A tier out of range
    /// refuses that key with
    /// [`KeyedError::TierOutOfRange`](super::KeyedError::TierOutOfRange)
    /// (it is never clamped to another tier).
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::bucket::{FullPolicy, KeyedLimiter, Quota};
    /// use fusebox::Instant;
    ///
    /// let limiter: KeyedLimiter<u32, 64, 2> =
    ///     KeyedLimiter::with_tiers([Quota::per_second(1)?, Quota::per_second(50)?], FullPolicy::Reject)?
    ///         .with_tier_fn(|id| usize::from(*id < 100)); // ids below 100 are premium
    /// assert_eq!(limiter.available(&7, Instant::from_secs(1)), 50);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn with_tier_fn(mut self, tier_of: fn(&K) -> usize) -> Self {
        self.tier_of = Some(tier_of);
        self
    }

    /// [`with_tier_fn`](Self::with_tier_fn) in place, for a boxed table.
    /// Keys already in the table keep their tier.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::bucket::{FullPolicy, KeyedLimiter, Quota};
    /// use fusebox::Instant;
    ///
    /// // Typically on a table from `with_hasher_boxed` (feature `alloc`).
    /// let mut limiter = KeyedLimiter::<u32, 4096, 2>::with_tiers(
    ///     [Quota::per_second(1)?, Quota::per_second(50)?],
    ///     FullPolicy::Reject,
    /// )?;
    /// limiter.set_tier_fn(|id| usize::from(*id < 100));
    /// assert_eq!(limiter.available(&7, Instant::from_secs(1)), 50);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_tier_fn(&mut self, tier_of: fn(&K) -> usize) {
        self.tier_of = Some(tier_of);
    }
}
