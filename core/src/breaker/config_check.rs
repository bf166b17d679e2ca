//! The builder's checks of the slow-call settings and of those added with the time window and
//! the half-open timeout (kept apart so `config.rs` stays one screenful of
//! builder; they run whatever the features, so a configuration is valid or
//! not the same way in every build).

use super::config::ConfigBuilder;
use super::config_error::ConfigError;
use super::live::MAX_SLOW_THRESHOLD_MICROS;
use super::word::MAX_HALF_OPEN;
use crate::Duration;

impl ConfigBuilder {
    /// The slow-call threshold and rate (`Duration::MAX`, 0: no slow-call
    /// policy).
    pub(super) const fn slow_settings(&self) -> Result<(Duration, u8), ConfigError> {
        match self.slow {
            None => Ok((Duration::MAX, 0)),
            Some((t, _)) if t.is_zero() => Err(ConfigError::ZeroSlowThreshold),
            Some((t, _)) if t.as_micros() > MAX_SLOW_THRESHOLD_MICROS => {
                Err(ConfigError::SlowThresholdTooLong(t))
            }
            Some((_, p)) if p == 0 || p > 100 => Err(ConfigError::SlowRateOutOfRange(p)),
            Some(s) => Ok(s),
        }
    }

    /// The time window's settings: (interval µs, buckets, failure count),
    /// all 0 for a count-based window.
    pub(super) const fn time_settings(&self) -> Result<(u32, u8, u8), ConfigError> {
        match self.time_window {
            None => {
                if self.failure_count.is_some() {
                    return Err(ConfigError::FailureCountNeedsTimeWindow);
                }
                Ok((0, 0, 0))
            }
            Some((total, buckets)) => {
                if self.window_set || self.consecutive_failures.is_some() {
                    return Err(ConfigError::TimeWindowConflict);
                }
                let interval = if buckets == 0 {
                    0
                } else {
                    total.as_micros() / buckets as u64
                };
                if buckets == 0
                    || buckets > 16
                    || !buckets.is_power_of_two()
                    || interval < 1_000
                    || interval > u32::MAX as u64
                {
                    return Err(ConfigError::TimeWindowOutOfRange { total, buckets });
                }
                let count = match self.failure_count {
                    None => 0,
                    Some(n) if n == 0 || n > 255 => {
                        return Err(ConfigError::FailureCountOutOfRange(n))
                    }
                    Some(n) => n as u8,
                };
                Ok((interval as u32, buckets, count))
            }
        }
    }

    /// The half-open timeout (zero: none).
    pub(super) const fn half_open_timeout(&self) -> Result<Duration, ConfigError> {
        match self.max_half_open {
            None => Ok(Duration::ZERO),
            Some(m) if m.is_zero() || m.as_micros() > MAX_HALF_OPEN.as_micros() => {
                Err(ConfigError::MaxHalfOpenOutOfRange(m))
            }
            Some(m) => Ok(m),
        }
    }
}
