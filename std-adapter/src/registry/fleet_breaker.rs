//! Fleet breakers in the registry (feature `redis`): each under
//! `fleet_breakers` in [`Registry::health`] (its local state next to the
//! fleet's), and as `fusebox_fleet_breaker_*` families in
//! [`Registry::to_prometheus`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use fusebox::breaker::{Metrics, State};

use crate::backend::{FleetBreaker, FleetBreakerMetrics};
use crate::health::state_name;

use super::{conflict, Entries, Kind, Registry, RegistryError};

/// One fleet breaker in [`HealthReport::fleet_breakers`](crate::health::HealthReport::fleet_breakers):
/// the state a call made here would see, the fleet's decision as last
/// applied here, whether Redis is out, its traffic with Redis (`redis`)
/// and the local core breaker's [`Metrics`] (flattened in JSON).
///
/// ```no_run
/// use std::sync::Arc;
/// use fusebox::breaker::{CircuitBreaker, Config, State};
/// use fusebox_std::backend::{FleetBreaker, RedisBackend, RedisConfig};
/// use fusebox_std::Registry;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let registry = Registry::new();
/// let backend = RedisBackend::connect(RedisConfig::new("redis://127.0.0.1:6379")).await?;
/// let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(5).build()?));
/// let payments = FleetBreaker::builder("payments", core, backend).build().await?;
/// registry.register_fleet_breaker(&payments)?;
/// let report = registry.health().fleet_breakers["payments"];
/// assert_eq!((report.state, report.fleet_state), (State::Closed, Some(State::Closed)));
/// let json = serde_json::to_value(report)?;
/// assert_eq!(json["fleet_state"], "closed");
/// assert_eq!(json["redis"]["errors"], 0);
/// assert_eq!(json["failures"], 0);
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FleetBreakerReport {
    /// The state a call made here now would see
    /// ([`FleetBreaker::state`], read on the breaker's own clock).
    #[serde(serialize_with = "crate::health::ser_state")]
    pub state: State,
    /// The fleet's decision as last applied here
    /// ([`FleetBreaker::fleet_state`]); `null` before the first
    /// reconciliation reached Redis.
    #[serde(serialize_with = "ser_fleet_state")]
    pub fleet_state: Option<State>,
    /// Redis failed the last command: calls are decided on local state
    /// alone ([`FleetBreaker::is_degraded`]).
    pub degraded: bool,
    /// Its traffic with Redis: `{"syncs", "errors", "corrupt", "published"}`.
    #[serde(serialize_with = "ser_redis")]
    pub redis: FleetBreakerMetrics,
    /// The local core breaker's counters.
    #[serde(flatten)]
    pub metrics: Metrics,
}

impl FleetBreakerReport {
    /// `breaker`, read now.
    fn of(breaker: &FleetBreaker) -> Self {
        Self {
            state: breaker.state(),
            fleet_state: breaker.fleet_state(),
            degraded: breaker.is_degraded(),
            redis: breaker.fleet_metrics(),
            metrics: breaker.metrics(),
        }
    }
}

// `serialize_with` passes a reference.
#[allow(clippy::trivially_copy_pass_by_ref, clippy::ref_option)]
fn ser_fleet_state<S: serde::Serializer>(state: &Option<State>, s: S) -> Result<S::Ok, S::Error> {
    match state {
        Some(state) => s.serialize_str(state_name(*state)),
        None => s.serialize_none(),
    }
}

fn ser_redis<S: serde::Serializer>(m: &FleetBreakerMetrics, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeStruct as _;
    let mut out = s.serialize_struct("FleetBreakerMetrics", 5)?;
    out.serialize_field("syncs", &m.syncs)?;
    out.serialize_field("errors", &m.errors)?;
    out.serialize_field("corrupt", &m.corrupt)?;
    out.serialize_field("published", &m.published)?;
    out.serialize_field("trials_refused", &m.trials_refused)?;
    out.end()
}

impl Registry {
    /// Reports `breaker` (under its name) from now on: under
    /// `fleet_breakers` in [`health`](Self::health) (its local state, the
    /// fleet's decision as last applied here, whether Redis is out, its
    /// Redis counters and the local breaker's), and as
    /// `fusebox_fleet_breaker_*` families in
    /// [`to_prometheus`](Self::to_prometheus). While its local state is not
    /// closed, or Redis is out, the report is `degraded` with a reason.
    ///
    /// The registry keeps a clone (cheap: a handle), so the breaker's
    /// background reconciliation runs as long as the registry lives. Its
    /// core is read on the breaker's own clock: do not also register the
    /// core with [`breaker`](Self::breaker), which reads on the
    /// registry's. Registering the same breaker (same core, same Redis
    /// key) again does nothing.
    ///
    /// Registering it does not make the registry its observer: for its
    /// transitions (its calls' and the fleet's decisions applied here) as
    /// log lines and [events](Self::events), build it with
    /// [`observer(registry.breaker_observer())`](crate::backend::FleetBreakerBuilder::observer).
    ///
    /// # Errors
    ///
    /// [`RegistryError::Conflict`] if another fleet breaker has the name;
    /// [`RegistryError::Full`].
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use fusebox::breaker::{CircuitBreaker, Config};
    /// use fusebox_std::backend::{FleetBreaker, RedisBackend, RedisConfig};
    /// use fusebox_std::Registry;
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let registry = Registry::new();
    /// let backend = RedisBackend::connect(RedisConfig::new("redis://127.0.0.1:6379")).await?;
    /// let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(5).build()?));
    /// let payments = FleetBreaker::builder("payments", core, backend).build().await?;
    /// registry.register_fleet_breaker(&payments)?;
    /// payments.call(async { Ok::<_, std::io::Error>(()) }).await?;
    /// assert_eq!(registry.health().fleet_breakers["payments"].metrics.successes, 1);
    /// let text = registry.to_prometheus();
    /// assert!(text.contains(
    ///     "fusebox_fleet_breaker_state{name=\"payments\",scope=\"fleet\",state=\"closed\"} 1\n"
    /// ));
    /// # Ok(()) }
    /// ```
    pub fn register_fleet_breaker(&self, breaker: &FleetBreaker) -> Result<(), RegistryError> {
        let name = breaker.name();
        self.get_or_insert(
            Kind::FleetBreaker,
            name,
            |e| &mut e.fleet_breakers,
            |held| {
                let same = Arc::ptr_eq(held.core(), breaker.core())
                    && held.decision_key() == breaker.decision_key();
                if same {
                    Ok(())
                } else {
                    Err(conflict(Kind::FleetBreaker, name))
                }
            },
            || Ok((breaker.clone(), ())),
        )
    }

    /// The registered fleet breaker `name`.
    ///
    /// ```
    /// use fusebox_std::Registry;
    ///
    /// assert!(Registry::new().get_fleet_breaker("payments").is_none());
    /// ```
    pub fn get_fleet_breaker(&self, name: &str) -> Option<FleetBreaker> {
        self.read().fleet_breakers.get(name).cloned()
    }
}

/// The registered fleet breakers' reports, with a reason for each one not
/// closed here or cut off from Redis.
pub(crate) fn reports(
    entries: &Entries,
    reasons: &mut Vec<String>,
) -> BTreeMap<String, FleetBreakerReport> {
    let mut out = BTreeMap::new();
    for (name, breaker) in &entries.fleet_breakers {
        let report = FleetBreakerReport::of(breaker);
        if report.state != State::Closed {
            reasons.push(format!(
                "fleet breaker {name} is {}",
                state_name(report.state)
            ));
        }
        if report.degraded {
            reasons.push(format!(
                "fleet breaker {name} is degraded (Redis unavailable: deciding on local state)"
            ));
        }
        out.insert(name.to_string(), report);
    }
    out
}

/// A counter family of the fleet breakers: name, help, reader.
type Counter = (&'static str, &'static str, fn(&FleetBreakerReport) -> u64);

/// The fleet breakers' families, each family's HELP and TYPE once (names
/// are registry names: no escaping needed).
pub(crate) fn write_prometheus(out: &mut String, reports: &BTreeMap<String, FleetBreakerReport>) {
    if reports.is_empty() {
        return;
    }
    let gauge = "fusebox_fleet_breaker_state";
    let _ = writeln!(
        out,
        "# HELP {gauge} Fleet breaker state, here (scope local) and as the fleet decided it last \
         (scope fleet): 1 for the current state, 0 for the others.\n# TYPE {gauge} gauge"
    );
    for (name, r) in reports {
        for (scope, current) in [("local", Some(r.state)), ("fleet", r.fleet_state)] {
            for state in [
                State::Closed,
                State::Open,
                State::HalfOpen,
                State::ForcedOpen,
            ] {
                let _ = writeln!(
                    out,
                    "{gauge}{{name=\"{name}\",scope=\"{scope}\",state=\"{}\"}} {}",
                    state_name(state),
                    u8::from(current == Some(state))
                );
            }
        }
    }
    let counters: [Counter; 7] = [
        (
            "fusebox_fleet_breaker_syncs_total",
            "Reconciliations with Redis that reached it.",
            |r| r.redis.syncs,
        ),
        (
            "fusebox_fleet_breaker_errors_total",
            "Redis commands that failed (timeouts, connection errors).",
            |r| r.redis.errors,
        ),
        (
            "fusebox_fleet_breaker_corrupt_total",
            "Corrupt or hostile stored decisions rejected and replaced.",
            |r| r.redis.corrupt,
        ),
        (
            "fusebox_fleet_breaker_published_total",
            "Changes of the shared decision this instance made.",
            |r| r.redis.published,
        ),
        (
            "fusebox_fleet_breaker_trips_total",
            "Times this instance's own calls opened the breaker.",
            |r| r.metrics.trips,
        ),
        (
            "fusebox_fleet_breaker_failures_total",
            "Calls of this instance recorded as failures.",
            |r| r.metrics.failures,
        ),
        (
            "fusebox_fleet_breaker_rejected_total",
            "Calls of this instance refused (by its own trip, the fleet's decision, or for want of a fleet trial slot).",
            |r| r.metrics.rejected.saturating_add(r.redis.trials_refused),
        ),
    ];
    for (metric, help, get) in counters {
        let _ = writeln!(out, "# HELP {metric} {help}\n# TYPE {metric} counter");
        for (name, r) in reports {
            let _ = writeln!(out, "{metric}{{name=\"{name}\"}} {}", get(r));
        }
    }
    let degraded = "fusebox_fleet_breaker_degraded";
    let _ = writeln!(
        out,
        "# HELP {degraded} 1 while Redis is out and the breaker decides on local state.\n\
         # TYPE {degraded} gauge"
    );
    for (name, r) in reports {
        let _ = writeln!(
            out,
            "{degraded}{{name=\"{name}\"}} {}",
            u8::from(r.degraded)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `b` open here by the fleet's decision (refused 3, failed nothing);
    /// `a` closed, not synced yet, Redis out.
    fn reports() -> BTreeMap<String, FleetBreakerReport> {
        let b = FleetBreakerReport {
            state: State::Open,
            fleet_state: Some(State::Open),
            degraded: false,
            redis: FleetBreakerMetrics {
                syncs: 9,
                published: 1,
                trials_refused: 2,
                ..FleetBreakerMetrics::default()
            },
            metrics: Metrics {
                rejected: 3,
                ..Metrics::default()
            },
        };
        let a = FleetBreakerReport {
            state: State::Closed,
            fleet_state: None,
            degraded: true,
            redis: FleetBreakerMetrics {
                errors: 2,
                ..FleetBreakerMetrics::default()
            },
            metrics: Metrics::default(),
        };
        [("a".to_owned(), a), ("b".to_owned(), b)].into()
    }

    #[test]
    fn the_json_shape() {
        let json = serde_json::to_value(reports()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "a": {
                    "state": "closed", "fleet_state": null, "degraded": true,
                    "redis": {"syncs": 0, "errors": 2, "corrupt": 0, "published": 0, "trials_refused": 0},
                    "successes": 0, "failures": 0, "slow_calls": 0, "rejected": 0,
                    "trips": 0, "abandoned": 0, "ignored": 0
                },
                "b": {
                    "state": "open", "fleet_state": "open", "degraded": false,
                    "redis": {"syncs": 9, "errors": 0, "corrupt": 0, "published": 1, "trials_refused": 2},
                    "successes": 0, "failures": 0, "slow_calls": 0, "rejected": 3,
                    "trips": 0, "abandoned": 0, "ignored": 0
                }
            })
        );
    }

    #[test]
    fn every_family_once_every_breaker_in_each() {
        let mut text = String::new();
        write_prometheus(&mut text, &reports());
        for family in [
            "fusebox_fleet_breaker_state gauge",
            "fusebox_fleet_breaker_syncs_total counter",
            "fusebox_fleet_breaker_errors_total counter",
            "fusebox_fleet_breaker_corrupt_total counter",
            "fusebox_fleet_breaker_published_total counter",
            "fusebox_fleet_breaker_trips_total counter",
            "fusebox_fleet_breaker_failures_total counter",
            "fusebox_fleet_breaker_rejected_total counter",
            "fusebox_fleet_breaker_degraded gauge",
        ] {
            assert_eq!(
                text.matches(&format!("# TYPE {family}\n")).count(),
                1,
                "{family}"
            );
        }
        for line in [
            "fusebox_fleet_breaker_state{name=\"b\",scope=\"local\",state=\"open\"} 1\n",
            "fusebox_fleet_breaker_state{name=\"b\",scope=\"fleet\",state=\"open\"} 1\n",
            "fusebox_fleet_breaker_state{name=\"b\",scope=\"fleet\",state=\"closed\"} 0\n",
            "fusebox_fleet_breaker_state{name=\"a\",scope=\"local\",state=\"closed\"} 1\n",
            // 3 refused by the local breaker, 2 for want of a fleet trial.
            "fusebox_fleet_breaker_rejected_total{name=\"b\"} 5\n",
            "fusebox_fleet_breaker_errors_total{name=\"a\"} 2\n",
            "fusebox_fleet_breaker_degraded{name=\"a\"} 1\n",
            "fusebox_fleet_breaker_degraded{name=\"b\"} 0\n",
        ] {
            assert!(text.contains(line), "{line}{text}");
        }
        // Not synced yet: no fleet state is 1.
        let unsynced = "fusebox_fleet_breaker_state{name=\"a\",scope=\"fleet\"";
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with(unsynced) && l.ends_with(" 1"))
                .count(),
            0
        );
        let mut none = String::new();
        write_prometheus(&mut none, &BTreeMap::new());
        assert!(none.is_empty());
    }
}
