//! Resilience4j's `TIME_BASED` sliding-window tests
//! (`SlidingTimeWindowMetricsTest`: `checkRecordAfterLongTime`,
//! `shouldClearSlidingTimeWindowMetrics`, the oldest bucket expiring
//! whole) and `maxWaitDurationInHalfOpenState` tests, against fusebox's
//! `time_window` / `failure_count` and `max_half_open` (features
//! `time-window`, `half-open-timeout`), driven to instants near
//! `u64::MAX`, stale clocks and long histories. Expectations from the
//! `CircuitBreaker` docs ("Time window", "Half-open timeout").
// Long histories of the public, safe API: native runs only (Miri runs
// the unit tests and the shorter integration tests, which take the same
// unsafe paths).
#![cfg(all(feature = "time-window", feature = "half-open-timeout", not(miri)))]

use fusebox::breaker::{CircuitBreaker, Config, Outcome, State};
use fusebox::{Duration, Instant};

/// Whether this build keeps the breaker's words 32 bits wide (Cortex-M, or
/// a host built with `--cfg fusebox_narrow_words`).
const NARROW: bool = !cfg!(target_has_atomic = "64") || cfg!(fusebox_narrow_words);

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn rec(b: &CircuitBreaker, now: Instant, o: Outcome) -> Option<State> {
    b.try_acquire(now)
        .expect("permitted")
        .record(o, now, Duration::ZERO)
        .map(|t| t.to)
}

/// An 8 s window of 8 one-second buckets, opening on 3 failures.
fn count3() -> Config {
    Config::builder()
        .time_window(secs(8), 8)
        .failure_count(3)
        .build()
        .unwrap()
}

/// Resilience4j `checkRecordAfterLongTime`: failures older than the window
/// are gone, at bases near the end of `u64` time and across interval
/// indices that wrap any narrower word.
#[test]
fn r4j_old_failures_expire_at_any_base() {
    for base in [
        Instant::from_secs(1_000),
        Instant::from_micros(u64::MAX / 2),
        Instant::from_micros(1 << 63),
        Instant::from_micros((1u64 << 32) * 1_000_000),
        Instant::MAX - secs(100),
    ] {
        let b = CircuitBreaker::new(count3());
        assert_eq!(rec(&b, base, Outcome::Failure), None);
        assert_eq!(rec(&b, base, Outcome::Failure), None);
        // "counts ... for between `total − interval` and `total`": 9 s later
        // (9 intervals) the two are gone.
        let later = base + secs(9);
        assert_eq!(rec(&b, later, Outcome::Failure), None, "{base:?}");
        assert_eq!(rec(&b, later, Outcome::Failure), None, "{base:?}");
        assert_eq!(
            rec(&b, later, Outcome::Failure),
            Some(State::Open),
            "{base:?}"
        );
    }
}

/// Within the window they count, up to its last instant (`total −
/// interval` at least).
#[test]
fn r4j_failures_within_the_window_count() {
    for base in [Instant::from_secs(1_000), Instant::MAX - secs(100)] {
        let b = CircuitBreaker::new(count3());
        rec(&b, base, Outcome::Failure);
        rec(&b, base + secs(4), Outcome::Failure);
        // 7 intervals later: fewer than 8, still counted.
        assert_eq!(
            rec(&b, base + secs(7), Outcome::Failure),
            Some(State::Open),
            "{base:?}"
        );
    }
}

/// "A record whose `now` is earlier than the newest interval reached is
/// counted in that newest interval ... An old clock never erases newer
/// failures" — even a `now` of zero after `now`s near `u64::MAX`.
#[test]
fn stale_records_count_in_the_newest_interval() {
    let b = CircuitBreaker::new(count3());
    let t = Instant::MAX - secs(50);
    rec(&b, t, Outcome::Failure);
    // With 32-bit words the window keeps 31 bits of interval, and a `now`
    // more than 2²⁰ intervals behind reads as later (the docs' "What is
    // left"): there, the oldest the contract covers, 2²⁰ intervals.
    let oldest = if NARROW {
        t - secs(1 << 20)
    } else {
        Instant::ZERO
    };
    rec(&b, oldest, Outcome::Failure);
    assert_eq!(
        rec(&b, t - secs(3_600), Outcome::Failure),
        Some(State::Open)
    );

    // And the stale ones expire with the newest interval, not earlier,
    // not later.
    let b = CircuitBreaker::new(count3());
    let t = Instant::from_secs(5_000);
    rec(&b, t, Outcome::Failure);
    rec(&b, Instant::from_secs(10), Outcome::Failure);
    assert_eq!(rec(&b, t + secs(9), Outcome::Failure), None);
    assert_eq!(rec(&b, t + secs(9), Outcome::Failure), None);
    assert_eq!(rec(&b, t + secs(9), Outcome::Failure), Some(State::Open));
}

/// A long history against a model of the documented window: a record at
/// `now` lands in interval `⌊now / interval⌋` (or the newest, if older)
/// and counts while the newest interval is fewer than `buckets` later.
/// Failure rate 50 % over at least 8 calls; `reset` after every trip.
#[test]
fn time_window_long_history_matches_model() {
    let interval = 250_000u64; // 4 s / 16
    let cfg = Config::builder()
        .time_window(secs(4), 16)
        .failure_rate(50)
        .minimum_calls(8)
        .build()
        .unwrap();
    let breaker = CircuitBreaker::new(cfg);
    let mut newest: Option<u64> = None;
    let mut calls: Vec<(u64, bool)> = Vec::new(); // (interval, failed)
    let mut seed: u64 = 12_345;
    let mut now = (1u64 << 40) + 17;
    let mut trips = 0;
    for step in 0..300_000u32 {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let draw = seed >> 33;
        now += draw % 60_000;
        if draw % 97 == 0 {
            now += 10_000_000; // a quiet period: the window empties
        }
        let fail = (draw >> 8) % 100 < if (step / 3_000) % 2 == 0 { 30 } else { 60 };
        let got = rec(
            &breaker,
            Instant::from_micros(now),
            if fail {
                Outcome::Failure
            } else {
                Outcome::Success
            },
        );
        let iv = (now / interval).max(newest.unwrap_or(0));
        newest = Some(iv);
        calls.push((iv, fail));
        calls.retain(|&(i, _)| iv - i < 16);
        let count = calls.len() as u64;
        let failed = calls.iter().filter(|c| c.1).count() as u64;
        let want = count >= 8 && failed * 100 >= 50 * count;
        assert_eq!(
            got == Some(State::Open),
            want,
            "step {step}: {failed} of {count}, got {got:?}"
        );
        if want {
            trips += 1;
            breaker.reset(Instant::from_micros(now));
            calls.clear();
        }
    }
    assert!(trips > 100, "{trips}");
}

/// Resilience4j `maxWaitDurationInHalfOpenState` near the end of time and
/// with stale clocks: from `entry + max_half_open` (rounded up to a tick)
/// the breaker reads Open; "A `now` up to `max(max_half_open, ~1.05 s)`
/// earlier than the entry never times out".
#[test]
fn r4j_half_open_timeout_near_instant_max_and_stale() {
    let cfg = Config::builder()
        .consecutive_failures(1)
        .open_for(secs(1))
        .max_half_open(secs(2))
        .build()
        .unwrap();
    for trip in [
        Instant::from_secs(10),
        Instant::from_micros(1 << 62),
        Instant::MAX - secs(60),
    ] {
        let b = CircuitBreaker::new(cfg);
        assert_eq!(rec(&b, trip, Outcome::Failure), Some(State::Open));
        let wait = b.try_acquire(trip).unwrap_err().retry_after.unwrap();
        let entry = trip + wait;
        let trial = b.try_acquire(entry).expect("half-open");
        assert!(trial.is_trial());
        assert_eq!(b.state(entry + secs(1)), State::HalfOpen, "{trip:?}");
        for back in [Duration::from_micros(1), secs(1), secs(2)] {
            assert_eq!(
                b.state(entry - back),
                State::HalfOpen,
                "{trip:?}: {back:?} before entry"
            );
        }
        let late = entry + secs(2) + Duration::from_millis(2);
        assert_eq!(b.state(late), State::Open, "{trip:?}");
        let r = b.try_acquire(late).unwrap_err();
        assert_eq!(
            r.transition.map(|t| (t.from, t.to)),
            Some((State::HalfOpen, State::Open))
        );
        assert_eq!(trial.record(Outcome::Success, late, Duration::ZERO), None);
        assert_eq!(b.metrics().trips, 2);
    }
}
