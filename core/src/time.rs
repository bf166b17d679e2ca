//! Tick types and the [`Clock`] trait.
//!
//! The core never reads a clock: every time-dependent call takes `now`, an
//! [`Instant`] counted in microseconds from an arbitrary, caller-chosen
//! origin (boot, process start, a test's zero). A `u64` of microseconds
//! lasts 584 942 years, so no realistic clock overflows it; all arithmetic
//! saturates instead of wrapping or panicking anyway.
//!
//! Structures that store time in 32-bit atomic words keep a *wrapped*,
//! coarser copy and document the range that follows (see
//! [`CircuitBreaker`](crate::CircuitBreaker)).

use core::fmt;
use core::ops::{Add, AddAssign, Sub};

/// A point in monotonic time, in microseconds since a caller-chosen origin.
///
/// # Examples
///
/// ```
/// use fusebox::{Duration, Instant};
///
/// let t = Instant::from_millis(1_500);
/// assert_eq!((t + Duration::from_secs(1)).as_micros(), 2_500_000);
/// // Subtraction saturates: an earlier instant minus a later one is zero.
/// assert_eq!(Instant::ZERO - t, Duration::ZERO);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[must_use]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Instant(u64);

/// A span of time, in microseconds.
///
/// # Examples
///
/// ```
/// use fusebox::Duration;
///
/// assert_eq!(Duration::from_millis(3).as_micros(), 3_000);
/// assert_eq!(Duration::MAX.saturating_add(Duration::from_secs(1)), Duration::MAX);
/// let std_like: core::time::Duration = Duration::from_millis(250).into();
/// assert_eq!(std_like.as_millis(), 250);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[must_use]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Duration(u64);

impl Instant {
    /// The origin.
    ///
    /// ```
    /// use fusebox::{Duration, Instant};
    ///
    /// assert_eq!(Instant::ZERO.as_micros(), 0);
    /// assert_eq!(Instant::ZERO + Duration::from_millis(5), Instant::from_millis(5));
    /// assert_eq!(Instant::ZERO.saturating_sub(Duration::from_secs(1)), Instant::ZERO);
    /// ```
    pub const ZERO: Self = Self(0);
    /// The latest representable instant.
    ///
    /// ```
    /// use fusebox::{Duration, Instant};
    ///
    /// assert_eq!(Instant::MAX.as_micros(), u64::MAX);
    /// assert_eq!(Instant::MAX.checked_add(Duration::from_micros(1)), None);
    /// assert_eq!(Instant::MAX.saturating_add(Duration::from_secs(1)), Instant::MAX);
    /// ```
    pub const MAX: Self = Self(u64::MAX);

    /// An instant `micros` microseconds after the origin.
    ///
    /// ```
    /// use fusebox::Instant;
    ///
    /// let t = Instant::from_micros(1_500);
    /// assert_eq!(t.as_micros(), 1_500);
    /// assert_eq!(t.as_millis(), 1);
    /// ```
    pub const fn from_micros(micros: u64) -> Self {
        Self(micros)
    }
    /// An instant `millis` milliseconds after the origin (saturating).
    ///
    /// ```
    /// use fusebox::Instant;
    ///
    /// assert_eq!(Instant::from_millis(2), Instant::from_micros(2_000));
    /// assert_eq!(Instant::from_millis(u64::MAX), Instant::MAX);
    /// ```
    pub const fn from_millis(millis: u64) -> Self {
        Self(millis.saturating_mul(1_000))
    }
    /// An instant `secs` seconds after the origin (saturating).
    ///
    /// ```
    /// use fusebox::Instant;
    ///
    /// assert_eq!(Instant::from_secs(3), Instant::from_millis(3_000));
    /// assert_eq!(Instant::from_secs(u64::MAX), Instant::MAX);
    /// ```
    pub const fn from_secs(secs: u64) -> Self {
        Self(secs.saturating_mul(1_000_000))
    }
    /// Microseconds since the origin.
    ///
    /// ```
    /// use fusebox::Instant;
    ///
    /// assert_eq!(Instant::from_millis(7).as_micros(), 7_000);
    /// ```
    pub const fn as_micros(self) -> u64 {
        self.0
    }
    /// Whole milliseconds since the origin.
    ///
    /// ```
    /// use fusebox::Instant;
    ///
    /// // Rounded down: 2.999 ms reads as 2.
    /// assert_eq!(Instant::from_micros(2_999).as_millis(), 2);
    /// ```
    pub const fn as_millis(self) -> u64 {
        self.0 / 1_000
    }
    /// Time elapsed from `earlier` to `self`, or zero if `earlier` is later.
    ///
    /// ```
    /// use fusebox::{Duration, Instant};
    ///
    /// let (start, end) = (Instant::from_millis(10), Instant::from_millis(25));
    /// assert_eq!(end.saturating_duration_since(start), Duration::from_millis(15));
    /// assert_eq!(start.saturating_duration_since(end), Duration::ZERO);
    /// ```
    pub const fn saturating_duration_since(self, earlier: Self) -> Duration {
        Duration(self.0.saturating_sub(earlier.0))
    }
    /// `self + d`, saturating at [`Instant::MAX`].
    ///
    /// ```
    /// use fusebox::{Duration, Instant};
    ///
    /// let t = Instant::from_secs(1);
    /// assert_eq!(t.saturating_add(Duration::from_millis(500)), Instant::from_millis(1_500));
    /// assert_eq!(t.saturating_add(Duration::MAX), Instant::MAX);
    /// ```
    pub const fn saturating_add(self, d: Duration) -> Self {
        Self(self.0.saturating_add(d.0))
    }
    /// `self - d`, saturating at [`Instant::ZERO`].
    ///
    /// ```
    /// use fusebox::{Duration, Instant};
    ///
    /// let t = Instant::from_secs(1);
    /// assert_eq!(t.saturating_sub(Duration::from_millis(400)), Instant::from_millis(600));
    /// assert_eq!(t.saturating_sub(Duration::from_secs(5)), Instant::ZERO);
    /// ```
    pub const fn saturating_sub(self, d: Duration) -> Self {
        Self(self.0.saturating_sub(d.0))
    }
    /// `self + d`, or `None` on overflow.
    ///
    /// ```
    /// use fusebox::{Duration, Instant};
    ///
    /// let t = Instant::from_secs(1);
    /// assert_eq!(t.checked_add(Duration::from_secs(1)), Some(Instant::from_secs(2)));
    /// assert_eq!(Instant::MAX.checked_add(Duration::from_micros(1)), None);
    /// ```
    pub const fn checked_add(self, d: Duration) -> Option<Self> {
        match self.0.checked_add(d.0) {
            Some(v) => Some(Self(v)),
            None => None,
        }
    }
}

impl Duration {
    /// No time at all.
    ///
    /// ```
    /// use fusebox::Duration;
    ///
    /// assert!(Duration::ZERO.is_zero());
    /// assert_eq!(Duration::ZERO, Duration::default());
    /// assert_eq!(Duration::from_secs(3).saturating_sub(Duration::from_secs(5)), Duration::ZERO);
    /// ```
    pub const ZERO: Self = Self(0);
    /// The longest representable span.
    ///
    /// ```
    /// use fusebox::Duration;
    ///
    /// assert_eq!(Duration::MAX.as_micros(), u64::MAX);
    /// assert_eq!(Duration::MAX.checked_mul(2), None);
    /// assert_eq!(Duration::MAX.saturating_mul(2), Duration::MAX);
    /// ```
    pub const MAX: Self = Self(u64::MAX);

    /// A span of `micros` microseconds.
    ///
    /// ```
    /// use fusebox::Duration;
    ///
    /// let d = Duration::from_micros(2_500);
    /// assert_eq!(d.as_micros(), 2_500);
    /// assert_eq!(d.as_millis(), 2);
    /// ```
    pub const fn from_micros(micros: u64) -> Self {
        Self(micros)
    }
    /// A span of `millis` milliseconds (saturating).
    ///
    /// ```
    /// use fusebox::Duration;
    ///
    /// assert_eq!(Duration::from_millis(2), Duration::from_micros(2_000));
    /// assert_eq!(Duration::from_millis(u64::MAX), Duration::MAX);
    /// ```
    pub const fn from_millis(millis: u64) -> Self {
        Self(millis.saturating_mul(1_000))
    }
    /// A span of `secs` seconds (saturating).
    ///
    /// ```
    /// use fusebox::Duration;
    ///
    /// assert_eq!(Duration::from_secs(30), Duration::from_millis(30_000));
    /// assert_eq!(Duration::from_secs(u64::MAX), Duration::MAX);
    /// ```
    pub const fn from_secs(secs: u64) -> Self {
        Self(secs.saturating_mul(1_000_000))
    }
    /// The span in microseconds.
    ///
    /// ```
    /// use fusebox::Duration;
    ///
    /// assert_eq!(Duration::from_secs(2).as_micros(), 2_000_000);
    /// ```
    pub const fn as_micros(self) -> u64 {
        self.0
    }
    /// The span in whole milliseconds.
    ///
    /// ```
    /// use fusebox::Duration;
    ///
    /// // Rounded down: 1.999 ms reads as 1.
    /// assert_eq!(Duration::from_micros(1_999).as_millis(), 1);
    /// ```
    pub const fn as_millis(self) -> u64 {
        self.0 / 1_000
    }
    /// The span in whole seconds.
    ///
    /// ```
    /// use fusebox::Duration;
    ///
    /// // Rounded down: 2.5 s reads as 2.
    /// assert_eq!(Duration::from_millis(2_500).as_secs(), 2);
    /// ```
    pub const fn as_secs(self) -> u64 {
        self.0 / 1_000_000
    }
    /// Whether the span is zero.
    ///
    /// ```
    /// use fusebox::Duration;
    ///
    /// assert!(Duration::ZERO.is_zero());
    /// assert!(!Duration::from_micros(1).is_zero());
    /// ```
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }
    /// `self + other`, saturating at [`Duration::MAX`].
    ///
    /// ```
    /// use fusebox::Duration;
    ///
    /// let d = Duration::from_millis(750);
    /// assert_eq!(d.saturating_add(Duration::from_millis(250)), Duration::from_secs(1));
    /// assert_eq!(Duration::MAX.saturating_add(d), Duration::MAX);
    /// ```
    pub const fn saturating_add(self, other: Self) -> Self {
        Self(self.0.saturating_add(other.0))
    }
    /// `self - other`, saturating at [`Duration::ZERO`].
    ///
    /// ```
    /// use fusebox::Duration;
    ///
    /// let d = Duration::from_secs(1);
    /// assert_eq!(d.saturating_sub(Duration::from_millis(250)), Duration::from_millis(750));
    /// assert_eq!(d.saturating_sub(Duration::from_secs(2)), Duration::ZERO);
    /// ```
    pub const fn saturating_sub(self, other: Self) -> Self {
        Self(self.0.saturating_sub(other.0))
    }
    /// `self * rhs`, saturating at [`Duration::MAX`].
    ///
    /// ```
    /// use fusebox::Duration;
    ///
    /// let base = Duration::from_millis(100);
    /// assert_eq!(base.saturating_mul(3), Duration::from_millis(300));
    /// assert_eq!(Duration::MAX.saturating_mul(2), Duration::MAX);
    /// ```
    pub const fn saturating_mul(self, rhs: u64) -> Self {
        Self(self.0.saturating_mul(rhs))
    }
    /// `self * rhs`, or `None` if it overflows.
    ///
    /// ```
    /// use fusebox::Duration;
    ///
    /// let backoff = Duration::from_millis(100);
    /// assert_eq!(backoff.checked_mul(8), Some(Duration::from_millis(800)));
    /// assert_eq!(Duration::MAX.checked_mul(2), None);
    /// ```
    pub const fn checked_mul(self, rhs: u64) -> Option<Self> {
        match self.0.checked_mul(rhs) {
            Some(micros) => Some(Self(micros)),
            None => None,
        }
    }
    /// `self / rhs` in whole microseconds (rounded down), or `None` if
    /// `rhs` is zero.
    ///
    /// ```
    /// use fusebox::Duration;
    ///
    /// let window = Duration::from_secs(60);
    /// assert_eq!(window.checked_div(4), Some(Duration::from_secs(15)));
    /// assert_eq!(window.checked_div(0), None);
    /// ```
    pub const fn checked_div(self, rhs: u64) -> Option<Self> {
        match self.0.checked_div(rhs) {
            Some(micros) => Some(Self(micros)),
            None => None,
        }
    }
    /// How many whole `unit`s fit in `self`, or `None` if `unit` is zero.
    ///
    /// ```
    /// use fusebox::Duration;
    ///
    /// let elapsed = Duration::from_millis(2_500);
    /// assert_eq!(elapsed.div_duration(Duration::from_secs(1)), Some(2));
    /// ```
    pub const fn div_duration(self, unit: Self) -> Option<u64> {
        self.0.checked_div(unit.0)
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    /// Saturating addition.
    fn add(self, rhs: Duration) -> Instant {
        self.saturating_add(rhs)
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, rhs: Duration) {
        *self = *self + rhs;
    }
}

impl Sub<Duration> for Instant {
    type Output = Instant;
    /// Saturating subtraction.
    fn sub(self, rhs: Duration) -> Instant {
        self.saturating_sub(rhs)
    }
}

impl Sub for Instant {
    type Output = Duration;
    /// Saturating: zero when `rhs` is later than `self`.
    fn sub(self, rhs: Instant) -> Duration {
        self.saturating_duration_since(rhs)
    }
}

impl Add for Duration {
    type Output = Duration;
    /// Saturating addition.
    fn add(self, rhs: Duration) -> Duration {
        self.saturating_add(rhs)
    }
}

impl Sub for Duration {
    type Output = Duration;
    /// Saturating subtraction.
    fn sub(self, rhs: Duration) -> Duration {
        self.saturating_sub(rhs)
    }
}

impl From<core::time::Duration> for Duration {
    /// Truncates below one microsecond and saturates above `u64::MAX` µs.
    fn from(d: core::time::Duration) -> Self {
        Self(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }
}

impl From<Duration> for core::time::Duration {
    fn from(d: Duration) -> Self {
        core::time::Duration::from_micros(d.0)
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Instant({}µs)", self.0)
    }
}

impl fmt::Debug for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&core::time::Duration::from(*self), f)
    }
}

/// A source of monotonic [`Instant`]s.
///
/// The core's algorithms never call it; adapters do, and pass the result in.
///
/// # Examples
///
/// ```
/// use core::cell::Cell;
/// use fusebox::{Clock, Duration, Instant};
///
/// /// A virtual clock for tests.
/// struct Manual(Cell<Instant>);
/// impl Clock for Manual {
///     fn now(&self) -> Instant { self.0.get() }
/// }
///
/// let clock = Manual(Cell::new(Instant::ZERO));
/// clock.0.set(clock.now() + Duration::from_secs(5));
/// assert_eq!(clock.now().as_millis(), 5_000);
/// ```
pub trait Clock {
    /// The current time. Must never go backwards.
    ///
    /// ```
    /// use fusebox::{Clock, Instant};
    ///
    /// struct Fixed(Instant);
    /// impl Clock for Fixed {
    ///     fn now(&self) -> Instant { self.0 }
    /// }
    ///
    /// let clock = Fixed(Instant::from_secs(7));
    /// assert_eq!(clock.now(), Instant::from_secs(7));
    /// // A reference to a clock is a clock too.
    /// assert_eq!((&clock).now(), clock.now());
    /// ```
    fn now(&self) -> Instant;
}

impl<C: Clock + ?Sized> Clock for &C {
    fn now(&self) -> Instant {
        (**self).now()
    }
}

#[cfg(feature = "std")]
mod std_clock;
#[cfg(feature = "std")]
pub use std_clock::StdClock;

/// A [`Clock`] reading [`embassy_time::Instant::now`].
///
/// Requires the `embassy-time` feature and, in the final firmware, an
/// embassy-time driver.
///
/// ```
/// use fusebox::{Clock, EmbassyClock, Instant};
///
/// // The driver (hidden here) reads one second of ticks, at any `tick-hz-*`.
/// assert_eq!(EmbassyClock.now(), Instant::from_secs(1));
/// # #[no_mangle]
/// # fn _embassy_time_now() -> u64 { embassy_time::TICK_HZ }
/// # #[no_mangle]
/// # fn _embassy_time_schedule_wake(_at: u64, _waker: &core::task::Waker) {}
/// ```
#[cfg(feature = "embassy-time")]
#[derive(Clone, Copy, Debug, Default)]
pub struct EmbassyClock;

#[cfg(feature = "embassy-time")]
impl Clock for EmbassyClock {
    /// The driver's ticks in whole microseconds (rounded down), at any
    /// `tick-hz-*` rate and any uptime, saturating at [`Instant::MAX`].
    fn now(&self) -> Instant {
        let ticks = embassy_time::Instant::now().as_ticks();
        Instant(ticks_to_micros(ticks, embassy_time::TICK_HZ))
    }
}

/// `ticks` of a `hz` clock in whole microseconds, rounded down, saturating
/// at `u64::MAX`: never wrapping, so never going backwards.
///
/// Not embassy-time's `Instant::as_micros`, which multiplies the ticks
/// first and so overflows (panicking with overflow checks, wrapping back
/// towards zero without) once `ticks · 10⁶ / gcd(hz, 10⁶)` leaves a `u64`:
/// after 2.2 years of uptime at `tick-hz-16_777_216`, 35.7 years at
/// `tick-hz-1_048_576`, 1 142 years at `tick-hz-32_768`.
#[cfg_attr(not(feature = "embassy-time"), allow(dead_code))]
const fn ticks_to_micros(ticks: u64, hz: u64) -> u64 {
    const MICROS: u64 = 1_000_000;
    if hz % MICROS == 0 {
        // 1 MHz and its multiples: a division, which cannot overflow.
        return ticks / (hz / MICROS);
    }
    let whole = (ticks / hz).saturating_mul(MICROS);
    // `rem < hz`, and `hz · 10⁶` fits a u64 (checked below).
    let part = ticks % hz * MICROS / hz;
    whole.saturating_add(part)
}

// Every rate embassy-time offers (up to 5.24 GHz) fits the remainder's
// product in `ticks_to_micros`.
#[cfg(feature = "embassy-time")]
const _: () = assert!(embassy_time::TICK_HZ != 0 && embassy_time::TICK_HZ <= u64::MAX / 1_000_000);

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        assert_eq!(Instant::MAX + Duration::from_secs(1), Instant::MAX);
        assert_eq!(Instant::ZERO - Duration::from_secs(1), Instant::ZERO);
        assert_eq!(
            Instant::from_secs(1) - Instant::from_secs(2),
            Duration::ZERO
        );
        assert_eq!(Duration::MAX + Duration::from_micros(1), Duration::MAX);
        assert_eq!(Duration::from_secs(u64::MAX), Duration::MAX);
        assert_eq!(Instant::from_millis(u64::MAX), Instant::MAX);
        assert_eq!(Instant::MAX.checked_add(Duration::from_micros(1)), None);
    }

    /// The driver's ticks in µs at embassy-time's tick rates (1 Hz to
    /// 5.24 GHz, the powers of two included) against the exact quotient,
    /// at every uptime a `u64` of ticks reaches.
    #[test]
    fn ticks_convert_exactly_and_saturate() {
        for hz in [
            1u64,
            10,
            32_768,
            1_000_000,
            1_048_576,
            10_240_000,
            16_777_216,
            80_000_000,
            5_242_880_000,
        ] {
            let mut previous = 0;
            let mut ticks = [
                0,
                1,
                hz - 1,
                hz,
                hz + 1,
                1 << 32,
                3 * 365 * 86_400 * hz,
                u64::MAX / 15_625,
                u64::MAX / 15_625 + 1,
                u64::MAX / 2,
                u64::MAX - 1,
                u64::MAX,
            ];
            ticks.sort_unstable();
            for t in ticks {
                let exact = u128::from(t) * 1_000_000 / u128::from(hz);
                let expected = u64::try_from(exact).unwrap_or(u64::MAX);
                let got = ticks_to_micros(t, hz);
                assert_eq!(got, expected, "{t} ticks at {hz} Hz");
                assert!(got >= previous, "{t} ticks at {hz} Hz went back");
                previous = got;
            }
        }
    }

    // Native runs only: thousands of cases, and proptest's failure file
    // needs `getcwd`, which Miri's isolation refuses.
    #[cfg(not(miri))]
    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 4_096,
            ..proptest::prelude::ProptestConfig::default()
        })]

        /// Sound-but-checked (review of time): at any rate up to the
        /// largest the remainder's product allows (rates that do not
        /// divide 1 MHz included) and any tick count, the conversion is
        /// the exact quotient rounded down, saturating, and never goes
        /// back from one tick to the next.
        #[test]
        fn ticks_convert_exactly_at_any_rate(
            hz in proptest::prop_oneof![
                1u64..=u64::MAX / 1_000_000,
                1u64..100_000,
                proptest::strategy::Just(32_768u64),
                proptest::strategy::Just(1_000_000_000u64),
            ],
            ticks in proptest::prop_oneof![
                proptest::prelude::any::<u64>(),
                0u64..1 << 40,
                proptest::strategy::Strategy::prop_map(0u64..1 << 32, |k| u64::MAX - k),
            ],
        ) {
            use proptest::prelude::prop_assert_eq;
            let exact = u128::from(ticks) * 1_000_000 / u128::from(hz);
            let expected = u64::try_from(exact).unwrap_or(u64::MAX);
            prop_assert_eq!(ticks_to_micros(ticks, hz), expected);
            if let Some(next) = ticks.checked_add(1) {
                proptest::prop_assert!(ticks_to_micros(next, hz) >= expected);
            }
        }

        /// Sound-but-checked: every operator saturates to the exact value
        /// clamped to `0..=u64::MAX`, and the checked forms are `None`
        /// exactly where that clamps.
        #[test]
        fn arithmetic_is_the_exact_value_clamped(a: u64, b: u64, k: u64) {
            use proptest::prelude::prop_assert_eq;
            let clamp = |v: i128| u64::try_from(v.clamp(0, i128::from(u64::MAX))).unwrap();
            let (wa, wb) = (i128::from(a), i128::from(b));
            let (t, d, e) = (Instant(a), Duration(b), Duration(a));
            prop_assert_eq!((t + d).0, clamp(wa + wb));
            prop_assert_eq!((t - d).0, clamp(wa - wb));
            prop_assert_eq!((t - Instant(b)).0, clamp(wa - wb));
            prop_assert_eq!((e + d).0, clamp(wa + wb));
            prop_assert_eq!((e - d).0, clamp(wa - wb));
            let product = u128::from(a) * u128::from(k);
            prop_assert_eq!(e.saturating_mul(k).0, u64::try_from(product).unwrap_or(u64::MAX));
            prop_assert_eq!(t.checked_add(d).map(|t| t.0), a.checked_add(b));
            prop_assert_eq!(e.checked_mul(k).map(|d| d.0), a.checked_mul(k));
            prop_assert_eq!(Instant::from_millis(a).0, clamp(wa * 1_000));
            prop_assert_eq!(Duration::from_secs(a).0, clamp(wa * 1_000_000));
            let std_like = core::time::Duration::from(d);
            prop_assert_eq!(Duration::from(std_like), d);
        }
    }

    #[test]
    fn unit_conversions() {
        assert_eq!(Duration::from_secs(2).as_millis(), 2_000);
        assert_eq!(Duration::from_millis(2_500).as_secs(), 2);
        assert_eq!(Instant::from_secs(3).as_micros(), 3_000_000);
        let d: Duration = core::time::Duration::from_nanos(1_999).into();
        assert_eq!(d, Duration::from_micros(1));
        let huge: Duration = core::time::Duration::from_secs(u64::MAX).into();
        assert_eq!(huge, Duration::MAX);
    }
}
