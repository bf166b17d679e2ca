//! Scenarios re-expressed from other GCRA and token-bucket limiters' test
//! suites (throttled's step tables, go-redis/redis_rate's allow / allow-N
//! / retry-after cases, the `ratelimit` crate's idle and capacity cases),
//! each in fusebox's terms: a burst of `b` tokens, refilled at the quota's
//! rate, `RetryAfter` exact to the µs, `until_full` as redis_rate's
//! `ResetAfter` and throttled's `ResetAfter`. The expected figures are
//! worked out from the documented contract, not taken from the peers
//! (whose conventions differ: throttled's `MaxBurst` is one below the
//! burst, redis_rate reports "never" as a retry of -1).

use fusebox::bucket::{AcquireError, FullPolicy, KeyedError, KeyedLimiter, Quota, TokenBucket};
use fusebox::{Duration, Instant};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn at(base: Instant, offset: Duration) -> Instant {
    base + offset
}

fn retry(r: Result<(), AcquireError>) -> Duration {
    match r {
        Err(AcquireError::RateLimited(e)) => e.retry_after,
        other => panic!("expected a refusal for now, got {other:?}"),
    }
}

/// throttled's step table, with a rate of 1 a second and a burst of 6 (its
/// `MaxBurst: 5`): each step is (time, quantity, admitted, tokens left,
/// time until full, retry after).
#[test]
fn throttled_style_step_table() {
    let q = Quota::per_second(1).unwrap().with_burst(6).unwrap();
    let b = TokenBucket::new(q);
    let t0 = Instant::from_secs(1_000);
    #[allow(clippy::type_complexity)]
    let steps: &[(u64, u32, bool, u32, u64, u64)] = &[
        // ms, n, admitted, left, until full ms, retry ms
        (0, 1, true, 5, 1_000, 0),
        (0, 1, true, 4, 2_000, 0),
        (0, 4, true, 0, 6_000, 0),
        (0, 1, false, 0, 6_000, 1_000),
        (0, 6, false, 0, 6_000, 6_000),
        (1_000, 1, true, 0, 6_000, 0),
        (3_500, 3, false, 2, 3_500, 500),
        (3_500, 2, true, 0, 5_500, 0),
        (3_500, 0, true, 0, 5_500, 0),
        (9_000, 6, true, 0, 6_000, 0),
        (60_000, 1, true, 5, 1_000, 0),
    ];
    for (i, &(t, n, admitted, left, full, wait)) in steps.iter().enumerate() {
        let now = at(t0, ms(t));
        let r = b.try_acquire_n(n, now);
        if admitted {
            assert_eq!(r, Ok(()), "step {i}");
        } else {
            assert_eq!(retry(r), ms(wait), "step {i}");
        }
        assert_eq!(b.available(now), left, "step {i}");
        assert_eq!(b.snapshot(now).until_full, ms(full), "step {i}");
    }
    // A quantity over the burst can never be admitted (throttled: a
    // retry of -1; here an error of its own, naming the burst).
    assert!(matches!(
        b.try_acquire_n(7, at(t0, ms(600_000))),
        Err(AcquireError::InsufficientCapacity(e)) if e.requested == 7 && e.burst == 6
    ));
}

/// redis_rate: 10 a second, burst 10. One request leaves 9 and full again
/// after 100 ms; two more leave 7, full after 300 ms; asking for 100 is
/// never possible and charges nothing; the burst drained, the next token
/// is 100 ms away, and after it exactly one is admitted.
#[test]
fn redis_rate_style_allow_and_allow_n() {
    let b = TokenBucket::new(Quota::per_second(10).unwrap());
    let now = Instant::from_secs(77);
    assert_eq!(b.try_acquire(now), Ok(()));
    assert_eq!((b.available(now), b.snapshot(now).until_full), (9, ms(100)));
    assert_eq!(b.try_acquire_n(2, now), Ok(()));
    assert_eq!((b.available(now), b.snapshot(now).until_full), (7, ms(300)));
    assert!(matches!(
        b.try_acquire_n(100, now),
        Err(AcquireError::InsufficientCapacity(_))
    ));
    assert_eq!(
        b.available(now),
        7,
        "a request over the burst charges nothing"
    );
    assert_eq!(b.try_acquire_n(7, now), Ok(()));
    let wait = retry(b.try_acquire_n(1, now));
    assert_eq!(wait, ms(100));
    assert_eq!(
        retry(b.try_acquire_n(1, now + wait - Duration::from_micros(1))),
        Duration::from_micros(1)
    );
    assert_eq!(b.try_acquire(now + wait), Ok(()));
    assert!(b.try_acquire(now + wait).is_err());
}

/// redis_rate's retry-after case: one per millisecond, burst 1. After an
/// admission the retry is at most the interval, and exact.
#[test]
fn redis_rate_style_retry_after_one_per_millisecond() {
    let b = TokenBucket::new(Quota::new(1, ms(1)).unwrap());
    let mut now = Instant::from_micros(123_456_789);
    for _ in 0..1_000 {
        assert_eq!(b.try_acquire(now), Ok(()));
        let wait = retry(b.try_acquire_n(1, now + Duration::from_micros(250)));
        assert_eq!(wait, Duration::from_micros(750));
        now += ms(1);
    }
}

/// redis_rate keys its limits by name: each key is limited on its own,
/// with the same figures as a single bucket.
#[test]
fn redis_rate_style_keys_are_independent() {
    let l: KeyedLimiter<&str, 16> =
        KeyedLimiter::new(Quota::per_second(10).unwrap(), FullPolicy::Reject).unwrap();
    let now = Instant::from_secs(5);
    for key in ["user:1", "user:2", "ip:10.0.0.1"] {
        assert_eq!(l.try_acquire_n(&key, 10, now), Ok(()));
        match l.try_acquire(&key, now) {
            Err(KeyedError::RateLimited(e)) => assert_eq!(e.retry_after, ms(100)),
            other => panic!("{key}: {other:?}"),
        }
    }
    assert_eq!(l.available(&"user:3", now), 10);
}

/// The `ratelimit` crate's idle case: a bucket idle for an hour holds its
/// burst, no more, and then refills at the rate; over a long run, the
/// admissions in any window of `w` are at most `burst + rate·w`.
#[test]
fn ratelimit_style_idle_then_steady() {
    // 100 a second (one every 10 ms), burst 5.
    let b = TokenBucket::new(Quota::per_second(100).unwrap().with_burst(5).unwrap());
    let start = Instant::from_secs(3_600);
    let taken = (0..100).filter(|_| b.try_acquire(start).is_ok()).count();
    assert_eq!(taken, 5, "an hour idle is still one burst");
    // Then one call a millisecond for 10 s (1 s under Miri): one token
    // every 10 ms.
    let calls = if cfg!(miri) { 1_000 } else { 10_000 };
    let mut admitted = Vec::new();
    for k in 1..=calls {
        if b.try_acquire(start + ms(k)).is_ok() {
            admitted.push(k);
        }
    }
    assert_eq!(admitted.len() as u64, calls / 10);
    assert!(
        admitted.windows(2).all(|w| w[1] - w[0] == 10),
        "{admitted:?}"
    );
    // An idle hour again: the burst, once.
    let later = start + ms(calls) + Duration::from_secs(3_600);
    assert_eq!((0..100).filter(|_| b.try_acquire(later).is_ok()).count(), 5);
}
