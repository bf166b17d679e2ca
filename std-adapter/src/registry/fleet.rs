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
