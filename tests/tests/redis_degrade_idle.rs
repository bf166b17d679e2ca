//! A degraded Redis limiter that nobody calls: it must find Redis back by
//! itself (the project's standard: "an unreachable Redis degrades to local
//! state and recovers by itself"). Before, only a request probed Redis, so
//! an idle limiter stayed `degraded` in `is_degraded()`, in the registry's
//! health and in Prometheus long after Redis was back. Its background
//! probe follows the probe backoff, never spins (even with a zero
//! backoff), and ends with the limiter: one dropped while degraded leaves
//! no task behind, however far its next probe.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::redis_server::RedisServer;
use common::Capture;
use fusebox::bucket::Quota;
use fusebox_std::backend::{Degrade, RedisBackend, RedisConfig, RedisLimiter, Rules, Source};
use fusebox_std::Registry;
use tokio::time::Instant;

fn config(server: &RedisServer) -> RedisConfig {
    server.outage_config(Duration::from_millis(50))
}

fn per_second(tokens: u32) -> Rules {
    Rules::single("per_second", Quota::per_second(tokens).unwrap()).unwrap()
}

/// Events so far of the limiter `name` whose message contains `text`.
fn events(name: &str, text: &str) -> usize {
    Capture::global()
        .with("limiter", name)
        .iter()
        .filter(|e| common::field(e, "message").is_some_and(|m| m.contains(text)))
        .count()
}

/// The tasks alive on this runtime once the count has held still for
/// 100 ms (the Redis connection's own tasks settle first).
async fn settled_tasks() -> usize {
    let metrics = tokio::runtime::Handle::current().metrics();
    let start = Instant::now();
    let mut last = metrics.num_alive_tasks();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = metrics.num_alive_tasks();
        if now == last {
            return now;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the task count never settled"
        );
        last = now;
    }
}

/// Redis stops, one request degrades the limiter, Redis comes back, and
/// no request is sent: the limiter, the registry's health and the
/// Prometheus gauge turn clean again within a bounded wait (probes at 20,
/// 60, 140, 300 ms... after the outage began, at most 200 ms apart). The
/// URL's password shows in none of its logs nor in the health report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_degraded_limiter_recovers_without_any_request() {
    let _ = Capture::global();
    let password = "idle-probe-s3cret";
    let mut server = RedisServer::start_with(&["--requirepass", password]);
    let url = format!("redis://:{password}@127.0.0.1:{}", server.port());
    let registry = Arc::new(Registry::new());
    let backend = RedisBackend::connect(
        RedisConfig::new(url)
            .timeout(Duration::from_millis(50))
            .connect_timeout(Duration::from_millis(500))
            .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200)),
    )
    .await
    .unwrap();
    let limiter = Arc::new(
        RedisLimiter::builder("idle", per_second(20), backend)
            .degrade(Degrade::Local { instances: 2 })
            .probe_backoff(Duration::from_millis(20), Duration::from_millis(200))
            .registry(Arc::clone(&registry))
            .build()
            .unwrap(),
    );
    registry.register_redis_limiter(&limiter).unwrap();
    let gauge = |value: u8| format!("fusebox_redis_limiter_degraded{{name=\"idle\"}} {value}\n");

    assert_eq!(
        limiter.try_acquire("k").await.unwrap().source,
        Source::Redis
    );
    server.kill();
    assert_eq!(
        limiter.try_acquire("k").await.unwrap().source,
        Source::Local
    );
    assert!(limiter.is_degraded());
    assert!(registry.health().degraded);
    assert!(registry.to_prometheus().contains(&gauge(1)));
    let before = limiter.metrics();

    // A while out, then back; from here on, no request at all.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(limiter.is_degraded(), "Redis is still out");
    let health = serde_json::to_string(&registry.health()).unwrap();
    assert!(!health.contains(password), "{health}");
    server.restart();
    let back = Instant::now();
    while limiter.is_degraded() || registry.health().degraded {
        assert!(
            back.elapsed() < Duration::from_secs(5),
            "still degraded {:?} after Redis came back, with no request: {:?}",
            back.elapsed(),
            registry.health().reasons
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(registry.to_prometheus().contains(&gauge(0)));
    // The probes are no decisions and admit nothing; their faults, while
    // Redis was out, are counted.
    let after = limiter.metrics();
    assert_eq!(after.redis_decisions, before.redis_decisions);
    assert_eq!(after.degraded_decisions, before.degraded_decisions);
    assert_eq!(after.admitted, before.admitted);
    assert!(after.faults > before.faults, "{before:?} {after:?}");
    assert_eq!(events("idle", "redis answers again"), 1);
    let logs = format!("{:?}", Capture::global().with("limiter", "idle"));
    assert!(logs.contains("redis probe failed"), "{logs}");
    assert!(!logs.contains(password), "{logs}");

    // Healthy: no probe task, and requests go to Redis.
    let faults = after.faults;
    assert_eq!(
        limiter.try_acquire("k").await.unwrap().source,
        Source::Redis
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(limiter.metrics().faults, faults);
}

/// A limiter dropped while degraded stops probing and leaves no task:
/// with a short backoff (the task probes every 20 ms, each probe a
/// logged failure) and with a far one (the task asleep for an hour, which
/// only the drop can end). Its state is freed at once (the registry's
/// `Arc` is released: the task never held the limiter alive).
#[tokio::test]
async fn a_limiter_dropped_while_degraded_leaves_no_probe_task() {
    let _ = Capture::global();
    let mut server = RedisServer::start();
    let registry = Arc::new(Registry::new());
    // A connect timeout longer than the test: the connection's own
    // liveness probe (a task started after that long a silence) never
    // runs, so the task count moves with the limiters' tasks only (the
    // connection manager's reconnection is one task for the whole outage).
    let config = config(&server).connect_timeout(Duration::from_secs(30));
    let backend = RedisBackend::connect(config).await.unwrap();
    let build = |name: &str, backoff: Duration| {
        RedisLimiter::builder(name, per_second(20), backend.clone())
            .degrade(Degrade::FailOpen)
            .probe_backoff(backoff, backoff)
            .registry(Arc::clone(&registry))
            .build()
            .unwrap()
    };
    let short = build("dropped_short", Duration::from_millis(20));
    let far = build("dropped_far", Duration::from_secs(3_600));
    server.kill();
    for limiter in [&short, &far] {
        assert_eq!(
            limiter.try_acquire("k").await.unwrap().source,
            Source::FailOpen
        );
        assert!(limiter.is_degraded());
    }

    // The short one probes in the background, unasked.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let probes = events("dropped_short", "redis probe failed");
    assert!(probes >= 3, "{probes} background probes in 200 ms");

    // Dropped: no more probes, one task fewer.
    let tasks = settled_tasks().await;
    drop(short);
    let probes = events("dropped_short", "redis probe failed");
    assert_eq!(settled_tasks().await, tasks - 1, "its probe task ended");
    assert_eq!(
        Arc::strong_count(&registry),
        2,
        "the short one's state is freed"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        events("dropped_short", "redis probe failed") <= probes + 1,
        "probes after the drop"
    );

    // The far one's task sleeps until its probe, an hour away: the drop
    // ends it.
    let tasks = settled_tasks().await;
    drop(far);
    assert_eq!(settled_tasks().await, tasks - 1, "its probe task ended");
    assert_eq!(
        Arc::strong_count(&registry),
        1,
        "the far one's state is freed"
    );
    assert!(!registry.health().degraded);
    server.restart();
}

/// A zero backoff makes every request a probe, but the background task
/// still waits at least 10 ms between probes: against a server that is
/// gone (each probe fails at once) it never spins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_backoff_does_not_make_the_background_probe_spin() {
    let mut server = RedisServer::start();
    let backend = RedisBackend::connect(config(&server)).await.unwrap();
    let limiter = RedisLimiter::builder("zero_backoff", per_second(20), backend)
        .degrade(Degrade::FailClosed)
        .probe_backoff(Duration::ZERO, Duration::ZERO)
        .build()
        .unwrap();
    server.kill();
    let _ = limiter.try_acquire("k").await.unwrap();
    assert!(limiter.is_degraded());
    let before = limiter.metrics().faults;
    let start = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let probes = limiter.metrics().faults - before;
    let bound = u64::try_from(start.elapsed().as_millis() / 10).unwrap() + 2;
    assert!(probes >= 1, "no background probe");
    assert!(probes <= bound, "{probes} probes in {:?}", start.elapsed());
    server.restart();
    let back = Instant::now();
    while limiter.is_degraded() {
        assert!(back.elapsed() < Duration::from_secs(5), "never recovered");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
