//! Scenarios from the test suites of the crates a user would pick instead
//! of fusebox-std's tower layers, re-expressed against
//! [`RateLimitLayer`] and [`CircuitBreakerLayer`] (the scenarios, not the
//! code). Each test names the peer test it re-expresses:
//!
//! * tower-rs/tower `tower/tests/limit/rate.rs` (`reaching_capacity`,
//!   `remaining_gets_reset`);
//! * tower-rs/tower `tower/tests/limit/concurrency.rs`
//!   (`reserve_capacity_without_sending_request`,
//!   `service_drop_frees_capacity`, `response_error_releases_capacity`,
//!   `response_future_drop_releases_capacity`), here with tower's real
//!   `ConcurrencyLimit` *inside* fusebox's layers: they must pass its
//!   readiness through and never hold its permit longer than it would;
//! * tower-rs/tower `tower/tests/buffer/main.rs` (`when_inner_is_not_ready`,
//!   `clears_canceled_requests`), with tower's real `Buffer` outside;
//! * benwis/tower-governor `src/tests.rs` (`test_server`,
//!   `test_server_use_headers`, `test_method_filter`, `test_error_handler`)
//!   and `src/errors.rs` (a key that cannot be extracted);
//! * joshrotenberg/tower-resilience
//!   `crates/tower-resilience-circuitbreaker/tests/contract.rs`
//!   (`open_rejection_does_not_poll_pending_inner`,
//!   `cloned_open_breakers_reject_without_polling_inner`,
//!   `admitted_inner_readiness_error_is_preserved`,
//!   `half_open_admission_never_exceeds_permitted_calls_under_contention`,
//!   `dropped_half_open_probe_future_releases_its_slot_without_recording_a_result`,
//!   `failure_rate_threshold_trips_after_window_fills_and_then_rejects_without_polling_inner`)
//!   and `tests/circuitbreaker/half_open.rs` (`partial_success_in_half_open`,
//!   `all_failures_in_half_open_various_permits`, `rapid_state_cycling`,
//!   `half_open_rejected_calls_no_effect`) and
//!   `tests/circuitbreaker/concurrency.rs` (`concurrent_calls_open_circuit`,
//!   `concurrent_success_failure_recording`,
//!   `state_transition_during_concurrent_calls`).
//!
//! Three more follow the same peers into what their suites leave open:
//! the end-of-body mode, and a limit and a breaker stacked either way
//! round around a half-open trial.
//!
//! Where fusebox differs from the peer on purpose (documented in its
//! rustdoc), the test asserts fusebox's behaviour and its doc comment says
//! so. Paused tokio time wherever time matters (the layers read a
//! `TokioClock`); no test measures how long anything took.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration as StdDuration;

use crate::tower_common::{get_from, serve};
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get as route;
use axum::Router;
use fusebox::breaker::{CircuitBreaker, Config, State};
use fusebox::bucket::{FullPolicy, KeyedLimiter, Quota};
use fusebox::{Clock, Duration, TokenBucket};
use fusebox_std::tower::breaker::BreakerRejection;
use fusebox_std::tower::rate_limit::{KeyError, RateLimitRejection};
use fusebox_std::tower::{CircuitBreakerLayer, RateLimitLayer};
use http::{Request, Response, StatusCode};
use tokio::sync::Semaphore;
use tower::buffer::Buffer;
use tower::limit::ConcurrencyLimit;
use tower::{Layer, Service, ServiceExt};

// ---------------------------------------------------------------------------
// A probe inner service
// ---------------------------------------------------------------------------

/// What a [`Probe`] saw.
struct Seen {
    polls: AtomicUsize,
    calls: AtomicUsize,
    /// `poll_ready` fails (a closed inner service).
    closed: AtomicBool,
    /// Permits for `/gate` requests to answer.
    gate: Semaphore,
}

/// An inner service that counts its readiness polls and calls: `/500`
/// answers 500, `/err` fails, `/gate` answers 200 (`/gate500` 500) once
/// [`Probe::open`] lets it, anything else 200 at once.
#[derive(Clone)]
struct Probe(Arc<Seen>);

type Reply = Pin<Box<dyn Future<Output = Result<Response<String>, &'static str>> + Send>>;

impl Probe {
    fn new() -> Self {
        Self(Arc::new(Seen {
            polls: AtomicUsize::new(0),
            calls: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            gate: Semaphore::new(0),
        }))
    }
    fn polls(&self) -> usize {
        self.0.polls.load(Ordering::SeqCst)
    }
    fn calls(&self) -> usize {
        self.0.calls.load(Ordering::SeqCst)
    }
    /// Lets `n` more `/gate` requests answer.
    fn open(&self, n: usize) {
        self.0.gate.add_permits(n);
    }
}

impl<B> Service<Request<B>> for Probe {
    type Response = Response<String>;
    type Error = &'static str;
    type Future = Reply;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.polls.fetch_add(1, Ordering::SeqCst);
        if self.0.closed.load(Ordering::SeqCst) {
            return Poll::Ready(Err("inner closed"));
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        self.0.calls.fetch_add(1, Ordering::SeqCst);
        let seen = Arc::clone(&self.0);
        let path = request.uri().path().to_owned();
        Box::pin(async move {
            let status = match path.as_str() {
                "/500" => 500,
                "/err" => return Err("inner failed"),
                "/gate" | "/gate500" => {
                    seen.gate.acquire().await.expect("open gate").forget();
                    if path == "/gate" {
                        200
                    } else {
                        500
                    }
                }
                _ => 200,
            };
            let mut response = Response::new(String::from("inner"));
            *response.status_mut() = StatusCode::from_u16(status).unwrap();
            Ok(response)
        })
    }
}

fn req(path: &str) -> Request<()> {
    Request::builder().uri(path).body(()).unwrap()
}

/// `poll_ready` once, without waiting.
async fn poll_once<S: Service<Request<()>>>(service: &mut S) -> Poll<Result<(), S::Error>> {
    std::future::poll_fn(|cx| Poll::Ready(service.poll_ready(cx))).await
}

/// `ready().call()` and the response, the inner error unwrapped.
async fn send<S>(service: &mut S, path: &str) -> Response<String>
where
    S: Service<Request<()>, Response = Response<String>>,
    S::Error: std::fmt::Debug,
{
    ServiceExt::<Request<()>>::ready(service)
        .await
        .unwrap()
        .call(req(path))
        .await
        .unwrap()
}

/// Lets spawned tasks run (paused time: nothing sleeps for real).
async fn settle() {
    for _ in 0..16 {
        tokio::task::yield_now().await;
    }
}

fn header<B>(response: &Response<B>, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

fn bucket(quota: Quota) -> Arc<TokenBucket> {
    Arc::new(TokenBucket::new(quota))
}

// ---------------------------------------------------------------------------
// tower limit/rate.rs
// ---------------------------------------------------------------------------

/// tower `limit/rate.rs` `reaching_capacity`: one request per 100 ms; the
/// second is held back until the period passed.
///
/// Intentional difference: tower's `RateLimit` makes `poll_ready` wait for
/// the next period; fusebox's layer never makes a request wait (its docs:
/// "a request over the limit is answered at once"): `poll_ready` stays the
/// inner service's, and the `call` over the limit is a `429` that never
/// reaches the inner service, with a `Retry-After` in whole seconds,
/// rounded up.
#[tokio::test(start_paused = true)]
async fn reaching_capacity_refuses_at_once_until_the_period_passed() {
    let probe = Probe::new();
    let mut service = RateLimitLayer::new(
        "api",
        bucket(Quota::new(1, Duration::from_millis(100)).unwrap()),
    )
    .layer(probe.clone());
    assert_eq!(send(&mut service, "/").await.status(), 200);
    assert!(matches!(poll_once(&mut service).await, Poll::Ready(Ok(()))));
    let refused = service.call(req("/")).await.unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(header(&refused, "retry-after").as_deref(), Some("1"));
    assert_eq!(probe.calls(), 1, "the refused request never reached it");
    tokio::time::advance(StdDuration::from_millis(101)).await;
    assert_eq!(send(&mut service, "/").await.status(), 200);
    assert_eq!(probe.calls(), 2);
}

/// tower `limit/rate.rs` `remaining_gets_reset`: one request, a whole
/// period of quiet, then the full quota again (not the quota minus the
/// request of the previous period), and no more.
#[tokio::test(start_paused = true)]
async fn a_quiet_period_gives_back_the_whole_quota_and_no_more() {
    let mut service = RateLimitLayer::new(
        "api",
        bucket(Quota::new(3, Duration::from_millis(100)).unwrap()),
    )
    .layer(Probe::new());
    assert_eq!(send(&mut service, "/").await.status(), 200);
    tokio::time::advance(StdDuration::from_millis(100)).await;
    let mut left = Vec::new();
    for _ in 0..3 {
        let response = send(&mut service, "/").await;
        assert_eq!(response.status(), 200);
        left.push(header(&response, "ratelimit").unwrap());
    }
    assert_eq!(
        left,
        ["\"api\";r=2;t=1", "\"api\";r=1;t=1", "\"api\";r=0;t=1"]
    );
    assert_eq!(send(&mut service, "/").await.status(), 429);
}

// ---------------------------------------------------------------------------
// tower limit/concurrency.rs, with tower's ConcurrencyLimit inside
// ---------------------------------------------------------------------------

/// tower `limit/concurrency.rs` `reserve_capacity_without_sending_request`:
/// a clone that got the inner service's only slot in `poll_ready` holds it;
/// another clone waits (`poll_ready` pending, and no token taken for it)
/// until the first one's response completed.
#[tokio::test(start_paused = true)]
async fn readiness_is_the_inner_limits_and_a_wait_takes_no_token() {
    let probe = Probe::new();
    let tokens = bucket(Quota::per_hour(10).unwrap());
    let layer = RateLimitLayer::new("api", Arc::clone(&tokens));
    let clock = layer.clock();
    let mut s1 = layer.layer(ConcurrencyLimit::new(probe.clone(), 1));
    let mut s2 = s1.clone();
    assert!(matches!(poll_once(&mut s1).await, Poll::Ready(Ok(()))));
    assert!(poll_once(&mut s2).await.is_pending());
    assert_eq!(tokens.available(clock.now()), 10, "no token for readiness");
    let r1 = tokio::spawn(s1.call(req("/gate")));
    settle().await;
    assert_eq!(tokens.available(clock.now()), 9);
    assert!(
        poll_once(&mut s2).await.is_pending(),
        "r1 still holds the slot"
    );
    probe.open(1);
    assert_eq!(r1.await.unwrap().unwrap().status(), 200);
    assert!(matches!(poll_once(&mut s2).await, Poll::Ready(Ok(()))));
}

/// tower `limit/concurrency.rs` `service_drop_frees_capacity`, with a
/// refusal in between: a clone made ready by the inner `ConcurrencyLimit`
/// and then refused (`429`) keeps the slot its readiness reserved, as a
/// ready service does until it is called or dropped (the refusal does not
/// call the inner service: tower has no way to give readiness back), and
/// dropping it frees the slot. axum and hyper drop the service clone that
/// answered a request, so a refusal holds nothing past its response.
#[tokio::test(start_paused = true)]
async fn a_refused_clone_keeps_its_reserved_slot_until_dropped() {
    let probe = Probe::new();
    let mut s1 = RateLimitLayer::new("api", bucket(Quota::per_hour(1).unwrap()))
        .layer(ConcurrencyLimit::new(probe.clone(), 1));
    let mut s2 = s1.clone();
    assert_eq!(send(&mut s1, "/").await.status(), 200);
    let refused = send(&mut s1, "/").await;
    assert_eq!(refused.status(), 429);
    assert_eq!(probe.calls(), 1);
    assert!(poll_once(&mut s2).await.is_pending());
    drop(s1);
    assert!(matches!(poll_once(&mut s2).await, Poll::Ready(Ok(()))));
}

/// tower `limit/concurrency.rs` `response_future_drop_releases_capacity`:
/// dropping the breaker's response future drops the inner one (its slot
/// freed) and abandons the breaker's permit (neither outcome recorded).
#[tokio::test(start_paused = true)]
async fn a_dropped_response_future_frees_the_inner_slot_and_records_nothing() {
    let probe = Probe::new();
    let core = Arc::new(CircuitBreaker::new(
        Config::builder().consecutive_failures(1).build().unwrap(),
    ));
    let mut s1 = CircuitBreakerLayer::new("db", Arc::clone(&core))
        .layer(ConcurrencyLimit::new(probe.clone(), 1));
    let mut s2 = s1.clone();
    assert!(matches!(poll_once(&mut s1).await, Poll::Ready(Ok(()))));
    let mut r1 = Box::pin(s1.call(req("/gate")));
    assert!(futures_poll_once(&mut r1).await.is_none());
    assert!(poll_once(&mut s2).await.is_pending());
    drop(r1);
    assert!(matches!(poll_once(&mut s2).await, Poll::Ready(Ok(()))));
    let m = core.metrics();
    assert_eq!((m.successes, m.failures, m.abandoned), (0, 0, 1));
}

/// tower `limit/concurrency.rs` `response_error_releases_capacity`: an
/// inner error frees the slot, and the breaker counts it a failure.
#[tokio::test(start_paused = true)]
async fn an_inner_error_frees_the_inner_slot_and_counts_a_failure() {
    let probe = Probe::new();
    let core = Arc::new(CircuitBreaker::new(
        Config::builder().consecutive_failures(5).build().unwrap(),
    ));
    let mut s1 = CircuitBreakerLayer::new("db", Arc::clone(&core))
        .layer(ConcurrencyLimit::new(probe.clone(), 1));
    let mut s2 = s1.clone();
    assert!(ServiceExt::<Request<()>>::ready(&mut s1)
        .await
        .unwrap()
        .call(req("/err"))
        .await
        .is_err());
    assert!(matches!(poll_once(&mut s2).await, Poll::Ready(Ok(()))));
    assert_eq!(core.metrics().failures, 1);
}

/// Polls `future` once; its output if it was ready.
async fn futures_poll_once<F: Future + Unpin>(future: &mut F) -> Option<F::Output> {
    std::future::poll_fn(|cx| match Pin::new(&mut *future).poll(cx) {
        Poll::Ready(output) => Poll::Ready(Some(output)),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

// ---------------------------------------------------------------------------
// tower buffer/main.rs, with tower's Buffer outside
// ---------------------------------------------------------------------------

/// tower `buffer/main.rs` `when_inner_is_not_ready` and
/// `clears_canceled_requests`: behind a `Buffer`, a request waits while
/// the inner service is not ready; one cancelled while it waited is never
/// called, so it takes no token (the layer charges in `call`, not in
/// `poll_ready`); the next one goes through once the inner is ready.
#[tokio::test(start_paused = true)]
async fn a_request_cancelled_in_a_buffer_takes_no_token() {
    let probe = Probe::new();
    let tokens = bucket(Quota::per_hour(10).unwrap());
    let layer = RateLimitLayer::new("api", Arc::clone(&tokens));
    let clock = layer.clock();
    let limited = ConcurrencyLimit::new(probe.clone(), 1);
    // Another clone takes the inner limit's only slot.
    let mut holder = limited.clone();
    assert!(matches!(poll_once(&mut holder).await, Poll::Ready(Ok(()))));
    let buffer = Buffer::new(layer.layer(limited), 4);
    let waiting = tokio::spawn(buffer.clone().oneshot(req("/")));
    settle().await;
    assert!(!waiting.is_finished(), "the inner is not ready");
    waiting.abort();
    let _ = waiting.await;
    drop(holder);
    let response = buffer.clone().oneshot(req("/")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "ratelimit").as_deref(),
        Some("\"api\";r=9;t=360")
    );
    assert_eq!(probe.calls(), 1, "the cancelled request was never called");
    assert_eq!(tokens.available(clock.now()), 9);
}

// ---------------------------------------------------------------------------
// tower_governor src/tests.rs
// ---------------------------------------------------------------------------

fn hello() -> Router {
    Router::new().route("/", route(|| async { "Hello, World!" }))
}

fn get_req() -> Request<Body> {
    Request::builder().uri("/").body(Body::empty()).unwrap()
}

async fn body_text(response: Response<Body>) -> String {
    use http_body_util::BodyExt;
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// tower_governor `test_server`: a burst of 2 then `429`; after one
/// token's time one more request, then `429` again. Here through clones of
/// an axum `Router` (`oneshot`), as axum clones it per request.
///
/// Intentional difference: tower_governor says when to come back in
/// `x-ratelimit-after` (whole seconds rounded down: `0` for a 90 ms wait)
/// with a text body; fusebox in the standard `Retry-After`, rounded up and
/// never `0` (its docs: "never earlier than the core says, and never 0"),
/// with a JSON body.
#[tokio::test(start_paused = true)]
async fn a_burst_then_429_then_one_token_later_one_more() {
    let quota = Quota::new(1, Duration::from_millis(90))
        .unwrap()
        .with_burst(2)
        .unwrap();
    let app = hello().layer(RateLimitLayer::new("api", bucket(quota)));
    for _ in 0..2 {
        assert_eq!(app.clone().oneshot(get_req()).await.unwrap().status(), 200);
    }
    let refused = app.clone().oneshot(get_req()).await.unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(header(&refused, "retry-after").as_deref(), Some("1"));
    assert_eq!(header(&refused, "x-ratelimit-after"), None);
    let body: serde_json::Value = serde_json::from_str(&body_text(refused).await).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"error": "rate_limited", "policy": "api", "retry_after": 1})
    );
    tokio::time::advance(StdDuration::from_millis(100)).await;
    assert_eq!(app.clone().oneshot(get_req()).await.unwrap().status(), 200);
    assert_eq!(app.clone().oneshot(get_req()).await.unwrap().status(), 429);
}

/// tower_governor `test_server_use_headers`: with the headers on, each
/// admitted response says the limit and what is left, and the `429` says
/// `0` left. fusebox's legacy trio (`legacy_headers(true)`) is the same
/// `X-RateLimit-Limit`/`-Remaining`; intentional difference: the wait is in
/// `Retry-After` (and `X-RateLimit-Reset`), not `x-ratelimit-after`.
#[tokio::test(start_paused = true)]
async fn legacy_headers_count_down_to_the_429() {
    let quota = Quota::per_second(1).unwrap().with_burst(2).unwrap();
    let app = hello().layer(RateLimitLayer::new("api", bucket(quota)).legacy_headers(true));
    let mut seen = Vec::new();
    for _ in 0..3 {
        let response = app.clone().oneshot(get_req()).await.unwrap();
        seen.push((
            response.status().as_u16(),
            header(&response, "x-ratelimit-limit"),
            header(&response, "x-ratelimit-remaining"),
            header(&response, "x-ratelimit-after"),
        ));
    }
    let two = Some("2".to_owned());
    assert_eq!(
        seen,
        [
            (200, two.clone(), Some("1".to_owned()), None),
            (200, two.clone(), Some("0".to_owned()), None),
            (429, two.clone(), Some("0".to_owned()), None),
        ]
    );
    tokio::time::advance(StdDuration::from_secs(1)).await;
    let again = app.clone().oneshot(get_req()).await.unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(
        header(&again, "x-ratelimit-remaining").as_deref(),
        Some("0")
    );
    assert_eq!(app.clone().oneshot(get_req()).await.unwrap().status(), 429);
}

/// tower_governor `test_method_filter`: only `GET` is limited; a `POST`
/// past the limit goes through. fusebox has no method filter of its own;
/// axum's per-method layering does it (a `MethodRouter`'s layer wraps the
/// methods added before it), and the `POST` carries no `RateLimit` field.
#[tokio::test(start_paused = true)]
async fn only_the_layered_method_is_limited() {
    let app = Router::new().route(
        "/",
        route(|| async { "Hello, World!" })
            .layer(RateLimitLayer::new(
                "get",
                bucket(Quota::per_hour(2).unwrap()),
            ))
            .post(|| async { "Hello, Post World!" }),
    );
    let statuses: Vec<u16> = {
        let mut out = Vec::new();
        for _ in 0..3 {
            out.push(
                app.clone()
                    .oneshot(get_req())
                    .await
                    .unwrap()
                    .status()
                    .as_u16(),
            );
        }
        out
    };
    assert_eq!(statuses, [200, 200, 429]);
    let post = Request::builder()
        .method("POST")
        .uri("/")
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(post).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "ratelimit"), None);
    assert_eq!(body_text(response).await, "Hello, Post World!");
}

/// tower_governor `test_error_handler`: a custom answer for refused
/// requests replaces the default one (here a `418` with a text body); the
/// two `oneshot`s on two clones of the router share one limit.
#[tokio::test(start_paused = true)]
async fn a_custom_responder_answers_the_refusal() {
    let layer = RateLimitLayer::new(
        "api",
        bucket(Quota::per_second(10).unwrap().with_burst(1).unwrap()),
    )
    .responder(|_: &RateLimitRejection| {
        Response::builder()
            .status(StatusCode::IM_A_TEAPOT)
            .body(Body::from("a custom error string"))
            .unwrap()
    });
    let app = hello().layer(layer);
    assert_eq!(app.clone().oneshot(get_req()).await.unwrap().status(), 200);
    let refused = app.oneshot(get_req()).await.unwrap();
    assert_eq!(refused.status(), StatusCode::IM_A_TEAPOT);
    assert_eq!(body_text(refused).await, "a custom error string");
}

/// tower_governor's peer-IP key, over a real server: each client address
/// has its own burst; and (`src/errors.rs`, `UnableToExtractKey`) a request
/// whose key cannot be extracted (no `ConnectInfo`, as under `oneshot`) is
/// refused.
///
/// Intentional difference: tower_governor answers a missing key with `500`
/// ("Unable To Extract Key!"); fusebox with `400` and a JSON body by
/// default ([`BadKey::Reject`](fusebox_std::tower::rate_limit::BadKey)),
/// the request never reaching the service nor the limiter.
#[tokio::test]
async fn each_peer_ip_has_its_own_burst_and_a_missing_key_is_refused() {
    let limiter = Arc::new(
        KeyedLimiter::<IpAddr, 64>::new(
            Quota::per_hour(1).unwrap().with_burst(2).unwrap(),
            FullPolicy::Reject,
        )
        .unwrap(),
    );
    let layer = RateLimitLayer::keyed(
        "per_ip",
        Arc::clone(&limiter),
        |head: &http::request::Parts| {
            head.extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip())
                .ok_or(KeyError::Missing)
        },
    );
    let app = hello().layer(layer);
    let addr = serve(app.clone()).await;
    for last in [1, 2] {
        let from = Ipv4Addr::new(127, 0, 0, last);
        let mut statuses = Vec::new();
        for _ in 0..3 {
            statuses.push(get_from(addr, from, "/", &[]).await.status);
        }
        assert_eq!(statuses, [200, 200, 429], "from {from}");
    }
    let missing = app.oneshot(get_req()).await.unwrap();
    assert_eq!(missing.status(), 400);
    assert_eq!(limiter.metrics().keys, 2, "no key stored for it");
}

// ---------------------------------------------------------------------------
// tower-resilience circuitbreaker contract.rs and half_open.rs
// ---------------------------------------------------------------------------

fn breaker(config: fusebox::breaker::ConfigBuilder) -> Arc<CircuitBreaker> {
    Arc::new(CircuitBreaker::new(config.build().unwrap()))
}

/// Trips `core` with one failing call through `service` (the breaker is
/// `consecutive_failures(1)`), then waits out its 10 s open time.
async fn trip_and_wait<S>(service: &mut S, core: &CircuitBreaker, clock: fusebox_std::TokioClock)
where
    S: Service<Request<()>, Response = Response<String>>,
    S::Error: std::fmt::Debug,
{
    assert_eq!(send(service, "/500").await.status(), 500);
    assert_eq!(core.state(clock.now()), State::Open);
    tokio::time::advance(StdDuration::from_secs(11)).await;
    assert_eq!(core.state(clock.now()), State::HalfOpen);
}

fn half_open_after_one_failure(permits: u8) -> Arc<CircuitBreaker> {
    breaker(
        Config::builder()
            .consecutive_failures(1)
            .open_for(Duration::from_secs(10))
            .half_open_permits(permits),
    )
}

/// tower-resilience `open_rejection_does_not_poll_pending_inner` and
/// `cloned_open_breakers_reject_without_polling_inner`: in front of a
/// saturated `ConcurrencyLimit` (a hung backend holding its only slot), an
/// open breaker answers every clone at once, without polling or calling
/// the inner service.
#[tokio::test(start_paused = true)]
async fn an_open_breaker_answers_every_clone_without_touching_a_saturated_inner() {
    let probe = Probe::new();
    let core = half_open_after_one_failure(1);
    let layer = CircuitBreakerLayer::new("db", Arc::clone(&core));
    let clock = layer.clock();
    let limited = ConcurrencyLimit::new(probe.clone(), 1);
    let mut hung = layer.layer(limited.clone());
    let first = tokio::spawn(
        ServiceExt::<Request<()>>::ready(&mut hung)
            .await
            .unwrap()
            .call(req("/gate")),
    );
    settle().await;
    core.trip(clock.now());
    let polls = probe.polls();
    let mut service = layer.layer(limited);
    for _ in 0..2 {
        let mut clone = service.clone();
        let refused = ServiceExt::<Request<()>>::ready(&mut clone)
            .await
            .unwrap()
            .call(req("/"))
            .await
            .unwrap();
        assert_eq!(refused.status(), 503);
        // 10 s of open time are kept in ticks of 1.024 ms, rounded up
        // (10.004 s): the wait, never early, is 11 whole seconds.
        assert_eq!(header(&refused, "retry-after").as_deref(), Some("11"));
    }
    let refused = send(&mut service, "/").await;
    assert_eq!(refused.status(), 503);
    assert_eq!(probe.polls(), polls, "the inner was never polled");
    assert_eq!(probe.calls(), 1, "only the hung request reached it");
    probe.open(1);
    assert_eq!(first.await.unwrap().unwrap().status(), 200);
}

/// tower-resilience `admitted_inner_readiness_error_is_preserved`: a
/// closed breaker passes the inner service's readiness error through
/// unchanged, and takes no permit for it.
#[tokio::test(start_paused = true)]
async fn an_inner_readiness_error_passes_through_and_takes_no_permit() {
    let probe = Probe::new();
    probe.0.closed.store(true, Ordering::SeqCst);
    let core = half_open_after_one_failure(1);
    let mut service = CircuitBreakerLayer::new("db", Arc::clone(&core)).layer(probe.clone());
    let error = ServiceExt::<Request<()>>::ready(&mut service).await.err();
    assert_eq!(error, Some("inner closed"));
    assert_eq!(probe.calls(), 0);
    assert_eq!(core.metrics().calls(), 0);
}

/// tower-resilience
/// `half_open_admission_never_exceeds_permitted_calls_under_contention`:
/// eight clones race for a half-open breaker's one trial; exactly one
/// reaches the inner service, the others are refused at once, and the
/// trial's success closes the breaker.
#[tokio::test(start_paused = true)]
async fn racing_clones_get_exactly_the_half_open_trials() {
    let probe = Probe::new();
    let core = half_open_after_one_failure(1);
    let layer = CircuitBreakerLayer::new("db", Arc::clone(&core));
    let clock = layer.clock();
    let mut service = layer.layer(probe.clone());
    trip_and_wait(&mut service, &core, clock).await;
    let barrier = Arc::new(tokio::sync::Barrier::new(8));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let mut clone = service.clone();
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                barrier.wait().await;
                ServiceExt::<Request<()>>::ready(&mut clone)
                    .await
                    .unwrap()
                    .call(req("/gate"))
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    settle().await;
    assert_eq!(probe.calls(), 2, "the tripping call and one trial");
    assert_eq!(tasks.iter().filter(|t| t.is_finished()).count(), 7);
    assert_eq!(core.state(clock.now()), State::HalfOpen);
    probe.open(1);
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap().as_u16());
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 503, 503, 503, 503, 503, 503, 503]);
    assert_eq!(core.state(clock.now()), State::Closed);
}

/// tower-resilience
/// `dropped_half_open_probe_future_releases_its_slot_without_recording_a_result`:
/// a trial whose response future is dropped (a client gone) frees its slot
/// without deciding: the next clone's trial is admitted, and its success
/// alone closes the breaker.
#[tokio::test(start_paused = true)]
async fn a_dropped_trial_frees_its_slot_without_deciding() {
    let probe = Probe::new();
    let core = half_open_after_one_failure(1);
    let layer = CircuitBreakerLayer::new("db", Arc::clone(&core));
    let clock = layer.clock();
    let mut service = layer.layer(probe.clone());
    trip_and_wait(&mut service, &core, clock).await;
    let mut first = service.clone();
    let trial = tokio::spawn(async move {
        ServiceExt::<Request<()>>::ready(&mut first)
            .await
            .unwrap()
            .call(req("/gate"))
            .await
    });
    settle().await;
    assert_eq!(probe.calls(), 2);
    let mut second = service.clone();
    assert_eq!(
        send(&mut second, "/").await.status(),
        503,
        "the slot is taken"
    );
    let before = core.metrics();
    trial.abort();
    let _ = trial.await;
    let mut third = service.clone();
    assert_eq!(send(&mut third, "/").await.status(), 200);
    let after = core.metrics();
    assert_eq!(after.abandoned, before.abandoned + 1);
    assert_eq!(after.successes, before.successes + 1);
    assert_eq!(after.failures, before.failures);
    assert_eq!(core.state(clock.now()), State::Closed);
}

/// tower-resilience
/// `failure_rate_threshold_trips_after_window_fills_and_then_rejects_without_polling_inner`:
/// below `minimum_calls` the breaker stays closed however many failed; once
/// the window holds them and half failed it opens, and the next request is
/// refused without polling the inner service.
#[tokio::test(start_paused = true)]
async fn a_failure_rate_trips_once_the_window_fills_then_skips_the_inner() {
    let probe = Probe::new();
    let core = breaker(
        Config::builder()
            .failure_rate(50)
            .window(4)
            .minimum_calls(4),
    );
    let layer = CircuitBreakerLayer::new("db", Arc::clone(&core));
    let clock = layer.clock();
    let mut service = layer.layer(probe.clone());
    for path in ["/500", "/500", "/"] {
        send(&mut service, path).await;
        assert_eq!(core.state(clock.now()), State::Closed, "after {path}");
    }
    assert_eq!(send(&mut service, "/").await.status(), 200);
    assert_eq!(core.state(clock.now()), State::Open, "2 of 4 failed");
    let polls = probe.polls();
    assert_eq!(send(&mut service, "/").await.status(), 503);
    assert_eq!(probe.polls(), polls);
    assert_eq!(probe.calls(), 4);
}

/// tower-resilience `partial_success_in_half_open`: of three trials, the
/// first succeeds and the second fails: the failure reopens the breaker.
#[tokio::test(start_paused = true)]
async fn a_failed_trial_after_a_good_one_reopens() {
    let core = half_open_after_one_failure(3);
    let layer = CircuitBreakerLayer::new("db", Arc::clone(&core));
    let clock = layer.clock();
    let mut service = layer.layer(Probe::new());
    trip_and_wait(&mut service, &core, clock).await;
    assert_eq!(send(&mut service, "/").await.status(), 200);
    assert_eq!(core.state(clock.now()), State::HalfOpen, "one of three");
    assert_eq!(send(&mut service, "/500").await.status(), 500);
    assert_eq!(core.state(clock.now()), State::Open);
    assert_eq!(send(&mut service, "/").await.status(), 503);
}

/// tower-resilience `all_failures_in_half_open_various_permits` and
/// `rapid_state_cycling`: whatever the number of trials, the first failed
/// one reopens the breaker, cycle after cycle.
#[tokio::test(start_paused = true)]
async fn the_first_failed_trial_reopens_for_any_permits_cycle_after_cycle() {
    for permits in [1, 2, 5, 10] {
        let core = half_open_after_one_failure(permits);
        let layer = CircuitBreakerLayer::new("db", Arc::clone(&core));
        let clock = layer.clock();
        let mut service = layer.layer(Probe::new());
        assert_eq!(send(&mut service, "/500").await.status(), 500);
        for cycle in 0..3 {
            assert_eq!(
                core.state(clock.now()),
                State::Open,
                "{permits}: cycle {cycle}"
            );
            tokio::time::advance(StdDuration::from_secs(11)).await;
            assert_eq!(core.state(clock.now()), State::HalfOpen);
            assert_eq!(send(&mut service, "/500").await.status(), 500);
        }
        assert_eq!(core.state(clock.now()), State::Open, "{permits} permits");
        assert_eq!(core.metrics().trips, 4);
    }
}

/// tower-resilience `half_open_rejected_calls_no_effect`: more requests
/// than trials while half-open: the extra ones are refused (`503`, never
/// reaching the inner service) and do not count against the breaker; the
/// trials' successes close it.
#[tokio::test(start_paused = true)]
async fn refusals_in_half_open_do_not_count_against_the_trials() {
    let probe = Probe::new();
    let core = half_open_after_one_failure(2);
    let layer = CircuitBreakerLayer::new("db", Arc::clone(&core));
    let clock = layer.clock();
    let mut service = layer.layer(probe.clone());
    core.force_open(clock.now());
    assert_eq!(send(&mut service, "/").await.status(), 503);
    core.force_close(clock.now());
    trip_and_wait(&mut service, &core, clock).await;
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let mut clone = service.clone();
            tokio::spawn(async move {
                ServiceExt::<Request<()>>::ready(&mut clone)
                    .await
                    .unwrap()
                    .call(req("/gate"))
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    settle().await;
    assert_eq!(probe.calls(), 3, "the tripping call and two trials");
    probe.open(2);
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap().as_u16());
    }
    assert_eq!(statuses.iter().filter(|&&s| s == 200).count(), 2);
    assert_eq!(statuses.iter().filter(|&&s| s == 503).count(), 8);
    assert_eq!(core.state(clock.now()), State::Closed);
    assert_eq!(core.metrics().failures, 1, "only the tripping call");
}

/// What happens to a request in flight when the breaker opens (the
/// tower-resilience suites leave it open; fusebox's docs: the permit is
/// recorded when its response completes): it is answered normally, its
/// late success does not close the breaker another request opened, and
/// the next request is refused.
#[tokio::test(start_paused = true)]
async fn a_request_in_flight_when_the_breaker_opens_is_answered_and_closes_nothing() {
    let probe = Probe::new();
    let core = half_open_after_one_failure(1);
    let layer = CircuitBreakerLayer::new("db", Arc::clone(&core));
    let clock = layer.clock();
    let mut service = layer.layer(probe.clone());
    let mut slow = service.clone();
    let in_flight = tokio::spawn(async move { send(&mut slow, "/gate").await.status() });
    settle().await;
    assert_eq!(send(&mut service, "/500").await.status(), 500);
    assert_eq!(core.state(clock.now()), State::Open);
    probe.open(1);
    assert_eq!(in_flight.await.unwrap(), 200, "answered, not cut off");
    assert_eq!(core.state(clock.now()), State::Open);
    assert_eq!(send(&mut service, "/").await.status(), 503);
}

/// tower-resilience's `with_fallback` answer for an open circuit (contract
/// `open_fallback_does_not_poll_pending_inner`): fusebox's equivalent is a
/// responder; its answer is served for the open breaker, with the
/// rejection's state, and the inner service is not polled.
#[tokio::test(start_paused = true)]
async fn a_responder_is_the_open_breakers_fallback() {
    let probe = Probe::new();
    let core = half_open_after_one_failure(1);
    let layer = CircuitBreakerLayer::new("db", Arc::clone(&core)).responder(
        |rejection: &BreakerRejection| {
            Response::new(format!("fallback while {:?}", rejection.state))
        },
    );
    let clock = layer.clock();
    let mut service = layer.layer(probe.clone());
    core.force_open(clock.now());
    let response = send(&mut service, "/").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.body(), "fallback while ForcedOpen");
    assert_eq!((probe.polls(), probe.calls()), (0, 0));
}

/// tower-resilience
/// `half_open_admission_never_exceeds_permitted_calls_under_contention`
/// ("rejection is synchronous once the shared permit is gone -- no inner
/// wait needed") behind a saturated inner `ConcurrencyLimit`: the one
/// trial hangs holding the inner service's only slot. A request the
/// half-open breaker will refuse (its one trial slot taken) is answered at
/// once, as while open: it does not wait for the inner service's
/// readiness, which the hung trial holds back.
#[tokio::test(start_paused = true)]
async fn a_full_half_open_breaker_refuses_at_once_behind_a_saturated_inner() {
    let probe = Probe::new();
    let core = half_open_after_one_failure(1);
    let layer = CircuitBreakerLayer::new("db", Arc::clone(&core));
    let clock = layer.clock();
    let mut service = layer.layer(ConcurrencyLimit::new(probe.clone(), 1));
    trip_and_wait(&mut service, &core, clock).await;
    let mut first = service.clone();
    let trial = tokio::spawn(async move { send(&mut first, "/gate").await.status() });
    settle().await;
    assert_eq!(probe.calls(), 2, "the tripping call and the trial");
    let mut second = service.clone();
    let ready = tokio::time::timeout(
        StdDuration::from_secs(60),
        ServiceExt::<Request<()>>::ready(&mut second),
    )
    .await;
    assert!(
        ready.is_ok(),
        "a refusal waited on the inner service's readiness"
    );
    let refused = second.call(req("/")).await.unwrap();
    assert_eq!(refused.status(), 503);
    assert_eq!(probe.calls(), 2);
    probe.open(1);
    assert_eq!(trial.await.unwrap(), 200);
    assert_eq!(core.state(clock.now()), State::Closed);
    assert_eq!(
        send(&mut second, "/").await.status(),
        200,
        "ready again once closed"
    );
}

/// The same half-open scenario (tower-resilience's contention contract)
/// in the mode that records at the end of the body, and tower
/// `limit/concurrency.rs` `response_future_drop_releases_capacity` for its
/// body: a response whose body is dropped before its end (a client gone
/// mid-stream) abandons its permit, as a dropped response future does
/// (the `RecordedBody` docs), and frees the inner slot.
#[tokio::test(start_paused = true)]
async fn end_of_body_mode_refuses_at_once_and_a_dropped_body_records_nothing() {
    use http_body_util::BodyExt;
    let probe = Probe::new();
    let core = half_open_after_one_failure(1);
    let layer = CircuitBreakerLayer::new("db", Arc::clone(&core));
    let clock = layer.clock();
    let mut service = layer
        .record_at_end_of_body()
        .layer(ConcurrencyLimit::new(probe.clone(), 1));
    // Closed: a body dropped unread abandons the permit.
    let response = ServiceExt::<Request<()>>::ready(&mut service)
        .await
        .unwrap()
        .call(req("/"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    drop(response);
    let m = core.metrics();
    assert_eq!((m.successes, m.failures, m.abandoned), (0, 0, 1));
    // Trip it, wait, and hang the one trial.
    let tripped = ServiceExt::<Request<()>>::ready(&mut service)
        .await
        .unwrap()
        .call(req("/500"))
        .await
        .unwrap();
    assert_eq!(tripped.status(), 500);
    drop(tripped);
    assert_eq!(core.state(clock.now()), State::Open);
    tokio::time::advance(StdDuration::from_secs(11)).await;
    let mut first = service.clone();
    let trial = tokio::spawn(async move {
        let response = ServiceExt::<Request<()>>::ready(&mut first)
            .await
            .unwrap()
            .call(req("/gate"))
            .await
            .unwrap();
        let status = response.status();
        response.into_body().collect().await.unwrap();
        status
    });
    settle().await;
    let mut second = service.clone();
    let ready = tokio::time::timeout(
        StdDuration::from_secs(60),
        ServiceExt::<Request<()>>::ready(&mut second),
    )
    .await;
    assert!(
        ready.is_ok(),
        "a refusal waited on the inner service's readiness"
    );
    assert_eq!(second.call(req("/")).await.unwrap().status(), 503);
    probe.open(1);
    assert_eq!(trial.await.unwrap(), 200);
    assert_eq!(core.state(clock.now()), State::Closed);
}

/// The order the module docs recommend (limit outside the breaker): a
/// request the limit refuses never reaches the breaker, so it never takes
/// (nor spends) a half-open trial: once a token is back, the next request
/// is the trial that closes it.
#[tokio::test(start_paused = true)]
async fn a_limit_outside_the_breaker_never_spends_a_trial() {
    let probe = Probe::new();
    let core = half_open_after_one_failure(1);
    let breaker_layer = CircuitBreakerLayer::new("db", Arc::clone(&core));
    let clock = breaker_layer.clock();
    let limit = RateLimitLayer::new("api", bucket(Quota::per_second(1).unwrap()));
    let mut service = limit.layer(breaker_layer.layer(probe.clone()));
    assert_eq!(send(&mut service, "/500").await.status(), 500);
    tokio::time::advance(StdDuration::from_secs(11)).await;
    assert_eq!(core.state(clock.now()), State::HalfOpen);
    // The one token back goes to the trial, which hangs; the next ones
    // are refused by the limit.
    let mut trial_clone = service.clone();
    let trial = tokio::spawn(async move { send(&mut trial_clone, "/gate").await.status() });
    settle().await;
    for _ in 0..3 {
        assert_eq!(send(&mut service, "/").await.status(), 429);
    }
    assert_eq!(
        core.metrics().rejected,
        0,
        "the 429s never reached the breaker"
    );
    probe.open(1);
    assert_eq!(trial.await.unwrap(), 200);
    assert_eq!(core.state(clock.now()), State::Closed);
}

/// The other order (the limit inside the breaker), which the module docs
/// call safe too: the limit's `429` to a half-open trial is ignored by the
/// breaker's classifier; it frees the trial's slot without deciding, so
/// the breaker neither reopens nor stays stuck half-open: the next trial,
/// once a token is back, closes it.
#[tokio::test(start_paused = true)]
async fn a_limit_inside_the_breaker_frees_the_trial_it_refuses() {
    let probe = Probe::new();
    let core = half_open_after_one_failure(1);
    let breaker_layer = CircuitBreakerLayer::new("db", Arc::clone(&core));
    let clock = breaker_layer.clock();
    let limit = RateLimitLayer::new("api", bucket(Quota::per_minute(1).unwrap()));
    let mut service = breaker_layer.layer(limit.layer(probe.clone()));
    assert_eq!(send(&mut service, "/500").await.status(), 500);
    tokio::time::advance(StdDuration::from_secs(11)).await;
    assert_eq!(core.state(clock.now()), State::HalfOpen);
    let refused = send(&mut service, "/").await;
    assert_eq!(refused.status(), 429, "the limit's, not the breaker's");
    assert_eq!(core.state(clock.now()), State::HalfOpen);
    assert_eq!(core.metrics().ignored, 1);
    tokio::time::advance(StdDuration::from_secs(60)).await;
    assert_eq!(send(&mut service, "/").await.status(), 200);
    assert_eq!(core.state(clock.now()), State::Closed);
    assert_eq!(probe.calls(), 2);
}

/// tower-resilience `circuitbreaker/concurrency.rs`
/// `concurrent_calls_open_circuit`: a hundred clones at once on an open
/// breaker, on a multi-threaded runtime: every one refused (the peer
/// accepts "most"), none reaching the inner service, each counted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_clones_on_an_open_breaker_are_all_refused() {
    let probe = Probe::new();
    let core = half_open_after_one_failure(1);
    let layer = CircuitBreakerLayer::new("db", Arc::clone(&core));
    let mut service = layer.layer(probe.clone());
    assert_eq!(send(&mut service, "/500").await.status(), 500);
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let mut clone = service.clone();
            tokio::spawn(async move { send(&mut clone, "/").await.status().as_u16() })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), 503);
    }
    assert_eq!(probe.calls(), 1);
    assert_eq!(core.metrics().rejected, 100);
}

/// tower-resilience `concurrent_success_failure_recording`: a hundred
/// concurrent requests, every other one failing, under a 70 % threshold:
/// the breaker stays closed and every outcome is counted exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_half_failures_under_a_higher_threshold_stay_closed() {
    let core = breaker(
        Config::builder()
            .failure_rate(70)
            .window(64)
            .minimum_calls(50),
    );
    let layer = CircuitBreakerLayer::new("db", Arc::clone(&core));
    let clock = layer.clock();
    let service = layer.layer(Probe::new());
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let mut clone = service.clone();
            let path = if i % 2 == 0 { "/" } else { "/500" };
            tokio::spawn(async move { send(&mut clone, path).await.status().as_u16() })
        })
        .collect();
    for task in tasks {
        assert_ne!(task.await.unwrap(), 503);
    }
    assert_eq!(core.state(clock.now()), State::Closed);
    let m = core.metrics();
    assert_eq!((m.successes, m.failures, m.rejected), (50, 50, 0));
}

/// tower-resilience `state_transition_during_concurrent_calls`, with the
/// requests in flight across the transition: five requests admitted while
/// closed fail after the first one opened the breaker. It opened once;
/// their late failures neither trip it again nor push its reopening back
/// (`Retry-After` unchanged), and it half-opens on time.
#[tokio::test(start_paused = true)]
async fn late_failures_of_requests_in_flight_do_not_trip_it_again() {
    let probe = Probe::new();
    let core = half_open_after_one_failure(1);
    let layer = CircuitBreakerLayer::new("db", Arc::clone(&core));
    let clock = layer.clock();
    let mut service = layer.layer(probe.clone());
    let tasks: Vec<_> = (0..5)
        .map(|_| {
            let mut clone = service.clone();
            tokio::spawn(async move { send(&mut clone, "/gate500").await.status().as_u16() })
        })
        .collect();
    settle().await;
    assert_eq!(probe.calls(), 5, "all admitted while closed");
    assert_eq!(send(&mut service, "/500").await.status(), 500);
    assert_eq!(core.state(clock.now()), State::Open);
    let before = header(&send(&mut service, "/").await, "retry-after");
    tokio::time::advance(StdDuration::from_secs(5)).await;
    probe.open(5);
    for task in tasks {
        assert_eq!(task.await.unwrap(), 500, "answered as the service did");
    }
    let m = core.metrics();
    assert_eq!(m.trips, 1);
    let after = header(&send(&mut service, "/").await, "retry-after");
    assert_eq!(before.as_deref(), Some("11"));
    assert_eq!(after.as_deref(), Some("6"), "the same deadline, 5 s later");
    tokio::time::advance(StdDuration::from_secs(6)).await;
    assert_eq!(core.state(clock.now()), State::HalfOpen);
}

/// tower-resilience `half_open_backpressure_waiter_wakes_promptly_when_a_slot_frees`
/// and `dropped_half_open_probe_future_releases_its_slot_without_recording_a_result`,
/// for a caller that waits on the inner service in half-open: with two
/// trials and the inner service's one slot held by the first (hung), the
/// second caller waits for the inner service holding the second trial; a
/// third is refused at once. Once the first answers, the waiter is woken
/// and its trial's success closes the breaker. A waiter dropped instead
/// gives its trial back unused (abandoned, no outcome).
#[tokio::test(start_paused = true)]
async fn a_half_open_waiter_holds_its_trial_and_gives_it_back_if_dropped() {
    for drop_waiter in [false, true] {
        let probe = Probe::new();
        let core = half_open_after_one_failure(2);
        let layer = CircuitBreakerLayer::new("db", Arc::clone(&core));
        let clock = layer.clock();
        let mut service = layer.layer(ConcurrencyLimit::new(probe.clone(), 1));
        trip_and_wait(&mut service, &core, clock).await;
        let mut first = service.clone();
        let trial = tokio::spawn(async move { send(&mut first, "/gate").await.status() });
        settle().await;
        let mut waiter = service.clone();
        assert!(
            poll_once(&mut waiter).await.is_pending(),
            "waits on the inner"
        );
        let mut third = service.clone();
        assert_eq!(
            send(&mut third, "/").await.status(),
            503,
            "both trials taken"
        );
        // Dropped, as a server drops the clone that answered: its inner
        // `ConcurrencyLimit` queued for the slot before the breaker was
        // asked, and a live clone would be granted it (tower's rule: a
        // service that polled keeps its place until dropped).
        drop(third);
        let abandoned = core.metrics().abandoned;
        if drop_waiter {
            drop(waiter);
            assert_eq!(core.metrics().abandoned, abandoned + 1);
            probe.open(1);
            assert_eq!(trial.await.unwrap(), 200);
            assert_eq!(
                core.state(clock.now()),
                State::HalfOpen,
                "one success of two"
            );
            let mut next = service.clone();
            assert_eq!(send(&mut next, "/").await.status(), 200, "the freed trial");
        } else {
            let waiting = tokio::spawn(async move { send(&mut waiter, "/").await.status() });
            settle().await;
            assert!(!waiting.is_finished());
            probe.open(1);
            assert_eq!(trial.await.unwrap(), 200);
            assert_eq!(waiting.await.unwrap(), 200);
            assert_eq!(core.metrics().abandoned, abandoned);
        }
        assert_eq!(
            core.state(clock.now()),
            State::Closed,
            "drop_waiter {drop_waiter}"
        );
        assert_eq!(core.metrics().rejected, 1);
    }
}
