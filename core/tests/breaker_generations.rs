#![cfg(not(miri))]
//! Long-history regressions for the circuit breaker: a server runs for
//! months, so every path that changes the breaker's state is driven through
//! at least 20 000 changes ("generations"), and then the breaker must behave
//! exactly like a fresh one (the same transitions at the same call for the
//! same outcomes); and a permit held across 40 000 transitions must still be
//! stale when it is finally recorded.
//!
//! The paths: failed half-open probes, `force_open`/`force_close`, `reset`,
//! `restore`, and successful half-open closes; for the consecutive policy,
//! the failure-rate policy (with and without `slow_call`) and the slow-call
//! policy alone.
//!
//! Run with `cargo test -p fusebox --test breaker -- breaker_generations::`.

use fusebox::breaker::{Config, Outcome, Permit, Snapshot, State};
use fusebox::{CircuitBreaker, Duration, Instant};

const SEC: u64 = 1_000_000;
/// Long enough to count as slow in every configuration below.
const SLOW: Duration = Duration::from_millis(100);
/// Changes of state each path goes through, at least.
const GENERATIONS: u64 = 20_000;

fn at(us: u64) -> Instant {
    Instant::from_micros(us)
}

/// The configurations, one per policy, all open for 5 s without growth.
fn configs() -> Vec<(&'static str, Config)> {
    let open = Duration::from_secs(5);
    let build = |b: fusebox::breaker::ConfigBuilder| b.open_for(open).build().unwrap();
    vec![
        (
            "consecutive(3)",
            build(Config::builder().consecutive_failures(3)),
        ),
        (
            "failure_rate(50), default window",
            build(Config::builder().failure_rate(50)),
        ),
        (
            "failure_rate(50) + slow_call(100 ms, 50), window 10, minimum 5",
            build(
                Config::builder()
                    .failure_rate(50)
                    .slow_call(SLOW, 50)
                    .window(10)
                    .minimum_calls(5),
            ),
        ),
        (
            "slow_call(100 ms, 50) alone, window 8, minimum 4",
            build(
                Config::builder()
                    .slow_call(SLOW, 50)
                    .window(8)
                    .minimum_calls(4),
            ),
        ),
        (
            "consecutive(5) + failure_rate(60) + slow_call(100 ms, 80), window 20, minimum 10",
            build(
                Config::builder()
                    .consecutive_failures(5)
                    .failure_rate(60)
                    .slow_call(SLOW, 80)
                    .window(20)
                    .minimum_calls(10),
            ),
        ),
    ]
}

/// One call: acquire at `now`, record at once; the state it moved to.
fn call(
    b: &CircuitBreaker,
    now: u64,
    outcome: Outcome,
    elapsed: Duration,
) -> Result<Option<State>, fusebox::breaker::Rejected> {
    let permit = b.try_acquire(at(now))?;
    Ok(permit.record(outcome, at(now), elapsed).map(|t| t.to))
}

/// Slow failures until the breaker opens (every policy above counts them);
/// returns the deadline.
fn trip(b: &CircuitBreaker, now: u64) -> u64 {
    for _ in 0..200 {
        if call(b, now, Outcome::Failure, SLOW).expect("closed") == Some(State::Open) {
            let rejected = b.try_acquire(at(now)).unwrap_err();
            return now + rejected.retry_after.unwrap().as_micros();
        }
    }
    panic!("no trip after 200 slow failures");
}

/// The trial at `deadline` (moving Open → HalfOpen) records `outcome`.
fn probe(b: &CircuitBreaker, deadline: u64, outcome: Outcome) -> Option<State> {
    let trial = b
        .try_acquire(at(deadline))
        .expect("trial after the deadline");
    assert_eq!(trial.transition().map(|t| t.to), Some(State::HalfOpen));
    trial
        .record(outcome, at(deadline), Duration::ZERO)
        .map(|t| t.to)
}

/// What one call of a trace did: its acquire's and record's transitions
/// (times relative to the trace's start), or the rejection; and the
/// snapshot's decision state afterwards.
#[derive(Debug, PartialEq, Eq)]
enum Event {
    Call {
        acquired: Option<(State, State, u64)>,
        recorded: Option<(State, State, u64)>,
        after: Snapshot,
    },
    Rejected(fusebox::breaker::Rejected),
}

/// A fixed script: 1 000 failures 1 ms apart, an hour's pause, then 200
/// mixed calls (about 20 % failures, 20 % slow, 1 ms apart: a trial, maybe
/// a close, a closed period...); every call's effect.
fn trace(b: &CircuitBreaker, start: u64) -> Vec<Event> {
    let mut script: Vec<(u64, bool, bool)> = (0..1_000u64)
        .map(|i| (start + i * 1_000, true, false))
        .collect();
    let later = start + 3_600 * SEC;
    let mut lcg: u64 = 0x2545_F491_4F6C_DD1D;
    for i in 0..200u64 {
        lcg = lcg.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let failure = (lcg >> 33) % 5 == 0;
        let slow = (lcg >> 40) % 5 == 0;
        script.push((later + i * 1_000, failure, slow));
    }
    let rel = |t: fusebox::breaker::Transition| (t.from, t.to, t.at.as_micros() - start);
    script
        .into_iter()
        .map(|(now, failure, slow)| match b.try_acquire(at(now)) {
            Ok(permit) => {
                let acquired = permit.transition().map(rel);
                let outcome = if failure {
                    Outcome::Failure
                } else {
                    Outcome::Success
                };
                let elapsed = if slow { SLOW } else { Duration::ZERO };
                let recorded = permit.record(outcome, at(now), elapsed).map(rel);
                let after = Snapshot {
                    metrics: fusebox::breaker::Metrics::default(),
                    ..b.snapshot(at(now))
                };
                Event::Call {
                    acquired,
                    recorded,
                    after,
                }
            }
            Err(r) => Event::Rejected(r),
        })
        .collect()
}

/// `b`, closed with an empty window after a long history, must run the
/// trace exactly as a fresh breaker does (the trace trips a fresh one).
fn like_fresh(b: &CircuitBreaker, cfg: Config, now: u64) -> Result<(), String> {
    let snap = b.snapshot(at(now));
    if (snap.state, snap.window_calls, snap.consecutive_failures) != (State::Closed, 0, 0) {
        return Err(format!("not closed and empty: {snap:?}"));
    }
    let fresh = CircuitBreaker::new(cfg);
    let want = trace(&fresh, now);
    assert!(
        want.iter().any(|e| matches!(e, Event::Rejected(_))),
        "the trace must trip a fresh breaker"
    );
    let got = trace(b, now);
    let opened_at = |events: &[Event]| {
        events.iter().position(|e| {
            matches!(
                e,
                Event::Call {
                    recorded: Some((_, State::Open, _)),
                    ..
                }
            )
        })
    };
    let (trip, fresh_trip) = (opened_at(&got), opened_at(&want));
    if trip != fresh_trip {
        return Err(format!(
            "1 000 failures opened it at call {trip:?}, a fresh breaker at call {fresh_trip:?}; \
             after the first 10: {:?}",
            got[9]
        ));
    }
    match (0..want.len()).find(|&i| got[i] != want[i]) {
        None => Ok(()),
        Some(i) => Err(format!(
            "call {i} of the trace differs from a fresh breaker's\n    got  {:?}\n    want {:?}",
            got[i], want[i]
        )),
    }
}

/// Runs `burn` for every configuration, then `like_fresh`; reports every
/// configuration that fails, not only the first.
fn for_each_config(path: &str, burn: impl Fn(Config) -> (CircuitBreaker, u64)) {
    let failed: Vec<String> = configs()
        .into_iter()
        .filter_map(|(name, cfg)| {
            let (b, now) = burn(cfg);
            like_fresh(&b, cfg, now)
                .err()
                .map(|e| format!("  {name}: {e}"))
        })
        .collect();
    assert!(
        failed.is_empty(),
        "after {path}, unlike a fresh breaker:\n{}",
        failed.join("\n")
    );
}

/// Path (i): failed half-open probes, then a successful one.
fn burn_failed_probes(cfg: Config, probes: u64) -> (CircuitBreaker, u64) {
    let b = CircuitBreaker::new(cfg);
    let mut deadline = trip(&b, 1_000);
    for _ in 0..probes {
        assert_eq!(probe(&b, deadline, Outcome::Failure), Some(State::Open));
        deadline += b.snapshot(at(deadline)).open_remaining.unwrap().as_micros();
    }
    assert_eq!(probe(&b, deadline, Outcome::Success), Some(State::Closed));
    (b, deadline)
}

/// Path (i), 2 100 failed probes (4 200 generations): already enough to
/// have left the window dead in an earlier implementation.
#[test]
fn after_2_100_failed_half_open_probes() {
    for_each_config("2 100 failed probes", |cfg| burn_failed_probes(cfg, 2_100));
}

/// Path (i): 20 000 failed probes, 40 000 generations.
#[test]
fn after_20_000_failed_half_open_probes() {
    for_each_config("20 000 failed probes", |cfg| {
        burn_failed_probes(cfg, GENERATIONS)
    });
}

/// Path (ii): `force_open`/`force_close` pairs, a (non-tripping) failure
/// recorded in each closed period.
#[test]
fn after_force_open_force_close_loops() {
    for_each_config("force_open/force_close loops", |cfg| {
        let b = CircuitBreaker::new(cfg);
        let now = 1_000;
        for _ in 0..GENERATIONS / 2 {
            assert_eq!(call(&b, now, Outcome::Failure, Duration::ZERO), Ok(None));
            assert!(b.force_open(at(now)).is_some());
            assert!(b.force_close(at(now)).is_some());
        }
        (b, now)
    });
}

/// Path (iii): `reset` while closed, and from forced open, a failure
/// recorded before each.
#[test]
fn after_reset_loops() {
    for_each_config("reset loops", |cfg| {
        let b = CircuitBreaker::new(cfg);
        let now = 1_000;
        for i in 0..GENERATIONS {
            assert_eq!(call(&b, now, Outcome::Failure, Duration::ZERO), Ok(None));
            if i % 2 == 0 {
                assert!(b.force_open(at(now)).is_some());
                assert!(b.reset(at(now)).is_some());
            } else {
                assert_eq!(b.reset(at(now)), None);
            }
        }
        (b, now)
    });
}

/// Path (iv): restoring an open snapshot, then a fresh closed one, a
/// failure recorded before each pair.
#[test]
fn after_repeated_restores() {
    for_each_config("restore loops", |cfg| {
        let closed = CircuitBreaker::new(cfg).snapshot(at(0));
        let opened = CircuitBreaker::new(cfg);
        trip(&opened, 0);
        let open = opened.snapshot(at(0));
        let b = CircuitBreaker::new(cfg);
        let now = 1_000;
        for _ in 0..GENERATIONS / 2 {
            assert_eq!(call(&b, now, Outcome::Failure, Duration::ZERO), Ok(None));
            b.restore(&open, at(now)).unwrap();
            b.restore(&closed, at(now)).unwrap();
        }
        (b, now)
    });
}

/// Path (v): trip, then a successful trial closes; three generations a
/// cycle.
#[test]
fn after_successful_half_open_closes() {
    for_each_config("successful half-open closes", |cfg| {
        let b = CircuitBreaker::new(cfg);
        let mut now = 1_000;
        for _ in 0..=GENERATIONS / 3 {
            let deadline = trip(&b, now);
            assert_eq!(probe(&b, deadline, Outcome::Success), Some(State::Closed));
            now = deadline;
        }
        (b, now)
    });
}

/// Configurations where one failure trips, so that a stale permit taken for
/// a current one would show at once.
fn one_failure_trips() -> [(&'static str, Config); 2] {
    let open = Duration::from_secs(5);
    [
        (
            "consecutive(1)",
            Config::builder()
                .consecutive_failures(1)
                .open_for(open)
                .build()
                .unwrap(),
        ),
        (
            "failure_rate(50), window 2, minimum 1",
            Config::builder()
                .failure_rate(50)
                .window(2)
                .minimum_calls(1)
                .open_for(open)
                .build()
                .unwrap(),
        ),
    ]
}

/// Runs `check` for both configurations and reports every one that fails.
fn for_both(check: impl Fn(Config) -> Result<(), String>) {
    let failed: Vec<String> = one_failure_trips()
        .into_iter()
        .filter_map(|(name, cfg)| check(cfg).err().map(|e| format!("  {name}: {e}")))
        .collect();
    assert!(
        failed.is_empty(),
        "stale permits decided:\n{}",
        failed.join("\n")
    );
}

/// A closed permit from each of 20 000 closed periods (the first held
/// across more than 40 000 transitions: forced, reset, trip and close,
/// restores), recorded at the end as failures: none may change the state.
#[test]
fn closed_permits_held_across_40_000_transitions_stay_stale() {
    for_both(|cfg| {
        let b = CircuitBreaker::new(cfg);
        let closed = b.snapshot(at(0));
        let opened = CircuitBreaker::new(cfg);
        trip(&opened, 0);
        let open = opened.snapshot(at(0));
        let mut held: Vec<Permit<'_>> = Vec::new();
        let mut now = 1_000;
        for k in 0..GENERATIONS {
            held.push(b.try_acquire(at(now)).expect("closed"));
            match k % 4 {
                0 => {
                    b.force_open(at(now)).unwrap();
                    b.force_close(at(now)).unwrap();
                }
                1 => {
                    b.force_open(at(now)).unwrap();
                    b.reset(at(now)).unwrap();
                }
                2 => {
                    now = trip(&b, now);
                    assert_eq!(probe(&b, now, Outcome::Success), Some(State::Closed));
                }
                _ => {
                    b.restore(&open, at(now)).unwrap();
                    b.restore(&closed, at(now)).unwrap();
                }
            }
        }
        let before = b.snapshot(at(now));
        for (i, permit) in held.into_iter().enumerate() {
            let failures = b.metrics().failures;
            if let Some(t) = permit.record(Outcome::Failure, at(now), SLOW) {
                return Err(format!(
                    "the permit of closed period {i} (of 20 000) made {t:?}"
                ));
            }
            assert_eq!(b.metrics().failures, failures + 1, "still counted");
            let after = Snapshot {
                metrics: before.metrics,
                ..b.snapshot(at(now))
            };
            if after != before {
                return Err(format!(
                    "the permit of closed period {i} (of 20 000) changed {before:?} into {after:?}"
                ));
            }
        }
        // A current permit still decides.
        assert_eq!(call(&b, now, Outcome::Failure, SLOW), Ok(Some(State::Open)));
        Ok(())
    });
}

/// A trial permit from each of 20 000 half-open periods (each left by a
/// forced operation or a reset, never by a record; four or three
/// transitions a period), recorded or dropped at the end while the breaker
/// is half-open with its one slot in use: none may change the state or free
/// the slot.
#[test]
fn trial_permits_held_across_40_000_transitions_stay_stale() {
    for_both(|cfg| {
        let b = CircuitBreaker::new(cfg);
        let mut held: Vec<Permit<'_>> = Vec::new();
        let mut deadline = trip(&b, 1_000);
        for k in 0..GENERATIONS {
            let trial = b.try_acquire(at(deadline)).expect("trial");
            assert!(trial.is_trial());
            held.push(trial);
            if k % 2 == 0 {
                b.force_open(at(deadline)).unwrap();
                b.force_close(at(deadline)).unwrap();
            } else {
                b.reset(at(deadline)).unwrap();
            }
            deadline = trip(&b, deadline);
        }
        let current = b.try_acquire(at(deadline)).expect("trial");
        for (i, permit) in held.into_iter().enumerate() {
            if i % 2 == 0 {
                if let Some(t) = permit.record(Outcome::Failure, at(deadline), SLOW) {
                    return Err(format!("the trial of half-open period {i} made {t:?}"));
                }
            } else {
                drop(permit);
            }
            if b.state(at(deadline)) != State::HalfOpen {
                return Err(format!("half-open period {i}'s trial left the state"));
            }
            if let Ok(extra) = b.try_acquire(at(deadline)) {
                drop(extra);
                let how = if i % 2 == 0 { "recorded" } else { "dropped" };
                return Err(format!(
                    "the trial of half-open period {i}, {how}, freed the one slot"
                ));
            }
        }
        let closed = current.record(Outcome::Success, at(deadline), Duration::ZERO);
        assert_eq!(closed.map(|t| t.to), Some(State::Closed));
        Ok(())
    });
}
