//! Recording at the end of the body, on paused tokio time: a response
//! counts when its body ends (or fails, or is dropped), its trailers are
//! classified, its head still decides a failure at once, and a half-open
//! trial is decided when its body ends.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration as StdDuration;

use bytes::Bytes;
use fusebox::breaker::{CircuitBreaker, Config, Metrics, Outcome, State};
use fusebox::{Clock, Duration};
use http::{HeaderMap, Request, Response};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use tower_layer::Layer;
use tower_service::Service;

use super::{CircuitBreakerLayer, GrpcClassifier, RecordedBody};

/// A body that yields its script, then ends; `end_known` says whether
/// `is_end_stream` reports the end as soon as the script is used up (as a
/// body of known length does) or only after a last poll.
#[derive(Debug)]
struct ScriptBody {
    frames: VecDeque<Result<Frame<Bytes>, &'static str>>,
    end_known: bool,
}

impl ScriptBody {
    fn new(end_known: bool) -> Self {
        Self {
            frames: VecDeque::new(),
            end_known,
        }
    }
    fn data(mut self, chunk: &'static str) -> Self {
        self.frames.push_back(Ok(Frame::data(Bytes::from(chunk))));
        self
    }
    fn trailers(mut self, status: &'static str) -> Self {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", status.parse().unwrap());
        self.frames.push_back(Ok(Frame::trailers(trailers)));
        self
    }
    fn error(mut self) -> Self {
        self.frames.push_back(Err("upstream reset"));
        self
    }
}

/// The default responder's JSON refusal.
impl From<String> for ScriptBody {
    fn from(json: String) -> Self {
        let mut body = Self::new(true);
        body.frames.push_back(Ok(Frame::data(Bytes::from(json))));
        body
    }
}

impl Body for ScriptBody {
    type Data = Bytes;
    type Error = &'static str;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, &'static str>>> {
        Poll::Ready(self.frames.pop_front())
    }

    fn is_end_stream(&self) -> bool {
        self.end_known && self.frames.is_empty()
    }
}

fn core(config: fusebox::breaker::ConfigBuilder) -> Arc<CircuitBreaker> {
    Arc::new(CircuitBreaker::new(config.build().expect("valid config")))
}

fn one_failure_opens() -> fusebox::breaker::ConfigBuilder {
    Config::builder()
        .consecutive_failures(1)
        .open_for(Duration::from_secs(30))
        .half_open_permits(1)
}

/// A service answering each request with the body `make` builds, after
/// `delay` of (paused) time, with status `status`.
#[derive(Clone)]
struct Answer {
    status: u16,
    make: fn() -> ScriptBody,
}

impl Service<Request<()>> for Answer {
    type Response = Response<ScriptBody>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<ScriptBody>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<()>) -> Self::Future {
        let mut response = Response::new((self.make)());
        *response.status_mut() = http::StatusCode::from_u16(self.status).unwrap();
        std::future::ready(Ok(response))
    }
}

type Recorded<C> = Response<RecordedBody<ScriptBody, C>>;

async fn call<S: Service<Request<()>>>(service: &mut S) -> S::Response
where
    S::Error: std::fmt::Debug,
{
    std::future::poll_fn(|cx| service.poll_ready(cx))
        .await
        .unwrap();
    service.call(Request::new(())).await.unwrap()
}

fn counts(m: Metrics) -> (u64, u64, u64, u64, u64) {
    (m.successes, m.failures, m.ignored, m.abandoned, m.rejected)
}

#[tokio::test(start_paused = true)]
async fn a_success_counts_when_the_body_ends_not_before() {
    let breaker = core(one_failure_opens());
    let layer = CircuitBreakerLayer::new("s", Arc::clone(&breaker)).record_at_end_of_body();
    let mut service = layer.layer(Answer {
        status: 200,
        make: || ScriptBody::new(false).data("a").data("b"),
    });
    let response: Recorded<_> = call(&mut service).await;
    assert!(response.body().is_recording());
    assert_eq!(counts(breaker.metrics()), (0, 0, 0, 0, 0));
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"ab");
    assert_eq!(counts(breaker.metrics()), (1, 0, 0, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_body_that_fails_mid_stream_is_a_failure_and_opens_the_breaker() {
    let breaker = core(one_failure_opens());
    let layer = CircuitBreakerLayer::new("s", Arc::clone(&breaker)).record_at_end_of_body();
    let mut service = layer.layer(Answer {
        status: 200,
        make: || ScriptBody::new(false).data("a").error(),
    });
    let response = call(&mut service).await;
    assert_eq!(
        response.into_body().collect().await.unwrap_err(),
        "upstream reset"
    );
    assert_eq!(counts(breaker.metrics()), (0, 1, 0, 0, 0));
    let now = crate::TokioClock::new().now();
    assert_eq!(breaker.state(now), State::Open);
    // The next request is refused, its body (the responder's) records nothing.
    let refused = call(&mut service).await;
    assert_eq!(refused.status(), 503);
    assert!(!refused.body().is_recording());
    assert_eq!(counts(breaker.metrics()), (0, 1, 0, 0, 1));
}

#[tokio::test(start_paused = true)]
async fn a_body_dropped_mid_stream_abandons_its_permit() {
    let breaker = core(one_failure_opens());
    let layer = CircuitBreakerLayer::new("s", Arc::clone(&breaker)).record_at_end_of_body();
    let mut service = layer.layer(Answer {
        status: 200,
        make: || ScriptBody::new(false).data("a").data("b"),
    });
    let mut body = call(&mut service).await.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert_eq!(first.into_data().unwrap(), "a");
    drop(body);
    assert_eq!(counts(breaker.metrics()), (0, 0, 0, 1, 0));
}

#[tokio::test(start_paused = true)]
async fn a_failing_head_is_recorded_at_once_and_its_body_records_nothing() {
    let breaker = core(one_failure_opens());
    let layer = CircuitBreakerLayer::new("s", Arc::clone(&breaker)).record_at_end_of_body();
    let mut service = layer.layer(Answer {
        status: 502,
        make: || ScriptBody::new(false).data("bad gateway"),
    });
    let response = call(&mut service).await;
    assert!(!response.body().is_recording());
    assert_eq!(counts(breaker.metrics()), (0, 1, 0, 0, 0));
    drop(response);
    assert_eq!(counts(breaker.metrics()), (0, 1, 0, 0, 0), "not abandoned");
}

#[tokio::test(start_paused = true)]
async fn a_body_whose_end_is_known_is_recorded_without_a_last_poll() {
    // hyper polls no frame of an empty body, and stops after the last
    // frame of a body that says it has ended.
    let breaker = core(one_failure_opens());
    let layer = CircuitBreakerLayer::new("s", Arc::clone(&breaker)).record_at_end_of_body();
    let mut empty = layer.clone().layer(Answer {
        status: 204,
        make: || ScriptBody::new(true),
    });
    let response = call(&mut empty).await;
    assert!(response.body().is_end_stream() && !response.body().is_recording());
    assert_eq!(counts(breaker.metrics()), (1, 0, 0, 0, 0));

    let mut known = layer.layer(Answer {
        status: 200,
        make: || ScriptBody::new(true).data("whole"),
    });
    let mut body = call(&mut known).await.into_body();
    assert!(body.frame().await.unwrap().unwrap().is_data());
    assert!(body.is_end_stream());
    assert_eq!(counts(breaker.metrics()), (2, 0, 0, 0, 0));
    drop(body);
    assert_eq!(counts(breaker.metrics()), (2, 0, 0, 0, 0));
}

/// A body, and the successes, failures and ignored after it.
type Case = (fn() -> ScriptBody, (u64, u64, u64));

#[tokio::test(start_paused = true)]
async fn grpc_trailers_decide_a_streaming_call() {
    let breaker = core(Config::builder().consecutive_failures(10));
    let layer = CircuitBreakerLayer::new("g", Arc::clone(&breaker))
        .classifier(GrpcClassifier::new())
        .record_at_end_of_body();
    let cases: [Case; 4] = [
        (|| ScriptBody::new(false).data("m").trailers("0"), (1, 0, 0)),
        (
            || ScriptBody::new(false).data("m").trailers("14"),
            (1, 1, 0),
        ),
        (|| ScriptBody::new(false).data("m").trailers("5"), (1, 1, 1)),
        // A stream that ends without its status: UNKNOWN.
        (|| ScriptBody::new(false).data("m"), (1, 2, 1)),
    ];
    for (make, (successes, failures, ignored)) in cases {
        let mut service = layer.clone().layer(Answer { status: 200, make });
        let response = call(&mut service).await;
        let collected = response.into_body().collect().await.unwrap();
        drop(collected);
        let m = breaker.metrics();
        assert_eq!(
            (m.successes, m.failures, m.ignored),
            (successes, failures, ignored)
        );
    }
}

/// Trips `breaker` (one failure opens it) and waits out its open time
/// (30 s): the next request is a half-open trial.
/// A service answering 200 with the body `a`, `b`, behind a layer over
/// `breaker` recording at the end of the body, on a clock of its own.
fn streaming_a_then_b(
    breaker: &Arc<CircuitBreaker>,
) -> (crate::TokioClock, super::EndOfBodyService<Answer>) {
    let clock = crate::TokioClock::new();
    let layer = CircuitBreakerLayer::new("s", Arc::clone(breaker))
        .with_clock(clock)
        .record_at_end_of_body();
    let service = layer.layer(Answer {
        status: 200,
        make: || ScriptBody::new(false).data("a").data("b"),
    });
    (clock, service)
}

async fn half_open(breaker: &CircuitBreaker, clock: crate::TokioClock) {
    let permit = breaker.try_acquire(clock.now()).unwrap();
    let tripped = permit.record(Outcome::Failure, clock.now(), Duration::ZERO);
    assert!(tripped.is_some());
    tokio::time::advance(StdDuration::from_secs(31)).await;
    assert_eq!(breaker.state(clock.now()), State::HalfOpen);
}

#[tokio::test(start_paused = true)]
async fn a_half_open_trial_is_decided_when_its_body_ends() {
    // Its head (a 200) says nothing of how the body ends: the trial holds
    // its slot until then, every other request refused, and its end
    // decides.
    let breaker = core(one_failure_opens());
    let clock = crate::TokioClock::new();
    let layer = CircuitBreakerLayer::new("s", Arc::clone(&breaker))
        .with_clock(clock)
        .record_at_end_of_body();
    let mut failing = layer.clone().layer(Answer {
        status: 200,
        make: || ScriptBody::new(false).data("a").error(),
    });
    half_open(&breaker, clock).await;
    let trial = call(&mut failing).await;
    assert!(trial.body().is_recording());
    assert_eq!(breaker.state(clock.now()), State::HalfOpen);
    assert_eq!(call(&mut failing).await.status(), 503, "the trial's slot");
    let failed = trial.into_body().collect().await.unwrap_err();
    assert_eq!(failed, "upstream reset");
    assert_eq!(breaker.state(clock.now()), State::Open);
    let m = breaker.metrics();
    assert_eq!((m.trips, counts(m)), (2, (0, 2, 0, 0, 1)));
    // A whole body closes it.
    tokio::time::advance(StdDuration::from_secs(31)).await;
    let mut whole = layer.layer(Answer {
        status: 200,
        make: || ScriptBody::new(false).data("a").data("b"),
    });
    let trial = call(&mut whole).await;
    assert!(trial.body().is_recording());
    assert_eq!(breaker.state(clock.now()), State::HalfOpen);
    drop(trial.into_body().collect().await.unwrap());
    assert_eq!(breaker.state(clock.now()), State::Closed);
    assert_eq!(counts(breaker.metrics()), (1, 2, 0, 0, 1));
}

#[tokio::test(start_paused = true)]
async fn a_trial_whose_body_is_dropped_frees_its_slot_without_deciding() {
    let breaker = core(one_failure_opens());
    let (clock, mut service) = streaming_a_then_b(&breaker);
    half_open(&breaker, clock).await;
    let mut body = call(&mut service).await.into_body();
    assert!(body.frame().await.unwrap().unwrap().is_data());
    drop(body);
    assert_eq!(breaker.state(clock.now()), State::HalfOpen);
    assert_eq!(counts(breaker.metrics()), (0, 1, 0, 1, 0));
    // The slot is free: the next trial decides.
    let trial = call(&mut service).await;
    assert!(trial.body().is_recording());
    drop(trial.into_body().collect().await.unwrap());
    assert_eq!(breaker.state(clock.now()), State::Closed);
    assert_eq!(counts(breaker.metrics()), (1, 1, 0, 1, 0));
}

#[tokio::test(start_paused = true)]
async fn max_half_open_bounds_a_trial_whose_body_is_never_read() {
    // A client that stops reading holds the trial: `max_half_open`
    // reopens the breaker behind it, and its end, read at last, decides
    // nothing.
    let breaker = core(one_failure_opens().max_half_open(Duration::from_secs(5)));
    let (clock, mut service) = streaming_a_then_b(&breaker);
    half_open(&breaker, clock).await;
    let trial = call(&mut service).await;
    assert!(trial.body().is_recording());
    tokio::time::advance(StdDuration::from_secs(6)).await;
    assert_eq!(breaker.state(clock.now()), State::Open);
    assert_eq!(call(&mut service).await.status(), 503);
    assert_eq!(breaker.metrics().trips, 2);
    drop(trial.into_body().collect().await.unwrap());
    assert_eq!(breaker.state(clock.now()), State::Open);
    assert_eq!(breaker.metrics().trips, 2);
}

/// A gRPC answer: `grpc-status` `in_head` if given (trailers-only), the
/// body `make` builds.
fn grpc_answer(
    in_head: Option<&'static str>,
    make: fn() -> ScriptBody,
) -> impl Service<
    Request<()>,
    Response = Response<ScriptBody>,
    Error = Infallible,
    Future = impl std::future::Future<Output = Result<Response<ScriptBody>, Infallible>>,
> + Clone {
    tower::service_fn(move |_: Request<()>| async move {
        let mut response = Response::builder().header("content-type", "application/grpc");
        if let Some(status) = in_head {
            response = response.header("grpc-status", status);
        }
        Ok::<_, Infallible>(response.body(make()).unwrap())
    })
}

#[tokio::test(start_paused = true)]
async fn a_grpc_trial_is_decided_by_its_trailers_or_at_once_by_its_head() {
    let breaker = core(one_failure_opens());
    let clock = crate::TokioClock::new();
    let layer = CircuitBreakerLayer::new("g", Arc::clone(&breaker))
        .with_clock(clock)
        .classifier(GrpcClassifier::new())
        .record_at_end_of_body();
    half_open(&breaker, clock).await;
    // A stream failing in its trailers: the trial reopens the breaker.
    let mut stream = layer.clone().layer(grpc_answer(None, || {
        ScriptBody::new(false).data("m").trailers("14")
    }));
    let trial = call(&mut stream).await;
    assert!(trial.body().is_recording());
    drop(trial.into_body().collect().await.unwrap());
    assert_eq!(breaker.state(clock.now()), State::Open);
    assert_eq!(breaker.metrics().trips, 2);
    // A trailers-only UNAVAILABLE: decided by its head, at once.
    tokio::time::advance(StdDuration::from_secs(31)).await;
    let mut unary = layer
        .clone()
        .layer(grpc_answer(Some("14"), || ScriptBody::new(false)));
    let trial = call(&mut unary).await;
    assert!(!trial.body().is_recording());
    assert_eq!(breaker.state(clock.now()), State::Open);
    assert_eq!(breaker.metrics().trips, 3);
    drop(trial);
    // A trailers-only OK closes it at once, its empty body unread.
    tokio::time::advance(StdDuration::from_secs(31)).await;
    let mut ok = layer.layer(grpc_answer(Some("0"), || ScriptBody::new(false)));
    let trial = call(&mut ok).await;
    assert!(!trial.body().is_recording());
    assert_eq!(breaker.state(clock.now()), State::Closed);
    drop(trial);
    assert_eq!(counts(breaker.metrics()), (1, 3, 0, 0, 0));
}

/// A service answering after `delay` of (paused) time.
#[derive(Clone)]
struct Late(StdDuration);

impl Service<Request<()>> for Late {
    type Response = Response<ScriptBody>;
    type Error = Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Response<ScriptBody>, Infallible>> + Send>,
    >;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<()>) -> Self::Future {
        let delay = self.0;
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            Ok(Response::new(ScriptBody::new(false).data("a")))
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_slow_call_is_timed_to_its_head_not_to_the_readers_pace() {
    let breaker = core(
        Config::builder()
            .slow_call(Duration::from_secs(1), 100)
            .minimum_calls(1),
    );
    let layer = CircuitBreakerLayer::new("s", Arc::clone(&breaker)).record_at_end_of_body();
    // A fast answer read slowly is not a slow call.
    let mut fast = layer.clone().layer(Late(StdDuration::ZERO));
    let response = call(&mut fast).await;
    tokio::time::advance(StdDuration::from_secs(2)).await;
    drop(response.into_body().collect().await.unwrap());
    let m = breaker.metrics();
    assert_eq!((m.successes, m.slow_calls), (1, 0));
    // A slow answer is, read at once.
    let mut slow = layer.layer(Late(StdDuration::from_secs(2)));
    let response = call(&mut slow).await;
    assert_eq!(breaker.metrics().slow_calls, 0, "not before its end");
    drop(response.into_body().collect().await.unwrap());
    let m = breaker.metrics();
    assert_eq!((m.successes, m.slow_calls), (2, 1));
}

#[tokio::test(start_paused = true)]
async fn an_answer_that_has_no_body_is_recorded_at_its_head() {
    // A 304's (or 204's) body is never sent nor polled by hyper, whatever
    // it says of its end: the permit must not wait in it to be abandoned.
    let breaker = core(one_failure_opens());
    let layer = CircuitBreakerLayer::new("s", Arc::clone(&breaker)).record_at_end_of_body();
    for status in [204, 304] {
        let mut service = layer.clone().layer(Answer {
            status,
            make: || ScriptBody::new(false).data("stale"),
        });
        let response = call(&mut service).await;
        assert!(!response.body().is_recording(), "{status}");
        drop(response);
    }
    assert_eq!(counts(breaker.metrics()), (2, 0, 0, 0, 0));
}

/// A service answering with `content-length: 2` and a body of two bytes
/// that does not report its end, then grpc-status 14 in trailers.
fn declared_length_of_two(
) -> impl Service<Request<()>, Response = Response<ScriptBody>, Error = Infallible> + Clone {
    tower::service_fn(|_: Request<()>| async {
        let body = ScriptBody::new(false).data("ab").trailers("14");
        Ok(Response::builder()
            .header(http::header::CONTENT_LENGTH, "2")
            .body(body)
            .unwrap())
    })
}

#[tokio::test(start_paused = true)]
async fn over_http1_a_body_ends_with_its_declared_length() {
    let breaker = core(Config::builder().consecutive_failures(10));
    let layer = CircuitBreakerLayer::new("g", Arc::clone(&breaker))
        .classifier(GrpcClassifier::new())
        .record_at_end_of_body();
    // HTTP/1.1: hyper writes two bytes and drops the body unpolled (it
    // could not carry trailers with a content-length anyway).
    let mut service = layer.clone().layer(declared_length_of_two());
    let mut body = call(&mut service).await.into_body();
    assert!(body.frame().await.unwrap().unwrap().is_data());
    assert!(!body.is_recording());
    drop(body);
    let m = breaker.metrics();
    assert_eq!((m.failures, m.abandoned), (1, 0), "no trailers: UNKNOWN");
    // HTTP/2: hyper polls to the end, the trailers decide.
    let mut service = layer.layer(declared_length_of_two());
    std::future::poll_fn(|cx| service.poll_ready(cx))
        .await
        .unwrap();
    let mut request = Request::new(());
    *request.version_mut() = http::Version::HTTP_2;
    let mut body = service.call(request).await.unwrap().into_body();
    assert!(body.frame().await.unwrap().unwrap().is_data());
    assert!(body.is_recording(), "the trailers are still to come");
    drop(body.collect().await.unwrap());
    let m = breaker.metrics();
    assert_eq!((m.failures, m.abandoned), (2, 0), "UNAVAILABLE");
}

#[tokio::test(start_paused = true)]
async fn a_grpc_status_in_the_head_decides_even_ok() {
    // A trailers-only answer (gRPC over HTTP/2: the status in the head,
    // the body empty, no trailers to come): grpc-go answers a stream that
    // sends no message with its OK so, and any status in the head ends
    // the call. Its empty body ending without trailers is not UNKNOWN.
    let breaker = core(Config::builder().consecutive_failures(10));
    let layer = CircuitBreakerLayer::new("g", Arc::clone(&breaker))
        .classifier(GrpcClassifier::new())
        .record_at_end_of_body();
    for (i, end_known) in [true, false].into_iter().enumerate() {
        let mut service =
            layer
                .clone()
                .layer(tower::service_fn(move |_: Request<()>| async move {
                    Ok::<_, Infallible>(
                        Response::builder()
                            .header("content-type", "application/grpc")
                            .header("grpc-status", "0")
                            .body(ScriptBody::new(end_known))
                            .unwrap(),
                    )
                }));
        let response = call(&mut service).await;
        let recording = response.body().is_recording();
        drop(response.into_body().collect().await.unwrap());
        assert!(!recording, "end known: {end_known}");
        let successes = i as u64 + 1;
        assert_eq!(counts(breaker.metrics()), (successes, 0, 0, 0, 0));
    }
}
