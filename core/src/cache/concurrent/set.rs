//! One set of a [`ConcurrentCache`](super::ConcurrentCache): its ages word,
//! tag bytes, sequence words and slots, contiguous in memory, and the
//! branch-free (SWAR) arithmetic on the packed ages and tags.

use crate::sync::{AtomicBytes, AtomicU32, Ordering};

use super::seq::{Seq, OCCUPIED, WRITING};
use super::READ_RETRIES;

/// The set's writer lock: bit 31 of the ages word (the unused top bit of
/// way 7's age lane).
pub(super) const SET_LOCK: u32 = 1 << 31;
/// Bits of one way's age lane in the ages word.
const LANE_BITS: u32 = 4;
const LANE_MASK: u32 = 0xF;
/// The age bits of the ages word: the low three bits of each lane.
const AGES: u32 = 0x7777_7777;
/// The top bit of each lane (always 0 in the ages; the guard bit of the
/// SWAR comparisons).
const GUARDS: u32 = 0x8888_8888;
/// 1 in every lane.
const ONES: u32 = 0x1111_1111;

const BYTE_ONES: u64 = 0x0101_0101_0101_0101;
const BYTE_HIGHS: u64 = 0x8080_8080_8080_8080;

/// One way's key and value, copied through atomic views.
pub(super) struct Slot<K, V> {
    key: AtomicBytes<K>,
    value: AtomicBytes<V>,
}

/// One set, laid out so that a hit touches the set's header (ages, tags,
/// sequences: 12 + 8 × `WAYS` bytes, and 4 bytes of padding before 64-bit
/// sequence words) and the hit way's slot.
#[repr(C)]
pub(super) struct Set<K, V, const WAYS: usize> {
    /// Writer lock and LRU ages, one 4-bit lane per way:
    ///
    /// ```text
    ///  31  30  28 27     ...      7   6   4 3   2   0
    /// +---+------+---- ... ----+---+------+---+------+
    /// | L | age7 |             | 0 | age1 | 0 | age0 |
    /// +---+------+---- ... ----+---+------+---+------+
    /// ```
    ///
    /// `L` is the writer lock; the ages of ways `0..WAYS` are a permutation
    /// of `0..WAYS` (0 = most recently used); lanes of absent ways are 0.
    word: AtomicU32,
    /// The 8-bit tag of way `w` in byte `w % 4` of `tags[w / 4]`
    /// (little-end first); 0 for an empty way (tags are never 0). Written
    /// only under the set lock; a hint for readers, who confirm a match
    /// under the slot's sequence lock and by comparing the key.
    tags: [AtomicU32; 2],
    /// Per slot: `[version: 62][occupied: 1][writing: 1]`, one 64-bit
    /// word or two 32-bit words (see [`Seq`]).
    seqs: [Seq; WAYS],
    slots: [Slot<K, V>; WAYS],
}

impl<K, V, const WAYS: usize> Set<K, V, WAYS>
where
    K: Copy + Eq + bytemuck::NoUninit,
    V: Copy + bytemuck::NoUninit,
{
    /// Candidate bytes of ways that exist (bit 7 of byte `w`).
    const WAY_BYTES: u64 = if WAYS >= 8 {
        BYTE_HIGHS
    } else {
        BYTE_HIGHS & ((1 << (8 * WAYS)) - 1)
    };

    pub(super) fn new() -> Self {
        Self {
            word: AtomicU32::new(initial_ages(WAYS)),
            tags: core::array::from_fn(|_| AtomicU32::new(0)),
            seqs: core::array::from_fn(|_| Seq::new()),
            slots: core::array::from_fn(|_| Slot {
                key: AtomicBytes::zeroed(),
                value: AtomicBytes::zeroed(),
            }),
        }
    }

    /// The tag bytes of all ways, way `w` in byte `w`.
    #[inline]
    fn tags(&self) -> u64 {
        let lo = u64::from(self.tags[0].load(Ordering::Relaxed));
        if WAYS > 4 {
            lo | u64::from(self.tags[1].load(Ordering::Relaxed)) << 32
        } else {
            lo
        }
    }

    /// The way holding `key` (whose tag is `tag`) and its value, both read
    /// in one validated section; `None` if absent or if writers kept the
    /// way busy for [`READ_RETRIES`] attempts.
    #[inline]
    pub(super) fn get(&self, key: &K, tag: u32) -> Option<(usize, V)> {
        let mut candidates = matching(self.tags(), tag) & Self::WAY_BYTES;
        while candidates != 0 {
            let way = (candidates.trailing_zeros() / 8) as usize;
            candidates &= candidates - 1;
            if let Some((k, v)) = self.read(way) {
                if k == *key {
                    return Some((way, v));
                }
            }
        }
        None
    }

    /// A validated copy of the way's key and value if it is occupied;
    /// `None` if not, or if writers kept interfering.
    #[inline]
    fn read(&self, way: usize) -> Option<(K, V)> {
        let (seq, slot) = (&self.seqs[way], &self.slots[way]);
        for _ in 0..READ_RETRIES {
            let before = seq.begin();
            if before & (WRITING | OCCUPIED) != OCCUPIED {
                if before & WRITING != 0 {
                    continue;
                }
                return None;
            }
            let key = slot.key.load();
            let value = slot.value.load();
            if seq.unchanged(before) {
                // SAFETY: the 64-bit sequence was even and unchanged around
                // the copies (a stale stamp could match only after 2⁶² − 2³⁰
                // or more writes during this read, see `Seq`), so no write
                // overlapped them: the bytes are exactly those of one `write`
                // of a valid `(K, V)`.
                return Some(unsafe { (key.assume_init(), value.assume_init()) });
            }
        }
        None
    }

    /// Moves `way` to the front of the LRU order: nothing to write if it
    /// already is the most recent, else one CAS (retried only when another
    /// update of the word won).
    #[inline]
    pub(super) fn promote(&self, way: usize) {
        let mut current = self.word.load(Ordering::Relaxed);
        while age(current, way) != 0 {
            match self.word.compare_exchange_weak(
                current,
                promoted(current, way, WAYS),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(actual) => current = actual,
            }
        }
    }

    /// Takes the writer lock; `None` if another writer holds it. Returns
    /// the guard that releases it (also when unwinding) and the ages word
    /// as it was when taken.
    pub(super) fn lock(&self) -> Option<(Locked<'_, K, V, WAYS>, u32)> {
        let ages = self.word.fetch_or(SET_LOCK, Ordering::Acquire);
        // Not `then_some`: a guard built eagerly would unlock on drop
        // the lock another writer holds.
        if ages & SET_LOCK == 0 {
            Some((Locked(self), ages))
        } else {
            None
        }
    }

    /// Releases the writer lock, keeping the ages readers may have moved.
    fn unlock(&self) {
        self.word.fetch_and(!SET_LOCK, Ordering::Release);
    }

    /// With the lock held: the way holding `key`.
    pub(super) fn find_locked(&self, key: &K, tag: u32) -> Option<usize> {
        let tags = self.tags();
        let mut candidates = matching(tags, tag) & Self::WAY_BYTES;
        while candidates != 0 {
            let way = (candidates.trailing_zeros() / 8) as usize;
            candidates &= candidates - 1;
            // `matching` may flag a byte that differs (even an empty way's).
            if tag_of(tags, way) != tag {
                continue;
            }
            // SAFETY: the set's writer lock is held, so nobody writes the
            // slot; a way with a non-zero tag holds one valid written key.
            if unsafe { self.slots[way].key.load().assume_init() } == *key {
                return Some(way);
            }
        }
        None
    }

    /// With the lock held: an empty way, else the least recently used one;
    /// and whether it held an entry.
    pub(super) fn victim(&self, ages: u32) -> (usize, bool) {
        let tags = self.tags();
        if let Some(way) = (0..WAYS).find(|&way| tag_of(tags, way) == 0) {
            return (way, false);
        }
        let oldest = (0..WAYS)
            .find(|&way| age(ages, way) == WAYS as u32 - 1)
            .unwrap_or(0);
        (oldest, true)
    }

    /// With the lock held: the value in an occupied `way`.
    pub(super) fn value_locked(&self, way: usize) -> V {
        // SAFETY: we hold the set's writer lock, so nobody writes this slot:
        // its bytes are exactly the last (valid) value written.
        unsafe { self.slots[way].value.load().assume_init() }
    }

    /// With the lock held, writes `way`: odd sequence, bytes, then the new
    /// even sequence with the next version, then the way's tag. `None`
    /// empties it.
    pub(super) fn write(&self, way: usize, tag: u32, entry: Option<(&K, &V)>) {
        let (seq, slot) = (&self.seqs[way], &self.slots[way]);
        let old = seq.start_write();
        if let Some((key, value)) = entry {
            slot.key.store(key);
            slot.value.store(value);
        }
        seq.publish(old, entry.is_some());
        // Only writers (holding the lock) store tags, so this plain
        // load-and-store loses nothing and keeps the other ways' bytes.
        let word = &self.tags[way / 4];
        let shift = 8 * (way % 4) as u32;
        let tags = word.load(Ordering::Relaxed) & !(0xFF << shift);
        let tag = if entry.is_some() { tag } else { 0 };
        word.store(tags | tag << shift, Ordering::Relaxed);
    }

    /// Loom models only: see `ConcurrentCache::loom_set_slot_versions`.
    #[cfg(loom)]
    pub(super) fn set_versions(&self, version: u64) {
        for seq in &self.seqs {
            seq.store(version << 2 | seq.load() & (OCCUPIED | WRITING));
        }
    }

    #[cfg(test)]
    pub(super) fn ages_word(&self) -> u32 {
        self.word.load(Ordering::Relaxed)
    }

    #[cfg(test)]
    pub(super) fn seq_words(&self) -> [u64; WAYS] {
        core::array::from_fn(|w| self.seqs[w].load())
    }

    #[cfg(test)]
    pub(super) fn seq(&self, way: usize) -> &Seq {
        &self.seqs[way]
    }

    #[cfg(test)]
    pub(super) fn occupied(&self) -> usize {
        let tags = self.tags();
        (0..WAYS).filter(|&w| tag_of(tags, w) != 0).count()
    }
}

/// A set's writer lock, held; released on drop (a panicking `K::eq` under
/// the lock included).
pub(super) struct Locked<'s, K, V, const WAYS: usize>(&'s Set<K, V, WAYS>)
where
    K: Copy + Eq + bytemuck::NoUninit,
    V: Copy + bytemuck::NoUninit;

impl<K, V, const WAYS: usize> Locked<'_, K, V, WAYS>
where
    K: Copy + Eq + bytemuck::NoUninit,
    V: Copy + bytemuck::NoUninit,
{
    /// Makes `way` the least recent and releases the writer lock, in one
    /// CAS loop (readers may be promoting ways meanwhile).
    pub(super) fn demote_and_unlock(self, way: usize) {
        let set = core::mem::ManuallyDrop::new(self).0;
        let mut current = set.word.load(Ordering::Relaxed);
        loop {
            let new = demoted(current, way, WAYS) & !SET_LOCK;
            match set
                .word
                .compare_exchange_weak(current, new, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(actual) => current = actual,
            }
        }
    }
}

impl<K, V, const WAYS: usize> Drop for Locked<'_, K, V, WAYS>
where
    K: Copy + Eq + bytemuck::NoUninit,
    V: Copy + bytemuck::NoUninit,
{
    fn drop(&mut self) {
        self.0.unlock();
    }
}

/// Bit 7 of byte `w` set where byte `w` of `tags` equals `tag` (and,
/// rarely, directly above such a byte: callers confirm by key).
#[inline]
fn matching(tags: u64, tag: u32) -> u64 {
    let x = tags ^ u64::from(tag).wrapping_mul(BYTE_ONES);
    x.wrapping_sub(BYTE_ONES) & !x & BYTE_HIGHS
}

fn tag_of(tags: u64, way: usize) -> u32 {
    (tags >> (8 * way)) as u32 & 0xFF
}

/// Ages 0, 1, …, ways-1 for ways 0, 1, …: a permutation.
pub(super) const fn initial_ages(ways: usize) -> u32 {
    let mut word = 0;
    let mut way = 0;
    while way < ways {
        word |= (way as u32) << (way as u32 * LANE_BITS);
        way += 1;
    }
    word
}

/// 1 in the lane of every way below `ways`.
const fn lanes(ways: usize) -> u32 {
    (ONES as u64 & ((1u64 << (ways as u32 * LANE_BITS)) - 1)) as u32
}

#[inline]
pub(super) const fn age(word: u32, way: usize) -> u32 {
    (word >> (way as u32 * LANE_BITS)) & LANE_MASK & AGES
}

/// `way` becomes the most recent; ways that were more recent age by one
/// (SWAR: `(age | 8) - a` keeps bit 3 iff `age >= a`, no lane borrows). A
/// permutation of `0..ways` stays one; the lock bit is kept.
#[inline]
pub(super) fn promoted(word: u32, way: usize, ways: usize) -> u32 {
    let shift = way as u32 * LANE_BITS;
    let ages = word & AGES;
    let a = (ages >> shift) & LANE_MASK;
    let younger = !((ages | GUARDS) - a * ONES) & GUARDS;
    let bumped = ages + ((younger >> 3) & lanes(ways));
    (bumped & !(LANE_MASK << shift)) | (word & SET_LOCK)
}

/// `way` becomes the least recent; ways that were less recent get younger
/// by one. A permutation of `0..ways` stays one; the lock bit is kept.
pub(super) fn demoted(word: u32, way: usize, ways: usize) -> u32 {
    let shift = way as u32 * LANE_BITS;
    let ages = word & AGES;
    let a = (ages >> shift) & LANE_MASK;
    let older = ((ages | GUARDS) - (a + 1) * ONES) & GUARDS;
    let lowered = ages - ((older >> 3) & lanes(ways));
    (lowered & !(LANE_MASK << shift)) | (ways as u32 - 1) << shift | (word & SET_LOCK)
}
