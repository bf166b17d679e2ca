//! Helpers of the fleet breaker tests: a backend that reconnects fast, a
//! raw connection for writing keys by hand, and waiting for a state.

use std::time::Duration;

use fusebox::breaker::State;
use fusebox_std::backend::{FleetBreaker, RedisBackend, RedisConfig};
use tokio::time::Instant;

/// A backend on `url` with a 500 ms command timeout that reconnects
/// within 20..200 ms.
pub async fn backend(url: &str) -> RedisBackend {
    RedisBackend::connect(
        RedisConfig::new(url)
            .timeout(Duration::from_millis(500))
            .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200)),
    )
    .await
    .expect("connect")
}

/// A plain connection to `url`, for writing and reading keys by hand.
pub async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Waits (polling every 5 ms, at most `limit`) until `b` reads `state`;
/// returns how long it took.
pub async fn until_state(b: &FleetBreaker, state: State, limit: Duration) -> Duration {
    let start = Instant::now();
    while b.state() != state {
        assert!(
            start.elapsed() < limit,
            "{} still {:?} after {limit:?}, wanted {state:?}",
            b.name(),
            b.state()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    start.elapsed()
}

/// Fails two calls through `b` (the tests' breakers open after two
/// failures in a row) and checks that it opened.
pub async fn trip(b: &FleetBreaker) {
    for _ in 0..2 {
        let _ = b.call(async { Err::<(), _>("down") }).await;
    }
    assert_eq!(b.state(), State::Open);
}

/// The value stored under `key` (empty if there is none).
pub async fn stored(url: &str, key: &str) -> String {
    let mut conn = raw(url).await;
    redis::cmd("GET")
        .arg(key)
        .query_async::<Option<String>>(&mut conn)
        .await
        .unwrap()
        .unwrap_or_default()
}

/// Syncs, retrying while the connection manager reconnects.
pub async fn sync_ok(b: &FleetBreaker) {
    let start = Instant::now();
    while let Err(e) = b.sync().await {
        assert!(start.elapsed() < Duration::from_secs(5), "{e}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An instance of the fleet breaker `name` over `core`, reconciling every
/// `sync_interval`.
pub async fn instance_over(
    url: &str,
    name: &str,
    core: std::sync::Arc<fusebox::breaker::CircuitBreaker>,
    sync_interval: Duration,
) -> FleetBreaker {
    FleetBreaker::builder(name, core, backend(url).await)
        .sync_interval(sync_interval)
        .build()
        .await
        .expect("fleet breaker")
}
