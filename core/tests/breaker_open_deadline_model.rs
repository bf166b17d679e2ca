//! The open deadline over long histories, against a model written from
//! the crate docs: an Open word installed at `now` (a trip, a failed
//! trial, `trip`, a fleet decision merged, a snapshot restored) reads open
//! until its deadline (`now` plus its open time, rounded up to 1.024 ms)
//! and half-open from then until a call, however long nobody calls (on
//! Cortex-M, within ≈ 50 days of the deadline); a `trip` of an Open word
//! makes no transition, and changes nothing before its deadline (after
//! it, the word reads half-open: `trip` opens it again from `now`). Trips, merges with any time left, restores, forced
//! closes and idle gaps of up to days interleave, anywhere in time.
#![cfg(not(miri))]

use fusebox::breaker::{CircuitBreaker, Config, Decision, Outcome, State};
use fusebox::{Duration, Instant};
use proptest::prelude::*;

/// Whether this build keeps the breaker's words 32 bits wide (Cortex-M, or
/// a host built with `--cfg fusebox_narrow_words`).
const NARROW: bool = !cfg!(target_has_atomic = "64") || cfg!(fusebox_narrow_words);
const TICK: u64 = 1_024;
const DAY: u64 = 86_400_000_000;

#[derive(Clone, Debug)]
enum Op {
    Idle(u64),
    Fail,
    Trip,
    Merge(u64),
    Restore(u64),
    ForceClose,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => prop_oneof![0u64..3_000_000, 0u64..6 * 3_600_000_000, 0u64..3 * DAY].prop_map(Op::Idle),
        2 => Just(Op::Fail),
        1 => Just(Op::Trip),
        1 => (0u64..=1_000).prop_map(Op::Merge),
        1 => (0u64..=1_000).prop_map(Op::Restore),
        1 => Just(Op::ForceClose),
    ]
}

/// The model: the word's kind and, when Open, its deadline in µs.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Model {
    Closed,
    Open(u64),
    HalfOpen,
}

fn deadline(now: u64, left: u64) -> u64 {
    if left == 0 {
        now / TICK * TICK
    } else {
        (now + left).div_ceil(TICK) * TICK
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1_000, ..ProptestConfig::default() })]

    #[test]
    fn an_installed_deadline_reads_open_until_it_and_half_open_after(
        start in prop_oneof![0u64..1 << 50, (0u64..64).prop_map(|k| (k << 42).saturating_sub(DAY))],
        open_ms in prop_oneof![1u64..2_000, 1u64..17_179_000],
        ops in prop::collection::vec(op(), 1..60),
    ) {
        let open = open_ms * 1_000;
        let b = CircuitBreaker::new(
            Config::builder()
                .consecutive_failures(1)
                .open_for(Duration::from_micros(open))
                .build()
                .unwrap(),
        );
        let mut now = start;
        let mut model = Model::Closed;
        let mut version = 0;
        for op in ops {
            let at = Instant::from_micros(now);
            match op {
                Op::Idle(dt) => now += dt,
                Op::Fail => match (b.try_acquire(at), model) {
                    (Err(_), Model::Open(d)) if now < d => {}
                    (Ok(p), m) => {
                        prop_assert!(!matches!(m, Model::Open(d) if now < d), "admitted before {:?}", m);
                        prop_assert!(p.record(Outcome::Failure, at, Duration::ZERO).is_some());
                        model = Model::Open(deadline(now, open));
                    }
                    (Err(e), m) => prop_assert!(false, "refused {:?} at {} ({:?})", e, now, m),
                },
                Op::Trip => {
                    let t = b.trip(at);
                    if let Model::Open(d) = model {
                        // An Open word's trip makes no transition; one
                        // whose deadline passed unseen (it reads
                        // half-open) is opened again from `now`.
                        prop_assert!(t.is_none());
                        let reopened = deadline(now, open);
                        // On Cortex-M a deadline over ≈ 45 days old may
                        // read open again (skipped below): reopened or not.
                        let unsure = NARROW && now >= d && now - d > 45 * DAY;
                        let left = Some(Duration::from_micros(reopened - now));
                        if now >= d && (!unsure || b.snapshot(at).open_remaining == left) {
                            model = Model::Open(reopened);
                        }
                    } else {
                        prop_assert!(t.is_some());
                        model = Model::Open(deadline(now, open));
                    }
                }
                Op::Merge(frac) => {
                    version += 1;
                    let left = open * frac / 1_000;
                    let d = Decision {
                        version,
                        state: State::Open,
                        open_remaining: Some(Duration::from_micros(left)),
                        reopen_streak: 0,
                    };
                    b.merge(&d, at).unwrap();
                    model = Model::Open(deadline(now, left));
                }
                Op::Restore(frac) => {
                    let left = open * frac / 1_000;
                    let mut s = b.snapshot(at);
                    s.state = State::Open;
                    s.open_remaining = Some(Duration::from_micros(left));
                    s.reopen_streak = 0;
                    s.consecutive_failures = 0;
                    s.half_open_successes = 0;
                    s.window_calls = 0;
                    s.window_failures = 0;
                    s.window_slow = 0;
                    b.restore(&s, at).unwrap();
                    model = Model::Open(deadline(now, left));
                }
                Op::ForceClose => {
                    b.force_close(at);
                    model = Model::Closed;
                }
            }
            // After a failed trial the breaker is open; a call after the
            // deadline moved it to half-open (the trial dropped).
            let at = Instant::from_micros(now);
            let expected = match model {
                Model::Closed => State::Closed,
                Model::Open(d) if now < d => State::Open,
                Model::Open(_) | Model::HalfOpen => State::HalfOpen,
            };
            let skip = NARROW && matches!(model, Model::Open(d) if now >= d && now - d > 45 * DAY);
            if !skip {
                prop_assert_eq!(b.state(at), expected, "at {} µs, {:?}", now, model);
            }
            if let (Model::Open(d), State::HalfOpen, false) = (model, expected, skip) {
                // Now and then a call: a trial, dropped undecided.
                if now % 3 == 0 {
                    let p = b.try_acquire(at);
                    prop_assert!(p.is_ok(), "{:?} at {} µs, deadline {}", p.err(), now, d);
                    drop(p);
                    model = Model::HalfOpen;
                }
            }
        }
    }
}
