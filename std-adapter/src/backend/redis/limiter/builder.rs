//! [`RedisLimiterBuilder`]: a [`RedisLimiter`]'s name, rules, backend and
//! the policy it decides by while Redis is out.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::{RedisLimiter, Shared};
use crate::backend::redis::degrade::{Backoff, Outage};
use crate::backend::redis::metrics::Counters;
use crate::backend::redis::probe::ProbeTask;
use crate::backend::redis::{Degrade, RedisBackend};
use crate::backend::{BackendError, MemoryBackend, Rules};
use crate::Registry;

/// Builds a [`RedisLimiter`]; see [`RedisLimiter::builder`].
///
/// # Examples
///
/// Every option, on a backend that connects on first use (nothing here
/// talks to Redis). The builder's [`registry`](Self::registry) reports the
/// limiter's outages; [`Registry::register_redis_limiter`] adds its
/// counters to the Prometheus text.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use fusebox::bucket::Quota;
/// use fusebox_std::backend::{Degrade, RedisBackend, RedisConfig, RedisLimiter, Rules};
/// use fusebox_std::Registry;
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let registry = Arc::new(Registry::new());
/// let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:6379"))?;
/// let rules = Rules::single("per_second", Quota::per_second(100)?)?;
/// let limiter = Arc::new(
///     RedisLimiter::builder("api", rules, backend)
///         .degrade(Degrade::Local { instances: 4 }) // Redis out: a quarter of the quota here
///         .probe_backoff(Duration::from_millis(100), Duration::from_secs(5))
///         .local_keys(1_000)
///         .registry(Arc::clone(&registry)) // outages in `health()`
///         .build()?,
/// );
/// registry.register_redis_limiter(&limiter)?; // counters in `to_prometheus()`
/// assert_eq!(limiter.name(), "api");
/// assert!(registry.to_prometheus().contains("fusebox_redis_limiter_admitted_total{name=\"api\"} 0\n"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[must_use]
pub struct RedisLimiterBuilder {
    name: String,
    rules: Rules,
    backend: RedisBackend,
    policy: Degrade,
    backoff: Backoff,
    local_keys: usize,
    background_probe: bool,
    registry: Option<Arc<Registry>>,
}

impl std::fmt::Debug for RedisLimiterBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not yet checked (that is `build`'s): the name may be anything,
        // a URL with a password included, so it is redacted as
        // `BreakerBuilder`'s is.
        f.debug_struct("RedisLimiterBuilder")
            .field("name", &crate::redact::redact(&self.name))
            .field("rules", &self.rules)
            .field("backend", &self.backend)
            .field("policy", &self.policy)
            .field("backoff", &self.backoff)
            .field("local_keys", &self.local_keys)
            .field("background_probe", &self.background_probe)
            .field("registry", &self.registry.is_some())
            .finish()
    }
}

impl RedisLimiterBuilder {
    /// The policy while Redis is out (default [`Degrade::FailClosed`]).
    ///
    /// ```
    /// use fusebox::bucket::Quota;
    /// use fusebox_std::backend::{Degrade, RedisBackend, RedisConfig, RedisLimiter, Rules, Source};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// // Nothing listens on port 1: the first request degrades the limiter.
    /// let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:1"))?;
    /// let rules = Rules::single("per_second", Quota::per_second(5)?)?;
    /// let limiter = RedisLimiter::builder("api", rules, backend).degrade(Degrade::FailOpen).build()?;
    /// let decision = limiter.try_acquire("user-1").await?;
    /// assert_eq!((decision.allowed, decision.source), (true, Source::FailOpen));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn degrade(mut self, policy: Degrade) -> Self {
        self.policy = policy;
        self
    }

    /// How often a degraded limiter tries Redis again: from `min`,
    /// doubling, up to `max` (default 50 ms to 1 s), by a request or by
    /// its background probe, whichever comes first. Any durations are
    /// accepted: the doubling saturates, and a probe interval longer than
    /// ~30 years (`Duration::MAX`) is clamped to that: no probe for ~30
    /// years (`FailClosed` names that as its wait), never a panic. A
    /// zero interval lets every request probe; the background probe
    /// still waits 10 ms between two of its own.
    ///
    /// ```
    /// use std::time::Duration;
    /// use fusebox::bucket::Quota;
    /// use fusebox_std::backend::{RedisBackend, RedisConfig, RedisLimiter, Rules};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// // Nothing listens on port 1: the first request degrades the limiter.
    /// let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:1"))?;
    /// let rules = Rules::single("per_second", Quota::per_second(5)?)?;
    /// let limiter = RedisLimiter::builder("api", rules, backend)
    ///     .probe_backoff(Duration::from_secs(1), Duration::from_secs(30))
    ///     .build()?;
    /// // FailClosed (the default) refuses, naming the time until the next probe.
    /// let decision = limiter.try_acquire("user-1").await?;
    /// assert!(!decision.allowed);
    /// assert!(decision.retry_after > Duration::from_millis(500));
    /// assert!(decision.retry_after <= Duration::from_secs(1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn probe_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff = Backoff {
            min,
            max: max.max(min),
        };
        self
    }

    /// Whether a degraded limiter probes Redis in the background too
    /// (default `true`): with `false`, only a request that finds a probe
    /// due asks Redis, so a limiter nobody calls stays degraded until one
    /// comes.
    ///
    /// The background probe sleeps on Tokio's clock. Under a paused clock
    /// (`#[tokio::test(start_paused = true)]`) that clock jumps to the
    /// next probe whenever the runtime is idle, waiting on real I/O
    /// included: a test that pauses time while Redis is down sees a probe
    /// per backoff interval of *virtual* time, thousands a second of real
    /// time. Such a test turns the background probe off here, or keeps
    /// Redis out of paused time.
    ///
    /// ```
    /// use fusebox::bucket::Quota;
    /// use fusebox_std::backend::{Degrade, RedisBackend, RedisConfig, RedisLimiter, Rules};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// // Nothing listens on port 1: the first request degrades the limiter.
    /// let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:1"))?;
    /// let rules = Rules::single("per_second", Quota::per_second(5)?)?;
    /// let limiter = RedisLimiter::builder("api", rules, backend)
    ///     .degrade(Degrade::FailOpen)
    ///     .background_probe(false) // only requests probe Redis
    ///     .build()?;
    /// assert!(limiter.try_acquire("user-1").await?.allowed);
    /// assert!(limiter.is_degraded());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn background_probe(mut self, enabled: bool) -> Self {
        self.background_probe = enabled;
        self
    }

    /// The most keys the `Local` policy keeps in process (default 10 000).
    ///
    /// ```
    /// use fusebox::bucket::Quota;
    /// use fusebox_std::backend::{BackendError, Degrade, RedisBackend, RedisConfig, RedisLimiter, Rules};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// // Nothing listens on port 1: the first request degrades the limiter.
    /// let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:1"))?;
    /// let rules = Rules::single("per_second", Quota::per_second(5)?)?;
    /// let limiter = RedisLimiter::builder("api", rules, backend)
    ///     .degrade(Degrade::Local { instances: 1 })
    ///     .local_keys(1)
    ///     .build()?;
    /// assert!(limiter.try_acquire("user-1").await?.allowed);
    /// // One key kept in process at most, and user-1's is not idle yet.
    /// assert_eq!(limiter.try_acquire("user-2").await, Err(BackendError::TableFull));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn local_keys(mut self, keys: usize) -> Self {
        self.local_keys = keys;
        self
    }

    /// Reports outages in `registry`'s health as the condition
    /// `redis_<name>`. Only that: the limiter's counters reach the
    /// registry's Prometheus text once it is registered there
    /// ([`Registry::register_redis_limiter`]).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fusebox::bucket::Quota;
    /// use fusebox_std::backend::{RedisBackend, RedisConfig, RedisLimiter, Rules};
    /// use fusebox_std::Registry;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// // Nothing listens on port 1: the first request degrades the limiter.
    /// let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:1"))?;
    /// let rules = Rules::single("per_second", Quota::per_second(5)?)?;
    /// let registry = Arc::new(Registry::new());
    /// let limiter = RedisLimiter::builder("api", rules, backend)
    ///     .registry(Arc::clone(&registry))
    ///     .build()?;
    /// assert!(!registry.health().degraded);
    /// let _ = limiter.try_acquire("user-1").await?;
    /// let health = registry.health();
    /// assert!(health.ready && health.degraded);
    /// assert!(health.reasons[0].starts_with("redis_api: "));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn registry(mut self, registry: Arc<Registry>) -> Self {
        self.registry = Some(registry);
        self
    }

    /// The limiter.
    ///
    /// # Errors
    ///
    /// [`BackendError::InvalidKey`] for a name that is not a registry name,
    /// or is [reserved](crate::backend::RESERVED_LIMITER_NAMES);
    /// [`BackendError::InvalidRule`] if the `Local` policy cannot divide a
    /// quota, [`BackendError::InvalidConfig`] for `Local { instances: 0 }`.
    ///
    /// ```
    /// use fusebox::bucket::Quota;
    /// use fusebox_std::backend::{BackendError, Degrade, RedisBackend, RedisConfig, RedisLimiter, Rules};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let config = RedisConfig::new("redis://127.0.0.1:6379");
    /// let rules = Rules::single("per_second", Quota::per_second(5)?)?;
    /// let build = |name: &str, policy| {
    ///     let backend = RedisBackend::connect_lazy(config.clone())?;
    ///     RedisLimiter::builder(name, rules.clone(), backend).degrade(policy).build()
    /// };
    /// assert_eq!(build("api", Degrade::FailClosed)?.name(), "api");
    /// assert!(matches!(build("api:v2", Degrade::FailClosed), Err(BackendError::InvalidKey(_))));
    /// assert!(matches!(build("breaker", Degrade::FailClosed), Err(BackendError::InvalidKey(_))));
    /// let none = build("api", Degrade::Local { instances: 0 });
    /// assert!(matches!(none, Err(BackendError::InvalidConfig(_))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn build(self) -> Result<RedisLimiter, BackendError> {
        crate::backend::key::check_limiter_name(&self.name)?;
        if self.policy == (Degrade::Local { instances: 0 }) {
            // Read as one, it would hand one instance the whole fleet's
            // quota (found by a hostile review).
            return Err(BackendError::InvalidConfig(
                "Degrade::Local needs at least one instance",
            ));
        }
        let local = match self.policy {
            Degrade::Local { instances } => Some((
                MemoryBackend::new(self.local_keys),
                self.rules.divided(instances)?,
            )),
            _ => None,
        };
        // The name as it is: `api` and `api_` are two limiters, with two
        // conditions (found by a hostile review: both were `redis_api`).
        let condition = format!("redis_{}", self.name);
        let alive = Arc::new(());
        let shared = Arc::new(Shared {
            condition,
            owner: Arc::downgrade(&alive),
            name: self.name.into(),
            rules: self.rules,
            backend: self.backend,
            policy: self.policy,
            local,
            outage: Mutex::new(Outage::new(Instant::now())),
            degraded: AtomicBool::new(false),
            backoff: self.backoff,
            registry: self.registry,
            counters: Counters::default(),
            corrupt_logged: AtomicBool::new(false),
            probe: if self.background_probe {
                ProbeTask::default()
            } else {
                ProbeTask::closed()
            },
        });
        Ok(RedisLimiter {
            shared,
            _alive: alive,
        })
    }
}

impl RedisLimiter {
    /// A builder for the limiter `name` (a registry name, part of every
    /// storage key) checking `rules` on `backend`.
    ///
    /// ```
    /// use fusebox::bucket::Quota;
    /// use fusebox_std::backend::{RedisBackend, RedisConfig, RedisLimiter, Rules};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:6379"))?;
    /// let rules = Rules::single("per_second", Quota::per_second(5)?)?;
    /// let limiter = RedisLimiter::builder("api", rules.clone(), backend).build()?;
    /// assert_eq!((limiter.name(), limiter.rules()), ("api", &rules));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn builder(name: &str, rules: Rules, backend: RedisBackend) -> RedisLimiterBuilder {
        RedisLimiterBuilder {
            name: name.into(),
            rules,
            backend,
            policy: Degrade::FailClosed,
            backoff: Backoff {
                min: Duration::from_millis(50),
                max: Duration::from_secs(1),
            },
            local_keys: 10_000,
            background_probe: true,
            registry: None,
        }
    }
}
