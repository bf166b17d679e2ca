//! [`Displaced`]: what a `put` pushed out of an [`LruCache`](super::LruCache).

/// What a [`put`](super::LruCache::put) or [`put_with_ttl`](super::LruCache::put_with_ttl)
/// pushed out of the cache.
///
/// # Examples
///
/// ```
/// use fusebox::cache::{Displaced, LruCache};
///
/// let mut cache: LruCache<u8, char, 1> = LruCache::new();
/// assert_eq!(cache.put(1, 'a'), None);
/// assert_eq!(cache.put(1, 'b'), Some(Displaced::Replaced(1, 'a')));
/// let evicted = cache.put(2, 'c').unwrap();
/// assert_eq!(evicted, Displaced::Evicted(1, 'b'));
/// assert_eq!(evicted.into_pair(), (1, 'b'));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Displaced<K, V> {
    /// The key was already present (and, for `put_with_ttl`, not expired
    /// at `now`): its previous key and value. The key passed in is stored.
    Replaced(K, V),
    /// The cache was full: its least recently used entry (not expired at
    /// `now`, for `put_with_ttl`) was removed to make room. Counted in
    /// [`CacheMetrics::evictions`](crate::cache::CacheMetrics::evictions).
    Evicted(K, V),
    /// Only from `put_with_ttl`: the replaced entry of the same key, or the
    /// least recently used entry removed to make room, had already expired
    /// at `now`. Counted in [`CacheMetrics::expirations`](crate::cache::CacheMetrics::expirations), not in
    /// `evictions`.
    Expired(K, V),
}

impl<K, V> Displaced<K, V> {
    /// The displaced key and value, whatever the reason.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::cache::Displaced;
    ///
    /// assert_eq!(Displaced::Expired("k", 1).into_pair(), ("k", 1));
    /// ```
    pub fn into_pair(self) -> (K, V) {
        match self {
            Self::Replaced(k, v) | Self::Evicted(k, v) | Self::Expired(k, v) => (k, v),
        }
    }

    /// The displaced key.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::cache::Displaced;
    ///
    /// assert_eq!(Displaced::Evicted("k", 1).key(), &"k");
    /// ```
    pub const fn key(&self) -> &K {
        match self {
            Self::Replaced(k, _) | Self::Evicted(k, _) | Self::Expired(k, _) => k,
        }
    }

    /// The displaced value.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::cache::Displaced;
    ///
    /// assert_eq!(Displaced::Replaced("k", 1).value(), &1);
    /// ```
    pub const fn value(&self) -> &V {
        match self {
            Self::Replaced(_, v) | Self::Evicted(_, v) | Self::Expired(_, v) => v,
        }
    }
}
