//! [`Quota`]: a rate and a burst, validated and pre-computed.

use core::fmt;

use super::gcra::{Params, MAX_SCALE};
use super::tagged;
use crate::sync::TAT_BITS;
use crate::Duration;

/// The shortest emission interval, in scaled units, of a quota given a
/// coarser scale on 32 bits: its rounding up is then under 1/64 of the
/// interval (1.6 % fewer tokens at worst).
const MIN_COARSE_INTERVAL: u64 = 64;

/// How many tokens a bucket refills per period, and how many it holds.
///
/// Every constructor validates; the derived GCRA parameters are computed
/// once, here. All are `const fn`, so a quota can be checked at compile
/// time.
///
/// # Examples
///
/// ```
/// use fusebox::bucket::Quota;
/// use fusebox::Duration;
///
/// let api = Quota::per_second(100)?.with_burst(20)?;
/// assert_eq!((api.tokens(), api.period(), api.burst()), (100, Duration::from_secs(1), 20));
/// assert_eq!(api.replenish_interval(), Duration::from_millis(10));
///
/// // One token every 36 s, bursts of one (governor's `Quota::with_period`).
/// let slow = Quota::with_period(Duration::from_secs(36))?;
/// assert_eq!(slow.burst(), 1);
/// # Ok::<(), fusebox::bucket::QuotaError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Quota {
    tokens: u32,
    period: Duration,
    burst: u32,
    params: Params,
}

/// Why a [`Quota`] was refused.
///
/// # Examples
///
/// ```
/// use fusebox::bucket::{Quota, QuotaError};
/// use fusebox::Duration;
///
/// assert_eq!(Quota::per_second(0), Err(QuotaError::ZeroTokens));
/// assert_eq!(Quota::new(10, Duration::ZERO), Err(QuotaError::ZeroPeriod));
/// assert_eq!(Quota::per_second(10)?.with_burst(0), Err(QuotaError::ZeroBurst));
/// assert_eq!(Quota::with_period(Duration::MAX), Err(QuotaError::TooLong));
/// # Ok::<(), fusebox::bucket::QuotaError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum QuotaError {
    /// Zero tokens per period: nothing could ever be admitted.
    ZeroTokens,
    /// A period of zero (or under one microsecond, the tick).
    ZeroPeriod,
    /// A burst of zero: not even one token fits.
    ZeroBurst,
    /// `burst × period / tokens` is too long for this target's state word
    /// (the crate docs list the range per target).
    TooLong,
}

impl fmt::Display for QuotaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ZeroTokens => "quota must refill at least one token per period",
            Self::ZeroPeriod => "quota period must be at least one microsecond",
            Self::ZeroBurst => "quota burst must be at least one token",
            Self::TooLong => "burst × period / tokens is out of range for this target",
        })
    }
}

impl core::error::Error for QuotaError {}

impl Quota {
    /// `tokens` per `period`, with a burst of `tokens`.
    ///
    /// # Errors
    ///
    /// [`QuotaError`] for zero tokens, a zero period, or an unrepresentable
    /// range. The range is that of the burst of `tokens`: a slow rate whose
    /// own burst spans too long for the target (on Cortex-M a burst span
    /// `burst × period / tokens` of 2³⁰ − 2²⁰ µs, 17 min 52.69 s, or more:
    /// here `period` itself, so any [`per_hour`](Self::per_hour)) may still
    /// fit with a smaller burst, which
    /// [`new_with_burst`](Self::new_with_burst) builds directly.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::bucket::{Quota, QuotaError};
    /// use fusebox::Duration;
    ///
    /// let q = Quota::new(10, Duration::from_secs(2))?;
    /// assert_eq!((q.tokens(), q.period(), q.burst()), (10, Duration::from_secs(2), 10));
    /// assert_eq!(Quota::new(0, Duration::from_secs(2)), Err(QuotaError::ZeroTokens));
    /// # Ok::<(), fusebox::bucket::QuotaError>(())
    /// ```
    pub const fn new(tokens: u32, period: Duration) -> Result<Self, QuotaError> {
        Self::build(tokens, period, tokens)
    }

    /// `tokens` per `period`, with a burst of `burst`: the value of
    /// `Quota::new(tokens, period)?.with_burst(burst)?`, also where the
    /// rate's own burst of `tokens` would not fit the target but `burst`
    /// does (on Cortex-M, 100 an hour with a burst of 5: the hour-long
    /// span of a burst of 100 is refused, the 3 minutes of 5 are not).
    ///
    /// # Errors
    ///
    /// [`QuotaError`] for zero tokens, a zero period, a zero burst, or an
    /// unrepresentable range (`burst × period / tokens` too long for this
    /// target).
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::bucket::Quota;
    /// use fusebox::Duration;
    ///
    /// let q = Quota::new_with_burst(100, Duration::from_secs(3_600), 5)?;
    /// assert_eq!((q.tokens(), q.burst()), (100, 5));
    /// assert_eq!(q.replenish_interval(), Duration::from_secs(36));
    /// # Ok::<(), fusebox::bucket::QuotaError>(())
    /// ```
    pub const fn new_with_burst(
        tokens: u32,
        period: Duration,
        burst: u32,
    ) -> Result<Self, QuotaError> {
        Self::build(tokens, period, burst)
    }
    /// `tokens` per second, burst `tokens`.
    ///
    /// # Errors
    ///
    /// As [`Quota::new`].
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::bucket::Quota;
    /// use fusebox::Duration;
    ///
    /// let q = Quota::per_second(4)?;
    /// assert_eq!(q, Quota::new(4, Duration::from_secs(1))?);
    /// assert_eq!(q.replenish_interval(), Duration::from_millis(250));
    /// # Ok::<(), fusebox::bucket::QuotaError>(())
    /// ```
    pub const fn per_second(tokens: u32) -> Result<Self, QuotaError> {
        Self::new(tokens, Duration::from_secs(1))
    }
    /// `tokens` per minute, burst `tokens`.
    ///
    /// # Errors
    ///
    /// As [`Quota::new`].
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::bucket::Quota;
    /// use fusebox::Duration;
    ///
    /// let q = Quota::per_minute(30)?;
    /// assert_eq!((q.period(), q.burst()), (Duration::from_secs(60), 30));
    /// assert_eq!(q.replenish_interval(), Duration::from_secs(2));
    /// # Ok::<(), fusebox::bucket::QuotaError>(())
    /// ```
    pub const fn per_minute(tokens: u32) -> Result<Self, QuotaError> {
        Self::new(tokens, Duration::from_secs(60))
    }
    /// `tokens` per hour, burst `tokens`.
    ///
    /// # Errors
    ///
    /// As [`Quota::new`]. On Cortex-M (32-bit words) always
    /// [`QuotaError::TooLong`], whatever `tokens`: the burst spans the whole
    /// hour, over the 17 min 52 s a bucket word holds there. Use
    /// [`new_with_burst`](Self::new_with_burst) with a burst spanning less
    /// (100 an hour with a burst of 5 spans 3 minutes).
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::bucket::{Quota, QuotaError};
    /// use fusebox::Duration;
    ///
    /// # #[cfg(not(fusebox_narrow_words))]
    /// #[cfg(target_has_atomic = "64")]
    /// {
    ///     let q = Quota::per_hour(60)?;
    ///     assert_eq!(q.period(), Duration::from_secs(3_600));
    ///     assert_eq!(q.replenish_interval(), Duration::from_secs(60));
    /// }
    /// // Cortex-M: the burst of 60 spans the hour; 60 an hour with a burst of 10 fits.
    /// #[cfg(not(target_has_atomic = "64"))]
    /// {
    ///     assert_eq!(Quota::per_hour(60), Err(QuotaError::TooLong));
    ///     let q = Quota::new_with_burst(60, Duration::from_secs(3_600), 10)?;
    ///     assert_eq!(q.replenish_interval(), Duration::from_secs(60));
    /// }
    /// # #[cfg(fusebox_narrow_words)]
    /// # {
    /// #     assert_eq!(Quota::per_hour(60), Err(QuotaError::TooLong));
    /// #     let q = Quota::new_with_burst(60, Duration::from_secs(3_600), 10)?;
    /// #     assert_eq!(q.replenish_interval(), Duration::from_secs(60));
    /// # }
    /// # Ok::<(), fusebox::bucket::QuotaError>(())
    /// ```
    pub const fn per_hour(tokens: u32) -> Result<Self, QuotaError> {
        Self::new(tokens, Duration::from_secs(3_600))
    }
    /// One token every `period`, burst 1.
    ///
    /// # Errors
    ///
    /// As [`Quota::new`]: on Cortex-M a `period` of 17 min 52.69 s
    /// (2³⁰ − 2²⁰ µs) or more is [`QuotaError::TooLong`].
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::bucket::Quota;
    /// use fusebox::Duration;
    ///
    /// let q = Quota::with_period(Duration::from_millis(200))?;
    /// assert_eq!((q.tokens(), q.burst()), (1, 1));
    /// assert_eq!(q.replenish_interval(), Duration::from_millis(200));
    /// # Ok::<(), fusebox::bucket::QuotaError>(())
    /// ```
    pub const fn with_period(period: Duration) -> Result<Self, QuotaError> {
        Self::new(1, period)
    }
    /// The same rate with another burst.
    ///
    /// # Errors
    ///
    /// [`QuotaError::ZeroBurst`], or [`QuotaError::TooLong`].
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::bucket::{Quota, QuotaError};
    ///
    /// let q = Quota::per_second(10)?.with_burst(3)?;
    /// assert_eq!((q.tokens(), q.burst()), (10, 3)); // same rate, smaller burst
    /// assert_eq!(q.with_burst(0), Err(QuotaError::ZeroBurst));
    /// # Ok::<(), fusebox::bucket::QuotaError>(())
    /// ```
    pub const fn with_burst(self, burst: u32) -> Result<Self, QuotaError> {
        Self::build(self.tokens, self.period, burst)
    }

    /// Validates and derives; the one constructor all others go through.
    /// The quota must fit both the kernel's word ([`TAT_BITS`]) and the
    /// token bucket's tagged word (one bit less, see `tagged`).
    pub(super) const fn build(
        tokens: u32,
        period: Duration,
        burst: u32,
    ) -> Result<Self, QuotaError> {
        if tokens == 0 {
            return Err(QuotaError::ZeroTokens);
        }
        if period.is_zero() {
            return Err(QuotaError::ZeroPeriod);
        }
        if burst == 0 {
            return Err(QuotaError::ZeroBurst);
        }
        // On 32 bits an exact scale may leave no room for the backward
        // tolerance, which grows with it: coarser power-of-two scales are
        // tried, `T` rounded up (admits less; see `gcra`), as long as the
        // rounding stays under 1/64 of the interval. 64 bits never needs
        // that: its tolerance is half the word whatever the scale.
        let mut max_scale = MAX_SCALE;
        loop {
            match Params::with_max_scale(tokens, period.as_micros(), burst, TAT_BITS, max_scale) {
                Ok(params)
                    if tagged::fits(params.scale, params.capacity)
                        && (max_scale == MAX_SCALE || params.interval >= MIN_COARSE_INTERVAL) =>
                {
                    return Ok(Self {
                        tokens,
                        period,
                        burst,
                        params,
                    })
                }
                _ if TAT_BITS == 32 && max_scale > 1 => max_scale /= 2,
                _ => return Err(QuotaError::TooLong),
            }
        }
    }

    /// Tokens refilled per [`period`](Self::period).
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::bucket::Quota;
    ///
    /// assert_eq!(Quota::per_minute(90)?.tokens(), 90);
    /// # Ok::<(), fusebox::bucket::QuotaError>(())
    /// ```
    pub const fn tokens(&self) -> u32 {
        self.tokens
    }
    /// The refill period.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::bucket::Quota;
    /// use fusebox::Duration;
    ///
    /// assert_eq!(Quota::per_minute(90)?.period(), Duration::from_secs(60));
    /// # Ok::<(), fusebox::bucket::QuotaError>(())
    /// ```
    pub const fn period(&self) -> Duration {
        self.period
    }
    /// The most tokens the bucket holds (and so the largest single request).
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::bucket::Quota;
    ///
    /// assert_eq!(Quota::per_second(50)?.burst(), 50); // defaults to the tokens
    /// assert_eq!(Quota::per_second(50)?.with_burst(5)?.burst(), 5);
    /// # Ok::<(), fusebox::bucket::QuotaError>(())
    /// ```
    pub const fn burst(&self) -> u32 {
        self.burst
    }
    /// Time to refill one token, rounded up to a microsecond.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::bucket::Quota;
    /// use fusebox::Duration;
    ///
    /// assert_eq!(Quota::per_second(4)?.replenish_interval(), Duration::from_millis(250));
    /// // 1 s / 3 = 333 333.3 µs, rounded up.
    /// assert_eq!(Quota::per_second(3)?.replenish_interval(), Duration::from_micros(333_334));
    /// # Ok::<(), fusebox::bucket::QuotaError>(())
    /// ```
    pub const fn replenish_interval(&self) -> Duration {
        Duration::from_micros(self.params.interval.div_ceil(self.params.scale))
    }
    pub(crate) const fn params(&self) -> &Params {
        &self.params
    }
}

#[cfg(feature = "serde")]
mod ser {
    use super::{Duration, Quota};

    #[derive(serde::Serialize, serde::Deserialize)]
    struct Repr {
        tokens: u32,
        period: Duration,
        burst: u32,
    }

    impl serde::Serialize for Quota {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            Repr {
                tokens: self.tokens,
                period: self.period,
                burst: self.burst,
            }
            .serialize(s)
        }
    }

    impl<'de> serde::Deserialize<'de> for Quota {
        /// Validated exactly like [`Quota::new_with_burst`]: a quota whose
        /// burst fits this target deserializes, even where its rate's own
        /// burst of `tokens` would not.
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let r = Repr::deserialize(d)?;
            Quota::new_with_burst(r.tokens, r.period, r.burst).map_err(serde::de::Error::custom)
        }
    }
}
