//! A Redis outage (SIGKILL then restart on the same port, SIGSTOP, down at
//! start): every degradation policy keeps serving within the command
//! timeout, health goes degraded and back, Redis decisions resume by
//! themselves.

use std::sync::Arc;
use std::time::Duration;

use crate::common::redis_server::RedisServer;
use fusebox::bucket::Quota;
use fusebox_std::backend::{
    Decision, Degrade, RedisBackend, RedisConfig, RedisLimiter, Rules, Source,
};
use fusebox_std::Registry;
use tokio::time::Instant;

const TIMEOUT: Duration = Duration::from_millis(50);
/// Scheduling slack on two shared cores.
const SLACK: Duration = Duration::from_millis(150);

fn config(server: &RedisServer) -> RedisConfig {
    server.outage_config(TIMEOUT)
}

fn limiter(
    name: &str,
    backend: RedisBackend,
    policy: Degrade,
    registry: &Arc<Registry>,
) -> RedisLimiter {
    let rules = Rules::single("per_second", Quota::per_second(20).unwrap()).unwrap();
    RedisLimiter::builder(name, rules, backend)
        .degrade(policy)
        .probe_backoff(Duration::from_millis(20), Duration::from_millis(200))
        .registry(Arc::clone(registry))
        .build()
        .unwrap()
}

/// One request, timed: it never waits on Redis longer than the timeout.
async fn timed(limiter: &RedisLimiter) -> Decision {
    let start = Instant::now();
    let d = limiter
        .try_acquire("k")
        .await
        .expect("a decision, never a fault");
    assert!(
        start.elapsed() <= TIMEOUT + SLACK,
        "held {:?}",
        start.elapsed()
    );
    d
}

/// Requests every 5 ms for `span`, collecting the decisions.
async fn serve(limiter: &RedisLimiter, span: Duration) -> Vec<Decision> {
    let start = Instant::now();
    let mut out = Vec::new();
    while start.elapsed() < span {
        out.push(timed(limiter).await);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    out
}

/// Requests until Redis decides again (at most 5 s).
async fn until_redis(limiter: &RedisLimiter) -> Duration {
    let start = Instant::now();
    while timed(limiter).await.source != Source::Redis {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "redis decisions did not resume"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    start.elapsed()
}

async fn kill_and_restart(name: &str, policy: Degrade, during: Source) -> Vec<Decision> {
    let mut server = RedisServer::start();
    let registry = Arc::new(Registry::new());
    let backend = RedisBackend::connect(config(&server)).await.unwrap();
    let limiter = limiter(name, backend, policy, &registry);
    assert_eq!(timed(&limiter).await.source, Source::Redis);

    server.kill();
    let outage = serve(&limiter, Duration::from_millis(600)).await;
    assert!(limiter.is_degraded());
    let health = registry.health();
    assert!(health.ready && health.degraded, "{health:?}");
    let condition = format!("redis_{name}: ");
    assert!(
        health.reasons.iter().any(|r| r.starts_with(&condition)),
        "{:?}",
        health.reasons
    );
    let degraded: Vec<Decision> = outage
        .iter()
        .filter(|d| d.source != Source::Redis)
        .copied()
        .collect();
    assert!(degraded.len() > 20, "{} degraded decisions", degraded.len());
    assert!(degraded.iter().all(|d| d.source == during), "{degraded:?}");

    server.restart();
    let resumed_after = until_redis(&limiter).await;
    assert!(resumed_after < Duration::from_secs(2), "{resumed_after:?}");
    assert!(!limiter.is_degraded());
    assert!(
        !registry.health().degraded,
        "{:?}",
        registry.health().reasons
    );
    let m = limiter.metrics();
    assert!(
        m.faults >= 1 && m.degraded_decisions as usize >= degraded.len(),
        "{m:?}"
    );
    degraded
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_limit_outage_fail_open_admits_and_reports() {
    let degraded = kill_and_restart("open", Degrade::FailOpen, Source::FailOpen).await;
    assert!(degraded.iter().all(|d| d.allowed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_limit_outage_fail_closed_refuses_until_the_next_probe() {
    let degraded = kill_and_restart("closed", Degrade::FailClosed, Source::FailClosed).await;
    assert!(degraded
        .iter()
        .all(|d| !d.allowed && d.retry_after <= Duration::from_millis(200)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_limit_outage_local_keeps_the_instance_share() {
    let degraded = kill_and_restart("local", Degrade::Local { instances: 4 }, Source::Local).await;
    // 20/s among 4 instances: a local bucket of 20 per 4 s, burst 5. Over
    // the 600 ms (plus slack) outage it admits at most 5 + 3.
    let admitted = degraded.iter().filter(|d| d.allowed).count();
    assert!((5..=8).contains(&admitted), "{admitted} admitted locally");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_limit_stalled_redis_times_out_then_resumes() {
    let server = RedisServer::start();
    let registry = Arc::new(Registry::new());
    let backend = RedisBackend::connect(config(&server)).await.unwrap();
    let limiter = limiter("stalled", backend, Degrade::FailClosed, &registry);
    assert_eq!(timed(&limiter).await.source, Source::Redis);
    server.signal("STOP"); // accepts, answers nothing
    let stalled = serve(&limiter, Duration::from_millis(400)).await;
    assert!(stalled
        .iter()
        .all(|d| d.source == Source::FailClosed && !d.allowed));
    assert!(registry.health().degraded);
    server.signal("CONT");
    until_redis(&limiter).await;
    assert!(!registry.health().degraded);
    // One probe per interval at most: far fewer faults than requests.
    let m = limiter.metrics();
    assert!(m.faults < m.degraded_decisions / 2, "{m:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_limit_starts_while_redis_is_down_and_connects_later() {
    let mut server = RedisServer::start();
    server.kill();
    let registry = Arc::new(Registry::new());
    let backend = RedisBackend::connect_lazy(config(&server)).unwrap();
    let limiter = limiter("late", backend, Degrade::Local { instances: 1 }, &registry);
    let first = timed(&limiter).await;
    assert_eq!((first.source, first.allowed), (Source::Local, true));
    assert!(registry.health().degraded);
    server.restart();
    until_redis(&limiter).await;
    assert!(!registry.health().degraded);
}
