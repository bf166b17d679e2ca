//! `CircuitBreaker::set_config`: what a live change keeps, what it changes
//! and when, and what it refuses — each case from the method's docs. The
//! contract model (`breaker_model.rs`) also changes configurations in half
//! its histories; these are the named cases.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};

use fusebox::breaker::{CircuitBreaker, Config, Outcome, ReconfigureError, State};
use fusebox::{Duration, Instant};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn consecutive(n: u32, open_for: Duration) -> Config {
    Config::builder()
        .consecutive_failures(n)
        .open_for(open_for)
        .build()
        .unwrap()
}

fn fail(b: &CircuitBreaker, now: Instant) -> Option<fusebox::breaker::Transition> {
    b.try_acquire(now)
        .unwrap()
        .record(Outcome::Failure, now, Duration::ZERO)
}

fn succeed(b: &CircuitBreaker, now: Instant) -> Option<fusebox::breaker::Transition> {
    b.try_acquire(now)
        .unwrap()
        .record(Outcome::Success, now, Duration::ZERO)
}

#[test]
fn config_reads_back_what_was_set_and_returns_the_previous() {
    let first = consecutive(5, ms(1_000));
    let b = CircuitBreaker::new(first);
    let second = Config::builder()
        .consecutive_failures(2)
        .open_for(ms(250))
        .max_open_for(ms(4_000))
        .half_open_permits(3)
        .close_after(2)
        .build()
        .unwrap();
    assert_eq!(b.set_config(second), Ok(first));
    assert_eq!(b.config(), second);
    assert_eq!(b.set_config(first), Ok(second));
    assert_eq!(b.config(), first);
}

#[test]
fn a_lowered_threshold_trips_on_the_next_failure_and_a_raised_one_waits() {
    let b = CircuitBreaker::new(consecutive(5, ms(1_000)));
    let now = Instant::from_secs(1);
    for _ in 0..3 {
        assert_eq!(fail(&b, now), None);
    }
    // Three in a row, threshold lowered to 2: already past it, so the next
    // failure trips (not the change itself).
    b.set_config(consecutive(2, ms(1_000))).unwrap();
    assert_eq!(b.state(now), State::Closed);
    let t = fail(&b, now).expect("trips");
    assert_eq!((t.from, t.to), (State::Closed, State::Open));

    let b = CircuitBreaker::new(consecutive(3, ms(1_000)));
    for _ in 0..2 {
        fail(&b, now);
    }
    b.set_config(consecutive(6, ms(1_000))).unwrap();
    for _ in 0..3 {
        assert_eq!(
            fail(&b, now),
            None,
            "the raised threshold counts the streak so far"
        );
    }
    assert!(fail(&b, now).is_some(), "the sixth failure in a row trips");
}

#[test]
fn turning_the_consecutive_policy_on_counts_the_streak_under_way() {
    let rate_only = Config::builder()
        .failure_rate(100)
        .window(64)
        .minimum_calls(64)
        .build()
        .unwrap();
    let b = CircuitBreaker::new(rate_only);
    let now = Instant::from_secs(1);
    for _ in 0..4 {
        assert_eq!(fail(&b, now), None);
    }
    let both = Config::builder()
        .failure_rate(100)
        .window(64)
        .minimum_calls(64)
        .consecutive_failures(5)
        .build()
        .unwrap();
    b.set_config(both).unwrap();
    assert!(fail(&b, now).is_some(), "the fifth failure in a row");
}

#[test]
fn a_lowered_rate_applies_from_the_next_evaluated_outcome() {
    let rate = |percent| {
        Config::builder()
            .failure_rate(percent)
            .window(10)
            .minimum_calls(10)
            .build()
            .unwrap()
    };
    let b = CircuitBreaker::new(rate(50));
    let now = Instant::from_secs(1);
    for i in 0..10 {
        // 3 failures in 10: under 50 %.
        let outcome = if i < 3 {
            Outcome::Failure
        } else {
            Outcome::Success
        };
        assert_eq!(
            b.try_acquire(now)
                .unwrap()
                .record(outcome, now, Duration::ZERO),
            None
        );
    }
    b.set_config(rate(40)).unwrap();
    // A fast success in a full window replaces an older outcome and is not
    // evaluated (the `failure_rate` docs): F F S S S S S S S S (20 %).
    assert_eq!(succeed(&b, now), None);
    // A failure is: F S S S S S S S S F, 20 % < 40 %.
    assert_eq!(fail(&b, now), None);
    b.set_config(rate(20)).unwrap();
    // Still 20 % in the window, but nothing is evaluated until the next
    // failure or slow call: a success does not trip...
    assert_eq!(succeed(&b, now), None);
    // ... S S S S S S S F S F: 20 % >= 20 %, this failure trips.
    let t = fail(&b, now).expect("2 failures in 10 >= 20 %");
    assert_eq!(t.to, State::Open);
}

#[test]
fn an_open_breaker_keeps_its_deadline_and_the_next_opening_uses_the_new_time() {
    let b = CircuitBreaker::new(consecutive(1, Duration::from_secs(3_600)));
    let trip = Instant::from_secs(100);
    fail(&b, trip).unwrap();
    // An operator shortens the open time to 1 s while the breaker is open
    // for an hour: the hour stands, also for a clock that is a little
    // stale, and for every `now` until the deadline.
    b.set_config(consecutive(1, Duration::from_secs(1)))
        .unwrap();
    for now in [
        trip - Duration::from_secs(30),
        trip,
        trip + Duration::from_secs(10),
        trip + Duration::from_secs(1_800),
        trip + Duration::from_secs(3_599),
    ] {
        assert_eq!(b.state(now), State::Open, "at {now:?}");
        let left = b.try_acquire(now).unwrap_err().retry_after.unwrap();
        let deadline = trip + Duration::from_secs(3_600) + ms(2);
        assert!(left > Duration::ZERO && now + left <= deadline, "{left:?}");
    }
    let reopen = trip + Duration::from_secs(3_601);
    let trial = b.try_acquire(reopen).expect("half-open after the hour");
    trial.record(Outcome::Failure, reopen, Duration::ZERO);
    // The re-opening uses the new open time.
    let left = b.try_acquire(reopen).unwrap_err().retry_after.unwrap();
    assert!(
        left >= Duration::from_secs(1) && left < ms(1_002),
        "{left:?}"
    );
}

/// A snapshot of a breaker whose open time was shortened while it was
/// open says what a trip at its `now` would leave under the new open time
/// (`Snapshot::open_remaining`'s cap), while the breaker itself keeps its
/// longer deadline (`set_config`'s docs): restored, the new open time.
#[test]
fn a_snapshot_after_a_shortened_open_time_is_capped_at_the_new_one() {
    let short = consecutive(1, Duration::from_secs(1));
    let b = CircuitBreaker::new(consecutive(1, Duration::from_secs(3_600)));
    let trip = Instant::from_secs(100);
    fail(&b, trip).unwrap();
    b.set_config(short).unwrap();
    let now = trip + Duration::from_secs(10);
    let kept = b.try_acquire(now).unwrap_err().retry_after.unwrap();
    assert!(kept > Duration::from_secs(3_500), "{kept:?}");
    let snap = b.snapshot(now);
    assert_eq!(
        snap.open_remaining,
        Some(Duration::from_secs(1) + Duration::from_micros(1_024))
    );
    let restored = CircuitBreaker::new(short);
    restored.restore(&snap, now).unwrap();
    let left = restored.try_acquire(now).unwrap_err().retry_after.unwrap();
    assert!(left <= Duration::from_secs(1) + ms(2), "{left:?}");
}

#[test]
fn half_open_limits_apply_to_the_next_trial_and_success() {
    let config = |permits, close_after| {
        Config::builder()
            .consecutive_failures(1)
            .open_for(ms(100))
            .half_open_permits(permits)
            .close_after(close_after)
            .build()
            .unwrap()
    };
    let b = CircuitBreaker::new(config(4, 4));
    let now = Instant::from_secs(1);
    fail(&b, now).unwrap();
    let later = now + ms(200);
    let t1 = b.try_acquire(later).unwrap();
    let t2 = b.try_acquire(later).unwrap();
    assert_eq!(t1.record(Outcome::Success, later, Duration::ZERO), None);
    // One success so far, one trial in flight; permits lowered to 1 (one
    // is in flight already: the next is refused) and close_after to 1
    // (already reached: the next success closes).
    b.set_config(config(1, 1)).unwrap();
    assert_eq!(b.try_acquire(later).unwrap_err().state, State::HalfOpen);
    let t = t2
        .record(Outcome::Success, later, Duration::ZERO)
        .expect("closes");
    assert_eq!((t.from, t.to), (State::HalfOpen, State::Closed));
}

#[test]
fn the_window_and_the_counters_survive_a_change() {
    let rate = |percent| {
        Config::builder()
            .failure_rate(percent)
            .window(4)
            .minimum_calls(4)
            .build()
            .unwrap()
    };
    let b = CircuitBreaker::new(rate(75));
    let now = Instant::from_secs(1);
    fail(&b, now);
    fail(&b, now);
    succeed(&b, now);
    let before = b.metrics();
    b.set_config(rate(50)).unwrap();
    assert_eq!(b.metrics(), before);
    let snapshot = b.snapshot(now);
    assert_eq!(
        (snapshot.window_calls, snapshot.window_failures),
        (3, 0b011)
    );
    // The fourth call completes the minimum: 2 failures in 4 >= 50 %.
    assert!(succeed(&b, now).is_some());
}

#[test]
fn the_window_shape_is_refused_and_the_breaker_left_unchanged() {
    let rate = Config::builder()
        .failure_rate(50)
        .window(8)
        .build()
        .unwrap();
    let b = CircuitBreaker::new(rate);
    let now = Instant::from_secs(1);
    fail(&b, now);
    let before = (b.config(), b.metrics(), b.snapshot(now));
    let wider = Config::builder()
        .failure_rate(50)
        .window(16)
        .build()
        .unwrap();
    assert_eq!(
        b.set_config(wider),
        Err(ReconfigureError::WindowSize {
            current: 8,
            requested: 16
        })
    );
    let no_window = Config::builder()
        .consecutive_failures(3)
        .window(8)
        .build()
        .unwrap();
    assert_eq!(b.set_config(no_window), Err(ReconfigureError::WindowPolicy));
    assert_eq!((b.config(), b.metrics(), b.snapshot(now)), before);

    let counted = CircuitBreaker::new(consecutive(3, ms(100)));
    let with_rate = Config::builder()
        .consecutive_failures(3)
        .failure_rate(50)
        .build()
        .unwrap();
    assert_eq!(
        counted.set_config(with_rate),
        Err(ReconfigureError::WindowPolicy)
    );
    assert!(ReconfigureError::WindowPolicy
        .to_string()
        .contains("rate policies"));
}

#[test]
fn open_times_round_up_to_8_us_and_slow_thresholds_are_bounded() {
    let config = Config::builder()
        .consecutive_failures(1)
        .open_for(Duration::from_micros(1_001))
        .max_open_for(Duration::from_micros(4_001))
        .build()
        .unwrap();
    assert_eq!(config.open_for(), Duration::from_micros(1_008));
    assert_eq!(config.max_open_for(), Duration::from_micros(4_008));
    assert_eq!(CircuitBreaker::new(config).config(), config);
    let too_long = Config::MAX_SLOW_THRESHOLD + Duration::from_micros(1);
    assert_eq!(
        Config::builder().slow_call(too_long, 50).build(),
        Err(fusebox::breaker::ConfigError::SlowThresholdTooLong(
            too_long
        ))
    );
    let longest = Config::builder()
        .slow_call(Config::MAX_SLOW_THRESHOLD, 50)
        .build()
        .unwrap();
    assert_eq!(CircuitBreaker::new(longest).config(), longest);
}

/// Threads trip, probe and recover a shared breaker while another flips its
/// configuration between two; every transition is one the current or the
/// previous configuration allows, and the counters add up.
#[test]
fn changes_racing_calls_from_many_threads() {
    let a = Config::builder()
        .consecutive_failures(2)
        .open_for(ms(5))
        .half_open_permits(2)
        .build()
        .unwrap();
    let c = Config::builder()
        .consecutive_failures(7)
        .open_for(ms(20))
        .max_open_for(ms(80))
        .half_open_permits(1)
        .close_after(1)
        .build()
        .unwrap();
    let b = Arc::new(CircuitBreaker::new(a));
    let clock = Arc::new(AtomicU64::new(1_000_000));
    let threads = 4;
    let barrier = Arc::new(Barrier::new(threads + 1));
    // Miri checks the races for UB, not the statistics: fewer calls.
    let calls = if cfg!(miri) { 200 } else { 20_000 };
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (b, clock, barrier) = (b.clone(), clock.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let mut recorded = 0u64;
                for i in 0..calls {
                    let now = Instant::from_micros(clock.fetch_add(37, Ordering::Relaxed));
                    if let Ok(permit) = b.try_acquire(now) {
                        let outcome = if (i + t) % 3 == 0 {
                            Outcome::Failure
                        } else {
                            Outcome::Success
                        };
                        permit.record(outcome, now, Duration::ZERO);
                        recorded += 1;
                    }
                }
                recorded
            })
        })
        .collect();
    barrier.wait();
    for i in 0..if cfg!(miri) { 20 } else { 2_000 } {
        let (old, new) = if i % 2 == 0 { (a, c) } else { (c, a) };
        assert_eq!(b.set_config(new), Ok(old));
    }
    let recorded: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    let m = b.metrics();
    assert_eq!(m.successes + m.failures, recorded);
    assert_eq!(m.calls() + m.rejected, (threads * calls) as u64);
    assert_eq!(b.config(), a);
}

/// With a time window, `failure_count` and the rates are live; the window's
/// length and buckets are not.
#[cfg(feature = "time-window")]
#[test]
fn a_time_windows_count_is_live_and_its_shape_fixed() {
    let counted = |n, total_secs| {
        Config::builder()
            .time_window(Duration::from_secs(total_secs), 4)
            .failure_count(n)
            .build()
            .unwrap()
    };
    let b = CircuitBreaker::new(counted(5, 60));
    let now = Instant::from_secs(100);
    for _ in 0..3 {
        assert_eq!(fail(&b, now), None);
    }
    assert_eq!(b.set_config(counted(4, 60)), Ok(counted(5, 60)));
    assert!(fail(&b, now).is_some(), "the fourth failure within 60 s");
    assert_eq!(
        b.set_config(counted(4, 120)),
        Err(ReconfigureError::TimeWindow)
    );
    assert_eq!(b.config(), counted(4, 60));
}

/// The half-open timeout is fixed at construction.
#[cfg(feature = "half-open-timeout")]
#[test]
fn the_half_open_timeout_is_fixed() {
    let with = |ms_| {
        Config::builder()
            .consecutive_failures(1)
            .max_half_open(ms(ms_))
            .build()
            .unwrap()
    };
    let b = CircuitBreaker::new(with(500));
    assert_eq!(
        b.set_config(with(900)),
        Err(ReconfigureError::HalfOpenTimeout)
    );
    let mut same = with(500);
    same = Config::builder()
        .consecutive_failures(3)
        .max_half_open(same.max_half_open().unwrap())
        .build()
        .unwrap();
    assert!(b.set_config(same).is_ok());
    assert_eq!(b.config(), same);
}
