//! [`KeyedLimiter`]: one GCRA bucket per key, in fixed storage.
//!
//! # Table
//!
//! `N` slots, open addressing: a key lives in one of the [`PROBE`]
//! consecutive slots from its hash (or fewer if `N` is smaller). Keys are
//! hashed with the limiter's hasher `S` (see
//! [Hashing](KeyedLimiter#hashing)), then compared with `Eq`.
//! A slot is a 32-bit *state word*, the bucket word and the key itself.
//! The state word (layout in the `state` module) is
//!
//! ```text
//! [fingerprint 12][tier 2][readers 6][allowed 12]   0: empty, u32::MAX: locked
//! ```
//!
//! the key's hash fingerprint and quota tier and, on Cortex-M, the callers
//! registered on the slot and admissions counted on it but not yet in the
//! global counter. Where the target has 64-bit atomics those two live in
//! the 64-bit bucket word instead (layout in the `packed` module):
//!
//! ```text
//! [tat 48][pins 6][tag 1][allowed 9]   u64::MAX: empty or locked
//! ```
//!
//! (On Cortex-M the bucket word is the arrival time in half units, its
//! lowest bit the tag.) The *tag* names the quota generation of the key's
//! tier the word was written under, so that a tier's quota can change
//! while decisions go on (see [Quota changes](#quota-changes)).
//!
//! # Concurrency
//!
//! * Existing keys are **lock-free**. Where the target has 64-bit atomics
//!   a call is **two** read-modify-writes: the caller reads the state word
//!   (fingerprint and tier; no write), *pins* the slot with one CAS on the
//!   bucket word, compares the key, then one CAS both charges the bucket
//!   (the GCRA decision of [`TokenBucket`], on the word's 48-bit arrival
//!   time), unpins and counts the admission in the slot; a refusal only
//!   unpins. On Cortex-M (32-bit words) a call is three: *register* on the
//!   state word (one CAS that also checks the fingerprint), charge the
//!   32-bit bucket word, unregister with one `fetch_add` that also counts
//!   the admission. Either way, while a caller is pinned (registered) the
//!   slot cannot be recycled, so the key it compares and the bucket it
//!   charges belong together: no request is ever charged to another key's
//!   bucket. (Pinning is what makes reading an arbitrary `K` safe while an
//!   insert may rewrite the slot, so two is the floor for `K: Eq`.)
//!   Besides these a call loads its tier's quota generation (one load,
//!   after the bucket word), and a refusal loads the bucket word again to
//!   confirm it.
//! * Admissions are counted in the slot and moved into the global counter
//!   in batches (256 with 64-bit atomics, 2 048 on Cortex-M): by the caller
//!   that finds a batch complete (one extra CAS and add), and by the
//!   eviction of the key (its remainder). [`KeyedLimiter::metrics`] adds
//!   the slots' pending counts, so it is exact whenever no call is in
//!   flight. Refusals, insertions and the overflow bucket are counted
//!   globally.
//! * Inserting a new key takes the table's **lock**: a `std::sync::Mutex`
//!   of this table alone with the `std` feature (no other table waits,
//!   and no process-wide lock exists), the `critical-section` crate's
//!   critical section without it (interrupt-safe on a microcontroller,
//!   where an interrupt handler may insert too; see the crate's `sync`
//!   module). The lookup is repeated under it (so a key is never inserted
//!   twice), then an empty slot is claimed or an **idle** one (its bucket
//!   full again) evicted (see [Eviction](#eviction)). Eviction locks the
//!   slot (the bucket word, or the state word on Cortex-M) by a CAS that
//!   only succeeds with nobody pinned (registered) and nothing changed
//!   since it read the pending count it folds, so a key in use is never
//!   lost.
//! * User code under the lock is only `K::eq` (the repeated lookup) and
//!   `K::clone` (the stored copy, made before any slot changes); an
//!   evicted key is dropped after the lock is released, and the tier
//!   function and `Hash` run before it is taken. So a panic in any of them
//!   leaves the table consistent and unlocked.
//! * A key with 62 callers pinned at once (63 registered on Cortex-M)
//!   sends the next ones through the lock, which charges the bucket
//!   without pinning (evictions only happen there).
//! * [`available`](KeyedLimiter::available) takes no lock: a key it does
//!   not find reads its eviction mark lock-free (see the `marks` module).
//!   Only a key whose fingerprint's slot has every pin taken goes through
//!   the lock, as its charges do.
//! * When every slot of the key's probe window holds a busy key, the
//!   [`FullPolicy`] decides: reject, or charge a shared overflow bucket.
//!   Never an unlimited pass.
//!
//! # Quota changes
//!
//! [`KeyedLimiter::set_quota`] changes a tier's quota under `&self`. Each
//! tier has a quota *generation* and two quota slots; every bucket word
//! carries the parity of the generation it was written under (its *tag*).
//! A change writes the slot not in force, publishes it by bumping the
//! generation, then *sweeps* the table under the table's lock, converting
//! each of the tier's words by one CAS. A decision racing with the change
//! that finds a word of the previous generation converts it itself, in
//! the CAS that charges it. The conversion is the token bucket's (tokens
//! available at the change's `now` kept, no new burst), and a pure
//! function of the word, so the sweep and every racing decision agree.
//! Details in the `tiers` module.
//!
//! # Eviction
//!
//! A key is evicted only when idle: its bucket full again at the evicting
//! caller's `now`. A caller whose `now` is behind that one (within the
//! tolerance below) would still find the bucket drained, so the eviction
//! leaves a *mark*: the instant the bucket became full, kept (the latest)
//! in one of 8 marks picked by the key's fingerprint. A key inserted later
//! starts its bucket full *at its fingerprint's mark* rather than full
//! now, so a key that comes back, in whatever slot, is never fuller than
//! it left: per key, at most `burst + rate·Δ` tokens are admitted among
//! calls whose `now`s lie within `Δ` of each other, evictions included. A
//! new key sharing the mark starts equally drained, which only a caller
//! behind the mark (at most the evicting caller's `now`) notices: it may
//! wait up to its own lag, and never gets more. (Under
//! [`FullPolicy::Overflow`] a key that finds no slot is charged to the
//! shared bucket instead of its own, as documented there.)
//!
//! # Range
//!
//! With 64-bit atomics the slots' arrival time has 48 bits, so a tier's
//! burst span is bounded (checked by [`KeyedLimiter::with_tiers`]; see
//! the `gcra` module for what a narrower word means): `burst × T` below
//! 2^46 scaled units. A `now` up to 2^42 scaled units behind a previous
//! call's only denies (50.9 days at scale 1, 73 minutes at scale 1 000,
//! 67 s at scale 65 536); one further behind reads the key's bucket as
//! full, so do not hold a clock reading that long before calling. A key
//! left idle for close to a multiple of 2^48 scaled units (8.9 years at
//! scale 1, 78 hours at scale 1 000, 71.6 minutes at scale 65 536) may
//! read as partly drained and then admits *less* for at most its burst
//! span plus that tolerance, never more. (Cortex-M: the bucket word holds
//! half units, like the token bucket's: ~1.05 s of tolerance, and the wrap
//! at 2^31 scaled units, 35.8 min at scale 1; see the `gcra` module.)
//!
//! The hasher (a type parameter, `S`) and heap construction are described
//! on [`KeyedLimiter`] itself.
//!
//! [`TokenBucket`]: super::TokenBucket

mod insert;
mod marks;
#[cfg(fusebox_wide_words)]
mod packed;
#[cfg(not(fusebox_wide_words))]
mod split;
mod state;
#[cfg(all(test, not(loom)))]
mod tests;
mod tiers;

use core::cell::UnsafeCell;
use core::fmt;
use core::hash::{BuildHasher, Hash};
use core::mem::MaybeUninit;
use core::ptr::addr_of_mut;

use self::marks::Marks;
#[cfg(fusebox_wide_words)]
use self::packed as design;
#[cfg(not(fusebox_wide_words))]
use self::split as design;
use self::state::{EMPTY, FP_SHIFT, LOCKED};
use self::tiers::{Refused, Tiers};
use super::gcra::Params;
use super::{InsufficientCapacity, Quota, QuotaError, RateLimited, TokenBucket};
use crate::hash::FixedState;
use crate::sync::{AtomicU32, Counter, Ordering, TableLock, TatWord};
use crate::{Duration, Instant};

/// Slots searched for a key, from its home slot.
pub const PROBE: usize = 16;

/// The most quota tiers a keyed limiter can have.
pub const MAX_TIERS: usize = 4;

/// What to do with a new key when every slot it may use holds a busy key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum FullPolicy {
    /// Refuse the request ([`KeyedError::TableFull`]).
    Reject,
    /// Charge it to one bucket shared by all keys that found no slot.
    Overflow(Quota),
}

/// Why a keyed request was refused.
///
/// Non-exhaustive: match the variants you handle and keep a `_` arm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum KeyedError {
    /// The key's bucket (or the overflow bucket) is empty for now.
    RateLimited(RateLimited),
    /// More tokens than the key's burst were requested at once.
    InsufficientCapacity(InsufficientCapacity),
    /// No slot for a new key and the policy is [`FullPolicy::Reject`].
    TableFull,
    /// The tier asked for (by [`try_acquire_tier`](KeyedLimiter::try_acquire_tier),
    /// or returned by the [tier function](KeyedLimiter::with_tier_fn) for a
    /// new key) is not below the limiter's `TIERS`: a caller's bug, never
    /// clamped to another tier. Nothing was charged or inserted.
    TierOutOfRange {
        /// The tier asked for.
        tier: usize,
    },
    /// The quota given to [`set_quota`](KeyedLimiter::set_quota) does not
    /// fit the slots' bucket word (see
    /// [`with_tiers`](KeyedLimiter::with_tiers)); nothing was changed.
    Quota(QuotaError),
}

impl fmt::Display for KeyedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RateLimited(e) => e.fmt(f),
            Self::InsufficientCapacity(e) => e.fmt(f),
            Self::TableFull => f.write_str("keyed limiter full: no idle slot for a new key"),
            Self::TierOutOfRange { tier } => write!(f, "no quota tier {tier} in this limiter"),
            Self::Quota(e) => e.fmt(f),
        }
    }
}
impl core::error::Error for KeyedError {}
impl From<RateLimited> for KeyedError {
    fn from(e: RateLimited) -> Self {
        Self::RateLimited(e)
    }
}
impl From<QuotaError> for KeyedError {
    fn from(e: QuotaError) -> Self {
        Self::Quota(e)
    }
}

/// Counters of a [`KeyedLimiter`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct KeyedMetrics {
    /// Requests admitted.
    pub allowed: u64,
    /// Requests refused, for any [`KeyedError`].
    pub limited: u64,
    /// Idle keys evicted to make room.
    pub evictions: u64,
    /// Requests refused because the table was full.
    pub table_full: u64,
    /// Keys currently held.
    pub keys: u64,
}

pub(crate) struct Slot<K> {
    /// `[fingerprint 12][tier 2][readers 6][allowed 12]`, `0` empty,
    /// `u32::MAX` locked; see the `state` module.
    state: AtomicU32,
    /// The bucket: `[tat 48][pins 6][tag 1][allowed 9]` with 64-bit atomics
    /// (see the `packed` module), the arrival time in half units with the
    /// tag as its lowest bit on Cortex-M (the `split` module).
    tat: TatWord,
    /// Initialised iff `state` is neither `EMPTY` nor `LOCKED`; written and
    /// moved out only while the slot is locked (under the table's lock),
    /// read only by a caller pinned (registered) on the slot or under the
    /// table's lock.
    key: UnsafeCell<MaybeUninit<K>>,
}

/// Per-key GCRA buckets in fixed storage; see the module docs.
///
/// `TIERS` quotas (1..=4): a key gets the tier given at insertion (by
/// [`try_acquire_tier`](Self::try_acquire_tier) or the tier function) and
/// keeps it while it stays in the table. A tier's quota can change at run
/// time, under `&self`: [`set_quota`](Self::set_quota).
///
/// # Hashing
///
/// The hasher is a type parameter, `S` (default [`FixedState`]: foldhash
/// with a fixed, public seed). **A server whose keys come from clients must
/// use a secret seed**: [`with_hasher`](Self::with_hasher) with
/// `RandomState` (feature `std`), or [`FixedState::with_seed`] with a seed
/// from an RNG. With the public seed
/// anyone can compute, offline, [`PROBE`] (16) keys that share a victim's
/// home slot and keep them busy: the victim's new key then finds no slot
/// ([`KeyedError::TableFull`] under [`FullPolicy::Reject`], the shared
/// overflow bucket under [`FullPolicy::Overflow`]). The fixed default
/// exists for firmware with no entropy at boot, and keeps the default
/// type the same whatever features are enabled (see the
/// [`hash`](crate::hash) module).
///
/// # Large tables
///
/// A table lives inline (`N` slots of 16 bytes plus the key, rounded to 8):
/// 131 072 `u64` keys take 3 MiB, more than a tokio worker's 2 MiB stack,
/// so `Box::new(KeyedLimiter::new(..))` can overflow it before the value
/// reaches the heap. With the `alloc` feature `with_hasher_boxed` and
/// `new_boxed` build the table in place on the heap.
///
/// # Examples
///
/// ```
/// use fusebox::bucket::{FullPolicy, KeyedError, KeyedLimiter, Quota};
/// use fusebox::Instant;
///
/// // Tier 0: 10/s; tier 1 ("premium"): 100/s.
/// let limiter: KeyedLimiter<u32, 64, 2> = KeyedLimiter::with_tiers(
///     [Quota::per_second(10)?, Quota::per_second(100)?],
///     FullPolicy::Reject,
/// )?;
/// let now = Instant::from_secs(1);
/// for _ in 0..10 {
///     limiter.try_acquire(&7, now)?;
/// }
/// assert!(matches!(limiter.try_acquire(&7, now), Err(KeyedError::RateLimited(_))));
/// limiter.try_acquire_tier(&8, 1, now)?; // a premium key
/// assert_eq!(limiter.metrics().keys, 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct KeyedLimiter<K, const N: usize, const TIERS: usize = 1, S = FixedState> {
    slots: [Slot<K>; N],
    /// Each tier's quota, changeable at run time (see the `tiers` module).
    tiers: Tiers<TIERS>,
    overflow: Option<TokenBucket>,
    hasher: S,
    tier_of: Option<fn(&K) -> usize>,
    keys: AtomicU32,
    /// Serialises insertions and evictions (see the module docs).
    lock: TableLock,
    /// Where evicted keys' buckets stood, for their return; written only
    /// under `lock` (see the `marks` module).
    marks: Marks,
    allowed: Counter,
    limited: Counter,
    evictions: Counter,
    table_full: Counter,
}

// SAFETY: keys are shared between threads only through `&K` comparisons
// (needs `K: Sync`) and are moved in and dropped by whichever thread inserts
// or evicts (needs `K: Send`); the hasher is used through `&S` (needs
// `S: Sync`); the eviction marks are atomics written only under the
// table's lock; every other field is atomic, a lock or immutable.
unsafe impl<K: Send + Sync, const N: usize, const TIERS: usize, S: Sync> Sync
    for KeyedLimiter<K, N, TIERS, S>
{
}
// SAFETY: as above; sending the limiter sends its keys and its hasher.
unsafe impl<K: Send, const N: usize, const TIERS: usize, S: Send> Send
    for KeyedLimiter<K, N, TIERS, S>
{
}

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
    /// See [`KeyedLimiter`].
    pub fn with_tiers(tiers: [Quota; TIERS], policy: FullPolicy) -> Result<Self, QuotaError> {
        Self::with_hasher(tiers, policy, FixedState::new())
    }

    /// Uses `seed` for the key hash: pick a secret one (e.g. from a
    /// hardware RNG) if keys come from untrusted clients. Moves the table:
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
    fn params_of_tiers(tiers: &[Quota; TIERS]) -> Result<[Params; TIERS], QuotaError> {
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
    /// refuses that key with [`KeyedError::TierOutOfRange`] (it is never
    /// clamped to another tier).
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

    /// The quota of `tier` in force (by value: it can change, see
    /// [`set_quota`](Self::set_quota)); `None` if the limiter has no such
    /// tier.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::bucket::{FullPolicy, KeyedLimiter, Quota};
    ///
    /// let limiter: KeyedLimiter<u32, 8, 2> =
    ///     KeyedLimiter::with_tiers([Quota::per_second(1)?, Quota::per_second(9)?], FullPolicy::Reject)?;
    /// assert_eq!(limiter.quota(1), Some(Quota::per_second(9)?));
    /// assert_eq!(limiter.quota(2), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn quota(&self, tier: usize) -> Option<Quota> {
        (tier < TIERS).then(|| self.tiers.quota(tier))
    }

    /// Changes the quota of `tier` at `now` and returns the one it
    /// replaces. Callable on a shared limiter; concurrent decisions never
    /// wait for it, and each one is decided wholly under the old quota or
    /// wholly under the new.
    ///
    /// Every key of the tier keeps its bucket's state, carried over at
    /// `now` exactly as [`TokenBucket::set_quota`] documents: the tokens
    /// available at `now` stay available (fractions included, rounded
    /// toward fewer; clamped to the new burst), so raising the limit
    /// grants no new burst and lowering it limits a key at once; the new
    /// rate refills from `now` on; a key that `now` reads as overdrawn
    /// stays overdrawn for the same time. A key not in the table starts
    /// with the new quota's full burst, as a new key always does (an
    /// evicted key was idle, its bucket full, when it left). Keys of other
    /// tiers and the overflow bucket (see
    /// [`set_overflow_quota`](Self::set_overflow_quota)) are unaffected.
    ///
    /// Changes take the table's lock (with insertions and evictions: a
    /// `std` mutex per table, the critical section without `std`) and
    /// convert every key of the tier before returning: linear in `N`.
    /// Decisions on the tier's keys that race with a change convert their
    /// key themselves (see the `tiers` module).
    ///
    /// # Errors
    ///
    /// [`KeyedError::TierOutOfRange`] if `tier >= TIERS`;
    /// [`KeyedError::Quota`] if `quota` does not fit the slots' bucket
    /// word (as in [`with_tiers`](Self::with_tiers)). Nothing changes then.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fusebox::bucket::{FullPolicy, KeyedError, KeyedLimiter, Quota};
    /// use fusebox::{Duration, Instant};
    ///
    /// let limiter: Arc<KeyedLimiter<u32, 64, 2>> = Arc::new(KeyedLimiter::with_tiers(
    ///     [Quota::per_second(10)?, Quota::per_second(100)?],
    ///     FullPolicy::Reject,
    /// )?);
    /// let now = Instant::from_secs(1);
    /// limiter.try_acquire_n(&7, 8, now)?; // tier 0: 2 left
    ///
    /// // An operator raises tier 0 while requests keep flowing.
    /// let shared = Arc::clone(&limiter);
    /// let old = std::thread::spawn(move || shared.set_quota(0, Quota::per_second(50)?, now))
    ///     .join()
    ///     .unwrap()?;
    /// assert_eq!(old, Quota::per_second(10)?);
    /// assert_eq!(limiter.available(&7, now), 2, "no new burst");
    /// assert_eq!(limiter.available(&7, now + Duration::from_millis(20)), 3, "the new rate");
    /// assert_eq!(limiter.available(&8, now), 50, "a new key: the new burst");
    /// assert_eq!(
    ///     limiter.set_quota(2, Quota::per_second(1)?, now),
    ///     Err(KeyedError::TierOutOfRange { tier: 2 })
    /// );
    /// # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
    /// ```
    ///
    /// [`TokenBucket::set_quota`]: super::TokenBucket::set_quota
    pub fn set_quota(&self, tier: usize, quota: Quota, now: Instant) -> Result<Quota, KeyedError> {
        if tier >= TIERS {
            return Err(KeyedError::TierOutOfRange { tier });
        }
        let params = design::params(&quota).map_err(KeyedError::Quota)?;
        Ok(self.lock.with(|| {
            let replaced = self.tiers.publish(tier, &quota, &params, now.as_micros());
            for slot in &self.slots {
                self.sweep(slot, tier);
            }
            replaced
        }))
    }

    /// The overflow bucket's quota in force, `None` under
    /// [`FullPolicy::Reject`].
    pub fn overflow_quota(&self) -> Option<Quota> {
        self.overflow.as_ref().map(TokenBucket::quota)
    }

    /// Changes the quota of the shared overflow bucket at `now`, as
    /// [`TokenBucket::set_quota`] does (the bucket's state carries over the
    /// same way), and returns the one it replaces; `None` (and nothing
    /// changes) under [`FullPolicy::Reject`].
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::bucket::{FullPolicy, KeyedLimiter, Quota};
    /// use fusebox::Instant;
    ///
    /// let limiter: KeyedLimiter<u32, 8> =
    ///     KeyedLimiter::new(Quota::per_second(1)?, FullPolicy::Overflow(Quota::per_second(5)?))?;
    /// let old = limiter.set_overflow_quota(Quota::per_second(20)?, Instant::from_secs(1));
    /// assert_eq!(old, Some(Quota::per_second(5)?));
    /// assert_eq!(limiter.overflow_quota(), Some(Quota::per_second(20)?));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// [`TokenBucket::set_quota`]: super::TokenBucket::set_quota
    pub fn set_overflow_quota(&self, quota: Quota, now: Instant) -> Option<Quota> {
        self.overflow
            .as_ref()
            .map(|bucket| bucket.set_quota(quota, now))
    }

    /// Takes one token for `key` at `now`; a new key gets the tier of the
    /// tier function (or 0).
    ///
    /// # Errors
    ///
    /// [`KeyedError::RateLimited`], or [`KeyedError::TableFull`] under
    /// [`FullPolicy::Reject`]; [`KeyedError::TierOutOfRange`] if the tier
    /// function puts a new key in a tier the limiter does not have.
    #[inline]
    pub fn try_acquire(&self, key: &K, now: Instant) -> Result<(), KeyedError> {
        self.acquire(key, 1, None, now)
    }

    /// Takes one token for `key`, inserting it in `tier` if new.
    ///
    /// # Errors
    ///
    /// As [`try_acquire`](Self::try_acquire), and
    /// [`KeyedError::TierOutOfRange`] if `tier >= TIERS`, whether or not
    /// the key is already in the table (checked first: nothing is charged).
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::bucket::{FullPolicy, KeyedError, KeyedLimiter, Quota};
    /// use fusebox::Instant;
    ///
    /// let limiter: KeyedLimiter<u32, 8, 2> =
    ///     KeyedLimiter::with_tiers([Quota::per_second(1)?, Quota::per_second(9)?], FullPolicy::Reject)?;
    /// let now = Instant::from_secs(1);
    /// limiter.try_acquire_tier(&1, 1, now)?;
    /// assert_eq!(limiter.try_acquire_tier(&2, 2, now), Err(KeyedError::TierOutOfRange { tier: 2 }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn try_acquire_tier(&self, key: &K, tier: usize, now: Instant) -> Result<(), KeyedError> {
        if tier >= TIERS {
            return Err(self.out_of_range(tier));
        }
        self.acquire(key, 1, Some(tier), now)
    }

    /// Takes `n` tokens for `key`, all or none.
    ///
    /// # Errors
    ///
    /// As [`try_acquire`](Self::try_acquire), plus
    /// [`KeyedError::InsufficientCapacity`] if `n` exceeds the key's burst.
    #[inline]
    pub fn try_acquire_n(&self, key: &K, n: u32, now: Instant) -> Result<(), KeyedError> {
        self.acquire(key, n, None, now)
    }

    /// Whole tokens available to `key` at `now`. A key not in the table
    /// reads what it would start with if inserted now: the full burst of
    /// its tier, or less for a caller whose `now` is behind a recent
    /// eviction (see the module docs); 0 if the tier function puts it in a
    /// tier the limiter does not have.
    ///
    /// Takes no lock for a key that is absent or has room for another
    /// caller: only a key with every pin taken (62 callers at once, 63 on
    /// Cortex-M, or a key sharing its fingerprint so crowded) is looked up
    /// under the table's lock, like its charges.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::bucket::{FullPolicy, KeyedLimiter, Quota};
    /// use fusebox::Instant;
    ///
    /// let limiter: KeyedLimiter<u32, 8> =
    ///     KeyedLimiter::new(Quota::per_second(4)?, FullPolicy::Reject)?;
    /// let now = Instant::from_secs(1);
    /// limiter.try_acquire_n(&1, 3, now)?;
    /// assert_eq!(limiter.available(&1, now), 1);
    /// assert_eq!(limiter.available(&2, now), 4); // absent: a full bucket
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn available(&self, key: &K, now: Instant) -> u32 {
        let (fp, home) = self.locate(key);
        let mut crowded = false;
        for i in Self::window(home) {
            let slot = &self.slots[i];
            if let Some(available) = self.available_if(slot, fp, key, now) {
                return available;
            }
            crowded |= Self::crowded(slot, fp);
        }
        if crowded {
            // A slot with this fingerprint had no room to pin: it may hold
            // the key. Under the lock no eviction runs and no pin is needed.
            let found = self.lock.with(|| {
                self.find_locked(key, fp, home).map(|i| {
                    let (params, tat) = self.tat_locked(&self.slots[i]);
                    params.available(tat, now.as_micros()) as u32
                })
            });
            if let Some(available) = found {
                return available;
            }
        }
        // Absent: its bucket would start from its fingerprint's eviction
        // mark, read lock-free. An eviction raises the mark before the key
        // leaves its slot, so a key not found has its mark visible.
        let tier = self.tier_of.map_or(0, |f| f(key));
        if tier >= TIERS {
            return 0;
        }
        let params = self.tiers.params(tier);
        let start = marks::start(&params, self.marks.get(fp), now.as_micros());
        params.available(start, now.as_micros()) as u32
    }

    /// The counters. Admissions are partly counted per slot (see the module
    /// docs), so this reads every slot, and is exact whenever no call is in
    /// flight.
    pub fn metrics(&self) -> KeyedMetrics {
        let pending = self.slots.iter().map(Self::slot_pending).sum::<u64>();
        KeyedMetrics {
            allowed: self.allowed.get().wrapping_add(pending),
            limited: self.limited.get(),
            evictions: self.evictions.get(),
            table_full: self.table_full.get(),
            keys: u64::from(self.keys.load(Ordering::Relaxed)),
        }
    }

    /// The lock-free path, for a key already in the table; the rest is out
    /// of line.
    #[inline]
    fn acquire(
        &self,
        key: &K,
        n: u32,
        tier: Option<usize>,
        now: Instant,
    ) -> Result<(), KeyedError> {
        let (fp, home) = self.locate(key);
        for i in Self::window(home) {
            if let Some(result) = self.charge_if(&self.slots[i], fp, key, n, now) {
                if result.is_err() {
                    self.refused();
                }
                return result;
            }
        }
        self.acquire_slow(key, n, tier, fp, home, now)
    }

    #[cold]
    fn refused(&self) {
        self.limited.incr();
    }

    #[cold]
    fn out_of_range(&self, tier: usize) -> KeyedError {
        self.limited.incr();
        KeyedError::TierOutOfRange { tier }
    }

    /// The tier of a live slot's state.
    #[inline]
    fn tier_of_state(state: u32) -> usize {
        if TIERS == 1 {
            0
        } else {
            // Always in range (a key's tier is checked before it is
            // inserted); `min` spares the bounds checks.
            state::tier(state).min(TIERS - 1)
        }
    }

    /// The key's fingerprint (never that of EMPTY or LOCKED) from the high
    /// bits of its hash, and its home slot from the low bits.
    #[inline]
    fn locate(&self, key: &K) -> (u32, usize) {
        let hash = self.hasher.hash_one(key);
        let fp = ((hash >> (32 + FP_SHIFT)) as u32).clamp(1, state::FP_MAX);
        let home = if N.is_power_of_two() {
            hash as usize & (N - 1)
        } else {
            // Multiply-shift range reduction: no division.
            ((u64::from(hash as u32) * N as u64) >> 32) as usize
        };
        (fp, home)
    }

    #[inline]
    fn window(home: usize) -> impl Iterator<Item = usize> {
        (0..PROBE.min(N)).map(move |i| {
            let j = home + i;
            if N.is_power_of_two() {
                j & (N - 1)
            } else if j >= N {
                j - N
            } else {
                j
            }
        })
    }
}

/// A refused decision on `n` tokens, as the caller's error.
#[cold]
fn refusal(n: u32, refused: Refused) -> KeyedError {
    match refused {
        Refused::Wait(wait) => KeyedError::RateLimited(RateLimited {
            retry_after: Duration::from_micros(wait),
        }),
        Refused::Never(burst) => KeyedError::InsufficientCapacity(InsufficientCapacity {
            requested: n,
            burst,
        }),
    }
}

impl<K, const N: usize, const TIERS: usize, S> Drop for KeyedLimiter<K, N, TIERS, S> {
    fn drop(&mut self) {
        for slot in &mut self.slots {
            let state = slot.state.load(Ordering::Acquire);
            if state != EMPTY && state != LOCKED {
                // SAFETY: `&mut self`: no caller is registered; the key of a
                // live slot is initialised and dropped exactly once here.
                unsafe { slot.key.get_mut().assume_init_drop() };
            }
        }
    }
}

impl<K, const N: usize, const TIERS: usize, S> fmt::Debug for KeyedLimiter<K, N, TIERS, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedLimiter")
            .field("slots", &N)
            .field(
                "tiers",
                &core::array::from_fn::<_, TIERS, _>(|tier| self.tiers.quota(tier)),
            )
            .field("keys", &self.keys.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}
