//! Fleet merge (`CircuitBreaker::merge`) and `trip`, through the public API.

use fusebox::breaker::{
    CircuitBreaker, Config, Decision, MergeError, Outcome, SnapshotError, State,
};
use fusebox::{Duration, Instant};

const T0: Instant = Instant::from_secs(100);
const MS: Duration = Duration::from_millis(1);

fn breaker() -> CircuitBreaker {
    CircuitBreaker::new(
        Config::builder()
            .failure_rate(50)
            .window(4)
            .minimum_calls(4)
            .open_for(Duration::from_secs(10))
            .max_open_for(Duration::from_secs(40))
            .build()
            .unwrap(),
    )
}

fn decision(version: u64, state: State) -> Decision {
    Decision {
        version,
        state,
        open_remaining: (state == State::Open).then_some(Duration::from_secs(5)),
        reopen_streak: 0,
    }
}

fn record(b: &CircuitBreaker, outcome: Outcome) -> Option<State> {
    b.try_acquire(T0)
        .unwrap()
        .record(outcome, T0, MS)
        .map(|t| t.to)
}

#[test]
fn each_remote_state_applies_with_its_transition() {
    let b = breaker();
    let t = b.merge(&decision(1, State::Open), T0).unwrap().unwrap();
    assert_eq!((t.from, t.to, t.at), (State::Closed, State::Open, T0));
    let left = b.try_acquire(T0).unwrap_err().retry_after.unwrap();
    assert!(left >= Duration::from_secs(5) && left < Duration::from_secs(5) + MS + MS);
    let t = b.merge(&decision(2, State::HalfOpen), T0).unwrap().unwrap();
    assert_eq!((t.from, t.to), (State::Open, State::HalfOpen));
    assert!(b.try_acquire(T0).unwrap().is_trial());
    let t = b
        .merge(&decision(3, State::ForcedOpen), T0)
        .unwrap()
        .unwrap();
    assert_eq!((t.from, t.to), (State::HalfOpen, State::ForcedOpen));
    let t = b.merge(&decision(4, State::Closed), T0).unwrap().unwrap();
    assert_eq!((t.from, t.to), (State::ForcedOpen, State::Closed));
    assert_eq!(b.merged_version(), 4);
    // Already there: no transition, the version still counts.
    assert_eq!(b.merge(&decision(5, State::Closed), T0), Ok(None));
    assert_eq!(b.merged_version(), 5);
}

#[test]
fn a_stale_or_repeated_version_never_closes_an_open_breaker() {
    let b = breaker();
    b.merge(&decision(10, State::Open), T0).unwrap();
    for version in [0, 3, 9, 10] {
        assert_eq!(
            b.merge(&decision(version, State::Closed), T0),
            Err(MergeError::Stale {
                version,
                merged: 10
            })
        );
        assert_eq!(b.state(T0), State::Open);
    }
    assert!(b.merge(&decision(11, State::Closed), T0).unwrap().is_some());
}

#[test]
fn the_local_window_and_counters_are_kept() {
    let b = breaker();
    for o in [Outcome::Failure, Outcome::Success, Outcome::Success] {
        assert_eq!(record(&b, o), None);
    }
    let before = b.metrics();
    // A merge into the state the breaker is already in keeps its window...
    assert_eq!(b.merge(&decision(1, State::Closed), T0), Ok(None));
    assert_eq!(b.metrics(), before, "counters untouched");
    // ...so one more failure makes F S S F: 50 % of 4 calls, a trip (a
    // reset window would hold 1 call).
    assert_eq!(record(&b, Outcome::Failure), Some(State::Open));
}

#[test]
fn invalid_decisions_change_nothing() {
    let b = breaker();
    record(&b, Outcome::Failure);
    let before = (b.snapshot(T0), b.merged_version());
    let bad = [
        Decision {
            open_remaining: None,
            ..decision(1, State::Open)
        },
        Decision {
            open_remaining: Some(Duration::MAX),
            ..decision(1, State::Open)
        },
        Decision {
            open_remaining: Some(MS),
            ..decision(1, State::Closed)
        },
        Decision {
            reopen_streak: 16,
            ..decision(1, State::HalfOpen)
        },
        Decision {
            reopen_streak: 1,
            ..decision(1, State::ForcedOpen)
        },
    ];
    for d in bad {
        assert_eq!(b.merge(&d, T0), Err(MergeError::Invalid), "{d:?}");
        assert_eq!((b.snapshot(T0), b.merged_version()), before);
    }
}

#[test]
fn a_forged_far_future_deadline_is_capped_at_the_configured_open_time() {
    let b = breaker();
    let forged = Decision {
        open_remaining: Some(Config::MAX_OPEN_FOR),
        reopen_streak: 15,
        ..decision(1, State::Open)
    };
    b.merge(&forged, T0).unwrap();
    let left = b.try_acquire(T0).unwrap_err().retry_after.unwrap();
    assert!(left <= Duration::from_secs(40) + MS, "{left:?}");
    assert_eq!(b.state(T0 + Duration::from_secs(41)), State::HalfOpen);
}

#[test]
fn permits_from_before_a_merge_are_stale() {
    let b = breaker();
    let held = b.try_acquire(T0).unwrap();
    b.merge(&decision(1, State::ForcedOpen), T0).unwrap();
    b.merge(&decision(2, State::Closed), T0).unwrap();
    assert_eq!(held.record(Outcome::Failure, T0, MS), None);
    assert_eq!(b.snapshot(T0).window_calls, 0, "not in the new window");
}

#[test]
fn trip_opens_from_any_state_for_open_for() {
    let b = breaker();
    let t = b.trip(T0).unwrap();
    assert_eq!((t.from, t.to), (State::Closed, State::Open));
    assert_eq!(b.trip(T0), None, "already open");
    assert_eq!(b.metrics().trips, 1);
    let left = b.try_acquire(T0).unwrap_err().retry_after.unwrap();
    assert!(left >= Duration::from_secs(10));
    let later = T0 + left;
    assert!(b.try_acquire(later).unwrap().is_trial());
    b.force_open(later);
    assert_eq!(b.trip(later).map(|t| t.from), Some(State::ForcedOpen));
    assert_eq!(
        b.metrics().trips,
        1,
        "a forced-open breaker re-opened is no trip"
    );
}

/// `trip` on a breaker whose open time has run out with nobody calling
/// since (the word is still the old Open one, `state` reads half-open)
/// opens it at `now` for `open_for`, as its docs say; it used to take it
/// for "already open" and leave it half-open, the next call a trial.
#[test]
fn trip_reopens_a_breaker_whose_open_time_ran_out_unseen() {
    // Idle a minute, a day, and weeks (on Cortex-M, whose full ticks wrap
    // every ≈ 50 days, more than half of that).
    for idle in [60, 86_400, 30 * 86_400] {
        let b = breaker();
        let _ = b.trip(T0).unwrap();
        let later = T0 + Duration::from_secs(idle);
        assert_eq!(b.state(later), State::HalfOpen);
        // Still open by its last transition: no new one, no trip counted.
        assert_eq!(b.trip(later), None);
        assert_eq!(b.metrics().trips, 1);
        assert_eq!(b.state(later), State::Open, "idle {idle} s");
        let left = b.try_acquire(later).unwrap_err().retry_after.unwrap();
        assert!(left >= Duration::from_secs(10) && left < Duration::from_secs(10) + MS + MS);
        assert!(b.try_acquire(later + left).unwrap().is_trial());
    }
}

/// `trip` with a clock far behind an opening (further than the stale
/// reads the docs cover, which then read half-open) never shortens it:
/// the opening's deadline stands for every later caller.
#[test]
fn a_trip_with_a_clock_far_behind_never_shortens_an_opening() {
    let b = breaker();
    let _ = b.trip(T0).unwrap();
    let open_for = b.config().open_for();
    for behind in [
        open_for.saturating_mul(3),
        Duration::from_secs(3_600),
        Duration::from_secs(20 * 3_600),
    ] {
        assert_eq!(b.trip(T0 - behind), None);
        let left = b.try_acquire(T0).unwrap_err().retry_after.unwrap();
        assert!(
            left >= open_for && left < open_for + MS + MS,
            "{behind:?} behind: {left:?}"
        );
    }
}

/// An open decision whose deadline falls a whole wrap of the Open word's
/// 26-bit deadline (2²⁶ ticks of 1.024 ms, ≈ 19 h) after an expired one
/// still installed (open, nobody called since) is applied: the breaker
/// reads open for the decided time. The two words were equal bit for bit,
/// so the merge took the breaker for already there and left the old
/// deadline in force, reading half-open.
#[test]
fn an_open_decision_a_whole_deadline_wrap_after_an_expired_one_is_applied() {
    const TICK_MICROS: u64 = 1_024;
    let b = breaker();
    let _ = b.trip(T0).unwrap();
    let open_for = b.config().open_for().as_micros();
    let old_deadline = (T0.as_micros() + open_for).div_ceil(TICK_MICROS);
    let left = Duration::from_secs(5);
    let at = Instant::from_micros((old_deadline + (1 << 26)) * TICK_MICROS - left.as_micros());
    assert_eq!(b.state(at), State::HalfOpen, "the old opening ran out");
    let decision = Decision {
        open_remaining: Some(left),
        ..decision(1, State::Open)
    };
    assert_eq!(
        b.merge(&decision, at),
        Ok(None),
        "open, by its last transition"
    );
    assert_eq!(b.state(at), State::Open);
    let retry = b.try_acquire(at).unwrap_err().retry_after.unwrap();
    assert_eq!(retry, left);
    assert!(b.try_acquire(at + left).unwrap().is_trial());
}

#[test]
fn restore_rejects_hostile_snapshots_before_changing_anything() {
    let b = breaker();
    record(&b, Outcome::Failure);
    let good = b.snapshot(T0);
    let overflow = fusebox::breaker::Snapshot {
        metrics: fusebox::breaker::Metrics {
            failures: u64::MAX,
            successes: 1,
            ..good.metrics
        },
        ..good
    };
    assert_eq!(b.restore(&overflow, T0), Err(SnapshotError::Metrics));
    assert_eq!(b.snapshot(T0), good);
    let mut m = good.metrics;
    m.successes = u64::MAX;
    m.failures = u64::MAX;
    assert_eq!(m.calls(), u64::MAX, "derived figures saturate");
}
