//! Owned permits and `Outcome::Ignored`, through the public API (also run
//! under Miri).

use std::sync::Arc;

use fusebox::breaker::{CircuitBreaker, Config, Outcome, OwnedPermit, State};
use fusebox::{Duration, Instant};

const T0: Instant = Instant::from_secs(10);
const MS: Duration = Duration::from_millis(1);

fn consecutive(n: u32, permits: u8) -> Arc<CircuitBreaker> {
    Arc::new(CircuitBreaker::new(
        Config::builder()
            .consecutive_failures(n)
            .open_for(Duration::from_secs(1))
            .half_open_permits(permits)
            .build()
            .unwrap(),
    ))
}

/// What a tower response future needs of the permit it holds.
fn assert_static_send<T: Send + 'static>(_: &T) {}

#[test]
fn an_owned_permit_lives_in_a_static_task_and_records_there() {
    let breaker = consecutive(2, 1);
    let permits: Vec<OwnedPermit<Arc<CircuitBreaker>>> = (0..2)
        .map(|_| CircuitBreaker::try_acquire_owned(Arc::clone(&breaker), T0).unwrap())
        .collect();
    assert_static_send(&permits[0]);
    let tasks: Vec<_> = permits
        .into_iter()
        .map(|p| std::thread::spawn(move || p.record(Outcome::Failure, T0, MS)))
        .collect();
    let transitions: Vec<_> = tasks
        .into_iter()
        .filter_map(|t| t.join().unwrap())
        .collect();
    assert_eq!(transitions.len(), 1, "two failures trip once");
    assert_eq!(breaker.state(T0), State::Open);
    assert_eq!(breaker.metrics().failures, 2);
}

#[test]
fn an_owned_trial_dropped_unrecorded_frees_its_slot() {
    let breaker = consecutive(1, 1);
    let p = CircuitBreaker::try_acquire_owned(Arc::clone(&breaker), T0).unwrap();
    assert!(p.record(Outcome::Failure, T0, MS).is_some());
    let later = T0 + Duration::from_secs(2);
    let trial = CircuitBreaker::try_acquire_owned(Arc::clone(&breaker), later).unwrap();
    assert!(trial.is_trial());
    assert_eq!(trial.transition().map(|t| t.to), Some(State::HalfOpen));
    assert!(Arc::ptr_eq(trial.breaker(), &breaker));
    assert_eq!(
        breaker.try_acquire(later).unwrap_err().state,
        State::HalfOpen
    );
    drop(trial);
    assert_eq!(breaker.metrics().abandoned, 1);
    let again = breaker.try_acquire(later).expect("the slot was freed");
    assert_eq!(
        again.record(Outcome::Success, later, MS).map(|t| t.to),
        Some(State::Closed)
    );
    // A recorded owned permit is not abandoned as well.
    assert_eq!(breaker.metrics().abandoned, 1);
}

#[test]
fn a_static_reference_makes_an_owned_permit_too() {
    static BREAKER: CircuitBreaker =
        CircuitBreaker::new(match Config::builder().consecutive_failures(1).build() {
            Ok(c) => c,
            Err(_) => panic!(),
        });
    let p = CircuitBreaker::try_acquire_owned(&BREAKER, T0).unwrap();
    assert_static_send(&p);
    assert_eq!(p.record(Outcome::Success, T0, MS), None);
}

#[test]
fn ignored_outcomes_change_no_state_and_are_counted() {
    let breaker = consecutive(2, 1);
    let record = |o| breaker.try_acquire(T0).unwrap().record(o, T0, MS);
    record(Outcome::Failure);
    // An ignored call neither resets the streak nor adds to it...
    for _ in 0..5 {
        assert_eq!(record(Outcome::Ignored), None);
    }
    assert_eq!(breaker.state(T0), State::Closed);
    // ...so the next failure is the second in a row.
    assert!(record(Outcome::Failure).is_some());
    let m = breaker.metrics();
    assert_eq!((m.ignored, m.failures, m.successes), (5, 2, 0));
    assert_eq!(m.calls(), 7);
}

#[test]
fn ignored_outcomes_never_enter_the_rate_window() {
    let breaker = CircuitBreaker::new(
        Config::builder()
            .failure_rate(50)
            .window(4)
            .minimum_calls(4)
            .build()
            .unwrap(),
    );
    let record = |o| breaker.try_acquire(T0).unwrap().record(o, T0, MS);
    for _ in 0..3 {
        record(Outcome::Failure);
    }
    for _ in 0..10 {
        assert_eq!(record(Outcome::Ignored), None, "not a call of the window");
    }
    assert_eq!(breaker.state(T0), State::Closed);
    assert_eq!(
        record(Outcome::Success).map(|t| t.to),
        Some(State::Open),
        "the fourth call of the window"
    );
}

#[test]
fn an_ignored_trial_frees_its_slot_without_deciding() {
    let breaker = consecutive(1, 1);
    breaker
        .try_acquire(T0)
        .unwrap()
        .record(Outcome::Failure, T0, MS);
    let later = T0 + Duration::from_secs(2);
    let trial = breaker.try_acquire(later).unwrap();
    assert_eq!(trial.record(Outcome::Ignored, later, MS), None);
    assert_eq!(breaker.state(later), State::HalfOpen, "undecided");
    let m = breaker.metrics();
    assert_eq!((m.ignored, m.abandoned), (1, 0));
    let next = breaker.try_acquire(later).expect("the slot was freed");
    assert_eq!(
        next.record(Outcome::Failure, later, MS).map(|t| t.to),
        Some(State::Open)
    );
}

/// A pointer that leads to the breaker through a struct around it, as the
/// tower layer's response future holds one.
struct Around {
    breaker: CircuitBreaker,
    name: &'static str,
}

struct Via(Arc<Around>);

impl std::ops::Deref for Via {
    type Target = CircuitBreaker;

    fn deref(&self) -> &CircuitBreaker {
        &self.0.breaker
    }
}

#[test]
fn an_owned_trial_recorded_in_place_is_spent_and_keeps_its_pointer() {
    let around = Arc::new(Around {
        breaker: CircuitBreaker::new(
            Config::builder()
                .consecutive_failures(1)
                .open_for(Duration::from_secs(1))
                .half_open_permits(1)
                .build()
                .unwrap(),
        ),
        name: "db",
    });
    let mut p = CircuitBreaker::try_acquire_owned(Via(Arc::clone(&around)), T0).unwrap();
    let opened = p.record_in_place_with(Outcome::Failure, MS, || T0);
    assert_eq!(opened.map(|t| t.to), Some(State::Open));
    assert_eq!(p.breaker().0.name, "db", "the pointer is still there");
    drop(p);
    assert_eq!(around.breaker.metrics().abandoned, 0);

    // A half-open trial: recorded in place, it closes the breaker once;
    // recorded again or dropped, it neither counts nor frees a slot twice.
    let later = T0 + Duration::from_secs(2);
    let mut trial = CircuitBreaker::try_acquire_owned(Via(Arc::clone(&around)), later).unwrap();
    assert!(trial.is_trial());
    let closed = trial.record_in_place_with(Outcome::Success, MS, || later);
    assert_eq!(closed.map(|t| t.to), Some(State::Closed));
    let reads = std::cell::Cell::new(0);
    let again = trial.record_in_place_with(Outcome::Failure, MS, || {
        reads.set(reads.get() + 1);
        later
    });
    assert_eq!(again, None, "a spent permit records nothing");
    assert_eq!(reads.get(), 0, "nor reads the clock");
    drop(trial);
    let m = around.breaker.metrics();
    assert_eq!((m.failures, m.successes, m.abandoned), (1, 1, 0));
    assert_eq!(around.breaker.state(later), State::Closed);
    assert_eq!(
        Arc::strong_count(&around),
        1,
        "every permit let go of its pointer"
    );
}

#[test]
fn a_clock_that_panics_in_an_in_place_record_leaves_the_permit_to_be_abandoned() {
    let breaker = consecutive(1, 1);
    let p = CircuitBreaker::try_acquire_owned(Arc::clone(&breaker), T0).unwrap();
    assert!(p.record(Outcome::Failure, T0, MS).is_some());
    let later = T0 + Duration::from_secs(2);
    let mut trial = CircuitBreaker::try_acquire_owned(Arc::clone(&breaker), later).unwrap();
    // A half-open trial's failure needs the time, so `now` runs.
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        trial.record_in_place_with(Outcome::Failure, MS, || panic!("clock"))
    }));
    assert!(panicked.is_err());
    assert_eq!(
        breaker.metrics().abandoned,
        0,
        "still live, not yet dropped"
    );
    drop(trial);
    let m = breaker.metrics();
    assert_eq!(
        (m.failures, m.abandoned),
        (1, 1),
        "counted as abandoned only"
    );
    assert!(
        breaker.try_acquire(later).is_ok(),
        "the trial's slot was freed"
    );
}
