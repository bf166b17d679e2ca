//! Construction: in place (a large cache never passes through the stack),
//! on the heap (feature `alloc`), and `Default`.

use core::hash::{BuildHasher, Hash};
use core::ptr::addr_of_mut;

use super::{ConcurrentCache, Set};
use crate::hash::FixedState;
use crate::sync::Counter;

/// Constructors with the default hasher, [`FixedState`] (fixed public seed).
impl<K, V, const SETS: usize, const WAYS: usize> ConcurrentCache<K, V, SETS, WAYS>
where
    K: Copy + Eq + Hash + bytemuck::NoUninit,
    V: Copy + bytemuck::NoUninit,
{
    /// An empty cache hashing with the fixed default seed (for keys that
    /// clients choose see [`with_hasher`](ConcurrentCache::with_hasher)).
    /// Hits and misses are not counted; see
    /// [`with_lookup_counters`](Self::with_lookup_counters).
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::cache::ConcurrentCache;
    ///
    /// let cache: ConcurrentCache<u32, u32, 16, 4> = ConcurrentCache::new();
    /// assert_eq!(cache.get(&1), None);
    /// assert!(!cache.counts_lookups());
    /// ```
    ///
    /// More in [`ConcurrentCache`].
    pub fn new() -> Self {
        Self::with_hasher(FixedState::new())
    }

    /// [`new`](Self::new), built in place on the heap (feature `alloc`).
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::cache::ConcurrentCache;
    ///
    /// // 1 M entries, 26 MiB: never on the stack.
    /// let cache = ConcurrentCache::<u64, u64, 131_072, 8>::new_boxed();
    /// cache.insert(1, 2)?;
    /// assert_eq!(cache.get(&1), Some(2));
    /// # Ok::<(), fusebox::cache::Contended>(())
    /// ```
    #[cfg(feature = "alloc")]
    pub fn new_boxed() -> alloc::boxed::Box<Self> {
        Self::with_hasher_boxed(FixedState::new())
    }

    /// Uses `seed` for the key hash (pick a secret one for untrusted keys;
    /// it protects keys of one machine word only, see
    /// [`FixedState::with_seed`]).
    /// Moves the cache: for a large one, pass `FixedState::with_seed(seed)`
    /// to `with_hasher_boxed`.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::cache::ConcurrentCache;
    ///
    /// let cache: ConcurrentCache<u32, u32, 8, 2> = ConcurrentCache::new().with_seed(0x5eed);
    /// cache.insert(1, 1)?;
    /// # Ok::<(), fusebox::cache::Contended>(())
    /// ```
    #[must_use]
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.hasher = FixedState::with_seed(seed);
        self
    }
}

impl<K, V, const SETS: usize, const WAYS: usize, S> ConcurrentCache<K, V, SETS, WAYS, S>
where
    K: Copy + Eq + Hash + bytemuck::NoUninit,
    V: Copy + bytemuck::NoUninit,
    S: BuildHasher,
{
    const CHECKS: () = {
        assert!(SETS > 0, "a ConcurrentCache needs at least one set");
        assert!(
            WAYS > 0 && WAYS <= 8,
            "a ConcurrentCache has 1 to 8 ways per set"
        );
    };

    /// An empty cache hashing keys with `hasher`.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::cache::ConcurrentCache;
    /// use fusebox::hash::FixedState;
    ///
    /// // A secret seed, e.g. from a hardware RNG at boot; on a server,
    /// // `fusebox::hash::RandomState::new()` (feature `std`).
    /// let cache: ConcurrentCache<u32, u32, 64, 4, FixedState> =
    ///     ConcurrentCache::with_hasher(FixedState::with_seed(0x5eed));
    /// cache.insert(7, 700)?;
    /// assert_eq!(cache.get(&7), Some(700));
    /// # Ok::<(), fusebox::cache::Contended>(())
    /// ```
    pub fn with_hasher(hasher: S) -> Self {
        let mut this = core::mem::MaybeUninit::<Self>::uninit();
        // SAFETY: `this` is valid for writes and aligned; `init` writes
        // every field, so it is initialised afterwards.
        unsafe {
            Self::init(this.as_mut_ptr(), hasher);
            this.assume_init()
        }
    }

    /// [`with_hasher`](Self::with_hasher), built in place on the heap
    /// (feature `alloc`): no cache-sized value passes through the stack.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::cache::ConcurrentCache;
    /// use fusebox::hash::FixedState;
    ///
    /// let cache = ConcurrentCache::<u64, u64, 65_536, 8>::with_hasher_boxed(FixedState::with_seed(7));
    /// assert_eq!(cache.capacity(), 524_288);
    /// ```
    #[cfg(feature = "alloc")]
    pub fn with_hasher_boxed(hasher: S) -> alloc::boxed::Box<Self> {
        // SAFETY: `init` writes every field of the allocation it is given.
        unsafe { crate::boxed::new_in_place(|this| Self::init(this, hasher)) }
    }

    /// Writes an empty cache into `this`, field by field and set by set.
    ///
    /// # Safety
    ///
    /// * `this` is valid for writes of `Self` and aligned; whatever it
    ///   holds is overwritten, not dropped.
    unsafe fn init(this: *mut Self, hasher: S) {
        let () = Self::CHECKS;
        // SAFETY: (the caller's contract) every place below lies inside
        // `*this` and is written once; an array of `SETS` sets has room
        // for `SETS` writes.
        unsafe {
            let sets = addr_of_mut!((*this).sets).cast::<Set<K, V, WAYS>>();
            for i in 0..SETS {
                sets.add(i).write(Set::new());
            }
            addr_of_mut!((*this).hasher).write(hasher);
            addr_of_mut!((*this).count_lookups).write(false);
            addr_of_mut!((*this).hits).write(Counter::new());
            addr_of_mut!((*this).misses).write(Counter::new());
            addr_of_mut!((*this).inserts).write(Counter::new());
            addr_of_mut!((*this).evictions).write(Counter::new());
            addr_of_mut!((*this).contended).write(Counter::new());
        }
    }
}

impl<K, V, const SETS: usize, const WAYS: usize, S> Default for ConcurrentCache<K, V, SETS, WAYS, S>
where
    K: Copy + Eq + Hash + bytemuck::NoUninit,
    V: Copy + bytemuck::NoUninit,
    S: BuildHasher + Default,
{
    /// An empty cache hashing with `S::default()` ([`new`](ConcurrentCache::new)
    /// for the default `S`).
    fn default() -> Self {
        Self::with_hasher(S::default())
    }
}
