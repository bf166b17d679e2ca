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
    if !cfg!(fusebox_wide_words) {
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
    let expected = if crate::sync::TAT_BITS == 64 { 104 } else { 68 };
    assert_eq!(core::mem::size_of::<TokenBucket>(), expected);
}

// --- set_quota ---------------------------------------------------------

fn quota(tokens: u32, period: Duration, burst: u32) -> Quota {
    Quota::new(tokens, period)
        .unwrap()
        .with_burst(burst)
        .unwrap()
}

#[test]
fn set_quota_returns_the_quota_replaced_and_reports_the_new_one() {
    let b = bucket(10, Duration::from_secs(1), 10);
    let q = quota(7, Duration::from_secs(3), 2);
    let old = b.set_quota(q, T0);
    assert_eq!(old, quota(10, Duration::from_secs(1), 10));
    assert_eq!(b.quota(), q);
    assert_eq!(b.set_quota(old, T0), q);
    assert_eq!(b.quota(), old);
}

#[test]
fn raising_the_burst_grants_no_free_tokens() {
    let b = bucket(10, Duration::from_secs(1), 10);
    b.try_acquire_n(7, T0).unwrap();
    b.set_quota(quota(10, Duration::from_secs(1), 50), T0);
    assert_eq!(b.available(T0), 3);
    assert_eq!(b.try_acquire_n(4, T0).unwrap_err(), limited(ms(100)));
    // Refills at the same rate, now up to 50.
    assert_eq!(b.available(T0 + Duration::from_secs(4)), 43);
    assert_eq!(b.available(T0 + Duration::from_secs(60)), 50);
    // A fresh bucket is full: its burst carries over, not the new one.
    let b = bucket(10, Duration::from_secs(1), 10);
    b.set_quota(quota(10, Duration::from_secs(1), 50), T0);
    assert_eq!(b.available(T0), 10);
}

#[test]
fn lowering_the_burst_clamps_what_is_available() {
    let b = bucket(10, Duration::from_secs(1), 10);
    b.try_acquire_n(2, T0).unwrap(); // 8 left
    b.set_quota(quota(10, Duration::from_secs(1), 5), T0);
    assert_eq!(b.available(T0), 5);
    b.try_acquire_n(5, T0).unwrap();
    assert_eq!(b.try_acquire(T0).unwrap_err().retry_after, ms(100));
    // The burst limit is the new one, at once.
    assert_eq!(
        b.try_acquire_n(6, T0),
        Err(AcquireError::InsufficientCapacity(InsufficientCapacity {
            requested: 6,
            burst: 5
        }))
    );
}

#[test]
fn a_new_rate_refills_from_now_on() {
    let b = bucket(1, Duration::from_secs(1), 4);
    b.try_acquire_n(4, T0).unwrap();
    let later = T0 + ms(500); // half a token refilled at the old rate
    b.set_quota(quota(10, Duration::from_secs(1), 4), later);
    // The half token carries over (5 of the new tenths), then 10/s.
    assert_eq!(b.available(later), 0);
    assert_eq!(b.try_acquire(later).unwrap_err().retry_after, ms(50));
    assert_eq!(b.available(later + ms(50)), 1);
    assert_eq!(b.available(later + ms(350)), 4);
    // Lowering the rate: the fraction carries over the other way.
    let b = bucket(10, Duration::from_secs(1), 4);
    b.try_acquire_n(4, T0).unwrap();
    b.set_quota(quota(1, Duration::from_secs(1), 4), T0 + ms(150)); // 1.5 tokens
    assert_eq!(b.available(T0 + ms(150)), 1);
    assert_eq!(b.available(T0 + ms(649)), 1);
    assert_eq!(b.available(T0 + ms(650)), 2);
}

#[test]
fn fractions_of_a_token_carry_over() {
    // 3/s (scale 3) to 7/s (scale 7): 1.5 tokens stay 1.5 tokens.
    let b = bucket(3, Duration::from_secs(1), 3);
    b.try_acquire_n(3, T0).unwrap();
    let at = T0 + ms(500);
    b.set_quota(quota(7, Duration::from_secs(1), 7), at);
    assert_eq!(b.available(at), 1);
    // Half a token at 7/s: 1/14 s.
    let wait = b.try_acquire_n(2, at).unwrap_err();
    assert_eq!(wait, limited(Duration::from_micros(71_429)));
}

#[test]
fn a_stale_now_never_turns_a_debt_into_tokens() {
    // Drained at T0 + 2 s; the change comes with a clock read at T0 + 1 s.
    let b = bucket(1, Duration::from_secs(1), 3);
    let late = T0 + Duration::from_secs(2);
    b.try_acquire_n(3, late).unwrap();
    for (q, burst) in [
        (quota(1, Duration::from_secs(1), 3), 3), // the same quota
        (quota(1, Duration::from_secs(1), 9), 9), // a larger burst
        (quota(1, Duration::from_secs(2), 1), 1), // slower, smaller
    ] {
        let b2 = bucket(1, Duration::from_secs(1), 3);
        b2.try_acquire_n(3, late).unwrap();
        b2.set_quota(q, T0 + Duration::from_secs(1));
        assert_eq!(b2.available(late), 0, "{q:?}");
        // One interval of the new quota after the drain, one token back.
        let interval = q.replenish_interval();
        assert_eq!(b2.available(late + interval - ms(1)), 0, "{q:?}");
        assert_eq!(b2.available(late + interval), 1, "{q:?}");
        assert_eq!(b2.available(late + Duration::from_secs(60)), burst);
    }
    // The same quota at a stale `now` changes nothing at all (1 s stale:
    // within the 32-bit word's ~1.05 s backward tolerance).
    b.set_quota(b.quota(), T0 + Duration::from_secs(1));
    for t in [0, 999, 1_000, 2_999, 3_000] {
        assert_eq!(b.available(late + ms(t)), (t / 1_000) as u32);
    }
}

#[test]
fn a_stale_now_dates_a_change_of_rate_back_not_the_level() {
    // 5 of 10 left at T0 + 5 s; a change to 100/s stamped T0 + 4 s reads
    // 4 of them (as at T0 + 4 s) and refills at 100/s from T0 + 4 s.
    let b = bucket(1, Duration::from_secs(1), 10);
    let late = T0 + Duration::from_secs(5);
    b.try_acquire_n(5, late).unwrap();
    b.set_quota(
        quota(100, Duration::from_secs(1), 10),
        T0 + Duration::from_secs(4),
    );
    assert_eq!(b.available(T0 + Duration::from_secs(4)), 4);
    assert_eq!(b.available(T0 + Duration::from_secs(4) + ms(20)), 6);
    assert_eq!(b.available(late), 10);
}

#[test]
fn changes_compose_and_round_trip() {
    let b = bucket(10, Duration::from_secs(1), 10);
    b.try_acquire_n(4, T0).unwrap();
    let q = b.quota();
    // Back and forth at one instant through a finer quota: no change.
    for _ in 0..5 {
        b.set_quota(quota(1_000, Duration::from_secs(1), 1_000), T0);
        b.set_quota(q, T0);
    }
    assert_eq!(b.available(T0), 6);
    assert_eq!(b.try_acquire_n(7, T0).unwrap_err(), limited(ms(100)));
    assert_eq!(b.snapshot(T0).until_full, ms(400));
}

#[test]
fn many_changes_keep_deciding_exactly() {
    // Each change flips the slot; decisions in between stay exact.
    let b = bucket(2, Duration::from_secs(1), 2);
    let mut now = T0;
    // Miri checks the memory accesses of a change, not the arithmetic.
    let changes: u32 = if cfg!(miri) { 60 } else { 1_000 };
    for i in 0..changes {
        let burst = 1 + i % 3;
        b.set_quota(quota(2, Duration::from_secs(1), burst), now);
        assert_eq!(b.quota().burst(), burst);
        let available = b.available(now);
        assert!(available <= burst);
        if available > 0 {
            b.try_acquire(now).unwrap();
        }
        now += ms(500);
    }
}

#[test]
fn reset_refills_around_the_last_admission() {
    let b = bucket(1, Duration::from_secs(10), 3);
    b.try_acquire_n(3, T0).unwrap();
    b.reset();
    assert_eq!(b.available(T0), 3);
    assert_eq!(b.available(T0 + Duration::from_secs(600)), 3);
    // Earlier `now`s too (a clock read before the admission).
    assert_eq!(b.available(T0 - Duration::from_secs(600)), 3);
    // And the next decision is an ordinary one: at an earlier `now`, the
    // burst from there.
    b.try_acquire_n(3, T0 - Duration::from_secs(600)).unwrap();
    assert_eq!(b.available(T0 - Duration::from_secs(600)), 0);
    assert_eq!(b.available(T0 - Duration::from_secs(590)), 1);
    b.reset();
    // After a quota change, reset refills to the new burst.
    b.try_acquire_n(3, T0).unwrap();
    b.set_quota(quota(1, Duration::from_secs(10), 5), T0);
    b.reset();
    assert_eq!(b.available(T0), 5);
    // A fresh bucket stays fresh: full at any time.
    let fresh = bucket(1, Duration::from_secs(10), 3);
    fresh.reset();
    assert_eq!(fresh.available(Instant::ZERO), 3);
    assert_eq!(fresh.available(Instant::MAX), 3);
}

/// A burst span over a third of the 32-bit word (28 at 22 a minute:
/// 840 000 000 of the 2³⁰ scaled units a Cortex-M quota may span): `reset`
/// refills it at the admission's instant and as far either way as its
/// docs say (`2³⁰ − capacity − tolerance/2` scaled units there, 6.5 s at
/// scale 11; years on 64 bits). It read 5 tokens of 28 at that instant on
/// 32 bits.
#[test]
fn reset_refills_a_long_burst_span() {
    let b = bucket(22, Duration::from_secs(60), 28);
    b.try_acquire(T0).unwrap();
    b.reset();
    assert_eq!(b.available(T0), 28);
    let range = Duration::from_micros(((1 << 30) - 840_000_000 - 11 * (1 << 19)) / 11);
    assert_eq!(b.available(T0 + range), 28);
    assert_eq!(b.available(T0 - range), 28);
    b.try_acquire_n(28, T0).unwrap();
    b.reset();
    assert_eq!(b.available(T0 + range), 28);
    assert_eq!(b.available(T0 - range), 28);
}

/// Rates whose exact scale leaves a 32-bit word no room for their burst
/// beside the ~1.05 s tolerance (541 a second is scale 541) take a coarser
/// scale there (the `gcra` docs), where they were refused: over 10 s of
/// greedy calls, at most their rate, and less by under 1/scale µs a
/// token. 64 bits keeps them exact.
#[test]
fn awkward_rates_fit_every_word() {
    // 10 s of 100 µs steps natively; under Miri, which interprets every
    // call, 541 a second for 1 s of 1 ms steps.
    let (rates, steps, step): (&[u32], u32, u64) = if cfg!(miri) {
        (&[541], 1_000, 1_000)
    } else {
        (&[541, 999, 1_031, 65_521], 100_000, 100)
    };
    for &tokens in rates {
        let quota = Quota::per_second(tokens).unwrap();
        let b = TokenBucket::new(quota);
        let keyed = KeyedLimiter::<u32, 4>::new(quota, FullPolicy::Reject).unwrap();
        let mut now = T0;
        b.try_acquire_n(tokens, now).unwrap();
        keyed.try_acquire_n(&7, tokens, now).unwrap();
        let (mut admitted, mut admitted_keyed) = (0u32, 0u32);
        for _ in 0..steps {
            now += Duration::from_micros(step);
            while b.try_acquire(now).is_ok() {
                admitted += 1;
            }
            while keyed.try_acquire(&7, now).is_ok() {
                admitted_keyed += 1;
            }
        }
        // Whole seconds: exactly this many at the rate.
        let seconds = u64::from(steps) * step / 1_000_000;
        let exact = tokens * u32::try_from(seconds).unwrap();
        for got in [admitted, admitted_keyed] {
            if crate::sync::TAT_BITS == 64 {
                assert_eq!(got, exact);
            } else {
                assert!(got <= exact, "{tokens}/s: {got} of {exact}");
                // Each interval is longer by under 1/scale µs: the last
                // token of a whole second can fall just past it.
                assert!(
                    got + 1 + exact / 1_000 >= exact,
                    "{tokens}/s: {got} of {exact}"
                );
            }
        }
    }
    // No scale gives a billion a second a burst of a billion both room
    // and resolution on 32 bits.
    let huge = Quota::per_second(1_000_000_000);
    assert_eq!(huge.is_err(), crate::sync::TAT_BITS == 32);
}

/// A quota a 32-bit word keeps at a coarser scale (541 a second with its
/// burst: scale 512, its interval 946 396 units) refills across the range
/// its docs give at that scale: `(2³⁰ − capacity − 2¹⁹·512) / 512` µs.
#[test]
fn reset_refills_a_coarse_quota_as_documented() {
    let b = TokenBucket::new(Quota::per_second(541).unwrap());
    b.try_acquire_n(541, T0).unwrap();
    b.reset();
    let range = if crate::sync::TAT_BITS == 32 {
        Duration::from_micros(((1 << 30) - 946_396 * 541 - (1 << 19) * 512) / 512)
    } else {
        Duration::from_secs(86_400 * 365)
    };
    assert!(range > Duration::from_millis(570));
    assert_eq!(b.available(T0 + range), 541);
    assert_eq!(b.available(T0 - range), 541);
}

#[test]
fn resetting_again_changes_nothing() {
    let b = bucket(1, Duration::from_secs(10), 3);
    b.try_acquire_n(3, T0).unwrap();
    for _ in 0..100 {
        b.reset();
    }
    for t in [
        T0 - Duration::from_secs(600),
        T0,
        T0 + Duration::from_secs(600),
    ] {
        assert_eq!(b.available(t), 3);
    }
    // A decision in between: the next reset refills around it.
    b.try_acquire_n(3, T0 + Duration::from_secs(5)).unwrap();
    b.reset();
    b.reset();
    assert_eq!(b.available(T0 + Duration::from_secs(5)), 3);
}

#[test]
fn restore_after_a_change_uses_the_quota_in_force() {
    let b = bucket(10, Duration::from_secs(1), 10);
    b.set_quota(quota(1, Duration::from_secs(1), 4), T0);
    b.restore(
        &BucketSnapshot {
            until_full: Duration::from_secs(3),
        },
        T0,
    );
    assert_eq!(b.available(T0), 1);
    assert_eq!(b.available(T0 + Duration::from_secs(3)), 4);
}

#[test]
fn changes_across_the_wrap_of_the_word() {
    // Scaled time wraps the word (2^W half units: at scale 65 536, 2^47 µs
    // on 64 bits; at scale 997, 2.2 s on 32) between changes; decisions
    // stay exact on both sides.
    let (fine, scale) = if crate::sync::TAT_BITS == 64 {
        (quota(65_537, Duration::from_secs(1), 5), 65_536) // clamped
    } else {
        (quota(997, Duration::from_millis(1), 5), 997)
    };
    let coarse = quota(1, Duration::from_millis(1), 5); // scale 1
    let b = TokenBucket::new(fine);
    let wrap = (1u64 << (crate::sync::TAT_BITS - 1)) / scale;
    let mut now = Instant::from_micros(wrap - 3);
    for step in 0..40u64 {
        let q = if step % 2 == 0 { coarse } else { fine };
        b.set_quota(q, now);
        b.try_acquire_n(5, now).unwrap();
        assert!(b.try_acquire(now).is_err());
        now += Duration::from_millis(5); // full again under either quota
        assert_eq!(b.available(now), 5, "step {step}");
    }
}

#[test]
fn set_quota_is_reconfigure_through_a_shared_reference() {
    #[allow(deprecated)]
    fn reconfigured(q: Quota, now: Instant) -> TokenBucket {
        let mut b = bucket(10, Duration::from_secs(1), 10);
        b.try_acquire_n(3, T0).unwrap();
        b.reconfigure(q, now);
        b
    }
    let shared = bucket(10, Duration::from_secs(1), 10);
    shared.try_acquire_n(3, T0).unwrap();
    let q = quota(3, Duration::from_secs(2), 4);
    shared.set_quota(q, T0 + ms(70));
    let exclusive = reconfigured(q, T0 + ms(70));
    for t in (0..3_000).step_by(37) {
        let now = T0 + ms(t);
        assert_eq!(shared.available(now), exclusive.available(now));
        assert_eq!(shared.snapshot(now), exclusive.snapshot(now));
    }
}

fn limited(retry_after: Duration) -> AcquireError {
    AcquireError::RateLimited(RateLimited { retry_after })
}

/// A burst that fits the word at a rate whose own burst (`tokens`) does
/// not: 100 an hour with a burst of 5 (a 3-minute span), 7 an hour with a
/// burst of 2 (17.1 min, under the 17.9 min a 32-bit word holds at scale
/// 1). On Cortex-M `Quota::per_hour(100)` is refused (its burst of 100
/// spans an hour), so `with_burst` could not reach either: they are built
/// directly, on every target, equal to what `with_burst` gives where both
/// work, and limit as any quota does. A burst that does not fit is still
/// refused.
#[test]
fn a_burst_that_fits_is_built_without_the_rates_own_burst() {
    let hour = Duration::from_secs(3_600);
    for (tokens, burst) in [(100, 5), (7, 2)] {
        let q = Quota::new_with_burst(tokens, hour, burst).unwrap();
        assert_eq!((q.tokens(), q.period(), q.burst()), (tokens, hour, burst));
        if crate::sync::TAT_BITS == 32 {
            assert_eq!(Quota::new(tokens, hour), Err(QuotaError::TooLong));
        } else {
            assert_eq!(Quota::new(tokens, hour).unwrap().with_burst(burst), Ok(q));
        }
        let b = TokenBucket::new(q);
        b.try_acquire_n(burst, T0).unwrap();
        let interval = Duration::from_micros(3_600_000_000_u64.div_ceil(u64::from(tokens)));
        assert_eq!(
            b.try_acquire(T0),
            Err(RateLimited {
                retry_after: interval
            })
        );
        assert_eq!(b.try_acquire(T0 + interval), Ok(()));
        let keyed = KeyedLimiter::<u32, 4>::new(q, FullPolicy::Reject).unwrap();
        keyed.try_acquire_n(&1, burst, T0).unwrap();
        assert!(keyed.try_acquire(&1, T0).is_err());
    }
    assert_eq!(
        Quota::new_with_burst(7, hour, 3).is_err(),
        crate::sync::TAT_BITS == 32
    );
    assert_eq!(
        Quota::new_with_burst(7, hour, 0),
        Err(QuotaError::ZeroBurst)
    );
}
