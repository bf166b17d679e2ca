//! Exhaustive loom models of the breaker's time window (feature
//! `time-window`) and half-open timeout.
//!
//! Run only as
//!
//! ```text
//! LOOM_MAX_PREEMPTIONS=3 RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
//!     cargo test -p fusebox-loom --release --test breaker_time
//! ```
//!
//! (and again with `--cfg fusebox_narrow_words` for the 32-bit buckets).
//! Shared breakers are leaked `&'static`s, as in `breaker.rs`. Each model
//! asserts concrete transitions and counts.
#![cfg(loom)]

use fusebox::breaker::{CircuitBreaker, Config, Outcome, State, Transition};
use fusebox::{Duration, Instant};
use loom::thread;

const PREEMPTIONS: usize = 3;
const MS: u64 = 1_000;
/// 1 ms intervals, two buckets: interval `j` is `[j ms, j + 1 ms)`.
const INTERVAL: u64 = MS;
/// An interval number well away from zero.
const J: u64 = 1_000;

fn check<F>(f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(PREEMPTIONS);
    builder.check(f);
}

fn leak(breaker: CircuitBreaker) -> &'static CircuitBreaker {
    Box::leak(Box::new(breaker))
}

/// `failure_count(n)` over two 1 ms buckets.
fn counting(n: u32) -> CircuitBreaker {
    CircuitBreaker::new(
        Config::builder()
            .time_window(Duration::from_millis(2), 2)
            .failure_count(n)
            .open_for(Duration::from_secs(1))
            .build()
            .expect("valid config"),
    )
}

/// The start of interval `j`.
fn interval(j: u64) -> Instant {
    Instant::from_micros(j * INTERVAL)
}

/// Two closed permits record failures at `a` and `b` concurrently; returns
/// the transitions they caused.
fn race_failures(breaker: &'static CircuitBreaker, a: Instant, b: Instant) -> Vec<Transition> {
    let pa = breaker.try_acquire(a).expect("closed");
    let pb = breaker.try_acquire(b).expect("closed");
    let ta = thread::spawn(move || pa.record(Outcome::Failure, a, Duration::ZERO));
    let tb = thread::spawn(move || pb.record(Outcome::Failure, b, Duration::ZERO));
    [ta.join().unwrap(), tb.join().unwrap()]
        .into_iter()
        .flatten()
        .collect()
}

/// Two failures, one in interval `J` and one in `J + 1` (the second's
/// writer moves the window and empties the slot it reuses while the first
/// may be writing): both count, so `failure_count(2)` trips exactly once.
#[test]
fn tw1_failures_across_an_interval_boundary_trip_once() {
    check(|| {
        let breaker = leak(counting(2));
        let ts = race_failures(breaker, interval(J), interval(J + 1));
        assert_eq!(ts.len(), 1, "{ts:?}");
        assert_eq!((ts[0].from, ts[0].to), (State::Closed, State::Open));
        assert_eq!(breaker.metrics().trips, 1);
    });
}

/// As `tw1`, with a failure already in interval `J − 1`, whose slot the
/// record at `J + 1` reuses: never counted with it. With `failure_count(3)`
/// no interleaving trips (the old failure and the one at `J` are the only
/// pair sharing a window); with `failure_count(2)` exactly one does.
#[test]
fn tw2_an_expiring_bucket_is_reset_not_counted() {
    for (n, trips) in [(3, 0), (2, 1)] {
        check(move || {
            let breaker = leak(counting(n));
            let old = interval(J - 1);
            let p = breaker.try_acquire(old).expect("closed");
            assert_eq!(p.record(Outcome::Failure, old, Duration::ZERO), None);
            let ts = race_failures(breaker, interval(J), interval(J + 1));
            assert_eq!(ts.len(), trips, "failure_count({n}): {ts:?}");
            assert_eq!(breaker.metrics().trips, trips as u64);
        });
    }
}

/// The window has reached interval `J + 1` (one failure there). A record
/// whose clock is 5 intervals old races one that moves the window to
/// `J + 2`: the old clock is counted in the newest interval, whichever it
/// is then, and never erases a newer failure; all three count, so
/// `failure_count(3)` trips exactly once.
#[test]
fn tw3_a_stale_clock_racing_a_window_move_trips_once() {
    check(|| {
        let breaker = leak(counting(3));
        let first = interval(J + 1);
        let p = breaker.try_acquire(first).expect("closed");
        assert_eq!(p.record(Outcome::Failure, first, Duration::ZERO), None);
        let ts = race_failures(breaker, interval(J - 5), interval(J + 2));
        assert_eq!(ts.len(), 1, "{ts:?}");
        assert_eq!(breaker.metrics().trips, 1);
    });
}

const MAX_HALF_OPEN: Duration = Duration::from_secs(5);
/// Half-open is entered at `T1`.
const T1: Instant = Instant::from_secs(3);
/// Past `T1 + MAX_HALF_OPEN`.
const LATE: Instant = Instant::from_secs(9);

/// A half-open breaker (trial permit held) with a 5 s timeout.
fn half_open() -> (&'static CircuitBreaker, fusebox::breaker::Permit<'static>) {
    let breaker = leak(CircuitBreaker::new(
        Config::builder()
            .consecutive_failures(1)
            .open_for(Duration::from_secs(1))
            .max_half_open(MAX_HALF_OPEN)
            .build()
            .expect("valid config"),
    ));
    let t0 = Instant::ZERO;
    let p = breaker.try_acquire(t0).expect("closed");
    assert!(p.record(Outcome::Failure, t0, Duration::ZERO).is_some());
    let trial = breaker.try_acquire(T1).expect("trial");
    assert!(trial.is_trial());
    (breaker, trial)
}

/// A caller finding the timeout passed races the late trial's own record:
/// exactly one HalfOpen → Open transition, one trip.
#[test]
fn ho1_timeout_racing_a_late_trial_record_reopens_once() {
    check(|| {
        let (breaker, trial) = half_open();
        let rec = thread::spawn(move || trial.record(Outcome::Success, LATE, Duration::ZERO));
        let acq = thread::spawn(move || breaker.try_acquire(LATE).map(|_| ()).unwrap_err());
        let t_rec = rec.join().unwrap();
        let rejected = acq.join().unwrap();
        assert_eq!(rejected.state, State::Open);
        let ts: Vec<_> = [t_rec, rejected.transition].into_iter().flatten().collect();
        assert_eq!(ts.len(), 1, "{ts:?}");
        assert_eq!((ts[0].from, ts[0].to), (State::HalfOpen, State::Open));
        assert_eq!(breaker.metrics().trips, 2);
        assert_eq!(breaker.state(LATE), State::Open);
    });
}

/// A trial succeeding in time races a caller that comes after the timeout:
/// either the success closes (and the caller is let through) or the
/// timeout reopens (and the success decides nothing), never both.
#[test]
fn ho2_timeout_racing_a_trial_in_time_exactly_one_decides() {
    check(|| {
        let (breaker, trial) = half_open();
        let in_time = Instant::from_secs(4);
        let rec = thread::spawn(move || trial.record(Outcome::Success, in_time, Duration::ZERO));
        let acq = thread::spawn(move || match breaker.try_acquire(LATE) {
            Ok(p) => {
                assert!(!p.is_trial());
                drop(p);
                None
            }
            Err(r) => Some(r.transition.expect("only a timeout rejects")),
        });
        let closed = rec.join().unwrap();
        let reopened = acq.join().unwrap();
        match (closed, reopened) {
            (Some(c), None) => {
                assert_eq!((c.from, c.to), (State::HalfOpen, State::Closed));
                assert_eq!(breaker.state(LATE), State::Closed);
                assert_eq!(breaker.metrics().trips, 1);
            }
            (None, Some(o)) => {
                assert_eq!((o.from, o.to), (State::HalfOpen, State::Open));
                assert_eq!(breaker.state(LATE), State::Open);
                assert_eq!(breaker.metrics().trips, 2);
            }
            other => panic!("exactly one decision: {other:?}"),
        }
    });
}
