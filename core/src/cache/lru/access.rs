//! The keyed methods of [`LruCache`] that do not take the time — `get`,
//! `get_mut`, `peek`, `contains`, `put`, `remove` — and the lookup and
//! insertion they share with the timed methods of `expiry.rs`.
//!
//! Every lookup hashes the key once, walks one chain of the [`Index`] and,
//! if it promotes, rewrites the links of at most four nodes in the
//! [`List`](super::list::List). The returned reference comes straight from
//! the chain walk, so the entry is not looked up twice.

use core::borrow::Borrow;
use core::hash::{BuildHasher, Hash};

use super::index::Index;
use super::list::{slot, Idx};
use super::{Displaced, Entry, LruCache};
use crate::Instant;

impl<K: Hash + Eq, V, const N: usize, S: BuildHasher> LruCache<K, V, N, S> {
    /// The value for `key`, made the most recently used. Time-less: an
    /// expired entry is returned like any other (use
    /// [`get_at`](Self::get_at) for entries with a TTL). Counts a hit or a
    /// miss.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::LruCache;
    ///
    /// let mut cache: LruCache<u8, &str, 2> = LruCache::new();
    /// cache.put(1, "one");
    /// cache.put(2, "two");
    /// assert_eq!(cache.get(&1), Some(&"one")); // 1 is now the most recent
    /// cache.put(3, "three"); // evicts 2, the least recent
    /// assert_eq!(cache.get(&2), None);
    /// ```
    #[inline]
    pub fn get<Q>(&mut self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let b = self.bucket_of(key);
        if let Some((i, entry)) = self.index.find(&self.entries, b, key) {
            Self::count(&mut self.metrics.hits);
            self.list.promote(i);
            Some(&entry.value)
        } else {
            Self::count(&mut self.metrics.misses);
            None
        }
    }

    /// Like [`get`](Self::get), mutably.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::LruCache;
    ///
    /// let mut cache: LruCache<u8, u32, 2> = LruCache::new();
    /// cache.put(1, 10);
    /// if let Some(v) = cache.get_mut(&1) {
    ///     *v += 1;
    /// }
    /// assert_eq!(cache.peek(&1), Some(&11));
    /// ```
    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let b = self.bucket_of(key);
        let Some((i, _)) = self.index.find(&self.entries, b, key) else {
            Self::count(&mut self.metrics.misses);
            return None;
        };
        Self::count(&mut self.metrics.hits);
        self.list.promote(i);
        self.entries[slot::<N>(i)].as_mut().map(|e| &mut e.value)
    }

    /// The value for `key` without promoting it or counting a hit or miss.
    /// Time-less: an expired entry is returned like any other (use
    /// [`peek_at`](Self::peek_at) for entries with a TTL).
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::LruCache;
    ///
    /// let mut cache: LruCache<u8, &str, 2> = LruCache::new();
    /// cache.put(1, "one");
    /// cache.put(2, "two");
    /// assert_eq!(cache.peek(&1), Some(&"one")); // 1 stays the least recent
    /// cache.put(3, "three");
    /// assert_eq!(cache.peek(&1), None);
    /// assert_eq!(cache.metrics().lookups(), 0);
    /// ```
    #[inline]
    pub fn peek<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let b = self.bucket_of(key);
        self.index
            .find(&self.entries, b, key)
            .map(|(_, e)| &e.value)
    }

    /// Whether `key` is stored. Does not promote or count. Time-less: an
    /// expired entry counts as stored (use
    /// [`contains_at`](Self::contains_at) for entries with a TTL).
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::LruCache;
    ///
    /// let mut cache: LruCache<&str, (), 2> = LruCache::new();
    /// cache.put("a", ());
    /// assert!(cache.contains(&"a"));
    /// assert!(!cache.contains(&"b"));
    /// ```
    pub fn contains<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let b = self.bucket_of(key);
        self.index.find(&self.entries, b, key).is_some()
    }

    /// Stores `value` under `key` as the most recently used entry, with no
    /// expiry (replacing the key's TTL, if it had one). Time-less.
    ///
    /// Returns what was pushed out:
    ///
    /// * `Some(`[`Displaced::Replaced`]`(old_key, old_value))` if `key` was
    ///   already stored (expired or not: `put` does not know the time). The
    ///   key passed in is stored; the old one is returned.
    /// * `Some(`[`Displaced::Evicted`]`(k, v))` if `key` was new and the
    ///   cache was full: the least recently used entry, removed to make room.
    /// * `None` if `key` was new and there was room.
    ///
    /// Never returns [`Displaced::Expired`].
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::cache::{Displaced, LruCache};
    ///
    /// let mut cache: LruCache<u8, &str, 2> = LruCache::new();
    /// assert_eq!(cache.put(1, "a"), None);
    /// assert_eq!(cache.put(2, "b"), None);
    /// assert_eq!(cache.put(1, "A"), Some(Displaced::Replaced(1, "a")));
    /// assert_eq!(cache.put(3, "c"), Some(Displaced::Evicted(2, "b")));
    /// ```
    #[inline]
    pub fn put(&mut self, key: K, value: V) -> Option<Displaced<K, V>> {
        self.insert(key, value, None, None)
    }

    /// Removes `key`, returning its stored key and value. Does not count a
    /// hit or miss. Time-less: an expired entry is returned like any other
    /// (use [`remove_at`](Self::remove_at) for entries with a TTL).
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::LruCache;
    ///
    /// let mut cache: LruCache<u8, &str, 2> = LruCache::new();
    /// cache.put(1, "one");
    /// assert_eq!(cache.remove(&1), Some((1, "one")));
    /// assert_eq!(cache.remove(&1), None);
    /// assert!(cache.is_empty());
    /// ```
    pub fn remove<Q>(&mut self, key: &Q) -> Option<(K, V)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let (b, i) = self.find(key);
        self.take(b, i?).map(|e| (e.key, e.value))
    }

    /// The bucket of `key`.
    #[inline]
    pub(super) fn bucket_of<Q: Hash + ?Sized>(&self, key: &Q) -> usize {
        Index::<N>::bucket(self.hasher.hash_one(key))
    }

    /// The bucket of `key` and the node holding it, if any.
    #[inline]
    pub(super) fn find<Q>(&self, key: &Q) -> (usize, Option<Idx>)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let b = self.bucket_of(key);
        (b, self.index.find(&self.entries, b, key).map(|(i, _)| i))
    }

    /// The node holding `key` if it is live at `now`. An expired entry is
    /// freed, counted in `expirations` and handed back (`Err(Some(_))`) to
    /// be dropped once the caller has counted its lookup: its `Drop` may
    /// panic, and the counters must already say what happened.
    pub(super) fn find_live<Q>(&mut self, key: &Q, now: Instant) -> Result<Idx, Option<Entry<K, V>>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let b = self.bucket_of(key);
        let Some((i, entry)) = self.index.find(&self.entries, b, key) else {
            return Err(None);
        };
        if entry.expired(now) {
            Self::count(&mut self.metrics.expirations);
            return Err(self.take(b, i));
        }
        Ok(i)
    }

    /// `put` (`now: None`) and `put_with_ttl`. Inlined into both, so
    /// `put` carries no deadline and no expiry test.
    #[allow(
        clippy::inline_always,
        reason = "measured: without it `put` calls it, passing both Options (+16 instructions a put)"
    )]
    #[inline(always)]
    pub(super) fn insert(
        &mut self,
        key: K,
        value: V,
        deadline: Option<Instant>,
        now: Option<Instant>,
    ) -> Option<Displaced<K, V>> {
        // `inserts` counts entries stored: each path counts once nothing
        // left can panic (`Hash` and `Eq` are the caller's code).
        let b = self.bucket_of(&key);
        let found = self.index.search(&self.entries, b, &key).map(|(i, _)| i);
        let entry = Entry {
            key,
            value,
            deadline,
        };
        let last = match found {
            Ok(i) => {
                Self::count(&mut self.metrics.inserts);
                self.list.promote(i);
                let old = self.entries[slot::<N>(i)].replace(entry)?;
                return Some(if now.is_some_and(|now| old.expired(now)) {
                    Self::count(&mut self.metrics.expirations);
                    Displaced::Expired(old.key, old.value)
                } else {
                    Displaced::Replaced(old.key, old.value)
                });
            }
            Err(last) => last,
        };
        if self.len() < N {
            Self::count(&mut self.metrics.inserts);
            let i = self.list.acquire();
            // The node is vacant, unless a `clear` unwound by a value's
            // panicking `Drop` left an entry in it: that one is dropped
            // last, once the node is indexed, so even if its `Drop` panics
            // the new entry is findable.
            let leftover = self.entries[slot::<N>(i)].replace(entry);
            self.index.append(b, last, i);
            drop(leftover);
            return None;
        }
        // Full: the least recently used node is reused in place: moved to
        // the front of the list and, unless it already is in bucket `b`
        // (then it keeps its place in the chain), to the end of `b`'s
        // chain. `old_b` is where its old key hashes *now*: a `Hash` that
        // changed since the key was stored (a logic error, but not ours to
        // turn into a lost entry or an endless chain) may have left the
        // node elsewhere, so "already in `b`" is checked on the chain, and
        // `remove` finds the node wherever it is.
        let i = self.list.tail;
        let old_b = self.bucket_of(&self.entries[slot::<N>(i)].as_ref()?.key);
        Self::count(&mut self.metrics.inserts);
        // In `b`'s chain already (it ends it, or its key hashes there), it
        // keeps its place; else it leaves its chain for the end of `b`'s
        // (never after itself: `last` is then not `i`).
        let in_b = if old_b == b {
            self.index.holds(b, i)
        } else {
            last == i
        };
        if !in_b {
            self.index.remove(old_b, i);
            self.index.append(b, last, i);
        }
        self.list.promote(i);
        let old = self.entries[slot::<N>(i)].replace(entry)?;
        Some(if now.is_some_and(|now| old.expired(now)) {
            Self::count(&mut self.metrics.expirations);
            Displaced::Expired(old.key, old.value)
        } else {
            Self::count(&mut self.metrics.evictions);
            Displaced::Evicted(old.key, old.value)
        })
    }
}
