//! Unit tests: every transition and every configuration error, on virtual
//! time.

use super::*;

const T0: Instant = Instant::from_secs(1_000);
const MS: Duration = Duration::from_millis(1);
const TICK: Duration = Duration::from_micros(word::TICK_MICROS);
/// How often the idle-breaker tests read the state over their three days:
/// every 7 s natively; hourly under Miri, which interprets each read
/// (the wrap's worst instants are read separately either way).
const IDLE_READS: Duration = if cfg!(miri) {
    Duration::from_secs(3_600)
} else {
    Duration::from_secs(7)
};

fn breaker(b: ConfigBuilder) -> CircuitBreaker {
    CircuitBreaker::new(b.build().expect("valid config"))
}

fn consecutive(n: u32) -> ConfigBuilder {
    Config::builder()
        .consecutive_failures(n)
        .open_for(Duration::from_secs(10))
}

fn fail(b: &CircuitBreaker, now: Instant) -> Option<Transition> {
    b.try_acquire(now)
        .expect("permitted")
        .record(Outcome::Failure, now, MS)
}

fn succeed(b: &CircuitBreaker, now: Instant) -> Option<Transition> {
    b.try_acquire(now)
        .expect("permitted")
        .record(Outcome::Success, now, MS)
}

/// Trips `b` (consecutive policy) and returns the instant it reopens.
fn trip(b: &CircuitBreaker, now: Instant) -> Instant {
    let n = b.config().consecutive_failures().unwrap();
    for _ in 0..n {
        fail(b, now);
    }
    let left = b.try_acquire(now).unwrap_err().retry_after.unwrap();
    now + left
}

#[test]
fn closed_to_open_after_consecutive_failures() {
    let b = breaker(consecutive(3));
    assert_eq!(fail(&b, T0), None);
    assert_eq!(fail(&b, T0), None);
    let t = fail(&b, T0).expect("third failure trips");
    assert_eq!((t.from, t.to, t.at), (State::Closed, State::Open, T0));
    assert_eq!(b.state(T0), State::Open);
    assert_eq!(b.metrics().trips, 1);
}

#[test]
fn a_success_resets_the_consecutive_count() {
    let b = breaker(consecutive(3));
    fail(&b, T0);
    fail(&b, T0);
    assert_eq!(succeed(&b, T0), None);
    fail(&b, T0);
    fail(&b, T0);
    assert_eq!(b.state(T0), State::Closed);
    assert!(fail(&b, T0).is_some());
}

#[test]
fn open_rejects_with_exact_retry_after() {
    let b = breaker(consecutive(1));
    let reopen = trip(&b, T0);
    assert!(reopen - T0 >= Duration::from_secs(10));
    assert!(reopen - T0 < Duration::from_secs(10) + TICK);
    let r = b.try_acquire(T0 + Duration::from_secs(4)).unwrap_err();
    assert_eq!(r.state, State::Open);
    assert_eq!(r.retry_after, Some(reopen - (T0 + Duration::from_secs(4))));
    // One microsecond early: still open, one microsecond to go.
    let r = b
        .try_acquire(reopen - Duration::from_micros(1))
        .unwrap_err();
    assert_eq!(r.retry_after, Some(Duration::from_micros(1)));
    // Exactly at `now + retry_after`: a trial.
    let p = b.try_acquire(reopen).expect("half-open trial");
    assert_eq!(
        p.transition(),
        Some(Transition {
            from: State::Open,
            to: State::HalfOpen,
            at: reopen
        })
    );
    assert!(p.is_trial());
    assert_eq!(b.metrics().rejected, 3);
}

#[test]
fn state_reports_half_open_once_the_open_time_passed_without_changing_it() {
    let b = breaker(consecutive(1));
    let reopen = trip(&b, T0);
    assert_eq!(b.state(reopen), State::HalfOpen);
    // Nothing changed: a later acquire still performs the transition.
    assert!(b.try_acquire(reopen).unwrap().transition().is_some());
}

#[test]
fn state_with_reads_the_clock_only_when_the_answer_needs_it() {
    let b = breaker(consecutive(1));
    assert_eq!(
        b.state_with(|| panic!("closed: no clock read")),
        State::Closed
    );
    let reopen = trip(&b, T0);
    let mut reads = 0;
    let mut at = |t: Instant| {
        reads += 1;
        t
    };
    assert_eq!(
        b.state_with(|| at(reopen - Duration::from_micros(1))),
        State::Open
    );
    assert_eq!(b.state_with(|| at(reopen)), State::HalfOpen);
    assert_eq!(reads, 2);
    assert_eq!(b.state(reopen), b.state_with(|| reopen));
    b.force_open(reopen);
    assert_eq!(
        b.state_with(|| panic!("forced open: no clock read")),
        State::ForcedOpen
    );
}

/// An open breaker nobody calls after its deadline reads half-open, and
/// admits a trial, however long after (here three days, read every 7 s):
/// its full deadline (`open_until`) extends the state word's 26 bits
/// (≈ 19 h 5 min). Before, it read open again during the last two open
/// times before each multiple of that: with a 4 h open time, from 15 h to
/// 23 h after the trip, refusing every call.
#[test]
fn an_unused_breaker_never_reads_open_again_after_its_deadline() {
    let wrap = Duration::from_micros((1 << 26) * word::TICK_MICROS);
    for open_for in [Duration::from_secs(30), Duration::from_secs(4 * 3_600)] {
        let b = breaker(Config::builder().consecutive_failures(1).open_for(open_for));
        let reopens = trip(&b, T0);
        assert!(reopens >= T0 + open_for && reopens < T0 + open_for + TICK);
        assert_eq!(b.state(reopens - MS), State::Open);
        let mut t = reopens;
        while t < T0 + Duration::from_secs(3 * 86_400) {
            assert_eq!(
                b.state(t),
                State::HalfOpen,
                "{open_for:?}: {:?} after",
                t - T0
            );
            t += IDLE_READS;
        }
        // A call at the old wrap's worst instants is a trial.
        for at in [reopens + wrap - open_for, reopens + wrap + wrap - MS] {
            let b = breaker(Config::builder().consecutive_failures(1).open_for(open_for));
            let _ = trip(&b, T0);
            let permit = b.try_acquire(at).expect("a trial, not a refusal");
            assert_eq!(permit.transition().map(|t| t.to), Some(State::HalfOpen));
        }
    }
}

/// A trip behind the last deadline recorded (a clock that went back, by
/// days) records its own: its word is never read against the other
/// trip's.
#[test]
fn a_trip_on_a_clock_behind_the_newest_deadline_reads_its_own() {
    let open_for = Duration::from_secs(30);
    let b = breaker(Config::builder().consecutive_failures(1).open_for(open_for));
    let ahead = T0 + Duration::from_secs(5 * 86_400);
    let _ = trip(&b, ahead);
    b.reset(ahead);
    let reopens = trip(&b, T0);
    assert!(reopens >= T0 + open_for && reopens < T0 + open_for + TICK);
    assert_eq!(b.state(T0), State::Open);
    assert_eq!(b.state(reopens - MS), State::Open);
    assert_eq!(b.state(reopens), State::HalfOpen);
    assert!(b.try_acquire(reopens).is_ok());
}

/// Reads `b` every 7 s from `from` for three days (every 1.024 ms
/// near each multiple of ≈ 19 h 5 min after `from`, where the 26-bit
/// word alone reads open again) and asserts it half-open throughout.
fn assert_half_open_for_days(b: &CircuitBreaker, from: Instant, what: &str) {
    let mut t = from;
    while t < from + Duration::from_secs(3 * 86_400) {
        assert_eq!(b.state(t), State::HalfOpen, "{what}: {:?} after", t - from);
        t += IDLE_READS;
    }
    for k in 1..4 {
        assert_eq!(
            b.state(from + Duration::from_micros(k * (1 << 26) * word::TICK_MICROS) - MS),
            State::HalfOpen,
            "{what}: {k} wraps after"
        );
    }
}

/// The full deadline is the one the word was installed with, whatever
/// else called: a fleet decision merged with less time left than the
/// local trip's (the usual case: the fleet tripped first), a `trip` on a
/// breaker already open (a no-op), a shorter open time set while closed.
/// Each left `open_until` at another deadline than the word's, and the
/// breaker fell back to the 26 bits: unused, it read (and refused) open
/// again from about 14 h after its deadline.
#[test]
fn the_full_deadline_is_the_installed_words_after_a_shorter_merge() {
    let open_for = Duration::from_secs(4 * 3_600);
    let cfg = || Config::builder().consecutive_failures(1).open_for(open_for);
    // A fleet decision with 3 h left, merged 1 s after a local trip.
    let b = breaker(cfg());
    let _ = trip(&b, T0);
    let at = T0 + Duration::from_secs(1);
    let decision = Decision {
        version: 1,
        state: State::Open,
        open_remaining: Some(Duration::from_secs(3 * 3_600)),
        reopen_streak: 0,
    };
    b.merge(&decision, at).unwrap();
    let left = b.try_acquire(at).unwrap_err().retry_after.unwrap();
    assert!(left <= Duration::from_secs(3 * 3_600) + TICK);
    assert_half_open_for_days(&b, at + left, "merged");
}

#[test]
fn the_full_deadline_is_the_installed_words_after_a_trip_of_an_open_breaker() {
    let open_for = Duration::from_secs(4 * 3_600);
    let cfg = || Config::builder().consecutive_failures(1).open_for(open_for);
    let b = breaker(cfg());
    let reopens = trip(&b, T0);
    assert_eq!(b.trip(T0 + Duration::from_secs(1)), None);
    assert_half_open_for_days(&b, reopens, "tripped twice");
}

#[test]
fn the_full_deadline_is_the_installed_words_after_a_shorter_open_time() {
    let open_for = Duration::from_secs(4 * 3_600);
    let cfg = || Config::builder().consecutive_failures(1).open_for(open_for);
    let b = breaker(cfg());
    let _ = trip(&b, T0);
    b.force_close(T0);
    b.set_config(
        Config::builder()
            .consecutive_failures(1)
            .open_for(Duration::from_secs(30))
            .build()
            .unwrap(),
    )
    .unwrap();
    let reopens = trip(&b, T0 + Duration::from_secs(60));
    assert_half_open_for_days(&b, reopens, "shorter open time");
}

/// On 32-bit words the full deadline wraps too (2³² ticks, ≈ 50 days):
/// a device up for longer than that keeps the breaker's fix. `fetch_max`
/// kept the last deadline before the wrap for good: every later trip read
/// from its 26 bits alone (open again from ≈ 19 h after the trip).
#[cfg(not(fusebox_wide_words))]
#[test]
fn the_full_deadline_survives_the_32_bit_tick_wrap() {
    let open_for = Duration::from_secs(30);
    let wrap = 1u64 << 32; // ticks
    let cfg = || Config::builder().consecutive_failures(1).open_for(open_for);
    let before = Instant::from_micros((wrap << word::TICK_SHIFT) - 600_000_000);
    let b = breaker(cfg());
    let _ = trip(&b, before);
    b.force_close(before);
    let after = Instant::from_micros((wrap << word::TICK_SHIFT) + 3_600_000_000);
    let reopens = trip(&b, after);
    assert_half_open_for_days(&b, reopens, "after the wrap");
    // A trip whose open time straddles the wrap.
    let b = breaker(cfg());
    let at = Instant::from_micros((wrap << word::TICK_SHIFT) - 10_000_000);
    let reopens = trip(&b, at);
    assert!(reopens >= at + open_for && reopens < at + open_for + TICK);
    assert_eq!(b.state(reopens - MS), State::Open);
    assert_half_open_for_days(&b, reopens, "across the wrap");
}

/// The 32-bit wrap's worst case: a trip whose deadline is the last one
/// before the wrap plus 2²⁶ ticks (modulo 2³²) matched the kept deadline's
/// low 26 bits and read as passed at once: a trial admitted right after
/// the trip, for its whole open time (fails open).
#[cfg(not(fusebox_wide_words))]
#[test]
fn a_trip_past_the_32_bit_tick_wrap_stays_open() {
    let open_for = Duration::from_secs(30);
    let wrap = 1u64 << 32; // ticks
    let cfg = || Config::builder().consecutive_failures(1).open_for(open_for);
    let before = Instant::from_micros((wrap << word::TICK_SHIFT) - 600_000_000);
    let old = (before.as_micros() + open_for.as_micros()).div_ceil(word::TICK_MICROS);
    let b = breaker(cfg());
    let _ = trip(&b, before);
    b.force_close(before);
    let at = Instant::from_micros(((old + (1 << 26)) << word::TICK_SHIFT) - open_for.as_micros());
    assert_eq!(fail(&b, at).map(|t| t.to), Some(State::Open));
    assert_eq!(b.state(at + MS), State::Open, "open right after the trip");
    assert!(
        b.try_acquire(at + MS).is_err(),
        "a trial right after the trip"
    );
    assert_eq!(b.state(at + open_for - MS), State::Open);
    assert!(b.try_acquire(at + open_for).is_ok());
}

#[test]
fn half_open_admits_at_most_its_permits() {
    let b = breaker(consecutive(1).half_open_permits(2).close_after(2));
    let reopen = trip(&b, T0);
    let p1 = b.try_acquire(reopen).unwrap();
    let p2 = b.try_acquire(reopen).unwrap();
    assert!(
        p2.transition().is_none(),
        "only the first trial transitions"
    );
    let r = b.try_acquire(reopen).unwrap_err();
    assert_eq!((r.state, r.retry_after), (State::HalfOpen, None));
    drop(p1); // frees a slot, counts as abandoned
    let p3 = b.try_acquire(reopen).expect("slot freed by the drop");
    assert_eq!(b.metrics().abandoned, 1);
    drop((p2, p3));
}

#[test]
fn half_open_closes_after_enough_successes() {
    let b = breaker(consecutive(1).half_open_permits(1).close_after(2));
    let reopen = trip(&b, T0);
    assert_eq!(succeed(&b, reopen), None, "one success is not enough");
    assert_eq!(b.state(reopen), State::HalfOpen);
    let t = succeed(&b, reopen).expect("second success closes");
    assert_eq!((t.from, t.to), (State::HalfOpen, State::Closed));
    assert_eq!(b.state(reopen), State::Closed);
}

#[test]
fn a_failed_trial_reopens_and_the_open_time_doubles_up_to_the_cap() {
    let b = breaker(
        consecutive(1)
            .open_for(Duration::from_secs(1))
            .max_open_for(Duration::from_secs(3)),
    );
    let mut now = trip(&b, T0);
    let mut expected = [2, 3, 3].into_iter();
    for _ in 0..3 {
        let t = fail(&b, now).expect("failed trial reopens");
        assert_eq!((t.from, t.to), (State::HalfOpen, State::Open));
        let left = b.try_acquire(now).unwrap_err().retry_after.unwrap();
        let secs = expected.next().unwrap();
        assert!(left >= Duration::from_secs(secs) && left < Duration::from_secs(secs) + TICK);
        now += left;
    }
    // Closing resets the growth.
    succeed(&b, now);
    assert_eq!(b.state(now), State::Closed);
    let reopen = trip(&b, now);
    assert!(reopen - now < Duration::from_secs(1) + TICK);
    assert_eq!(b.metrics().trips, 5);
}

#[test]
fn a_slow_trial_counts_as_failed() {
    let b = breaker(
        consecutive(1)
            .slow_call(Duration::from_millis(100), 100)
            .window(4),
    );
    let reopen = trip(&b, T0);
    let p = b.try_acquire(reopen).unwrap();
    let t = p.record(Outcome::Success, reopen, Duration::from_millis(150));
    assert_eq!(t.map(|t| t.to), Some(State::Open));
    assert_eq!(b.metrics().slow_calls, 1);
}

#[test]
fn failure_rate_needs_minimum_calls_then_trips() {
    let b = breaker(
        Config::builder()
            .failure_rate(50)
            .window(4)
            .minimum_calls(4),
    );
    assert_eq!(fail(&b, T0), None);
    assert_eq!(fail(&b, T0), None);
    assert_eq!(succeed(&b, T0), None);
    // 3/4 failures once the window holds 4 calls.
    let t = fail(&b, T0).expect("75% >= 50%");
    assert_eq!(t.to, State::Open);
}

#[test]
fn failure_rate_slides_over_the_last_window_calls() {
    let b = breaker(
        Config::builder()
            .failure_rate(60)
            .window(5)
            .minimum_calls(5),
    );
    // F F S S S: 40 %; then slide: F S S S F (40 %), S S S F F (40 %).
    for o in [true, true, false, false, false, true, true] {
        let t = if o { fail(&b, T0) } else { succeed(&b, T0) };
        assert_eq!(t, None);
    }
    // S S F F F = 60 %.
    assert!(fail(&b, T0).is_some());
}

#[test]
fn slow_successes_trip_on_the_slow_rate() {
    let b = breaker(
        Config::builder()
            .slow_call(Duration::from_millis(200), 50)
            .window(4)
            .minimum_calls(2),
    );
    let slow = Duration::from_millis(250);
    let p = b.try_acquire(T0).unwrap();
    assert_eq!(p.record(Outcome::Success, T0, MS), None);
    let p = b.try_acquire(T0).unwrap();
    let t = p
        .record(Outcome::Success, T0, slow)
        .expect("1 of 2 slow = 50%");
    assert_eq!(t.to, State::Open);
    let m = b.metrics();
    assert_eq!((m.successes, m.slow_calls, m.failures), (2, 1, 0));
}

#[test]
fn closing_starts_an_empty_window() {
    let b = breaker(
        Config::builder()
            .failure_rate(50)
            .window(2)
            .minimum_calls(2)
            .open_for(Duration::from_secs(1)),
    );
    fail(&b, T0);
    assert!(fail(&b, T0).is_some());
    let reopen = b.try_acquire(T0).unwrap_err().retry_after.unwrap();
    let now = T0 + reopen;
    assert_eq!(succeed(&b, now).map(|t| t.to), Some(State::Closed));
    // The old failures are gone: one failure is 1 call < minimum_calls.
    assert_eq!(fail(&b, now), None);
    assert_eq!(b.snapshot(now).window_calls, 1);
}

#[test]
fn stale_permits_cannot_change_the_new_state() {
    let b = breaker(consecutive(2).half_open_permits(1));
    let old = b.try_acquire(T0).unwrap();
    let old_trial_source = b.try_acquire(T0).unwrap();
    drop(old_trial_source);
    let reopen = trip(&b, T0);
    let trial = b.try_acquire(reopen).unwrap();
    // A closed-generation failure arriving in half-open changes nothing.
    assert_eq!(old.record(Outcome::Failure, reopen, MS), None);
    assert_eq!(b.state(reopen), State::HalfOpen);
    // The trial re-opens; a second open/half-open cycle follows.
    assert!(trial.record(Outcome::Failure, reopen, MS).is_some());
    let left = b.try_acquire(reopen).unwrap_err().retry_after.unwrap();
    let again = reopen + left;
    let stale_trial = b.try_acquire(again).unwrap();
    let fresh = b.force_close(again);
    assert!(fresh.is_some());
    // A half-open trial recorded after force_close is stale too.
    assert_eq!(stale_trial.record(Outcome::Failure, again, MS), None);
    assert_eq!(b.state(again), State::Closed);
    assert_eq!(b.metrics().failures, 2 + 1 + 1 + 1);
}

#[test]
fn a_stale_trial_drop_does_not_free_a_new_slot() {
    let b = breaker(consecutive(1).half_open_permits(1));
    let reopen = trip(&b, T0);
    let stale = b.try_acquire(reopen).unwrap();
    b.force_open(reopen);
    b.force_close(reopen);
    let reopen2 = trip(&b, reopen);
    let current = b.try_acquire(reopen2).unwrap();
    drop(stale);
    assert_eq!(b.try_acquire(reopen2).unwrap_err().state, State::HalfOpen);
    drop(current);
    assert!(b.try_acquire(reopen2).is_ok());
}

#[test]
fn forced_open_rejects_until_forced_closed() {
    let b = breaker(consecutive(1));
    let t = b.force_open(T0).unwrap();
    assert_eq!((t.from, t.to), (State::Closed, State::ForcedOpen));
    assert_eq!(b.force_open(T0), None);
    let later = T0 + Duration::from_secs(3600);
    let r = b.try_acquire(later).unwrap_err();
    assert_eq!((r.state, r.retry_after), (State::ForcedOpen, None));
    assert_eq!(b.state(later), State::ForcedOpen);
    let t = b.force_close(later).unwrap();
    assert_eq!((t.from, t.to), (State::ForcedOpen, State::Closed));
    assert_eq!(b.force_close(later), None);
    assert!(b.try_acquire(later).is_ok());
    assert_eq!(b.metrics().trips, 0, "forcing is not a trip");
}

#[test]
fn reset_clears_state_window_and_counters() {
    let b = breaker(
        Config::builder()
            .failure_rate(50)
            .window(4)
            .minimum_calls(2),
    );
    fail(&b, T0);
    assert!(fail(&b, T0).is_some());
    let t = b.reset(T0).unwrap();
    assert_eq!((t.from, t.to), (State::Open, State::Closed));
    assert_eq!(b.metrics(), Metrics::default());
    assert_eq!(b.snapshot(T0).window_calls, 0);
    assert_eq!(b.reset(T0), None, "already closed");
    assert_eq!(fail(&b, T0), None, "window restarted");
}

#[test]
fn metrics_count_every_outcome() {
    let b = breaker(consecutive(5).slow_call(Duration::from_millis(10), 100));
    let now = T0;
    b.try_acquire(now)
        .unwrap()
        .record(Outcome::Success, now, Duration::from_millis(20));
    fail(&b, now);
    succeed(&b, now);
    drop(b.try_acquire(now).unwrap());
    let m = b.metrics();
    assert_eq!(
        m,
        Metrics {
            successes: 2,
            failures: 1,
            slow_calls: 1,
            rejected: 0,
            trips: 0,
            abandoned: 1,
            ignored: 0,
        }
    );
    assert_eq!(m.calls(), 4);
}

#[test]
#[allow(clippy::many_single_char_names)]
fn snapshot_restore_round_trips_every_state() {
    let cfg = consecutive(3)
        .failure_rate(90)
        .window(8)
        .half_open_permits(2)
        .close_after(2)
        .build()
        .unwrap();
    let a = CircuitBreaker::new(cfg);
    // Closed with failures and a window.
    fail(&a, T0);
    succeed(&a, T0);
    fail(&a, T0);
    let s = a.snapshot(T0);
    assert_eq!(
        (s.state, s.consecutive_failures, s.window_calls),
        (State::Closed, 1, 3)
    );
    assert_eq!(s.window_failures, 0b101);
    let b = CircuitBreaker::new(cfg);
    b.restore(&s, Instant::ZERO).unwrap();
    assert_eq!(b.snapshot(Instant::ZERO), s);
    // Open keeps its remaining time, relative to the new clock.
    fail(&a, T0);
    fail(&a, T0);
    let s = a.snapshot(T0 + Duration::from_secs(4));
    assert_eq!(s.state, State::Open);
    b.restore(&s, Instant::ZERO).unwrap();
    let left = b
        .try_acquire(Instant::ZERO)
        .unwrap_err()
        .retry_after
        .unwrap();
    assert!(left >= s.open_remaining.unwrap() && left < s.open_remaining.unwrap() + TICK);
    // Half-open keeps successes, not trials in flight.
    let now = T0 + Duration::from_secs(20);
    succeed(&a, now);
    let s = a.snapshot(now);
    assert_eq!((s.state, s.half_open_successes), (State::HalfOpen, 1));
    b.restore(&s, now).unwrap();
    let t = succeed(&b, now).expect("one more success closes");
    assert_eq!(t.to, State::Closed);
    assert_eq!(b.metrics(), {
        let mut m = a.metrics();
        m.successes += 1;
        m
    });
}

#[test]
fn restore_rejects_corrupt_snapshots_and_changes_nothing() {
    let cfg = consecutive(3).half_open_permits(2).build().unwrap();
    let b = CircuitBreaker::new(cfg);
    fail(&b, T0);
    let good = b.snapshot(T0);
    let cases = [
        (
            Snapshot {
                consecutive_failures: 256,
                ..good
            },
            SnapshotError::ConsecutiveFailures(256),
        ),
        (
            Snapshot {
                reopen_streak: 16,
                ..good
            },
            SnapshotError::ReopenStreak(16),
        ),
        (
            Snapshot {
                window_calls: 65,
                ..good
            },
            SnapshotError::Window,
        ),
        (
            Snapshot {
                window_calls: 2,
                window_failures: 0b100,
                ..good
            },
            SnapshotError::Window,
        ),
        (
            Snapshot {
                state: State::Open,
                consecutive_failures: 0,
                open_remaining: None,
                ..good
            },
            SnapshotError::OpenRemaining,
        ),
        (
            Snapshot {
                state: State::Open,
                consecutive_failures: 0,
                open_remaining: Some(Duration::MAX),
                ..good
            },
            SnapshotError::OpenRemaining,
        ),
    ];
    for (bad, err) in cases {
        assert_eq!(b.restore(&bad, T0), Err(err), "{bad:?}");
        assert_eq!(b.snapshot(T0), good, "unchanged after {err}");
    }
}

#[test]
fn a_snapshot_of_a_looser_config_is_fitted_not_refused() {
    // Taken under a trip threshold of 5 and `close_after` 4, restored
    // where they are 3 and 2 (a service restarted with a stricter config).
    let loose = consecutive(5)
        .close_after(4)
        .half_open_permits(4)
        .build()
        .unwrap();
    let strict = consecutive(3)
        .close_after(2)
        .half_open_permits(4)
        .build()
        .unwrap();
    let a = CircuitBreaker::new(loose);
    for _ in 0..4 {
        fail(&a, T0);
    }
    let closed = a.snapshot(T0);
    assert_eq!(closed.consecutive_failures, 4);
    let b = CircuitBreaker::new(strict);
    b.restore(&closed, T0).unwrap();
    assert_eq!(b.snapshot(T0).consecutive_failures, 2, "one short of 3");
    assert_eq!(b.state(T0), State::Closed);
    fail(&b, T0);
    assert_eq!(b.state(T0), State::Open, "the next failure trips");

    let half_open = Snapshot {
        state: State::HalfOpen,
        consecutive_failures: 0,
        half_open_successes: 3,
        window_calls: 0,
        window_failures: 0,
        window_slow: 0,
        ..closed
    };
    let c = CircuitBreaker::new(strict);
    c.restore(&half_open, T0).unwrap();
    assert_eq!(c.state(T0), State::HalfOpen, "not closed, not refused");
    assert_eq!(c.snapshot(T0).half_open_successes, 1, "one short of 2");
    let trial = c.try_acquire(T0).unwrap();
    trial.record(Outcome::Success, T0, Duration::ZERO);
    assert_eq!(c.state(T0), State::Closed, "the next success closes");
}

#[test]
fn restore_rejects_impossible_field_sets_and_counters() {
    let cfg = consecutive(3).half_open_permits(2).build().unwrap();
    let b = CircuitBreaker::new(cfg);
    fail(&b, T0);
    let good = b.snapshot(T0);
    let cases = [
        // Fields the state cannot have.
        (
            Snapshot {
                state: State::Open,
                open_remaining: Some(Duration::from_secs(1)),
                ..good // a consecutive-failure count while open
            },
            SnapshotError::Inconsistent,
        ),
        (
            Snapshot {
                open_remaining: Some(Duration::from_secs(1)),
                ..good // a remaining time while closed
            },
            SnapshotError::Inconsistent,
        ),
        (
            Snapshot {
                state: State::ForcedOpen,
                consecutive_failures: 0,
                reopen_streak: 2,
                ..good
            },
            SnapshotError::Inconsistent,
        ),
        (
            Snapshot {
                state: State::HalfOpen,
                consecutive_failures: 0,
                window_calls: 1,
                ..good
            },
            SnapshotError::Inconsistent,
        ),
        // Impossible counters.
        (
            Snapshot {
                metrics: Metrics {
                    successes: u64::MAX,
                    abandoned: 1,
                    ..good.metrics
                },
                ..good
            },
            SnapshotError::Metrics,
        ),
        (
            Snapshot {
                metrics: Metrics {
                    slow_calls: 5,
                    ..good.metrics
                },
                ..good
            },
            SnapshotError::Metrics,
        ),
    ];
    for (bad, err) in cases {
        assert_eq!(b.restore(&bad, T0), Err(err), "{bad:?}");
        assert_eq!(b.snapshot(T0), good, "unchanged after {err}");
    }
}

#[test]
fn every_config_error() {
    let base = Config::builder().consecutive_failures(1);
    let cases: [(ConfigBuilder, ConfigError); 16] = [
        (Config::builder(), ConfigError::NoTripCondition),
        (
            Config::builder().consecutive_failures(0),
            ConfigError::ConsecutiveFailuresOutOfRange(0),
        ),
        (
            Config::builder().consecutive_failures(256),
            ConfigError::ConsecutiveFailuresOutOfRange(256),
        ),
        (
            Config::builder().failure_rate(0),
            ConfigError::FailureRateOutOfRange(0),
        ),
        (
            Config::builder().failure_rate(101),
            ConfigError::FailureRateOutOfRange(101),
        ),
        (
            Config::builder().slow_call(Duration::ZERO, 50),
            ConfigError::ZeroSlowThreshold,
        ),
        (
            Config::builder().slow_call(MS, 0),
            ConfigError::SlowRateOutOfRange(0),
        ),
        (base.window(0), ConfigError::WindowOutOfRange(0)),
        (base.window(65), ConfigError::WindowOutOfRange(65)),
        (
            base.window(8).minimum_calls(9),
            ConfigError::MinimumCallsOutOfRange {
                minimum_calls: 9,
                window: 8,
            },
        ),
        (
            base.minimum_calls(0),
            ConfigError::MinimumCallsOutOfRange {
                minimum_calls: 0,
                window: 64,
            },
        ),
        (
            base.open_for(Duration::ZERO),
            ConfigError::OpenForOutOfRange(Duration::ZERO),
        ),
        (
            base.open_for(Duration::from_secs(10 * 3600)),
            ConfigError::OpenForOutOfRange(Duration::from_secs(10 * 3600)),
        ),
        (
            base.open_for(Duration::from_secs(10))
                .max_open_for(Duration::from_secs(5)),
            ConfigError::MaxOpenForOutOfRange(Duration::from_secs(5)),
        ),
        (
            base.half_open_permits(0),
            ConfigError::HalfOpenPermitsOutOfRange(0),
        ),
        (base.close_after(64), ConfigError::CloseAfterOutOfRange(64)),
    ];
    for (builder, expected) in cases {
        assert_eq!(builder.build(), Err(expected));
    }
    assert_eq!(
        base.half_open_permits(64).build(),
        Err(ConfigError::HalfOpenPermitsOutOfRange(64))
    );
    assert_eq!(
        base.max_open_for(Duration::from_secs(10 * 3600)).build(),
        Err(ConfigError::MaxOpenForOutOfRange(Duration::from_secs(
            10 * 3600
        )))
    );
    assert_eq!(
        base.close_after(0).build(),
        Err(ConfigError::CloseAfterOutOfRange(0))
    );
    assert_eq!(
        Config::builder().slow_call(MS, 101).build(),
        Err(ConfigError::SlowRateOutOfRange(101))
    );
}

#[test]
fn config_defaults_and_limits() {
    let c = Config::builder().consecutive_failures(5).build().unwrap();
    assert_eq!(c.consecutive_failures(), Some(5));
    assert_eq!(c.failure_rate(), None);
    assert_eq!(c.slow_call(), None);
    assert_eq!((c.window(), c.minimum_calls()), (64, 64));
    assert_eq!(
        (c.open_for(), c.max_open_for()),
        (Duration::from_secs(60), Duration::from_secs(60))
    );
    assert_eq!((c.half_open_permits(), c.close_after()), (1, 1));
    let max = Config::builder()
        .consecutive_failures(Config::MAX_CONSECUTIVE_FAILURES)
        .open_for(Config::MAX_OPEN_FOR)
        .half_open_permits(63)
        .close_after(63)
        .build();
    assert!(max.is_ok());
}

#[test]
fn the_maximum_open_time_is_honoured_without_wrapping() {
    let b = breaker(consecutive(1).open_for(Config::MAX_OPEN_FOR));
    let reopen = trip(&b, T0);
    assert!(reopen - T0 >= Config::MAX_OPEN_FOR);
    let just_before = reopen - Duration::from_micros(1);
    assert_eq!(b.state(just_before), State::Open);
    assert_eq!(b.state(reopen), State::HalfOpen);
}

#[test]
fn idle_for_hours_after_the_deadline_reads_half_open() {
    let b = breaker(consecutive(1));
    let reopen = trip(&b, T0);
    for hours in [1, 5, 12, 18] {
        assert_eq!(
            b.state(reopen + Duration::from_secs(hours * 3600)),
            State::HalfOpen,
            "{hours} h"
        );
    }
}

#[test]
fn a_slightly_stale_now_still_reads_open() {
    // Another thread read the clock just before this one tripped the breaker.
    let b = breaker(consecutive(1));
    let _ = trip(&b, T0);
    let r = b.try_acquire(T0 - Duration::from_millis(300)).unwrap_err();
    assert_eq!(r.state, State::Open);
}

#[test]
fn extreme_instants_never_panic() {
    let b = breaker(consecutive(1).open_for(Duration::from_secs(1)));
    for now in [
        Instant::ZERO,
        Instant::MAX,
        Instant::from_micros(u64::MAX / 2),
    ] {
        let _ = b
            .try_acquire(now)
            .map(|p| p.record(Outcome::Failure, now, Duration::MAX));
        let _ = b.state(now);
        let _ = b.snapshot(now);
    }
}

#[test]
fn size_is_as_documented() {
    let timed = cfg!(feature = "time-window");
    let timeout = cfg!(feature = "half-open-timeout");
    let config = 32 + if timed { 8 } else { 0 } + if timeout { 8 } else { 0 };
    assert_eq!(core::mem::size_of::<Config>(), config);
    // The breaker: state word + padding, 8-byte epoch, merged version and
    // open deadline,
    // the live config (window size and flag, six 32-bit words: 26 bytes,
    // padded to 28), the window (132 bytes), seven counters; the features'
    // parts are checked by the compile-time assertion beside the struct.
    #[cfg(all(
        fusebox_wide_words,
        not(feature = "time-window"),
        not(feature = "half-open-timeout")
    ))]
    assert_eq!(
        core::mem::size_of::<CircuitBreaker>(),
        4 + 4 + 8 + 8 + 8 + 28 + 132 + 7 * 8
    );
    #[cfg(all(
        not(fusebox_wide_words),
        not(feature = "time-window"),
        not(feature = "half-open-timeout")
    ))]
    assert_eq!(
        core::mem::size_of::<CircuitBreaker>(),
        4 + 4 + 4 + 4 + 28 + 132 + 7 * 4
    );
}
