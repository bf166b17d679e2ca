//! Fleet decisions (`CircuitBreaker::merge`) and `trip` interleaved with
//! calls, forced operations and long idle stretches, against a model of
//! the docs alone: `merge` ("the state is changed like any local
//! transition", "`None` if the breaker was already in the decided state:
//! an open breaker then takes the decision's deadline, and a half-open one
//! whose half-open timeout has passed enters half-open again", the open
//! time capped at this configuration's open time for its streak), `trip`
//! ("opens the breaker at `now` … for `open_for`, from any state but
//! open"; one whose open time ran out unseen is opened again), `snapshot`
//! and `restore` (the stored state, "time left until half-open", a count
//! one short of the threshold, an open time capped, a half-open state
//! entered at the restore's `now`), the
//! `Decision::version` rule, the deadlines ("`now` + open time rounded up
//! to a 1.024 ms tick", read as open while `now` is before it however long
//! the breaker sat idle) and the half-open timeout (feature
//! `half-open-timeout`: reads Open from `entry + max_half_open` rounded up
//! to a tick; the next call reopens it as a failed trial).
//!
//! The clock only moves forward: by microseconds, seconds, hours, and (for
//! the breaker without a half-open timeout, whose deadlines are read in
//! full width) by whole and near-whole wraps of the Open word's 26-bit
//! deadline (2²⁶ ticks, ≈ 19 h). With a half-open timeout, idle stretches
//! stay under its stamp's 2²⁴-tick wrap (≈ 4 h 46 min), which its docs
//! leave open.
#![cfg(not(miri))]

use crate::common::{Rng, NARROW};
use fusebox::breaker::{CircuitBreaker, Config, Decision, MergeError, Outcome, State};
use fusebox::{Duration, Instant};

const TICK: u64 = 1_024;
const SEC: u64 = 1_000_000;
const OPEN_FOR: u64 = SEC;
const MAX_OPEN_FOR: u64 = 8 * SEC;
/// Bits a version is kept in (`Decision::version`).
const WIDTH: u32 = if NARROW { 31 } else { 63 };

/// `now + d` rounded up to a tick.
fn deadline(now: u64, d: u64) -> u64 {
    (now + d).div_ceil(TICK) * TICK
}

fn open_time(streak: u32) -> u64 {
    (OPEN_FOR << streak).min(MAX_OPEN_FOR)
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum M {
    Closed { failures: u32 },
    Open { streak: u32, until: u64 },
    HalfOpen { streak: u32, entered: u64 },
    Forced,
}

struct Model {
    m: M,
    /// The last version merged, as kept (0 before any).
    merged: u64,
    max_half_open: Option<u64>,
}

impl Model {
    fn timed_out(&self, entered: u64, now: u64) -> bool {
        self.max_half_open
            .is_some_and(|max| now >= deadline(entered, max))
    }

    fn state(&self, now: u64) -> State {
        match self.m {
            M::Closed { .. } => State::Closed,
            M::Forced => State::ForcedOpen,
            M::Open { until, .. } if now < until => State::Open,
            M::HalfOpen { entered, .. } if self.timed_out(entered, now) => State::Open,
            M::Open { .. } | M::HalfOpen { .. } => State::HalfOpen,
        }
    }

    fn reopen(&mut self, streak: u32, now: u64) {
        let streak = (streak + 1).min(15);
        self.m = M::Open {
            streak,
            until: deadline(now, open_time(streak)),
        };
    }

    fn newer(&self, v: u64) -> bool {
        let range = 1u128 << WIDTH;
        let d = (u128::from(v) % range + range - u128::from(self.merged)) % range;
        d != 0 && d < range / 2
    }

    fn merge(&mut self, d: &Decision, now: u64) {
        self.merged = d.version & ((1 << WIDTH) - 1);
        let streak = u32::from(d.reopen_streak);
        self.m = match d.state {
            State::Closed => match self.m {
                M::Closed { .. } => self.m,
                _ => M::Closed { failures: 0 },
            },
            State::ForcedOpen => M::Forced,
            State::HalfOpen => match self.m {
                M::HalfOpen { entered, .. } if !self.timed_out(entered, now) => self.m,
                _ => M::HalfOpen {
                    streak,
                    entered: now,
                },
            },
            State::Open => {
                let left = d.open_remaining.unwrap().as_micros().min(open_time(streak));
                let until = if left == 0 {
                    now / TICK * TICK
                } else {
                    deadline(now, left)
                };
                M::Open { streak, until }
            }
        };
    }

    fn trip(&mut self, now: u64) {
        if !matches!(self.m, M::Open { until, .. } if now < until) {
            self.m = M::Open {
                streak: 0,
                until: deadline(now, OPEN_FOR),
            };
        }
    }
}

fn decision(rng: &mut Rng, version: u64) -> Decision {
    let streak = rng.below(16) as u8;
    let (state, open_remaining, reopen_streak) = match rng.below(4) {
        0 => (State::Closed, None, 0),
        1 => (State::ForcedOpen, None, 0),
        2 => (State::HalfOpen, None, streak),
        _ => {
            let left = match rng.below(4) {
                0 => 0,
                1 => rng.below(2 * MAX_OPEN_FOR),
                2 => Config::MAX_OPEN_FOR.as_micros(),
                _ => rng.below(3 * SEC),
            };
            (State::Open, Some(Duration::from_micros(left)), streak)
        }
    };
    Decision {
        version,
        state,
        open_remaining,
        reopen_streak,
    }
}

/// How far the clock moves before an operation.
fn step(rng: &mut Rng, long_idle: bool) -> u64 {
    const WRAP: u64 = (1 << 26) * TICK;
    match rng.below(20) {
        0..=7 => rng.below(2_000),
        8..=13 => rng.below(3 * SEC),
        14..=15 => rng.below(20 * SEC),
        16 => rng.below(4 * 3_600 * SEC),
        _ if !long_idle => rng.below(60 * SEC),
        17 => WRAP * (1 + rng.below(3)),
        18 => WRAP * (1 + rng.below(2)) + rng.below(8 * SEC) - 4 * SEC,
        _ => rng.below(2 * WRAP),
    }
}

fn run(seed: u64, max_half_open: Option<u64>, steps: usize) {
    let mut rng = Rng(seed | 1);
    #[cfg_attr(not(feature = "half-open-timeout"), allow(unused_mut))]
    let mut b = Config::builder()
        .consecutive_failures(3)
        .open_for(Duration::from_micros(OPEN_FOR))
        .max_open_for(Duration::from_micros(MAX_OPEN_FOR))
        .half_open_permits(1)
        .close_after(1);
    #[cfg(feature = "half-open-timeout")]
    if let Some(max) = max_half_open {
        b = b.max_half_open(Duration::from_micros(max));
    }
    let breaker = CircuitBreaker::new(b.build().unwrap());
    let mut model = Model {
        m: M::Closed { failures: 0 },
        merged: 0,
        max_half_open,
    };
    let mut now = 1_000 * SEC + rng.below(SEC);
    let mut version = 0u64;
    for i in 0..steps {
        now += step(&mut rng, max_half_open.is_none());
        let at = Instant::from_micros(now);
        let ctx = format!("seed {seed} step {i} at {now}: model {:?}", model.m);
        assert_eq!(breaker.state(at), model.state(now), "{ctx}");
        match rng.below(10) {
            0..=2 => {
                version = match rng.below(8) {
                    0 => version,                            // repeated
                    1 => version.wrapping_sub(rng.below(3)), // older
                    2 => version.wrapping_add(1 << 61),
                    _ => version.wrapping_add(1 + rng.below(3)),
                };
                let d = decision(&mut rng, version);
                let got = breaker.merge(&d, at);
                if model.newer(d.version) {
                    assert!(got.is_ok(), "{ctx}: {d:?} -> {got:?}");
                    model.merge(&d, now);
                } else {
                    assert!(
                        matches!(got, Err(MergeError::Stale { .. })),
                        "{ctx}: {d:?} -> {got:?}"
                    );
                }
            }
            3 if rng.below(2) == 0 => {
                breaker.trip(at);
                model.trip(now);
            }
            3 => restore(&breaker, &mut model, &mut rng, now, &ctx),
            4 => {
                if rng.below(4) == 0 {
                    breaker.force_open(at);
                    model.m = M::Forced;
                } else {
                    breaker.force_close(at);
                    if !matches!(model.m, M::Closed { .. }) {
                        model.m = M::Closed { failures: 0 };
                    }
                }
            }
            _ => call(&breaker, &mut model, &mut rng, now, &ctx),
        }
        assert_eq!(breaker.state(at), model.state(now), "{ctx}: after the step");
    }
}

/// A snapshot (of the breaker, or a random valid one) restored, checked
/// against `restore`'s docs as the model reads them.
fn restore(breaker: &CircuitBreaker, model: &mut Model, rng: &mut Rng, now: u64, ctx: &str) {
    let at = Instant::from_micros(now);
    let own = breaker.snapshot(at);
    let expect_state = match model.m {
        M::Closed { .. } => State::Closed,
        M::Open { .. } => State::Open,
        M::HalfOpen { .. } => State::HalfOpen,
        M::Forced => State::ForcedOpen,
    };
    assert_eq!(own.state, expect_state, "{ctx}: {own:?}");
    if let M::Open { until, .. } = model.m {
        let left = until.saturating_sub(now);
        assert_eq!(
            own.open_remaining,
            Some(Duration::from_micros(left)),
            "{ctx}"
        );
    }
    let streak = rng.below(16) as u8;
    let s = match rng.below(5) {
        0 => own,
        1 => fusebox::breaker::Snapshot {
            state: State::Closed,
            consecutive_failures: rng.below(256) as u16,
            half_open_successes: 0,
            reopen_streak: 0,
            open_remaining: None,
            ..own
        },
        2 => fusebox::breaker::Snapshot {
            state: State::HalfOpen,
            consecutive_failures: 0,
            half_open_successes: rng.below(64) as u8,
            reopen_streak: streak,
            open_remaining: None,
            ..own
        },
        _ => fusebox::breaker::Snapshot {
            state: State::Open,
            consecutive_failures: 0,
            half_open_successes: 0,
            reopen_streak: streak,
            open_remaining: Some(Duration::from_micros(match rng.below(3) {
                0 => 0,
                1 => rng.below(2 * MAX_OPEN_FOR),
                _ => rng.below(3 * SEC),
            })),
            ..own
        },
    };
    let s = fusebox::breaker::Snapshot {
        window_calls: 0,
        window_failures: 0,
        window_slow: 0,
        ..s
    };
    assert_eq!(breaker.restore(&s, at), Ok(()), "{ctx}: {s:?}");
    let streak = u32::from(s.reopen_streak);
    model.m = match s.state {
        State::Closed => M::Closed {
            failures: u32::from(s.consecutive_failures).min(2),
        },
        State::HalfOpen => M::HalfOpen {
            streak,
            entered: now,
        },
        State::ForcedOpen => M::Forced,
        State::Open => {
            let left = s.open_remaining.unwrap().as_micros().min(open_time(streak));
            M::Open {
                streak,
                until: if left == 0 {
                    now / TICK * TICK
                } else {
                    deadline(now, left)
                },
            }
        }
    };
}

/// One call through `try_acquire`, checked against the model, which it
/// then updates.
fn call(breaker: &CircuitBreaker, model: &mut Model, rng: &mut Rng, now: u64, ctx: &str) {
    let at = Instant::from_micros(now);
    let outcome = if rng.below(2) == 0 {
        Outcome::Failure
    } else {
        Outcome::Success
    };
    let got = breaker.try_acquire(at);
    match model.m {
        M::Forced => assert!(got.is_err(), "{ctx}"),
        M::Open { until, .. } if now < until => {
            let r = got.expect_err(ctx);
            assert_eq!(
                r.retry_after,
                Some(Duration::from_micros(until - now)),
                "{ctx}"
            );
        }
        M::HalfOpen { streak, entered } if model.timed_out(entered, now) => {
            let r = got.expect_err(ctx);
            assert_eq!(r.transition.map(|t| t.to), Some(State::Open), "{ctx}");
            model.reopen(streak, now);
        }
        M::Open { streak, .. } | M::HalfOpen { streak, .. } => {
            let permit = got.expect(ctx);
            assert!(permit.is_trial(), "{ctx}");
            if rng.below(3) == 0 {
                drop(permit);
                model.m = M::HalfOpen {
                    streak,
                    entered: match model.m {
                        M::HalfOpen { entered, .. } => entered,
                        _ => now,
                    },
                };
            } else {
                permit.record(outcome, at, Duration::ZERO);
                if outcome == Outcome::Success {
                    model.m = M::Closed { failures: 0 };
                } else {
                    model.reopen(streak, now);
                }
            }
        }
        M::Closed { failures } => {
            got.expect(ctx).record(outcome, at, Duration::ZERO);
            model.m = match outcome {
                Outcome::Success => M::Closed { failures: 0 },
                _ if failures + 1 >= 3 => M::Open {
                    streak: 0,
                    until: deadline(now, OPEN_FOR),
                },
                _ => M::Closed {
                    failures: failures + 1,
                },
            };
        }
    }
}

#[test]
fn merges_trips_and_calls_over_long_idle_stretches() {
    for seed in 1..=6u64 {
        run(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15), None, 4_000);
    }
}

#[cfg(feature = "half-open-timeout")]
#[test]
fn merges_trips_and_calls_with_a_half_open_timeout() {
    for seed in 1..=6u64 {
        run(
            seed.wrapping_mul(0xD1B5_4A32_D192_ED03),
            Some(5 * SEC),
            4_000,
        );
    }
}
