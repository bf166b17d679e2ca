//! Construction: `const` constructors (for `static`s), in place on the heap
//! (feature `alloc`), and `Default`.

#[cfg(feature = "alloc")]
use core::ptr::addr_of_mut;

#[cfg(feature = "alloc")]
use super::Entry;
use super::{Index, List, LruCache, MAX_CAPACITY};
use crate::cache::CacheMetrics;
use crate::hash::FixedState;

/// Constructors with the default hasher, [`FixedState`] (fixed public seed).
impl<K, V, const N: usize> LruCache<K, V, N> {
    /// An empty cache, hashing with a fixed built-in seed.
    ///
    /// `const`, so it can initialise a `static`. Fails to build unless
    /// `1 <= N <= 65_535`.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::LruCache;
    ///
    /// static EMPTY: LruCache<u32, u32, 8> = LruCache::new();
    /// assert!(EMPTY.is_empty());
    /// assert_eq!(EMPTY.capacity(), 8);
    /// ```
    pub const fn new() -> Self {
        Self::with_hasher(FixedState::new())
    }

    /// An empty cache hashing with `seed`.
    ///
    /// Choose a secret seed (e.g. from a hardware RNG at boot) when keys
    /// come from untrusted input, so nobody can pick keys that all share
    /// one bucket. That holds for keys of one machine word (integers up to
    /// 64 bits); `u128`, multi-word and byte-string keys can still be
    /// chosen to collide whatever the seed (see
    /// [`FixedState::with_seed`]): hash those with `RandomState` (feature
    /// `std`) through [`with_hasher`](LruCache::with_hasher). Behaviour is
    /// otherwise identical to [`new`](Self::new).
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::LruCache;
    ///
    /// let mut cache: LruCache<u64, (), 4> = LruCache::with_seed(0x5eed);
    /// cache.put(7, ());
    /// assert!(cache.contains(&7));
    /// ```
    pub const fn with_seed(seed: u64) -> Self {
        Self::with_hasher(FixedState::with_seed(seed))
    }

    /// [`new`](Self::new), built in place on the heap (feature `alloc`):
    /// no cache-sized value passes through the stack.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::LruCache;
    ///
    /// // The largest capacity: 2.7 MiB of u64 pairs.
    /// let mut cache = LruCache::<u64, u64, 65_535>::new_boxed();
    /// cache.put(1, 2);
    /// assert_eq!(cache.get(&1), Some(&2));
    /// ```
    #[cfg(feature = "alloc")]
    pub fn new_boxed() -> alloc::boxed::Box<Self> {
        Self::with_hasher_boxed(FixedState::new())
    }
}

impl<K, V, const N: usize, S> LruCache<K, V, N, S> {
    const CHECKS: () = {
        assert!(N > 0, "LruCache capacity N must be at least 1");
        assert!(
            N <= MAX_CAPACITY,
            "LruCache capacity N must be at most 65 535 (u16 indices)"
        );
    };

    /// An empty cache hashing keys with `hasher`. `const`, like
    /// [`new`](LruCache::new).
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::LruCache;
    ///
    /// // Any BuildHasher, e.g. std's SipHash with a random key (or
    /// // `fusebox::hash::RandomState` with the `std` feature).
    /// let mut cache: LruCache<String, u32, 64, std::hash::RandomState> =
    ///     LruCache::with_hasher(std::hash::RandomState::new());
    /// cache.put("client-7".to_string(), 1);
    /// assert_eq!(cache.get("client-7"), Some(&1));
    /// ```
    pub const fn with_hasher(hasher: S) -> Self {
        let () = Self::CHECKS;
        Self {
            entries: [const { None }; N],
            list: List::EMPTY,
            index: Index::EMPTY,
            hasher,
            metrics: CacheMetrics {
                hits: 0,
                misses: 0,
                inserts: 0,
                evictions: 0,
                expirations: 0,
                contended: 0,
            },
        }
    }

    /// [`with_hasher`](Self::with_hasher), built in place on the heap
    /// (feature `alloc`): no cache-sized value passes through the stack.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::hash::FixedState;
    /// use fusebox::LruCache;
    ///
    /// let mut cache = LruCache::<u64, [u8; 64], 65_535, _>::with_hasher_boxed(FixedState::with_seed(7));
    /// cache.put(1, [0; 64]);
    /// assert_eq!(cache.len(), 1);
    /// ```
    #[cfg(feature = "alloc")]
    pub fn with_hasher_boxed(hasher: S) -> alloc::boxed::Box<Self> {
        let () = Self::CHECKS;
        // SAFETY: `init` writes every field of the allocation it is given.
        unsafe { crate::boxed::new_in_place(|this| Self::init(this, hasher)) }
    }

    /// Writes an empty cache into `this`, field by field and node by node
    /// (the same value as [`with_hasher`](Self::with_hasher)).
    ///
    /// # Safety
    ///
    /// * `this` is valid for writes of `Self` and aligned; whatever it
    ///   holds is overwritten, not dropped.
    #[cfg(feature = "alloc")]
    unsafe fn init(this: *mut Self, hasher: S) {
        // SAFETY: (the caller's contract) every place below lies inside
        // `*this` and is written once; an array of `N` entries has room
        // for `N` writes.
        unsafe {
            List::init(addr_of_mut!((*this).list));
            Index::init(addr_of_mut!((*this).index));
            let entries = addr_of_mut!((*this).entries).cast::<Option<Entry<K, V>>>();
            for i in 0..N {
                entries.add(i).write(None);
            }
            addr_of_mut!((*this).hasher).write(hasher);
            addr_of_mut!((*this).metrics).write(CacheMetrics::default());
        }
    }
}

impl<K, V, const N: usize, S: Default> Default for LruCache<K, V, N, S> {
    /// An empty cache hashing with `S::default()` ([`LruCache::new`] for
    /// the default `S`).
    fn default() -> Self {
        Self::with_hasher(S::default())
    }
}
