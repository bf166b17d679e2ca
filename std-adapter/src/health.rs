//! [`Registry::health`]: everything the registry holds, as one
//! serialisable report.
//!
//! # JSON shape
//!
//! Maps are keyed by name and sorted; durations are microseconds
//! (`_us`) unless the field says seconds; breaker states are
//! `"closed"`, `"open"`, `"half_open"` or `"forced_open"`.
//!
//! ```
//! use fusebox::breaker::Config;
//! use fusebox::bucket::Quota;
//! use fusebox_std::{Registry, TrackerConfig};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let registry = Registry::new();
//! registry.breaker("payments", Config::builder().consecutive_failures(5).build()?)?;
//! registry.set_required("payments", true)?;
//! registry.limiter("api", Quota::per_second(100)?.with_burst(20)?)?;
//! let http = registry.tracker("http", TrackerConfig { sample_rate: 1.0, ..TrackerConfig::default() })?;
//! let op = http.track_operation("checkout");
//! tokio::time::sleep(std::time::Duration::from_millis(12)).await;
//! drop(op);
//!
//! let mut json = serde_json::to_value(registry.health())?;
//! json["process"]["resident_memory_bytes"] = serde_json::Value::Null; // varies
//! assert_eq!(json, serde_json::json!({
//!     "ready": true,
//!     "degraded": false,
//!     "reasons": [],
//!     "process": { "resident_memory_bytes": null, "uptime_seconds": 0.012 },
//!     "breakers": {
//!         "payments": {
//!             "state": "closed", "required": true,
//!             "successes": 0, "failures": 0, "slow_calls": 0, "rejected": 0,
//!             "trips": 0, "abandoned": 0, "ignored": 0
//!         }
//!     },
//!     "limiters": {
//!         "api": { "tokens": 100, "period_us": 1000000, "burst": 20, "available": 20 }
//!     },
//!     "keyed_limiters": {},
//!     "caches": {},
//!     "trackers": {
//!         "http": {
//!             "checkout": {
//!                 "calls": 1, "errors": 0, "sampled": 1,
//!                 "latency_us": {
//!                     "p50": 12000, "p95": 12000, "p99": 12000, "p999": 12000,
//!                     "max": 12000, "mean": 12000.0
//!                 }
//!             }
//!         }
//!     },
//!     "bulkheads": {},
//!     "events": { "published": 0, "lagged": 0, "subscribers": 0, "capacity": 1024 }
//! }));
//! # Ok(())
//! # }
//! ```
//!
//! With feature `redis`, two more maps appear once something is
//! registered in them: `fleet` (fleet-wide percentiles per tracker,
//! `Registry::register_fleet_percentiles`) and `fleet_breakers`
//! (`Registry::register_fleet_breaker`), each breaker's local state next
//! to the fleet's decision as last applied here (`null` before the first
//! reconciliation), whether Redis is out, its Redis counters and the local
//! breaker's counters (`FleetBreakerReport`):
//!
//! ```text
//! "fleet_breakers": {
//!     "upstream": {
//!         "state": "open", "fleet_state": "open", "degraded": false,
//!         "redis": { "syncs": 42, "errors": 0, "corrupt": 0, "published": 1 },
//!         "successes": 120, "failures": 0, "slow_calls": 0, "rejected": 35,
//!         "trips": 0, "abandoned": 0, "ignored": 0
//!     }
//! }
//! ```
//!
//! (Here another instance tripped it: this one failed no call and
//! published no trip, yet refuses calls.)

use std::collections::BTreeMap;

use fusebox::breaker::{Metrics, State};
use fusebox::bucket::KeyedMetrics;
use fusebox::cache::CacheMetrics;
use fusebox::Duration;

use crate::redact::redact_cut;
use crate::tracker::OperationStats;
use crate::Registry;

#[cfg(feature = "redis")]
pub use crate::registry::fleet_breaker::FleetBreakerReport;

/// The report of [`Registry::health`]; see the [module docs](self) for its
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
    /// `false` while a breaker marked required is open (or forced open):
    /// the answer for a readiness probe.
    pub ready: bool,
    /// `true` while any breaker is not closed, a condition is set
    /// ([`Registry::set_degraded`]), or (feature `redis`) a registered
    /// Redis limiter is degraded, fleet percentiles are stale, or a fleet
    /// breaker is not closed here or cut off from Redis.
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
    /// ready; a degraded one, degraded.
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

impl Registry {
    /// Reports `source` (a backend, a dependency) degraded for `reason`
    /// ([redacted](crate::redact), at most 256 characters kept), or, with
    /// `None`, no longer degraded. While any condition is set the report is
    /// `degraded` (still `ready`) and lists it as `"<source>: <reason>"`.
    ///
    /// # Errors
    ///
    /// [`RegistryError::InvalidName`](crate::RegistryError::InvalidName)
    /// for a `source` that is not a valid name,
    /// [`RegistryError::Full`](crate::RegistryError::Full) when the
    /// registry's entry limit of conditions is reached.
    ///
    /// ```
    /// use fusebox_std::Registry;
    ///
    /// let registry = Registry::new();
    /// registry.set_degraded("redis", Some("connection refused: redis://app:pw@cache:6379"))?;
    /// let health = registry.health();
    /// assert!(health.ready && health.degraded);
    /// assert_eq!(health.reasons, ["redis: connection refused: redis://app:***@cache:6379"]);
    /// registry.set_degraded("redis", None)?;
    /// assert!(!registry.health().degraded);
    /// # Ok::<(), fusebox_std::RegistryError>(())
    /// ```
    pub fn set_degraded(
        &self,
        source: &str,
        reason: Option<&str>,
    ) -> Result<(), crate::RegistryError> {
        self.set_condition(source, reason.map(|r| redact_cut(r, 256)), None)
    }

    /// The report's `ready` verdict alone, as [`health`](Self::health)
    /// decides it (no required breaker open, the monitor not unhealthy),
    /// without building the rest of the report: the unauthenticated
    /// readiness probe answers with this, so that its cost does not grow
    /// with the trackers' series, whose percentiles the report computes.
    #[cfg(feature = "http")]
    pub(crate) fn is_ready(&self) -> bool {
        let now = self.now();
        let entries = self.read();
        let breakers = entries
            .breakers
            .values()
            .all(|e| !blocks_readiness(e.required, e.breaker.state(now)));
        let monitor = entries
            .monitor
            .as_ref()
            .map(crate::monitor::StatusReader::health);
        breakers && monitor != Some(crate::monitor::Health::Unhealthy)
    }

    /// The health report: every primitive's state and counters, process
    /// figures, and the `ready`/`degraded` verdicts; see the
    /// [`health`](crate::health) module for the JSON shape.
    ///
    /// Never shows a secret: names are validated, tracker paths redacted.
    ///
    /// ```
    /// use fusebox::breaker::Config;
    /// use fusebox_std::Registry;
    ///
    /// let registry = Registry::new();
    /// let db = registry.breaker("db", Config::builder().consecutive_failures(1).build()?)?;
    /// db.force_open(registry.now());
    /// let health = registry.health();
    /// assert!(health.ready && health.degraded); // not required: degraded only
    /// assert_eq!(health.reasons, ["breaker db is forced_open"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn health(&self) -> HealthReport {
        #[cfg(test)]
        REPORTS_BUILT.with(|built| built.set(built.get() + 1));
        let now = self.now();
        let entries = self.read();
        let mut reasons = Vec::new();
        let mut ready = true;
        let breakers = entries
            .breakers
            .iter()
            .map(|(name, e)| {
                let state = e.breaker.state(now);
                if state != State::Closed {
                    let blocks = blocks_readiness(e.required, state);
                    ready &= !blocks;
                    reasons.push(format!(
                        "breaker {name} is {}{}",
                        state_name(state),
                        if blocks { " (required)" } else { "" }
                    ));
                }
                let report = BreakerReport {
                    state,
                    required: e.required,
                    metrics: e.breaker.metrics(),
                };
                (name.to_string(), report)
            })
            .collect();
        let limiters = entries
            .limiters
            .iter()
            .map(|(name, e)| {
                let quota = e.bucket.quota();
                let report = LimiterReport {
                    tokens: quota.tokens(),
                    period: quota.period(),
                    burst: quota.burst(),
                    available: e.bucket.available(now),
                };
                (name.to_string(), report)
            })
            .collect();
        let keyed_limiters = entries
            .keyed
            .iter()
            .map(|(name, e)| (name.to_string(), e.source.keyed_metrics()))
            .collect();
        let caches = entries
            .caches
            .iter()
            .map(|(name, e)| {
                let metrics = e.source.cache_metrics();
                let hit_ratio = metrics.hit_ratio();
                (name.to_string(), CacheReport { metrics, hit_ratio })
            })
            .collect();
        let trackers = entries
            .trackers
            .iter()
            .map(|(name, t)| (name.to_string(), t.stats()))
            .collect();
        let bulkheads = bulkhead_reports(&entries);
        condition_reasons(&entries, &mut reasons);
        #[cfg(feature = "redis")]
        let (fleet, fleet_breakers) = crate::registry::fleet::redis_reports(&entries, &mut reasons);
        let monitor = entries
            .monitor
            .as_ref()
            .map(crate::monitor::StatusReader::status);
        ready &= monitor_verdict(monitor.as_ref(), &mut reasons);
        drop(entries);
        HealthReport {
            ready,
            degraded: !reasons.is_empty(),
            reasons,
            process: ProcessReport {
                resident_memory_bytes: resident_memory_bytes(),
                uptime_seconds: self.uptime().as_secs_f64(),
            },
            breakers,
            limiters,
            keyed_limiters,
            caches,
            trackers,
            bulkheads,
            monitor,
            #[cfg(feature = "redis")]
            fleet,
            #[cfg(feature = "redis")]
            fleet_breakers,
            events: EventsReport {
                published: self.events().published(),
                lagged: self.events().lagged(),
                subscribers: self.events().subscribers(),
                capacity: self.events().capacity(),
            },
        }
    }
}

#[cfg(test)]
thread_local! {
    /// Full reports built on this thread: a test asks whether a handler
    /// built one (the `/readyz` probe must not).
    pub(crate) static REPORTS_BUILT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Whether a breaker in `state` makes the report not ready: a required
/// breaker that is open or forced open.
fn blocks_readiness(required: bool, state: State) -> bool {
    required && matches!(state, State::Open | State::ForcedOpen)
}

/// Resident memory from `/proc/self/status` (`VmRSS: <n> kB`).
///
/// `/proc/self/statm` counts pages, and its page size needs `sysconf`, a
/// foreign call this crate does not make; `VmRSS` is the same figure in kB.
#[cfg(target_os = "linux")]
pub(crate) fn resident_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Resident memory: not known on this platform.
#[cfg(not(target_os = "linux"))]
pub(crate) fn resident_memory_bytes() -> Option<u64> {
    None
}

/// A reason per live degraded condition (see `Registry::set_degraded`).
fn condition_reasons(entries: &crate::registry::Entries, reasons: &mut Vec<String>) {
    for (source, condition) in &entries.conditions {
        if condition.is_live() {
            reasons.push(format!("{source}: {}", condition.reason));
        }
    }
}

fn bulkhead_reports(entries: &crate::registry::Entries) -> BTreeMap<String, BulkheadReport> {
    entries
        .bulkheads
        .iter()
        .map(|(name, e)| {
            let m = e.bulkhead.metrics();
            let report = BulkheadReport {
                max_concurrent: e.max_concurrent,
                in_use: m.in_use,
                queued: m.queued,
                rejected: m.rejected,
            };
            (name.to_string(), report)
        })
        .collect()
}

/// The attached monitor's part of the verdict: `false` (not ready) when it
/// is unhealthy; a reason when it is unhealthy or degraded.
fn monitor_verdict(status: Option<&crate::monitor::Status>, reasons: &mut Vec<String>) -> bool {
    match status.map(|s| s.health) {
        Some(crate::monitor::Health::Unhealthy) => {
            reasons.push("monitor is unhealthy".into());
            false
        }
        Some(crate::monitor::Health::Degraded) => {
            reasons.push("monitor is degraded".into());
            true
        }
        _ => true,
    }
}
