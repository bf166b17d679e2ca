//! Rate-limit layers over a [`Registry`]'s limiters: they show in its
//! health report and Prometheus text, read on its clock.

use std::hash::Hash;
use std::sync::Arc;

use fusebox::bucket::{FullPolicy, Quota};
use fusebox::hash::RandomState;
use http::request::Parts;

use super::{KeyError, Keyed, RateLimitLayer, Single};
use crate::events::Component;
use crate::registry::{Registry, RegistryError, ServerKeyedLimiter};

impl RateLimitLayer<Single> {
    /// The registry's token bucket `name` (created with `quota` if it does
    /// not exist), read on the registry's clock: it shows in
    /// [`Registry::health`] and [`Registry::to_prometheus`], and each
    /// refusal is an [`Event::Rejected`](crate::events::Event::Rejected)
    /// ([`Component::Limiter`]) on [`Registry::events`].
    ///
    /// # Errors
    ///
    /// As [`Registry::limiter`].
    ///
    /// ```
    /// use fusebox::bucket::Quota;
    /// use fusebox_std::tower::RateLimitLayer;
    /// use fusebox_std::Registry;
    ///
    /// let registry = Registry::new();
    /// let layer = RateLimitLayer::from_registry(&registry, "api", Quota::per_second(50)?)?;
    /// assert!(registry.to_prometheus().contains("fusebox_limiter_available_tokens{name=\"api\"} 50\n"));
    /// # drop(layer);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_registry(
        registry: &Registry,
        name: &str,
        quota: Quota,
    ) -> Result<Self, RegistryError> {
        let bucket = registry.limiter(name, quota)?;
        Ok(Self::with_limit(
            name,
            Single::new(Arc::clone(&bucket)),
            registry.tokio_clock(),
        )
        .over(&bucket)
        .reporting_to(registry.reporter(name, Component::Limiter)))
    }

    /// The registry's keyed limiter `name` (keys `K`, `N` slots, a secret
    /// hash seed; created with `quota` and `policy` if it does not exist),
    /// read on the registry's clock, keyed by `key`: it shows in
    /// [`Registry::health`] and [`Registry::to_prometheus`], and each
    /// refusal (limited, bad key, table full) is an
    /// [`Event::Rejected`](crate::events::Event::Rejected)
    /// ([`Component::KeyedLimiter`]) on [`Registry::events`].
    ///
    /// # Errors
    ///
    /// As [`Registry::keyed_limiter`].
    ///
    /// ```
    /// use fusebox::bucket::{FullPolicy, Quota};
    /// use fusebox_std::tower::rate_limit::key;
    /// use fusebox_std::tower::RateLimitLayer;
    /// use fusebox_std::Registry;
    ///
    /// let registry = Registry::new();
    /// let layer = RateLimitLayer::keyed_from_registry::<String, 4096, _>(
    ///     &registry, "per_api_key", Quota::per_minute(600)?, FullPolicy::Reject, key::header("x-api-key", 64))?;
    /// assert_eq!(registry.health().keyed_limiters["per_api_key"].keys, 0);
    /// # drop(layer);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn keyed_from_registry<K, const N: usize, F>(
        registry: &Registry,
        name: &str,
        quota: Quota,
        policy: FullPolicy,
        key: F,
    ) -> Result<RateLimitLayer<Keyed<K, N, RandomState, F>>, RegistryError>
    where
        K: Eq + Hash + Clone + Send + Sync + 'static,
        F: Fn(&Parts) -> Result<K, KeyError>,
    {
        let limiter: Arc<ServerKeyedLimiter<K, N>> = registry.keyed_limiter(name, quota, policy)?;
        let core = Arc::clone(&limiter);
        Ok(RateLimitLayer::with_limit(
            name,
            Keyed::new(limiter, key).counting_bad_keys_in(registry.bad_key_counter(name)),
            registry.tokio_clock(),
        )
        .over(&core)
        .reporting_to(registry.reporter(name, Component::KeyedLimiter)))
    }
}
