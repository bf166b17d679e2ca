//! Circuit-breaker scenarios from peer suites — Resilience4j's
//! `CircuitBreakerStateMachineTest` / `SlidingWindowMetricsTest`, Polly's
//! `CircuitBreakerSpecs` (break durations at the edge of the clock's range),
//! failsafe-rs's `consecutive_failures` / backoff tests — re-expressed
//! against fusebox's documented contract and driven past the ranges of its
//! wrapped words: instants near `u64::MAX`, open deadlines read a whole
//! number of wraps later, stale clocks, the 8-bit failure counter, long
//! random histories checked against a model of the count-based window.
//!
//! Differences from the peers that are fusebox's documented behaviour:
//! a failed (or slow) half-open trial reopens at once (Resilience4j
//! evaluates a rate over the half-open calls); a call is slow *at or
//! above* the threshold (Resilience4j: above).

// Long histories of the public, safe API: native runs only (Miri runs
// the unit tests and the shorter integration tests, which take the same
// unsafe paths).
#![cfg(not(miri))]

use fusebox::breaker::{CircuitBreaker, Config, Outcome, State};
use fusebox::{Duration, Instant};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// One closed call with `outcome`; returns the state it moved to, if any.
fn call(b: &CircuitBreaker, now: Instant, outcome: Outcome) -> Option<State> {
    let p = b.try_acquire(now).expect("permitted");
    p.record(outcome, now, ms(1)).map(|t| t.to)
}

/// The 1.024 ms tick of the open deadline and its wrap (2^26 ticks).
const TICK_US: u64 = 1_024;
const DEADLINE_WRAP_US: u64 = (1 << 26) * TICK_US;

/// failsafe-rs `consecutive_failures` policy at its documented limit:
/// "Open after `n` failures in a row (1..=255). A success resets the count."
#[test]
fn failsafe_consecutive_failures_at_255() {
    let b = CircuitBreaker::new(Config::builder().consecutive_failures(255).build().unwrap());
    let t = Instant::from_secs(1);
    for round in 0..3 {
        for i in 0..254 {
            assert_eq!(
                call(&b, t, Outcome::Failure),
                None,
                "round {round}, failure {i}"
            );
        }
        assert_eq!(call(&b, t, Outcome::Success), None);
    }
    for _ in 0..254 {
        assert_eq!(call(&b, t, Outcome::Failure), None);
    }
    assert_eq!(call(&b, t, Outcome::Failure), Some(State::Open));
    assert_eq!(b.metrics().failures, 3 * 254 + 255);
}

/// Failures in a row keep being counted "up to 255" with the policy off:
/// a long run of failures under a rate policy that never trips (minimum
/// calls never met is impossible with a window, so the rate is set to
/// 100 % and successes are interleaved) must not disturb the window.
#[test]
fn failure_streak_saturates_without_disturbing_the_window() {
    let cfg = Config::builder()
        .failure_rate(100)
        .window(64)
        .minimum_calls(64)
        .build()
        .unwrap();
    let b = CircuitBreaker::new(cfg);
    let mut t = Instant::from_secs(1);
    // 63 failures then a success, 20 000 times: never 100 % of 64.
    for _ in 0..20_000 {
        for _ in 0..63 {
            t += Duration::from_micros(3);
            assert_eq!(call(&b, t, Outcome::Failure), None);
        }
        assert_eq!(call(&b, t, Outcome::Success), None);
    }
    // 64 failures in a row: exactly the 64th opens.
    for i in 0..63 {
        assert_eq!(call(&b, t, Outcome::Failure), None, "failure {i}");
    }
    assert_eq!(call(&b, t, Outcome::Failure), Some(State::Open));
}

/// Resilience4j `SlidingWindowMetricsTest` over a long random history,
/// checked against a model of "the last `calls` recorded calls": open when
/// "at least `percent` % of the calls in the window failed, once the window
/// holds `minimum_calls`". After every trip the breaker is `reset` ("closed,
/// empty window"), so the model empties too. Millions of records and
/// thousands of generations: wraps the window's lap bits and slot tags.
#[test]
fn r4j_count_window_long_random_history_matches_model() {
    for (window, minimum, rate) in [(64u8, 20u8, 50u8), (7, 7, 43), (1, 1, 100), (64, 64, 10)] {
        let cfg = Config::builder()
            .failure_rate(rate)
            .window(window)
            .minimum_calls(minimum)
            .build()
            .unwrap();
        let breaker = CircuitBreaker::new(cfg);
        let mut model = std::collections::VecDeque::<bool>::default();
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15 ^ u64::from(window);
        let mut now = Instant::from_secs(1);
        let mut trips = 0u64;
        let steps = 400_000;
        for step in 0..steps {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            // Failure probability drifts so that both long closed stretches
            // and frequent trips occur.
            let p = if (step / 5_000) % 2 == 0 { 20 } else { 70 };
            let fail = (seed >> 33) % 100 < p;
            now += Duration::from_micros(1 + (seed >> 60));
            let got = call(
                &breaker,
                now,
                if fail {
                    Outcome::Failure
                } else {
                    Outcome::Success
                },
            );
            model.push_back(fail);
            if model.len() > usize::from(window) {
                model.pop_front();
            }
            let calls = model.len() as u64;
            let failed = model.iter().filter(|&&x| x).count() as u64;
            let want = calls >= u64::from(minimum) && failed * 100 >= u64::from(rate) * calls;
            assert_eq!(
                got == Some(State::Open),
                want,
                "window {window}/{minimum}/{rate}% step {step}: {failed} failures of {calls}, got {got:?}"
            );
            if want {
                trips += 1;
                breaker.reset(now);
                model.clear();
            }
        }
        assert!(trips > 100, "window {window}: only {trips} trips");
    }
}

/// Polly `Should_halt_for_the_break_duration_then_half_open` at the longest
/// open time fusebox accepts (Polly's break duration of `TimeSpan.MaxValue`
/// has no counterpart: `open_for` is capped at `Config::MAX_OPEN_FOR`), with
/// the trip near the end of the clock's range.
#[test]
fn polly_longest_break_near_instant_max() {
    let open = Config::MAX_OPEN_FOR;
    let cfg = Config::builder()
        .consecutive_failures(1)
        .open_for(open)
        .build()
        .unwrap();
    for trip in [
        Instant::from_secs(5),
        Instant::MAX - open - Duration::from_secs(10),
        Instant::MAX - open - ms(3),
        Instant::from_micros(u64::MAX / 2),
        Instant::from_micros(DEADLINE_WRAP_US * 1_000 - 1),
    ] {
        let b = CircuitBreaker::new(cfg);
        assert_eq!(call(&b, trip, Outcome::Failure), Some(State::Open));
        let r = b.try_acquire(trip).unwrap_err();
        assert_eq!(r.state, State::Open);
        let wait = r.retry_after.expect("open: a time");
        assert!(
            wait >= open && wait <= open + ms(2),
            "{trip:?}: wait {wait:?}"
        );
        assert_eq!(b.state(trip + open - ms(1)), State::Open, "{trip:?}");
        let due = trip + wait;
        assert_eq!(b.state(due), State::HalfOpen, "{trip:?}");
        // A stale clock, up to one open time back, still reads open.
        assert_eq!(
            b.state(trip - open),
            State::Open,
            "{trip:?} read one open time back"
        );
        assert!(b.try_acquire(trip - ms(1)).is_err());
        let p = b.try_acquire(due).expect("the first trial");
        assert!(p.is_trial());
        assert_eq!(
            p.record(Outcome::Success, due, ms(1)).map(|t| t.to),
            Some(State::Closed)
        );
    }
}

/// A breaker tripped at the very end of time: `now + open_for` saturates
/// ("all arithmetic saturates", `time` module). It must never read
/// half-open before the open time has passed; the wait it reports is then
/// the time to just past `Instant::MAX` (the deadline is out of reach, so
/// the breaker stays open until `force_close`/`reset`), never zero.
#[test]
fn trip_at_instant_max() {
    let open = ms(100);
    let cfg = Config::builder()
        .consecutive_failures(1)
        .open_for(open)
        .build()
        .unwrap();
    for back in [0u64, 1, 50_000, 99_999] {
        let b = CircuitBreaker::new(cfg);
        let trip = Instant::MAX - Duration::from_micros(back);
        assert_eq!(call(&b, trip, Outcome::Failure), Some(State::Open));
        assert_eq!(b.state(Instant::MAX), State::Open, "{back} µs before MAX");
        let r = b.try_acquire(trip).unwrap_err();
        assert_eq!(r.state, State::Open);
        let wait = r.retry_after.unwrap();
        assert!(!wait.is_zero());
        assert!(wait >= (Instant::MAX - trip), "{back}: {wait:?}");
        assert_eq!(
            b.state(trip - ms(50)),
            State::Open,
            "stale by half the open time"
        );
        assert_eq!(b.reset(Instant::MAX).map(|t| t.to), Some(State::Closed));
    }
}

/// The open deadline is 26 bits of 1.024 ms ticks, wrapped (≈ 19 h): "a
/// breaker that nobody asks for a whole multiple of ≈ 19 h may read open
/// for at most two more open periods plus ~1 s". Read at every multiple
/// up to 40 wraps (≈ 32 days), at the multiple itself and past the slack.
#[test]
fn open_deadline_read_whole_wraps_later() {
    let open = Duration::from_secs(30);
    let cfg = Config::builder()
        .consecutive_failures(1)
        .open_for(open)
        .build()
        .unwrap();
    for trip_us in [1_000_000u64, DEADLINE_WRAP_US - 7, 123_456_789_012] {
        for k in 1..=40u64 {
            for extra in [0u64, 1, TICK_US - 1, 2 * open.as_micros() + 1_100_000] {
                let b = CircuitBreaker::new(cfg);
                let trip = Instant::from_micros(trip_us);
                assert_eq!(call(&b, trip, Outcome::Failure), Some(State::Open));
                let later = trip + Duration::from_micros(k * DEADLINE_WRAP_US + extra);
                let slack = 2 * open.as_micros() + 1_100_000;
                let st = b.state(later);
                if extra >= slack {
                    assert_eq!(
                        st,
                        State::HalfOpen,
                        "trip {trip_us}, {k} wraps + {extra} µs"
                    );
                    assert!(b.try_acquire(later).unwrap().is_trial());
                } else {
                    assert!(matches!(st, State::Open | State::HalfOpen));
                    // And once past the slack it must let a trial through.
                    let after = later + Duration::from_micros(slack);
                    assert!(
                        b.try_acquire(after).is_ok(),
                        "trip {trip_us}, {k} wraps: still open"
                    );
                }
            }
        }
    }
}

/// Stale clocks (failsafe-rs and Polly read a monotonic clock; fusebox
/// takes `now`): "A `now` earlier than the trip ... reads as open, back to
/// `max(open time, ~1.05 s)` before the trip: a stale clock never lets a
/// trial through early."
#[test]
fn stale_clock_never_lets_a_trial_through_early() {
    for open_ms in [1u64, 2, 100, 1_000, 30_000] {
        let open = ms(open_ms);
        let cfg = Config::builder()
            .consecutive_failures(1)
            .open_for(open)
            .build()
            .unwrap();
        for trip in [
            Instant::from_secs(10),
            Instant::from_micros(DEADLINE_WRAP_US * 3 + 5),
        ] {
            let b = CircuitBreaker::new(cfg);
            assert_eq!(call(&b, trip, Outcome::Failure), Some(State::Open));
            // "~1.05 s": 2^10 ticks of 1.024 ms = 1 048 576 µs.
            let tolerance = open.as_micros().max(1_048_576);
            for back in [1, 500, 1_000, 999_999, 1_048_575, tolerance] {
                if back > tolerance {
                    continue;
                }
                let stale = trip - Duration::from_micros(back);
                assert_eq!(
                    b.state(stale),
                    State::Open,
                    "open {open_ms} ms, {back} µs back"
                );
                let r = b.try_acquire(stale).unwrap_err();
                assert_eq!(r.state, State::Open);
                assert!(
                    r.retry_after.unwrap() >= open,
                    "open {open_ms} ms, {back} µs back"
                );
            }
        }
    }
}

/// failsafe-rs / Resilience4j exponential backoff
/// (`IntervalFunction.ofExponentialBackoff`): "`open_for · 2^streak`,
/// capped at `max_open_for`", "at most `open_for · 2¹⁵`: 15 doublings",
/// "Closing resets the growth". Driven through 40 failed trials.
#[test]
fn exponential_open_time_grows_caps_and_resets() {
    let base = ms(8);
    let cap = Duration::from_micros(base.as_micros() << 15);
    let cfg = Config::builder()
        .consecutive_failures(1)
        .open_for(base)
        .max_open_for(cap)
        .build()
        .unwrap();
    let b = CircuitBreaker::new(cfg);
    let mut t = Instant::from_secs(1);
    assert_eq!(call(&b, t, Outcome::Failure), Some(State::Open));
    for streak in 0..40u32 {
        let r = b.try_acquire(t).unwrap_err();
        let expected = Duration::from_micros(base.as_micros() << streak.min(15));
        let wait = r.retry_after.unwrap();
        assert!(
            wait >= expected && wait <= expected + ms(2),
            "streak {streak}: wait {wait:?}, expected {expected:?}"
        );
        t += wait;
        let trial = b.try_acquire(t).expect("a trial");
        assert_eq!(
            trial.record(Outcome::Failure, t, ms(1)).map(|x| x.to),
            Some(State::Open)
        );
    }
    let wait = b.try_acquire(t).unwrap_err().retry_after.unwrap();
    t += wait;
    let trial = b.try_acquire(t).expect("a trial");
    assert_eq!(
        trial.record(Outcome::Success, t, ms(1)).map(|x| x.to),
        Some(State::Closed)
    );
    assert_eq!(call(&b, t, Outcome::Failure), Some(State::Open));
    let wait = b.try_acquire(t).unwrap_err().retry_after.unwrap();
    assert!(
        wait >= base && wait <= base + ms(2),
        "growth not reset: {wait:?}"
    );
}

/// Resilience4j `shouldNotAllowTransitionFromClosedToHalfOpen` family,
/// over a long history of half-open cycles: trial permits held while the
/// breaker goes round Open → HalfOpen → Open (failed trials) 2¹⁴·k times
/// stay stale ("a permit held unrecorded across any number of
/// transitions ... is never taken for a current one").
#[test]
fn trial_permits_held_across_many_half_open_cycles_stay_stale() {
    let cfg = Config::builder()
        .consecutive_failures(1)
        .open_for(ms(2))
        .half_open_permits(63)
        .close_after(1)
        .build()
        .unwrap();
    let b = CircuitBreaker::new(cfg);
    let mut t = Instant::from_secs(1);
    assert_eq!(call(&b, t, Outcome::Failure), Some(State::Open));
    let step = |t: &mut Instant| {
        let wait = b.try_acquire(*t).unwrap_err().retry_after.unwrap();
        *t += wait;
    };
    step(&mut t);
    // 10 trial permits of the first half-open generation, held.
    let mut held: Vec<_> = (0..10).map(|_| b.try_acquire(t).unwrap()).collect();
    assert!(held.iter().all(fusebox::breaker::Permit::is_trial));
    // One more trial fails: reopen.
    let p = b.try_acquire(t).unwrap();
    assert_eq!(
        p.record(Outcome::Failure, t, ms(1)).map(|x| x.to),
        Some(State::Open)
    );
    let mut cycles = 0u64;
    for checkpoint in 1..=10u64 {
        // Each cycle: wait, one trial (HalfOpen), it fails (Open).
        while cycles < checkpoint * 16_384 {
            step(&mut t);
            let p = b.try_acquire(t).unwrap();
            assert!(p.is_trial());
            assert!(p.record(Outcome::Failure, t, ms(1)).is_some());
            cycles += 1;
            // Growth is capped by max_open_for = open_for: no growth.
        }
        // Half-open again, with the low generation bits of the held ones
        // possibly aliased: a held success must decide nothing.
        step(&mut t);
        let fresh = b.try_acquire(t).unwrap();
        let stale = held.pop().unwrap();
        assert_eq!(
            stale.record(Outcome::Success, t, ms(1)),
            None,
            "after {cycles} cycles"
        );
        assert_eq!(b.state(t), State::HalfOpen, "after {cycles} cycles");
        assert!(fresh.record(Outcome::Failure, t, ms(1)).is_some());
    }
}

/// A slow trial "counts as a failed trial"; a call exactly at the
/// threshold is slow ("taking `threshold` or longer"). Resilience4j counts
/// only calls above the threshold: fusebox's documented difference.
#[test]
fn r4j_slow_call_at_threshold_and_slow_trial() {
    let th = ms(100);
    let cfg = Config::builder()
        .slow_call(th, 50)
        .window(4)
        .minimum_calls(4)
        .open_for(ms(10))
        .build()
        .unwrap();
    let b = CircuitBreaker::new(cfg);
    let t = Instant::from_secs(1);
    let rec = |d: Duration| {
        b.try_acquire(t)
            .unwrap()
            .record(Outcome::Success, t, d)
            .map(|x| x.to)
    };
    assert_eq!(rec(th - Duration::from_micros(1)), None);
    assert_eq!(rec(th), None);
    assert_eq!(rec(Duration::ZERO), None);
    assert_eq!(rec(Duration::MAX), Some(State::Open), "2 of 4 slow: 50 %");
    assert_eq!(b.metrics().slow_calls, 2);
    let t2 = t + ms(20);
    let trial = b.try_acquire(t2).unwrap();
    assert_eq!(
        trial.record(Outcome::Success, t2, th).map(|x| x.to),
        Some(State::Open)
    );
}
