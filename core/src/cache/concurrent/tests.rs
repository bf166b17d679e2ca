//! Unit tests of the concurrent cache.

use super::seq::{OCCUPIED, WRITING};
use super::set::{age, demoted, initial_ages, promoted, Set, SET_LOCK};
use super::*;

type One<const W: usize> = ConcurrentCache<u32, u64, 1, W>;

fn ages_of<const W: usize>(cache: &One<W>) -> [u32; W] {
    let word = cache.sets[0].ages_word();
    core::array::from_fn(|w| age(word, w))
}

fn is_permutation(ages: &[u32]) -> bool {
    let mut seen = [false; 8];
    ages.iter().all(|&a| {
        let fresh = (a as usize) < ages.len() && !seen[a as usize];
        if fresh {
            seen[a as usize] = true;
        }
        fresh
    })
}

#[test]
fn insert_get_replace_remove() {
    let cache: ConcurrentCache<u32, u64, 16, 4> = ConcurrentCache::new().with_lookup_counters();
    assert!(cache.counts_lookups());
    assert_eq!(cache.get(&1), None);
    cache.insert(1, 10).unwrap();
    cache.insert(2, 20).unwrap();
    assert_eq!((cache.get(&1), cache.get(&2)), (Some(10), Some(20)));
    cache.insert(1, 11).unwrap();
    assert_eq!(cache.get(&1), Some(11), "replaced in place");
    assert_eq!(cache.remove(&1), Ok(Some(11)));
    assert_eq!(cache.remove(&1), Ok(None));
    assert_eq!(cache.get(&1), None);
    let m = cache.metrics();
    assert_eq!((m.hits, m.misses, m.inserts, m.evictions), (3, 2, 3, 0));
    assert_eq!(cache.capacity(), 64);
}

#[test]
fn replacing_a_key_never_duplicates_it() {
    let cache: One<4> = ConcurrentCache::new();
    for v in 0..10 {
        cache.insert(7, v).unwrap();
    }
    assert_eq!(cache.sets[0].occupied(), 1);
    assert_eq!(cache.get(&7), Some(9));
    assert_eq!(cache.metrics().evictions, 0);
}

#[test]
fn evicts_the_least_recently_used_way() {
    let cache: One<4> = ConcurrentCache::new();
    for k in 0..4 {
        cache.insert(k, u64::from(k)).unwrap();
    }
    cache.get(&0); // 0 becomes most recent; 1 is now the oldest
    cache.insert(4, 4).unwrap();
    assert_eq!(cache.get(&1), None, "LRU evicted");
    for k in [0, 2, 3, 4] {
        assert_eq!(cache.get(&k), Some(u64::from(k)));
    }
    assert_eq!(cache.metrics().evictions, 1);
    assert!(is_permutation(&ages_of(&cache)));
}

#[test]
fn a_removed_way_is_reused_first() {
    let cache: One<3> = ConcurrentCache::new();
    for k in 0..3 {
        cache.insert(k, 0).unwrap();
    }
    cache.remove(&1).unwrap();
    cache.insert(9, 9).unwrap();
    for k in [0, 2, 9] {
        assert!(cache.get(&k).is_some(), "{k}");
    }
    assert_eq!(cache.metrics().evictions, 0);
}

#[test]
fn a_hit_on_the_most_recent_way_writes_nothing() {
    let cache: One<4> = ConcurrentCache::new();
    assert!(!cache.counts_lookups(), "off by default");
    cache.insert(5, 50).unwrap();
    let before = cache.sets[0].ages_word();
    let seqs = cache.sets[0].seq_words();
    for _ in 0..3 {
        assert_eq!(cache.get(&5), Some(50));
    }
    assert_eq!(cache.get(&6), None);
    assert_eq!(cache.sets[0].ages_word(), before);
    assert_eq!(seqs, cache.sets[0].seq_words());
    let m = cache.metrics();
    assert_eq!((m.hits, m.misses), (0, 0), "lookups not counted");
}

#[test]
fn writers_give_up_on_a_locked_set_and_readers_still_read() {
    let cache: One<2> = ConcurrentCache::new();
    cache.insert(1, 100).unwrap();
    let held = cache.sets[0].lock().expect("free");
    assert_eq!(cache.insert(2, 200), Err(Contended));
    assert_eq!(cache.remove(&1), Err(Contended));
    assert_eq!(cache.get(&1), Some(100), "readers never wait");
    assert_ne!(
        cache.sets[0].ages_word() & SET_LOCK,
        0,
        "a hit keeps the lock"
    );
    drop(held.0);
    cache.insert(2, 200).unwrap();
    assert_eq!(cache.metrics().contended, 2);
}

#[test]
fn counters_wrap_at_their_word_width() {
    // 2^64 on 64-bit atomics, 2^32 on Cortex-M (`metrics` docs).
    let top = if cfg!(fusebox_wide_words) {
        u64::MAX
    } else {
        u64::from(u32::MAX)
    };
    let cache: One<1> = ConcurrentCache::new().with_lookup_counters();
    for counter in [
        &cache.hits,
        &cache.misses,
        &cache.inserts,
        &cache.evictions,
        &cache.contended,
    ] {
        counter.set(top);
    }
    assert_eq!(cache.metrics().inserts, top);
    cache.insert(1, 10).unwrap(); // inserts wraps
    cache.insert(2, 20).unwrap(); // evicts 1: evictions wraps
    assert_eq!(cache.get(&2), Some(20)); // hits wraps
    assert_eq!(cache.get(&1), None); // misses wraps
    let held = cache.sets[0].lock().expect("free");
    assert_eq!(cache.insert(3, 30), Err(Contended)); // contended wraps
    drop(held.0);
    let m = cache.metrics();
    assert_eq!(
        (m.hits, m.misses, m.inserts, m.evictions, m.contended),
        (0, 0, 1, 0, 0)
    );
}

/// One version step in a sequence (`[version: 62][occupied][writing]`).
const VERSION: u64 = 4;

#[test]
fn slot_versions_run_past_the_old_30_bit_range() {
    // Versions used to wrap at 2^30 (one 32-bit word); they now carry on,
    // into the high word where the sequence is two 32-bit words.
    let cache: One<2> = ConcurrentCache::new();
    cache.insert(1, 10).unwrap(); // the first empty way: way 0
    let seq = cache.sets[0].seq(0);
    seq.store((((1 << 30) - 1) * VERSION) | OCCUPIED);
    assert_eq!(cache.get(&1), Some(10));
    cache.insert(1, 11).unwrap();
    assert_eq!(
        seq.load(),
        ((1 << 30) * VERSION) | OCCUPIED,
        "no wrap at 2^30"
    );
    assert_eq!(cache.get(&1), Some(11));
    assert_eq!(cache.remove(&1), Ok(Some(11)));
    assert_eq!(seq.load(), ((1 << 30) + 1) * VERSION, "empty, one more");
    assert_eq!(cache.get(&1), None);
    // The high word's second carry (version 2^31 - 1 to 2^31) and, last,
    // the real wrap at 2^62 versions.
    for (start, after) in [
        (((1 << 31) - 1) * VERSION, (1 << 31) * VERSION),
        (((1 << 62) - 1) * VERSION, 0),
    ] {
        seq.store(start | OCCUPIED);
        cache.insert(1, 12).unwrap(); // way 0 is empty: reused
        assert_eq!(seq.load(), after | OCCUPIED);
        assert_eq!(cache.get(&1), Some(12));
        assert_eq!(cache.remove(&1), Ok(Some(12)));
    }
    cache.insert(2, 20).unwrap();
    cache.insert(3, 30).unwrap();
    assert_eq!((cache.get(&2), cache.get(&3)), (Some(20), Some(30)));
    assert_eq!(cache.sets[0].occupied(), 2);
}

/// A reader that took its stamp, then stalled while the slot was written
/// exactly 2^30 times (the old 30-bit version's period), must not validate
/// its copy: it may hold bytes of any of those writes, a torn mix, which
/// for a `bool`, `char` or enum is not a valid value at all.
#[test]
fn a_reader_stalled_across_2_pow_30_writes_is_refused() {
    let cache: One<1> = ConcurrentCache::new();
    cache.insert(1, 10).unwrap();
    let seq = cache.sets[0].seq(0);
    // Any number of periods short of the high word's own wrap (2^32).
    for periods in [1, 2, 3, 1 << 31, (1 << 32) - 1] {
        let stamp = seq.begin(); // the reader, before its copy
                                 // The writers: one real write, then as many as make `periods` × 2^30.
        cache.insert(1, 11).unwrap();
        seq.store(seq.load().wrapping_add(((1 << 30) * periods - 1) * VERSION));
        assert!(!seq.unchanged(stamp), "{periods} × 2^30 writes");
    }
    assert_eq!(cache.get(&1), Some(11), "the slot still reads");
}

#[test]
fn a_reader_gives_up_on_a_slot_being_written() {
    let cache: One<1> = ConcurrentCache::new();
    cache.insert(1, 100).unwrap();
    let seq = cache.sets[0].seq(0);
    let before = seq.load();
    seq.store(before | WRITING); // a writer "preempted"
    assert_eq!(cache.get(&1), None, "bounded retries, then a miss");
    seq.store(before);
    assert_eq!(cache.get(&1), Some(100));
}

#[test]
fn ages_stay_a_permutation_under_every_promote_and_demote() {
    for ways in 1..=8 {
        let start = initial_ages(ways);
        // Walk a few thousand pseudo-random operations.
        let mut ages = start;
        let mut x = 0x9e37_79b9u32;
        for _ in 0..if cfg!(miri) { 40 } else { 2_000 } {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let way = (x as usize) % ways;
            ages = if x & 0x100 == 0 {
                promoted(ages, way, ways)
            } else {
                demoted(ages, way, ways)
            };
            let v: [u32; 8] = core::array::from_fn(|w| age(ages, w));
            assert!(is_permutation(&v[..ways]), "{ways} ways: {v:?}");
            if ways < 8 {
                assert_eq!(ages >> (ways as u32 * 4), 0, "no bits beyond the ways");
            }
            // The lock bit is carried through, never invented.
            assert_eq!(promoted(ages | SET_LOCK, way, ways) & SET_LOCK, SET_LOCK);
            assert_eq!(promoted(ages, way, ways) & SET_LOCK, 0);
            assert_eq!(
                demoted(ages | SET_LOCK, way, ways),
                demoted(ages, way, ways) | SET_LOCK
            );
        }
        assert_eq!(age(promoted(start, ways - 1, ways), ways - 1), 0);
        assert_eq!(age(demoted(start, 0, ways), 0), ways as u32 - 1);
    }
}

#[test]
fn padding_free_structs_work_as_keys_and_values() {
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, bytemuck::NoUninit)]
    #[repr(C)]
    struct Addr {
        ip: [u8; 4],
        port: u16,
        proto: u16,
    }
    let cache: ConcurrentCache<Addr, [u8; 3], 8, 2> = ConcurrentCache::new();
    let a = Addr {
        ip: [10, 0, 0, 1],
        port: 53,
        proto: 17,
    };
    cache.insert(a, [1, 2, 3]).unwrap();
    assert_eq!(cache.get(&a), Some([1, 2, 3]));
    let b = Addr { port: 54, ..a };
    assert_eq!(cache.get(&b), None);
}

/// Promote and demote against the definition, on every permutation
/// reachable from the start (exhaustive for small `ways`).
#[test]
fn swar_ages_match_the_definition() {
    fn reference(ages: [u32; 8], way: usize, ways: usize, front: bool) -> [u32; 8] {
        let old = ages[way];
        core::array::from_fn(|w| match () {
            () if w >= ways => 0,
            () if w == way => {
                if front {
                    0
                } else {
                    ways as u32 - 1
                }
            }
            () if front && ages[w] < old => ages[w] + 1,
            () if !front && ages[w] > old => ages[w] - 1,
            () => ages[w],
        })
    }
    let unpack = |word: u32| -> [u32; 8] { core::array::from_fn(|w| age(word, w)) };
    for ways in 1..=if cfg!(miri) { 4 } else { 8 } {
        let mut x = 0x2545_f491u32;
        let mut word = initial_ages(ways);
        for _ in 0..if cfg!(miri) { 50 } else { 5_000 } {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let way = (x as usize >> 3) % ways;
            let front = x & 1 == 0;
            let want = reference(unpack(word), way, ways, front);
            word = if front {
                promoted(word, way, ways)
            } else {
                demoted(word, way, ways)
            };
            assert_eq!(unpack(word), want, "{ways} ways");
        }
    }
}

/// Keys whose tags collide still resolve by key; the victim of a full set
/// is the least recent way even when tags repeat.
#[test]
fn colliding_tags_resolve_by_key() {
    let cache: ConcurrentCache<u32, u64, 1, 8> = ConcurrentCache::new();
    let set = &cache.sets[0];
    for k in 0..8u32 {
        // Force every way's tag to the same value.
        let held = set.lock().expect("free");
        let way = set
            .find_locked(&k, 7)
            .unwrap_or_else(|| set.victim(set.ages_word()).0);
        set.promote(way);
        set.write(way, 7, Some((&k, &u64::from(k))));
        drop(held);
    }
    for k in 0..8u32 {
        assert_eq!(set.get(&k, 7), Some((k as usize, u64::from(k))));
        assert_eq!(set.get(&k, 6), None, "another tag filters it out");
    }
    assert_eq!(set.get(&99, 7), None);
    assert_eq!(set.occupied(), 8);
}

#[test]
fn size_per_entry() {
    // Ages word + 2 tag words, then per way an 8-byte sequence (one 64-bit
    // word, 8-aligned, or two 32-bit words), key and value.
    let header = if cfg!(fusebox_wide_words) { 16 } else { 12 };
    assert_eq!(core::mem::size_of::<Set<u32, u32, 4>>(), header + 4 * 16);
    assert_eq!(
        core::mem::size_of::<Set<u64, u64, 8>>(),
        16 + 8 * 8 + 8 * 16,
        "12 header bytes padded to the keys' alignment either way"
    );
    assert_eq!(
        core::mem::size_of::<ConcurrentCache<u32, u32, 64, 4>>() / 256,
        if cfg!(fusebox_wide_words) { 20 } else { 19 }
    );
    assert_eq!(
        core::mem::size_of::<ConcurrentCache<u64, u64, 512, 8>>() / 4096,
        26
    );
}
