//! [`CircuitBreakerService`]: asks the breaker on every `call`.

use std::sync::Arc;
use std::task::{Context, Poll};

use fusebox::breaker::{OwnedPermit, Rejected, State};
use fusebox::{CircuitBreaker, Clock, Instant};
use http::{Request, Response};
use tower_service::Service;

use super::{BreakerRejection, BreakerResponder, Held, ResponseFuture, Shared};
use crate::policy::Classify;
use crate::redact::Redacted;

/// The service of a [`CircuitBreakerLayer`](super::CircuitBreakerLayer).
///
/// Cheap to clone (the inner service and one `Arc`); every clone shares
/// the layer's one breaker.
///
/// The breaker is asked in `call`, with the clock read right before, so a
/// permit is only ever taken for a request that exists (a permit taken in
/// `poll_ready` would be abandoned by every clone dropped between
/// readiness and call).
///
/// `poll_ready` is the inner service's while the breaker lets calls
/// through. While it is open (or forced open), `poll_ready` is ready at
/// once without asking the inner service, and the `call` that follows is
/// rejected whatever the breaker says by then (the inner service was not
/// made ready for it): a failing dependency that also holds the inner
/// service's readiness back (a full `Buffer` or `ConcurrencyLimit` in
/// front of a hung backend) cannot keep the breaker's fast rejections
/// waiting. If the breaker let a trial through between the two, that
/// permit is dropped unused (counted as abandoned). A caller already
/// waiting on the inner service's readiness when the breaker opens is not
/// woken by it: it waits for the inner service (a server's request
/// timeout bounds it); every caller that asks after the breaker opened
/// is answered at once.
///
/// Half-open, `poll_ready` is the inner service's too; if that is not
/// ready, the breaker is asked at once: with every trial slot taken (a
/// hung trial holding the inner service's readiness back), the call that
/// follows is rejected and `poll_ready` is ready without waiting; with a
/// slot free, the trial is taken then and held (by this service, not its
/// clones) for the call, so that no caller the breaker refuses waits on
/// the inner service. A held trial dropped unused, or when the inner
/// service's readiness then fails, is abandoned. (The
/// inner service was polled first: a refused clone kept alive, rather
/// than dropped as a server drops the clone that answered, keeps the
/// place that poll took in the inner service's queue, as any tower
/// service that polled does.)
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use fusebox::breaker::{CircuitBreaker, Config};
/// use fusebox_std::tower::{CircuitBreakerLayer, CircuitBreakerService};
/// use tower_layer::Layer;
///
/// let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(5).build()?));
/// let service: CircuitBreakerService<&str> = CircuitBreakerLayer::new("db", core).layer("inner");
/// assert_eq!(*service.get_ref(), "inner");
/// # Ok::<(), fusebox::breaker::ConfigError>(())
/// ```
pub struct CircuitBreakerService<S, C = super::HttpClassifier, R = super::JsonBreakerResponse> {
    inner: S,
    shared: Arc<Shared<C, R>>,
    /// What the last `poll_ready` settled for the next `call`.
    next: Next<C, R>,
}

/// What `poll_ready` settled for the next `call`.
enum Next<C, R> {
    /// Nothing: the call asks the breaker.
    Ask,
    /// The breaker read open and the inner service was left unpolled: the
    /// call is rejected (see [`bypassed`]).
    Bypass,
    /// Half-open, the inner service not ready: the trial taken for the
    /// call ([`hold`](CircuitBreakerService::hold)).
    Trial(OwnedPermit<Held<C, R>>),
    /// Half-open with every trial taken: the rejection the call answers.
    Refuse(Rejected, Instant),
}

impl<S: Clone, C, R> Clone for CircuitBreakerService<S, C, R> {
    fn clone(&self) -> Self {
        // Readiness is not cloned (tower's rule): a clone starts unpolled.
        Self::new(self.inner.clone(), Arc::clone(&self.shared))
    }
}

impl<S: std::fmt::Debug, C, R> std::fmt::Debug for CircuitBreakerService<S, C, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitBreakerService")
            .field("inner", &self.inner)
            .field("name", &crate::redact::redact(&self.shared.name))
            .finish_non_exhaustive()
    }
}

impl<S, C, R> CircuitBreakerService<S, C, R> {
    pub(super) fn new(inner: S, shared: Arc<Shared<C, R>>) -> Self {
        Self {
            inner,
            shared,
            next: Next::Ask,
        }
    }

    /// The inner service.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use fusebox::breaker::{CircuitBreaker, Config};
    /// use fusebox_std::tower::CircuitBreakerLayer;
    /// use tower_layer::Layer;
    /// # let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(5).build().unwrap()));
    /// assert_eq!(*CircuitBreakerLayer::new("db", core).layer(7).get_ref(), 7);
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use fusebox::breaker::{CircuitBreaker, Config};
    /// use fusebox_std::tower::CircuitBreakerLayer;
    /// use tower_layer::Layer;
    /// # let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(5).build().unwrap()));
    /// let mut service = CircuitBreakerLayer::new("db", core).layer(7);
    /// *service.get_mut() += 1;
    /// assert_eq!(service.into_inner(), 8);
    /// ```
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, unwrapped.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use fusebox::breaker::{CircuitBreaker, Config};
    /// use fusebox_std::tower::CircuitBreakerLayer;
    /// use tower_layer::Layer;
    /// # let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(5).build().unwrap()));
    /// assert_eq!(CircuitBreakerLayer::new("db", core).layer("svc").into_inner(), "svc");
    /// ```
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The breaker all clones share.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use fusebox::breaker::{CircuitBreaker, Config};
    /// use fusebox_std::tower::CircuitBreakerLayer;
    /// use tower_layer::Layer;
    /// # let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(5).build().unwrap()));
    /// let service = CircuitBreakerLayer::new("db", Arc::clone(&core)).layer(());
    /// assert!(Arc::ptr_eq(service.clone().breaker(), &core));
    /// ```
    pub fn breaker(&self) -> &Arc<CircuitBreaker> {
        &self.shared.breaker
    }
}

/// The breaker's answer to a call: the permit of an admitted one and when
/// it started (if its duration is measured), or the rejection to answer
/// and the time it was read at, if it was.
pub(super) type Decision<C, R> =
    Result<(OwnedPermit<Held<C, R>>, Option<Instant>), (Rejected, Option<Instant>)>;

impl<S, C, R> CircuitBreakerService<S, C, R> {
    /// `poll_ready` in either mode (see [`Service::poll_ready`]).
    #[inline]
    pub(super) fn ready<ReqB>(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>>
    where
        S: Service<ReqB>,
    {
        // No clock read while closed (one load).
        let clock = self.shared.clock;
        match self.shared.breaker.state_with(|| clock.now()) {
            State::Open | State::ForcedOpen => {
                self.next = Next::Bypass;
                Poll::Ready(Ok(()))
            }
            State::Closed => {
                self.next = Next::Ask;
                self.inner.poll_ready(cx)
            }
            State::HalfOpen => match self.next {
                Next::Refuse(..) => Poll::Ready(Ok(())),
                Next::Trial(_) => {
                    let poll = self.inner.poll_ready(cx);
                    if let Poll::Ready(Err(_)) = poll {
                        // No call is to come for that readiness: the
                        // trial is given back (abandoned).
                        self.next = Next::Ask;
                    }
                    poll
                }
                Next::Ask | Next::Bypass => {
                    self.next = Next::Ask;
                    let poll = self.inner.poll_ready(cx);
                    if poll.is_pending() {
                        return self.hold();
                    }
                    poll
                }
            },
        }
    }

    /// Half-open, the inner service not ready: asks the breaker now, so
    /// that a refused caller does not wait for the inner service. A trial
    /// is held for the call (still pending: the inner service's waker is
    /// registered); a rejection makes the service ready to answer it.
    #[cold]
    #[inline(never)]
    fn hold<E>(&mut self) -> Poll<Result<(), E>> {
        let shared = &self.shared;
        let now = shared.clock.now();
        match CircuitBreaker::try_acquire_owned_with(Held(Arc::clone(shared)), || now) {
            Ok(permit) => {
                if let Some(t) = permit.transition() {
                    shared.transition(t);
                }
                self.next = Next::Trial(permit);
                Poll::Pending
            }
            Err(mut rejected) => {
                if let Some(t) = rejected.transition.take() {
                    shared.transition(t);
                }
                self.next = Next::Refuse(rejected, now);
                Poll::Ready(Ok(()))
            }
        }
    }

    /// The breaker's decision on the next call, in either mode. The caller
    /// calls the inner service (the permit taken), or answers the
    /// rejection with [`refuse`](Self::refuse): both build their future in place.
    #[inline]
    pub(super) fn admit(&mut self) -> Decision<C, R> {
        let shared = &self.shared;
        // The clock is read only when something needs the time: a
        // slow-call rule (the duration), or the core's decision (an open or
        // half-open breaker). A closed breaker without one reads none.
        let clock = shared.clock;
        let measured = shared.breaker.measures_duration();
        match std::mem::replace(&mut self.next, Next::Ask) {
            Next::Ask => {}
            Next::Bypass => return Err(bypassed(shared)),
            Next::Trial(permit) => return Ok((permit, measured.then(|| clock.now()))),
            Next::Refuse(rejected, at) => return Err((rejected, Some(at))),
        }
        let mut now = measured.then(|| clock.now());
        let acquired = CircuitBreaker::try_acquire_owned_with(Held(Arc::clone(shared)), || {
            *now.get_or_insert_with(|| clock.now())
        });
        match acquired {
            Ok(permit) => {
                if let Some(t) = permit.transition() {
                    shared.transition(t);
                }
                Ok((permit, if measured { now } else { None }))
            }
            Err(rejected) => Err((rejected, now)),
        }
    }

    /// The responder's answer to `rejected` (see [`reject`]).
    pub(super) fn refuse<B>(&self, rejected: &Rejected, now: Option<Instant>) -> Response<B>
    where
        R: BreakerResponder<B>,
    {
        reject(&self.shared, rejected, now)
    }
}

impl<S, C, R, ReqB, ResB> Service<Request<ReqB>> for CircuitBreakerService<S, C, R>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    C: Classify<Response<ResB>, S::Error>,
    R: BreakerResponder<ResB>,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, C, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.ready(cx)
    }

    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        match self.admit() {
            Ok((permit, started)) => {
                ResponseFuture::admitted(self.inner.call(request), permit, started)
            }
            Err((rejected, now)) => ResponseFuture::rejected(Ok(self.refuse(&rejected, now))),
        }
    }
}

/// The answer to a `call` whose `poll_ready` saw the breaker refusing and
/// left the inner service unpolled: the breaker's rejection, or, if it
/// let a call through since, a rejection in the state it is in now (the
/// permit dropped unused).
#[cold]
#[inline(never)]
fn bypassed<C, R>(shared: &Arc<Shared<C, R>>) -> (Rejected, Option<Instant>) {
    let clock = shared.clock;
    let now = clock.now();
    match CircuitBreaker::try_acquire_owned_with(Held(Arc::clone(shared)), || now) {
        Err(rejected) => (rejected, Some(now)),
        Ok(permit) => {
            if let Some(t) = permit.transition() {
                shared.transition(t);
            }
            let state = shared.breaker.state(now);
            drop(permit);
            let rejected = Rejected {
                state,
                retry_after: None,
                transition: None,
            };
            (rejected, Some(now))
        }
    }
}

/// Logs `rejected`, tells the observer and has the responder answer it.
#[cold]
#[inline(never)]
fn reject<C, R, B>(
    shared: &Arc<Shared<C, R>>,
    rejected: &Rejected,
    now: Option<Instant>,
) -> Response<B>
where
    R: BreakerResponder<B>,
{
    if let Some(t) = rejected.transition {
        shared.transition(t);
    }
    let retry_after_ms = rejected.retry_after.map(|d| d.as_micros() / 1_000);
    tracing::debug!(
        breaker = %Redacted(&shared.name),
        state = ?rejected.state,
        retry_after_ms,
        "request rejected by circuit breaker"
    );
    if let Some(observer) = &shared.observer {
        observer.rejected(&shared.name, now.unwrap_or_else(|| shared.clock.now()));
    }
    let rejection = BreakerRejection {
        name: Arc::clone(&shared.name),
        state: rejected.state,
        retry_after: rejected.retry_after,
    };
    let mut response = shared.responder.respond(&rejection);
    // Whatever the responder answers: a breaker outside this one (a
    // breaker per route inside one for the whole upstream) reads it as
    // this breaker's refusal, not the service's failure.
    response.extensions_mut().insert(rejection);
    response
}
