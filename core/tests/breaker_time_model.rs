//! Model-based tests of the time-based window and the half-open timeout,
//! against a sequential reference model written from the documented
//! contract (`ConfigBuilder::time_window`, `failure_count`, `max_half_open`,
//! `Rejected::transition`, `CircuitBreaker::state`, and the "Time window"
//! and "Half-open timeout" sections of `CircuitBreaker`), not from
//! `core/src/breaker/timed.rs` or `half_open.rs`.
//!
//! The model keeps a plain list of `(interval, failure, slow)` events of the
//! current closed period and the newest interval any record reached, and
//! evaluates the rules after every record:
//!
//! 1. A closed record that is counted (a failure, a slow call with the slow
//!    policy on, or any outcome when a rate policy is on; ignored outcomes
//!    and stale permits never are) at `now` goes to interval
//!    `max(⌊now / L⌋, newest)`, `L = ⌊total / buckets⌋`, and `newest`
//!    becomes that interval (`newest` is forgotten only by `reset`, which
//!    returns the breaker to its initial state).
//!    With 32-bit words (Cortex-M) `newest` keeps 31 bits: an interval up
//!    to 2²⁰ behind it (modulo 2³¹) reads as stale, counted in `newest`;
//!    any other reads as later.
//! 2. The window at `newest` holds the events whose interval is less than
//!    `buckets` intervals before it, each interval's counts capped at
//!    [`TIME_BUCKET_CAP`]. It opens when its failures reach `failure_count`,
//!    or when it holds `minimum_calls` calls and `failures·100 ≥ rate·calls`
//!    (or the same for slow calls).
//! 3. Entering Closed (a closing trial, `force_close`, `reset`) empties the
//!    window.
//! 4. Half-open entered at `e` times out at `ceil_tick(e + max_half_open)`:
//!    from then, `state` reads Open, and the next `try_acquire` or current
//!    trial record reopens it (streak + 1, fresh open time, a trip) and
//!    returns the HalfOpen → Open transition (in `Rejected::transition` for
//!    `try_acquire`); the trial's outcome is counted but decides nothing.
//!
//! Histories run to thousands of steps with jumps from microseconds to 60
//! days while closed (past the interval tags' 2^16 range, `u32`
//! microseconds and the 26-bit deadline range), and stale clocks: up to
//! 10 min while closed (rule 1: an old clock never expires newer
//! failures), up to ~1 s otherwise (the documented tolerance).
#![cfg(all(feature = "time-window", feature = "half-open-timeout", not(miri)))]

use fusebox::breaker::TIME_BUCKET_CAP;
use fusebox::breaker::{Config, Metrics, Outcome, Permit, State, Transition};
use fusebox::{CircuitBreaker, Duration, Instant};
use proptest::prelude::*;

/// Whether this build keeps the breaker's words 32 bits wide (Cortex-M, or
/// a host built with `--cfg fusebox_narrow_words`).
const NARROW: bool = !cfg!(target_has_atomic = "64") || cfg!(fusebox_narrow_words);

const TICK: u64 = 1024;
const MS: u64 = 1_000;
const SEC: u64 = 1_000_000;
const HOUR: u64 = 3_600 * SEC;
const DAY: u64 = 24 * HOUR;

fn at(us: u64) -> Instant {
    Instant::from_micros(us)
}

fn ceil_tick(t: u64) -> u64 {
    t.div_ceil(TICK) * TICK
}

fn tr(from: State, to: State, now: u64) -> Transition {
    Transition {
        from,
        to,
        at: at(now),
    }
}

#[derive(Clone, Copy, Debug)]
struct Spec {
    interval: u64,
    extra: u64,
    buckets: u8,
    failure_count: Option<u32>,
    failure_rate: Option<u8>,
    slow: Option<(u64, u8)>,
    minimum_calls: Option<u8>,
    open_for: u64,
    growth: Option<u32>,
    permits: u8,
    close_after: Option<u8>,
    max_half_open: Option<u64>,
}

impl Spec {
    fn total(&self) -> u64 {
        self.interval * u64::from(self.buckets) + self.extra
    }

    fn config(&self) -> Config {
        let mut b = Config::builder()
            .time_window(Duration::from_micros(self.total()), self.buckets)
            .open_for(Duration::from_micros(self.open_for))
            .half_open_permits(self.permits);
        if let Some(n) = self.failure_count {
            b = b.failure_count(n);
        }
        if let Some(p) = self.failure_rate {
            b = b.failure_rate(p);
        }
        if let Some((t, p)) = self.slow {
            b = b.slow_call(Duration::from_micros(t), p);
        }
        if let Some(m) = self.minimum_calls {
            b = b.minimum_calls(m);
        }
        if let Some(g) = self.growth {
            b = b.max_open_for(Duration::from_micros(self.open_for << g));
        }
        if let Some(n) = self.close_after {
            b = b.close_after(n);
        }
        if let Some(m) = self.max_half_open {
            b = b.max_half_open(Duration::from_micros(m));
        }
        b.build().expect("generated configs are valid")
    }

    /// `open_for · 2^streak` capped at `max_open_for`, both kept rounded
    /// up to a multiple of 8 µs (`Config::open_for`).
    fn open_duration(&self, streak: u32) -> u64 {
        let round = |us: u64| us.div_ceil(8) * 8;
        let open_for = round(self.open_for);
        let max = round(self.open_for << self.growth.unwrap_or(0));
        (u128::from(open_for) << streak).min(u128::from(max)) as u64
    }
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        (
            prop_oneof![1_000u64..20 * MS, 20 * MS..5 * SEC],
            0u64..16,
            prop::sample::select(vec![1u8, 2, 4, 8, 16]),
            prop::option::of(1u32..12),
            prop::option::of(1u8..=100),
            prop::option::of((1u64..40 * MS, 1u8..=100)),
            prop::option::weighted(0.9, 1u8..30),
        ),
        (
            prop_oneof![1u64..50 * MS, 50 * MS..30 * SEC],
            prop::option::of(0u32..6),
            1u8..4,
            prop::option::of(1u8..4),
            prop::option::of(prop_oneof![1u64..200 * MS, 200 * MS..HOUR]),
        ),
    )
        .prop_map(
            |(
                (interval, extra, buckets, count, rate, slow, min),
                (open_for, growth, permits, close_after, max_ho),
            )| {
                let (extra, count) = (extra % u64::from(buckets), count);
                let count = if count.is_none() && rate.is_none() && slow.is_none() {
                    Some(3)
                } else {
                    count
                };
                Spec {
                    interval,
                    extra,
                    buckets,
                    failure_count: count,
                    failure_rate: rate,
                    slow,
                    minimum_calls: min,
                    open_for,
                    growth,
                    permits,
                    close_after,
                    max_half_open: max_ho,
                }
            },
        )
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
    Closed,
    Open {
        deadline: u64,
        streak: u32,
    },
    HalfOpen {
        streak: u32,
        in_flight: u32,
        successes: u32,
        timeout: Option<u64>,
    },
    Forced,
}

#[derive(Clone, Copy, Debug)]
struct MPermit {
    gen: u64,
    trial: bool,
}

struct Model {
    s: Spec,
    phase: Phase,
    gen: u64,
    newest: Option<u64>,
    events: Vec<(u64, bool, bool)>,
    m: Metrics,
}

impl Model {
    fn enter(&mut self, phase: Phase) {
        self.gen += 1;
        if phase == Phase::Closed {
            self.events.clear();
        }
        self.phase = phase;
    }

    fn open(&mut self, streak: u32, now: u64) {
        let deadline = ceil_tick(now + self.s.open_duration(streak));
        self.enter(Phase::Open { deadline, streak });
        self.m.trips += 1;
    }

    fn timed_out(&self, now: u64) -> bool {
        matches!(self.phase, Phase::HalfOpen { timeout: Some(t), .. } if now >= t)
    }

    fn reopen(&mut self, now: u64) -> Transition {
        let Phase::HalfOpen { streak, .. } = self.phase else {
            unreachable!()
        };
        self.open((streak + 1).min(15), now);
        tr(State::HalfOpen, State::Open, now)
    }

    fn state(&self, now: u64) -> State {
        match self.phase {
            Phase::Closed => State::Closed,
            Phase::Forced => State::ForcedOpen,
            Phase::Open { deadline, .. } if now < deadline => State::Open,
            Phase::HalfOpen { .. } if self.timed_out(now) => State::Open,
            Phase::Open { .. } | Phase::HalfOpen { .. } => State::HalfOpen,
        }
    }

    /// `Ok((permit, transition))` or `Err((state, retry_after, transition))`.
    #[allow(clippy::type_complexity)]
    fn acquire(
        &mut self,
        now: u64,
    ) -> Result<(MPermit, Option<Transition>), (State, Option<u64>, Option<Transition>)> {
        match self.phase {
            Phase::Closed => Ok((
                MPermit {
                    gen: self.gen,
                    trial: false,
                },
                None,
            )),
            Phase::Forced => {
                self.m.rejected += 1;
                Err((State::ForcedOpen, None, None))
            }
            Phase::Open { deadline, .. } if now < deadline => {
                self.m.rejected += 1;
                Err((State::Open, Some(deadline - now), None))
            }
            Phase::Open { streak, .. } => {
                let timeout = self.s.max_half_open.map(|m| ceil_tick(now + m));
                self.enter(Phase::HalfOpen {
                    streak,
                    in_flight: 1,
                    successes: 0,
                    timeout,
                });
                let t = tr(State::Open, State::HalfOpen, now);
                Ok((
                    MPermit {
                        gen: self.gen,
                        trial: true,
                    },
                    Some(t),
                ))
            }
            Phase::HalfOpen { .. } if self.timed_out(now) => {
                let t = self.reopen(now);
                self.m.rejected += 1;
                let Phase::Open { deadline, .. } = self.phase else {
                    unreachable!()
                };
                Err((State::Open, Some(deadline - now), Some(t)))
            }
            Phase::HalfOpen {
                streak,
                in_flight,
                successes,
                timeout,
            } => {
                if in_flight >= u32::from(self.s.permits) {
                    self.m.rejected += 1;
                    return Err((State::HalfOpen, None, None));
                }
                self.phase = Phase::HalfOpen {
                    streak,
                    in_flight: in_flight + 1,
                    successes,
                    timeout,
                };
                Ok((
                    MPermit {
                        gen: self.gen,
                        trial: true,
                    },
                    None,
                ))
            }
        }
    }

    fn current(&self, p: MPermit) -> bool {
        p.gen == self.gen
            && matches!(
                (self.phase, p.trial),
                (Phase::Closed, false) | (Phase::HalfOpen { .. }, true)
            )
    }

    fn release(&mut self, p: MPermit) {
        if p.trial && self.current(p) {
            if let Phase::HalfOpen { in_flight, .. } = &mut self.phase {
                *in_flight = in_flight.saturating_sub(1);
            }
        }
    }

    fn record(
        &mut self,
        permit: MPermit,
        outcome: Outcome,
        now: u64,
        elapsed: u64,
    ) -> Option<Transition> {
        let s = self.s;
        if outcome == Outcome::Ignored {
            self.m.ignored += 1;
            self.release(permit);
            return None;
        }
        let failure = outcome == Outcome::Failure;
        let slow = s.slow.is_some_and(|(t, _)| elapsed >= t);
        if failure {
            self.m.failures += 1;
        } else {
            self.m.successes += 1;
        }
        if slow {
            self.m.slow_calls += 1;
        }
        if !self.current(permit) {
            return None;
        }
        if permit.trial {
            if self.timed_out(now) {
                return Some(self.reopen(now));
            }
            let Phase::HalfOpen {
                streak,
                in_flight,
                successes,
                timeout,
            } = self.phase
            else {
                unreachable!()
            };
            if failure || slow {
                self.open((streak + 1).min(15), now);
                return Some(tr(State::HalfOpen, State::Open, now));
            }
            let close_after = u32::from(s.close_after.unwrap_or(s.permits));
            if successes + 1 >= close_after {
                self.enter(Phase::Closed);
                return Some(tr(State::HalfOpen, State::Closed, now));
            }
            self.phase = Phase::HalfOpen {
                streak,
                in_flight: in_flight - 1,
                successes: successes + 1,
                timeout,
            };
            return None;
        }
        let rates = s.failure_rate.is_some() || s.slow.is_some();
        if !(failure || slow || rates) {
            return None;
        }
        let interval = now / (s.total() / u64::from(s.buckets));
        let j = match self.newest {
            None => interval,
            // With 32-bit words `newest` keeps 31 bits of interval: an
            // interval up to 2²⁰ behind it (modulo 2³¹) reads as stale,
            // counted in `newest`; any other reads as later (the docs' "on
            // Cortex-M ... a `now` more than 2²⁰ intervals behind the newest
            // ... reads as later"). The model counts in intervals as the
            // window sees them, congruent to the real ones modulo 2³¹.
            Some(newest) if NARROW => match interval.wrapping_sub(newest) & ((1 << 31) - 1) {
                d @ 1..0x7FF0_0000 => newest + d,
                _ => newest,
            },
            Some(newest) => interval.max(newest),
        };
        self.newest = Some(j);
        self.events.push((j, failure, slow));
        let b = u64::from(s.buckets);
        let (mut calls, mut fails, mut slows) = (0u64, 0u64, 0u64);
        for i in j.saturating_sub(b - 1)..=j {
            let mut c = (0u64, 0u64, 0u64);
            for &(_, f, sl) in self.events.iter().filter(|e| e.0 == i) {
                c = (c.0 + 1, c.1 + u64::from(f), c.2 + u64::from(sl));
            }
            let cap = u64::from(TIME_BUCKET_CAP);
            calls += c.0.min(cap);
            fails += c.1.min(cap);
            slows += c.2.min(cap);
        }
        // Keep the list short: older events can never count again.
        self.events.retain(|e| e.0 + b > j);
        let counted = s.failure_count.is_some_and(|n| fails >= u64::from(n));
        let min = u64::from(s.minimum_calls.unwrap_or(100));
        let over = |n: u64, p: Option<u8>| p.is_some_and(|p| n * 100 >= u64::from(p) * calls);
        let rated =
            calls >= min && (over(fails, s.failure_rate) || over(slows, s.slow.map(|x| x.1)));
        if counted || rated {
            self.open(0, now);
            return Some(tr(State::Closed, State::Open, now));
        }
        None
    }
}

#[derive(Clone, Debug)]
enum Op {
    /// Forward by a fraction (‰) of the window's span.
    Step(u64),
    Tick(u64),
    /// Acquire and record at once.
    Call {
        outcome: Outcome,
        elapsed: u64,
        stale: u64,
    },
    Acquire(u64),
    Record {
        idx: usize,
        outcome: Outcome,
        elapsed: u64,
        stale: u64,
    },
    Drop(usize),
    State(u64),
    Reset,
    ForceOpen,
    ForceClose,
}

fn op() -> impl Strategy<Value = Op> {
    let stale = prop_oneof![8 => Just(0u64), 2 => 0u64..SEC, 1 => 0u64..600 * SEC];
    let outcome = prop_oneof![
        5 => Just(Outcome::Failure),
        6 => Just(Outcome::Success),
        1 => Just(Outcome::Ignored)
    ];
    prop_oneof![
        20 => prop_oneof![0u64..300, 0u64..3_000].prop_map(Op::Step),
        4 => prop_oneof![
            4 => 0u64..10 * MS,
            4 => 0u64..10 * SEC,
            2 => 10 * SEC..10 * 60 * SEC,
            1 => HOUR..60 * DAY
        ]
        .prop_map(Op::Tick),
        40 => (outcome.clone(), 0u64..60 * MS, stale.clone())
            .prop_map(|(outcome, elapsed, stale)| Op::Call { outcome, elapsed, stale }),
        30 => stale.clone().prop_map(Op::Acquire),
        30 => (any::<usize>(), outcome, 0u64..60 * MS, stale.clone())
            .prop_map(|(idx, outcome, elapsed, stale)| Op::Record { idx, outcome, elapsed, stale }),
        4 => any::<usize>().prop_map(Op::Drop),
        5 => stale.prop_map(Op::State),
        1 => Just(Op::Reset),
        1 => Just(Op::ForceOpen),
        1 => Just(Op::ForceClose),
    ]
}

/// Runs `ops` against the breaker and the model, comparing every answer.
#[allow(clippy::too_many_lines)] // one match arm per operation
fn run(spec: Spec, ops: &[Op], start: u64) {
    let breaker = CircuitBreaker::new(spec.config());
    let mut model = Model {
        s: spec,
        phase: Phase::Closed,
        gen: 0,
        newest: None,
        events: Vec::new(),
        m: Metrics::default(),
    };
    let mut permits: Vec<(Permit<'_>, MPermit)> = Vec::new();
    let mut clock = start;
    for (step, op) in ops.iter().enumerate() {
        // Stale readings: up to 10 min while closed, inside the documented
        // ~1 s tolerance otherwise.
        let reading = |stale: u64, model: &Model, clock: u64| {
            let stale = if model.phase == Phase::Closed {
                stale
            } else {
                stale.min(SEC - 8 * TICK)
            };
            clock.saturating_sub(stale)
        };
        match *op {
            Op::Step(_) | Op::Tick(_) => {
                let d = match *op {
                    Op::Step(permille) => spec.total() * permille / 1_000,
                    Op::Tick(d) => d,
                    _ => unreachable!(),
                };
                // Open and timed half-open deadlines are wrapped: stay well
                // inside the documented idle range past them.
                let limit = match model.phase {
                    Phase::Open { deadline, .. } => deadline + 8 * HOUR,
                    Phase::HalfOpen {
                        timeout: Some(t), ..
                    } => t + 2 * HOUR,
                    _ => u64::MAX,
                };
                clock = (clock + d).min(limit.max(clock));
            }
            Op::Call {
                outcome,
                elapsed,
                stale,
            } => {
                let now = reading(stale, &model, clock);
                let got = breaker.try_acquire(at(now));
                let want = model.acquire(now);
                match (got, want) {
                    (Ok(p), Ok((mp, t))) => {
                        assert_eq!(p.transition(), t, "step {step}: transition");
                        let got = p.record(outcome, at(now), Duration::from_micros(elapsed));
                        let want = model.record(mp, outcome, now, elapsed);
                        assert_eq!(got, want, "step {step} at {now}: call {outcome:?}");
                    }
                    (Err(r), Err((state, retry, t))) => {
                        assert_eq!(
                            (r.state, r.retry_after, r.transition),
                            (state, retry.map(Duration::from_micros), t),
                            "step {step}"
                        );
                    }
                    (got, want) => panic!("step {step} at {now}: breaker {got:?}, model {want:?}"),
                }
            }
            Op::Acquire(stale) => {
                let now = reading(stale, &model, clock);
                let got = breaker.try_acquire(at(now));
                let want = model.acquire(now);
                match (got, want) {
                    (Ok(p), Ok((mp, t))) => {
                        assert_eq!(p.transition(), t, "step {step}: transition");
                        assert_eq!(p.is_trial(), mp.trial, "step {step}");
                        permits.push((p, mp));
                    }
                    (Err(r), Err((state, retry, t))) => {
                        assert_eq!(r.state, state, "step {step}: rejected state");
                        assert_eq!(
                            r.retry_after,
                            retry.map(Duration::from_micros),
                            "step {step}: retry_after"
                        );
                        assert_eq!(r.transition, t, "step {step}: rejection transition");
                    }
                    (got, want) => panic!("step {step} at {now}: breaker {got:?}, model {want:?}"),
                }
            }
            Op::Record {
                idx,
                outcome,
                elapsed,
                stale,
            } => {
                if permits.is_empty() {
                    continue;
                }
                let now = reading(stale, &model, clock);
                let (p, mp) = permits.swap_remove(idx % permits.len());
                let got = p.record(outcome, at(now), Duration::from_micros(elapsed));
                let want = model.record(mp, outcome, now, elapsed);
                assert_eq!(
                    got, want,
                    "step {step} at {now}: record {outcome:?} of {mp:?}"
                );
            }
            Op::Drop(idx) => {
                if permits.is_empty() {
                    continue;
                }
                let (p, mp) = permits.swap_remove(idx % permits.len());
                drop(p);
                model.m.abandoned += 1;
                model.release(mp);
            }
            Op::State(stale) => {
                let now = reading(stale, &model, clock);
                assert_eq!(
                    breaker.state(at(now)),
                    model.state(now),
                    "step {step} at {now}: state"
                );
            }
            Op::Reset => {
                let was = model.phase;
                let got = breaker.reset(at(clock));
                model.enter(Phase::Closed);
                model.newest = None;
                model.m = Metrics::default();
                let want = (was != Phase::Closed).then(|| tr(state_of(was), State::Closed, clock));
                assert_eq!(got, want, "step {step}: reset");
            }
            Op::ForceOpen => {
                let was = model.phase;
                let got = breaker.force_open(at(clock));
                let want = (was != Phase::Forced).then(|| {
                    model.enter(Phase::Forced);
                    tr(state_of(was), State::ForcedOpen, clock)
                });
                assert_eq!(got, want, "step {step}: force_open");
            }
            Op::ForceClose => {
                let was = model.phase;
                let got = breaker.force_close(at(clock));
                let want = (was != Phase::Closed).then(|| {
                    model.enter(Phase::Closed);
                    tr(state_of(was), State::Closed, clock)
                });
                assert_eq!(got, want, "step {step}: force_close");
            }
        }
        assert_eq!(
            breaker.state(at(clock)),
            model.state(clock),
            "step {step} at {clock}: state after {op:?}"
        );
        assert_eq!(
            breaker.metrics(),
            model.m,
            "step {step}: metrics after {op:?}"
        );
    }
}

fn state_of(p: Phase) -> State {
    match p {
        Phase::Closed => State::Closed,
        Phase::Open { .. } => State::Open,
        Phase::HalfOpen { .. } => State::HalfOpen,
        Phase::Forced => State::ForcedOpen,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn time_window_matches_the_model(
        spec in spec(),
        ops in prop::collection::vec(op(), 500..3_000),
        start in prop_oneof![Just(0u64), 0u64..u64::from(u32::MAX), (1u64 << 40)..(1u64 << 50)],
    ) {
        run(spec, &ops, start);
    }
}
