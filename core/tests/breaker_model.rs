#![cfg(not(miri))]
//! Model-based tests of [`CircuitBreaker`] against a sequential reference
//! model of its documented semantics.
//!
//! The model is deliberately naive: a `VecDeque` for the sliding window,
//! `u64` microsecond times (no wrapping, no packed words), an unbounded
//! generation number bumped on every install of a new state, and exact
//! deadlines rounded up to the 1.024 ms tick. Every operation of a random
//! sequence is applied to both; after each one the returned values, the
//! state, the metrics and a full snapshot are compared.
//!
//! Time: `now` is monotonic within one breaker (a restore may move to a new
//! clock origin). The deadline is stored wrapped in the core (≈ 19 h 5 min
//! horizon), so the generator never lets an open breaker sit more than
//! [`MAX_IDLE_PAST_DEADLINE`] past its deadline; [`idle_beyond_the_wrap_horizon`]
//! documents what happens beyond it.
//!
//! Run with `cargo test -p fusebox --test breaker_model`.

use std::collections::VecDeque;

use fusebox::{
    CircuitBreaker, Config, Duration, Instant, Metrics, Outcome, Permit, Rejected, Snapshot, State,
    Transition,
};
use proptest::prelude::*;
use proptest::sample::Index;

/// One deadline tick: 1.024 ms.
const TICK: u64 = 1024;
const SEC: u64 = 1_000_000;
const HOUR: u64 = 3_600 * SEC;
/// 2^26 ticks: the wrap period of the stored deadline (≈ 19 h 5 min).
const WRAP: u64 = (1 << 26) * TICK;
/// How long the generated sequences may leave an open breaker unasked past
/// its deadline. With `open_for` ≤ `Config::MAX_OPEN_FOR` (2^25 ticks), any
/// idle time below 2^25 ticks − ~1 s past the deadline reads as expired.
const MAX_IDLE_PAST_DEADLINE: u64 = 8 * HOUR;
/// Largest re-opening streak.
const MAX_STREAK: u32 = 15;

fn at(us: u64) -> Instant {
    Instant::from_micros(us)
}

fn us(d: u64) -> Duration {
    Duration::from_micros(d)
}

fn tr(from: State, to: State, now: u64) -> Transition {
    Transition {
        from,
        to,
        at: at(now),
    }
}

// ---------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------

/// What the builder is told (`None`: left at its default).
#[derive(Clone, Copy, Debug)]
struct Spec {
    consecutive: Option<u32>,
    failure_rate: Option<u8>,
    slow: Option<(u64, u8)>,
    window: Option<u8>,
    minimum_calls: Option<u8>,
    open_for: u64,
    max_open_for: Option<u64>,
    half_open_permits: u8,
    close_after: Option<u8>,
}

/// The effective configuration, as the model uses it (0 = policy off).
#[derive(Clone, Copy, Debug)]
struct Params {
    consecutive: u32,
    failure_rate: u64,
    slow_threshold: u64,
    slow_rate: u64,
    window: usize,
    minimum_calls: usize,
    open_for: u64,
    max_open_for: u64,
    half_open_permits: u32,
    close_after: u32,
}

impl Spec {
    fn config(&self) -> Config {
        let mut b = Config::builder()
            .open_for(us(self.open_for))
            .half_open_permits(self.half_open_permits);
        if let Some(n) = self.consecutive {
            b = b.consecutive_failures(n);
        }
        if let Some(p) = self.failure_rate {
            b = b.failure_rate(p);
        }
        if let Some((t, p)) = self.slow {
            b = b.slow_call(us(t), p);
        }
        if let Some(w) = self.window {
            b = b.window(w);
        }
        if let Some(m) = self.minimum_calls {
            b = b.minimum_calls(m);
        }
        if let Some(m) = self.max_open_for {
            b = b.max_open_for(us(m));
        }
        if let Some(n) = self.close_after {
            b = b.close_after(n);
        }
        b.build().expect("generated configs are valid")
    }

    fn params(&self) -> Params {
        let window = self.window.unwrap_or(64);
        Params {
            consecutive: self.consecutive.unwrap_or(0),
            failure_rate: self.failure_rate.map_or(0, u64::from),
            slow_threshold: self.slow.map_or(u64::MAX, |s| s.0),
            slow_rate: self.slow.map_or(0, |s| u64::from(s.1)),
            window: usize::from(window),
            minimum_calls: usize::from(self.minimum_calls.unwrap_or(window)),
            open_for: self.open_for,
            max_open_for: self.max_open_for.unwrap_or(self.open_for),
            half_open_permits: u32::from(self.half_open_permits),
            close_after: u32::from(self.close_after.unwrap_or(self.half_open_permits)),
        }
    }
}

impl Params {
    fn uses_window(&self) -> bool {
        self.failure_rate != 0 || self.slow_rate != 0
    }

    /// `open_for · 2^streak`, capped at `max_open_for`.
    fn open_duration(&self, streak: u32) -> u64 {
        (u128::from(self.open_for) << streak).min(u128::from(self.max_open_for)) as u64
    }
}

/// The configured values must read back as the model understands them.
fn check_config(cfg: &Config, p: &Params) {
    assert_eq!(
        cfg.consecutive_failures().map_or(0, u32::from),
        p.consecutive
    );
    assert_eq!(cfg.failure_rate().map_or(0, u64::from), p.failure_rate);
    assert_eq!(
        cfg.slow_call().map(|(t, r)| (t.as_micros(), u64::from(r))),
        (p.slow_rate != 0).then_some((p.slow_threshold, p.slow_rate))
    );
    assert_eq!(usize::from(cfg.window()), p.window);
    assert_eq!(usize::from(cfg.minimum_calls()), p.minimum_calls);
    assert_eq!(cfg.open_for().as_micros(), p.open_for);
    assert_eq!(cfg.max_open_for().as_micros(), p.max_open_for);
    assert_eq!(u32::from(cfg.half_open_permits()), p.half_open_permits);
    assert_eq!(u32::from(cfg.close_after()), p.close_after);
}

// ---------------------------------------------------------------------------
// The reference model
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MState {
    Closed {
        failures: u32,
    },
    Open {
        streak: u32,
        deadline: u64,
    },
    HalfOpen {
        streak: u32,
        in_flight: u32,
        successes: u32,
    },
    ForcedOpen,
}

impl MState {
    fn kind(self) -> State {
        match self {
            MState::Closed { .. } => State::Closed,
            MState::Open { .. } => State::Open,
            MState::HalfOpen { .. } => State::HalfOpen,
            MState::ForcedOpen => State::ForcedOpen,
        }
    }
}

/// A permit as the model sees it: the generation it was issued in.
#[derive(Clone, Copy, Debug)]
struct MPermit {
    gen: u64,
    trial: bool,
}

#[derive(Clone, Debug)]
struct Model {
    p: Params,
    state: MState,
    /// Generation of the installed state: bumped on every transition (and by
    /// `reset`), never by a closed record or a half-open count change.
    gen: u64,
    /// `(failure, slow)` of the current closed generation, oldest first.
    window: VecDeque<(bool, bool)>,
    m: Metrics,
}

impl Model {
    fn new(p: Params) -> Self {
        Self {
            p,
            state: MState::Closed { failures: 0 },
            gen: 0,
            window: VecDeque::new(),
            m: Metrics::default(),
        }
    }

    fn install(&mut self, state: MState) {
        self.gen += 1;
        self.state = state;
        self.window.clear();
    }

    /// Opens with `streak`: the deadline is rounded *up* to a tick.
    fn open(&mut self, streak: u32, now: u64) {
        let end = now + self.p.open_duration(streak);
        let deadline = end.div_ceil(TICK) * TICK;
        self.install(MState::Open { streak, deadline });
        self.m.trips += 1;
    }

    fn owns(&self, p: MPermit) -> bool {
        p.gen == self.gen
            && matches!(
                (self.state, p.trial),
                (MState::Closed { .. }, false) | (MState::HalfOpen { .. }, true)
            )
    }

    fn reject(&mut self, state: State, retry_after: Option<u64>) -> Rejected {
        self.m.rejected += 1;
        Rejected {
            state,
            retry_after: retry_after.map(us),
        }
    }

    fn acquire(&mut self, now: u64) -> Result<(MPermit, Option<Transition>), Rejected> {
        match self.state {
            MState::Closed { .. } => Ok((
                MPermit {
                    gen: self.gen,
                    trial: false,
                },
                None,
            )),
            MState::ForcedOpen => Err(self.reject(State::ForcedOpen, None)),
            MState::Open { streak, deadline } => {
                if now < deadline {
                    return Err(self.reject(State::Open, Some(deadline - now)));
                }
                self.install(MState::HalfOpen {
                    streak,
                    in_flight: 1,
                    successes: 0,
                });
                let permit = MPermit {
                    gen: self.gen,
                    trial: true,
                };
                Ok((permit, Some(tr(State::Open, State::HalfOpen, now))))
            }
            MState::HalfOpen {
                streak,
                in_flight,
                successes,
            } => {
                if in_flight >= self.p.half_open_permits {
                    return Err(self.reject(State::HalfOpen, None));
                }
                self.state = MState::HalfOpen {
                    streak,
                    in_flight: in_flight + 1,
                    successes,
                };
                let permit = MPermit {
                    gen: self.gen,
                    trial: true,
                };
                Ok((permit, None))
            }
        }
    }

    fn record(
        &mut self,
        permit: MPermit,
        failure: bool,
        now: u64,
        elapsed: u64,
    ) -> Option<Transition> {
        let slow = self.p.slow_rate != 0 && elapsed >= self.p.slow_threshold;
        if failure {
            self.m.failures += 1;
        } else {
            self.m.successes += 1;
        }
        if slow {
            self.m.slow_calls += 1;
        }
        if !self.owns(permit) {
            return None; // stale: counted, decides nothing
        }
        let p = self.p;
        match self.state {
            MState::Closed { failures } => {
                let mut trip = false;
                if p.uses_window() {
                    self.window.push_back((failure, slow));
                    while self.window.len() > p.window {
                        self.window.pop_front();
                    }
                    if failure || slow {
                        let calls = self.window.len() as u64;
                        let f = self.window.iter().filter(|o| o.0).count() as u64;
                        let s = self.window.iter().filter(|o| o.1).count() as u64;
                        trip = self.window.len() >= p.minimum_calls
                            && ((p.failure_rate != 0 && f * 100 >= p.failure_rate * calls)
                                || (p.slow_rate != 0 && s * 100 >= p.slow_rate * calls));
                    }
                }
                let failures = if p.consecutive != 0 && failure {
                    failures + 1
                } else {
                    0
                };
                if p.consecutive != 0 && failures >= p.consecutive {
                    trip = true;
                }
                if trip {
                    self.open(0, now);
                    Some(tr(State::Closed, State::Open, now))
                } else {
                    self.state = MState::Closed { failures };
                    None
                }
            }
            MState::HalfOpen {
                streak,
                in_flight,
                successes,
            } => {
                if failure || slow {
                    self.open((streak + 1).min(MAX_STREAK), now);
                    Some(tr(State::HalfOpen, State::Open, now))
                } else if successes + 1 >= p.close_after {
                    self.install(MState::Closed { failures: 0 });
                    Some(tr(State::HalfOpen, State::Closed, now))
                } else {
                    self.state = MState::HalfOpen {
                        streak,
                        in_flight: in_flight.saturating_sub(1),
                        successes: successes + 1,
                    };
                    None
                }
            }
            MState::Open { .. } | MState::ForcedOpen => unreachable!("owns() is false"),
        }
    }

    fn abandon(&mut self, permit: MPermit) {
        self.m.abandoned += 1;
        if permit.trial && self.owns(permit) {
            if let MState::HalfOpen { in_flight, .. } = &mut self.state {
                *in_flight = in_flight.saturating_sub(1);
            }
        }
    }

    fn force_open(&mut self, now: u64) -> Option<Transition> {
        let from = self.state.kind();
        if from == State::ForcedOpen {
            return None;
        }
        self.install(MState::ForcedOpen);
        Some(tr(from, State::ForcedOpen, now))
    }

    fn force_close(&mut self, now: u64) -> Option<Transition> {
        let from = self.state.kind();
        if from == State::Closed {
            return None;
        }
        self.install(MState::Closed { failures: 0 });
        Some(tr(from, State::Closed, now))
    }

    fn reset(&mut self, now: u64) -> Option<Transition> {
        let from = self.state.kind();
        self.install(MState::Closed { failures: 0 }); // a new generation even when closed
        self.m = Metrics::default();
        (from != State::Closed).then(|| tr(from, State::Closed, now))
    }

    fn state_at(&self, now: u64) -> State {
        match self.state {
            MState::Open { deadline, .. } if now >= deadline => State::HalfOpen,
            s => s.kind(),
        }
    }

    fn deadline(&self) -> Option<u64> {
        match self.state {
            MState::Open { deadline, .. } => Some(deadline),
            _ => None,
        }
    }

    fn snapshot(&self, now: u64) -> Snapshot {
        let (consecutive_failures, half_open_successes, reopen_streak, open_remaining) =
            match self.state {
                MState::Closed { failures } => (failures as u16, 0, 0, None),
                MState::HalfOpen {
                    streak, successes, ..
                } => (0, successes as u8, streak as u8, None),
                MState::Open { streak, deadline } => {
                    (0, 0, streak as u8, Some(us(deadline.saturating_sub(now))))
                }
                MState::ForcedOpen => (0, 0, 0, None),
            };
        let (mut failures, mut slow, mut calls) = (0u64, 0u64, 0u8);
        if let MState::Closed { .. } = self.state {
            for (i, &(f, s)) in self.window.iter().enumerate() {
                failures |= u64::from(f) << i;
                slow |= u64::from(s) << i;
            }
            calls = self.window.len() as u8;
        }
        Snapshot {
            state: self.state.kind(),
            consecutive_failures,
            half_open_successes,
            reopen_streak,
            open_remaining,
            window_calls: calls,
            window_failures: failures,
            window_slow: slow,
            metrics: self.m,
        }
    }

    /// A fresh breaker with the same configuration restored from `s` at `now`
    /// (possibly on another clock): trials in flight are not carried over,
    /// the remaining open time is capped at the open duration of the streak
    /// and rounded up to a tick again (an expired one stays expired).
    fn restored(p: Params, s: &Snapshot, now: u64) -> Self {
        let mut m = Model::new(p);
        m.gen = 1_000_000; // nothing issued by another model can match
        m.m = s.metrics;
        m.state = match s.state {
            State::Closed => {
                let failures = if p.consecutive == 0 {
                    0
                } else {
                    u32::from(s.consecutive_failures)
                };
                for i in 0..s.window_calls {
                    m.window
                        .push_back((s.window_failures >> i & 1 == 1, s.window_slow >> i & 1 == 1));
                }
                MState::Closed { failures }
            }
            State::HalfOpen => MState::HalfOpen {
                streak: u32::from(s.reopen_streak),
                in_flight: 0,
                successes: u32::from(s.half_open_successes),
            },
            State::Open => {
                let streak = u32::from(s.reopen_streak);
                let left = s
                    .open_remaining
                    .expect("open")
                    .as_micros()
                    .min(p.open_duration(streak));
                let deadline = if left == 0 {
                    now / TICK * TICK
                } else {
                    (now + left).div_ceil(TICK) * TICK
                };
                MState::Open { streak, deadline }
            }
            State::ForcedOpen => MState::ForcedOpen,
        };
        m
    }
}

// ---------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Elapsed {
    Zero,
    JustBelow,
    AtThreshold,
    Above(u32),
    Any(u32),
    Max,
}

#[derive(Clone, Copy, Debug)]
enum Adv {
    /// A few ticks.
    Micros(u16),
    Millis(u32),
    /// `open_duration(exp)` ± `jitter` µs.
    NearOpen {
        exp: u8,
        jitter: i16,
    },
    /// To the open deadline ± `jitter` µs (if open; else `|jitter|`).
    ToDeadline(i16),
    /// Hours (plus up to an hour), clamped while open.
    Hours {
        h: u8,
        extra: u32,
    },
}

#[derive(Clone, Copy, Debug)]
enum Rebase {
    /// Restore at the same `now`.
    Same,
    /// Restore on a clock `shift` µs off (saturating at zero).
    Shift(i32),
    /// Restore on a clock reading `origin`.
    Origin(u64),
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Acquire,
    Record {
        idx: Index,
        failure: bool,
        elapsed: Elapsed,
    },
    Drop(Index),
    Advance(Adv),
    ForceOpen,
    ForceClose,
    Reset,
    /// Snapshot, restore into a fresh breaker, continue with that one.
    Restore(Rebase),
}

/// What an operation returned, for either implementation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Obs {
    Nothing,
    Acquired {
        trial: bool,
        transition: Option<Transition>,
    },
    Rejected(Rejected),
    Recorded(Option<Transition>),
    Abandoned,
    Forced(Option<Transition>),
}

fn elapsed_us(e: Elapsed, p: &Params) -> u64 {
    let thr = if p.slow_rate != 0 {
        p.slow_threshold
    } else {
        50_000
    };
    match e {
        Elapsed::Zero => 0,
        Elapsed::JustBelow => thr - 1,
        Elapsed::AtThreshold => thr,
        Elapsed::Above(x) => thr + u64::from(x),
        Elapsed::Any(x) => u64::from(x),
        Elapsed::Max => u64::MAX,
    }
}

/// The next `now`. `deadline` is the stored open deadline, if open: the
/// breaker is never left more than `MAX_IDLE_PAST_DEADLINE` past it.
fn advance(now: u64, a: Adv, p: &Params, deadline: Option<u64>) -> u64 {
    let dt = match a {
        Adv::Micros(x) => u64::from(x),
        Adv::Millis(x) => u64::from(x) * 1_000,
        Adv::NearOpen { exp, jitter } => p
            .open_duration(u32::from(exp))
            .saturating_add_signed(i64::from(jitter)),
        Adv::ToDeadline(j) => match deadline {
            Some(d) => d.saturating_add_signed(i64::from(j)).saturating_sub(now),
            None => u64::from(j.unsigned_abs()),
        },
        Adv::Hours { h, extra } => u64::from(h) * HOUR + u64::from(extra),
    };
    let next = now + dt;
    match deadline {
        Some(d) => next.min((d + MAX_IDLE_PAST_DEADLINE).max(now)),
        None => next,
    }
}

fn rebase(now: u64, r: Rebase) -> u64 {
    match r {
        Rebase::Same => now,
        Rebase::Shift(s) => now.saturating_add_signed(i64::from(s)),
        Rebase::Origin(o) => o,
    }
}

/// Applies a permit/transition operation to a real breaker.
fn core_step<'a>(
    b: &'a CircuitBreaker,
    live: &mut Vec<Permit<'a>>,
    op: Op,
    now: u64,
    p: &Params,
) -> Obs {
    let now_i = at(now);
    match op {
        Op::Acquire => match b.try_acquire(now_i) {
            Ok(permit) => {
                let obs = Obs::Acquired {
                    trial: permit.is_trial(),
                    transition: permit.transition(),
                };
                live.push(permit);
                obs
            }
            Err(r) => Obs::Rejected(r),
        },
        Op::Record {
            idx,
            failure,
            elapsed,
        } => {
            if live.is_empty() {
                return Obs::Nothing;
            }
            let permit = live.remove(idx.index(live.len()));
            let outcome = if failure {
                Outcome::Failure
            } else {
                Outcome::Success
            };
            Obs::Recorded(permit.record(outcome, now_i, us(elapsed_us(elapsed, p))))
        }
        Op::Drop(idx) => {
            if live.is_empty() {
                return Obs::Nothing;
            }
            drop(live.remove(idx.index(live.len())));
            Obs::Abandoned
        }
        Op::ForceOpen => Obs::Forced(b.force_open(now_i)),
        Op::ForceClose => Obs::Forced(b.force_close(now_i)),
        Op::Reset => Obs::Forced(b.reset(now_i)),
        Op::Advance(_) | Op::Restore(_) => unreachable!("handled by the driver"),
    }
}

/// The same on the model.
fn model_step(m: &mut Model, live: &mut Vec<MPermit>, op: Op, now: u64) -> Obs {
    match op {
        Op::Acquire => match m.acquire(now) {
            Ok((permit, transition)) => {
                live.push(permit);
                Obs::Acquired {
                    trial: permit.trial,
                    transition,
                }
            }
            Err(r) => Obs::Rejected(r),
        },
        Op::Record {
            idx,
            failure,
            elapsed,
        } => {
            if live.is_empty() {
                return Obs::Nothing;
            }
            let permit = live.remove(idx.index(live.len()));
            let e = elapsed_us(elapsed, &m.p);
            Obs::Recorded(m.record(permit, failure, now, e))
        }
        Op::Drop(idx) => {
            if live.is_empty() {
                return Obs::Nothing;
            }
            let permit = live.remove(idx.index(live.len()));
            m.abandon(permit);
            Obs::Abandoned
        }
        Op::ForceOpen => Obs::Forced(m.force_open(now)),
        Op::ForceClose => Obs::Forced(m.force_close(now)),
        Op::Reset => Obs::Forced(m.reset(now)),
        Op::Advance(_) | Op::Restore(_) => unreachable!("handled by the driver"),
    }
}

// ---------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------

fn spec_strategy() -> impl Strategy<Value = Spec> {
    let consecutive = prop::option::of(prop_oneof![4 => 1u32..=6, 1 => 1u32..=255]);
    let failure_rate = prop::option::of(prop_oneof![Just(50u8), Just(100u8), 1u8..=100]);
    let slow = prop::option::of((
        1u64..=100_000,
        prop_oneof![Just(50u8), Just(100u8), 1u8..=100],
    ));
    let window = (
        prop::option::weighted(0.8, prop_oneof![3 => 1u8..=8, 1 => 1u8..=64]),
        prop::option::weighted(0.7, any::<u8>()),
    );
    let open_for = prop_oneof![
        3 => 1u64..=3_000,
        3 => 1_000u64..=2 * SEC,
        1 => Just(30 * SEC),
        1 => Just(HOUR),
    ];
    // A multiple of `open_for` (`u64::MAX`: the largest allowed, so that
    // a short `open_for` keeps doubling up to the streak's cap of 15).
    let max_open_for = prop::option::of(prop_oneof![
        5 => 1u64..=64,
        1 => Just(u64::MAX),
    ]);
    let permits = prop_oneof![4 => 1u8..=4, 1 => 1u8..=63];
    let close_after = prop::option::of(prop_oneof![4 => 1u8..=4, 1 => 1u8..=63]);
    (
        (consecutive, failure_rate, slow),
        window,
        (open_for, max_open_for),
        (permits, close_after),
    )
        .prop_filter("some trip condition", |((c, f, s), ..)| {
            c.is_some() || f.is_some() || s.is_some()
        })
        .prop_map(
            |((consecutive, failure_rate, slow), (window, min_sel), (open_for, mult), (hp, ca))| {
                let max = Config::MAX_OPEN_FOR.as_micros();
                let w = window.unwrap_or(64);
                Spec {
                    consecutive,
                    failure_rate,
                    slow,
                    window,
                    minimum_calls: min_sel.map(|m| 1 + m % w),
                    open_for,
                    max_open_for: mult.map(|k| open_for.saturating_mul(k).min(max)),
                    half_open_permits: hp,
                    close_after: ca,
                }
            },
        )
}

/// Per-sequence leanings, so that some sequences are mostly healthy (and
/// close from half-open) and others mostly failing or slow.
#[derive(Clone, Copy, Debug)]
struct Bias {
    /// Weight of failures against successes, out of 10.
    fail: u32,
    /// Weight of slow-or-borderline elapsed times, out of 10.
    slow: u32,
}

fn bias_strategy() -> impl Strategy<Value = Bias> {
    (
        prop_oneof![Just(0u32), Just(1), Just(3), Just(5), Just(8), Just(10)],
        prop_oneof![Just(0u32), Just(2), Just(5)],
    )
        .prop_map(|(fail, slow)| Bias { fail, slow })
}

fn elapsed_strategy(bias: Bias) -> impl Strategy<Value = Elapsed> {
    let fast = 10 - bias.slow;
    prop_oneof![
        fast => prop_oneof![
            Just(Elapsed::Zero),
            Just(Elapsed::JustBelow),
            (0u32..200_000).prop_map(Elapsed::Any),
        ],
        bias.slow => prop_oneof![
            Just(Elapsed::AtThreshold),
            (0u32..100_000).prop_map(Elapsed::Above),
            Just(Elapsed::Max),
        ],
    ]
}

fn adv_strategy() -> impl Strategy<Value = Adv> {
    prop_oneof![
        3 => (0u16..4096).prop_map(Adv::Micros),
        2 => (0u32..10_000).prop_map(Adv::Millis),
        3 => (0u8..=4, -2048i16..=2048).prop_map(|(exp, jitter)| Adv::NearOpen { exp, jitter }),
        3 => (-3000i16..=3000).prop_map(Adv::ToDeadline),
        1 => (1u8..=6, 0u32..3_600_000).prop_map(|(h, extra)| Adv::Hours { h, extra }),
    ]
}

fn rebase_strategy() -> impl Strategy<Value = Rebase> {
    prop_oneof![
        3 => Just(Rebase::Same),
        1 => (-100_000i32..100_000).prop_map(Rebase::Shift),
        1 => (0u64..1 << 38).prop_map(Rebase::Origin),
    ]
}

fn op_strategy(restore: bool, bias: Bias) -> BoxedStrategy<Op> {
    let failure = prop_oneof![10 - bias.fail => Just(false), bias.fail => Just(true)];
    let record =
        (any::<Index>(), failure, elapsed_strategy(bias)).prop_map(|(idx, failure, elapsed)| {
            Op::Record {
                idx,
                failure,
                elapsed,
            }
        });
    // Forced opening is rare and short-lived: it would otherwise starve
    // the interesting states.
    prop_oneof![
        60 => Just(Op::Acquire),
        60 => record,
        12 => any::<Index>().prop_map(Op::Drop),
        40 => adv_strategy().prop_map(Op::Advance),
        1 => Just(Op::ForceOpen),
        3 => Just(Op::ForceClose),
        2 => Just(Op::Reset),
        if restore { 6 } else { 0 } => rebase_strategy().prop_map(Op::Restore),
    ]
    .boxed()
}

/// Two phases with their own leanings (say, an outage, then a recovery).
fn ops_strategy(restore: bool, len: std::ops::Range<usize>) -> impl Strategy<Value = Vec<Op>> {
    let half = len.start / 2..len.end.div_ceil(2);
    (bias_strategy(), bias_strategy())
        .prop_flat_map(move |(first, then)| {
            (
                prop::collection::vec(op_strategy(restore, first), half.clone()),
                prop::collection::vec(op_strategy(restore, then), half.clone()),
            )
        })
        .prop_map(|(mut ops, then)| {
            ops.extend(then);
            ops
        })
}

/// Start anywhere, including just before a wrap of the 26-bit tick clock.
fn start_strategy() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        0u64..1 << 40,
        (WRAP - 20 * SEC)..(WRAP + 20 * SEC),
        (3 * WRAP - HOUR)..(3 * WRAP),
    ]
}

// ---------------------------------------------------------------------------
// Drivers
// ---------------------------------------------------------------------------

fn check(
    b: &CircuitBreaker,
    m: &Model,
    now: u64,
    step: usize,
    op: Option<Op>,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(
        b.state(at(now)),
        m.state_at(now),
        "state() after step {} {:?}; model {:?}",
        step,
        op,
        m.state
    );
    prop_assert_eq!(b.metrics(), m.m, "metrics() after step {} {:?}", step, op);
    prop_assert_eq!(
        b.snapshot(at(now)),
        m.snapshot(now),
        "snapshot() after step {} {:?}; model {:?}",
        step,
        op,
        m.state
    );
    Ok(())
}

/// Runs `ops` on a breaker and on the model, comparing after every step.
fn run_against_model(spec: Spec, start: u64, ops: &[Op]) -> Result<(), TestCaseError> {
    let cfg = spec.config();
    let p = spec.params();
    check_config(&cfg, &p);
    // An arena that outlives every permit: one breaker per restore.
    let restores = ops.iter().filter(|op| matches!(op, Op::Restore(_))).count();
    let arena: Vec<CircuitBreaker> = (0..=restores).map(|_| CircuitBreaker::new(cfg)).collect();
    let mut fresh = arena.iter();
    let mut b = fresh.next().unwrap();
    let mut live: Vec<Permit<'_>> = Vec::new();
    let mut mlive: Vec<MPermit> = Vec::new();
    let mut m = Model::new(p);
    let mut now = start;
    check(b, &m, now, 0, None)?;
    for (step, &op) in ops.iter().enumerate() {
        let step = step + 1;
        match op {
            Op::Advance(a) => now = advance(now, a, &p, m.deadline()),
            Op::Restore(r) => {
                let snap = b.snapshot(at(now));
                let msnap = m.snapshot(now);
                prop_assert_eq!(snap, msnap, "snapshot at step {}", step);
                now = rebase(now, r);
                let next = fresh.next().unwrap();
                prop_assert_eq!(
                    next.restore(&snap, at(now)),
                    Ok(()),
                    "restore at step {}",
                    step
                );
                m = Model::restored(p, &msnap, now);
                // The old breaker's permits only ever touch the old breaker.
                live.clear();
                mlive.clear();
                b = next;
            }
            _ => {
                let got = core_step(b, &mut live, op, now, &p);
                let want = model_step(&mut m, &mut mlive, op, now);
                prop_assert_eq!(
                    got,
                    want,
                    "result of step {} {:?}; model {:?}",
                    step,
                    op,
                    m.state
                );
            }
        }
        check(b, &m, now, step, Some(op))?;
    }
    // Abandon whatever is left, newest first.
    while let Some(permit) = live.pop() {
        drop(permit);
        m.abandon(mlive.pop().unwrap());
        check(b, &m, now, ops.len() + 1, None)?;
    }
    Ok(())
}

/// The stored deadline of a real breaker, tracked from its snapshots.
fn track_deadline(snap: &Snapshot, now: u64, prev: Option<u64>) -> Option<u64> {
    if snap.state != State::Open {
        return None;
    }
    match snap.open_remaining {
        Some(left) if !left.is_zero() => Some(now + left.as_micros()),
        _ => Some(prev.unwrap_or(now)),
    }
}

/// Runs `prefix` on breaker A, drops its permits, restores its snapshot into
/// B at the same `now`, then runs `suffix` on both: they must not differ.
fn run_restore_transparency(
    spec: Spec,
    start: u64,
    prefix: &[Op],
    suffix: &[Op],
) -> Result<(), TestCaseError> {
    let cfg = spec.config();
    let p = spec.params();
    let a = CircuitBreaker::new(cfg);
    let b = CircuitBreaker::new(cfg);
    let mut live_a: Vec<Permit<'_>> = Vec::new();
    let mut live_b: Vec<Permit<'_>> = Vec::new();
    let mut now = start;
    let mut deadline = None;
    for &op in prefix {
        match op {
            Op::Advance(adv) => now = advance(now, adv, &p, deadline),
            Op::Restore(_) => {}
            _ => {
                core_step(&a, &mut live_a, op, now, &p);
            }
        }
        deadline = track_deadline(&a.snapshot(at(now)), now, deadline);
    }
    live_a.clear();
    let snap = a.snapshot(at(now));
    prop_assert_eq!(b.restore(&snap, at(now)), Ok(()));
    prop_assert_eq!(b.snapshot(at(now)), snap, "snapshot round trip");
    for (step, &op) in suffix.iter().enumerate() {
        match op {
            Op::Advance(adv) => now = advance(now, adv, &p, deadline),
            Op::Restore(_) => {}
            _ => {
                let from_a = core_step(&a, &mut live_a, op, now, &p);
                let from_b = core_step(&b, &mut live_b, op, now, &p);
                prop_assert_eq!(from_a, from_b, "step {} {:?}", step, op);
            }
        }
        prop_assert_eq!(a.state(at(now)), b.state(at(now)), "state, step {}", step);
        prop_assert_eq!(a.metrics(), b.metrics(), "metrics, step {}", step);
        let snap = a.snapshot(at(now));
        prop_assert_eq!(snap, b.snapshot(at(now)), "snapshot, step {}", step);
        deadline = track_deadline(&snap, now, deadline);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1024,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn breaker_matches_model(
        spec in spec_strategy(),
        start in start_strategy(),
        ops in ops_strategy(true, 1..300),
    ) {
        run_against_model(spec, start, &ops)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn restore_is_transparent(
        spec in spec_strategy(),
        start in start_strategy(),
        prefix in ops_strategy(false, 0..100),
        suffix in ops_strategy(false, 1..100),
    ) {
        run_restore_transparency(spec, start, &prefix, &suffix)?;
    }
}

// ---------------------------------------------------------------------------
// Targeted deterministic tests
// ---------------------------------------------------------------------------

fn acquire_ok(b: &CircuitBreaker, now: u64) -> Permit<'_> {
    b.try_acquire(at(now)).expect("permitted")
}

fn fail(b: &CircuitBreaker, now: u64) -> Option<Transition> {
    acquire_ok(b, now).record(Outcome::Failure, at(now), Duration::ZERO)
}

fn succeed(b: &CircuitBreaker, now: u64) -> Option<Transition> {
    acquire_ok(b, now).record(Outcome::Success, at(now), Duration::ZERO)
}

fn retry_after(b: &CircuitBreaker, now: u64) -> Option<Duration> {
    let r = b.try_acquire(at(now)).expect_err("rejected");
    assert_eq!(r.state, State::Open);
    r.retry_after
}

/// A snapshot restored on a clock with another origin (shifted by whole
/// ticks) behaves exactly like the original, transition times shifted.
#[test]
fn restore_on_another_clock_reproduces_the_future() {
    let cfg = Config::builder()
        .consecutive_failures(3)
        .failure_rate(50)
        .slow_call(Duration::from_millis(100), 50)
        .window(6)
        .minimum_calls(4)
        .open_for(Duration::from_millis(250))
        .max_open_for(Duration::from_secs(2))
        .half_open_permits(2)
        .close_after(2)
        .build()
        .unwrap();
    let a = CircuitBreaker::new(cfg);
    let t0 = 123_456_789;
    // Open, fail a trial (streak 1), wait half of the 500 ms.
    for _ in 0..3 {
        fail(&a, t0);
    }
    let t1 = t0 + 300_000;
    let trial = acquire_ok(&a, t1);
    assert!(trial.transition().is_some());
    trial.record(Outcome::Failure, at(t1), Duration::ZERO);
    let t2 = t1 + 250_000;
    let snap = a.snapshot(at(t2));
    assert_eq!(snap.state, State::Open);
    assert_eq!(snap.reopen_streak, 1);

    let shift = 977 * TICK; // both clocks agree on tick boundaries
    let b = CircuitBreaker::new(cfg);
    b.restore(&snap, at(t2 - shift)).unwrap();
    assert_eq!(b.snapshot(at(t2 - shift)), snap);

    let script: &[(u64, Option<bool>)] = &[
        (0, Some(true)),        // rejected: still open
        (249_000, Some(true)),  // rejected
        (260_000, Some(false)), // trial succeeds (1 of 2)
        (260_000, Some(false)), // second trial succeeds: closed
        (270_000, Some(true)),
        (270_000, Some(false)),
        (270_000, Some(true)),
        (270_000, Some(true)), // 3 of 4 failed (min 4, 50 %): open, 250 ms
        (400_000, None),
        (600_000, Some(true)), // trial fails: 500 ms
        (1_000_000, None),
        (1_200_000, Some(false)),
    ];
    for &(dt, call) in script {
        let (na, nb) = (t2 + dt, t2 - shift + dt);
        assert_eq!(a.state(at(na)), b.state(at(nb)), "at +{dt}");
        if let Some(failure) = call {
            let outcome = if failure {
                Outcome::Failure
            } else {
                Outcome::Success
            };
            match (a.try_acquire(at(na)), b.try_acquire(at(nb))) {
                (Ok(pa), Ok(pb)) => {
                    let shifted = |t: Option<Transition>| {
                        t.map(|t| Transition {
                            at: at(t.at.as_micros() - shift),
                            ..t
                        })
                    };
                    assert_eq!(shifted(pa.transition()), pb.transition());
                    let ta = pa.record(outcome, at(na), Duration::from_millis(1));
                    let tb = pb.record(outcome, at(nb), Duration::from_millis(1));
                    assert_eq!(shifted(ta), tb, "at +{dt}");
                }
                (Err(ra), Err(rb)) => assert_eq!(ra, rb, "at +{dt}"),
                (x, y) => panic!("at +{dt}: {x:?} vs {y:?}"),
            }
        }
        assert_eq!(a.metrics(), b.metrics());
        assert_eq!(a.snapshot(at(na)), b.snapshot(at(nb)));
    }
    assert_eq!(a.metrics().trips, 4);
}

/// Open deadlines are rounded up to 1.024 ms ticks, never early.
#[test]
fn deadlines_round_up_to_ticks() {
    let cfg = Config::builder()
        .consecutive_failures(1)
        .open_for(us(1))
        .build()
        .unwrap();
    let b = CircuitBreaker::new(cfg);
    assert_eq!(fail(&b, 5), Some(tr(State::Closed, State::Open, 5)));
    assert_eq!(retry_after(&b, 5), Some(us(TICK - 5)));
    assert_eq!(retry_after(&b, TICK - 1), Some(us(1)));
    assert_eq!(b.state(at(TICK)), State::HalfOpen);
    let trial = acquire_ok(&b, TICK);
    assert_eq!(
        trial.transition(),
        Some(tr(State::Open, State::HalfOpen, TICK))
    );
    // A trip exactly on a tick boundary adds no rounding.
    assert_eq!(
        trial.record(Outcome::Failure, at(TICK), Duration::ZERO),
        Some(tr(State::HalfOpen, State::Open, TICK))
    );
    // streak 1, but max_open_for defaults to open_for: 1 µs -> 1 tick.
    assert_eq!(retry_after(&b, TICK), Some(us(TICK)));
}

/// The open time doubles per re-opening from half-open, caps at
/// `max_open_for`, the streak saturates at 15, and closing resets it.
#[test]
fn open_time_grows_caps_and_resets() {
    let open_for = 10 * TICK;
    let cfg = Config::builder()
        .consecutive_failures(1)
        .open_for(us(open_for))
        .max_open_for(us(open_for << 20)) // above 2^15: the streak caps first
        .build()
        .unwrap();
    let b = CircuitBreaker::new(cfg);
    let mut now = 0;
    fail(&b, now);
    for streak in 1..=20u32 {
        now += retry_after(&b, now).unwrap().as_micros();
        fail(&b, now);
        let expected = open_for << streak.min(MAX_STREAK);
        assert_eq!(retry_after(&b, now), Some(us(expected)), "streak {streak}");
        assert_eq!(
            b.snapshot(at(now)).reopen_streak,
            streak.min(MAX_STREAK) as u8
        );
    }
    now += retry_after(&b, now).unwrap().as_micros();
    assert!(succeed(&b, now).is_some_and(|t| t.to == State::Closed));
    fail(&b, now);
    assert_eq!(retry_after(&b, now), Some(us(open_for)));
    assert_eq!(b.metrics().trips, 22);
}

/// Permits outlive transitions: counted, never deciding.
#[test]
fn stale_permits_are_counted_but_decide_nothing() {
    let cfg = Config::builder()
        .consecutive_failures(2)
        .open_for(Duration::from_secs(1))
        .half_open_permits(2)
        .close_after(1)
        .build()
        .unwrap();
    let b = CircuitBreaker::new(cfg);
    let closed = acquire_ok(&b, 0);
    fail(&b, 0); // one failure in a row
    assert_eq!(b.reset(at(0)), None); // closed: no transition, but a new generation
    assert_eq!(closed.record(Outcome::Failure, at(0), Duration::ZERO), None);
    assert_eq!(b.snapshot(at(0)).consecutive_failures, 0);
    assert_eq!(b.metrics().failures, 1);

    fail(&b, 0);
    assert!(fail(&b, 0).is_some());
    let t = 2 * SEC;
    let t1 = acquire_ok(&b, t);
    let t2 = acquire_ok(&b, t);
    assert!(b.try_acquire(at(t)).is_err());
    assert_eq!(
        b.force_open(at(t)),
        Some(tr(State::HalfOpen, State::ForcedOpen, t))
    );
    assert_eq!(
        b.force_close(at(t)),
        Some(tr(State::ForcedOpen, State::Closed, t))
    );
    // Trials of the old half-open generation: counted, no state change.
    assert_eq!(t1.record(Outcome::Failure, at(t), Duration::ZERO), None);
    drop(t2);
    assert_eq!(b.state(at(t)), State::Closed);
    let m = b.metrics();
    assert_eq!((m.failures, m.abandoned, m.rejected, m.trips), (4, 1, 1, 1));
}

/// Documents the wrap horizon: the deadline is kept modulo 2^26 ticks
/// (≈ 19 h 5 min), so a breaker left open and unasked for a whole multiple
/// of that reads as open again, for at most one more open period.
#[test]
fn idle_beyond_the_wrap_horizon() {
    let open_for = 30 * SEC;
    let cfg = Config::builder()
        .consecutive_failures(1)
        .open_for(us(open_for))
        .build()
        .unwrap();
    let b = CircuitBreaker::new(cfg);
    let t0 = 7 * SEC;
    fail(&b, t0);
    let deadline = t0 + retry_after(&b, t0).unwrap().as_micros();
    assert_eq!(deadline % TICK, 0);
    // Anywhere from the deadline up to ~19 h later: expired.
    for idle in [0, 1, HOUR, 10 * HOUR, 18 * HOUR, WRAP - open_for - 2 * SEC] {
        assert_eq!(b.state(at(deadline + idle)), State::HalfOpen, "idle {idle}");
    }
    // Exactly one wrap later, minus 10 s: reads as open with 10 s left.
    let late = deadline + WRAP - 10 * SEC;
    assert_eq!(b.state(at(late)), State::Open);
    assert_eq!(retry_after(&b, late), Some(us(10 * SEC)));
    // And expires again at the wrapped deadline.
    let trial = acquire_ok(&b, deadline + WRAP);
    assert!(trial.is_trial());
    assert_eq!(
        trial.transition(),
        Some(tr(State::Open, State::HalfOpen, deadline + WRAP))
    );
}

/// CORE BUG, found by `breaker_matches_model`: a breaker whose open time is
/// `Config::MAX_OPEN_FOR` cannot restore its own snapshot taken within one
/// tick of the trip.
///
/// The deadline is rounded *up* to a 1.024 ms tick, so `snapshot` reports
/// `open_remaining` = `MAX_OPEN_FOR` + up to 1 023 µs, and `restore` checks
/// `left <= MAX_OPEN_FOR` *before* capping `left` at the configuration's
/// open duration (which its docs say it does: "an open time longer than
/// this configuration allows is shortened to it"), so it refuses with
/// `SnapshotError::OpenRemaining`.
#[test]
fn restore_accepts_a_snapshot_taken_just_after_a_max_open_for_trip() {
    let cfg = Config::builder()
        .consecutive_failures(1)
        .open_for(Config::MAX_OPEN_FOR)
        .build()
        .unwrap();
    let a = CircuitBreaker::new(cfg);
    fail(&a, 1); // not on a tick boundary: the deadline rounds up 1 023 µs
    let snap = a.snapshot(at(1));
    assert_eq!(
        snap.open_remaining,
        Some(us(Config::MAX_OPEN_FOR.as_micros() + TICK - 1))
    );
    let b = CircuitBreaker::new(cfg);
    assert_eq!(b.restore(&snap, at(1)), Ok(())); // actual: Err(OpenRemaining)
    assert_eq!(b.snapshot(at(1)), snap);
}

/// Restoring into a breaker with another configuration: a larger window
/// keeps its newest outcomes, a longer open time is shortened, and an
/// invalid snapshot changes nothing (outstanding permits stay current).
#[test]
fn restore_into_another_configuration() {
    let wide = Config::builder()
        .consecutive_failures(5)
        .failure_rate(50)
        .window(8)
        .open_for(Duration::from_secs(10))
        .build()
        .unwrap();
    let narrow = Config::builder()
        .consecutive_failures(2)
        .failure_rate(50)
        .window(3)
        .open_for(Duration::from_secs(2))
        .build()
        .unwrap();
    let a = CircuitBreaker::new(wide);
    // Oldest first: F S F S S S S F (3 of 8 failed: below 50 %).
    let outcomes = [true, false, true, false, false, false, false, true];
    for (i, failure) in outcomes.into_iter().enumerate() {
        let t = if failure {
            fail(&a, i as u64)
        } else {
            succeed(&a, i as u64)
        };
        assert_eq!(t, None);
    }
    let snap = a.snapshot(at(10));
    assert_eq!((snap.window_calls, snap.window_failures), (8, 0b1000_0101));
    assert_eq!(snap.consecutive_failures, 1);

    let b = CircuitBreaker::new(narrow);
    b.restore(&snap, at(10)).unwrap();
    let restored = b.snapshot(at(10));
    assert_eq!(
        (restored.window_calls, restored.window_failures),
        (3, 0b100),
        "newest three: S S F"
    );
    // One more failure: 2 of the last 3 (S F F) -> over 50 %, and 2 in a row.
    assert!(fail(&b, 11).is_some_and(|t| t.to == State::Open));

    // An open time longer than `narrow` allows is shortened to it.
    let mut now = 20;
    while a.state(at(now)) == State::Closed {
        fail(&a, now);
        now += 1;
    }
    let snap = a.snapshot(at(now));
    assert!(snap.open_remaining.unwrap() > Duration::from_secs(9));
    let c = CircuitBreaker::new(narrow);
    c.restore(&snap, at(TICK)).unwrap();
    assert_eq!(
        retry_after(&c, TICK),
        Some(Duration::from_secs(2) + us(TICK - 2_000_000 % TICK))
    );

    // A closed snapshot with more failures in a row than `narrow` trips at
    // is refused, and nothing changes.
    let a = CircuitBreaker::new(wide);
    for i in 0..3 {
        fail(&a, i);
    }
    let d = CircuitBreaker::new(narrow);
    let permit = acquire_ok(&d, 0);
    assert_eq!(fail(&d, 0), None);
    let before = d.snapshot(at(0));
    assert_eq!(
        d.restore(&a.snapshot(at(5)), at(5)),
        Err(fusebox::SnapshotError::ConsecutiveFailures(3))
    );
    assert_eq!(d.snapshot(at(5)), before);
    // The permit is still current: its failure is the second in a row.
    assert_eq!(
        permit.record(Outcome::Failure, at(6), Duration::ZERO),
        Some(tr(State::Closed, State::Open, 6))
    );
}

/// Regression: the window is tagged with the closed generation that wrote
/// it, so after exactly 16 384 installs without a closed-state record in
/// between, a new closed generation used to carry the *old* window's tag and
/// resume its outcomes. Installing a closed word now restarts the window.
#[test]
fn window_starts_empty_after_a_generation_wrap() {
    let cfg = Config::builder()
        .failure_rate(50)
        .window(4)
        .minimum_calls(2)
        .build()
        .unwrap();
    let b = CircuitBreaker::new(cfg);
    assert_eq!(fail(&b, 0), None); // window: [F], 1 call < minimum 2
    for _ in 0..8_192 {
        b.force_open(at(0)).unwrap();
        b.force_close(at(0)).unwrap();
    }
    // force_close installed a new closed generation: the window is empty...
    assert_eq!(b.snapshot(at(0)).window_calls, 0);
    // ...so one failure is 1 call, below minimum_calls: no trip.
    assert_eq!(fail(&b, 0), None);
}
