//! Corrupt or hostile values under a limiter's keys: the script replaces
//! them by a drained bucket (never a full one), the limiter counts them
//! and logs once; nothing panics, nothing opens wide.

mod common;

use std::time::Duration;

use common::redis_server::RedisServer;
use common::Capture;
use fusebox::bucket::Quota;
use fusebox_std::backend::{
    storage_keys, Backend, KeyPrefix, RedisBackend, RedisConfig, RedisLimiter, Rule, Rules, Source,
};

async fn connect(server: &RedisServer) -> RedisBackend {
    RedisBackend::connect(RedisConfig::new(server.url()).timeout(Duration::from_secs(2)))
        .await
        .unwrap()
}

/// Writes a hostile value with raw commands.
async fn plant(backend: &RedisBackend, key: &str, how: &[&str]) {
    let mut conn = backend.connection();
    let _: () = redis::cmd("DEL")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut cmd = redis::cmd(how[0]);
    cmd.arg(key);
    for arg in &how[1..] {
        cmd.arg(*arg);
    }
    let _: redis::Value = cmd.query_async(&mut conn).await.unwrap();
}

#[tokio::test]
async fn redis_limit_corrupt_values_are_replaced_by_a_drained_bucket() {
    let capture = Capture::global();
    let server = RedisServer::start();
    let backend = connect(&server).await;
    let rules = Rules::single("per_second", Quota::per_second(10).unwrap()).unwrap();
    let limiter = RedisLimiter::builder("corrupt_case", rules.clone(), backend.clone())
        .build()
        .unwrap();
    let hostile: &[&[&str]] = &[
        &["SET", "hello world"],
        &["SET", ""],
        &["LPUSH", "a", "b"],
        &["HSET", "tat", "1"],
        &["SADD", "x"],
        &["SET", "g1:99999999999999999999:0:1:100000:10"], // past 2^53
        &["SET", "g1:9999999999999999:0:1:100000:10"],     // absurd future
        &["SET", "g1:1:7:1:100000:10"],                    // frac >= scale
        &["SET", "g1:-5:0:1:100000:10"],
        &["SET", "g1:1e300:0:1:100000:10"],
        &["SET", "g1:1:0:0:100000:10"],             // scale zero
        &["SET", "g1:1:0:1:100000:0"],              // burst zero
        &["SET", "g1:1:0:1:0:10"],                  // interval zero
        &["SET", "g1:1:0:1:4503599627370497:1"],    // capacity past 2^52
        &["SET", "v0:1800000000000000"],            // an older layout
        &["SET", "g1:1800000000000000:0:1:100000"], // one field short
    ];
    let key = &storage_keys(backend.prefix(), "corrupt_case", "victim", &rules).unwrap()[0];
    for (i, how) in hostile.iter().enumerate() {
        plant(&backend, key, how).await;
        let d = limiter.try_acquire("victim").await.unwrap();
        assert_eq!(
            (d.allowed, d.source, d.corrupt),
            (false, Source::Redis, 1),
            "{how:?}: {d:?}"
        );
        assert!(
            d.retry_after <= Duration::from_millis(100),
            "{how:?}: refills from empty, {d:?}"
        );
        let mut conn = backend.connection();
        let value: String = redis::cmd("GET")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(value.starts_with("g1:"), "{how:?} replaced by {value}");
        let pttl: i64 = redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!((1..=1_000).contains(&pttl), "{how:?}: {pttl}");
        assert_eq!(limiter.metrics().corrupt_values, i as u64 + 1);
    }
    // Ahead of now by more than the rule ever drains (plus its 60 s of
    // clock skew), yet under the 4.46-year bound: forged, or a Redis clock
    // gone back. Counted and replaced as well; left in place it refused
    // the key until the clock caught up (found by a hostile review).
    let mut conn = backend.connection();
    let (secs, _): (u64, u64) = redis::cmd("TIME").query_async(&mut conn).await.unwrap();
    for ahead_s in [3_600, 86_400, 86_400 * 365] {
        let forged = format!("g1:{}:0:1:100000:10", (secs + ahead_s) * 1_000_000);
        plant(&backend, key, &["SET", &forged]).await;
        let d = limiter.try_acquire("victim").await.unwrap();
        assert_eq!((d.allowed, d.corrupt), (false, 1), "{forged}: {d:?}");
        let pttl: i64 = redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!((1..=1_000).contains(&pttl), "{forged}: {pttl}");
    }
    let counted = hostile.len() + 3;
    assert_eq!(limiter.metrics().corrupt_values, counted as u64);
    // The replaced state is a working bucket: full again after a second.
    tokio::time::sleep(Duration::from_millis(1_010)).await;
    let d = limiter.try_acquire_n("victim", 10).await.unwrap();
    assert_eq!((d.allowed, d.corrupt), (true, 0));
    // Counted in the limiter's Prometheus text.
    let text = limiter.to_prometheus();
    let line =
        format!("fusebox_redis_limiter_corrupt_values_total{{name=\"corrupt_case\"}} {counted}\n");
    assert!(text.contains(&line), "{text}");
    // Logged once, whatever the count.
    let warnings = capture.with("limiter", "corrupt_case");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(!limiter.is_degraded());
}

#[tokio::test]
async fn redis_limit_corrupt_rule_blocks_a_multi_rule_request_without_consuming_the_others() {
    let server = RedisServer::start();
    let backend = connect(&server).await;
    let rules = Rules::new([
        Rule::new("per_second", Quota::per_second(10).unwrap()).unwrap(),
        Rule::new("per_hour", Quota::per_hour(100).unwrap()).unwrap(),
    ])
    .unwrap();
    let keys = storage_keys(&KeyPrefix::default(), "multi", "u", &rules).unwrap();
    plant(&backend, &keys[1], &["SET", "garbage"]).await;
    let d = backend.decide("multi", "u", &rules, 1).await.unwrap();
    assert_eq!((d.allowed, d.rule, d.corrupt), (false, 1, 1));
    // per_second took nothing: its key was never written.
    let mut conn = backend.connection();
    let exists: i64 = redis::cmd("EXISTS")
        .arg(&keys[0])
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(exists, 0);
}

#[tokio::test]
async fn redis_limit_changed_quota_carries_the_drain_over_without_corruption() {
    let server = RedisServer::start();
    let backend = connect(&server).await;
    let t0 = 1_800_000_000_000_000;
    let old = Rules::single("per_second", Quota::per_second(10).unwrap()).unwrap();
    assert!(
        backend
            .decide_at("requota", "u", &old, 10, t0)
            .await
            .unwrap()
            .allowed
    );
    // Raised to 100/s: the old drain (1 s) carries over as time, clamped
    // to the new bucket (full in 1 s as well): nothing is forgiven.
    let raised = Rules::single("per_second", Quota::per_second(100).unwrap()).unwrap();
    let d = backend
        .decide_at("requota", "u", &raised, 1, t0)
        .await
        .unwrap();
    assert_eq!((d.allowed, d.corrupt), (false, 0));
    assert_eq!(d.retry_after, Duration::from_millis(10));
    // The same rate with a smaller burst: clamped, not corrupt.
    let small = Rules::single(
        "per_second",
        Quota::per_second(10).unwrap().with_burst(2).unwrap(),
    )
    .unwrap();
    let d = backend
        .decide_at("requota", "u", &small, 1, t0 + 10_000)
        .await
        .unwrap();
    assert_eq!(
        (d.allowed, d.corrupt, d.retry_after),
        (false, 0, Duration::from_millis(100))
    );
    // Lowered to 1/min, burst 1: the drain is clamped to the new capacity.
    let lowered = Rules::single("per_second", Quota::per_minute(1).unwrap()).unwrap();
    let d = backend
        .decide_at("requota", "u", &lowered, 1, t0)
        .await
        .unwrap();
    assert_eq!((d.allowed, d.corrupt), (false, 0));
    assert!(d.retry_after <= Duration::from_secs(60));
    // Spent under 10 an hour, then 10 a second: refused at once (the drain
    // carried over, clamped to the new bucket's second), and admitted a
    // second later. The carried-over state is written back on the refusal:
    // read again as it was, the hour's drain refused the key until it ran
    // out (found by a review of the fix for far-ahead states).
    let hourly = Rules::single("per_hour", Quota::per_hour(10).unwrap()).unwrap();
    let fast = Rules::single("per_hour", Quota::per_second(10).unwrap()).unwrap();
    assert!(
        backend
            .decide_at("raise", "u", &hourly, 10, t0)
            .await
            .unwrap()
            .allowed
    );
    let d = backend.decide_at("raise", "u", &fast, 1, t0).await.unwrap();
    assert_eq!((d.allowed, d.corrupt), (false, 0));
    assert!(d.retry_after <= Duration::from_millis(100), "{d:?}");
    let d = backend
        .decide_at("raise", "u", &fast, 1, t0 + 1_100_000)
        .await
        .unwrap();
    assert_eq!((d.allowed, d.corrupt), (true, 0), "{d:?}");
}

#[tokio::test]
async fn redis_limit_values_of_earlier_script_versions_are_read_as_they_were_meant() {
    // The stored layout is the one every earlier version wrote
    // (`g1:<tat_us>:<frac>:<scale>:<interval>:<burst>`): values written by
    // an older instance during a rolling upgrade are neither corrupt nor
    // forgiven. 10/s: scale 1, interval 100 000 µs, burst 10.
    let server = RedisServer::start();
    let backend = connect(&server).await;
    let rules = Rules::single("per_second", Quota::per_second(10).unwrap()).unwrap();
    let t0: u64 = 1_800_000_000_000_000;
    let drained = t0 + 1_000_000;
    for (i, value) in [
        format!("g1:{drained}:0:1:100000:10"),
        // The same quota spelled another way: read by the full parse.
        format!("g1:{drained}:0:001:0100000:10"),
    ]
    .iter()
    .enumerate()
    {
        let user = format!("old{i}");
        let key = &storage_keys(backend.prefix(), "compat", &user, &rules).unwrap()[0];
        plant(&backend, key, &["SET", value]).await;
        let d = backend
            .decide_at("compat", &user, &rules, 1, t0)
            .await
            .unwrap();
        assert_eq!(
            (d.allowed, d.corrupt, d.retry_after, d.remaining),
            (false, 0, Duration::from_millis(100), 0),
            "{value}"
        );
        let d = backend
            .decide_at("compat", &user, &rules, 3, t0 + 300_000)
            .await
            .unwrap();
        assert_eq!((d.allowed, d.corrupt, d.remaining), (true, 0, 0), "{value}");
    }
}

/// A stored time ahead of Redis's clock by more than the rule's drain,
/// yet within the minute of clock step the script tolerates (a failover
/// to a server whose clock is behind, an NTP step back): every request
/// is refused until the clock catches up, but a peek (`n = 0`) is
/// "always admitted" (`RedisLimiter::try_acquire_n`), with nothing left.
/// Before, the script refused it as it refused a request (found by a
/// hostile review).
#[tokio::test]
async fn redis_limit_a_peek_is_admitted_while_the_stored_time_is_ahead_of_the_clock() {
    let server = RedisServer::start();
    let backend = connect(&server).await;
    let rules = Rules::single("per_second", Quota::per_second(10).unwrap()).unwrap();
    let limiter = RedisLimiter::builder("stepped", rules.clone(), backend.clone())
        .build()
        .unwrap();
    let key = &storage_keys(backend.prefix(), "stepped", "k", &rules).unwrap()[0];
    let mut conn = backend.connection();
    let (secs, _): (u64, u64) = redis::cmd("TIME").query_async(&mut conn).await.unwrap();
    // 10/s: scale 1, interval 100 000 µs, burst 10 (a 1 s drain); 30 s ahead.
    let ahead = format!("g1:{}:0:1:100000:10", (secs + 30) * 1_000_000);
    plant(&backend, key, &["SET", &ahead]).await;
    let d = limiter.try_acquire("k").await.unwrap();
    assert_eq!((d.allowed, d.source, d.corrupt), (false, Source::Redis, 0));
    let peek = limiter.try_acquire_n("k", 0).await.unwrap();
    assert_eq!(
        (peek.allowed, peek.source, peek.remaining, peek.retry_after),
        (true, Source::Redis, 0, Duration::ZERO),
        "{peek:?}"
    );
    // The peek took nothing and wrote nothing: the state is as planted.
    let value: String = redis::cmd("GET")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(value, ahead);
    assert_eq!(limiter.metrics().admitted, 0);
}
