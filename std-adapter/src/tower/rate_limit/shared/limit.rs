//! [`Shared`]: a limit decided by a [`RedisLimiter`], keyed by a
//! function of the request head; what its decisions become.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::request::Parts;

use super::fields::{to_core, Fields, Stamp};
use crate::backend::{BackendError, Decision, RedisLimiter, Source, MAX_KEY_LEN};
use crate::redact::Redacted;
use crate::tower::rate_limit::{BadKey, BadKeyCounter, BadKeys, Common, KeyError, Refusal};

/// A limit kept in Redis by a [`RedisLimiter`] (its [`Rules`], its
/// command timeout, its [`Degrade`] policy), keyed by a function of the
/// request head as [`Keyed`](crate::tower::rate_limit::Keyed) is: every instance of a fleet
/// whose layers use the same Redis, limiter name and rules charges one
/// quota per key. Built with [`RateLimitLayer::shared`](crate::tower::RateLimitLayer::shared).
///
/// # The decision and `poll_ready`
///
/// The decision is a Redis round trip, so it is awaited in the response
/// future, and the inner service is called only once it admits. Tower's
/// rule is that `poll_ready` reserves capacity (a concurrency permit, a
/// buffer slot) for exactly one `call` on *that* service value, so
/// `call` hands the service it made ready to the future and keeps a clone
/// in its place, as tower's docs recommend for a call made later (clone
/// and swap). Hence:
///
/// * the inner service the future calls is the one `poll_ready` made
///   ready, and it is called at most once;
/// * the clone left behind has reserved nothing: the caller polls it ready
///   before the next `call`, so backpressure still reaches the caller;
/// * a refusal (or a dropped future) drops the ready service, releasing
///   its reservation; it is held no longer than the decision, which never
///   waits on Redis longer than the command timeout;
/// * a request refused before any round trip (no usable key) leaves the
///   ready service in place, unused, as the in-process kinds do.
///
/// The inner service must be `Clone` (axum's, tonic's and hyper's are).
/// The in-process kinds, [`Single`](crate::tower::rate_limit::Single) and
/// [`Keyed`](crate::tower::rate_limit::Keyed), decide in `call` and pay for none of this (no
/// clone, no boxed future).
///
/// # Keys
///
/// The key function's key is rendered with `Display` (a `String` as it
/// is, an `IpAddr` as text) and stored escaped; a key function that fails,
/// or a key longer than [`MAX_KEY_LEN`] bytes
/// ([`KeyError::TooLong`]), is handled as for `Keyed`: refused with
/// [`Refusal::BadKey`] (`400`) unless [`on_bad_key`](crate::tower::RateLimitLayer::on_bad_key)
/// names a default key. Neither reaches Redis. A limit with no keys uses
/// one constant key, `|_: &Parts| Ok::<_, KeyError>("")`.
///
/// Redis keeps one key per rule and request key, each expiring once its
/// bucket would be full again (at most the rule's refill time after the
/// last request), and unlike [`Keyed`](crate::tower::rate_limit::Keyed)'s
/// table, nothing bounds how many there are: keyed by what clients choose
/// (an API key they send, a path), a client sending a fresh key per
/// request adds one Redis key per request, each kept for up to that
/// refill time. Key on something a client cannot multiply (an
/// authenticated identity, [`key::network`](crate::tower::rate_limit::key::network)
/// of its address), keep the refill times of such rules short, or put a
/// [`Keyed`](crate::tower::rate_limit::Keyed) limit (bounded, per client)
/// in front; and size Redis for it (under a `maxmemory` eviction policy,
/// an evicted key is a full bucket again).
///
/// # Fields
///
/// `RateLimit-Policy` lists one member per rule, named
/// `"<limiter>.<rule>"` (`"api.per_second";q=10;w=1,
/// "api.per_minute";q=500;w=60`); `RateLimit` has one member, the rule
/// that binds the decision (the one with the fewest units left when
/// admitted, the one with the longest wait when refused), with Redis's
/// `remaining` and `reset`: `"api.per_second";r=3;t=1`. A `429` says
/// `r=0`, and a `t` equal to its `Retry-After`, the Redis decision's.
///
/// # Redis out
///
/// The limiter's [`Degrade`] policy decides, within the command timeout:
/// `FailOpen` admits, `FailClosed` refuses with [`Refusal::FailClosed`]
/// (`503` by default, not `429`: the client did nothing wrong; its
/// `Retry-After` is the limiter's next probe of Redis), `Local` decides on
/// in-process buckets holding the instance's share (`429` when spent).
/// These decisions are not the shared quota's, so their responses carry
/// no `RateLimit` fields (rather than wrong ones), as a `Keyed` limit's
/// overflow charges do. The limiter reports the outage (a warning, health
/// `degraded`, metrics) and its first successful probe ends it.
///
/// [`Rules`]: crate::backend::Rules
/// [`Degrade`]: crate::backend::Degrade
///
/// # Examples
///
/// This example connects to a Redis server and serves on a port, so the
/// doctests compile it without running it.
///
/// ```no_run
/// use std::sync::Arc;
/// use fusebox::bucket::Quota;
/// use fusebox_std::backend::{Degrade, RedisBackend, RedisConfig, RedisLimiter, Rule, Rules};
/// use fusebox_std::tower::rate_limit::key;
/// use fusebox_std::tower::RateLimitLayer;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let backend = RedisBackend::connect(RedisConfig::new("redis://127.0.0.1:6379")).await?;
/// let rules = Rules::new([
///     Rule::new("per_second", Quota::per_second(10)?)?,
///     Rule::new("per_minute", Quota::per_minute(500)?)?,
/// ])?;
/// let limiter = RedisLimiter::builder("api", rules, backend).degrade(Degrade::FailOpen).build()?;
/// let layer = RateLimitLayer::shared(Arc::new(limiter), key::header("x-api-key", 64));
/// let app = axum::Router::new()
///     .route("/", axum::routing::get(|| async { "hello" }))
///     .layer(layer);
/// axum::serve(tokio::net::TcpListener::bind("127.0.0.1:8080").await?, app).await?;
/// # Ok(()) }
/// ```
pub struct Shared<K, F> {
    pub(super) limiter: Arc<RedisLimiter>,
    pub(super) key: F,
    pub(super) bad_key: BadKey<K>,
    /// Requests without a usable key, by reason.
    pub(super) bad_keys: Arc<BadKeyCounter>,
    pub(super) fields: Arc<Fields>,
}

impl<K: Clone, F: Clone> Clone for Shared<K, F> {
    fn clone(&self) -> Self {
        Self {
            limiter: Arc::clone(&self.limiter),
            key: self.key.clone(),
            bad_key: self.bad_key.clone(),
            bad_keys: Arc::clone(&self.bad_keys),
            fields: Arc::clone(&self.fields),
        }
    }
}

impl<K, F> fmt::Debug for Shared<K, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("limiter", &self.limiter)
            .finish_non_exhaustive()
    }
}

/// What a decision becomes.
pub(super) enum Outcome {
    /// Call the inner service; stamp its response, if anything.
    Admitted(Option<Stamp>),
    /// Answer with the responder's refusal, stamped if anything.
    Refused(Refusal, Option<Stamp>),
}

/// A decision in flight: `RedisLimiter::try_acquire`, owning its key.
pub(super) type Deciding =
    Pin<Box<dyn Future<Output = Result<Decision, BackendError>> + Send + 'static>>;

impl<K, F> Shared<K, F> {
    /// The Redis limiter deciding for this layer.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fusebox::bucket::Quota;
    /// use fusebox_std::backend::{RedisBackend, RedisConfig, RedisLimiter, Rules};
    /// use fusebox_std::tower::rate_limit::key;
    /// use fusebox_std::tower::RateLimitLayer;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// // Connects on first use: nothing below talks to Redis.
    /// let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:6379"))?;
    /// let rules = Rules::single("per_second", Quota::per_second(100)?)?;
    /// let limiter = Arc::new(RedisLimiter::builder("api", rules, backend).build()?);
    /// let layer = RateLimitLayer::shared(Arc::clone(&limiter), key::path(128));
    /// assert!(Arc::ptr_eq(layer.limit().limiter(), &limiter));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn limiter(&self) -> &Arc<RedisLimiter> {
        &self.limiter
    }

    /// What a request whose key function fails gets.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fusebox::bucket::Quota;
    /// use fusebox_std::backend::{RedisBackend, RedisConfig, RedisLimiter, Rules};
    /// use fusebox_std::tower::rate_limit::{key, BadKey};
    /// use fusebox_std::tower::RateLimitLayer;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// // Connects on first use: nothing below talks to Redis.
    /// let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:6379"))?;
    /// let rules = Rules::single("per_second", Quota::per_second(100)?)?;
    /// let limiter = RedisLimiter::builder("api", rules, backend).build()?;
    /// let layer = RateLimitLayer::shared(Arc::new(limiter), key::path(128));
    /// assert_eq!(*layer.limit().bad_key(), BadKey::Reject);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn bad_key(&self) -> &BadKey<K> {
        &self.bad_key
    }

    /// The requests found without a usable key so far (or with one
    /// longer than [`MAX_KEY_LEN`]), refused or charged to the default
    /// key (see [`BadKeys`]).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fusebox::bucket::Quota;
    /// use fusebox_std::backend::{RedisBackend, RedisConfig, RedisLimiter, Rules};
    /// use fusebox_std::tower::rate_limit::key;
    /// use fusebox_std::tower::RateLimitLayer;
    /// use tower::{service_fn, ServiceExt};
    /// use tower_layer::Layer;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// // Connects on first use: nothing below talks to Redis.
    /// let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:6379"))?;
    /// let rules = Rules::single("per_second", Quota::per_second(100)?)?;
    /// let limiter = RedisLimiter::builder("api", rules, backend).build()?;
    /// let layer = RateLimitLayer::shared(Arc::new(limiter), key::header("x-api-key", 64));
    /// assert_eq!(layer.limit().bad_keys().total(), 0);
    ///
    /// let hello = service_fn(|_: http::Request<()>| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
    /// });
    /// // No x-api-key: refused (400) before any round trip to Redis, and counted.
    /// let response = layer.clone().layer(hello).oneshot(http::Request::new(())).await?;
    /// assert_eq!(response.status(), 400);
    /// assert_eq!(layer.limit().bad_keys().missing, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn bad_keys(&self) -> BadKeys {
        self.bad_keys.read()
    }

    /// The decision for `key`, as a future that owns what it needs.
    pub(super) fn decide(&self, key: String) -> Deciding {
        let limiter = Arc::clone(&self.limiter);
        Box::pin(async move { limiter.try_acquire(&key).await })
    }
}

impl<K: fmt::Display, F> Shared<K, F>
where
    F: Fn(&Parts) -> Result<K, KeyError>,
{
    /// The request's key as stored in Redis (before escaping), or the
    /// error a `Reject` policy refuses it with.
    pub(super) fn key(&self, head: &Parts, name: &str) -> Result<String, KeyError> {
        let error = match (self.key)(head).and_then(|key| bounded(&key)) {
            Ok(key) => return Ok(key),
            Err(error) => error,
        };
        self.bad_keys.count(&error);
        match &self.bad_key {
            BadKey::Reject => Err(error),
            BadKey::Default(key) => {
                tracing::debug!(policy = %Redacted(&name), reason = %Redacted(&error), "request key unusable: charged to the default key");
                bounded(key)
            }
        }
    }
}

/// `key` rendered, at most [`MAX_KEY_LEN`] bytes.
pub(super) fn bounded(key: &impl fmt::Display) -> Result<String, KeyError> {
    let key = key.to_string();
    if key.len() > MAX_KEY_LEN {
        return Err(KeyError::TooLong {
            len: key.len(),
            max: MAX_KEY_LEN,
        });
    }
    Ok(key)
}

impl<K, F, R> Common<Shared<K, F>, R> {
    /// What the limiter's answer becomes.
    pub(super) fn outcome(&self, result: Result<Decision, BackendError>) -> Outcome {
        let stamp = |d: &Decision| {
            if self.headers || self.legacy {
                Stamp::new(&self.limit.fields, d, self.headers, self.legacy)
            } else {
                None
            }
        };
        match result {
            Ok(d) if d.allowed => {
                let redis = d.source == Source::Redis;
                Outcome::Admitted(if redis { stamp(&d) } else { None })
            }
            Ok(d) => {
                let retry_after = to_core(d.retry_after);
                match d.source {
                    Source::FailClosed => {
                        Outcome::Refused(Refusal::FailClosed { retry_after }, None)
                    }
                    Source::Redis => {
                        let stamp = stamp(&d).map(|mut s| {
                            s.quoted = s.quoted.refused(retry_after);
                            s
                        });
                        Outcome::Refused(Refusal::Limited { retry_after }, stamp)
                    }
                    // `Local`: the instance's share, not the policy's quota.
                    _ => Outcome::Refused(Refusal::Limited { retry_after }, None),
                }
            }
            // The `Local` policy's in-process table is full of busy keys.
            Err(BackendError::TableFull) => {
                // The shortest rule's token (see `Refusal::TableFull`):
                // the local share's are no shorter.
                let retry_after = self
                    .limit
                    .limiter
                    .rules()
                    .iter()
                    .map(|rule| rule.quota().replenish_interval())
                    .min()
                    .unwrap_or(fusebox::Duration::ZERO);
                Outcome::Refused(Refusal::TableFull { retry_after }, None)
            }
            Err(error) => {
                // Never expected: the key was checked, one token never
                // exceeds a burst, and faults go to the degrade policy.
                tracing::warn!(policy = %Redacted(&self.name), error = %Redacted(&error), "shared rate limit made no decision");
                Outcome::Refused(Refusal::Unavailable, None)
            }
        }
    }
}
