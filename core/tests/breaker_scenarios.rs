#![cfg(not(miri))]
//! Scenario tests re-expressed from Resilience4j's own circuit-breaker
//! suites, one test per peer scenario, for every policy fusebox documents:
//! count-based window, minimum calls, failure and slow-call rates, half-open
//! permits, open time and its growth, forced states, reset, configuration
//! validation.
//!
//! Each test's doc comment names the peer test (class and method, in
//! `resilience4j-circuitbreaker` or `resilience4j-core`) and says where
//! fusebox's documented contract differs, and how the scenario was adapted:
//!
//! - Resilience4j can be told to change state (`transitionToOpenState`);
//!   fusebox opens only by recording calls, so a scenario opens it with
//!   failures, and reaches half-open with the first `try_acquire` after the
//!   open time (which takes one of the trial permits).
//! - Resilience4j's half-open state has its own window and rate; fusebox
//!   re-opens on the first failed or slow trial and closes after
//!   `close_after` successes.
//! - fusebox's `Metrics` are counters since creation or `reset`, never
//!   reset by a transition; the window's content is read from `snapshot`.
//! - "Ignored exceptions" and "release permission" are a dropped (abandoned)
//!   permit.
//! - Resilience4j counts a call as slow above the threshold, fusebox at or
//!   above it (`slow_call` docs); these scenarios use durations well away
//!   from it.
//!
//! The peer's `CircuitBreakerStateMachineTest` uses a time-based window of
//! 20 s holding at least 5 calls; all its calls happen within it, so it is
//! re-expressed as a count-based window of 20 calls with `minimum_calls(5)`
//! ([`peer`]).

use fusebox::breaker::{
    Config, ConfigError, Outcome, Permit, Rejected, Snapshot, State, Transition,
};
use fusebox::{CircuitBreaker, Duration, Instant};

const SEC: u64 = 1_000_000;
/// The peer's slow-call threshold is 4 s: calls of 5 s are slow, 1 s and
/// 100 ms are not.
const SLOW: Duration = Duration::from_secs(5);
const FAST: Duration = Duration::from_millis(100);

fn at(us: u64) -> Instant {
    Instant::from_micros(us)
}

fn secs(s: u64) -> u64 {
    s * SEC
}

/// The peer state-machine suite's breaker: failure rate 50 %, 4 half-open
/// permits, slow calls at 4 s and 50 %, a window of 20 calls with at least
/// 5, open for 5 s.
fn peer() -> Config {
    Config::builder()
        .failure_rate(50)
        .half_open_permits(4)
        .slow_call(Duration::from_secs(4), 50)
        .window(20)
        .minimum_calls(5)
        .open_for(Duration::from_secs(5))
        .build()
        .unwrap()
}

fn acquire(b: &CircuitBreaker, now: u64) -> Permit<'_> {
    b.try_acquire(at(now)).expect("permitted")
}

/// One call at `now`: the state it moved the breaker to, if any.
fn call(b: &CircuitBreaker, now: u64, outcome: Outcome, elapsed: Duration) -> Option<State> {
    acquire(b, now)
        .record(outcome, at(now), elapsed)
        .map(|t| t.to)
}

fn rejected(b: &CircuitBreaker, now: u64) -> Rejected {
    b.try_acquire(at(now)).expect_err("rejected")
}

/// `transitionToOpenState`, the fusebox way: failures until it opens.
fn open(b: &CircuitBreaker, now: u64) {
    for _ in 0..64 {
        if call(b, now, Outcome::Failure, Duration::ZERO) == Some(State::Open) {
            return;
        }
    }
    panic!("did not open");
}

/// `transitionToOpenState` then `transitionToHalfOpenState`: open at `now`,
/// then the first trial after the open time; returns it and its `now`.
fn half_open(b: &CircuitBreaker, now: u64) -> (Permit<'_>, u64) {
    open(b, now);
    let after = now + rejected(b, now).retry_after.unwrap().as_micros();
    let trial = acquire(b, after);
    assert_eq!(
        trial.transition().map(|t| (t.from, t.to)),
        Some((State::Open, State::HalfOpen))
    );
    (trial, after)
}

/// The window as (calls, failed, slow) counts.
fn window(b: &CircuitBreaker, now: u64) -> (u8, u32, u32) {
    let s: Snapshot = b.snapshot(at(now));
    assert_eq!(s.state, State::Closed);
    (
        s.window_calls,
        s.window_failures.count_ones(),
        s.window_slow.count_ones(),
    )
}

// ---------------------------------------------------------------------------
// CircuitBreakerStateMachineTest
// ---------------------------------------------------------------------------

/// Peer: `CircuitBreakerStateMachineTest.shouldThrowCallNotPermittedExceptionWhenStateIsOpen`.
/// An open breaker rejects a call, says so, and counts the rejection.
#[test]
fn open_rejects_and_counts() {
    let b = CircuitBreaker::new(peer());
    open(&b, 0);
    let r = rejected(&b, 0);
    assert_eq!(r.state, State::Open);
    assert!(r.retry_after.is_some());
    assert_eq!(b.metrics().rejected, 1);
}

/// Peer: `CircuitBreakerStateMachineTest.shouldThrowCallNotPermittedExceptionWhenStateIsForcedOpen`.
#[test]
fn forced_open_rejects_and_counts() {
    let b = CircuitBreaker::new(peer());
    assert!(b.force_open(at(0)).is_some());
    let r = rejected(&b, 0);
    assert_eq!(
        r,
        Rejected {
            state: State::ForcedOpen,
            retry_after: None,
            transition: None,
        }
    );
    assert_eq!(b.metrics().rejected, 1);
}

/// Peer: `CircuitBreakerStateMachineTest.shouldIncreaseCounterOnReleasePermission`.
/// Four trials pass, the next two are rejected; releasing one (dropping
/// its permit) lets one more through.
#[test]
fn a_released_trial_frees_its_slot() {
    let b = CircuitBreaker::new(peer());
    let (first, t) = half_open(&b, 0);
    let mut trials = vec![first];
    trials.extend((0..3).map(|_| acquire(&b, t)));
    assert!(b.try_acquire(at(t)).is_err());
    assert!(b.try_acquire(at(t)).is_err());
    drop(trials.pop());
    let again = acquire(&b, t);
    assert!(again.is_trial());
    assert_eq!(b.metrics().abandoned, 1);
}

/// Peer: `CircuitBreakerStateMachineTest.shouldThrowCallNotPermittedExceptionWhenNotFurtherTestCallsArePermitted`.
/// A fifth trial is rejected by the half-open state, with no retry time
/// (it depends on the trials in flight).
#[test]
fn half_open_rejects_beyond_its_permits() {
    let b = CircuitBreaker::new(peer());
    let (first, t) = half_open(&b, 0);
    let rest: Vec<_> = (0..3).map(|_| acquire(&b, t)).collect();
    let before = b.metrics().rejected;
    assert_eq!(
        rejected(&b, t),
        Rejected {
            state: State::HalfOpen,
            retry_after: None,
            transition: None,
        }
    );
    assert_eq!(b.metrics().rejected, before + 1);
    drop((first, rest));
}

/// Peer: `CircuitBreakerStateMachineTest.shouldOnlyPermitFourCallsInHalfOpenState`.
/// Four trials per half-open period, in the next period too (reached
/// through a failed trial rather than `transitionToOpenState`); the
/// previous period's trials hold no slot.
#[test]
fn four_trials_in_each_half_open_period() {
    let b = CircuitBreaker::new(peer());
    let (first, t) = half_open(&b, 0);
    let old: Vec<_> = (0..3).map(|_| acquire(&b, t)).collect();
    assert!(b.try_acquire(at(t)).is_err());
    assert!(b.try_acquire(at(t)).is_err());
    assert_eq!(
        first
            .record(Outcome::Failure, at(t), Duration::ZERO)
            .map(|t| t.to),
        Some(State::Open)
    );
    let t = t + rejected(&b, t).retry_after.unwrap().as_micros();
    let new: Vec<_> = (0..4).map(|_| acquire(&b, t)).collect();
    assert!(new[0].transition().is_some());
    assert!(b.try_acquire(at(t)).is_err());
    assert!(b.try_acquire(at(t)).is_err());
    drop((old, new));
}

/// Peer: `CircuitBreakerStateMachineTest.shouldOpenAfterFailureRateThresholdExceeded`.
/// F F F S S with at least 5 calls at 50 %: the fifth call, a *success*,
/// completes the minimum with 60 % failed and opens the breaker (the rates
/// are evaluated after every record, successes too). A permit taken and
/// never recorded (the peer's first `tryAcquirePermission`) counts nowhere
/// in the window.
#[test]
fn opens_on_the_success_that_completes_minimum_calls() {
    let b = CircuitBreaker::new(peer());
    drop(acquire(&b, 0));
    for (i, outcome) in [
        Outcome::Failure,
        Outcome::Failure,
        Outcome::Failure,
        Outcome::Success,
    ]
    .into_iter()
    .enumerate()
    {
        assert_eq!(call(&b, 0, outcome, Duration::ZERO), None, "call {}", i + 1);
        assert_eq!(window(&b, 0).0, i as u8 + 1);
    }
    assert_eq!(window(&b, 0), (4, 3, 0));
    assert_eq!(
        call(&b, 0, Outcome::Success, Duration::ZERO),
        Some(State::Open),
        "3 of 5 failed"
    );
    let m = b.metrics();
    assert_eq!((m.successes, m.failures, m.trips), (2, 3, 1));
    assert_eq!(rejected(&b, 0).state, State::Open);
    assert_eq!(b.metrics().rejected, 1);
}

/// Peer: `CircuitBreakerStateMachineTest.shouldOpenAfterSlowCallRateThresholdExceeded`.
/// Slow failure, slow success, fast failure, fast success, slow success:
/// 3 of 5 slow (60 %) opens it though only 2 of 5 failed (40 %); slow
/// calls of either outcome count.
#[test]
fn opens_on_the_slow_call_rate() {
    let b = CircuitBreaker::new(peer());
    let calls = [
        (Outcome::Failure, SLOW),
        (Outcome::Success, SLOW),
        (Outcome::Failure, FAST),
        (Outcome::Success, FAST),
    ];
    for (outcome, elapsed) in calls {
        assert_eq!(call(&b, 0, outcome, elapsed), None);
    }
    assert_eq!(call(&b, 0, Outcome::Success, SLOW), Some(State::Open));
    assert_eq!(b.metrics().slow_calls, 3);
}

/// Peer: `CircuitBreakerStateMachineTest.shouldOpenAfterSlowCallRateThresholdExceededUsingMockClock`.
/// The window after each call of 5 s, 5 s, 1 s, 1 s, then 5 s: (calls,
/// slow) = (1, 1), (2, 2), (3, 2), (4, 2), then open.
#[test]
fn counts_slow_calls_in_the_window() {
    let b = CircuitBreaker::new(peer());
    let mut now = 0;
    let one_s = Duration::from_secs(1);
    for (elapsed, want) in [
        (SLOW, (1, 0, 1)),
        (SLOW, (2, 0, 2)),
        (one_s, (3, 0, 2)),
        (one_s, (4, 0, 2)),
    ] {
        now += elapsed.as_micros();
        assert_eq!(call(&b, now, Outcome::Success, elapsed), None);
        assert_eq!(window(&b, now), want);
    }
    now += SLOW.as_micros();
    assert_eq!(call(&b, now, Outcome::Success, SLOW), Some(State::Open));
    assert_eq!(b.metrics().slow_calls, 3);
}

/// Peer: `CircuitBreakerStateMachineTest.shouldTransitionToHalfOpenAfterWaitDuration`.
/// Open for 5 s: rejected at once and after 3 s; after 6 s the first call
/// is a trial and moves it to half-open. (The peer's metrics reset there;
/// fusebox's count on, and half-open starts with no successful trial.)
#[test]
fn half_open_after_the_open_time() {
    let b = CircuitBreaker::new(peer());
    open(&b, 0);
    assert_eq!(b.state(at(0)), State::Open);
    assert!(b.try_acquire(at(0)).is_err());
    assert_eq!(b.state(at(secs(3))), State::Open);
    assert!(b.try_acquire(at(secs(3))).is_err());
    assert_eq!(b.metrics().rejected, 2);
    let trial = acquire(&b, secs(6));
    assert_eq!(
        trial.transition(),
        Some(Transition {
            from: State::Open,
            to: State::HalfOpen,
            at: at(secs(6))
        })
    );
    assert_eq!(b.state(at(secs(6))), State::HalfOpen);
    assert_eq!(b.snapshot(at(secs(6))).half_open_successes, 0);
    drop(trial);
}

/// Peer: `CircuitBreakerStateMachineTest.shouldTransitionToHalfOpenAfterPassedWaitDuration`
/// (`transitionToOpenStateFor(2 h)`): open for 2 hours, still open after
/// one, half-open after two and a second.
#[test]
fn half_open_after_a_two_hour_open_time() {
    let cfg = Config::builder()
        .failure_rate(50)
        .window(20)
        .minimum_calls(5)
        .open_for(Duration::from_secs(7_200))
        .build()
        .unwrap();
    let b = CircuitBreaker::new(cfg);
    open(&b, 0);
    assert!(b.try_acquire(at(0)).is_err());
    assert_eq!(b.state(at(secs(3_600))), State::Open);
    assert!(b.try_acquire(at(secs(3_600))).is_err());
    assert_eq!(b.metrics().rejected, 2);
    let trial = acquire(&b, secs(7_201));
    assert!(trial.transition().is_some());
    assert_eq!(b.state(at(secs(7_201))), State::HalfOpen);
    drop(trial);
}

/// Peer: `CircuitBreakerStateMachineTest.shouldTransitionToHalfOpenAfterPassedWaitUntil`
/// (`transitionToOpenStateUntil(now + 30 min)`), expressed as restoring a
/// snapshot that is open with 30 minutes left: still open after 15, a trial
/// passes just after 30.
#[test]
fn half_open_after_a_restored_remaining_time() {
    let cfg = Config::builder()
        .failure_rate(50)
        .window(20)
        .minimum_calls(5)
        .open_for(Duration::from_secs(3_600))
        .build()
        .unwrap();
    let b = CircuitBreaker::new(cfg);
    let snap = Snapshot {
        state: State::Open,
        open_remaining: Some(Duration::from_secs(1_800)),
        ..b.snapshot(at(0))
    };
    let t0 = secs(100);
    b.restore(&snap, at(t0)).unwrap();
    assert_eq!(b.state(at(t0)), State::Open);
    assert!(b.try_acquire(at(t0)).is_err());
    assert_eq!(b.state(at(t0 + secs(900))), State::Open);
    assert!(b.try_acquire(at(t0 + secs(900))).is_err());
    assert_eq!(b.metrics().rejected, 2);
    let trial = acquire(&b, t0 + secs(1_801));
    assert!(trial.transition().is_some());
    drop(trial);
}

/// Peer: `CircuitBreakerStateMachineTest.shouldTransitionToHalfOpenAfterWaitInterval`
/// (exponential backoff from 5 s). fusebox doubles the open time on each
/// re-opening from half-open (the peer's interval grows ×1.5): open 5 s,
/// a failed trial, then still open after 6 s, half-open after 11 s.
#[test]
fn open_time_grows_after_a_failed_trial() {
    let cfg = Config::builder()
        .failure_rate(50)
        .window(5)
        .half_open_permits(4)
        .open_for(Duration::from_secs(5))
        .max_open_for(Duration::from_secs(60))
        .build()
        .unwrap();
    let b = CircuitBreaker::new(cfg);
    open(&b, 0);
    assert!(b.try_acquire(at(secs(3))).is_err());
    assert_eq!(b.metrics().rejected, 1);
    let trial = acquire(&b, secs(6));
    assert!(trial.transition().is_some());
    let reopened = trial.record(Outcome::Failure, at(secs(6)), Duration::ZERO);
    assert_eq!(reopened.map(|t| t.to), Some(State::Open));
    assert_eq!(b.state(at(secs(12))), State::Open, "10 s now");
    assert!(b.try_acquire(at(secs(12))).is_err());
    let trial = acquire(&b, secs(17));
    assert!(trial.transition().is_some());
    drop(trial);
}

/// Peer: `CircuitBreakerStateMachineTest.shouldTransitionBackToOpenStateWhenFailureRateIsAboveThreshold`.
/// Half-open with four trials, outcomes F F S F: the peer re-opens once all
/// four are in (75 % failed); fusebox re-opens on the first failed trial,
/// and the other three, now stale, change nothing.
#[test]
fn a_failed_trial_reopens() {
    let b = CircuitBreaker::new(peer());
    let (first, t) = half_open(&b, 0);
    let rest: Vec<_> = (0..3).map(|_| acquire(&b, t)).collect();
    let reopened = first.record(Outcome::Failure, at(t), Duration::ZERO);
    assert_eq!(
        reopened.map(|t| (t.from, t.to)),
        Some((State::HalfOpen, State::Open))
    );
    for (permit, outcome) in
        rest.into_iter()
            .zip([Outcome::Failure, Outcome::Success, Outcome::Failure])
    {
        assert_eq!(permit.record(outcome, at(t), Duration::ZERO), None);
    }
    assert_eq!(b.state(at(t)), State::Open);
    assert_eq!(b.metrics().trips, 2);
}

/// Peer: `CircuitBreakerStateMachineTest.shouldTransitionBackToOpenStateWhenSlowCallRateIsAboveThreshold`.
/// Half-open trials of 5 s, 5 s, 5 s and 1 s: a slow trial counts as a
/// failed one (`slow_call` docs), so the first re-opens.
#[test]
fn a_slow_trial_reopens() {
    let b = CircuitBreaker::new(peer());
    let (first, t) = half_open(&b, 0);
    let rest: Vec<_> = (0..3).map(|_| acquire(&b, t)).collect();
    let reopened = first.record(Outcome::Success, at(t), SLOW);
    assert_eq!(reopened.map(|t| t.to), Some(State::Open));
    for (permit, elapsed) in rest.into_iter().zip([SLOW, SLOW, Duration::from_secs(1)]) {
        assert_eq!(permit.record(Outcome::Success, at(t), elapsed), None);
    }
    // The first trial's and the two stale 5 s calls (counted, deciding
    // nothing).
    assert_eq!(b.metrics().slow_calls, 3);
}

/// Peer: `CircuitBreakerStateMachineTest.shouldTransitionBackToClosedStateWhenFailureIsBelowThreshold`.
/// The peer closes after F S S S (25 % < 50 %); in fusebox a failed trial
/// re-opens, so four successful trials (`close_after` = 4) close it. Closed
/// again, the window starts empty: one success makes it hold one call.
#[test]
fn successful_trials_close_with_an_empty_window() {
    let b = CircuitBreaker::new(peer());
    let (first, t) = half_open(&b, 0);
    assert_eq!(first.record(Outcome::Success, at(t), Duration::ZERO), None);
    for i in 2..=4 {
        let closed = call(&b, t, Outcome::Success, Duration::ZERO);
        assert_eq!(closed, (i == 4).then_some(State::Closed), "trial {i}");
    }
    assert_eq!(window(&b, t), (0, 0, 0));
    assert_eq!(call(&b, t, Outcome::Success, Duration::ZERO), None);
    assert_eq!(window(&b, t), (1, 0, 0));
}

/// Peer: `CircuitBreakerStateMachineTest.shouldResetMetrics`.
#[test]
fn reset_zeroes_the_counters_and_the_window() {
    let b = CircuitBreaker::new(peer());
    call(&b, 0, Outcome::Success, Duration::ZERO);
    call(&b, 0, Outcome::Failure, Duration::ZERO);
    let m = b.metrics();
    assert_eq!((m.successes, m.failures, m.calls()), (1, 1, 2));
    assert_eq!(window(&b, 0), (2, 1, 0));
    assert_eq!(b.reset(at(0)), None, "already closed");
    assert_eq!(b.metrics(), fusebox::breaker::Metrics::default());
    assert_eq!(window(&b, 0), (0, 0, 0));
}

/// Peer: `CircuitBreakerStateMachineTest.shouldForceOpenCircuitBreaker`.
/// Forced open outlasts the open time: rejected at once and 6 s later.
#[test]
fn forced_open_outlasts_the_open_time() {
    let b = CircuitBreaker::new(peer());
    let t = b.force_open(at(0)).unwrap();
    assert_eq!((t.from, t.to), (State::Closed, State::ForcedOpen));
    assert!(b.try_acquire(at(0)).is_err());
    assert!(b.try_acquire(at(secs(6))).is_err());
    assert_eq!(b.state(at(secs(6))), State::ForcedOpen);
    let m = b.metrics();
    assert_eq!((m.rejected, m.successes, m.failures), (2, 0, 0));
}

/// Peer: `CircuitBreakerStateMachineTest.shouldReleasePermissionWhenExceptionIgnored`.
/// Three successful trials, then one whose outcome is ignored (its permit
/// dropped): still half-open, nothing counted but the abandonment. The peer
/// then closes on a failure (3 of 4 succeeded); fusebox needs a fourth
/// success and re-opens on a failure, so the last trial succeeds.
#[test]
fn an_ignored_trial_counts_nowhere() {
    let b = CircuitBreaker::new(peer());
    let (first, t) = half_open(&b, 0);
    assert_eq!(first.record(Outcome::Success, at(t), Duration::ZERO), None);
    call(&b, t, Outcome::Success, Duration::ZERO);
    call(&b, t, Outcome::Success, Duration::ZERO);
    let before = b.metrics();
    drop(acquire(&b, t));
    assert_eq!(b.state(at(t)), State::HalfOpen);
    assert_eq!(b.snapshot(at(t)).half_open_successes, 3);
    let m = b.metrics();
    assert_eq!(
        (m.successes, m.failures),
        (before.successes, before.failures)
    );
    assert_eq!(m.abandoned, before.abandoned + 1);
    assert_eq!(
        call(&b, t, Outcome::Success, Duration::ZERO),
        Some(State::Closed)
    );
}

/// Peer: `CircuitBreakerStateMachineTest.shouldIgnoreExceptionsAndThenTransitionToClosed`.
/// Four trials ignored (dropped), still half-open; then four successes
/// close it, the fourth doing so.
#[test]
fn ignored_trials_then_successes_close() {
    let b = CircuitBreaker::new(peer());
    let (first, t) = half_open(&b, 0);
    drop(first);
    for _ in 0..3 {
        drop(acquire(&b, t));
    }
    assert_eq!(b.state(at(t)), State::HalfOpen);
    assert_eq!(b.metrics().abandoned, 4);
    for i in 1..=4 {
        let closed = call(&b, t, Outcome::Success, Duration::ZERO);
        assert_eq!(closed, (i == 4).then_some(State::Closed), "trial {i}");
    }
}

/// Peer: `CircuitBreakerStateMachineTest.shouldResetToClosedState`.
#[test]
fn reset_closes_an_open_breaker() {
    let b = CircuitBreaker::new(peer());
    open(&b, 0);
    let t = b.reset(at(1)).unwrap();
    assert_eq!((t.from, t.to, t.at), (State::Open, State::Closed, at(1)));
    assert_eq!(b.state(at(1)), State::Closed);
}

/// Peer: `CircuitBreakerStateMachineTest.shouldResetClosedState`.
#[test]
fn reset_clears_a_closed_breaker() {
    let b = CircuitBreaker::new(peer());
    call(&b, 0, Outcome::Success, Duration::ZERO);
    call(&b, 0, Outcome::Success, Duration::ZERO);
    assert_eq!(b.metrics().successes, 2);
    assert_eq!(b.reset(at(0)), None);
    assert_eq!(b.state(at(0)), State::Closed);
    assert_eq!(b.metrics().successes, 0);
}

/// Peers: `CircuitBreakerStateMachineTest.circuitBreakerDoesNotPublishStateTransitionEventsForInternalTransitions`
/// and `allCircuitBreakerStatesAllowTransitionToItsOwnState`. Asking for
/// the state it is already in reports no transition.
#[test]
fn no_transition_into_the_same_state() {
    let b = CircuitBreaker::new(peer());
    assert!(b.force_open(at(0)).is_some());
    assert_eq!(b.force_open(at(0)), None);
    assert!(b.force_close(at(0)).is_some());
    assert_eq!(b.force_close(at(0)), None);
    assert_eq!(b.reset(at(0)), None);
}

// ---------------------------------------------------------------------------
// CircuitBreakerAutoTransitionStateMachineTest
// ---------------------------------------------------------------------------

/// Peer: `CircuitBreakerAutoTransitionStateMachineTest.testAutoTransition`
/// (a scheduled Open → HalfOpen after 2 s). fusebox never reads a clock:
/// once the open time has passed, `state(now)` reads half-open without any
/// call, and the first `try_acquire` carries the transition.
#[test]
fn reads_half_open_once_the_open_time_has_passed() {
    let cfg = Config::builder()
        .failure_rate(50)
        .window(5)
        .half_open_permits(3)
        .open_for(Duration::from_secs(2))
        .build()
        .unwrap();
    let b = CircuitBreaker::new(cfg);
    open(&b, 0);
    assert_eq!(b.state(at(secs(2) - 1)), State::Open);
    let deadline = rejected(&b, 0).retry_after.unwrap().as_micros();
    assert_eq!(b.state(at(deadline)), State::HalfOpen);
    assert_eq!(b.snapshot(at(deadline)).state, State::Open, "stored");
    let trial = acquire(&b, deadline);
    assert!(trial.transition().is_some());
    drop(trial);
}

// ---------------------------------------------------------------------------
// CircuitBreakerMetricsTest and CircuitBreakerTest
// ---------------------------------------------------------------------------

/// Peer: `CircuitBreakerMetricsTest.testCircuitBreakerMetrics` (count-based
/// window of 10, at least 10 calls). S S F F: below the minimum. Then
/// F F F F S S: the tenth call, a success, holds 6 of 10 failed and opens it
/// at 50 % (evaluated on a success too). With the rate at 70 % the
/// window keeps sliding: after S S, 6 of the last 10 failed; after 3 more
/// successes, 3.
#[test]
fn count_window_of_ten() {
    let outcomes = |failures: &[bool]| -> Vec<Outcome> {
        failures
            .iter()
            .map(|&f| {
                if f {
                    Outcome::Failure
                } else {
                    Outcome::Success
                }
            })
            .collect()
    };
    let first = outcomes(&[false, false, true, true]);
    let then = outcomes(&[true, true, true, true, false, false]);
    let cfg = |rate| {
        Config::builder()
            .failure_rate(rate)
            .window(10)
            .build()
            .unwrap()
    };

    let b = CircuitBreaker::new(cfg(50));
    for &o in &first {
        assert_eq!(call(&b, 0, o, Duration::ZERO), None);
    }
    assert_eq!(window(&b, 0), (4, 2, 0));
    for (i, &o) in then.iter().enumerate() {
        let want = (i == then.len() - 1).then_some(State::Open);
        assert_eq!(call(&b, 0, o, Duration::ZERO), want, "call {}", i + 5);
    }

    let b = CircuitBreaker::new(cfg(70));
    for &o in first.iter().chain(&then) {
        assert_eq!(call(&b, 0, o, Duration::ZERO), None);
    }
    for _ in 0..2 {
        call(&b, 0, Outcome::Success, Duration::ZERO);
    }
    assert_eq!(window(&b, 0), (10, 6, 0), "the last 10 of 12");
    for _ in 0..3 {
        call(&b, 0, Outcome::Success, Duration::ZERO);
    }
    assert_eq!(window(&b, 0), (10, 3, 0), "the last 10 of 15");
}

/// Peers: `CircuitBreakerTest.shouldReturnFailureWithCircuitBreakerOpenException`
/// and `CircuitBreakerTest.shouldThrowCircuitBreakerOpenException` (window
/// of 2, 50 %): one failure is allowed, the second opens it, and the next
/// call is not permitted.
#[test]
fn window_of_two_opens_on_the_second_failure() {
    let cfg = Config::builder()
        .failure_rate(50)
        .window(2)
        .half_open_permits(2)
        .open_for(Duration::from_secs(1))
        .build()
        .unwrap();
    let b = CircuitBreaker::new(cfg);
    assert_eq!(call(&b, 0, Outcome::Failure, Duration::ZERO), None);
    assert_eq!(b.state(at(0)), State::Closed);
    assert_eq!(window(&b, 0), (1, 1, 0));
    assert_eq!(
        call(&b, 0, Outcome::Failure, Duration::ZERO),
        Some(State::Open)
    );
    assert_eq!(rejected(&b, 0).state, State::Open);
    assert_eq!(b.metrics().failures, 2);
}

/// Peer: `CircuitBreakerTest.shouldReturnFailureWithRuntimeException`
/// (defaults): one failure is buffered and counted.
#[test]
fn one_failure_is_buffered_and_counted() {
    let b = CircuitBreaker::new(Config::builder().failure_rate(50).build().unwrap());
    assert_eq!(window(&b, 0), (0, 0, 0));
    assert_eq!(call(&b, 0, Outcome::Failure, Duration::ZERO), None);
    assert_eq!(window(&b, 0), (1, 1, 0));
    assert_eq!(b.metrics().failures, 1);
}

// ---------------------------------------------------------------------------
// FixedSizeSlidingWindowMetricsTest (resilience4j-core)
// ---------------------------------------------------------------------------

/// A count-based window with failure and slow-call policies that these
/// scenarios never trip: threshold 1 s.
fn window_cfg(size: u8, minimum: u8, slow_rate: u8) -> Config {
    Config::builder()
        .failure_rate(100)
        .slow_call(Duration::from_secs(1), slow_rate)
        .window(size)
        .minimum_calls(minimum)
        .build()
        .unwrap()
}

/// Peer: `FixedSizeSlidingWindowMetricsTest.testRecordSuccess`.
#[test]
fn records_a_success() {
    let b = CircuitBreaker::new(window_cfg(10, 10, 100));
    call(&b, 0, Outcome::Success, FAST);
    assert_eq!(window(&b, 0), (1, 0, 0));
    let m = b.metrics();
    assert_eq!((m.successes, m.failures, m.slow_calls), (1, 0, 0));
}

/// Peer: `FixedSizeSlidingWindowMetricsTest.testRecordError`.
#[test]
fn records_a_failure() {
    let b = CircuitBreaker::new(window_cfg(10, 10, 100));
    call(&b, 0, Outcome::Failure, FAST);
    assert_eq!(window(&b, 0), (1, 1, 0));
    let m = b.metrics();
    assert_eq!((m.successes, m.failures, m.slow_calls), (0, 1, 0));
}

/// Peer: `FixedSizeSlidingWindowMetricsTest.testRecordSlowSuccess`.
#[test]
fn records_a_slow_success() {
    let b = CircuitBreaker::new(window_cfg(10, 10, 100));
    call(&b, 0, Outcome::Success, SLOW);
    assert_eq!(window(&b, 0), (1, 0, 1));
    let m = b.metrics();
    assert_eq!((m.successes, m.failures, m.slow_calls), (1, 0, 1));
}

/// Peer: `FixedSizeSlidingWindowMetricsTest.testSlowCallsPercentage`.
/// Slow success, slow failure, three fast successes: 2 of 5 slow (40 %),
/// counted for both outcomes. At a slow-call rate of 41 % it stays closed;
/// at 40 % the fifth call, a fast success completing the minimum, opens it
/// (evaluated on a success too).
#[test]
fn slow_call_percentage_counts_both_outcomes() {
    let calls = [
        (Outcome::Success, SLOW),
        (Outcome::Failure, SLOW),
        (Outcome::Success, FAST),
        (Outcome::Success, FAST),
        (Outcome::Success, FAST),
    ];
    let b = CircuitBreaker::new(window_cfg(10, 5, 41));
    for (outcome, elapsed) in calls {
        assert_eq!(call(&b, 0, outcome, elapsed), None);
    }
    assert_eq!(window(&b, 0), (5, 1, 2));
    let m = b.metrics();
    assert_eq!((m.successes, m.failures, m.slow_calls), (4, 1, 2));

    let b = CircuitBreaker::new(window_cfg(10, 5, 40));
    for (i, (outcome, elapsed)) in calls.into_iter().enumerate() {
        let want = (i == 4).then_some(State::Open);
        assert_eq!(call(&b, 0, outcome, elapsed), want, "call {}", i + 1);
    }
}

/// Peer: `FixedSizeSlidingWindowMetricsTest.testSlidingWindowMetrics`
/// (window of 4). F S S S S: the window holds 1, 2, 3, 4, 4 calls and the
/// failure drops out with the fifth.
#[test]
fn window_of_four_drops_its_oldest_call() {
    let b = CircuitBreaker::new(
        Config::builder()
            .failure_rate(50)
            .window(4)
            .build()
            .unwrap(),
    );
    call(&b, 0, Outcome::Failure, FAST);
    assert_eq!(window(&b, 0), (1, 1, 0));
    for (calls, failed) in [(2, 1), (3, 1), (4, 1), (4, 0)] {
        assert_eq!(call(&b, 0, Outcome::Success, FAST), None);
        assert_eq!(window(&b, 0), (calls, failed, 0));
    }
}

/// Peer: `FixedSizeSlidingWindowMetricsTest.testSlidingWindowMetricsWithSlowCalls`
/// (window of 2): slow failure, slow success, then fast successes; slow
/// calls leave the window like any other. Re-expressed with a window of 3:
/// in fusebox two slow calls filling a window of 2 reach any slow-call rate
/// and open it.
#[test]
fn slow_calls_leave_the_window() {
    let b = CircuitBreaker::new(window_cfg(3, 3, 100));
    call(&b, 0, Outcome::Failure, SLOW);
    assert_eq!(window(&b, 0), (1, 1, 1));
    call(&b, 0, Outcome::Success, SLOW);
    assert_eq!(window(&b, 0), (2, 1, 2));
    for want in [(3, 1, 2), (3, 0, 1), (3, 0, 0), (3, 0, 0)] {
        assert_eq!(call(&b, 0, Outcome::Success, FAST), None);
        assert_eq!(window(&b, 0), want);
    }
    let m = b.metrics();
    assert_eq!((m.successes, m.failures, m.slow_calls), (5, 1, 2));
}

// ---------------------------------------------------------------------------
// CircuitBreakerConfigTest
// ---------------------------------------------------------------------------

fn refused(b: fusebox::breaker::ConfigBuilder) -> ConfigError {
    b.build().expect_err("refused")
}

/// Peers: `CircuitBreakerConfigTest.zeroFailureRateThresholdShouldFail`,
/// `zeroMaxFailuresShouldFail` and `failureRateThresholdAboveHundredShouldFail`.
#[test]
fn failure_rate_must_be_1_to_100() {
    let b = Config::builder();
    assert_eq!(
        refused(b.failure_rate(0)),
        ConfigError::FailureRateOutOfRange(0)
    );
    assert_eq!(
        refused(b.failure_rate(101)),
        ConfigError::FailureRateOutOfRange(101)
    );
    assert!(b.failure_rate(1).build().is_ok());
    assert!(b.failure_rate(100).build().is_ok());
}

/// Peers: `CircuitBreakerConfigTest.zeroSlowCallRateThresholdShouldFail`
/// and `slowCallRateThresholdAboveHundredShouldFail`.
#[test]
fn slow_call_rate_must_be_1_to_100() {
    let b = Config::builder();
    let threshold = Duration::from_secs(1);
    assert_eq!(
        refused(b.slow_call(threshold, 0)),
        ConfigError::SlowRateOutOfRange(0)
    );
    assert_eq!(
        refused(b.slow_call(threshold, 101)),
        ConfigError::SlowRateOutOfRange(101)
    );
}

/// Peer: `CircuitBreakerConfigTest.zeroSlowCallDurationThresholdShouldFail`.
#[test]
fn slow_call_threshold_must_not_be_zero() {
    assert_eq!(
        refused(Config::builder().slow_call(Duration::ZERO, 50)),
        ConfigError::ZeroSlowThreshold
    );
}

/// Peer: `CircuitBreakerConfigTest.zeroWaitIntervalShouldFail`.
#[test]
fn open_time_must_not_be_zero() {
    assert_eq!(
        refused(Config::builder().failure_rate(50).open_for(Duration::ZERO)),
        ConfigError::OpenForOutOfRange(Duration::ZERO)
    );
}

/// Peer: `CircuitBreakerConfigTest.zeroPermittedNumberOfCallsInHalfOpenStateShouldFail`.
#[test]
fn half_open_permits_must_not_be_zero() {
    assert_eq!(
        refused(Config::builder().failure_rate(50).half_open_permits(0)),
        ConfigError::HalfOpenPermitsOutOfRange(0)
    );
}

/// Peers: `CircuitBreakerConfigTest.zeroSlidingWindowSizeShouldFail` and
/// `zeroSlidingWindowSizeShouldFail2`.
#[test]
fn window_must_not_be_zero() {
    assert_eq!(
        refused(Config::builder().failure_rate(50).window(0)),
        ConfigError::WindowOutOfRange(0)
    );
}

/// Peers: `CircuitBreakerConfigTest.zeroMinimumNumberOfCallsShouldFail`
/// and `zeroMinimumNumberOfCallsShouldFai2l`.
#[test]
fn minimum_calls_must_not_be_zero() {
    assert_eq!(
        refused(
            Config::builder()
                .failure_rate(50)
                .window(2)
                .minimum_calls(0)
        ),
        ConfigError::MinimumCallsOutOfRange {
            minimum_calls: 0,
            window: 2
        }
    );
}

/// Peer: `CircuitBreakerConfigTest.shouldReduceMinimumNumberOfCallsToSlidingWindowSize`
/// (window 5, minimum 6: the peer lowers the minimum to 5). fusebox refuses
/// the contradiction instead of changing it.
#[test]
fn minimum_calls_above_the_window_is_refused() {
    assert_eq!(
        refused(
            Config::builder()
                .failure_rate(50)
                .window(5)
                .minimum_calls(6)
        ),
        ConfigError::MinimumCallsOutOfRange {
            minimum_calls: 6,
            window: 5
        }
    );
}

/// Peer: `CircuitBreakerConfigTest.shouldSetDefaultSettings`. fusebox's
/// documented defaults: no trip condition (one must be chosen), window 64
/// calls, `minimum_calls` = window, open 60 s without growth, 1 half-open
/// permit, `close_after` = permits.
#[test]
fn default_settings() {
    assert_eq!(refused(Config::builder()), ConfigError::NoTripCondition);
    let c = Config::builder().failure_rate(50).build().unwrap();
    assert_eq!((c.window(), c.minimum_calls()), (64, 64));
    assert_eq!(c.open_for(), Duration::from_secs(60));
    assert_eq!(c.max_open_for(), c.open_for());
    assert_eq!((c.half_open_permits(), c.close_after()), (1, 1));
    assert_eq!((c.consecutive_failures(), c.slow_call()), (None, None));
    let c = Config::builder()
        .failure_rate(50)
        .half_open_permits(7)
        .build()
        .unwrap();
    assert_eq!(c.close_after(), 7);
}
