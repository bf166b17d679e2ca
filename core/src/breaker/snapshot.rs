//! Plain-data snapshots of a breaker, for persistence and state sharing.

use core::fmt;

use super::window::{Cursor, Outcomes, Window};
use super::word::{self, Kind, Word, MAX_OPEN_FOR, MAX_STREAK, TICK_MICROS};
use super::{CircuitBreaker, Metrics, State};
use crate::{Duration, Instant};

/// Everything a breaker needs to resume elsewhere (another process, after a
/// restart): plain data, times relative to the `now` it was taken at.
///
/// Half-open trials in flight are not part of it: they belong to the process
/// that issued them.
///
/// Stored with serde (feature `serde`), its numbers must be kept exactly:
/// the window's bitmaps ([`window_failures`](Self::window_failures),
/// [`window_slow`](Self::window_slow)) and the counters are whole `u64`s,
/// above 2⁵³ as soon as a recent call of a window of 54 or more failed. A
/// store or tool that reads JSON numbers as doubles (JavaScript, some
/// document stores) rounds them, changing which old calls failed, and TOML
/// holds none at or above 2⁶³; keep a snapshot in a binary format or as
/// JSON text stored as it is.
///
/// # Examples
///
/// ```
/// use fusebox::breaker::{CircuitBreaker, Config, Outcome, State};
/// use fusebox::{Duration, Instant};
///
/// let breaker = CircuitBreaker::new(Config::builder().consecutive_failures(3).build()?);
/// let now = Instant::from_secs(1);
/// breaker.try_acquire(now).expect("closed").record(Outcome::Failure, now, Duration::ZERO);
/// let s = breaker.snapshot(now);
/// assert_eq!((s.state, s.consecutive_failures, s.open_remaining), (State::Closed, 1, None));
/// assert_eq!(s.metrics.failures, 1);
/// # Ok::<(), fusebox::breaker::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Snapshot {
    /// The stored state (an expired `Open` is still `Open`).
    pub state: State,
    /// Failures in a row, when closed.
    pub consecutive_failures: u16,
    /// Successful trials so far, when half-open.
    pub half_open_successes: u8,
    /// Re-openings from half-open since the last close (open-time growth).
    pub reopen_streak: u8,
    /// Time left until half-open, when open, at most this configuration's
    /// open time for the streak plus one 1.024 ms tick: what a trip at
    /// `now` would leave. The cap applies at a `now` earlier than the trip,
    /// and to a breaker whose open time
    /// [`set_config`](CircuitBreaker::set_config) shortened while it was
    /// open: that breaker keeps its longer deadline (which
    /// [`Rejected::retry_after`](super::Rejected::retry_after) reports),
    /// its snapshot the new open time.
    pub open_remaining: Option<Duration>,
    /// Calls in the sliding window (≤ 64).
    pub window_calls: u8,
    /// Failed calls in the window; bit 0 is the oldest.
    pub window_failures: u64,
    /// Slow calls in the window; bit 0 is the oldest.
    pub window_slow: u64,
    /// The counters ([`CircuitBreaker::metrics`]), made possible where they
    /// are not, so that [`CircuitBreaker::restore`] accepts every snapshot:
    /// the counters wrap (at 2³² on 32-bit microcontrollers, after about 50
    /// days at 1 000 calls a second) and are read one by one, which can
    /// leave more slow calls than recorded ones, or (from restored values)
    /// a sum past `u64::MAX`. Slow calls are then capped at the recorded
    /// calls, and successes, failures, ignored, abandoned and rejected
    /// calls, in that order, at what is left of `u64::MAX`.
    pub metrics: Metrics,
}

/// Why [`CircuitBreaker::restore`] refused a snapshot (corrupt or hostile:
/// a snapshot of another configuration is fitted, not refused). The
/// breaker is left unchanged.
///
/// # Examples
///
/// ```
/// use fusebox::breaker::{CircuitBreaker, Config, Snapshot, SnapshotError};
/// use fusebox::{Duration, Instant};
///
/// let breaker = CircuitBreaker::new(Config::builder().consecutive_failures(3).build()?);
/// let now = Instant::from_secs(1);
/// let good = breaker.snapshot(now);
/// let too_many = Snapshot { consecutive_failures: 300, ..good };
/// assert_eq!(breaker.restore(&too_many, now), Err(SnapshotError::ConsecutiveFailures(300)));
/// // A remaining open time on a closed state.
/// let mixed = Snapshot { open_remaining: Some(Duration::from_secs(1)), ..good };
/// assert_eq!(breaker.restore(&mixed, now), Err(SnapshotError::Inconsistent));
/// # Ok::<(), fusebox::breaker::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum SnapshotError {
    /// `consecutive_failures` above 255 (the count's range).
    ConsecutiveFailures(u16),
    /// `reopen_streak` above 15.
    ReopenStreak(u8),
    /// `window_calls` above 64, or outcome bits set beyond it.
    Window,
    /// `Open` without `open_remaining`, or a remaining time above
    /// [`Config::MAX_OPEN_FOR`](super::Config::MAX_OPEN_FOR) plus one
    /// 1.024 ms tick.
    OpenRemaining,
    /// A field set that the state cannot have (a window or failure count
    /// outside `Closed`, half-open successes outside `HalfOpen`, a
    /// remaining time outside `Open`, a streak on `Closed`/`ForcedOpen`).
    Inconsistent,
    /// Counters that cannot be: their sum overflows `u64`, or more slow
    /// calls than recorded ones.
    Metrics,
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ConsecutiveFailures(n) => {
                write!(f, "{n} consecutive failures, above the count's range (255)")
            }
            Self::ReopenStreak(n) => write!(f, "re-open streak {n} above {MAX_STREAK}"),
            Self::Window => f.write_str("sliding-window data out of range"),
            Self::OpenRemaining => f.write_str("open state without a valid remaining time"),
            Self::Inconsistent => f.write_str("fields that the snapshot's state cannot have"),
            Self::Metrics => f.write_str("impossible counters"),
        }
    }
}

impl core::error::Error for SnapshotError {}

impl CircuitBreaker {
    /// A plain-data copy of the state at `now`.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::breaker::{CircuitBreaker, Config, Outcome, State};
    /// use fusebox::{Duration, Instant};
    ///
    /// let config = Config::builder().consecutive_failures(1).build()?;
    /// let a = CircuitBreaker::new(config);
    /// let now = Instant::from_secs(100);
    /// a.try_acquire(now).unwrap().record(Outcome::Failure, now, Duration::ZERO);
    ///
    /// // Another process, another clock origin:
    /// let b = CircuitBreaker::new(config);
    /// let later = Instant::from_secs(7);
    /// let snapshot = a.snapshot(now);
    /// b.restore(&snapshot, later)?;
    /// assert_eq!(b.state(later), State::Open);
    /// // Open deadlines have 1.024 ms resolution, rounded up on every restore.
    /// let left = snapshot.open_remaining.unwrap();
    /// assert!(left >= config.open_for());
    /// let tick = Duration::from_micros(1024);
    /// assert_eq!(b.state(later + left + tick), State::HalfOpen);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn snapshot(&self, now: Instant) -> Snapshot {
        let cur = self.load();
        let (consecutive_failures, half_open_successes, reopen_streak, open_remaining) =
            match cur.kind() {
                Kind::Closed => (cur.failures() as u16, 0, 0, None),
                Kind::HalfOpen => (0, cur.successes() as u8, cur.streak() as u8, None),
                Kind::Open => {
                    let open_for = self.config.open_duration(cur.streak());
                    // A stale `now` reads up to `open_for` more: capped at
                    // what a trip at `now` would leave, so any snapshot
                    // restores.
                    let left = self
                        .open_remaining(cur, self.config.open_bound(cur.streak()), now)
                        .unwrap_or(Duration::ZERO)
                        .min(open_for + Duration::from_micros(TICK_MICROS));
                    (0, 0, cur.streak() as u8, Some(left))
                }
                Kind::ForcedOpen => (0, 0, 0, None),
            };
        let window = if cur.kind() == Kind::Closed && self.config.uses_count_window() {
            self.window
                .outcomes(cur.gen(), self.config.window(), cur.cursor())
        } else {
            Outcomes::default()
        };
        Snapshot {
            state: super::state_of(cur.kind()),
            consecutive_failures,
            half_open_successes,
            reopen_streak,
            open_remaining,
            window_calls: window.calls,
            window_failures: window.failures,
            window_slow: window.slow,
            metrics: restorable(self.metrics()),
        }
    }

    /// Replaces the state with `snapshot`, taken at another `now` (times are
    /// relative, so clocks with different origins are fine).
    ///
    /// Trials in flight are not restored; permits issued before the restore
    /// become stale. A snapshot taken under another configuration is
    /// fitted to this one, never refused for it: a window larger than this
    /// breaker's keeps its newest outcomes; an open time longer than this
    /// configuration allows is shortened to it; a closed count of failures
    /// in a row that reaches this trip threshold is restored one short of
    /// it (the next failure trips; a time-window breaker, which counts no
    /// failures in a row, restores none), and half-open successes that reach
    /// `close_after` one short of that (the next success closes). A window
    /// already at or past this configuration's failure or slow-call rate is
    /// kept as it is: it trips at the next outcome that is evaluated (a
    /// failure or slow call, or a success that completes `minimum_calls`),
    /// as after [`set_config`](Self::set_config) lowers a rate; a success
    /// into a full window is not evaluated. A service restarted with a
    /// lower threshold thus keeps its breaker's state instead of losing it
    /// (a half-open breaker starting closed).
    ///
    /// # Errors
    ///
    /// [`SnapshotError`] if a field is out of its range (corrupt or hostile
    /// data); nothing is changed then.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::breaker::{CircuitBreaker, Config, Outcome, Snapshot, SnapshotError};
    /// use fusebox::{Duration, Instant};
    ///
    /// let old = CircuitBreaker::new(Config::builder().consecutive_failures(5).build()?);
    /// let now = Instant::from_secs(100);
    /// for _ in 0..3 {
    ///     old.try_acquire(now).expect("closed").record(Outcome::Failure, now, Duration::ZERO);
    /// }
    /// let saved = old.snapshot(now);
    ///
    /// // Restarted with a lower threshold (and another clock origin): one failure short of it.
    /// let new = CircuitBreaker::new(Config::builder().consecutive_failures(2).build()?);
    /// let later = Instant::from_secs(7);
    /// assert_eq!(new.restore(&saved, later), Ok(()));
    /// assert_eq!(new.snapshot(later).consecutive_failures, 1);
    ///
    /// // Corrupt data is refused and changes nothing.
    /// let corrupt = Snapshot { reopen_streak: 200, ..saved };
    /// assert_eq!(new.restore(&corrupt, later), Err(SnapshotError::ReopenStreak(200)));
    /// # Ok::<(), fusebox::breaker::ConfigError>(())
    /// ```
    pub fn restore(&self, snapshot: &Snapshot, now: Instant) -> Result<(), SnapshotError> {
        let cfg = &self.config.load();
        let s = snapshot;
        // Everything is validated before anything changes.
        if u32::from(s.reopen_streak) > MAX_STREAK {
            return Err(SnapshotError::ReopenStreak(s.reopen_streak));
        }
        validate_fields(s)?;
        let calls = u32::from(s.window_calls);
        let in_window = if calls >= 64 {
            u64::MAX
        } else {
            (1u64 << calls) - 1
        };
        if calls > 64 || s.window_failures & !in_window != 0 || s.window_slow & !in_window != 0 {
            return Err(SnapshotError::Window);
        }
        // Keep the newest `cfg.window` outcomes.
        let keep = calls.min(u32::from(cfg.window));
        let drop = calls - keep;
        let outcomes = Outcomes {
            calls: keep as u8,
            failures: s.window_failures.checked_shr(drop).unwrap_or(0),
            slow: s.window_slow.checked_shr(drop).unwrap_or(0),
        };
        let windowed = cfg.uses_count_window();
        let new = match s.state {
            State::Closed => {
                let threshold = cfg.consecutive_failures;
                // The count is kept with the policy off too (up to 255).
                if u32::from(s.consecutive_failures) > word::MAX_CONSECUTIVE {
                    return Err(SnapshotError::ConsecutiveFailures(s.consecutive_failures));
                }
                // Taken under a higher threshold: one short of this one.
                // A time window counts none (no consecutive policy there).
                let failures = if cfg.timed() {
                    0
                } else if threshold != 0 {
                    s.consecutive_failures.min(threshold - 1)
                } else {
                    s.consecutive_failures
                };
                let cursor = if windowed {
                    Window::restored_cursor(outcomes.calls)
                } else {
                    Cursor::EMPTY
                };
                Word::closed(0, u32::from(failures), cursor)
            }
            State::HalfOpen => {
                // Taken under a higher `close_after`: one short of this one.
                let successes = s.half_open_successes.min(cfg.close_after.saturating_sub(1));
                let streak = u32::from(s.reopen_streak);
                Word::half_open(0, streak, 0, u32::from(successes))
            }
            State::Open => {
                // A snapshot's remaining time includes the deadline's
                // round-up, so it can exceed `MAX_OPEN_FOR` by under a tick.
                let left = match s.open_remaining {
                    Some(left) if left <= MAX_OPEN_FOR + Duration::from_micros(TICK_MICROS) => left,
                    _ => return Err(SnapshotError::OpenRemaining),
                };
                let streak = u32::from(s.reopen_streak);
                let left = left.min(cfg.open_duration(streak));
                let deadline = if left.is_zero() {
                    word::full_now_ticks(now)
                } else {
                    word::full_deadline_after(now, left)
                };
                self.open_word(streak, deadline)
            }
            State::ForcedOpen => Word::forced_open(0),
        };
        // Installed by CAS with a fresh generation: permits issued before
        // become stale, and the window's slots are written after, as the
        // new generation's first claims.
        let installed = self.install_gen(now, |_| Some(new));
        if let (Some((_, gen)), Kind::Closed, true) = (installed, new.kind(), windowed) {
            let size = u32::from(cfg.window);
            let low = super::generation::low(gen);
            self.window.restore(low, cfg.window, outcomes, |claim| {
                let cur = self.load();
                cur.owns(low, false) && cur.cursor().still_holds(claim, size)
            });
        }
        let c = &self.counters;
        let m = &s.metrics;
        c.successes.set(m.successes);
        c.failures.set(m.failures);
        c.slow_calls.set(m.slow_calls);
        c.rejected.set(m.rejected);
        c.trips.set(m.trips);
        c.abandoned.set(m.abandoned);
        c.ignored.set(m.ignored);
        Ok(())
    }
}

/// `m` made possible for [`validate_fields`] (see [`Snapshot::metrics`]);
/// unchanged when it already is.
fn restorable(mut m: Metrics) -> Metrics {
    let mut room = u64::MAX;
    for count in [
        &mut m.successes,
        &mut m.failures,
        &mut m.ignored,
        &mut m.abandoned,
        &mut m.rejected,
    ] {
        *count = (*count).min(room);
        room -= *count;
    }
    // At most `u64::MAX` together (above).
    m.slow_calls = m.slow_calls.min(m.successes + m.failures);
    m
}

/// The checks of a snapshot that do not depend on the configuration:
/// fields only their state may have, and possible counters.
fn validate_fields(s: &Snapshot) -> Result<(), SnapshotError> {
    let closed_only = s.consecutive_failures != 0 || s.window_calls != 0;
    let consistent = match s.state {
        State::Closed => {
            s.half_open_successes == 0 && s.reopen_streak == 0 && s.open_remaining.is_none()
        }
        State::HalfOpen => !closed_only && s.open_remaining.is_none(),
        State::Open => !closed_only && s.half_open_successes == 0,
        State::ForcedOpen => {
            !closed_only
                && s.half_open_successes == 0
                && s.reopen_streak == 0
                && s.open_remaining.is_none()
        }
    };
    if !consistent {
        return Err(SnapshotError::Inconsistent);
    }
    let m = &s.metrics;
    let possible = m.successes.checked_add(m.failures).and_then(|recorded| {
        let total = [m.ignored, m.abandoned, m.rejected]
            .iter()
            .try_fold(recorded, |sum, &c| sum.checked_add(c));
        total.filter(|_| m.slow_calls <= recorded)
    });
    match possible {
        Some(_) => Ok(()),
        None => Err(SnapshotError::Metrics),
    }
}
