//! A health monitor's status in the registry's report.

use super::Registry;

impl Registry {
    /// Carries `monitor`'s status (every check, its health and its recovery
    /// statistics) in the [`health`](Self::health) report from now on,
    /// replacing any monitor attached before: an unhealthy monitor makes
    /// the report not ready, a degraded one degraded.
    ///
    /// ```
    /// use fusebox_std::monitor::{CheckSpec, FnCheck, HealthMonitor};
    /// use fusebox_std::Registry;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap().block_on(async {
    /// let registry = Registry::new();
    /// let monitor = HealthMonitor::new()
    ///     .check(CheckSpec::new("cache", FnCheck::new(|| async { Ok(None) })))
    ///     .spawn();
    /// registry.attach_monitor(monitor.reader());
    /// tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    /// let health = registry.health();
    /// assert_eq!(health.monitor.unwrap().checks[0].name, "cache");
    /// # });
    /// ```
    pub fn attach_monitor(&self, monitor: crate::monitor::StatusReader) {
        self.write().monitor = Some(monitor);
    }
}
