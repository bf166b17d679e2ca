//! `RateLimitLayer::shared` (a `RedisLimiter`'s decision) under real axum
//! servers, over real HTTP, against a real redis-server: two servers on
//! two connections share one quota, the fields are the Redis decision's
//! (one policy member per rule, the binding rule's `RateLimit`), every
//! degrade policy over HTTP while Redis is killed or stalled and the
//! recovery after its restart, and bad keys handled as for `Keyed`.

use crate::common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::common::redis_server::{RedisClock, RedisServer};
use crate::tower_common::{get, serve, Reply};
use axum::routing::get as route;
use axum::Router;
use fusebox::bucket::Quota;
use fusebox_std::backend::{Degrade, RedisBackend, RedisConfig, RedisLimiter, Rule, Rules, Source};
use fusebox_std::tower::rate_limit::{key, BadKey};
use fusebox_std::tower::RateLimitLayer;
use fusebox_std::Registry;
use tokio::time::Instant;

/// The command timeout of the outage tests.
const TIMEOUT: Duration = Duration::from_millis(50);
/// Scheduling and HTTP slack on two shared cores.
const SLACK: Duration = Duration::from_millis(250);

fn app() -> Router {
    Router::new().route("/", route(|| async { "hello" }))
}

/// A generous timeout: the tests that are about decisions, not faults.
async fn backend(server: &RedisServer) -> RedisBackend {
    RedisBackend::connect(RedisConfig::new(server.url()).timeout(Duration::from_secs(2)))
        .await
        .expect("connect")
}

/// A backend with the outage tests' short timeout and fast reconnection.
async fn fast_backend(server: &RedisServer) -> RedisBackend {
    let config = RedisConfig::new(server.url())
        .timeout(TIMEOUT)
        .connect_timeout(Duration::from_millis(500))
        .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200));
    RedisBackend::connect(config).await.expect("connect")
}

fn limiter(name: &str, rules: Rules, backend: RedisBackend, policy: Degrade) -> Arc<RedisLimiter> {
    Arc::new(
        RedisLimiter::builder(name, rules, backend)
            .degrade(policy)
            .probe_backoff(Duration::from_millis(20), Duration::from_millis(200))
            .build()
            .expect("a limiter"),
    )
}

fn per_hour(n: u32) -> Rules {
    Rules::single("per_hour", Quota::per_hour(n).unwrap()).unwrap()
}

/// A server limited by `limiter`, keyed by `x-api-key`.
async fn server_for(limiter: &Arc<RedisLimiter>) -> SocketAddr {
    let layer = RateLimitLayer::shared(Arc::clone(limiter), key::header("x-api-key", 64))
        .legacy_headers(true);
    serve(app().layer(layer)).await
}

async fn get_key(addr: SocketAddr, api_key: &str) -> Reply {
    get(addr, "/", &[("x-api-key", api_key.as_bytes())]).await
}

fn has_fields(reply: &Reply) -> bool {
    reply.header("ratelimit").is_some() || reply.header("ratelimit-policy").is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_limit_tower_two_servers_never_admit_more_than_the_quota() {
    let redis = RedisServer::start();
    // Two instances: two connections, two limiters, two HTTP servers.
    let a = server_for(&limiter(
        "fleet",
        per_hour(30),
        backend(&redis).await,
        Degrade::FailClosed,
    ))
    .await;
    let b = server_for(&limiter(
        "fleet",
        per_hour(30),
        backend(&redis).await,
        Degrade::FailClosed,
    ))
    .await;
    let clients = (0..20).map(|client| {
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            for i in 0..5 {
                let addr = if (client + i) % 2 == 0 { a } else { b };
                statuses.push((addr, get_key(addr, "team").await.status));
            }
            statuses
        })
    });
    let mut statuses = Vec::new();
    for client in clients {
        statuses.extend(client.await.unwrap());
    }
    let admitted = |addr| {
        statuses
            .iter()
            .filter(|&&(at, s)| at == addr && s == 200)
            .count()
    };
    assert_eq!(statuses.len(), 100);
    assert_eq!(admitted(a) + admitted(b), 30, "one quota for the fleet");
    assert_eq!(statuses.iter().filter(|&&(_, s)| s == 429).count(), 70);
    // A third instance sees the same spent quota; another key has its own.
    let third = limiter(
        "fleet",
        per_hour(30),
        backend(&redis).await,
        Degrade::FailClosed,
    );
    let d = third.try_acquire("team").await.unwrap();
    assert_eq!(
        (d.allowed, d.remaining, d.source),
        (false, 0, Source::Redis)
    );
    assert_eq!(get_key(a, "other").await.status, 200);
    assert_eq!(
        get_key(b, "other").await.header("ratelimit"),
        Some("\"fleet.per_hour\";r=28;t=240")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_limit_tower_two_servers_hold_the_rate_over_any_window() {
    let redis = RedisServer::start();
    let (rate, burst) = (20u64, 5u32);
    let rules = Rules::single(
        "per_second",
        Quota::per_second(20).unwrap().with_burst(burst).unwrap(),
    )
    .unwrap();
    let a = server_for(&limiter(
        "rate",
        rules.clone(),
        backend(&redis).await,
        Degrade::FailClosed,
    ))
    .await;
    let b = server_for(&limiter(
        "rate",
        rules,
        backend(&redis).await,
        Degrade::FailClosed,
    ))
    .await;
    let run_for = Duration::from_millis(1_500);
    let clock = RedisClock::read(redis.port());
    let start = Instant::now();
    let clients = (0..6).map(|client| {
        tokio::spawn(async move {
            let mut admitted = Vec::new();
            let mut refused = 0;
            while start.elapsed() < run_for {
                let addr = if client % 2 == 0 { a } else { b };
                let sent = start.elapsed();
                let reply = get_key(addr, "k").await;
                match reply.status {
                    200 => admitted.push((sent, start.elapsed())),
                    429 => refused += 1,
                    other => panic!("status {other}"),
                }
            }
            (admitted, refused)
        })
    });
    let (mut admitted, mut refused) = (Vec::new(), 0);
    for client in clients {
        let (a, r) = client.await.unwrap();
        admitted.extend(a);
        refused += r;
    }
    assert!(
        refused > 50,
        "the clients pushed past the limit: {refused} refusals"
    );
    // At most the burst plus the rate over every window, across both
    // servers; and not far below what the rate allows over the run.
    common::assert_window_bound(
        &mut admitted,
        u64::from(burst),
        rate,
        clock.extra_tokens(rate),
    );
    let least = u64::from(burst) + rate * 12 / 10;
    assert!(
        admitted.len() as u64 >= least,
        "{} admitted, expected at least {least}",
        admitted.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_limit_tower_fields_are_the_redis_decision() {
    let redis = RedisServer::start();
    let limiter = limiter(
        "api",
        per_hour(5),
        backend(&redis).await,
        Degrade::FailClosed,
    );
    let addr = server_for(&limiter).await;
    let first = get_key(addr, "alice").await;
    assert_eq!((first.status, first.body.as_str()), (200, "hello"));
    assert_eq!(
        first.header("ratelimit-policy"),
        Some("\"api.per_hour\";q=5;w=3600")
    );
    // One token every 720 s; the test takes far less than a second.
    assert_eq!(
        first.header("ratelimit"),
        Some("\"api.per_hour\";r=4;t=720")
    );
    assert_eq!(first.header("x-ratelimit-limit"), Some("5"));
    assert_eq!(first.header("x-ratelimit-remaining"), Some("4"));
    assert_eq!(first.header("x-ratelimit-reset"), Some("720"));
    let second = get_key(addr, "alice").await;
    assert_eq!(
        second.header("ratelimit"),
        Some("\"api.per_hour\";r=3;t=1440")
    );
    // The limiter itself, outside HTTP, reads and charges the same bucket.
    let direct = limiter.try_acquire("alice").await.unwrap();
    assert_eq!(
        (direct.allowed, direct.remaining, direct.source),
        (true, 2, Source::Redis)
    );
    let fourth = get_key(addr, "alice").await;
    assert_eq!(
        fourth.header("ratelimit"),
        Some("\"api.per_hour\";r=1;t=2880")
    );
    let last = get_key(addr, "alice").await;
    assert_eq!(
        last.header("ratelimit"),
        Some("\"api.per_hour\";r=0;t=3600")
    );
    let refused = get_key(addr, "alice").await;
    assert_eq!(refused.status, 429);
    assert_eq!(
        refused.header("retry-after"),
        Some("720"),
        "rounded up, never early"
    );
    assert_eq!(refused.header("content-type"), Some("application/json"));
    assert_eq!(
        refused.header("ratelimit-policy"),
        Some("\"api.per_hour\";q=5;w=3600")
    );
    // Nothing left until the next token: `t` is the Retry-After (the
    // draft: a Retry-After should not point earlier than `t`).
    assert_eq!(
        refused.header("ratelimit"),
        Some("\"api.per_hour\";r=0;t=720")
    );
    assert_eq!(refused.header("x-ratelimit-remaining"), Some("0"));
    assert_eq!(
        refused.json(),
        serde_json::json!({"error": "rate_limited", "policy": "api", "retry_after": 720})
    );
    let m = limiter.metrics();
    assert_eq!(
        (m.redis_decisions, m.degraded_decisions, m.faults),
        (6, 0, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_limit_tower_several_rules_list_every_policy_and_name_the_binding_one() {
    let redis = RedisServer::start();
    let rules = Rules::new([
        Rule::new("burst", Quota::per_second(2).unwrap()).unwrap(),
        Rule::new("hourly", Quota::per_hour(3).unwrap()).unwrap(),
    ])
    .unwrap();
    let addr = server_for(&limiter(
        "multi",
        rules,
        backend(&redis).await,
        Degrade::FailClosed,
    ))
    .await;
    let policy = "\"multi.burst\";q=2;w=1, \"multi.hourly\";q=3;w=3600";
    let start = Instant::now();
    // burst: 1 left (full in 0.5 s); hourly: 2 left. The fewest: burst.
    let r1 = get_key(addr, "k").await;
    assert_eq!(r1.header("ratelimit-policy"), Some(policy));
    assert_eq!(r1.header("ratelimit"), Some("\"multi.burst\";r=1;t=1"));
    let r2 = get_key(addr, "k").await;
    assert_eq!(r2.header("ratelimit"), Some("\"multi.burst\";r=0;t=1"));
    // Refused by burst alone: hourly, which would admit, keeps its token.
    let r3 = get_key(addr, "k").await;
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "too slow for the burst rule: {:?}",
        start.elapsed()
    );
    assert_eq!(r3.status, 429);
    assert_eq!(r3.header("retry-after"), Some("1"));
    assert_eq!(r3.header("ratelimit-policy"), Some(policy));
    assert_eq!(r3.header("ratelimit"), Some("\"multi.burst\";r=0;t=1"));
    // burst is full again; hourly has one token left, then none.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let r4 = get_key(addr, "k").await;
    assert_eq!(r4.status, 200);
    assert_eq!(r4.header("ratelimit"), Some("\"multi.hourly\";r=0;t=3599"));
    // Refused by hourly: its first token is back 1 200 s after r1.
    let r5 = get_key(addr, "k").await;
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(r5.status, 429);
    assert_eq!(r5.header("retry-after"), Some("1199"));
    assert_eq!(r5.header("ratelimit"), Some("\"multi.hourly\";r=0;t=1199"));
    assert_eq!(r5.json()["retry_after"], 1199);
}

/// One request, timed from the client: never held longer than the
/// command timeout (plus slack).
async fn timed(addr: SocketAddr) -> Reply {
    let start = Instant::now();
    let reply = get_key(addr, "k").await;
    assert!(
        start.elapsed() <= TIMEOUT + SLACK,
        "held {:?}",
        start.elapsed()
    );
    reply
}

/// Requests every 5 ms for `span`.
async fn during(addr: SocketAddr, span: Duration) -> Vec<Reply> {
    let start = Instant::now();
    let mut out = Vec::new();
    while start.elapsed() < span {
        out.push(timed(addr).await);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    out
}

/// A layer with `policy` over a limit of 100 per hour; Redis is killed
/// for 600 ms of requests, then restarted. Returns the outage's replies
/// (checked: within the timeout; health degraded) after checking that
/// Redis decides again, on a fresh bucket, after the restart.
async fn outage(name: &str, policy: Degrade) -> Vec<Reply> {
    let mut redis = RedisServer::start();
    let registry = Arc::new(Registry::new());
    let limiter = Arc::new(
        RedisLimiter::builder(name, per_hour(100), fast_backend(&redis).await)
            .degrade(policy)
            .probe_backoff(Duration::from_millis(20), Duration::from_millis(200))
            .registry(Arc::clone(&registry))
            .build()
            .unwrap(),
    );
    let addr = server_for(&limiter).await;
    let before = timed(addr).await;
    assert_eq!(before.status, 200);
    let fields = format!("\"{name}.per_hour\";r=99;t=36");
    assert_eq!(before.header("ratelimit"), Some(fields.as_str()));
    assert_eq!(timed(addr).await.status, 200);

    redis.kill();
    let replies = during(addr, Duration::from_millis(600)).await;
    assert!(replies.len() > 20, "{} requests", replies.len());
    assert!(limiter.is_degraded());
    assert!(
        registry.health().degraded,
        "{:?}",
        registry.health().reasons
    );

    redis.restart();
    let start = Instant::now();
    let recovered = loop {
        let reply = timed(addr).await;
        if reply.status == 200 && has_fields(&reply) {
            break reply;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "redis decisions did not resume"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    // The restarted Redis kept nothing: a fresh bucket, charged once.
    assert_eq!(recovered.header("ratelimit"), Some(fields.as_str()));
    assert!(!limiter.is_degraded());
    assert!(!registry.health().degraded);
    replies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_limit_tower_outage_fail_closed_answers_503_until_redis_is_back() {
    let replies = outage("closed", Degrade::FailClosed).await;
    // `kill` reaps the server before the first of them: every one is the
    // policy's.
    for reply in &replies {
        assert_eq!(reply.status, 503, "{reply:?}");
        assert!(!has_fields(reply), "{reply:?}");
        // The wait until the next probe: at most the 200 ms backoff.
        let wait = reply.header("retry-after").expect("a Retry-After");
        assert!(wait == "0" || wait == "1", "{wait}");
        let body = reply.json();
        assert_eq!(body["error"], "limiter_unavailable");
        assert_eq!(body["policy"], "closed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_limit_tower_outage_fail_open_admits_without_fields() {
    let replies = outage("open", Degrade::FailOpen).await;
    assert!(replies.iter().all(|r| r.status == 200 && r.body == "hello"));
    assert!(replies.iter().all(|r| !has_fields(r)), "{replies:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_limit_tower_outage_local_keeps_the_instance_share() {
    // 100 per hour among 4 instances: a local bucket of 100 per 4 h
    // (one token every 144 s), burst 25.
    let replies = outage("local", Degrade::Local { instances: 4 }).await;
    // The local burst, then refusals until a token is back in 144 s (the
    // outage lasts 600 ms): exactly, however many requests it saw.
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    let expected: Vec<u16> = (0..replies.len())
        .map(|i| if i < 25 { 200 } else { 429 })
        .collect();
    assert_eq!(statuses, expected);
    for reply in &replies {
        assert!(!has_fields(reply), "{reply:?}");
    }
    for reply in replies.iter().filter(|r| r.status == 429) {
        assert_eq!(reply.header("retry-after"), Some("144"));
        assert_eq!(reply.json()["error"], "rate_limited");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_limit_tower_stalled_redis_never_holds_a_request() {
    let redis = RedisServer::start();
    let limiter = limiter(
        "stalled",
        per_hour(100),
        fast_backend(&redis).await,
        Degrade::FailClosed,
    );
    let addr = server_for(&limiter).await;
    assert_eq!(timed(addr).await.status, 200);
    redis.signal("STOP"); // accepts, answers nothing
    let replies = during(addr, Duration::from_millis(400)).await;
    assert!(replies.len() > 10);
    assert!(replies.iter().all(|r| r.status == 503), "{replies:?}");
    redis.signal("CONT");
    let start = Instant::now();
    while timed(addr).await.status != 200 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "redis decisions did not resume"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // One probe per interval at most: far fewer faults than requests.
    let m = limiter.metrics();
    assert!(m.faults < m.degraded_decisions / 2, "{m:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_limit_tower_bad_keys_are_handled_as_for_keyed() {
    let redis = RedisServer::start();
    let limiter = limiter(
        "keys",
        per_hour(2),
        backend(&redis).await,
        Degrade::FailClosed,
    );
    // A bound past what a Redis key may hold (256 bytes).
    let reject = RateLimitLayer::shared(Arc::clone(&limiter), key::header("x-api-key", 1_000));
    let strict = serve(app().layer(reject.clone())).await;
    let missing = get(strict, "/", &[]).await;
    assert_eq!(missing.status, 400);
    assert_eq!(
        missing.json(),
        serde_json::json!({"error": "bad_key", "policy": "keys", "reason": "missing"})
    );
    let long = get_key(strict, &"k".repeat(300)).await;
    assert_eq!(long.status, 400);
    assert_eq!(long.json()["reason"], "too_long");
    let not_utf8 = get(strict, "/", &[("x-api-key", b"\xff\xfe")]).await;
    assert_eq!(not_utf8.json()["reason"], "not_utf8");
    // None of them reached Redis.
    assert_eq!(limiter.metrics().redis_decisions, 0);
    let mut conn = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: i64 = redis::cmd("DBSIZE").query_async(&mut conn).await.unwrap();
    assert_eq!(keys, 0);

    // Charged to one default key instead: its own bucket in Redis.
    let lenient =
        serve(app().layer(reject.on_bad_key(BadKey::Default("anonymous".to_owned())))).await;
    let statuses = [
        get(lenient, "/", &[]).await.status,
        get_key(lenient, &"k".repeat(300)).await.status,
        get(lenient, "/", &[]).await.status,
    ];
    assert_eq!(statuses, [200, 200, 429]);
    let exists: i64 = redis::cmd("EXISTS")
        .arg("fusebox:{keys:anonymous}:per_hour")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(exists, 1);
    assert_eq!(
        get_key(lenient, "alice").await.header("ratelimit"),
        Some("\"keys.per_hour\";r=1;t=1800")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_limit_tower_keys_by_forwarded_ip() {
    let redis = RedisServer::start();
    let limiter = limiter(
        "per_ip",
        per_hour(1),
        backend(&redis).await,
        Degrade::FailClosed,
    );
    let addr = serve(app().layer(RateLimitLayer::shared(limiter, key::forwarded_ip(1)))).await;
    let from = |ip: &'static str| async move {
        get(
            addr,
            "/",
            &[("x-forwarded-for", format!("10.0.0.1, {ip}").as_bytes())],
        )
        .await
        .status
    };
    assert_eq!(
        [from("203.0.113.9").await, from("203.0.113.9").await],
        [200, 429]
    );
    assert_eq!(
        from("198.51.100.7").await,
        200,
        "another client, its own bucket"
    );
    assert_eq!(get(addr, "/", &[]).await.status, 400);
}
