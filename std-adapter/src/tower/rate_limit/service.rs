//! [`RateLimitService`]: charges the limit on every `call`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use fusebox::{Clock, Duration, Instant};
use http::{Request, Response};
use tower_service::Service;

use super::limit::{Check, Limit};
use super::{Common, RateLimitRejection, RateLimitResponder, Refusal, ResponseFuture};
use crate::redact::Redacted;
use crate::tower::headers::{Members, Quoted};

/// The service of a [`RateLimitLayer`](super::RateLimitLayer).
///
/// Cheap to clone (the inner service and one `Arc`); every clone charges
/// the layer's one limit, so a server that clones its service per request
/// or connection still admits exactly the quota.
///
/// `poll_ready` is the inner service's: the limit is charged in `call`,
/// with the clock read right before, and a request over the limit is
/// answered at once (this layer refuses; it never makes a request wait).
/// A `Shared` limit (feature `redis`) decides in Redis, after `call`
/// returns: its docs say how the readiness `poll_ready` reserved is
/// carried over that round trip.
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
    pub(super) inner: S,
    pub(super) shared: Arc<Common<L, R>>,
}

impl<S: Clone, L, R> Clone for RateLimitService<S, L, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: std::fmt::Debug, L, R> std::fmt::Debug for RateLimitService<S, L, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimitService")
            .field("inner", &self.inner)
            .field("name", &crate::redact::redact(&self.shared.name))
            .finish_non_exhaustive()
    }
}

impl<S, L, R> RateLimitService<S, L, R> {
    pub(super) fn new(inner: S, shared: Arc<Common<L, R>>) -> Self {
        Self { inner, shared }
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
        // The quota is read for either kind of fields.
        let fields = shared.headers || shared.legacy;
        let check = shared
            .limit
            .check(&head, &shared.clock, &shared.name, fields);
        let (refusal, quoted) = match check {
            Check::Admitted(quoted) => {
                let stamp = quoted.map(|q| shared.members(q));
                let future = self.inner.call(Request::from_parts(head, body));
                return ResponseFuture::admitted(future, stamp);
            }
            Check::Limited(retry_after, quoted) => (
                Refusal::Limited { retry_after },
                quoted.map(|q| q.refused(retry_after)),
            ),
            Check::Refused(refusal) => (refusal, None),
        };
        let mut response = shared.refuse(refusal);
        if let Some(quoted) = quoted {
            shared.members(quoted).apply(response.headers_mut(), true);
        }
        ResponseFuture::refused(Ok(response))
    }
}

impl<L, R> Common<L, R> {
    /// The fields of `q` this layer sends: the `RateLimit` members (and
    /// the legacy trio, if asked), or the legacy trio alone.
    fn members(&self, q: Quoted) -> Members {
        if self.headers {
            Members::new(&self.fields, q, self.legacy)
        } else {
            Members::legacy_only(q)
        }
    }

    /// Logs `refusal`, publishes it to the reporter (if any) and has the
    /// responder answer it, the [`RateLimitRejection`] in the answer's
    /// extensions; the caller adds the quota fields.
    pub(super) fn refuse<B>(&self, refusal: Refusal) -> Response<B>
    where
        R: RateLimitResponder<B>,
    {
        match refusal {
            Refusal::Limited { retry_after } => tracing::debug!(
                policy = %Redacted(&self.name),
                retry_after_ms = retry_after.as_micros() / 1_000,
                "request rate limited"
            ),
            Refusal::BadKey(error) => {
                tracing::debug!(policy = %Redacted(&self.name), reason = %Redacted(&error), "request refused: no usable key");
            }
            Refusal::FailClosed { retry_after } => tracing::debug!(
                policy = %Redacted(&self.name),
                retry_after_ms = retry_after.as_micros() / 1_000,
                "request refused: the shared limit's backend is out (fail closed)"
            ),
            Refusal::TableFull { .. } | Refusal::Unavailable => {
                // A client can cause this on every request (new keys
                // into a table full of busy ones): `debug` each time,
                // `warn` at most once per interval.
                tracing::debug!(policy = %Redacted(&self.name), "request refused: keyed limiter full");
                if let Some(refused) = self.full_warn.hit(self.clock.now()) {
                    tracing::warn!(
                        policy = %Redacted(&self.name),
                        refused,
                        "requests refused: keyed limiter full ({refused} since the last such warning, at most one every {} s)",
                        WarnThrottle::INTERVAL.as_micros() / 1_000_000,
                    );
                }
            }
        }
        if let Some(reporter) = &self.reporter {
            reporter.report();
        }
        let rejection = RateLimitRejection {
            name: Arc::clone(&self.name),
            refusal,
        };
        let mut response = self.responder.respond(&rejection);
        // Marks it as this layer's own answer, not the service's: a
        // breaker around the limit (`HttpClassifier`) ignores it, so that
        // the limit's `503`s (a full keyed table, which a client sending
        // new keys causes at will; Redis out under fail-closed) never open
        // the breaker of a healthy service.
        response.extensions_mut().insert(rejection);
        response
    }
}

/// At most one warning per [`INTERVAL`](Self::INTERVAL) for a condition a
/// client can cause on every request (a keyed limiter's table full of busy
/// keys): each occurrence is counted, and the first one after the interval
/// gets the warning, with the count since the previous one. Two atomics,
/// no lock: the hot path of an attacker's flood is one `fetch_add` and one
/// load.
#[derive(Debug, Default)]
pub(crate) struct WarnThrottle {
    /// The clock's microseconds at the last warning, plus one (0: never).
    last: AtomicU64,
    /// Occurrences since the last warning.
    since: AtomicU64,
}

impl WarnThrottle {
    /// The least time between two warnings.
    pub(crate) const INTERVAL: Duration = Duration::from_secs(10);

    /// Counts one occurrence at `now`; `Some(n)` if it is to be warned
    /// about, `n` being the occurrences since the last warning, this one
    /// included.
    pub(crate) fn hit(&self, now: Instant) -> Option<u64> {
        self.since.fetch_add(1, Ordering::Relaxed);
        let stamp = now.as_micros().saturating_add(1);
        let last = self.last.load(Ordering::Relaxed);
        if last != 0 && stamp < last.saturating_add(Self::INTERVAL.as_micros()) {
            return None;
        }
        // One caller wins the interval; the others count and go on.
        self.last
            .compare_exchange(last, stamp, Ordering::Relaxed, Ordering::Relaxed)
            .ok()?;
        Some(self.since.swap(0, Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration as StdDuration;

    use super::WarnThrottle;
    use crate::TokioClock;
    use fusebox::Clock;

    #[tokio::test(start_paused = true)]
    async fn one_warning_per_interval_with_the_count_since_the_last() {
        let clock = TokioClock::new();
        let throttle = WarnThrottle::default();
        assert_eq!(
            throttle.hit(clock.now()),
            Some(1),
            "the first warns at once"
        );
        for _ in 0..999 {
            assert_eq!(throttle.hit(clock.now()), None);
        }
        tokio::time::advance(StdDuration::from_millis(9_999)).await;
        assert_eq!(throttle.hit(clock.now()), None, "not before 10 s");
        tokio::time::advance(StdDuration::from_millis(1)).await;
        assert_eq!(throttle.hit(clock.now()), Some(1_001));
        tokio::time::advance(StdDuration::from_secs(60)).await;
        assert_eq!(
            throttle.hit(clock.now()),
            Some(1),
            "a quiet minute: one, at once"
        );
    }
}
