//! [`CircuitBreaker::set_config`]: a breaker's thresholds and open times
//! changed under `&self` while calls go on (the atomic words are in
//! `live`), and [`ReconfigureError`], what it refuses.

use super::{CircuitBreaker, Config};

impl CircuitBreaker {
    /// The configuration: as built, or as last set by
    /// [`set_config`](Self::set_config).
    ///
    /// ```
    /// use fusebox::breaker::{CircuitBreaker, Config};
    ///
    /// let config = Config::builder().consecutive_failures(3).build()?;
    /// assert_eq!(CircuitBreaker::new(config).config(), config);
    /// # Ok::<(), fusebox::breaker::ConfigError>(())
    /// ```
    pub fn config(&self) -> Config {
        self.config.load()
    }

    /// Whether a call's duration can change a decision: true when a
    /// slow-call rule is configured (now, as [`set_config`](Self::set_config)
    /// may change it). When false, a caller may skip timing its calls and
    /// record [`Duration::ZERO`](crate::Duration::ZERO) (one relaxed load).
    ///
    /// ```
    /// use fusebox::breaker::{CircuitBreaker, Config};
    /// use fusebox::Duration;
    ///
    /// let plain = CircuitBreaker::new(Config::builder().consecutive_failures(3).build()?);
    /// assert!(!plain.measures_duration());
    /// let slow = Config::builder()
    ///     .slow_call(Duration::from_millis(200), 50)
    ///     .window(20)
    ///     .build()?;
    /// assert!(CircuitBreaker::new(slow).measures_duration());
    /// # Ok::<(), fusebox::breaker::ConfigError>(())
    /// ```
    #[inline]
    pub fn measures_duration(&self) -> bool {
        self.config.trip().slow_rate != 0
    }

    /// Replaces the thresholds and open times of a breaker in use, keeping
    /// its state, window and counters; returns the previous configuration.
    ///
    /// Takes `&self`: a breaker shared through `Arc` or a `static` can be
    /// retuned while calls go on, none of them waiting. What changes, and
    /// when:
    ///
    /// * Thresholds (`consecutive_failures`, `failure_rate`, `slow_call`,
    ///   `minimum_calls`) apply from the next recorded outcome: a closed
    ///   breaker already at or past a lowered threshold trips on its next
    ///   failure (or, for a rate, the next outcome that is evaluated).
    /// * `half_open_permits` and `close_after` apply to the next trial
    ///   taken and the next success recorded: a half-open breaker with
    ///   enough successes for a lowered `close_after` closes on its next.
    /// * `open_for` and `max_open_for` apply from the next opening; a
    ///   breaker open at the change keeps its deadline, also when the new
    ///   open time is shorter.
    /// * A call racing the change sees either the old or the new value of
    ///   each group above (thresholds together, half-open limits together,
    ///   each open time and the slow threshold on its own).
    ///
    /// Changes are serialised with each other by a critical section
    /// ([`critical-section`](https://docs.rs/critical-section), which a
    /// server gets from the `std` feature); calls never take it. This never
    /// slows the closed path: a call reads the words it read before, now
    /// with `Relaxed` atomic loads (the same instruction on x86-64 and Arm).
    ///
    /// # Errors
    ///
    /// [`ReconfigureError`] when `config` changes the sliding window's size,
    /// or turns every rate policy on or off (the window is laid out at
    /// construction), or (features `time-window`, `half-open-timeout`)
    /// changes, adds or removes the time window or the half-open timeout,
    /// also fixed at construction. The breaker is then unchanged.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fusebox::breaker::{CircuitBreaker, Config, Outcome, State};
    /// use fusebox::{Duration, Instant};
    ///
    /// let breaker = Arc::new(CircuitBreaker::new(
    ///     Config::builder().consecutive_failures(5).build()?,
    /// ));
    /// let now = Instant::ZERO;
    /// for _ in 0..2 {
    ///     breaker.try_acquire(now)?.record(Outcome::Failure, now, Duration::ZERO);
    /// }
    /// // Two failures in a row so far; an operator lowers the threshold to 3.
    /// let old = breaker.set_config(
    ///     Config::builder()
    ///         .consecutive_failures(3)
    ///         .open_for(Duration::from_secs(5))
    ///         .build()?,
    /// )?;
    /// assert_eq!(old.consecutive_failures(), Some(5));
    /// breaker.try_acquire(now)?.record(Outcome::Failure, now, Duration::ZERO);
    /// assert_eq!(breaker.state(now), State::Open); // the third in a row trips
    /// let retry_after = breaker.try_acquire(now).unwrap_err().retry_after.unwrap();
    /// assert!(retry_after >= Duration::from_secs(5)); // the new open time (to a 1.024 ms tick)
    /// assert!(retry_after < Duration::from_secs(6));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_config(&self, config: Config) -> Result<Config, ReconfigureError> {
        crate::sync::critical(|| self.config.store(&config))
    }
}

/// Why [`CircuitBreaker::set_config`](super::CircuitBreaker::set_config)
/// refused a configuration. The breaker is left unchanged.
///
/// # Examples
///
/// ```
/// use fusebox::breaker::{CircuitBreaker, Config, ReconfigureError};
///
/// let breaker = CircuitBreaker::new(Config::builder().failure_rate(50).window(20).build()?);
/// let wider = Config::builder().failure_rate(50).window(30).build()?;
/// let refused = breaker.set_config(wider);
/// assert_eq!(refused, Err(ReconfigureError::WindowSize { current: 20, requested: 30 }));
/// // Dropping every rate policy would leave the window unused.
/// let by_count = Config::builder().consecutive_failures(5).window(20).build()?;
/// assert_eq!(breaker.set_config(by_count), Err(ReconfigureError::WindowPolicy));
/// assert_eq!(breaker.config().window(), 20); // unchanged
/// # Ok::<(), fusebox::breaker::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ReconfigureError {
    /// The sliding window's size differs: its slots are laid out for the
    /// size the breaker was built with.
    WindowSize {
        /// The breaker's window, in calls.
        current: u8,
        /// The requested window.
        requested: u8,
    },
    /// The change turns the sliding window on or off (every rate policy was
    /// off and one is on, or the reverse): the window is kept only by a
    /// breaker built with a rate policy.
    WindowPolicy,
    /// The time window's length or bucket count differs (feature
    /// `time-window`): its buckets are laid out for them.
    TimeWindow,
    /// The half-open timeout differs (feature `half-open-timeout`): it is
    /// fixed at construction.
    HalfOpenTimeout,
}

impl core::fmt::Display for ReconfigureError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::WindowSize { current, requested } => write!(
                f,
                "the window size is fixed at construction ({current} calls), got {requested}"
            ),
            Self::WindowPolicy => f.write_str(
                "rate policies (failure rate, slow calls) cannot be turned on or off on a live breaker",
            ),
            Self::TimeWindow => {
                f.write_str("the time window's length and buckets are fixed at construction")
            }
            Self::HalfOpenTimeout => f.write_str("the half-open timeout is fixed at construction"),
        }
    }
}

impl core::error::Error for ReconfigureError {}
