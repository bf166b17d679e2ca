//! `CircuitBreakerLayer` under a real axum server, over real HTTP: `5xx`
//! opens the one breaker every connection shares, `4xx` does not, a
//! client that hangs up abandons its permit, a registry's breaker shows in
//! health, Prometheus and events; and both layers satisfy tonic's server
//! bounds (checked by the compiler).

mod common;
mod tower_common;

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get as route;
use axum::Router;
use fusebox::breaker::{CircuitBreaker, Config, State};
use fusebox::bucket::Quota;
use fusebox::TokenBucket;
use fusebox_std::events::Event;
use fusebox_std::tower::breaker::BreakerRejection;
use fusebox_std::tower::rate_limit::RateLimitRejection;
use fusebox_std::tower::{CircuitBreakerLayer, RateLimitLayer};
use fusebox_std::Registry;
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;
use tower_common::{get, serve};

fn config(failures: u32) -> Config {
    Config::builder()
        .consecutive_failures(failures)
        .open_for(fusebox::Duration::from_secs(60))
        .half_open_permits(1)
        .build()
        .expect("valid config")
}

/// `/status/{code}` answers with that status.
fn app() -> Router {
    Router::new().route(
        "/status/{code}",
        route(|Path(code): Path<u16>| async move {
            StatusCode::from_u16(code).unwrap_or(StatusCode::OK)
        }),
    )
}

#[tokio::test]
async fn server_errors_open_the_breaker_for_every_connection() {
    let breaker = Arc::new(CircuitBreaker::new(config(3)));
    let addr = serve(app().layer(CircuitBreakerLayer::new("upstream", Arc::clone(&breaker)))).await;
    for _ in 0..3 {
        assert_eq!(get(addr, "/status/502", &[]).await.status, 502);
    }
    let refused = get(addr, "/status/200", &[]).await;
    assert_eq!(refused.status, 503);
    let wait: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    // 60 s, rounded up to the core's tick and then to a whole second.
    assert!((60..=61).contains(&wait), "Retry-After {wait}");
    let body = refused.json();
    assert_eq!(body["error"], "circuit_open");
    assert_eq!(body["breaker"], "upstream");
    assert_eq!(body["state"], "open");
    assert_eq!(body["retry_after"], wait);
    let m = breaker.metrics();
    assert_eq!((m.failures, m.rejected, m.successes), (3, 1, 0));
}

#[tokio::test]
async fn client_errors_do_not_open_it() {
    let breaker = Arc::new(CircuitBreaker::new(config(2)));
    let addr = serve(app().layer(CircuitBreakerLayer::new("users", Arc::clone(&breaker)))).await;
    for _ in 0..10 {
        assert_eq!(get(addr, "/status/404", &[]).await.status, 404);
        assert_eq!(get(addr, "/status/422", &[]).await.status, 422);
    }
    assert_eq!(get(addr, "/status/200", &[]).await.status, 200);
    let m = breaker.metrics();
    assert_eq!(
        (m.ignored, m.failures, m.successes, m.rejected),
        (20, 0, 1, 0)
    );
    assert_eq!(breaker.state(fusebox::Instant::ZERO), State::Closed);
}

#[tokio::test]
async fn transitions_and_rejections_are_logged_with_structured_fields() {
    let capture = common::Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());
    let breaker = Arc::new(CircuitBreaker::new(config(1)));
    let addr = serve(app().layer(CircuitBreakerLayer::new("ledger", breaker))).await;
    assert_eq!(get(addr, "/status/503", &[]).await.status, 503);
    assert_eq!(get(addr, "/status/200", &[]).await.status, 503);
    let events = capture.with("breaker", "ledger");
    assert_eq!(events.len(), 2, "{events:?}");
    let (opened, rejected) = (&events[0], &events[1]);
    assert_eq!(common::field(opened, "level"), Some("WARN"));
    assert_eq!(common::field(opened, "from"), Some("Closed"));
    assert_eq!(common::field(opened, "to"), Some("Open"));
    assert_eq!(common::field(rejected, "state"), Some("Open"));
    let wait: u64 = common::field(rejected, "retry_after_ms")
        .unwrap()
        .parse()
        .unwrap();
    assert!((59_000..=61_000).contains(&wait), "{wait}");
    assert!(events.iter().all(|e| common::field(e, "message").is_some()));
}

#[tokio::test]
async fn a_client_that_hangs_up_abandons_its_permit() {
    let breaker = Arc::new(CircuitBreaker::new(config(1)));
    let started = Arc::new(Notify::new());
    let entered = Arc::clone(&started);
    let router = Router::new()
        .route(
            "/hang",
            route(move || {
                let entered = Arc::clone(&entered);
                async move {
                    entered.notify_one();
                    std::future::pending::<()>().await;
                }
            }),
        )
        .layer(CircuitBreakerLayer::new("slow", Arc::clone(&breaker)));
    let addr = serve(router).await;
    let mut stream = tower_common::connect_from(addr, std::net::Ipv4Addr::LOCALHOST).await;
    stream
        .write_all(&tower_common::request("/hang", &[]))
        .await
        .unwrap();
    started.notified().await;
    drop(stream);
    // hyper notices the closed connection and drops the response future.
    tower_common::eventually("the permit is abandoned", || {
        breaker.metrics().abandoned == 1
    })
    .await;
    let m = breaker.metrics();
    assert_eq!((m.abandoned, m.failures, m.successes), (1, 0, 0));
}

#[tokio::test]
async fn a_registry_breaker_shows_in_health_prometheus_and_events() {
    let registry = Arc::new(Registry::new());
    let mut events = registry.events().subscribe();
    let layer = CircuitBreakerLayer::from_registry(&registry, "payments", config(1)).unwrap();
    registry.set_required("payments", true).unwrap();
    let addr = serve(app().layer(layer)).await;
    assert!(registry.health().ready);
    assert_eq!(get(addr, "/status/500", &[]).await.status, 500);
    assert_eq!(get(addr, "/status/200", &[]).await.status, 503);
    assert!(!registry.health().ready, "a required breaker is open");
    let text = registry.to_prometheus();
    assert!(
        text.contains("fusebox_breaker_state{name=\"payments\",state=\"open\"} 1\n"),
        "{text}"
    );
    let mut seen = Vec::new();
    while let Some(event) = events.try_recv() {
        seen.push(match event {
            Event::StateChange { to, .. } => format!("state {to:?}"),
            Event::Failure { .. } => "failure".to_owned(),
            Event::Rejected { .. } => "rejected".to_owned(),
            other => format!("{other:?}"),
        });
    }
    assert_eq!(seen, ["state Open", "failure", "rejected"]);
}

/// tonic's server takes both layers (its bounds — a `Service<Request<Body>>`
/// that is `Clone + Send + 'static`, a `Send` future, errors into
/// `BoxError`, a `Send` body — are checked by the compiler here) and serves
/// gRPC over HTTP/2 through them, refusals answered as gRPC statuses.
#[tokio::test]
async fn tonic_serves_grpc_through_both_layers() {
    use http_body_util::{BodyExt, Empty};
    use hyper::body::Bytes;
    use tonic::body::Body;

    let breaker = Arc::new(CircuitBreaker::new(config(5)));
    let grpc_unavailable = |r: &BreakerRejection| {
        tonic::Status::unavailable(format!("{} is open", r.name)).into_http::<Body>()
    };
    let grpc_exhausted = |r: &RateLimitRejection| {
        tonic::Status::resource_exhausted(format!(
            "{}: retry in {:?} s",
            r.name,
            r.retry_after_secs()
        ))
        .into_http::<Body>()
    };
    let breaker_layer =
        CircuitBreakerLayer::new("grpc", Arc::clone(&breaker)).responder(grpc_unavailable);
    let limit_layer = RateLimitLayer::new(
        "grpc",
        Arc::new(TokenBucket::new(Quota::per_hour(1).unwrap())),
    )
    .responder(grpc_exhausted);
    // A unary handler that answers "OK" in trailers-only form.
    let ok = tower::service_fn(|_: http::Request<Body>| async {
        Ok::<_, Infallible>(tonic::Status::ok("").into_http::<Body>())
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tonic::transport::Server::builder()
        .layer(limit_layer)
        .layer(breaker_layer)
        .serve_with_incoming(ok, tonic::transport::server::TcpIncoming::from(listener));
    let running = tokio::spawn(server);

    let mut client = tower_common::h2_client(addr).await;
    let call = || {
        http::Request::post(format!("http://{addr}/echo.Echo/Say"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(Empty::<Bytes>::new())
            .unwrap()
    };
    let first = client.send_request(call()).await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["grpc-status"], "0");
    assert_eq!(first.headers()["ratelimit"], "\"grpc\";r=0;t=3600");
    drop(first.into_body().collect().await);
    let second = client.send_request(call()).await.unwrap();
    assert_eq!(second.headers()["grpc-status"], "8", "RESOURCE_EXHAUSTED");
    assert_eq!(second.headers()["ratelimit"], "\"grpc\";r=0;t=3600");
    assert_eq!(breaker.metrics().successes, 1);
    running.abort();
}
