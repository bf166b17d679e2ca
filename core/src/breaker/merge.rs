//! Fleet merge: applying another instance's decision to the local breaker,
//! and opening it from the API.

use core::fmt;

use super::word::{self, Kind, Word, MAX_OPEN_FOR, MAX_STREAK, TICK_MICROS};
use super::{transition, CircuitBreaker, State, Transition};
use crate::sync::{Epoch, Ordering};
use crate::{Duration, Instant};

/// A breaker decision made elsewhere in a fleet (another instance, or an
/// operator), to apply with [`CircuitBreaker::merge`].
///
/// Only the decision travels: the state, how long an opening has left, and
/// the re-opening streak. Windows, counters and trials in flight stay with
/// the instance that has them.
///
/// # Examples
///
/// ```
/// use fusebox::breaker::{CircuitBreaker, Config, Decision, State};
/// use fusebox::{Duration, Instant};
///
/// let breaker = CircuitBreaker::new(Config::builder().consecutive_failures(5).build()?);
/// let now = Instant::from_secs(1);
/// // Another instance opened its breaker with 10 s left; this one follows.
/// let decision = Decision {
///     version: 1,
///     state: State::Open,
///     open_remaining: Some(Duration::from_secs(10)),
///     reopen_streak: 0,
/// };
/// assert!(breaker.merge(&decision, now).is_ok());
/// assert_eq!(breaker.state(now + Duration::from_secs(9)), State::Open);
/// assert_eq!(breaker.state(now + Duration::from_secs(11)), State::HalfOpen);
/// # Ok::<(), fusebox::breaker::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Decision {
    /// Orders decisions: a larger version is newer. Assigned by whoever
    /// serialises the fleet's decisions (e.g. a counter in the shared
    /// store); a breaker applies each version at most once and never an
    /// older one after a newer, for as long as it lives: the last version
    /// merged is not in a [`Snapshot`](super::Snapshot), and
    /// [`restore`](super::CircuitBreaker::restore) leaves the breaker's
    /// own as it was, so a new breaker (a restarted process's) restored
    /// from a snapshot compares the first version it is given with 0: it
    /// takes any version ahead of 0 by less than half the range (below)
    /// as newer, and refuses 0 and the other half as stale, until it
    /// merges one (the store that numbers the decisions must not hand a
    /// restarted instance an old one, and one whose counter has passed
    /// half the range, 2⁶² or 2³⁰ on Cortex-M, must expect a new
    /// breaker to refuse it); [`reset`](super::CircuitBreaker::reset)
    /// keeps it too (a reset breaker still refuses the versions it merged
    /// before).
    ///
    /// Versions are kept in 63 bits (31 on Cortex-M) and compared modulo
    /// that width, so a counter may wrap: a version is newer than the one
    /// merged last if it is ahead of it by less than half the range (2⁶²,
    /// or 2³⁰ on Cortex-M). A version further ahead, such as a forged
    /// `u64::MAX` on a fresh breaker, reads as older and is refused with
    /// [`MergeError::Stale`]. (fusebox's Redis script refuses any version
    /// more than 2³² past the caller's before it gets here.)
    pub version: u64,
    /// The decided state.
    pub state: State,
    /// Time left open, for [`State::Open`] (relative, like a snapshot's);
    /// `None` for the other states.
    pub open_remaining: Option<Duration>,
    /// Re-openings from half-open since the last close (open-time growth),
    /// for `Open` and `HalfOpen`; 0 otherwise.
    pub reopen_streak: u8,
}

/// Why [`CircuitBreaker::merge`] applied nothing. The breaker is unchanged.
///
/// # Examples
///
/// ```
/// use fusebox::breaker::{CircuitBreaker, Config, Decision, MergeError, State};
/// use fusebox::Instant;
///
/// let breaker = CircuitBreaker::new(Config::builder().consecutive_failures(5).build()?);
/// let now = Instant::from_secs(1);
/// let closed = Decision {
///     version: 1,
///     state: State::Closed,
///     open_remaining: None,
///     reopen_streak: 0,
/// };
/// // `Open` needs a remaining time.
/// let invalid = Decision { state: State::Open, ..closed };
/// assert_eq!(breaker.merge(&invalid, now), Err(MergeError::Invalid));
/// assert_eq!(breaker.merge(&closed, now), Ok(None));
/// assert_eq!(breaker.merge(&closed, now), Err(MergeError::Stale { version: 1, merged: 1 }));
/// # Ok::<(), fusebox::breaker::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum MergeError {
    /// The version is not newer than the last one merged (an old or
    /// repeated publication): it must not override a newer decision.
    Stale {
        /// The decision's version.
        version: u64,
        /// The newest version merged so far, as kept (its low 63 bits, 31 on
        /// Cortex-M).
        merged: u64,
    },
    /// Another merge into this breaker is in progress; try again later.
    /// Not in a loop from an interrupt handler: the merge it interrupted
    /// cannot finish until the handler returns.
    Busy,
    /// `Open` without `open_remaining`, a remaining time above
    /// [`Config::MAX_OPEN_FOR`](super::Config::MAX_OPEN_FOR) plus one tick,
    /// a remaining time or streak on a state that has none, or a streak
    /// above 15.
    Invalid,
}

impl fmt::Display for MergeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stale { version, merged } => write!(
                f,
                "decision version {version} is not newer than the merged {merged}"
            ),
            Self::Busy => f.write_str("another merge is in progress"),
            Self::Invalid => f.write_str("decision fields out of range for its state"),
        }
    }
}

impl core::error::Error for MergeError {}

/// The merged-version word: `version << 1 | busy`. 63 version bits where
/// the target has 64-bit atomics; 31 on Cortex-M, compared modulo 2³¹.
const BUSY: Epoch = 1;

/// A stored version as the `u64` it was published as.
#[allow(clippy::useless_conversion)] // `Epoch` is `u32` on Cortex-M
fn published(stored: Epoch) -> u64 {
    u64::from(stored >> 1)
}

/// Whether `a` is newer than `b`, both as stored (shifted) versions:
/// modulo the word, so the narrow word wraps cleanly.
fn newer(a: Epoch, b: Epoch) -> bool {
    let d = a.wrapping_sub(b);
    d != 0 && d < Epoch::MAX / 2
}

impl CircuitBreaker {
    /// Applies `decision`, made elsewhere in a fleet, at `now`.
    ///
    /// Everything is validated before anything changes. The state is then
    /// changed by compare-and-swap like any local transition (a concurrent
    /// local trip is never overwritten blindly: the merge retries against
    /// it); the local window and counters are kept (an opening merged is
    /// not counted in [`Metrics::trips`](super::Metrics::trips): it is
    /// the deciding instance's trip). An open decision's
    /// remaining time is capped at this configuration's open time for its
    /// streak, so a forged far-future deadline cannot keep the breaker open
    /// longer than [`Config::max_open_for`](super::Config::max_open_for).
    /// Permits issued before a merge that changes the state become stale.
    ///
    /// Returns the transition it made (`None` if the breaker was already in
    /// the decided state: an open breaker then takes the decision's
    /// deadline, and a half-open one whose half-open timeout has passed,
    /// feature `half-open-timeout`, enters half-open again at `now`, its
    /// trials in flight stale). A [`try_acquire`](Self::try_acquire)
    /// racing an open decision merged over an opening left alone for more
    /// than ≈ 9 h 32 min may be refused with a
    /// [`retry_after`](super::Rejected::retry_after) other than the
    /// decision's, as one racing [`trip`](Self::trip) (see there).
    ///
    /// # Errors
    ///
    /// [`MergeError::Stale`] for a version not newer than the last merged
    /// one (so an open breaker is never closed by an old or repeated
    /// message), [`MergeError::Busy`] while another merge runs,
    /// [`MergeError::Invalid`] for impossible fields.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::breaker::{CircuitBreaker, Config, Decision, MergeError, State};
    /// use fusebox::{Duration, Instant};
    ///
    /// let breaker = CircuitBreaker::new(Config::builder().consecutive_failures(5).build()?);
    /// let now = Instant::from_secs(1);
    /// let open = Decision {
    ///     version: 7,
    ///     state: State::Open,
    ///     open_remaining: Some(Duration::from_secs(20)),
    ///     reopen_streak: 0,
    /// };
    /// let t = breaker.merge(&open, now)?.expect("closed -> open");
    /// assert_eq!((t.from, t.to), (State::Closed, State::Open));
    /// // An older (or repeated) decision never closes it again.
    /// let closed = Decision { version: 6, state: State::Closed, open_remaining: None, reopen_streak: 0 };
    /// assert!(matches!(breaker.merge(&closed, now), Err(MergeError::Stale { .. })));
    /// assert_eq!(breaker.state(now), State::Open);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn merge(
        &self,
        decision: &Decision,
        now: Instant,
    ) -> Result<Option<Transition>, MergeError> {
        let (target, full) = self.decided_word(decision, now)?;
        let version = (decision.version as Epoch) << 1;
        let mut seen = self.merged.load(Ordering::Acquire);
        // Claim the version (and the merge) before touching the state, so
        // that two merges can never apply out of order.
        loop {
            if seen & BUSY != 0 {
                return Err(MergeError::Busy);
            }
            if !newer(version, seen) {
                return Err(MergeError::Stale {
                    version: decision.version,
                    merged: published(seen),
                });
            }
            match self.merged.compare_exchange(
                seen,
                version | BUSY,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(actual) => seen = actual,
            }
        }
        let prev = self.install(now, |cur| {
            let same = cur.kind() == target.kind();
            // Already there: only an open breaker takes the new deadline
            // (always reinstalled: an equal word may hold a deadline a
            // whole 2^26-tick wrap earlier, and an Open word has no
            // permits to make stale), and a half-open one whose timeout
            // has passed (it reads open) enters half-open again at `now`.
            // An Open word's full deadline is recorded only when it is
            // about to be installed.
            #[cfg(feature = "half-open-timeout")]
            let same = same && !(cur.kind() == Kind::HalfOpen && self.half_open_expired(cur, now));
            (!same || cur.kind() == Kind::Open).then(|| match target.kind() {
                Kind::Open => self.open_word(target.streak(), full),
                _ => target,
            })
        });
        self.merged.store(version, Ordering::Release);
        Ok(prev
            .filter(|p| p.kind() != target.kind())
            .map(|p| transition(p.kind(), target.kind(), now)))
    }

    /// The newest decision version merged so far (0 before any), as it is
    /// kept: its low 63 bits (31 on Cortex-M; see
    /// [`Decision::version`]), as [`MergeError::Stale`] reports it too.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::breaker::{CircuitBreaker, Config, Decision, State};
    /// use fusebox::Instant;
    ///
    /// let breaker = CircuitBreaker::new(Config::builder().consecutive_failures(5).build()?);
    /// assert_eq!(breaker.merged_version(), 0);
    /// let closed = Decision {
    ///     version: 3,
    ///     state: State::Closed,
    ///     open_remaining: None,
    ///     reopen_streak: 0,
    /// };
    /// // Already closed: no transition, but the version is taken.
    /// assert_eq!(breaker.merge(&closed, Instant::from_secs(1)), Ok(None));
    /// assert_eq!(breaker.merged_version(), 3);
    /// // Only the low bits are kept: 2⁶³ + 5 is taken as 5.
    /// let wrapped = Decision { version: (1 << 63) + 5, ..closed };
    /// assert_eq!(breaker.merge(&wrapped, Instant::from_secs(1)), Ok(None));
    /// assert_eq!(breaker.merged_version(), 5);
    /// # Ok::<(), fusebox::breaker::ConfigError>(())
    /// ```
    pub fn merged_version(&self) -> u64 {
        published(self.merged.load(Ordering::Acquire))
    }

    /// Opens the breaker at `now` as a trip from closed would, for
    /// `open_for` (then half-open), from any state but open: Resilience4j's
    /// `transitionToOpenState`. Unlike [`force_open`](Self::force_open) it
    /// ends by itself. Counted in [`Metrics::trips`](super::Metrics::trips)
    /// when it opens a closed or half-open breaker.
    ///
    /// Returns the transition, or `None` if it was already open. An open
    /// breaker whose open time has run out with no call since (it reads
    /// half-open, and no Open → HalfOpen transition has been made) is
    /// opened again from `now`, with no transition and no trip counted;
    /// never to an earlier deadline than it had (a `now` up to ≈ 12.7 days
    /// behind the opening changes nothing; on Cortex-M, whose full ticks
    /// wrap every ≈ 50 days, an opening left alone for the last ≈ 12.7
    /// days of such a wrap reads as one that far ahead, and is kept). A
    /// [`try_acquire`](Self::try_acquire) racing such a reopening, on an
    /// opening left alone for more than ≈ 9 h 32 min, may be refused with
    /// a [`retry_after`](super::Rejected::retry_after) other than the new
    /// opening's (up to the old opening's open time plus the larger of
    /// that and ≈ 1.05 s): it read the old word's deadline against the new
    /// one, a 2²⁶-tick wrap off. The refusal is right; a later call reads
    /// the new deadline.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::breaker::{CircuitBreaker, Config, State};
    /// use fusebox::{Duration, Instant};
    ///
    /// let breaker = CircuitBreaker::new(Config::builder().consecutive_failures(5).build()?);
    /// let now = Instant::from_secs(1);
    /// assert_eq!(breaker.trip(now).map(|t| t.to), Some(State::Open));
    /// let later = now + breaker.config().open_for() + Duration::from_millis(2);
    /// assert_eq!(breaker.state(later), State::HalfOpen);
    /// // Its open time ran out unseen: opened again, for `open_for` from `later`.
    /// assert_eq!(breaker.trip(later), None);
    /// assert_eq!(breaker.state(later), State::Open);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn trip(&self, now: Instant) -> Option<Transition> {
        let full = word::full_deadline_after(now, self.config.open_duration(0));
        // Its full deadline is recorded only if it is to be installed. An
        // Open word whose deadline has passed (it reads half-open; nobody
        // has called since) is replaced too, by a later deadline only: a
        // clock far behind the opening (beyond the stale reads that still
        // read open) never shortens it.
        let prev = self.install(now, |cur| {
            let open = cur.kind() == Kind::Open
                && (self
                    .open_remaining(cur, self.config.open_bound(cur.streak()), now)
                    .is_some()
                    || !word::later(full, self.open_deadline(cur)));
            (!open).then(|| self.open_word(0, full))
        })?;
        if prev.kind() == Kind::Open {
            return None;
        }
        if matches!(prev.kind(), Kind::Closed | Kind::HalfOpen) {
            self.counters.trips.incr();
        }
        Some(transition(prev.kind(), Kind::Open, now))
    }

    /// The word `decision` stands for at `now`, after validating it, and
    /// an Open word's full deadline (for `open_word`, when installed).
    fn decided_word(&self, d: &Decision, now: Instant) -> Result<(Word, Epoch), MergeError> {
        let streak = u32::from(d.reopen_streak);
        if streak > MAX_STREAK {
            return Err(MergeError::Invalid);
        }
        let valid = match d.state {
            State::Open => d.open_remaining.is_some(),
            State::HalfOpen => d.open_remaining.is_none(),
            State::Closed | State::ForcedOpen => d.open_remaining.is_none() && streak == 0,
        };
        if !valid {
            return Err(MergeError::Invalid);
        }
        Ok(match d.state {
            State::Closed => (Word::closed(0, 0, super::Cursor::EMPTY), 0),
            State::HalfOpen => (Word::half_open(0, streak, 0, 0), 0),
            State::ForcedOpen => (Word::forced_open(0), 0),
            State::Open => {
                let left = match d.open_remaining {
                    Some(left) if left <= MAX_OPEN_FOR + Duration::from_micros(TICK_MICROS) => left,
                    _ => return Err(MergeError::Invalid),
                };
                let left = left.min(self.config.open_duration(streak));
                let deadline = if left.is_zero() {
                    word::full_now_ticks(now)
                } else {
                    word::full_deadline_after(now, left)
                };
                (Word::open(streak, word::wrapped(deadline)), deadline)
            }
        })
    }
}
