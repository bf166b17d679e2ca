//! Rate-limit layers over a [`Registry`]'s limiters: they show in its
//! health report and Prometheus text, read on its clock.

use std::hash::Hash;
use std::sync::Arc;

use fusebox::bucket::{FullPolicy, Quota};
use fusebox::hash::RandomState;
use fusebox::TokenBucket;
use http::request::Parts;

use super::{KeyError, Keyed, RateLimitLayer, Single};
use crate::events::Component;
use crate::registry::{Kind, Registry, RegistryError, ServerKeyedLimiter};

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
        Ok(Self::over_registry_bucket(registry, name, &bucket))
    }

    /// The registry's token bucket `name` as it is, with its quota: one its
    /// [configuration](crate::registry::RegistryConfig) declares (so the
    /// quota is the operator's, and the code needs not repeat it), or one
    /// built before. The layer is the one
    /// [`from_registry`](Self::from_registry) builds over that bucket (the
    /// registry's clock, health report, metrics and events).
    ///
    /// # Errors
    ///
    /// [`RegistryError::NotFound`] if the registry has no limiter `name`.
    ///
    /// ```
    /// use fusebox_std::registry::{Registry, RegistryConfig, RegistryError};
    /// use fusebox_std::tower::RateLimitLayer;
    ///
    /// let config = RegistryConfig::from_toml("[limiters.api]\nrate = 50\nperiod = \"1s\"\n")?;
    /// let registry = Registry::from_config(&config)?;
    /// let layer = RateLimitLayer::configured_from_registry(&registry, "api")?;
    /// assert!(registry.to_prometheus().contains("fusebox_limiter_available_tokens{name=\"api\"} 50\n"));
    /// let missing = RateLimitLayer::configured_from_registry(&registry, "other");
    /// assert!(matches!(missing, Err(RegistryError::NotFound { .. })));
    /// # drop(layer);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn configured_from_registry(
        registry: &Registry,
        name: &str,
    ) -> Result<Self, RegistryError> {
        let bucket = registry
            .get_limiter(name)
            .ok_or_else(|| RegistryError::NotFound {
                kind: Kind::Limiter,
                name: crate::registry::shown(name),
            })?;
        Ok(Self::over_registry_bucket(registry, name, &bucket))
    }

    /// The layer over the registry's `bucket`, named `name`.
    fn over_registry_bucket(registry: &Registry, name: &str, bucket: &Arc<TokenBucket>) -> Self {
        Self::with_limit(
            name,
            Single::new(Arc::clone(bucket)),
            registry.tokio_clock(),
        )
        .over(bucket)
        .reporting_to(registry.reporter(name, Component::Limiter))
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
        Ok(Self::over_registry_keyed(registry, name, limiter, key))
    }

    /// The keyed limiter `name` the registry's
    /// [configuration](crate::registry::RegistryConfig) declares, with its
    /// quota and full-table policy (the operator's: the code needs not
    /// repeat them), built on first use with the key type and size the code
    /// chooses ([`Registry::configured_keyed_limiter`]). The layer is the
    /// one [`keyed_from_registry`](Self::keyed_from_registry) builds over
    /// that limiter.
    ///
    /// # Errors
    ///
    /// As [`Registry::configured_keyed_limiter`]: [`RegistryError::NotFound`]
    /// if the configuration declares none of that name.
    ///
    /// ```
    /// use fusebox_std::registry::{Registry, RegistryConfig};
    /// use fusebox_std::tower::rate_limit::key;
    /// use fusebox_std::tower::RateLimitLayer;
    ///
    /// let config = RegistryConfig::from_toml("[keyed_limiters.per_api_key]\nrate = 600\nperiod = \"1m\"\n")?;
    /// let registry = Registry::from_config(&config)?;
    /// let layer = RateLimitLayer::configured_keyed_from_registry::<String, 4096, _>(
    ///     &registry, "per_api_key", key::header("x-api-key", 64))?;
    /// let limiter = registry.configured_keyed_limiter::<String, 4096>("per_api_key")?;
    /// assert_eq!(limiter.quota(0).map(|q| q.tokens()), Some(600));
    /// # drop(layer);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn configured_keyed_from_registry<K, const N: usize, F>(
        registry: &Registry,
        name: &str,
        key: F,
    ) -> Result<RateLimitLayer<Keyed<K, N, RandomState, F>>, RegistryError>
    where
        K: Eq + Hash + Clone + Send + Sync + 'static,
        F: Fn(&Parts) -> Result<K, KeyError>,
    {
        let limiter: Arc<ServerKeyedLimiter<K, N>> = registry.configured_keyed_limiter(name)?;
        Ok(Self::over_registry_keyed(registry, name, limiter, key))
    }

    /// The layer over the registry's keyed `limiter`, named `name`.
    fn over_registry_keyed<K, const N: usize, F>(
        registry: &Registry,
        name: &str,
        limiter: Arc<ServerKeyedLimiter<K, N>>,
        key: F,
    ) -> RateLimitLayer<Keyed<K, N, RandomState, F>>
    where
        K: Eq + Hash + Clone + Send + Sync + 'static,
        F: Fn(&Parts) -> Result<K, KeyError>,
    {
        let core = Arc::clone(&limiter);
        RateLimitLayer::with_limit(
            name,
            Keyed::new(limiter, key).counting_bad_keys_in(registry.bad_key_counter(name)),
            registry.tokio_clock(),
        )
        .over(&core)
        .reporting_to(registry.reporter(name, Component::KeyedLimiter))
    }
}

#[cfg(test)]
mod tests {
    use tower_layer::Layer;

    use super::*;
    use crate::registry::RegistryConfig;
    use crate::tower::rate_limit::key;
    use crate::tower::test_service::{send, with_key, Scripted};

    /// Layers over the configured limiters admit what the operator's
    /// quotas admit, with no quota written in the code. Before, the only
    /// way was `from_registry` / `keyed_from_registry` with the quota
    /// repeated, and a quota that differed from the declared one was a
    /// conflict (keyed) or the declared one silently kept (single).
    #[tokio::test(start_paused = true)]
    async fn layers_over_configured_limiters_take_the_operators_quotas() {
        let config = RegistryConfig::from_toml(
            "[limiters.api]\nrate = 3\nperiod = \"1h\"\n\
             [keyed_limiters.per_key]\nrate = 2\nperiod = \"1h\"\n",
        )
        .unwrap();
        let registry = Registry::from_config(&config).unwrap();
        let single = RateLimitLayer::configured_from_registry(&registry, "api").unwrap();
        let keyed = RateLimitLayer::configured_keyed_from_registry::<String, 16, _>(
            &registry,
            "per_key",
            key::header("x-api-key", 64),
        )
        .unwrap();
        let mut service = single.layer(keyed.layer(Scripted));
        let mut statuses = Vec::new();
        for k in [b"a", b"a", b"a", b"b"] {
            statuses.push(
                send(&mut service, with_key(k))
                    .await
                    .unwrap()
                    .status()
                    .as_u16(),
            );
        }
        // `a` twice (its key's quota), then refused by its key, the single
        // limit outside having taken its third and last token: `b` too.
        assert_eq!(statuses, [200, 200, 429, 429]);
        assert!(RateLimitLayer::configured_from_registry(&registry, "nope").is_err());
        let missing = RateLimitLayer::configured_keyed_from_registry::<String, 16, _>(
            &registry,
            "api",
            key::header("x-api-key", 64),
        );
        assert!(matches!(missing, Err(RegistryError::NotFound { .. })));
    }
}
