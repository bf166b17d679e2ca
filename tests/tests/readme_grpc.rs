//! The README's gRPC example as it says to use it: its three layers (rate
//! limit, breaker with `GrpcClassifier` recording at the end of the body,
//! `ClientFaultLayer` inside) given to
//! `tonic::transport::Server::builder().layer(..)` before `add_service`,
//! which the README only shows in a comment (its doctest cannot depend on
//! tonic). The stack must compile around tonic's `Routes` and serve a
//! call: `OK`, counted once by the breaker, with the limiter's fields.
//!
//! It did not compile: a breaker recording at the end of the body answers
//! with `RecordedBody`s, and the limiter's responders outside it build
//! their refusals' bodies with `B: Default` (gRPC) or `B: From<String>`
//! (JSON), which `RecordedBody` did not implement. A refusal through each
//! such stack is checked too.

use crate::tower_common;

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::sync::Arc;
use std::task::{Context, Poll};

use fusebox::breaker::{CircuitBreaker, Config};
use fusebox::bucket::Quota;
use fusebox::TokenBucket;
use fusebox_std::tower::breaker::{ClientFaultLayer, GrpcBreakerResponse, GrpcClassifier};
use fusebox_std::tower::rate_limit::GrpcRateLimitResponse;
use fusebox_std::tower::{CircuitBreakerLayer, RateLimitLayer};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use tonic::body::Body;
use tower::{Layer, ServiceExt};

/// A gRPC service named `echo.Echo` whose every method answers `OK`
/// (trailers-only form), as `add_service` takes one.
#[derive(Clone)]
struct Echo;

impl tonic::server::NamedService for Echo {
    const NAME: &'static str = "echo.Echo";
}

impl tower::Service<http::Request<Body>> for Echo {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Ready<Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<Body>) -> Self::Future {
        ready(Ok(tonic::Status::ok("").into_http()))
    }
}

/// The README's layers around `Echo`, its limit `quota`, served by
/// tonic's `Server::builder().layer(..).add_service(..)` on a free port.
async fn serve(quota: Quota, breaker: &Arc<CircuitBreaker>) -> std::net::SocketAddr {
    let layers = (
        RateLimitLayer::new("calls", Arc::new(TokenBucket::new(quota)))
            .responder(GrpcRateLimitResponse),
        CircuitBreakerLayer::new("search", Arc::clone(breaker))
            .classifier(GrpcClassifier::new())
            .responder(GrpcBreakerResponse)
            .record_at_end_of_body(),
        ClientFaultLayer::new(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tonic::transport::Server::builder()
        .layer(layers)
        .add_service(Echo)
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener));
    tokio::spawn(server);
    addr
}

/// One unary call to `addr`: its `grpc-status` (from the head: every
/// answer here is trailers-only), its body read to the end.
async fn call(addr: std::net::SocketAddr) -> String {
    let mut client = tower_common::h2_client(addr).await;
    let call = http::Request::post(format!("http://{addr}/echo.Echo/Say"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let answer = client.send_request(call).await.unwrap();
    assert_eq!(answer.status(), 200);
    let status = answer.headers()["grpc-status"].to_str().unwrap().to_owned();
    drop(answer.into_body().collect().await.unwrap());
    status
}

/// A limit of one call an hour in front of the README's stack: the second
/// call is refused by the limiter (`RESOURCE_EXHAUSTED`, its body an empty
/// `RecordedBody`), and the breaker counts only the first.
#[tokio::test]
async fn a_refusal_outside_an_end_of_body_breaker_is_served_through_tonic() {
    let breaker = Arc::new(CircuitBreaker::new(
        Config::builder().consecutive_failures(5).build().unwrap(),
    ));
    let addr = serve(Quota::per_hour(1).unwrap(), &breaker).await;
    assert_eq!(call(addr).await, "0");
    assert_eq!(call(addr).await, "8", "RESOURCE_EXHAUSTED");
    tower_common::eventually("the breaker records the first call", || {
        breaker.metrics().successes == 1
    })
    .await;
    let m = breaker.metrics();
    assert_eq!(
        (m.successes, m.failures, m.ignored, m.abandoned, m.rejected),
        (1, 0, 0, 0, 0)
    );
}

/// The same over plain HTTP with the JSON responders (the layers'
/// defaults): a limit refusing in front of a breaker recording at the end
/// of the body answers `429` with its JSON body.
#[tokio::test]
async fn a_json_refusal_outside_an_end_of_body_breaker_has_its_body() {
    let breaker = Arc::new(CircuitBreaker::new(
        Config::builder().consecutive_failures(5).build().unwrap(),
    ));
    let limit = RateLimitLayer::new(
        "api",
        Arc::new(TokenBucket::new(Quota::per_hour(1).unwrap())),
    );
    let inner = CircuitBreakerLayer::new("api", Arc::clone(&breaker))
        .record_at_end_of_body()
        .layer(tower::service_fn(|_: http::Request<()>| async {
            Ok::<_, Infallible>(http::Response::new(String::from("ok")))
        }));
    let service = limit.layer(inner);
    let first = service
        .clone()
        .oneshot(http::Request::new(()))
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.into_body().collect().await.unwrap().to_bytes(), "ok");
    let second = service.oneshot(http::Request::new(())).await.unwrap();
    assert_eq!(second.status(), 429);
    let body = second.into_body().collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["policy"], "api", "{json}");
    assert_eq!(breaker.metrics().successes, 1);
}

#[tokio::test]
async fn the_readme_grpc_layers_serve_through_tonic_server_builder() {
    // The README's example, word for word but for the counts kept here.
    let breaker = Arc::new(CircuitBreaker::new(
        Config::builder().consecutive_failures(5).build().unwrap(),
    ));
    let calls = Arc::new(TokenBucket::new(Quota::per_second(1_000).unwrap()));
    let layers = (
        RateLimitLayer::new("calls", calls).responder(GrpcRateLimitResponse),
        CircuitBreakerLayer::new("search", Arc::clone(&breaker))
            .classifier(GrpcClassifier::new())
            .responder(GrpcBreakerResponse)
            .record_at_end_of_body(),
        ClientFaultLayer::new(),
    );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tonic::transport::Server::builder()
        .layer(layers)
        .add_service(Echo)
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener));
    let running = tokio::spawn(server);

    let mut client = tower_common::h2_client(addr).await;
    let call = http::Request::post(format!("http://{addr}/echo.Echo/Say"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let answer = client.send_request(call).await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["grpc-status"], "0");
    assert!(answer.headers().contains_key("ratelimit"));
    drop(answer.into_body().collect().await.unwrap());
    tower_common::eventually("the breaker records the call", || {
        breaker.metrics().successes == 1
    })
    .await;
    let m = breaker.metrics();
    assert_eq!(
        (m.successes, m.failures, m.ignored, m.abandoned),
        (1, 0, 0, 0)
    );
    running.abort();
}
