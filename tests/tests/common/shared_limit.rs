//! A `policy::Limiter` on a limit shared through a test's redis-server:
//! the connections, limiters and timed waits of the `redis_limit_policy`
//! and `redis_limit_registry` tests.

use std::time::Duration;

use fusebox::bucket::Quota;
use fusebox_std::backend::{Degrade, RedisBackend, RedisConfig, RedisLimiter, Rules};
use fusebox_std::policy::{LimitError, Limiter};
use tokio::time::Instant;

use super::redis_server::RedisServer;

/// The command timeout of the fault tests.
pub const TIMEOUT: Duration = Duration::from_millis(50);
/// Scheduling slack on two shared cores.
pub const SLACK: Duration = Duration::from_millis(150);

/// Redis at `server` with a command `timeout`; quick reconnects.
pub fn config(server: &RedisServer, timeout: Duration) -> RedisConfig {
    RedisConfig::new(server.url())
        .timeout(timeout)
        .connect_timeout(Duration::from_millis(500))
        .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200))
}

/// A Redis limiter `name` on its own connection.
pub async fn redis_limiter(
    server: &RedisServer,
    name: &str,
    quota: Quota,
    degrade: Degrade,
    timeout: Duration,
) -> RedisLimiter {
    let backend = RedisBackend::connect(config(server, timeout))
        .await
        .expect("connect");
    RedisLimiter::builder(name, Rules::single("quota", quota).unwrap(), backend)
        .degrade(degrade)
        .probe_backoff(Duration::from_millis(20), Duration::from_millis(200))
        .build()
        .unwrap()
}

/// Waits on `limiter` with a deadline `within`: what came back and how
/// long it took.
pub async fn wait_within(
    limiter: &Limiter,
    within: Duration,
) -> (Result<(), LimitError>, Duration) {
    let asked = Instant::now();
    let r = limiter.until_n_ready_by(1, Some(asked + within)).await;
    (r, asked.elapsed())
}

/// The deadline of the waits while Redis is down.
pub const DEADLINE: Duration = Duration::from_millis(200);
