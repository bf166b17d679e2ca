//! Exhaustive loom models of `fusebox::CircuitBreaker`'s lock-free paths.
//!
//! Run only as
//!
//! ```text
//! LOOM_MAX_PREEMPTIONS=3 RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
//!     cargo test -p fusebox-loom --release
//! ```
//!
//! Every model sets its preemption bound in code (see [`check`]), so its cost
//! does not depend on the environment.
//!
//! Shared state is a `Box::leak`ed `&'static` rather than a `loom::sync::Arc`:
//!
//! * a permit borrows its breaker and `loom::thread::spawn` needs `'static`,
//!   so only a `'static` breaker lets a thread hold (or return) a permit that
//!   was issued before it was spawned;
//! * loom models every `Arc` clone/drop as an atomic operation, which adds
//!   interleavings to the 3-thread models (several times slower with them)
//!   without exercising any breaker code.
//!
//! loom's leak detection covers its own `Arc`/`alloc` only; a leaked breaker
//! is a few hundred bytes per explored execution.
//!
//! Each model asserts concrete states, transitions and counts, so it fails if
//! the property it is named after breaks.
//!
//! Without `--cfg loom` this file compiles to an empty crate. The crate docs
//! come *before* `#![cfg(loom)]` on purpose: a false crate-level `cfg` strips
//! every attribute after it, docs included, and the empty crate would then
//! fail `cargo clippy --workspace --all-targets -- -D warnings`
//! (`missing_docs`) in `scripts/test.sh`.
#![cfg(loom)]

use fusebox::breaker::{CircuitBreaker, Config, Outcome, Permit, State, Transition};
use fusebox::{Duration, Instant};
use loom::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use loom::thread;

/// The open time of every model.
const OPEN_FOR: Duration = Duration::from_secs(1);
/// When the setup trips the breaker.
const T0: Instant = Instant::ZERO;
/// Well past `T0 + OPEN_FOR`: a trial is due.
const T1: Instant = Instant::from_secs(3);
/// Well past `T1 + OPEN_FOR`: the next trial is due after a re-trip at `T1`.
const T2: Instant = Instant::from_secs(6);
/// Duration of every recorded call (no slow-call policy is configured).
const ELAPSED: Duration = Duration::from_millis(1);
/// Preemption bound of every model (set in code, not taken from the env).
const PREEMPTIONS: usize = 3;

/// Runs `f` under loom with an explicit preemption bound.
fn check<F>(f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(PREEMPTIONS);
    builder.check(f);
}

/// A breaker that lives for the rest of the process, so that permits can be
/// moved into spawned threads.
fn leak(breaker: CircuitBreaker) -> &'static CircuitBreaker {
    Box::leak(Box::new(breaker))
}

/// Consecutive-failure policy with the given half-open settings.
fn consecutive(failures: u32, permits: u8, close_after: u8) -> Config {
    Config::builder()
        .consecutive_failures(failures)
        .open_for(OPEN_FOR)
        .half_open_permits(permits)
        .close_after(close_after)
        .build()
        .expect("valid config")
}

/// Failure-rate policy over a window of 2 calls, minimum 2 calls.
fn rate(percent: u8) -> Config {
    Config::builder()
        .failure_rate(percent)
        .window(2)
        .minimum_calls(2)
        .open_for(OPEN_FOR)
        .build()
        .expect("valid config")
}

fn from_to(t: Option<Transition>) -> Option<(State, State)> {
    t.map(|t| (t.from, t.to))
}

/// Records one failure at `T0` on a fresh `consecutive_failures(1)` breaker
/// so that it is open until `T0 + OPEN_FOR` (sequential setup).
fn trip_at_t0(breaker: &CircuitBreaker) {
    let permit = breaker.try_acquire(T0).expect("closed");
    assert!(!permit.is_trial());
    let t = permit.record(Outcome::Failure, T0, ELAPSED);
    assert_eq!(
        t,
        Some(Transition {
            from: State::Closed,
            to: State::Open,
            at: T0
        })
    );
    assert_eq!(breaker.state(T0), State::Open);
    assert_eq!(breaker.state(T1), State::HalfOpen);
    assert_eq!(breaker.metrics().trips, 1);
}

/// Asserts that exactly `n` trial permits can be acquired at `now` and the
/// next one is rejected as half-open, then drops them all (leaving the
/// in-flight count as it was).
fn assert_free_trial_slots(breaker: &CircuitBreaker, now: Instant, n: usize) {
    let mut held: Vec<Permit<'_>> = Vec::new();
    for i in 0..n {
        let p = breaker
            .try_acquire(now)
            .unwrap_or_else(|r| panic!("trial {i} of {n} rejected: {r:?}"));
        assert!(p.is_trial());
        assert_eq!(p.transition(), None);
        held.push(p);
    }
    let r = breaker.try_acquire(now).expect_err("one trial too many");
    assert_eq!(r.state, State::HalfOpen);
    assert_eq!(r.retry_after, None);
    drop(held);
}

// ---------------------------------------------------------------------------
// (a) half-open permits
// ---------------------------------------------------------------------------

/// What one racing trial caller got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Attempt {
    /// A trial permit; whether its acquire moved Open → HalfOpen.
    Granted {
        transition: bool,
    },
    Rejected,
}

/// Threads race `try_acquire` past the deadline; while a thread holds a
/// permit it counts itself in a shared in-flight counter, which must never
/// exceed `half_open_permits`. Thread 0 releases by recording a success
/// (`close_after` is high enough that it cannot close), the others by
/// dropping the permit. Afterwards the breaker must still be half-open with
/// every slot free again.
fn half_open_in_flight_bounded(permits: u8, threads: usize) {
    check(move || {
        let breaker = leak(CircuitBreaker::new(consecutive(1, permits, 63)));
        trip_at_t0(breaker);
        // Shared by reference (leaked like the breaker): a loom `Arc` per
        // thread would add its reference-count operations to every
        // interleaving and multiply the cost of this 3-thread model.
        let in_flight: &'static AtomicUsize = Box::leak(Box::new(AtomicUsize::new(0)));

        let handles: Vec<_> = (0..threads)
            .map(|i| {
                thread::spawn(move || match breaker.try_acquire(T1) {
                    Ok(permit) => {
                        assert!(permit.is_trial());
                        let transition = permit.transition();
                        if let Some(t) = transition {
                            assert_eq!((t.from, t.to, t.at), (State::Open, State::HalfOpen, T1));
                        }
                        let now_in = in_flight.fetch_add(1, SeqCst) + 1;
                        assert!(
                            now_in <= usize::from(permits),
                            "{now_in} trials in flight with {permits} permits"
                        );
                        in_flight.fetch_sub(1, SeqCst);
                        if i == 0 {
                            assert_eq!(permit.record(Outcome::Success, T1, ELAPSED), None);
                        } else {
                            drop(permit);
                        }
                        Attempt::Granted {
                            transition: transition.is_some(),
                        }
                    }
                    Err(r) => {
                        assert_eq!(r.state, State::HalfOpen, "{r:?}");
                        assert_eq!(r.retry_after, None);
                        Attempt::Rejected
                    }
                })
            })
            .collect();
        let attempts: Vec<Attempt> = handles.into_iter().map(|h| h.join().unwrap()).collect();

        let granted = attempts
            .iter()
            .filter(|a| matches!(a, Attempt::Granted { .. }))
            .count();
        let transitions = attempts
            .iter()
            .filter(|a| **a == Attempt::Granted { transition: true })
            .count();
        assert_eq!(transitions, 1, "{attempts:?}");
        assert!(granted >= 1);
        assert_eq!(in_flight.load(SeqCst), 0);
        let m = breaker.metrics();
        assert_eq!(m.rejected as usize, threads - granted, "{m:?}");
        let thread0_succeeded = matches!(attempts[0], Attempt::Granted { .. });
        assert_eq!(m.successes, u64::from(thread0_succeeded), "{m:?}");
        assert_eq!(
            m.abandoned as usize,
            granted - usize::from(thread0_succeeded)
        );
        assert_eq!(m.failures, 1);
        assert_eq!(m.trips, 1);
        // Every permit was released: the full set of trials is available.
        assert_eq!(breaker.state(T1), State::HalfOpen);
        assert_free_trial_slots(breaker, T1, usize::from(permits));
    });
}

#[test]
fn a1_half_open_in_flight_bounded_one_permit() {
    half_open_in_flight_bounded(1, 3);
}

#[test]
fn a2_half_open_in_flight_bounded_two_permits() {
    half_open_in_flight_bounded(2, 3);
}

/// Three threads race `try_acquire` past the deadline and *keep* their
/// permits: exactly `half_open_permits` (2) are granted, the third is
/// rejected as half-open, and exactly one grant carries Open → HalfOpen.
#[test]
fn a3_half_open_grants_exactly_permits_while_held() {
    check(|| {
        let breaker = leak(CircuitBreaker::new(consecutive(1, 2, 2)));
        trip_at_t0(breaker);
        let handles: Vec<_> = (0..3)
            .map(|_| thread::spawn(move || breaker.try_acquire(T1)))
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();

        let permits: Vec<&Permit<'_>> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(permits.len(), 2);
        assert!(permits.iter().all(|p| p.is_trial()));
        let transitions: Vec<_> = permits.iter().filter_map(|p| p.transition()).collect();
        assert_eq!(
            transitions,
            [Transition {
                from: State::Open,
                to: State::HalfOpen,
                at: T1
            }]
        );
        let rejected: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
        assert_eq!(rejected.len(), 1);
        assert_eq!(
            (rejected[0].state, rejected[0].retry_after),
            (State::HalfOpen, None)
        );
        assert_eq!(breaker.metrics().rejected, 1);
        // Still full while held...
        assert_free_trial_slots(breaker, T1, 0);
        drop(results);
        // ...and both slots are back once they are dropped.
        assert_free_trial_slots(breaker, T1, 2);
        assert_eq!(breaker.metrics().abandoned, 2 + 2);
    });
}

// ---------------------------------------------------------------------------
// (b) exactly-once transitions
// ---------------------------------------------------------------------------

/// Three threads call `try_acquire` past the deadline (enough permits for
/// all) and keep their permits: all get a trial, exactly one of them carries
/// Open → HalfOpen, and the half-open period is then full.
#[test]
fn b1_open_to_half_open_exactly_once() {
    check(|| {
        let breaker = leak(CircuitBreaker::new(consecutive(1, 3, 3)));
        trip_at_t0(breaker);
        let handles: Vec<_> = (0..3)
            .map(|_| {
                thread::spawn(move || {
                    let permit = breaker.try_acquire(T1).expect("3 permits for 3 callers");
                    assert!(permit.is_trial());
                    permit
                })
            })
            .collect();
        let permits: Vec<Permit<'_>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let transitions: Vec<_> = permits.iter().filter_map(Permit::transition).collect();
        assert_eq!(
            transitions,
            [Transition {
                from: State::Open,
                to: State::HalfOpen,
                at: T1
            }]
        );
        assert_eq!(breaker.state(T1), State::HalfOpen);
        assert_free_trial_slots(breaker, T1, 0);
        drop(permits);
        let m = breaker.metrics();
        assert_eq!((m.rejected, m.abandoned, m.trips), (1, 3, 1));
        assert_free_trial_slots(breaker, T1, 3);
    });
}

/// permits = 2, close_after = 2: two threads each holding a trial permit
/// record Success concurrently. Exactly one record closes the breaker.
#[test]
fn b2_half_open_to_closed_exactly_once() {
    check(|| {
        let breaker = leak(CircuitBreaker::new(consecutive(1, 2, 2)));
        trip_at_t0(breaker);
        let p1 = breaker.try_acquire(T1).expect("trial 1");
        let p2 = breaker.try_acquire(T1).expect("trial 2");
        assert!(p1.transition().is_some() && p2.transition().is_none());
        let handles: Vec<_> = [p1, p2]
            .into_iter()
            .map(|p| thread::spawn(move || p.record(Outcome::Success, T1, ELAPSED)))
            .collect();
        let transitions: Vec<_> = handles
            .into_iter()
            .filter_map(|h| h.join().unwrap())
            .collect();
        assert_eq!(
            transitions,
            [Transition {
                from: State::HalfOpen,
                to: State::Closed,
                at: T1
            }]
        );
        assert_eq!(breaker.state(T1), State::Closed);
        let m = breaker.metrics();
        assert_eq!(
            (m.successes, m.failures, m.trips, m.abandoned),
            (2, 1, 1, 0)
        );
        // The new closed generation works: one failure trips it again.
        let p = breaker.try_acquire(T1).expect("closed");
        assert!(!p.is_trial());
        assert_eq!(
            from_to(p.record(Outcome::Failure, T1, ELAPSED)),
            Some((State::Closed, State::Open))
        );
    });
}

/// permits = 2, close_after = 2: one trial fails while the other succeeds.
/// Whatever the order, exactly one transition happens, HalfOpen → Open, and
/// the breaker ends open.
#[test]
fn b3_half_open_failure_and_success_one_transition() {
    check(|| {
        let breaker = leak(CircuitBreaker::new(consecutive(1, 2, 2)));
        trip_at_t0(breaker);
        let p1 = breaker.try_acquire(T1).expect("trial 1");
        let p2 = breaker.try_acquire(T1).expect("trial 2");
        let ha = thread::spawn(move || p1.record(Outcome::Failure, T1, ELAPSED));
        let hb = thread::spawn(move || p2.record(Outcome::Success, T1, ELAPSED));
        let (ta, tb) = (ha.join().unwrap(), hb.join().unwrap());
        assert_eq!(from_to(ta), Some((State::HalfOpen, State::Open)));
        assert_eq!(tb, None);
        assert_eq!(breaker.state(T1), State::Open);
        let m = breaker.metrics();
        assert_eq!((m.successes, m.failures, m.trips), (1, 2, 2));
    });
}

/// consecutive_failures(2): two threads holding closed permits record
/// Failure concurrently. Exactly one record returns Closed → Open.
#[test]
fn b4_closed_to_open_exactly_once() {
    check(|| {
        let breaker = leak(CircuitBreaker::new(consecutive(2, 1, 1)));
        let p1 = breaker.try_acquire(T0).expect("closed");
        let p2 = breaker.try_acquire(T0).expect("closed");
        let handles: Vec<_> = [p1, p2]
            .into_iter()
            .map(|p| thread::spawn(move || p.record(Outcome::Failure, T0, ELAPSED)))
            .collect();
        let transitions: Vec<_> = handles
            .into_iter()
            .filter_map(|h| h.join().unwrap())
            .collect();
        assert_eq!(
            transitions,
            [Transition {
                from: State::Closed,
                to: State::Open,
                at: T0
            }]
        );
        let m = breaker.metrics();
        assert_eq!((m.trips, m.failures), (1, 2));
        assert_eq!(breaker.state(T0), State::Open);
        assert_eq!(breaker.state(T1), State::HalfOpen);
    });
}

// ---------------------------------------------------------------------------
// (c) stale records
// ---------------------------------------------------------------------------

/// consecutive_failures(1). A holds a closed permit and records Success
/// while B acquires and records a Failure that trips the breaker. A's
/// success (before the trip: a no-op; after it: stale) must not close or
/// otherwise change the open breaker.
#[test]
fn c1_stale_closed_success_after_trip() {
    check(|| {
        let breaker = leak(CircuitBreaker::new(consecutive(1, 1, 1)));
        let pa = breaker.try_acquire(T0).expect("closed");
        let ha = thread::spawn(move || pa.record(Outcome::Success, T0, ELAPSED));
        let hb = thread::spawn(move || {
            let p = breaker.try_acquire(T0).expect("closed until B trips it");
            p.record(Outcome::Failure, T0, ELAPSED)
        });
        assert_eq!(ha.join().unwrap(), None);
        assert_eq!(
            from_to(hb.join().unwrap()),
            Some((State::Closed, State::Open))
        );
        assert_eq!(breaker.state(T0), State::Open);
        let m = breaker.metrics();
        assert_eq!((m.successes, m.failures, m.trips), (1, 1, 1));
        // Exactly the normal open period: a trial is due at T1.
        let r = breaker.try_acquire(T0).expect_err("open");
        assert_eq!(r.state, State::Open);
        assert!(r.retry_after.unwrap() >= OPEN_FOR);
    });
}

/// consecutive_failures(2). A holds a closed permit (generation 0) and
/// records Failure; B force-opens, force-closes (a new closed generation)
/// and records one failure of its own. The new generation has seen one
/// failure only: the breaker must end closed, never tripped.
#[test]
fn c2_stale_closed_failure_after_force_open_close() {
    check(|| {
        let breaker = leak(CircuitBreaker::new(consecutive(2, 1, 1)));
        let pa = breaker.try_acquire(T0).expect("closed");
        let ha = thread::spawn(move || pa.record(Outcome::Failure, T0, ELAPSED));
        let hb = thread::spawn(move || {
            assert_eq!(
                from_to(breaker.force_open(T0)),
                Some((State::Closed, State::ForcedOpen))
            );
            let r = breaker.try_acquire(T0).expect_err("forced open");
            assert_eq!((r.state, r.retry_after), (State::ForcedOpen, None));
            assert_eq!(
                from_to(breaker.force_close(T0)),
                Some((State::ForcedOpen, State::Closed))
            );
            let p = breaker.try_acquire(T0).expect("closed again");
            p.record(Outcome::Failure, T0, ELAPSED)
        });
        assert_eq!(ha.join().unwrap(), None);
        assert_eq!(hb.join().unwrap(), None);
        assert_eq!(breaker.state(T0), State::Closed);
        let m = breaker.metrics();
        assert_eq!((m.failures, m.trips, m.rejected), (2, 0, 1));
    });
}

/// consecutive_failures(2), one failure already counted in generation 0.
/// A holds a generation-0 permit and records Failure (which trips if it
/// lands before the reset); B resets and records one failure. After the
/// reset only B's failure counts: the breaker must end closed.
#[test]
fn c3_stale_closed_failure_after_reset() {
    check(|| {
        let breaker = leak(CircuitBreaker::new(consecutive(2, 1, 1)));
        let p0 = breaker.try_acquire(T0).expect("closed");
        assert_eq!(p0.record(Outcome::Failure, T0, ELAPSED), None);
        let pa = breaker.try_acquire(T0).expect("closed");
        let ha = thread::spawn(move || pa.record(Outcome::Failure, T0, ELAPSED));
        let hb = thread::spawn(move || {
            breaker.reset(T0);
            let p = breaker.try_acquire(T0).expect("closed after reset");
            p.record(Outcome::Failure, T0, ELAPSED)
        });
        let ta = ha.join().unwrap();
        assert!(matches!(
            from_to(ta),
            None | Some((State::Closed, State::Open))
        ));
        assert_eq!(hb.join().unwrap(), None);
        assert_eq!(breaker.state(T0), State::Closed);
        // One more failure in the reset generation trips it.
        let p = breaker.try_acquire(T0).expect("closed");
        assert_eq!(
            from_to(p.record(Outcome::Failure, T0, ELAPSED)),
            Some((State::Closed, State::Open))
        );
    });
}

/// failure_rate(50), window(2), minimum_calls(2). A holds a generation-0
/// permit and records Failure; B force-opens and force-closes (a new closed
/// generation) and then records two failures. The new generation's window
/// holds two failures of two calls: B's second record must trip the
/// breaker, whatever A's stale record did (A alone never trips: one call is
/// below minimum_calls).
///
/// Regression: this model found the following race in the first window
/// design (since fixed: claims moved into the state word, slots tagged by
/// generation, late stale writes refused): A loads the state word (closed,
/// generation 0: its permit still owns it) and is preempted; B force-opens,
/// force-closes (generation 2, cursor restarted to (2, 0)) and records its
/// first failure (cursor (2, 1)); A resumes in `Window::record`, finds the
/// foreign tag 2 and "restarts" the ring for its own, stale generation
/// (cursor (0, 1)); B's second failure then finds the foreign tag 0 and
/// restarts the ring again, so its tally is 1 call < minimum_calls and the
/// breaker stays closed. A's record is then rejected as stale by the state
/// word, too late: it already wiped the new generation's window.
///
/// Caveat for whoever fixes this: `Window::restart` (called by
/// `force_close`) resets the cursor with a plain `store`. loom 0.7 orders a
/// plain store and a concurrent compare-and-swap on the same atomic only
/// partially, so it can also produce an execution that is impossible in the
/// C++/Rust memory model (B's load after its own restart store reading A's
/// earlier CAS) and fail this model for that reason alone. With `restart`
/// written as a `swap` (same semantics, an RMW loom orders totally) every
/// counterexample loom reports is a real interleaving such as the one above.
#[test]
fn c4_stale_closed_record_does_not_clobber_new_window() {
    check(|| {
        let breaker = leak(CircuitBreaker::new(rate(50)));
        let pa = breaker.try_acquire(T0).expect("closed");
        let ha = thread::spawn(move || pa.record(Outcome::Failure, T0, ELAPSED));
        let hb = thread::spawn(move || {
            assert_eq!(
                from_to(breaker.force_open(T0)),
                Some((State::Closed, State::ForcedOpen))
            );
            assert_eq!(
                from_to(breaker.force_close(T0)),
                Some((State::ForcedOpen, State::Closed))
            );
            let p = breaker.try_acquire(T0).expect("closed again");
            let first = p.record(Outcome::Failure, T0, ELAPSED);
            let p = breaker
                .try_acquire(T0)
                .expect("one failure of one call: closed");
            let second = p.record(Outcome::Failure, T0, ELAPSED);
            (first, second)
        });
        assert_eq!(ha.join().unwrap(), None);
        let (first, second) = hb.join().unwrap();
        assert_eq!(first, None);
        assert_eq!(
            from_to(second),
            Some((State::Closed, State::Open)),
            "two failures of two calls in the new generation did not trip"
        );
        assert_eq!(breaker.state(T0), State::Open);
        assert_eq!(breaker.metrics().trips, 1);
    });
}

/// consecutive_failures(1), `permits` trials. A holds a trial permit of the
/// first half-open period (issued at T1) and either drops it or records a
/// Failure with it. B force-closes, trips the breaker again from closed at
/// T1, and at T2 re-enters half-open. B must then get exactly `permits`
/// trials of the *new* half-open period: A's stale permit must neither free
/// one of its slots nor re-open it.
fn stale_trial(permits: u8, a_records_failure: bool) {
    check(move || {
        let breaker = leak(CircuitBreaker::new(consecutive(1, permits, permits)));
        trip_at_t0(breaker);
        let pa = breaker.try_acquire(T1).expect("first trial");
        assert!(pa.transition().is_some());
        let ha = thread::spawn(move || {
            if a_records_failure {
                let t = pa.record(Outcome::Failure, T1, ELAPSED);
                // Re-opens only if it lands before B's force_close.
                assert!(matches!(
                    from_to(t),
                    None | Some((State::HalfOpen, State::Open))
                ));
            } else {
                drop(pa);
            }
        });
        let hb = thread::spawn(move || {
            let t = breaker.force_close(T1).expect("not closed");
            assert_eq!(t.to, State::Closed);
            let p = breaker.try_acquire(T1).expect("closed");
            assert!(!p.is_trial());
            assert_eq!(
                from_to(p.record(Outcome::Failure, T1, ELAPSED)),
                Some((State::Closed, State::Open))
            );
            assert_eq!(breaker.try_acquire(T1).unwrap_err().state, State::Open);
            // Second half-open period: exactly `permits` trials.
            let mut held = Vec::new();
            for i in 0..permits {
                let p = breaker.try_acquire(T2).expect("new trial");
                assert!(p.is_trial());
                assert_eq!(p.transition().is_some(), i == 0);
                held.push(p);
            }
            let r = breaker
                .try_acquire(T2)
                .expect_err("a stale permit freed a slot of the new half-open period");
            assert_eq!(r.state, State::HalfOpen);
            // Releasing one frees exactly one.
            drop(held.pop());
            let again = breaker.try_acquire(T2).expect("freed slot");
            assert!(again.is_trial());
            assert_eq!(breaker.try_acquire(T2).unwrap_err().state, State::HalfOpen);
            drop(again);
            drop(held);
        });
        ha.join().unwrap();
        hb.join().unwrap();
        assert_eq!(breaker.state(T2), State::HalfOpen);
        assert_free_trial_slots(breaker, T2, usize::from(permits));
    });
}

#[test]
fn c5_stale_trial_drop_does_not_free_new_slot_one_permit() {
    stale_trial(1, false);
}

#[test]
fn c6_stale_trial_drop_does_not_free_new_slot_two_permits() {
    stale_trial(2, false);
}

#[test]
fn c7_stale_trial_failure_does_not_reopen_new_half_open() {
    stale_trial(1, true);
}

/// permits = 2, close_after = 2. A holds a trial and records Success while
/// B force-opens and force-closes the breaker, trips it again and re-enters
/// half-open at T2 holding one new trial. A's success must not count
/// towards closing the new period: B's single success must not close it
/// (close_after = 2), and one more trial slot must be free.
#[test]
fn c8_stale_trial_success_does_not_count_in_new_half_open() {
    check(|| {
        let breaker = leak(CircuitBreaker::new(consecutive(1, 2, 2)));
        trip_at_t0(breaker);
        let pa = breaker.try_acquire(T1).expect("first trial");
        let ha = thread::spawn(move || pa.record(Outcome::Success, T1, ELAPSED));
        let hb = thread::spawn(move || {
            breaker.force_open(T1).expect("not forced open yet");
            breaker.force_close(T1).expect("forced open");
            let p = breaker.try_acquire(T1).expect("closed");
            assert_eq!(
                from_to(p.record(Outcome::Failure, T1, ELAPSED)),
                Some((State::Closed, State::Open))
            );
            let p = breaker.try_acquire(T2).expect("new trial");
            assert!(p.transition().is_some());
            p.record(Outcome::Success, T2, ELAPSED)
        });
        assert_eq!(ha.join().unwrap(), None);
        assert_eq!(
            hb.join().unwrap(),
            None,
            "one success closed a close_after(2) period"
        );
        assert_eq!(breaker.state(T2), State::HalfOpen);
        assert_free_trial_slots(breaker, T2, 2);
    });
}

// ---------------------------------------------------------------------------
// (d) the failure-rate window under concurrency
// ---------------------------------------------------------------------------

/// Two threads holding closed permits record Failure concurrently on a
/// `window(2), minimum_calls(2)` breaker; returns their transitions.
fn two_concurrent_failures(breaker: &'static CircuitBreaker) -> Vec<Transition> {
    let p1 = breaker.try_acquire(T0).expect("closed");
    let p2 = breaker.try_acquire(T0).expect("closed");
    let handles: Vec<_> = [p1, p2]
        .into_iter()
        .map(|p| thread::spawn(move || p.record(Outcome::Failure, T0, ELAPSED)))
        .collect();
    handles
        .into_iter()
        .filter_map(|h| h.join().unwrap())
        .collect()
}

/// failure_rate(50), window(2), minimum_calls(2): two concurrent failures
/// trip the breaker exactly once.
#[test]
fn d1_rate_50_two_concurrent_failures_trip_once() {
    check(|| {
        let breaker = leak(CircuitBreaker::new(rate(50)));
        let transitions = two_concurrent_failures(breaker);
        assert_eq!(
            transitions,
            [Transition {
                from: State::Closed,
                to: State::Open,
                at: T0
            }]
        );
        assert_eq!(breaker.metrics().trips, 1);
        assert_eq!(breaker.state(T0), State::Open);
    });
}

/// failure_rate(100), window(2), minimum_calls(2): both calls of the window
/// failed (100 %), so the breaker must trip exactly once, as it does when the
/// two failures are recorded one after the other.
#[test]
fn d2_rate_100_two_concurrent_failures_trip_once() {
    check(|| {
        let breaker = leak(CircuitBreaker::new(rate(100)));
        let transitions = two_concurrent_failures(breaker);
        assert_eq!(
            from_to(transitions.first().copied()),
            Some((State::Closed, State::Open)),
            "two failures of two calls (100 %) did not trip: {transitions:?}"
        );
        assert_eq!(transitions.len(), 1);
        assert_eq!(breaker.metrics().trips, 1);
        assert_eq!(breaker.state(T0), State::Open);
    });
}

/// failure_rate(100), window(2), minimum_calls(2). Setup: two failures trip
/// the breaker (its window bitmaps now hold two failure bits), a trial
/// success closes it (new generation, window logically empty). Then A
/// records Success and B records Failure concurrently: one failure of two
/// calls is 50 %, so the breaker must stay closed. Outcomes from before the
/// close must never count.
#[test]
fn d3_rate_window_ignores_previous_generation() {
    check(|| {
        let breaker = leak(CircuitBreaker::new(rate(100)));
        for expected in [None, Some((State::Closed, State::Open))] {
            let p = breaker.try_acquire(T0).expect("closed");
            assert_eq!(from_to(p.record(Outcome::Failure, T0, ELAPSED)), expected);
        }
        let trial = breaker.try_acquire(T1).expect("trial");
        assert_eq!(
            from_to(trial.record(Outcome::Success, T1, ELAPSED)),
            Some((State::HalfOpen, State::Closed))
        );
        let pa = breaker.try_acquire(T1).expect("closed");
        let pb = breaker.try_acquire(T1).expect("closed");
        let ha = thread::spawn(move || pa.record(Outcome::Success, T1, ELAPSED));
        let hb = thread::spawn(move || pb.record(Outcome::Failure, T1, ELAPSED));
        assert_eq!(ha.join().unwrap(), None);
        assert_eq!(
            hb.join().unwrap(),
            None,
            "1 failure of 2 calls tripped a 100 % breaker"
        );
        assert_eq!(breaker.state(T1), State::Closed);
        assert_eq!(breaker.metrics().trips, 1);
    });
}

/// failure_rate(50), window(2), minimum_calls(2), force-opened in the setup.
/// B force-closes while C makes two calls and records both as failures.
/// Every failure C records with a closed permit belongs to the new closed
/// generation (C could only get the permit after B's close was installed),
/// so when C recorded two of them the breaker must have tripped exactly
/// once; with fewer it must still be closed.
#[test]
fn d4_new_generation_records_survive_the_window_restart() {
    check(|| {
        let breaker = leak(CircuitBreaker::new(rate(50)));
        assert!(breaker.force_open(T0).is_some());
        let hb = thread::spawn(move || {
            let t = breaker.force_close(T0).expect("forced open");
            assert_eq!((t.from, t.to), (State::ForcedOpen, State::Closed));
        });
        let hc = thread::spawn(move || {
            let mut recorded = 0;
            let mut transitions = Vec::new();
            for _ in 0..2 {
                match breaker.try_acquire(T0) {
                    Ok(p) => {
                        assert!(!p.is_trial());
                        recorded += 1;
                        transitions.extend(p.record(Outcome::Failure, T0, ELAPSED));
                    }
                    Err(r) => assert_eq!(r.state, State::ForcedOpen, "{r:?}"),
                }
            }
            (recorded, transitions)
        });
        hb.join().unwrap();
        let (recorded, transitions) = hc.join().unwrap();
        if recorded == 2 {
            assert_eq!(
                transitions
                    .iter()
                    .map(|t| (t.from, t.to))
                    .collect::<Vec<_>>(),
                [(State::Closed, State::Open)],
                "two failures of two calls in the new closed generation did not trip"
            );
            assert_eq!(breaker.state(T0), State::Open);
            assert_eq!(breaker.metrics().trips, 1);
        } else {
            assert!(transitions.is_empty());
            assert_eq!(breaker.state(T0), State::Closed);
        }
    });
}

// ---------------------------------------------------------------------------
// (e) long histories, stale clocks and successes that complete the window
// ---------------------------------------------------------------------------

/// A generation just below a multiple of 2^14 (the state word's 14 bits),
/// with the epoch word's own wrap (2^32 on the narrow layout) near too.
const WRAPPING_GENERATION: u64 = (1 << 32) - 2;

/// After the generation has wrapped the state word's bits: A holds a closed
/// permit and records a failure while B forces the breaker open and closed
/// again (two new generations, the second of which has wrapped). A's
/// failure must never land in B's new window: the new generation's first
/// two failures trip it exactly as a fresh breaker's do, and A's record
/// decides nothing once B's close is installed.
#[test]
fn e1_record_racing_a_transition_after_the_generation_wrapped() {
    check(|| {
        let breaker = leak(CircuitBreaker::with_generation(
            rate(100),
            WRAPPING_GENERATION,
        ));
        let held = breaker.try_acquire(T0).expect("closed");
        let ha = thread::spawn(move || held.record(Outcome::Failure, T0, ELAPSED));
        let hb = thread::spawn(move || {
            breaker.force_open(T0).expect("was closed");
            breaker.force_close(T0).expect("was forced open");
        });
        assert_eq!(ha.join().unwrap(), None, "one failure of one call");
        hb.join().unwrap();
        // The new window holds nothing of A's: one success and one failure
        // are 50 %, which must not trip a 100 % breaker...
        let s = breaker.try_acquire(T0).expect("closed");
        assert_eq!(s.record(Outcome::Success, T0, ELAPSED), None);
        let f = breaker.try_acquire(T0).expect("closed");
        assert_eq!(f.record(Outcome::Failure, T0, ELAPSED), None);
        // ...and two more failures are 100 %: a trip.
        let f = breaker.try_acquire(T0).expect("closed");
        assert_eq!(
            from_to(f.record(Outcome::Failure, T0, ELAPSED)),
            Some((State::Closed, State::Open))
        );
    });
}

/// A trips the breaker with a `now` later than B's: B read its clock
/// first, then called. B must either be let through as a closed call
/// (before the trip) or be rejected as open: a stale `now` never reads the
/// fresh trip as expired.
#[test]
fn e2_a_stale_now_never_fails_open_against_a_later_trip() {
    check(|| {
        let breaker = leak(CircuitBreaker::new(consecutive(1, 1, 1)));
        let later = T0 + Duration::from_millis(700);
        let p = breaker.try_acquire(later).expect("closed");
        let ha = thread::spawn(move || p.record(Outcome::Failure, later, ELAPSED));
        let hb = thread::spawn(move || match breaker.try_acquire(T0) {
            Ok(p) => {
                assert!(!p.is_trial(), "a stale clock got a half-open trial");
                drop(p);
            }
            Err(r) => {
                assert_eq!(r.state, State::Open);
                assert!(r.retry_after.unwrap() >= OPEN_FOR + Duration::from_millis(700));
            }
        });
        assert!(ha.join().unwrap().is_some());
        hb.join().unwrap();
        assert_eq!(breaker.state(T0), State::Open);
        assert_eq!(breaker.state(later), State::Open);
    });
}

/// failure_rate(50), window(4), minimum_calls(4), with two failures
/// recorded: A records a failure and B a success concurrently. Whatever
/// the order, the window then holds 3 failures of 4 calls (75 %) and must
/// trip exactly once, whether the success or the failure completes it.
#[test]
fn e3_a_success_completing_minimum_calls_races_a_failure() {
    check(|| {
        let breaker = leak(CircuitBreaker::new(
            Config::builder()
                .failure_rate(50)
                .window(4)
                .minimum_calls(4)
                .open_for(OPEN_FOR)
                .build()
                .unwrap(),
        ));
        for _ in 0..2 {
            let p = breaker.try_acquire(T0).expect("closed");
            assert_eq!(p.record(Outcome::Failure, T0, ELAPSED), None);
        }
        let pa = breaker.try_acquire(T0).expect("closed");
        let pb = breaker.try_acquire(T0).expect("closed");
        let ha = thread::spawn(move || pa.record(Outcome::Failure, T0, ELAPSED));
        let hb = thread::spawn(move || pb.record(Outcome::Success, T0, ELAPSED));
        let trips: Vec<_> = [ha.join().unwrap(), hb.join().unwrap()]
            .into_iter()
            .flatten()
            .collect();
        assert_eq!(trips.len(), 1, "{trips:?}");
        assert_eq!(breaker.state(T0), State::Open);
        assert_eq!(breaker.metrics().trips, 1);
    });
}

/// failure_rate(50), window(2), minimum_calls(2), the window full of two
/// successes: A records a failure while B records a success. The window
/// then holds one failure of two calls (50 %) in either order and must
/// trip, even when A tallies before B's slot write lands (a full window's
/// fast success does not tally itself).
#[test]
fn e4_a_failure_trips_past_a_success_in_flight() {
    check(|| {
        let breaker = leak(CircuitBreaker::new(rate(50)));
        for _ in 0..2 {
            let p = breaker.try_acquire(T0).expect("closed");
            assert_eq!(p.record(Outcome::Success, T0, ELAPSED), None);
        }
        let pa = breaker.try_acquire(T0).expect("closed");
        let pb = breaker.try_acquire(T0).expect("closed");
        let ha = thread::spawn(move || pa.record(Outcome::Failure, T0, ELAPSED));
        let hb = thread::spawn(move || pb.record(Outcome::Success, T0, ELAPSED));
        let trips: Vec<_> = [ha.join().unwrap(), hb.join().unwrap()]
            .into_iter()
            .flatten()
            .collect();
        assert_eq!(trips.len(), 1, "{trips:?}");
        assert_eq!(breaker.state(T0), State::Open);
    });
}

// ---------------------------------------------------------------------------
// (f) owned permits and ignored outcomes
// ---------------------------------------------------------------------------

/// Two threads race for the single half-open trial with owned permits
/// (`OwnedPermit<&'static CircuitBreaker>`, the form a `'static` future
/// holds); the winner records `Ignored` or drops its permit. Exactly one
/// trial is granted at a time, the transition is made once, and afterwards
/// the slot is free again with the breaker still half-open (undecided).
#[test]
fn f1_owned_trials_bounded_and_released_without_deciding() {
    check(|| {
        let breaker = leak(CircuitBreaker::new(consecutive(1, 1, 1)));
        trip_at_t0(breaker);
        let handles: Vec<_> = (0..2)
            .map(|i| {
                thread::spawn(
                    move || match CircuitBreaker::try_acquire_owned(breaker, T1) {
                        Ok(permit) => {
                            assert!(permit.is_trial());
                            let made = permit.transition().is_some();
                            if i == 0 {
                                assert_eq!(permit.record(Outcome::Ignored, T1, ELAPSED), None);
                            } else {
                                drop(permit);
                            }
                            Some(made)
                        }
                        Err(r) => {
                            assert_eq!(r.state, State::HalfOpen);
                            None
                        }
                    },
                )
            })
            .collect();
        let granted: Vec<bool> = handles
            .into_iter()
            .filter_map(|h| h.join().unwrap())
            .collect();
        assert!(!granted.is_empty());
        assert_eq!(granted.iter().filter(|made| **made).count(), 1);
        assert_eq!(breaker.state(T1), State::HalfOpen);
        let m = breaker.metrics();
        assert_eq!(m.ignored + m.abandoned, granted.len() as u64);
        assert_free_trial_slots(breaker, T1, 1);
    });
}

// ---------------------------------------------------------------------------
// (g) fleet merge
// ---------------------------------------------------------------------------

use fusebox::breaker::{Decision, MergeError};

fn decision(version: u64, state: State) -> Decision {
    Decision {
        version,
        state,
        open_remaining: (state == State::Open).then_some(OPEN_FOR),
        reopen_streak: 0,
    }
}

/// Two merges race: version 1 (open) and version 2 (closed). Whatever the
/// interleaving (one may find the other in progress and get `Busy`), the
/// breaker ends in the state of the newest version it merged, and an older
/// version is never applied after a newer one.
#[test]
fn g1_racing_merges_apply_in_version_order() {
    check(|| {
        let breaker = leak(CircuitBreaker::new(consecutive(3, 1, 1)));
        let h1 = thread::spawn(move || breaker.merge(&decision(1, State::Open), T0));
        let h2 = thread::spawn(move || breaker.merge(&decision(2, State::Closed), T0));
        let (r1, r2) = (h1.join().unwrap(), h2.join().unwrap());
        let merged = breaker.merged_version();
        let expected = if merged == 2 {
            State::Closed
        } else {
            State::Open
        };
        assert_eq!(breaker.state(T0), expected, "{r1:?} {r2:?}");
        match merged {
            2 => assert!(r2.is_ok()),
            1 => assert_eq!(r2, Err(MergeError::Busy)),
            _ => panic!("nothing merged: {r1:?} {r2:?}"),
        }
        if r1.is_ok() && r2.is_ok() {
            assert_eq!(merged, 2);
        }
    });
}

/// A merged open decision races a local trip (a closed permit recording a
/// failure under `consecutive_failures(1)`): the breaker ends open and
/// exactly one of the two reports the Closed -> Open transition.
#[test]
fn g2_a_merge_racing_a_local_trip_opens_once() {
    check(|| {
        let breaker = leak(CircuitBreaker::new(consecutive(1, 1, 1)));
        let p = breaker.try_acquire(T0).expect("closed");
        let ha = thread::spawn(move || breaker.merge(&decision(1, State::Open), T0).unwrap());
        let hb = thread::spawn(move || p.record(Outcome::Failure, T0, ELAPSED));
        let transitions: Vec<_> = [ha.join().unwrap(), hb.join().unwrap()]
            .into_iter()
            .flatten()
            .collect();
        assert_eq!(
            transitions
                .iter()
                .map(|t| (t.from, t.to))
                .collect::<Vec<_>>(),
            [(State::Closed, State::Open)]
        );
        assert_eq!(breaker.state(T0), State::Open);
    });
}

/// A merged open decision with less time left (0.5 s) than a local trip's
/// (1 s) races that trip, and a reader: the reader never sees half-open,
/// and the breaker ends open until the merged deadline, half-open after
/// it, and still half-open at the instants where the word's 26 deadline
/// bits alone read open again (just before 2^26 ticks, ≈ 19 h 5 min, after
/// it): the full deadline is the installed word's whichever wrote last.
#[test]
fn g3_a_shorter_merge_racing_a_local_trip_keeps_its_full_deadline() {
    check(|| {
        let breaker = leak(CircuitBreaker::new(consecutive(1, 1, 1)));
        let p = breaker.try_acquire(T0).expect("closed");
        let short = Decision {
            version: 1,
            state: State::Open,
            open_remaining: Some(Duration::from_millis(500)),
            reopen_streak: 0,
        };
        let ha = thread::spawn(move || breaker.merge(&short, T0).unwrap());
        let hb = thread::spawn(move || p.record(Outcome::Failure, T0, ELAPSED));
        let hc = thread::spawn(move || breaker.state(T0 + Duration::from_millis(400)));
        let _ = (ha.join().unwrap(), hb.join().unwrap());
        assert_ne!(hc.join().unwrap(), State::HalfOpen);
        let deadline = T0 + Duration::from_micros(500_000_u64.div_ceil(1_024) * 1_024);
        let wrap = Duration::from_micros((1 << 26) * 1_024);
        assert_eq!(breaker.state(deadline - ELAPSED), State::Open);
        assert_eq!(breaker.state(deadline), State::HalfOpen);
        assert_eq!(
            breaker.state(deadline + wrap - Duration::from_millis(300)),
            State::HalfOpen
        );
    });
}

// ---------------------------------------------------------------------------
// (h) trip over an opening whose time ran out unseen
// ---------------------------------------------------------------------------

/// `trip` at `now` races `try_acquire` at `now` on a breaker whose opening
/// (at `T0`) ran out with no call since: either the caller found it
/// half-open first (a trial, then the trip reopens it from half-open:
/// reported and counted) or the trip reopened it first (no transition, no
/// trip counted; the caller refused). Either way it ends open until
/// `now + OPEN_FOR`, then half-open.
fn trip_races_acquire_after_unseen_expiry(now: Instant) {
    check(move || {
        let breaker = leak(CircuitBreaker::new(consecutive(1, 1, 1)));
        trip_at_t0(breaker);
        assert_eq!(breaker.state(now), State::HalfOpen);
        let ha = thread::spawn(move || from_to(breaker.trip(now)));
        let hb = thread::spawn(move || match breaker.try_acquire(now) {
            Ok(p) => {
                let t = from_to(p.transition());
                drop(p);
                (true, t)
            }
            Err(rejected) => {
                // Refused as open. (Its `retry_after` is not checked: a
                // caller that loaded the expired word before the trip
                // stored its new full deadline, and extends the word's 26
                // bits against that, may read the old deadline a whole
                // wrap later: 1.5 s or 0.5 s left in `h2` and `h3`.)
                assert_eq!(rejected.state, State::Open);
                assert!(rejected.retry_after.is_some());
                (false, None)
            }
        });
        let tripped = ha.join().unwrap();
        let (trial, opened) = hb.join().unwrap();
        if trial {
            assert_eq!(opened, Some((State::Open, State::HalfOpen)));
            assert_eq!(tripped, Some((State::HalfOpen, State::Open)));
            assert_eq!(breaker.metrics().trips, 2);
        } else {
            assert_eq!(tripped, None);
            assert_eq!(breaker.metrics().trips, 1);
        }
        let tick = Duration::from_micros(1_024);
        assert_eq!(breaker.state(now + OPEN_FOR - tick), State::Open);
        assert_eq!(breaker.state(now + OPEN_FOR + tick), State::HalfOpen);
    });
}

#[test]
fn h1_a_trip_racing_a_trial_after_an_unseen_expiry() {
    trip_races_acquire_after_unseen_expiry(T1);
}

/// As `h1`, idle just short of a whole wrap of the word's 26 deadline bits
/// (≈ 19 h 5 min): the trip's new full deadline, stored before its CAS,
/// extends the old word's bits a wrap later for a racing reader.
#[test]
fn h2_a_trip_racing_a_trial_after_an_unseen_expiry_of_almost_a_wrap() {
    let wrap = Duration::from_micros((1 << 26) * 1_024);
    trip_races_acquire_after_unseen_expiry(T0 + wrap - Duration::from_millis(500));
}

/// As `h2`, idle just past a whole wrap.
#[test]
fn h3_a_trip_racing_a_trial_after_an_unseen_expiry_of_just_over_a_wrap() {
    let wrap = Duration::from_micros((1 << 26) * 1_024);
    trip_races_acquire_after_unseen_expiry(T0 + wrap + Duration::from_millis(500));
}
