//! Hostile durations through the public API: `Duration::MAX` (or any span
//! an instant cannot hold) given to a builder or a config is clamped or
//! means "never", and never panics. Each test panicked before its fix.
//! Paused tokio time, except where Redis is involved (a private
//! redis-server, or a closed loopback port).

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use crate::common::redis_server::RedisServer;
use fusebox::bucket::Quota;
use fusebox_std::backend::{
    BackendError, Degrade, FleetConfig, FleetPercentiles, LeasedLimiter, RedisBackend, RedisConfig,
    RedisLimiter, Rules, Source,
};
use fusebox_std::monitor::{
    CheckError, CheckSpec, FnCheck, HealthCheck, HealthMonitor, RecoveryAction, RecoveryRule,
};
use fusebox_std::policy::{
    ExponentialBackoffMaker, Jitter, LimitError, Limiter, Retry, RetryPredicate, Stop,
};
use fusebox_std::{Registry, TrackerConfig};
use tokio::time::{sleep, Instant};

/// Just short of the far future (~30 years) a span too long for an
/// instant is clamped to.
const NEARLY_FAR: Duration = Duration::from_secs(86_400 * 365 * 29);
/// Just past it.
const PAST_FAR: Duration = Duration::from_secs(86_400 * 365 * 31);

fn backoff(base: Duration, max: Duration) -> ExponentialBackoffMaker {
    ExponentialBackoffMaker::new(base, 2.0, max)
        .expect("a valid backoff")
        .with_jitter(Jitter::None)
}

#[tokio::test(start_paused = true)]
async fn retry_a_deadline_of_duration_max_is_no_deadline() {
    let retry = Retry::builder()
        .max_attempts(3)
        .backoff(backoff(Duration::from_millis(10), Duration::from_secs(1)))
        .deadline(Duration::MAX)
        .build();
    let start = Instant::now();
    let calls = AtomicUsize::new(0);
    let result = retry
        .call(|| {
            let n = calls.fetch_add(1, SeqCst);
            async move {
                if n < 2 {
                    Err("down")
                } else {
                    Ok(n)
                }
            }
        })
        .await;
    assert_eq!(result.unwrap(), 2);
    assert_eq!(start.elapsed(), Duration::from_millis(10 + 20));
}

/// Retries everything, naming the longest wait there is.
struct Forever;

impl RetryPredicate<&'static str> for Forever {
    fn should_retry(&self, _: &&'static str) -> bool {
        true
    }
    fn retry_after(&self, _: &&'static str) -> Option<Duration> {
        Some(Duration::MAX)
    }
}

#[tokio::test(start_paused = true)]
async fn retry_a_wait_of_duration_max_stops_at_the_deadline_or_waits_for_the_far_future() {
    // A backoff capped at (and starting from) `Duration::MAX`.
    let retry = Retry::builder()
        .max_attempts(2)
        .backoff(backoff(Duration::MAX, Duration::MAX))
        .deadline(Duration::from_secs(3_600))
        .build();
    let start = Instant::now();
    let e = retry
        .call(|| async { Err::<(), _>("down") })
        .await
        .unwrap_err();
    assert_eq!((e.attempts, e.stop), (1, Stop::Deadline));
    assert_eq!(start.elapsed(), Duration::ZERO, "stopped at once");
    // A predicate's Retry-After of `Duration::MAX`, no deadline: past the
    // default cap on a Retry-After (60 s), it stops at once.
    let retry = Retry::builder().max_attempts(2).retry_if(Forever).build();
    let start = Instant::now();
    let e = retry
        .call(|| async { Err::<(), _>("down") })
        .await
        .unwrap_err();
    assert_eq!((e.attempts, e.stop), (1, Stop::RetryAfterTooLong));
    assert_eq!(start.elapsed(), Duration::ZERO, "stopped at once");
    // With the cap lifted to `Duration::MAX`: it waits for the far future,
    // never a panic on the overflow.
    let retry = Retry::builder()
        .max_attempts(2)
        .retry_if(Forever)
        .max_retry_after(Duration::MAX)
        .build();
    let calls = AtomicUsize::new(0);
    let waiting = retry.call(|| {
        calls.fetch_add(1, SeqCst);
        async { Err::<(), _>("down") }
    });
    assert!(tokio::time::timeout(NEARLY_FAR, waiting).await.is_err());
    assert_eq!(calls.load(SeqCst), 1);
}

/// A check counting its runs in `runs`, passing or not.
fn counting(runs: &Arc<AtomicUsize>, pass: bool) -> impl HealthCheck {
    let runs = Arc::clone(runs);
    FnCheck::new(move || {
        runs.fetch_add(1, SeqCst);
        async move {
            if pass {
                Ok(None)
            } else {
                Err(CheckError::other("down"))
            }
        }
    })
}

#[tokio::test(start_paused = true)]
async fn monitor_intervals_and_cooldowns_of_duration_max_mean_the_far_future() {
    let runs: Vec<_> = (0..3).map(|_| Arc::new(AtomicUsize::new(0))).collect();
    let action = RecoveryAction::new("reconnect", || async {
        sleep(Duration::from_millis(1)).await; // ends after the start
        Err::<(), _>("still down")
    });
    let rule = RecoveryRule::new(1, action).cooldown(Duration::MAX);
    // Staggered starts: check i of 3 first runs `interval × i / 3` after
    // spawn (`Duration::MAX × 2` overflowed), then every interval.
    let monitor = HealthMonitor::new()
        .check(
            CheckSpec::new("down", counting(&runs[0], false))
                .interval(Duration::MAX)
                .recovery(rule),
        )
        .check(CheckSpec::new("b", counting(&runs[1], true)).interval(Duration::MAX))
        .check(CheckSpec::new("c", counting(&runs[2], true)).interval(Duration::MAX))
        .spawn();
    sleep(Duration::from_secs(1)).await;
    let status = monitor.status();
    let recovery = status.checks[0].recovery.clone().unwrap();
    assert_eq!((status.checks[0].runs, recovery.episode_attempts), (1, 1));
    assert_eq!(recovery.next_attempt_at, Some(Duration::MAX), "saturated");
    assert_eq!((status.checks[1].runs, status.checks[2].runs), (0, 0));
    // ~30 years on, "down" runs again and "b" and "c" run (their first
    // runs, MAX / 3 and 2 × MAX / 3 away, clamped to the far future); no
    // task panicked on the way.
    sleep(PAST_FAR).await;
    let counts: Vec<usize> = runs.iter().map(|r| r.load(SeqCst)).collect();
    assert_eq!(counts, [2, 1, 1]);
    monitor.stop().await;
}

/// A limiter `api` probing Redis every `Duration::MAX`, on a backend
/// whose Redis is a closed loopback port.
fn unreachable(probe: Duration) -> RedisLimiter {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let config = RedisConfig::new(format!("redis://127.0.0.1:{port}"))
        .timeout(Duration::from_millis(50))
        .connect_timeout(Duration::from_millis(50));
    let backend = RedisBackend::connect_lazy(config).expect("a valid URL");
    let rules = Rules::single("per_second", Quota::per_second(100).unwrap()).unwrap();
    RedisLimiter::builder("api", rules, backend)
        .degrade(Degrade::FailClosed)
        .probe_backoff(probe, probe)
        .build()
        .expect("a valid limiter")
}

#[tokio::test]
async fn redis_limit_a_probe_backoff_of_duration_max_fails_closed_until_the_far_future() {
    let limiter = Arc::new(unreachable(Duration::MAX));
    // The fault starts an outage whose next probe is past any instant.
    let d = limiter.try_acquire("k").await.unwrap();
    assert!(!d.allowed && d.source == Source::FailClosed, "{d:?}");
    assert!(d.retry_after > NEARLY_FAR, "{d:?}");
    assert!(limiter.is_degraded());
    // Waits on it give up at their deadline at once.
    let soon = Instant::now() + Duration::from_secs(1);
    let e = limiter
        .until_n_ready_by("k", 1, Some(soon))
        .await
        .unwrap_err();
    assert!(matches!(e, BackendError::DeadlineExceeded { .. }), "{e:?}");
    let waiting = Limiter::shared(Arc::clone(&limiter));
    let e = waiting.until_n_ready_by(1, Some(soon)).await.unwrap_err();
    assert!(matches!(e, LimitError::DeadlineExceeded { .. }), "{e:?}");
    assert!(Instant::now() < soon);
}

async fn backend(server: &RedisServer) -> RedisBackend {
    RedisBackend::connect(RedisConfig::new(server.url()).timeout(Duration::from_secs(2)))
        .await
        .expect("connect")
}

#[tokio::test]
async fn redis_limit_a_lease_ttl_of_duration_max_keeps_the_lease() {
    let server = RedisServer::start();
    let rules = Rules::single("per_second", Quota::per_second(100).unwrap()).unwrap();
    let limiter = RedisLimiter::builder("leased", rules, backend(&server).await)
        .build()
        .unwrap();
    let leased = LeasedLimiter::new(limiter, "k", 10, Duration::MAX).unwrap();
    for _ in 0..10 {
        let d = leased.try_acquire().await.unwrap();
        assert!(d.allowed && d.source == Source::Lease, "{d:?}");
        assert!(d.reset > NEARLY_FAR, "kept ~30 years: {d:?}");
    }
    assert_eq!(leased.limiter().metrics().redis_decisions, 1, "one lease");
}

#[tokio::test]
async fn redis_fleet_an_interval_of_duration_max_pushes_once_with_a_clamped_expiry() {
    let server = RedisServer::start();
    let registry = Registry::new();
    let config = TrackerConfig {
        sample_rate: 1.0,
        ..TrackerConfig::default()
    };
    let tracker = registry.tracker("http", config).unwrap();
    let guard = tracker.track_operation("checkout");
    sleep(Duration::from_millis(2)).await;
    drop(guard);
    // The expiry follows: 3 × `Duration::MAX`, saturating.
    let config = FleetConfig::new("pod-0").unwrap().interval(Duration::MAX);
    let fleet = Arc::new(FleetPercentiles::new(
        "http",
        tracker,
        &backend(&server).await,
        config,
    ));
    // tokio's interval panicked on its first tick; Redis refused
    // `PEXPIRE i64::MAX` ("invalid expire time") on every push.
    let task = fleet.spawn();
    let start = Instant::now();
    while !fleet.report().available {
        assert!(!task.is_finished(), "the task ended");
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            fleet.report()
        );
        sleep(Duration::from_millis(10)).await;
    }
    assert!(!task.is_finished());
    task.abort();
    assert_eq!(fleet.report().series["checkout"].instances, 1);
    let mut conn = redis::Client::open(server.url().as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let pttl: i64 = redis::cmd("PTTL")
        .arg(&keys[0])
        .query_async(&mut conn)
        .await
        .unwrap();
    let century_ms = 100 * 365 * 86_400 * 1_000;
    assert!(pttl > century_ms - 60_000 && pttl <= century_ms, "{pttl}");
}
