//! Drives the real breaker and the model side by side, step by step.

use super::*;

/// A borrowed or an owned permit (the owned one is recorded in place).
pub(super) enum Held<'b> {
    Borrowed(Permit<'b>),
    Owned(OwnedPermit<&'b CircuitBreaker>),
}

impl Held<'_> {
    pub(super) fn is_trial(&self) -> bool {
        match self {
            Held::Borrowed(p) => p.is_trial(),
            Held::Owned(p) => p.is_trial(),
        }
    }

    pub(super) fn transition(&self) -> Option<Transition> {
        match self {
            Held::Borrowed(p) => p.transition(),
            Held::Owned(p) => p.transition(),
        }
    }

    pub(super) fn record_with(
        self,
        outcome: Outcome,
        elapsed: Duration,
        now: impl FnOnce() -> Instant,
    ) -> Option<Transition> {
        match self {
            Held::Borrowed(p) => p.record_with(outcome, elapsed, now),
            Held::Owned(p) => p.record_with(outcome, elapsed, now),
        }
    }
}

/// Drives one breaker and its model step by step.
pub(super) struct Driver<'b> {
    pub(super) b: &'b CircuitBreaker,
    pub(super) model: Model,
    pub(super) now: u64,
    pub(super) held: Vec<(Held<'b>, Ticket)>,
    pub(super) reads: &'b Cell<u32>,
    /// Alternates borrowed and owned permits.
    pub(super) owned: bool,
}

pub(super) type Step = Result<(), String>;

pub(super) fn check(cond: bool, what: impl FnOnce() -> String) -> Step {
    if cond {
        Ok(())
    } else {
        Err(what())
    }
}

pub(super) fn pair(t: Option<Transition>) -> Option<(State, State)> {
    t.map(|t| (t.from, t.to))
}

impl<'b> Driver<'b> {
    pub(super) fn new(b: &'b CircuitBreaker, model: Model, reads: &'b Cell<u32>) -> Self {
        Self {
            b,
            model,
            now: 1_000_000_000,
            held: Vec::new(),
            reads,
            owned: false,
        }
    }

    /// Moves the clock, never into a deadline's round-up.
    pub(super) fn advance(&mut self, micros: u64) {
        self.now += micros;
        if self.model.ambiguous(self.now) {
            self.now += MARGIN;
        }
    }

    pub(super) fn acquire(&mut self) -> Result<Option<(Held<'b>, Ticket)>, String> {
        let now = self.now;
        let expected = self.model.acquire(now);
        self.owned = !self.owned;
        let at = Instant::from_micros(now);
        let got = if self.owned {
            CircuitBreaker::try_acquire_owned(self.b, at).map(Held::Owned)
        } else {
            self.b.try_acquire(at).map(Held::Borrowed)
        };
        match (expected, got) {
            (Ok((ticket, t)), Ok(p)) => {
                check(p.is_trial() == ticket.trial, || {
                    format!("trial {} at {now}", ticket.trial)
                })?;
                let tr = p.transition();
                check(pair(tr) == t, || {
                    format!("acquire transition {tr:?}, model {t:?}")
                })?;
                if let Some(tr) = tr {
                    check(tr.at == Instant::from_micros(now), || {
                        format!("acquire at {tr:?}")
                    })?;
                }
                Ok(Some((p, ticket)))
            }
            (Err(state), Err(r)) => {
                check(r.state == state, || {
                    format!("refused as {:?}, model {state:?}", r.state)
                })?;
                check(r.retry_after.is_some() == (state == State::Open), || {
                    format!("retry_after {:?} for {state:?}", r.retry_after)
                })?;
                Ok(None)
            }
            (e, g) => Err(format!(
                "at {now}: model {e:?}, breaker admitted {} ({:?})",
                g.is_ok(),
                self.model.kind
            )),
        }
    }

    pub(super) fn record(
        &mut self,
        p: Held<'b>,
        ticket: Ticket,
        outcome: Outcome,
        elapsed_ms: u16,
        clock: Clock,
    ) -> Step {
        let elapsed = u64::from(elapsed_ms) * 1_000;
        let at = match clock {
            Clock::Stale(ms) => self.now - u64::from(ms) * 1_000,
            _ => self.now,
        };
        let read = self.model.read(ticket, outcome, elapsed);
        match (clock, read) {
            (Clock::Reentrant(inner, inner_ms), Read::Always) => {
                return self.record_reentrant(p, ticket, outcome, elapsed, (inner, inner_ms));
            }
            (Clock::Resets, Read::Always) => {
                return self.record_resetting(p, ticket, outcome, elapsed)
            }
            _ => {}
        }
        // A panicking clock only where the contract says what happens.
        let panics = matches!(clock, Clock::Panics) && read != Read::Maybe;
        let reads = self.reads;
        let before = reads.get();
        let d = Duration::from_micros(elapsed);
        let clock = || {
            reads.set(reads.get() + 1);
            Instant::from_micros(at)
        };
        let failing = || -> Instant { panic!("the clock failed") };
        let got = match (p, panics) {
            (Held::Borrowed(p), true) => {
                let r = catch_unwind(AssertUnwindSafe(|| p.record_with(outcome, d, failing)));
                match (read, r) {
                    // Unwound: the permit was dropped, so abandoned.
                    (Read::Always, Err(_)) => {
                        self.model.abandon(ticket);
                        return Ok(());
                    }
                    (Read::Never, Ok(t)) => t,
                    (read, r) => {
                        return Err(format!(
                            "panicking clock, model {read:?}, unwound {}",
                            r.is_err()
                        ))
                    }
                }
            }
            (Held::Owned(mut p), true) => {
                let r = catch_unwind(AssertUnwindSafe(|| {
                    p.record_in_place_with(outcome, d, failing)
                }));
                match (read, r) {
                    // Nothing was recorded: the permit is still live, and
                    // recorded again with a working clock it counts once.
                    (Read::Always, Err(_)) => {
                        let before = reads.get();
                        let t = p.record_in_place_with(outcome, d, clock);
                        check(reads.get() - before == 1, || {
                            "the retry read no clock".into()
                        })?;
                        drop(p); // spent: abandons nothing
                        t
                    }
                    (Read::Never, Ok(t)) => t,
                    (read, r) => {
                        return Err(format!(
                            "panicking clock, model {read:?}, unwound {}",
                            r.is_err()
                        ))
                    }
                }
            }
            (Held::Borrowed(p), false) => p.record_with(outcome, d, clock),
            (Held::Owned(p), false) => p.record_with(outcome, d, clock),
        };
        let n = reads.get() - before;
        match read {
            Read::Never => check(n == 0, || {
                format!(
                    "{outcome:?} read the clock {n} times, model {}",
                    self.model.summary()
                )
            })?,
            Read::Always if !panics => check(n == 1, || {
                format!(
                    "{outcome:?} read the clock {n} times, model {}",
                    self.model.summary()
                )
            })?,
            _ => check(n <= 1, || format!("read {n} times"))?,
        }
        let expected = self.model.record(ticket, outcome, at, elapsed);
        check(pair(got) == expected, || {
            format!(
                "{outcome:?} ({elapsed} µs) at {at}: {got:?}, model {expected:?}, now {}",
                self.model.summary()
            )
        })?;
        if let Some(t) = got {
            check(t.at == Instant::from_micros(at), || {
                format!("transition at {:?}, clock {at}", t.at)
            })?;
        }
        Ok(())
    }

    /// Records `p` with a clock that records another permit of the same
    /// generation when it is read: decided as if that call came first.
    pub(super) fn record_reentrant(
        &mut self,
        p: Held<'b>,
        ticket: Ticket,
        outcome: Outcome,
        elapsed: u64,
        (inner, inner_ms): (Outcome, u16),
    ) -> Step {
        let Some((q, inner_ticket)) = self.acquire()? else {
            return Err("closed, but no permit".into());
        };
        let at = self.now;
        let inner_elapsed = u64::from(inner_ms) * 1_000;
        let inner_got = Cell::new(None);
        let reads = Cell::new(0);
        let got = p.record_with(outcome, Duration::from_micros(elapsed), || {
            reads.set(reads.get() + 1);
            let t = q.record_with(inner, Duration::from_micros(inner_elapsed), || {
                Instant::from_micros(at)
            });
            inner_got.set(Some(t));
            Instant::from_micros(at)
        });
        check(reads.get() == 1, || {
            format!("read the clock {} times", reads.get())
        })?;
        let inner_got = inner_got.get().ok_or("the clock was not read")?;
        let expected = self.model.record(inner_ticket, inner, at, inner_elapsed);
        check(pair(inner_got) == expected, || {
            format!("inner {inner:?}: {inner_got:?}, model {expected:?}")
        })?;
        let expected = self.model.record(ticket, outcome, at, elapsed);
        check(pair(got) == expected, || {
            format!(
                "{outcome:?} around {inner:?}: {got:?}, model {expected:?}, now {}",
                self.model.summary()
            )
        })?;
        for t in [got, inner_got].into_iter().flatten() {
            check(t.at == Instant::from_micros(at), || format!("at {t:?}"))?;
        }
        Ok(())
    }

    /// Records `p` with a clock that resets the breaker when read.
    pub(super) fn record_resetting(
        &mut self,
        p: Held<'b>,
        ticket: Ticket,
        outcome: Outcome,
        elapsed: u64,
    ) -> Step {
        let at = Instant::from_micros(self.now);
        let b = self.b;
        let reset = Cell::new(None);
        let got = p.record_with(outcome, Duration::from_micros(elapsed), || {
            reset.set(Some(b.reset(at)));
            at
        });
        let reset = reset.get().ok_or("the clock was not read")?;
        check(reset.is_none(), || {
            format!("a closed breaker's reset returned {reset:?}")
        })?;
        self.reset_model();
        let expected = self.model.record(ticket, outcome, self.now, elapsed);
        check(pair(got) == expected && got.is_none(), || {
            format!("{outcome:?} after a reset: {got:?}, model {expected:?}")
        })
    }

    pub(super) fn reset_model(&mut self) {
        self.model.enter_closed();
        self.model.newest = None;
        self.model.m = Metrics::default();
    }

    pub(super) fn step(&mut self, op: &Op) -> Step {
        match *op {
            Op::Call(outcome, elapsed, clock) => {
                if let Some((p, ticket)) = self.acquire()? {
                    if let Some(o) = outcome {
                        self.record(p, ticket, o, elapsed, clock)?;
                    } else {
                        drop(p);
                        self.model.abandon(ticket);
                    }
                }
            }
            Op::Hold => {
                if self.held.len() < 4 {
                    if let Some(h) = self.acquire()? {
                        self.held.push(h);
                    }
                }
            }
            Op::RecordHeld(i, outcome, elapsed, clock) => {
                if i < self.held.len() {
                    let (p, ticket) = self.held.swap_remove(i);
                    self.record(p, ticket, outcome, elapsed, clock)?;
                }
            }
            Op::DropHeld(i) => {
                if i < self.held.len() {
                    let (p, ticket) = self.held.swap_remove(i);
                    drop(p);
                    self.model.abandon(ticket);
                }
            }
            Op::Tick(ms) => self.advance(u64::from(ms) * 1_000),
            Op::Jump(s) => self.advance(u64::from(s) * 1_000_000),
            Op::Reconfigure(t) => {
                let (config, t) = config(self.model.shape, t);
                self.b.set_config(config).map_err(|e| format!("{e}"))?;
                self.model.t = t;
            }
            Op::ForceOpen => {
                let got = self.b.force_open(Instant::from_micros(self.now));
                let expected = self.model.kind != Kind::Forced;
                if expected {
                    self.model.kind = Kind::Forced;
                    self.model.gen += 1;
                }
                check(
                    got.map(|t| t.to) == expected.then_some(State::ForcedOpen),
                    || format!("force_open {got:?}"),
                )?;
            }
            Op::ForceClose => {
                let got = self.b.force_close(Instant::from_micros(self.now));
                let expected = self.model.kind != Kind::Closed;
                if expected {
                    self.model.enter_closed();
                }
                check(
                    got.map(|t| t.to) == expected.then_some(State::Closed),
                    || format!("force_close {got:?}"),
                )?;
            }
            Op::Reset => {
                let got = self.b.reset(Instant::from_micros(self.now));
                let changed = self.model.kind != Kind::Closed;
                self.reset_model();
                check(
                    got.map(|t| t.to) == changed.then_some(State::Closed),
                    || format!("reset {got:?}"),
                )?;
            }
        }
        self.compare()
    }

    pub(super) fn compare(&self) -> Step {
        let now = self.now;
        let state = self.b.state(Instant::from_micros(now));
        check(state == self.model.state(now), || {
            format!("state {state:?} at {now}, model {}", self.model.summary())
        })?;
        let m = self.b.metrics();
        check(m == self.model.m, || {
            format!("metrics {m:?}, model {:?}", self.model.m)
        })
    }
}

pub(super) fn run(shape: Shape, t: Thresholds, ops: &[Op]) -> Step {
    let (config, t) = config(shape, t);
    let b = CircuitBreaker::new(config);
    let reads = Cell::new(0);
    let mut d = Driver::new(&b, Model::new(shape, t), &reads);
    for (i, op) in ops.iter().enumerate() {
        d.step(op).map_err(|e| format!("step {i} {op:?}: {e}"))?;
    }
    Ok(())
}
