//! [`CircuitBreakerLayer`]: the configuration of the breaker middleware.

use std::sync::Arc;

use fusebox::CircuitBreaker;
use tower_layer::Layer;

use super::{CircuitBreakerService, HttpClassifier, JsonBreakerResponse, Shared};
use crate::policy::BreakerObserver;
use crate::TokioClock;

/// A tower [`Layer`] that guards an HTTP service with one core
/// [`CircuitBreaker`].
///
/// Every service it makes, and every clone of those (axum clones a
/// service per request), shares the **same** breaker: the `Arc` given
/// here. Each request asks the core for an owned permit
/// ([`CircuitBreaker::try_acquire_owned`]) with the [`TokioClock`] read
/// right before; the response future holds it until the response is
/// complete and records it through the classifier (default
/// [`HttpClassifier`]: `5xx` and inner errors fail, `4xx` are ignored). A
/// refused request gets the responder's answer (default
/// [`JsonBreakerResponse`]: `503`, `Retry-After`, a JSON body) without
/// reaching the inner service.
///
/// Transitions are logged with `tracing` (fields `breaker`, `from`, `to`,
/// `at_us`) or given to the observer; rejections are logged at `debug`
/// (fields `breaker`, `state`, `retry_after_ms`).
///
/// # A trial that hangs
///
/// A half-open trial's permit is held like any other, until its response
/// is complete. A trial sent to an upstream that never answers (the
/// failure a breaker is for) therefore keeps its half-open slot for as
/// long as it hangs: once every slot is so held (one, by default), every
/// other request is refused, and the breaker neither reopens nor closes. By default nothing bounds that (a half-open
/// breaker waits for its trials, as Resilience4j's does unless
/// `maxWaitDurationInHalfOpenState` is set). Bound it in the breaker's
/// configuration with
/// [`ConfigBuilder::max_half_open`](fusebox::breaker::ConfigBuilder::max_half_open)
/// (the core's feature `half-open-timeout`, which this crate turns on; in
/// a [`RegistryConfig`](crate::registry::RegistryConfig),
/// `max_half_open = "30s"`): once the breaker has been half-open that
/// long without a decision, the next request (or a trial's recorded
/// success or failure; an ignored or dropped one only frees its slot)
/// reopens it as a failed trial would, with a `HalfOpen → Open`
/// transition and a fresh open time; trials are let through again when
/// that has passed, and the hung trial, if it answers at last, decides
/// nothing. Choose it above the slowest answer a healthy upstream gives.
/// A timeout frees the slot too, deciding what its place says. Around
/// this layer, it drops the layer's response future: the trial is
/// abandoned, deciding nothing (see
/// [`ResponseFuture`](super::ResponseFuture)'s cancellation). Inside it
/// (tower's `TimeoutLayer` between this layer and the service), the layer's
/// future is not the one dropped: it receives the timeout's `Elapsed`
/// error and counts it as any error of the service, a failure with the
/// default classifier (the trial reopens the breaker; a closed breaker
/// counts it towards opening), or the response a timeout layer answers
/// instead, classified as any other.
///
/// With [`record_at_end_of_body`](Self::record_at_end_of_body), a trial
/// answered with a body holds its slot until that body ends, and so at the
/// pace the client reads it: a long stream, or a client that stops reading
/// and keeps its connection open, hangs the trial as well.
///
/// In front of a server's handlers, a *client* can hang a trial too: the
/// permit is taken when the request's head arrives, and the handler reads
/// the request's body within the call, at the client's pace. A client
/// that trickles its upload holds the trial (every other request refused)
/// for as long as it trickles, and makes its call as slow as it likes (a
/// [`slow_call`](fusebox::breaker::ConfigBuilder::slow_call) rule counts it: a
/// slow trial is a failed one, a window of slow calls opens the breaker).
/// A client can also end its call with an error the service answers for
/// it: it resets its request stream (HTTP/2 `RST_STREAM`) or closes its
/// connection mid-upload, and the handler's read of the body fails. What
/// the handler then answers is what the breaker counts. axum's extractors
/// that read the whole body (`Bytes`, `String`, `Json`) answer `400`,
/// ignored; a handler that answers a failed read with a `5xx` lets its
/// clients fail calls at will. tonic answers a
/// stream reset with `REFUSED_STREAM` as `UNAVAILABLE`, and one with an
/// error code it does not know, or a connection closed before the
/// request's message arrived, as `UNKNOWN`, all failures to
/// [`GrpcClassifier`](super::GrpcClassifier): any client can open the
/// breaker of a healthy gRPC service with a few resets, and clients that
/// merely lose their connection mid-upload (a phone losing signal) count
/// against it too (a reset with `CANCEL`, a cancelled call, is
/// `CANCELLED`, ignored). A [`ClientFaultLayer`](super::ClientFaultLayer)
/// inside the breaker marks the answer to any request whose body failed,
/// and the default classifiers ignore it: a client then decides only
/// what its own calls count for (not what a trickling client does).
/// Facing clients you do not trust, read the request's body before the
/// breaker (a layer outside it that collects the body under a timeout, and
/// answers a body that fails itself): a trickled or abandoned upload then
/// never reaches the breaker. Bounding the call with a timeout layer
/// inside the breaker (and the half-open time with `max_half_open`) frees
/// a trial held by a trickling client, but counts the timeout as a
/// failure: the client then fails its calls at will.
///
/// ```
/// use std::future::Future;
/// use std::pin::Pin;
/// use std::sync::Arc;
/// use fusebox::breaker::{CircuitBreaker, Config, State};
/// use fusebox::{Clock, Duration};
/// use fusebox_std::tower::CircuitBreakerLayer;
/// use tower_layer::Layer;
/// use tower_service::Service;
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// let config = Config::builder()
///     .consecutive_failures(1)
///     .open_for(Duration::from_secs(10))
///     .max_half_open(Duration::from_secs(30)) // an undecided trial reopens it after 30 s
///     .build()?;
/// let core = Arc::new(CircuitBreaker::new(config));
/// let layer = CircuitBreakerLayer::new("upstream", Arc::clone(&core));
/// let clock = layer.clock();
/// let mut service = layer.layer(FailsThenHangs(0));
/// assert_eq!(service.call(http::Request::new(())).await?.status(), 502); // opens
/// tokio::time::advance(std::time::Duration::from_secs(11)).await;
/// let trial = service.call(http::Request::new(())); // half-open: the trial, which hangs
/// assert_eq!(service.call(http::Request::new(())).await?.status(), 503);
/// tokio::time::advance(std::time::Duration::from_secs(31)).await;
/// assert_eq!(core.state(clock.now()), State::Open); // not half-open for ever
/// assert_eq!(service.call(http::Request::new(())).await?.status(), 503); // reopened it
/// assert_eq!(core.metrics().trips, 2);
/// # drop(trial);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// # #[derive(Clone)]
/// # struct FailsThenHangs(u32);
/// # type Answer = Pin<Box<dyn Future<Output = Result<http::Response<String>, std::convert::Infallible>> + Send>>;
/// # impl Service<http::Request<()>> for FailsThenHangs {
/// #     type Response = http::Response<String>;
/// #     type Error = std::convert::Infallible;
/// #     type Future = Answer;
/// #     fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> { std::task::Poll::Ready(Ok(())) }
/// #     fn call(&mut self, _: http::Request<()>) -> Answer {
/// #         self.0 += 1;
/// #         if self.0 == 1 {
/// #             Box::pin(std::future::ready(Ok(http::Response::builder().status(502).body(String::new()).unwrap())))
/// #         } else {
/// #             Box::pin(std::future::pending())
/// #         }
/// #     }
/// # }
/// ```
///
/// # Examples
///
/// ```
/// use std::convert::Infallible;
/// use std::sync::Arc;
/// use fusebox::breaker::{CircuitBreaker, Config};
/// use fusebox_std::tower::CircuitBreakerLayer;
/// use tower_layer::Layer;
/// use tower_service::Service;
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(1).build()?));
/// let layer = CircuitBreakerLayer::new("upstream", Arc::clone(&core));
/// let failing = tower_service_fn(|_req| http::Response::builder().status(502).body(String::new()).unwrap());
/// let mut service = layer.layer(failing);
/// let first = service.call(http::Request::new(())).await?;
/// assert_eq!(first.status(), 502); // recorded as a failure: the breaker opens
/// let second = service.clone().call(http::Request::new(())).await?;
/// assert_eq!(second.status(), 503); // a clone shares the open breaker
/// assert_eq!(core.metrics().rejected, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// # #[derive(Clone)]
/// # struct Fn1<F>(F);
/// # fn tower_service_fn<F: Fn(http::Request<()>) -> http::Response<String>>(f: F) -> Fn1<F> { Fn1(f) }
/// # impl<F: Fn(http::Request<()>) -> http::Response<String>> Service<http::Request<()>> for Fn1<F> {
/// #     type Response = http::Response<String>;
/// #     type Error = Infallible;
/// #     type Future = std::future::Ready<Result<Self::Response, Infallible>>;
/// #     fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Infallible>> { std::task::Poll::Ready(Ok(())) }
/// #     fn call(&mut self, req: http::Request<()>) -> Self::Future { std::future::ready(Ok((self.0)(req))) }
/// # }
/// ```
#[derive(Clone)]
pub struct CircuitBreakerLayer<C = HttpClassifier, R = JsonBreakerResponse> {
    breaker: Arc<CircuitBreaker>,
    name: Arc<str>,
    clock: TokioClock,
    classifier: C,
    responder: R,
    observer: Option<Arc<dyn BreakerObserver>>,
}

impl<C, R> std::fmt::Debug for CircuitBreakerLayer<C, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitBreakerLayer")
            .field("name", &crate::redact::redact(&self.name))
            .field("breaker", &self.breaker)
            .finish_non_exhaustive()
    }
}

impl CircuitBreakerLayer {
    /// A layer over `breaker`, named `name` in logs and responses, with the
    /// default classifier and responder, reading the [`TokioClock`] of the
    /// layers already built over this breaker (however long ago), else a
    /// new one: a breaker keeps its state in its clock's times, so every
    /// layer over it reads one. Give that clock to the other adapters of
    /// this breaker (a policy, a registry) with
    /// [`with_clock`](Self::with_clock).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fusebox::breaker::{CircuitBreaker, Config};
    /// use fusebox_std::tower::CircuitBreakerLayer;
    ///
    /// let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(5).build()?));
    /// let layer = CircuitBreakerLayer::new("inventory", core);
    /// assert_eq!(layer.name(), "inventory");
    /// # Ok::<(), fusebox::breaker::ConfigError>(())
    /// ```
    pub fn new(name: impl Into<Arc<str>>, breaker: Arc<CircuitBreaker>) -> Self {
        let clock = crate::core_clock::of(&breaker, TokioClock::new());
        Self::with_clock_and_observer(name, breaker, clock, None)
    }

    pub(super) fn with_clock_and_observer(
        name: impl Into<Arc<str>>,
        breaker: Arc<CircuitBreaker>,
        clock: TokioClock,
        observer: Option<Arc<dyn BreakerObserver>>,
    ) -> Self {
        Self {
            breaker,
            name: name.into(),
            clock,
            classifier: HttpClassifier,
            responder: JsonBreakerResponse,
            observer,
        }
    }
}

impl<C, R> CircuitBreakerLayer<C, R> {
    /// Uses `classifier` (any [`Classify`](crate::policy::Classify) over
    /// `Result<http::Response<B>, E>`) instead of [`HttpClassifier`].
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fusebox::breaker::{CircuitBreaker, Config, Outcome};
    /// use fusebox_std::tower::CircuitBreakerLayer;
    ///
    /// let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(5).build()?));
    /// // Only 503 and 504 from upstream count against it.
    /// let layer = CircuitBreakerLayer::new("cdn", core).classifier(
    ///     |r: &Result<http::Response<String>, std::convert::Infallible>| match r {
    ///         Ok(resp) if matches!(resp.status().as_u16(), 503 | 504) => Outcome::Failure,
    ///         _ => Outcome::Success,
    ///     },
    /// );
    /// # drop(layer);
    /// # Ok::<(), fusebox::breaker::ConfigError>(())
    /// ```
    pub fn classifier<C2>(self, classifier: C2) -> CircuitBreakerLayer<C2, R> {
        CircuitBreakerLayer {
            breaker: self.breaker,
            name: self.name,
            clock: self.clock,
            classifier,
            responder: self.responder,
            observer: self.observer,
        }
    }

    /// Records each admitted response when its body ends instead of when
    /// its head arrives: a body that fails counts as a failure, and a
    /// body's trailers are classified ([`ClassifyEnd`](super::ClassifyEnd):
    /// a gRPC status in trailers, with
    /// [`GrpcClassifier`](super::GrpcClassifier)). The head is classified
    /// first; a head that fails (or is ignored) is recorded at once. The
    /// response's body becomes a [`RecordedBody`](super::RecordedBody),
    /// which holds the permit until the end. A body dropped before its end
    /// abandons its permit. Recorded when the head arrives all the same:
    /// an answer that has no body (to a `HEAD` request; a `1xx`, `204` or
    /// `304`), or whose head ends the call (a gRPC trailers-only answer,
    /// `grpc-status` in its headers, with
    /// [`GrpcClassifier`](super::GrpcClassifier)).
    ///
    /// A half-open trial is decided the same way: when its body ends (a
    /// body that fails, or a gRPC stream's failing status in its trailers,
    /// reopens the breaker; a body that ends well closes it), or at once if
    /// its head decides (a failing head, a trailers-only gRPC answer): its
    /// head alone says nothing of the stream that follows. Until then the
    /// trial holds its half-open slot, and requests beyond
    /// `half_open_permits` are refused: a long stream, or a client that
    /// stops reading without hanging up, holds the breaker half-open as
    /// long (see [the layer's "A trial that
    /// hangs"](Self#a-trial-that-hangs)). Bound it with `max_half_open`,
    /// chosen above the longest stream a healthy trial sends: the timeout
    /// reopens the breaker as a failed trial would. A trial whose body is
    /// dropped before its end (its client gone) is abandoned: its slot
    /// freed, nothing decided. A stream that never ends while healthy (a
    /// subscription) can never close the breaker as a trial: each one
    /// times out as a failed trial under `max_half_open`, and without it
    /// holds the breaker half-open; keep such routes out of a breaker that
    /// records at the end of the body.
    ///
    /// A slow call (`ConfigBuilder::slow_call`) is timed to the head: how
    /// fast the client reads is not the service's latency.
    ///
    /// The classifier must say how a body's end counts
    /// ([`ClassifyEnd`](super::ClassifyEnd), implemented by
    /// [`HttpClassifier`] and
    /// [`GrpcClassifier`](super::GrpcClassifier)); a closure does not.
    /// With `GrpcClassifier`, every response is read as gRPC's: one whose
    /// body ends without a `grpc-status` in trailers counts as `UNKNOWN`, a
    /// failure. A plain HTTP route behind the same layer (an axum route
    /// served beside tonic's, a REST health check) answers just so, and
    /// every one of its successes would count against the breaker: give
    /// such routes a layer of their own.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fusebox::breaker::{CircuitBreaker, Config};
    /// use fusebox_std::tower::breaker::GrpcClassifier;
    /// use fusebox_std::tower::CircuitBreakerLayer;
    ///
    /// let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(5).build()?));
    /// // A gRPC service with streaming calls: their status is in trailers.
    /// let layer = CircuitBreakerLayer::new("search", core)
    ///     .classifier(GrpcClassifier::new())
    ///     .record_at_end_of_body();
    /// # drop(layer);
    /// # Ok::<(), fusebox::breaker::ConfigError>(())
    /// ```
    pub fn record_at_end_of_body(self) -> super::EndOfBodyLayer<C, R>
    where
        C: super::ClassifyEnd,
    {
        super::EndOfBodyLayer { layer: self }
    }

    /// Answers refused requests with `responder` (a
    /// [`BreakerResponder`](super::BreakerResponder), such as a closure)
    /// instead of [`JsonBreakerResponse`].
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fusebox::breaker::{CircuitBreaker, Config};
    /// use fusebox_std::tower::breaker::BreakerRejection;
    /// use fusebox_std::tower::CircuitBreakerLayer;
    ///
    /// let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(5).build()?));
    /// let layer = CircuitBreakerLayer::new("cdn", core)
    ///     .responder(|_: &BreakerRejection| http::Response::builder().status(502).body(String::new()).unwrap());
    /// # drop(layer);
    /// # Ok::<(), fusebox::breaker::ConfigError>(())
    /// ```
    pub fn responder<R2>(self, responder: R2) -> CircuitBreakerLayer<C, R2> {
        CircuitBreakerLayer {
            breaker: self.breaker,
            name: self.name,
            clock: self.clock,
            classifier: self.classifier,
            responder,
            observer: self.observer,
        }
    }

    /// Reads time with `clock`: the one every other adapter of this breaker
    /// uses (a core breaker is read through one origin for its whole life);
    /// layers and policies built later over the same breaker without a
    /// clock of their own read it too.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fusebox::breaker::{CircuitBreaker, Config};
    /// use fusebox_std::tower::CircuitBreakerLayer;
    /// use fusebox_std::TokioClock;
    ///
    /// let clock = TokioClock::new();
    /// let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(5).build()?));
    /// let layer = CircuitBreakerLayer::new("cdn", core).with_clock(clock);
    /// assert_eq!(layer.clock(), clock);
    /// # Ok::<(), fusebox::breaker::ConfigError>(())
    /// ```
    #[must_use]
    pub fn with_clock(mut self, clock: TokioClock) -> Self {
        crate::core_clock::keep_for(&self.breaker, clock);
        self.clock = clock;
        self
    }

    /// Tells `observer` of every transition, rejection and failure (the
    /// transitions then go to it instead of the layer's own `tracing`
    /// event).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fusebox::breaker::{CircuitBreaker, Config, Transition};
    /// use fusebox_std::policy::BreakerObserver;
    /// use fusebox_std::tower::CircuitBreakerLayer;
    ///
    /// struct Pager;
    /// impl BreakerObserver for Pager {
    ///     fn transition(&self, name: &str, t: Transition) { eprintln!("{name}: {:?}", t.to) }
    /// }
    /// let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(5).build()?));
    /// let layer = CircuitBreakerLayer::new("cdn", core).observer(Arc::new(Pager));
    /// # drop(layer);
    /// # Ok::<(), fusebox::breaker::ConfigError>(())
    /// ```
    #[must_use]
    pub fn observer(mut self, observer: Arc<dyn BreakerObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The name given at construction.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use fusebox::breaker::{CircuitBreaker, Config};
    /// use fusebox_std::tower::CircuitBreakerLayer;
    /// # let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(5).build().unwrap()));
    /// assert_eq!(CircuitBreakerLayer::new("cdn", core).name(), "cdn");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The core breaker every service of this layer shares.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use fusebox::breaker::{CircuitBreaker, Config};
    /// use fusebox_std::tower::CircuitBreakerLayer;
    /// # let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(5).build().unwrap()));
    /// let layer = CircuitBreakerLayer::new("cdn", Arc::clone(&core));
    /// assert!(Arc::ptr_eq(layer.breaker(), &core));
    /// ```
    pub fn breaker(&self) -> &Arc<CircuitBreaker> {
        &self.breaker
    }

    /// The clock the breaker is read with.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use fusebox::breaker::{CircuitBreaker, Config};
    /// use fusebox::Clock;
    /// use fusebox_std::tower::CircuitBreakerLayer;
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// # let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(5).build().unwrap()));
    /// let layer = CircuitBreakerLayer::new("cdn", core);
    /// assert_eq!(layer.clock().now(), fusebox::Instant::ZERO);
    /// # });
    /// ```
    pub fn clock(&self) -> TokioClock {
        self.clock
    }
}

impl<S, C: Clone, R: Clone> Layer<S> for CircuitBreakerLayer<C, R> {
    type Service = CircuitBreakerService<S, C, R>;

    fn layer(&self, inner: S) -> Self::Service {
        let shared = Shared {
            breaker: Arc::clone(&self.breaker),
            name: Arc::clone(&self.name),
            clock: self.clock,
            classifier: self.classifier.clone(),
            observer: self.observer.clone(),
            responder: self.responder.clone(),
        };
        CircuitBreakerService::new(inner, Arc::new(shared))
    }
}
