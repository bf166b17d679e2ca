//! Unit tests of the concurrent cache.

use super::*;

type One<const W: usize> = ConcurrentCache<u32, u64, 1, W>;

fn ages_of<const W: usize>(cache: &One<W>) -> [u32; W] {
    let word = cache.sets[0].load(Ordering::Relaxed);
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
    let cache: ConcurrentCache<u32, u64, 16, 4> = ConcurrentCache::new();
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
    let occupied = (0..4)
        .filter(|&w| cache.slots[0][w].seq.load(Ordering::Relaxed) & OCCUPIED != 0)
        .count();
    assert_eq!(occupied, 1);
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
    let cache: One<4> = ConcurrentCache::<u32, u64, 1, 4>::new().without_lookup_counters();
    cache.insert(5, 50).unwrap();
    let before = cache.sets[0].load(Ordering::Relaxed);
    let seqs: [u32; 4] = core::array::from_fn(|w| cache.slots[0][w].seq.load(Ordering::Relaxed));
    for _ in 0..3 {
        assert_eq!(cache.get(&5), Some(50));
    }
    assert_eq!(cache.sets[0].load(Ordering::Relaxed), before);
    let after: [u32; 4] = core::array::from_fn(|w| cache.slots[0][w].seq.load(Ordering::Relaxed));
    assert_eq!(seqs, after);
    assert_eq!(cache.metrics().hits, 0, "lookups not counted");
}

#[test]
fn writers_give_up_on_a_locked_set_and_readers_still_read() {
    let cache: One<2> = ConcurrentCache::new();
    cache.insert(1, 100).unwrap();
    let guard = cache.lock(0).unwrap();
    assert_eq!(cache.insert(2, 200), Err(Contended));
    assert_eq!(cache.remove(&1), Err(Contended));
    assert_eq!(cache.get(&1), Some(100), "readers never wait");
    guard.unlock(|ages| ages);
    cache.insert(2, 200).unwrap();
    assert_eq!(cache.metrics().contended, 2);
}

#[test]
fn a_reader_gives_up_on_a_slot_being_written() {
    let cache: One<1> = ConcurrentCache::new();
    cache.insert(1, 100).unwrap();
    let slot = &cache.slots[0][0];
    let seq = slot.seq.load(Ordering::Relaxed);
    slot.seq.store(seq | WRITING, Ordering::Relaxed); // a writer "preempted"
    assert_eq!(cache.get(&1), None, "bounded retries, then a miss");
    slot.seq.store(seq, Ordering::Relaxed);
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
            assert_eq!(
                ages >> (ways as u32 * AGE_BITS),
                0,
                "no bits beyond the ways"
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

#[test]
fn size_per_entry() {
    // Sequence word + key + value, and one age word per set.
    assert_eq!(core::mem::size_of::<Slot<u32, u32>>(), 12);
    assert_eq!(core::mem::size_of::<Slot<u64, u64>>(), 24);
}
