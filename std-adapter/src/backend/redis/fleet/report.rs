//! [`FleetConfig`] and the report types of
//! [`FleetPercentiles`](super::FleetPercentiles).

use std::collections::BTreeMap;
use std::time::Duration;

use super::super::super::{escape, BackendError};

/// The longest instance id, in bytes.
///
/// ```
/// use fusebox_std::backend::{FleetConfig, MAX_INSTANCE_LEN};
///
/// assert!(FleetConfig::new(&"a".repeat(MAX_INSTANCE_LEN)).is_ok());
/// assert!(FleetConfig::new(&"a".repeat(MAX_INSTANCE_LEN + 1)).is_err());
/// ```
pub const MAX_INSTANCE_LEN: usize = 64;

/// How an instance publishes: its id (the hash field), how often, and how
/// long its histograms count after its last push.
///
/// ```
/// use std::time::Duration;
/// use fusebox_std::backend::FleetConfig;
///
/// let config = FleetConfig::new("pod-a")?.interval(Duration::from_secs(5));
/// assert_eq!(config.ttl_of(), Duration::from_secs(15)); // 3 intervals
/// assert!(FleetConfig::new("").is_err());
/// # Ok::<(), fusebox_std::backend::BackendError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetConfig {
    pub(super) instance: String,
    pub(super) interval: Duration,
    pub(super) ttl: Duration,
    ttl_set: bool,
}

impl FleetConfig {
    /// Publishes as `instance` (1 to [`MAX_INSTANCE_LEN`] bytes, stored
    /// [escaped](crate::backend::escape)) every 10 s, counted for 3
    /// intervals after the last push.
    ///
    /// # Errors
    ///
    /// [`BackendError::InvalidKey`] for an empty or too long id.
    ///
    /// ```
    /// use std::time::Duration;
    /// use fusebox_std::backend::{BackendError, FleetConfig};
    ///
    /// let config = FleetConfig::new("pod-a")?;
    /// assert_eq!(config.ttl_of(), Duration::from_secs(30)); // 3 intervals of 10 s
    /// assert!(matches!(FleetConfig::new(""), Err(BackendError::InvalidKey(_))));
    /// # Ok::<(), fusebox_std::backend::BackendError>(())
    /// ```
    pub fn new(instance: &str) -> Result<Self, BackendError> {
        if instance.is_empty() || instance.len() > MAX_INSTANCE_LEN {
            return Err(BackendError::InvalidKey("an instance id is 1 to 64 bytes"));
        }
        Ok(Self {
            instance: escape(instance)?,
            interval: Duration::from_secs(10),
            ttl: Duration::from_secs(30),
            ttl_set: false,
        })
    }

    /// Pushes every `interval` (at least 1 ms; one over ~30 years, such as
    /// `Duration::MAX`, pushes once, then every ~30 years); the expiry
    /// follows (3 intervals, saturating) unless set with [`ttl`](Self::ttl).
    ///
    /// ```
    /// use std::time::Duration;
    /// use fusebox_std::backend::FleetConfig;
    ///
    /// let config = FleetConfig::new("pod-a")?.interval(Duration::from_secs(2));
    /// assert_eq!(config.ttl_of(), Duration::from_secs(6));
    /// let kept = FleetConfig::new("pod-a")?.ttl(Duration::from_secs(60)).interval(Duration::from_secs(2));
    /// assert_eq!(kept.ttl_of(), Duration::from_secs(60));
    /// # Ok::<(), fusebox_std::backend::BackendError>(())
    /// ```
    #[must_use]
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(1));
        if !self.ttl_set {
            self.ttl = self.interval.saturating_mul(3);
        }
        self
    }

    /// An instance's histograms count until `ttl` (at least 1 ms) after
    /// its last push. Redis is asked to keep them at most 100 years (a
    /// longer `ttl`, up to `Duration::MAX`, is clamped to that: Redis
    /// refuses an expiry past its clock's range).
    ///
    /// ```
    /// use std::time::Duration;
    /// use fusebox_std::backend::FleetConfig;
    ///
    /// let config = FleetConfig::new("pod-a")?.ttl(Duration::from_secs(120));
    /// assert_eq!(config.ttl_of(), Duration::from_secs(120));
    /// assert_eq!(FleetConfig::new("pod-a")?.ttl(Duration::ZERO).ttl_of(), Duration::from_millis(1));
    /// # Ok::<(), fusebox_std::backend::BackendError>(())
    /// ```
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl.max(Duration::from_millis(1));
        self.ttl_set = true;
        self
    }

    /// The expiry.
    ///
    /// ```
    /// use std::time::Duration;
    /// use fusebox_std::backend::FleetConfig;
    ///
    /// assert_eq!(FleetConfig::new("pod-a")?.ttl_of(), Duration::from_secs(30));
    /// # Ok::<(), fusebox_std::backend::BackendError>(())
    /// ```
    pub fn ttl_of(&self) -> Duration {
        self.ttl
    }
}

/// Fleet figures of one tracker, under `fleet.<tracker>` in
/// [`Registry::health`](crate::Registry::health).
///
/// ```
/// use fusebox_std::backend::FleetReport;
///
/// let json = serde_json::to_value(FleetReport::default())?;
/// assert_eq!(json, serde_json::json!({
///     "available": false, "stale": false, "corrupt": 0, "faults": 0, "series": {}
/// }));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct FleetReport {
    /// The last round with Redis succeeded.
    pub available: bool,
    /// The last round failed: `series` are from an earlier round (or empty).
    pub stale: bool,
    /// The last round's fault (redacted), while `stale`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Values skipped as corrupt since start.
    pub corrupt: u64,
    /// Rounds that failed since start.
    pub faults: u64,
    /// Per series path (as in `trackers.<tracker>`).
    pub series: BTreeMap<String, FleetSeries>,
}

/// One series merged over the fleet; latencies in microseconds, `None`
/// when no instance has samples.
///
/// ```
/// use fusebox_std::backend::FleetSeries;
///
/// let json = serde_json::to_value(FleetSeries::default())?;
/// assert_eq!(json, serde_json::json!({
///     "instances": 0, "newer": 0, "count": 0, "p50": null, "p95": null, "p99": null
/// }));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct FleetSeries {
    /// Instances merged (fresh and valid).
    pub instances: usize,
    /// Fresh values of a newer format (instances already upgraded, in a
    /// rolling upgrade): not merged, not deleted, not corrupt.
    pub newer: usize,
    /// Samples merged.
    pub count: u64,
    /// Fleet median.
    pub p50: Option<u64>,
    /// Fleet 95th percentile.
    pub p95: Option<u64>,
    /// Fleet 99th percentile.
    pub p99: Option<u64>,
}
