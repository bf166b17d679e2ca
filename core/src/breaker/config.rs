//! Breaker configuration: a `const` builder that validates everything.

use super::config_error::ConfigError;
use super::live::{MAX_SLOW_THRESHOLD_MICROS, OPEN_UNIT_MICROS};
use super::word::{
    MAX_CLOSE_AFTER, MAX_CONSECUTIVE, MAX_HALF_OPEN_PERMITS, MAX_OPEN_FOR, MAX_STREAK,
};
use crate::Duration;

/// The largest count-based window, in calls.
///
/// # Examples
///
/// ```
/// use fusebox::breaker::{Config, ConfigError, MAX_WINDOW};
///
/// let widest = Config::builder().failure_rate(50).window(MAX_WINDOW).build()?;
/// assert_eq!(widest.window(), 64);
/// let too_wide = Config::builder().failure_rate(50).window(MAX_WINDOW + 1).build();
/// assert_eq!(too_wide, Err(ConfigError::WindowOutOfRange(65)));
/// # Ok::<(), fusebox::breaker::ConfigError>(())
/// ```
pub const MAX_WINDOW: u8 = 64;
/// `minimum_calls` when a time window is set and no minimum is given
/// (Resilience4j's default).
const DEFAULT_TIME_MINIMUM_CALLS: u8 = 100;

/// A validated circuit-breaker configuration.
///
/// Built with [`Config::builder`]; every setter and [`ConfigBuilder::build`]
/// are `const fn`, so a configuration can be checked at compile time:
///
/// ```
/// use fusebox::breaker::Config;
/// use fusebox::Duration;
///
/// const CONFIG: Config = match Config::builder()
///     .consecutive_failures(5)
///     .open_for(Duration::from_secs(30))
///     .build()
/// {
///     Ok(config) => config,
///     Err(_) => panic!("invalid breaker config"), // a compile error, not a runtime panic
/// };
/// assert_eq!(CONFIG.open_for(), Duration::from_secs(30));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(try_from = "super::ser::ConfigRepr")
)]
pub struct Config {
    pub(crate) consecutive_failures: u16,
    pub(crate) failure_rate: u8,
    pub(crate) slow_rate: u8,
    pub(crate) window: u8,
    pub(crate) minimum_calls: u8,
    pub(crate) half_open_permits: u8,
    pub(crate) close_after: u8,
    /// `Duration::MAX` without a slow-call policy (written as 0, see `ser`).
    #[cfg_attr(
        feature = "serde",
        serde(serialize_with = "super::ser::slow_threshold")
    )]
    pub(crate) slow_threshold: Duration,
    pub(crate) open_for: Duration,
    pub(crate) max_open_for: Duration,
    /// Zero: no half-open timeout.
    #[cfg(feature = "half-open-timeout")]
    pub(crate) max_half_open: Duration,
    /// The time window's interval in µs (0: the window is count-based).
    #[cfg(feature = "time-window")]
    pub(crate) time_interval: u32,
    /// The time window's number of buckets (0: count-based).
    #[cfg(feature = "time-window")]
    pub(crate) time_buckets: u8,
    /// Failures within the time window that open the breaker (0: off).
    #[cfg(feature = "time-window")]
    pub(crate) failure_count: u8,
}

/// Builds a [`Config`]; see [`Config::builder`] for the defaults.
///
/// # Examples
///
/// ```
/// use fusebox::breaker::{Config, ConfigBuilder};
///
/// let builder: ConfigBuilder = Config::builder().consecutive_failures(3);
/// let config = builder.half_open_permits(2).build()?;
/// assert_eq!(config.consecutive_failures(), Some(3));
/// assert_eq!(config.close_after(), 2); // defaults to the half-open permits
/// # Ok::<(), fusebox::breaker::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct ConfigBuilder {
    pub(super) consecutive_failures: Option<u32>,
    failure_rate: Option<u8>,
    pub(super) slow: Option<(Duration, u8)>,
    window: u8,
    minimum_calls: Option<u8>,
    open_for: Duration,
    max_open_for: Option<Duration>,
    half_open_permits: u8,
    close_after: Option<u8>,
    pub(super) window_set: bool,
    pub(super) max_half_open: Option<Duration>,
    pub(super) time_window: Option<(Duration, u8)>,
    pub(super) failure_count: Option<u32>,
}

impl Config {
    /// The largest `consecutive_failures` threshold (an 8-bit counter in
    /// the state word, beside the sliding window's cursor).
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::breaker::{Config, ConfigError};
    ///
    /// let most = Config::builder().consecutive_failures(Config::MAX_CONSECUTIVE_FAILURES);
    /// assert_eq!(most.build()?.consecutive_failures(), Some(255));
    /// let more = Config::builder().consecutive_failures(Config::MAX_CONSECUTIVE_FAILURES + 1);
    /// assert_eq!(more.build(), Err(ConfigError::ConsecutiveFailuresOutOfRange(256)));
    /// # Ok::<(), fusebox::breaker::ConfigError>(())
    /// ```
    pub const MAX_CONSECUTIVE_FAILURES: u32 = MAX_CONSECUTIVE;
    /// The longest `open_for`/`max_open_for`: 2²⁴ ticks of 1.024 ms, about
    /// 4 h 46 min (a quarter of the wrapped deadline's range, so that a
    /// clock up to one open time stale still reads open; see the crate
    /// docs).
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::breaker::{Config, ConfigError};
    /// use fusebox::Duration;
    ///
    /// let b = Config::builder().consecutive_failures(5);
    /// assert!(b.open_for(Config::MAX_OPEN_FOR).build().is_ok());
    /// let longer = Config::MAX_OPEN_FOR + Duration::from_micros(1);
    /// assert_eq!(b.open_for(longer).build(), Err(ConfigError::OpenForOutOfRange(longer)));
    /// ```
    pub const MAX_OPEN_FOR: Duration = MAX_OPEN_FOR;
    /// The longest slow-call threshold: 2³² − 2 µs, about 71.6 min (a
    /// 32-bit word of the live configuration; see
    /// [`CircuitBreaker::set_config`](super::CircuitBreaker::set_config)).
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::breaker::{Config, ConfigError};
    /// use fusebox::Duration;
    ///
    /// let b = Config::builder();
    /// let config = b.slow_call(Config::MAX_SLOW_THRESHOLD, 50).build()?;
    /// assert_eq!(config.slow_call(), Some((Config::MAX_SLOW_THRESHOLD, 50)));
    /// let longer = Config::MAX_SLOW_THRESHOLD + Duration::from_micros(1);
    /// assert_eq!(b.slow_call(longer, 50).build(), Err(ConfigError::SlowThresholdTooLong(longer)));
    /// # Ok::<(), fusebox::breaker::ConfigError>(())
    /// ```
    pub const MAX_SLOW_THRESHOLD: Duration = Duration::from_micros(MAX_SLOW_THRESHOLD_MICROS);
    /// The longest `max_half_open`: 2²² ticks of 1.024 ms, about 71 min
    /// 35 s (a quarter of the wrapped half-open deadline's range).
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::breaker::Config;
    /// use fusebox::Duration;
    ///
    /// // About 71 min 35 s: 2²² ticks of 1.024 ms.
    /// assert_eq!(Config::MAX_HALF_OPEN, Duration::from_micros((1 << 22) * 1024));
    /// ```
    pub const MAX_HALF_OPEN: Duration = super::word::MAX_HALF_OPEN;

    /// A builder with these defaults: no trip condition (you must choose
    /// one), `window` 64 calls, `minimum_calls` equal to the window,
    /// `open_for` 60 s without growth, 1 half-open permit, `close_after`
    /// equal to `half_open_permits`.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::breaker::{Config, ConfigError};
    ///
    /// // No trip condition is chosen for you.
    /// assert_eq!(Config::builder().build(), Err(ConfigError::NoTripCondition));
    /// let config = Config::builder().failure_rate(50).build()?;
    /// assert_eq!((config.window(), config.minimum_calls()), (64, 64));
    /// assert_eq!(config.open_for(), config.max_open_for()); // no growth
    /// assert_eq!((config.half_open_permits(), config.close_after()), (1, 1));
    /// # Ok::<(), fusebox::breaker::ConfigError>(())
    /// ```
    pub const fn builder() -> ConfigBuilder {
        ConfigBuilder {
            consecutive_failures: None,
            failure_rate: None,
            slow: None,
            window: MAX_WINDOW,
            minimum_calls: None,
            open_for: Duration::from_secs(60),
            max_open_for: None,
            half_open_permits: 1,
            close_after: None,
            window_set: false,
            max_half_open: None,
            time_window: None,
            failure_count: None,
        }
    }

    /// Consecutive failures that open the breaker, if that policy is on.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::breaker::Config;
    ///
    /// let config = Config::builder().consecutive_failures(5).build()?;
    /// assert_eq!(config.consecutive_failures(), Some(5));
    /// let by_rate = Config::builder().failure_rate(50).build()?;
    /// assert_eq!(by_rate.consecutive_failures(), None);
    /// # Ok::<(), fusebox::breaker::ConfigError>(())
    /// ```
    pub const fn consecutive_failures(&self) -> Option<u16> {
        if self.consecutive_failures == 0 {
            None
        } else {
            Some(self.consecutive_failures)
        }
    }
    /// Failure percentage over the window that opens the breaker, if on.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::breaker::Config;
    ///
    /// let config = Config::builder().failure_rate(50).build()?;
    /// assert_eq!(config.failure_rate(), Some(50));
    /// let by_count = Config::builder().consecutive_failures(5).build()?;
    /// assert_eq!(by_count.failure_rate(), None);
    /// # Ok::<(), fusebox::breaker::ConfigError>(())
    /// ```
    pub const fn failure_rate(&self) -> Option<u8> {
        if self.failure_rate == 0 {
            None
        } else {
            Some(self.failure_rate)
        }
    }
    /// Slow-call threshold and percentage, if slow calls can open the breaker.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::breaker::Config;
    /// use fusebox::Duration;
    ///
    /// let config = Config::builder().slow_call(Duration::from_millis(500), 80).build()?;
    /// assert_eq!(config.slow_call(), Some((Duration::from_millis(500), 80)));
    /// assert_eq!(config.failure_rate(), None);
    /// # Ok::<(), fusebox::breaker::ConfigError>(())
    /// ```
    pub const fn slow_call(&self) -> Option<(Duration, u8)> {
        if self.slow_rate == 0 {
            None
        } else {
            Some((self.slow_threshold, self.slow_rate))
        }
    }
    /// Size of the count-based sliding window, in calls.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::breaker::Config;
    ///
    /// let config = Config::builder().failure_rate(50).window(20).build()?;
    /// assert_eq!(config.window(), 20);
    /// # Ok::<(), fusebox::breaker::ConfigError>(())
    /// ```
    pub const fn window(&self) -> u8 {
        self.window
    }
    /// Calls the window must hold before a rate can open the breaker.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::breaker::Config;
    ///
    /// let config = Config::builder().failure_rate(50).window(20).build()?;
    /// assert_eq!(config.minimum_calls(), 20); // defaults to the window
    /// let early = Config::builder().failure_rate(50).window(20).minimum_calls(5).build()?;
    /// assert_eq!(early.minimum_calls(), 5);
    /// # Ok::<(), fusebox::breaker::ConfigError>(())
    /// ```
    pub const fn minimum_calls(&self) -> u8 {
        self.minimum_calls
    }
    /// Time spent open after a trip from closed, rounded up to a multiple
    /// of 8 µs (see [`ConfigBuilder::open_for`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::breaker::Config;
    /// use fusebox::Duration;
    ///
    /// let config = Config::builder().consecutive_failures(5).build()?;
    /// assert_eq!(config.open_for(), Duration::from_secs(60)); // the default
    /// # Ok::<(), fusebox::breaker::ConfigError>(())
    /// ```
    pub const fn open_for(&self) -> Duration {
        self.open_for
    }
    /// Upper bound of the open time as it doubles on repeated trips.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::breaker::Config;
    /// use fusebox::Duration;
    ///
    /// let config = Config::builder()
    ///     .consecutive_failures(5)
    ///     .open_for(Duration::from_secs(10))
    ///     .max_open_for(Duration::from_secs(80))
    ///     .build()?;
    /// assert_eq!(config.max_open_for(), Duration::from_secs(80));
    /// # Ok::<(), fusebox::breaker::ConfigError>(())
    /// ```
    pub const fn max_open_for(&self) -> Duration {
        self.max_open_for
    }
    /// Trial calls allowed in flight while half-open.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::breaker::Config;
    ///
    /// let config = Config::builder().consecutive_failures(5).half_open_permits(3).build()?;
    /// assert_eq!(config.half_open_permits(), 3);
    /// # Ok::<(), fusebox::breaker::ConfigError>(())
    /// ```
    pub const fn half_open_permits(&self) -> u8 {
        self.half_open_permits
    }
    /// Successful trials needed to close from half-open.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::breaker::Config;
    ///
    /// let b = Config::builder().consecutive_failures(5).half_open_permits(3);
    /// assert_eq!(b.build()?.close_after(), 3); // defaults to the permits
    /// assert_eq!(b.close_after(2).build()?.close_after(), 2);
    /// # Ok::<(), fusebox::breaker::ConfigError>(())
    /// ```
    pub const fn close_after(&self) -> u8 {
        self.close_after
    }
    /// Whether any rate policy needs a window (count- or time-based): a
    /// closed success is then recorded out of line.
    pub(crate) const fn uses_window(&self) -> bool {
        self.failure_rate != 0 || self.slow_rate != 0
    }
    /// Whether the rate policies use the count-based sliding window.
    pub(crate) const fn uses_count_window(&self) -> bool {
        self.uses_window() && !self.timed()
    }
    /// Whether the breaker keeps a time-based window.
    #[cfg(feature = "time-window")]
    pub(crate) const fn timed(&self) -> bool {
        self.time_buckets != 0
    }
    /// Whether the breaker keeps a time-based window.
    #[cfg(not(feature = "time-window"))]
    #[allow(clippy::unused_self)] // its twin with the feature reads it
    pub(crate) const fn timed(&self) -> bool {
        false
    }
    /// Open time after `streak` consecutive re-openings from half-open:
    /// `open_for · 2^streak`, capped at `max_open_for`.
    pub(crate) const fn open_duration(&self, streak: u32) -> Duration {
        let grown = self.open_for.as_micros().saturating_mul(1 << streak);
        if grown > self.max_open_for.as_micros() {
            self.max_open_for
        } else {
            Duration::from_micros(grown)
        }
    }
}

/// `d` rounded up to the live configuration's unit of open time (8 µs).
const fn round_open_time(d: Duration) -> Duration {
    Duration::from_micros(d.as_micros().div_ceil(OPEN_UNIT_MICROS) * OPEN_UNIT_MICROS)
}

impl ConfigBuilder {
    /// Open after `n` failures in a row (1..=255). A success resets the
    /// count. Failures in a row are counted (up to 255) even with this
    /// policy off, so one turned on by
    /// [`set_config`](super::CircuitBreaker::set_config) counts the streak
    /// already under way.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::breaker::{Config, ConfigError};
    ///
    /// let config = Config::builder().consecutive_failures(5).build()?;
    /// assert_eq!(config.consecutive_failures(), Some(5));
    /// let zero = Config::builder().consecutive_failures(0).build();
    /// assert_eq!(zero, Err(ConfigError::ConsecutiveFailuresOutOfRange(0)));
    /// # Ok::<(), fusebox::breaker::ConfigError>(())
    /// ```
    pub const fn consecutive_failures(mut self, n: u32) -> Self {
        self.consecutive_failures = Some(n);
        self
    }
    /// Open when at least `percent` % (1..=100) of the calls in the window
    /// failed, once the window holds `minimum_calls`. Evaluated after every
    /// closed record that can change the verdict: each failure or slow
    /// call, and each success that brings the window to `minimum_calls` or
    /// beyond before it first fills (a success in a full window replaces an
    /// older outcome and can only lower the rate).
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::breaker::{Config, ConfigError};
    ///
    /// assert_eq!(Config::builder().failure_rate(50).build()?.failure_rate(), Some(50));
    /// let over = Config::builder().failure_rate(101).build();
    /// assert_eq!(over, Err(ConfigError::FailureRateOutOfRange(101)));
    /// # Ok::<(), fusebox::breaker::ConfigError>(())
    /// ```
    pub const fn failure_rate(mut self, percent: u8) -> Self {
        self.failure_rate = Some(percent);
        self
    }
    /// Count a call taking `threshold` or longer as slow, and open when at
    /// least `rate_percent` % of the window was slow. In half-open, a slow
    /// trial counts as a failed trial.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::breaker::{Config, ConfigError};
    /// use fusebox::Duration;
    ///
    /// let b = Config::builder();
    /// let config = b.slow_call(Duration::from_secs(2), 60).build()?;
    /// assert_eq!(config.slow_call(), Some((Duration::from_secs(2), 60)));
    /// let every_call_slow = b.slow_call(Duration::ZERO, 60).build();
    /// assert_eq!(every_call_slow, Err(ConfigError::ZeroSlowThreshold));
    /// # Ok::<(), fusebox::breaker::ConfigError>(())
    /// ```
    pub const fn slow_call(mut self, threshold: Duration, rate_percent: u8) -> Self {
        self.slow = Some((threshold, rate_percent));
        self
    }
    /// Size of the count-based sliding window: the last `calls` (1..=64)
    /// recorded calls.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::breaker::{Config, ConfigError};
    ///
    /// let b = Config::builder().failure_rate(50);
    /// assert_eq!(b.window(10).build()?.window(), 10);
    /// assert_eq!(b.window(0).build(), Err(ConfigError::WindowOutOfRange(0)));
    /// # Ok::<(), fusebox::breaker::ConfigError>(())
    /// ```
    pub const fn window(mut self, calls: u8) -> Self {
        self.window = calls;
        self.window_set = true;
        self
    }
    /// Calls the window must hold before a rate is evaluated (1..=window).
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::breaker::{Config, ConfigError};
    ///
    /// let b = Config::builder().failure_rate(50).window(10);
    /// assert_eq!(b.minimum_calls(4).build()?.minimum_calls(), 4);
    /// let too_many = b.minimum_calls(11).build();
    /// let expected = ConfigError::MinimumCallsOutOfRange { minimum_calls: 11, window: 10 };
    /// assert_eq!(too_many, Err(expected));
    /// # Ok::<(), fusebox::breaker::ConfigError>(())
    /// ```
    pub const fn minimum_calls(mut self, calls: u8) -> Self {
        self.minimum_calls = Some(calls);
        self
    }
    /// How long the breaker stays open before letting trial calls through.
    /// The open time is kept as a multiple of 8 µs, rounded up (what
    /// [`Config::open_for`] reads), and the deadline in ticks of 1.024 ms,
    /// rounded up: the breaker opens for at least `duration` and at most
    /// one tick and 6 µs more (1 s, a multiple of 8 µs, opens for
    /// 1 000.448 ms from a `now` on a tick, and less than one tick more
    /// from any `now`).
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::breaker::{Config, ConfigError};
    /// use fusebox::Duration;
    ///
    /// let b = Config::builder().consecutive_failures(5);
    /// let config = b.open_for(Duration::from_secs(30)).build()?;
    /// assert_eq!(config.open_for(), Duration::from_secs(30));
    /// let never_open = b.open_for(Duration::ZERO).build();
    /// assert_eq!(never_open, Err(ConfigError::OpenForOutOfRange(Duration::ZERO)));
    /// # Ok::<(), fusebox::breaker::ConfigError>(())
    /// ```
    pub const fn open_for(mut self, duration: Duration) -> Self {
        self.open_for = duration;
        self
    }
    /// Double the open time on every re-opening from half-open, up to
    /// `max` (at most `open_for · 2¹⁵`, 15 doublings of the open time as
    /// kept, rounded up to 8 µs: see [`open_for`](Self::open_for)).
    /// Closing resets the growth.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::breaker::{Config, ConfigError};
    /// use fusebox::Duration;
    ///
    /// let b = Config::builder().consecutive_failures(5).open_for(Duration::from_secs(10));
    /// // 10 s, 20 s, 40 s, then 60 s on every later re-opening.
    /// let config = b.max_open_for(Duration::from_secs(60)).build()?;
    /// assert_eq!(config.max_open_for(), Duration::from_secs(60));
    /// let shorter = Duration::from_secs(5);
    /// let refused = b.max_open_for(shorter).build();
    /// assert_eq!(refused, Err(ConfigError::MaxOpenForOutOfRange(shorter)));
    /// # Ok::<(), fusebox::breaker::ConfigError>(())
    /// ```
    pub const fn max_open_for(mut self, max: Duration) -> Self {
        self.max_open_for = Some(max);
        self
    }
    /// Trial calls allowed in flight while half-open (1..=63).
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::breaker::{Config, ConfigError};
    ///
    /// let b = Config::builder().consecutive_failures(5);
    /// assert_eq!(b.half_open_permits(4).build()?.half_open_permits(), 4);
    /// let refused = b.half_open_permits(64).build();
    /// assert_eq!(refused, Err(ConfigError::HalfOpenPermitsOutOfRange(64)));
    /// # Ok::<(), fusebox::breaker::ConfigError>(())
    /// ```
    pub const fn half_open_permits(mut self, permits: u8) -> Self {
        self.half_open_permits = permits;
        self
    }
    /// Successful trials needed to close (1..=63; default: the number of
    /// half-open permits).
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::breaker::{Config, ConfigError};
    ///
    /// let b = Config::builder().consecutive_failures(5).half_open_permits(4);
    /// assert_eq!(b.close_after(2).build()?.close_after(), 2);
    /// assert_eq!(b.close_after(0).build(), Err(ConfigError::CloseAfterOutOfRange(0)));
    /// # Ok::<(), fusebox::breaker::ConfigError>(())
    /// ```
    pub const fn close_after(mut self, successes: u8) -> Self {
        self.close_after = Some(successes);
        self
    }

    /// Validates the settings.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first setting that is zero, out of
    /// range, or contradicts another.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::breaker::{Config, ConfigError};
    ///
    /// let config = Config::builder().failure_rate(50).window(20).build()?;
    /// assert_eq!(config.failure_rate(), Some(50));
    /// // Both settings are fine alone; together they contradict each other.
    /// let b = Config::builder().failure_rate(50).window(10).minimum_calls(20);
    /// let expected = ConfigError::MinimumCallsOutOfRange { minimum_calls: 20, window: 10 };
    /// assert_eq!(b.build(), Err(expected));
    /// # Ok::<(), fusebox::breaker::ConfigError>(())
    /// ```
    pub const fn build(self) -> Result<Config, ConfigError> {
        if self.consecutive_failures.is_none()
            && self.failure_rate.is_none()
            && self.slow.is_none()
            && self.failure_count.is_none()
        {
            return Err(ConfigError::NoTripCondition);
        }
        let consecutive_failures = match self.consecutive_failures {
            None => 0,
            Some(n) if n == 0 || n > MAX_CONSECUTIVE => {
                return Err(ConfigError::ConsecutiveFailuresOutOfRange(n))
            }
            Some(n) => n as u16,
        };
        let failure_rate = match self.failure_rate {
            None => 0,
            Some(p) if p == 0 || p > 100 => return Err(ConfigError::FailureRateOutOfRange(p)),
            Some(p) => p,
        };
        let (slow_threshold, slow_rate) = match self.slow_settings() {
            Ok(s) => s,
            Err(e) => return Err(e),
        };
        if self.window == 0 || self.window > MAX_WINDOW {
            return Err(ConfigError::WindowOutOfRange(self.window));
        }
        let (time_interval, time_buckets, failure_count) = match self.time_settings() {
            Ok(t) => t,
            Err(e) => return Err(e),
        };
        let minimum_calls = match self.minimum_calls {
            None if time_buckets != 0 => DEFAULT_TIME_MINIMUM_CALLS,
            None => self.window,
            Some(m) if m == 0 || (time_buckets == 0 && m > self.window) => {
                return Err(ConfigError::MinimumCallsOutOfRange {
                    minimum_calls: m,
                    window: self.window,
                })
            }
            Some(m) => m,
        };
        let max_half_open = match self.half_open_timeout() {
            Ok(m) => m,
            Err(e) => return Err(e),
        };
        #[cfg(not(feature = "time-window"))]
        let _ = (time_interval, failure_count);
        #[cfg(not(feature = "half-open-timeout"))]
        let _ = max_half_open;
        if self.open_for.is_zero() || self.open_for.as_micros() > MAX_OPEN_FOR.as_micros() {
            return Err(ConfigError::OpenForOutOfRange(self.open_for));
        }
        let open_for = round_open_time(self.open_for);
        let max_open_for = match self.max_open_for {
            None => open_for,
            Some(m)
                if m.as_micros() < self.open_for.as_micros()
                    || m.as_micros() > MAX_OPEN_FOR.as_micros()
                    || m.as_micros() > open_for.as_micros().saturating_mul(1 << MAX_STREAK) =>
            {
                return Err(ConfigError::MaxOpenForOutOfRange(m))
            }
            Some(m) => round_open_time(m),
        };
        if self.half_open_permits == 0 || self.half_open_permits > MAX_HALF_OPEN_PERMITS {
            return Err(ConfigError::HalfOpenPermitsOutOfRange(
                self.half_open_permits,
            ));
        }
        let close_after = match self.close_after {
            None => self.half_open_permits,
            Some(n) if n == 0 || n > MAX_CLOSE_AFTER => {
                return Err(ConfigError::CloseAfterOutOfRange(n))
            }
            Some(n) => n,
        };
        Ok(Config {
            consecutive_failures,
            failure_rate,
            slow_rate,
            window: self.window,
            minimum_calls,
            half_open_permits: self.half_open_permits,
            close_after,
            slow_threshold,
            open_for,
            max_open_for,
            #[cfg(feature = "half-open-timeout")]
            max_half_open,
            #[cfg(feature = "time-window")]
            time_interval,
            #[cfg(feature = "time-window")]
            time_buckets,
            #[cfg(feature = "time-window")]
            failure_count,
        })
    }
}
