//! Scenarios re-expressed from Resilience4j's own suite for its TIME_BASED
//! sliding window (`SlidingTimeWindowMetricsTest`: counts, expiry of the
//! oldest bucket, a quiet period clearing the window), plus the stale-clock
//! and generation rules of fusebox's contract (feature `time-window`; the
//! half-open timeout is in `breaker_half_open_timeout.rs`).
//!
//! fusebox exposes no window counts, so counts are probed through trips: a
//! breaker with `failure_count(k)` opens exactly when the window holds `k`
//! failures; one with `failure_rate(1)` and `minimum_calls(k)` opens exactly
//! when it holds `k` calls of which at least one failed. Resilience4j's
//! five one-second buckets become four buckets of 1.25 s over the same 5 s
//! (fusebox's bucket counts are powers of two), so its numbers shift where
//! a bucket boundary moved.
#![cfg(feature = "time-window")]

use fusebox::breaker::ConfigBuilder;
use fusebox::breaker::{Config, ConfigError, Outcome, State};
use fusebox::{CircuitBreaker, Duration, Instant};

const MS: u64 = 1_000;
const SEC: u64 = 1_000_000;
/// 1 000 s: a multiple of every interval used here, like the mock clock's
/// whole second.
const T0: u64 = 1_000 * SEC;

fn at(us: u64) -> Instant {
    Instant::from_micros(us)
}

fn five_seconds() -> ConfigBuilder {
    Config::builder()
        .time_window(Duration::from_secs(5), 4)
        .open_for(Duration::from_secs(60))
}

/// Records `history` (offset from T0, failed?) on a fresh breaker; returns
/// the index of the record that opened it.
fn trips_at(config: ConfigBuilder, history: &[(u64, bool)]) -> Option<usize> {
    let b = CircuitBreaker::new(config.build().expect("valid"));
    history.iter().position(|&(t, failed)| {
        let now = at(T0 + t);
        let outcome = if failed {
            Outcome::Failure
        } else {
            Outcome::Success
        };
        let p = b.try_acquire(now).expect("closed until it trips");
        p.record(outcome, now, Duration::from_millis(100)).is_some()
    })
}

/// `testSlidingTimeWindowMetrics`: error, success ×2 within 200 ms, then
/// one call a second (the sixth an error), then one after 5 s of quiet.
const HISTORY: [(u64, bool); 10] = [
    (0, true),
    (100 * MS, false),
    (200 * MS, false),
    (1_200 * MS, false),
    (2_200 * MS, false),
    (3_200 * MS, true),
    (4_200 * MS, false),
    (5_200 * MS, false),
    (6_200 * MS, false),
    (11_200 * MS, false),
];

#[test]
fn the_time_window_counts_calls_and_expires_the_oldest_bucket() {
    // Intervals of 1.25 s: 0 0 0 0 1 2 3 4 4 8. Calls in the window after
    // each record: 1 2 3 4 5 6 7, then interval 0 (4 calls, the first
    // error) expires: 4 5, then everything: 1. Failures: 1 1 1 1 1 2 2 1 1 0.
    let calls = [1, 2, 3, 4, 5, 6, 7, 4, 5, 1];
    let failures = [1, 1, 1, 1, 1, 2, 2, 1, 1, 0];
    for k in 1..=8u8 {
        let want = (0..HISTORY.len()).find(|&i| calls[i] >= k && failures[i] >= 1);
        let config = five_seconds().failure_rate(1).minimum_calls(k);
        assert_eq!(trips_at(config, &HISTORY), want, "minimum_calls {k}");
    }
    for k in 1..=3u32 {
        let want = (0..HISTORY.len()).find(|&i| failures[i] >= k && HISTORY[i].1);
        assert_eq!(
            trips_at(five_seconds().failure_count(k), &HISTORY),
            want,
            "failure_count {k}"
        );
    }
}

#[test]
fn a_quiet_period_clears_the_window() {
    // `shouldClearSlidingTimeWindowMetrics`: an error and two successes,
    // still counted 4.8 s later, gone 5.8 s later.
    let before = [(0, true), (100 * MS, false), (800 * MS, false)];
    let mut still = before.to_vec();
    still.push((4_800 * MS, true));
    assert_eq!(trips_at(five_seconds().failure_count(2), &still), Some(3));
    let mut gone = before.to_vec();
    gone.push((5_800 * MS, true));
    assert_eq!(trips_at(five_seconds().failure_count(2), &gone), None);
    // And the rate starts over: two successes and an error (33 %), then
    // after the quiet period a success and an error: 50 % of the window (it
    // would be 40 % had the first three stayed).
    let fresh = [
        (0, false),
        (100 * MS, false),
        (800 * MS, true),
        (5_900 * MS, false),
        (6_000 * MS, true),
    ];
    let rate = five_seconds().failure_rate(50).minimum_calls(2);
    assert_eq!(trips_at(rate, &fresh), Some(4));
}

#[test]
fn slow_calls_count_over_time_like_failures() {
    // `testSlowCallsPercentage`: 2 slow of 5 calls is a 40 % slow rate.
    let b = CircuitBreaker::new(
        five_seconds()
            .slow_call(Duration::from_secs(5), 40)
            .minimum_calls(5)
            .build()
            .unwrap(),
    );
    let now = at(T0);
    let record = |outcome, ms| {
        b.try_acquire(now)
            .unwrap()
            .record(outcome, now, Duration::from_millis(ms))
    };
    assert_eq!(record(Outcome::Success, 10_000), None);
    assert_eq!(record(Outcome::Failure, 10_000), None);
    assert_eq!(record(Outcome::Success, 100), None);
    assert_eq!(record(Outcome::Success, 100), None);
    let t = record(Outcome::Success, 100).expect("5 calls, 40 % slow");
    assert_eq!((t.from, t.to), (State::Closed, State::Open));
}

#[test]
fn an_old_clock_never_expires_newer_failures() {
    let b = CircuitBreaker::new(five_seconds().failure_count(3).build().unwrap());
    let fail = |t: u64| {
        let now = at(T0 + t);
        b.try_acquire(now)
            .unwrap()
            .record(Outcome::Failure, now, Duration::ZERO)
    };
    assert_eq!(fail(10 * SEC), None);
    // A caller whose clock is 10 s (two windows) behind: counted, not a
    // reason to drop the newer failure.
    assert_eq!(fail(0), None);
    assert_eq!(fail(10 * SEC + 1).map(|t| t.to), Some(State::Open));
}

#[test]
fn a_new_closed_generation_starts_with_an_empty_window() {
    let b = CircuitBreaker::new(
        five_seconds()
            .failure_count(2)
            .open_for(Duration::from_millis(10))
            .build()
            .unwrap(),
    );
    let now = at(T0);
    let fail = |now| {
        b.try_acquire(now)
            .unwrap()
            .record(Outcome::Failure, now, Duration::ZERO)
    };
    assert_eq!(fail(now), None);
    assert!(fail(now).is_some());
    // Closed again within the same interval: the two failures are gone.
    let later = at(T0 + 20 * MS);
    let trial = b.try_acquire(later).unwrap();
    assert_eq!(
        trial
            .record(Outcome::Success, later, Duration::ZERO)
            .map(|t| t.to),
        Some(State::Closed)
    );
    assert_eq!(fail(later), None);
    assert_eq!(fail(later).map(|t| t.to), Some(State::Open));
    // force_close and reset empty it too.
    b.force_close(later);
    assert_eq!(fail(later), None);
    b.reset(later);
    assert_eq!(fail(later), None);
    assert!(fail(later).is_some());
}

#[test]
fn the_window_survives_every_wrapping_range() {
    // Past u32 µs (71 min), the 26-bit deadline ticks (19 h), the 16-bit
    // interval tags (65 536 intervals of 1.25 s = 22.7 h) and 60 days.
    let b = CircuitBreaker::new(
        five_seconds()
            .failure_count(2)
            .open_for(Duration::from_millis(1))
            .build()
            .unwrap(),
    );
    let mut now = 0;
    for jump in [
        u64::from(u32::MAX),
        19 * 3_600 * SEC,
        65_536 * 1_250 * MS,
        60 * 86_400 * SEC,
        1,
    ] {
        now += jump;
        let t = at(now);
        let fail = || {
            b.try_acquire(t)
                .unwrap()
                .record(Outcome::Failure, t, Duration::ZERO)
        };
        assert_eq!(fail(), None, "one failure after a jump of {jump} us");
        assert!(fail().is_some(), "two trip after a jump of {jump} us");
        let later = at(now + 2 * MS);
        let trial = b.try_acquire(later).unwrap();
        assert!(trial
            .record(Outcome::Success, later, Duration::ZERO)
            .is_some());
        now += 2 * MS;
    }
}

#[test]
fn time_window_configs_are_validated() {
    let base = || Config::builder().failure_rate(50);
    for buckets in [0u8, 3, 5, 17, 32] {
        assert!(matches!(
            base().time_window(Duration::from_secs(60), buckets).build(),
            Err(ConfigError::TimeWindowOutOfRange { .. })
        ));
    }
    // Under 1 ms per bucket, or beyond 2^32 µs.
    assert!(base()
        .time_window(Duration::from_micros(15_999), 16)
        .build()
        .is_err());
    assert!(base()
        .time_window(Duration::from_millis(16), 16)
        .build()
        .is_ok());
    assert!(base()
        .time_window(Duration::from_micros(u64::from(u32::MAX) + 1), 1)
        .build()
        .is_err());
    assert_eq!(
        base()
            .time_window(Duration::from_secs(1), 1)
            .window(10)
            .build(),
        Err(ConfigError::TimeWindowConflict)
    );
    assert_eq!(
        Config::builder()
            .consecutive_failures(3)
            .time_window(Duration::from_secs(1), 1)
            .build(),
        Err(ConfigError::TimeWindowConflict)
    );
    assert_eq!(
        Config::builder().failure_count(3).build(),
        Err(ConfigError::FailureCountNeedsTimeWindow)
    );
    let timed = || Config::builder().time_window(Duration::from_secs(1), 2);
    assert_eq!(
        timed().failure_count(0).build(),
        Err(ConfigError::FailureCountOutOfRange(0))
    );
    assert_eq!(
        timed().failure_count(256).build(),
        Err(ConfigError::FailureCountOutOfRange(256))
    );
    assert_eq!(timed().build(), Err(ConfigError::NoTripCondition));
    // Minimum calls: any of 1..=255 (default 100), not bounded by a count window.
    let c = timed().failure_rate(10).build().unwrap();
    assert_eq!(c.minimum_calls(), 100);
    assert_eq!(
        timed()
            .failure_rate(10)
            .minimum_calls(255)
            .build()
            .unwrap()
            .minimum_calls(),
        255
    );
    assert_eq!(c.time_window(), Some((Duration::from_secs(1), 2)));
    assert_eq!(c.time_interval(), Some(Duration::from_millis(500)));
    // ⌊total / buckets⌋: the span is a whole number of intervals.
    let c = timed()
        .failure_count(1)
        .time_window(Duration::from_micros(1_000_003), 2)
        .build()
        .unwrap();
    assert_eq!(c.time_window(), Some((Duration::from_micros(1_000_002), 2)));
}

/// A time-window breaker counts no failures in a row (it cannot have the
/// consecutive policy: `TimeWindowConflict`), so a snapshot taken from a
/// count-based breaker restores none into it: before the fix its closed
/// word kept the snapshot's count for good, no success reset it (the
/// `consecutive_failures` docs: "a success resets the count") and every
/// later snapshot carried it on, so a breaker migrated back to
/// `consecutive_failures(5)` restored four failures in a row that never
/// happened, and one failure tripped it.
#[test]
fn a_time_window_breaker_restores_no_failures_in_a_row() {
    let now = at(T0);
    let counted = CircuitBreaker::new(Config::builder().consecutive_failures(10).build().unwrap());
    for _ in 0..4 {
        let p = counted.try_acquire(now).unwrap();
        p.record(Outcome::Failure, now, Duration::ZERO);
    }
    let saved = counted.snapshot(now);
    assert_eq!(saved.consecutive_failures, 4);
    for timed in [
        five_seconds().failure_count(3).build().unwrap(),
        five_seconds()
            .failure_rate(50)
            .minimum_calls(10)
            .build()
            .unwrap(),
    ] {
        let b = CircuitBreaker::new(timed);
        b.restore(&saved, now).unwrap();
        for _ in 0..2 {
            let p = b.try_acquire(now).unwrap();
            p.record(Outcome::Success, now, Duration::ZERO);
        }
        let migrated = b.snapshot(now);
        assert_eq!(migrated.consecutive_failures, 0, "{timed:?}");
        // Back to a count-based breaker: no phantom streak.
        let back = CircuitBreaker::new(Config::builder().consecutive_failures(5).build().unwrap());
        back.restore(&migrated, now).unwrap();
        let p = back.try_acquire(now).unwrap();
        assert_eq!(
            p.record(Outcome::Failure, now, Duration::ZERO),
            None,
            "{timed:?}"
        );
        assert_eq!(back.state(now), State::Closed);
    }
}

/// The interval's range, at its edges: 1 ms to 2³² − 1 µs. The docs said
/// "to 2³² µs" (and the error "above 2³² µs"), while an interval of exactly
/// 2³² µs is refused (it does not fit the live configuration's 32-bit
/// word); the docs now say so. Pins the boundary.
#[test]
fn the_time_window_interval_ranges_from_1_ms_to_2_32_minus_1_us() {
    let window = |interval: u64, buckets: u8| {
        Config::builder()
            .time_window(
                Duration::from_micros(interval * u64::from(buckets)),
                buckets,
            )
            .failure_count(3)
            .build()
    };
    for buckets in [1, 2, 16] {
        for interval in [1_000, (1 << 32) - 1] {
            let config = window(interval, buckets).unwrap();
            assert_eq!(
                config.time_interval(),
                Some(Duration::from_micros(interval))
            );
        }
        for interval in [999, 1 << 32] {
            let total = Duration::from_micros(interval * u64::from(buckets));
            assert_eq!(
                window(interval, buckets),
                Err(ConfigError::TimeWindowOutOfRange { total, buckets })
            );
        }
    }
}

/// `reset` "returns the breaker to its initial state": its time window
/// then expires old failures as a new breaker's does, even after a record
/// with a clock far ahead (a bogus reading: `Instant::MAX`, or ten years
/// ahead). Before the fix, reset kept the newest interval such a record
/// had reached, so every later record read as a stale clock and counted
/// in that one far-ahead bucket, which never expired (64-bit words): a
/// `failure_count(3)` over 60 s tripped on failures two minutes apart (3
/// trips in 10 failures, none for a new breaker), for good.
#[test]
fn reset_forgets_a_far_ahead_clock() {
    let config = Config::builder()
        .time_window(Duration::from_secs(60), 4)
        .failure_count(3)
        .build()
        .unwrap();
    for bogus in [Instant::MAX, at(10 * 365 * 86_400 * SEC)] {
        let b = CircuitBreaker::new(config);
        let p = b.try_acquire(bogus).unwrap();
        assert_eq!(p.record(Outcome::Failure, bogus, Duration::ZERO), None);
        let t0 = at(T0);
        assert_eq!(b.reset(t0), None);
        for i in 0..10 {
            let now = at(T0 + i * 120 * SEC);
            let p = b.try_acquire(now).unwrap();
            assert_eq!(
                p.record(Outcome::Failure, now, Duration::ZERO),
                None,
                "failure {i}, two minutes after the last (bogus clock {bogus:?})"
            );
        }
        assert_eq!(b.metrics().trips, 0);
    }
}
