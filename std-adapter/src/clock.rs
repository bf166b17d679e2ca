//! [`TokioClock`]: the core's [`Clock`] on [`tokio::time::Instant`].

use fusebox::{Clock, Instant};

/// A [`Clock`] reading [`tokio::time::Instant::now`], in microseconds since
/// the clock's origin.
///
/// Because it reads tokio's clock, a runtime with paused time
/// (`#[tokio::test(start_paused = true)]`, `tokio::time::pause` (feature `test-util`)) drives
/// every core structure this adapter wraps on virtual time: tests never
/// sleep for real and can assert exact instants.
///
/// # Origin
///
/// The origin is per clock: [`TokioClock::new`] takes tokio's `now` as
/// [`Instant::ZERO`]. A core structure must be read through one origin
/// for its whole life: every adapter built over an `Arc`'d core without a
/// clock of its own (a policy's `new`, a tower layer, the registry's) reads
/// the clock the first such adapter over that core took, for as long as
/// the core lives; an adapter given a clock (`with_clock`) reads that one,
/// so give the same one to all of them. There is no
/// process-wide origin on purpose: tokio's paused clock is per runtime, and
/// one origin taken in one test runtime could lie after another runtime's
/// virtual now, which would read as [`Instant::ZERO`] forever.
///
/// # Examples
///
/// ```
/// use fusebox::{Clock, Duration};
/// use fusebox_std::TokioClock;
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// let clock = TokioClock::new();
/// tokio::time::sleep(std::time::Duration::from_millis(250)).await; // virtual time
/// assert_eq!(clock.now() - fusebox::Instant::ZERO, Duration::from_millis(250));
/// assert_eq!(clock.to_tokio(clock.now()), tokio::time::Instant::now());
/// # });
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokioClock {
    origin: tokio::time::Instant,
}

impl TokioClock {
    /// A clock whose origin is tokio's now (the runtime's virtual now when
    /// time is paused).
    ///
    /// ```
    /// use fusebox::{Clock, Instant};
    /// use fusebox_std::TokioClock;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// let clock = TokioClock::new();
    /// assert_eq!(clock.now(), Instant::ZERO);
    /// # });
    /// ```
    pub fn new() -> Self {
        Self::with_origin(tokio::time::Instant::now())
    }

    /// A clock reading `origin` as [`Instant::ZERO`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use fusebox::{Clock, Instant};
    /// use fusebox_std::TokioClock;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// let boot = tokio::time::Instant::now();
    /// tokio::time::sleep(Duration::from_secs(2)).await;
    /// let clock = TokioClock::with_origin(boot);
    /// assert_eq!(clock.now(), Instant::from_secs(2));
    /// # });
    /// ```
    pub const fn with_origin(origin: tokio::time::Instant) -> Self {
        Self { origin }
    }

    /// The tokio instant that reads as [`Instant::ZERO`].
    ///
    /// ```
    /// use fusebox_std::TokioClock;
    ///
    /// let start = tokio::time::Instant::now();
    /// assert_eq!(TokioClock::with_origin(start).origin(), start);
    /// ```
    pub const fn origin(&self) -> tokio::time::Instant {
        self.origin
    }

    /// `at` on this clock's scale: truncated to the microsecond; an `at`
    /// before the origin reads as [`Instant::ZERO`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use fusebox::Instant;
    /// use fusebox_std::TokioClock;
    ///
    /// let origin = tokio::time::Instant::now();
    /// let clock = TokioClock::with_origin(origin);
    /// assert_eq!(clock.to_core(origin + Duration::from_nanos(1_999)), Instant::from_micros(1));
    /// assert_eq!(clock.to_core(origin - Duration::from_secs(1)), Instant::ZERO);
    /// ```
    pub fn to_core(&self, at: tokio::time::Instant) -> Instant {
        let micros = at.saturating_duration_since(self.origin).as_micros();
        Instant::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
    }

    /// The tokio instant of `at` (saturating at the far future tokio can
    /// represent).
    ///
    /// ```
    /// use std::time::Duration;
    /// use fusebox::Instant;
    /// use fusebox_std::TokioClock;
    ///
    /// let origin = tokio::time::Instant::now();
    /// let clock = TokioClock::with_origin(origin);
    /// assert_eq!(clock.to_tokio(Instant::from_millis(5)), origin + Duration::from_millis(5));
    /// ```
    pub fn to_tokio(&self, at: Instant) -> tokio::time::Instant {
        let since = std::time::Duration::from(at - Instant::ZERO);
        self.origin
            .checked_add(since)
            .unwrap_or_else(|| far_future(self.origin))
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Instant {
        self.to_core(tokio::time::Instant::now())
    }
}

/// tokio's timer resolution: a sleep ends on the first millisecond tick at
/// or after its instant, so up to this much after it (also on paused
/// time).
pub(crate) const TIMER_TICK: std::time::Duration = std::time::Duration::from_millis(1);

/// Whether a sleep until `wake` ends before `deadline` whatever tokio's
/// rounding to its tick ([`TIMER_TICK`]): a wait that would end within the
/// last tick before a deadline is given up, never overrun.
pub(crate) fn ends_before(wake: tokio::time::Instant, deadline: tokio::time::Instant) -> bool {
    wake.checked_add(TIMER_TICK)
        .is_some_and(|end| end <= deadline)
}

/// The longest span this crate adds to an instant: about 30 years, as
/// tokio's own `sleep` clamps (longer spans overflow the instant on some
/// platforms: 100 years on FreeBSD, 1000 on macOS).
pub(crate) const FAR: std::time::Duration = std::time::Duration::from_secs(86_400 * 365 * 30);

/// An instant about 30 years after `from` (tokio's own "far future").
pub(crate) fn far_future(from: tokio::time::Instant) -> tokio::time::Instant {
    from + FAR
}

/// `from + d`, with `d` clamped to [`FAR`]: a wait or deadline longer than
/// ~30 years (`Duration::MAX`, `u64::MAX` seconds) means "never" and is
/// the far future, never a panic on overflow. Every instant built from
/// a caller's duration (a builder, a config, a server's Retry-After)
/// goes through here.
pub(crate) fn saturating_add(
    from: tokio::time::Instant,
    d: std::time::Duration,
) -> tokio::time::Instant {
    from + d.min(FAR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn virtual_time_round_trips() {
        let clock = TokioClock::new();
        assert_eq!(clock.now(), Instant::ZERO);
        tokio::time::advance(std::time::Duration::from_micros(1_500)).await;
        assert_eq!(clock.now(), Instant::from_micros(1_500));
        let later = Instant::from_secs(3);
        assert_eq!(
            clock.to_tokio(later) - clock.origin(),
            std::time::Duration::from_secs(3)
        );
        assert_eq!(clock.to_core(clock.to_tokio(later)), later);
    }

    #[tokio::test(start_paused = true)]
    async fn before_origin_is_zero_and_far_future_saturates() {
        let start = tokio::time::Instant::now();
        let clock = TokioClock::with_origin(start + std::time::Duration::from_secs(1));
        assert_eq!(clock.now(), Instant::ZERO);
        assert!(clock.to_tokio(Instant::MAX) > start);
    }

    /// Sound-but-checked (review of time): over instants from the origin
    /// to decades after it, at every sub-microsecond offset pattern, a
    /// reading is truncated (the tokio instant of `to_core(r)` is at most
    /// `r` and less than 1 µs before it), readings never go back, and a
    /// core instant survives the round trip: a wait ending at
    /// `to_tokio(now + wait)` reads `now + wait` (never early).
    #[test]
    fn readings_truncate_and_round_trip() {
        let origin = tokio::time::Instant::now();
        let clock = TokioClock::with_origin(origin);
        let mut previous = Instant::ZERO;
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut at_ns: u128 = 0;
        for i in 0..20_000u64 {
            // Mostly sub-3 µs steps, every 100th a jump of up to ~208 days.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let step = if i % 100 == 0 { x >> 10 } else { x % 3_000 };
            at_ns += u128::from(step);
            let since = std::time::Duration::from_nanos(u64::try_from(at_ns).unwrap());
            let real = origin + since;
            let now = clock.to_core(real);
            assert!(now >= previous, "went back at {since:?}");
            previous = now;
            let back = clock.to_tokio(now);
            assert!(back <= real && real - back < std::time::Duration::from_micros(1));
            assert_eq!(clock.to_core(back), now);
            let wait = fusebox::Duration::from_micros(x % 10_000_000);
            assert_eq!(clock.to_core(clock.to_tokio(now + wait)), now + wait);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_span_past_thirty_years_is_the_far_future() {
        let now = tokio::time::Instant::now();
        let d = std::time::Duration::from_millis(5);
        assert_eq!(saturating_add(now, d), now + d);
        for huge in [
            FAR + std::time::Duration::from_secs(1),
            std::time::Duration::from_secs(u64::MAX),
            std::time::Duration::MAX,
        ] {
            assert_eq!(saturating_add(now, huge), far_future(now));
        }
    }
}
