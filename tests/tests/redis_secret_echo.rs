//! A server that echoes the password back in its error: Redis answers a
//! command it does not know with `ERR unknown command 'AUTH', with args
//! beginning with: 'app' '<password>'` — as it does when `AUTH` (or
//! `HELLO`, which carries the password under `protocol=resp3`) is renamed
//! away, and as Redis-speaking proxies without `AUTH` do. The password in
//! the URL must still appear in no error, `Debug`, log, health report or
//! metric.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::redis_server::RedisServer;
use fusebox::bucket::Quota;
use fusebox_std::backend::{
    Degrade, FleetConfig, FleetPercentiles, RedisBackend, RedisConfig, RedisLimiter, Rules, Source,
};
use fusebox_std::{Registry, TrackerConfig};

const SECRET: &str = "echoed-s3cret-4f9a";

/// Every event the global capture holds, as text.
fn all_logs() -> String {
    format!("{:?}", common::Capture::global().0.lock().unwrap())
}

/// `url` (which carries [`SECRET`]) against a server without the command
/// `renamed`: the errors of `connect`, and of a limiter and fleet
/// percentiles on a lazy connection, with their health, logs and metrics.
async fn never_shown(name: &str, renamed: &str, url: &str) {
    let capture = common::Capture::global();
    let config = || {
        RedisConfig::new(url)
            .timeout(Duration::from_millis(500))
            .connect_timeout(Duration::from_millis(500))
            .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(100))
    };
    let err = RedisBackend::connect(config()).await.expect_err(renamed);
    assert!(err.is_fault(), "{err:?}");
    for shown in [err.to_string(), format!("{err:?}")] {
        assert!(!shown.contains(SECRET), "{renamed}: {shown}");
    }

    let backend = RedisBackend::connect_lazy(config()).unwrap();
    let registry = Arc::new(Registry::new());
    let rules = Rules::single("per_second", Quota::per_second(5).unwrap()).unwrap();
    let limiter = Arc::new(
        RedisLimiter::builder(name, rules, backend.clone())
            .degrade(Degrade::FailClosed)
            .registry(Arc::clone(&registry))
            .build()
            .unwrap(),
    );
    registry.register_redis_limiter(&limiter).unwrap();
    let tracker = registry.tracker(name, TrackerConfig::default()).unwrap();
    let fleet = Arc::new(FleetPercentiles::new(
        name,
        tracker,
        &backend,
        FleetConfig::new("pod-a").unwrap(),
    ));
    registry.register_fleet_percentiles(&fleet).unwrap();
    for _ in 0..3 {
        let d = limiter.try_acquire("k").await.unwrap();
        assert_eq!((d.allowed, d.source), (false, Source::FailClosed));
        let e = fleet.sync().await.unwrap_err();
        assert!(!format!("{e} {e:?}").contains(SECRET), "{renamed}: {e}");
        tokio::time::sleep(Duration::from_millis(120)).await;
    }
    assert!(limiter.is_degraded());
    let health = serde_json::to_string(&registry.health()).unwrap();
    assert!(health.contains(&format!("redis_{name}")), "{health}");
    assert!(!health.contains(SECRET), "{renamed}: {health}");
    assert!(!registry.to_prometheus().contains(SECRET));
    assert!(!capture.with("limiter", name).is_empty());
    let logs = all_logs();
    assert!(!logs.contains(SECRET), "{renamed}: {logs}");
}

/// `AUTH` renamed away: the crate sends `AUTH app <password>`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_echoed_by_an_unknown_auth_is_never_shown() {
    let server = RedisServer::start_with(&["--rename-command", "AUTH", ""]);
    let url = format!("redis://app:{SECRET}@127.0.0.1:{}", server.port());
    never_shown("echo_auth", "AUTH", &url).await;
}

/// `HELLO` renamed away under RESP3: the crate sends `HELLO 3 AUTH app
/// <password>`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_echoed_by_an_unknown_hello_is_never_shown() {
    let server = RedisServer::start_with(&["--rename-command", "HELLO", ""]);
    let url = format!(
        "redis://app:{SECRET}@127.0.0.1:{}/?protocol=resp3",
        server.port()
    );
    never_shown("echo_hello", "HELLO", &url).await;
}
