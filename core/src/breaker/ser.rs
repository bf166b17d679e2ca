//! `serde` support for [`Config`]: deserialising goes through the builder,
//! so a hostile or hand-edited config is validated like any other.

use super::{Config, ConfigError};
use crate::Duration;

/// The wire form of [`Config`]; field names match its `Serialize` output.
#[derive(serde::Deserialize)]
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
}

impl TryFrom<ConfigRepr> for Config {
    type Error = ConfigError;

    fn try_from(r: ConfigRepr) -> Result<Self, ConfigError> {
        let mut b = Config::builder()
            .window(r.window)
            .minimum_calls(r.minimum_calls)
            .open_for(r.open_for)
            .max_open_for(r.max_open_for)
            .half_open_permits(r.half_open_permits)
            .close_after(r.close_after);
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
