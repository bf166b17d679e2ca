//! [`StdClock`]: `now` from `std::time::Instant` (feature `std`).

use std::sync::OnceLock;

use super::{Clock, Instant};

/// A [`Clock`] reading [`std::time::Instant`]: monotonic, in microseconds
/// since one origin per process (the first time any `StdClock` is read), so
/// the instants of every `StdClock` in a process are comparable.
///
/// Requires the `std` feature.
///
/// # Examples
///
/// ```
/// use fusebox::{Clock, Duration, StdClock};
///
/// let clock = StdClock;
/// let a = clock.now();
/// std::thread::sleep(std::time::Duration::from_millis(2));
/// let b = StdClock.now();
/// assert!(b - a >= Duration::from_millis(2));
/// // The process origin itself reads as `Instant::ZERO`.
/// assert_eq!(StdClock::from_std(StdClock::origin()), fusebox::Instant::ZERO);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StdClock;

static ORIGIN: OnceLock<std::time::Instant> = OnceLock::new();

impl StdClock {
    /// The process's origin: the `std::time::Instant` that reads as
    /// [`Instant::ZERO`].
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::{Instant, StdClock};
    ///
    /// // The first read fixes the origin; later reads return the same instant.
    /// let origin = StdClock::origin();
    /// assert_eq!(StdClock::origin(), origin);
    /// assert_eq!(StdClock::from_std(origin), Instant::ZERO);
    /// ```
    pub fn origin() -> std::time::Instant {
        *ORIGIN.get_or_init(std::time::Instant::now)
    }

    /// `at` on this clock's scale (saturating: a `std` instant before the
    /// origin reads as [`Instant::ZERO`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::{Duration, Instant, StdClock};
    ///
    /// let origin = StdClock::origin();
    /// let later = origin + std::time::Duration::from_millis(1_500);
    /// assert_eq!(StdClock::from_std(later), Instant::ZERO + Duration::from_millis(1_500));
    /// // Before the origin saturates to zero.
    /// if let Some(earlier) = origin.checked_sub(std::time::Duration::from_secs(1)) {
    ///     assert_eq!(StdClock::from_std(earlier), Instant::ZERO);
    /// }
    /// ```
    pub fn from_std(at: std::time::Instant) -> Instant {
        let micros = at.saturating_duration_since(Self::origin()).as_micros();
        Instant::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
    }
}

impl Clock for StdClock {
    fn now(&self) -> Instant {
        Self::from_std(std::time::Instant::now())
    }
}
