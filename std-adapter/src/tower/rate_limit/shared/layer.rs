//! [`RateLimitLayer::shared`]: a layer over a [`Shared`] limit.

use std::fmt;
use std::sync::Arc;

use http::request::Parts;

use super::fields::Fields;
use super::Shared;
use crate::backend::RedisLimiter;
use crate::tower::rate_limit::{BadKey, KeyError, RateLimitLayer};
use crate::TokioClock;

impl<K, F> RateLimitLayer<Shared<K, F>>
where
    F: Fn(&Parts) -> Result<K, KeyError>,
{
    /// A limit decided by `limiter` in Redis, per key: `key` makes a key
    /// of each request head (see the [`key`](crate::tower::rate_limit::key) functions). The
    /// layer's name, in its fields and logs, is the limiter's; its
    /// `RateLimit-Policy` lists one member per rule, `"<limiter>.<rule>"`.
    /// A request whose key function fails is refused with
    /// [`Refusal::BadKey`](crate::tower::rate_limit::Refusal::BadKey) (`400` by default) unless
    /// [`on_bad_key`](RateLimitLayer::on_bad_key) says otherwise. See
    /// [`Shared`] for how readiness, outages and the fields work.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fusebox::bucket::Quota;
    /// use fusebox_std::backend::{RedisBackend, RedisConfig, RedisLimiter, Rules};
    /// use fusebox_std::tower::rate_limit::KeyError;
    /// use fusebox_std::tower::RateLimitLayer;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// // Connects on first use: nothing below talks to Redis.
    /// let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:6379"))?;
    /// // One fleet-wide limit for every request: one constant key.
    /// let limiter = RedisLimiter::builder("global", Rules::single("per_second", Quota::per_second(1_000)?)?, backend)
    ///     .build()?;
    /// let layer = RateLimitLayer::shared(Arc::new(limiter), |_: &http::request::Parts| Ok::<_, KeyError>(""));
    /// assert_eq!(layer.name(), "global");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn shared(limiter: Arc<RedisLimiter>, key: F) -> Self {
        let name: Arc<str> = limiter.name().into();
        let fields = Arc::new(Fields::new(&limiter));
        let limit = Shared {
            limiter,
            key,
            bad_key: BadKey::Reject,
            bad_keys: Arc::default(),
            fields,
        };
        Self::with_limit(name, limit, TokioClock::new())
    }
}

impl<K, F, R> RateLimitLayer<Shared<K, F>, R> {
    /// What a request whose key function fails (or whose key is longer
    /// than [`MAX_KEY_LEN`](crate::backend::MAX_KEY_LEN)) gets: refused ([`BadKey::Reject`], the
    /// default) or charged to one default key ([`BadKey::Default`]).
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
    /// let layer = RateLimitLayer::shared(Arc::new(limiter), key::header("x-api-key", 64))
    ///     .on_bad_key(BadKey::Default("anonymous".to_owned()));
    /// assert_eq!(*layer.limit().bad_key(), BadKey::Default("anonymous".to_owned()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    ///
    /// A default key longer than [`MAX_KEY_LEN`](crate::backend::MAX_KEY_LEN)
    /// once rendered cannot be stored either: every request without a
    /// usable key is then refused (`400`, `too_long`).
    /// [`try_on_bad_key`](Self::try_on_bad_key) refuses such a key when the
    /// layer is built.
    #[must_use]
    pub fn on_bad_key(mut self, bad_key: BadKey<K>) -> Self {
        self.limit.bad_key = bad_key;
        self
    }
}

impl<K: fmt::Display, F, R> RateLimitLayer<Shared<K, F>, R> {
    /// [`on_bad_key`](Self::on_bad_key), with the default key checked
    /// now rather than on every request without a usable key.
    ///
    /// # Errors
    ///
    /// [`KeyError::TooLong`] when the default key, rendered, is longer
    /// than [`MAX_KEY_LEN`](crate::backend::MAX_KEY_LEN).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fusebox::bucket::Quota;
    /// use fusebox_std::backend::{RedisBackend, RedisConfig, RedisLimiter, Rules, MAX_KEY_LEN};
    /// use fusebox_std::tower::rate_limit::{key, BadKey, KeyError};
    /// use fusebox_std::tower::RateLimitLayer;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// // Connects on first use: nothing below talks to Redis.
    /// let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:6379"))?;
    /// let rules = Rules::single("per_second", Quota::per_second(100)?)?;
    /// let limiter = Arc::new(RedisLimiter::builder("api", rules, backend).build()?);
    /// let layer = || RateLimitLayer::shared(Arc::clone(&limiter), key::header("x-api-key", 64));
    /// let long = "k".repeat(MAX_KEY_LEN + 1);
    /// assert_eq!(
    ///     layer().try_on_bad_key(BadKey::Default(long)).err(),
    ///     Some(KeyError::TooLong { len: MAX_KEY_LEN + 1, max: MAX_KEY_LEN })
    /// );
    /// let layer = layer().try_on_bad_key(BadKey::Default("anonymous".to_owned()))?;
    /// assert_eq!(*layer.limit().bad_key(), BadKey::Default("anonymous".to_owned()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn try_on_bad_key(self, bad_key: BadKey<K>) -> Result<Self, KeyError> {
        if let BadKey::Default(key) = &bad_key {
            super::limit::bounded(key)?;
        }
        Ok(self.on_bad_key(bad_key))
    }
}
