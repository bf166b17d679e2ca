//! Token buckets and keyed limiters in the registry.

use std::any::Any;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

use fusebox::bucket::{FullPolicy, KeyedLimiter, KeyedMetrics, Quota};
use fusebox::hash::RandomState;
use fusebox::TokenBucket;

use crate::events::Component;

use super::{
    conflict, not_found, type_mismatch, FieldError, KeyedEntry, Kind, LimiterEntry, Registry,
    RegistryError,
};

/// A keyed limiter as the registry builds it: one quota tier, keys hashed
/// with a secret per-instance seed ([`RandomState`]), since keys usually
/// come from clients.
///
/// ```
/// use std::sync::Arc;
/// use fusebox::bucket::{FullPolicy, Quota};
/// use fusebox_std::registry::{Registry, ServerKeyedLimiter};
///
/// let registry = Registry::new();
/// let limiter: Arc<ServerKeyedLimiter<u64, 512>> =
///     registry.keyed_limiter("per_user", Quota::per_second(3)?, FullPolicy::Reject)?;
/// assert_eq!(limiter.available(&42, registry.now()), 3);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub type ServerKeyedLimiter<K, const N: usize> = KeyedLimiter<K, N, 1, RandomState>;

/// A keyed limiter of any key type and size, for the reports.
pub(crate) trait KeyedSource: Send + Sync {
    fn keyed_metrics(&self) -> KeyedMetrics;
}

impl<K, const N: usize, const TIERS: usize, S> KeyedSource for KeyedLimiter<K, N, TIERS, S>
where
    K: Eq + Hash + Clone,
    S: BuildHasher,
    Self: Send + Sync,
{
    fn keyed_metrics(&self) -> KeyedMetrics {
        self.metrics()
    }
}

impl Registry {
    /// The token bucket `name`, created with `quota` if it does not exist.
    /// A bucket whose quota was changed since (`set_quota`) is still
    /// matched against the quota it was created with.
    ///
    /// # Errors
    ///
    /// [`RegistryError::InvalidName`], [`RegistryError::Conflict`],
    /// [`RegistryError::Full`].
    ///
    /// ```
    /// use fusebox::bucket::Quota;
    /// use fusebox_std::Registry;
    ///
    /// let registry = Registry::new();
    /// let api = registry.limiter("api", Quota::per_second(100)?)?;
    /// assert!(api.try_acquire(registry.now()).is_ok());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn limiter(&self, name: &str, quota: Quota) -> Result<Arc<TokenBucket>, RegistryError> {
        self.get_or_insert(
            Kind::Limiter,
            name,
            |e| &mut e.limiters,
            |entry| {
                (entry.quota == quota)
                    .then(|| Arc::clone(&entry.bucket))
                    .ok_or_else(|| conflict(Kind::Limiter, name))
            },
            || {
                let bucket = Arc::new(TokenBucket::new(quota));
                // An adapter built over it without a clock (a tower layer, a
                // policy's `new`) reads this clock.
                let _ = crate::core_clock::of(&bucket, self.tokio_clock);
                let entry = LimiterEntry {
                    bucket: Arc::clone(&bucket),
                    quota,
                };
                Ok((entry, bucket))
            },
        )
    }

    /// A [`Limiter`](crate::policy::Limiter) (async waits) on the token
    /// bucket `name`, created with `quota` if it does not exist (as
    /// [`limiter`](Self::limiter)), reading the registry's tokio clock; its
    /// refusals are published as [`Event::Rejected`](crate::events::Event::Rejected)
    /// with [`Component::Limiter`].
    ///
    /// # Errors
    ///
    /// As [`limiter`](Self::limiter).
    ///
    /// ```
    /// use fusebox::bucket::Quota;
    /// use fusebox_std::events::{Component, Event};
    /// use fusebox_std::Registry;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// let registry = Registry::new();
    /// let mut events = registry.events().subscribe();
    /// let api = registry.limiter_policy("api", Quota::per_second(1)?)?;
    /// api.until_ready().await?;
    /// let soon = tokio::time::Instant::now() + std::time::Duration::from_millis(10);
    /// assert!(api.until_n_ready_by(1, Some(soon)).await.is_err());
    /// assert!(matches!(events.try_recv(), Some(Event::Rejected { component: Component::Limiter, .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn limiter_policy(
        &self,
        name: &str,
        quota: Quota,
    ) -> Result<crate::policy::Limiter, RegistryError> {
        let bucket = self.limiter(name, quota)?;
        Ok(crate::policy::Limiter::with_clock(bucket, self.tokio_clock)
            .reporting_to(self.reporter(name, Component::Limiter)))
    }

    /// A [`KeyedLimiter`](crate::policy::KeyedLimiter) (async waits per
    /// key) on the keyed limiter `name`, created if it does not exist (as
    /// [`keyed_limiter`](Self::keyed_limiter)), reading the registry's
    /// tokio clock; its refusals are published as
    /// [`Event::Rejected`](crate::events::Event::Rejected) with
    /// [`Component::KeyedLimiter`] (without the key).
    ///
    /// # Errors
    ///
    /// As [`keyed_limiter`](Self::keyed_limiter).
    ///
    /// ```
    /// use fusebox::bucket::{FullPolicy, Quota};
    /// use fusebox_std::events::{Component, Event};
    /// use fusebox_std::Registry;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// let registry = Registry::new();
    /// let mut events = registry.events().subscribe();
    /// let per_user = registry.keyed_limiter_policy::<u64, 256>("per_user", Quota::per_second(1)?, FullPolicy::Reject)?;
    /// per_user.until_ready(&7).await?;
    /// let soon = tokio::time::Instant::now() + std::time::Duration::from_millis(10);
    /// assert!(per_user.until_n_ready_by(&7, 1, Some(soon)).await.is_err());
    /// assert!(matches!(events.try_recv(), Some(Event::Rejected { component: Component::KeyedLimiter, .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn keyed_limiter_policy<K, const N: usize>(
        &self,
        name: &str,
        quota: Quota,
        policy: FullPolicy,
    ) -> Result<crate::policy::KeyedLimiter<K, N, 1, RandomState>, RegistryError>
    where
        K: Eq + Hash + Clone + Send + Sync + 'static,
    {
        let limiter = self.keyed_limiter::<K, N>(name, quota, policy)?;
        Ok(
            crate::policy::KeyedLimiter::with_clock(limiter, self.tokio_clock)
                .reporting_to(self.reporter(name, Component::KeyedLimiter)),
        )
    }

    /// The token bucket `name`, if it exists.
    ///
    /// ```
    /// use fusebox_std::Registry;
    ///
    /// assert!(Registry::new().get_limiter("api").is_none());
    /// ```
    pub fn get_limiter(&self, name: &str) -> Option<Arc<TokenBucket>> {
        self.read()
            .limiters
            .get(name)
            .map(|e| Arc::clone(&e.bucket))
    }

    /// The keyed limiter `name` (keys `K`, `N` slots), created with
    /// `quota` and `policy` if it does not exist; built on the heap, keys
    /// hashed with a secret seed.
    ///
    /// # Errors
    ///
    /// [`RegistryError::InvalidName`], [`RegistryError::Conflict`] (other
    /// quota or policy than the limiter was created with, its quota
    /// changed since with `set_quota` or not, or than the registry's
    /// configuration declares for `name`, built or not yet),
    /// [`RegistryError::TypeMismatch`] (other `K` or `N`),
    /// [`RegistryError::Full`] (those the configuration declares count
    /// before their first use), or [`RegistryError::InvalidConfig`] if the
    /// quota is out of the keyed limiter's range.
    ///
    /// ```
    /// use fusebox::bucket::{FullPolicy, Quota};
    /// use fusebox_std::Registry;
    ///
    /// let registry = Registry::new();
    /// let per_client = registry.keyed_limiter::<String, 1024>("per_client", Quota::per_second(5)?, FullPolicy::Reject)?;
    /// per_client.try_acquire(&"10.0.0.7".to_owned(), registry.now())?;
    /// assert!(registry.keyed_limiter::<u64, 1024>("per_client", Quota::per_second(5)?, FullPolicy::Reject).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn keyed_limiter<K, const N: usize>(
        &self,
        name: &str,
        quota: Quota,
        policy: FullPolicy,
    ) -> Result<Arc<ServerKeyedLimiter<K, N>>, RegistryError>
    where
        K: Eq + Hash + Clone + Send + Sync + 'static,
    {
        // What the configuration declares for the name binds it before its
        // first use, as a built entry does (found by a hostile review: the
        // code asking first with another quota got it, the operator's
        // declared one ignored). Declarations are made only while the
        // registry is built: read once, outside the entries' write lock.
        let declared = self.read().keyed_specs.get(name).copied();
        // The places taken: those built and those declared and not yet
        // built (startup counted them), but for `name` itself.
        let taken = std::cell::Cell::new(0);
        self.get_or_insert(
            Kind::KeyedLimiter,
            name,
            |e| {
                let unbuilt = e
                    .keyed_specs
                    .keys()
                    .filter(|k| k.as_ref() != name && !e.keyed.contains_key(*k))
                    .count();
                taken.set(e.keyed.len() + unbuilt);
                &mut e.keyed
            },
            |entry| {
                if entry.quota != quota || entry.policy != policy {
                    return Err(conflict(Kind::KeyedLimiter, name));
                }
                Arc::clone(&entry.any)
                    .downcast()
                    .map_err(|_| type_mismatch(Kind::KeyedLimiter, name))
            },
            || {
                if declared.is_some_and(|d| d != (quota, policy)) {
                    return Err(conflict(Kind::KeyedLimiter, name));
                }
                // A declared one keeps its place until its first use
                // (found by a hostile review: the code's own keyed
                // limiters took it, and the declared one, accepted at
                // startup, failed as full at its first use).
                self.room(Kind::KeyedLimiter, taken.get())?;
                let limiter: Arc<ServerKeyedLimiter<K, N>> =
                    ServerKeyedLimiter::with_hasher_boxed([quota], policy, RandomState::new())
                        .map_err(|err| {
                            RegistryError::InvalidConfig(FieldError::new(
                                format!("keyed_limiters.{name}"),
                                err.to_string(),
                            ))
                        })?
                        .into();
                // An adapter built over it without a clock (a keyed tower layer,
                // a policy's `new`) reads this clock.
                let _ = crate::core_clock::of(&limiter, self.tokio_clock);
                let entry = KeyedEntry {
                    any: Arc::clone(&limiter) as Arc<dyn Any + Send + Sync>,
                    source: Arc::clone(&limiter) as Arc<dyn KeyedSource>,
                    quota,
                    policy,
                    allowed_seen: crate::high_water::HighWater::default(),
                };
                Ok((entry, limiter))
            },
        )
    }

    /// The keyed limiter `name` declared in the registry's configuration,
    /// built on first use with the key type and size the code chooses.
    ///
    /// # Errors
    ///
    /// [`RegistryError::NotFound`] if the configuration declares none of
    /// that name; else as [`keyed_limiter`](Self::keyed_limiter).
    ///
    /// ```
    /// use fusebox_std::registry::{Registry, RegistryConfig};
    ///
    /// let config = RegistryConfig::from_toml("[keyed_limiters.per_ip]\nrate = 10\nperiod = \"1s\"\n")?;
    /// let registry = Registry::from_config(&config)?;
    /// let per_ip = registry.configured_keyed_limiter::<[u8; 16], 4096>("per_ip")?;
    /// assert_eq!(per_ip.quota(0).map(|q| q.tokens()), Some(10));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn configured_keyed_limiter<K, const N: usize>(
        &self,
        name: &str,
    ) -> Result<Arc<ServerKeyedLimiter<K, N>>, RegistryError>
    where
        K: Eq + Hash + Clone + Send + Sync + 'static,
    {
        let spec = self.read().keyed_specs.get(name).copied();
        let (quota, policy) = spec.ok_or_else(|| not_found(Kind::KeyedLimiter, name))?;
        self.keyed_limiter(name, quota, policy)
    }
}
