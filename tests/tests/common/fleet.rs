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

/// The fleet breaker's script, as the backend loads it.
const BREAKER_LUA: &str =
    include_str!("../../../std-adapter/src/backend/redis/scripts/breaker.lua");

/// Runs the script's `op` on the breaker `fusebox:{breaker:<name>}` as a
/// caller whose known version is `known` (its local state closed,
/// open_for and max_open_for 60 s, no quorum), with the record `record`
/// and its `token`, as a resent command is sent again: the script's
/// reply, and the stored decision after it as (version, state).
#[allow(dead_code)] // not every suite drives the script directly
pub async fn run_script(
    conn: &mut redis::aio::MultiplexedConnection,
    name: &str,
    op: &str,
    known: u64,
    record: &str,
    token: &str,
) -> (Vec<i64>, (u64, String)) {
    let key = |suffix: &str| format!("fusebox:{{breaker:{name}}}:{suffix}");
    let reply: Vec<i64> = redis::Script::new(BREAKER_LUA)
        .key(key("decision"))
        .key(key("verdicts"))
        .key(key("trial:ok"))
        .key(record)
        // op, known version, open_for, max_open_for (µs), the caller's
        // state (closed), its open remaining and streak
        .arg(op)
        .arg(known)
        .arg(60_000_000)
        .arg(60_000_000)
        .arg("c")
        .arg(0)
        .arg(0)
        // the op's own (none: no quorum), PUBLISH, the record's token
        .arg(0)
        .arg("")
        .arg("")
        .arg("p")
        .arg(token)
        .invoke_async(conn)
        .await
        .unwrap();
    let raw: String = redis::cmd("GET")
        .arg(key("decision"))
        .query_async(conn)
        .await
        .unwrap();
    let fields: Vec<&str> = raw.split(':').collect();
    (reply, (fields[1].parse().unwrap(), fields[2].to_owned()))
}

/// Waits (at most 5 s) until `b`'s local core reads half-open (its own
/// open time run out) while `b`, adopting the fleet's longer opening,
/// still reads Open.
pub async fn until_core_half_open_under_the_fleet(b: &FleetBreaker) {
    use fusebox::Clock;
    let start = tokio::time::Instant::now();
    while b.core().state(b.policy().clock().now()) != State::HalfOpen {
        assert!(start.elapsed() < Duration::from_secs(5), "{:?}", b.state());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(b.state(), State::Open, "the fleet's opening is adopted");
}
