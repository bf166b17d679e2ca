//! [`KeyedLimiter`]: one GCRA bucket per key, in fixed storage.
//!
//! # Table
//!
//! `N` slots, open addressing: a key lives in one of the [`PROBE`]
//! consecutive slots from its hash (or fewer if `N` is smaller). Keys are
//! hashed with foldhash's seedable [`FixedState`], then compared with `Eq`.
//! A slot is a 32-bit *state word*, the bucket's arrival-time word and the
//! key itself.
//!
//! # Concurrency
//!
//! * Existing keys are **lock-free**: a caller *registers* on the slot's
//!   state word (one CAS that also checks the key's fingerprint), compares
//!   the key, charges the bucket (the same CAS loop as [`TokenBucket`]) and
//!   unregisters (one `fetch_sub`). While a caller is registered the slot
//!   cannot be recycled, so the key it compares and the bucket it charges
//!   belong together: no request is ever charged to another key's bucket.
//! * Inserting a new key takes a short critical section (the
//!   `critical-section` crate): the lookup is
//!   repeated inside it (so a key is never inserted twice), then an empty
//!   slot is claimed or an **idle** one (its bucket full again) evicted.
//!   Eviction locks the state word by a CAS that only succeeds with no
//!   caller registered, so a key in use is never lost.
//! * When every slot of the key's probe window holds a busy key, the
//!   [`FullPolicy`] decides: reject, or charge a shared overflow bucket.
//!   Never an unlimited pass.
//!
//! [`TokenBucket`]: super::TokenBucket
//! [`FixedState`]: foldhash::fast::FixedState

use core::cell::UnsafeCell;
use core::fmt;
use core::hash::{BuildHasher, Hash};
use core::mem::MaybeUninit;

use foldhash::fast::FixedState;

use super::{gcra, load, take, InsufficientCapacity, Quota, RateLimited, TokenBucket};
use crate::sync::{AtomicU32, Counter, Ordering, TatWord};
use crate::Instant;

/// Slots searched for a key, from its home slot.
pub const PROBE: usize = 16;

/// State word: `0` empty, `u32::MAX` locked (being written), otherwise
/// `[fingerprint: 20][tier: 2][registered callers: 10]`.
const EMPTY: u32 = 0;
const LOCKED: u32 = u32::MAX;
const READERS_BITS: u32 = 10;
const READERS_MASK: u32 = (1 << READERS_BITS) - 1;
const TIER_SHIFT: u32 = READERS_BITS;
const FP_SHIFT: u32 = READERS_BITS + 2;
const FP_MASK: u32 = (1 << 20) - 1;

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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum KeyedError {
    /// The key's bucket (or the overflow bucket) is empty for now.
    RateLimited(RateLimited),
    /// More tokens than the key's burst were requested at once.
    InsufficientCapacity(InsufficientCapacity),
    /// No slot for a new key and the policy is [`FullPolicy::Reject`].
    TableFull,
}

impl fmt::Display for KeyedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RateLimited(e) => e.fmt(f),
            Self::InsufficientCapacity(e) => e.fmt(f),
            Self::TableFull => f.write_str("keyed limiter full: no idle slot for a new key"),
        }
    }
}
impl core::error::Error for KeyedError {}
impl From<RateLimited> for KeyedError {
    fn from(e: RateLimited) -> Self {
        Self::RateLimited(e)
    }
}

/// Counters of a [`KeyedLimiter`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct KeyedMetrics {
    /// Requests admitted.
    pub allowed: u64,
    /// Requests refused (rate limited, over capacity or table full).
    pub limited: u64,
    /// Idle keys evicted to make room.
    pub evictions: u64,
    /// Requests refused because the table was full.
    pub table_full: u64,
    /// Keys currently held.
    pub keys: u64,
}

pub(crate) struct Slot<K> {
    state: AtomicU32,
    tat: TatWord,
    /// Initialised iff `state` is neither `EMPTY` nor `LOCKED`; written only
    /// while `state` is `LOCKED` (inside the critical section), read only by
    /// a caller registered on `state` or inside the critical section.
    key: UnsafeCell<MaybeUninit<K>>,
}

/// Per-key GCRA buckets in fixed storage; see the module docs.
///
/// `TIERS` quotas (1..=4): a key gets the tier given at insertion (by
/// [`try_acquire_tier`](Self::try_acquire_tier) or the tier function) and
/// keeps it while it stays in the table.
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
/// );
/// let now = Instant::from_secs(1);
/// for _ in 0..10 {
///     limiter.try_acquire(&7, now)?;
/// }
/// assert!(matches!(limiter.try_acquire(&7, now), Err(KeyedError::RateLimited(_))));
/// limiter.try_acquire_tier(&8, 1, now)?; // a premium key
/// assert_eq!(limiter.metrics().keys, 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct KeyedLimiter<K, const N: usize, const TIERS: usize = 1> {
    slots: [Slot<K>; N],
    tiers: [Quota; TIERS],
    overflow: Option<TokenBucket>,
    hasher: FixedState,
    tier_of: Option<fn(&K) -> usize>,
    keys: AtomicU32,
    allowed: Counter,
    limited: Counter,
    evictions: Counter,
    table_full: Counter,
}

// SAFETY: keys are shared between threads only through `&K` comparisons
// (needs `K: Sync`) and are moved in and dropped by whichever thread inserts
// or evicts (needs `K: Send`); every other field is atomic or immutable.
unsafe impl<K: Send + Sync, const N: usize, const TIERS: usize> Sync for KeyedLimiter<K, N, TIERS> {}
// SAFETY: as above; sending the limiter sends its keys.
unsafe impl<K: Send, const N: usize, const TIERS: usize> Send for KeyedLimiter<K, N, TIERS> {}

impl<K: Eq + Hash + Clone, const N: usize> KeyedLimiter<K, N, 1> {
    /// One quota for every key.
    pub fn new(quota: Quota, policy: FullPolicy) -> Self {
        Self::with_tiers([quota], policy)
    }
}

impl<K: Eq + Hash + Clone, const N: usize, const TIERS: usize> KeyedLimiter<K, N, TIERS> {
    const CHECKS: () = {
        assert!(N > 0, "a KeyedLimiter needs at least one slot");
        assert!(N <= (u32::MAX as usize), "too many slots");
        assert!(
            TIERS > 0 && TIERS <= MAX_TIERS,
            "a KeyedLimiter has 1 to 4 quota tiers"
        );
    };

    /// A limiter with one quota per tier. `N == 0` or a tier count outside
    /// `1..=4` fails to compile.
    pub fn with_tiers(tiers: [Quota; TIERS], policy: FullPolicy) -> Self {
        let () = Self::CHECKS;
        Self {
            slots: core::array::from_fn(|_| Slot {
                state: AtomicU32::new(EMPTY),
                tat: TatWord::new(gcra::FRESH as _),
                key: UnsafeCell::new(MaybeUninit::uninit()),
            }),
            tiers,
            overflow: match policy {
                FullPolicy::Reject => None,
                FullPolicy::Overflow(q) => Some(TokenBucket::new(q)),
            },
            hasher: FixedState::with_seed(0x243f_6a88_85a3_08d3),
            tier_of: None,
            keys: AtomicU32::new(0),
            allowed: Counter::new(),
            limited: Counter::new(),
            evictions: Counter::new(),
            table_full: Counter::new(),
        }
    }

    /// Uses `seed` for the key hash (pick a secret one if keys come from
    /// untrusted clients).
    #[must_use]
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.hasher = FixedState::with_seed(seed);
        self
    }

    /// Picks the tier of a new key with `tier_of` (out-of-range tiers use
    /// the last).
    #[must_use]
    pub fn with_tier_fn(mut self, tier_of: fn(&K) -> usize) -> Self {
        self.tier_of = Some(tier_of);
        self
    }

    /// The quota of `tier`.
    pub fn quota(&self, tier: usize) -> Option<&Quota> {
        self.tiers.get(tier)
    }

    /// Takes one token for `key` at `now`; a new key gets the tier of the
    /// tier function (or 0).
    ///
    /// # Errors
    ///
    /// [`KeyedError::RateLimited`], or [`KeyedError::TableFull`] under
    /// [`FullPolicy::Reject`].
    pub fn try_acquire(&self, key: &K, now: Instant) -> Result<(), KeyedError> {
        self.try_acquire_n(key, 1, now)
    }

    /// Takes one token for `key`, inserting it in `tier` if new.
    ///
    /// # Errors
    ///
    /// As [`try_acquire`](Self::try_acquire).
    pub fn try_acquire_tier(&self, key: &K, tier: usize, now: Instant) -> Result<(), KeyedError> {
        self.acquire(key, 1, Some(tier), now)
    }

    /// Takes `n` tokens for `key`, all or none.
    ///
    /// # Errors
    ///
    /// As [`try_acquire`](Self::try_acquire), plus
    /// [`KeyedError::InsufficientCapacity`] if `n` exceeds the key's burst.
    pub fn try_acquire_n(&self, key: &K, n: u32, now: Instant) -> Result<(), KeyedError> {
        self.acquire(key, n, None, now)
    }

    /// Whole tokens available to `key` at `now` (the full burst of its tier
    /// if it is not in the table).
    pub fn available(&self, key: &K, now: Instant) -> u32 {
        let (fp, home) = self.locate(key);
        for i in Self::window(home) {
            let slot = &self.slots[i];
            if let Some(guard) = Self::register(slot, fp) {
                // SAFETY: registered, so the key is initialised and stable.
                if unsafe { (*slot.key.get()).assume_init_ref() } == key {
                    let quota = &self.tiers[guard.tier];
                    let tat = load(&slot.tat);
                    return quota.params().available(tat, now.as_micros()) as u32;
                }
            }
        }
        // Not found lock-free: the key may be absent, or its slot briefly
        // LOCKED by an insert checking it for eviction. Inside the critical
        // section no eviction runs, so the answer there is definitive.
        crate::sync::critical(|| {
            if let Some(i) = self.find_locked(key, fp, home) {
                let slot = &self.slots[i];
                let tier = tier_of_state(slot.state.load(Ordering::Acquire));
                let tat = load(&slot.tat);
                self.tiers[tier].params().available(tat, now.as_micros()) as u32
            } else {
                let tier = self.tier_of.map_or(0, |f| f(key)).min(TIERS - 1);
                self.tiers[tier].burst()
            }
        })
    }

    /// The counters.
    pub fn metrics(&self) -> KeyedMetrics {
        KeyedMetrics {
            allowed: self.allowed.get(),
            limited: self.limited.get(),
            evictions: self.evictions.get(),
            table_full: self.table_full.get(),
            keys: u64::from(self.keys.load(Ordering::Relaxed)),
        }
    }

    fn acquire(
        &self,
        key: &K,
        n: u32,
        tier: Option<usize>,
        now: Instant,
    ) -> Result<(), KeyedError> {
        let result = self.acquire_uncounted(key, n, tier, now);
        match result {
            Ok(()) => self.allowed.incr(),
            Err(KeyedError::TableFull) => {
                self.limited.incr();
                self.table_full.incr();
            }
            Err(_) => self.limited.incr(),
        }
        result
    }

    fn acquire_uncounted(
        &self,
        key: &K,
        n: u32,
        tier: Option<usize>,
        now: Instant,
    ) -> Result<(), KeyedError> {
        let (fp, home) = self.locate(key);
        // Lock-free path: the key is already in the table.
        for i in Self::window(home) {
            if let Some(result) = self.charge_if(i, fp, key, n, now) {
                return result;
            }
        }
        // Slow path: insert it (or find it inserted meanwhile).
        let tier = tier
            .or_else(|| self.tier_of.map(|f| f(key)))
            .unwrap_or(0)
            .min(TIERS - 1);
        // Charged inside the critical section: evictions happen only there,
        // so the slot found or filled still holds this key.
        let charged = crate::sync::critical(|| {
            let i = self.insert(key, fp, home, tier, now)?;
            Some(self.charge_locked(i, n, now))
        });
        match charged {
            Some(result) => result,
            None => match &self.overflow {
                Some(bucket) => {
                    if n > bucket.quota().burst() {
                        return Err(KeyedError::InsufficientCapacity(InsufficientCapacity {
                            requested: n,
                            burst: bucket.quota().burst(),
                        }));
                    }
                    Ok(take(&bucket.tat, bucket.quota(), n, now)?)
                }
                None => Err(KeyedError::TableFull),
            },
        }
    }

    /// Charges slot `i` if it holds `key`; `None` if it does not.
    fn charge_if(
        &self,
        i: usize,
        fp: u32,
        key: &K,
        n: u32,
        now: Instant,
    ) -> Option<Result<(), KeyedError>> {
        let slot = &self.slots[i];
        let guard = Self::register(slot, fp)?;
        // SAFETY: registered, so the key is initialised and cannot be
        // replaced until the guard drops.
        if unsafe { (*slot.key.get()).assume_init_ref() } != key {
            return None;
        }
        let quota = &self.tiers[guard.tier];
        if n > quota.burst() {
            return Some(Err(KeyedError::InsufficientCapacity(
                InsufficientCapacity {
                    requested: n,
                    burst: quota.burst(),
                },
            )));
        }
        Some(take(&slot.tat, quota, n, now).map_err(KeyedError::from))
    }

    /// Inside the critical section: charges slot `i`, which holds the key.
    /// No registration needed (evictions only happen in the critical
    /// section), so this works even when 1 023 callers are registered.
    fn charge_locked(&self, i: usize, n: u32, now: Instant) -> Result<(), KeyedError> {
        let slot = &self.slots[i];
        let quota = &self.tiers[tier_of_state(slot.state.load(Ordering::Acquire))];
        if n > quota.burst() {
            return Err(KeyedError::InsufficientCapacity(InsufficientCapacity {
                requested: n,
                burst: quota.burst(),
            }));
        }
        take(&slot.tat, quota, n, now).map_err(KeyedError::from)
    }

    /// Inside the critical section: the live slot holding `key`.
    fn find_locked(&self, key: &K, fp: u32, home: usize) -> Option<usize> {
        Self::window(home).find(|&i| {
            let slot = &self.slots[i];
            let state = slot.state.load(Ordering::Acquire);
            // SAFETY: live slot, and only the critical section (which we
            // hold) writes or drops keys.
            state != EMPTY
                && state != LOCKED
                && state >> FP_SHIFT == fp
                && unsafe { (*slot.key.get()).assume_init_ref() } == key
        })
    }

    /// Registers on `slot` if its fingerprint is `fp`.
    fn register(slot: &Slot<K>, fp: u32) -> Option<Registered<'_>> {
        let mut state = slot.state.load(Ordering::Acquire);
        loop {
            if state == EMPTY || state == LOCKED || state >> FP_SHIFT != fp {
                return None;
            }
            if state & READERS_MASK == READERS_MASK {
                // 1 023 callers on one key at once: this one takes the
                // critical-section path (`charge_locked`) instead.
                return None;
            }
            match slot.state.compare_exchange_weak(
                state,
                state + 1,
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    return Some(Registered {
                        state: &slot.state,
                        tier: tier_of_state(state),
                    })
                }
                Err(actual) => state = actual,
            }
        }
    }

    /// Inside the critical section: finds or inserts `key`, returning its
    /// slot, or `None` if the window has no empty or idle slot.
    fn insert(&self, key: &K, fp: u32, home: usize, tier: usize, now: Instant) -> Option<usize> {
        if let Some(i) = self.find_locked(key, fp, home) {
            return Some(i);
        }
        let empty =
            Self::window(home).find(|&i| self.slots[i].state.load(Ordering::Acquire) == EMPTY);
        if let Some(i) = empty {
            let slot = &self.slots[i];
            // EMPTY -> LOCKED cannot race: only the critical section claims.
            slot.state.store(LOCKED, Ordering::Relaxed);
            Self::fill(slot, key, fp, tier);
            self.keys.fetch_add(1, Ordering::Relaxed);
            return Some(i);
        }
        for i in Self::window(home) {
            let slot = &self.slots[i];
            let state = slot.state.load(Ordering::Acquire);
            if state == LOCKED || state & READERS_MASK != 0 {
                continue;
            }
            // Lock it against new callers; fails if one registered meanwhile.
            if slot
                .state
                .compare_exchange(state, LOCKED, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            let quota = &self.tiers[tier_of_state(state)];
            let tat = load(&slot.tat);
            if quota.params().drained(tat, now.as_micros()) != 0 {
                slot.state.store(state, Ordering::Release); // busy: keep it
                continue;
            }
            // SAFETY: the slot was live (initialised key) and is LOCKED with
            // no caller registered; nobody else can reach the key.
            unsafe { (*slot.key.get()).assume_init_drop() };
            Self::fill(slot, key, fp, tier);
            self.evictions.incr();
            return Some(i);
        }
        None
    }

    /// Writes a clone of `key` into a LOCKED slot and publishes it. (A
    /// panicking `clone` leaves the slot LOCKED: unusable, never unsound.)
    fn fill(slot: &Slot<K>, key: &K, fp: u32, tier: usize) {
        // SAFETY: the slot is LOCKED and we are inside the critical section:
        // no caller is registered and no other writer exists; any previous
        // key was dropped or never written.
        unsafe { (*slot.key.get()).write(key.clone()) };
        slot.tat.store(gcra::FRESH as _, Ordering::Relaxed);
        let state = fp << FP_SHIFT | (tier as u32) << TIER_SHIFT;
        slot.state.store(state, Ordering::Release);
    }

    fn locate(&self, key: &K) -> (u32, usize) {
        let hash = self.hasher.hash_one(key);
        // Fingerprint from the high bits, never 0 (EMPTY) or all ones
        // (part of LOCKED); home slot from the low bits.
        let fp = ((hash >> 44) as u32 & FP_MASK).clamp(1, FP_MASK - 1);
        (fp, (hash % N as u64) as usize)
    }

    fn window(home: usize) -> impl Iterator<Item = usize> {
        (0..PROBE.min(N)).map(move |i| {
            let j = home + i;
            if j >= N {
                j - N
            } else {
                j
            }
        })
    }
}

const fn tier_of_state(state: u32) -> usize {
    ((state >> TIER_SHIFT) & 0b11) as usize
}

/// A caller registered on a slot; unregisters on drop.
struct Registered<'s> {
    state: &'s AtomicU32,
    tier: usize,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.state.fetch_sub(1, Ordering::Release);
    }
}

impl<K, const N: usize, const TIERS: usize> Drop for KeyedLimiter<K, N, TIERS> {
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

impl<K, const N: usize, const TIERS: usize> fmt::Debug for KeyedLimiter<K, N, TIERS> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedLimiter")
            .field("slots", &N)
            .field("tiers", &self.tiers)
            .field("keys", &self.keys.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}
