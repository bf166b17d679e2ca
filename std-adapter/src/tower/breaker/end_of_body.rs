//! Recording at the end of the body
//! ([`CircuitBreakerLayer::record_at_end_of_body`](super::CircuitBreakerLayer::record_at_end_of_body)):
//! [`ClassifyEnd`], and the layer, service and future of that mode.
//!
//! By default a response counts when its head arrives. A body that fails
//! while it streams (a proxied upstream that dies mid-response) or a gRPC
//! status in trailers (a streaming call that fails) is then not counted.
//! In this mode the response's head is classified as before; a head that
//! counts as a success hands the permit to the body ([`RecordedBody`]),
//! which records it when it ends. A half-open trial's too: its head says
//! nothing of how a stream ends, so the trial is decided by the end of
//! its body (`max_half_open` bounds a body that never ends).

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use fusebox::breaker::{Outcome, OwnedPermit};
use fusebox::{Clock, Instant};
use http::header::CONTENT_LENGTH;
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::future::record;
use super::{
    BreakerResponder, CircuitBreakerLayer, CircuitBreakerService, Held, HttpClassifier,
    RecordedBody,
};
use crate::policy::Classify;
use crate::tower::future_state::{Output, State};

/// How a response whose head counted as a success ends, for a breaker that
/// records at the end of the body. A body that fails counts as a failure
/// whatever this says.
///
/// # Examples
///
/// ```
/// use fusebox::breaker::Outcome;
/// use fusebox_std::tower::breaker::{ClassifyEnd, GrpcClassifier, HttpClassifier};
///
/// let mut trailers = http::HeaderMap::new();
/// trailers.insert("grpc-status", http::HeaderValue::from_static("14"));
/// assert_eq!(GrpcClassifier::new().classify_end(Some(&trailers)), Outcome::Failure);
/// // A gRPC body that ends without its status counts as UNKNOWN, a failure.
/// assert_eq!(GrpcClassifier::new().classify_end(None), Outcome::Failure);
/// // HTTP has no status in trailers: a body that ends is a success.
/// assert_eq!(HttpClassifier.classify_end(Some(&trailers)), Outcome::Success);
/// ```
pub trait ClassifyEnd {
    /// How the body's end counts: `trailers` if it ended with them.
    fn classify_end(&self, trailers: Option<&HeaderMap>) -> Outcome;

    /// Whether a response with these headers, whose head counted as a
    /// success, is decided by its head all the same (its body not
    /// watched): a gRPC trailers-only answer, for
    /// [`GrpcClassifier`](super::GrpcClassifier). No response, by default.
    fn decided_at_head(&self, headers: &HeaderMap) -> bool {
        let _ = headers;
        false
    }
}

/// An HTTP body that ends is a success: HTTP has no status in trailers.
///
/// ```
/// use fusebox::breaker::Outcome;
/// use fusebox_std::tower::breaker::{ClassifyEnd, HttpClassifier};
///
/// assert_eq!(HttpClassifier.classify_end(None), Outcome::Success);
/// ```
impl ClassifyEnd for HttpClassifier {
    fn classify_end(&self, _: Option<&HeaderMap>) -> Outcome {
        Outcome::Success
    }
}

/// A [`CircuitBreakerLayer`] that records at the end of the body (made by
/// [`CircuitBreakerLayer::record_at_end_of_body`]); its services are
/// [`EndOfBodyService`]s.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use fusebox::breaker::{CircuitBreaker, Config};
/// use fusebox_std::tower::CircuitBreakerLayer;
/// use fusebox_std::tower::breaker::EndOfBodyLayer;
///
/// let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(1).build()?));
/// let layer: EndOfBodyLayer = CircuitBreakerLayer::new("stream", core).record_at_end_of_body();
/// assert_eq!(layer.get_ref().name(), "stream");
/// # Ok::<(), fusebox::breaker::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct EndOfBodyLayer<C = HttpClassifier, R = super::JsonBreakerResponse> {
    pub(super) layer: CircuitBreakerLayer<C, R>,
}

impl<C, R> std::fmt::Debug for EndOfBodyLayer<C, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("EndOfBodyLayer").field(&self.layer).finish()
    }
}

impl<C, R> EndOfBodyLayer<C, R> {
    /// The layer recording when heads arrive, which this one was made of.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fusebox::breaker::{CircuitBreaker, Config};
    /// use fusebox_std::tower::CircuitBreakerLayer;
    ///
    /// let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(1).build()?));
    /// let layer = CircuitBreakerLayer::new("stream", Arc::clone(&core)).record_at_end_of_body();
    /// assert!(Arc::ptr_eq(layer.get_ref().breaker(), &core));
    /// # Ok::<(), fusebox::breaker::ConfigError>(())
    /// ```
    pub fn get_ref(&self) -> &CircuitBreakerLayer<C, R> {
        &self.layer
    }
}

impl<S, C: Clone, R: Clone> Layer<S> for EndOfBodyLayer<C, R> {
    type Service = EndOfBodyService<S, C, R>;

    fn layer(&self, inner: S) -> Self::Service {
        EndOfBodyService {
            service: self.layer.layer(inner),
        }
    }
}

/// The service of an [`EndOfBodyLayer`]: a [`CircuitBreakerService`] whose
/// responses' bodies are [`RecordedBody`]s. Clones share one breaker.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use fusebox::breaker::{CircuitBreaker, Config};
/// use fusebox_std::tower::CircuitBreakerLayer;
/// use tower::{service_fn, Layer, Service};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(1).build()?));
/// let layer = CircuitBreakerLayer::new("stream", Arc::clone(&core)).record_at_end_of_body();
/// let mut service = layer.layer(service_fn(|_: http::Request<()>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(String::from("chunk")))
/// }));
/// let response = service.call(http::Request::new(())).await?;
/// assert!(response.body().is_recording(), "recorded when the body ends");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub struct EndOfBodyService<S, C = HttpClassifier, R = super::JsonBreakerResponse> {
    service: CircuitBreakerService<S, C, R>,
}

impl<S: Clone, C, R> Clone for EndOfBodyService<S, C, R> {
    fn clone(&self) -> Self {
        Self {
            service: self.service.clone(),
        }
    }
}

impl<S: std::fmt::Debug, C, R> std::fmt::Debug for EndOfBodyService<S, C, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("EndOfBodyService")
            .field(&self.service)
            .finish()
    }
}

impl<S, C, R> EndOfBodyService<S, C, R> {
    /// The service recording when heads arrive, which this one wraps.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fusebox::breaker::{CircuitBreaker, Config};
    /// use fusebox_std::tower::CircuitBreakerLayer;
    /// use tower::{service_fn, Layer};
    ///
    /// let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(1).build()?));
    /// let layer = CircuitBreakerLayer::new("stream", Arc::clone(&core)).record_at_end_of_body();
    /// let service = layer.layer(service_fn(|_: http::Request<()>| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(()))
    /// }));
    /// assert!(Arc::ptr_eq(service.get_ref().breaker(), &core));
    /// # Ok::<(), fusebox::breaker::ConfigError>(())
    /// ```
    pub fn get_ref(&self) -> &CircuitBreakerService<S, C, R> {
        &self.service
    }
}

impl<S, C, R, ReqB, ResB> Service<Request<ReqB>> for EndOfBodyService<S, C, R>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    C: Classify<Response<ResB>, S::Error> + ClassifyEnd,
    R: BreakerResponder<ResB>,
    ResB: http_body::Body,
{
    type Response = Response<RecordedBody<ResB, C, R>>;
    type Error = S::Error;
    type Future = EndOfBodyFuture<S::Future, C, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.service.ready(cx)
    }

    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        let exchange = Exchange::of(&request);
        match self.service.admit() {
            Ok((permit, started)) => EndOfBodyFuture {
                state: State::Inner {
                    future: self.service.get_mut().call(request),
                },
                permit: Some(permit),
                started,
                exchange,
            },
            Err((rejected, now)) => EndOfBodyFuture {
                state: State::given(Ok(self.service.refuse(&rejected, now))),
                permit: None,
                started: None,
                exchange,
            },
        }
    }
}

/// What of a request decides how its answer's body is sent.
#[derive(Clone, Copy, Debug)]
struct Exchange {
    head: bool,
    connect: bool,
    /// HTTP/1.x: a body of declared length is written up to that length
    /// only, and dropped then without a last poll.
    http1: bool,
}

impl Exchange {
    fn of<B>(request: &Request<B>) -> Self {
        Self {
            head: request.method() == Method::HEAD,
            connect: request.method() == Method::CONNECT,
            http1: request.version() < Version::HTTP_2,
        }
    }

    /// Whether an answer with `status` has no body (RFC 9110; hyper
    /// neither sends nor polls it, axum replaces a `HEAD` answer's).
    fn bodyless(self, status: StatusCode) -> bool {
        self.head
            || self.connect && status.is_success()
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
    }

    /// The bytes an HTTP/1.x writer sends of `response`'s body, if its
    /// length is declared: its exact size, else its `content-length`.
    fn declared_length<B: http_body::Body>(self, response: &Response<B>) -> Option<u64> {
        if !self.http1 {
            return None;
        }
        response.body().size_hint().exact().or_else(|| {
            let value = response.headers().get(CONTENT_LENGTH)?.to_str().ok()?;
            value.trim().parse().ok()
        })
    }
}

pin_project! {
    /// The response future of a breaker that records at the end of the
    /// body: its head is classified when it arrives; a failure (or an
    /// ignored answer, or an answer without a body: to a `HEAD` request,
    /// a `1xx`, `204` or `304`, a `2xx` to `CONNECT`; or one its head
    /// decides, [`ClassifyEnd::decided_at_head`]) is recorded then, a
    /// success hands the permit to the response's [`RecordedBody`] (a
    /// half-open trial's too: it is decided when the body ends).
    /// Dropping it before it completes abandons the permit, as
    /// [`ResponseFuture`](super::ResponseFuture) does.
    ///
    /// # Panics
    ///
    /// Polling it again after it returned `Ready` panics.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fusebox::breaker::{CircuitBreaker, Config};
    /// use fusebox_std::tower::CircuitBreakerLayer;
    /// use tower::{service_fn, Layer, Service};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(1).build()?));
    /// let layer = CircuitBreakerLayer::new("stream", Arc::clone(&core)).record_at_end_of_body();
    /// let mut service = layer.layer(service_fn(|_: http::Request<()>| async {
    ///     Ok::<_, std::convert::Infallible>(
    ///         http::Response::builder().status(503).body(String::new()).unwrap(),
    ///     )
    /// }));
    /// let future = service.call(http::Request::new(()));
    /// let response = future.await?;
    /// // A 503 head is a failure: recorded at once, the body holds no permit.
    /// assert!(!response.body().is_recording());
    /// assert_eq!(core.metrics().failures, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    #[must_use = "futures do nothing unless you .await or poll them"]
    pub struct EndOfBodyFuture<F, C, R>
    where
        F: Future,
    {
        #[pin]
        state: State<F>,
        permit: Option<OwnedPermit<Held<C, R>>>,
        started: Option<Instant>,
        exchange: Exchange,
    }
}

impl<F, C, R, B, E> Future for EndOfBodyFuture<F, C, R>
where
    F: Future<Output = Result<Response<B>, E>>,
    C: Classify<Response<B>, E> + ClassifyEnd,
    B: http_body::Body,
{
    type Output = Result<Response<RecordedBody<B, C, R>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = match ready!(this.state.poll_output(cx)) {
            Output::Inner(result) => result,
            Output::Given(refusal) => {
                return Poll::Ready(refusal.map(|r| r.map(RecordedBody::unrecorded)));
            }
        };
        let head = match this.permit.as_ref() {
            Some(permit) => permit.breaker().0.classifier.classify(&result),
            None => Outcome::Ignored,
        };
        match (result, this.permit.take()) {
            (Ok(response), Some(permit))
                if head == Outcome::Success
                    && !this.exchange.bodyless(response.status())
                    && !permit
                        .breaker()
                        .0
                        .classifier
                        .decided_at_head(response.headers()) =>
            {
                // Timed to the head: how fast the client reads is not the
                // service's latency.
                let took = this.started.map(|start| {
                    let now = permit.breaker().0.clock.now();
                    now.saturating_duration_since(start)
                });
                let left = this.exchange.declared_length(&response);
                Poll::Ready(Ok(
                    response.map(|body| RecordedBody::recording(body, permit, took, left))
                ))
            }
            (result, permit) => {
                *this.permit = permit;
                record(this.permit, *this.started, |_| head);
                Poll::Ready(result.map(|r| r.map(RecordedBody::unrecorded)))
            }
        }
    }
}
