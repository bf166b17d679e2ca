//! A lock-free circuit breaker.
//!
//! Closed → Open → HalfOpen → Closed/Open, held in one packed 32-bit state
//! word changed only by compare-and-swap, so every transition happens
//! exactly once however many threads (or interrupt handlers) race on it.
//! The layout is documented in the private `word` module; the words each
//! part uses and the range limits that follow are listed in the crate docs.
//!
//! # Generations
//!
//! Every Closed, HalfOpen and ForcedOpen word is one *generation*; a permit
//! belongs to the generation that issued it, and its record changes state
//! only while that generation is installed. The state word holds the low 14
//! bits; the `epoch` word holds the full number (`u64` where the target has
//! 64-bit atomics, so it never wraps; `u32` on Cortex-M). A new generation
//! is `epoch + 1`, drawn by a caller *about to* install it; only the caller
//! whose CAS installs it then publishes it into `epoch`, so a losing
//! attempt consumes nothing. Before any word that carries a generation is
//! replaced, the replacing caller makes sure `epoch` names it (helping the
//! installer that has not published yet), so the epoch is always the
//! current generation or one behind it. A permit keeps the full number and
//! a record checks both: the 14 bits in the word and the epoch within one
//! of it. A permit held unrecorded across any number of transitions (below
//! 2³² on Cortex-M) is therefore never taken for a current one. What is
//! left is the usual lock-free ABA horizon: a thread stalled *inside* one
//! call, between two of its own loads, while 16 384 transitions happen.
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

use crate::sync::{const_fn_unless_loom, AtomicU32, Counter, Epoch, EpochWord, Ordering};
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
    ///
    /// Saturates at `u64::MAX` (a restored snapshot may hold any values).
    pub const fn calls(&self) -> u64 {
        self.successes
            .saturating_add(self.failures)
            .saturating_add(self.abandoned)
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
/// The state word, the epoch (the full generation: 8 bytes where the target
/// has 64-bit atomics, 4 on 32-bit microcontrollers), the sliding window (64
/// tagged 16-bit slots plus a publication counter), six statistics counters (8
/// bytes each where the target has 64-bit atomics, 4 bytes on 32-bit
/// microcontrollers) and the 32-byte [`Config`]: 232 bytes on x86-64, 200 on
/// Cortex-M (alignment padding included).
#[derive(Debug)]
// `repr(C)` keeps this order: the state word (read on every call, written
// only on transitions) sits more than a cache line away from the counters
// (written on every record), so threads sharing a closed breaker contend on
// the counter line only and the state line stays shared.
#[repr(C)]
pub struct CircuitBreaker {
    /// The packed state word; see the `word` module for its layout.
    state: AtomicU32,
    /// The full number of the latest generation, or one behind it while its
    /// installer has not yet published it (see the module docs).
    epoch: EpochWord,
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
    /// The full generation that issued it.
    gen: Epoch,
    half_open: bool,
    transition: Option<Transition>,
}

impl CircuitBreaker {
    const_fn_unless_loom! {
        /// A closed breaker with `config`.
        pub fn new(config: Config) -> Self {
            Self {
                state: AtomicU32::new(Word::closed(0, 0, Cursor::EMPTY).0),
                epoch: EpochWord::new(0),
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

    /// A closed breaker whose current generation is `generation` (truncated
    /// to the epoch word), for loom models of histories past a wrap that
    /// loom could not afford to replay. Only under `--cfg loom`.
    #[cfg(loom)]
    #[doc(hidden)]
    pub fn with_generation(config: Config, generation: u64) -> Self {
        let breaker = Self::new(config);
        let gen = generation as Epoch;
        breaker.epoch.store(gen, Ordering::Relaxed);
        breaker.state.store(
            Word::closed(low(gen), 0, Cursor::EMPTY).0,
            Ordering::Relaxed,
        );
        breaker
    }

    /// The configuration.
    pub const fn config(&self) -> &Config {
        &self.config
    }

    /// Asks to make a call at `now`.
    ///
    /// Closed: always permitted (two atomic loads, no write). Open: rejected
    /// until the open time has passed; the first caller after that moves the
    /// breaker to half-open and gets the first trial permit (exactly one
    /// caller wins; see [`Permit::transition`]). A `now` earlier than the
    /// trip (a clock read before another thread tripped it) reads as open,
    /// back to `max(open time, ~1.05 s)` before the trip: a stale clock
    /// never lets a trial through early. Half-open: permitted while fewer
    /// than `half_open_permits` trials are in flight.
    ///
    /// # Errors
    ///
    /// [`Rejected`] with the rejecting state and, when open, the time until
    /// a trial will be let through.
    #[inline]
    pub fn try_acquire(&self, now: Instant) -> Result<Permit<'_>, Rejected> {
        // The epoch first: it is then at most the word's full generation.
        let epoch = self.epoch.load(Ordering::Acquire);
        let cur = self.load();
        if cur.kind() == Kind::Closed {
            return Ok(self.permit(full_gen(epoch, cur), false, None));
        }
        self.acquire_slow(epoch, cur, now)
    }

    /// `try_acquire` away from Closed: rejections, half-open trials and the
    /// Open → HalfOpen transition (a CAS loop that may end up Closed again).
    #[inline(never)]
    fn acquire_slow(
        &self,
        mut epoch: Epoch,
        mut cur: Word,
        now: Instant,
    ) -> Result<Permit<'_>, Rejected> {
        loop {
            let (gen, new, transition) = match cur.kind() {
                Kind::Closed => return Ok(self.permit(full_gen(epoch, cur), false, None)),
                Kind::ForcedOpen => return Err(self.reject(State::ForcedOpen, None)),
                Kind::Open => {
                    let open_for = self.config.open_duration(cur.streak());
                    if let Some(left) = word::remaining(cur, open_for, now) {
                        return Err(self.reject(State::Open, Some(left)));
                    }
                    let gen = self.draw(cur);
                    let t = Transition {
                        from: State::Open,
                        to: State::HalfOpen,
                        at: now,
                    };
                    (gen, Word::half_open(low(gen), cur.streak(), 1, 0), Some(t))
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
                    (full_gen(epoch, cur), next, None)
                }
            };
            if self.cas(cur, new).is_ok() {
                if transition.is_some() {
                    self.publish(gen);
                }
                return Ok(self.permit(gen, true, transition));
            }
            epoch = self.epoch.load(Ordering::Acquire);
            cur = self.load();
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
        let forced = Word::forced_open(0);
        self.install(|cur| (cur.kind() != Kind::ForcedOpen).then_some(forced))
            .map(|prev| transition(prev.kind(), Kind::ForcedOpen, now))
    }

    /// Closes the breaker (from any state but closed), clearing the
    /// re-opening streak. Counters are kept.
    ///
    /// Returns the transition, or `None` if it was already closed.
    pub fn force_close(&self, now: Instant) -> Option<Transition> {
        let closed = Word::closed(0, 0, Cursor::EMPTY);
        self.install(|cur| (cur.kind() != Kind::Closed).then_some(closed))
            .map(|prev| transition(prev.kind(), Kind::Closed, now))
    }

    /// Returns the breaker to its initial state: closed, empty window (a new
    /// generation: outstanding permits become stale), zero counters.
    /// Returns the transition if the state changed.
    pub fn reset(&self, now: Instant) -> Option<Transition> {
        let closed = Word::closed(0, 0, Cursor::EMPTY);
        let prev = self.install(|_| Some(closed)).unwrap_or(closed);
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

    /// The epoch once it names `cur`'s generation (or, for an Open word, the
    /// generation before it): helps an installer that has not published
    /// yet. If `cur` is no longer installed, the value is meaningless, and
    /// so harmless: the caller's CAS on `cur` fails.
    fn settled_epoch(&self, cur: Word) -> Epoch {
        let epoch = self.epoch.load(Ordering::Acquire);
        if cur.kind() == Kind::Open || low(epoch) == cur.gen() {
            return epoch;
        }
        // `cur` was installed as epoch + 1 and is not published yet.
        let next = epoch.wrapping_add(1);
        if low(next) != cur.gen() {
            return epoch; // `cur` is stale
        }
        match self
            .epoch
            .compare_exchange(epoch, next, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => next,
            Err(actual) => actual,
        }
    }

    /// The full generation for a word about to replace `cur`. Consumed only
    /// if that CAS succeeds and [`publish`](Self::publish) follows.
    fn draw(&self, cur: Word) -> Epoch {
        self.settled_epoch(cur).wrapping_add(1)
    }

    /// Publishes generation `gen` into the epoch once its word is installed
    /// (a no-op if another caller already helped).
    fn publish(&self, gen: Epoch) {
        let _ = self.epoch.compare_exchange(
            gen.wrapping_sub(1),
            gen,
            Ordering::AcqRel,
            Ordering::Relaxed,
        );
    }

    /// Installs the word `make` returns for the current one, with a fresh
    /// generation patched in when the word carries one, by CAS; `None` from
    /// `make` leaves the state alone. Returns the word it replaced, if it
    /// installed one, and the generation drawn for it.
    fn install_gen(&self, make: impl Fn(Word) -> Option<Word>) -> Option<(Word, Epoch)> {
        let mut cur = self.load();
        loop {
            let new = make(cur)?;
            let gen = self.draw(cur);
            let new = new.with_gen(low(gen));
            match self.cas(cur, new) {
                Ok(()) => {
                    if new.kind() != Kind::Open {
                        self.publish(gen);
                    }
                    return Some((cur, gen));
                }
                Err(actual) => cur = actual,
            }
        }
    }

    /// [`install_gen`](Self::install_gen), returning the replaced word.
    fn install(&self, make: impl Fn(Word) -> Option<Word>) -> Option<Word> {
        self.install_gen(make).map(|(prev, _)| prev)
    }

    /// Whether a permit of full generation `gen` still owns the installed
    /// word `cur`: the low bits match and the epoch (read after `cur`) is
    /// that generation or one behind.
    #[inline]
    fn owns(&self, cur: Word, gen: Epoch, half_open: bool) -> bool {
        cur.owns(low(gen), half_open) && gen.wrapping_sub(self.epoch.load(Ordering::Acquire)) <= 1
    }

    #[inline]
    fn permit(&self, gen: Epoch, half_open: bool, transition: Option<Transition>) -> Permit<'_> {
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
        gen: Epoch,
        half_open: bool,
        outcome: Outcome,
        now: Instant,
        elapsed: Duration,
    ) -> Option<Transition> {
        if outcome == Outcome::Success && !half_open && !self.config.uses_window() {
            self.counters.successes.incr();
            let cur = self.load();
            // Even a stale permit's success changes nothing in a clean
            // closed word, so the low bits suffice here.
            if cur == Word::closed(low(gen), 0, Cursor::EMPTY) {
                return None; // still closed, no streak to reset: nothing to write
            }
            return self.settle(cur, gen, false, false, false, now);
        }
        if outcome == Outcome::Success && !half_open && elapsed < self.config.slow_threshold {
            return self.record_fast_success(gen, now);
        }
        self.record_counted(gen, half_open, outcome, now, elapsed)
    }

    /// A fast closed success under a rate policy: count it, claim its window
    /// place (resetting any consecutive-failure count), and only tally when
    /// it completes `minimum_calls` (see the `window` module).
    #[inline(never)]
    fn record_fast_success(&self, gen: Epoch, now: Instant) -> Option<Transition> {
        self.counters.successes.incr();
        let size = u32::from(self.config.window);
        let mut cur = self.load();
        if !self.owns(cur, gen, false) {
            return None; // a stale permit: counted, changes no state
        }
        let claimed = loop {
            let new = Word::closed(cur.gen(), 0, cur.cursor().next(size));
            match self.cas(cur, new) {
                Ok(()) => break cur.cursor(),
                Err(actual) if actual.owns(low(gen), false) => cur = actual,
                Err(_) => return None,
            }
        };
        let cfg = &self.config;
        let first_lap = !claimed.full && claimed.count < size;
        let completes_minimum = first_lap && claimed.count + 1 >= u32::from(cfg.minimum_calls);
        if !completes_minimum && self.window.holds_fast_success(cfg.window, claimed.count) {
            return None; // the steady state: nothing to write, nothing to tally
        }
        self.record_window(gen, claimed, false, false, now)
    }

    /// Every record but the hot path: counts the outcome, then settles it.
    #[inline(never)]
    fn record_counted(
        &self,
        gen: Epoch,
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
        gen: Epoch,
        half_open: bool,
        failure: bool,
        slow: bool,
        now: Instant,
    ) -> Option<Transition> {
        if !self.owns(cur, gen, half_open) {
            return None; // a stale permit: counted, changes no state
        }
        if half_open {
            self.record_trial(cur, gen, failure || slow, now)
        } else {
            self.record_closed(cur, gen, failure, slow, now)
        }
    }

    /// A record of generation `gen`, which `cur` was installed as. Inside
    /// the CAS loops below a changed word is judged by its low bits only.
    fn record_closed(
        &self,
        mut cur: Word,
        gen: Epoch,
        failure: bool,
        slow: bool,
        now: Instant,
    ) -> Option<Transition> {
        let cfg = &self.config;
        let windowed = cfg.uses_window();
        let threshold = u32::from(cfg.consecutive_failures);
        // One CAS updates the failure count and, with a window, claims this
        // record's slot; it fails for a stale generation.
        let claimed = loop {
            if !cur.owns(low(gen), false) {
                return None;
            }
            let failures = match (threshold, failure) {
                (0, _) | (_, false) => 0,
                (_, true) => cur.failures() + 1,
            };
            if threshold != 0 && failures >= threshold {
                match self.trip(cur, gen, now) {
                    Ok(t) => return Some(t),
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
            let new = Word::closed(cur.gen(), failures, cursor);
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
    /// then tally and maybe trip (see the `window` module for who tallies).
    #[inline(never)]
    fn record_window(
        &self,
        gen: Epoch,
        claimed: Cursor,
        failure: bool,
        slow: bool,
        now: Instant,
    ) -> Option<Transition> {
        let cfg = &self.config;
        let size = u32::from(cfg.window);
        self.window
            .write(low(gen), cfg.window, claimed.count, failure, slow, || {
                let cur = self.load();
                cur.owns(low(gen), false) && cur.cursor().still_holds(claimed.count, size)
            });
        let first_lap = !claimed.full && claimed.count < size;
        let completes_minimum = first_lap && claimed.count + 1 >= u32::from(cfg.minimum_calls);
        if !(failure || slow || completes_minimum) {
            return None; // a fast success in a full window cannot raise a rate
        }
        // The cursor is read after the sync, so it covers every claim whose
        // published write the tally sees.
        self.window.sync();
        let mut cur = self.load();
        loop {
            if !cur.owns(low(gen), false) {
                return None;
            }
            let calls = cur.cursor().calls(size);
            let t = self.window.tally(low(gen), cfg.window, cur.cursor());
            let over =
                |count: u32, percent: u8| percent != 0 && count * 100 >= u32::from(percent) * calls;
            let trip = calls >= u32::from(cfg.minimum_calls)
                && (over(t.failures, cfg.failure_rate) || over(t.slow, cfg.slow_rate));
            if !trip {
                return None;
            }
            match self.trip(cur, gen, now) {
                Ok(t) => return Some(t),
                Err(actual) => cur = actual,
            }
        }
    }

    /// Opens the closed word `cur` of generation `gen` at `now`.
    fn trip(&self, cur: Word, gen: Epoch, now: Instant) -> Result<Transition, Word> {
        // The Open word carries no generation: the epoch must name `cur`'s
        // before it goes.
        self.publish(gen);
        let open = Word::open(0, word::deadline_after(now, self.config.open_for));
        self.cas(cur, open)?;
        self.counters.trips.incr();
        Ok(transition(Kind::Closed, Kind::Open, now))
    }

    #[inline(never)]
    fn record_trial(
        &self,
        mut cur: Word,
        gen: Epoch,
        failed: bool,
        now: Instant,
    ) -> Option<Transition> {
        // The epoch names this half-open word before it is replaced.
        self.publish(gen);
        let closed_gen = gen.wrapping_add(1);
        loop {
            if !cur.owns(low(gen), true) {
                return None;
            }
            let (new, to) = if failed {
                let streak = (cur.streak() + 1).min(MAX_STREAK);
                let open_for = self.config.open_duration(streak);
                let deadline = word::deadline_after(now, open_for);
                (Word::open(streak, deadline), Some(Kind::Open))
            } else if cur.successes() + 1 >= u32::from(self.config.close_after) {
                (
                    Word::closed(low(closed_gen), 0, Cursor::EMPTY),
                    Some(Kind::Closed),
                )
            } else {
                let in_flight = cur.in_flight().saturating_sub(1);
                let next = Word::half_open(cur.gen(), cur.streak(), in_flight, cur.successes() + 1);
                (next, None)
            };
            match self.cas(cur, new) {
                Ok(()) => {
                    match to {
                        Some(Kind::Open) => self.counters.trips.incr(),
                        Some(_) => self.publish(closed_gen),
                        None => {}
                    }
                    return to.map(|to| transition(Kind::HalfOpen, to, now));
                }
                Err(actual) => cur = actual,
            }
        }
    }

    #[cold]
    fn abandon(&self, gen: Epoch, half_open: bool) {
        self.counters.abandoned.incr();
        if !half_open {
            return;
        }
        let mut cur = self.load();
        if !self.owns(cur, gen, true) {
            return;
        }
        while cur.owns(low(gen), true) {
            let in_flight = cur.in_flight().saturating_sub(1);
            let new = Word::half_open(cur.gen(), cur.streak(), in_flight, cur.successes());
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

/// The low bits of a full generation, as the state word holds them.
#[allow(clippy::unnecessary_cast)] // `Epoch` is `u32` on Cortex-M
const fn low(gen: Epoch) -> u32 {
    (gen as u32) & word::GEN_MASK
}

/// The full generation of the installed word `cur`, given an epoch read
/// before it (so at most one behind, barring a stall of 2^14 transitions
/// between the two loads).
fn full_gen(epoch: Epoch, cur: Word) -> Epoch {
    epoch.wrapping_add(Epoch::from(
        cur.gen().wrapping_sub(low(epoch)) & word::GEN_MASK,
    ))
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
mod history_tests;
#[cfg(all(test, not(loom)))]
mod tests;

// The documented sizes, checked by every build, the thumb targets included.
#[cfg(not(loom))]
const _: () = assert!(
    core::mem::size_of::<CircuitBreaker>()
        == if cfg!(target_has_atomic = "64") {
            232
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
