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

mod breakers;
mod builder;
mod bulkheads;
mod caches;
mod conditions;
mod config;
mod error;
#[cfg(feature = "redis")]
pub(crate) mod fleet;
#[cfg(feature = "redis")]
pub(crate) mod fleet_breaker;
mod limiters;
mod monitor;
#[cfg(feature = "redis")]
pub(crate) mod redis;
mod spec;
mod strict_json;
mod trackers;

pub use builder::RegistryBuilder;
pub use bulkheads::BulkheadSpec;
pub use caches::{CacheSource, ServerCache};
pub use config::{RegistryConfig, ENV_PREFIX};
pub use error::{
    validate_name, FieldError, Kind, NameError, RegistryConfigError, RegistryError, MAX_NAME_LEN,
};
pub use limiters::ServerKeyedLimiter;
pub use spec::{BreakerSpec, KeyedLimiterSpec, QuotaSpec};

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use fusebox::breaker::Config;
use fusebox::bucket::{FullPolicy, Quota};
use fusebox::{CircuitBreaker, Clock, Instant, TokenBucket};

use crate::events::{Component, Events, RejectionReporter};
use crate::tracker::Tracker;
#[cfg(feature = "tower")]
pub(crate) use breakers::EventName;
use conditions::{Condition, Setter};
pub(crate) use error::shown;
use limiters::KeyedSource;

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
    /// The one clock of the registry and of the policies and layers it
    /// builds (`RegistryBuilder::clock`, or one started at `build`).
    tokio_clock: crate::TokioClock,
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
    source: Arc<dyn KeyedSource>,
    quota: Quota,
    policy: FullPolicy,
    /// The most `allowed` any report showed. The core's count never
    /// exceeds the admissions made, but a read racing with a batch moved
    /// from a slot to the global counter may miss the batch (see
    /// `KeyedLimiter::metrics`): the reports show the larger of the two,
    /// so `fusebox_keyed_limiter_allowed_total` never goes back.
    allowed_seen: crate::high_water::HighWater,
}

impl KeyedEntry {
    /// The limiter's counters, `allowed` never less than a report showed
    /// before.
    pub(crate) fn metrics(&self) -> fusebox::bucket::KeyedMetrics {
        let mut m = self.source.keyed_metrics();
        m.allowed = self.allowed_seen.at_least(m.allowed);
        m
    }
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
    /// Degraded conditions reported by name (a backend, a dependency) and
    /// setter, each with its redacted reason.
    pub(crate) conditions: BTreeMap<(Box<str>, Setter), Condition>,
    pub(crate) bulkheads: BTreeMap<Box<str>, bulkheads::BulkheadEntry>,
    /// The health monitor whose status the report carries.
    pub(crate) monitor: Option<crate::monitor::StatusReader>,
    /// Requests without a usable key, per keyed limiter name, counted by
    /// the layers built over the registry.
    #[cfg(feature = "tower")]
    pub(crate) bad_keys: BTreeMap<Box<str>, Arc<crate::tower::rate_limit::BadKeyCounter>>,
    /// Rate limiters shared through Redis, for the reports (weak: a
    /// limiter may hold its registry).
    #[cfg(feature = "redis")]
    pub(crate) redis_limiters: BTreeMap<Box<str>, std::sync::Weak<crate::backend::RedisLimiter>>,
    /// Fleet percentiles by tracker name (weak, as the limiters).
    #[cfg(feature = "redis")]
    pub(crate) fleet: BTreeMap<Box<str>, std::sync::Weak<crate::backend::FleetPercentiles>>,
    /// Breakers whose decision a fleet shares through Redis (held: a
    /// fleet breaker holds no registry).
    #[cfg(feature = "redis")]
    pub(crate) fleet_breakers: BTreeMap<Box<str>, crate::backend::FleetBreaker>,
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

    /// A reporter publishing `name`'s refusals on the registry's events,
    /// stamped with the clock its policies read.
    pub(crate) fn reporter(&self, name: &str, component: Component) -> RejectionReporter {
        RejectionReporter::new(name, component, &self.events, self.tokio_clock)
    }

    /// The tokio clock the policies the registry builds read
    /// ([`breaker_policy`](Self::breaker_policy),
    /// [`limiter_policy`](Self::limiter_policy), …): give it to the other
    /// adapters you build around the registry's primitives, so that every
    /// one of them reads the same time scale.
    ///
    /// ```
    /// use fusebox::Clock;
    /// use fusebox_std::Registry;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// let registry = Registry::new();
    /// assert_eq!(registry.tokio_clock().now(), registry.now());
    /// # });
    /// ```
    pub fn tokio_clock(&self) -> crate::TokioClock {
        self.tokio_clock
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
        self.tokio_clock.now()
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

    /// The one get-or-create: validates `name`, returns what `existing`
    /// makes of the entry already there (a match, a conflict, a type
    /// mismatch), or inserts the entry `create` builds if there is room.
    pub(super) fn get_or_insert<E, T>(
        &self,
        kind: Kind,
        name: &str,
        table: impl FnOnce(&mut Entries) -> &mut BTreeMap<Box<str>, E>,
        existing: impl FnOnce(&E) -> Result<T, RegistryError>,
        create: impl FnOnce() -> Result<(E, T), RegistryError>,
    ) -> Result<T, RegistryError> {
        check(kind, name)?;
        let mut entries = self.write();
        let map = table(&mut entries);
        if let Some(entry) = map.get(name) {
            return existing(entry);
        }
        self.room(kind, map.len())?;
        let (entry, made) = create()?;
        map.insert(name.into(), entry);
        Ok(made)
    }

    /// The counter of requests without a usable key of the keyed limiter
    /// `name`'s layers (one per name, made on first use).
    #[cfg(feature = "tower")]
    pub(crate) fn bad_key_counter(
        &self,
        name: &str,
    ) -> Arc<crate::tower::rate_limit::BadKeyCounter> {
        Arc::clone(self.write().bad_keys.entry(name.into()).or_default())
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
