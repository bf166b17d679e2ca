//! [`ConfigError`]: why a breaker configuration was refused.

use core::fmt;

use super::config::MAX_WINDOW;
use super::word::{
    MAX_CLOSE_AFTER, MAX_CONSECUTIVE, MAX_HALF_OPEN, MAX_HALF_OPEN_PERMITS, MAX_OPEN_FOR,
};
use crate::Duration;

/// Why a [`ConfigBuilder`](super::ConfigBuilder) refused to build.
///
/// # Examples
///
/// ```
/// use fusebox::breaker::{Config, ConfigError};
///
/// let refused = Config::builder().failure_rate(0).build();
/// assert_eq!(refused, Err(ConfigError::FailureRateOutOfRange(0)));
/// match Config::builder().build() {
///     Err(ConfigError::NoTripCondition) => {}
///     other => panic!("expected NoTripCondition, got {other:?}"),
/// }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ConfigError {
    /// Neither `consecutive_failures`, `failure_rate`, `slow_call` nor
    /// `failure_count` (feature `time-window`) was set: the breaker could
    /// never open.
    NoTripCondition,
    /// `consecutive_failures` was 0 or above [`Config::MAX_CONSECUTIVE_FAILURES`](super::Config::MAX_CONSECUTIVE_FAILURES).
    ConsecutiveFailuresOutOfRange(u32),
    /// `failure_rate` was not in `1..=100`.
    FailureRateOutOfRange(u8),
    /// The slow-call rate was not in `1..=100`.
    SlowRateOutOfRange(u8),
    /// The slow-call threshold was zero: every call would be slow.
    ZeroSlowThreshold,
    /// The slow-call threshold was longer than
    /// [`Config::MAX_SLOW_THRESHOLD`](super::Config::MAX_SLOW_THRESHOLD)
    /// (~71.6 min).
    SlowThresholdTooLong(Duration),
    /// `window` was not in `1..=64`.
    WindowOutOfRange(u8),
    /// `minimum_calls` was 0 or larger than the window.
    MinimumCallsOutOfRange {
        /// The requested minimum.
        minimum_calls: u8,
        /// The window it must fit in.
        window: u8,
    },
    /// `open_for` was zero or longer than [`Config::MAX_OPEN_FOR`](super::Config::MAX_OPEN_FOR).
    OpenForOutOfRange(Duration),
    /// `max_open_for` was shorter than `open_for`, longer than
    /// [`Config::MAX_OPEN_FOR`](super::Config::MAX_OPEN_FOR), or more than `open_for · 2¹⁵`, `open_for`
    /// rounded up to a multiple of 8 µs as it is kept (the open time
    /// doubles at most 15 times: the re-opening streak is 4 bits).
    MaxOpenForOutOfRange(Duration),
    /// `half_open_permits` was not in `1..=63`.
    HalfOpenPermitsOutOfRange(u8),
    /// `close_after` was not in `1..=63`.
    CloseAfterOutOfRange(u8),
    /// `max_half_open` was zero or longer than `Config::MAX_HALF_OPEN`
    /// (about 71 min 35 s).
    MaxHalfOpenOutOfRange(Duration),
    /// `time_window`'s bucket count was not a power of two in `1..=16`, or
    /// its interval (`total / buckets`) was under 1 ms or 2³² µs or more
    /// (about 71 min 35 s).
    TimeWindowOutOfRange {
        /// The requested span.
        total: Duration,
        /// The requested number of buckets.
        buckets: u8,
    },
    /// `time_window` was combined with a count-based `window` or with
    /// `consecutive_failures`: a breaker has one window, and the
    /// consecutive count is not kept beside a time window.
    TimeWindowConflict,
    /// `failure_count` was 0 or above 255.
    FailureCountOutOfRange(u32),
    /// `failure_count` was set without `time_window`.
    FailureCountNeedsTimeWindow,
    /// A deserialised configuration asks for a time window or a half-open
    /// timeout, but this build of `fusebox` lacks the feature it needs.
    Unavailable {
        /// The cargo feature of `fusebox` it needs.
        feature: &'static str,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NoTripCondition => f.write_str(
                "no trip condition: set consecutive_failures, failure_rate or slow_call",
            ),
            Self::ConsecutiveFailuresOutOfRange(n) => write!(
                f,
                "consecutive_failures must be in 1..={MAX_CONSECUTIVE}, got {n}"
            ),
            Self::FailureRateOutOfRange(p) => {
                write!(f, "failure_rate must be a percentage in 1..=100, got {p}")
            }
            Self::SlowRateOutOfRange(p) => {
                write!(f, "slow-call rate must be a percentage in 1..=100, got {p}")
            }
            Self::ZeroSlowThreshold => f.write_str("slow-call threshold must be above zero"),
            Self::SlowThresholdTooLong(d) => write!(
                f,
                "slow-call threshold must be at most {:?}, got {d:?}",
                super::Config::MAX_SLOW_THRESHOLD
            ),
            Self::WindowOutOfRange(w) => {
                write!(f, "window must be in 1..={MAX_WINDOW} calls, got {w}")
            }
            Self::MinimumCallsOutOfRange {
                minimum_calls,
                window,
            } => write!(
                f,
                "minimum_calls must be in 1..=window ({window}), got {minimum_calls}"
            ),
            Self::OpenForOutOfRange(d) => write!(
                f,
                "open_for must be above zero and at most {MAX_OPEN_FOR:?}, got {d:?}"
            ),
            Self::MaxOpenForOutOfRange(d) => write!(
                f,
                "max_open_for must be at least open_for, at most open_for (rounded up to 8 us) * 2^15 and at most {MAX_OPEN_FOR:?}, got {d:?}"
            ),
            Self::HalfOpenPermitsOutOfRange(n) => write!(
                f,
                "half_open_permits must be in 1..={MAX_HALF_OPEN_PERMITS}, got {n}"
            ),
            Self::CloseAfterOutOfRange(n) => {
                write!(f, "close_after must be in 1..={MAX_CLOSE_AFTER}, got {n}")
            }
            Self::MaxHalfOpenOutOfRange(d) => write!(
                f,
                "max_half_open must be above zero and at most {MAX_HALF_OPEN:?}, got {d:?}"
            ),
            Self::TimeWindowOutOfRange { total, buckets } => write!(
                f,
                "time_window needs a power-of-two bucket count in 1..=16 and an interval (total / buckets) from 1 ms to 2^32 us, got {total:?} in {buckets} buckets"
            ),
            Self::TimeWindowConflict => f.write_str(
                "time_window cannot be combined with a count-based window or consecutive_failures",
            ),
            Self::FailureCountOutOfRange(n) => {
                write!(f, "failure_count must be in 1..=255, got {n}")
            }
            Self::FailureCountNeedsTimeWindow => {
                f.write_str("failure_count needs a time_window")
            }
            Self::Unavailable { feature } => {
                write!(f, "this configuration needs the `{feature}` feature of fusebox")
            }
        }
    }
}

impl core::error::Error for ConfigError {}
