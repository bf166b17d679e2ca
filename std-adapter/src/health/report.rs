//! The types of [`HealthReport`]: what [`Registry::health`] returns, one
//! serialisable struct per thing the registry holds.

use std::collections::BTreeMap;

use fusebox::breaker::{Metrics, State};
use fusebox::bucket::KeyedMetrics;
use fusebox::cache::CacheMetrics;
use fusebox::Duration;

use crate::tracker::OperationStats;
#[cfg(doc)]
use crate::Registry;

#[cfg(feature = "redis")]
pub use crate::registry::fleet_breaker::FleetBreakerReport;

/// The report of [`Registry::health`]; see the [module docs](super) for its
/// JSON shape.
///
/// # Examples
///
/// ```
/// use fusebox_std::Registry;
///
/// let report = Registry::new().health();
/// assert!(report.ready && !report.degraded && report.reasons.is_empty());
/// let json = serde_json::to_value(&report)?;
/// assert_eq!(json["ready"], true);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct HealthReport {
    /// `false` while a breaker marked required is open (or forced open),
    /// or the attached monitor ([`Registry::attach_monitor`]) is
    /// unhealthy: the answer for a readiness probe.
    pub ready: bool,
    /// `true` while any breaker is not closed, a condition is set
    /// ([`Registry::set_degraded`], or a Redis limiter built with this
    /// registry while Redis is out), the attached monitor is degraded or
    /// unhealthy, or (feature `redis`) a registered Redis limiter is
    /// degraded, fleet percentiles are stale, or a fleet breaker is not
    /// closed here or cut off from Redis.
    pub degraded: bool,
    /// Why the report is not ready or degraded, one line per cause.
    pub reasons: Vec<String>,
    /// Process figures.
    pub process: ProcessReport,
    /// Breakers by name.
    pub breakers: BTreeMap<String, BreakerReport>,
    /// Token buckets by name.
    pub limiters: BTreeMap<String, LimiterReport>,
    /// Keyed limiters by name.
    pub keyed_limiters: BTreeMap<String, KeyedMetrics>,
    /// Requests the keyed rate-limit layers built over the registry
    /// ([`RateLimitLayer::keyed_from_registry`](crate::tower::RateLimitLayer::keyed_from_registry))
    /// found no usable key in, by the limiter's name and reason (feature
    /// `tower`): refused or charged to the default key, see
    /// [`BadKeys`](crate::tower::rate_limit::BadKeys). Absent from the
    /// JSON while no such layer was built.
    #[cfg(feature = "tower")]
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub bad_keys: BTreeMap<String, crate::tower::rate_limit::BadKeys>,
    /// Caches by name.
    pub caches: BTreeMap<String, CacheReport>,
    /// Per tracker, per operation or stage path (redacted).
    pub trackers: BTreeMap<String, BTreeMap<String, OperationStats>>,
    /// The event channel.
    pub events: EventsReport,
    /// Bulkheads by name.
    pub bulkheads: BTreeMap<String, BulkheadReport>,
    /// The attached health monitor's status
    /// ([`Registry::attach_monitor`]), if any: every check with its
    /// recovery statistics. An unhealthy monitor makes the report not
    /// ready; a degraded one, degraded; either adds its line to
    /// [`reasons`](Self::reasons), naming its failing checks and why
    /// (`monitor is unhealthy: check "db" (tcp://db:5432) unhealthy: 3
    /// failures in a row, last: connect: connection refused`, see
    /// [`Status::reason`](crate::monitor::Status::reason)).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monitor: Option<crate::monitor::Status>,
    /// Fleet-wide percentiles per tracker name, merged from every
    /// instance's histograms through Redis (feature `redis`,
    /// [`Registry::register_fleet_percentiles`]); absent when none is
    /// registered.
    #[cfg(feature = "redis")]
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub fleet: BTreeMap<String, crate::backend::FleetReport>,
    /// Breakers whose decision a fleet shares through Redis, by name: the
    /// local state next to the fleet's (feature `redis`,
    /// [`Registry::register_fleet_breaker`]); absent when none is
    /// registered. A fleet breaker not closed here, or cut off from Redis,
    /// makes the report `degraded`.
    #[cfg(feature = "redis")]
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub fleet_breakers: BTreeMap<String, FleetBreakerReport>,
}

/// One bulkhead: its slots and its figures now.
///
/// ```
/// use fusebox_std::policy::Overflow;
/// use fusebox_std::Registry;
///
/// let registry = Registry::new();
/// registry.bulkhead("search", 8, Overflow::Reject)?;
/// let json = serde_json::to_value(&registry.health().bulkheads["search"])?;
/// assert_eq!(json, serde_json::json!({"max_concurrent": 8, "in_use": 0, "queued": 0, "rejected": 0}));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BulkheadReport {
    /// Slots in all.
    pub max_concurrent: usize,
    /// Slots held now.
    pub in_use: usize,
    /// Calls waiting for a slot now.
    pub queued: usize,
    /// Calls refused since creation.
    pub rejected: u64,
}

/// Process figures.
///
/// ```
/// use fusebox_std::Registry;
///
/// let process = Registry::new().health().process;
/// if cfg!(target_os = "linux") {
///     assert!(process.resident_memory_bytes.unwrap() > 0);
/// }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct ProcessReport {
    /// Resident memory (Linux: `VmRSS` of `/proc/self/status`); `None`
    /// elsewhere or if unreadable.
    pub resident_memory_bytes: Option<u64>,
    /// Time since the registry was created (tokio's clock).
    pub uptime_seconds: f64,
}

/// One breaker: its state at the registry's `now`, whether it is required,
/// and the core's [`Metrics`] (flattened in JSON).
///
/// ```
/// use fusebox::breaker::{Config, State};
/// use fusebox_std::Registry;
///
/// let registry = Registry::new();
/// registry.breaker("db", Config::builder().consecutive_failures(1).build()?)?;
/// let report = &registry.health().breakers["db"];
/// assert_eq!((report.state, report.required, report.metrics.failures), (State::Closed, false, 0));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BreakerReport {
    /// As [`CircuitBreaker::state`](fusebox::CircuitBreaker::state) reads
    /// it now.
    #[serde(serialize_with = "ser_state")]
    pub state: State,
    /// Marked required ([`Registry::set_required`]).
    pub required: bool,
    /// The core's counters.
    #[serde(flatten)]
    pub metrics: Metrics,
}

/// One token bucket: its quota in force and the tokens available now.
///
/// ```
/// use fusebox::bucket::Quota;
/// use fusebox_std::Registry;
///
/// let registry = Registry::new();
/// let api = registry.limiter("api", Quota::per_second(10)?)?;
/// api.try_acquire_n(4, registry.now())?;
/// assert_eq!(registry.health().limiters["api"].available, 6);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LimiterReport {
    /// Tokens refilled per period.
    pub tokens: u32,
    /// The period.
    #[serde(rename = "period_us")]
    pub period: Duration,
    /// The bucket's size.
    pub burst: u32,
    /// Whole tokens available now.
    pub available: u32,
}

/// One cache: the core's [`CacheMetrics`] (flattened in JSON) and the hit
/// ratio (`null` before the first counted lookup).
///
/// ```
/// use fusebox_std::Registry;
///
/// let registry = Registry::new();
/// let c = registry.concurrent_cache::<u32, u32, 16, 2>("c")?;
/// c.get(&1);
/// assert_eq!(registry.health().caches["c"].hit_ratio, Some(0.0));
/// # Ok::<(), fusebox_std::RegistryError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct CacheReport {
    /// The core's counters.
    #[serde(flatten)]
    pub metrics: CacheMetrics,
    /// `hits / (hits + misses)`.
    pub hit_ratio: Option<f64>,
}

/// The event channel's counters ([`Events`](crate::events::Events)).
///
/// ```
/// use fusebox_std::Registry;
///
/// let registry = Registry::new();
/// let _sub = registry.events().subscribe();
/// assert_eq!(registry.health().events.subscribers, 1);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct EventsReport {
    /// Events published.
    pub published: u64,
    /// Events lost by slow subscribers.
    pub lagged: u64,
    /// Live subscribers.
    pub subscribers: usize,
    /// Events kept for a slow subscriber.
    pub capacity: usize,
}

/// A breaker state as the reports name it: `closed`, `open`, `half_open`,
/// `forced_open`.
pub(crate) fn state_name(state: State) -> &'static str {
    match state {
        State::Closed => "closed",
        State::Open => "open",
        State::HalfOpen => "half_open",
        State::ForcedOpen => "forced_open",
    }
}

// `serialize_with` passes a reference.
#[allow(clippy::trivially_copy_pass_by_ref)]
pub(crate) fn ser_state<S: serde::Serializer>(state: &State, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(state_name(*state))
}
