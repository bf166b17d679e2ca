//! The keyed limiter's public behaviour, on virtual time: per-key buckets,
//! tiers (and a tier out of range), a full table (eviction, rejection, the
//! overflow bucket), fingerprint collisions, keys' lifetimes, quota range,
//! and the eviction marks seen from outside. White-box tests (slot words,
//! the lock) live beside the code, in `bucket/keyed/tests.rs`.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering as StdOrdering};

use fusebox::bucket::{
    FullPolicy, InsufficientCapacity, KeyedError, KeyedLimiter, Quota, RateLimited,
};
use fusebox::{Duration, Instant, RetryAfter};

const T0: Instant = Instant::from_secs(100);

fn per_sec(n: u32) -> Quota {
    Quota::per_second(n).unwrap()
}

#[test]
fn each_key_has_its_own_bucket() {
    let l: KeyedLimiter<&str, 8> =
        KeyedLimiter::new(per_sec(2), FullPolicy::Reject).expect("quota within the keyed range");
    for key in ["a", "b", "c"] {
        l.try_acquire(&key, T0).unwrap();
        l.try_acquire(&key, T0).unwrap();
        assert_eq!(
            l.try_acquire(&key, T0),
            Err(KeyedError::RateLimited(RateLimited {
                retry_after: Duration::from_millis(500)
            }))
        );
    }
    assert_eq!(l.available(&"a", T0 + Duration::from_secs(1)), 2);
    assert_eq!(l.available(&"zzz", T0), 2, "unknown keys read as full");
    let m = l.metrics();
    assert_eq!((m.allowed, m.limited, m.keys, m.evictions), (6, 3, 3, 0));
}

#[test]
fn tiers_are_chosen_at_insertion() {
    let l: KeyedLimiter<u32, 16, 2> =
        KeyedLimiter::with_tiers([per_sec(1), per_sec(5)], FullPolicy::Reject)
            .expect("quota within the keyed range")
            .with_tier_fn(|k| usize::from(*k >= 1_000));
    l.try_acquire(&1, T0).unwrap();
    assert!(l.try_acquire(&1, T0).is_err());
    for _ in 0..5 {
        l.try_acquire(&1_000, T0).unwrap(); // premium by the tier function
    }
    assert!(l.try_acquire(&1_000, T0).is_err());
    // An explicit tier at insertion wins over the tier function...
    l.try_acquire_tier(&2, 1, T0).unwrap();
    assert_eq!(l.available(&2, T0), 4);
    // ...and sticks while the key stays in the table.
    l.try_acquire_tier(&2, 0, T0).unwrap();
    assert_eq!(l.available(&2, T0), 3);
}

#[test]
fn a_full_table_evicts_an_idle_key() {
    let l: KeyedLimiter<u32, 2> =
        KeyedLimiter::new(per_sec(1), FullPolicy::Reject).expect("quota within the keyed range");
    l.try_acquire(&1, T0).unwrap();
    l.try_acquire(&2, T0 + Duration::from_millis(500)).unwrap();
    // At T0 + 1 s key 1 is full again (idle), key 2 is not.
    let t1 = T0 + Duration::from_secs(1);
    l.try_acquire(&3, t1).unwrap();
    let m = l.metrics();
    assert_eq!((m.evictions, m.keys), (1, 2));
    // Key 2 kept its state (busy, not evicted): still limited.
    assert!(matches!(
        l.try_acquire(&2, t1),
        Err(KeyedError::RateLimited(_))
    ));
}

#[test]
fn a_full_table_of_busy_keys_rejects_never_passes() {
    let l: KeyedLimiter<u32, 2> =
        KeyedLimiter::new(per_sec(1), FullPolicy::Reject).expect("quota within the keyed range");
    l.try_acquire(&1, T0).unwrap();
    l.try_acquire(&2, T0).unwrap();
    for k in 3..10 {
        assert_eq!(l.try_acquire(&k, T0), Err(KeyedError::TableFull));
    }
    let m = l.metrics();
    assert_eq!((m.table_full, m.limited, m.keys), (7, 7, 2));
}

/// Zero tokens is always granted and touches nothing, as for
/// `TokenBucket`: it neither inserts a key (which could evict an idle one,
/// or be refused with `TableFull`) nor counts an admission.
#[test]
fn zero_tokens_are_granted_without_inserting_or_counting() {
    for policy in [FullPolicy::Reject, FullPolicy::Overflow(per_sec(1))] {
        let l: KeyedLimiter<u32, 2> =
            KeyedLimiter::new(per_sec(1), policy).expect("quota within the keyed range");
        l.try_acquire(&1, T0).unwrap();
        l.try_acquire(&2, T0).unwrap();
        let before = l.metrics();
        for k in [1, 2, 3, 4] {
            assert_eq!(l.try_acquire_n(&k, 0, T0), Ok(()), "key {k}");
        }
        let later = T0 + Duration::from_secs(5);
        assert_eq!(l.try_acquire_n(&5, 0, later), Ok(()));
        assert_eq!(l.metrics(), before, "{policy:?}");
        assert_eq!(l.available(&1, T0), 0, "key 1 still present and empty");
    }
}

/// More tokens than the burst can never be granted: refused with
/// `InsufficientCapacity` and the burst, touching nothing. An absent key
/// was inserted first (evicting an idle key, counted in `evictions`), and
/// on a table of busy keys refused with `TableFull`, which says "try
/// later" where no later will do (found by contract models of the docs).
#[test]
fn more_than_the_burst_for_an_absent_key_inserts_nothing() {
    use fusebox::bucket::InsufficientCapacity;
    let over = Err(KeyedError::InsufficientCapacity(InsufficientCapacity {
        requested: 3,
        burst: 2,
    }));
    for policy in [FullPolicy::Reject, FullPolicy::Overflow(per_sec(10))] {
        let quota = per_sec(1).with_burst(2).unwrap();
        let l: KeyedLimiter<u32, 1> = KeyedLimiter::new(quota, policy).expect("keyed range");
        // An idle key in the only slot: not evicted for a request that
        // cannot be granted.
        l.try_acquire(&1, T0).unwrap();
        let idle = T0 + Duration::from_secs(60);
        assert_eq!(l.try_acquire_n(&2, 3, idle), over, "{policy:?}");
        let m = l.metrics();
        assert_eq!((m.keys, m.evictions), (1, 0), "{policy:?}");
        assert_eq!(l.available(&1, idle), 2, "key 1 kept");
        // A busy key in it: the same answer, not `TableFull`.
        l.try_acquire_n(&1, 2, idle).unwrap();
        assert_eq!(l.try_acquire_n(&2, 3, idle), over, "{policy:?}");
        assert_eq!(l.metrics().table_full, 0, "{policy:?}");
    }
}

#[test]
fn a_full_table_can_charge_a_shared_overflow_bucket() {
    let overflow = per_sec(10).with_burst(3).unwrap();
    let l: KeyedLimiter<u32, 1> = KeyedLimiter::new(per_sec(1), FullPolicy::Overflow(overflow))
        .expect("quota within the keyed range");
    l.try_acquire(&1, T0).unwrap();
    // Keys 2.. share three tokens, then are limited like any bucket.
    for k in 2..5 {
        l.try_acquire(&k, T0).unwrap();
    }
    assert!(matches!(
        l.try_acquire(&5, T0),
        Err(KeyedError::RateLimited(_))
    ));
    assert_eq!(l.metrics().keys, 1);
}

/// `try_acquire_n` refuses `n` over the key's burst
/// (`InsufficientCapacity`), whether or not the key finds a slot: a key
/// charged to a larger overflow bucket does not take more at once than its
/// own bucket ever could, nor does a tier's burst depend on how full the
/// table is.
#[test]
fn over_the_keys_burst_is_refused_also_when_charged_to_the_overflow() {
    let overflow = per_sec(10);
    let l: KeyedLimiter<u32, 1, 2> =
        KeyedLimiter::with_tiers([per_sec(2), per_sec(4)], FullPolicy::Overflow(overflow))
            .unwrap()
            .with_tier_fn(|k| (*k % 2) as usize);
    // Key 2 (tier 0, burst 2) takes the only slot and stays busy.
    l.try_acquire(&2, T0).unwrap();
    let over = |requested, burst| {
        Err(KeyedError::InsufficientCapacity(InsufficientCapacity {
            requested,
            burst,
        }))
    };
    assert_eq!(l.try_acquire_n(&2, 3, T0), over(3, 2), "in the table");
    // Keys 4 (tier 0) and 5 (tier 1, burst 4) find no slot.
    assert_eq!(l.try_acquire_n(&4, 3, T0), over(3, 2), "no slot");
    assert_eq!(l.try_acquire_n(&5, 5, T0), over(5, 4), "no slot");
    assert_eq!(
        l.try_acquire_tier(&7, 0, T0),
        Ok(()),
        "charged to the overflow"
    );
    let m = l.metrics();
    assert_eq!((m.allowed, m.limited, m.keys), (2, 3, 1), "{m:?}");
    // Within their bursts they are charged to the overflow bucket.
    assert_eq!(l.try_acquire_n(&4, 2, T0), Ok(()));
    assert_eq!(l.try_acquire_n(&5, 4, T0), Ok(()));
}

/// A smaller overflow bucket lowers what one request of a key with no
/// slot may take (refused with the overflow bucket's burst, as
/// `KeyedError::InsufficientCapacity` documents); the key's own burst
/// still bounds it first.
#[test]
fn a_smaller_overflow_burst_refuses_with_its_own_burst() {
    let l: KeyedLimiter<u32, 1> =
        KeyedLimiter::new(per_sec(4), FullPolicy::Overflow(per_sec(2))).unwrap();
    l.try_acquire(&1, T0).unwrap();
    let over = |requested, burst| {
        Err(KeyedError::InsufficientCapacity(InsufficientCapacity {
            requested,
            burst,
        }))
    };
    assert_eq!(l.try_acquire_n(&9, 5, T0), over(5, 4), "the key's burst");
    assert_eq!(l.try_acquire_n(&9, 3, T0), over(3, 2), "the overflow's");
    assert_eq!(l.try_acquire_n(&9, 2, T0), Ok(()));
    assert_eq!(l.try_acquire_n(&1, 3, T0), Ok(()), "in the table: its own");
}

#[test]
fn n_tokens_and_capacity() {
    let l: KeyedLimiter<u8, 4> =
        KeyedLimiter::new(per_sec(4), FullPolicy::Reject).expect("quota within the keyed range");
    l.try_acquire_n(&1, 3, T0).unwrap();
    assert!(matches!(
        l.try_acquire_n(&1, 2, T0),
        Err(KeyedError::RateLimited(_))
    ));
    assert_eq!(
        l.try_acquire_n(&1, 5, T0),
        Err(KeyedError::InsufficientCapacity(InsufficientCapacity {
            requested: 5,
            burst: 4
        }))
    );
    assert_eq!(
        l.try_acquire_n(&9, 5, T0),
        Err(KeyedError::InsufficientCapacity(InsufficientCapacity {
            requested: 5,
            burst: 4
        }))
    );
}

/// Every key hashes alike: same fingerprint and home slot. `Eq` must still
/// keep them apart.
#[derive(Clone, PartialEq, Eq, Debug)]
struct Colliding(u32);
impl Hash for Colliding {
    fn hash<H: Hasher>(&self, state: &mut H) {
        0u8.hash(state);
    }
}

#[test]
fn fingerprint_collisions_are_told_apart_by_eq() {
    let l: KeyedLimiter<Colliding, 8> =
        KeyedLimiter::new(per_sec(1), FullPolicy::Reject).expect("quota within the keyed range");
    for k in 0..8 {
        l.try_acquire(&Colliding(k), T0).unwrap();
    }
    for k in 0..8 {
        assert!(matches!(
            l.try_acquire(&Colliding(k), T0),
            Err(KeyedError::RateLimited(_))
        ));
    }
    assert_eq!(l.try_acquire(&Colliding(8), T0), Err(KeyedError::TableFull));
    assert_eq!(l.metrics().keys, 8);
}

static LIVE: AtomicUsize = AtomicUsize::new(0);

#[derive(PartialEq, Eq, Hash, Debug)]
struct Counted(u32);
impl Clone for Counted {
    fn clone(&self) -> Self {
        LIVE.fetch_add(1, StdOrdering::SeqCst);
        Counted(self.0)
    }
}
impl Drop for Counted {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, StdOrdering::SeqCst);
    }
}

#[test]
fn stored_keys_are_dropped_on_eviction_and_with_the_limiter() {
    let before = LIVE.load(StdOrdering::SeqCst);
    {
        let l: KeyedLimiter<Counted, 2> = KeyedLimiter::new(per_sec(1), FullPolicy::Reject)
            .expect("quota within the keyed range");
        let probe = |k| {
            LIVE.fetch_add(1, StdOrdering::SeqCst);
            Counted(k)
        };
        l.try_acquire(&probe(1), T0).unwrap();
        l.try_acquire(&probe(2), T0).unwrap();
        assert_eq!(LIVE.load(StdOrdering::SeqCst), before + 2);
        l.try_acquire(&probe(3), T0 + Duration::from_secs(2))
            .unwrap(); // evicts one
        assert_eq!(LIVE.load(StdOrdering::SeqCst), before + 2);
    }
    assert_eq!(LIVE.load(StdOrdering::SeqCst), before);
}

/// The 48-bit slot only (with 32-bit words a slot's range is a
/// `TokenBucket`'s, which `Quota` itself enforces).
#[test]
#[cfg(all(target_has_atomic = "64", not(fusebox_narrow_words)))]
fn quotas_out_of_the_keyed_range_are_refused() {
    // One a day with a burst of 1 000: fits a TokenBucket's 64-bit word,
    // not a keyed slot's 48-bit arrival time (burst · T ≥ 2^46 µs).
    let long = Quota::new(1, Duration::from_secs(86_400))
        .unwrap()
        .with_burst(1_000)
        .unwrap();
    let got = KeyedLimiter::<u32, 4>::with_tiers([long], FullPolicy::Reject);
    assert_eq!(got.err(), Some(fusebox::bucket::QuotaError::TooLong));
    // The keyed bench quota fits: 1e9/s, burst 4e9.
    let fast = Quota::per_second(1_000_000_000)
        .unwrap()
        .with_burst(4_000_000_000)
        .unwrap();
    let l = KeyedLimiter::<u32, 4>::with_tiers([fast], FullPolicy::Reject).unwrap();
    for _ in 0..1_000 {
        l.try_acquire(&1, T0).unwrap();
    }
    assert_eq!(l.available(&1, T0), 4_000_000_000 - 1_000);
}

#[test]
#[cfg(all(target_has_atomic = "64", not(fusebox_narrow_words)))]
fn new_refuses_a_quota_out_of_range_with_a_typed_error() {
    let long = Quota::new(1, Duration::from_secs(86_400))
        .unwrap()
        .with_burst(1_000)
        .unwrap();
    let got = KeyedLimiter::<u32, 4>::new(long, FullPolicy::Reject);
    assert_eq!(got.err(), Some(fusebox::bucket::QuotaError::TooLong));
}

/// An evicted key must not get a second burst from a caller whose clock is
/// behind the evicting caller's (within the documented tolerance, a stale
/// `now` only denies). One token per 1 000 µs, burst 1. Every key hashes
/// alike, so which slot each takes, and which key an eviction picks (the
/// first idle one from the home slot), does not depend on the hasher.
#[test]
fn an_evicted_key_gets_no_second_burst_from_a_stale_clock() {
    let l: KeyedLimiter<Colliding, 2> =
        KeyedLimiter::new(one_per_ms(), FullPolicy::Reject).expect("quota within the keyed range");
    let at = Instant::from_micros;
    l.try_acquire(&Colliding(2), at(10_000)).unwrap(); // home slot
    l.try_acquire(&Colliding(1), at(9_000)).unwrap(); // next slot
                                                      // Key 2 is full again at 11 000 (exactly idle); key 3 evicts it.
    l.try_acquire(&Colliding(3), at(11_000)).unwrap();
    assert_eq!(l.metrics().evictions, 1);
    assert_eq!(l.available(&Colliding(1), at(10_000)), 1, "key 1 kept");
    // Another caller's clock, 0.5 ms behind, brings key 2 back (evicting
    // key 1): key 2 was admitted at 10 000 with burst 1, so its next token
    // is due at 11 000.
    assert_eq!(
        l.try_acquire(&Colliding(2), at(10_500)),
        Err(KeyedError::RateLimited(RateLimited {
            retry_after: Duration::from_micros(500)
        }))
    );
    assert_eq!(l.metrics().evictions, 2);
    // At 11 000 it is admitted again, as its old bucket would.
    l.try_acquire(&Colliding(2), at(11_000)).unwrap();
}

/// A mark left far ahead (two calls from a bogus clock near the end of
/// time, one evicting the other's key) must not outlast the marks of later,
/// correctly dated evictions. Marks keep the latest instant, so the bogus
/// one was never replaced, and every key sharing it (here all: they hash
/// alike) lost the protection above for good: a caller 0.5 ms behind
/// brought an evicted key back full, a second token within 0.5 ms on a
/// burst of 1. Scenario and slots as in
/// `an_evicted_key_gets_no_second_burst_from_a_stale_clock`, after that
/// prelude (the real callers, far behind it, read its keys as full).
#[test]
fn a_mark_left_far_ahead_does_not_outlast_later_marks() {
    let l: KeyedLimiter<Colliding, 2> =
        KeyedLimiter::new(one_per_ms(), FullPolicy::Reject).expect("quota within the keyed range");
    let at = Instant::from_micros;
    let bogus = u64::MAX - 100_000;
    l.try_acquire(&Colliding(8), at(bogus)).unwrap();
    l.try_acquire(&Colliding(9), at(bogus)).unwrap();
    l.try_acquire(&Colliding(10), at(bogus + 2_000)).unwrap(); // a mark near the end of time
    assert_eq!(l.metrics().evictions, 1);
    l.try_acquire(&Colliding(2), at(10_000)).unwrap(); // home slot
    l.try_acquire(&Colliding(1), at(9_000)).unwrap(); // next slot
    assert_eq!(l.metrics().evictions, 3, "the bogus keys read as idle");
    l.try_acquire(&Colliding(3), at(11_000)).unwrap(); // evicts key 2: mark 11 000
    assert_eq!(l.metrics().evictions, 4);
    assert_eq!(
        l.available(&Colliding(2), at(10_500)),
        0,
        "read from its mark"
    );
    assert_eq!(
        l.try_acquire(&Colliding(2), at(10_500)),
        Err(KeyedError::RateLimited(RateLimited {
            retry_after: Duration::from_micros(500)
        }))
    );
    l.try_acquire(&Colliding(2), at(11_000)).unwrap();
}

/// The eviction marks are shared by the tiers, whose tolerances differ
/// with their scales (2^42 scaled units on 64-bit words: 50.9 days at
/// scale 1, 67 s at 65 536). A mark is replaced by an earlier one only
/// when it lies further ahead than *any* tier's callers may read one (the
/// fix above): an eviction of a scale-65 536 key by a caller 10 days
/// behind (within the scale-1 tier's tolerance, and 1 s after that key's
/// own call) must not drop the mark a scale-1 key left, or that key comes
/// back full to a caller 0.5 ms behind its eviction. (On 32-bit words
/// every tier's tolerance is ~1.05 s; the same scenario runs with a lag
/// of 0.5 s.)
#[test]
fn a_mark_outlives_an_eviction_in_a_tier_of_shorter_tolerance() {
    const NARROW: bool = !cfg!(target_has_atomic = "64") || cfg!(fusebox_narrow_words);
    #[allow(clippy::trivially_copy_pass_by_ref)] // the signature `with_tier_fn` takes
    fn tier(key: &Colliding) -> usize {
        (key.0 % 2) as usize
    }
    // Tier 0: scale 1, one a millisecond; tier 1: scale 65 536 (clamped).
    let fine = Quota::new(100_003, Duration::from_secs(1)).unwrap();
    let l: KeyedLimiter<Colliding, 3, 2> =
        KeyedLimiter::with_tiers([one_per_ms(), fine], FullPolicy::Reject)
            .expect("quotas within the keyed range")
            .with_tier_fn(tier);
    let t = 30 * 86_400_000_000; // 30 days, in µs
    let lag = if NARROW { 500_000 } else { 10 * 86_400_000_000 };
    let at = Instant::from_micros;
    let (a1, a2, a3) = (Colliding(0), Colliding(2), Colliding(4));
    let (b1, b2) = (Colliding(1), Colliding(3));
    // a1 in the home slot, b1 and b2 in the next ones; then a2 evicts a1,
    // whose mark is t + 1 000.
    l.try_acquire(&a1, at(t)).unwrap();
    l.try_acquire(&b1, at(t - lag - 1_000_000)).unwrap();
    l.try_acquire(&b2, at(t - lag - 1_000_000)).unwrap();
    l.try_acquire(&a2, at(t + 1_000)).unwrap();
    // 1 s after b1's call, `lag` behind a1's: b1 is idle, a2 is not, so
    // a3 evicts b1. (a3 starts at the shared mark: this caller finds it
    // drained.)
    let _ = l.try_acquire(&a3, at(t - lag));
    assert_eq!(l.metrics().evictions, 2);
    assert_eq!(l.available(&a1, at(t + 500)), 0, "read from a1's mark");
    assert_eq!(
        l.try_acquire(&a1, at(t + 500)), // evicts b2
        Err(KeyedError::RateLimited(RateLimited {
            retry_after: Duration::from_micros(500)
        }))
    );
    assert_eq!(l.metrics().evictions, 3);
    l.try_acquire(&a1, at(t + 1_000)).unwrap();
}

/// One token per 1 000 µs, burst 1.
fn one_per_ms() -> Quota {
    Quota::with_period(Duration::from_micros(1_000)).unwrap()
}

/// The mark outlives a re-insertion that charges nothing: a returning key
/// asking for more than its burst is inserted uncharged, and must still
/// not be full to a stale caller afterwards (its bucket starts at the
/// mark, never at "full for ever"). Slots as in the test above.
#[test]
fn an_evicted_key_reinserted_uncharged_keeps_its_mark() {
    let l: KeyedLimiter<Colliding, 2> =
        KeyedLimiter::new(one_per_ms(), FullPolicy::Reject).expect("quota within the keyed range");
    let at = Instant::from_micros;
    l.try_acquire(&Colliding(2), at(10_000)).unwrap(); // home slot
    l.try_acquire(&Colliding(1), at(9_000)).unwrap(); // next slot
    l.try_acquire(&Colliding(3), at(11_000)).unwrap(); // evicts key 2
    let two = Colliding(2);
    assert_eq!(
        l.available(&two, at(10_500)),
        0,
        "absent, read from its mark"
    );
    assert_eq!(l.available(&two, at(11_000)), 1);
    assert!(matches!(
        l.try_acquire_n(&two, 2, at(11_000)),
        Err(KeyedError::InsufficientCapacity(_))
    ));
    // Which key key 2's uncharged re-insertion evicts (if any) depends on
    // the hash layout (it differs on 32-bit targets); what matters is what a
    // stale caller sees next.
    assert!(l.metrics().evictions >= 1);
    assert!(matches!(
        l.try_acquire(&two, at(10_500)),
        Err(KeyedError::RateLimited(_))
    ));
    l.try_acquire(&two, at(11_000)).unwrap();
}

/// The price of the marks: a never-seen key sharing a mark (here every
/// key hashes alike) starts drained up to it, which only a caller whose
/// clock is behind the mark sees, and only until the mark.
#[test]
fn a_new_key_sharing_a_mark_waits_only_for_callers_behind_it() {
    let l: KeyedLimiter<Colliding, 2> =
        KeyedLimiter::new(one_per_ms(), FullPolicy::Reject).expect("quota within the keyed range");
    let at = Instant::from_micros;
    l.try_acquire(&Colliding(1), at(1_800)).unwrap(); // home slot, full at 2 800
    l.try_acquire(&Colliding(2), at(500)).unwrap(); // next slot, full at 1 500
    l.try_acquire(&Colliding(3), at(5_000)).unwrap(); // evicts 1: mark 2 800
                                                      // A stale caller (3.4 ms behind) brings key 4, evicting key 2 (idle at
                                                      // 1 600): key 4 starts full at the mark, 1 200 µs away.
    assert_eq!(
        l.try_acquire(&Colliding(4), at(1_600)),
        Err(KeyedError::RateLimited(RateLimited {
            retry_after: Duration::from_micros(1_200)
        }))
    );
    l.try_acquire(&Colliding(4), at(2_800)).unwrap();
    // A caller at or after the mark never notices it.
    l.try_acquire(&Colliding(5), at(9_000)).unwrap();
    assert_eq!(l.available(&Colliding(6), at(9_000)), 1);
}

/// A tier the limiter does not have is an error at call time, never a
/// silent clamp to the last tier: from `try_acquire_tier` whether or not the
/// key is present, from the tier function for a new key. Nothing is
/// charged or inserted, the refusal is counted, and `available` reads 0 for
/// a key that could never be inserted.
#[test]
fn a_tier_out_of_range_is_a_typed_error() {
    let l: KeyedLimiter<u32, 8, 2> =
        KeyedLimiter::with_tiers([per_sec(1), per_sec(5)], FullPolicy::Reject)
            .expect("quota within the keyed range");
    l.try_acquire_tier(&1, 1, T0).unwrap();
    for (key, tier) in [(1, 2), (2, 2), (3, usize::MAX)] {
        let got = l.try_acquire_tier(&key, tier, T0);
        assert_eq!(got, Err(KeyedError::TierOutOfRange { tier }));
        assert_eq!(got.unwrap_err().retry_after(), None);
    }
    assert_eq!(l.available(&1, T0), 4, "key 1 untouched");
    let m = l.metrics();
    assert_eq!((m.allowed, m.limited, m.keys), (1, 3, 1));

    // The tier function: keys from 100 on get tier 7.
    let l = l.with_tier_fn(|k| if *k >= 100 { 7 } else { 0 });
    assert_eq!(
        l.try_acquire(&100, T0),
        Err(KeyedError::TierOutOfRange { tier: 7 })
    );
    assert_eq!(
        l.try_acquire_n(&101, 2, T0),
        Err(KeyedError::TierOutOfRange { tier: 7 })
    );
    assert_eq!(l.available(&100, T0), 0, "would never be admitted");
    l.try_acquire(&5, T0).unwrap(); // tier 0 still fine
    let m = l.metrics();
    assert_eq!((m.allowed, m.limited, m.keys), (2, 5, 2));
    assert_eq!(
        KeyedError::TierOutOfRange { tier: 7 }.to_string(),
        "no quota tier 7 in this limiter"
    );
}

/// A documented limit of the eviction marks (the `marks` module), pinned
/// so that a change of it is seen: an eviction by a caller further behind
/// a mark than every tier's horizon (here 1 s after the epoch, the real
/// callers near the end of time) replaces it, so a key evicted under it
/// comes back full to a caller 0.5 ms behind its eviction: a second token
/// within 0.5 ms on a burst of 1, where
/// `an_evicted_key_gets_no_second_burst_from_a_stale_clock` refuses it.
/// The mirror of `a_mark_left_far_ahead_does_not_outlast_later_marks`: one
/// mark cannot serve two clocks that far apart, and keeping the latest
/// would let a clock far ahead hide every later mark for good.
#[test]
fn an_eviction_far_behind_replaces_a_mark_still_in_use() {
    let l: KeyedLimiter<Colliding, 2> =
        KeyedLimiter::new(one_per_ms(), FullPolicy::Reject).expect("quota within the keyed range");
    let at = Instant::from_micros;
    let t = u64::MAX - 100_000;
    l.try_acquire(&Colliding(2), at(t + 10_000)).unwrap(); // home slot
    l.try_acquire(&Colliding(1), at(t + 9_000)).unwrap(); // next slot
    l.try_acquire(&Colliding(3), at(t + 11_000)).unwrap(); // evicts key 2: mark t + 11 000
    assert_eq!(l.metrics().evictions, 1);
    // The caller far behind: key 4 evicts key 3 (which leaves no mark at
    // that `now`), key 5 evicts key 4, whose mark replaces key 2's.
    l.try_acquire(&Colliding(4), at(1_000_000)).unwrap();
    l.try_acquire(&Colliding(5), at(1_002_000)).unwrap();
    assert_eq!(l.metrics().evictions, 3);
    // Key 2 comes back (evicting key 1) full, 0.5 ms after its token.
    assert_eq!(l.try_acquire(&Colliding(2), at(t + 10_500)), Ok(()));
    assert_eq!(l.metrics().evictions, 4);
}
