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
use std::sync::Arc;

use fusebox::breaker::State;

use crate::redact::redact_cut;
use crate::Registry;

mod report;

#[cfg(feature = "redis")]
pub(crate) use report::ser_state;
pub(crate) use report::state_name;
#[cfg(feature = "redis")]
pub use report::FleetBreakerReport;
pub use report::{
    BreakerReport, BulkheadReport, CacheReport, EventsReport, HealthReport, LimiterReport,
    ProcessReport,
};

impl Registry {
    /// Reports `source` (a backend, a dependency) degraded for `reason`
    /// ([redacted](crate::redact), at most 256 characters kept), or, with
    /// `None`, no longer degraded. While any condition is set the report is
    /// `degraded` (still `ready`) and lists it as `"<source>: <reason>"`.
    /// A condition set here is the caller's: only this method clears it,
    /// and it neither replaces nor clears one a component of the registry
    /// reports under the same name (a Redis limiter's `redis_<name>`);
    /// both are listed.
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
        self.report(true)
    }

    /// [`health`](Self::health), with the trackers' statistics (their
    /// percentiles computed from every series' histogram) only if
    /// `operations`: the Prometheus exposition writes the trackers' own
    /// histograms and would discard them.
    pub(crate) fn report(&self, operations: bool) -> HealthReport {
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
        let limiters = limiter_reports(&entries, now);
        #[cfg(feature = "tower")]
        let bad_keys = entries_bad_keys(&entries);
        let keyed_limiters = entries
            .keyed
            .iter()
            .map(|(name, e)| (name.to_string(), e.metrics()))
            .collect();
        // Read after the registry's lock is released: a `CacheSource` is
        // the user's code (typically a `Mutex<LruCache>` they also lock
        // around registry calls), and reading it under our lock would
        // order its lock after ours while they order it before.
        let cache_sources: Vec<_> = entries
            .caches
            .iter()
            .map(|(name, e)| (name.to_string(), Arc::clone(&e.source)))
            .collect();
        let trackers = if operations {
            entries
                .trackers
                .iter()
                .map(|(name, t)| (name.to_string(), t.stats()))
                .collect()
        } else {
            BTreeMap::new()
        };
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
        let caches = cache_sources
            .into_iter()
            .map(|(name, source)| {
                let metrics = source.cache_metrics();
                let hit_ratio = metrics.hit_ratio();
                (name, CacheReport { metrics, hit_ratio })
            })
            .collect();
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
            #[cfg(feature = "tower")]
            bad_keys,
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
    for ((source, _), condition) in &entries.conditions {
        if condition.is_live() {
            reasons.push(format!("{source}: {}", condition.reason));
        }
    }
}

/// The token buckets' reports.
fn limiter_reports(
    entries: &crate::registry::Entries,
    now: fusebox::Instant,
) -> BTreeMap<String, LimiterReport> {
    entries
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
        .collect()
}

/// The keyed layers' requests without a usable key, by limiter name.
#[cfg(feature = "tower")]
fn entries_bad_keys(
    entries: &crate::registry::Entries,
) -> BTreeMap<String, crate::tower::rate_limit::BadKeys> {
    entries
        .bad_keys
        .iter()
        .map(|(name, counter)| (name.to_string(), counter.read()))
        .collect()
}

fn bulkhead_reports(entries: &crate::registry::Entries) -> BTreeMap<String, BulkheadReport> {
    entries
        .bulkheads
        .iter()
        .map(|(name, e)| {
            let m = e.bulkhead.metrics();
            let report = BulkheadReport {
                // The slots it has (a request past tokio's semaphore limit
                // is cut to it), not the number asked for.
                max_concurrent: e.bulkhead.max_concurrent(),
                in_use: m.in_use,
                queued: m.queued,
                rejected: m.rejected,
            };
            (name.to_string(), report)
        })
        .collect()
}

/// The attached monitor's part of the verdict: `false` (not ready) when it
/// is unhealthy; a reason when it is unhealthy or degraded, naming the
/// failing checks and why ([`Status::reason`](crate::monitor::Status::reason):
/// bounded and redacted), found by a review: it said only `monitor is
/// unhealthy`.
fn monitor_verdict(status: Option<&crate::monitor::Status>, reasons: &mut Vec<String>) -> bool {
    let Some(status) = status else {
        return true;
    };
    let (ready, health) = match status.health {
        crate::monitor::Health::Unhealthy => (false, "unhealthy"),
        crate::monitor::Health::Degraded => (true, "degraded"),
        _ => return true,
    };
    reasons.push(match &status.reason {
        Some(why) => format!("monitor is {health}: {why}"),
        None => format!("monitor is {health}"),
    });
    ready
}

#[cfg(test)]
mod hostile_tests;
