//! loom models of `CircuitBreaker::set_config` racing decisions.
//!
//! Run only as
//!
//! ```text
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p fusebox-loom --release
//! ```
//!
//! Each model's property holds whichever configuration (old or new) a
//! racing decision sees, as the method's docs promise: never two trips,
//! never more trials than the larger limit, never a trial before a kept
//! deadline, and changes never mixed with each other. The docs come before
//! `#![cfg(loom)]` for the reason given in `breaker.rs`.
#![cfg(loom)]

use fusebox::breaker::{CircuitBreaker, Config, Outcome, State};
use fusebox::{Duration, Instant};
use loom::thread;

const PREEMPTIONS: usize = 3;
const T0: Instant = Instant::ZERO;
const ELAPSED: Duration = Duration::from_millis(1);

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

fn config(failures: u32, open_for: Duration, permits: u8) -> Config {
    Config::builder()
        .consecutive_failures(failures)
        .open_for(open_for)
        .half_open_permits(permits)
        .close_after(permits)
        .build()
        .expect("valid config")
}

/// One failure recorded, threshold 3; a change lowers it to 1 while two
/// threads record failures. Old or new, the three failures (or the first
/// one under the new threshold) trip: exactly once, and the breaker ends
/// open.
#[test]
fn r1_lowered_threshold_racing_two_failures_trips_exactly_once() {
    check(|| {
        let b = leak(CircuitBreaker::new(config(3, Duration::from_secs(1), 1)));
        b.try_acquire(T0)
            .unwrap()
            .record(Outcome::Failure, T0, ELAPSED);
        let permits = [b.try_acquire(T0).unwrap(), b.try_acquire(T0).unwrap()];
        let [p1, p2] = permits;
        let h1 = thread::spawn(move || p1.record(Outcome::Failure, T0, ELAPSED));
        let h2 = thread::spawn(move || p2.record(Outcome::Failure, T0, ELAPSED));
        b.set_config(config(1, Duration::from_secs(1), 1)).unwrap();
        let trips = [h1.join().unwrap(), h2.join().unwrap()]
            .iter()
            .flatten()
            .filter(|t| (t.from, t.to) == (State::Closed, State::Open))
            .count();
        assert_eq!(trips, 1);
        assert_eq!(b.state(T0), State::Open);
        assert_eq!(b.metrics().trips, 1);
    });
}

/// Half-open with 2 permits, one trial held; the limit drops to 1 while two
/// threads ask for a trial: never more than 2 trials in flight (the larger
/// limit), and none beyond the held one once the change is seen by both.
#[test]
fn r2_lowered_trial_limit_racing_trials_never_exceeds_the_larger() {
    check(|| {
        let b = leak(CircuitBreaker::new(config(1, Duration::from_secs(1), 2)));
        b.try_acquire(T0)
            .unwrap()
            .record(Outcome::Failure, T0, ELAPSED);
        let t1 = Instant::from_secs(2);
        let held = b.try_acquire(t1).expect("the first trial");
        assert!(held.is_trial());
        // Each thread keeps the trial it gets until joined.
        let h1 = thread::spawn(move || b.try_acquire(t1).ok());
        let h2 = thread::spawn(move || b.try_acquire(t1).ok());
        b.set_config(config(1, Duration::from_secs(1), 1)).unwrap();
        let granted = [h1.join().unwrap(), h2.join().unwrap()];
        // One held, at most one more under the old limit of 2.
        let more = granted.iter().flatten().count();
        assert!(more <= 1, "{more} more trials in flight");
        // After the change, with the held trial still in flight, none.
        assert!(b.try_acquire(t1).is_err());
        drop(granted);
        drop(held);
        // Every trial released: the new limit's one slot is free.
        assert!(b.try_acquire(t1).is_ok());
    });
}

/// Open for 10 s; the open time is cut to 10 ms while a thread asks at
/// T0 + 1 s: the kept deadline refuses it whatever the order, and the
/// rejection's retry-after still points at the old deadline.
#[test]
fn r3_shortened_open_time_never_admits_before_the_kept_deadline() {
    check(|| {
        let b = leak(CircuitBreaker::new(config(1, Duration::from_secs(10), 1)));
        b.try_acquire(T0)
            .unwrap()
            .record(Outcome::Failure, T0, ELAPSED);
        let at = Instant::from_secs(1);
        let h = thread::spawn(move || b.try_acquire(at).map(|_| ()));
        b.set_config(config(1, Duration::from_millis(10), 1))
            .unwrap();
        let rejected = h.join().unwrap().expect_err("still open");
        assert_eq!(rejected.state, State::Open);
        assert!(rejected.retry_after.unwrap() >= Duration::from_secs(9));
        assert!(b.try_acquire(at).is_err());
    });
}

/// Two changes race: the breaker ends with one of the two configurations
/// whole, and each change returns the configuration it replaced.
#[test]
fn r4_racing_changes_are_never_mixed() {
    check(|| {
        let first = config(3, Duration::from_secs(1), 1);
        let a = config(5, Duration::from_secs(2), 2);
        let c = config(7, Duration::from_secs(4), 3);
        let b = leak(CircuitBreaker::new(first));
        let h = thread::spawn(move || b.set_config(a).unwrap());
        let replaced_by_c = b.set_config(c).unwrap();
        let replaced_by_a = h.join().unwrap();
        let now = b.config();
        if now == a {
            assert_eq!((replaced_by_c, replaced_by_a), (first, c));
        } else {
            assert_eq!(now, c);
            assert_eq!((replaced_by_a, replaced_by_c), (first, a));
        }
    });
}
