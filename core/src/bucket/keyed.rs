//! [`KeyedLimiter`]: one GCRA bucket per key, in fixed storage.
//!
//! Files: `build` (constructors), `acquire` (requests, lock-free lookup),
//! `insert` (the locked path: insertion, eviction), `marks` (eviction
//! marks), `requota` and `tiers` (quota changes), `state` (the state
//! word), `packed` or `split` (the slot protocol with 64-bit atomics or
//! on Cortex-M, each with its bucket `word`), `tests` (white-box).
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
//!   full again) evicted (see [Eviction](KeyedLimiter#eviction)). Eviction locks the
//!   slot (the bucket word, or the state word on Cortex-M) by a CAS that
//!   only succeeds with nobody pinned (registered) and nothing changed
//!   since it read the pending count it folds, so a key in use is never
//!   lost.
//! * User code under the lock is only `K::eq` (the repeated lookup) and
//!   `K::clone` (the stored copy, made before any slot changes); an
//!   evicted key is dropped after the lock is released, and the tier
//!   function and `Hash` run before it is taken. So a panic in any of them
//!   leaves the table consistent and unlocked. `Eq` and `Clone` must not
//!   call the same limiter: such a call would take its lock again, and
//!   panics instead (before it changes anything; the lock is not
//!   re-entrant, see the crate's `sync` module).
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
//! What a user relies on, eviction and the range of its times, is on
//! [`KeyedLimiter`]'s own docs ("Eviction", "Range"): this module is
//! private, and rustdoc shows only those.
//!
//! The hasher (a type parameter, `S`) and heap construction are described
//! on [`KeyedLimiter`] itself.
//!
//! [`TokenBucket`]: super::TokenBucket

mod acquire;
mod build;
mod insert;
mod marks;
#[cfg(fusebox_wide_words)]
mod packed;
mod requota;
#[cfg(not(fusebox_wide_words))]
mod split;
mod state;
#[cfg(all(test, not(loom)))]
mod tests;
mod tiers;

use core::cell::UnsafeCell;
use core::fmt;
use core::mem::MaybeUninit;

use self::marks::Marks;
#[cfg(fusebox_wide_words)]
use self::packed as design;
#[cfg(not(fusebox_wide_words))]
use self::split as design;
use self::state::{EMPTY, LOCKED};
use self::tiers::{Refused, Tiers};
use super::{InsufficientCapacity, Quota, QuotaError, RateLimited, TokenBucket};
use crate::hash::FixedState;
use crate::sync::{AtomicU32, Counter, Ordering, TableLock, TatWord};
use crate::Duration;

/// Slots searched for a key, from its home slot.
///
/// # Examples
///
/// ```
/// use fusebox::bucket::{FullPolicy, KeyedError, KeyedLimiter, Quota, PROBE};
/// use fusebox::Instant;
///
/// // A table no larger than the probe: every key may use every slot.
/// let limiter: KeyedLimiter<usize, PROBE> =
///     KeyedLimiter::new(Quota::per_minute(1)?, FullPolicy::Reject)?;
/// let now = Instant::from_secs(1);
/// for key in 0..PROBE {
///     limiter.try_acquire(&key, now)?; // each key now busy (its bucket empty)
/// }
/// assert_eq!(limiter.try_acquire(&PROBE, now), Err(KeyedError::TableFull));
/// # Ok::<(), fusebox::bucket::KeyedError>(())
/// ```
pub const PROBE: usize = 16;

/// The most quota tiers a keyed limiter can have.
///
/// # Examples
///
/// ```
/// use fusebox::bucket::{FullPolicy, KeyedError, KeyedLimiter, Quota, MAX_TIERS};
/// use fusebox::Instant;
///
/// let q = Quota::per_second(10)?;
/// let limiter: KeyedLimiter<u32, 8, MAX_TIERS> =
///     KeyedLimiter::with_tiers([q; MAX_TIERS], FullPolicy::Reject)?;
/// let now = Instant::from_secs(1);
/// limiter.try_acquire_tier(&1, MAX_TIERS - 1, now)?;
/// let beyond = limiter.try_acquire_tier(&2, MAX_TIERS, now);
/// assert_eq!(beyond, Err(KeyedError::TierOutOfRange { tier: MAX_TIERS }));
/// # Ok::<(), fusebox::bucket::KeyedError>(())
/// ```
pub const MAX_TIERS: usize = 4;

/// What to do with a new key when every slot it may use holds a busy key.
///
/// # Examples
///
/// ```
/// use fusebox::bucket::{FullPolicy, KeyedError, KeyedLimiter, Quota};
/// use fusebox::Instant;
///
/// let now = Instant::from_secs(1);
/// // Not `per_hour`: a burst spanning an hour does not fit Cortex-M's words.
/// let per_key = Quota::per_minute(1)?;
/// // One slot, held by key 1 while its bucket refills.
/// let strict: KeyedLimiter<u32, 1> = KeyedLimiter::new(per_key, FullPolicy::Reject)?;
/// strict.try_acquire(&1, now)?;
/// assert_eq!(strict.try_acquire(&2, now), Err(KeyedError::TableFull));
///
/// let shared: KeyedLimiter<u32, 1> =
///     KeyedLimiter::new(per_key, FullPolicy::Overflow(Quota::per_minute(1)?))?;
/// shared.try_acquire(&1, now)?;
/// shared.try_acquire(&2, now)?; // charged to the overflow bucket
/// assert!(matches!(shared.try_acquire(&3, now), Err(KeyedError::RateLimited(_))));
/// # Ok::<(), fusebox::bucket::KeyedError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum FullPolicy {
    /// Refuse the request ([`KeyedError::TableFull`]).
    Reject,
    /// Charge it to one bucket shared by all keys that found no slot. A
    /// request for more than the key's own burst is still refused
    /// ([`KeyedError::InsufficientCapacity`], with the key's burst), as it
    /// is for a key with a slot; one within it but above the overflow
    /// bucket's burst is refused too, with the overflow bucket's burst (a
    /// slot freed later may still take it).
    Overflow(Quota),
}

/// Why a keyed request was refused.
///
/// Non-exhaustive: match the variants you handle and keep a `_` arm.
///
/// # Examples
///
/// ```
/// use fusebox::bucket::{FullPolicy, KeyedError, KeyedLimiter, Quota};
/// use fusebox::{Duration, Instant};
///
/// let limiter: KeyedLimiter<u32, 8> =
///     KeyedLimiter::new(Quota::per_second(2)?, FullPolicy::Reject)?;
/// let now = Instant::from_secs(1);
/// limiter.try_acquire(&7, now)?;
/// limiter.try_acquire(&7, now)?;
/// match limiter.try_acquire(&7, now) {
///     Err(KeyedError::RateLimited(e)) => assert_eq!(e.retry_after, Duration::from_millis(500)),
///     other => panic!("expected RateLimited, got {other:?}"),
/// }
/// # Ok::<(), fusebox::bucket::KeyedError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum KeyedError {
    /// The key's bucket (or the overflow bucket) is empty for now.
    RateLimited(RateLimited),
    /// More tokens than the key's burst were requested at once; or, for a
    /// key charged to the overflow bucket (no slot), more than that
    /// bucket's burst, which is then the burst given (a slot freed later
    /// may still take the request).
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

/// What a key's bucket holds right after an admission
/// ([`KeyedLimiter::try_acquire_left`]).
///
/// # Examples
///
/// ```
/// use fusebox::bucket::{FullPolicy, KeyedLeft, KeyedLimiter, Quota};
/// use fusebox::{Duration, Instant};
///
/// let limiter: KeyedLimiter<u32, 8> =
///     KeyedLimiter::new(Quota::per_second(2)?.with_burst(4)?, FullPolicy::Reject)?;
/// let left = limiter.try_acquire_left(&7, Instant::from_secs(1))?;
/// assert_eq!(left, Some(KeyedLeft { tokens: 3, until_full: Duration::from_millis(500) }));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct KeyedLeft {
    /// Whole tokens left.
    pub tokens: u32,
    /// Time until the bucket is full again, rounded up to a microsecond
    /// (never early): exact, where counting from the whole tokens left
    /// could be up to one refill interval late.
    pub until_full: Duration,
}

impl KeyedLeft {
    /// What the paths that do not report it return.
    pub(crate) const NOTHING: Self = Self {
        tokens: 0,
        until_full: Duration::ZERO,
    };
}

/// Counters of a [`KeyedLimiter`].
///
/// Each counter is one atomic word, incremented without a lock (and
/// `allowed` partly in the slots, see
/// [`metrics`](KeyedLimiter::metrics)): it wraps at 2⁶⁴ where the target
/// has 64-bit atomics, and at 2³² on 32-bit microcontrollers (Cortex-M),
/// although the fields are `u64`; a read after such a wrap is lower than
/// the one before (as a restarted counter's).
///
/// # Examples
///
/// ```
/// use fusebox::bucket::{FullPolicy, KeyedLimiter, KeyedMetrics, Quota};
/// use fusebox::Instant;
///
/// let limiter: KeyedLimiter<u32, 8> =
///     KeyedLimiter::new(Quota::per_second(1)?, FullPolicy::Reject)?;
/// let now = Instant::from_secs(1);
/// limiter.try_acquire(&1, now)?;
/// limiter.try_acquire(&2, now)?;
/// assert!(limiter.try_acquire(&2, now).is_err());
/// let m: KeyedMetrics = limiter.metrics();
/// assert_eq!((m.allowed, m.limited, m.keys), (2, 1, 2));
/// assert_eq!((m.evictions, m.table_full), (0, 0));
/// # Ok::<(), fusebox::bucket::KeyedError>(())
/// ```
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

/// Per-key GCRA buckets in fixed storage.
///
/// `TIERS` quotas (1..=4): a key gets the tier given at insertion (by
/// [`try_acquire_tier`](Self::try_acquire_tier) or the tier function) and
/// keeps it while it stays in the table. A tier's quota can change at run
/// time, under `&self`: [`set_quota`](Self::set_quota).
///
/// # Eviction
///
/// A key is evicted only when idle: its bucket full again at the evicting
/// caller's `now`. A caller whose `now` is behind that one (within the
/// tolerance below) would still find the bucket drained, so the eviction
/// leaves a *mark*: the instant the bucket became full, kept (the latest)
/// in one of 8 marks picked by the key's fingerprint. A key inserted later
/// starts its bucket full *at its fingerprint's mark* rather than full
/// now, so a key that comes back, in whatever slot, is never fuller than
/// it left: per key, at most `burst + rate·Δ` tokens are admitted among
/// calls whose `now`s lie within `Δ` of each other, evictions included. A
/// new key sharing the mark starts equally drained, which only a caller
/// behind the mark (at most the evicting caller's `now`) notices: it may
/// wait up to its own lag, and never gets more. Such a caller's admission
/// is charged from the mark, so the debt it leaves (at most its lag) is
/// also seen by later callers with a current `now`, until it refills: a
/// stale clock can cost waits, never admissions (a model review with
/// clocks up to 1 s behind found waits up to that lag longer than an
/// ideal per-key bucket's, and no admission beyond it). A caller further
/// behind a mark than the horizon of every tier (see [Range](#range): 50.9 days
/// at scale 1; ~1.05 s plus the burst span on Cortex-M) replaces it when
/// it evicts a key of its own sharing it: a key evicted under the replaced
/// mark then comes back full to the callers near it (see the `marks`
/// module). (Under
/// [`FullPolicy::Overflow`] a key that finds no slot is charged to the
/// shared bucket instead of its own, as documented there.)
///
/// # Range
///
/// With 64-bit atomics the slots' arrival time has 48 bits, so a tier's
/// burst span is bounded (checked by [`KeyedLimiter::with_tiers`]; see
/// the `gcra` module for what a narrower word means): `burst × T` below
/// 2^46 scaled units. A `now` up to 2^42 scaled units behind a previous
/// call's only denies (50.9 days at scale 1, 73 minutes at scale 1 000,
/// 67 s at scale 65 536); one further behind reads the key's bucket as
/// full, so do not hold a clock reading that long before calling. A key
/// left idle for close to a multiple of 2^48 scaled units (8.9 years at
/// scale 1, 78 hours at scale 1 000, 71.6 minutes at scale 65 536) may
/// read as partly or even wholly drained (0 tokens), and then admits
/// *less* for at most its burst span plus that tolerance, never more.
/// (Cortex-M: the bucket word holds half units, like the token bucket's:
/// ~1.05 s of tolerance, and the wrap at 2^31 scaled units, 35.8 min at
/// scale 1; see the `gcra` module.)
///
/// # Hashing
///
/// The hasher is a type parameter, `S` (default [`FixedState`]: foldhash
/// with a fixed, public seed). **A server whose keys come from clients must
/// use a secret seed**: [`with_hasher`](Self::with_hasher) with
/// `RandomState` (feature `std`), or, for keys of one machine word
/// (integers up to 64 bits) only, [`FixedState::with_seed`] with a seed
/// from an RNG: `u128`, multi-word and string keys (API keys, addresses)
/// can be chosen to collide whatever that seed, as foldhash's shared seed
/// stays public there (see [`FixedState::with_seed`]). With the public seed
/// anyone can compute, offline, [`PROBE`] (16) keys that share a victim's
/// home slot and keep them busy: the victim's new key then finds no slot
/// ([`KeyedError::TableFull`] under [`FullPolicy::Reject`], the shared
/// overflow bucket under [`FullPolicy::Overflow`]). The fixed default
/// exists for firmware with no entropy at boot, and keeps the default
/// type the same whatever features are enabled (see the
/// [`hash`](crate::hash) module).
///
/// # Keys
///
/// A key's `Eq` and `Clone` run under the table's lock (the lookup of a
/// new key, its stored copy) and must not use the same limiter: a call on
/// it from there panics, and leaves the table as it was. Calls from `Hash`,
/// `Drop` or the tier function, which run outside the lock, are fine.
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
        /// The slots not visited yet. If a key's `Drop` panics, unwinding
        /// drops this, which drops the remaining keys (as an array's drop
        /// glue does; a second panic aborts), so no other key leaks.
        struct Rest<'a, K>(core::slice::IterMut<'a, Slot<K>>);

        impl<K> Drop for Rest<'_, K> {
            fn drop(&mut self) {
                self.0.by_ref().for_each(drop_key);
            }
        }

        fn drop_key<K>(slot: &mut Slot<K>) {
            let state = slot.state.load(Ordering::Acquire);
            if state != EMPTY && state != LOCKED {
                // SAFETY: `&mut` to the limiter: no caller is pinned or
                // registered; the key of a live slot is initialised, and
                // each slot is visited once (the iterator has moved past
                // it before its key's drop runs).
                unsafe { slot.key.get_mut().assume_init_drop() };
            }
        }

        let mut rest = Rest(self.slots.iter_mut());
        for slot in rest.0.by_ref() {
            drop_key(slot);
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
