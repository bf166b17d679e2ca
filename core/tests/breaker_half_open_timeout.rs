//! Scenarios re-expressed from Resilience4j's `maxWaitDurationInHalfOpenState`
//! behaviour (half-open waits for its trials by default; with a maximum,
//! undecided trials reopen the breaker), plus fusebox's rules for late
//! records, stale clocks and restored snapshots (feature
//! `half-open-timeout`).
#![cfg(feature = "half-open-timeout")]

use fusebox::breaker::{Config, ConfigError, Outcome, State};
use fusebox::{CircuitBreaker, Duration, Instant};

const MS: u64 = 1_000;
const SEC: u64 = 1_000_000;
const T0: u64 = 1_000 * SEC;

fn at(us: u64) -> Instant {
    Instant::from_micros(us)
}

fn half_open(max: Option<Duration>) -> (CircuitBreaker, Instant) {
    let mut b = Config::builder()
        .consecutive_failures(1)
        .open_for(Duration::from_secs(1))
        .max_open_for(Duration::from_secs(8))
        .half_open_permits(2);
    if let Some(max) = max {
        b = b.max_half_open(max);
    }
    let breaker = CircuitBreaker::new(b.build().unwrap());
    let now = at(T0);
    breaker
        .try_acquire(now)
        .unwrap()
        .record(Outcome::Failure, now, Duration::ZERO);
    (breaker, at(T0 + 2 * SEC))
}

#[test]
fn without_a_maximum_half_open_waits_for_its_trials() {
    let (b, t1) = half_open(None);
    let trial = b.try_acquire(t1).unwrap();
    let hours = t1 + Duration::from_secs(5 * 3_600);
    assert_eq!(b.state(hours), State::HalfOpen);
    assert_eq!(
        trial
            .record(Outcome::Failure, hours, Duration::ZERO)
            .map(|t| t.to),
        Some(State::Open)
    );
}

#[test]
fn undecided_trials_reopen_after_the_maximum() {
    let max = Duration::from_secs(5);
    let (b, t1) = half_open(Some(max));
    let first = b.try_acquire(t1).unwrap();
    assert_eq!(first.transition().map(|t| t.to), Some(State::HalfOpen));
    let second = b.try_acquire(t1).unwrap();
    // One trial succeeds (two are needed); the other hangs.
    assert_eq!(first.record(Outcome::Success, t1, Duration::ZERO), None);
    let just_before = t1 + max - Duration::from_micros(1);
    assert_eq!(b.state(just_before), State::HalfOpen);
    let expired = t1 + max + Duration::from_millis(2);
    assert_eq!(b.state(expired), State::Open);
    assert_eq!(b.state(expired), State::Open, "reading changes nothing");
    let trips = b.metrics().trips;
    let r = b.try_acquire(expired).unwrap_err();
    assert_eq!(r.state, State::Open);
    let t = r.transition.expect("this caller timed it out");
    assert_eq!(
        (t.from, t.to, t.at),
        (State::HalfOpen, State::Open, expired)
    );
    // The re-opening streak grows as for a failed trial: 2 s now.
    assert!(r.retry_after.unwrap() >= Duration::from_secs(2));
    assert_eq!(b.metrics().trips, trips + 1);
    // Exactly one transition: the next caller is simply rejected.
    assert_eq!(b.try_acquire(expired).unwrap_err().transition, None);
    // The hanging trial's late record changes nothing.
    assert_eq!(
        second.record(Outcome::Success, expired, Duration::ZERO),
        None
    );
    assert_eq!(b.state(expired), State::Open);
}

#[test]
fn a_trial_record_after_the_maximum_reopens_instead_of_deciding() {
    let max = Duration::from_secs(5);
    let (b, t1) = half_open(Some(max));
    let trial = b.try_acquire(t1).unwrap();
    let late = t1 + max + Duration::from_millis(2);
    let t = trial
        .record(Outcome::Success, late, Duration::ZERO)
        .expect("reopens");
    assert_eq!((t.from, t.to), (State::HalfOpen, State::Open));
    assert_eq!(b.metrics().successes, 1, "still counted");
}

#[test]
fn trials_deciding_in_time_close_or_reopen_as_usual() {
    let max = Duration::from_secs(5);
    for (outcome, to) in [
        (Outcome::Success, State::Closed),
        (Outcome::Failure, State::Open),
    ] {
        let (b, t1) = half_open(Some(max));
        let a = b.try_acquire(t1).unwrap();
        let c = b.try_acquire(t1).unwrap();
        let in_time = t1 + max - Duration::from_millis(1);
        assert_eq!(a.record(Outcome::Success, in_time, Duration::ZERO), None);
        let t = c.record(outcome, in_time, Duration::ZERO).expect("decides");
        assert_eq!(t.to, to);
        // No timeout fires afterwards.
        if to == State::Closed {
            assert_eq!(b.state(in_time + Duration::from_secs(3_600)), State::Closed);
        }
    }
}

#[test]
fn a_stale_clock_never_times_half_open_out() {
    let max = Duration::from_secs(5);
    let (b, t1) = half_open(Some(max));
    let _trial = b.try_acquire(t1).unwrap();
    // Readings from before half-open began (another thread's old clock).
    for back in [1, 500 * MS, 5 * SEC] {
        let stale = t1 - Duration::from_micros(back);
        assert_eq!(b.state(stale), State::HalfOpen, "{back} us stale");
        assert!(matches!(
            b.try_acquire(stale),
            Ok(_)
                | Err(fusebox::breaker::Rejected {
                    state: State::HalfOpen,
                    ..
                })
        ));
    }
}

#[test]
fn a_restored_half_open_snapshot_times_out_again() {
    let max = Duration::from_secs(5);
    let (b, t1) = half_open(Some(max));
    let _trial = b.try_acquire(t1).unwrap();
    let expired = t1 + Duration::from_secs(60);
    let snapshot = b.snapshot(expired);
    assert_eq!(snapshot.state, State::HalfOpen);
    let other = CircuitBreaker::new(b.config());
    let t2 = at(7 * SEC);
    other.restore(&snapshot, t2).unwrap();
    assert_eq!(other.state(t2), State::HalfOpen);
    // The restore re-arms the timeout from its own `now`: never forever.
    assert_eq!(
        other.state(t2 + max + Duration::from_millis(2)),
        State::Open
    );
}

/// A fleet's HalfOpen decision merged into a breaker whose half-open
/// period has timed out (it reads Open) enters half-open at the merge's
/// `now`, as the docs say of a merged HalfOpen state: it then reads
/// half-open and lets a trial through, where it stayed timed out before
/// and the next call reopened it (a trip counted, a longer open time).
#[test]
fn a_merged_half_open_decision_restarts_a_timed_out_half_open_period() {
    use fusebox::breaker::Decision;
    let max = Duration::from_secs(5);
    let (b, t1) = half_open(Some(max));
    let _hung = b.try_acquire(t1).unwrap();
    let t2 = t1 + Duration::from_secs(6);
    assert_eq!(b.state(t2), State::Open, "timed out");
    let decision = Decision {
        version: 1,
        state: State::HalfOpen,
        open_remaining: None,
        reopen_streak: 0,
    };
    assert!(b.merge(&decision, t2).is_ok());
    assert_eq!(b.state(t2), State::HalfOpen);
    let trips = b.metrics().trips;
    let trial = b
        .try_acquire(t2)
        .expect("a trial of the merged half-open period");
    assert!(trial.is_trial());
    assert_eq!(b.metrics().trips, trips, "not reopened by the old timeout");
    drop(trial);
    // The timeout runs again from the merge.
    let later = t2 + max + Duration::from_millis(2);
    assert_eq!(
        b.state(t2 + max - Duration::from_millis(1)),
        State::HalfOpen
    );
    assert_eq!(b.state(later), State::Open);
}

#[test]
fn max_half_open_is_validated() {
    let b = || Config::builder().consecutive_failures(1);
    assert_eq!(
        b().max_half_open(Duration::ZERO).build(),
        Err(ConfigError::MaxHalfOpenOutOfRange(Duration::ZERO))
    );
    let too_long = Config::MAX_HALF_OPEN + Duration::from_micros(1);
    assert_eq!(
        b().max_half_open(too_long).build(),
        Err(ConfigError::MaxHalfOpenOutOfRange(too_long))
    );
    let c = b().max_half_open(Config::MAX_HALF_OPEN).build().unwrap();
    assert_eq!(c.max_half_open(), Some(Config::MAX_HALF_OPEN));
    assert_eq!(b().build().unwrap().max_half_open(), None);
}

/// A late trial recorded as ignored, or dropped, changes no state (the
/// `Outcome::Ignored` and `Permit` docs; the "Half-open timeout" docs
/// leave the reopening to the next `try_acquire` or a trial's recorded
/// success or failure): the next caller gets the transition, dated at its
/// own `now`. Pins the behaviour the docs were clarified to say.
#[test]
fn a_late_ignored_or_dropped_trial_leaves_the_timeout_to_the_next_caller() {
    let max = Duration::from_secs(5);
    for ignore in [true, false] {
        let (b, t1) = half_open(Some(max));
        let trial = b.try_acquire(t1).unwrap();
        let late = t1 + Duration::from_secs(6);
        assert_eq!(b.state(late), State::Open);
        if ignore {
            assert_eq!(trial.record(Outcome::Ignored, late, Duration::ZERO), None);
        } else {
            drop(trial);
        }
        let m = b.metrics();
        assert_eq!((m.trips, m.ignored + m.abandoned), (1, 1), "not reopened");
        let later = late + Duration::from_millis(100);
        let rejected = b.try_acquire(later).unwrap_err();
        let t = rejected.transition.expect("the next caller reopens it");
        assert_eq!((t.from, t.to, t.at), (State::HalfOpen, State::Open, later));
        assert_eq!(b.metrics().trips, 2);
    }
}
