//! Fleet percentiles in the registry (feature `redis`): under `fleet` in
//! [`Registry::health`].

use std::sync::Arc;

use crate::backend::{FleetPercentiles, FleetReport};

use super::{Entries, Registry, RegistryError};

impl Registry {
    /// Reports `fleet` under `fleet.<its name>` in
    /// [`health`](Self::health) from now on, next to the tracker's local
    /// percentiles; while its last round with Redis failed the report is
    /// `degraded` with a reason. Held weakly: dropping every other `Arc`
    /// of it removes it. Registering it again, or another under the same
    /// name, replaces the previous one.
    ///
    /// # Errors
    ///
    /// [`RegistryError::InvalidName`] for a name that is not a valid
    /// registry name ([`validate_name`](super::validate_name)): it is shown
    /// in the report (and its reasons) as every other name;
    /// [`RegistryError::Full`] when the registry's entry limit is reached.
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use fusebox_std::backend::{FleetConfig, FleetPercentiles, RedisBackend, RedisConfig};
    /// use fusebox_std::{Registry, TrackerConfig};
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let registry = Registry::new();
    /// let http = registry.tracker("http", TrackerConfig::default())?;
    /// let backend = RedisBackend::connect(RedisConfig::new("redis://127.0.0.1:6379")).await?;
    /// let fleet = Arc::new(FleetPercentiles::new("http", http, &backend, FleetConfig::new("pod-a")?));
    /// registry.register_fleet_percentiles(&fleet)?;
    /// fleet.sync().await?;
    /// assert!(registry.health().fleet["http"].available);
    /// # Ok(()) }
    /// ```
    pub fn register_fleet_percentiles(
        &self,
        fleet: &Arc<FleetPercentiles>,
    ) -> Result<(), RegistryError> {
        super::check(super::Kind::Tracker, fleet.name())?;
        let mut entries = self.write();
        entries.fleet.retain(|_, f| f.strong_count() > 0);
        if !entries.fleet.contains_key(fleet.name()) {
            self.room(super::Kind::Tracker, entries.fleet.len())?;
        }
        entries
            .fleet
            .insert(fleet.name().into(), Arc::downgrade(fleet));
        Ok(())
    }
}

/// The live fleet reports, and a reason for each stale one.
pub(crate) fn fleet_reports(
    entries: &Entries,
    reasons: &mut Vec<String>,
) -> std::collections::BTreeMap<String, FleetReport> {
    let mut out = std::collections::BTreeMap::new();
    for (name, fleet) in &entries.fleet {
        let Some(fleet) = fleet.upgrade() else {
            continue;
        };
        let report = fleet.report();
        if report.stale {
            reasons.push(format!(
                "fleet percentiles {name} are stale (Redis unavailable)"
            ));
        }
        out.insert(name.to_string(), report);
    }
    out
}

/// The Redis parts of the health report: a reason per degraded Redis
/// limiter, then the fleet percentiles and the fleet breakers (with their
/// reasons).
pub(crate) fn redis_reports(
    entries: &Entries,
    reasons: &mut Vec<String>,
) -> (
    std::collections::BTreeMap<String, FleetReport>,
    std::collections::BTreeMap<String, super::fleet_breaker::FleetBreakerReport>,
) {
    super::redis::degraded_reasons(entries, reasons);
    let fleet = fleet_reports(entries, reasons);
    (fleet, super::fleet_breaker::reports(entries, reasons))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::backend::{FleetConfig, FleetPercentiles, RedisBackend, RedisConfig};
    use crate::{Registry, RegistryError, TrackerConfig};

    /// Every other name the report shows is validated; a fleet's was
    /// taken as it came, so a name holding a URL with its password
    /// (`"redis://app:pw@cache"`) reached `/health`'s `fleet` map and,
    /// when stale, its `reasons`, unredacted.
    #[tokio::test]
    async fn fleet_names_are_validated_like_every_other_name() {
        let registry = Registry::new();
        let tracker = registry.tracker("http", TrackerConfig::default()).unwrap();
        let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:1")).unwrap();
        let config = FleetConfig::new("pod-a").unwrap();
        let bad = Arc::new(FleetPercentiles::new(
            "redis://app:pw@cache",
            tracker.clone(),
            &backend,
            config.clone(),
        ));
        let err = registry.register_fleet_percentiles(&bad).unwrap_err();
        assert!(matches!(err, RegistryError::InvalidName { .. }), "{err}");
        assert!(!err.to_string().contains("pw"), "{err}");
        assert!(registry.health().fleet.is_empty());
        let good = Arc::new(FleetPercentiles::new("http", tracker, &backend, config));
        registry.register_fleet_percentiles(&good).unwrap();
        assert!(registry.health().fleet.contains_key("http"));
    }
}
