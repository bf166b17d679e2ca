//! The lazy clock of `Permit::record_with` against a sequential model
//! written from the documented contract only (the doc comments of
//! `Permit::record_with`, `ConfigBuilder::failure_rate`, `slow_call`,
//! `minimum_calls`, `set_config`, `force_open`, `force_close`, `reset`,
//! `Metrics`, `Outcome`, the breaker's "Time window" section, and
//! DESIGN.md), never from `core/src/breaker/*.rs`.
//!
//! Every decision is compared: admit or refuse (and the refusal's state),
//! each transition (from, to, and its `at`, which must be the reading of
//! the clock that was passed), `state(now)` and the metrics after every
//! step. Beside the decisions, the clock itself: on a current closed
//! breaker a fast success reads it exactly when the contract says it does
//! (never without a failure streak and without a rate window; on a count
//! window only on its first lap from its minimum of calls on; always on a
//! time window), and a clock that panics there leaves the call counted as
//! abandoned only, the window untouched (a claim made before the panic
//! would shift every later rate), while a panicking clock that is not read
//! changes nothing at all. A clock that records another call of the same
//! generation when it is read (an interrupt, or a thread racing between
//! the record's load and its claim) must leave both decided as if that
//! call came first: the record's claim retries and decides again. A clock
//! that resets the breaker when read makes the record a stale permit's:
//! counted, out of the new window.
//!
//! Histories mix successes, failures, slow calls, ignored calls, abandoned
//! and held permits (recorded many generations later), `set_config` of the
//! thresholds (raised and lowered, `minimum_calls` too, rate policies
//! swapped), `force_open`, `force_close`, `reset`, clock readings up to
//! 0.4 s stale, and jumps of hours to years. The long test runs 72 000
//! open, half-open and close cycles (144 000 generations, past the
//! state word's 14 bits and the window tags' 12 many times), with permits
//! held across exactly 2 048, 4 096 and 16 384 generations.
//!
//! The rules, from the docs:
//!
//! 1. Closed: failures in a row are counted (up to 255, also with the
//!    policy off; a success resets them) and trip at `consecutive_failures`
//!    ("a closed breaker already at or past a lowered threshold trips on
//!    its next failure"). The count window holds the last `window` counted
//!    outcomes of the closed generation; the rates ("at least" `percent`
//!    %, once the window holds `minimum_calls`) are evaluated after each
//!    failure or slow call and after each success that brings the window
//!    to `minimum_calls` or beyond before it first fills; never after a
//!    success into a full window. Ignored calls change nothing.
//! 2. Time window: a counted closed record lands in interval
//!    `max(⌊now / interval⌋, newest)`, which becomes the newest; the window
//!    holds the intervals fewer than `buckets` before the newest; every
//!    record evaluates it. Entering Closed empties it; only `reset`
//!    forgets the newest interval.
//! 3. Open for `min(open_for · 2^streak, max_open_for)` from the trip's
//!    `now` (rounded up by at most a tick and 6 µs); the first acquire
//!    after it is a trial carrying Open → HalfOpen. Half-open: at most
//!    `half_open_permits` trials; `close_after` successes close; a failed
//!    or slow trial reopens (streak + 1, up to 15); an ignored or abandoned
//!    one frees its slot.
//! 4. Every change of state starts a generation; a permit of an older one
//!    is counted and changes nothing.

use std::cell::Cell;
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};

use fusebox::breaker::{
    CircuitBreaker, Config, Metrics, Outcome, OwnedPermit, Permit, State, Transition,
};
use fusebox::{Duration, Instant};
use proptest::prelude::*;

pub(super) const OPEN_FOR: u64 = 500_000; // µs
pub(super) const MAX_OPEN_FOR: u64 = 4_000_000;
/// Past any open deadline's round-up (one 1.024 ms tick and 6 µs).
pub(super) const MARGIN: u64 = 2_100;
pub(super) const PERMITS: u32 = 2;
pub(super) const CLOSE_AFTER: u32 = 2;

mod driver;
mod model;
mod ops;

use driver::*;
use model::*;
use ops::*;

// proptest reads the working directory (its regression files): not
// under Miri's isolation.
#[cfg(not(miri))]
proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn every_decision_and_clock_read_follows_the_contract(
        shape in prop::sample::select(shapes()),
        t in thresholds(),
        ops in prop::collection::vec(op(), 1..500),
    ) {
        if let Err(e) = run(shape, t, &ops) {
            prop_assert!(false, "{:?} {:?}: {}", shape, t, e);
        }
    }
}

/// The long history: 72 000 trips, each followed by a wait and two
/// closing trials (two generations a cycle: half-open and closed), on a count window lapped
/// over and over and on every shape, with calls chosen by a fixed LCG, and
/// permits held across exactly 2 048, 4 096 and 16 384 generations (the
/// window tags' half range and range, the state word's range) recorded
/// late: counted, changing nothing.
#[cfg(not(miri))]
#[test]
fn long_histories_keep_to_the_contract() {
    for (shape, cycles) in [
        (Shape::Count(5), 72_000u32),
        (Shape::Count(1), 6_000),
        (Shape::Streak, 6_000),
        #[cfg(feature = "time-window")]
        (Shape::Time(1_000_000, 4), 6_000),
    ] {
        let t = Thresholds {
            consecutive: 4,
            rate: 60,
            slow: (100_000, 80),
            minimum: 3,
        };
        let (config, t) = config(shape, t);
        let breaker = CircuitBreaker::new(config);
        let reads = Cell::new(0);
        let mut drv = Driver::new(&breaker, Model::new(shape, t), &reads);
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = |n: u64| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % n
        };
        // (generation to record at, permit)
        let mut late: Vec<(u64, Held<'_>, Ticket)> = Vec::new();
        let mut i = 0u64;
        for cycle in 0..cycles {
            // Closed: calls until it trips (successes lap the window).
            let mut calls = 0;
            while drv.model.kind == Kind::Closed {
                i += 1;
                let roll = next(100);
                drv.advance(next(40_000));
                // One closed period in 16 long (its window lapped), the
                // others short (they trip sooner).
                let successes = if cycle % 16 == 0 { 55 } else { 30 };
                let op = if roll < successes && calls <= 40 {
                    Op::Call(
                        Some(Outcome::Success),
                        (next(50)) as u16,
                        if roll % 3 == 0 {
                            Clock::Panics
                        } else {
                            Clock::Now
                        },
                    )
                } else if roll < 85 || calls > 40 {
                    // (past 40 calls, failures only: it trips)
                    Op::Call(Some(Outcome::Failure), 0, Clock::Stale((roll % 7) as u16))
                } else if roll < 90 {
                    Op::Call(Some(Outcome::Success), 150, Clock::Now)
                } else if roll < 95 {
                    Op::Call(None, 0, Clock::Now)
                } else {
                    Op::Call(Some(Outcome::Ignored), 0, Clock::Now)
                };
                calls += 1;
                if cycle % 64 == 0 && calls == 1 && late.len() < 3 {
                    if let Some((p, ticket)) = drv.acquire().unwrap() {
                        let span = [2_048, 4_096, 16_384][late.len()];
                        late.push((ticket.gen + span, p, ticket));
                    }
                }
                drv.step(&op)
                    .unwrap_or_else(|e| panic!("{shape:?} cycle {cycle} call {i}: {e}"));
            }
            // Open: refused until the open time has passed.
            drv.step(&Op::Call(Some(Outcome::Success), 0, Clock::Now))
                .unwrap();
            let wait = MAX_OPEN_FOR / 1_000 + 5 + next(100_000);
            drv.step(&Op::Jump((wait / 1_000) as u32)).unwrap();
            drv.step(&Op::Tick((wait % 1_000) as u16)).unwrap();
            // Half-open: two successful trials close it.
            while drv.model.kind != Kind::Closed {
                let op = Op::Call(Some(Outcome::Success), 0, Clock::Now);
                drv.step(&op)
                    .unwrap_or_else(|e| panic!("{shape:?} cycle {cycle} trial: {e}"));
                if let Kind::Open { .. } = drv.model.kind {
                    unreachable!("a fast successful trial reopened");
                }
            }
            let mut k = 0;
            while k < late.len() {
                if drv.model.gen >= late[k].0 {
                    let (due, p, ticket) = late.swap_remove(k);
                    // Two generations a cycle, spans even: exactly due.
                    assert_eq!(drv.model.gen, due, "{shape:?}");
                    drv.record(p, ticket, Outcome::Failure, 0, Clock::Now)
                        .unwrap();
                    drv.compare().unwrap();
                } else {
                    k += 1;
                }
            }
        }
        assert_eq!(drv.model.gen, u64::from(cycles) * 2, "{shape:?}");
        assert_eq!(breaker.metrics().trips, u64::from(cycles), "{shape:?}");
    }
}

/// A closed success whose clock, when read, resets the breaker (or forces
/// it open and closed again): an interrupt handler, or a thread that runs
/// while the recorder reads its clock. The reset installs a new generation,
/// so the success's permit is stale from then on ("outstanding permits
/// become stale"; a record "changes state only while that generation is
/// installed"): decided before the reset, it was emptied with the old
/// window; after, it changes nothing. Either way the new window holds only
/// its own calls, and two failures in it stay under `minimum_calls` = 3.
/// On both kinds of window. (Found by review: with the clock read between
/// the generation check and the time window's bucket write, the stale
/// success landed in the new window, which then opened on two failures.)
#[test]
fn a_clock_that_resets_the_breaker_leaves_the_success_out_of_the_new_window() {
    let count = Config::builder()
        .failure_rate(50)
        .window(4)
        .minimum_calls(3)
        .build()
        .unwrap();
    // (config, whether its window is time-based)
    let configs = [
        (count, false),
        #[cfg(feature = "time-window")]
        (
            Config::builder()
                .time_window(Duration::from_secs(4), 4)
                .failure_rate(50)
                .minimum_calls(3)
                .build()
                .unwrap(),
            true,
        ),
    ];
    let now = Instant::from_secs(100);
    for (config, timed) in configs {
        for reset in [true, false] {
            let breaker = CircuitBreaker::new(config);
            // On a count window, a first lap's success from its minimum on
            // reads the clock (on a time window, every success does).
            let before = if timed { 0 } else { config.minimum_calls() - 1 };
            for _ in 0..before {
                let p = breaker.try_acquire(now).unwrap();
                assert_eq!(p.record(Outcome::Success, now, Duration::ZERO), None);
            }
            let p = breaker.try_acquire(now).unwrap();
            let read = Cell::new(false);
            let clock = || {
                read.set(true);
                if reset {
                    breaker.reset(now);
                } else {
                    breaker.force_open(now);
                    breaker.force_close(now);
                }
                now
            };
            assert_eq!(p.record_with(Outcome::Success, Duration::ZERO, clock), None);
            let what = format!("{config:?}, reset {reset}");
            assert!(read.get(), "{what}: the clock was not read");
            for _ in 0..2 {
                let p = breaker.try_acquire(now).unwrap();
                let t = p.record(Outcome::Failure, now, Duration::ZERO);
                assert_eq!(t, None, "{what}: two calls in the new window");
            }
            let p = breaker.try_acquire(now).unwrap();
            let t = p.record(Outcome::Failure, now, Duration::ZERO);
            assert_eq!(
                t.map(|t| t.to),
                Some(State::Open),
                "{what}: 3 failures of 3"
            );
        }
    }
}

/// A restored window is the new generation's first claims ("kept as it
/// is: it trips at the next outcome that is evaluated (a failure or slow
/// call, or a success that completes `minimum_calls`) ...; a success into
/// a full window is not evaluated"). So a success completing the minimum
/// of a partly restored window reads the clock and trips, and one into a
/// full restored window over the rate reads none and trips not, until a
/// failure is evaluated.
#[test]
fn a_restored_window_is_evaluated_from_its_minimum_on_its_first_lap_only() {
    let now = Instant::from_secs(50);
    let lenient = Config::builder()
        .failure_rate(100)
        .window(4)
        .minimum_calls(4)
        .build()
        .unwrap();
    let strict = Config::builder()
        .failure_rate(50)
        .window(4)
        .minimum_calls(3)
        .build()
        .unwrap();
    let snapshot = |outcomes: &[Outcome]| {
        let source = CircuitBreaker::new(lenient);
        for &o in outcomes {
            let p = source.try_acquire(now).unwrap();
            assert_eq!(p.record(o, now, Duration::ZERO), None);
        }
        source.snapshot(now)
    };
    let reads = Cell::new(0);
    let clock = || {
        reads.set(reads.get() + 1);
        now
    };
    let (f, s) = (Outcome::Failure, Outcome::Success);

    // Two failures restored: the success that completes the minimum of 3
    // is evaluated (2 of 3 failed).
    let breaker = CircuitBreaker::new(strict);
    breaker.restore(&snapshot(&[f, f]), now).unwrap();
    let p = breaker.try_acquire(now).unwrap();
    let t = p.record_with(s, Duration::ZERO, clock);
    assert_eq!(t.map(|t| (t.to, t.at)), Some((State::Open, now)));
    assert_eq!(reads.get(), 1);

    // A full window at 75 %: a success (now 50 %) is not evaluated.
    reads.set(0);
    let breaker = CircuitBreaker::new(strict);
    breaker.restore(&snapshot(&[f, f, f, s]), now).unwrap();
    let p = breaker.try_acquire(now).unwrap();
    assert_eq!(p.record_with(s, Duration::ZERO, clock), None);
    assert_eq!(
        reads.get(),
        0,
        "a success into a full window read the clock"
    );
    assert_eq!(breaker.state(now), State::Closed);
    // The next failure is (f, s, s, f: 50 %).
    let p = breaker.try_acquire(now).unwrap();
    let t = p.record_with(f, Duration::ZERO, clock);
    assert_eq!(t.map(|t| t.to), Some(State::Open));
}
