//! Fleet decisions (`merge`), `trip` and calls on one breaker with clocks
//! that go stale (the merge model's clocks only move forward): however
//! stale a `now` is within the documented tolerance, an opening is never
//! cut short, and an opening that has run out lets a trial through.
//!
//! The expectations, from the docs only (`CircuitBreaker`, `trip`,
//! `merge`, `Decision`, the crate docs' limits table):
//!
//! * an opening at `t` lasts `open_for` (here also `max_open_for`, so no
//!   growth), its deadline rounded *up* to a 1.024 ms tick; a `now` up to
//!   `max(open time, ~1.05 s)` before the opening still reads open ("a
//!   stale clock never fails open");
//! * an open decision merged at `t` with `open_remaining = r` opens until
//!   `t + min(r, open time)` (rounded up to a tick), whatever state it
//!   replaces; closed and half-open decisions install those states;
//! * `trip(now)` opens a closed or half-open breaker from `now`; an open
//!   one is left alone, or (its open time run out unseen) opened again
//!   from `now`, "never to an earlier deadline than it had";
//! * the first `try_acquire` at or after the deadline is a trial, and a
//!   refusal's `retry_after` ends between the opening's end and its
//!   rounded-up deadline;
//! * a snapshot taken while open has at least the time left that the
//!   opening has at its `now` (at most the open time: "the cap applies at a
//!   `now` earlier than the trip"), and `restore` at another `now` opens
//!   for that time left, "shortened" to the open time.
//!
//! * `Metrics`: every refusal is `rejected`, and `trips` counts the
//!   openings the breaker made itself (a failure, `trip` returning a
//!   transition, a half-open timeout), not merged or restored ones, nor
//!   `trip` reopening an opening that ran out unseen.
//!
//! The model keeps, for an opening, the earliest instant a trial may be
//! given (`lo`) and the instant from which one must be (`hi`), and checks
//! every `try_acquire` and `state` against them.
#![cfg(not(miri))]

use crate::common::{Rng, NARROW};
use fusebox::breaker::{
    CircuitBreaker, Config, Decision, MergeError, Metrics, Outcome, Permit, State,
};
use fusebox::{Duration, Instant};

const TICK: u64 = 1_024;
const SEC: u64 = 1_000_000;
const HOUR: u64 = 3_600 * SEC;

#[derive(Clone, Copy, Debug)]
enum M {
    Closed,
    /// Opened at `from`: no trial for a `now` in `[from − tol, lo)`, one
    /// for any `now ≥ hi`.
    Open {
        from: u64,
        lo: u64,
        hi: u64,
    },
    /// Half-open since `entered` (feature `half-open-timeout`).
    HalfOpen {
        entered: u64,
    },
    /// Within a tick of a half-open timeout: not checked until the next
    /// change of state.
    Unknown,
}

fn at(us: u64) -> Instant {
    Instant::from_micros(us)
}

/// An opening at `t` for `d`. One with no time left (a decision or
/// snapshot saying 0) is already over: nothing has to read open, and a
/// trial is due at once.
fn opened(t: u64, d: u64) -> M {
    M::Open {
        from: t,
        lo: if d == 0 { 0 } else { t + d },
        hi: (t + d).div_ceil(TICK) * TICK,
    }
}

struct Run {
    breaker: CircuitBreaker,
    open_for: u64,
    /// The documented backward tolerance: `max(open time, ~1.05 s)`.
    tol: u64,
    rng: Rng,
    latest: u64,
    model: M,
    /// The half-open timeout, if any.
    max_half_open: Option<u64>,
    version: u64,
    /// Calls checked against an opening.
    checked: u64,
    /// The counters the calls' results add up to (`Metrics`: trips are
    /// the openings this breaker made itself, not merged ones).
    metrics: Metrics,
}

impl Run {
    fn new(seed: u64, open_for: u64, max_half_open: Option<u64>, start: u64) -> Self {
        let builder = Config::builder()
            .consecutive_failures(1)
            .open_for(Duration::from_micros(open_for))
            .max_open_for(Duration::from_micros(open_for));
        #[cfg(feature = "half-open-timeout")]
        let builder = match max_half_open {
            Some(max) => builder.max_half_open(Duration::from_micros(max)),
            None => builder,
        };
        let config = builder.build().unwrap();
        Self {
            breaker: CircuitBreaker::new(config),
            open_for,
            tol: open_for.max(1 << 20),
            rng: Rng(seed.wrapping_mul(0x9E37_79B9) | 1),
            latest: start,
            model: M::Closed,
            max_half_open,
            version: 0,
            checked: 0,
            metrics: Metrics::default(),
        }
    }

    /// Mostly a little later, often stale by up to the tolerance,
    /// sometimes hours later.
    fn clock(&mut self) -> u64 {
        let r = self.rng.below(100);
        let now = if r < 30 {
            self.latest.saturating_sub(self.rng.below(self.tol + 1))
        } else if r < 99 {
            self.latest + self.rng.below(self.open_for / 2)
        } else {
            let far = if NARROW || self.max_half_open.is_some() {
                HOUR
            } else {
                9 * HOUR
            };
            self.latest + self.rng.below(far)
        };
        self.latest = self.latest.max(now);
        now
    }

    /// Whether the opening must still read open at `now`.
    fn must_be_open(&self, now: u64) -> bool {
        matches!(self.model, M::Open { from, lo, .. } if now + self.tol >= from && now < lo)
    }

    fn acquire(&mut self, now: u64, ctx: &str) {
        let got = self.breaker.try_acquire(at(now));
        if let Err(e) = &got {
            self.metrics.rejected += 1;
            if e.transition.is_some_and(|t| t.to == State::Open) {
                self.metrics.trips += 1;
            }
        }
        if let M::Open { lo, hi, .. } = self.model {
            self.checked += 1;
            if self.must_be_open(now) {
                let refused = got.as_ref().err().map(|e| e.state);
                assert_eq!(
                    refused,
                    Some(State::Open),
                    "{ctx}: a trial before the deadline"
                );
                // The wait told is never early, and late by at most the
                // deadline's rounding ("one tick and 6 µs").
                let wait = got.as_ref().err().and_then(|e| e.retry_after);
                let until = now + wait.map_or(0, Duration::as_micros);
                assert!(
                    until >= lo && until <= hi + 6,
                    "{ctx}: retry_after {wait:?} ends at {until}, not in [{lo}, {hi}]"
                );
            }
            if now >= hi {
                let trial = got.as_ref().is_ok_and(Permit::is_trial);
                assert!(
                    trial,
                    "{ctx}: no trial after the deadline ({:?})",
                    got.err()
                );
            }
        }
        if let (M::HalfOpen { entered }, Some(max)) = (self.model, self.max_half_open) {
            let early = max.max(1 << 20);
            let timed_out = (entered + max).div_ceil(TICK) * TICK;
            if now + early >= entered && now < entered + max {
                let trial = got.as_ref().is_ok_and(Permit::is_trial);
                assert!(
                    trial,
                    "{ctx}: half-open timed out early ({:?})",
                    got.as_ref().err()
                );
            }
            if now >= timed_out + TICK {
                let t = got
                    .as_ref()
                    .err()
                    .and_then(|e| e.transition)
                    .map(|t| (t.from, t.to));
                assert_eq!(
                    t,
                    Some((State::HalfOpen, State::Open)),
                    "{ctx}: no timeout: {:?} {:?}",
                    got.as_ref().err(),
                    got.as_ref().ok().map(|p| (p.is_trial(), p.transition()))
                );
            }
        }
        let reopened = got.as_ref().err().and_then(|e| e.transition).map(|t| t.to);
        if reopened == Some(State::Open) {
            self.model = opened(now, self.open_for);
        }
        if let Ok(permit) = got {
            let trial = permit.is_trial();
            let fail = self.rng.below(3) == 0;
            let outcome = if fail {
                Outcome::Failure
            } else {
                Outcome::Success
            };
            let t = permit.record(outcome, at(now), Duration::ZERO);
            if fail {
                self.metrics.failures += 1;
            } else {
                self.metrics.successes += 1;
            }
            if t.is_some_and(|t| t.to == State::Open) {
                self.metrics.trips += 1;
            }
            self.model = match (fail, t.map(|t| t.to)) {
                (true, Some(State::Open)) => opened(now, self.open_for),
                (true, _) => panic!("{ctx}: a failure did not open (trial {trial})"),
                (false, t) => {
                    assert!(
                        !trial || t.is_some(),
                        "{ctx}: a successful trial did not close"
                    );
                    M::Closed
                }
            };
        }
    }

    fn trip(&mut self, now: u64, ctx: &str) {
        let got = self.breaker.trip(at(now));
        if got.is_some() {
            self.metrics.trips += 1;
        }
        self.model = match (got.map(|t| t.to), self.model) {
            (Some(State::Open), _) => opened(now, self.open_for),
            // Left alone, or opened again from `now`: never earlier.
            (None, M::Open { from, lo, hi }) => {
                let again = (now + self.open_for).div_ceil(TICK) * TICK;
                M::Open {
                    from: from.max(now),
                    lo,
                    hi: hi.max(again),
                }
            }
            (None, M::Unknown) => M::Unknown,
            (got, _) => panic!("{ctx}: trip gave {got:?}"),
        };
    }

    fn merge(&mut self, now: u64, ctx: &str) {
        self.version += 1;
        let state = [State::Open, State::Closed, State::HalfOpen][self.rng.below(3) as usize];
        let remaining = self.rng.below(2 * self.open_for);
        let decision = Decision {
            version: self.version,
            state,
            open_remaining: (state == State::Open).then(|| Duration::from_micros(remaining)),
            reopen_streak: 0,
        };
        match self.breaker.merge(&decision, at(now)) {
            Ok(_) => {
                self.model = match state {
                    State::Open => opened(now, remaining.min(self.open_for)),
                    State::Closed => M::Closed,
                    _ => match (self.model, self.max_half_open) {
                        // Already half-open: kept, or entered again at
                        // `now` if its timeout has passed.
                        // (Within the backward tolerance: "a `now` up to
                        // `max(max_half_open, ~1.05 s)` before the entry
                        // never times out".)
                        (M::HalfOpen { entered }, Some(max))
                            if now < entered + max && now + max.max(1 << 20) >= entered =>
                        {
                            self.model
                        }
                        (M::HalfOpen { entered }, Some(max)) if now < entered + max => M::Unknown,
                        (M::HalfOpen { entered }, Some(max))
                            if now < (entered + max).div_ceil(TICK) * TICK + TICK =>
                        {
                            M::Unknown
                        }
                        (M::HalfOpen { .. } | M::Unknown, None) | (M::Unknown, _) => self.model,
                        _ => M::HalfOpen { entered: now },
                    },
                }
            }
            Err(MergeError::Invalid) if remaining > self.open_for + TICK => self.version -= 1,
            Err(e) => panic!("{ctx}: merge {decision:?}: {e:?}"),
        }
    }

    /// A snapshot at a stale `now`, restored at another one.
    fn snapshot_restore(&mut self, now: u64, ctx: &str) {
        let taken = self.latest.saturating_sub(self.rng.below(self.tol + 1));
        let snap = self.breaker.snapshot(at(taken));
        if let M::Open { lo, .. } = self.model {
            if self.must_be_open(taken) {
                let left = snap.open_remaining.map_or(0, Duration::as_micros);
                let want = (lo - taken).min(self.open_for);
                assert!(
                    snap.state == State::Open && left >= want,
                    "{ctx}: snapshot at {taken}: {snap:?}, want {want} µs left"
                );
            }
        }
        self.breaker.restore(&snap, at(now)).unwrap();
        self.model = match snap.state {
            State::Open => {
                let r = snap.open_remaining.unwrap().as_micros();
                let hi = (now + r).div_ceil(TICK) * TICK + TICK;
                let lo = if r == 0 {
                    0
                } else {
                    now + r.min(self.open_for)
                };
                M::Open { from: now, lo, hi }
            }
            State::Closed => M::Closed,
            State::HalfOpen => M::HalfOpen { entered: now },
            other @ State::ForcedOpen => panic!("{ctx}: snapshot state {other:?}"),
        };
    }

    fn step(&mut self, step: usize) {
        let now = self.clock();
        let ctx = format!("step {step} now {now} {:?}", self.model);
        let op = self.rng.below(11);
        match op {
            0..=5 => self.acquire(now, &ctx),
            6 => self.trip(now, &ctx),
            7..=9 => self.merge(now, &ctx),
            _ => self.snapshot_restore(now, &ctx),
        }
        // `state` reads the same rule without changing anything.
        let probe = self.latest.saturating_sub(self.rng.below(self.tol + 1));
        if self.must_be_open(probe) {
            assert_eq!(
                self.breaker.state(at(probe)),
                State::Open,
                "{ctx}: state at {probe}"
            );
        }
    }
}

#[test]
fn stale_clocks_never_cut_an_opening_short() {
    for (i, open_for) in [5_000u64, SEC, 30 * SEC, HOUR].into_iter().enumerate() {
        for seed in 0..seeds() {
            let start = [0, 1 << 32, 1 << 40, (1 << 26) * TICK - SEC][(seed % 4) as usize];
            let mut run = Run::new(seed * 8 + i as u64, open_for, None, start);
            for step in 0..STEPS {
                run.step(step);
            }
            // Most of the calls meet an opening.
            assert!(run.checked > STEPS as u64 / 5, "{}", run.checked);
            assert_eq!(run.breaker.metrics(), run.metrics);
        }
    }
}

/// With a half-open timeout (feature `half-open-timeout`): "a `now` up to
/// `max(max_half_open, ~1.05 s)` before the entry never times out", and
/// from `entry + max_half_open` (rounded up to a tick) the next
/// `try_acquire` reopens it, returning the HalfOpen → Open transition.
#[cfg(feature = "half-open-timeout")]
#[test]
fn stale_clocks_never_time_a_half_open_breaker_out_early() {
    let cases = [
        (5_000u64, 2_000u64),
        (SEC, 5_000),
        (30 * SEC, 3 * SEC),
        (SEC, 1 << 32),
    ];
    for (i, (open_for, max_half_open)) in cases.into_iter().enumerate() {
        for seed in 0..seeds() {
            let start = [0, 1 << 32, (1 << 24) * TICK - SEC, (1 << 26) * TICK][(seed % 4) as usize];
            let mut run = Run::new(seed * 8 + i as u64, open_for, Some(max_half_open), start);
            for step in 0..STEPS / 2 {
                run.step(step);
            }
            assert!(run.checked > STEPS as u64 / 10, "{}", run.checked);
            assert_eq!(run.breaker.metrics(), run.metrics);
        }
    }
}

const STEPS: usize = 200_000;

fn seeds() -> u64 {
    std::env::var("STALE_FLEET_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4)
}
