//! Hostile long histories for the core's wrapping words: every packed
//! field, generation and time value kept in fewer bits than its range,
//! driven past that range with virtual instants far apart. The
//! expectations come from the documented contract (the crate docs' table
//! "Atomic words and their limits", the module docs), never from the code.
#![cfg(not(miri))]
#![allow(dead_code)] // the constants serve the sections of optional features

use crate::common;

const SEC: u64 = 1_000_000;
const DAY: u64 = 86_400 * SEC;

#[cfg(feature = "time-window")]
mod time_window {
    use super::{DAY, SEC};
    use fusebox::breaker::{Config, Outcome, State};
    use fusebox::{CircuitBreaker, Duration, Instant};

    fn at(us: u64) -> Instant {
        Instant::from_micros(us)
    }

    /// The time window (feature `time-window`): on every layout, a record
    /// counts for at most `total` after its interval, whatever idle time came
    /// before it. A healthy service (10 % failures, under a 50 % rate) never
    /// trips, however long the breaker sat idle first.
    #[test]
    fn a_healthy_service_never_trips_after_any_idle_time() {
        // 1 ms intervals: 2^30 of them are 12.4 days, 2^31 24.8 days.
        for idle in [
            DAY,
            12 * DAY,
            (1u64 << 30) * 1_000 + 5_000,
            13 * DAY,
            20 * DAY,
            24 * DAY,
            (1u64 << 31) * 1_000 + 5_000,
            40 * DAY,
        ] {
            let b = CircuitBreaker::new(
                Config::builder()
                    .failure_rate(50)
                    .minimum_calls(10)
                    .time_window(Duration::from_millis(8), 8)
                    .open_for(Duration::from_secs(1))
                    .build()
                    .unwrap(),
            );
            let t0 = 1_000 * SEC;
            // Some history, below `minimum_calls`.
            for i in 0..4 {
                let now = at(t0 + i);
                b.try_acquire(now)
                    .unwrap()
                    .record(Outcome::Failure, now, Duration::ZERO);
            }
            let start = t0 + idle;
            // Then 10 s of four calls a millisecond, one in ten failing: every
            // 8 ms window holds 32 calls and at most 4 failures.
            let mut n = 0u64;
            for ms in 0..10_000u64 {
                for q in 0..4u64 {
                    let now = at(start + ms * 1_000 + q * 100);
                    let p = b.try_acquire(now).unwrap_or_else(|r| {
                        panic!("idle {idle} us: rejected at call {n} ({ms} ms): {r:?}")
                    });
                    let outcome = if n % 10 == 9 {
                        Outcome::Failure
                    } else {
                        Outcome::Success
                    };
                    let t = p.record(outcome, now, Duration::ZERO);
                    assert_eq!(
                        t, None,
                        "idle {idle} us ({} days): a 10 % failure rate tripped the breaker at call {n} ({ms} ms after the idle time)",
                        idle / DAY
                    );
                    n += 1;
                }
            }
            assert_eq!(b.state(at(start + 10_000_000)), State::Closed);
        }
    }
}

#[cfg(feature = "half-open-timeout")]
mod half_open_timeout {
    use super::SEC;
    use fusebox::breaker::{Config, Outcome, State};
    use fusebox::{CircuitBreaker, Duration, Instant};

    fn at(us: u64) -> Instant {
        Instant::from_micros(us)
    }

    /// The half-open timeout's stamp (feature `half-open-timeout`) keeps 24
    /// bits of 1.024 ms ticks (≈ 4 h 46 min). The documented limit: a
    /// half-open breaker nobody asks for a whole multiple of that range past
    /// its deadline may read undecided for up to two more timeouts (plus
    /// ~1.05 s of stale-clock tolerance); at every other instant past the
    /// deadline it reads Open, and a `try_acquire` reopens it. Never more
    /// trials than `half_open_permits` in flight, and it always recovers.
    #[test]
    fn a_trial_held_across_many_stamp_ranges_times_out_within_the_documented_band() {
        const TICK: u64 = 1 << 10;
        const RANGE: u64 = (1 << 24) * TICK;
        for max in [
            Duration::from_millis(5),
            Duration::from_secs(5),
            Duration::from_secs(600),
            Config::MAX_HALF_OPEN,
        ] {
            // Undecided band before each whole range: two timeouts, the
            // stale-clock tolerance and the ticks' rounding.
            let band = 2 * max.as_micros().max(1 << 20) + 4 * TICK;
            for k in 1..=6u64 {
                for (label, offset) in [
                    ("just past the range", RANGE * k + TICK),
                    ("a quarter range on", RANGE * k + RANGE / 4),
                    ("inside the band", RANGE * k - band / 2),
                    ("before the band", RANGE * k - band - 2 * TICK),
                ] {
                    let b = CircuitBreaker::new(
                        Config::builder()
                            .consecutive_failures(1)
                            .open_for(Duration::from_secs(1))
                            .half_open_permits(1)
                            .max_half_open(max)
                            .build()
                            .unwrap(),
                    );
                    let t0 = 3_000 * SEC;
                    b.try_acquire(at(t0))
                        .unwrap()
                        .record(Outcome::Failure, at(t0), Duration::ZERO);
                    let t1 = at(t0 + 2 * SEC);
                    let trial = b.try_acquire(t1).expect("the trial");
                    let deadline = t1.as_micros() + max.as_micros().div_ceil(TICK) * TICK + TICK;
                    let now = at(deadline + offset);
                    let in_band = label == "inside the band";
                    let state = b.state(now);
                    if in_band {
                        // Allowed undecided; never a second trial.
                        if state == State::HalfOpen {
                            assert!(b.try_acquire(now).is_err(), "{max:?} k {k}: a second trial");
                            // Two timeouts later, it reopens.
                            let later = at(deadline + RANGE * k + TICK);
                            assert_eq!(b.state(later), State::Open, "{max:?} k {k}: stuck");
                        }
                    } else {
                        assert_eq!(state, State::Open, "{max:?} k {k} {label}: state");
                        let r = b.try_acquire(now).expect_err("timed out: rejected");
                        assert_eq!(
                            r.transition.map(|t| (t.from, t.to)),
                            Some((State::HalfOpen, State::Open)),
                            "{max:?} k {k} {label}: reopened"
                        );
                        // The late trial decides nothing.
                        assert_eq!(trial.record(Outcome::Success, now, Duration::ZERO), None);
                        // And the breaker recovers: a new trial after the open time.
                        let next = now + r.retry_after.expect("open: a retry_after");
                        let again = b.try_acquire(next).expect("a new trial");
                        assert!(again
                            .record(Outcome::Success, next, Duration::ZERO)
                            .is_some());
                        assert_eq!(b.state(next), State::Closed);
                    }
                }
            }
        }
    }

    /// The stamp keeps 8 bits of the half-open generation and the state word
    /// 14: a timeout must still fire after both have wrapped many times (the
    /// breaker that stopped tripping after ~2 048 generations was this kind
    /// of bug). 40 000 cycles of trip, held trial, timeout, recovery.
    #[test]
    fn the_timeout_fires_in_every_generation_across_the_wraps() {
        let max = Duration::from_millis(50);
        let open_for = Duration::from_millis(10);
        let b = CircuitBreaker::new(
            Config::builder()
                .consecutive_failures(1)
                .open_for(open_for)
                .half_open_permits(2)
                .max_half_open(max)
                .build()
                .unwrap(),
        );
        let mut now = 5 * SEC;
        for cycle in 0..40_000u32 {
            let t = at(now);
            let p = b.try_acquire(t).expect("closed");
            assert!(p.record(Outcome::Failure, t, Duration::ZERO).is_some());
            now += 20_000;
            let entry = at(now);
            let trial = b.try_acquire(entry).expect("trial");
            let second = b.try_acquire(entry).expect("second trial");
            assert!(
                b.try_acquire(entry).is_err(),
                "cycle {cycle}: a third trial"
            );
            drop(second); // releases its slot, decides nothing
            assert_eq!(
                b.state(entry + max - Duration::from_millis(2)),
                State::HalfOpen
            );
            // Past the timeout: reopened, by exactly one caller.
            let late = entry + max + Duration::from_millis(2);
            assert_eq!(b.state(late), State::Open, "cycle {cycle}");
            let r = b.try_acquire(late).expect_err("timed out");
            assert_eq!(
                r.transition.map(|t| (t.from, t.to)),
                Some((State::HalfOpen, State::Open)),
                "cycle {cycle}"
            );
            assert_eq!(trial.record(Outcome::Success, late, Duration::ZERO), None);
            // Recovers: the next trial after the (doubled) open time closes.
            now = late.as_micros() + 4 * open_for.as_micros() + 2_000;
            let next = at(now);
            let ok = b.try_acquire(next).expect("a new trial");
            let also = b.try_acquire(next).expect("its second permit");
            assert!(ok.record(Outcome::Success, next, Duration::ZERO).is_none());
            assert_eq!(
                also.record(Outcome::Success, next, Duration::ZERO)
                    .map(|t| t.to),
                Some(State::Closed),
                "cycle {cycle}"
            );
            now += 1_000;
        }
        assert_eq!(b.metrics().trips, 80_000);
    }
}

mod token_bucket {
    use super::common::NARROW;
    use super::{DAY, SEC};
    use fusebox::bucket::Quota;
    use fusebox::{Duration, Instant, TokenBucket};

    fn at(us: u64) -> Instant {
        Instant::from_micros(us)
    }

    /// `TokenBucket` on 64-bit words keeps its arrival time in half units of
    /// the scale, so at the largest scale (65 536 per µs) the word's range is
    /// 2^63 half units = 2^46 µs ≈ 814 days. The contract: "exact across ±2.2
    /// years (at the largest scale) of idle time". Idle up to that bound, a
    /// drained bucket reads full. (Beyond it, what the bucket answers is not
    /// documented: idle 815 days, it reads empty and refuses for 814 more.)
    #[test]
    fn a_bucket_at_the_largest_scale_is_full_after_idle_times_within_the_range() {
        if NARROW {
            return; // 32-bit words: the documented range is the wrap's, see `gcra`
        }
        // 99 991 a second (a prime): the scale clamps to 65 536.
        let quota = Quota::new(99_991, Duration::from_secs(1))
            .unwrap()
            .with_burst(10)
            .unwrap();
        assert!(format!("{quota:?}").contains("scale: 65536"), "{quota:?}");
        for idle in [SEC, DAY, 365 * DAY, 2 * 365 * DAY, 813 * DAY] {
            let b = TokenBucket::new(quota);
            let t0 = 10 * SEC;
            b.try_acquire_n(10, at(t0)).unwrap();
            assert!(b.try_acquire(at(t0)).is_err());
            let now = at(t0 + idle);
            assert_eq!(b.available(now), 10, "idle {} days", idle / DAY);
            assert_eq!(b.try_acquire_n(10, now), Ok(()), "idle {} days", idle / DAY);
        }
    }
}
