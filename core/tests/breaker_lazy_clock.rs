//! The lazy-clock forms (`try_acquire_with`, `record_with`,
//! `try_acquire_owned_with`) against the eager ones, from their contract:
//! given the same time, they decide exactly alike (same permits, same
//! rejections, same transitions, same counters); and they read the clock
//! only when the decision depends on it, never for a closed acquire nor
//! for a success on a closed breaker with no failure streak and no rate
//! window. Histories run long enough to open and close the breakers many
//! times, with stale (backwards) clock readings mixed in.

use std::cell::Cell;
use std::sync::Arc;

use fusebox::breaker::{CircuitBreaker, Config, Outcome, State};
use fusebox::{Duration, Instant};
use proptest::prelude::*;

#[derive(Clone, Copy, Debug)]
enum Op {
    /// Move the clock by this many ms (negative: a stale reading).
    Tick(i16),
    /// Acquire at the clock's time and record this outcome with this
    /// elapsed time in ms; `None` drops the permit unrecorded.
    Call(Option<Outcome>, u16),
}

fn op() -> impl Strategy<Value = Op> {
    let outcome = prop_oneof![
        4 => Just(Some(Outcome::Success)),
        3 => Just(Some(Outcome::Failure)),
        1 => Just(Some(Outcome::Ignored)),
        1 => Just(None),
    ];
    prop_oneof![
        1 => (-50i16..400).prop_map(Op::Tick),
        4 => (outcome, 0u16..300).prop_map(|(o, ms)| Op::Call(o, ms)),
    ]
}

fn config(kind: u8) -> Config {
    let b = Config::builder()
        .open_for(Duration::from_millis(500))
        .half_open_permits(2)
        .close_after(2);
    match kind % 3 {
        0 => b.consecutive_failures(3),
        1 => b.failure_rate(50).window(10).minimum_calls(4),
        _ => b
            .consecutive_failures(4)
            .slow_call(Duration::from_millis(200), 60)
            .window(8)
            .minimum_calls(4),
    }
    .build()
    .unwrap()
}

/// Whether the contract lets a record skip the clock: a success on a
/// closed breaker with no rate window and (as the breaker's metrics show)
/// nothing since the last success that could have left a streak.
fn closed_success_without_window(config: &Config, state: State, outcome: Option<Outcome>) -> bool {
    state == State::Closed
        && outcome == Some(Outcome::Success)
        && config.failure_rate().is_none()
        && config.slow_call().is_none()
}

// proptest reads the working directory (its regression files): not
// under Miri's isolation; the panic test below runs there too.
#[cfg(not(miri))]
proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn lazy_forms_decide_as_the_eager_ones(
        kind in 0u8..3,
        ops in prop::collection::vec(op(), 1..600),
    ) {
        let config = config(kind);
        let eager = CircuitBreaker::new(config);
        let lazy = Arc::new(CircuitBreaker::new(config));
        let mut now = Instant::from_secs(100);
        let reads = Cell::new(0u32);
        let reads = &reads;
        let clock = |t: Instant| move || { reads.set(reads.get() + 1); t };
        let mut streak = false; // a failure since the last closed success
        for (i, op) in ops.into_iter().enumerate() {
            match op {
                Op::Tick(ms) => {
                    let step = 1_000 * u64::from(ms.unsigned_abs());
                    now = if ms >= 0 {
                        Instant::from_micros(now.as_micros() + step)
                    } else {
                        Instant::from_micros(now.as_micros().saturating_sub(step))
                    };
                }
                Op::Call(outcome, ms) => {
                    let elapsed = Duration::from_millis(u64::from(ms));
                    let state = eager.state(now);
                    let before = reads.get();
                    let a = eager.try_acquire(now);
                    // Alternate the borrowed and the owned lazy forms.
                    let b = if i % 2 == 0 {
                        lazy.try_acquire_with(clock(now)).map(|p| (Some(p), None))
                    } else {
                        CircuitBreaker::try_acquire_owned_with(Arc::clone(&lazy), clock(now))
                            .map(|p| (None, Some(p)))
                    };
                    if state == State::Closed {
                        prop_assert_eq!(reads.get(), before, "a closed acquire read the clock");
                    }
                    match (a, b) {
                        (Err(ea), Err(eb)) => prop_assert_eq!(ea, eb),
                        (Ok(pa), Ok((pb, po))) => {
                            let trial = pa.is_trial();
                            let ta = pa.transition();
                            let tb = pb.as_ref().map_or_else(|| po.as_ref().unwrap().transition(), fusebox::breaker::Permit::transition);
                            prop_assert_eq!(ta, tb);
                            let Some(outcome) = outcome else { continue };
                            let before = reads.get();
                            let ra = pa.record(outcome, now, elapsed);
                            let rb = match (pb, po) {
                                (Some(p), _) => p.record_with(outcome, elapsed, clock(now)),
                                (_, Some(p)) => p.record_with(outcome, elapsed, clock(now)),
                                _ => unreachable!(),
                            };
                            prop_assert_eq!(ra, rb);
                            let skip = !trial && !streak && closed_success_without_window(&config, state, Some(outcome));
                            if skip {
                                prop_assert_eq!(reads.get(), before, "a clean closed success read the clock");
                            }
                            if !trial && state == State::Closed {
                                match outcome {
                                    Outcome::Success => streak = false,
                                    Outcome::Failure => streak = true,
                                    Outcome::Ignored => {}
                                }
                            }
                            if ra.is_some() {
                                streak = false; // a transition starts a new generation
                            }
                        }
                        (a, b) => prop_assert!(false, "eager {:?} but lazy {:?}", a.is_ok(), b.is_ok()),
                    }
                }
            }
            prop_assert_eq!(eager.metrics(), lazy.metrics());
            prop_assert_eq!(eager.state(now), lazy.state(now));
        }
    }
}

/// A clock closure that panics inside `record_with` must not leak the
/// permit: the unwind abandons it, so a half-open trial's slot is freed
/// and the breaker can decide later (found by review: the first version
/// disarmed the permit before calling `now`).
#[test]
fn a_panicking_clock_in_record_with_abandons_the_trial() {
    let config = Config::builder()
        .consecutive_failures(1)
        .open_for(Duration::from_secs(1))
        .half_open_permits(1)
        .build()
        .unwrap();
    let t0 = Instant::from_secs(10);
    let later = Instant::from_secs(12);
    for owned in [false, true] {
        let breaker = Arc::new(CircuitBreaker::new(config));
        let p = breaker.try_acquire(t0).unwrap();
        assert!(p.record(Outcome::Failure, t0, Duration::ZERO).is_some());
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if owned {
                let trial = CircuitBreaker::try_acquire_owned(Arc::clone(&breaker), later).unwrap();
                trial.record_with(Outcome::Success, Duration::ZERO, || panic!("clock failed"))
            } else {
                let trial = breaker.try_acquire(later).unwrap();
                trial.record_with(Outcome::Success, Duration::ZERO, || panic!("clock failed"))
            }
        }));
        assert!(unwound.is_err());
        assert_eq!(breaker.metrics().abandoned, 1, "owned: {owned}");
        assert_eq!(breaker.state(later), State::HalfOpen);
        let trial = breaker.try_acquire(later).expect("the slot was freed");
        assert_eq!(
            trial
                .record(Outcome::Success, later, Duration::ZERO)
                .map(|t| t.to),
            Some(State::Closed)
        );
    }
}

/// A clock closure that panics when a closed success needs the time (on a
/// rate window, before its claim; without one, the success that ends a
/// failure streak) changes nothing: the clock is read before any state
/// change, and the call counts as abandoned, not as a success.
#[test]
fn a_panicking_clock_on_a_closed_success_changes_nothing() {
    let t0 = Instant::from_secs(10);
    // 67 %: a claim taken but never written (a third call in the window)
    // would keep two failures below it.
    let rate = Config::builder()
        .failure_rate(67)
        .window(4)
        .minimum_calls(2)
        .build()
        .unwrap();
    let streak = Config::builder().consecutive_failures(3).build().unwrap();
    for config in [rate, streak] {
        let breaker = Arc::new(CircuitBreaker::new(config));
        let p = breaker.try_acquire(t0).unwrap();
        assert_eq!(p.record(Outcome::Failure, t0, Duration::ZERO), None);
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let p = CircuitBreaker::try_acquire_owned(Arc::clone(&breaker), t0).unwrap();
            p.record_with(Outcome::Success, Duration::ZERO, || panic!("clock failed"))
        }));
        assert!(unwound.is_err());
        let m = breaker.metrics();
        assert_eq!(
            (m.successes, m.failures, m.abandoned),
            (0, 1, 1),
            "{config:?}"
        );
        // The window still holds the one failure, the streak is still
        // one: one more failure trips the rate (2 calls, 100 %), two more
        // the streak.
        let p = breaker.try_acquire(t0).unwrap();
        let tripped = p.record(Outcome::Failure, t0, Duration::ZERO).is_some();
        assert_eq!(tripped, config.failure_rate().is_some(), "{config:?}");
        if !tripped {
            let p = breaker.try_acquire(t0).unwrap();
            assert!(p.record(Outcome::Failure, t0, Duration::ZERO).is_some());
        }
        assert_eq!(breaker.state(t0), State::Open);
    }
}
