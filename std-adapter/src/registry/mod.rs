//! [`Registry`]: named breakers, limiters, keyed limiters, caches and
//! trackers, created once and shared; the source of
//! [`health()`](Registry::health) and
//! [`to_prometheus()`](Registry::to_prometheus).
//!
//! Names are validated ([`validate_name`]) and unique per [`Kind`].
//! Getting a name again with the same configuration returns the same
//! instance; with another configuration it is an error
//! ([`RegistryError::Conflict`]), never a silent reuse. The number of
//! entries per kind is bounded ([`RegistryBuilder::max_entries`]).
//!
//! A whole registry can be declared in a TOML or JSON file and
//! environment variables ([`RegistryConfig`]) and is then validated at
//! startup, every invalid value reported with its path.
//!
//! # Examples
//!
//! ```
//! use fusebox::breaker::Config;
//! use fusebox::Duration;
//! use fusebox_std::registry::{Registry, RegistryError};
//!
//! let registry = Registry::new();
//! let config = Config::builder().failure_rate(50).window(20).open_for(Duration::from_secs(30)).build()?;
//! let payments = registry.breaker("payments", config)?;
//! assert!(std::sync::Arc::ptr_eq(&payments, &registry.breaker("payments", config)?));
//!
//! let other = Config::builder().consecutive_failures(3).build()?;
//! assert!(matches!(registry.breaker("payments", other), Err(RegistryError::Conflict { .. })));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod config;
mod error;
mod now;
mod sources;

pub use config::{BreakerSpec, KeyedLimiterSpec, QuotaSpec, RegistryConfig, ENV_PREFIX};
pub use error::{
    validate_name, FieldError, Kind, NameError, RegistryConfigError, RegistryError, MAX_NAME_LEN,
};
pub use sources::CacheSource;

use std::any::Any;
use std::collections::BTreeMap;
use std::hash::Hash;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use fusebox::breaker::{Config, State, Transition};
use fusebox::bucket::{FullPolicy, KeyedLimiter, Quota};
use fusebox::cache::ConcurrentCache;
use fusebox::hash::RandomState;
use fusebox::{CircuitBreaker, Clock, Instant, TokenBucket};

use crate::events::{Event, Events};
use crate::tracker::{Tracker, TrackerConfig};
use error::shown;
use sources::KeyedSource;

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

/// A concurrent cache as the registry builds it: keys hashed with a secret
/// per-instance seed, hits and misses counted.
///
/// ```
/// use std::sync::Arc;
/// use fusebox_std::registry::{Registry, ServerCache};
///
/// let registry = Registry::new();
/// let cache: Arc<ServerCache<u32, u32, 64, 4>> = registry.concurrent_cache("tokens")?;
/// assert!(cache.counts_lookups());
/// # Ok::<(), fusebox_std::RegistryError>(())
/// ```
pub type ServerCache<K, V, const SETS: usize, const WAYS: usize> =
    ConcurrentCache<K, V, SETS, WAYS, RandomState>;

/// Named resilience primitives; see the [module docs](self).
///
/// Share it with an `Arc`. Every method takes `&self`; lookups and
/// creation take a lock, so get the instances once (at startup, or when a
/// policy is built) and keep the returned `Arc`s.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use fusebox::bucket::Quota;
/// use fusebox_std::Registry;
///
/// let registry = Arc::new(Registry::new());
/// let api = registry.limiter("api", Quota::per_second(100)?)?;
/// let for_metrics = Arc::clone(&registry);
/// api.try_acquire(registry.now())?;
/// assert!(for_metrics.to_prometheus().contains("fusebox_limiter_available_tokens{name=\"api\"} 99\n"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Registry {
    clock: Box<dyn Clock + Send + Sync>,
    started: tokio::time::Instant,
    max_entries: usize,
    events: Events,
    entries: RwLock<Entries>,
}

pub(crate) struct BreakerEntry {
    pub(crate) breaker: Arc<CircuitBreaker>,
    config: Config,
    pub(crate) required: bool,
}

pub(crate) struct LimiterEntry {
    pub(crate) bucket: Arc<TokenBucket>,
    /// The quota it was created with (its current one may have been changed
    /// with `set_quota`).
    quota: Quota,
}

pub(crate) struct KeyedEntry {
    any: Arc<dyn Any + Send + Sync>,
    pub(crate) source: Arc<dyn KeyedSource>,
    quota: Quota,
    policy: FullPolicy,
}

pub(crate) struct CacheEntry {
    pub(crate) source: Arc<dyn CacheSource>,
    /// Set for caches the registry built, to hand them out again.
    any: Option<Arc<dyn Any + Send + Sync>>,
}

#[derive(Default)]
pub(crate) struct Entries {
    pub(crate) breakers: BTreeMap<Box<str>, BreakerEntry>,
    pub(crate) limiters: BTreeMap<Box<str>, LimiterEntry>,
    pub(crate) keyed: BTreeMap<Box<str>, KeyedEntry>,
    /// Keyed limiters declared in a configuration, built on first use
    /// (their key type and size come from the code).
    keyed_specs: BTreeMap<Box<str>, (Quota, FullPolicy)>,
    pub(crate) caches: BTreeMap<Box<str>, CacheEntry>,
    pub(crate) trackers: BTreeMap<Box<str>, Tracker>,
    // EXTENSION POINT (policies branch, bulkheads): add
    // `pub(crate) bulkheads: BTreeMap<Box<str>, BulkheadEntry>` with a
    // get-or-create `Registry::bulkhead(name, config)` like `limiter`
    // below, a `Kind::Bulkhead`, a `bulkheads` table in `RegistryConfig`,
    // and their rows in `health.rs` (`HealthReport::bulkheads`) and
    // `prometheus.rs` (`fusebox_bulkhead_*`).
}

/// Builds a [`Registry`].
///
/// # Examples
///
/// ```
/// use fusebox::{Instant, StdClock};
/// use fusebox_std::Registry;
///
/// let registry = Registry::builder().clock(StdClock).events_capacity(64).max_entries(16).build();
/// assert!(registry.now() >= Instant::ZERO);
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct RegistryBuilder {
    clock: Option<Box<dyn Clock + Send + Sync>>,
    events_capacity: usize,
    max_entries: usize,
}

impl RegistryBuilder {
    /// The clock breakers are read with ([`Registry::now`]); default:
    /// tokio's clock from the registry's creation (paused time drives it).
    /// Use the same clock as the policies that record into the breakers.
    ///
    /// ```
    /// use fusebox::{Clock, Instant};
    /// use fusebox_std::Registry;
    ///
    /// struct Fixed;
    /// impl Clock for Fixed {
    ///     fn now(&self) -> Instant { Instant::from_secs(7) }
    /// }
    /// assert_eq!(Registry::builder().clock(Fixed).build().now(), Instant::from_secs(7));
    /// ```
    pub fn clock(mut self, clock: impl Clock + Send + Sync + 'static) -> Self {
        self.clock = Some(Box::new(clock));
        self
    }

    /// Events kept for slow subscribers (default 1024; see
    /// [`Events::new`]).
    ///
    /// ```
    /// use fusebox_std::Registry;
    ///
    /// assert_eq!(Registry::builder().events_capacity(8).build().events().capacity(), 8);
    /// ```
    pub fn events_capacity(mut self, capacity: usize) -> Self {
        self.events_capacity = capacity;
        self
    }

    /// Entries allowed per kind (default 1024).
    ///
    /// ```
    /// use fusebox_std::{Registry, TrackerConfig};
    ///
    /// let registry = Registry::builder().max_entries(1).build();
    /// registry.tracker("a", TrackerConfig::default())?;
    /// assert!(registry.tracker("b", TrackerConfig::default()).is_err());
    /// # Ok::<(), fusebox_std::registry::RegistryError>(())
    /// ```
    pub fn max_entries(mut self, max: usize) -> Self {
        self.max_entries = max;
        self
    }

    /// The registry, empty.
    ///
    /// ```
    /// use fusebox_std::Registry;
    ///
    /// assert!(Registry::builder().build().health().breakers.is_empty());
    /// ```
    pub fn build(self) -> Registry {
        Registry {
            clock: self.clock.unwrap_or_else(|| Box::new(now::TokioNow::new())),
            started: tokio::time::Instant::now(),
            max_entries: self.max_entries,
            events: Events::new(self.events_capacity),
            entries: RwLock::new(Entries::default()),
        }
    }

    /// The registry, with everything `config` declares: breakers, limiters
    /// and trackers built, keyed limiters ready for
    /// [`Registry::configured_keyed_limiter`]. The configuration's
    /// `events_capacity`, when set, replaces the builder's.
    ///
    /// # Errors
    ///
    /// Every invalid setting, each named by its path.
    ///
    /// ```
    /// use fusebox_std::registry::{Registry, RegistryConfig};
    ///
    /// let config = RegistryConfig::from_toml("[limiters.api]\nrate = 10\n")?;
    /// let registry = Registry::builder().build_from_config(&config)?;
    /// assert!(registry.get_limiter("api").is_some());
    /// # Ok::<(), fusebox_std::registry::RegistryConfigError>(())
    /// ```
    pub fn build_from_config(
        mut self,
        config: &RegistryConfig,
    ) -> Result<Registry, RegistryConfigError> {
        let built = config.checked()?;
        if let Some(capacity) = config.events_capacity {
            self.events_capacity = capacity;
        }
        let registry = self.build();
        let mut errors = Vec::new();
        let mut report = |table: &str, name: &str, e: RegistryError| {
            errors.push(match e {
                RegistryError::InvalidConfig(f) => f,
                other => FieldError::new(format!("{table}.{name}"), other.to_string()),
            });
        };
        for (name, (breaker, required)) in &built.breakers {
            let made = registry.breaker(name, *breaker);
            if let Err(e) = made.and_then(|_| registry.set_required(name, *required)) {
                report("breakers", name, e);
            }
        }
        for (name, quota) in &built.limiters {
            if let Err(e) = registry.limiter(name, *quota) {
                report("limiters", name, e);
            }
        }
        for (name, tracker) in &config.trackers {
            if let Err(e) = registry.tracker(name, *tracker) {
                report("trackers", name, e);
            }
        }
        registry.write().keyed_specs.extend(
            built
                .keyed
                .into_iter()
                .map(|(name, spec)| (name.into_boxed_str(), spec)),
        );
        if errors.is_empty() {
            Ok(registry)
        } else {
            Err(RegistryConfigError::new(errors))
        }
    }
}

impl Default for Registry {
    /// [`Registry::new`].
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let e = self.read();
        f.debug_struct("Registry")
            .field("breakers", &e.breakers.len())
            .field("limiters", &e.limiters.len())
            .field("keyed_limiters", &e.keyed.len())
            .field("caches", &e.caches.len())
            .field("trackers", &e.trackers.len())
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// An empty registry with the defaults of [`Registry::builder`].
    ///
    /// ```
    /// use fusebox_std::Registry;
    ///
    /// let registry = Registry::new();
    /// assert!(registry.health().ready);
    /// ```
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder: clock, event capacity, entry limit, configuration.
    ///
    /// ```
    /// use fusebox_std::Registry;
    ///
    /// let registry = Registry::builder().max_entries(4).build();
    /// # drop(registry);
    /// ```
    pub fn builder() -> RegistryBuilder {
        RegistryBuilder {
            clock: None,
            events_capacity: 1024,
            max_entries: 1024,
        }
    }

    /// A registry with everything `config` declares; see
    /// [`RegistryBuilder::build_from_config`].
    ///
    /// # Errors
    ///
    /// Every invalid setting, each named by its path.
    ///
    /// ```
    /// use fusebox_std::registry::{Registry, RegistryConfig};
    ///
    /// let config = RegistryConfig::from_json(r#"{"breakers": {"db": {"consecutive_failures": 0}}}"#)?;
    /// let err = Registry::from_config(&config).unwrap_err();
    /// assert_eq!(err.to_string(), "breakers.db.consecutive_failures: must be 1..=255, got 0");
    /// # Ok::<(), fusebox_std::registry::RegistryConfigError>(())
    /// ```
    pub fn from_config(config: &RegistryConfig) -> Result<Self, RegistryConfigError> {
        Self::builder().build_from_config(config)
    }

    /// The registry's clock now: pass it to the breakers' calls, so that
    /// [`health`](Self::health) reads them on the same time scale.
    ///
    /// ```
    /// use fusebox_std::Registry;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let registry = Registry::new();
    /// let t0 = registry.now();
    /// tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    /// assert_eq!(registry.now() - t0, fusebox::Duration::from_millis(250));
    /// # }
    /// ```
    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    /// Time since the registry was created (tokio's clock).
    pub(crate) fn uptime(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// The event channel: publish from the policies, subscribe anywhere.
    ///
    /// ```
    /// use fusebox::Instant;
    /// use fusebox_std::events::{Component, Event};
    /// use fusebox_std::Registry;
    ///
    /// let registry = Registry::new();
    /// let mut sub = registry.events().subscribe();
    /// registry.events().publish(Event::Rejected { name: "api".into(), component: Component::Limiter, at: registry.now() });
    /// assert_eq!(sub.try_recv().map(|e| e.name().to_owned()), Some("api".to_owned()));
    /// ```
    pub fn events(&self) -> &Events {
        &self.events
    }

    /// Reports a breaker's state change: a `tracing` event with structured
    /// fields (`breaker`, `from`, `to`, `failures`, `at` in µs; `warn`
    /// when it opens, `info` otherwise), an [`Event::StateChange`], and an
    /// [`Event::Recovered`] when it closes again. Policies call this with
    /// every [`Transition`] the core returns.
    ///
    /// ```
    /// use fusebox::breaker::{Config, Outcome, State};
    /// use fusebox::Duration;
    /// use fusebox_std::events::Event;
    /// use fusebox_std::Registry;
    ///
    /// let registry = Registry::new();
    /// let breaker = registry.breaker("db", Config::builder().consecutive_failures(1).build()?)?;
    /// let mut sub = registry.events().subscribe();
    /// let now = registry.now();
    /// let permit = breaker.try_acquire(now)?;
    /// if let Some(t) = permit.record(Outcome::Failure, now, Duration::ZERO) {
    ///     registry.transition("db", t);
    /// }
    /// assert!(matches!(sub.try_recv(), Some(Event::StateChange { to: State::Open, .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn transition(&self, name: &str, t: Transition) {
        let failures = self.get_breaker(name).map_or(0, |b| b.metrics().failures);
        let at = t.at.as_micros();
        if matches!(t.to, State::Open | State::ForcedOpen) {
            tracing::warn!(breaker = name, from = ?t.from, to = ?t.to, failures, at, "breaker opened");
        } else {
            tracing::info!(breaker = name, from = ?t.from, to = ?t.to, failures, at, "breaker state changed");
        }
        let name: Arc<str> = name.into();
        self.events.publish(Event::StateChange {
            name: Arc::clone(&name),
            from: t.from,
            to: t.to,
            at: t.at,
        });
        if t.to == State::Closed && t.from != State::Closed {
            self.events.publish(Event::Recovered { name, at: t.at });
        }
    }

    /// The breaker `name`, created with `config` if it does not exist.
    ///
    /// # Errors
    ///
    /// [`RegistryError::InvalidName`], [`RegistryError::Conflict`] if it
    /// exists with another configuration, [`RegistryError::Full`].
    ///
    /// ```
    /// use fusebox::breaker::Config;
    /// use fusebox_std::Registry;
    ///
    /// let registry = Registry::new();
    /// let db = registry.breaker("db", Config::builder().consecutive_failures(5).build()?)?;
    /// assert_eq!(db.config().consecutive_failures(), Some(5));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn breaker(
        &self,
        name: &str,
        config: Config,
    ) -> Result<Arc<CircuitBreaker>, RegistryError> {
        check(Kind::Breaker, name)?;
        let mut e = self.write();
        if let Some(entry) = e.breakers.get(name) {
            return if entry.config == config {
                Ok(Arc::clone(&entry.breaker))
            } else {
                Err(conflict(Kind::Breaker, name))
            };
        }
        self.room(Kind::Breaker, e.breakers.len())?;
        let breaker = Arc::new(CircuitBreaker::new(config));
        e.breakers.insert(
            name.into(),
            BreakerEntry {
                breaker: Arc::clone(&breaker),
                config,
                required: false,
            },
        );
        Ok(breaker)
    }

    /// The breaker `name`, if it exists.
    ///
    /// ```
    /// use fusebox_std::Registry;
    ///
    /// assert!(Registry::new().get_breaker("db").is_none());
    /// ```
    pub fn get_breaker(&self, name: &str) -> Option<Arc<CircuitBreaker>> {
        self.read()
            .breakers
            .get(name)
            .map(|e| Arc::clone(&e.breaker))
    }

    /// Marks breaker `name` required (or not): while a required breaker is
    /// open, [`health`](Self::health) reports the service not ready.
    ///
    /// # Errors
    ///
    /// [`RegistryError::NotFound`] if there is no such breaker.
    ///
    /// ```
    /// use fusebox::breaker::Config;
    /// use fusebox_std::Registry;
    ///
    /// let registry = Registry::new();
    /// let db = registry.breaker("db", Config::builder().consecutive_failures(1).build()?)?;
    /// registry.set_required("db", true)?;
    /// db.force_open(registry.now());
    /// assert!(!registry.health().ready);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_required(&self, name: &str, required: bool) -> Result<(), RegistryError> {
        match self.write().breakers.get_mut(name) {
            Some(entry) => {
                entry.required = required;
                Ok(())
            }
            None => Err(not_found(Kind::Breaker, name)),
        }
    }

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
        check(Kind::Limiter, name)?;
        let mut e = self.write();
        if let Some(entry) = e.limiters.get(name) {
            return if entry.quota == quota {
                Ok(Arc::clone(&entry.bucket))
            } else {
                Err(conflict(Kind::Limiter, name))
            };
        }
        self.room(Kind::Limiter, e.limiters.len())?;
        let bucket = Arc::new(TokenBucket::new(quota));
        e.limiters.insert(
            name.into(),
            LimiterEntry {
                bucket: Arc::clone(&bucket),
                quota,
            },
        );
        Ok(bucket)
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
    /// quota or policy), [`RegistryError::TypeMismatch`] (other `K` or
    /// `N`), [`RegistryError::Full`], or [`RegistryError::InvalidConfig`]
    /// if the quota is out of the keyed limiter's range.
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
        check(Kind::KeyedLimiter, name)?;
        let mut e = self.write();
        if let Some(entry) = e.keyed.get(name) {
            if entry.quota != quota || entry.policy != policy {
                return Err(conflict(Kind::KeyedLimiter, name));
            }
            return Arc::clone(&entry.any)
                .downcast()
                .map_err(|_| type_mismatch(Kind::KeyedLimiter, name));
        }
        self.room(Kind::KeyedLimiter, e.keyed.len())?;
        let limiter: Arc<ServerKeyedLimiter<K, N>> =
            ServerKeyedLimiter::with_hasher_boxed([quota], policy, RandomState::new())
                .map_err(|err| {
                    RegistryError::InvalidConfig(FieldError::new(
                        format!("keyed_limiters.{name}"),
                        err.to_string(),
                    ))
                })?
                .into();
        e.keyed.insert(
            name.into(),
            KeyedEntry {
                any: Arc::clone(&limiter) as Arc<dyn Any + Send + Sync>,
                source: Arc::clone(&limiter) as Arc<dyn KeyedSource>,
                quota,
                policy,
            },
        );
        Ok(limiter)
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

    /// The concurrent cache `name` (`SETS` × `WAYS` entries), created if it
    /// does not exist: on the heap, keys hashed with a secret seed, hits
    /// and misses counted.
    ///
    /// # Errors
    ///
    /// [`RegistryError::InvalidName`], [`RegistryError::TypeMismatch`]
    /// (another type, or a cache registered with
    /// [`register_cache`](Self::register_cache)), [`RegistryError::Full`].
    ///
    /// ```
    /// use fusebox_std::Registry;
    ///
    /// let registry = Registry::new();
    /// let sessions = registry.concurrent_cache::<u64, u64, 256, 4>("sessions")?;
    /// sessions.insert(1, 42)?;
    /// assert_eq!(sessions.get(&1), Some(42));
    /// assert_eq!(registry.health().caches["sessions"].metrics.hits, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn concurrent_cache<K, V, const SETS: usize, const WAYS: usize>(
        &self,
        name: &str,
    ) -> Result<Arc<ServerCache<K, V, SETS, WAYS>>, RegistryError>
    where
        K: Copy + Eq + Hash + bytemuck::NoUninit + Send + Sync + 'static,
        V: Copy + bytemuck::NoUninit + Send + Sync + 'static,
        ServerCache<K, V, SETS, WAYS>: Send + Sync,
    {
        check(Kind::Cache, name)?;
        let mut e = self.write();
        if let Some(entry) = e.caches.get(name) {
            return entry
                .any
                .clone()
                .and_then(|any| any.downcast().ok())
                .ok_or_else(|| type_mismatch(Kind::Cache, name));
        }
        self.room(Kind::Cache, e.caches.len())?;
        let mut cache = ServerCache::<K, V, SETS, WAYS>::with_hasher_boxed(RandomState::new());
        cache.set_lookup_counters(true);
        let cache: Arc<ServerCache<K, V, SETS, WAYS>> = cache.into();
        e.caches.insert(
            name.into(),
            CacheEntry {
                source: Arc::clone(&cache) as Arc<dyn CacheSource>,
                any: Some(Arc::clone(&cache) as Arc<dyn Any + Send + Sync>),
            },
        );
        Ok(cache)
    }

    /// Registers a cache built elsewhere (an `LruCache` behind a `Mutex`, a
    /// `ConcurrentCache` of another hasher) under `name`, for the reports.
    /// Registering the same `Arc` again is a no-op.
    ///
    /// # Errors
    ///
    /// [`RegistryError::InvalidName`], [`RegistryError::Conflict`] if
    /// another cache has the name, [`RegistryError::Full`].
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use fusebox::cache::LruCache;
    /// use fusebox_std::Registry;
    ///
    /// let registry = Registry::new();
    /// let users = Arc::new(Mutex::new(LruCache::<u32, u32, 64>::new()));
    /// registry.register_cache("users", Arc::clone(&users))?;
    /// users.lock().unwrap().put(1, 1);
    /// assert_eq!(registry.health().caches["users"].metrics.inserts, 1);
    /// # Ok::<(), fusebox_std::registry::RegistryError>(())
    /// ```
    pub fn register_cache<C: CacheSource + 'static>(
        &self,
        name: &str,
        cache: Arc<C>,
    ) -> Result<(), RegistryError> {
        check(Kind::Cache, name)?;
        let mut e = self.write();
        if let Some(entry) = e.caches.get(name) {
            let same = std::ptr::addr_eq(Arc::as_ptr(&entry.source), Arc::as_ptr(&cache));
            return if same {
                Ok(())
            } else {
                Err(conflict(Kind::Cache, name))
            };
        }
        self.room(Kind::Cache, e.caches.len())?;
        e.caches.insert(
            name.into(),
            CacheEntry {
                source: cache,
                any: None,
            },
        );
        Ok(())
    }

    /// The tracker `name`, created with `config` if it does not exist.
    ///
    /// # Errors
    ///
    /// [`RegistryError::InvalidName`], [`RegistryError::Conflict`],
    /// [`RegistryError::Full`], or [`RegistryError::InvalidConfig`] naming
    /// the field (`trackers.<name>.<field>`).
    ///
    /// ```
    /// use fusebox_std::{Registry, TrackerConfig};
    ///
    /// let registry = Registry::new();
    /// let http = registry.tracker("http", TrackerConfig::default())?;
    /// drop(http.track_operation("GET /"));
    /// assert_eq!(registry.health().trackers["http"]["GET /"].calls, 1);
    /// # Ok::<(), fusebox_std::registry::RegistryError>(())
    /// ```
    pub fn tracker(&self, name: &str, config: TrackerConfig) -> Result<Tracker, RegistryError> {
        check(Kind::Tracker, name)?;
        let mut e = self.write();
        if let Some(tracker) = e.trackers.get(name) {
            return if *tracker.config() == config {
                Ok(tracker.clone())
            } else {
                Err(conflict(Kind::Tracker, name))
            };
        }
        self.room(Kind::Tracker, e.trackers.len())?;
        let tracker = Tracker::new(config).map_err(|err| {
            RegistryError::InvalidConfig(FieldError::new(
                format!("trackers.{name}.{}", err.field()),
                err.message(),
            ))
        })?;
        e.trackers.insert(name.into(), tracker.clone());
        Ok(tracker)
    }

    /// The tracker `name`, if it exists.
    ///
    /// ```
    /// use fusebox_std::Registry;
    ///
    /// assert!(Registry::new().get_tracker("http").is_none());
    /// ```
    pub fn get_tracker(&self, name: &str) -> Option<Tracker> {
        self.read().trackers.get(name).cloned()
    }

    pub(crate) fn read(&self) -> RwLockReadGuard<'_, Entries> {
        self.entries.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Entries> {
        self.entries.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn room(&self, kind: Kind, len: usize) -> Result<(), RegistryError> {
        if len < self.max_entries {
            Ok(())
        } else {
            Err(RegistryError::Full {
                kind,
                limit: self.max_entries,
            })
        }
    }
}

fn check(kind: Kind, name: &str) -> Result<(), RegistryError> {
    validate_name(name).map_err(|reason| RegistryError::InvalidName {
        kind,
        name: shown(name),
        reason,
    })
}

fn conflict(kind: Kind, name: &str) -> RegistryError {
    RegistryError::Conflict {
        kind,
        name: name.to_owned(),
    }
}

fn type_mismatch(kind: Kind, name: &str) -> RegistryError {
    RegistryError::TypeMismatch {
        kind,
        name: name.to_owned(),
    }
}

fn not_found(kind: Kind, name: &str) -> RegistryError {
    RegistryError::NotFound {
        kind,
        name: shown(name),
    }
}
