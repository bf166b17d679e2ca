//! What a breaker layer counts where its docs said otherwise or nothing:
//! a timeout inside the layer, a timeout around it, a gRPC client
//! resetting its own request stream (which tonic answers with a status the
//! default `GrpcClassifier` counts as the service's failure, unless a
//! `ClientFaultLayer` inside the breaker marks those answers, or the
//! request's message is read before the breaker; an axum handler buffering the
//! body answers `400`, ignored), and a plain HTTP answer behind a
//! `GrpcClassifier` recording at the end of the body.

use crate::tower_common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use crate::tower_common::eventually;
use crate::tower_common::unit_codec::Unit;
use fusebox::breaker::{CircuitBreaker, Config, Metrics};
use fusebox_std::tower::breaker::{
    ClientFaultLayer, GrpcBreakerResponse, GrpcClassifier, WatchedBody,
};
use fusebox_std::tower::CircuitBreakerLayer;
use http_body_util::{BodyExt, Full};
use tonic::body::Body;
use tower::util::BoxCloneSyncService;
use tower::{Layer, Service, ServiceExt};

fn breaker() -> Arc<CircuitBreaker> {
    breaker_of(3)
}

/// A breaker opening after `failures` consecutive failures.
fn breaker_of(failures: u32) -> Arc<CircuitBreaker> {
    let config = Config::builder()
        .consecutive_failures(failures)
        .open_for(fusebox::Duration::from_secs(60))
        .build()
        .expect("valid config");
    Arc::new(CircuitBreaker::new(config))
}

/// (successes, failures, ignored, abandoned, trips).
fn counts(m: &Metrics) -> (u64, u64, u64, u64, u64) {
    (m.successes, m.failures, m.ignored, m.abandoned, m.trips)
}

/// An upstream that never answers.
fn hang(_: http::Request<()>) -> std::future::Pending<Result<http::Response<String>, Infallible>> {
    std::future::pending()
}

/// The layer's docs said a timeout layer *inside* it frees a hung call's
/// slot "by dropping the hung response future (the trial is abandoned,
/// without deciding)". The breaker's future is not the one dropped: it
/// receives the timeout's error, a failure (a half-open trial that times
/// out reopens the breaker). Only a timeout *around* the layer drops the
/// breaker's future and abandons the permit. Both as the docs now say.
#[tokio::test(start_paused = true)]
async fn a_timeout_inside_the_layer_is_a_failure_and_one_around_it_an_abandonment() {
    let inside = breaker();
    let mut service = CircuitBreakerLayer::new("inside", Arc::clone(&inside)).layer(
        tower::timeout::TimeoutLayer::new(StdDuration::from_secs(1)).layer(tower::service_fn(hang)),
    );
    for _ in 0..3 {
        let result = service
            .ready()
            .await
            .unwrap()
            .call(http::Request::new(()))
            .await;
        assert!(result.is_err(), "the timeout's Elapsed");
    }
    assert_eq!(
        counts(&inside.metrics()),
        (0, 3, 0, 0, 1),
        "three failures trip it"
    );

    let around = breaker();
    let mut service = tower::timeout::TimeoutLayer::new(StdDuration::from_secs(1)).layer(
        CircuitBreakerLayer::new("around", Arc::clone(&around)).layer(tower::service_fn(hang)),
    );
    for _ in 0..3 {
        let result = service
            .ready()
            .await
            .unwrap()
            .call(http::Request::new(()))
            .await;
        assert!(result.is_err(), "the timeout's Elapsed");
    }
    assert_eq!(
        counts(&around.metrics()),
        (0, 0, 0, 3, 0),
        "dropped: abandoned"
    );
}

/// With `GrpcClassifier` and `record_at_end_of_body`, a plain HTTP
/// answer (a body, no trailers) is read as a gRPC stream that ended
/// without its status: `UNKNOWN`, a failure, as the docs now warn; with
/// `HttpClassifier` the same answers are successes.
#[tokio::test(start_paused = true)]
async fn a_plain_http_answer_behind_a_grpc_classifier_at_the_end_of_the_body_fails() {
    let hello = || {
        tower::service_fn(|_: http::Request<()>| async {
            Ok::<_, Infallible>(http::Response::new(String::from("hello")))
        })
    };
    let grpc = breaker();
    let http = breaker();
    let mut as_grpc = CircuitBreakerLayer::new("mixed", Arc::clone(&grpc))
        .classifier(GrpcClassifier::new())
        .record_at_end_of_body()
        .layer(hello());
    let mut as_http = CircuitBreakerLayer::new("plain", Arc::clone(&http))
        .record_at_end_of_body()
        .layer(hello());
    for _ in 0..3 {
        let response = as_grpc
            .ready()
            .await
            .unwrap()
            .call(http::Request::new(()))
            .await;
        let body = response.unwrap().into_body().collect().await.unwrap();
        assert_eq!(body.to_bytes(), "hello");
        let response = as_http
            .ready()
            .await
            .unwrap()
            .call(http::Request::new(()))
            .await;
        let body = response.unwrap().into_body().collect().await.unwrap();
        assert_eq!(body.to_bytes(), "hello");
    }
    assert_eq!(
        counts(&grpc.metrics()),
        (0, 3, 0, 0, 1),
        "every success a failure"
    );
    assert_eq!(counts(&http.metrics()), (3, 0, 0, 0, 0));
}

type Grpc = BoxCloneSyncService<http::Request<Body>, http::Response<Body>, Infallible>;

/// A healthy unary method as tonic serves it (every call it can read
/// answers `OK`), counting its calls into `calls`.
fn healthy(calls: Arc<AtomicUsize>) -> Grpc {
    BoxCloneSyncService::new(tower::service_fn(move |request: http::Request<Body>| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move {
            let ok = tower::service_fn(|_: tonic::Request<()>| async {
                Ok::<_, tonic::Status>(tonic::Response::new(()))
            });
            Ok::<_, Infallible>(tonic::server::Grpc::new(Unit).unary(ok, request).await)
        }
    }))
}

/// `inner`, its request's body read whole first: a body that fails (its
/// stream reset by the client) is answered `CANCELLED` here, and never
/// reaches `inner`. Counts its calls into `calls`, and the failed bodies
/// into `failed`.
fn read_first(inner: Grpc, calls: Arc<AtomicUsize>, failed: Arc<AtomicUsize>) -> Grpc {
    BoxCloneSyncService::new(tower::service_fn(move |request: http::Request<Body>| {
        calls.fetch_add(1, Ordering::SeqCst);
        let (inner, failed) = (inner.clone(), Arc::clone(&failed));
        async move {
            let (head, body) = request.into_parts();
            if let Ok(whole) = body.collect().await {
                let body = Body::new(Full::new(whole.to_bytes()));
                inner.oneshot(http::Request::from_parts(head, body)).await
            } else {
                failed.fetch_add(1, Ordering::SeqCst);
                Ok(tonic::Status::cancelled("request stream reset").into_http())
            }
        }
    }))
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

/// How a client ends a call before sending its message.
#[derive(Clone, Copy, Debug)]
enum Ending {
    /// `RST_STREAM` with this reason.
    Reset(h2::Reason),
    /// Its connection closed.
    Close,
}

/// Sends one unary call per ending, each on a connection of its own and
/// ended so once `called` shows the server took it, before its message
/// is sent; waits until `settled(n)` says the server has dealt with the
/// first `n` before the next.
async fn end_calls(
    addr: SocketAddr,
    endings: &[Ending],
    called: &Arc<AtomicUsize>,
    settled: impl Fn(usize) -> bool,
) {
    for (i, ending) in endings.iter().enumerate() {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (client, connection) = h2::client::handshake(tcp).await.unwrap();
        let connection = tokio::spawn(connection);
        let mut client = client.ready().await.unwrap();
        let request = http::Request::post(format!("http://{addr}/echo.Echo/Unary"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .unwrap();
        let (_answer, mut stream) = client.send_request(request, false).unwrap();
        eventually("the server takes the call", || {
            called.load(Ordering::SeqCst) == i + 1
        })
        .await;
        match ending {
            Ending::Reset(reason) => stream.send_reset(*reason),
            Ending::Close => connection.abort(),
        }
        eventually("the ended call is dealt with", || settled(i + 1)).await;
    }
}

/// Calls the breaker has decided: recorded or abandoned.
fn decided(breaker: &CircuitBreaker) -> usize {
    let m = breaker.metrics();
    usize::try_from(m.successes + m.failures + m.ignored + m.abandoned).unwrap()
}

/// A client resetting its request stream before its message arrives
/// makes tonic answer the status its reading of the reset gives:
/// `UNAVAILABLE` for `REFUSED_STREAM`, `UNKNOWN` for an error code it
/// does not know (`HTTP_1_1_REQUIRED`, or any unassigned one); a client
/// whose connection closes then (one losing its network) gets `UNKNOWN`
/// too. All are failures to the default `GrpcClassifier`, and the breaker
/// cannot tell them from the service's: a few such calls open the breaker
/// of a healthy service. `CANCEL` (what a client library sends when a
/// call is cancelled) is `CANCELLED`, ignored. With the request's message
/// read before the breaker (the docs' advice facing untrusted clients),
/// none reaches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_ending_its_upload_fails_the_call_unless_the_message_is_read_first() {
    let endings = [
        Ending::Reset(h2::Reason::CANCEL),
        Ending::Reset(h2::Reason::REFUSED_STREAM),
        Ending::Reset(h2::Reason::HTTP_1_1_REQUIRED),
        Ending::Reset(h2::Reason::from(0x1234)),
        Ending::Close,
    ];
    let layer = |breaker: &Arc<CircuitBreaker>| {
        CircuitBreakerLayer::new("grpc", Arc::clone(breaker))
            .classifier(GrpcClassifier::new())
            .responder(GrpcBreakerResponse)
    };

    // Opens at the fourth failure: every call is let through.
    let exposed = breaker_of(4);
    let calls = Arc::new(AtomicUsize::new(0));
    let service = layer(&exposed).layer(healthy(Arc::clone(&calls)));
    let addr = serve_grpc(BoxCloneSyncService::new(service)).await;
    end_calls(addr, &endings, &calls, |n| decided(&exposed) == n).await;
    assert_eq!(
        counts(&exposed.metrics()),
        (0, 4, 1, 0, 1),
        "CANCEL ignored, the others failures: the healthy service's breaker opened"
    );

    let guarded = breaker();
    let calls = Arc::new(AtomicUsize::new(0));
    let inner = BoxCloneSyncService::new(layer(&guarded).layer(healthy(Arc::default())));
    let failed = Arc::new(AtomicUsize::new(0));
    let addr = serve_grpc(read_first(inner, Arc::clone(&calls), Arc::clone(&failed))).await;
    end_calls(addr, &endings, &calls, |n| {
        failed.load(Ordering::SeqCst) == n
    })
    .await;
    assert_eq!(
        counts(&guarded.metrics()),
        (0, 0, 0, 0, 0),
        "none reached it"
    );
}

/// The same calls with a `ClientFaultLayer` inside the breaker: each
/// answer to a call whose client ended its stream is marked, and ignored
/// by `GrpcClassifier`; the healthy service's breaker stays closed, while
/// every call still reaches the service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_fault_layer_makes_a_client_ending_its_upload_ignored() {
    let endings = [
        Ending::Reset(h2::Reason::CANCEL),
        Ending::Reset(h2::Reason::REFUSED_STREAM),
        Ending::Reset(h2::Reason::HTTP_1_1_REQUIRED),
        Ending::Reset(h2::Reason::from(0x1234)),
        Ending::Close,
    ];
    let breaker = breaker_of(4);
    let calls = Arc::new(AtomicUsize::new(0));
    let watched = tower::ServiceBuilder::new()
        .layer(ClientFaultLayer::new())
        .map_request(|request: http::Request<WatchedBody<Body>>| request.map(Body::new))
        .service(healthy(Arc::clone(&calls)));
    let service = CircuitBreakerLayer::new("grpc", Arc::clone(&breaker))
        .classifier(GrpcClassifier::new())
        .responder(GrpcBreakerResponse)
        .layer(watched);
    let addr = serve_grpc(BoxCloneSyncService::new(service)).await;
    end_calls(addr, &endings, &calls, |n| decided(&breaker) == n).await;
    assert_eq!(
        counts(&breaker.metrics()),
        (0, 0, 5, 0, 0),
        "every call the client ended is ignored: the breaker stays closed"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 5);
}

/// The same over HTTP/1 to axum, whose body extractors answer a body that
/// fails (its client gone mid-upload) with `400`: ignored by the default
/// `HttpClassifier`, however many clients do it: the healthy service's
/// breaker stays closed. Each client sends a head promising 1 000 bytes, 10 of them,
/// and closes its side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_abandoned_before_an_axum_extractor_is_no_failure() {
    use tokio::io::AsyncWriteExt;

    let core = breaker();
    let app = axum::Router::new()
        .route(
            "/upload",
            axum::routing::post(|body: axum::body::Bytes| async move { body.len().to_string() }),
        )
        .layer(CircuitBreakerLayer::new("uploads", Arc::clone(&core)));
    let addr = tower_common::serve(app).await;
    for i in 0..5 {
        let mut stream = tower_common::connect_from(addr, std::net::Ipv4Addr::LOCALHOST).await;
        let head = "POST /upload HTTP/1.1\r\nhost: test\r\ncontent-length: 1000\r\n\r\n";
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&[b'x'; 10]).await.unwrap();
        stream.shutdown().await.unwrap();
        eventually("the server deals with the call", || decided(&core) == i + 1).await;
    }
    let m = core.metrics();
    assert_eq!((m.failures, m.trips), (0, 0), "{m:?}");
    assert_eq!((m.ignored, m.abandoned), (5, 0), "five 400s: {m:?}");
}
