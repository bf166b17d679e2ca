//! [`ConcurrentCache`]: a lock-free, set-associative cache with exact LRU
//! order inside each set.
//!
//! # Layout
//!
//! A key hashes to one of `SETS` sets of `WAYS` slots. Each set has one
//! 32-bit word:
//!
//! ```text
//!  31        24 23                                      0
//! +-----------+-----------------------------------------+
//! | W | 0...  | age of way 7 (3) | ... | age of way 0 (3) |
//! +-----------+-----------------------------------------+
//! ```
//!
//! `W` is the set's writer lock; the ages are a permutation of
//! `0..WAYS` (0 = most recently used), so the LRU order is exact and
//! changes by one compare-and-swap. Each slot has a sequence word,
//!
//! ```text
//! [version: 22][tag: 8][occupied: 1][writing: 1]
//! ```
//!
//! and the key and value, stored through atomic views
//! ([`AtomicBytes`](crate::sync)) so that a reader racing a writer copies
//! bytes without a data race. `tag` is 8 bits of the key's hash: readers
//! skip non-matching ways without touching their bytes.
//!
//! # Progress: nobody waits for a writer
//!
//! * `get` is a *sequence-lock read*: it copies key and value, then checks
//!   that the slot's sequence word did not change and was not odd. On a
//!   conflict it retries at most [`READ_RETRIES`] times and then treats that
//!   way as a miss. A hit on a way that is already the most recent writes
//!   nothing; otherwise one CAS moves it to the front.
//! * `insert` and `remove` take the set's writer lock with one CAS; if
//!   another writer holds it they give up at once and return
//!   [`Contended`] (counted in [`CacheMetrics::contended`]). So an interrupt
//!   handler that preempts a writer on the same core never spins.
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
//! (The 22-bit version could in theory be fooled by a reader stalled across
//! exactly 2²² writes of the same slot; the stall would have to last that
//! many complete inserts.)

use core::fmt;
use core::hash::{BuildHasher, Hash};

use foldhash::fast::FixedState;

use super::CacheMetrics;
use crate::sync::{fence, AtomicBytes, AtomicU32, Counter, Ordering};

/// Validated-read attempts per way before a `get` treats it as a miss.
pub const READ_RETRIES: u32 = 4;

const SET_LOCK: u32 = 1 << 31;
const AGE_BITS: u32 = 3;
const AGE_MASK: u32 = 0b111;

const WRITING: u32 = 1;
const OCCUPIED: u32 = 2;
const TAG_SHIFT: u32 = 2;
const TAG_MASK: u32 = 0xFF << TAG_SHIFT;
const VERSION_SHIFT: u32 = 10;

/// An insert or remove found another writer in the key's set and gave up
/// rather than wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Contended;

impl fmt::Display for Contended {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("another writer holds this cache set; not written")
    }
}
impl core::error::Error for Contended {}

struct Slot<K, V> {
    seq: AtomicU32,
    key: AtomicBytes<K>,
    value: AtomicBytes<V>,
}

/// A lock-free, fixed-size, set-associative LRU cache; see the module docs.
///
/// `K: Copy + Eq + Hash` and `V: Copy`, both without padding bytes
/// ([`bytemuck::NoUninit`], derivable), because they are copied through
/// atomic words. `1 <= WAYS <= 8` and `SETS >= 1` are checked at compile
/// time.
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
pub struct ConcurrentCache<K, V, const SETS: usize, const WAYS: usize> {
    sets: [AtomicU32; SETS],
    slots: [[Slot<K, V>; WAYS]; SETS],
    hasher: FixedState,
    count_lookups: bool,
    hits: Counter,
    misses: Counter,
    inserts: Counter,
    evictions: Counter,
    contended: Counter,
}

impl<K, V, const SETS: usize, const WAYS: usize> ConcurrentCache<K, V, SETS, WAYS>
where
    K: Copy + Eq + Hash + bytemuck::NoUninit,
    V: Copy + bytemuck::NoUninit,
{
    const CHECKS: () = {
        assert!(SETS > 0, "a ConcurrentCache needs at least one set");
        assert!(
            WAYS > 0 && WAYS <= 8,
            "a ConcurrentCache has 1 to 8 ways per set"
        );
    };

    /// An empty cache. Lookups are counted in the metrics; see
    /// [`without_lookup_counters`](Self::without_lookup_counters).
    pub fn new() -> Self {
        let () = Self::CHECKS;
        Self {
            sets: core::array::from_fn(|_| AtomicU32::new(initial_ages(WAYS))),
            slots: core::array::from_fn(|_| {
                core::array::from_fn(|_| Slot {
                    seq: AtomicU32::new(0),
                    key: AtomicBytes::zeroed(),
                    value: AtomicBytes::zeroed(),
                })
            }),
            hasher: FixedState::with_seed(0x1319_8a2e_0370_7344),
            count_lookups: true,
            hits: Counter::new(),
            misses: Counter::new(),
            inserts: Counter::new(),
            evictions: Counter::new(),
            contended: Counter::new(),
        }
    }

    /// Stops counting hits and misses: a hit on a set's most recent way
    /// then writes nothing at all (the counters are one shared
    /// read-modify-write per lookup).
    #[must_use]
    pub fn without_lookup_counters(mut self) -> Self {
        self.count_lookups = false;
        self
    }

    /// Uses `seed` for the key hash (pick a secret one for untrusted keys).
    #[must_use]
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.hasher = FixedState::with_seed(seed);
        self
    }

    /// Entries the cache can hold.
    pub const fn capacity(&self) -> usize {
        SETS * WAYS
    }

    /// The value for `key`, marking it most recently used in its set.
    pub fn get(&self, key: &K) -> Option<V> {
        let (set, tag) = self.locate(key);
        for way in 0..WAYS {
            let Some((k, v)) = self.read(set, way, tag) else {
                continue;
            };
            if k == *key {
                promote(&self.sets[set], way, WAYS);
                if self.count_lookups {
                    self.hits.incr();
                }
                return Some(v);
            }
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
    pub fn insert(&self, key: K, value: V) -> Result<(), Contended> {
        let (set, tag) = self.locate(&key);
        let guard = self.lock(set)?;
        let way = self.find_locked(set, tag, &key).unwrap_or_else(|| {
            let (way, occupied) = self.victim(set, guard.ages);
            if occupied {
                self.evictions.incr();
            }
            way
        });
        // Most recent *before* the value becomes visible: a reader that sees
        // it and then hits another way makes that way the more recent one.
        promote(&self.sets[set], way, WAYS);
        write(&self.slots[set][way], tag, Some((&key, &value)));
        self.inserts.incr();
        guard.unlock(|ages| ages);
        Ok(())
    }

    /// Removes `key`, returning its value.
    ///
    /// # Errors
    ///
    /// [`Contended`] if another insert or remove holds the set: nothing was
    /// removed.
    pub fn remove(&self, key: &K) -> Result<Option<V>, Contended> {
        let (set, tag) = self.locate(key);
        let guard = self.lock(set)?;
        let Some(way) = self.find_locked(set, tag, key) else {
            guard.unlock(|ages| ages);
            return Ok(None);
        };
        let slot = &self.slots[set][way];
        // SAFETY: we hold the set's writer lock, so nobody writes this slot:
        // its bytes are exactly the last (valid) value written.
        let value = unsafe { slot.value.load().assume_init() };
        write(slot, 0, None);
        guard.unlock(|ages| demoted(ages, way, WAYS));
        Ok(Some(value))
    }

    /// The counters.
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

    fn locate(&self, key: &K) -> (usize, u32) {
        let hash = self.hasher.hash_one(key);
        ((hash % SETS as u64) as usize, (hash >> 56) as u32)
    }

    /// A validated copy of the slot's key and value if it is occupied with
    /// `tag`; `None` if not, or if writers kept interfering.
    fn read(&self, set: usize, way: usize, tag: u32) -> Option<(K, V)> {
        let slot = &self.slots[set][way];
        for _ in 0..READ_RETRIES {
            let before = slot.seq.load(Ordering::Acquire);
            if before & WRITING != 0 {
                continue;
            }
            if before & OCCUPIED == 0 || (before & TAG_MASK) >> TAG_SHIFT != tag {
                return None;
            }
            let key = slot.key.load();
            let value = slot.value.load();
            // Orders the byte loads before the re-check (seqlock read side).
            fence(Ordering::Acquire);
            if slot.seq.load(Ordering::Relaxed) == before {
                // SAFETY: the sequence word was even and unchanged around the
                // copies, so no write overlapped them: the bytes are exactly
                // those of one `write` of a valid `(K, V)`.
                return Some(unsafe { (key.assume_init(), value.assume_init()) });
            }
        }
        None
    }

    /// With the set locked: the way holding `key`.
    fn find_locked(&self, set: usize, tag: u32, key: &K) -> Option<usize> {
        (0..WAYS).find(|&way| {
            let slot = &self.slots[set][way];
            let seq = slot.seq.load(Ordering::Acquire);
            // SAFETY: the set's writer lock is held, so nobody writes the
            // slot; an occupied slot's bytes are one valid written key.
            seq & OCCUPIED != 0
                && (seq & TAG_MASK) >> TAG_SHIFT == tag
                && unsafe { slot.key.load().assume_init() } == *key
        })
    }

    /// With the set locked: an empty way, else the least recently used one;
    /// and whether it held an entry.
    fn victim(&self, set: usize, ages: u32) -> (usize, bool) {
        let empty =
            (0..WAYS).find(|&way| self.slots[set][way].seq.load(Ordering::Relaxed) & OCCUPIED == 0);
        if let Some(way) = empty {
            return (way, false);
        }
        let oldest = (0..WAYS)
            .find(|&way| age(ages, way) == WAYS as u32 - 1)
            .unwrap_or(0);
        (oldest, true)
    }

    fn lock(&self, set: usize) -> Result<SetGuard<'_>, Contended> {
        let word = &self.sets[set];
        let ages = word.fetch_or(SET_LOCK, Ordering::Acquire);
        if ages & SET_LOCK != 0 {
            self.contended.incr();
            return Err(Contended);
        }
        Ok(SetGuard { word, ages })
    }
}

impl<K, V, const SETS: usize, const WAYS: usize> Default for ConcurrentCache<K, V, SETS, WAYS>
where
    K: Copy + Eq + Hash + bytemuck::NoUninit,
    V: Copy + bytemuck::NoUninit,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V, const SETS: usize, const WAYS: usize> fmt::Debug for ConcurrentCache<K, V, SETS, WAYS> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConcurrentCache")
            .field("sets", &SETS)
            .field("ways", &WAYS)
            .finish_non_exhaustive()
    }
}

/// The set's writer lock, held from `lock` to `unlock`.
struct SetGuard<'a> {
    word: &'a AtomicU32,
    /// The ages when the lock was taken (readers may move them since).
    ages: u32,
}

impl SetGuard<'_> {
    /// Applies `update` to the current ages and releases the lock, in one
    /// CAS loop (readers may be promoting ways meanwhile).
    fn unlock(self, update: impl Fn(u32) -> u32) {
        let mut current = self.word.load(Ordering::Relaxed);
        loop {
            let new = update(current & !SET_LOCK) & !SET_LOCK;
            match self.word.compare_exchange_weak(
                current,
                new,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(actual) => current = actual,
            }
        }
    }
}

/// Writes a slot (set lock held): odd sequence, bytes, then the new even
/// sequence with the next version. `None` empties it.
fn write<K: bytemuck::NoUninit + Copy, V: bytemuck::NoUninit + Copy>(
    slot: &Slot<K, V>,
    tag: u32,
    entry: Option<(&K, &V)>,
) {
    let seq = slot.seq.load(Ordering::Relaxed);
    slot.seq.store(seq | WRITING, Ordering::Relaxed);
    // Orders the odd sequence before the byte stores (seqlock write side).
    fence(Ordering::Release);
    let next_version = (seq >> VERSION_SHIFT).wrapping_add(1) << VERSION_SHIFT;
    let published = match entry {
        Some((key, value)) => {
            slot.key.store(key);
            slot.value.store(value);
            next_version | tag << TAG_SHIFT | OCCUPIED
        }
        None => next_version,
    };
    slot.seq.store(published, Ordering::Release);
}

/// Ages 0, 1, …, ways-1 for ways 0, 1, …: a permutation.
const fn initial_ages(ways: usize) -> u32 {
    let mut word = 0;
    let mut way = 0;
    while way < ways {
        word |= (way as u32) << (way as u32 * AGE_BITS);
        way += 1;
    }
    word
}

const fn age(ages: u32, way: usize) -> u32 {
    (ages >> (way as u32 * AGE_BITS)) & AGE_MASK
}

/// `way` becomes the most recent; ways that were more recent age by one.
/// A permutation of `0..ways` stays one.
fn promoted(ages: u32, way: usize, ways: usize) -> u32 {
    let old = age(ages, way);
    let mut out = ages & SET_LOCK;
    for w in 0..ways {
        let a = age(ages, w);
        let a = if w == way {
            0
        } else if a < old {
            a + 1
        } else {
            a
        };
        out |= a << (w as u32 * AGE_BITS);
    }
    out
}

/// `way` becomes the least recent; ways that were less recent get younger.
/// A permutation of `0..ways` stays one.
fn demoted(ages: u32, way: usize, ways: usize) -> u32 {
    let old = age(ages, way);
    let oldest = ways as u32 - 1;
    let mut out = ages & SET_LOCK;
    for w in 0..ways {
        let a = age(ages, w);
        let a = if w == way {
            oldest
        } else if a > old {
            a - 1
        } else {
            a
        };
        out |= a << (w as u32 * AGE_BITS);
    }
    out
}

/// Moves `way` to the front with one CAS, or writes nothing if it already
/// is the most recent.
#[inline]
fn promote(word: &AtomicU32, way: usize, ways: usize) {
    let mut current = word.load(Ordering::Relaxed);
    while age(current, way) != 0 {
        match word.compare_exchange_weak(
            current,
            promoted(current, way, ways),
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            Ok(_) => return,
            Err(actual) => current = actual,
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
