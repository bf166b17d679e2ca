//! The requests of a [`KeyedLimiter`]: `try_acquire` and its kin,
//! `available` and `metrics`, and the lock-free lookup of a key's slot
//! (the slot protocols are in `packed` and `split`, the locked path in
//! `insert`).

use core::hash::{BuildHasher, Hash};

use super::state::{self, FP_SHIFT};
use super::{marks, KeyedError, KeyedLeft, KeyedLimiter, KeyedMetrics, PROBE};
use crate::sync::Ordering;
use crate::Instant;

impl<K: Eq + Hash + Clone, const N: usize, const TIERS: usize, S: BuildHasher>
    KeyedLimiter<K, N, TIERS, S>
{
    /// Takes one token for `key` at `now`; a new key gets the tier of the
    /// tier function (or 0).
    ///
    /// # Errors
    ///
    /// [`KeyedError::RateLimited`], or [`KeyedError::TableFull`] under
    /// [`FullPolicy::Reject`](super::FullPolicy::Reject);
    /// [`KeyedError::TierOutOfRange`] if the tier function puts a new key
    /// in a tier the limiter does not have.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::bucket::{FullPolicy, KeyedError, KeyedLimiter, Quota};
    /// use fusebox::{Duration, Instant};
    ///
    /// let limiter: KeyedLimiter<&str, 8> =
    ///     KeyedLimiter::new(Quota::per_second(1)?, FullPolicy::Reject)?;
    /// let now = Instant::from_secs(1);
    /// limiter.try_acquire(&"alice", now)?;
    /// assert!(matches!(limiter.try_acquire(&"alice", now), Err(KeyedError::RateLimited(_))));
    /// limiter.try_acquire(&"bob", now)?; // every key has its own bucket
    /// limiter.try_acquire(&"alice", now + Duration::from_secs(1))?;
    /// # Ok::<(), fusebox::bucket::KeyedError>(())
    /// ```
    #[inline]
    pub fn try_acquire(&self, key: &K, now: Instant) -> Result<(), KeyedError> {
        self.acquire::<false>(key, 1, None, now).map(drop)
    }

    /// Takes one token for `key` at `now`, as
    /// [`try_acquire`](Self::try_acquire), and tells what the key's bucket
    /// holds right after ([`KeyedLeft`]): its whole tokens, what
    /// `available(key, now)` would read then, and the exact time until it
    /// is full again, without a second lookup (a response's "remaining"
    /// quota and its reset, say). `None` if the key had no slot and was
    /// charged to the overflow bucket of
    /// [`FullPolicy::Overflow`](super::FullPolicy::Overflow), which the key
    /// shares with every other such key.
    ///
    /// # Errors
    ///
    /// As [`try_acquire`](Self::try_acquire).
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::bucket::{FullPolicy, KeyedLimiter, Quota};
    /// use fusebox::Instant;
    ///
    /// let limiter: KeyedLimiter<u32, 8> =
    ///     KeyedLimiter::new(Quota::per_second(3)?, FullPolicy::Reject)?;
    /// let now = Instant::from_secs(1);
    /// let left = limiter.try_acquire_left(&7, now)?.unwrap(); // inserted, charged
    /// assert_eq!(left.tokens, 2);
    /// let left = limiter.try_acquire_left(&7, now)?.unwrap(); // found, charged
    /// assert_eq!((left.tokens, left.until_full.as_micros()), (1, 666_667)); // 2/3 s, rounded up
    /// assert_eq!(limiter.available(&7, now), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn try_acquire_left(&self, key: &K, now: Instant) -> Result<Option<KeyedLeft>, KeyedError> {
        self.acquire::<true>(key, 1, None, now)
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
        self.acquire::<false>(key, 1, Some(tier), now).map(drop)
    }

    /// Takes `n` tokens for `key`, all or none. `n = 0` always succeeds
    /// and touches nothing (as [`TokenBucket::try_acquire_n`]): the key is
    /// not inserted, nothing is evicted or counted.
    ///
    /// [`TokenBucket::try_acquire_n`]: crate::bucket::TokenBucket::try_acquire_n
    ///
    /// # Errors
    ///
    /// As [`try_acquire`](Self::try_acquire), plus
    /// [`KeyedError::InsufficientCapacity`] if `n` exceeds the key's burst
    /// (never granted, so it touches nothing either: an absent key is not
    /// inserted, and no idle key evicted for it).
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::bucket::{FullPolicy, KeyedError, KeyedLimiter, Quota};
    /// use fusebox::Instant;
    ///
    /// let limiter: KeyedLimiter<u32, 8> =
    ///     KeyedLimiter::new(Quota::per_second(4)?, FullPolicy::Reject)?;
    /// let now = Instant::from_secs(1);
    /// limiter.try_acquire_n(&1, 4, now)?;
    /// assert!(matches!(limiter.try_acquire_n(&1, 1, now), Err(KeyedError::RateLimited(_))));
    /// limiter.try_acquire_n(&2, 0, now)?; // nothing taken, nothing inserted
    /// assert_eq!(limiter.metrics().keys, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn try_acquire_n(&self, key: &K, n: u32, now: Instant) -> Result<(), KeyedError> {
        if n == 0 {
            return Ok(());
        }
        self.acquire::<false>(key, n, None, now).map(drop)
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
    /// flight. The sum of the two parts saturates at `u64::MAX` rather than
    /// wrap (each counter's own word wraps, at 2³² on Cortex-M: see
    /// [`KeyedMetrics`]).
    ///
    /// `allowed` never counts an admission twice, even while batches move
    /// from the slots to the global counter: the global counter is read
    /// first (with `Acquire`, each batch added with `Release` after it left
    /// its slot), then the slots. So successive reads (a scraper's) do not
    /// go back (short of a counter's wrap), but for one case: a batch being moved at the start of a
    /// read, its thread preempted between taking it from the slot and
    /// adding it, is missed by that read (at most 256 admissions, 2 048 on
    /// Cortex-M, until the move ends).
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::bucket::{FullPolicy, KeyedLimiter, Quota};
    /// use fusebox::Instant;
    ///
    /// let limiter: KeyedLimiter<u32, 8> =
    ///     KeyedLimiter::new(Quota::per_second(5)?, FullPolicy::Reject)?;
    /// assert_eq!(limiter.metrics().keys, 0);
    /// for key in [1, 2, 1] {
    ///     limiter.try_acquire(&key, Instant::from_secs(1))?;
    /// }
    /// let m = limiter.metrics();
    /// assert_eq!((m.allowed, m.limited, m.keys), (3, 0, 2));
    /// # Ok::<(), fusebox::bucket::KeyedError>(())
    /// ```
    pub fn metrics(&self) -> KeyedMetrics {
        // The global counter before the slots: a batch folded into it
        // after this read is still found in its slot, or is missed while
        // its fold is in flight, but is never counted in both (found by a
        // review: with the slots read first, a batch folded between the
        // two reads was counted twice, and the next read went back).
        let folded = self.allowed.get_acquire();
        let pending = self
            .slots
            .iter()
            .map(Self::slot_pending)
            .fold(0u64, u64::saturating_add);
        KeyedMetrics {
            allowed: folded.saturating_add(pending),
            limited: self.limited.get(),
            evictions: self.evictions.get(),
            table_full: self.table_full.get(),
            keys: u64::from(self.keys.load(Ordering::Relaxed)),
        }
    }

    /// The lock-free path, for a key already in the table; the rest is out
    /// of line. Admitted: `Some(what is left)` if the key's own bucket was
    /// charged (only if `LEFT`, else [`KeyedLeft::NOTHING`]), `None` for the overflow
    /// bucket.
    #[inline]
    pub(super) fn acquire<const LEFT: bool>(
        &self,
        key: &K,
        n: u32,
        tier: Option<usize>,
        now: Instant,
    ) -> Result<Option<KeyedLeft>, KeyedError> {
        let (fp, home) = self.locate(key);
        for i in Self::window(home) {
            if let Some(result) = self.charge_if::<LEFT>(&self.slots[i], fp, key, n, now) {
                if result.is_err() {
                    self.refused();
                }
                return result.map(Some);
            }
        }
        self.acquire_slow(key, n, tier, fp, home, now)
    }

    #[cold]
    pub(super) fn refused(&self) {
        self.limited.incr();
    }

    #[cold]
    pub(super) fn out_of_range(&self, tier: usize) -> KeyedError {
        self.limited.incr();
        KeyedError::TierOutOfRange { tier }
    }

    /// The tier of a live slot's state.
    #[inline]
    pub(super) fn tier_of_state(state: u32) -> usize {
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
    pub(super) fn locate(&self, key: &K) -> (u32, usize) {
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
    pub(super) fn window(home: usize) -> impl Iterator<Item = usize> {
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
