//! [`Metrics`]: the breaker's statistics counters, and reading them.

use super::CircuitBreaker;
use crate::sync::Counter;

/// Counters since creation (or the last [`CircuitBreaker::reset`](super::CircuitBreaker::reset)).
///
/// Read with `Relaxed` loads: each field is exact, the fields together are
/// not one atomic snapshot.
///
/// Each counter is one atomic word, incremented without a lock: it wraps at
/// 2⁶⁴ where the target has 64-bit atomics, and at 2³² on 32-bit
/// microcontrollers (Cortex-M; after about 50 days at 1 000 calls a
/// second), although the fields are `u64`. There
/// [`restore`](super::CircuitBreaker::restore) keeps a snapshot's counters
/// modulo 2³² (a server's 5 000 000 000 successes read 705 032 704).
///
/// # Examples
///
/// ```
/// use fusebox::breaker::{CircuitBreaker, Config, Metrics, Outcome};
/// use fusebox::{Duration, Instant};
///
/// let breaker = CircuitBreaker::new(Config::builder().consecutive_failures(3).build()?);
/// let now = Instant::from_secs(1);
/// breaker.try_acquire(now).expect("closed").record(Outcome::Ignored, now, Duration::ZERO);
/// assert_eq!(breaker.metrics(), Metrics { ignored: 1, ..Metrics::default() });
/// # Ok::<(), fusebox::breaker::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Metrics {
    /// Calls recorded as [`Outcome::Success`](super::Outcome::Success).
    pub successes: u64,
    /// Calls recorded as [`Outcome::Failure`](super::Outcome::Failure).
    pub failures: u64,
    /// Recorded calls (of either outcome) at or above the slow threshold.
    pub slow_calls: u64,
    /// Calls rejected by [`CircuitBreaker::try_acquire`](super::CircuitBreaker::try_acquire).
    pub rejected: u64,
    /// Times this breaker opened itself from closed or half-open: a trip,
    /// a failed (or timed-out) half-open period,
    /// [`trip`](super::CircuitBreaker::trip). Not an opening forced by
    /// [`force_open`](super::CircuitBreaker::force_open), nor one applied
    /// from another instance's [`Decision`](super::Decision) by
    /// [`merge`](super::CircuitBreaker::merge) (that opening is the other
    /// instance's trip; a fleet publishes only its instances' own).
    pub trips: u64,
    /// Permits dropped without a recorded outcome.
    pub abandoned: u64,
    /// Calls recorded as [`Outcome::Ignored`](super::Outcome::Ignored).
    #[cfg_attr(feature = "serde", serde(default))]
    pub ignored: u64,
}

impl Metrics {
    /// Permitted calls that have finished: successes, failures, ignored
    /// calls and abandoned permits.
    ///
    /// Saturates at `u64::MAX` (a restored snapshot may hold any values).
    ///
    /// ```
    /// use fusebox::breaker::Metrics;
    ///
    /// let m = Metrics {
    ///     successes: 5,
    ///     failures: 2,
    ///     ignored: 1,
    ///     abandoned: 1,
    ///     rejected: 9,
    ///     ..Metrics::default()
    /// };
    /// assert_eq!(m.calls(), 9, "rejected calls were never permitted");
    /// let huge = Metrics { successes: u64::MAX, failures: 1, ..Metrics::default() };
    /// assert_eq!(huge.calls(), u64::MAX);
    /// ```
    pub const fn calls(&self) -> u64 {
        self.successes
            .saturating_add(self.failures)
            .saturating_add(self.ignored)
            .saturating_add(self.abandoned)
    }
}

#[derive(Debug)]
pub(super) struct Counters {
    pub(super) successes: Counter,
    pub(super) failures: Counter,
    pub(super) slow_calls: Counter,
    pub(super) rejected: Counter,
    pub(super) trips: Counter,
    pub(super) abandoned: Counter,
    pub(super) ignored: Counter,
}

impl CircuitBreaker {
    /// The counters.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::breaker::{CircuitBreaker, Config, Outcome};
    /// use fusebox::{Duration, Instant};
    ///
    /// let breaker = CircuitBreaker::new(Config::builder().consecutive_failures(1).build()?);
    /// let now = Instant::from_secs(1);
    /// breaker.try_acquire(now).expect("closed").record(Outcome::Success, now, Duration::ZERO);
    /// breaker.try_acquire(now).expect("closed").record(Outcome::Failure, now, Duration::ZERO);
    /// assert!(breaker.try_acquire(now).is_err()); // open
    /// let m = breaker.metrics();
    /// assert_eq!((m.successes, m.failures, m.trips, m.rejected), (1, 1, 1, 1));
    /// # Ok::<(), fusebox::breaker::ConfigError>(())
    /// ```
    pub fn metrics(&self) -> Metrics {
        let c = &self.counters;
        Metrics {
            successes: c.successes.get(),
            failures: c.failures.get(),
            slow_calls: c.slow_calls.get(),
            rejected: c.rejected.get(),
            trips: c.trips.get(),
            abandoned: c.abandoned.get(),
            ignored: c.ignored.get(),
        }
    }
}
