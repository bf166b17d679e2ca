//! [`ResponseFuture`]: holds the breaker's permit until the response is
//! complete.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use fusebox::breaker::{Outcome, OwnedPermit};
use fusebox::{Clock, Instant};
use pin_project_lite::pin_project;

use super::{Held, Shared};
use crate::policy::Classify;
use crate::tower::future_state::State;

pin_project! {
    /// The response future of a
    /// [`CircuitBreakerService`](super::CircuitBreakerService).
    ///
    /// An admitted request's future owns its permit (the core's
    /// [`OwnedPermit`]) and records it once, when the inner future
    /// completes: the classifier's outcome at the clock's now, with the
    /// time since the permit was taken. A refused request's future is
    /// ready at once with the responder's answer. A half-open trial that
    /// never completes holds its slot until the breaker's
    /// `max_half_open` passes, if it has one (see the layer's "A trial
    /// that hangs"); its record, if it completes later, decides nothing.
    ///
    /// The response counts when its head arrives: its body is not watched,
    /// so an error while the body streams, or a gRPC status in its
    /// trailers, is not counted (tonic answers a unary call's error in the
    /// head, which [`GrpcClassifier`](super::GrpcClassifier) reads).
    ///
    /// # Cancellation
    ///
    /// Dropping it before it completes (a client that disconnects, a
    /// timeout around it) drops the inner future and *abandons* the
    /// permit: neither success nor failure (counted in the core's
    /// `Metrics::abandoned`), and a half-open trial frees its slot without
    /// deciding, so a cancelled probe never keeps the breaker half-open.
    ///
    /// A panic of the inner future (a handler's bug) unwinds through this
    /// one and drops it: its permit is abandoned as well, so panics alone
    /// never open the breaker. For a panic to count as a failure, catch it
    /// inside the breaker (tower-http's `CatchPanicLayer` answers it with a
    /// `500`, which the default classifier counts).
    ///
    /// # Panics
    ///
    /// Polling it again after it returned `Ready` panics.
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
    /// #[derive(Clone)]
    /// struct Hang;
    /// impl Service<http::Request<()>> for Hang {
    ///     type Response = http::Response<String>;
    ///     type Error = Infallible;
    ///     type Future = std::future::Pending<Result<Self::Response, Infallible>>;
    ///     fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Infallible>> {
    ///         std::task::Poll::Ready(Ok(()))
    ///     }
    ///     fn call(&mut self, _: http::Request<()>) -> Self::Future { std::future::pending() }
    /// }
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(1).build()?));
    /// let mut service = CircuitBreakerLayer::new("slow", Arc::clone(&core)).layer(Hang);
    /// let call = service.call(http::Request::new(()));
    /// assert!(tokio::time::timeout(std::time::Duration::from_secs(1), call).await.is_err());
    /// assert_eq!(core.metrics().abandoned, 1); // the timeout dropped it: no failure recorded
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    #[must_use = "futures do nothing unless you .await or poll them"]
    pub struct ResponseFuture<F, C = super::HttpClassifier, R = super::JsonBreakerResponse>
    where
        F: Future,
    {
        #[pin]
        state: State<F>,
        // The permit's pointer is the service's shared state: one `Arc`.
        // `None` once recorded, and for a refused request.
        permit: Option<OwnedPermit<Held<C, R>>>,
        started: Option<Instant>,
    }
}

impl<F: Future, C, R> ResponseFuture<F, C, R> {
    pub(super) fn admitted(
        inner: F,
        permit: OwnedPermit<Held<C, R>>,
        started: Option<Instant>,
    ) -> Self {
        Self {
            state: State::Inner { future: inner },
            permit: Some(permit),
            started,
        }
    }

    pub(super) fn rejected(output: F::Output) -> Self {
        Self {
            state: State::given(output),
            permit: None,
            started: None,
        }
    }

    /// Whether this request holds a half-open trial permit (`false` for a
    /// refused or completed one).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fusebox::breaker::{CircuitBreaker, Config};
    /// use fusebox_std::tower::CircuitBreakerLayer;
    /// use tower_layer::Layer;
    /// use tower_service::Service;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(1).build()?));
    /// let mut service = CircuitBreakerLayer::new("db", core)
    ///     .layer(tower_test_service());
    /// assert!(!service.call(http::Request::new(())).is_trial()); // closed: not a trial
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// # fn tower_test_service() -> impl Service<http::Request<()>, Response = http::Response<String>, Error = std::convert::Infallible> {
    /// #     struct S;
    /// #     impl Service<http::Request<()>> for S {
    /// #         type Response = http::Response<String>;
    /// #         type Error = std::convert::Infallible;
    /// #         type Future = std::future::Ready<Result<Self::Response, Self::Error>>;
    /// #         fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> { std::task::Poll::Ready(Ok(())) }
    /// #         fn call(&mut self, _: http::Request<()>) -> Self::Future { std::future::ready(Ok(http::Response::new(String::new()))) }
    /// #     }
    /// #     S
    /// # }
    /// ```
    pub fn is_trial(&self) -> bool {
        self.permit.as_ref().is_some_and(OwnedPermit::is_trial)
    }
}

impl<F, C, R, T, E> Future for ResponseFuture<F, C, R>
where
    F: Future<Output = Result<T, E>>,
    C: Classify<T, E>,
{
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let (permit, started) = (this.permit, *this.started);
        // The inner future is dropped before the record.
        this.state.poll_in_place(cx, |result| {
            record(permit, started, |c| c.classify(result));
        })
    }
}

/// Records the permit in `slot`, if there is one, as `classify` counts
/// it, and empties the slot: the call took the time since `started` (read
/// now), if it is measured. The permit stays in the slot while it is
/// recorded: if the classifier or the clock panics, it is abandoned when
/// its holder is dropped (a half-open trial's slot is freed then).
#[inline]
pub(super) fn record<C, R>(
    slot: &mut Option<OwnedPermit<Held<C, R>>>,
    started: Option<Instant>,
    classify: impl FnOnce(&C) -> Outcome,
) {
    let Some(permit) = slot.as_ref() else {
        return;
    };
    // The end is read if the duration is measured, or if the core or the
    // observer needs the time.
    let end = started.map(|_| permit.breaker().0.clock.now());
    let elapsed = match (started, end) {
        (Some(start), Some(end)) => end.saturating_duration_since(start),
        _ => fusebox::Duration::ZERO,
    };
    record_took(slot, elapsed, end, classify);
}

/// [`record`] of a call that took `elapsed` (zero if not measured), with
/// the time `end` if it was read.
#[inline]
pub(super) fn record_took<C, R>(
    slot: &mut Option<OwnedPermit<Held<C, R>>>,
    elapsed: fusebox::Duration,
    mut end: Option<Instant>,
    classify: impl FnOnce(&C) -> Outcome,
) {
    let Some(permit) = slot.as_mut() else {
        return;
    };
    let shared = &permit.breaker().0;
    let clock = shared.clock;
    let outcome = classify(&shared.classifier);
    let transition =
        permit.record_in_place_with(outcome, elapsed, || *end.get_or_insert_with(|| clock.now()));
    if transition.is_some() || outcome == Outcome::Failure {
        report(&permit.breaker().0, transition, outcome, end);
    }
    *slot = None;
}

/// Reports what a record did: its transition, and a failure to the
/// observer. Out of line: a success that changes nothing (the usual
/// response) runs none of it, and its code stays off the hot path's
/// instruction-cache lines.
#[cold]
#[inline(never)]
fn report<C, R>(
    shared: &Shared<C, R>,
    transition: Option<fusebox::breaker::Transition>,
    outcome: Outcome,
    end: Option<Instant>,
) {
    if let Some(t) = transition {
        shared.transition(t);
    }
    if outcome == Outcome::Failure
        && let Some(observer) = &shared.observer
    {
        observer.failure(
            &shared.name,
            end.unwrap_or_else(|| shared.clock.now()),
            false,
        );
    }
}
