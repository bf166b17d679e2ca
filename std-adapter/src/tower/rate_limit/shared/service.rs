//! The [`RateLimitService`] of a [`Shared`] limit: the key in `call`, the
//! decision in the response future, the ready inner service handed to it
//! (clone and swap).

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::request::Parts;
use http::{Request, Response};
use tower_service::Service;

use super::{Shared, SharedResponseFuture};
use crate::tower::rate_limit::{KeyError, RateLimitResponder, RateLimitService, Refusal};

impl<S, K, F, R, ReqB, ResB> Service<Request<ReqB>> for RateLimitService<S, Shared<K, F>, R>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone,
    K: fmt::Display,
    F: Fn(&Parts) -> Result<K, KeyError>,
    R: RateLimitResponder<ResB>,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = SharedResponseFuture<S, ReqB, Shared<K, F>, R>;

    /// The inner service's readiness: what it reserves goes, with the
    /// service, to the next `call`'s future.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        let shared = &self.shared;
        let (head, body) = request.into_parts();
        let key = match shared.limit.key(&head, &shared.name) {
            Ok(key) => key,
            Err(error) => {
                // No round trip; the ready inner service stays in place,
                // unused.
                let response = shared.refuse(Refusal::BadKey(error));
                return SharedResponseFuture::refused(response, Arc::clone(shared));
            }
        };
        let decision = shared.limit.decide(key);
        // Clone and swap (tower's `Service` docs): the service `poll_ready`
        // made ready is called later, by the future; this one's next
        // `call` is preceded by its own `poll_ready`.
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        SharedResponseFuture::deciding(
            decision,
            ready,
            Request::from_parts(head, body),
            Arc::clone(shared),
        )
    }
}
