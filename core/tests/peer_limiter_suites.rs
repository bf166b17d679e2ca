//! Scenarios of peers' rate-limiter suites not yet re-expressed elsewhere
//! (see `peer_governor.rs`, `peer_gcra_scenarios.rs`), against
//! `TokenBucket` and `KeyedLimiter`, with expectations from fusebox's
//! documented contract (the `bucket` module docs, `TokenBucket::set_quota`,
//! `KeyedLimiter::set_quota`, `try_acquire_n`, `FullPolicy`, the keyed
//! module's "Eviction" and "Range"):
//!
//! * governor `tests/direct.rs` / `keyed_*.rs` `check_n` with `n` over the
//!   burst — here after the quota *changed*: over the new burst is
//!   `InsufficientCapacity` naming the new burst, under it a matter of
//!   time with the exact wait (governor has no run-time quota change; its
//!   users rebuild the limiter, which fusebox's `set_quota` replaces);
//! * redis-cell's and redis_rate's peeks (`quantity 0`, `AllowN(0)`) on a
//!   bucket a stale clock reads as overdrawn, and on a full table: always
//!   granted, touching nothing;
//! * governor `keyed_*` `retain_recent` / `len` with a stream of many
//!   keys, each used once, through a small table: idle keys make room
//!   (never `TableFull`), each new key gets its whole burst once, across
//!   the slots' 48-bit (32-bit) wrap;
//! * redis_rate's / governor's `actual_threadsafety` with requests of mixed
//!   sizes: threads sharing one quota at one instant take exactly the
//!   burst between them.

// Long histories of the public, safe API: native runs only.
#![cfg(not(miri))]

use std::sync::Arc;

use fusebox::bucket::{
    AcquireError, FullPolicy, InsufficientCapacity, KeyedError, KeyedLimiter, Quota, TokenBucket,
};
use fusebox::{Duration, Instant};

fn per_sec(n: u32) -> Quota {
    Quota::per_second(n).unwrap()
}

fn us(n: u64) -> Duration {
    Duration::from_micros(n)
}

/// governor `check_n` (n > burst is `InsufficientCapacity`), after the
/// burst was lowered from 10 to 4 at `now`: 5 is over the new burst, so
/// never (naming 4), whatever the bucket holds; 4 fits a full bucket. The
/// contract: "lowering it clamps what is available to the new burst".
#[test]
fn check_n_over_a_lowered_burst_is_insufficient_capacity() {
    let now = Instant::from_secs(100);
    let bucket = TokenBucket::new(per_sec(10));
    assert!(bucket.try_acquire_n(10, now - us(1_000_000)).is_ok());
    assert_eq!(bucket.set_quota(per_sec(4), now), per_sec(10));
    let never = AcquireError::InsufficientCapacity(InsufficientCapacity {
        requested: 5,
        burst: 4,
    });
    assert_eq!(bucket.try_acquire_n(5, now), Err(never));
    assert_eq!(bucket.available(now), 4, "full again, clamped to 4");
    assert!(bucket.try_acquire_n(4, now).is_ok());
    assert_eq!(bucket.try_acquire_n(5, now + us(10_000_000)), Err(never));

    // The keyed limiter: a key in the table (its lock-free path), a key
    // not yet in it (the locked path), and the overflow bucket's policy
    // ("a request for more than the key's own burst is still refused ...
    // with the key's burst").
    for policy in [FullPolicy::Reject, FullPolicy::Overflow(per_sec(100))] {
        let keyed: KeyedLimiter<u32, 8> = KeyedLimiter::new(per_sec(10), policy).unwrap();
        assert!(keyed.try_acquire_n(&1, 3, now).is_ok());
        keyed.set_quota(0, per_sec(4), now).unwrap();
        let never = KeyedError::InsufficientCapacity(InsufficientCapacity {
            requested: 5,
            burst: 4,
        });
        assert_eq!(keyed.try_acquire_n(&1, 5, now), Err(never), "{policy:?}");
        assert_eq!(keyed.try_acquire_n(&2, 5, now), Err(never), "{policy:?}");
        assert_eq!(keyed.metrics().keys, 1, "the refused key was not inserted");
        assert_eq!(keyed.available(&1, now), 4, "7 left, clamped to 4");
        assert!(keyed.try_acquire_n(&1, 4, now).is_ok());
        assert!(keyed.try_acquire_n(&2, 4, now).is_ok());
    }
}

/// The other way: a burst raised from 4 to 10 grants no tokens ("raising
/// the burst grants no free tokens"), so 7 tokens right after the change
/// are a matter of time, never `InsufficientCapacity`: with 1 token left
/// and the new rate of 10 a second, 6 more take 600 ms, exactly (and one
/// µs earlier is refused).
#[test]
fn check_n_within_a_raised_burst_waits_exactly_for_the_new_rate() {
    let now = Instant::from_secs(100);
    let bucket = TokenBucket::new(per_sec(4));
    assert!(bucket.try_acquire_n(3, now).is_ok());
    bucket.set_quota(per_sec(10), now);
    assert_eq!(bucket.available(now), 1);
    match bucket.try_acquire_n(7, now) {
        Err(AcquireError::RateLimited(e)) => assert_eq!(e.retry_after, us(600_000)),
        other => panic!("{other:?}"),
    }
    assert!(bucket.try_acquire_n(7, now + us(599_999)).is_err());
    assert!(bucket.try_acquire_n(7, now + us(600_000)).is_ok());

    let keyed: KeyedLimiter<u32, 8> = KeyedLimiter::new(per_sec(4), FullPolicy::Reject).unwrap();
    assert!(keyed.try_acquire_n(&1, 3, now).is_ok());
    keyed.set_quota(0, per_sec(10), now).unwrap();
    match keyed.try_acquire_n(&1, 7, now) {
        Err(KeyedError::RateLimited(e)) => assert_eq!(e.retry_after, us(600_000)),
        other => panic!("{other:?}"),
    }
    assert!(keyed.try_acquire_n(&1, 7, now + us(599_999)).is_err());
    assert!(keyed.try_acquire_n(&1, 7, now + us(600_000)).is_ok());
    // A new key starts with the new burst.
    assert!(keyed.try_acquire_n(&2, 10, now).is_ok());
}

/// redis-cell `CL.THROTTLE key b r p 0` and redis_rate `AllowN(0)`: a
/// peek. fusebox: "`n = 0` always succeeds" and, keyed, "touches nothing:
/// the key is not inserted, nothing is evicted or counted". Asked with a
/// clock 50 ms behind a drained bucket's last admission (overdrawn as that
/// `now` reads it) and on a table whose only slot is busy.
#[test]
fn peeks_are_granted_on_overdrawn_buckets_and_full_tables_and_touch_nothing() {
    let now = Instant::from_secs(100);
    let stale = now - us(50_000);
    let bucket = TokenBucket::new(per_sec(10));
    assert!(bucket.try_acquire_n(10, now).is_ok());
    assert_eq!(bucket.try_acquire_n(0, stale), Ok(()));
    assert_eq!(bucket.try_acquire_n(0, now), Ok(()));
    assert_eq!(bucket.snapshot(now).until_full, us(1_000_000), "untouched");

    let keyed: KeyedLimiter<u32, 1> = KeyedLimiter::new(per_sec(10), FullPolicy::Reject).unwrap();
    assert!(keyed.try_acquire_n(&1, 10, now).is_ok());
    let before = keyed.metrics();
    assert_eq!(keyed.try_acquire_n(&1, 0, stale), Ok(()));
    assert_eq!(keyed.try_acquire_n(&2, 0, now), Ok(()), "a full table");
    assert_eq!(
        keyed.metrics(),
        before,
        "nothing counted, inserted or evicted"
    );
    assert_eq!(keyed.try_acquire(&2, now), Err(KeyedError::TableFull));
    // The drained key is still there, drained: the peeks gave nothing back.
    assert_eq!(keyed.available(&1, now + us(100_000)), 1);
}

/// governor `keyed_*` (`retain_recent`, `len`) with a stream of keys: one
/// new key every 10 ms, each taking its burst of 1 (100 a second) once,
/// through 64 slots. Each key is idle when the next comes ("A key is
/// evicted only when idle: its bucket full again"), so no request finds
/// the table full, every new key gets its token at once, the table holds
/// 64 keys and every insertion after the 64th evicts one. Run from zero
/// and across the slots' wrap (2^48 µs at scale 1; 2^31 half units with
/// `fusebox_narrow_words`), with a repeat of each key 5 ms later refused
/// with a wait of exactly 5 ms (1 µs more for the one admission whose
/// arrival time is the wrap itself; see below).
#[test]
fn a_stream_of_new_keys_through_a_small_table_never_finds_it_full() {
    let narrow = !cfg!(target_has_atomic = "64") || cfg!(fusebox_narrow_words);
    let wrap: u64 = if narrow { 1 << 31 } else { 1 << 48 };
    for start in [10_000_000, wrap - 3_000_000, 2 * wrap - 1_000_000] {
        let keyed: KeyedLimiter<u64, 64> =
            KeyedLimiter::new(per_sec(100).with_burst(1).unwrap(), FullPolicy::Reject).unwrap();
        let keys = 1_000u64;
        for k in 0..keys {
            let now = Instant::from_micros(start + k * 10_000);
            assert_eq!(keyed.try_acquire(&k, now), Ok(()), "key {k} from {start}");
            match keyed.try_acquire(&k, now + us(5_000)) {
                Err(KeyedError::RateLimited(e)) => {
                    // Exact, but where the admission's arrival time lands
                    // on a multiple of the wrap: that word value means "a
                    // bucket never used", so the kernel writes one scaled
                    // unit later instead (the `gcra` module docs: "which
                    // only admits less"), here 1 µs.
                    let on_wrap = (start + k * 10_000 + 10_000) % wrap == 0;
                    let want = us(if on_wrap { 5_001 } else { 5_000 });
                    assert_eq!(e.retry_after, want, "key {k} from {start}");
                }
                other => panic!("key {k} from {start}: {other:?}"),
            }
        }
        let m = keyed.metrics();
        assert_eq!(
            (m.allowed, m.limited, m.table_full, m.keys, m.evictions),
            (keys, keys, 0, 64, keys - 64),
            "from {start}"
        );
    }
}

/// redis_rate's and governor's `actual_threadsafety` with mixed request
/// sizes: 4 threads at one instant take 1 to 5 tokens at a time from one
/// bucket of 100, each finishing with single tokens until refused: the
/// burst is taken exactly ("admits at most `burst + ⌊rate · T⌋`",
/// `T` = 0), none lost. The same for one key of a keyed limiter.
#[test]
fn threads_with_mixed_sizes_take_exactly_the_burst_at_one_instant() {
    fn run(take: &Arc<dyn Fn(u32) -> bool + Send + Sync>) -> u64 {
        let threads: Vec<_> = (0..4u32)
            .map(|t| {
                let take = Arc::clone(take);
                std::thread::spawn(move || {
                    let mut got = 0u64;
                    for i in 0..40u32 {
                        let n = 1 + (i * 7 + t * 3) % 5;
                        if take(n) {
                            got += u64::from(n);
                        }
                    }
                    while take(1) {
                        got += 1;
                    }
                    got
                })
            })
            .collect();
        threads.into_iter().map(|h| h.join().unwrap()).sum()
    }
    let now = Instant::from_secs(7);
    for _ in 0..20 {
        let bucket = Arc::new(TokenBucket::new(per_sec(1_000).with_burst(100).unwrap()));
        let b = Arc::clone(&bucket);
        let take: Arc<dyn Fn(u32) -> bool + Send + Sync> =
            Arc::new(move |n| b.try_acquire_n(n, now).is_ok());
        assert_eq!(run(&take), 100);
        assert_eq!(bucket.available(now), 0);

        let keyed: Arc<KeyedLimiter<u32, 16>> = Arc::new(
            KeyedLimiter::new(per_sec(1_000).with_burst(100).unwrap(), FullPolicy::Reject).unwrap(),
        );
        let k = Arc::clone(&keyed);
        let take: Arc<dyn Fn(u32) -> bool + Send + Sync> =
            Arc::new(move |n| k.try_acquire_n(&9, n, now).is_ok());
        assert_eq!(run(&take), 100);
        assert_eq!(keyed.available(&9, now), 0);
    }
}

/// governor's `tests/memory_leaks.rs` (a limiter dropped frees what its
/// keys held; keys that leave are not leaked): keys that count their live
/// copies, streamed through a table of 16 slots with every path a key
/// takes — inserted, found, refused, evicted, over the burst (never
/// stored), a peek (never stored), a full table (or the overflow bucket). The contract: "the
/// stored copy of the key ... an evicted key is moved out of its slot and
/// dropped"; so at every step exactly the keys held are alive (no leak,
/// no copy dropped twice), and none once the limiter is dropped.
#[test]
fn keys_are_neither_leaked_nor_dropped_twice() {
    use std::hash::{Hash, Hasher};
    use std::sync::atomic::{AtomicI64, Ordering};

    struct Key {
        id: u64,
        live: Arc<AtomicI64>,
    }
    impl Key {
        fn new(id: u64, live: &Arc<AtomicI64>) -> Self {
            live.fetch_add(1, Ordering::SeqCst);
            Self {
                id,
                live: Arc::clone(live),
            }
        }
    }
    impl Clone for Key {
        fn clone(&self) -> Self {
            Self::new(self.id, &self.live)
        }
    }
    impl Drop for Key {
        fn drop(&mut self) {
            self.live.fetch_sub(1, Ordering::SeqCst);
        }
    }
    impl PartialEq for Key {
        fn eq(&self, other: &Self) -> bool {
            self.id == other.id
        }
    }
    impl Eq for Key {}
    impl Hash for Key {
        fn hash<H: Hasher>(&self, h: &mut H) {
            self.id.hash(h);
        }
    }

    let live = Arc::new(AtomicI64::new(0));
    let quota = per_sec(10).with_burst(2).unwrap();
    for policy in [FullPolicy::Reject, FullPolicy::Overflow(per_sec(1))] {
        let keyed: KeyedLimiter<Key, 16> = KeyedLimiter::new(quota, policy).unwrap();
        for step in 0..2_000u64 {
            // 20 keys, each twice in a row, every ms: busy (a full
            // bucket in 200 ms), so the table of 16 is full; then 10 s
            // later 20 other keys, for which the idle ones are evicted.
            let phase = step / 1_000;
            let now = Instant::from_micros(1_000_000 + step * 1_000 + phase * 10_000_000);
            let key = Key::new((step / 2) % 20 + 20 * phase, &live);
            let _ = keyed.try_acquire(&key, now);
            let _ = keyed.try_acquire_n(&key, 3, now); // over the burst
            let _ = keyed.try_acquire_n(&key, 0, now); // a peek
            let _ = keyed.try_acquire_left(&key, now);
            drop(key);
            let held = keyed.metrics().keys;
            assert_eq!(
                live.load(Ordering::SeqCst),
                i64::try_from(held).unwrap(),
                "{policy:?} step {step}"
            );
        }
        let m = keyed.metrics();
        assert!(
            m.evictions > 0 && (m.table_full > 0 || policy != FullPolicy::Reject),
            "{policy:?} {m:?}"
        );
        drop(keyed);
        assert_eq!(live.load(Ordering::SeqCst), 0, "{policy:?}");
    }
}

/// throttled's and redis_rate's "keys are independent" with keys hashed
/// to the same slot (one hash for every key: one home slot, one
/// fingerprint, one eviction mark) in two tiers, and one tier's quota
/// lowered while both are in use. The contract (`KeyedLimiter::set_quota`):
/// the tier's keys keep their tokens, clamped to the new burst, and
/// refill at the new rate; a new key of the tier starts with the new
/// burst; "keys of other tiers ... are unaffected".
#[test]
fn a_tier_changed_under_colliding_keys_leaves_the_other_tier_alone() {
    use std::hash::{BuildHasher, Hasher};

    #[derive(Clone, Copy, Default)]
    struct OneHash;
    struct OneHasher;
    impl Hasher for OneHasher {
        fn finish(&self) -> u64 {
            0x0123_4567_89AB_CDEF
        }
        fn write(&mut self, _: &[u8]) {}
    }
    impl BuildHasher for OneHash {
        type Hasher = OneHasher;
        fn build_hasher(&self) -> OneHasher {
            OneHasher
        }
    }

    let now = Instant::from_secs(50);
    let keyed: KeyedLimiter<u32, 8, 2, OneHash> =
        KeyedLimiter::with_hasher([per_sec(10), per_sec(10)], FullPolicy::Reject, OneHash)
            .unwrap()
            .with_tier_fn(|k| (*k % 2) as usize);
    assert!(keyed.try_acquire_n(&0, 7, now).is_ok());
    assert!(keyed.try_acquire_n(&1, 7, now).is_ok());
    assert!(keyed.try_acquire_n(&3, 1, now).is_ok());
    keyed.set_quota(1, per_sec(2), now).unwrap();

    assert_eq!(keyed.available(&0, now), 3, "tier 0 untouched");
    assert_eq!(keyed.available(&2, now), 10, "a new tier-0 key: its burst");
    assert_eq!(keyed.available(&1, now), 2, "3 left, clamped to 2");
    assert_eq!(keyed.available(&3, now), 2, "9 left, clamped to 2");
    assert_eq!(
        keyed.available(&5, now),
        2,
        "a new tier-1 key: the new burst"
    );

    // Tier 0 refills at 10 a second, tier 1 at 2 (from its clamped 2).
    assert!(keyed.try_acquire_n(&1, 2, now).is_ok());
    match keyed.try_acquire(&1, now) {
        Err(KeyedError::RateLimited(e)) => assert_eq!(e.retry_after, us(500_000)),
        other => panic!("{other:?}"),
    }
    match keyed.try_acquire_n(&0, 4, now) {
        Err(KeyedError::RateLimited(e)) => assert_eq!(e.retry_after, us(100_000)),
        other => panic!("{other:?}"),
    }
    assert!(keyed.try_acquire_n(&0, 4, now + us(100_000)).is_ok());
    assert!(keyed.try_acquire(&1, now + us(500_000)).is_ok());
    assert_eq!(
        keyed.try_acquire_n(&3, 3, now),
        Err(KeyedError::InsufficientCapacity(InsufficientCapacity {
            requested: 3,
            burst: 2
        }))
    );
    assert!(keyed.try_acquire_n(&2, 10, now).is_ok(), "tier 0's burst");
}
