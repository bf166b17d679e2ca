//! Real threads racing on one `CircuitBreaker` through tens of thousands of
//! openings (past the state word's 14-bit generation several times), on a
//! shared virtual clock, checked afterwards against the ledger of what
//! every call was told. From the docs: states change "only by CAS, so a
//! transition happens exactly once however many threads race on it"
//! (DESIGN.md); `Permit::transition` is "the Open → HalfOpen transition
//! that issuing this permit caused, if it did (exactly one caller per
//! opening gets it)"; `record` returns the transition it caused; `Metrics`
//! counts successes, failures, ignored, abandoned permits, rejections and
//! `trips` ("times the breaker opened (from closed or half-open; not
//! forced)"), each exact once no call is in flight.
//!
//! So, with no forced operation: the transitions handed out form one
//! chain from Closed — each state entered at most once more than it was
//! left, and the final state is the one entered last by that count; the
//! openings handed out equal `trips`; every half-open period was entered
//! from an opening; and the counters add up to the calls made. (loom
//! checks the same races exhaustively, on short histories.)
//!
//! Each run: 4 threads × 400 000 calls, outcomes random (failures,
//! successes, ignored, abandoned permits, permits held across other calls
//! and transitions), more than 140 000 openings and 340 000 transitions:
//! the 14-bit generation in the state word wraps about 20 times.
#![cfg(not(miri))]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Barrier, Mutex};
use std::thread;

use fusebox::breaker::{Config, Outcome, Permit, State, Transition};
use fusebox::{CircuitBreaker, Duration, Instant};

const THREADS: u64 = 4;
const CALLS: u64 = 400_000;

#[derive(Default)]
struct Ledger {
    /// Transitions handed out, by `(from, to)`.
    moves: Vec<(State, State)>,
    granted: u64,
    rejected: u64,
    successes: u64,
    failures: u64,
    ignored: u64,
    abandoned: u64,
}

impl Ledger {
    fn note(&mut self, transition: Option<Transition>) {
        if let Some(t) = transition {
            self.moves.push((t.from, t.to));
        }
    }
    fn finish(&mut self, permit: Permit<'_>, outcome: Outcome, end: Instant) {
        match outcome {
            Outcome::Failure => self.failures += 1,
            Outcome::Ignored => self.ignored += 1,
            Outcome::Success => self.successes += 1,
        }
        self.note(permit.record(outcome, end, Duration::ZERO));
    }
}

fn index(s: State) -> usize {
    match s {
        State::Closed => 0,
        State::Open => 1,
        State::HalfOpen => 2,
        State::ForcedOpen => panic!("an unforced history was forced open"),
    }
}

/// `hold_trials`: whether half-open trials may be held too (without a
/// half-open timeout, held trials would keep the breaker half-open).
fn run(config: Config, seed: u64, hold_trials: bool) {
    let breaker = CircuitBreaker::new(config);
    let clock = AtomicU64::new(1 << 40);
    let ledger = Mutex::new(Ledger::default());
    let start = Barrier::new(THREADS as usize);
    thread::scope(|s| {
        for t in 0..THREADS {
            let (breaker, clock, ledger, start) = (&breaker, &clock, &ledger, &start);
            s.spawn(move || {
                start.wait();
                let mut mine = Ledger::default();
                let mut x = seed ^ (t + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                // Permits held across other calls (and transitions).
                let mut held = VecDeque::new();
                for _ in 0..CALLS {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let now = Instant::from_micros(clock.fetch_add(x % 400, Ordering::Relaxed));
                    match breaker.try_acquire(now) {
                        Ok(permit) => {
                            mine.granted += 1;
                            mine.note(permit.transition());
                            // The call's end, a little later (or stale).
                            let end = Instant::from_micros(clock.load(Ordering::Relaxed));
                            match x >> 60 {
                                0..=4 => mine.finish(permit, Outcome::Failure, end),
                                5 => mine.finish(permit, Outcome::Ignored, end),
                                6 => {
                                    mine.abandoned += 1;
                                    drop(permit);
                                }
                                7 if permit.is_trial() && !hold_trials => {
                                    mine.finish(permit, Outcome::Success, end);
                                }
                                7 if held.len() < 3 => held.push_back(permit),
                                7 => {
                                    let old = held.pop_front().unwrap();
                                    held.push_back(permit);
                                    mine.finish(old, Outcome::Success, end);
                                }
                                _ => mine.finish(permit, Outcome::Success, end),
                            }
                        }
                        Err(rejected) => {
                            mine.rejected += 1;
                            mine.note(rejected.transition);
                        }
                    }
                }
                let end = Instant::from_micros(clock.load(Ordering::Relaxed));
                for permit in held {
                    mine.finish(permit, Outcome::Failure, end);
                }
                let mut all = ledger.lock().unwrap();
                all.moves.extend(mine.moves);
                all.granted += mine.granted;
                all.rejected += mine.rejected;
                all.successes += mine.successes;
                all.failures += mine.failures;
                all.ignored += mine.ignored;
                all.abandoned += mine.abandoned;
            });
        }
    });
    let l = ledger.into_inner().unwrap();
    let now = Instant::from_micros(clock.load(Ordering::Relaxed));
    check(&l, &breaker, now, seed);
}

/// The ledger of a finished run against the breaker's state and counters.
fn check(l: &Ledger, breaker: &CircuitBreaker, now: Instant, seed: u64) {
    // One chain from Closed: entries minus exits per state.
    let mut balance = [1i64, 0, 0];
    for &(from, to) in &l.moves {
        assert_ne!(from, to, "a transition to the same state");
        balance[index(from)] -= 1;
        balance[index(to)] += 1;
    }
    let ends: Vec<usize> = (0..3).filter(|&i| balance[i] == 1).collect();
    assert!(
        balance.iter().all(|&b| b == 0 || b == 1) && ends.len() == 1,
        "seed {seed}: transitions are not one chain: balance {balance:?}"
    );
    // The last state entered is where the breaker is (Open may already
    // read half-open at a later `now`, and a half-open timeout may be due).
    let last = [State::Closed, State::Open, State::HalfOpen][ends[0]];
    let state = breaker.state(now);
    assert!(
        state == last
            || (last == State::Open && state == State::HalfOpen)
            || (last == State::HalfOpen && state == State::Open),
        "seed {seed}: ends {last:?} by the ledger, reads {state:?}"
    );
    let count = |pred: &dyn Fn(State, State) -> bool| {
        l.moves.iter().filter(|&&(f, t)| pred(f, t)).count() as u64
    };
    let opened = count(&|_, t| t == State::Open);
    let half = count(&|f, t| f == State::Open && t == State::HalfOpen);
    assert!(
        half == opened || half + 1 == opened,
        "seed {seed}: {opened} openings, {half} half-open periods"
    );
    let m = breaker.metrics();
    assert_eq!(m.trips, opened, "seed {seed}: trips");
    assert_eq!(
        (m.successes, m.failures, m.ignored, m.abandoned, m.rejected),
        (l.successes, l.failures, l.ignored, l.abandoned, l.rejected),
        "seed {seed}: counters"
    );
    assert_eq!(l.granted + l.rejected, THREADS * CALLS);
    let finished = l.successes + l.failures + l.ignored + l.abandoned;
    assert_eq!(
        l.granted, finished,
        "seed {seed}: every permit finished once"
    );
    assert!(opened > 3 * 16_384, "seed {seed}: only {opened} openings");
}

#[test]
fn consecutive_failures_with_two_trials() {
    let config = Config::builder()
        .consecutive_failures(2)
        .open_for(Duration::from_micros(300))
        .half_open_permits(2)
        .close_after(2)
        .build()
        .unwrap();
    run(config, 0x2545_F491_4F6C_DD1D, false);
}

#[test]
fn failure_rate_with_growing_open_time() {
    let config = Config::builder()
        .failure_rate(50)
        .window(4)
        .minimum_calls(2)
        .open_for(Duration::from_micros(100))
        .max_open_for(Duration::from_micros(800))
        .half_open_permits(3)
        .close_after(1)
        .build()
        .unwrap();
    run(config, 0x9E37_79B9_7F4A_7C15, false);
}

/// Trials held across other calls time out (`max_half_open`): the caller
/// that finds the timeout passed is handed the HalfOpen → Open transition
/// (`Rejected::transition`), which counts as a trip.
#[cfg(feature = "half-open-timeout")]
#[test]
fn half_open_timeouts_with_held_trials() {
    let config = Config::builder()
        .consecutive_failures(1)
        .open_for(Duration::from_micros(500))
        .max_half_open(Duration::from_millis(2))
        .half_open_permits(2)
        .close_after(2)
        .build()
        .unwrap();
    run(config, 0x51_7CC1_B727_220A, true);
}
