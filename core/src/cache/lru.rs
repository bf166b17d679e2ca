//! An exact, fixed-capacity LRU cache with optional per-entry expiry.
//!
//! [`LruCache<K, V, N>`](LruCache) holds at most `N` entries in arrays sized
//! at compile time: no allocation, no `unsafe` outside the in-place heap
//! constructor, and [`LruCache::new`] is a `const fn`, so a cache can live in a `static` (behind the owner's lock of
//! choice) or on the stack. It is for a single owner: every mutation takes
//! `&mut self`.
//!
//! # Layout
//!
//! Three arrays indexed by node (a structure of arrays, so each hot path
//! touches only the bytes it needs):
//!
//! * **Entries**: `N` × `Option<(key, value, deadline)>`; node `i` is in use
//!   iff its entry is `Some`.
//! * **Recency list** (`list.rs`): `N` × two 16-bit links, `prev`/`next`, a
//!   doubly linked list by index, most recently used at the head (a vacant
//!   node's `next` links the free list). Four bytes a node: a promotion
//!   rewrites the links of up to four nodes, and for a few thousand nodes
//!   the whole array fits in the L1 cache.
//! * **Hash index** (`index.rs`): `2 × N` bucket heads and `N` `chain`
//!   links (16-bit node indices), separate chaining. Two buckets per node
//!   keep chains short (load factor ≤ ½). A new key goes to the end of its
//!   chain, so chains run from the oldest entries, the ones LRU keeps
//!   because they are used, to the newest. Keys are hashed with the
//!   cache's hasher `S`, by default [`FixedState`]: a fixed, `const` seed,
//!   so the same keys always land in the same buckets (no randomness to
//!   set up on a microcontroller). The bucket is picked from the hash's upper 32 bits
//!   by a multiply-shift, not a division (Cortex-M0 has no divider).
//! * **Index type**: `u16`, with `u16::MAX` as the "no node" sentinel, so
//!   `N` ≤ [`MAX_CAPACITY`] (65 535). `N == 0` and `N > 65 535` fail to
//!   build: a `const` assertion in the constructors, evaluated when a
//!   constructor is instantiated (by `cargo build`/`cargo test`; like every
//!   post-monomorphisation error, `cargo check` does not report it):
//!
//! ```compile_fail,E0080
//! // error[E0080]: evaluation panicked: LruCache capacity N must be at least 1
//! let cache = fusebox::LruCache::<u32, u32, 0>::new();
//! # drop(cache);
//! ```
//!
//! ```compile_fail,E0080
//! // error[E0080]: evaluation panicked: LruCache capacity N must be at most 65 535 (u16 indices)
//! let cache = fusebox::LruCache::<u8, u8, 65_536>::new();
//! # drop(cache);
//! ```
//!
//! # Cost
//!
//! `get`, `peek`, `put`, `remove` and the rest are O(1): one hash, a walk
//! of one bucket's chain (expected length at most ½ with `2N` buckets for
//! at most `N` keys) and a constant number of link updates; `put` on a full
//! cache reuses the least recently used node in place. The chain walk is
//! only *expected* O(1): keys chosen to collide (an attacker who knows the
//! fixed seed) degrade lookups to O(`N`). Use [`LruCache::with_seed`] with a
//! secret seed (enough for keys of one machine word only, see
//! [`FixedState::with_seed`]), or [`LruCache::with_hasher`] with a keyed
//! hasher (`fusebox::hash::RandomState` with the `std` feature, for any
//! key type), if keys come from untrusted input. [`iter`](LruCache::iter),
//! [`clear`](LruCache::clear) and
//! [`purge_expired`](LruCache::purge_expired) are O(`N`).
//!
//! A key whose hash changes while it is stored (a `Hash` reading a `Cell`
//! or a clock: a logic error, as for std's maps) may be missed by lookups
//! until it is evicted, but it costs no other key its entry, and no
//! operation hangs or panics: evicting or purging it finds its node by a
//! scan of every bucket (O(`N`), only then).
//!
//! For a power-of-two `N` every node index is masked to `0..N` (a no-op by
//! the invariants) so the compiler drops the bounds checks; other
//! capacities keep them.
//!
//! # Size
//!
//! Per entry: `Option<(K, V, Option<Instant>)>`, two `u16` list links, one
//! `u16` chain link and two `u16` bucket heads. The deadline is an
//! `Option<Instant>` (16 bytes with its tag; the outer `Option` uses that
//! tag's spare values, so occupancy costs nothing more). For `K = V = u32`
//! the entry is 24 bytes, so an entry costs **34 bytes**: 8 of key and
//! value and **26 of overhead** (16 deadline, 4 list links, 2 chain link, 4
//! bucket heads). Fixed part: five `u16` (head, tail, free list,
//! high-water mark, length), the 8-byte hasher seed and the 48-byte
//! [`CacheMetrics`]. `size_of::<LruCache<u32, u32, 32>>()` is 1 160 bytes
//! on x86-64 and on Cortex-M (checked by every build).
//!
//! # Expiry: one type, two kinds of method
//!
//! Entries stored with [`put`](LruCache::put) never expire; entries stored
//! with [`put_with_ttl`](LruCache::put_with_ttl)`(k, v, ttl, now)` expire at
//! `deadline = now + ttl` (computed exactly: a deadline past
//! [`Instant::MAX`] is never reached). An entry is **expired at `t` iff `t
//! >= deadline`**; a `ttl` of zero stores an entry that is already expired.
//!
//! The cache never reads a clock, so the methods come in two kinds:
//!
//! * **Time-less** — [`get`](LruCache::get), [`get_mut`](LruCache::get_mut),
//!   [`peek`](LruCache::peek), [`contains`](LruCache::contains),
//!   [`remove`](LruCache::remove), [`iter`](LruCache::iter),
//!   [`len`](LruCache::len), [`put`](LruCache::put): they do not know the
//!   time and treat **every stored entry as live, expired or not**. They
//!   never free an entry for being expired. A cache that never uses
//!   `put_with_ttl` needs nothing else.
//! * **Timed** — [`get_at`](LruCache::get_at),
//!   [`get_mut_at`](LruCache::get_mut_at), [`peek_at`](LruCache::peek_at),
//!   [`contains_at`](LruCache::contains_at),
//!   [`remove_at`](LruCache::remove_at),
//!   [`put_with_ttl`](LruCache::put_with_ttl),
//!   [`purge_expired`](LruCache::purge_expired): they take `now` and
//!   **never return an entry expired at `now`**. A keyed lookup that meets
//!   an expired entry frees it, counts it in
//!   [`expirations`](CacheMetrics::expirations) and answers as if the key
//!   were absent. That is why `peek_at` and `contains_at` take `&mut self`.
//!
//! If you store entries with a TTL, look them up with the timed methods
//! (and call `purge_expired(now)` before `iter`/`len` when expired entries
//! must not show). Expired entries still occupy slots until a timed method
//! frees them or they reach the least-recently-used end and are evicted;
//! eviction stays exact LRU and does not search for expired entries.
//!
//! # Examples
//!
//! ```
//! use fusebox::cache::{Displaced, LruCache};
//! use fusebox::{Duration, Instant};
//!
//! let mut cache: LruCache<&str, u32, 2> = LruCache::new();
//! cache.put("a", 1);
//! cache.put("b", 2);
//! cache.get(&"a"); // "a" is now the most recently used
//! assert_eq!(cache.put("c", 3), Some(Displaced::Evicted("b", 2)));
//! assert_eq!(cache.iter().collect::<Vec<_>>(), [(&"c", &3), (&"a", &1)]);
//!
//! let t0 = Instant::from_secs(10);
//! cache.put_with_ttl("token", 7, Duration::from_secs(60), t0);
//! assert_eq!(cache.get_at(&"token", t0 + Duration::from_secs(59)), Some(&7));
//! assert_eq!(cache.get_at(&"token", t0 + Duration::from_secs(60)), None); // expired, freed
//! assert_eq!(cache.metrics().expirations, 1);
//! ```

use core::fmt;

use super::CacheMetrics;
use crate::hash::FixedState;
use crate::Instant;

/// The largest capacity `N` an [`LruCache`] accepts: node indices are `u16`
/// and `u16::MAX` is reserved as the "no node" sentinel.
///
/// # Examples
///
/// ```
/// use fusebox::cache::lru::MAX_CAPACITY;
///
/// assert_eq!(MAX_CAPACITY, u16::MAX as usize);
/// ```
pub const MAX_CAPACITY: usize = NIL as usize;

/// An exact least-recently-used cache of at most `N` entries, with
/// optional per-entry expiry. See the [module docs](self) for the layout,
/// the size per entry and the two kinds of method (time-less and timed).
///
/// `N` must be in `1..=65_535` ([`MAX_CAPACITY`]); anything else fails to
/// build. `S` hashes the keys (default [`FixedState`], a fixed public
/// seed; see the [`hash`](crate::hash) module for keys chosen by others).
/// A large cache can be built in place on the heap with `new_boxed`
/// (feature `alloc`).
///
/// # Metrics
///
/// [`metrics`](Self::metrics) returns a [`CacheMetrics`]:
///
/// * `hits` / `misses`: [`get`](Self::get), [`get_mut`](Self::get_mut),
///   [`get_at`](Self::get_at) and [`get_mut_at`](Self::get_mut_at), one
///   each per call (an expired entry is a miss). `peek*`, `contains*` and
///   `remove*` are inspections and are not counted.
/// * `inserts`: every `put` and `put_with_ttl` (replacements included).
/// * `evictions`: entries removed to make room for a new key — by `put`,
///   expired or not (it does not know the time); by `put_with_ttl`, only
///   entries still live at `now`.
/// * `expirations`: expired entries freed by a timed method (a lookup, a
///   `put_with_ttl` that displaced one, [`purge_expired`](Self::purge_expired)).
///
/// The counters wrap at 2⁶⁴. [`clear`](Self::clear) keeps them;
/// [`reset_metrics`](Self::reset_metrics) zeroes them.
///
/// # Examples
///
/// ```
/// use fusebox::LruCache;
///
/// let mut cache: LruCache<u32, &str, 3> = LruCache::new();
/// for (k, v) in [(1, "one"), (2, "two"), (3, "three"), (4, "four")] {
///     cache.put(k, v); // the fourth put evicts key 1
/// }
/// assert_eq!(cache.len(), 3);
/// assert!(!cache.contains(&1));
/// assert_eq!(cache.get(&2), Some(&"two"));
/// let keys: Vec<u32> = cache.iter().map(|(k, _)| *k).collect();
/// assert_eq!(keys, [2, 4, 3]); // most recently used first
/// ```
#[derive(Clone)]
#[repr(C)]
pub struct LruCache<K, V, const N: usize, S = FixedState> {
    /// The recency order, the free nodes and the count.
    list: List<N>,
    /// Key to node.
    index: Index<N>,
    /// Node `i`'s entry; `Some` iff node `i` is on the recency list.
    entries: [Option<Entry<K, V>>; N],
    hasher: S,
    metrics: CacheMetrics,
}

#[derive(Clone)]
struct Entry<K, V> {
    key: K,
    value: V,
    /// Expired at `t` iff `t >= deadline`; `None`: never. Its tag doubles
    /// as the tag of `Option<Entry>` (a niche): occupancy costs no byte.
    deadline: Option<Instant>,
}

impl<K, V> Entry<K, V> {
    fn expired(&self, now: Instant) -> bool {
        matches!(self.deadline, Some(deadline) if now >= deadline)
    }
}

impl<K, V, const N: usize, S> LruCache<K, V, N, S> {
    /// The maximum number of entries, `N`.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::LruCache;
    ///
    /// assert_eq!(LruCache::<u8, u8, 16>::new().capacity(), 16);
    /// ```
    pub const fn capacity(&self) -> usize {
        N
    }

    /// The number of stored entries, including expired ones that no timed
    /// method has freed yet (see [`purge_expired`](Self::purge_expired)).
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::LruCache;
    ///
    /// let mut cache: LruCache<u8, u8, 4> = LruCache::new();
    /// cache.put(1, 1);
    /// cache.put(1, 2); // a replacement
    /// assert_eq!(cache.len(), 1);
    /// ```
    pub const fn len(&self) -> usize {
        self.list.len as usize
    }

    /// Whether the cache holds no entry (expired or not).
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::LruCache;
    ///
    /// let mut cache: LruCache<u8, u8, 4> = LruCache::new();
    /// assert!(cache.is_empty());
    /// cache.put(1, 1);
    /// assert!(!cache.is_empty());
    /// ```
    pub const fn is_empty(&self) -> bool {
        self.list.len == 0
    }

    /// The counters (see [Metrics](Self#metrics)).
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::LruCache;
    ///
    /// let mut cache: LruCache<u8, u8, 1> = LruCache::new();
    /// cache.put(1, 1);
    /// cache.put(2, 2);
    /// assert_eq!(cache.get(&1), None);
    /// let m = cache.metrics();
    /// assert_eq!((m.inserts, m.evictions, m.misses), (2, 1, 1));
    /// ```
    pub const fn metrics(&self) -> CacheMetrics {
        self.metrics
    }

    /// Zeroes the counters. Entries are kept.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::{cache::CacheMetrics, LruCache};
    ///
    /// let mut cache: LruCache<u8, u8, 1> = LruCache::new();
    /// cache.put(1, 1);
    /// cache.reset_metrics();
    /// assert_eq!(cache.metrics(), CacheMetrics::default());
    /// assert_eq!(cache.len(), 1);
    /// ```
    pub fn reset_metrics(&mut self) {
        self.metrics = CacheMetrics::default();
    }

    /// Drops every entry. O(`N`). The counters are kept (cleared entries
    /// count as neither evictions nor expirations).
    ///
    /// # Panics
    ///
    /// If a key's or value's `Drop` panics, `clear` unwinds with the cache
    /// already empty and usable; the entries it had not dropped yet are
    /// dropped when their nodes are reused by a `put` (a panic of such a
    /// `Drop` then comes out of that `put`, after it stored its entry), or
    /// with the cache.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::LruCache;
    ///
    /// let mut cache: LruCache<u8, u8, 2> = LruCache::new();
    /// cache.put(1, 1);
    /// cache.put(2, 2);
    /// cache.clear();
    /// assert!(cache.is_empty());
    /// assert_eq!(cache.get(&1), None);
    /// assert_eq!(cache.metrics().inserts, 2);
    /// ```
    pub fn clear(&mut self) {
        let used = usize::from(self.list.fresh);
        self.list = List::EMPTY;
        self.index = Index::EMPTY;
        for entry in self.entries.iter_mut().take(used) {
            *entry = None;
        }
    }

    /// The entries from most to least recently used (double-ended: `.rev()`
    /// goes from least to most recent). Time-less: expired entries that no
    /// timed method has freed are included. Does not promote.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::LruCache;
    ///
    /// let mut cache: LruCache<char, u8, 3> = LruCache::new();
    /// for (i, c) in ['a', 'b', 'c'].into_iter().enumerate() {
    ///     cache.put(c, i as u8);
    /// }
    /// let mru: String = cache.iter().map(|(k, _)| *k).collect();
    /// assert_eq!(mru, "cba");
    /// let lru: String = cache.iter().rev().map(|(k, _)| *k).collect();
    /// assert_eq!(lru, "abc");
    /// assert_eq!(cache.iter().len(), 3);
    /// ```
    pub fn iter(&self) -> Iter<'_, K, V> {
        Iter {
            links: &self.list.links,
            entries: &self.entries,
            front: self.list.head,
            back: self.list.tail,
            len: self.len(),
        }
    }

    fn count(counter: &mut u64) {
        *counter = counter.wrapping_add(1);
    }

    /// Takes the entry out of listed node `i` (in bucket `b`) and frees the
    /// node.
    fn take(&mut self, b: usize, i: Idx) -> Option<Entry<K, V>> {
        self.index.remove(b, i);
        self.list.release(i);
        self.entries[slot::<N>(i)].take()
    }
}

impl<K: fmt::Debug, V: fmt::Debug, const N: usize, S> fmt::Debug for LruCache<K, V, N, S> {
    /// The entries as a map, most recently used first.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<'a, K, V, const N: usize, S> IntoIterator for &'a LruCache<K, V, N, S> {
    type Item = (&'a K, &'a V);
    type IntoIter = Iter<'a, K, V>;

    fn into_iter(self) -> Iter<'a, K, V> {
        self.iter()
    }
}

mod access;
mod construct;
mod displaced;
mod expiry;
mod index;
mod iter;
mod list;

pub use displaced::Displaced;
pub use iter::Iter;

use index::Index;
use list::{slot, Idx, List, NIL};

// The documented size, checked by every build, the thumb targets included.
const _: () = assert!(core::mem::size_of::<LruCache<u32, u32, 32>>() == 1_160);
const _: () = assert!(core::mem::size_of::<Option<Entry<u32, u32>>>() == 24);

#[cfg(all(test, not(loom)))]
mod tests;
