//! A second, independent sequential model of the count-based breaker,
//! written from the docs only (the doc comments of `CircuitBreaker`,
//! `Config`, `ConfigBuilder`, `Permit`, `OwnedPermit`, `Outcome`, `Metrics`,
//! `set_config`, the crate docs' limits table and DESIGN.md), never from
//! `core/src/breaker/*.rs`. Long histories (hundreds of thousands of calls
//! over many seeds) drive the 14-bit generations, the window tags, the
//! 26-bit open deadline and the 24-bit half-open stamp far past their
//! ranges, with permits held across thousands of generations, clocks read
//! up to 0.5 s stale, jumps of hours to days (years on 64-bit words),
//! `set_config` of every changeable setting, `Outcome::Ignored`, abandoned
//! trials and owned permits recorded in place twice.
//!
//! The rules, each from the docs:
//!
//! 1. Closed: `consecutive_failures` (counted even when off, up to 255; a
//!    success resets it) trips at the threshold. The window holds the last
//!    `window` counted outcomes of the closed generation; the rates are
//!    evaluated after each failure or slow call and after each success that
//!    brings the window to `minimum_calls` or beyond before it first fills
//!    (`ConfigBuilder::failure_rate`); "at least `percent` %".
//! 2. Open for `min(open_for·2^streak, max_open_for)`, the deadline rounded
//!    up to a 1.024 ms tick; rejected with `retry_after = deadline − now`;
//!    the first `try_acquire` at or after it enters HalfOpen (a trial
//!    carrying the transition).
//! 3. HalfOpen: `half_open_permits` in flight; `close_after` successes
//!    close; a failed or slow trial reopens with streak + 1 (saturating at
//!    15); an ignored or abandoned trial frees its slot.
//! 4. `max_half_open`: from `ceil_tick(entry + max)` `state` reads Open and
//!    the next `try_acquire` or current trial record (success or failure)
//!    reopens it as a failed trial would, returning the transition.
//! 5. Every change of state starts a generation; older permits are
//!    counted, change nothing. `force_open`, `force_close`, `reset` as
//!    documented (`reset` always starts a generation and zeroes counters).
//! 6. Time window (feature `time-window`, `CircuitBreaker`'s "Time
//!    window"): a counted closed record (any outcome with a rate policy;
//!    only failures and slow calls with `failure_count` alone) lands in
//!    interval `max(⌊now / interval⌋, newest)`, which becomes `newest`
//!    (forgotten only by `reset`: "its initial state"); the window holds the intervals fewer than `buckets`
//!    before `newest`, each count capped at `TIME_BUCKET_CAP`; it trips on
//!    `failure_count` or on the rates over `minimum_calls`, and entering
//!    Closed empties it. On Cortex-M words the clock stays within 2³⁰
//!    intervals of `newest` (the documented 31-bit aliasing).
//!
//! Sound-but-checked (review of 2026-12-06): no defect found by this model.
#![cfg(all(feature = "half-open-timeout", not(miri)))]

use std::collections::VecDeque;

use fusebox::breaker::{
    CircuitBreaker, Config, Metrics, Outcome, OwnedPermit, Permit, Rejected, State, Transition,
};
use fusebox::{Duration, Instant};

#[cfg(feature = "time-window")]
use fusebox::breaker::TIME_BUCKET_CAP;
#[cfg(not(feature = "time-window"))]
const TIME_BUCKET_CAP: u32 = u32::MAX;

const NARROW: bool = !cfg!(target_has_atomic = "64") || cfg!(fusebox_narrow_words);
const TICK: u64 = 1024;
const MS: u64 = 1_000;
const SEC: u64 = 1_000_000;
const HOUR: u64 = 3_600 * SEC;
const DAY: u64 = 24 * HOUR;

fn ceil_tick(t: u64) -> u64 {
    t.div_ceil(TICK) * TICK
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
}

/// The settings a history uses (what the builder was given).
#[derive(Clone, Copy, Debug)]
struct P {
    consecutive: u32, // 0: off
    rate: u8,         // 0: off
    slow: Option<(u64, u8)>,
    window: u8,
    min: u8,
    open_for: u64,
    max_open_for: u64,
    permits: u8,
    close_after: u8,
    max_half_open: u64, // 0: none
    /// `(interval µs, buckets)` of a time window (feature `time-window`).
    time: Option<(u64, u8)>,
    /// `failure_count` (time window only; 0: off).
    failure_count: u8,
}

impl P {
    fn config(&self) -> Config {
        let mut b = Config::builder();
        #[cfg(feature = "time-window")]
        if let Some((interval, buckets)) = self.time {
            b = b.time_window(
                Duration::from_micros(interval * u64::from(buckets)),
                buckets,
            );
            if self.failure_count != 0 {
                b = b.failure_count(u32::from(self.failure_count));
            }
        }
        if self.time.is_none() {
            b = b.window(self.window);
        }
        b = b
            .minimum_calls(self.min)
            .open_for(Duration::from_micros(self.open_for))
            .max_open_for(Duration::from_micros(self.max_open_for))
            .half_open_permits(self.permits)
            .close_after(self.close_after);
        if self.consecutive != 0 {
            b = b.consecutive_failures(self.consecutive);
        }
        if self.rate != 0 {
            b = b.failure_rate(self.rate);
        }
        if let Some((t, r)) = self.slow {
            b = b.slow_call(Duration::from_micros(t), r);
        }
        if self.max_half_open != 0 {
            b = b.max_half_open(Duration::from_micros(self.max_half_open));
        }
        b.build().unwrap_or_else(|e| panic!("{self:?}: {e:?}"))
    }
    fn rates(&self) -> bool {
        self.rate != 0 || self.slow.is_some()
    }
    fn open_duration(&self, streak: u32) -> u64 {
        self.open_for
            .saturating_mul(1 << streak)
            .min(self.max_open_for)
    }
    fn threshold(&self) -> u64 {
        self.slow.map_or(u64::MAX, |s| s.0)
    }
}

fn random_p(
    rng: &mut Rng,
    window: u8,
    rates: bool,
    max_half_open: u64,
    time: Option<(u64, u8)>,
) -> P {
    let failure_count = if time.is_some() && (!rates || rng.chance(40)) {
        rng.pick(&[1, 1, 2, 3, 5, 100, 255])
    } else {
        0
    };
    let consecutive = if time.is_some() {
        0
    } else if !rates || rng.chance(40) {
        rng.pick(&[1, 1, 2, 3, 5, 255])
    } else {
        0
    };
    let (rate, slow) = if rates {
        let rate = if rng.chance(75) {
            rng.pick(&[1, 10, 50, 50, 60, 99, 100])
        } else {
            0
        };
        let slow = if rate == 0 || rng.chance(40) {
            Some((
                rng.pick(&[1, 500, 10 * MS, 2 * SEC]),
                rng.pick(&[1, 30, 50, 100]),
            ))
        } else {
            None
        };
        (rate, slow)
    } else {
        (0, None)
    };
    let min = if time.is_some() {
        rng.pick(&[1, 2, 5, 10, 100, 255])
    } else if rng.chance(30) {
        window
    } else {
        1 + rng.below(u64::from(window)) as u8
    };
    let open_ms = rng.pick(&[1, 2, 7, 100, 1_000, 30_000, 3_600_000]);
    let open_for = open_ms * MS;
    let max_open_for = if rng.chance(50) {
        open_for
    } else {
        let k = rng.below(16);
        (open_for << k).min(Config::MAX_OPEN_FOR.as_micros() / 8 * 8)
    };
    let permits = rng.pick(&[1, 1, 2, 3, 63]);
    let close_after = if rng.chance(50) {
        permits
    } else {
        rng.pick(&[1, 2, 4, 63])
    };
    P {
        consecutive,
        rate,
        slow,
        window,
        min,
        open_for,
        max_open_for,
        permits,
        close_after,
        max_half_open,
        time,
        failure_count,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Closed,
    Open {
        streak: u32,
        deadline: u64,
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
    p: P,
    phase: Phase,
    gen: u64,
    consecutive: u32,
    window: VecDeque<(bool, bool)>,
    claims: u64,
    /// Time window: `(interval, failure, slow)` of the closed period, and
    /// the newest interval any record reached (never reset).
    events: std::collections::BTreeMap<u64, (u64, u64, u64)>,
    newest: Option<u64>,
    m: Metrics,
}

fn tr(from: State, to: State, at: u64) -> Transition {
    Transition {
        from,
        to,
        at: Instant::from_micros(at),
    }
}

impl Model {
    fn kind(&self) -> State {
        match self.phase {
            Phase::Closed => State::Closed,
            Phase::Open { .. } => State::Open,
            Phase::HalfOpen { .. } => State::HalfOpen,
            Phase::Forced => State::ForcedOpen,
        }
    }
    fn enter(&mut self, phase: Phase) {
        self.phase = phase;
        self.gen += 1;
        if phase == Phase::Closed {
            self.window.clear();
            self.claims = 0;
            self.events.clear();
            self.consecutive = 0;
        }
    }
    fn open(&mut self, streak: u32, now: u64) {
        let deadline = ceil_tick(now.saturating_add(self.p.open_duration(streak)));
        self.phase = Phase::Open { streak, deadline };
        self.m.trips += 1;
    }
    fn state_at(&self, now: u64) -> State {
        match self.phase {
            Phase::Open { deadline, .. } if now >= deadline => State::HalfOpen,
            Phase::HalfOpen {
                timeout: Some(t), ..
            } if now >= t => State::Open,
            _ => self.kind(),
        }
    }
    fn expired(&self, now: u64) -> bool {
        matches!(self.phase, Phase::HalfOpen { timeout: Some(t), .. } if now >= t)
    }
    fn time_out(&mut self, now: u64) -> Transition {
        let Phase::HalfOpen { streak, .. } = self.phase else {
            unreachable!()
        };
        self.open((streak + 1).min(15), now);
        tr(State::HalfOpen, State::Open, now)
    }
    fn reject(&mut self, state: State, retry: Option<u64>, t: Option<Transition>) -> Rejected {
        self.m.rejected += 1;
        Rejected {
            state,
            retry_after: retry.map(Duration::from_micros),
            transition: t,
        }
    }
    fn acquire(&mut self, now: u64) -> Result<(MPermit, Option<Transition>), Rejected> {
        match self.phase {
            Phase::Closed => Ok((
                MPermit {
                    gen: self.gen,
                    trial: false,
                },
                None,
            )),
            Phase::Forced => Err(self.reject(State::ForcedOpen, None, None)),
            Phase::Open { streak, deadline } => {
                if now < deadline {
                    return Err(self.reject(State::Open, Some(deadline - now), None));
                }
                let timeout = (self.p.max_half_open != 0)
                    .then(|| ceil_tick(now.saturating_add(self.p.max_half_open)));
                self.enter(Phase::HalfOpen {
                    streak,
                    in_flight: 1,
                    successes: 0,
                    timeout,
                });
                Ok((
                    MPermit {
                        gen: self.gen,
                        trial: true,
                    },
                    Some(tr(State::Open, State::HalfOpen, now)),
                ))
            }
            Phase::HalfOpen {
                streak,
                in_flight,
                successes,
                timeout,
            } => {
                if self.expired(now) {
                    let t = self.time_out(now);
                    let Phase::Open { deadline, .. } = self.phase else {
                        unreachable!()
                    };
                    return Err(self.reject(State::Open, Some(deadline - now), Some(t)));
                }
                if in_flight >= u32::from(self.p.permits) {
                    return Err(self.reject(State::HalfOpen, None, None));
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
            && match self.phase {
                Phase::Closed => !p.trial,
                Phase::HalfOpen { .. } => p.trial,
                _ => false,
            }
    }
    fn free_trial(&mut self, p: MPermit) {
        if self.current(p) && p.trial {
            if let Phase::HalfOpen {
                streak,
                in_flight,
                successes,
                timeout,
            } = self.phase
            {
                self.phase = Phase::HalfOpen {
                    streak,
                    in_flight: in_flight.saturating_sub(1),
                    successes,
                    timeout,
                };
            }
        }
    }
    fn abandon(&mut self, p: MPermit) {
        self.m.abandoned += 1;
        self.free_trial(p);
    }
    fn record(
        &mut self,
        p: MPermit,
        outcome: Outcome,
        now: u64,
        elapsed: u64,
    ) -> Option<Transition> {
        if outcome == Outcome::Ignored {
            self.m.ignored += 1;
            self.free_trial(p);
            return None;
        }
        let failure = outcome == Outcome::Failure;
        let slow = self.p.slow.is_some() && elapsed >= self.p.threshold();
        if failure {
            self.m.failures += 1;
        } else {
            self.m.successes += 1;
        }
        if slow {
            self.m.slow_calls += 1;
        }
        if !self.current(p) {
            return None;
        }
        if p.trial {
            if self.expired(now) {
                return Some(self.time_out(now));
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
            if successes + 1 >= u32::from(self.p.close_after) {
                self.enter(Phase::Closed);
                return Some(tr(State::HalfOpen, State::Closed, now));
            }
            self.phase = Phase::HalfOpen {
                streak,
                in_flight: in_flight.saturating_sub(1),
                successes: successes + 1,
                timeout,
            };
            return None;
        }
        // Closed.
        if let Some((interval, buckets)) = self.p.time {
            return self.record_timed(interval, buckets, failure, slow, now);
        }
        self.consecutive = if failure {
            (self.consecutive + 1).min(255)
        } else {
            0
        };
        if self.p.consecutive != 0 && self.consecutive >= self.p.consecutive {
            self.open(0, now);
            return Some(tr(State::Closed, State::Open, now));
        }
        if !self.p.rates() {
            return None;
        }
        let claim = self.claims;
        self.claims += 1;
        self.window.push_back((failure, slow));
        if self.window.len() > usize::from(self.p.window) {
            self.window.pop_front();
        }
        let w = u64::from(self.p.window);
        let evaluates = failure || slow || (claim < w && claim + 1 >= u64::from(self.p.min));
        if !evaluates {
            return None;
        }
        let calls = self.window.len() as u64;
        let fails = self.window.iter().filter(|o| o.0).count() as u64;
        let slows = self.window.iter().filter(|o| o.1).count() as u64;
        let over = |n: u64, pct: u8| pct != 0 && n * 100 >= u64::from(pct) * calls;
        let slow_rate = self.p.slow.map_or(0, |s| s.1);
        if calls >= u64::from(self.p.min) && (over(fails, self.p.rate) || over(slows, slow_rate)) {
            self.open(0, now);
            return Some(tr(State::Closed, State::Open, now));
        }
        None
    }
    fn record_timed(
        &mut self,
        interval: u64,
        buckets: u8,
        failure: bool,
        slow: bool,
        now: u64,
    ) -> Option<Transition> {
        if !(failure || slow || self.p.rates()) {
            return None; // `failure_count` alone: successes are not counted
        }
        let j = now / interval;
        let newest = self.newest.map_or(j, |n| n.max(j));
        self.newest = Some(newest);
        let c = self.events.entry(newest).or_default();
        c.0 += 1;
        c.1 += u64::from(failure);
        c.2 += u64::from(slow);
        self.events.retain(|&i, _| i + u64::from(buckets) > newest);
        let cap = u64::from(TIME_BUCKET_CAP);
        let (mut calls, mut fails, mut slows) = (0, 0, 0);
        for c in self.events.values() {
            calls += c.0.min(cap);
            fails += c.1.min(cap);
            slows += c.2.min(cap);
        }
        let over = |n: u64, pct: u8| pct != 0 && n * 100 >= u64::from(pct) * calls;
        let slow_rate = self.p.slow.map_or(0, |s| s.1);
        let counted = self.p.failure_count != 0 && fails >= u64::from(self.p.failure_count);
        let rated =
            calls >= u64::from(self.p.min) && (over(fails, self.p.rate) || over(slows, slow_rate));
        if counted || rated {
            self.open(0, now);
            return Some(tr(State::Closed, State::Open, now));
        }
        None
    }
    fn force_open(&mut self, now: u64) -> Option<Transition> {
        if self.phase == Phase::Forced {
            return None;
        }
        let from = self.kind();
        self.enter(Phase::Forced);
        Some(tr(from, State::ForcedOpen, now))
    }
    fn force_close(&mut self, now: u64) -> Option<Transition> {
        if self.phase == Phase::Closed {
            return None;
        }
        let from = self.kind();
        self.enter(Phase::Closed);
        Some(tr(from, State::Closed, now))
    }
    fn reset(&mut self, now: u64) -> Option<Transition> {
        let from = self.kind();
        self.enter(Phase::Closed);
        self.newest = None; // the initial state: no interval reached
        self.m = Metrics::default();
        (from != State::Closed).then(|| tr(from, State::Closed, now))
    }
}

enum Real<'a> {
    Borrowed(Permit<'a>),
    Owned(OwnedPermit<&'a CircuitBreaker>),
}

impl Real<'_> {
    fn record(self, o: Outcome, now: u64, elapsed: u64) -> Option<Transition> {
        let (now, el) = (Instant::from_micros(now), Duration::from_micros(elapsed));
        match self {
            Real::Borrowed(p) => p.record(o, now, el),
            Real::Owned(mut p) => {
                let t = p.record_in_place_with(o, el, || now);
                // A second record of a spent permit counts nothing.
                assert_eq!(p.record_in_place_with(Outcome::Failure, el, || now), None);
                t
            }
        }
    }
    fn is_trial(&self) -> bool {
        match self {
            Real::Borrowed(p) => p.is_trial(),
            Real::Owned(p) => p.is_trial(),
        }
    }
    fn transition(&self) -> Option<Transition> {
        match self {
            Real::Borrowed(p) => p.transition(),
            Real::Owned(p) => p.transition(),
        }
    }
}

#[allow(clippy::too_many_lines, clippy::many_single_char_names)]
fn run(seed: u64, steps: usize) {
    let mut rng = Rng(seed);
    let window = rng.pick(&[1, 2, 3, 5, 8, 20, 63, 64]);
    let rates = rng.chance(70);
    let max_half_open = if rng.chance(50) {
        0
    } else {
        rng.pick(&[1, 10, 300, 5_000]) * MS
    };
    let time = (cfg!(feature = "time-window") && rng.chance(40)).then(|| {
        (
            rng.pick(&[1_000, 1_500, 100_000, SEC, 60 * SEC, u64::from(u32::MAX)]),
            rng.pick(&[1, 2, 4, 8, 16]),
        )
    });
    let p = random_p(&mut rng, window, rates, max_half_open, time);
    let b = CircuitBreaker::new(p.config());
    let mut m = Model {
        p,
        phase: Phase::Closed,
        gen: 0,
        consecutive: 0,
        window: VecDeque::new(),
        claims: 0,
        events: std::collections::BTreeMap::new(),
        newest: None,
        m: Metrics::default(),
    };
    let mut clock: u64 = rng.pick(&[0, 5 * SEC, (1 << 26) * TICK - 3 * SEC, 40 * DAY]);
    let mut live: Vec<(Real<'_>, MPermit)> = Vec::new();
    // Permits held for the whole history (across thousands of generations).
    let mut ancient: Vec<(Real<'_>, MPermit)> = Vec::new();
    let fail_pct = rng.pick(&[5, 30, 50, 70, 95]);
    let (mut records, mut resets) = (0u64, 0u64);
    for step in 0..steps {
        let (phase0, p0) = (m.phase, m.p);
        let ctx = |what: &str| format!("seed {seed} step {step} {p0:?} {phase0:?}: {what}");
        // The clock: mostly small steps; sometimes a jump.
        let r = rng.below(1000);
        let mut next = if r < 600 {
            clock
        } else if r < 950 {
            clock + rng.below(2 * m.p.open_for.max(MS))
        } else if r < 970 {
            clock + rng.below(m.p.max_open_for * 3)
        } else if r < 990 {
            clock + rng.below(3 * m.p.time.map_or(SEC, |t| t.0 * u64::from(t.1)))
        } else if r < 998 {
            clock + rng.below(if NARROW { 30 * DAY } else { 3 * HOUR })
        } else if NARROW {
            clock + rng.below(30 * DAY)
        } else {
            clock + rng.below(2_000 * DAY)
        };
        // Documented horizons: a half-open breaker nobody asks for a
        // multiple of ~4 h 46 min, and (Cortex-M) an open one for ~50 days.
        if let Phase::HalfOpen {
            timeout: Some(t), ..
        } = m.phase
        {
            next = next.min((t + 4 * HOUR).max(clock));
        }
        if let Phase::Open { deadline, .. } = m.phase {
            if NARROW {
                next = next.min((deadline + 30 * DAY).max(clock));
            }
        }
        // Cortex-M keeps 31 bits of the newest interval: stay clear of
        // the documented aliasing (2^31 intervals less 2^20).
        if let (true, Some((interval, _)), Some(newest)) = (NARROW, m.p.time, m.newest) {
            next = next.min(((newest + (1 << 30)) * interval).max(clock));
        }
        clock = next;
        // A clock far behind (up to years) while closed, with 64-bit
        // words: an old clock never erases newer time-window failures, and
        // a trip it dates reads as long past at the current clock.
        let far = !NARROW && m.phase == Phase::Closed && rng.chance(1);
        let now = if far {
            rng.below(clock + 1)
        } else if rng.chance(15) {
            clock.saturating_sub(rng.below(SEC / 2))
        } else {
            clock
        };
        let op = rng.below(100);
        if op < 45 {
            let real = if rng.chance(20) {
                CircuitBreaker::try_acquire_owned(&b, Instant::from_micros(now)).map(Real::Owned)
            } else {
                b.try_acquire(Instant::from_micros(now)).map(Real::Borrowed)
            };
            let model = m.acquire(now);
            match (real, model) {
                (Ok(r), Ok((mp, t))) => {
                    assert_eq!(r.transition(), t, "{}", ctx("acquire transition"));
                    assert_eq!(r.is_trial(), mp.trial, "{}", ctx("is_trial"));
                    if ancient.len() < 8 && rng.chance(1) {
                        ancient.push((r, mp));
                    } else {
                        live.push((r, mp));
                    }
                }
                (Err(r), Err(e)) => assert_eq!(r, e, "{}", ctx("rejection")),
                (r, e) => panic!(
                    "{}",
                    ctx(&format!(
                        "acquire at {now}: real {:?} model {:?}",
                        r.map(|p| p.is_trial()),
                        e.map(|p| p.0)
                    ))
                ),
            }
        } else if op < 85 && !live.is_empty() {
            let i = if rng.chance(80) {
                live.len() - 1 - rng.below(live.len().min(4) as u64) as usize
            } else {
                rng.below(live.len() as u64) as usize
            };
            let (r, mp) = live.swap_remove(i);
            let outcome = if rng.chance(4) {
                Outcome::Ignored
            } else if rng.chance(fail_pct) {
                Outcome::Failure
            } else {
                Outcome::Success
            };
            let th = m.p.threshold();
            let elapsed = match rng.below(10) {
                0 => th.saturating_sub(1),
                1 => th,
                2 => u64::MAX,
                3 => rng.below(3 * SEC),
                _ => 0,
            };
            records += 1;
            let got = r.record(outcome, now, elapsed);
            let want = m.record(mp, outcome, now, elapsed);
            assert_eq!(
                got,
                want,
                "{}",
                ctx(&format!("record {outcome:?} {elapsed} at {now}"))
            );
        } else if op < 92 && !live.is_empty() {
            let i = rng.below(live.len() as u64) as usize;
            let (r, mp) = live.swap_remove(i);
            drop(r);
            m.abandon(mp);
        } else if op < 99 && rng.chance(15) {
            match rng.below(100) {
                0..=29 => assert_eq!(
                    b.force_open(Instant::from_micros(now)),
                    m.force_open(now),
                    "{}",
                    ctx("force_open")
                ),
                30..=59 => assert_eq!(
                    b.force_close(Instant::from_micros(now)),
                    m.force_close(now),
                    "{}",
                    ctx("force_close")
                ),
                60 if rng.chance(10) => {
                    resets += 1;
                    assert_eq!(
                        b.reset(Instant::from_micros(now)),
                        m.reset(now),
                        "{}",
                        ctx("reset")
                    );
                }
                _ => {
                    let np = random_p(&mut rng, window, rates, max_half_open, time);
                    let old = b.set_config(np.config()).unwrap_or_else(|e| {
                        panic!("{}", ctx(&format!("set_config {np:?}: {e:?}")))
                    });
                    assert_eq!(old, m.p.config(), "{}", ctx("previous config"));
                    m.p = np;
                }
            }
        } else if !ancient.is_empty() && rng.chance(5) {
            let (r, mp) = ancient.swap_remove(0);
            let got = r.record(Outcome::Failure, now, u64::MAX);
            let want = m.record(mp, Outcome::Failure, now, u64::MAX);
            assert_eq!(got, want, "{}", ctx("ancient permit"));
        }
        if live.len() > 300 {
            let (r, mp) = live.swap_remove(0);
            drop(r);
            m.abandon(mp);
        }
        // Reads at the step's clock and at its `now`.
        for t in [if far { clock } else { now }, clock] {
            assert_eq!(
                b.state(Instant::from_micros(t)),
                m.state_at(t),
                "{}",
                ctx(&format!("state at {t} (clock {clock})"))
            );
        }
        assert_eq!(b.metrics(), m.m, "{}", ctx("metrics"));
    }
    // Every permit still held, recorded at the end.
    for (r, mp) in live.into_iter().chain(ancient) {
        let got = r.record(Outcome::Failure, clock, 0);
        let want = m.record(mp, Outcome::Failure, clock, 0);
        assert_eq!(got, want, "seed {seed}: final record");
    }
    assert_eq!(b.metrics(), m.m, "seed {seed}: final metrics");
    if std::env::var("REVIEW_VERBOSE").is_ok() {
        eprintln!(
            "seed {seed}: {:?} {} generations, {records} records, {resets} resets, {:?}",
            m.p.time, m.gen, m.m
        );
    }
}

/// Many seeds, 20 000 steps each (about 9 000 recorded calls and hundreds
/// to thousands of generations a seed).
#[test]
fn breaker_matches_a_docs_model_over_many_seeds() {
    let seeds: u64 = std::env::var("REVIEW_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    for seed in 0..seeds {
        run(seed, 20_000);
    }
}

/// A few seeds over 2 000 000 steps (hundreds of thousands of records): generations and window tags pass their
/// 14- and 12-bit ranges many times.
#[test]
fn breaker_matches_a_docs_model_over_long_histories() {
    for seed in 1_000..1_004 {
        run(seed, 2_000_000);
    }
}

/// Real threads racing for trials of one half-open period never hold more
/// than `half_open_permits` at once (`ConfigBuilder::half_open_permits`:
/// "trial calls allowed in flight while half-open"). The trials are only
/// ignored or abandoned (each frees its slot without deciding, `Outcome`,
/// `Permit`), so the period never ends; each thread counts a trial in
/// flight from its acquire until just before its release, a lower bound of
/// what the breaker holds. Then a success of every trial closes it after
/// `close_after` successes, exactly once. Sound-but-checked.
#[test]
fn racing_threads_never_hold_more_trials_than_permits() {
    use std::sync::atomic::{AtomicU64, Ordering};
    for (permits, close_after) in [(1u8, 1u8), (2, 5), (3, 63), (63, 2)] {
        let b = CircuitBreaker::new(
            Config::builder()
                .consecutive_failures(1)
                .open_for(Duration::from_millis(1))
                .half_open_permits(permits)
                .close_after(close_after)
                .build()
                .unwrap(),
        );
        let t0 = Instant::from_secs(1);
        assert!(b.trip(t0).is_some());
        let t1 = t0 + Duration::from_secs(1);
        let held = AtomicU64::new(0);
        let most = AtomicU64::new(0);
        let granted = AtomicU64::new(0);
        let opened = AtomicU64::new(0);
        std::thread::scope(|s| {
            for id in 0..4u64 {
                let (b, held, most, granted, opened) = (&b, &held, &most, &granted, &opened);
                s.spawn(move || {
                    let mut rng = Rng(id * 7 + u64::from(permits));
                    for _ in 0..50_000 {
                        if let Ok(p) = b.try_acquire(t1) {
                            assert!(p.is_trial());
                            if p.transition().is_some() {
                                opened.fetch_add(1, Ordering::Relaxed);
                            }
                            granted.fetch_add(1, Ordering::Relaxed);
                            let n = held.fetch_add(1, Ordering::SeqCst) + 1;
                            most.fetch_max(n, Ordering::Relaxed);
                            for _ in 0..rng.below(50) {
                                std::hint::spin_loop();
                            }
                            held.fetch_sub(1, Ordering::SeqCst);
                            if rng.chance(50) {
                                assert_eq!(p.record(Outcome::Ignored, t1, Duration::ZERO), None);
                            } else {
                                drop(p);
                            }
                        }
                    }
                });
            }
        });
        let most = most.load(Ordering::Relaxed);
        assert!(
            most <= u64::from(permits),
            "{most} trials in flight, {permits} permits"
        );
        assert!(most >= 1 && granted.load(Ordering::Relaxed) > 1_000);
        assert_eq!(opened.load(Ordering::Relaxed), 1, "one Open -> HalfOpen");
        assert_eq!(
            b.state(t1),
            State::HalfOpen,
            "ignored and abandoned trials decide nothing"
        );
        // Successes now close it, exactly once.
        let closes = AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                let (b, closes) = (&b, &closes);
                s.spawn(move || {
                    for _ in 0..1_000 {
                        if let Ok(p) = b.try_acquire(t1) {
                            if let Some(t) = p.record(Outcome::Success, t1, Duration::ZERO) {
                                assert_eq!((t.from, t.to), (State::HalfOpen, State::Closed));
                                closes.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                });
            }
        });
        assert_eq!(closes.load(Ordering::Relaxed), 1);
        assert_eq!(b.state(t1), State::Closed);
    }
}

/// No trip is lost between racing failures (the `window` docs: "of two
/// racing failures the later one sees the earlier's write"): threads record
/// only failures (or only slow calls) while closed and only successes as
/// trials, holding some permits across other calls and transitions; once
/// they stop, a breaker still closed holds fewer failures than its trip
/// thresholds (window calls below `minimum_calls` for a 100 % rate, and a
/// failure count below `consecutive_failures`). Many short runs, so each
/// ends at a random point of a cycle. Sound-but-checked.
#[test]
fn racing_failures_never_leave_a_closed_breaker_past_its_threshold() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let configs = [
        Config::builder()
            .failure_rate(100)
            .window(8)
            .minimum_calls(8),
        Config::builder()
            .failure_rate(100)
            .window(64)
            .minimum_calls(3),
        Config::builder()
            .slow_call(Duration::from_millis(1), 100)
            .window(5),
        Config::builder().consecutive_failures(4),
        Config::builder()
            .consecutive_failures(2)
            .failure_rate(100)
            .window(1),
    ];
    for (k, builder) in configs.into_iter().enumerate() {
        let config = builder
            .open_for(Duration::from_millis(1))
            .half_open_permits(2)
            .close_after(2)
            .build()
            .unwrap();
        for run in 0..400u64 {
            let b = CircuitBreaker::new(config);
            let clock = AtomicU64::new(SEC);
            std::thread::scope(|s| {
                for id in 0..4u64 {
                    let (b, clock) = (&b, &clock);
                    s.spawn(move || {
                        let mut rng = Rng(run * 31 + id + 1_000 * k as u64);
                        let mut held: Vec<Permit<'_>> = Vec::new();
                        for _ in 0..rng.below(3_000) {
                            let now = Instant::from_micros(clock.load(Ordering::Relaxed));
                            match b.try_acquire(now) {
                                Ok(p) if rng.chance(3) => held.push(p),
                                Ok(p) if p.is_trial() => {
                                    p.record(Outcome::Success, now, Duration::ZERO);
                                }
                                Ok(p) => {
                                    p.record(Outcome::Failure, now, Duration::from_millis(2));
                                }
                                Err(_) => {
                                    clock.fetch_add(2 * MS, Ordering::Relaxed);
                                }
                            }
                            if held.len() > 4 {
                                let p = held.swap_remove(0);
                                let outcome = if p.is_trial() {
                                    Outcome::Success
                                } else {
                                    Outcome::Failure
                                };
                                p.record(outcome, now, Duration::from_millis(2));
                            }
                        }
                        // Held closed permits are failures, held trials
                        // successes, as above.
                        let now = Instant::from_micros(clock.load(Ordering::Relaxed));
                        for p in held {
                            let outcome = if p.is_trial() {
                                Outcome::Success
                            } else {
                                Outcome::Failure
                            };
                            p.record(outcome, now, Duration::from_millis(2));
                        }
                    });
                }
            });
            let now = Instant::from_micros(clock.load(Ordering::Relaxed));
            if b.state(now) != State::Closed {
                continue;
            }
            let s = b.snapshot(now);
            if let Some(n) = config.consecutive_failures() {
                assert!(
                    s.consecutive_failures < n,
                    "config {k} run {run}: closed with {s:?}"
                );
            }
            if config.failure_rate().is_some() || config.slow_call().is_some() {
                assert!(
                    s.window_calls < config.minimum_calls(),
                    "config {k} run {run}: closed with {s:?}"
                );
            }
        }
    }
}

/// One closed generation raced by threads that record only failures: once
/// they stop, a breaker that has counted `k` or more failures (every one by
/// a permit of that generation) is open, where `k` is the documented
/// threshold: `consecutive_failures(k)`; `failure_rate(100)` with
/// `minimum_calls(k)`; `failure_count(k)` over a one-interval time window,
/// all calls in that interval (`now`s spread over it). Runs end anywhere
/// around `k`, so a trip lost between racing failures (the `window` docs:
/// "of two racing failures the later one sees the earlier's write"; the
/// `timed` docs' `written` chain) would leave one closed. Sound-but-checked.
#[test]
fn racing_failures_of_one_generation_always_trip_at_the_threshold() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let mut configs = vec![
        (Config::builder().consecutive_failures(3), 3u64),
        (Config::builder().consecutive_failures(17), 17),
        (
            Config::builder()
                .failure_rate(100)
                .window(8)
                .minimum_calls(5),
            5,
        ),
        (Config::builder().failure_rate(100).window(64), 64),
        (Config::builder().failure_rate(100).window(1), 1),
    ];
    #[cfg(feature = "time-window")]
    configs.extend([
        (
            Config::builder()
                .time_window(Duration::from_secs(1), 1)
                .failure_count(6),
            6,
        ),
        (
            Config::builder()
                .time_window(Duration::from_secs(1), 1)
                .failure_rate(100)
                .minimum_calls(9),
            9,
        ),
    ]);
    for (c, (builder, k)) in configs.into_iter().enumerate() {
        let config = builder.open_for(Duration::from_secs(60)).build().unwrap();
        let mut opened_runs = 0;
        for run in 0..1_500u64 {
            let b = CircuitBreaker::new(config);
            let failed = AtomicU64::new(0);
            let mut rng = Rng(run ^ (c as u64) << 32);
            let per_thread = 1 + rng.below(k.div_ceil(2) + 1);
            std::thread::scope(|s| {
                for id in 0..4u64 {
                    let (b, failed) = (&b, &failed);
                    s.spawn(move || {
                        let mut rng = Rng(run * 8 + id);
                        for _ in 0..per_thread {
                            // Within one second-long interval (ten of them
                            // from the origin).
                            let now = Instant::from_micros(10 * SEC + rng.below(SEC));
                            if let Ok(p) = b.try_acquire(now) {
                                p.record(Outcome::Failure, now, Duration::ZERO);
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    });
                }
            });
            let now = Instant::from_micros(10 * SEC);
            let failures = failed.load(Ordering::Relaxed);
            assert_eq!(b.metrics().failures, failures);
            if failures >= k {
                opened_runs += 1;
                assert_eq!(
                    b.state(now),
                    State::Open,
                    "config {c} run {run}: {failures} failures, threshold {k}"
                );
            } else {
                assert_eq!(b.state(now), State::Closed, "config {c} run {run}");
            }
        }
        assert!(
            opened_runs > 100,
            "config {c}: {opened_runs} runs reached k"
        );
    }
}

/// `reset` racing records of a time-window breaker (threads recording
/// failures and successes in one interval, some with clocks far ahead,
/// while another resets it): nothing panics, and once they stop, a reset
/// breaker counts later intervals as a new one does (failures seconds
/// apart expire, even after records at `Instant::MAX`), and
/// `failure_count(k)` trips exactly at the `k`-th failure of one interval
/// (an old record racing the
/// reset may land one outcome in the window, as the "Time window" docs
/// say, but only in intervals long expired by then). Sound-but-checked.
#[cfg(feature = "time-window")]
#[test]
fn reset_racing_time_window_records_leaves_a_new_window() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let k = 4;
    let config = Config::builder()
        .time_window(Duration::from_secs(4), 4)
        .failure_count(k)
        .failure_rate(100)
        .minimum_calls(255)
        .build()
        .unwrap();
    for run in 0..100u64 {
        let b = CircuitBreaker::new(config);
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            for id in 0..3u64 {
                let (b, stop) = (&b, &stop);
                s.spawn(move || {
                    let mut rng = Rng(run * 4 + id);
                    while !stop.load(Ordering::Relaxed) {
                        let now = if rng.chance(2) {
                            Instant::MAX
                        } else {
                            Instant::from_micros(100 * SEC + rng.below(SEC))
                        };
                        if let Ok(p) = b.try_acquire(now) {
                            let o = if rng.chance(50) {
                                Outcome::Failure
                            } else {
                                Outcome::Success
                            };
                            p.record(o, now, Duration::ZERO);
                        } else {
                            b.force_close(now);
                        }
                    }
                });
            }
            for _ in 0..20 {
                b.reset(Instant::from_secs(100));
                std::thread::yield_now();
            }
            stop.store(true, Ordering::Relaxed);
        });
        b.reset(Instant::from_secs(100));
        // Far later, as a new breaker would: failures 8 s apart expire
        // (a window of 4 s), then `k` at once trip at the `k`-th.
        for i in 0..8 {
            let now = Instant::from_secs(10_000 + 8 * i);
            let p = b.try_acquire(now).unwrap();
            let t = p.record(Outcome::Failure, now, Duration::ZERO);
            assert_eq!(t, None, "run {run}: failure {i}, 8 s after the last");
        }
        let later = Instant::from_secs(20_000);
        for i in 1..=u64::from(k) {
            let p = b.try_acquire(later).unwrap();
            let t = p.record(Outcome::Failure, later, Duration::ZERO);
            assert_eq!(t.is_some(), i == u64::from(k), "run {run}: failure {i}");
        }
    }
}
