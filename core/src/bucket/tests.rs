//! Unit tests on virtual time.

use super::*;

const T0: Instant = Instant::from_secs(1_000);

fn bucket(tokens: u32, period: Duration, burst: u32) -> TokenBucket {
    TokenBucket::new(
        Quota::new(tokens, period)
            .unwrap()
            .with_burst(burst)
            .unwrap(),
    )
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn steady_rate_admits_one_per_interval() {
    let b = bucket(10, Duration::from_secs(1), 1);
    let mut now = T0;
    for _ in 0..100 {
        assert!(b.try_acquire(now).is_ok());
        assert_eq!(b.try_acquire(now).unwrap_err().retry_after, ms(100));
        now += ms(100);
    }
}

#[test]
fn burst_then_exact_retry_after() {
    let b = bucket(4, Duration::from_secs(1), 4);
    for _ in 0..4 {
        b.try_acquire(T0).unwrap();
    }
    let wait = b.try_acquire(T0).unwrap_err().retry_after;
    assert_eq!(wait, ms(250));
    assert!(b.try_acquire(T0 + wait - Duration::from_micros(1)).is_err());
    assert!(
        b.try_acquire(T0 + wait).is_ok(),
        "exactly at now + retry_after"
    );
}

#[test]
fn n_token_requests_are_all_or_nothing() {
    let b = bucket(10, Duration::from_secs(1), 10);
    b.try_acquire_n(7, T0).unwrap();
    assert_eq!(b.available(T0), 3);
    let err = b.try_acquire_n(4, T0).unwrap_err();
    assert_eq!(
        err,
        AcquireError::RateLimited(RateLimited {
            retry_after: ms(100)
        })
    );
    assert_eq!(b.available(T0), 3, "a refused request takes nothing");
    b.try_acquire_n(4, T0 + ms(100)).unwrap();
    assert_eq!(b.try_acquire_n(0, T0), Ok(()));
}

#[test]
fn more_than_the_burst_is_its_own_error() {
    let b = bucket(10, Duration::from_secs(1), 5);
    assert_eq!(
        b.try_acquire_n(6, T0),
        Err(AcquireError::InsufficientCapacity(InsufficientCapacity {
            requested: 6,
            burst: 5
        }))
    );
    assert_eq!(
        b.try_acquire_n(u32::MAX, T0).unwrap_err(),
        AcquireError::InsufficientCapacity(InsufficientCapacity {
            requested: u32::MAX,
            burst: 5
        })
    );
    assert_eq!(b.available(T0), 5);
}

#[test]
fn available_refills_over_time_up_to_the_burst() {
    let b = bucket(2, Duration::from_secs(1), 6);
    b.try_acquire_n(6, T0).unwrap();
    assert_eq!(b.available(T0), 0);
    assert_eq!(b.available(T0 + ms(499)), 0);
    assert_eq!(b.available(T0 + ms(500)), 1);
    assert_eq!(b.available(T0 + ms(2_999)), 5);
    assert_eq!(b.available(T0 + Duration::from_secs(60)), 6);
}

#[test]
fn time_going_backwards_does_not_admit_extra_tokens() {
    let b = bucket(1, Duration::from_secs(1), 2);
    b.try_acquire_n(2, T0).unwrap();
    for back in [1, 10, 300, 999] {
        let earlier = T0 - ms(back);
        assert!(b.try_acquire(earlier).is_err(), "{back} ms back");
        assert_eq!(b.available(earlier), 0);
    }
    // Forward again: exactly on schedule.
    assert!(b.try_acquire(T0 + Duration::from_secs(1)).is_ok());
    assert!(b.try_acquire(T0 + Duration::from_secs(1)).is_err());
}

#[test]
fn very_high_and_very_low_rates_are_exact() {
    // Ten million per second: exactly 10 per microsecond.
    let b = bucket(10_000_000, Duration::from_secs(1), 100);
    b.try_acquire_n(100, T0).unwrap();
    assert_eq!(b.available(T0 + Duration::from_micros(3)), 30);
    assert_eq!(
        b.try_acquire_n(31, T0 + Duration::from_micros(3))
            .unwrap_err(),
        AcquireError::RateLimited(RateLimited {
            retry_after: Duration::from_micros(1)
        })
    );
    // One per day: beyond the 32-bit word's range (about 35 minutes of
    // burst span at scale 1), a typed error there.
    let day = Quota::with_period(Duration::from_secs(86_400));
    if !cfg!(target_has_atomic = "64") {
        assert_eq!(day.unwrap_err(), QuotaError::TooLong);
        return;
    }
    let b = TokenBucket::new(day.unwrap());
    b.try_acquire(T0).unwrap();
    let wait = b.try_acquire(T0).unwrap_err().retry_after;
    assert_eq!(wait, Duration::from_secs(86_400));
    assert!(b.try_acquire(T0 + wait - Duration::from_micros(1)).is_err());
    assert!(b.try_acquire(T0 + wait).is_ok());
}

#[test]
fn huge_instants_do_not_panic() {
    let b = bucket(1_000, Duration::from_secs(1), 10);
    for now in [
        Instant::MAX,
        Instant::ZERO,
        Instant::from_micros(u64::MAX - 5),
    ] {
        let _ = b.try_acquire_n(10, now);
        let _ = b.try_acquire(now);
        let _ = b.available(now);
        let _ = b.snapshot(now);
    }
    // Near u64::MAX the bucket still limits.
    let b = bucket(1, Duration::from_secs(1), 1);
    let late = Instant::from_micros(u64::MAX - 10);
    b.try_acquire(late).unwrap(); // fresh: full at any time
    assert!(b.try_acquire(late).is_err());
    assert!(b.try_acquire(Instant::MAX).is_err());
}

#[test]
fn invalid_quotas_are_errors() {
    assert_eq!(Quota::per_second(0), Err(QuotaError::ZeroTokens));
    assert_eq!(Quota::new(1, Duration::ZERO), Err(QuotaError::ZeroPeriod));
    let sub_micro: Duration = core::time::Duration::from_nanos(999).into();
    assert_eq!(Quota::new(1, sub_micro), Err(QuotaError::ZeroPeriod));
    assert_eq!(
        Quota::per_second(1).unwrap().with_burst(0),
        Err(QuotaError::ZeroBurst)
    );
    assert_eq!(
        Quota::new(1, Duration::MAX).unwrap_err(),
        QuotaError::TooLong
    );
}

#[test]
fn reset_refills() {
    let b = bucket(1, Duration::from_secs(10), 3);
    b.try_acquire_n(3, T0).unwrap();
    b.reset();
    assert_eq!(b.available(T0), 3);
}

#[test]
fn snapshot_restore_carries_the_drain_across_clocks() {
    let a = bucket(10, Duration::from_secs(1), 10);
    a.try_acquire_n(6, T0).unwrap();
    let s = a.snapshot(T0);
    assert_eq!(s.until_full, ms(600));
    let b = bucket(10, Duration::from_secs(1), 10);
    let elsewhere = Instant::from_secs(5);
    b.restore(&s, elsewhere);
    assert_eq!(b.available(elsewhere), 4);
    // A hostile snapshot can only deny.
    b.restore(
        &BucketSnapshot {
            until_full: Duration::MAX,
        },
        elsewhere,
    );
    assert_eq!(b.available(elsewhere), 0);
    assert_eq!(b.available(elsewhere + Duration::from_secs(1)), 10);
}

#[test]
#[allow(deprecated)] // the `&mut` form stays until it is removed
fn reconfigure_keeps_available_tokens() {
    let mut b = bucket(10, Duration::from_secs(1), 10);
    b.try_acquire_n(8, T0).unwrap();
    // Raise: still 2 now, no free burst; refills at the new rate.
    b.reconfigure(Quota::per_second(100).unwrap(), T0);
    assert_eq!(b.available(T0), 2);
    assert_eq!(b.available(T0 + ms(10)), 3);
    assert_eq!(b.available(T0 + Duration::from_secs(1)), 100);
    // Lower: clamped to the new burst.
    b.reconfigure(
        Quota::per_second(1).unwrap().with_burst(5).unwrap(),
        T0 + Duration::from_secs(1),
    );
    assert_eq!(b.available(T0 + Duration::from_secs(1)), 5);
    b.try_acquire_n(5, T0 + Duration::from_secs(1)).unwrap();
    assert!(b.try_acquire(T0 + Duration::from_secs(1)).is_err());
}

#[test]
fn size_is_as_documented() {
    #[cfg(target_has_atomic = "64")]
    assert_eq!(core::mem::size_of::<TokenBucket>(), 96);
    #[cfg(not(target_has_atomic = "64"))]
    assert_eq!(core::mem::size_of::<TokenBucket>(), 68);
}
