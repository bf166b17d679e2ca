//! [`ConcurrentCache`]: a lock-free, set-associative cache with exact LRU
//! order inside each set.
//!
//! # Layout
//!
//! A key hashes to one of `SETS` sets of `WAYS` slots. A set is one
//! contiguous block: a 32-bit word holding the set's writer lock
//! and the ways' LRU ages (one 4-bit lane per way; the ages are a
//! permutation of `0..WAYS`, 0 = most recently used, so the LRU order is
//! exact and changes by one compare-and-swap), two words of 8-bit tags
//! (8 bits of each way's key hash, 0 = empty), one 64-bit sequence per slot,
//!
//! ```text
//! [version: 62][occupied: 1][writing: 1]
//! ```
//!
//! (one `AtomicU64` where the target has native 64-bit atomics, two
//! `AtomicU32` words on 32-bit targets such as Cortex-M, read in the order
//! of a wide sequence lock: no 64-bit atomic is emulated, no critical
//! section is taken), and the slots' keys and values, stored through atomic views
//! (`AtomicBytes`, in the crate's `sync` module) so that a reader racing a
//! writer copies bytes without a data race. A `get` compares its tag with
//! all ways' tags at once (SWAR) and reads only the matching way, so a hit
//! usually touches two cache lines: the set's header and the way's slot.
//!
//! Per entry this costs `size_of::<K>() + size_of::<V>() + 8` bytes plus
//! 12 bytes per set (16 where the sequences are 64-bit atomics, which are
//! 8-aligned) and padding to `K`'s and `V`'s alignment: 20 bytes for `u32`
//! keys and values in 4 ways (19 on 32-bit targets), 26 for `u64`s in 8
//! ways.
//!
//! # Progress: nobody waits for a writer
//!
//! * `get` is a *sequence-lock read*: it copies key and value, then checks
//!   that the slot's sequence did not change and was not odd. On a
//!   conflict it retries at most [`READ_RETRIES`] times and then treats that
//!   way as a miss. A hit on a way that is already the most recent writes
//!   nothing; otherwise one CAS moves it to the front. Hits and misses are
//!   counted only if [`with_lookup_counters`](ConcurrentCache::with_lookup_counters)
//!   asked for it (one shared read-modify-write per lookup).
//! * `insert` and `remove` take the set's writer lock with one
//!   read-modify-write; if
//!   another writer holds it they give up at once and return
//!   [`Contended`] (counted in [`CacheMetrics::contended`]). So an interrupt
//!   handler that preempts a writer on the same core never spins.
//!
//! # What a hit costs
//!
//! Exact LRU order means that a hit on any way but the set's most recent
//! one must write the ages word: one compare-and-swap (a full barrier on
//! x86) behind a branch that no predictor can learn. On the benchmarks'
//! Zipf(1) stream over twice the capacity (92 % hits), 42 % of hits need
//! it, and it is most of a hit's time; everything else on the hit path is
//! loads and register arithmetic.
//!
//! # LRU order under concurrency
//!
//! Sequentially the order is exact (a proptest checks it against a model).
//! Concurrently, one race is allowed: an insert picks its victim (the least
//! recent way) when it takes the set's lock, so a hit on that victim which
//! lands while the insert is writing does not save it — the hit returns the
//! old entry's value, and the entry is evicted right after. Values are never
//! affected: see below.
//!
//! # What a `get` guarantees
//!
//! A `get(k)` returns either `None` or a value `v` such that, at some moment
//! during the call, `v` was the value most recently inserted for `k` and not
//! yet replaced or removed. It never returns a torn value or a value stored
//! under another key: key and value are read in one validated section.
//! The version has 62 bits: a stale read could validate only if the reader
//! stalled between its two reads of the sequence while the same slot was
//! written a multiple of 2⁶² times (with two 32-bit words, at least
//! 2⁶² − 2³⁰ times), over 140 years at one write per nanosecond; any
//! smaller number of writes, 2³⁰ included, makes the read retry.
//!
//! The tags are only a filter: a reader confirms a match under the slot's
//! sequence lock and by comparing the key, and writers change a tag only
//! under the set's lock, keeping the other ways' tags, so a key present
//! throughout a `get` is never hidden by its tag.
//!
//! # Panics in `Eq`
//!
//! A writer compares keys (`K::eq`) while it holds its set's lock; the
//! lock is a guard, released if that comparison panics, so the set stays
//! usable. `Hash` runs before the lock, and readers hold none.
//!
//! # Keys whose `Hash` changes or disagrees with `Eq`
//!
//! A key is looked for only in the set and under the tag its hash gives
//! now. A key whose hash changed since it was stored (a `Hash` reading a
//! `Cell` or a clock), or two equal keys with different hashes (a logic
//! error, as for std's maps), may therefore be missed, or be stored
//! twice, each copy evicted in its turn. Nothing worse: no panic, no
//! hang, and a `get` or `remove` still returns only a value stored under
//! a key equal to the one asked for.

use core::fmt;
use core::hash::{BuildHasher, Hash};

use super::CacheMetrics;
use crate::hash::FixedState;
use crate::sync::Counter;

mod construct;
mod seq;
mod set;

use set::Set;

/// Validated-read attempts per way before a `get` treats it as a miss.
///
/// # Examples
///
/// ```
/// use fusebox::cache::concurrent::READ_RETRIES;
/// use fusebox::cache::ConcurrentCache;
///
/// // Retries only matter while a writer races the read; alone, a read
/// // validates on its first attempt and finds what was inserted.
/// assert_eq!(READ_RETRIES, 4);
/// let cache: ConcurrentCache<u32, u32, 4, 2> = ConcurrentCache::new();
/// cache.insert(1, 10)?;
/// assert_eq!(cache.get(&1), Some(10));
/// # Ok::<(), fusebox::cache::Contended>(())
/// ```
pub const READ_RETRIES: u32 = 4;

/// An insert or remove found another writer in the key's set and gave up
/// rather than wait.
///
/// # Examples
///
/// ```
/// use fusebox::cache::{ConcurrentCache, Contended};
///
/// let cache: ConcurrentCache<u32, u32, 8, 2> = ConcurrentCache::new();
/// // A cache may skip a write: on contention, go on rather than wait.
/// let written = match cache.insert(1, 10) {
///     Ok(()) => true,
///     Err(Contended) => false,
/// };
/// // With no other writer, nothing contends.
/// assert!(written);
/// assert_eq!(cache.metrics().contended, 0);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Contended;

impl fmt::Display for Contended {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("another writer holds this cache set; not written")
    }
}
impl core::error::Error for Contended {}

/// A lock-free, fixed-size, set-associative LRU cache; see the module docs.
///
/// `K: Copy + Eq + Hash` and `V: Copy`, both without padding bytes
/// ([`bytemuck::NoUninit`], derivable), because they are copied through
/// atomic words. `1 <= WAYS <= 8` and `SETS >= 1` are checked at compile
/// time.
///
/// Hits and misses are not counted unless
/// [`with_lookup_counters`](Self::with_lookup_counters) turns them on;
/// inserts, evictions and contended writes always are.
///
/// # Hashing
///
/// `S` hashes the keys; the default, [`FixedState`], has a fixed public
/// seed, so whoever chooses the keys can fill one set with keys of their
/// choice and evict a victim's entry at will. For keys that clients choose
/// use [`with_hasher`](Self::with_hasher) with a secret seed
/// (`RandomState` with the `std` feature; see the [`hash`](crate::hash)
/// module).
///
/// # Large caches
///
/// The cache lives inline; with the `alloc` feature `new_boxed` and
/// `with_hasher_boxed` build it in place on the heap, so a cache larger
/// than the stack never passes through it.
///
/// # Examples
///
/// ```
/// use fusebox::cache::ConcurrentCache;
///
/// // 64 sets × 4 ways = 256 entries, shareable by reference.
/// let cache: ConcurrentCache<u32, u64, 64, 4> = ConcurrentCache::new();
/// cache.insert(7, 700)?;
/// assert_eq!(cache.get(&7), Some(700));
/// assert_eq!(cache.remove(&7)?, Some(700));
/// assert_eq!(cache.get(&7), None);
/// # Ok::<(), fusebox::cache::Contended>(())
/// ```
pub struct ConcurrentCache<K, V, const SETS: usize, const WAYS: usize, S = FixedState> {
    sets: [Set<K, V, WAYS>; SETS],
    hasher: S,
    count_lookups: bool,
    hits: Counter,
    misses: Counter,
    inserts: Counter,
    evictions: Counter,
    contended: Counter,
}

impl<K, V, const SETS: usize, const WAYS: usize, S> ConcurrentCache<K, V, SETS, WAYS, S>
where
    K: Copy + Eq + Hash + bytemuck::NoUninit,
    V: Copy + bytemuck::NoUninit,
    S: BuildHasher,
{
    /// Also counts hits and misses in the [metrics](Self::metrics): one
    /// shared read-modify-write per `get` (contended between threads), so
    /// off by default.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::cache::ConcurrentCache;
    ///
    /// let cache: ConcurrentCache<u32, u32, 8, 2> = ConcurrentCache::new().with_lookup_counters();
    /// assert!(cache.counts_lookups());
    /// cache.get(&1);
    /// assert_eq!(cache.metrics().misses, 1);
    /// ```
    #[must_use]
    pub fn with_lookup_counters(mut self) -> Self {
        self.count_lookups = true;
        self
    }

    /// Whether hits and misses are counted (else they stay 0 in the
    /// metrics); see [`with_lookup_counters`](Self::with_lookup_counters).
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::cache::ConcurrentCache;
    ///
    /// let cache: ConcurrentCache<u32, u32, 8, 2> = ConcurrentCache::new();
    /// assert!(!cache.counts_lookups());
    /// cache.get(&1);
    /// assert_eq!(cache.metrics().misses, 0);
    /// assert!(cache.with_lookup_counters().counts_lookups());
    /// ```
    pub const fn counts_lookups(&self) -> bool {
        self.count_lookups
    }

    /// [`with_lookup_counters`](Self::with_lookup_counters) in place, for
    /// a boxed cache: turns the hit and miss counters on or off.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::cache::ConcurrentCache;
    ///
    /// // Typically on a cache from `new_boxed` (feature `alloc`).
    /// let mut cache = ConcurrentCache::<u32, u32, 1024, 4>::new();
    /// cache.set_lookup_counters(true);
    /// cache.get(&1);
    /// assert_eq!(cache.metrics().misses, 1);
    /// ```
    pub fn set_lookup_counters(&mut self, on: bool) {
        self.count_lookups = on;
    }

    /// Entries the cache can hold.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::cache::ConcurrentCache;
    ///
    /// let cache: ConcurrentCache<u32, u32, 64, 4> = ConcurrentCache::new();
    /// assert_eq!(cache.capacity(), 256);
    /// ```
    pub const fn capacity(&self) -> usize {
        SETS * WAYS
    }

    /// The value for `key`, marking it most recently used in its set.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::cache::ConcurrentCache;
    ///
    /// // One set of two ways, so all keys share it.
    /// let cache: ConcurrentCache<u32, u32, 1, 2> = ConcurrentCache::new();
    /// cache.insert(1, 10)?;
    /// cache.insert(2, 20)?;
    /// assert_eq!(cache.get(&1), Some(10)); // 1 is now the most recent
    /// cache.insert(3, 30)?; // evicts 2, the least recent
    /// assert_eq!(cache.get(&2), None);
    /// assert_eq!(cache.get(&1), Some(10));
    /// # Ok::<(), fusebox::cache::Contended>(())
    /// ```
    #[inline]
    pub fn get(&self, key: &K) -> Option<V> {
        let (set, tag) = self.locate(key);
        let set = &self.sets[set];
        if let Some((way, value)) = set.get(key, tag) {
            set.promote(way);
            if self.count_lookups {
                self.hits.incr();
            }
            return Some(value);
        }
        if self.count_lookups {
            self.misses.incr();
        }
        None
    }

    /// Inserts or replaces `key`'s value, evicting the set's least recently
    /// used entry if the set is full.
    ///
    /// # Errors
    ///
    /// [`Contended`] if another insert or remove holds the set: nothing was
    /// written.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::cache::ConcurrentCache;
    ///
    /// let cache: ConcurrentCache<u32, u32, 1, 2> = ConcurrentCache::new();
    /// cache.insert(1, 10)?;
    /// cache.insert(1, 11)?; // replaces
    /// assert_eq!(cache.get(&1), Some(11));
    /// cache.insert(2, 20)?;
    /// cache.insert(3, 30)?; // the set is full: evicts 1, the least recent
    /// assert_eq!(cache.get(&1), None);
    /// assert_eq!(cache.metrics().evictions, 1);
    /// # Ok::<(), fusebox::cache::Contended>(())
    /// ```
    pub fn insert(&self, key: K, value: V) -> Result<(), Contended> {
        let (set, tag) = self.locate(&key);
        let set = &self.sets[set];
        let Some((guard, ages)) = set.lock() else {
            self.contended.incr();
            return Err(Contended);
        };
        // `K::eq` may panic here: the guard then unlocks the set.
        let way = set.find_locked(&key, tag).unwrap_or_else(|| {
            let (way, occupied) = set.victim(ages);
            if occupied {
                self.evictions.incr();
            }
            way
        });
        // Most recent *before* the value becomes visible: a reader that sees
        // it and then hits another way makes that way the more recent one.
        set.promote(way);
        set.write(way, tag, Some((&key, &value)));
        self.inserts.incr();
        drop(guard); // unlocks
        Ok(())
    }

    /// Removes `key`, returning its value.
    ///
    /// # Errors
    ///
    /// [`Contended`] if another insert or remove holds the set: nothing was
    /// removed.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::cache::ConcurrentCache;
    ///
    /// let cache: ConcurrentCache<u32, u32, 8, 2> = ConcurrentCache::new();
    /// cache.insert(1, 10)?;
    /// assert_eq!(cache.remove(&1)?, Some(10));
    /// assert_eq!(cache.remove(&1)?, None);
    /// # Ok::<(), fusebox::cache::Contended>(())
    /// ```
    pub fn remove(&self, key: &K) -> Result<Option<V>, Contended> {
        let (set, tag) = self.locate(key);
        let set = &self.sets[set];
        let Some((guard, _)) = set.lock() else {
            self.contended.incr();
            return Err(Contended);
        };
        // `K::eq` may panic here: the guard then unlocks the set.
        let Some(way) = set.find_locked(key, tag) else {
            return Ok(None); // the guard unlocks
        };
        let value = set.value_locked(way);
        set.write(way, tag, None);
        guard.demote_and_unlock(way);
        Ok(Some(value))
    }

    /// The counters. `hits` and `misses` stay 0 unless
    /// [`with_lookup_counters`](Self::with_lookup_counters) was used (see
    /// [`counts_lookups`](Self::counts_lookups)).
    ///
    /// Each counter is one atomic word, incremented without a lock: it
    /// wraps at 2⁶⁴ where the target has 64-bit atomics, and at 2³² on
    /// 32-bit microcontrollers (Cortex-M), although the fields are `u64`.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::cache::ConcurrentCache;
    ///
    /// let cache: ConcurrentCache<u32, u32, 1, 1> = ConcurrentCache::new();
    /// cache.insert(1, 10)?;
    /// cache.insert(2, 20)?; // one way: evicts 1
    /// assert_eq!(cache.get(&2), Some(20)); // a hit, not counted
    /// let m = cache.metrics();
    /// assert_eq!((m.inserts, m.evictions, m.contended), (2, 1, 0));
    /// assert_eq!((m.hits, m.misses), (0, 0));
    /// # Ok::<(), fusebox::cache::Contended>(())
    /// ```
    pub fn metrics(&self) -> CacheMetrics {
        CacheMetrics {
            hits: self.hits.get(),
            misses: self.misses.get(),
            inserts: self.inserts.get(),
            evictions: self.evictions.get(),
            expirations: 0,
            contended: self.contended.get(),
        }
    }

    /// Loom models only (`--cfg loom`): moves every slot's sequence to
    /// `version` (below 2⁶², flags kept), as if each slot had been written
    /// that many times, so that a model can race a write that carries the
    /// version's low word into its high word. Not part of the API.
    #[cfg(loom)]
    #[doc(hidden)]
    pub fn loom_set_slot_versions(&self, version: u64) {
        for set in &self.sets {
            set.set_versions(version);
        }
    }

    /// The key's set and its tag (8 bits of the hash, never 0).
    #[inline]
    fn locate(&self, key: &K) -> (usize, u32) {
        let hash = self.hasher.hash_one(key);
        ((hash % SETS as u64) as usize, ((hash >> 56) as u32).max(1))
    }
}

impl<K, V, const SETS: usize, const WAYS: usize, S> fmt::Debug
    for ConcurrentCache<K, V, SETS, WAYS, S>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConcurrentCache")
            .field("sets", &SETS)
            .field("ways", &WAYS)
            .field("counts_lookups", &self.count_lookups)
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
