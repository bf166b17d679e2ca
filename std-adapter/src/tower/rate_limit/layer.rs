//! [`RateLimitLayer`]: the configuration of the rate-limit middleware.

use std::any::Any;
use std::sync::Arc;

use fusebox::bucket::KeyedLimiter;
use fusebox::TokenBucket;
use http::request::Parts;
use tower_layer::Layer;

use super::service::WarnThrottle;
use super::{BadKey, Common, JsonRateLimitResponse, KeyError, Keyed, RateLimitService, Single};
use crate::events::RejectionReporter;
use crate::tower::headers::PolicyFields;
use crate::TokioClock;

/// A tower [`Layer`] that charges each request to a core limit and answers
/// the ones over it at once (default `429`, see
/// [`JsonRateLimitResponse`]).
///
/// The limit is [`Single`] (one [`TokenBucket`], [`new`](Self::new)) or
/// [`Keyed`] (a [`KeyedLimiter`] and a key function over the request head,
/// [`keyed`](Self::keyed)); with feature `redis`, also `Shared` (a
/// `RedisLimiter`'s decision, one quota for a fleet, `shared`). Either
/// way it sits behind an `Arc` that every service of this layer, and
/// every clone of those, **shares**: unlike tower's own `RateLimit`,
/// whose clones each get their own limit, a server that clones its
/// service per request or connection admits exactly the quota.
///
/// Every admitted response, and every `429`, carries the policy and the
/// quota left in the fields of draft-ietf-httpapi-ratelimit-headers
/// (revisions 10 and 11; see the [module docs](crate::tower)):
/// `RateLimit-Policy: "name";q=<burst>;w=<s to refill it>` (the quota
/// as it is with the default burst) and
/// `RateLimit: "name";r=<remaining>;t=<seconds until full>`, with the
/// legacy `X-RateLimit-*` trio on request
/// ([`legacy_headers`](Self::legacy_headers)). A `429` says `r=0`, and a
/// `t` equal to its `Retry-After` (the wait for the next token). The name
/// is a Structured Field String: `"` and `\` escaped, `%` and every byte
/// outside printable ASCII percent-encoded (`"über"` is `"%c3%bcber"`), so
/// two policies with different names never share a member's name. It is
/// [redacted](crate::redact) first, as in the logs and the default
/// responses (every client reads it): names that differ only in what the
/// redaction masks do share one.
///
/// Layers stack: both fields are Lists with a member per policy, so each
/// layer adds its member to those already on the response (a global limit
/// around a per-key one lists both, the refusing one with `r=0`), in one
/// field line. The legacy trio and `Retry-After` hold one policy only: a
/// layer sets them on its own refusals, and on a response it let through
/// only if none of them is there (the innermost policy's stay, and a
/// trio is never completed with another policy's figures).
///
/// A [`Keyed`] limit under
/// [`FullPolicy::Overflow`](fusebox::bucket::FullPolicy::Overflow) charges
/// a key that finds no slot to the shared overflow bucket, whose state the
/// core does not expose: such a response (admitted or `429`) carries no
/// `RateLimit` fields for this policy rather than the per-key quota the
/// key does not have.
///
/// A [`Keyed`] limit keeps each key's arrival time in 48 bits of the
/// core's slot word, which wrap at 2^48 of the quota's scaled time units
/// (71.6 min at the largest scale, 78 hours at scale 1 000, 8.9 years at
/// scale 1): a key idle for close to a multiple of that may read as
/// drained, and is then refused with a `t` and `Retry-After` up to the
/// core's backward tolerance (1/64 of the wrap) beyond its burst span. It
/// is admitted less, never more.
///
/// # Examples
///
/// ```
/// use std::convert::Infallible;
/// use std::sync::Arc;
/// use fusebox::bucket::Quota;
/// use fusebox::TokenBucket;
/// use fusebox_std::tower::RateLimitLayer;
/// use tower_layer::Layer;
/// use tower_service::Service;
///
/// # #[derive(Clone)] struct Ok200;
/// # impl Service<http::Request<()>> for Ok200 {
/// #     type Response = http::Response<String>;
/// #     type Error = Infallible;
/// #     type Future = std::future::Ready<Result<Self::Response, Infallible>>;
/// #     fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Infallible>> { std::task::Poll::Ready(Ok(())) }
/// #     fn call(&mut self, _: http::Request<()>) -> Self::Future { std::future::ready(Ok(http::Response::new(String::new()))) }
/// # }
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// let bucket = Arc::new(TokenBucket::new(Quota::per_second(1)?));
/// let service = RateLimitLayer::new("api", bucket).layer(Ok200);
/// assert_eq!(service.clone().call(http::Request::new(())).await?.status(), 200);
/// let refused = service.clone().call(http::Request::new(())).await?; // another clone, the same bucket
/// assert_eq!(refused.status(), 429);
/// assert_eq!(refused.headers()["retry-after"], "1");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct RateLimitLayer<L, R = JsonRateLimitResponse> {
    pub(super) limit: L,
    name: Arc<str>,
    clock: TokioClock,
    headers: bool,
    legacy: bool,
    reporter: Option<RejectionReporter>,
    pub(super) full_warn: Arc<WarnThrottle>,
    responder: R,
    /// The in-process core the limit charges (`None` for a `Shared`
    /// limit), for [`with_clock`](Self::with_clock) to keep its clock.
    pub(super) core: Option<Arc<dyn Any + Send + Sync>>,
}

impl<L: std::fmt::Debug, R> std::fmt::Debug for RateLimitLayer<L, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("name", &crate::redact::redact(&self.name))
            .field("limit", &self.limit)
            .field("headers", &self.headers)
            .field("legacy", &self.legacy)
            .field("reporter", &self.reporter)
            .finish_non_exhaustive()
    }
}

impl<L> RateLimitLayer<L> {
    pub(super) fn with_limit(name: impl Into<Arc<str>>, limit: L, clock: TokioClock) -> Self {
        Self {
            limit,
            name: name.into(),
            clock,
            headers: true,
            legacy: false,
            reporter: None,
            full_warn: Arc::default(),
            responder: JsonRateLimitResponse,
            core: None,
        }
    }
}

impl<L, R> RateLimitLayer<L, R> {
    /// The layer over the in-process core `core` (for
    /// [`with_clock`](Self::with_clock)).
    pub(super) fn over<C: Any + Send + Sync>(mut self, core: &Arc<C>) -> Self {
        self.core = Some(Arc::clone(core) as Arc<dyn Any + Send + Sync>);
        self
    }
}

impl RateLimitLayer<Single> {
    /// One bucket for every request, named `name` in the `RateLimit`
    /// fields and logs, read with the [`TokioClock`] of the layers already
    /// built over this bucket (however long ago), else a new one: a bucket
    /// keeps its state in its clock's times, so every layer over it reads
    /// one. If other adapters read this bucket (a policy, a registry),
    /// share theirs with [`with_clock`](Self::with_clock).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fusebox::{bucket::Quota, TokenBucket};
    /// use fusebox_std::tower::RateLimitLayer;
    ///
    /// let layer = RateLimitLayer::new("api", Arc::new(TokenBucket::new(Quota::per_minute(100)?)));
    /// assert_eq!(layer.name(), "api");
    /// # Ok::<(), fusebox::bucket::QuotaError>(())
    /// ```
    pub fn new(name: impl Into<Arc<str>>, bucket: Arc<TokenBucket>) -> Self {
        let clock = crate::core_clock::of(&bucket, TokioClock::new());
        let core = Arc::clone(&bucket);
        Self::with_limit(name, Single::new(bucket), clock).over(&core)
    }
}

impl<K, const N: usize, S, F> RateLimitLayer<Keyed<K, N, S, F>>
where
    K: Send + Sync + 'static,
    S: Send + Sync + 'static,
    F: Fn(&Parts) -> Result<K, KeyError>,
{
    /// A bucket per key: `key` makes a key of each request head (see the
    /// [`key`](super::key) functions), `limiter` (one quota tier) holds the
    /// buckets. A request whose key function fails is refused with
    /// [`Refusal::BadKey`](super::Refusal::BadKey) (`400` by default) unless
    /// [`on_bad_key`](Self::on_bad_key) says otherwise. Key functions must
    /// bound their keys (the [`key`](super::key) ones do): the limiter
    /// stores a copy of each. The clock is chosen as [`new`](RateLimitLayer::new)'s
    /// (the one of the layers already built over `limiter`).
    ///
    /// For keys that clients choose, build the limiter with a secret hash
    /// seed ([`ServerKeyedLimiter`](crate::registry::ServerKeyedLimiter), or
    /// [`keyed_from_registry`](RateLimitLayer::keyed_from_registry)).
    ///
    /// ```
    /// use std::net::{IpAddr, SocketAddr};
    /// use std::sync::Arc;
    /// use fusebox::bucket::{FullPolicy, KeyedLimiter, Quota};
    /// use fusebox::hash::RandomState;
    /// use fusebox_std::tower::rate_limit::{key, KeyError};
    /// use fusebox_std::tower::RateLimitLayer;
    ///
    /// // Per client network (an IPv4 address, an IPv6 /64), as the server saw it
    /// // (axum puts `ConnectInfo<SocketAddr>` in the extensions; a plain `SocketAddr` here).
    /// let limiter = KeyedLimiter::<IpAddr, 4096, 1, RandomState>::with_hasher_boxed(
    ///     [Quota::per_second(10)?], FullPolicy::Reject, RandomState::new())?;
    /// let layer = RateLimitLayer::keyed("per_ip", Arc::from(limiter), |head: &http::request::Parts| {
    ///     head.extensions.get::<SocketAddr>().map(|peer| key::network(peer.ip())).ok_or(KeyError::Missing)
    /// });
    /// # drop(layer);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn keyed(
        name: impl Into<Arc<str>>,
        limiter: Arc<KeyedLimiter<K, N, 1, S>>,
        key: F,
    ) -> Self {
        let clock = crate::core_clock::of(&limiter, TokioClock::new());
        let core = Arc::clone(&limiter);
        Self::with_limit(name, Keyed::new(limiter, key), clock).over(&core)
    }
}

impl<K, const N: usize, S, F, R> RateLimitLayer<Keyed<K, N, S, F>, R> {
    /// What a request whose key function fails gets: refused
    /// ([`BadKey::Reject`], the default) or charged to one default key
    /// ([`BadKey::Default`]).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fusebox::bucket::{FullPolicy, KeyedLimiter, Quota};
    /// use fusebox::hash::RandomState;
    /// use fusebox_std::tower::rate_limit::{key, BadKey};
    /// use fusebox_std::tower::RateLimitLayer;
    ///
    /// let limiter = Arc::new(KeyedLimiter::<String, 64, 1, RandomState>::with_hasher(
    ///     [Quota::per_second(5)?], FullPolicy::Reject, RandomState::new())?);
    /// let layer = RateLimitLayer::keyed("per_key", limiter, key::header("x-api-key", 64))
    ///     .on_bad_key(BadKey::Default("anonymous".to_owned()));
    /// assert_eq!(*layer.limit().bad_key(), BadKey::Default("anonymous".to_owned()));
    /// # Ok::<(), fusebox::bucket::QuotaError>(())
    /// ```
    #[must_use]
    pub fn on_bad_key(mut self, bad_key: BadKey<K>) -> Self {
        self.limit.set_bad_key(bad_key);
        self
    }
}

impl<L, R> RateLimitLayer<L, R> {
    /// Answers refused requests with `responder` (a
    /// [`RateLimitResponder`](super::RateLimitResponder), such as a
    /// closure) instead of [`JsonRateLimitResponse`].
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fusebox::{bucket::Quota, TokenBucket};
    /// use fusebox_std::tower::rate_limit::RateLimitRejection;
    /// use fusebox_std::tower::RateLimitLayer;
    ///
    /// let bucket = Arc::new(TokenBucket::new(Quota::per_second(5)?));
    /// let layer = RateLimitLayer::new("api", bucket)
    ///     .responder(|_: &RateLimitRejection| http::Response::builder().status(503).body(String::new()).unwrap());
    /// # drop(layer);
    /// # Ok::<(), fusebox::bucket::QuotaError>(())
    /// ```
    pub fn responder<R2>(self, responder: R2) -> RateLimitLayer<L, R2> {
        RateLimitLayer {
            limit: self.limit,
            name: self.name,
            clock: self.clock,
            headers: self.headers,
            legacy: self.legacy,
            reporter: self.reporter,
            full_warn: self.full_warn,
            responder,
            core: self.core,
        }
    }

    /// Publishes every refusal (out of tokens, no usable key, a full keyed
    /// table) to `reporter`, as an
    /// [`Event::Rejected`](crate::events::Event::Rejected) on its events
    /// channel. [`from_registry`](RateLimitLayer::from_registry) and
    /// [`keyed_from_registry`](RateLimitLayer::keyed_from_registry) report
    /// to their registry's own events (the dashboard's activity) without
    /// being asked; a layer built otherwise reports nowhere until given one.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fusebox::{bucket::Quota, TokenBucket};
    /// use fusebox_std::events::{Component, Event, Events, RejectionReporter};
    /// use fusebox_std::tower::RateLimitLayer;
    /// use fusebox_std::TokioClock;
    /// use tower_layer::Layer;
    /// use tower_service::Service;
    ///
    /// # #[derive(Clone)] struct Ok200;
    /// # impl Service<http::Request<()>> for Ok200 {
    /// #     type Response = http::Response<String>;
    /// #     type Error = std::convert::Infallible;
    /// #     type Future = std::future::Ready<Result<Self::Response, Self::Error>>;
    /// #     fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> { std::task::Poll::Ready(Ok(())) }
    /// #     fn call(&mut self, _: http::Request<()>) -> Self::Future { std::future::ready(Ok(http::Response::new(String::new()))) }
    /// # }
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// let events = Events::new(16);
    /// let mut seen = events.subscribe();
    /// let clock = TokioClock::new();
    /// let mut service = RateLimitLayer::new("api", Arc::new(TokenBucket::new(Quota::per_hour(1)?)))
    ///     .reporting_to(RejectionReporter::new("api", Component::Limiter, &events, clock))
    ///     .layer(Ok200);
    /// assert_eq!(service.call(http::Request::new(())).await?.status(), 200);
    /// assert_eq!(service.call(http::Request::new(())).await?.status(), 429);
    /// assert!(matches!(seen.try_recv(), Some(Event::Rejected { component: Component::Limiter, .. })));
    /// assert_eq!(events.published(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    #[must_use]
    pub fn reporting_to(mut self, reporter: RejectionReporter) -> Self {
        self.reporter = Some(reporter);
        self
    }

    /// Where refusals are published, if anywhere (see
    /// [`reporting_to`](Self::reporting_to)).
    ///
    /// ```
    /// use fusebox::bucket::Quota;
    /// use fusebox_std::events::Component;
    /// use fusebox_std::tower::RateLimitLayer;
    /// use fusebox_std::Registry;
    ///
    /// let registry = Registry::new();
    /// let layer = RateLimitLayer::from_registry(&registry, "api", Quota::per_second(50)?)?;
    /// assert_eq!(layer.reporter().map(|r| (r.name(), r.component())), Some(("api", Component::Limiter)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn reporter(&self) -> Option<&RejectionReporter> {
        self.reporter.as_ref()
    }

    /// Reads time with `clock`, the one every other adapter of this limit
    /// uses; layers built later over the same bucket or keyed limiter with
    /// [`new`](RateLimitLayer::new) or [`keyed`](RateLimitLayer::keyed)
    /// read it too (they would otherwise read the one `new` chose first,
    /// in another frame of time than this layer's).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fusebox::{bucket::Quota, TokenBucket};
    /// use fusebox_std::tower::RateLimitLayer;
    /// use fusebox_std::TokioClock;
    ///
    /// let clock = TokioClock::new();
    /// let bucket = Arc::new(TokenBucket::new(Quota::per_second(5)?));
    /// let layer = RateLimitLayer::new("api", Arc::clone(&bucket)).with_clock(clock);
    /// assert_eq!(layer.clock(), clock);
    /// assert_eq!(RateLimitLayer::new("api", bucket).clock(), clock); // a later layer
    /// # Ok::<(), fusebox::bucket::QuotaError>(())
    /// ```
    #[must_use]
    pub fn with_clock(mut self, clock: TokioClock) -> Self {
        if let Some(core) = &self.core {
            crate::core_clock::keep(core, clock);
        }
        self.clock = clock;
        self
    }

    /// Whether responses carry `RateLimit-Policy` and `RateLimit` (default
    /// `true`); the legacy trio is asked for on its own
    /// ([`legacy_headers`](Self::legacy_headers)).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fusebox::{bucket::Quota, TokenBucket};
    /// use fusebox_std::tower::RateLimitLayer;
    ///
    /// let layer = RateLimitLayer::new("api", Arc::new(TokenBucket::new(Quota::per_second(5)?))).rate_limit_headers(false);
    /// # drop(layer);
    /// # Ok::<(), fusebox::bucket::QuotaError>(())
    /// ```
    #[must_use]
    pub fn rate_limit_headers(mut self, on: bool) -> Self {
        self.headers = on;
        self
    }

    /// Whether responses carry the legacy `X-RateLimit-Limit`,
    /// `X-RateLimit-Remaining` and `X-RateLimit-Reset` (delta seconds),
    /// with the values of the `RateLimit` fields (default `false`): next
    /// to those fields, or alone with
    /// [`rate_limit_headers(false)`](Self::rate_limit_headers).
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use std::sync::Arc;
    /// use fusebox::{bucket::Quota, TokenBucket};
    /// use fusebox_std::tower::RateLimitLayer;
    /// use tower::{service_fn, Layer, Service};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// let bucket = Arc::new(TokenBucket::new(Quota::per_second(5)?));
    /// let layer = RateLimitLayer::new("api", bucket).rate_limit_headers(false).legacy_headers(true);
    /// let mut service = layer.layer(service_fn(|_: http::Request<()>| async {
    ///     Ok::<_, Infallible>(http::Response::new(String::new()))
    /// }));
    /// let response = service.call(http::Request::new(())).await?;
    /// assert_eq!(response.headers()["x-ratelimit-remaining"], "4");
    /// assert!(!response.headers().contains_key("ratelimit"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    #[must_use]
    pub fn legacy_headers(mut self, on: bool) -> Self {
        self.legacy = on;
        self
    }

    /// The policy name.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fusebox::{bucket::Quota, TokenBucket};
    /// use fusebox_std::tower::RateLimitLayer;
    ///
    /// assert_eq!(RateLimitLayer::new("api", Arc::new(TokenBucket::new(Quota::per_second(5)?))).name(), "api");
    /// # Ok::<(), fusebox::bucket::QuotaError>(())
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The limit every service of this layer shares.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fusebox::{bucket::Quota, TokenBucket};
    /// use fusebox_std::tower::RateLimitLayer;
    ///
    /// let layer = RateLimitLayer::new("api", Arc::new(TokenBucket::new(Quota::per_second(5)?)));
    /// assert_eq!(layer.limit().bucket().quota().tokens(), 5);
    /// # Ok::<(), fusebox::bucket::QuotaError>(())
    /// ```
    pub fn limit(&self) -> &L {
        &self.limit
    }

    /// The clock the limit is read with.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fusebox::{bucket::Quota, Clock, Instant, TokenBucket};
    /// use fusebox_std::tower::RateLimitLayer;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// let layer = RateLimitLayer::new("api", Arc::new(TokenBucket::new(Quota::per_second(5)?)));
    /// assert_eq!(layer.clock().now(), Instant::ZERO);
    /// # Ok::<(), fusebox::bucket::QuotaError>(())
    /// # }).unwrap();
    /// ```
    pub fn clock(&self) -> TokioClock {
        self.clock
    }
}

impl<Svc, L: Clone, R: Clone> Layer<Svc> for RateLimitLayer<L, R> {
    type Service = RateLimitService<Svc, L, R>;

    fn layer(&self, inner: Svc) -> Self::Service {
        let shared = Common {
            limit: self.limit.clone(),
            name: Arc::clone(&self.name),
            fields: Arc::new(PolicyFields::new(&self.name)),
            clock: self.clock,
            headers: self.headers,
            legacy: self.legacy,
            reporter: self.reporter.clone(),
            full_warn: Arc::clone(&self.full_warn),
            responder: self.responder.clone(),
        };
        RateLimitService::new(inner, Arc::new(shared))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration as StdDuration;

    use fusebox::bucket::{FullPolicy, KeyedLimiter, Quota};
    use fusebox::TokenBucket;
    use tower_layer::Layer;

    use super::RateLimitLayer;
    use crate::tower::rate_limit::key;
    use crate::tower::test_service::{get, send, with_key, Scripted};
    use crate::TokioClock;

    /// A layer given a clock with `with_clock`, then another layer built
    /// with `new` over the same bucket: the second one read the fresh
    /// clock the first one's `new` had kept (and no layer read), an hour
    /// behind the given one, so each admitted a request within the same
    /// hour on a quota of 1 an hour (found by a hostile review). The clock
    /// a layer is given is now the one kept for its core.
    #[tokio::test(start_paused = true)]
    async fn a_clock_given_to_a_layer_is_the_one_later_layers_read() {
        let app = TokioClock::new();
        tokio::time::advance(StdDuration::from_secs(3_600)).await;
        let bucket = Arc::new(TokenBucket::new(Quota::per_hour(1).unwrap()));
        let given = RateLimitLayer::new("api", Arc::clone(&bucket)).with_clock(app);
        let later = RateLimitLayer::new("api", Arc::clone(&bucket));
        assert_eq!(later.clock(), app);
        let (mut a, mut b) = (later.layer(Scripted), given.layer(Scripted));
        assert_eq!(send(&mut a, get("/200")).await.unwrap().status(), 200);
        assert_eq!(send(&mut b, get("/200")).await.unwrap().status(), 429);
        // The same for a keyed limiter.
        let limiter = Arc::new(
            KeyedLimiter::<String, 8>::new(Quota::per_hour(1).unwrap(), FullPolicy::Reject)
                .unwrap(),
        );
        let header = || key::header("x-api-key", 8);
        let given = RateLimitLayer::keyed("k", Arc::clone(&limiter), header()).with_clock(app);
        let later = RateLimitLayer::keyed("k", limiter, header());
        assert_eq!(later.clock(), app);
        let (mut a, mut b) = (later.layer(Scripted), given.layer(Scripted));
        assert_eq!(send(&mut a, with_key(b"k1")).await.unwrap().status(), 200);
        assert_eq!(send(&mut b, with_key(b"k1")).await.unwrap().status(), 429);
    }

    /// The legacy trio asked for without the `RateLimit` fields: no field
    /// at all was sent, the trio being added only next to the fields
    /// (found by a hostile review: the configuration of a client that
    /// reads only `X-RateLimit-*` was silently ignored).
    #[tokio::test(start_paused = true)]
    async fn the_legacy_trio_alone_is_sent_without_the_fields() {
        let bucket = Arc::new(TokenBucket::new(Quota::per_hour(2).unwrap()));
        let limiter = Arc::new(
            KeyedLimiter::<String, 8>::new(Quota::per_hour(2).unwrap(), FullPolicy::Reject)
                .unwrap(),
        );
        let single = RateLimitLayer::new("api", bucket)
            .rate_limit_headers(false)
            .legacy_headers(true)
            .layer(Scripted);
        let keyed = RateLimitLayer::keyed("k", limiter, key::header("x-api-key", 8))
            .rate_limit_headers(false)
            .legacy_headers(true)
            .layer(Scripted);
        legacy_only(single, || get("/200")).await;
        legacy_only(keyed, || with_key(b"k1")).await;
    }

    /// Sends three requests to a layer of quota 2 an hour sending the
    /// legacy trio only: the trio on the first and on the refusal.
    async fn legacy_only<S>(mut service: S, request: impl Fn() -> http::Request<()>)
    where
        S: tower_service::Service<http::Request<()>, Response = http::Response<String>>,
        S::Error: std::fmt::Debug,
    {
        let trio = |r: &http::Response<String>| {
            let h = r.headers();
            assert!(!h.contains_key("ratelimit") && !h.contains_key("ratelimit-policy"));
            [
                "x-ratelimit-limit",
                "x-ratelimit-remaining",
                "x-ratelimit-reset",
            ]
            .map(|name| h.get(name).map(|v| v.to_str().unwrap().to_owned()))
        };
        let some = |v: &str| Some(v.to_owned());
        let first = send(&mut service, request()).await.unwrap();
        assert_eq!(trio(&first), [some("2"), some("1"), some("1800")]);
        send(&mut service, request()).await.unwrap();
        let refused = send(&mut service, request()).await.unwrap();
        assert_eq!(refused.status(), 429);
        assert_eq!(trio(&refused), [some("2"), some("0"), some("1800")]);
    }
}
