//! [`RateLimitService`]: charges the limit on every `call`.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::future::Stamp;
use super::limit::{Check, Limit};
use super::{RateLimitRejection, RateLimitResponder, Refusal, ResponseFuture, Shared};
use crate::tower::headers::insert_rate_limit;

/// The service of a [`RateLimitLayer`](super::RateLimitLayer).
///
/// Cheap to clone (the inner service and two `Arc`s); every clone charges
/// the layer's one limit, so a server that clones its service per request
/// or connection still admits exactly the quota.
///
/// `poll_ready` is the inner service's: the limit is charged in `call`,
/// with the clock read right before, and a request over the limit is
/// answered at once (this layer refuses; it never makes a request wait).
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use fusebox::bucket::Quota;
/// use fusebox::TokenBucket;
/// use fusebox_std::tower::rate_limit::Single;
/// use fusebox_std::tower::{RateLimitLayer, RateLimitService};
/// use tower_layer::Layer;
///
/// let layer = RateLimitLayer::new("api", Arc::new(TokenBucket::new(Quota::per_second(5)?)));
/// let service: RateLimitService<&str, Single> = layer.layer("inner");
/// assert_eq!(*service.get_ref(), "inner");
/// # Ok::<(), fusebox::bucket::QuotaError>(())
/// ```
pub struct RateLimitService<S, L, R = super::JsonRateLimitResponse> {
    inner: S,
    shared: Arc<Shared<L>>,
    responder: Arc<R>,
}

impl<S: Clone, L, R> Clone for RateLimitService<S, L, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
            responder: Arc::clone(&self.responder),
        }
    }
}

impl<S: std::fmt::Debug, L, R> std::fmt::Debug for RateLimitService<S, L, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimitService")
            .field("inner", &self.inner)
            .field("name", &self.shared.name)
            .finish_non_exhaustive()
    }
}

impl<S, L, R> RateLimitService<S, L, R> {
    pub(super) fn new(inner: S, shared: Arc<Shared<L>>, responder: Arc<R>) -> Self {
        Self {
            inner,
            shared,
            responder,
        }
    }

    /// The inner service.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use fusebox::{bucket::Quota, TokenBucket};
    /// use fusebox_std::tower::RateLimitLayer;
    /// use tower_layer::Layer;
    /// # let bucket = Arc::new(TokenBucket::new(Quota::per_second(5).unwrap()));
    /// assert_eq!(*RateLimitLayer::new("api", bucket).layer(7).get_ref(), 7);
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use fusebox::{bucket::Quota, TokenBucket};
    /// use fusebox_std::tower::RateLimitLayer;
    /// use tower_layer::Layer;
    /// # let bucket = Arc::new(TokenBucket::new(Quota::per_second(5).unwrap()));
    /// let mut service = RateLimitLayer::new("api", bucket).layer(7);
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
    /// # use fusebox::{bucket::Quota, TokenBucket};
    /// use fusebox_std::tower::RateLimitLayer;
    /// use tower_layer::Layer;
    /// # let bucket = Arc::new(TokenBucket::new(Quota::per_second(5).unwrap()));
    /// assert_eq!(RateLimitLayer::new("api", bucket).layer("svc").into_inner(), "svc");
    /// ```
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, L, R, ReqB, ResB> Service<Request<ReqB>> for RateLimitService<S, L, R>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    L: Limit,
    R: RateLimitResponder<ResB>,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        let shared = &*self.shared;
        let (head, body) = request.into_parts();
        let check = shared.limit.check(&head, &shared.clock, &shared.name);
        let (refusal, quoted) = match check {
            Check::Admitted(quoted) => {
                let stamp = shared.headers.then(|| Stamp {
                    sf_name: Arc::clone(&shared.sf_name),
                    quoted,
                    legacy: shared.legacy,
                });
                let future = self.inner.call(Request::from_parts(head, body));
                return ResponseFuture::admitted(future, stamp);
            }
            Check::Limited(retry_after, quoted) => {
                tracing::debug!(
                    policy = %shared.name,
                    retry_after_ms = retry_after.as_micros() / 1_000,
                    "request rate limited"
                );
                (Refusal::Limited { retry_after }, Some(quoted))
            }
            Check::Refused(refusal) => {
                match refusal {
                    Refusal::BadKey(error) => {
                        tracing::debug!(policy = %shared.name, reason = %error, "request refused: no usable key");
                    }
                    _ => {
                        tracing::warn!(policy = %shared.name, "request refused: keyed limiter full");
                    }
                }
                (refusal, None)
            }
        };
        let rejection = RateLimitRejection {
            name: Arc::clone(&shared.name),
            refusal,
        };
        let mut response = self.responder.respond(&rejection);
        if let (true, Some(quoted)) = (shared.headers, quoted) {
            insert_rate_limit(
                response.headers_mut(),
                &shared.sf_name,
                &quoted,
                shared.legacy,
            );
        }
        ResponseFuture::refused(Ok(response))
    }
}
