//! `serde` support for [`Config`]: deserialising goes through the builder,
//! so a hostile or hand-edited config is validated like any other, and a
//! key it does not know (a misspelt `max_half_open`, say) is refused by
//! name rather than read as a setting left out.

use super::live::MAX_SLOW_THRESHOLD_MICROS;
use super::{Config, ConfigError, MAX_WINDOW};
use crate::Duration;

/// The wire form of [`Config`]; field names match its `Serialize` output.
/// Unknown keys are refused: the optional ones below have defaults, so a
/// misspelling of one would otherwise drop its setting without a word.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConfigRepr {
    consecutive_failures: u16,
    failure_rate: u8,
    slow_rate: u8,
    window: u8,
    minimum_calls: u8,
    half_open_permits: u8,
    close_after: u8,
    slow_threshold: Duration,
    open_for: Duration,
    max_open_for: Duration,
    #[serde(default)]
    max_half_open: Duration,
    /// µs per time-window bucket; 0 (or absent): count-based window.
    #[serde(default)]
    time_interval: u32,
    #[serde(default)]
    time_buckets: u8,
    #[serde(default)]
    failure_count: u8,
}

impl TryFrom<ConfigRepr> for Config {
    type Error = ConfigError;

    fn try_from(r: ConfigRepr) -> Result<Self, ConfigError> {
        let mut b = Config::builder()
            .minimum_calls(r.minimum_calls)
            .open_for(r.open_for)
            .max_open_for(r.max_open_for)
            .half_open_permits(r.half_open_permits)
            .close_after(r.close_after);
        if !r.max_half_open.is_zero() {
            b = max_half_open(b, r.max_half_open)?;
        }
        // Every time-window field goes to the builder, so that one without
        // the others is refused as the builder refuses it (an interval
        // without buckets, `failure_count` without a time window, a
        // count-based window beside one), never dropped.
        let timed = r.time_buckets != 0 || r.time_interval != 0;
        if !timed || r.window != MAX_WINDOW {
            b = b.window(r.window);
        }
        if timed {
            b = time_window(b, &r)?;
        } else if r.failure_count != 0 {
            // Refused by `build`: `FailureCountNeedsTimeWindow`.
            b.failure_count = Some(u32::from(r.failure_count));
        }
        if r.consecutive_failures != 0 {
            b = b.consecutive_failures(u32::from(r.consecutive_failures));
        }
        if r.failure_rate != 0 {
            b = b.failure_rate(r.failure_rate);
        }
        if r.slow_rate != 0 {
            b = b.slow_call(r.slow_threshold, r.slow_rate);
        }
        b.build()
    }
}

/// How [`Config`] writes its slow-call threshold: as it is, or 0 for none
/// (held as `Duration::MAX`, whose 2⁶⁴ − 1 µs TOML cannot hold and
/// double-based JSON tools round to a number no `u64` reads back). Every
/// number a config is written with is then at most 2³⁴ (`MAX_OPEN_FOR`).
/// [`ConfigRepr`] ignores the threshold when the slow rate is 0, so the
/// config reads back unchanged.
#[allow(clippy::trivially_copy_pass_by_ref)] // serde's `serialize_with` signature
pub(crate) fn slow_threshold<S: serde::Serializer>(
    threshold: &Duration,
    s: S,
) -> Result<S::Ok, S::Error> {
    let wire = if threshold.as_micros() > MAX_SLOW_THRESHOLD_MICROS {
        Duration::ZERO
    } else {
        *threshold
    };
    serde::Serialize::serialize(&wire, s)
}

/// The time-window settings of `r` (a time window was serialised).
#[cfg(feature = "time-window")]
#[allow(clippy::unnecessary_wraps)] // its twin without the feature fails
fn time_window(
    b: super::ConfigBuilder,
    r: &ConfigRepr,
) -> Result<super::ConfigBuilder, ConfigError> {
    let total = Duration::from_micros(u64::from(r.time_interval) * u64::from(r.time_buckets));
    let b = b.time_window(total, r.time_buckets);
    Ok(if r.failure_count != 0 {
        b.failure_count(u32::from(r.failure_count))
    } else {
        b
    })
}

/// A time window was serialised, and this build cannot keep one.
#[cfg(not(feature = "time-window"))]
fn time_window(
    _: super::ConfigBuilder,
    _: &ConfigRepr,
) -> Result<super::ConfigBuilder, ConfigError> {
    Err(ConfigError::Unavailable {
        feature: "time-window",
    })
}

/// The half-open timeout of a serialised config.
#[cfg(feature = "half-open-timeout")]
#[allow(clippy::unnecessary_wraps)] // its twin without the feature fails
fn max_half_open(
    b: super::ConfigBuilder,
    max: Duration,
) -> Result<super::ConfigBuilder, ConfigError> {
    Ok(b.max_half_open(max))
}

/// A half-open timeout was serialised, and this build cannot keep one.
#[cfg(not(feature = "half-open-timeout"))]
fn max_half_open(
    _: super::ConfigBuilder,
    _: Duration,
) -> Result<super::ConfigBuilder, ConfigError> {
    Err(ConfigError::Unavailable {
        feature: "half-open-timeout",
    })
}
