//! Changing a [`KeyedLimiter`]'s quotas at run time: a tier's
//! ([`set_quota`](KeyedLimiter::set_quota), see the `tiers` module) and the
//! overflow bucket's.

use core::hash::{BuildHasher, Hash};

use super::{design, KeyedError, KeyedLimiter};
use crate::bucket::{Quota, TokenBucket};
use crate::Instant;

impl<K: Eq + Hash + Clone, const N: usize, const TIERS: usize, S: BuildHasher>
    KeyedLimiter<K, N, TIERS, S>
{
    /// The quota of `tier` in force (by value: it can change, see
    /// [`set_quota`](Self::set_quota)); `None` if the limiter has no such
    /// tier.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::bucket::{FullPolicy, KeyedLimiter, Quota};
    ///
    /// let tiers = [Quota::per_second(1)?, Quota::per_second(9)?];
    /// let limiter: KeyedLimiter<u32, 8, 2> = KeyedLimiter::with_tiers(tiers, FullPolicy::Reject)?;
    /// assert_eq!(limiter.quota(1), Some(Quota::per_second(9)?));
    /// assert_eq!(limiter.quota(2), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn quota(&self, tier: usize) -> Option<Quota> {
        (tier < TIERS).then(|| self.tiers.quota(tier))
    }

    /// A number that changes whenever `tier`'s quota is replaced; `None`
    /// if the limiter has no such tier. One atomic load, where
    /// [`quota`](Self::quota) reads and re-derives the whole quota: for a
    /// caller that keeps something derived from the quota and needs to
    /// know when to derive it again. Two equal readings saw the same
    /// quota unless a multiple of 2^32 replacements came in between (the
    /// number wraps).
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::bucket::{FullPolicy, KeyedLimiter, Quota};
    /// use fusebox::Instant;
    ///
    /// let limiter: KeyedLimiter<u32, 8> = KeyedLimiter::new(Quota::per_second(1)?, FullPolicy::Reject)?;
    /// let before = limiter.quota_version(0);
    /// limiter.set_quota(0, Quota::per_second(2)?, Instant::ZERO)?;
    /// assert_ne!(limiter.quota_version(0), before);
    /// assert_eq!(limiter.quota_version(1), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn quota_version(&self, tier: usize) -> Option<u32> {
        (tier < TIERS).then(|| self.tiers.generation(tier))
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
    /// evicted key was idle, its bucket full, when it left). A change that
    /// lowers the burst makes every key that had at least the new burst
    /// full, though it may have spent tokens of the old one at that
    /// instant: so the tier's idle keys are not evicted until the replaced
    /// quota would have refilled its whole burst (`burst × period ÷
    /// tokens` after `now`), lest one come back under a larger quota with
    /// a second burst; a new key that needs a slot meanwhile finds the
    /// table full ([`KeyedError::TableFull`], or the overflow bucket).
    /// Callers further behind `now` than the slots' backward tolerance
    /// (2^42 scaled units where the target has 64-bit atomics: 50.9 days
    /// at scale 1, 67 s at the largest scale; ~1.05 s on Cortex-M), which
    /// read the tier's buckets as full anyway, are not held: a `now` far
    /// ahead of the callers' clocks (a bogus reading, [`Instant::MAX`])
    /// does not hold the tier's idle keys until then, which could be
    /// forever. So such a caller may evict a held key, and a caller near
    /// `now` bring it back with a second burst once a larger quota is in
    /// force: do not call with a clock reading that far behind (the
    /// type's "Range").
    /// Keys of other
    /// tiers and the overflow bucket (see
    /// [`set_overflow_quota`](Self::set_overflow_quota)) are unaffected.
    ///
    /// Changes take the table's lock (with insertions and evictions: a
    /// `std` mutex per table, the critical section without `std`) and
    /// convert every key of the tier before returning: linear in `N` (on
    /// firmware without `std`, that long with interrupts off).
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
    /// [`FullPolicy::Reject`](super::FullPolicy::Reject).
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::bucket::{FullPolicy, KeyedLimiter, Quota};
    ///
    /// let shared: KeyedLimiter<u32, 8> =
    ///     KeyedLimiter::new(Quota::per_second(1)?, FullPolicy::Overflow(Quota::per_second(5)?))?;
    /// assert_eq!(shared.overflow_quota(), Some(Quota::per_second(5)?));
    /// let strict: KeyedLimiter<u32, 8> = KeyedLimiter::new(Quota::per_second(1)?, FullPolicy::Reject)?;
    /// assert_eq!(strict.overflow_quota(), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn overflow_quota(&self) -> Option<Quota> {
        self.overflow.as_ref().map(TokenBucket::quota)
    }

    /// Changes the quota of the shared overflow bucket at `now`, as
    /// [`TokenBucket::set_quota`] does (the bucket's state carries over the
    /// same way), and returns the one it replaces; `None` (and nothing
    /// changes) under [`FullPolicy::Reject`](super::FullPolicy::Reject).
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
}
