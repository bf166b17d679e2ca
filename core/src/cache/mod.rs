//! Fixed-capacity caches: no allocation, time passed in.
//!
//! * [`LruCache`]: an exact least-recently-used cache for a single owner
//!   (`&mut self`), with optional per-entry expiry.
//! * [`ConcurrentCache`]: a lock-free, set-associative cache shared by
//!   reference between threads and interrupt handlers (`&self`), exact LRU
//!   inside each set.
//!
//! All caches count their traffic in a [`CacheMetrics`] ([`ConcurrentCache`]
//! counts hits and misses only when asked to, see
//! [`with_lookup_counters`](ConcurrentCache::with_lookup_counters)).
//!
//! # Examples
//!
//! ```
//! use fusebox::cache::{CacheMetrics, LruCache};
//!
//! let mut cache: LruCache<u32, &str, 2> = LruCache::new();
//! cache.put(1, "one");
//! assert_eq!(cache.get(&1), Some(&"one"));
//! assert_eq!(cache.get(&2), None);
//! let m: CacheMetrics = cache.metrics();
//! assert_eq!((m.hits, m.misses, m.inserts), (1, 1, 1));
//! assert_eq!(m.hit_ratio(), Some(0.5));
//! ```

pub mod concurrent;
pub mod lru;

pub use concurrent::{ConcurrentCache, Contended};
pub use lru::{Displaced, Iter, LruCache};

/// A cache's counters since creation (or the last metrics reset).
///
/// Each cache documents which of its operations count where; for
/// [`LruCache`] see its [metrics section](LruCache#metrics).
/// [`ConcurrentCache`] counts `hits` and `misses` only if it was built
/// [`with_lookup_counters`](ConcurrentCache::with_lookup_counters) (they
/// stay 0 otherwise: check
/// [`counts_lookups`](ConcurrentCache::counts_lookups) before reading a
/// hit ratio); its inserts, evictions and contended writes are always
/// counted.
///
/// # Examples
///
/// ```
/// use fusebox::cache::CacheMetrics;
///
/// let m = CacheMetrics { hits: 3, misses: 1, ..CacheMetrics::default() };
/// assert_eq!(m.lookups(), 4);
/// assert_eq!(m.hit_ratio(), Some(0.75));
/// assert_eq!(CacheMetrics::default().hit_ratio(), None);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct CacheMetrics {
    /// Lookups that found a live entry (for [`ConcurrentCache`], only when
    /// lookups are counted).
    pub hits: u64,
    /// Lookups that found no entry, or only an expired one (for
    /// [`ConcurrentCache`], only when lookups are counted).
    pub misses: u64,
    /// Entries stored, new keys and replacements of an existing key alike.
    pub inserts: u64,
    /// Entries removed to make room for a new key (one that an insert
    /// which knows the time finds expired counts in `expirations` instead).
    pub evictions: u64,
    /// Expired entries freed (by a lookup, an insert or a purge).
    pub expirations: u64,
    /// Writes given up because another writer held the set
    /// ([`ConcurrentCache`] only; always 0 for [`LruCache`]).
    pub contended: u64,
}

impl CacheMetrics {
    /// `hits + misses` (saturating).
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::cache::CacheMetrics;
    ///
    /// let m = CacheMetrics { hits: u64::MAX, misses: 1, ..CacheMetrics::default() };
    /// assert_eq!(m.lookups(), u64::MAX);
    /// ```
    pub const fn lookups(&self) -> u64 {
        self.hits.saturating_add(self.misses)
    }

    /// `hits / (hits + misses)`, or `None` before the first lookup.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::cache::CacheMetrics;
    ///
    /// assert_eq!(CacheMetrics::default().hit_ratio(), None);
    /// let m = CacheMetrics { hits: 1, misses: 3, ..CacheMetrics::default() };
    /// assert_eq!(m.hit_ratio(), Some(0.25));
    /// ```
    // Counts above 2^53 lose precision in f64; a ratio does not care.
    #[allow(clippy::cast_precision_loss)]
    pub fn hit_ratio(&self) -> Option<f64> {
        let hits = self.hits as f64;
        let lookups = hits + self.misses as f64;
        (lookups > 0.0).then(|| hits / lookups)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::CacheMetrics;

    #[test]
    fn hit_ratio_without_lookups_is_none() {
        assert_eq!(CacheMetrics::default().hit_ratio(), None);
        let only_inserts = CacheMetrics {
            inserts: 5,
            evictions: 2,
            expirations: 1,
            ..CacheMetrics::default()
        };
        assert_eq!(only_inserts.hit_ratio(), None);
        assert_eq!(only_inserts.lookups(), 0);
    }

    #[test]
    fn hit_ratio_extremes() {
        let all_hits = CacheMetrics {
            hits: 7,
            ..CacheMetrics::default()
        };
        assert_eq!(all_hits.hit_ratio(), Some(1.0));
        let all_misses = CacheMetrics {
            misses: 7,
            ..CacheMetrics::default()
        };
        assert_eq!(all_misses.hit_ratio(), Some(0.0));
        let huge = CacheMetrics {
            hits: u64::MAX,
            misses: u64::MAX,
            ..CacheMetrics::default()
        };
        assert_eq!(huge.hit_ratio(), Some(0.5));
        assert_eq!(huge.lookups(), u64::MAX);
    }
}
