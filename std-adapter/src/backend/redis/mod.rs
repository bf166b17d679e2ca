//! The Redis backend: [`RedisBackend`] (a connection and the GCRA
//! script) and [`RedisLimiter`] (waits, timeouts and degradation on it).

mod breaker;
mod cluster;
mod config;
mod connection;
mod degrade;
mod detach;
mod fleet;
mod lease;
mod limiter;
mod metrics;
mod probe;
mod script;
mod tls;
mod watched;

pub use self::breaker::{FleetBreaker, FleetBreakerBuilder, FleetBreakerMetrics};
pub use self::cluster::RedisConnection;
pub use self::config::{redacted_url, RedisConfig};
pub use self::connection::RedisBackend;
pub use self::degrade::Degrade;
pub use self::fleet::{
    FleetConfig, FleetPercentiles, FleetReport, FleetSeries, MAX_INSTANCES, MAX_INSTANCE_LEN,
};
pub use self::lease::LeasedLimiter;
pub use self::limiter::{RedisLimiter, RedisLimiterBuilder};
pub use self::metrics::RedisLimiterMetrics;
