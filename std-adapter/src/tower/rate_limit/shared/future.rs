//! [`SharedResponseFuture`]: awaits a [`Shared`] limit's decision, then
//! calls the inner service (the one `poll_ready` made ready) or answers
//! with the refusal.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::{Deciding, Outcome, Shared, Stamp};
use crate::tower::rate_limit::{Common, RateLimitResponder};

pin_project! {
    /// The response future of a
    /// [`RateLimitService`](crate::tower::RateLimitService) over a
    /// [`Shared`] limit `L`: it awaits the Redis decision (never longer
    /// than the limiter's command timeout), then calls the inner service
    /// `S` with the request and stamps the quota on its response, or
    /// answers with the responder's refusal. A request refused before any
    /// round trip (no usable key) is ready at once.
    ///
    /// It holds the inner service that `poll_ready` made ready until the
    /// decision (see [`Shared`]), and calls it at most once.
    ///
    /// # Cancellation
    ///
    /// Dropping it while the decision is in flight drops the ready inner
    /// service (its reservation is released) and never calls it; the
    /// script may still run to its end in Redis and take the token: a
    /// dropped request can only leave less quota, never more. Dropping it
    /// after the decision drops the inner service's response future, as
    /// for any service.
    ///
    /// # Panics
    ///
    /// Polling it again after it returned `Ready` panics.
    ///
    /// # Examples
    ///
    /// This example connects to a Redis server, so the doctests compile
    /// it without running it.
    ///
    /// ```no_run
    /// # async fn run(limiter: fusebox_std::backend::RedisLimiter) -> Result<(), Box<dyn std::error::Error>> {
    /// use std::sync::Arc;
    /// use fusebox_std::tower::rate_limit::key;
    /// use fusebox_std::tower::RateLimitLayer;
    /// use tower::{service_fn, ServiceExt};
    /// use tower_layer::Layer;
    ///
    /// let hello = service_fn(|_: http::Request<()>| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new("hello".to_owned()))
    /// });
    /// let service = RateLimitLayer::shared(Arc::new(limiter), key::path(128)).layer(hello);
    /// // `oneshot`: ready, then call; the future awaits Redis, then `hello`.
    /// let response = service.oneshot(http::Request::new(())).await?;
    /// assert_eq!(response.status(), 200);
    /// # Ok(()) }
    /// ```
    #[must_use = "futures do nothing unless you .await or poll them"]
    pub struct SharedResponseFuture<S, ReqB, L, R>
    where
        S: Service<Request<ReqB>>,
    {
        #[pin]
        state: State<S, ReqB>,
        common: Arc<Common<L, R>>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, ReqB>
    where
        S: Service<Request<ReqB>>,
    {
        /// The decision in flight, the ready inner service and the request.
        Deciding {
            decision: Deciding,
            ready: Option<S>,
            request: Option<Request<ReqB>>,
        },
        /// Admitted: the inner service's response.
        Calling {
            #[pin]
            future: S::Future,
            stamp: Option<Stamp>,
        },
        /// Refused before any round trip.
        Refused {
            response: Option<S::Response>,
        },
        Done,
    }
}

impl<S, ReqB, L, R> SharedResponseFuture<S, ReqB, L, R>
where
    S: Service<Request<ReqB>>,
{
    pub(super) fn deciding(
        decision: Deciding,
        ready: S,
        request: Request<ReqB>,
        common: Arc<Common<L, R>>,
    ) -> Self {
        Self {
            state: State::Deciding {
                decision,
                ready: Some(ready),
                request: Some(request),
            },
            common,
        }
    }

    pub(super) fn refused(response: S::Response, common: Arc<Common<L, R>>) -> Self {
        Self {
            state: State::Refused {
                response: Some(response),
            },
            common,
        }
    }
}

impl<S, ReqB, K, F, R, ResB> Future for SharedResponseFuture<S, ReqB, Shared<K, F>, R>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    R: RateLimitResponder<ResB>,
{
    type Output = Result<Response<ResB>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Deciding {
                    decision,
                    ready,
                    request,
                } => {
                    let result = ready!(decision.as_mut().poll(cx));
                    match this.common.outcome(result) {
                        Outcome::Admitted(stamp) => {
                            let (Some(mut inner), Some(request)) = (ready.take(), request.take())
                            else {
                                unreachable!("a deciding state holds its service and request");
                            };
                            let future = inner.call(request);
                            this.state.set(State::Calling { future, stamp });
                        }
                        Outcome::Refused(refusal, stamp) => {
                            // Release the ready service (and the request)
                            // before answering.
                            this.state.set(State::Done);
                            let mut response = this.common.refuse(refusal);
                            if let Some(stamp) = stamp {
                                stamp.apply(response.headers_mut(), true);
                            }
                            return Poll::Ready(Ok(response));
                        }
                    }
                }
                StateProj::Calling { future, stamp } => {
                    let mut result = ready!(future.poll(cx));
                    if let (Ok(response), Some(stamp)) = (&mut result, stamp.take()) {
                        // Not this layer's response: its fields join the
                        // inner ones.
                        stamp.apply(response.headers_mut(), false);
                    }
                    this.state.set(State::Done);
                    return Poll::Ready(result);
                }
                StateProj::Refused { response } => {
                    let response = response
                        .take()
                        .expect("SharedResponseFuture polled after completion");
                    this.state.set(State::Done);
                    return Poll::Ready(Ok(response));
                }
                StateProj::Done => panic!("SharedResponseFuture polled after completion"),
            }
        }
    }
}
