//! The Redis backend against a real redis-server: a fleet sharing one
//! limit, multi-rule atomicity, key expiry, `SCRIPT FLUSH`, credentials.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::redis_server::{RedisClock, RedisServer};
use fusebox::bucket::Quota;
use fusebox_std::backend::{
    Backend, BackendError, Degrade, KeyPrefix, RedisBackend, RedisConfig, RedisLimiter, Rule,
    Rules, Source,
};
use tokio::time::Instant;

/// A generous command timeout: these tests are about decisions, not
/// faults, and share two cores with compilers.
fn config(server: &RedisServer) -> RedisConfig {
    RedisConfig::new(server.url()).timeout(Duration::from_secs(2))
}

async fn connect(server: &RedisServer) -> RedisBackend {
    RedisBackend::connect(config(server))
        .await
        .expect("connect")
}

/// `t0` in µs: a realistic Unix time, for `decide_at`.
const T0: u64 = 1_800_000_000_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_limit_eight_instances_never_admit_more_than_the_quota_over_any_window() {
    let server = RedisServer::start();
    let (rate, burst) = (100u32, 20u32);
    let rules = Rules::single(
        "per_second",
        Quota::per_second(rate).unwrap().with_burst(burst).unwrap(),
    )
    .unwrap();
    let mut tasks = Vec::new();
    let run_for = Duration::from_millis(1_500);
    let clock = RedisClock::read(server.port());
    let start = Instant::now();
    for instance in 0..8 {
        // Eight instances: eight connections, eight limiters.
        let limiter = RedisLimiter::builder("fleet", rules.clone(), connect(&server).await)
            .degrade(Degrade::FailClosed)
            .build()
            .unwrap();
        tasks.push(tokio::spawn(async move {
            let mut admitted = Vec::new();
            let mut asked = 0u32;
            while start.elapsed() < run_for {
                let sent = start.elapsed();
                let d = limiter.try_acquire("shared").await.unwrap();
                let received = start.elapsed();
                asked += 1;
                assert_eq!(d.source, Source::Redis, "instance {instance}: {d:?}");
                if d.allowed {
                    admitted.push((sent, received));
                }
            }
            (admitted, asked, limiter.metrics())
        }));
    }
    let mut admitted = Vec::new();
    let mut asked = 0;
    for task in tasks {
        let (a, n, metrics) = task.await.unwrap();
        assert_eq!((metrics.faults, metrics.degraded_decisions), (0, 0));
        admitted.extend(a);
        asked += n;
    }
    // Each decision happened within [sent, received]: no window holds
    // more than burst + rate·T.
    let total = start.elapsed();
    let extra = clock.extra_tokens(rate.into());
    common::assert_window_bound(&mut admitted, burst.into(), rate.into(), extra);
    let bound =
        u64::from(burst) + (u128::from(rate) * total.as_micros() / 1_000_000) as u64 + extra;
    assert!(admitted.len() as u64 <= bound);
    // And the limit is used, not just refused: at least the burst plus
    // most of the rate over the run.
    assert!(
        admitted.len() as u64 >= u64::from(burst) + u64::from(rate),
        "{} of {asked}",
        admitted.len()
    );
    assert!(
        asked as usize > 4 * admitted.len(),
        "the fleet asked for more than it got"
    );
}

#[tokio::test]
async fn redis_limit_multi_rule_refusal_consumes_no_rule() {
    let server = RedisServer::start();
    let backend = connect(&server).await;
    let per_second = Rule::new("per_second", Quota::per_second(10).unwrap()).unwrap();
    let per_minute = Rule::new("per_minute", Quota::per_minute(3).unwrap()).unwrap();
    let both = Rules::new([per_second.clone(), per_minute.clone()]).unwrap();
    let d = backend.decide_at("api", "u1", &both, 3, T0).await.unwrap();
    assert!(d.allowed);
    assert_eq!(
        (d.remaining, d.rule),
        (0, 1),
        "per_minute binds with none left"
    );
    // per_minute is spent: refused, and per_second keeps its 7 tokens.
    let d = backend.decide_at("api", "u1", &both, 1, T0).await.unwrap();
    assert!(!d.allowed);
    assert_eq!(d.rule, 1);
    assert_eq!(d.retry_after, Duration::from_secs(20));
    let only_second = Rules::new([per_second]).unwrap();
    let d = backend
        .decide_at("api", "u1", &only_second, 7, T0)
        .await
        .unwrap();
    assert!(d.allowed, "the refused request took no per_second token");
    assert!(
        !backend
            .decide_at("api", "u1", &only_second, 1, T0)
            .await
            .unwrap()
            .allowed
    );
    // 20 s later per_minute has one token again and per_second is full.
    let later = T0 + 20_000_000;
    assert!(
        backend
            .decide_at("api", "u1", &both, 1, later)
            .await
            .unwrap()
            .allowed
    );
    // Another key is independent.
    assert!(
        backend
            .decide_at("api", "u2", &both, 3, T0)
            .await
            .unwrap()
            .allowed
    );
    // More than a burst is an error, not a wait.
    assert_eq!(
        backend.decide_at("api", "u3", &both, 4, T0).await,
        Err(BackendError::InsufficientCapacity {
            requested: 4,
            burst: 3
        })
    );
}

#[tokio::test]
async fn redis_limit_keys_expire_when_the_bucket_would_be_full() {
    let server = RedisServer::start();
    let backend =
        RedisBackend::connect(config(&server).prefix(KeyPrefix::new("tenant_a").unwrap()))
            .await
            .unwrap();
    let rules = Rules::new([
        Rule::new("per_second", Quota::per_second(4).unwrap()).unwrap(),
        Rule::new(
            "per_day",
            Quota::new(10_000, fusebox::Duration::from_secs(86_400)).unwrap(),
        )
        .unwrap(),
    ])
    .unwrap();
    backend
        .decide("api", "user:42}{x", &rules, 2)
        .await
        .unwrap();
    let mut conn = backend.connection();
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    keys.sort();
    assert_eq!(
        keys,
        [
            "tenant_a:{api:user%3A42%7D%7Bx}:per_day",
            "tenant_a:{api:user%3A42%7D%7Bx}:per_second"
        ]
    );
    let pttl = |key: &'static str| {
        let mut conn = backend.connection();
        async move {
            redis::cmd("PTTL")
                .arg(key)
                .query_async::<i64>(&mut conn)
                .await
                .unwrap()
        }
    };
    // Two tokens of 4/s: full again in 500 ms. Two of 10 000/day: 17.28 s.
    let second = pttl("tenant_a:{api:user%3A42%7D%7Bx}:per_second").await;
    assert!((400..=500).contains(&second), "{second}");
    let day = pttl("tenant_a:{api:user%3A42%7D%7Bx}:per_day").await;
    assert!((17_000..=17_280).contains(&day), "{day}");
}

/// `calls` of one command in `INFO commandstats`.
async fn calls(backend: &RedisBackend, command: &str) -> u64 {
    let mut conn = backend.connection();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .unwrap();
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

#[tokio::test]
async fn redis_limit_one_round_trip_per_decision() {
    let server = RedisServer::start();
    let backend = connect(&server).await;
    let rules = Rules::new([
        Rule::new("per_second", Quota::per_second(1_000).unwrap()).unwrap(),
        Rule::new("per_minute", Quota::per_minute(5_000).unwrap()).unwrap(),
        Rule::new(
            "per_day",
            Quota::new(100_000, fusebox::Duration::from_secs(86_400)).unwrap(),
        )
        .unwrap(),
    ])
    .unwrap();
    backend.decide("trips", "warm", &rules, 1).await.unwrap(); // loads the script
    let before = calls(&backend, "evalsha").await;
    let loads = calls(&backend, "script|load").await;
    assert_eq!(loads, 1, "NOSCRIPT on the first call, then SCRIPT LOAD");
    for i in 0..100 {
        backend
            .decide("trips", &format!("k{}", i % 7), &rules, 1)
            .await
            .unwrap();
    }
    // 100 decisions over three rules: 100 EVALSHA, no reload, no EVAL.
    // (The script's own GET and SET are counted in commandstats as well;
    // what the client sends is one EVALSHA per decision.)
    assert_eq!(calls(&backend, "evalsha").await - before, 100);
    assert_eq!(calls(&backend, "script|load").await, loads);
    assert_eq!(calls(&backend, "eval").await, 0);
}

#[tokio::test]
async fn redis_limit_survives_script_flush() {
    let server = RedisServer::start();
    let backend = connect(&server).await;
    let limiter = RedisLimiter::builder(
        "flush",
        Rules::single("per_second", Quota::per_second(5).unwrap()).unwrap(),
        backend.clone(),
    )
    .build()
    .unwrap();
    assert!(limiter.try_acquire("k").await.unwrap().allowed);
    let mut conn = backend.connection();
    let () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .unwrap();
    let d = limiter.try_acquire("k").await.unwrap();
    assert_eq!((d.allowed, d.source, d.remaining), (true, Source::Redis, 3));
    assert!(!limiter.is_degraded());
    assert_eq!(limiter.metrics().faults, 0);
}

#[tokio::test]
async fn redis_limit_wrong_password_is_a_clear_error_without_the_secret() {
    let capture = common::Capture::global();
    let mut server = RedisServer::start_with(&[
        "--user",
        "app",
        "on",
        ">right-horse-battery",
        "~*",
        "&*",
        "+@all",
    ]);
    let url = |password: &str| format!("redis://app:{password}@127.0.0.1:{}", server.port());
    let err = RedisBackend::connect(RedisConfig::new(url("wrong-staple-9f3")))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, BackendError::Auth(_)), "{err:?}");
    assert!(text.starts_with("redis refused the credentials"), "{text}");
    assert!(!text.contains("wrong-staple-9f3") && !format!("{err:?}").contains("wrong-staple-9f3"));

    // The right password works, and appears nowhere: not in Debug, not in
    // the health report or the logs of an outage.
    let config = RedisConfig::new(url("right-horse-battery")).timeout(Duration::from_millis(100));
    assert!(!format!("{config:?}").contains("right-horse-battery"));
    let backend = RedisBackend::connect(config)
        .await
        .expect("the right password");
    assert!(!format!("{backend:?}").contains("right-horse-battery"));
    let registry = Arc::new(fusebox_std::Registry::new());
    let rules = Rules::single("per_second", Quota::per_second(1).unwrap()).unwrap();
    let limiter = RedisLimiter::builder("acl_secret", rules, backend)
        .registry(Arc::clone(&registry))
        .build()
        .unwrap();
    assert_eq!(
        limiter.try_acquire("k").await.unwrap().source,
        Source::Redis
    );
    server.kill();
    assert_eq!(
        limiter.try_acquire("k").await.unwrap().source,
        Source::FailClosed
    );
    let health = serde_json::to_string(&registry.health()).unwrap();
    assert!(
        health.contains("redis_acl_secret") && !health.contains("right-horse-battery"),
        "{health}"
    );
    let logs = format!("{:?}", capture.with("limiter", "acl_secret"));
    assert!(
        logs.contains("degraded") && !logs.contains("right-horse-battery"),
        "{logs}"
    );
}

#[tokio::test]
async fn redis_limit_registry_sees_no_condition_while_redis_answers() {
    let server = RedisServer::start();
    let registry = Arc::new(fusebox_std::Registry::new());
    let limiter = RedisLimiter::builder(
        "healthy",
        Rules::single("per_second", Quota::per_second(5).unwrap()).unwrap(),
        connect(&server).await,
    )
    .registry(Arc::clone(&registry))
    .build()
    .unwrap();
    assert!(limiter.try_acquire("k").await.unwrap().allowed);
    assert!(!registry.health().degraded);
}

#[tokio::test]
async fn redis_limit_until_ready_sleeps_the_named_wait_and_honours_deadlines() {
    let server = RedisServer::start();
    let rules = Rules::single(
        "per_second",
        Quota::per_second(10).unwrap().with_burst(1).unwrap(),
    )
    .unwrap();
    let limiter = RedisLimiter::builder("waits", rules, connect(&server).await)
        .build()
        .unwrap();
    let start = Instant::now();
    limiter.until_ready("").await.unwrap(); // a limiter without keys: key ""
    let d = limiter.until_ready("").await.unwrap();
    assert!(d.allowed);
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(99) && waited < Duration::from_millis(400),
        "{waited:?}"
    );
    let soon = Instant::now() + Duration::from_millis(20);
    match limiter.until_n_ready_by("", 1, Some(soon)).await {
        Err(BackendError::DeadlineExceeded { retry_after }) => {
            assert!(
                retry_after > Duration::from_millis(20)
                    && retry_after <= Duration::from_millis(100)
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        limiter.until_n_ready_by("", 2, None).await,
        Err(BackendError::InsufficientCapacity {
            requested: 2,
            burst: 1
        })
    );
    let long_key = "k".repeat(300);
    assert!(matches!(
        limiter.try_acquire(&long_key).await,
        Err(BackendError::InvalidKey(_))
    ));
}

/// A server that wants a password, given none, accepts the connection and
/// refuses every command: `connect` says so at once (found by a hostile
/// review: the storm demo ran on, every decision without Redis).
#[tokio::test]
async fn redis_limit_a_missing_password_is_refused_at_connect() {
    let server = RedisServer::start_with(&["--requirepass", "s3cret-pw"]);
    let err = RedisBackend::connect(RedisConfig::new(server.url()))
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::Auth(_)), "{err:?}");
    let with = format!("redis://:s3cret-pw@127.0.0.1:{}", server.port());
    assert!(RedisBackend::connect(RedisConfig::new(with)).await.is_ok());
}
