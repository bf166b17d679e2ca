//! The model: the breaker as its documented contract says it behaves.

use super::*;

/// The thresholds `set_config` may change (the window and the choice of
/// count or time window are fixed at construction).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Thresholds {
    /// 0: off.
    pub(super) consecutive: u32,
    /// 0: off.
    pub(super) rate: u32,
    /// (threshold in µs, rate); rate 0: off.
    pub(super) slow: (u64, u32),
    pub(super) minimum: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Shape {
    /// `consecutive_failures` alone: no window.
    Streak,
    /// A count window of this many calls.
    Count(u32),
    /// A time window: interval in µs, buckets.
    #[cfg(feature = "time-window")]
    Time(u64, u32),
}

/// Makes thresholds valid for `shape` (a window keeps a rate policy on, a
/// time window has no streak policy) and builds the config.
pub(super) fn config(shape: Shape, mut t: Thresholds) -> (Config, Thresholds) {
    let b = Config::builder()
        .open_for(Duration::from_micros(OPEN_FOR))
        .max_open_for(Duration::from_micros(MAX_OPEN_FOR))
        .half_open_permits(PERMITS as u8)
        .close_after(CLOSE_AFTER as u8);
    let size = match shape {
        Shape::Streak => {
            t.rate = 0;
            t.slow = (0, 0);
            if t.consecutive == 0 {
                t.consecutive = 3;
            }
            return (b.consecutive_failures(t.consecutive).build().unwrap(), t);
        }
        Shape::Count(size) => size,
        #[cfg(feature = "time-window")]
        Shape::Time(..) => 64,
    };
    if t.rate == 0 && t.slow.1 == 0 {
        t.rate = 50;
    }
    t.minimum = t.minimum.clamp(1, size);
    let mut b = b.minimum_calls(t.minimum as u8);
    match shape {
        Shape::Count(size) => {
            b = b.window(size as u8);
            if t.consecutive != 0 {
                b = b.consecutive_failures(t.consecutive);
            }
        }
        #[cfg(feature = "time-window")]
        Shape::Time(interval, buckets) => {
            t.consecutive = 0;
            b = b.time_window(
                Duration::from_micros(interval * u64::from(buckets)),
                buckets as u8,
            );
        }
        Shape::Streak => unreachable!(),
    }
    if t.rate != 0 {
        b = b.failure_rate(t.rate as u8);
    }
    if t.slow.1 != 0 {
        b = b.slow_call(Duration::from_micros(t.slow.0), t.slow.1 as u8);
    }
    (b.build().unwrap(), t)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Closed,
    Open {
        at: u64,
        streak: u32,
    },
    HalfOpen {
        in_flight: u32,
        successes: u32,
        streak: u32,
    },
    Forced,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Ticket {
    pub(super) gen: u64,
    pub(super) trial: bool,
}

/// What the contract says a record does to the clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Read {
    /// Must not be read.
    Never,
    /// Must be read (before any change).
    Always,
    /// Not specified.
    Maybe,
}

#[derive(Debug)]
pub(super) struct Model {
    pub(super) shape: Shape,
    pub(super) t: Thresholds,
    pub(super) kind: Kind,
    pub(super) gen: u64,
    pub(super) streak: u32,
    pub(super) window: VecDeque<(bool, bool)>,
    /// Counted closed records of this generation (the window's claims).
    pub(super) claims: u64,
    /// The time window's records of this generation: (interval, failed, slow).
    pub(super) timed: Vec<(u64, bool, bool)>,
    pub(super) newest: Option<u64>,
    pub(super) m: Metrics,
}

impl Model {
    pub(super) fn new(shape: Shape, t: Thresholds) -> Self {
        Self {
            shape,
            t,
            kind: Kind::Closed,
            gen: 0,
            streak: 0,
            window: VecDeque::new(),
            claims: 0,
            timed: Vec::new(),
            newest: None,
            m: Metrics::default(),
        }
    }

    /// The model's state without its (long) histories.
    pub(super) fn summary(&self) -> String {
        format!(
            "{:?} gen {} streak {} {:?} claims {} window {:?} timed {} newest {:?}",
            self.kind,
            self.gen,
            self.streak,
            self.t,
            self.claims,
            self.window,
            self.timed.len(),
            self.newest
        )
    }

    pub(super) fn open_time(streak: u32) -> u64 {
        (OPEN_FOR << streak).min(MAX_OPEN_FOR)
    }

    /// The state `state(now)` reads; `now` is never within the round-up
    /// of a deadline (the driver keeps it out).
    pub(super) fn state(&self, now: u64) -> State {
        match self.kind {
            Kind::Closed => State::Closed,
            Kind::Open { at, streak } if now >= at + Self::open_time(streak) => State::HalfOpen,
            Kind::Open { .. } => State::Open,
            Kind::HalfOpen { .. } => State::HalfOpen,
            Kind::Forced => State::ForcedOpen,
        }
    }

    pub(super) fn ambiguous(&self, now: u64) -> bool {
        match self.kind {
            Kind::Open { at, streak } => {
                let d = at + Self::open_time(streak);
                now >= d && now < d + MARGIN
            }
            _ => false,
        }
    }

    pub(super) fn enter_closed(&mut self) {
        self.kind = Kind::Closed;
        self.gen += 1;
        self.streak = 0;
        self.window.clear();
        self.claims = 0;
        self.timed.clear();
    }

    /// Open is no generation (no permit is issued in it).
    pub(super) fn open(&mut self, at: u64, streak: u32) {
        self.kind = Kind::Open { at, streak };
        self.m.trips += 1;
    }

    /// `Ok((ticket, transition))` or `Err(refused state)`.
    pub(super) fn acquire(&mut self, now: u64) -> Result<(Ticket, Option<(State, State)>), State> {
        match self.kind {
            Kind::Closed => Ok((
                Ticket {
                    gen: self.gen,
                    trial: false,
                },
                None,
            )),
            Kind::Open { at, streak } if now >= at + Self::open_time(streak) => {
                self.gen += 1;
                self.kind = Kind::HalfOpen {
                    in_flight: 1,
                    successes: 0,
                    streak,
                };
                Ok((
                    Ticket {
                        gen: self.gen,
                        trial: true,
                    },
                    Some((State::Open, State::HalfOpen)),
                ))
            }
            Kind::HalfOpen {
                in_flight,
                successes,
                streak,
            } if in_flight < PERMITS => {
                self.kind = Kind::HalfOpen {
                    in_flight: in_flight + 1,
                    successes,
                    streak,
                };
                Ok((
                    Ticket {
                        gen: self.gen,
                        trial: true,
                    },
                    None,
                ))
            }
            _ => {
                self.m.rejected += 1;
                Err(self.state(now))
            }
        }
    }

    pub(super) fn current(&self, p: Ticket) -> bool {
        p.gen == self.gen
            && match self.kind {
                Kind::Closed => !p.trial,
                Kind::HalfOpen { .. } => p.trial,
                _ => false,
            }
    }

    pub(super) fn is_slow(&self, elapsed: u64) -> bool {
        self.t.slow.1 != 0 && elapsed >= self.t.slow.0
    }

    /// What the contract says about the clock for this record.
    pub(super) fn read(&self, p: Ticket, outcome: Outcome, elapsed: u64) -> Read {
        let fast_success = outcome == Outcome::Success && !self.is_slow(elapsed);
        if !self.current(p) || p.trial || !fast_success {
            return Read::Maybe;
        }
        match self.shape {
            Shape::Streak if self.streak == 0 => Read::Never,
            Shape::Streak => Read::Maybe,
            Shape::Count(size) => {
                let first_lap = self.claims < u64::from(size);
                if first_lap && self.claims + 1 >= u64::from(self.t.minimum) {
                    Read::Always
                } else {
                    Read::Never
                }
            }
            #[cfg(feature = "time-window")]
            Shape::Time(..) => Read::Always,
        }
    }

    pub(super) fn abandon(&mut self, p: Ticket) {
        self.m.abandoned += 1;
        if self.current(p) && p.trial {
            self.free_trial();
        }
    }

    pub(super) fn free_trial(&mut self) {
        if let Kind::HalfOpen {
            in_flight,
            successes,
            streak,
        } = self.kind
        {
            self.kind = Kind::HalfOpen {
                in_flight: in_flight - 1,
                successes,
                streak,
            };
        }
    }

    pub(super) fn rates_trip(&self, calls: u64, failures: u64, slow: u64) -> bool {
        let over = |n: u64, pct: u32| pct != 0 && n * 100 >= u64::from(pct) * calls;
        calls >= u64::from(self.t.minimum)
            && (over(failures, self.t.rate) || over(slow, self.t.slow.1))
    }

    pub(super) fn record(
        &mut self,
        p: Ticket,
        outcome: Outcome,
        now: u64,
        elapsed: u64,
    ) -> Option<(State, State)> {
        let slow = self.is_slow(elapsed);
        let current = self.current(p);
        match outcome {
            Outcome::Ignored => {
                self.m.ignored += 1;
                if current && p.trial {
                    self.free_trial();
                }
                return None;
            }
            Outcome::Success => self.m.successes += 1,
            Outcome::Failure => self.m.failures += 1,
        }
        if slow {
            self.m.slow_calls += 1;
        }
        if !current {
            return None;
        }
        let failed = outcome == Outcome::Failure;
        if let Kind::HalfOpen {
            in_flight,
            successes,
            streak,
        } = self.kind
        {
            if failed || slow {
                self.open(now, (streak + 1).min(15));
                return Some((State::HalfOpen, State::Open));
            }
            if successes + 1 >= CLOSE_AFTER {
                self.enter_closed();
                return Some((State::HalfOpen, State::Closed));
            }
            self.kind = Kind::HalfOpen {
                in_flight: in_flight - 1,
                successes: successes + 1,
                streak,
            };
            return None;
        }
        // Closed.
        self.streak = if failed {
            (self.streak + 1).min(255)
        } else {
            0
        };
        let mut trip = self.t.consecutive != 0 && self.streak >= self.t.consecutive;
        match self.shape {
            Shape::Streak => {}
            Shape::Count(size) => {
                let before = self.claims;
                self.claims += 1;
                self.window.push_back((failed, slow));
                if self.window.len() > size as usize {
                    self.window.pop_front();
                }
                let evaluated = failed
                    || slow
                    || (before < u64::from(size) && before + 1 >= u64::from(self.t.minimum));
                if evaluated {
                    let f = self.window.iter().filter(|o| o.0).count() as u64;
                    let s = self.window.iter().filter(|o| o.1).count() as u64;
                    trip |= self.rates_trip(self.window.len() as u64, f, s);
                }
            }
            #[cfg(feature = "time-window")]
            Shape::Time(interval, buckets) => {
                let at = (now / interval).max(self.newest.unwrap_or(0));
                self.newest = Some(at);
                self.timed.push((at, failed, slow));
                // The intervals fewer than `buckets` before the newest.
                self.timed.retain(|r| at - r.0 < u64::from(buckets));
                // Each interval's counts stop at the cap.
                let cap = u64::from(fusebox::breaker::TIME_BUCKET_CAP);
                let (mut calls, mut f, mut s) = (0, 0, 0);
                for i in at + 1 - u64::from(buckets).min(at + 1)..=at {
                    let bucket = self.timed.iter().filter(|r| r.0 == i);
                    let (n, nf, ns) = bucket.fold((0, 0, 0), |(n, nf, ns), r| {
                        (n + 1, nf + u64::from(r.1), ns + u64::from(r.2))
                    });
                    calls += n.min(cap);
                    f += nf.min(cap);
                    s += ns.min(cap);
                }
                trip |= self.rates_trip(calls, f, s);
            }
        }
        if trip {
            self.open(now, 0);
            return Some((State::Closed, State::Open));
        }
        None
    }
}
