//! Both layers in front of a real tonic server over HTTP/2: with
//! `GrpcClassifier`, a service failing with `UNAVAILABLE` opens the
//! breaker, a client's `NOT_FOUND` or a made-up method's `UNIMPLEMENTED`
//! does not (the default `HttpClassifier` sees only HTTP 200s); the gRPC
//! responders' refusals are statuses tonic itself reads back.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::tower_common::frames::{FrameBody, Step};
use crate::tower_common::unit_codec::Unit;
use fusebox::breaker::{CircuitBreaker, Config, Metrics, State};
use fusebox::bucket::Quota;
use fusebox::{Clock, TokenBucket};
use fusebox_std::policy::Classify;
use fusebox_std::tower::breaker::{GrpcBreakerResponse, GrpcClassifier};
use fusebox_std::tower::rate_limit::GrpcRateLimitResponse;
use fusebox_std::tower::{CircuitBreakerLayer, RateLimitLayer};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use tonic::body::Body;
use tower::util::BoxCloneSyncService;
use tower::ServiceBuilder;

use crate::tower_common;

fn breaker() -> Arc<CircuitBreaker> {
    let config = Config::builder()
        .consecutive_failures(3)
        .open_for(fusebox::Duration::from_secs(60))
        .build()
        .expect("valid config");
    Arc::new(CircuitBreaker::new(config))
}

/// A gRPC service as tonic serves it.
type Grpc = BoxCloneSyncService<http::Request<Body>, http::Response<Body>, Infallible>;

/// Unary methods answering the status their name says
/// (`/echo.Echo/Unavailable`, `/echo.Echo/NotFound`, `/echo.Echo/Ok`) in
/// trailers-only form; streaming ones sending a message, then their
/// status in trailers (`/echo.Echo/StreamOk`, `/echo.Echo/StreamFails`,
/// `/echo.Echo/StreamUnfinished` with none); `UNIMPLEMENTED` for any other
/// method, as tonic's router answers.
fn methods() -> Grpc {
    BoxCloneSyncService::new(tower::service_fn(
        |request: http::Request<Body>| async move {
            let stream = |steps| {
                http::Response::builder()
                    .header("content-type", "application/grpc")
                    .body(Body::new(FrameBody::new(steps)))
                    .unwrap()
            };
            let status = match request.uri().path() {
                "/echo.Echo/Ok" => tonic::Status::ok(""),
                "/echo.Echo/Unavailable" => tonic::Status::unavailable("down"),
                "/echo.Echo/NotFound" => tonic::Status::not_found("no such user"),
                "/echo.Echo/StreamOk" => {
                    return Ok(stream(vec![Step::Data("m"), Step::GrpcStatus("0")]));
                }
                "/echo.Echo/StreamFails" => {
                    return Ok(stream(vec![Step::Data("m"), Step::GrpcStatus("14")]));
                }
                "/echo.Echo/StreamUnfinished" => return Ok(stream(vec![Step::Data("m")])),
                "/echo.Echo/Unary" => {
                    let ok = tower::service_fn(|_: tonic::Request<()>| async {
                        Ok::<_, tonic::Status>(tonic::Response::new(()))
                    });
                    return Ok(tonic::server::Grpc::new(Unit).unary(ok, request).await);
                }
                _ => tonic::Status::unimplemented("no such method"),
            };
            Ok::<_, Infallible>(status.into_http::<Body>())
        },
    ))
}

/// Serves `service` with tonic on a free loopback port.
async fn serve_grpc(service: Grpc) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tonic::transport::Server::builder().serve_with_incoming(
        service,
        tonic::transport::server::TcpIncoming::from(listener),
    );
    tokio::spawn(server);
    addr
}

/// [`methods`] behind a breaker answering its refusals with
/// `GrpcBreakerResponse` (and, if given, a rate limit with
/// `GrpcRateLimitResponse` in front of it).
async fn serve<C>(
    breaker: &Arc<CircuitBreaker>,
    classifier: C,
    limit: Option<Arc<TokenBucket>>,
) -> SocketAddr
where
    C: Classify<http::Response<Body>, Infallible> + Clone + Send + Sync + 'static,
{
    let layer = CircuitBreakerLayer::new("grpc", Arc::clone(breaker))
        .classifier(classifier)
        .responder(GrpcBreakerResponse);
    let limit =
        limit.map(|bucket| RateLimitLayer::new("calls", bucket).responder(GrpcRateLimitResponse));
    let stack = ServiceBuilder::new()
        .option_layer(limit)
        .layer(layer)
        .service(methods());
    serve_grpc(BoxCloneSyncService::new(stack)).await
}

/// An HTTP/2 gRPC client calling `method` `n` times; the `grpc-status` of
/// each answer (all HTTP 200), from its head or its trailers.
async fn call(addr: SocketAddr, method: &str, n: usize) -> Vec<String> {
    let answers = answers(addr, method, n).await;
    answers
        .iter()
        .map(|h| h["grpc-status"].to_str().unwrap().to_owned())
        .collect()
}

/// The headers of `n` answers to `method`, with their trailers.
async fn answers(addr: SocketAddr, method: &str, n: usize) -> Vec<http::HeaderMap> {
    answers_to(addr, method, n, b"").await
}

/// [`answers`] to requests whose body is `body` (gRPC frames).
async fn answers_to(
    addr: SocketAddr,
    method: &str,
    n: usize,
    body: &'static [u8],
) -> Vec<http::HeaderMap> {
    let mut client = tower_common::h2_client(addr).await;
    let mut statuses = Vec::new();
    for _ in 0..n {
        let request = http::Request::post(format!("http://{addr}/echo.Echo/{method}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(Full::new(Bytes::from_static(body)))
            .unwrap();
        let response = client.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        let mut headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap();
        headers.extend(body.trailers().cloned().unwrap_or_default());
        statuses.push(headers);
    }
    statuses
}

fn counts(m: &Metrics) -> (u64, u64, u64, u64) {
    (m.successes, m.failures, m.ignored, m.rejected)
}

#[tokio::test]
async fn unavailable_opens_the_breaker_client_faults_do_not() {
    let breaker = breaker();
    let addr = serve(&breaker, GrpcClassifier::new(), None).await;
    assert_eq!(call(addr, "NotFound", 5).await, ["5"; 5]);
    assert_eq!(call(addr, "NoSuchMethod", 5).await, ["12"; 5]);
    assert_eq!(call(addr, "Ok", 1).await, ["0"]);
    assert_eq!(breaker.state(fusebox::Instant::ZERO), State::Closed);
    assert_eq!(counts(&breaker.metrics()), (1, 0, 10, 0));

    assert_eq!(call(addr, "Unavailable", 3).await, ["14"; 3]);
    assert_eq!(breaker.metrics().trips, 1);
    // Open: refused by the breaker, the service never called; tonic reads
    // the refusal as a status with its message and the wait pushed back.
    let refused = answers(addr, "Ok", 2).await;
    assert_eq!(counts(&breaker.metrics()), (1, 3, 10, 2));
    let status = tonic::Status::from_header_map(&refused[1]).expect("a gRPC status");
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(status.message(), "circuit breaker grpc is open");
    let pushback: u64 = refused[1]["grpc-retry-pushback-ms"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((59_000..=60_002).contains(&pushback), "{pushback} ms");
}

#[tokio::test]
async fn a_limits_refusal_is_resource_exhausted_and_not_the_services_failure() {
    let breaker = breaker();
    let bucket = Arc::new(TokenBucket::new(Quota::per_hour(2).unwrap()));
    let addr = serve(&breaker, GrpcClassifier::new(), Some(bucket)).await;
    let answers = answers(addr, "Ok", 5).await;
    let statuses: Vec<_> = answers.iter().map(|h| &h["grpc-status"]).collect();
    assert_eq!(statuses, ["0", "0", "8", "8", "8"]);
    let status = tonic::Status::from_header_map(&answers[2]).expect("a gRPC status");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    assert_eq!(status.message(), "rate limit calls exceeded");
    let pushback: u64 = answers[2]["grpc-retry-pushback-ms"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1_799_000..=1_800_001).contains(&pushback), "{pushback} ms");
    // Nothing left until the next token: `t` is the wait (draft § 6).
    assert_eq!(answers[2]["ratelimit"], "\"calls\";r=0;t=1800");
    // The limit sits in front of the breaker: refusals never reach it.
    assert_eq!(counts(&breaker.metrics()), (2, 0, 0, 0));
}

#[tokio::test]
async fn the_http_classifier_counts_grpc_errors_as_successes() {
    // Why gRPC needs its own classifier: every answer is an HTTP 200.
    let breaker = breaker();
    let addr = serve(&breaker, fusebox_std::tower::breaker::HttpClassifier, None).await;
    assert_eq!(call(addr, "Unavailable", 5).await, ["14"; 5]);
    assert_eq!(counts(&breaker.metrics()), (5, 0, 0, 0));
    assert_eq!(breaker.metrics().trips, 0);
}

#[tokio::test]
async fn recording_at_the_end_of_the_body_reads_a_streams_trailers() {
    let breaker = breaker();
    let layer = CircuitBreakerLayer::new("grpc", Arc::clone(&breaker))
        .classifier(GrpcClassifier::new())
        .responder(GrpcBreakerResponse)
        .record_at_end_of_body();
    let stack = ServiceBuilder::new()
        .map_response(|r: http::Response<_>| r.map(Body::new))
        .layer(layer)
        .service(methods());
    let addr = serve_grpc(BoxCloneSyncService::new(stack)).await;
    assert_eq!(call(addr, "StreamOk", 2).await, ["0"; 2]);
    assert_eq!(
        call(addr, "NotFound", 1).await,
        ["5"],
        "decided by the head"
    );
    assert_eq!(counts(&breaker.metrics()), (2, 0, 1, 0));
    assert_eq!(call(addr, "StreamFails", 2).await, ["14"; 2]);
    assert_eq!(counts(&breaker.metrics()), (2, 2, 1, 0));
    assert_eq!(breaker.metrics().trips, 0, "three in a row open it");
    let unfinished = answers(addr, "StreamUnfinished", 1).await;
    assert!(!unfinished[0].contains_key("grpc-status"));
    assert_eq!(
        counts(&breaker.metrics()),
        (2, 3, 1, 0),
        "no status: UNKNOWN"
    );
    assert_eq!(breaker.metrics().trips, 1);
    assert_eq!(
        call(addr, "StreamOk", 1).await,
        ["14"],
        "refused while open"
    );
}

/// A half-open trial through a layer recording at the end of the body is
/// decided by its stream's trailers, not by its head (an HTTP 200 without
/// a status, whatever the stream then says): a stream that keeps failing
/// reopens the breaker at each trial, and one that ends `OK` closes it.
#[tokio::test]
async fn a_half_open_trial_is_decided_by_its_streams_trailers() {
    let breaker = Arc::new(CircuitBreaker::new(
        Config::builder()
            .consecutive_failures(3)
            .open_for(fusebox::Duration::from_millis(50))
            .half_open_permits(1)
            .build()
            .expect("valid config"),
    ));
    let layer = CircuitBreakerLayer::new("grpc", Arc::clone(&breaker))
        .classifier(GrpcClassifier::new())
        .responder(GrpcBreakerResponse);
    let clock = layer.clock();
    let stack = ServiceBuilder::new()
        .map_response(|r: http::Response<_>| r.map(Body::new))
        .layer(layer.record_at_end_of_body())
        .service(methods());
    let addr = serve_grpc(BoxCloneSyncService::new(stack)).await;
    assert_eq!(call(addr, "StreamFails", 3).await, ["14"; 3]);
    assert_eq!(breaker.metrics().trips, 1);
    for round in 1..=3 {
        tower_common::eventually("half-open", || {
            breaker.state(clock.now()) == State::HalfOpen
        })
        .await;
        assert_eq!(call(addr, "StreamFails", 1).await, ["14"], "the trial");
        let m = breaker.metrics();
        assert_eq!(
            (m.trips, m.failures, m.successes),
            (1 + round, 3 + round, 0),
            "round {round}: the failed trial reopens it"
        );
    }
    tower_common::eventually("half-open", || {
        breaker.state(clock.now()) == State::HalfOpen
    })
    .await;
    assert_eq!(call(addr, "StreamOk", 1).await, ["0"]);
    assert_eq!(breaker.state(clock.now()), State::Closed);
    assert_eq!(counts(&breaker.metrics()), (1, 6, 0, 0));
}

#[tokio::test]
async fn recording_at_the_head_misses_a_streams_failure() {
    let breaker = breaker();
    let addr = serve(&breaker, GrpcClassifier::new(), None).await;
    assert_eq!(call(addr, "StreamFails", 3).await, ["14"; 3]);
    assert_eq!(counts(&breaker.metrics()), (3, 0, 0, 0));
}

#[tokio::test]
async fn a_client_sending_malformed_messages_cannot_open_the_breaker() {
    // A gRPC library answers a request it cannot read with INTERNAL
    // (tonic: a unary call without its message, a frame cut short, a
    // compressed-flag without grpc-encoding): any client can send one.
    let breaker = breaker();
    let addr = serve(&breaker, GrpcClassifier::new(), None).await;
    let message = &[0, 0, 0, 0, 0]; // one empty message, uncompressed
    assert_eq!(
        answers_to(addr, "Unary", 1, message).await[0]["grpc-status"],
        "0"
    );
    for malformed in [&b""[..], &[0, 0, 0, 0, 9, 1], &[1, 0, 0, 0, 0]] {
        let answer = &answers_to(addr, "Unary", 1, malformed).await[0];
        let status = tonic::Status::from_header_map(answer).expect("a gRPC status");
        assert_eq!(status.code(), tonic::Code::Internal, "{}", status.message());
    }
    assert_eq!(call(addr, "Unary", 5).await, ["13"; 5]);
    assert_eq!(breaker.metrics().trips, 0);
    assert_eq!(counts(&breaker.metrics()), (1, 0, 8, 0));
    assert_eq!(
        answers_to(addr, "Unary", 1, message).await[0]["grpc-status"],
        "0"
    );
}
