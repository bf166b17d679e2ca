//! The vocabulary of a call: the [`State`] a breaker reports, how a call
//! ended ([`Outcome`]), the [`Transition`] a caller caused, and why a call
//! was refused ([`Rejected`]).

#[cfg(doc)]
use super::{CircuitBreaker, Metrics};
use crate::{Duration, Instant};

/// The state a breaker reports.
///
/// # Examples
///
/// ```
/// use fusebox::breaker::{CircuitBreaker, Config, State};
/// use fusebox::Instant;
///
/// let breaker = CircuitBreaker::new(Config::builder().consecutive_failures(3).build()?);
/// let now = Instant::from_secs(1);
/// assert_eq!(breaker.state(now), State::Closed);
/// breaker.force_open(now);
/// assert_eq!(breaker.state(now), State::ForcedOpen);
/// # Ok::<(), fusebox::breaker::ConfigError>(())
/// ```
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
///
/// # Examples
///
/// ```
/// use fusebox::breaker::{CircuitBreaker, Config, Outcome, State};
/// use fusebox::{Duration, Instant};
///
/// let breaker = CircuitBreaker::new(Config::builder().consecutive_failures(1).build()?);
/// let now = Instant::from_secs(1);
/// // An ignored call says nothing about the dependency: the breaker stays closed.
/// breaker.try_acquire(now).unwrap().record(Outcome::Ignored, now, Duration::ZERO);
/// assert_eq!(breaker.state(now), State::Closed);
/// breaker.try_acquire(now).unwrap().record(Outcome::Failure, now, Duration::ZERO);
/// assert_eq!(breaker.state(now), State::Open);
/// # Ok::<(), fusebox::breaker::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Outcome {
    /// The call succeeded (it may still count as slow).
    Success,
    /// The call failed and counts toward opening the breaker.
    Failure,
    /// The call's result says nothing about the dependency (a classifier's
    /// "not its fault", e.g. a 4xx caused by the caller): counted in
    /// [`Metrics::ignored`], it changes no state. A half-open trial recorded
    /// as ignored frees its slot without deciding.
    Ignored,
}

/// A state change, returned to the caller that caused it so it can log it
/// (defmt, tracing) without callbacks or allocation.
///
/// # Examples
///
/// ```
/// use fusebox::breaker::{CircuitBreaker, Config, Outcome, State, Transition};
/// use fusebox::{Duration, Instant};
///
/// let breaker = CircuitBreaker::new(Config::builder().consecutive_failures(1).build()?);
/// let now = Instant::from_secs(1);
/// let permit = breaker.try_acquire(now).unwrap();
/// let transition = permit.record(Outcome::Failure, now, Duration::ZERO);
/// assert_eq!(transition, Some(Transition { from: State::Closed, to: State::Open, at: now }));
/// # Ok::<(), fusebox::breaker::ConfigError>(())
/// ```
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
///
/// # Examples
///
/// ```
/// use fusebox::breaker::{CircuitBreaker, Config, Outcome, State};
/// use fusebox::{Duration, Instant};
///
/// let config = Config::builder()
///     .consecutive_failures(1)
///     .open_for(Duration::from_secs(30))
///     .build()?;
/// let breaker = CircuitBreaker::new(config);
/// let now = Instant::from_secs(1);
/// breaker.try_acquire(now).unwrap().record(Outcome::Failure, now, Duration::ZERO);
/// let rejected = breaker.try_acquire(now + Duration::from_secs(10)).unwrap_err();
/// assert_eq!(rejected.state, State::Open);
/// // About 20 s left (the open time is rounded up to 1.024 ms ticks).
/// let left = rejected.retry_after.unwrap();
/// assert!(left >= Duration::from_secs(20) && left < Duration::from_millis(20_002));
/// assert_eq!(rejected.transition, None);
/// # Ok::<(), fusebox::breaker::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Rejected {
    /// The state that rejected it: `Open`, `HalfOpen` (all trial permits in
    /// use) or `ForcedOpen`.
    pub state: State,
    /// When the breaker will let a trial through; `None` when that depends on
    /// other calls finishing (half-open) or on an operator (forced open).
    pub retry_after: Option<Duration>,
    /// The HalfOpen → Open transition this call made by finding the
    /// half-open timeout (`ConfigBuilder::max_half_open`, feature
    /// `half-open-timeout`) passed, if it did (exactly one caller per
    /// timeout gets it). Always `None` without that feature.
    pub transition: Option<Transition>,
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
