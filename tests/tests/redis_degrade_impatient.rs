//! Callers more impatient than the command timeout: every request is
//! wrapped in a caller's timeout (`tokio::time::timeout`, a tower
//! `Timeout` layer) of 100 ms, while the backend's command timeout is
//! 300 ms, and Redis stops answering (SIGSTOP: it accepts, answers
//! nothing). Each caller's future is dropped before its command times
//! out. The limiter must still see the outage within a bounded number of
//! calls: degrade (health, metrics), decide locally at once, and recover
//! by itself once Redis answers again (SIGCONT). The same for a
//! connection blackholed (no byte either way, no reset) and for a Redis
//! killed and restarted.
//!
//! Found by a review: the command's timeout was counted only by the
//! caller's future, so a caller dropped earlier counted nothing; with
//! every caller that impatient, a stopped Redis produced no fault at
//! all, the limiter never degraded, `health()` never reported the outage
//! and every request waited out its caller's timeout.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::common::redis_server::RedisServer;
use crate::common::silencing_proxy::SilencingProxy;
use fusebox::breaker::{CircuitBreaker, Config, State};
use fusebox::bucket::Quota;
use fusebox_std::backend::{
    BackendError, Decision, Degrade, FleetBreaker, LeasedLimiter, RedisBackend, RedisConfig,
    RedisLimiter, Rules, Source,
};
use fusebox_std::Registry;

/// The backend's command timeout.
const COMMAND: Duration = Duration::from_millis(300);
/// Every caller's own timeout: shorter.
const CALLER: Duration = Duration::from_millis(100);
/// Calls allowed to go unanswered before the limiter must have degraded:
/// 40 callers of 100 ms span 4 s, over 13 command timeouts.
const PATIENCE: usize = 40;

/// `decision` under the caller's timeout: `None` if the caller gave up.
async fn impatient(
    decision: impl Future<Output = Result<Decision, BackendError>>,
) -> Option<Decision> {
    tokio::time::timeout(CALLER, decision)
        .await
        .ok()
        .map(|d| d.expect("no error but a decision"))
}

fn per_second(tokens: u32) -> Rules {
    Rules::single("per_second", Quota::per_second(tokens).unwrap()).unwrap()
}

async fn limiter(server: &RedisServer, name: &str, registry: &Arc<Registry>) -> RedisLimiter {
    limiter_on(server.outage_config(COMMAND), name, registry).await
}

async fn limiter_on(config: RedisConfig, name: &str, registry: &Arc<Registry>) -> RedisLimiter {
    let backend = RedisBackend::connect(config).await.unwrap();
    RedisLimiter::builder(name, per_second(1_000), backend)
        .degrade(Degrade::Local { instances: 1 })
        .probe_backoff(Duration::from_millis(20), Duration::from_millis(200))
        .registry(Arc::clone(registry))
        .build()
        .unwrap()
}

/// Polls (every 20 ms, at most 250 times: 5 s and more) until `done`.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..250 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what}: not within 250 polls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_degrade_impatient_callers_still_degrade_the_limiter_and_it_recovers() {
    let server = RedisServer::start();
    let registry = Arc::new(Registry::new());
    let limiter = limiter(&server, "impatient", &registry).await;
    let first = impatient(limiter.try_acquire("k")).await.map(|d| d.source);
    assert_eq!(first, Some(Source::Redis));

    server.signal("STOP");
    let mut degraded_after = None;
    for call in 1..=PATIENCE {
        if let Some(d) = impatient(limiter.try_acquire("k")).await {
            // Redis answers nothing: any decision is the policy's.
            assert_eq!(d.source, Source::Local, "{d:?}");
            assert!(d.allowed, "{d:?}");
            degraded_after = Some(call);
            break;
        }
    }
    let m = limiter.metrics();
    assert!(
        degraded_after.is_some(),
        "{PATIENCE} callers gave up on a stopped Redis and the limiter never degraded: {m:?}, \
         health {:?}",
        registry.health()
    );
    assert!(limiter.is_degraded());
    assert!(m.faults >= 1, "{m:?}");
    let health = registry.health();
    assert!(health.degraded, "{health:?}");
    assert!(
        health
            .reasons
            .iter()
            .any(|r| r.starts_with("redis_impatient: ")),
        "{health:?}"
    );
    // Degraded, requests are decided in process: of the next ten, only one
    // let through as a probe may wait out its caller's timeout.
    let mut answered = 0;
    for _ in 0..10 {
        if let Some(d) = impatient(limiter.try_acquire("k")).await {
            assert_eq!(d.source, Source::Local, "{d:?}");
            answered += 1;
        }
    }
    assert!(answered >= 5, "{answered} of 10 decided locally");

    // Redis answers again: the limiter finds it by itself.
    server.signal("CONT");
    until("the limiter recovers", || !limiter.is_degraded()).await;
    let health = registry.health();
    assert!(!health.degraded, "{health:?}");
    let d = impatient(limiter.try_acquire("k"))
        .await
        .expect("Redis answers within the caller's timeout");
    assert_eq!(d.source, Source::Redis, "{d:?}");
}

/// The same through a [`LeasedLimiter`]: its refills are the limiter's
/// round trips, given up on by the same impatient callers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_degrade_impatient_callers_still_degrade_a_leased_limiter_and_it_recovers() {
    let server = RedisServer::start();
    let registry = Arc::new(Registry::new());
    let limiter = limiter(&server, "impatient_lease", &registry).await;
    let leased = LeasedLimiter::new(limiter, "k", 5, Duration::from_secs(60)).unwrap();
    let first = impatient(leased.try_acquire()).await.map(|d| d.source);
    assert_eq!(first, Some(Source::Lease));

    server.signal("STOP");
    let mut degraded_after = None;
    for call in 1..=PATIENCE {
        match impatient(leased.try_acquire()).await {
            // The 4 tokens still held.
            Some(d) if d.source == Source::Lease => assert!(d.allowed, "{d:?}"),
            Some(d) => {
                assert_eq!(d.source, Source::Local, "{d:?}");
                degraded_after = Some(call);
                break;
            }
            None => {}
        }
    }
    let m = leased.limiter().metrics();
    assert!(
        degraded_after.is_some(),
        "{PATIENCE} callers gave up on a stopped Redis and the leased limiter never degraded: \
         {m:?}"
    );
    assert!(leased.limiter().is_degraded());
    assert!(m.faults >= 1, "{m:?}");
    assert!(registry.health().degraded);

    server.signal("CONT");
    until("the leased limiter recovers", || {
        !leased.limiter().is_degraded()
    })
    .await;
    assert!(!registry.health().degraded);
    let redis = leased.limiter().metrics().redis_decisions;
    let d = impatient(leased.try_acquire())
        .await
        .expect("a lease within the caller's timeout");
    assert!(d.allowed, "{d:?}");
    assert_eq!(d.source, Source::Lease, "{d:?}");
    assert!(
        leased.limiter().metrics().redis_decisions > redis,
        "a new lease"
    );
}

/// The fleet breaker, checked the same way (it passes on the code before
/// the limiter's fix: its background reconciliation, and the task that
/// gives back the trial slot of a caller gone, run their commands to
/// their own timeout): half-open trials whose callers give up before
/// their slot request's timeout, Redis stopped. The breaker degrades, its
/// trials are decided locally, and it recovers once Redis answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_degrade_impatient_callers_of_a_fleet_breaker_still_degrade_it() {
    let server = RedisServer::start();
    let backend = RedisBackend::connect(server.outage_config(COMMAND))
        .await
        .unwrap();
    let core = Arc::new(CircuitBreaker::new(
        Config::builder()
            .consecutive_failures(2)
            .open_for(Duration::from_millis(200).into())
            .half_open_permits(1)
            .build()
            .unwrap(),
    ));
    let breaker = FleetBreaker::builder("impatient", core, backend)
        .sync_interval(Duration::from_millis(200))
        .build()
        .await
        .unwrap();
    for _ in 0..2 {
        let _ = breaker.call(async { Err::<(), _>("down") }).await;
    }
    assert_eq!(breaker.state(), State::Open);
    until("the breaker half-opens", || {
        breaker.state() == State::HalfOpen
    })
    .await;
    let before = breaker.fleet_metrics();

    server.signal("STOP");
    let mut decided_after = None;
    for call in 1..=PATIENCE {
        let trial = tokio::time::timeout(CALLER, breaker.call(async { Ok::<_, &str>(()) })).await;
        if let Ok(result) = trial {
            assert!(result.is_ok(), "a local trial");
            decided_after = Some(call);
            break;
        }
    }
    let after = breaker.fleet_metrics();
    assert!(
        decided_after.is_some(),
        "{PATIENCE} trial callers gave up on a stopped Redis: {after:?}"
    );
    assert!(breaker.is_degraded(), "{after:?}");
    assert!(after.errors > before.errors, "{before:?} -> {after:?}");

    server.signal("CONT");
    until("the breaker recovers", || !breaker.is_degraded()).await;
    let done = tokio::time::timeout(CALLER, breaker.call(async { Ok::<_, &str>(()) })).await;
    assert!(matches!(done, Ok(Ok(()))), "{done:?}");
}

/// Impatient callers until one is decided locally (at most
/// [`PATIENCE`]); the limiter is then degraded, with a fault counted and
/// its health condition set.
async fn degraded_by_impatient_callers(limiter: &RedisLimiter, registry: &Registry, outage: &str) {
    let mut degraded = false;
    for _ in 0..PATIENCE {
        if let Some(d) = impatient(limiter.try_acquire("k")).await {
            // No answer from Redis before the limiter degraded (on a
            // blackholed connection, the new one that the connection's
            // watch makes after its connect timeout of silence answers).
            assert_eq!(d.source, Source::Local, "{outage}: {d:?}");
            degraded = true;
            break;
        }
    }
    let m = limiter.metrics();
    assert!(
        degraded,
        "{outage}: {PATIENCE} callers gave up and the limiter never degraded: {m:?}"
    );
    assert!(limiter.is_degraded(), "{outage}");
    assert!(m.faults >= 1, "{outage}: {m:?}");
    assert!(registry.health().degraded, "{outage}");
}

/// A connection that falls silent (an expired NAT entry, a partition):
/// impatient callers still degrade the limiter, and it recovers on a new
/// connection by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_degrade_impatient_callers_still_degrade_the_limiter_on_a_blackholed_connection() {
    let server = RedisServer::start();
    let proxy = SilencingProxy::start(server.port()).await;
    let registry = Arc::new(Registry::new());
    let config = RedisConfig::new(format!("redis://127.0.0.1:{}", proxy.port()))
        .timeout(COMMAND)
        .connect_timeout(Duration::from_millis(500))
        .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200));
    let limiter = limiter_on(config, "impatient_blackhole", &registry).await;
    let first = impatient(limiter.try_acquire("k")).await.map(|d| d.source);
    assert_eq!(first, Some(Source::Redis));
    proxy.silence();
    degraded_by_impatient_callers(&limiter, &registry, "blackholed").await;
    until("the limiter recovers on a new connection", || {
        !limiter.is_degraded()
    })
    .await;
    assert!(!registry.health().degraded);
    let d = impatient(limiter.try_acquire("k")).await.map(|d| d.source);
    assert_eq!(d, Some(Source::Redis));
}

/// Redis killed, then restarted (empty): impatient callers degrade the
/// limiter, which recovers by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_degrade_impatient_callers_still_degrade_the_limiter_when_redis_is_killed() {
    let mut server = RedisServer::start();
    let registry = Arc::new(Registry::new());
    let limiter = limiter(&server, "impatient_kill", &registry).await;
    let first = impatient(limiter.try_acquire("k")).await.map(|d| d.source);
    assert_eq!(first, Some(Source::Redis));
    server.kill();
    degraded_by_impatient_callers(&limiter, &registry, "killed").await;
    server.restart();
    until("the limiter recovers", || !limiter.is_degraded()).await;
    assert!(!registry.health().degraded);
    let d = impatient(limiter.try_acquire("k")).await.map(|d| d.source);
    assert_eq!(d, Some(Source::Redis));
}
