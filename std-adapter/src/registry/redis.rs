//! Rate limiters shared through Redis in the registry (feature `redis`):
//! their counters in [`Registry::to_prometheus`], their outages in
//! [`Registry::health`].

use std::sync::{Arc, Weak};

use crate::backend::{RedisLimiter, RedisLimiterMetrics};
use crate::events::Component;
use crate::policy::Limiter;

use super::{conflict, Entries, Kind, Registry, RegistryError};

impl Registry {
    /// Reports `limiter` (under its name) from now on: its decisions,
    /// admissions, faults and corrupt values as `fusebox_redis_limiter_*`
    /// families in [`to_prometheus`](Self::to_prometheus), and, while it is
    /// degraded (Redis out), a reason in [`health`](Self::health), which is
    /// then `degraded` (a limiter built with
    /// [`registry`](crate::backend::RedisLimiterBuilder::registry) of this
    /// registry reports its condition `redis_<name>` with the fault; no
    /// second reason is added for it).
    ///
    /// The registry holds the limiter weakly (the limiter may hold the
    /// registry, for its condition): once every other `Arc` of it is
    /// dropped it leaves the reports, and its name is free again.
    /// Registering the same limiter again does nothing.
    ///
    /// # Errors
    ///
    /// [`RegistryError::Conflict`] if another live limiter has the name;
    /// [`RegistryError::Full`].
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use fusebox::bucket::Quota;
    /// use fusebox_std::backend::{RedisBackend, RedisConfig, RedisLimiter, Rules};
    /// use fusebox_std::Registry;
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let registry = Arc::new(Registry::new());
    /// let backend = RedisBackend::connect(RedisConfig::new("redis://127.0.0.1:6379")).await?;
    /// let rules = Rules::single("per_second", Quota::per_second(100)?)?;
    /// let api = Arc::new(
    ///     RedisLimiter::builder("api", rules, backend).registry(Arc::clone(&registry)).build()?,
    /// );
    /// registry.register_redis_limiter(&api)?;
    /// api.try_acquire("user-7").await?;
    /// let text = registry.to_prometheus();
    /// assert!(text.contains("fusebox_redis_limiter_admitted_total{name=\"api\"} 1\n"));
    /// # Ok(()) }
    /// ```
    pub fn register_redis_limiter(&self, limiter: &Arc<RedisLimiter>) -> Result<(), RegistryError> {
        let name = limiter.name();
        self.get_or_insert(
            Kind::RedisLimiter,
            name,
            |e| {
                // A limiter dropped elsewhere frees its name.
                e.redis_limiters.retain(|_, l| l.strong_count() > 0);
                &mut e.redis_limiters
            },
            |held| {
                if std::ptr::eq(held.as_ptr(), Arc::as_ptr(limiter)) {
                    Ok(())
                } else {
                    Err(conflict(Kind::RedisLimiter, name))
                }
            },
            || Ok((Arc::downgrade(limiter), ())),
        )
    }

    /// A [`Limiter`] (async waits) on the shared limit `limiter`,
    /// registered as [`register_redis_limiter`](Self::register_redis_limiter)
    /// does; its refusals are published as
    /// [`Event::Rejected`](crate::events::Event::Rejected) with
    /// [`Component::Limiter`] and stamped with the registry's clock. The
    /// shared twin of [`limiter_policy`](Self::limiter_policy).
    ///
    /// # Errors
    ///
    /// As [`register_redis_limiter`](Self::register_redis_limiter).
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use fusebox::bucket::Quota;
    /// use fusebox_std::backend::{Degrade, RedisBackend, RedisConfig, RedisLimiter, Rules};
    /// use fusebox_std::policy::Policy;
    /// use fusebox_std::Registry;
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let registry = Arc::new(Registry::new());
    /// let backend = RedisBackend::connect(RedisConfig::new("redis://127.0.0.1:6379")).await?;
    /// let rules = Rules::single("per_second", Quota::per_second(50)?)?;
    /// let shared = RedisLimiter::builder("search", rules, backend)
    ///     .degrade(Degrade::Local { instances: 4 })
    ///     .registry(Arc::clone(&registry))
    ///     .build()?;
    /// let limiter = registry.redis_limiter_policy(Arc::new(shared))?;
    /// let policy = Policy::builder().limiter(Arc::new(limiter)).build();
    /// policy.call(|| async { Ok::<_, std::io::Error>(()) }).await?;
    /// # Ok(()) }
    /// ```
    pub fn redis_limiter_policy(
        &self,
        limiter: Arc<RedisLimiter>,
    ) -> Result<Limiter, RegistryError> {
        self.register_redis_limiter(&limiter)?;
        let reporter = self.reporter(limiter.name(), Component::Limiter);
        Ok(Limiter::shared_with_clock(limiter, self.tokio_clock).reporting_to(reporter))
    }

    /// The registered Redis limiter `name`, if it is still alive.
    ///
    /// ```
    /// use fusebox_std::Registry;
    ///
    /// assert!(Registry::new().get_redis_limiter("api").is_none());
    /// ```
    pub fn get_redis_limiter(&self, name: &str) -> Option<Arc<RedisLimiter>> {
        self.read().redis_limiters.get(name).and_then(Weak::upgrade)
    }

    /// The registered Redis limiters' families, for `to_prometheus`.
    pub(crate) fn write_redis_limiters(&self, out: &mut String) {
        let live = live(&self.read());
        let rows: Vec<(&str, RedisLimiterMetrics, bool)> = live
            .iter()
            .map(|l| (l.name(), l.metrics(), l.is_degraded()))
            .collect();
        RedisLimiterMetrics::write_prometheus(out, &rows);
    }
}

/// The live registered limiters, in name order.
fn live(entries: &Entries) -> Vec<Arc<RedisLimiter>> {
    entries
        .redis_limiters
        .values()
        .filter_map(Weak::upgrade)
        .collect()
}

/// A reason per degraded registered limiter whose condition is not set
/// already (by the limiter itself, with its fault).
pub(crate) fn degraded_reasons(entries: &Entries, reasons: &mut Vec<String>) {
    for limiter in live(entries) {
        let reported = entries
            .conditions
            .get(&(limiter.condition().into(), super::Setter::Component))
            .is_some_and(super::Condition::is_live);
        if limiter.is_degraded() && !reported {
            reasons.push(format!(
                "{}: redis limiter {} is degraded",
                limiter.condition(),
                limiter.name()
            ));
        }
    }
}
