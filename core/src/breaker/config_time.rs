//! The time-window settings of [`ConfigBuilder`] and their getters on
//! [`Config`] (feature `time-window`).

use super::config::{Config, ConfigBuilder};
use crate::Duration;

impl ConfigBuilder {
    /// Count outcomes over the last `total` of time instead of the last
    /// calls: a ring of `buckets` (1, 2, 4, 8 or 16) intervals of
    /// `⌊total / buckets⌋` µs each (from 1 ms to 2³² − 1 µs), Resilience4j's
    /// `TIME_BASED` sliding window. The rate policies ([`failure_rate`],
    /// [`slow_call`], with [`minimum_calls`] from 1 to 255, default 100)
    /// and [`failure_count`] are then evaluated over it.
    ///
    /// An outcome recorded at `now` lands in interval `⌊now / interval⌋`
    /// and counts while the newest interval seen is less than `buckets`
    /// intervals later: for between `total − interval` and `total` (the
    /// oldest bucket expires whole, as in Resilience4j). See
    /// [`CircuitBreaker`](super::CircuitBreaker)'s "Time window" for stale
    /// clocks, saturation and generations.
    ///
    /// Cannot be combined with a count-based [`window`](Self::window) or
    /// with [`consecutive_failures`](Self::consecutive_failures)
    /// ([`ConfigError::TimeWindowConflict`](super::ConfigError::TimeWindowConflict)).
    ///
    /// [`failure_rate`]: Self::failure_rate
    /// [`slow_call`]: Self::slow_call
    /// [`minimum_calls`]: Self::minimum_calls
    /// [`failure_count`]: Self::failure_count
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::breaker::{CircuitBreaker, Config, Outcome, State};
    /// use fusebox::{Duration, Instant};
    ///
    /// // Half of the calls of the last minute failed, out of at least 10.
    /// let config = Config::builder()
    ///     .time_window(Duration::from_secs(60), 4)
    ///     .failure_rate(50)
    ///     .minimum_calls(10)
    ///     .build()?;
    /// let breaker = CircuitBreaker::new(config);
    /// let mut now = Instant::from_secs(1_000);
    /// for i in 0..10 {
    ///     let outcome = if i % 2 == 0 { Outcome::Failure } else { Outcome::Success };
    ///     breaker.try_acquire(now).unwrap().record(outcome, now, Duration::ZERO);
    ///     now = now + Duration::from_secs(1);
    /// }
    /// assert_eq!(breaker.state(now), State::Open);
    /// # Ok::<(), fusebox::breaker::ConfigError>(())
    /// ```
    pub const fn time_window(mut self, total: Duration, buckets: u8) -> Self {
        self.time_window = Some((total, buckets));
        self
    }

    /// Open when the time window holds at least `n` (1..=255) failures: the
    /// seeds' "5 failures in 60 seconds". Needs
    /// [`time_window`](Self::time_window).
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::breaker::{CircuitBreaker, Config, Outcome, State};
    /// use fusebox::{Duration, Instant};
    ///
    /// let config = Config::builder()
    ///     .time_window(Duration::from_secs(60), 4)
    ///     .failure_count(3)
    ///     .build()?;
    /// let breaker = CircuitBreaker::new(config);
    /// let fail = |s: u64| {
    ///     let now = Instant::from_secs(s);
    ///     breaker.try_acquire(now).unwrap().record(Outcome::Failure, now, Duration::ZERO)
    /// };
    /// assert_eq!(fail(0), None);
    /// assert_eq!(fail(10), None);
    /// // 90 s later the first two have expired: a quiet period forgets them.
    /// assert_eq!(fail(100), None);
    /// assert_eq!(fail(101), None);
    /// assert_eq!(fail(102).map(|t| t.to), Some(State::Open));
    /// # Ok::<(), fusebox::breaker::ConfigError>(())
    /// ```
    pub const fn failure_count(mut self, n: u32) -> Self {
        self.failure_count = Some(n);
        self
    }
}

impl Config {
    /// The time window's span (`buckets · interval`) and number of buckets,
    /// if the window is time-based.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::breaker::Config;
    /// use fusebox::Duration;
    ///
    /// let timed = Config::builder()
    ///     .time_window(Duration::from_secs(60), 4)
    ///     .failure_count(5)
    ///     .build()?;
    /// assert_eq!(timed.time_window(), Some((Duration::from_secs(60), 4)));
    /// let counted = Config::builder().failure_rate(50).build()?;
    /// assert_eq!(counted.time_window(), None);
    /// # Ok::<(), fusebox::breaker::ConfigError>(())
    /// ```
    pub const fn time_window(&self) -> Option<(Duration, u8)> {
        if self.time_buckets == 0 {
            None
        } else {
            let span = self.time_interval as u64 * self.time_buckets as u64;
            Some((Duration::from_micros(span), self.time_buckets))
        }
    }
    /// The interval of one time-window bucket, if the window is time-based.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::breaker::Config;
    /// use fusebox::Duration;
    ///
    /// let timed = Config::builder()
    ///     .time_window(Duration::from_secs(60), 4)
    ///     .failure_count(5)
    ///     .build()?;
    /// assert_eq!(timed.time_interval(), Some(Duration::from_secs(15)));
    /// // The interval is ⌊total / buckets⌋ µs, and the span follows from it.
    /// let odd = Config::builder()
    ///     .time_window(Duration::from_micros(10_001), 2)
    ///     .failure_count(5)
    ///     .build()?;
    /// assert_eq!(odd.time_interval(), Some(Duration::from_micros(5_000)));
    /// assert_eq!(odd.time_window(), Some((Duration::from_micros(10_000), 2)));
    /// # Ok::<(), fusebox::breaker::ConfigError>(())
    /// ```
    pub const fn time_interval(&self) -> Option<Duration> {
        if self.time_buckets == 0 {
            None
        } else {
            Some(Duration::from_micros(self.time_interval as u64))
        }
    }
    /// Failures within the time window that open the breaker, if that
    /// policy is on.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::breaker::Config;
    /// use fusebox::Duration;
    ///
    /// let b = Config::builder().time_window(Duration::from_secs(60), 4);
    /// assert_eq!(b.failure_count(5).build()?.failure_count(), Some(5));
    /// assert_eq!(b.failure_rate(50).build()?.failure_count(), None);
    /// # Ok::<(), fusebox::breaker::ConfigError>(())
    /// ```
    pub const fn failure_count(&self) -> Option<u8> {
        if self.failure_count == 0 {
            None
        } else {
            Some(self.failure_count)
        }
    }
}
