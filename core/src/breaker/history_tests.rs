//! White-box regression tests of long histories: generations burnt by the
//! tens of thousands through every path, the epoch driven past its wrap, and
//! stale clocks. Each names the bug it would have caught.

use super::generation::low;
use super::*;
use crate::sync::Epoch;
extern crate std;

const T0: Instant = Instant::from_secs(1_000);
const MS: Duration = Duration::from_millis(1);

fn rate_config() -> Config {
    // The reproduction: failure_rate(50), defaults (window 64,
    // minimum_calls 64), open_for 5 s.
    Config::builder()
        .failure_rate(50)
        .open_for(Duration::from_secs(5))
        .build()
        .unwrap()
}

fn epoch(b: &CircuitBreaker) -> Epoch {
    b.epoch.load(Ordering::Relaxed)
}

/// Records `failures` failures at `now` and returns the 1-based index of the
/// one that opened the breaker.
fn failures_until_open(b: &CircuitBreaker, now: Instant, failures: usize) -> Option<usize> {
    for i in 1..=failures {
        let permit = b.try_acquire(now).ok()?;
        if let Some(t) = permit.record(Outcome::Failure, now, MS) {
            assert_eq!(t.to, State::Open);
            return Some(i);
        }
    }
    None
}

/// `b` answers a mixed run of outcomes, then failures, exactly as a fresh
/// breaker with its configuration does, and ends open.
fn trips_like_a_fresh_one(b: &CircuitBreaker, now: Instant) {
    let fresh = CircuitBreaker::new(b.config());
    let mixed = [false, true, false, false, true, true, false, true];
    let run = mixed.iter().cycle().take(40).chain([true; 200].iter());
    for (i, fail) in run.enumerate() {
        let outcome = if *fail {
            Outcome::Failure
        } else {
            Outcome::Success
        };
        let call = |x: &CircuitBreaker| {
            x.try_acquire(now)
                .map(|p| p.record(outcome, now, MS))
                .map_err(|r| r.state)
        };
        assert_eq!(call(b), call(&fresh), "call {i}");
    }
    assert_eq!(fresh.state(now), State::Open);
    assert_eq!(b.state(now), State::Open);
}

/// Fails `probes` half-open trials in a row, one per open period, and
/// returns the time after the last one reopens.
fn failed_probes(b: &CircuitBreaker, mut now: Instant, probes: u32) -> Instant {
    for _ in 0..probes {
        let left = b.try_acquire(now).unwrap_err().retry_after.unwrap();
        now += left;
        let trial = b.try_acquire(now).expect("a trial after the open time");
        assert!(trial.is_trial());
        let t = trial.record(Outcome::Failure, now, MS).unwrap();
        assert_eq!(t.to, State::Open);
    }
    let left = b.try_acquire(now).unwrap_err().retry_after.unwrap();
    now + left
}

#[test]
fn failure_rate_still_trips_after_a_three_hour_outage() {
    // ≈ 2 100 failed probes at 5 s, then recovery: the breaker used to stay
    // Closed with 0 calls in its window through 1 000 failures.
    for probes in [2_100, 4_096, 20_000] {
        let b = CircuitBreaker::new(rate_config());
        assert_eq!(failures_until_open(&b, T0, 1_000), Some(64));
        let now = failed_probes(&b, T0, probes);
        let trial = b.try_acquire(now).unwrap();
        assert_eq!(
            trial.record(Outcome::Success, now, MS).map(|t| t.to),
            Some(State::Closed)
        );
        assert_eq!(failures_until_open(&b, now, 1_000), Some(64), "{probes}");
    }
}

#[test]
fn twenty_thousand_generations_through_each_path_then_trips_as_fresh() {
    let configs = [
        rate_config(),
        Config::builder()
            .failure_rate(50)
            .window(10)
            .minimum_calls(5)
            .slow_call(Duration::from_millis(100), 80)
            .build()
            .unwrap(),
        Config::builder().consecutive_failures(3).build().unwrap(),
    ];
    for config in configs {
        let now = T0;
        // force_open / force_close
        let b = CircuitBreaker::new(config);
        for _ in 0..10_000 {
            b.force_open(now).unwrap();
            b.force_close(now).unwrap();
        }
        assert_eq!(epoch(&b), 20_000);
        trips_like_a_fresh_one(&b, now);

        // reset (also from a window with outcomes in it)
        let b = CircuitBreaker::new(config);
        for i in 0..20_000 {
            if i % 1_000 == 0 {
                let _ = b
                    .try_acquire(now)
                    .map(|p| p.record(Outcome::Failure, now, MS));
            }
            b.reset(now);
        }
        trips_like_a_fresh_one(&b, now);

        // restore
        let b = CircuitBreaker::new(config);
        let closed = CircuitBreaker::new(config).snapshot(now);
        for _ in 0..20_000 {
            b.restore(&closed, now).unwrap();
        }
        assert_eq!(epoch(&b), 20_000);
        trips_like_a_fresh_one(&b, now);

        // successful half-open trials (each close is a new generation)
        let b = CircuitBreaker::new(config);
        let mut now = T0;
        for _ in 0..10_000 {
            b.force_open(now);
            b.force_close(now);
            let n = failures_until_open(&b, now, 1_000).unwrap();
            assert!(n <= 64);
            now += b.try_acquire(now).unwrap_err().retry_after.unwrap();
            let trial = b.try_acquire(now).unwrap();
            assert!(trial.record(Outcome::Success, now, MS).is_some());
        }
        trips_like_a_fresh_one(&b, now);
    }
}

#[test]
fn losing_attempts_draw_no_generation() {
    let b = CircuitBreaker::new(rate_config());
    b.force_open(T0).unwrap();
    let before = epoch(&b);
    assert!(b.force_open(T0).is_none());
    assert!(b.force_close(T0).is_some());
    assert!(b.force_close(T0).is_none());
    assert_eq!(epoch(&b), before + 1, "one generation per transition made");
    // Rejections while open draw none either.
    failures_until_open(&b, T0, 64).unwrap();
    let at = epoch(&b);
    for _ in 0..1_000 {
        assert!(b.try_acquire(T0).is_err());
    }
    assert_eq!(epoch(&b), at);

    // Threads racing the same transitions: exactly one generation each.
    let b = CircuitBreaker::new(rate_config());
    let made = std::sync::atomic::AtomicU32::new(0);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..20_000 {
                    let n = u32::from(b.force_open(T0).is_some())
                        + u32::from(b.force_close(T0).is_some());
                    made.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
    });
    let made = made.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(epoch(&b), Epoch::from(made));
}

#[test]
fn a_permit_held_across_the_fourteen_bit_wrap_stays_stale() {
    // Closed permit: after 2^14 transitions the state word is bit for bit
    // the one that issued it.
    let b = CircuitBreaker::new(Config::builder().consecutive_failures(1).build().unwrap());
    let held = b.try_acquire(T0).unwrap();
    let word = b.load();
    for _ in 0..(1 << 13) {
        b.force_open(T0);
        b.force_close(T0);
    }
    assert_eq!(b.load(), word, "the word has come round");
    assert_eq!(held.record(Outcome::Failure, T0, MS), None);
    assert_eq!(
        b.state(T0),
        State::Closed,
        "a stale failure decides nothing"
    );
    assert_eq!(b.metrics().failures, 1, "but is counted");

    // Half-open permit: the word comes back as HalfOpen with the same low
    // bits and one trial in flight.
    let b = CircuitBreaker::new(
        Config::builder()
            .consecutive_failures(1)
            .open_for(MS)
            .half_open_permits(2)
            .build()
            .unwrap(),
    );
    failures_until_open(&b, T0, 1).unwrap();
    let mut now = T0 + Duration::from_millis(10);
    let held = b.try_acquire(now).unwrap();
    assert!(held.is_trial());
    let word = b.load();
    // Each cycle draws two generations (a forced close, then the next
    // half-open after a trip from closed, whose streak starts at 0 again)
    // and leaves one trial in flight, as in `word`.
    for _ in 0..(1 << 13) {
        b.force_close(now).unwrap();
        failures_until_open(&b, now, 1).unwrap();
        now += Duration::from_millis(10);
        let next = b.try_acquire(now).unwrap();
        assert!(next.is_trial());
        core::mem::forget(next);
    }
    assert_eq!(b.load(), word, "the word has come round");
    assert_eq!(held.record(Outcome::Failure, now, MS), None);
    assert_eq!(
        b.load(),
        word,
        "a stale trial neither reopens nor frees a slot"
    );
}

#[test]
fn the_epoch_wraps_without_losing_a_trip() {
    // Start a few generations below the epoch word's wrap, with the state
    // word's low bits to match.
    let b = CircuitBreaker::new(rate_config());
    let start = Epoch::MAX - 5;
    b.epoch.store(start, Ordering::Relaxed);
    b.state.store(
        Word::closed(low(start), 0, Cursor::EMPTY).0,
        Ordering::Relaxed,
    );
    let held = b.try_acquire(T0).unwrap();
    for _ in 0..6 {
        b.force_open(T0);
        b.force_close(T0);
    }
    assert!(epoch(&b) < 10, "wrapped");
    assert_eq!(held.record(Outcome::Failure, T0, MS), None);
    trips_like_a_fresh_one(&b, T0);
}

#[test]
fn a_success_that_completes_minimum_calls_evaluates_the_rate() {
    // F F F S in a window of 4: 75 % once the window holds 4 calls.
    let b = CircuitBreaker::new(
        Config::builder()
            .failure_rate(50)
            .window(4)
            .minimum_calls(4)
            .build()
            .unwrap(),
    );
    for _ in 0..3 {
        assert_eq!(
            b.try_acquire(T0).unwrap().record(Outcome::Failure, T0, MS),
            None
        );
    }
    let t = b.try_acquire(T0).unwrap().record(Outcome::Success, T0, MS);
    assert_eq!(t.map(|t| t.to), Some(State::Open));

    // Also when minimum_calls is below the window: every success of the
    // first lap from there on evaluates.
    let b = CircuitBreaker::new(
        Config::builder()
            .failure_rate(50)
            .window(10)
            .minimum_calls(4)
            .slow_call(Duration::from_millis(100), 50)
            .build()
            .unwrap(),
    );
    let slow = Duration::from_millis(200);
    for _ in 0..3 {
        assert_eq!(
            b.try_acquire(T0)
                .unwrap()
                .record(Outcome::Success, T0, slow),
            None
        );
    }
    let t = b.try_acquire(T0).unwrap().record(Outcome::Success, T0, MS);
    assert_eq!(t.map(|t| t.to), Some(State::Open), "3 of 4 slow");
}

#[test]
fn a_stale_now_never_fails_open() {
    // Servers read the clock, await, then call: another thread's trip is
    // often stamped later than this caller's `now`.
    for open_for in [
        Duration::from_millis(50),
        Duration::from_secs(5),
        Duration::from_secs(600),
    ] {
        let b = CircuitBreaker::new(
            Config::builder()
                .consecutive_failures(1)
                .open_for(open_for)
                .max_open_for(open_for.saturating_mul(4))
                .build()
                .unwrap(),
        );
        let trip_at = T0 + Duration::from_secs(3_600);
        failures_until_open(&b, trip_at, 1).unwrap();
        let deadline = trip_at + b.try_acquire(trip_at).unwrap_err().retry_after.unwrap();
        let tolerance = open_for.max(Duration::from_millis(1_048));
        for step in 0..=64u64 {
            let back = Duration::from_micros(tolerance.as_micros() * step / 64);
            let stale = trip_at - back;
            let r = b.try_acquire(stale).unwrap_err();
            assert_eq!(r.state, State::Open, "{open_for:?}, {back:?} stale");
            assert_eq!(r.retry_after, Some(deadline - stale));
            assert_eq!(b.state(stale), State::Open);
        }
        // A re-opening from half-open, stamped later than another caller.
        let trial_at = deadline;
        let trial = b.try_acquire(trial_at).unwrap();
        let reopen_at = trial_at + Duration::from_millis(30);
        trial.record(Outcome::Failure, reopen_at, MS).unwrap();
        for back in [MS, open_for, open_for.saturating_mul(2)] {
            assert!(b.try_acquire(reopen_at - back).is_err(), "{back:?}");
        }
    }
}

#[test]
fn a_snapshot_at_a_stale_now_restores() {
    let open_for = Config::MAX_OPEN_FOR;
    let b = CircuitBreaker::new(
        Config::builder()
            .consecutive_failures(1)
            .open_for(open_for)
            .build()
            .unwrap(),
    );
    let trip_at = T0 + open_for + open_for;
    failures_until_open(&b, trip_at, 1).unwrap();
    let stale = trip_at - open_for;
    assert_eq!(b.state(stale), State::Open);
    let snapshot = b.snapshot(stale);
    let left = snapshot.open_remaining.unwrap();
    assert!(left >= open_for && left <= open_for + Duration::from_micros(word::TICK_MICROS));
    let other = CircuitBreaker::new(b.config());
    other.restore(&snapshot, T0).unwrap();
    assert_eq!(other.state(T0), State::Open);
}
