//! The `Shared` kind without a Redis server (a backend pointed at a closed
//! port: every decision is the degrade policy's): the readiness contract,
//! the outage responses, bad keys, and the fields a Redis decision
//! becomes. `tests/tests/redis_limit_tower.rs` runs it against Redis.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use fusebox::bucket::Quota;
use http::{HeaderMap, Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::{Outcome, Shared};
use crate::backend::{
    Decision, Degrade, RedisBackend, RedisConfig, RedisLimiter, Rule, Rules, Source,
};
use crate::tower::rate_limit::{key, BadKey, KeyError, RateLimitLayer, Refusal};
use crate::tower::test_service::send;

/// What the inner services of one test have reserved and served.
#[derive(Debug, Default)]
struct Gate {
    reserved: AtomicUsize,
    calls: AtomicUsize,
}

/// An inner service that holds the tower contract to the letter:
/// `poll_ready` reserves one unit of capacity for *this* value, `call`
/// panics without it and consumes it, dropping a ready value releases it,
/// and a clone has reserved nothing.
#[derive(Debug)]
struct Strict {
    gate: Arc<Gate>,
    ready: bool,
}

impl Strict {
    fn new() -> (Self, Arc<Gate>) {
        let gate = Arc::new(Gate::default());
        let strict = Self {
            gate: Arc::clone(&gate),
            ready: false,
        };
        (strict, gate)
    }
}

impl Clone for Strict {
    fn clone(&self) -> Self {
        Self {
            gate: Arc::clone(&self.gate),
            ready: false,
        }
    }
}

impl Drop for Strict {
    fn drop(&mut self) {
        if self.ready {
            self.gate.reserved.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl<B> Service<Request<B>> for Strict {
    type Response = Response<String>;
    type Error = &'static str;
    type Future = std::future::Ready<Result<Response<String>, &'static str>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if !self.ready {
            self.ready = true;
            self.gate.reserved.fetch_add(1, Ordering::SeqCst);
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<B>) -> Self::Future {
        assert!(self.ready, "called without a successful poll_ready");
        self.ready = false;
        self.gate.reserved.fetch_sub(1, Ordering::SeqCst);
        self.gate.calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok(Response::new("inner".to_owned())))
    }
}

/// A limiter `api` on a backend whose Redis is a closed loopback port.
fn limiter(policy: Degrade, rules: Rules) -> Arc<RedisLimiter> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let config = RedisConfig::new(format!("redis://127.0.0.1:{port}"))
        .timeout(Duration::from_millis(50))
        .connect_timeout(Duration::from_millis(50));
    let backend = RedisBackend::connect_lazy(config).expect("a valid URL");
    let limiter = RedisLimiter::builder("api", rules, backend)
        .degrade(policy)
        .probe_backoff(Duration::from_secs(2), Duration::from_secs(2))
        .build()
        .expect("a valid limiter");
    Arc::new(limiter)
}

fn per_hour(n: u32) -> Rules {
    Rules::single("per_hour", Quota::per_hour(n).expect("a quota")).expect("a rule")
}

fn with_key(value: &str) -> Request<()> {
    Request::builder()
        .header("x-api-key", value)
        .body(())
        .expect("a request")
}

fn no_fields(headers: &HeaderMap) -> bool {
    !headers.contains_key("ratelimit") && !headers.contains_key("ratelimit-policy")
}

#[tokio::test]
async fn the_inner_service_called_is_the_one_made_ready() {
    let (inner, gate) = Strict::new();
    let limiter = limiter(Degrade::FailOpen, per_hour(1));
    let mut service = RateLimitLayer::shared(limiter, key::header("x-api-key", 64)).layer(inner);
    for _ in 0..5 {
        // `Strict` panics if the call lands on a value that is not ready.
        let response = send(&mut service, with_key("k")).await.unwrap();
        assert_eq!(response.status(), 200, "fail open admits");
        assert!(no_fields(response.headers()), "not the shared quota");
    }
    assert_eq!(gate.calls.load(Ordering::SeqCst), 5);
    assert_eq!(gate.reserved.load(Ordering::SeqCst), 0);

    // Ready, call, then drop the future before the decision: the ready
    // service goes with it, uncalled.
    std::future::poll_fn(|cx| Service::<Request<()>>::poll_ready(&mut service, cx))
        .await
        .unwrap();
    assert_eq!(gate.reserved.load(Ordering::SeqCst), 1);
    let future = service.call(with_key("k"));
    assert_eq!(
        gate.reserved.load(Ordering::SeqCst),
        1,
        "held by the future"
    );
    drop(future);
    assert_eq!(gate.reserved.load(Ordering::SeqCst), 0);
    assert_eq!(gate.calls.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn fail_closed_answers_503_with_the_next_probe_and_releases_the_service() {
    let (inner, gate) = Strict::new();
    let limiter = limiter(Degrade::FailClosed, per_hour(100));
    let mut service = RateLimitLayer::shared(Arc::clone(&limiter), key::header("x-api-key", 64))
        .legacy_headers(true)
        .layer(inner);
    let start = tokio::time::Instant::now();
    let response = send(&mut service, with_key("k")).await.unwrap();
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(response.status(), 503);
    // The next probe is 2 s after the failed one.
    assert_eq!(response.headers()["retry-after"], "2");
    assert_eq!(
        response.body(),
        r#"{"error":"limiter_unavailable","policy":"api","retry_after":2}"#
    );
    assert!(no_fields(response.headers()));
    assert!(!response.headers().contains_key("x-ratelimit-remaining"));
    assert!(limiter.is_degraded());
    assert_eq!(gate.calls.load(Ordering::SeqCst), 0);
    assert_eq!(
        gate.reserved.load(Ordering::SeqCst),
        0,
        "released on refusal"
    );
}

#[tokio::test]
async fn local_share_refuses_with_429_without_the_policy_fields() {
    let (inner, gate) = Strict::new();
    let limiter = limiter(Degrade::Local { instances: 1 }, per_hour(2));
    let mut service = RateLimitLayer::shared(limiter, key::header("x-api-key", 64)).layer(inner);
    let statuses = [
        send(&mut service, with_key("k")).await.unwrap(),
        send(&mut service, with_key("k")).await.unwrap(),
        send(&mut service, with_key("other")).await.unwrap(),
    ];
    assert_eq!(
        statuses
            .iter()
            .map(|r| r.status().as_u16())
            .collect::<Vec<_>>(),
        [200, 200, 200]
    );
    let refused = send(&mut service, with_key("k")).await.unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "1800");
    assert!(
        no_fields(refused.headers()),
        "the instance's share, not the quota"
    );
    assert_eq!(gate.calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn bad_keys_are_refused_or_defaulted_before_any_round_trip() {
    let limiter = limiter(Degrade::FailOpen, per_hour(100));
    let layer = RateLimitLayer::shared(Arc::clone(&limiter), key::header("x-api-key", 1_000));
    let mut service = layer.clone().layer(Strict::new().0);
    let missing = send(&mut service, Request::new(())).await.unwrap();
    assert_eq!(missing.status(), 400);
    assert_eq!(
        missing.body(),
        r#"{"error":"bad_key","policy":"api","reason":"missing"}"#
    );
    // Within the key function's bound, past what Redis keys may hold.
    let long = send(&mut service, with_key(&"k".repeat(257)))
        .await
        .unwrap();
    assert_eq!(long.status(), 400);
    assert_eq!(
        long.body(),
        r#"{"error":"bad_key","policy":"api","reason":"too_long"}"#
    );
    let m = limiter.metrics();
    assert_eq!(
        (m.redis_decisions, m.degraded_decisions, m.faults),
        (0, 0, 0)
    );

    let bad = layer.limit().bad_keys();
    assert_eq!((bad.missing, bad.too_long, bad.total()), (1, 1, 2));

    let defaulting = layer.on_bad_key(BadKey::Default("anonymous".to_owned()));
    let counted = defaulting.clone();
    let mut defaulted = defaulting.layer(Strict::new().0);
    assert_eq!(
        send(&mut defaulted, Request::new(()))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(limiter.metrics().degraded_decisions, 1, "charged");
    assert_eq!(counted.limit().bad_keys().missing, 2, "and counted");
}

#[tokio::test]
async fn a_redis_decision_becomes_the_binding_rule_s_fields() {
    let rules = Rules::new([
        Rule::new("per_second", Quota::per_second(10).unwrap()).unwrap(),
        Rule::new("per_minute", Quota::per_minute(500).unwrap()).unwrap(),
    ])
    .unwrap();
    let layer = RateLimitLayer::shared(
        limiter(Degrade::FailOpen, rules),
        |_: &http::request::Parts| Ok::<_, KeyError>(""),
    )
    .legacy_headers(true);
    assert_eq!(layer.name(), "api");
    let service = layer.layer(Strict::new().0);
    let common = &service.shared;
    let decision = |allowed, rule, remaining, reset_ms, retry_us| Decision {
        allowed,
        retry_after: Duration::from_micros(retry_us),
        remaining,
        reset: Duration::from_millis(reset_ms),
        rule,
        source: Source::Redis,
        corrupt: 0,
    };
    let Outcome::Admitted(Some(stamp)) = common.outcome(Ok(decision(true, 1, 7, 58_100, 0))) else {
        panic!("admitted, with fields");
    };
    let mut headers = HeaderMap::new();
    stamp.apply(&mut headers, false);
    assert_eq!(
        headers["ratelimit-policy"],
        "\"api.per_second\";q=10;w=1, \"api.per_minute\";q=500;w=60"
    );
    assert_eq!(headers["ratelimit"], "\"api.per_minute\";r=7;t=59");
    assert_eq!(headers["x-ratelimit-limit"], "500");

    // A refusal: r=0, t never before Retry-After (which is rounded up).
    let Outcome::Refused(Refusal::Limited { retry_after }, Some(stamp)) =
        common.outcome(Ok(decision(false, 0, 0, 400, 1_000_001)))
    else {
        panic!("limited, with fields");
    };
    assert_eq!(retry_after, fusebox::Duration::from_micros(1_000_001));
    let mut headers = HeaderMap::new();
    stamp.apply(&mut headers, true);
    assert_eq!(headers["ratelimit"], "\"api.per_second\";r=0;t=2");

    // The legacy trio alone, without the `RateLimit` fields (it was
    // dropped with them; found by a hostile review).
    let layer = RateLimitLayer::shared(
        limiter(
            Degrade::FailOpen,
            Rules::new([Rule::new("per_minute", Quota::per_minute(500).unwrap()).unwrap()])
                .unwrap(),
        ),
        |_: &http::request::Parts| Ok::<_, KeyError>(""),
    )
    .rate_limit_headers(false)
    .legacy_headers(true);
    let service = layer.layer(Strict::new().0);
    let Outcome::Admitted(Some(stamp)) =
        service.shared.outcome(Ok(decision(true, 0, 7, 58_100, 0)))
    else {
        panic!("admitted, with the legacy trio");
    };
    let mut headers = HeaderMap::new();
    stamp.apply(&mut headers, false);
    assert!(!headers.contains_key("ratelimit") && !headers.contains_key("ratelimit-policy"));
    assert_eq!(
        [
            "x-ratelimit-limit",
            "x-ratelimit-remaining",
            "x-ratelimit-reset"
        ]
        .map(|n| &headers[n]),
        ["500", "7", "59"]
    );

    // Outages: no fields; fail closed is its own refusal.
    let degraded = Decision {
        source: Source::FailClosed,
        ..decision(false, 0, 0, 300, 300_000)
    };
    assert!(matches!(
        common.outcome(Ok(degraded)),
        Outcome::Refused(Refusal::FailClosed { .. }, None)
    ));
    let open = Decision {
        source: Source::FailOpen,
        ..decision(true, 0, 0, 0, 0)
    };
    assert!(matches!(common.outcome(Ok(open)), Outcome::Admitted(None)));
    let local = Decision {
        source: Source::Local,
        ..decision(false, 0, 0, 300, 300_000)
    };
    assert!(matches!(
        common.outcome(Ok(local)),
        Outcome::Refused(Refusal::Limited { .. }, None)
    ));
    assert!(matches!(
        common.outcome(Err(crate::backend::BackendError::TableFull)),
        // The shortest rule's token: 10 a second (500 a minute: 120 ms).
        Outcome::Refused(Refusal::TableFull { retry_after }, None)
            if retry_after == fusebox::Duration::from_millis(100)
    ));
}

#[test]
fn the_response_future_is_send() {
    fn send_future<T: Future + Send>(_: &T) {}
    type Key = fn(&http::request::Parts) -> Result<String, KeyError>;
    fn check(service: &mut crate::tower::RateLimitService<Strict, Shared<String, Key>>) {
        send_future(&service.call(Request::new(())));
    }
    let _ = check;
}
