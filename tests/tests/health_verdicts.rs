//! The health report's verdicts against a model written from their docs
//! (`HealthReport::ready`, `degraded`, `reasons`; `Registry::attach_monitor`;
//! `Registry::set_degraded`), over every combination of one breaker
//! (required or not; closed, open, half-open, forced open), one degraded
//! condition (set or not) and an attached monitor (none; healthy; not run
//! yet; degraded; unhealthy; stopped and stale):
//!
//! * ready: no required breaker open or forced open, and the monitor not
//!   unhealthy;
//! * degraded: a breaker not closed, a condition set, or the monitor
//!   degraded or unhealthy;
//! * one reason per cause, and degraded exactly when there is one.

use std::time::Duration;

use fusebox::breaker::{Config, Outcome, State};
use fusebox_std::monitor::{CheckError, CheckSpec, FnCheck, Health, HealthMonitor, MonitorHandle};
use fusebox_std::Registry;
use tokio::time::sleep;

const OPEN_FOR: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug)]
enum Monitor {
    None,
    Healthy,
    /// Its one check has not finished a run yet.
    NotRunYet,
    /// A non-critical check failing: at most degraded.
    Degraded,
    /// A critical check failing three times in a row.
    Unhealthy,
    /// Healthy, then stopped: stale, so at least degraded.
    Stale,
}

impl Monitor {
    /// The monitor's health as its docs define it.
    fn health(self) -> Option<Health> {
        match self {
            Self::None => None,
            Self::Healthy => Some(Health::Healthy),
            Self::NotRunYet => Some(Health::Unknown),
            Self::Degraded | Self::Stale => Some(Health::Degraded),
            Self::Unhealthy => Some(Health::Unhealthy),
        }
    }

    fn spawn(self) -> Option<MonitorHandle> {
        let spec = |name: &str, pass: bool| {
            CheckSpec::new(
                name,
                FnCheck::new(move || async move {
                    if pass {
                        Ok(None)
                    } else {
                        Err(CheckError::other("refused"))
                    }
                }),
            )
            .interval(Duration::from_secs(1))
        };
        let monitor = match self {
            Self::None => return None,
            Self::Healthy | Self::Stale => HealthMonitor::new().check(spec("db", true)),
            Self::NotRunYet => HealthMonitor::new().check(
                CheckSpec::new(
                    "db",
                    FnCheck::new(std::future::pending::<Result<Option<String>, CheckError>>),
                )
                .interval(Duration::from_secs(3_600)),
            ),
            Self::Degraded => HealthMonitor::new().check(spec("metrics", false).critical(false)),
            Self::Unhealthy => HealthMonitor::new().check(spec("db", false)),
        };
        Some(monitor.spawn())
    }
}

/// Brings `breaker` to `state` on the registry's paused clock.
async fn drive(registry: &Registry, breaker: &fusebox::CircuitBreaker, state: State) {
    let trip = || {
        let now = registry.now();
        let permit = breaker.try_acquire(now).unwrap();
        let opened = permit.record(Outcome::Failure, now, fusebox::Duration::ZERO);
        assert!(opened.is_some());
    };
    match state {
        State::Closed => {}
        State::Open => trip(),
        State::HalfOpen => {
            trip();
            sleep(OPEN_FOR + Duration::from_secs(1)).await;
        }
        State::ForcedOpen => drop(breaker.force_open(registry.now())),
    }
}

#[tokio::test(start_paused = true)]
async fn ready_degraded_and_reasons_follow_the_documented_model() {
    let states = [
        State::Closed,
        State::Open,
        State::HalfOpen,
        State::ForcedOpen,
    ];
    let monitors = [
        Monitor::None,
        Monitor::Healthy,
        Monitor::NotRunYet,
        Monitor::Degraded,
        Monitor::Unhealthy,
        Monitor::Stale,
    ];
    let mut cases = 0;
    for required in [false, true] {
        for state in states {
            for condition in [false, true] {
                for monitor in monitors {
                    let registry = Registry::new();
                    let config = Config::builder()
                        .consecutive_failures(1)
                        .open_for(fusebox::Duration::from_micros(OPEN_FOR.as_micros() as u64))
                        .build()
                        .unwrap();
                    let breaker = registry.breaker("upstream", config).unwrap();
                    registry.set_required("upstream", required).unwrap();
                    if condition {
                        registry.set_degraded("cache", Some("slow")).unwrap();
                    }
                    let handle = monitor.spawn();
                    if let Some(h) = &handle {
                        registry.attach_monitor(h.reader());
                    }
                    // Three runs of every 1 s check; the hung one never ends.
                    sleep(Duration::from_millis(2_500)).await;
                    if let (Monitor::Stale, Some(h)) = (monitor, handle.as_ref()) {
                        let reader = h.reader();
                        drop(handle);
                        registry.attach_monitor(reader);
                        sleep(Duration::from_secs(10)).await;
                    }
                    drive(&registry, &breaker, state).await;
                    let case = format!("{required} {state:?} {condition} {monitor:?}");
                    let report = registry.health();
                    assert_eq!(report.breakers["upstream"].state, state, "{case}");
                    let health = monitor.health();
                    assert_eq!(report.monitor.as_ref().map(|m| m.health), health, "{case}");

                    let blocked = required && matches!(state, State::Open | State::ForcedOpen);
                    let unhealthy = health == Some(Health::Unhealthy);
                    assert_eq!(
                        report.ready,
                        !blocked && !unhealthy,
                        "{case}: {:?}",
                        report.reasons
                    );
                    let causes = usize::from(state != State::Closed)
                        + usize::from(condition)
                        + usize::from(matches!(health, Some(Health::Degraded | Health::Unhealthy)));
                    assert_eq!(report.reasons.len(), causes, "{case}: {:?}", report.reasons);
                    assert_eq!(report.degraded, causes > 0, "{case}: {:?}", report.reasons);
                    // The Prometheus gauges say the same.
                    let text = registry.to_prometheus();
                    let gauge = |name: &str, on: bool| format!("\n{name} {}\n", u8::from(on));
                    assert!(
                        text.contains(&gauge("fusebox_ready", report.ready)),
                        "{case}"
                    );
                    assert!(
                        text.contains(&gauge("fusebox_degraded", report.degraded)),
                        "{case}"
                    );
                    cases += 1;
                }
            }
        }
    }
    assert_eq!(cases, 96);
}

/// The two verdict gauges' help says what sets them, every cause the
/// report's `ready` and `degraded` follow: an operator writes alerts from
/// it (found by a hostile review: `fusebox_ready` read "1 unless a required
/// breaker is open" and went to 0 for an unhealthy monitor too).
#[tokio::test(start_paused = true)]
async fn the_verdict_gauges_help_names_every_cause() {
    let registry = Registry::new();
    let monitor = Monitor::Unhealthy.spawn().unwrap();
    registry.attach_monitor(monitor.reader());
    sleep(Duration::from_millis(2_500)).await;
    let text = registry.to_prometheus();
    assert!(text.contains("\nfusebox_ready 0\n"), "{text}");
    let help = |family: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("# HELP {family} ")))
            .unwrap_or_default()
            .to_owned()
    };
    let ready = help("fusebox_ready");
    for cause in ["required breaker", "monitor"] {
        assert!(ready.contains(cause), "{ready}");
    }
    let degraded = help("fusebox_degraded");
    for cause in ["breaker", "condition", "monitor", "Redis"] {
        assert!(degraded.contains(cause), "{degraded}");
    }
}
