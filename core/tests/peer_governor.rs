//! Scenarios from governor's test suite (`governor/tests/direct.rs`,
//! `keyed_hashmap.rs`, `proptests.rs`), re-expressed against fusebox's
//! `TokenBucket` and `KeyedLimiter`, plus the same scenarios driven past
//! the words' ranges: instants near `u64::MAX`, clocks going backwards,
//! long histories. Expectations come from fusebox's documented contract
//! (the `bucket` module docs, `gcra` docs, `KeyedLimiter` docs), not from
//! its implementation.

// Long histories of the public, safe API: native runs only (Miri runs
// the unit tests and the shorter integration tests, which take the same
// unsafe paths).
#![cfg(not(miri))]

use fusebox::bucket::{
    AcquireError, FullPolicy, InsufficientCapacity, KeyedError, KeyedLimiter, Quota, QuotaError,
    RateLimited, TokenBucket,
};
use fusebox::{Duration, Instant};

/// Whether this build keeps arrival times in 32-bit words (Cortex-M, or a
/// host built with `--cfg fusebox_narrow_words`): the crate docs narrow the
/// ranges there (a `now` at most ~1.05 s stale, burst spans under 2³⁰
/// scaled units).
const NARROW: bool = !cfg!(target_has_atomic = "64") || cfg!(fusebox_narrow_words);

/// How far back a stale `now` may be and still only deny: years with
/// 64-bit words (50.9 days for a keyed slot at scale 1), ~1.05 s with 32.
fn within_tolerance(back: Duration) -> bool {
    !NARROW || back < Duration::from_micros(1 << 20)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn per_sec(n: u32) -> Quota {
    Quota::per_second(n).unwrap()
}

/// `burst × period / tokens`, rounded up to a microsecond.
fn burst_span(q: Quota) -> Duration {
    let num = u128::from(q.period().as_micros()) * u128::from(q.burst());
    Duration::from_micros(num.div_ceil(u128::from(q.tokens())) as u64)
}

fn denied(r: Result<(), RateLimited>) -> bool {
    r.is_err()
}

/// governor `rejects_too_many`: 2/s, two within a millisecond, the third
/// refused; a second later the same again.
#[test]
fn governor_rejects_too_many() {
    let b = TokenBucket::new(per_sec(2));
    let mut now = Instant::from_secs(7);
    assert!(b.try_acquire(now).is_ok());
    now += ms(1);
    assert!(b.try_acquire(now).is_ok());
    now += ms(1);
    assert!(denied(b.try_acquire(now)));
    now += ms(1000);
    assert!(b.try_acquire(now).is_ok());
    now += ms(1);
    assert!(b.try_acquire(now).is_ok());
    now += ms(1);
    assert!(denied(b.try_acquire(now)));
}

/// governor issues #107/#249 (`does_not_allow_one_extra_cell_after_longer_interval`):
/// idling much longer than the refill time must not bank an extra token.
#[test]
fn governor_no_extra_cell_after_long_idle() {
    for idle in [2, 10, 3_600, 86_400 * 365] {
        let b = TokenBucket::new(per_sec(5));
        let t = Instant::from_secs(1);
        for _ in 0..5 {
            b.try_acquire(t).unwrap();
        }
        assert!(denied(b.try_acquire(t)));
        let later = t + Duration::from_secs(idle);
        assert_eq!(b.available(later), 5, "idle {idle}s");
        for _ in 0..5 {
            b.try_acquire(later).unwrap();
        }
        assert!(
            denied(b.try_acquire(later)),
            "idle {idle}s banked an extra token"
        );
    }
}

/// governor `all_capacity_check_rejects_excess` / `rejects_too_many_all`:
/// more than the burst at once is `InsufficientCapacity` now and forever;
/// exactly the burst passes.
#[test]
fn governor_check_n_insufficient_capacity() {
    let b = TokenBucket::new(per_sec(5));
    let t = Instant::from_secs(3);
    for n in [15, 7, 6, u32::MAX] {
        assert_eq!(
            b.try_acquire_n(n, t),
            Err(AcquireError::InsufficientCapacity(InsufficientCapacity {
                requested: n,
                burst: 5
            }))
        );
        assert_eq!(
            b.try_acquire_n(n, t + Duration::from_secs(3_000)),
            Err(AcquireError::InsufficientCapacity(InsufficientCapacity {
                requested: n,
                burst: 5
            }))
        );
    }
    assert_eq!(b.available(t), 5, "a refused request takes nothing");
    assert_eq!(b.try_acquire_n(5, t), Ok(()));
    // n = 0 always succeeds, even drained.
    assert_eq!(b.try_acquire_n(0, t), Ok(()));
}

/// governor `never_allows_more_than_capacity_all`: 4/s in pairs.
#[test]
fn governor_never_allows_more_than_capacity_all() {
    let b = TokenBucket::new(per_sec(4));
    let mut now = Instant::from_secs(1);
    assert_eq!(b.try_acquire_n(2, now), Ok(()));
    assert_eq!(b.try_acquire_n(2, now), Ok(()));
    now += ms(1);
    assert!(matches!(
        b.try_acquire_n(2, now),
        Err(AcquireError::RateLimited(_))
    ));
    now += ms(1000);
    assert_eq!(b.try_acquire_n(2, now), Ok(()));
    now += ms(1);
    assert_eq!(b.try_acquire_n(2, now), Ok(()));
    now += ms(1);
    assert!(matches!(
        b.try_acquire_n(2, now),
        Err(AcquireError::RateLimited(_))
    ));
}

/// governor `correct_wait_time`, tightened: the wait is exact to the
/// microsecond ("rounded up to a microsecond"; "retrying after
/// `retry_after` succeeds"), so one microsecond earlier is still refused.
/// Checked for rates whose interval is not a whole number of µs.
#[test]
fn governor_correct_wait_time_exact() {
    for (tokens, burst) in [(5, 5), (3, 3), (7, 2), (1_000_003, 11), (999_999, 1)] {
        let b = TokenBucket::new(per_sec(tokens).with_burst(burst).unwrap());
        let mut now = Instant::from_secs(1);
        let mut conforming = 0;
        for _ in 0..200 {
            now += Duration::from_micros(1);
            match b.try_acquire(now) {
                Ok(()) => conforming += 1,
                Err(RateLimited { retry_after }) => {
                    assert!(
                        !retry_after.is_zero(),
                        "{tokens}/s: a zero wait that refuses"
                    );
                    let early = now + retry_after - Duration::from_micros(1);
                    assert!(
                        denied(b.try_acquire(early)),
                        "{tokens}/s: admitted 1 µs before the stated wait {retry_after:?}"
                    );
                    now += retry_after;
                    assert_eq!(b.try_acquire(now), Ok(()), "{tokens}/s at +{retry_after:?}");
                    conforming += 1;
                }
            }
        }
        assert_eq!(conforming, 200);
    }
}

/// governor `actual_threadsafety`: 20 threads take the 20-token burst at
/// once; the 21st request is refused until the refill.
#[test]
fn governor_actual_threadsafety() {
    let b = TokenBucket::new(per_sec(20));
    let t = Instant::from_secs(5);
    std::thread::scope(|s| {
        for _ in 0..20 {
            s.spawn(|| assert_eq!(b.try_acquire(t), Ok(())));
        }
    });
    assert!(denied(b.try_acquire(t + ms(2))));
    assert_eq!(b.try_acquire(t + ms(50)), Ok(()), "one token per 50 ms");
}

/// governor `stresstest_large_quotas`: 1 000 000 001 per second (a scale
/// beyond the exact range: the interval is rounded *up*, which "only
/// admits less") still admits its burst at once, and a burst of `u32::MAX`
/// can be asked for in one request.
#[test]
fn governor_large_quotas() {
    if NARROW {
        // A burst of a billion tokens cannot span 2³⁰ scaled units at a
        // resolution finer than 1/64 of its interval: refused, typed.
        for tokens in [1_000_000_001, u32::MAX] {
            assert_eq!(Quota::per_second(tokens), Err(QuotaError::TooLong));
        }
        return;
    }
    let q = per_sec(1_000_000_001);
    let b = TokenBucket::new(q);
    let t = Instant::from_secs(2);
    for _ in 0..1_000_000 {
        b.try_acquire(t).unwrap();
    }
    assert_eq!(b.available(t), 999_000_001);

    let max = per_sec(u32::MAX);
    let b = TokenBucket::new(max);
    assert_eq!(b.try_acquire_n(u32::MAX, t), Ok(()));
    assert!(b.try_acquire(t).is_err());
    // One second later: the interval is rounded up "by less than 1/65 536
    // µs" (the `bucket` docs), so at least 1e6 / (1e6/u32::MAX + 1/65 536)
    // tokens are back (about 4.03e9 of 4.29e9: at this rate the documented
    // rounding is ~6 % of the interval), and never more than the burst.
    let later = t + Duration::from_secs(1);
    let back = f64::from(b.available(later));
    let lower = 1e6 / (1e6 / f64::from(u32::MAX) + 1.0 / 65_536.0);
    assert!(
        back >= lower.floor() && back <= f64::from(u32::MAX),
        "{back} < {lower}"
    );
}

/// governor's `proptests` "cells are never admitted beyond the bound":
/// over any window of length `T`, at most `burst + ⌊rate·T⌋` admitted.
/// A greedy caller every 37 µs for a long history.
#[test]
fn governor_bound_over_long_history() {
    let q = per_sec(3).with_burst(4).unwrap();
    let b = TokenBucket::new(q);
    let start = Instant::from_secs(1);
    let mut admitted: Vec<u64> = Vec::new();
    let mut t = start;
    for _ in 0..2_000_000 {
        t += Duration::from_micros(37);
        if b.try_acquire(t).is_ok() {
            admitted.push(t.as_micros());
        }
    }
    // Window of 10 s: at most 4 + 30.
    let span = 10_000_000;
    let mut lo = 0;
    for hi in 0..admitted.len() {
        while admitted[hi] - admitted[lo] > span {
            lo += 1;
        }
        assert!(
            hi - lo < 4 + 30 + 1,
            "{} admissions within 10 s",
            hi - lo + 1
        );
    }
    // And greedy: the long-run rate is exactly 3/s.
    let elapsed_s = (t - start).as_micros() / 1_000_000;
    let n = admitted.len() as u64;
    assert!(
        n >= 3 * elapsed_s && n <= 3 * elapsed_s + 4 + 1,
        "{n} in {elapsed_s} s"
    );
}

/// Time going backwards (governor's clocks are monotonic; fusebox takes
/// any `now`): "time going backwards lands here too and can only deny",
/// "exact across ±2.2 years ... of backward jumps".
#[test]
fn stale_clock_only_denies_token_bucket() {
    let q = per_sec(10);
    let b = TokenBucket::new(q);
    let t = Instant::from_secs(400_000_000); // ~12.7 years in
    b.try_acquire_n(10, t).unwrap();
    for back in [
        Duration::from_micros(1),
        Duration::from_secs(1),
        Duration::from_secs(3_600),
        Duration::from_secs(86_400 * 365 * 2),
    ]
    .into_iter()
    .filter(|&back| within_tolerance(back))
    {
        let stale = t - back;
        assert_eq!(b.available(stale), 0, "{back:?} back");
        assert!(denied(b.try_acquire(stale)), "{back:?} back");
        let e = b.try_acquire(stale).unwrap_err();
        assert!(
            e.retry_after >= back,
            "wait {:?} shorter than the lag {back:?}",
            e.retry_after
        );
    }
    assert_eq!(b.available(t + Duration::from_secs(1)), 10);
}

/// The same scenarios at instants near `u64::MAX` (all `Instant`
/// arithmetic saturates; the bucket word is wrapped) for several scales.
#[test]
fn token_bucket_near_instant_max() {
    let quotas = [
        Quota::per_second(1),
        Quota::per_second(3),
        per_sec(7).with_burst(2),
        Quota::per_second(1_000_000),
        Quota::per_second(10_000_000),
        Quota::per_second(1_000_000_001),
        Quota::per_hour(1),
    ];
    for q in quotas {
        // With 32-bit words the last two are out of range (a burst span
        // over 2³⁰ scaled units), refused as such.
        let Ok(q) = q else {
            assert!(NARROW && q == Err(QuotaError::TooLong), "{q:?}");
            continue;
        };
        let span = burst_span(q);
        for base in [
            Instant::MAX - span - Duration::from_secs(10),
            Instant::MAX - span,
            Instant::from_micros(u64::MAX / 2),
            Instant::from_micros(1 << 62),
            Instant::from_micros((1 << 63) - 1),
            Instant::from_micros(1 << 63),
        ] {
            let b = TokenBucket::new(q);
            assert_eq!(b.available(base), q.burst(), "{q:?} fresh at {base:?}");
            assert_eq!(
                b.try_acquire_n(q.burst(), base),
                Ok(()),
                "{q:?} at {base:?}"
            );
            assert_eq!(b.available(base), 0, "{q:?} at {base:?}");
            let e = b.try_acquire(base).unwrap_err();
            assert!(
                e.retry_after <= q.replenish_interval(),
                "{q:?} at {base:?}: wait {:?}",
                e.retry_after
            );
            let next = base + e.retry_after;
            assert_eq!(b.try_acquire(next), Ok(()), "{q:?} at {base:?} + wait");
            // Full again one burst span (plus rounding) later, where that
            // instant exists (`Instant` arithmetic saturates at `MAX`).
            // The interval may be rounded up by < 1/65 536 µs per token.
            let slack = Duration::from_micros(u64::from(q.burst()) / 65_536 + 1);
            if let Some(full) = next.checked_add(span + q.replenish_interval() + slack) {
                assert_eq!(b.available(full), q.burst(), "{q:?} at {full:?}");
            } else {
                assert!(
                    b.available(Instant::MAX) < q.burst(),
                    "{q:?}: full before its time"
                );
            }
        }
    }
}

/// A fresh bucket at the very last instant, and a drained one read there.
#[test]
fn token_bucket_at_instant_max() {
    let b = TokenBucket::new(per_sec(3));
    assert_eq!(b.available(Instant::MAX), 3, "never used: full at any time");
    b.try_acquire_n(3, Instant::MAX).unwrap();
    assert_eq!(b.available(Instant::MAX), 0);
    assert!(denied(b.try_acquire(Instant::MAX)));
    assert!(denied(b.try_acquire(Instant::MAX - Duration::from_secs(1))));
    b.reset();
    assert_eq!(b.available(Instant::MAX), 3, "reset refills");
}

// ---------------------------------------------------------------- keyed

/// governor `default_keyed` / keyed `check_key`: each key its own bucket,
/// with governor's `rejects_too_many` per key.
#[test]
fn governor_keyed_rejects_too_many_per_key() {
    let l: KeyedLimiter<u64, 64> = KeyedLimiter::new(per_sec(2), FullPolicy::Reject).unwrap();
    let mut now = Instant::from_secs(9);
    for key in 0..20u64 {
        l.try_acquire(&key, now).unwrap();
    }
    now += ms(1);
    for key in 0..20u64 {
        l.try_acquire(&key, now).unwrap();
    }
    now += ms(1);
    for key in 0..20u64 {
        assert!(matches!(
            l.try_acquire(&key, now),
            Err(KeyedError::RateLimited(_))
        ));
    }
    now += ms(1000);
    for key in 0..20u64 {
        l.try_acquire(&key, now).unwrap();
    }
    let m = l.metrics();
    assert_eq!((m.allowed, m.limited, m.keys), (60, 20, 20));
}

/// governor keyed `check_key_n`: insufficient capacity per key, `n = 0`.
#[test]
fn governor_keyed_check_n() {
    let l: KeyedLimiter<u32, 8> = KeyedLimiter::new(per_sec(5), FullPolicy::Reject).unwrap();
    let t = Instant::from_secs(1);
    assert_eq!(
        l.try_acquire_n(&1, 6, t),
        Err(KeyedError::InsufficientCapacity(InsufficientCapacity {
            requested: 6,
            burst: 5
        }))
    );
    assert_eq!(l.available(&1, t), 5);
    assert_eq!(l.try_acquire_n(&1, 5, t), Ok(()));
    assert!(matches!(
        l.try_acquire_n(&1, 1, t),
        Err(KeyedError::RateLimited(_))
    ));
    assert_eq!(l.available(&2, t), 5, "another key untouched");
}

/// governor keyed_hashmap `retain_recent` / `len`: keys that went idle
/// make room; busy ones never do. fusebox evicts an idle key (its bucket
/// full again at the evicting caller's `now`) on demand instead of a
/// sweep.
#[test]
fn governor_keyed_retain_recent_as_eviction() {
    let l: KeyedLimiter<u32, 4> = KeyedLimiter::new(per_sec(2), FullPolicy::Reject).unwrap();
    let t = Instant::from_secs(10);
    for k in 0..4 {
        l.try_acquire(&k, t).unwrap();
    }
    assert_eq!(l.metrics().keys, 4);
    // All four busy (drained by one token): a fifth key finds no slot.
    assert_eq!(l.try_acquire(&99, t + ms(100)), Err(KeyedError::TableFull));
    // Half a second later all are full again: idle, evictable.
    let later = t + ms(500);
    l.try_acquire(&99, later).unwrap();
    let m = l.metrics();
    assert_eq!((m.keys, m.evictions, m.table_full), (4, 1, 1));
    // Still exactly one bucket per key: 99 has one token left.
    l.try_acquire(&99, later).unwrap();
    assert!(matches!(
        l.try_acquire(&99, later),
        Err(KeyedError::RateLimited(_))
    ));
}

/// An evicted key is "never fuller than it left": a caller whose `now` is
/// behind the eviction reads it at most as full as it was then.
#[test]
fn keyed_evicted_key_never_returns_fuller_for_stale_callers() {
    let l: KeyedLimiter<u32, 1> = KeyedLimiter::new(per_sec(2), FullPolicy::Reject).unwrap();
    let t = Instant::from_secs(50);
    l.try_acquire_n(&1, 2, t).unwrap(); // drained, full again at t + 1 s
    let evict_at = t + Duration::from_secs(1);
    l.try_acquire(&2, evict_at).unwrap(); // 1 was idle: evicted
    assert_eq!(l.metrics().evictions, 1);
    // At t + 0.5 s key 1 really held one token.
    let stale = t + ms(500);
    assert!(l.available(&1, stale) <= 1, "{}", l.available(&1, stale));
    assert_eq!(l.available(&1, t), 0, "at its drain it held nothing");
}

/// Keyed stale clocks: "a `now` up to 2^42 scaled units behind a previous
/// call's only denies (50.9 days at scale 1)".
#[test]
fn keyed_stale_clock_only_denies() {
    let l: KeyedLimiter<u32, 8> = KeyedLimiter::new(per_sec(1), FullPolicy::Reject).unwrap();
    let t = Instant::from_secs(100 * 86_400);
    l.try_acquire(&7, t).unwrap();
    for back in [
        Duration::from_micros(1),
        Duration::from_secs(1),
        Duration::from_secs(86_400),
        Duration::from_secs(50 * 86_400),
    ]
    .into_iter()
    .filter(|&back| within_tolerance(back))
    {
        let stale = t - back;
        assert_eq!(l.available(&7, stale), 0, "{back:?} back");
        assert!(
            matches!(l.try_acquire(&7, stale), Err(KeyedError::RateLimited(_))),
            "{back:?} back"
        );
    }
    assert_eq!(l.try_acquire(&7, t + Duration::from_secs(1)), Ok(()));
}

/// The keyed limiter near `u64::MAX`: the 48-bit arrival time wraps; the
/// decisions around one instant must stay those of a bucket.
#[test]
fn keyed_near_instant_max() {
    for q in [
        per_sec(1),
        per_sec(3),
        per_sec(1_000),
        per_sec(65_536).with_burst(3).unwrap(),
    ] {
        let span = burst_span(q);
        for base in [
            Instant::MAX - span - Duration::from_secs(5),
            Instant::MAX - span,
            Instant::from_micros(1 << 48),
            Instant::from_micros((1 << 48) - 1),
            Instant::from_micros(u64::MAX / 3),
        ] {
            let l: KeyedLimiter<u32, 8> = KeyedLimiter::new(q, FullPolicy::Reject).unwrap();
            assert_eq!(l.available(&1, base), q.burst());
            assert_eq!(
                l.try_acquire_n(&1, q.burst(), base),
                Ok(()),
                "{q:?} at {base:?}"
            );
            assert_eq!(l.available(&1, base), 0, "{q:?} at {base:?}");
            let Err(KeyedError::RateLimited(e)) = l.try_acquire(&1, base) else {
                panic!("{q:?} at {base:?}: admitted beyond the burst");
            };
            assert!(
                e.retry_after <= q.replenish_interval(),
                "{q:?}: {:?}",
                e.retry_after
            );
            assert_eq!(
                l.try_acquire(&1, base + e.retry_after),
                Ok(()),
                "{q:?} at {base:?}"
            );
        }
    }
}

/// Long keyed history: one key, a greedy caller every 113 µs for 2
/// million steps, the per-key bound holds and the rate is exact.
#[test]
fn keyed_bound_over_long_history() {
    let q = per_sec(7).with_burst(3).unwrap();
    let l: KeyedLimiter<u32, 4> = KeyedLimiter::new(q, FullPolicy::Reject).unwrap();
    let start = Instant::from_secs(1);
    let mut t = start;
    let mut admitted: Vec<u64> = Vec::new();
    for _ in 0..2_000_000 {
        t += Duration::from_micros(113);
        if l.try_acquire(&5, t).is_ok() {
            admitted.push(t.as_micros());
        }
    }
    let span = 1_000_000;
    let mut lo = 0;
    for hi in 0..admitted.len() {
        while admitted[hi] - admitted[lo] > span {
            lo += 1;
        }
        assert!(hi - lo < 3 + 7 + 1, "{} admissions within 1 s", hi - lo + 1);
    }
    let secs = (t - start).as_micros() / 1_000_000;
    let n = admitted.len() as u64;
    assert!(n >= 7 * secs && n <= 7 * secs + 3 + 1, "{n} in {secs} s");
    assert_eq!(l.metrics().allowed, n);
}

/// governor has no snapshots; fusebox's `restore` documents: "An
/// `until_full` beyond an empty bucket is clamped to empty, so a hostile
/// snapshot can only ever *deny* tokens." Driven with `Duration::MAX` and
/// instants at both ends of time.
#[test]
fn hostile_snapshot_only_denies_at_any_instant() {
    use fusebox::bucket::BucketSnapshot;
    let q = per_sec(4);
    let span = burst_span(q);
    for now in [
        Instant::ZERO,
        Instant::from_secs(1),
        Instant::from_micros(1 << 62),
        Instant::MAX - span - Duration::from_secs(1),
        Instant::MAX,
    ] {
        for until_full in [
            Duration::MAX,
            Duration::from_micros(u64::MAX / 2),
            span + ms(1),
        ] {
            let b = TokenBucket::new(q);
            b.restore(&BucketSnapshot { until_full }, now);
            assert_eq!(b.available(now), 0, "{now:?} {until_full:?}");
            assert!(denied(b.try_acquire(now)), "{now:?} {until_full:?}");
            let snap = b.snapshot(now);
            assert!(
                snap.until_full <= span,
                "{now:?}: clamped to empty, got {snap:?}"
            );
            if let Some(full) = now.checked_add(span) {
                assert_eq!(
                    b.available(full),
                    4,
                    "{now:?} {until_full:?}: refills from empty"
                );
            }
        }
    }
}

/// A snapshot round trip moved across time, at instants near `u64::MAX`:
/// the state is relative to the `now` it was taken at.
#[test]
fn snapshot_round_trip_moves_with_now() {
    let q = per_sec(10).with_burst(5).unwrap();
    for (taken, restored) in [
        (Instant::from_secs(5), Instant::MAX - Duration::from_secs(5)),
        (Instant::MAX - Duration::from_secs(5), Instant::from_secs(5)),
        (
            Instant::from_micros(1 << 63),
            Instant::from_micros((1 << 63) - 1),
        ),
    ] {
        let a = TokenBucket::new(q);
        a.try_acquire_n(3, taken).unwrap();
        let snap = a.snapshot(taken);
        assert_eq!(snap.until_full, ms(300));
        let b = TokenBucket::new(q);
        b.restore(&snap, restored);
        assert_eq!(b.available(restored), 2, "{taken:?} -> {restored:?}");
        assert_eq!(b.available(restored + ms(300)), 5);
        assert!(b.try_acquire_n(3, restored).is_err());
    }
}

/// `set_quota` with a stale `now` far behind the last admission (a backward
/// jump within the documented ±2.2 years): "a bucket that `now` reads as
/// overdrawn ... stays overdrawn for the same time (rounded up): a stale
/// `now` never turns a debt into tokens".
#[test]
fn set_quota_with_stale_now_keeps_the_debt() {
    let b = TokenBucket::new(per_sec(2));
    let t = Instant::from_secs(86_400 * 400);
    b.try_acquire_n(2, t).unwrap(); // full again at t + 1 s
    let back = if NARROW {
        ms(900)
    } else {
        Duration::from_secs(86_400 * 365)
    };
    let stale = t - back;
    b.set_quota(per_sec(1_000), stale);
    assert_eq!(b.available(t), 0, "debt kept at the current time");
    assert!(denied(b.try_acquire(t)));
    // Raised rate dated back to `stale`: by t + 1 s the old debt is paid.
    assert!(b.available(t + Duration::from_secs(1)) >= 1);
}
