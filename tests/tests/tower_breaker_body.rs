//! `CircuitBreakerLayer::record_at_end_of_body` under a real axum server
//! over HTTP/1.1: a response whose body fails mid-stream opens the breaker
//! (the default, recording at the head, counts it a success), and a client
//! that hangs up mid-stream abandons the permit.

use crate::tower_common;

use std::sync::Arc;

use crate::tower_common::frames::{FrameBody, Step};
use crate::tower_common::{get, serve};
use axum::body::Body;
use axum::routing::get as route;
use axum::Router;
use fusebox::breaker::{CircuitBreaker, Config, Metrics, State};
use fusebox::Clock;
use fusebox_std::tower::CircuitBreakerLayer;
use fusebox_std::TokioClock;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn breaker() -> Arc<CircuitBreaker> {
    let config = Config::builder()
        .consecutive_failures(1)
        .open_for(fusebox::Duration::from_secs(60))
        .build()
        .expect("valid config");
    Arc::new(CircuitBreaker::new(config))
}

/// Opens after one failure for 50 ms, then lets one trial through.
fn quick_breaker() -> Arc<CircuitBreaker> {
    let config = Config::builder()
        .consecutive_failures(1)
        .open_for(fusebox::Duration::from_millis(50))
        .half_open_permits(1)
        .build()
        .expect("valid config");
    Arc::new(CircuitBreaker::new(config))
}

/// `/reset` streams a chunk then fails; `/hang` streams a chunk then
/// never ends; `/ok` streams two chunks.
fn app() -> Router {
    Router::new()
        .route(
            "/reset",
            route(|| async { Body::new(FrameBody::new([Step::Data("partial"), Step::Error])) }),
        )
        .route(
            "/hang",
            route(|| async { Body::new(FrameBody::new([Step::Data("first"), Step::Hang])) }),
        )
        .route(
            "/ok",
            route(|| async { Body::new(FrameBody::new([Step::Data("a"), Step::Data("b")])) }),
        )
}

/// Sends `path` and reads what arrives until the server closes (hyper
/// aborts a response whose body fails: the client reads it cut short, here
/// before its first byte).
async fn fetch(addr: std::net::SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(&tower_common::request(path, &[]))
        .await
        .unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw).await;
    String::from_utf8_lossy(&raw).into_owned()
}

/// `app()` behind a [`quick_breaker`] named `name` that records at the end
/// of the body, served: the breaker, the layer's clock and the address.
async fn serve_recorded_at_end_of_body(
    name: &'static str,
) -> (Arc<CircuitBreaker>, TokioClock, std::net::SocketAddr) {
    let breaker = quick_breaker();
    let layer = CircuitBreakerLayer::new(name, Arc::clone(&breaker));
    let clock = layer.clock();
    let addr = serve(app().layer(layer.record_at_end_of_body())).await;
    (breaker, clock, addr)
}

async fn until_half_open(breaker: &CircuitBreaker, clock: TokioClock) {
    tower_common::eventually("half-open", || {
        breaker.state(clock.now()) == State::HalfOpen
    })
    .await;
}

/// A raw connection asking `/hang`, read until its body's first chunk:
/// the stream is then in flight, held open by the caller.
async fn hang_mid_stream(addr: std::net::SocketAddr) -> tokio::net::TcpStream {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(&tower_common::request("/hang", &[]))
        .await
        .unwrap();
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("first") {
        let mut chunk = [0; 512];
        let n = stream.read(&mut chunk).await.unwrap();
        assert_ne!(n, 0, "the server closed early");
        seen.extend_from_slice(&chunk[..n]);
    }
    stream
}

fn counts(m: Metrics) -> (u64, u64, u64) {
    (m.successes, m.failures, m.abandoned)
}

#[tokio::test]
async fn a_body_failing_mid_stream_opens_the_breaker() {
    let breaker = breaker();
    let layer = CircuitBreakerLayer::new("proxy", Arc::clone(&breaker)).record_at_end_of_body();
    let addr = serve(app().layer(layer)).await;
    assert_eq!(
        get(addr, "/ok", &[]).await.body,
        "1\r\na\r\n1\r\nb\r\n0\r\n\r\n"
    );
    assert_eq!(counts(breaker.metrics()), (1, 0, 0));
    let cut = fetch(addr, "/reset").await;
    assert!(!cut.ends_with("0\r\n\r\n"), "cut short: {cut:?}");
    assert_eq!(counts(breaker.metrics()), (1, 1, 0));
    assert_eq!(get(addr, "/ok", &[]).await.status, 503, "open");
}

#[tokio::test]
async fn recording_at_the_head_counts_the_same_answer_a_success() {
    let breaker = breaker();
    let addr = serve(app().layer(CircuitBreakerLayer::new("proxy", Arc::clone(&breaker)))).await;
    let cut = fetch(addr, "/reset").await;
    assert!(!cut.ends_with("0\r\n\r\n"), "cut short: {cut:?}");
    assert_eq!(counts(breaker.metrics()), (1, 0, 0));
}

#[tokio::test]
async fn a_client_hanging_up_mid_stream_abandons_the_permit() {
    let breaker = breaker();
    let layer = CircuitBreakerLayer::new("stream", Arc::clone(&breaker)).record_at_end_of_body();
    let addr = serve(app().layer(layer)).await;
    let stream = hang_mid_stream(addr).await;
    assert_eq!(counts(breaker.metrics()), (0, 0, 0), "still streaming");
    drop(stream);
    // hyper notices the closed connection and drops the body.
    tower_common::eventually("the permit is abandoned", || {
        breaker.metrics().abandoned == 1
    })
    .await;
    assert_eq!(counts(breaker.metrics()), (0, 0, 1));
}

/// Sends `head` (a raw request head) on a new connection and reads the
/// whole response.
async fn send(addr: std::net::SocketAddr, head: &str) -> tower_common::Reply {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    tower_common::read_reply(&mut stream).await
}

#[tokio::test]
async fn a_head_request_counts_though_its_body_is_never_sent() {
    // hyper sends no body to a HEAD request (nor with a 204 or 304), and
    // axum replaces it with an empty one: the body the permit waits in is
    // dropped unpolled, which must not read as a client hanging up.
    let breaker = breaker();
    let layer = CircuitBreakerLayer::new("stream", Arc::clone(&breaker)).record_at_end_of_body();
    let addr = serve(app().layer(layer)).await;
    let reply = send(
        addr,
        "HEAD /ok HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!((reply.status, reply.body.as_str()), (200, ""));
    assert_eq!(counts(breaker.metrics()), (1, 0, 0));
}

#[tokio::test]
async fn a_body_of_the_length_its_header_declares_counts_when_whole() {
    // With a `content-length`, hyper's HTTP/1 writer stops after that many
    // bytes and drops the body without asking for its end (a streamed
    // file, or an upstream's answer relayed with its length).
    let breaker = breaker();
    let layer = CircuitBreakerLayer::new("files", Arc::clone(&breaker)).record_at_end_of_body();
    let app = Router::new().route(
        "/file",
        route(|| async {
            let body = Body::new(FrameBody::new([Step::Data("ab"), Step::Data("cd")]));
            http::Response::builder()
                .header(http::header::CONTENT_LENGTH, "4")
                .body(body)
                .unwrap()
        }),
    );
    let addr = serve(app.layer(layer)).await;
    let reply = get(addr, "/file", &[]).await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "abcd"));
    assert_eq!(counts(breaker.metrics()), (1, 0, 0));
}

/// A half-open trial is decided when its body ends, not when its head
/// arrives: a body failing mid-stream reopens the breaker, as often as it
/// is tried; a whole body closes it.
#[tokio::test]
async fn a_half_open_trial_is_decided_when_its_body_ends() {
    let (breaker, clock, addr) = serve_recorded_at_end_of_body("proxy").await;
    let cut = fetch(addr, "/reset").await;
    assert!(!cut.ends_with("0\r\n\r\n"), "cut short: {cut:?}");
    assert_eq!(breaker.metrics().trips, 1);
    for round in 1..=2 {
        until_half_open(&breaker, clock).await;
        let cut = fetch(addr, "/reset").await;
        assert!(!cut.ends_with("0\r\n\r\n"), "the trial, cut short: {cut:?}");
        assert_eq!(
            (breaker.metrics().trips, counts(breaker.metrics())),
            (1 + round, (0, 1 + round, 0)),
            "round {round}: the failed trial reopens it"
        );
    }
    until_half_open(&breaker, clock).await;
    assert_eq!(
        get(addr, "/ok", &[]).await.body,
        "1\r\na\r\n1\r\nb\r\n0\r\n\r\n"
    );
    assert_eq!(breaker.state(clock.now()), State::Closed);
    assert_eq!(counts(breaker.metrics()), (1, 3, 0));
}

/// A trial holds its slot while its body streams (every other request
/// refused); its client hanging up abandons it, which frees the slot
/// without deciding: the next trial decides.
#[tokio::test]
async fn a_trial_whose_client_hangs_up_mid_stream_frees_its_slot() {
    let (breaker, clock, addr) = serve_recorded_at_end_of_body("stream").await;
    fetch(addr, "/reset").await;
    assert_eq!(breaker.metrics().trips, 1);
    until_half_open(&breaker, clock).await;
    let stream = hang_mid_stream(addr).await;
    assert_eq!(get(addr, "/ok", &[]).await.status, 503, "the trial streams");
    assert_eq!(breaker.state(clock.now()), State::HalfOpen);
    assert_eq!(counts(breaker.metrics()), (0, 1, 0));
    drop(stream);
    tower_common::eventually("the trial is abandoned", || {
        breaker.metrics().abandoned == 1
    })
    .await;
    assert_eq!(breaker.state(clock.now()), State::HalfOpen);
    assert_eq!(get(addr, "/ok", &[]).await.status, 200);
    assert_eq!(breaker.state(clock.now()), State::Closed);
    assert_eq!(counts(breaker.metrics()), (1, 1, 1));
    assert_eq!(breaker.metrics().rejected, 1);
}
