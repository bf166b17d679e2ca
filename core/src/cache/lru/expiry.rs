//! The methods of [`LruCache`] that take `now`: they never return an
//! entry that has expired (see "Expiry" in the parent module's docs).

use core::borrow::Borrow;
use core::hash::{BuildHasher, Hash};

use super::{slot, Displaced, Idx, LruCache, NIL};
use crate::{Duration, Instant};

impl<K: Hash + Eq, V, const N: usize, S: BuildHasher> LruCache<K, V, N, S> {
    /// The value for `key` unless it expired at `now`, made the most
    /// recently used. An entry expired at `now` is freed, counted in
    /// `expirations`, and the lookup is a miss. Counts a hit or a miss.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::{Duration, Instant, LruCache};
    ///
    /// let mut cache: LruCache<u8, &str, 2> = LruCache::new();
    /// let t0 = Instant::from_millis(5);
    /// cache.put_with_ttl(1, "one", Duration::from_millis(10), t0);
    /// cache.put(2, "two"); // no TTL: never expires
    /// let later = Instant::from_millis(15); // exactly t0 + ttl: expired
    /// assert_eq!(cache.get_at(&1, later), None);
    /// assert_eq!(cache.get_at(&2, later), Some(&"two"));
    /// assert_eq!(cache.len(), 1);
    /// ```
    pub fn get_at<Q>(&mut self, key: &Q, now: Instant) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let i = self.get_live(key, now)?;
        self.entries[slot::<N>(i)].as_ref().map(|e| &e.value)
    }

    /// Like [`get_at`](Self::get_at), mutably.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::{Duration, Instant, LruCache};
    ///
    /// let mut cache: LruCache<u8, u32, 2> = LruCache::new();
    /// cache.put_with_ttl(1, 10, Duration::from_secs(1), Instant::ZERO);
    /// *cache.get_mut_at(&1, Instant::from_millis(999)).unwrap() += 1;
    /// assert_eq!(cache.peek(&1), Some(&11));
    /// assert_eq!(cache.get_mut_at(&1, Instant::from_secs(1)), None);
    /// ```
    pub fn get_mut_at<Q>(&mut self, key: &Q, now: Instant) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let i = self.get_live(key, now)?;
        self.entries[slot::<N>(i)].as_mut().map(|e| &mut e.value)
    }

    /// The value for `key` unless it expired at `now`, without promoting it
    /// or counting a hit or miss. An entry expired at `now` is freed and
    /// counted in `expirations` (hence `&mut self`).
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::{Duration, Instant, LruCache};
    ///
    /// let mut cache: LruCache<u8, &str, 2> = LruCache::new();
    /// cache.put_with_ttl(1, "one", Duration::from_secs(1), Instant::ZERO);
    /// assert_eq!(cache.peek_at(&1, Instant::ZERO), Some(&"one"));
    /// assert_eq!(cache.peek_at(&1, Instant::from_secs(1)), None);
    /// assert_eq!(cache.metrics().expirations, 1);
    /// assert_eq!(cache.metrics().lookups(), 0);
    /// ```
    pub fn peek_at<Q>(&mut self, key: &Q, now: Instant) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let i = self.find_live(key, now).ok()?;
        self.entries[slot::<N>(i)].as_ref().map(|e| &e.value)
    }

    /// Whether `key` is stored and not expired at `now`. Does not promote
    /// or count a hit or miss. An entry expired at `now` is freed and
    /// counted in `expirations` (hence `&mut self`).
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::{Duration, Instant, LruCache};
    ///
    /// let mut cache: LruCache<u8, (), 2> = LruCache::new();
    /// cache.put_with_ttl(1, (), Duration::from_micros(1), Instant::ZERO);
    /// assert!(cache.contains_at(&1, Instant::ZERO));
    /// assert!(!cache.contains_at(&1, Instant::from_micros(1)));
    /// assert!(!cache.contains(&1)); // it was freed
    /// ```
    pub fn contains_at<Q>(&mut self, key: &Q, now: Instant) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.find_live(key, now).is_ok()
    }

    /// Removes `key` and returns its stored key and value, unless it
    /// expired at `now`: then it is freed, counted in `expirations`, and
    /// `None` is returned. Does not count a hit or miss.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::{Duration, Instant, LruCache};
    ///
    /// let mut cache: LruCache<u8, &str, 2> = LruCache::new();
    /// let ttl = Duration::from_secs(5);
    /// cache.put_with_ttl(1, "one", ttl, Instant::ZERO);
    /// cache.put_with_ttl(2, "two", ttl, Instant::ZERO);
    /// assert_eq!(cache.remove_at(&1, Instant::from_secs(4)), Some((1, "one")));
    /// assert_eq!(cache.remove_at(&2, Instant::from_secs(5)), None);
    /// assert!(cache.is_empty());
    /// ```
    pub fn remove_at<Q>(&mut self, key: &Q, now: Instant) -> Option<(K, V)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let (b, i) = self.find(key);
        let i = i?;
        let entry = self.take(b, i)?;
        if entry.expired(now) {
            Self::count(&mut self.metrics.expirations);
            None
        } else {
            Some((entry.key, entry.value))
        }
    }

    /// Stores `value` under `key` as the most recently used entry, expiring
    /// at `now + ttl`: timed lookups at any `t >= now + ttl` miss. A `ttl`
    /// of zero stores an entry already expired at `now`; a `now + ttl`
    /// beyond [`Instant::MAX`] never expires.
    ///
    /// Returns what was pushed out, like [`put`](Self::put), except that a
    /// displaced entry already expired at `now` — the same key's previous
    /// entry, or the least recently used entry removed to make room — is
    /// returned as [`Displaced::Expired`] and counted in `expirations`
    /// instead of `evictions`. Eviction is exact LRU: a full cache drops its
    /// least recently used entry even if another one has expired (call
    /// [`purge_expired`](Self::purge_expired) first to prefer those).
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::cache::{Displaced, LruCache};
    /// use fusebox::{Duration, Instant};
    ///
    /// let mut cache: LruCache<u8, &str, 1> = LruCache::new();
    /// let ttl = Duration::from_secs(1);
    /// assert_eq!(cache.put_with_ttl(1, "a", ttl, Instant::ZERO), None);
    /// // Full, and the LRU entry is still live at 0.5 s: evicted.
    /// let half = Instant::from_millis(500);
    /// assert_eq!(cache.put_with_ttl(2, "b", ttl, half), Some(Displaced::Evicted(1, "a")));
    /// // At 1.5 s the LRU entry has expired.
    /// let later = Instant::from_millis(1_500);
    /// assert_eq!(cache.put_with_ttl(3, "c", ttl, later), Some(Displaced::Expired(2, "b")));
    /// ```
    pub fn put_with_ttl(
        &mut self,
        key: K,
        value: V,
        ttl: Duration,
        now: Instant,
    ) -> Option<Displaced<K, V>> {
        self.insert(key, value, now.checked_add(ttl), Some(now))
    }

    /// A counted, promoting lookup of an entry live at `now`.
    fn get_live<Q>(&mut self, key: &Q, now: Instant) -> Option<Idx>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        match self.find_live(key, now) {
            Ok(i) => {
                Self::count(&mut self.metrics.hits);
                self.list.promote(i);
                Some(i)
            }
            Err(freed) => {
                Self::count(&mut self.metrics.misses);
                drop(freed); // counted: its `Drop` may panic
                None
            }
        }
    }

    /// Frees every entry expired at `now`, counting each in `expirations`,
    /// and returns how many. O(`N`). The others keep their order.
    ///
    /// # Panics
    ///
    /// If an expired entry's `Drop` panics, the purge stops there: that
    /// entry is already freed and counted; expired entries it had not
    /// reached yet stay until a later purge or timed lookup.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::{Duration, Instant, LruCache};
    ///
    /// let mut cache: LruCache<u8, (), 4> = LruCache::new();
    /// for k in 0..4 {
    ///     cache.put_with_ttl(k, (), Duration::from_secs(u64::from(k)), Instant::ZERO);
    /// }
    /// assert_eq!(cache.purge_expired(Instant::from_secs(2)), 3); // keys 0, 1 and 2
    /// assert_eq!(cache.iter().map(|(k, _)| *k).collect::<Vec<_>>(), [3]);
    /// ```
    pub fn purge_expired(&mut self, now: Instant) -> usize {
        let mut freed = 0;
        let mut i = self.list.tail;
        while i != NIL {
            let prev = self.list.at(i).prev;
            if let Some(entry) = self.entries[slot::<N>(i)]
                .as_ref()
                .filter(|e| e.expired(now))
            {
                let b = self.bucket_of(&entry.key);
                // Counted before the entry is dropped: its `Drop` may panic.
                Self::count(&mut self.metrics.expirations);
                freed += 1;
                self.take(b, i);
            }
            i = prev;
        }
        freed
    }
}
