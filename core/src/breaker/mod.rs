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

mod acquire;
mod config;
mod config_check;
mod config_error;
#[cfg(feature = "time-window")]
mod config_time;
mod generation;
#[cfg(feature = "half-open-timeout")]
mod half_open;
mod live;
mod merge;
mod metrics;
mod outcome;
mod permit;
mod reconfigure;
mod record;
#[cfg(feature = "serde")]
mod ser;
mod snapshot;
#[cfg(feature = "time-window")]
mod timed;
mod window;
pub(crate) mod word;

pub use config::{Config, ConfigBuilder, MAX_WINDOW};
pub use config_error::ConfigError;
pub use merge::{Decision, MergeError};
pub use metrics::Metrics;
pub use outcome::{Outcome, Rejected, State, Transition};
pub use permit::{OwnedPermit, Permit};
pub use reconfigure::ReconfigureError;
pub use snapshot::{Snapshot, SnapshotError};
#[cfg(feature = "time-window")]
pub use timed::TIME_BUCKET_CAP;

use crate::sync::Epoch;
use crate::sync::{const_fn_unless_loom, AtomicU32, Counter, EpochWord, Ordering};
use crate::{Duration, Instant};
#[cfg(loom)]
use generation::low;
use live::LiveConfig;
use metrics::Counters;
#[cfg(feature = "time-window")]
use timed::TimeWindow;
use window::{Cursor, Window};
use word::{Kind, Word};

/// A lock-free circuit breaker: `no_std`, allocation-free, time passed in.
///
/// `Sync`: share it by reference (or in a `static`, [`CircuitBreaker::new`]
/// is `const`) between threads and interrupt handlers.
///
/// # Examples
///
/// Ask before each call, record how it went; two failures in a row open
/// the breaker, and after `open_for` it lets a trial through:
///
/// ```
/// use fusebox::breaker::{Config, Outcome, State};
/// use fusebox::{CircuitBreaker, Duration, Instant};
///
/// let breaker = CircuitBreaker::new(
///     Config::builder().consecutive_failures(2).open_for(Duration::from_secs(5)).build()?,
/// );
/// let now = Instant::from_secs(1);
/// for _ in 0..2 {
///     let permit = breaker.try_acquire(now)?;
///     permit.record(Outcome::Failure, now, Duration::from_millis(3));
/// }
/// assert_eq!(breaker.state(now), State::Open);
/// let rejected = breaker.try_acquire(now).unwrap_err(); // skip the call
/// let wait = rejected.retry_after.unwrap(); // `Some` while open (not half-open, not forced)
/// assert!(wait >= Duration::from_secs(5));
///
/// let later = now + wait;
/// let trial = breaker.try_acquire(later)?; // half-open: a trial call
/// assert!(trial.is_trial());
/// trial.record(Outcome::Success, later, Duration::from_millis(3));
/// assert_eq!(breaker.state(later), State::Closed);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Time window
///
/// With the `time-window` feature, `ConfigBuilder::time_window` makes the
/// rate policies and `failure_count` count over time (Resilience4j's
/// `TIME_BASED` window): a ring of `buckets` per-interval buckets,
/// `interval = ⌊total / buckets⌋`, one atomic word each, reset by the first
/// writer of a new interval, so old buckets expire without a sweeper.
///
/// * **Granularity.** A closed record at `now` is counted in interval
///   `⌊now / interval⌋`; it counts while the newest interval the window has
///   reached (by any record, in any generation since creation or the last
///   [`reset`](Self::reset)) is fewer than `buckets`
///   intervals later: for between `total − interval` and `total`, as in
///   Resilience4j, whose oldest bucket also expires whole. Every record
///   with a rate policy evaluates the window (failures, slow calls, and
///   successes, which may complete `minimum_calls`); with `failure_count`
///   alone, successes are not counted at all and stay on the
///   consecutive-success fast path.
/// * **Stale clocks.** A record whose `now` is earlier than the newest
///   interval reached is counted in that newest interval: it counts at
///   least as long as it would have, and never resets or expires a newer
///   bucket. An old clock never erases newer failures (on Cortex-M, one
///   at most 2²⁰ intervals behind: see the crate docs' limits).
/// * **Saturation.** Each bucket counts at most `TIME_BUCKET_CAP` calls,
///   failures and slow calls (65 535 where the target has 64-bit atomics,
///   255 on Cortex-M) per interval and stops there, never wrapping. Calls
///   saturate first, so a saturated bucket over-states its rates (it errs
///   toward opening); `failure_count` ≤ 255 is always reachable. Choose
///   intervals so that a bucket sees fewer calls than that.
/// * **Generations.** Entering Closed (a closing trial, `force_close`,
///   `reset`, `restore`, a merged Closed decision) empties the time window
///   before the compare-and-swap that installs the Closed word, so a new
///   closed generation starts empty. A record that checked its generation
///   and then stalled across a whole Open → HalfOpen → Closed cycle before
///   writing its bucket can still land its one outcome in the new window.
/// * **Snapshots and merges.** A snapshot carries the count-based window
///   only (a time-window breaker's has `window_calls` 0); `restore` empties
///   the time window. A merge keeps the local window (unless it closes the
///   breaker, which empties it).
/// * **Combinations.** A breaker has one window:
///   [`ConfigError::TimeWindowConflict`] for a time window with a
///   count-based `window` or with `consecutive_failures`.
/// * **Cost.** The count-based paths are unchanged but for one
///   predictable branch on the configuration (none without the feature). A
///   time-window record costs a 64-bit division (a library call on
///   Cortex-M), one or two CASes, one RMW and up to 16 loads; the first
///   record of a new interval also empties the buckets it skips.
///
/// # Half-open timeout
///
/// With the `half-open-timeout` feature, `ConfigBuilder::max_half_open`
/// bounds how long trials may leave the
/// breaker half-open (Resilience4j's `maxWaitDurationInHalfOpenState`).
/// The core reads no clock, so the timeout is noticed by the next call
/// that looks: from `entry + max_half_open` (rounded up to a 1.024 ms
/// tick), [`state`](Self::state) reads Open (changing nothing), and the
/// next [`try_acquire`](Self::try_acquire) or current trial's recorded
/// success or failure reopens
/// the breaker as a failed trial would (streak + 1, a fresh open time from
/// that call's `now`, counted in [`Metrics::trips`]) and returns the
/// HalfOpen → Open transition: in [`Rejected::transition`] from
/// `try_acquire`, from `record` otherwise (the late trial's outcome is
/// counted but decides nothing). A trial recorded as
/// [`Outcome::Ignored`] or dropped changes no state, even late: it frees
/// its slot and leaves the reopening to the next caller. Exactly one
/// caller gets the transition.
/// A `now` up to `max(max_half_open, ~1.05 s)` earlier than the entry
/// never times out. A restored or merged HalfOpen state is entered at the
/// `now` of that call, so a snapshot never resurrects an expired half-open
/// state for more than one more timeout.
///
/// # Size
///
/// The state word, the epoch (the full generation) and the merged fleet
/// version (8 bytes each where the target has 64-bit atomics, 4 on 32-bit
/// microcontrollers), the count-based sliding window (64 tagged 16-bit
/// slots plus a publication counter), seven statistics counters (8 bytes
/// each where the target has 64-bit atomics, 4 bytes on 32-bit
/// microcontrollers) and the configuration in atomic words (so
/// [`set_config`](Self::set_config) can change it under `&self`), and the
/// last open deadline in full ticks: 248 bytes on x86-64, 204 on
/// Cortex-M (alignment padding included). The
/// `half-open-timeout` feature adds the 4-byte half-open stamp and the
/// timeout's configuration word; the `time-window` feature adds the time
/// window (16 buckets of 8 bytes, or 4 on Cortex-M, its `newest` interval
/// and a publication counter) and its configuration (the sizes are checked
/// at compile time below).
#[derive(Debug)]
// `repr(C)` keeps this order: the state word (read on every call, written
// only on transitions) sits more than a cache line away from the counters
// (written on every record), so threads sharing a closed breaker contend on
// the counter line only and the state line stays shared.
#[repr(C)]
pub struct CircuitBreaker {
    /// The packed state word; see the `word` module for its layout.
    state: AtomicU32,
    /// When the installed half-open generation times out (see
    /// `half_open`); fills what would be padding before the 64-bit epoch.
    #[cfg(feature = "half-open-timeout")]
    half_open_stamp: AtomicU32,
    /// The full number of the latest generation, or one behind it while its
    /// installer has not yet published it (see the module docs).
    epoch: EpochWord,
    /// The newest fleet decision merged: `version << 1 | busy` (see
    /// `merge`).
    merged: EpochWord,
    /// The full deadline (1.024 ms ticks: `u64`; `u32` on Cortex-M,
    /// wrapping every ≈ 50 days) of the Open word last about to be
    /// installed: stored (not raised: a later install may have an earlier
    /// deadline, and on Cortex-M the ticks wrap) just before each CAS that
    /// installs an Open word, and read after loading one, whose 26
    /// deadline bits it extends: to the full deadline with those bits
    /// nearest it (see `word::remaining_in`), exact while it is within
    /// ≈ 9 h 32 min of the word's (any store racing the install is).
    open_until: EpochWord,
    /// The configuration, in atomic words (see `live`).
    config: LiveConfig,
    window: Window,
    /// The time-based window (see `timed`), used when the configuration
    /// asks for one.
    #[cfg(feature = "time-window")]
    timed: TimeWindow,
    counters: Counters,
}

impl CircuitBreaker {
    const_fn_unless_loom! {
        /// A closed breaker with `config`.
        ///
        /// # Examples
        ///
        /// ```
        /// use fusebox::breaker::{CircuitBreaker, Config, State};
        /// use fusebox::Instant;
        ///
        /// // `const`: a breaker can be a `static`.
        /// static BREAKER: CircuitBreaker =
        ///     CircuitBreaker::new(match Config::builder().consecutive_failures(3).build() {
        ///         Ok(c) => c,
        ///         Err(_) => panic!("bad config"),
        ///     });
        /// assert_eq!(BREAKER.state(Instant::ZERO), State::Closed);
        /// ```
        pub fn new(config: Config) -> Self {
            Self {
                state: AtomicU32::new(Word::closed(0, 0, Cursor::EMPTY).0),
                #[cfg(feature = "half-open-timeout")]
                half_open_stamp: AtomicU32::new(0),
                epoch: EpochWord::new(0),
                merged: EpochWord::new(0),
                open_until: EpochWord::new(0),
                window: Window::new(),
                #[cfg(feature = "time-window")]
                timed: TimeWindow::new(),
                counters: Counters {
                    successes: Counter::new(),
                    failures: Counter::new(),
                    slow_calls: Counter::new(),
                    rejected: Counter::new(),
                    trips: Counter::new(),
                    abandoned: Counter::new(),
                    ignored: Counter::new(),
                },
                config: LiveConfig::new(config),
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

    /// Opens the breaker until [`force_close`](Self::force_close) or
    /// [`reset`](Self::reset). Outstanding permits become stale: their
    /// records are counted but change no state.
    ///
    /// Returns the transition, or `None` if it was already forced open.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::breaker::{CircuitBreaker, Config, State};
    /// use fusebox::{Duration, Instant};
    ///
    /// let breaker = CircuitBreaker::new(Config::builder().consecutive_failures(3).build()?);
    /// let now = Instant::from_secs(1);
    /// let t = breaker.force_open(now).expect("closed -> forced open");
    /// assert_eq!((t.from, t.to), (State::Closed, State::ForcedOpen));
    /// assert_eq!(breaker.force_open(now), None); // already forced open
    /// // No open time runs out.
    /// assert_eq!(breaker.state(now + Duration::from_secs(3_600)), State::ForcedOpen);
    /// # Ok::<(), fusebox::breaker::ConfigError>(())
    /// ```
    pub fn force_open(&self, now: Instant) -> Option<Transition> {
        let forced = Word::forced_open(0);
        self.install(now, |cur| {
            (cur.kind() != Kind::ForcedOpen).then_some(forced)
        })
        .map(|prev| transition(prev.kind(), Kind::ForcedOpen, now))
    }

    /// Closes the breaker (from any state but closed), clearing the
    /// re-opening streak. Counters are kept.
    ///
    /// Returns the transition, or `None` if it was already closed.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::breaker::{CircuitBreaker, Config, State};
    /// use fusebox::Instant;
    ///
    /// let breaker = CircuitBreaker::new(Config::builder().consecutive_failures(3).build()?);
    /// let now = Instant::from_secs(1);
    /// breaker.trip(now);
    /// let t = breaker.force_close(now).expect("open -> closed");
    /// assert_eq!((t.from, t.to), (State::Open, State::Closed));
    /// assert_eq!(breaker.force_close(now), None); // already closed
    /// assert_eq!(breaker.metrics().trips, 1, "counters are kept");
    /// # Ok::<(), fusebox::breaker::ConfigError>(())
    /// ```
    pub fn force_close(&self, now: Instant) -> Option<Transition> {
        let closed = Word::closed(0, 0, Cursor::EMPTY);
        self.install(now, |cur| (cur.kind() != Kind::Closed).then_some(closed))
            .map(|prev| transition(prev.kind(), Kind::Closed, now))
    }

    /// Returns the breaker to its initial state: closed, empty window (a new
    /// generation: outstanding permits become stale; a time window also
    /// forgets the newest interval it reached), zero counters. The
    /// last fleet [`Decision`] version merged is
    /// kept: a reset breaker still refuses a decision it has already
    /// applied, or an older one.
    /// Returns the transition if the state changed.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::breaker::{CircuitBreaker, Config, Metrics, Outcome, State};
    /// use fusebox::{Duration, Instant};
    ///
    /// let breaker = CircuitBreaker::new(Config::builder().consecutive_failures(1).build()?);
    /// let now = Instant::from_secs(1);
    /// breaker.try_acquire(now).expect("closed").record(Outcome::Failure, now, Duration::ZERO);
    /// let t = breaker.reset(now).expect("open -> closed");
    /// assert_eq!((t.from, t.to), (State::Open, State::Closed));
    /// assert_eq!(breaker.metrics(), Metrics::default());
    /// assert_eq!(breaker.reset(now), None); // already closed: no transition
    /// # Ok::<(), fusebox::breaker::ConfigError>(())
    /// ```
    pub fn reset(&self, now: Instant) -> Option<Transition> {
        // As new: the time window forgets its newest interval too (its
        // buckets are emptied by the install).
        #[cfg(feature = "time-window")]
        if self.config.timed() {
            self.timed.forget();
        }
        let closed = Word::closed(0, 0, Cursor::EMPTY);
        let prev = self.install(now, |_| Some(closed)).unwrap_or(closed);
        let c = &self.counters;
        for counter in [
            &c.successes,
            &c.failures,
            &c.slow_calls,
            &c.rejected,
            &c.trips,
            &c.abandoned,
            &c.ignored,
        ] {
            counter.set(0);
        }
        (prev.kind() != Kind::Closed).then(|| transition(prev.kind(), Kind::Closed, now))
    }

    #[inline]
    pub(super) fn load(&self) -> Word {
        Word(self.state.load(Ordering::Acquire))
    }

    /// The Open word with the full deadline `full` (ticks, from
    /// `word::full_deadline_after` or `full_now_ticks`), recorded in
    /// `open_until` first; the caller's CAS publishes it. Called only
    /// where that CAS follows (not for a word that will not be installed).
    pub(super) fn open_word(&self, streak: u32, full: Epoch) -> Word {
        self.open_until.store(full, Ordering::Relaxed);
        Word::open(streak, word::wrapped(full))
    }

    /// Time left until the Open word `cur`'s deadline, or `None` once it
    /// has passed (`cur` loaded with acquire, so the `open_until` its
    /// writer raised is visible).
    pub(super) fn open_remaining(
        &self,
        cur: Word,
        bound: Duration,
        now: Instant,
    ) -> Option<Duration> {
        word::remaining_in(cur, self.open_until.load(Ordering::Relaxed), bound, now)
    }

    /// The Open word `cur`'s deadline in full ticks (see `open_until`).
    pub(super) fn open_deadline(&self, cur: Word) -> Epoch {
        word::full_deadline_of(cur, self.open_until.load(Ordering::Relaxed))
    }

    #[inline]
    pub(super) fn cas(&self, current: Word, new: Word) -> Result<(), Word> {
        self.state
            .compare_exchange(current.0, new.0, Ordering::AcqRel, Ordering::Acquire)
            .map(|_| ())
            .map_err(Word)
    }

    #[cold]
    fn reject(&self, state: State, retry_after: Option<Duration>) -> Rejected {
        self.counters.rejected.incr();
        Rejected {
            state,
            retry_after,
            transition: None,
        }
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

// Long histories (tens of thousands of transitions) and no unsafe code of
// their own: run natively, not under Miri (where the rest of the breaker's
// tests cover the same atomics).
#[cfg(all(test, not(loom), not(miri)))]
mod history_tests;
#[cfg(all(test, not(loom)))]
mod tests;

// The documented sizes, checked by every build, the thumb targets included.
#[cfg(not(loom))]
const _: () = {
    let (wide, timed, timeout) = (
        cfg!(fusebox_wide_words),
        cfg!(feature = "time-window"),
        cfg!(feature = "half-open-timeout"),
    );
    // Base; the half-open stamp and the timeout's setting (and, on
    // Cortex-M, padding); the time window's buckets, `newest`, counter and
    // settings.
    let expected = if wide { 248 } else { 204 }
        + if timeout {
            if wide {
                16
            } else {
                20
            }
        } else {
            0
        }
        + if timed {
            if wide {
                152
            } else {
                76
            }
        } else {
            0
        }
        - if timed && timeout { 8 } else { 0 }
        + if timed && timeout && !wide { 4 } else { 0 };
    assert!(core::mem::size_of::<CircuitBreaker>() == expected);
};

// The state word and the counters never share a cache line (see the struct).
#[cfg(not(loom))]
const _: () = assert!(
    core::mem::offset_of!(CircuitBreaker, counters) - core::mem::offset_of!(CircuitBreaker, state)
        >= 64 + core::mem::size_of::<AtomicU32>()
);
