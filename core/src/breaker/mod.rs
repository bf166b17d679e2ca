//! A lock-free circuit breaker.
//!
//! Closed → Open → HalfOpen → Closed/Open, held in one packed 32-bit state
//! word changed only by compare-and-swap, so every transition happens
//! exactly once however many threads (or interrupt handlers) race on it.
//! The layout is documented in the private `word` module; the words each
//! part uses and the range limits that follow are listed in the crate docs.
//!
//! # Examples
//!
//! ```
//! use fusebox::breaker::{CircuitBreaker, Config, Outcome, State};
//! use fusebox::{Duration, Instant};
//!
//! let breaker = CircuitBreaker::new(
//!     Config::builder()
//!         .consecutive_failures(2)
//!         .open_for(Duration::from_secs(30))
//!         .build()?,
//! );
//! let mut now = Instant::ZERO;
//! for _ in 0..2 {
//!     let permit = breaker.try_acquire(now).expect("closed");
//!     permit.record(Outcome::Failure, now, Duration::from_millis(3));
//! }
//! let rejected = breaker.try_acquire(now).unwrap_err();
//! assert_eq!(rejected.state, State::Open);
//! assert!(rejected.retry_after.unwrap() >= Duration::from_secs(30));
//!
//! now = now + rejected.retry_after.unwrap();
//! let trial = breaker.try_acquire(now).expect("half-open trial");
//! let closed = trial.record(Outcome::Success, now, Duration::from_millis(1));
//! assert_eq!(closed.map(|t| t.to), Some(State::Closed));
//! # Ok::<(), fusebox::breaker::ConfigError>(())
//! ```

mod config;
#[cfg(feature = "serde")]
mod ser;
mod snapshot;
mod window;
pub(crate) mod word;

pub use config::{Config, ConfigBuilder, ConfigError, MAX_WINDOW};
pub use snapshot::{Snapshot, SnapshotError};

use crate::sync::{const_fn_unless_loom, AtomicU32, Counter, Ordering};
use crate::{Duration, Instant};
use window::{Cursor, Window};
use word::{Kind, Word, MAX_STREAK};

/// The state a breaker reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum State {
    /// Calls pass; outcomes are counted.
    Closed,
    /// Calls are rejected until the open time has passed.
    Open,
    /// A limited number of trial calls pass; their outcomes decide.
    HalfOpen,
    /// Opened by [`CircuitBreaker::force_open`]; stays open until
    /// [`CircuitBreaker::force_close`] or [`CircuitBreaker::reset`].
    ForcedOpen,
}

/// How a permitted call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Outcome {
    /// The call succeeded (it may still count as slow).
    Success,
    /// The call failed and counts toward opening the breaker.
    Failure,
}

/// A state change, returned to the caller that caused it so it can log it
/// (defmt, tracing) without callbacks or allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Transition {
    /// State before.
    pub from: State,
    /// State after.
    pub to: State,
    /// The `now` of the call that made it.
    pub at: Instant,
}

/// A call was not permitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Rejected {
    /// The state that rejected it: `Open`, `HalfOpen` (all trial permits in
    /// use) or `ForcedOpen`.
    pub state: State,
    /// When the breaker will let a trial through; `None` when that depends on
    /// other calls finishing (half-open) or on an operator (forced open).
    pub retry_after: Option<Duration>,
}

impl core::fmt::Display for Rejected {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "circuit breaker {:?}: call not permitted", self.state)?;
        if let Some(after) = self.retry_after {
            write!(f, ", retry after {after:?}")?;
        }
        Ok(())
    }
}

impl core::error::Error for Rejected {}

/// Counters since creation (or the last [`CircuitBreaker::reset`]).
///
/// Read with `Relaxed` loads: each field is exact, the fields together are
/// not one atomic snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Metrics {
    /// Calls recorded as [`Outcome::Success`].
    pub successes: u64,
    /// Calls recorded as [`Outcome::Failure`].
    pub failures: u64,
    /// Recorded calls (of either outcome) at or above the slow threshold.
    pub slow_calls: u64,
    /// Calls rejected by [`CircuitBreaker::try_acquire`].
    pub rejected: u64,
    /// Times the breaker opened (from closed or half-open; not forced).
    pub trips: u64,
    /// Permits dropped without a recorded outcome.
    pub abandoned: u64,
}

impl Metrics {
    /// Permitted calls that have finished: successes, failures and
    /// abandoned permits.
    pub const fn calls(&self) -> u64 {
        self.successes + self.failures + self.abandoned
    }
}

#[derive(Debug)]
struct Counters {
    successes: Counter,
    failures: Counter,
    slow_calls: Counter,
    rejected: Counter,
    trips: Counter,
    abandoned: Counter,
}

/// A lock-free circuit breaker: `no_std`, allocation-free, time passed in.
///
/// `Sync`: share it by reference (or in a `static`, [`CircuitBreaker::new`]
/// is `const`) between threads and interrupt handlers.
///
/// # Size
///
/// 140 bytes of decision state (the state word, the generation counter,
/// and the sliding window: 64 tagged 16-bit slots plus a write counter), six
/// statistics counters (8 bytes each where the target has 64-bit atomics, 4
/// bytes on 32-bit microcontrollers) and the 32-byte [`Config`]: 224 bytes
/// on x86-64, 200 on Cortex-M (alignment padding included).
#[derive(Debug)]
// `repr(C)` keeps this order: the state word (read on every call, written
// only on transitions) sits more than a cache line away from the counters
// (written on every record), so threads sharing a closed breaker contend on
// the counter line only and the state line stays shared.
#[repr(C)]
pub struct CircuitBreaker {
    /// The packed state word; see the `word` module for its layout.
    state: AtomicU32,
    /// Source of generations: `fetch_add` hands each install a fresh one.
    epoch: AtomicU32,
    config: Config,
    window: Window,
    counters: Counters,
}

/// Permission for one call, from [`CircuitBreaker::try_acquire`].
///
/// Record how the call went with [`Permit::record`]. Dropping it unrecorded
/// frees its half-open slot and counts as neither success nor failure (it is
/// counted in [`Metrics::abandoned`]).
#[must_use = "a permit must be recorded (or dropped to abandon the call)"]
#[derive(Debug)]
pub struct Permit<'a> {
    breaker: &'a CircuitBreaker,
    gen: u32,
    half_open: bool,
    transition: Option<Transition>,
}

impl CircuitBreaker {
    const_fn_unless_loom! {
        /// A closed breaker with `config`.
        pub fn new(config: Config) -> Self {
            Self {
                state: AtomicU32::new(Word::closed(0, 0, Cursor::EMPTY).0),
                epoch: AtomicU32::new(0),
                window: Window::new(),
                counters: Counters {
                    successes: Counter::new(),
                    failures: Counter::new(),
                    slow_calls: Counter::new(),
                    rejected: Counter::new(),
                    trips: Counter::new(),
                    abandoned: Counter::new(),
                },
                config,
            }
        }
    }

    /// The configuration.
    pub const fn config(&self) -> &Config {
        &self.config
    }

    /// Asks to make a call at `now`.
    ///
    /// Closed: always permitted (one atomic load, no write). Open: rejected
    /// until the open time has passed; the first caller after that moves the
    /// breaker to half-open and gets the first trial permit (exactly one
    /// caller wins; see [`Permit::transition`]). Half-open: permitted while
    /// fewer than `half_open_permits` trials are in flight.
    ///
    /// # Errors
    ///
    /// [`Rejected`] with the rejecting state and, when open, the time until
    /// a trial will be let through.
    #[inline]
    pub fn try_acquire(&self, now: Instant) -> Result<Permit<'_>, Rejected> {
        let cur = self.load();
        if cur.kind() == Kind::Closed {
            return Ok(self.permit(cur.gen(), false, None));
        }
        self.acquire_slow(cur, now)
    }

    /// `try_acquire` away from Closed: rejections, half-open trials and the
    /// Open → HalfOpen transition (a CAS loop that may end up Closed again).
    #[inline(never)]
    fn acquire_slow(&self, mut cur: Word, now: Instant) -> Result<Permit<'_>, Rejected> {
        loop {
            let (new, transition) = match cur.kind() {
                Kind::Closed => return Ok(self.permit(cur.gen(), false, None)),
                Kind::ForcedOpen => return Err(self.reject(State::ForcedOpen, None)),
                Kind::Open => {
                    let open_for = self.config.open_duration(cur.streak());
                    if let Some(left) = word::remaining(cur, open_for, now) {
                        return Err(self.reject(State::Open, Some(left)));
                    }
                    let gen = self.next_gen();
                    let t = Transition {
                        from: State::Open,
                        to: State::HalfOpen,
                        at: now,
                    };
                    (Word::half_open(gen, cur.streak(), 1, 0), Some(t))
                }
                Kind::HalfOpen => {
                    if cur.in_flight() >= u32::from(self.config.half_open_permits) {
                        return Err(self.reject(State::HalfOpen, None));
                    }
                    let next = Word::half_open(
                        cur.gen(),
                        cur.streak(),
                        cur.in_flight() + 1,
                        cur.successes(),
                    );
                    (next, None)
                }
            };
            match self.cas(cur, new) {
                Ok(()) => return Ok(self.permit(new.gen(), true, transition)),
                Err(actual) => cur = actual,
            }
        }
    }

    /// The state as the next [`try_acquire`](Self::try_acquire) at `now`
    /// would see it: an open breaker whose time has passed reads as
    /// half-open. Changes nothing.
    pub fn state(&self, now: Instant) -> State {
        let cur = self.load();
        match cur.kind() {
            Kind::Open => {
                let open_for = self.config.open_duration(cur.streak());
                if word::remaining(cur, open_for, now).is_some() {
                    State::Open
                } else {
                    State::HalfOpen
                }
            }
            kind => state_of(kind),
        }
    }

    /// The counters.
    pub fn metrics(&self) -> Metrics {
        let c = &self.counters;
        Metrics {
            successes: c.successes.get(),
            failures: c.failures.get(),
            slow_calls: c.slow_calls.get(),
            rejected: c.rejected.get(),
            trips: c.trips.get(),
            abandoned: c.abandoned.get(),
        }
    }

    /// Opens the breaker until [`force_close`](Self::force_close) or
    /// [`reset`](Self::reset). Outstanding permits become stale: their
    /// records are counted but change no state.
    ///
    /// Returns the transition, or `None` if it was already forced open.
    pub fn force_open(&self, now: Instant) -> Option<Transition> {
        let mut cur = self.load();
        loop {
            if cur.kind() == Kind::ForcedOpen {
                return None;
            }
            match self.cas(cur, Word::forced_open(self.next_gen())) {
                Ok(()) => return Some(transition(cur.kind(), Kind::ForcedOpen, now)),
                Err(actual) => cur = actual,
            }
        }
    }

    /// Closes the breaker (from any state but closed), clearing the
    /// re-opening streak. Counters are kept.
    ///
    /// Returns the transition, or `None` if it was already closed.
    pub fn force_close(&self, now: Instant) -> Option<Transition> {
        let mut cur = self.load();
        loop {
            if cur.kind() == Kind::Closed {
                return None;
            }
            match self.cas(cur, Word::closed(self.next_gen(), 0, Cursor::EMPTY)) {
                Ok(()) => {
                    return Some(transition(cur.kind(), Kind::Closed, now));
                }
                Err(actual) => cur = actual,
            }
        }
    }

    /// Returns the breaker to its initial state: closed, empty window, zero
    /// counters. Returns the transition if the state changed.
    pub fn reset(&self, now: Instant) -> Option<Transition> {
        let closed = Word::closed(self.next_gen(), 0, Cursor::EMPTY);
        let prev = Word(self.state.swap(closed.0, Ordering::AcqRel));
        let c = &self.counters;
        for counter in [
            &c.successes,
            &c.failures,
            &c.slow_calls,
            &c.rejected,
            &c.trips,
            &c.abandoned,
        ] {
            counter.set(0);
        }
        (prev.kind() != Kind::Closed).then(|| transition(prev.kind(), Kind::Closed, now))
    }

    #[inline]
    fn load(&self) -> Word {
        Word(self.state.load(Ordering::Acquire))
    }

    #[inline]
    fn cas(&self, current: Word, new: Word) -> Result<(), Word> {
        self.state
            .compare_exchange(current.0, new.0, Ordering::AcqRel, Ordering::Acquire)
            .map(|_| ())
            .map_err(Word)
    }

    fn next_gen(&self) -> u32 {
        self.epoch.fetch_add(1, Ordering::Relaxed).wrapping_add(1) & word::GEN_MASK
    }

    #[inline]
    fn permit(&self, gen: u32, half_open: bool, transition: Option<Transition>) -> Permit<'_> {
        Permit {
            breaker: self,
            gen,
            half_open,
            transition,
        }
    }

    #[cold]
    fn reject(&self, state: State, retry_after: Option<Duration>) -> Rejected {
        self.counters.rejected.incr();
        Rejected { state, retry_after }
    }

    /// Records an outcome. The consecutive policy's success on a breaker
    /// with no failure streak is the hot path: one counter RMW and one load,
    /// no state write; everything else goes out of line.
    #[inline]
    fn record(
        &self,
        gen: u32,
        half_open: bool,
        outcome: Outcome,
        now: Instant,
        elapsed: Duration,
    ) -> Option<Transition> {
        if outcome == Outcome::Success && !half_open && !self.config.uses_window() {
            self.counters.successes.incr();
            let cur = self.load();
            if cur == Word::closed(gen, 0, Cursor::EMPTY) {
                return None; // still closed, no streak to reset: nothing to write
            }
            return self.settle(cur, gen, false, false, false, now);
        }
        self.record_counted(gen, half_open, outcome, now, elapsed)
    }

    /// Every record but the hot path: counts the outcome, then settles it.
    #[inline(never)]
    fn record_counted(
        &self,
        gen: u32,
        half_open: bool,
        outcome: Outcome,
        now: Instant,
        elapsed: Duration,
    ) -> Option<Transition> {
        let failure = outcome == Outcome::Failure;
        let slow = self.config.slow_rate != 0 && elapsed >= self.config.slow_threshold;
        let c = &self.counters;
        if failure {
            c.failures.incr();
        } else {
            c.successes.incr();
        }
        if slow {
            c.slow_calls.incr();
        }
        self.settle(self.load(), gen, half_open, failure, slow, now)
    }

    /// Applies a counted outcome to the state word `cur`.
    #[inline(never)]
    fn settle(
        &self,
        cur: Word,
        gen: u32,
        half_open: bool,
        failure: bool,
        slow: bool,
        now: Instant,
    ) -> Option<Transition> {
        if !cur.owns(gen, half_open) {
            return None; // a stale permit: counted, changes no state
        }
        if half_open {
            self.record_trial(cur, failure || slow, now)
        } else {
            self.record_closed(cur, failure, slow, now)
        }
    }

    fn record_closed(
        &self,
        mut cur: Word,
        failure: bool,
        slow: bool,
        now: Instant,
    ) -> Option<Transition> {
        let cfg = &self.config;
        let gen = cur.gen();
        let windowed = cfg.uses_window();
        let threshold = u32::from(cfg.consecutive_failures);
        // One CAS updates the failure count and, with a window, claims this
        // record's slot; it fails for a stale generation.
        let claimed = loop {
            if !cur.owns(gen, false) {
                return None;
            }
            let failures = match (threshold, failure) {
                (0, _) | (_, false) => 0,
                (_, true) => cur.failures() + 1,
            };
            if threshold != 0 && failures >= threshold {
                match self.cas(cur, self.open_word(now)) {
                    Ok(()) => return Some(self.tripped(now)),
                    Err(actual) => {
                        cur = actual;
                        continue;
                    }
                }
            }
            let cursor = if windowed {
                cur.cursor().next(u32::from(cfg.window))
            } else {
                Cursor::EMPTY
            };
            let new = Word::closed(gen, failures, cursor);
            if new == cur {
                return None; // nothing to write: the closed fast path
            }
            match self.cas(cur, new) {
                Ok(()) => break cur.cursor(),
                Err(actual) => cur = actual,
            }
        };
        if windowed {
            self.record_window(gen, claimed, failure, slow, now)
        } else {
            None
        }
    }

    /// The sliding-window part of a closed record: write the claimed slot,
    /// then, for a failure or slow call, tally and maybe trip.
    #[inline(never)]
    fn record_window(
        &self,
        gen: u32,
        claimed: Cursor,
        failure: bool,
        slow: bool,
        now: Instant,
    ) -> Option<Transition> {
        let cfg = &self.config;
        self.window
            .write(gen, cfg.window, claimed.count, failure, slow);
        if !(failure || slow) {
            return None; // a fast success cannot raise a rate
        }
        let mut cur = self.load();
        loop {
            if !cur.owns(gen, false) {
                return None;
            }
            let t = self.window.tally(gen, cfg.window, cur.cursor());
            let trip = t.calls >= u32::from(cfg.minimum_calls)
                && ((cfg.failure_rate != 0
                    && t.failures * 100 >= u32::from(cfg.failure_rate) * t.calls)
                    || (cfg.slow_rate != 0 && t.slow * 100 >= u32::from(cfg.slow_rate) * t.calls));
            if !trip {
                return None;
            }
            match self.cas(cur, self.open_word(now)) {
                Ok(()) => return Some(self.tripped(now)),
                Err(actual) => cur = actual,
            }
        }
    }

    /// The Open word for a trip from closed at `now`.
    fn open_word(&self, now: Instant) -> Word {
        Word::open(0, word::deadline_after(now, self.config.open_for))
    }

    fn tripped(&self, now: Instant) -> Transition {
        self.counters.trips.incr();
        transition(Kind::Closed, Kind::Open, now)
    }

    #[inline(never)]
    fn record_trial(&self, mut cur: Word, failed: bool, now: Instant) -> Option<Transition> {
        let gen = cur.gen();
        let mut closed_gen = None;
        loop {
            if !cur.owns(gen, true) {
                return None;
            }
            let (new, to) = if failed {
                let streak = (cur.streak() + 1).min(MAX_STREAK);
                let open_for = self.config.open_duration(streak);
                let deadline = word::deadline_after(now, open_for);
                (Word::open(streak, deadline), Some(Kind::Open))
            } else if cur.successes() + 1 >= u32::from(self.config.close_after) {
                let g = *closed_gen.get_or_insert_with(|| self.next_gen());
                (Word::closed(g, 0, Cursor::EMPTY), Some(Kind::Closed))
            } else {
                let in_flight = cur.in_flight().saturating_sub(1);
                let next = Word::half_open(gen, cur.streak(), in_flight, cur.successes() + 1);
                (next, None)
            };
            match self.cas(cur, new) {
                Ok(()) => {
                    if to == Some(Kind::Open) {
                        self.counters.trips.incr();
                    }
                    return to.map(|to| transition(Kind::HalfOpen, to, now));
                }
                Err(actual) => cur = actual,
            }
        }
    }

    #[cold]
    fn abandon(&self, gen: u32, half_open: bool) {
        self.counters.abandoned.incr();
        if !half_open {
            return;
        }
        let mut cur = self.load();
        while cur.owns(gen, true) {
            let in_flight = cur.in_flight().saturating_sub(1);
            let new = Word::half_open(gen, cur.streak(), in_flight, cur.successes());
            match self.cas(cur, new) {
                Ok(()) => return,
                Err(actual) => cur = actual,
            }
        }
    }
}

impl Permit<'_> {
    /// Records how the call went; `elapsed` is its duration (for slow-call
    /// detection). Returns the transition this record caused, if any.
    ///
    /// A permit issued before a transition (a different generation) is
    /// counted in the metrics but cannot change the new state.
    #[inline]
    pub fn record(self, outcome: Outcome, now: Instant, elapsed: Duration) -> Option<Transition> {
        let this = core::mem::ManuallyDrop::new(self);
        this.breaker
            .record(this.gen, this.half_open, outcome, now, elapsed)
    }

    /// The Open → HalfOpen transition that issuing this permit caused, if it
    /// did (exactly one caller per opening gets it).
    pub fn transition(&self) -> Option<Transition> {
        self.transition
    }

    /// Whether this is a half-open trial permit.
    pub fn is_trial(&self) -> bool {
        self.half_open
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.breaker.abandon(self.gen, self.half_open);
    }
}

const fn state_of(kind: Kind) -> State {
    match kind {
        Kind::Closed => State::Closed,
        Kind::Open => State::Open,
        Kind::HalfOpen => State::HalfOpen,
        Kind::ForcedOpen => State::ForcedOpen,
    }
}

fn transition(from: Kind, to: Kind, at: Instant) -> Transition {
    Transition {
        from: state_of(from),
        to: state_of(to),
        at,
    }
}

#[cfg(all(test, not(loom)))]
mod tests;

// The documented sizes, checked by every build, the thumb targets included.
#[cfg(not(loom))]
const _: () = assert!(
    core::mem::size_of::<CircuitBreaker>()
        == if cfg!(target_has_atomic = "64") {
            224
        } else {
            200
        }
);

// The state word and the counters never share a cache line (see the struct).
#[cfg(not(loom))]
const _: () = assert!(
    core::mem::offset_of!(CircuitBreaker, counters) - core::mem::offset_of!(CircuitBreaker, state)
        >= 64 + core::mem::size_of::<AtomicU32>()
);
