//! [`HealthMonitor`]: spawns one task per check (and one per recovery
//! rule), keeps their state for [`Status`] snapshots and sends events.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::alert::Window;
use super::event::Bus;
use super::state::Streaks;
use super::tasks::{check_loop, recovery_loop, Cell, CheckState, Shared, Signal};
use super::{
    ActionStats, CheckSpec, Health, RecoveryStatus, SpawnError, Status, StatusReader, Subscription,
};
use crate::redact::redact;

/// Runs health checks in the background and keeps their verdicts.
///
/// Each check runs on its own interval, in its own task. Starts are
/// staggered deterministically: with `n` checks, check `i` (in the order
/// they were added) first runs `interval_i × i / n` after [`spawn`](Self::spawn),
/// then every `interval_i` after its previous scheduled start (fixed rate;
/// a run that overruns its slot is followed by the next at once; a run
/// that itself started late, after a host's suspend or a stalled runtime,
/// is followed by the first of the check's slots at least half an
/// interval after its start: the slots it missed, and one too close
/// after it, are skipped, not run back to back). Each run
/// is bounded by the check's timeout. Every wait is a `tokio::time` sleep,
/// so paused time drives the whole schedule in tests.
///
/// Results move each check through the [`Thresholds`](super::Thresholds) state machine, feed
/// its [`AlertThresholds`](super::AlertThresholds) window and its
/// [`RecoveryRule`](super::RecoveryRule); changes are logged through `tracing` (fields `check`,
/// `from`, `to`, `kind`, `action`, …) and sent as [`MonitorEvent`](super::MonitorEvent)s.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use fusebox_std::monitor::{CheckSpec, FnCheck, Health, HealthMonitor, TcpCheck};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap().block_on(async {
/// let monitor = HealthMonitor::new()
///     .check(CheckSpec::new("queue", FnCheck::new(|| async { Ok(Some("depth 3".into())) }))
///         .interval(Duration::from_secs(5)))
///     .spawn();
/// tokio::time::sleep(Duration::from_secs(1)).await;
/// let status = monitor.status();
/// assert_eq!(status.health, Health::Healthy);
/// assert_eq!(status.checks[0].last.as_ref().unwrap().detail.as_deref(), Some("depth 3"));
/// monitor.stop().await;
/// # });
/// ```
#[derive(Debug, Default)]
#[must_use = "a monitor does nothing until `spawn` is called"]
pub struct HealthMonitor {
    specs: Vec<CheckSpec>,
    capacity: Option<usize>,
}

impl HealthMonitor {
    /// A monitor with no check and an event capacity of 64.
    ///
    /// ```
    /// use fusebox_std::monitor::HealthMonitor;
    ///
    /// let monitor = HealthMonitor::new();
    /// # drop(monitor);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a check.
    ///
    /// ```
    /// use fusebox_std::monitor::{CheckSpec, HealthMonitor, TcpCheck};
    ///
    /// let monitor = HealthMonitor::new().check(CheckSpec::new("redis", TcpCheck::new("127.0.0.1:6379")));
    /// # drop(monitor);
    /// ```
    pub fn check(mut self, spec: CheckSpec) -> Self {
        self.specs.push(spec);
        self
    }

    /// How many events the broadcast channel holds for a slow receiver
    /// (at least 1, at most
    /// [`Events::MAX_CAPACITY`](crate::events::Events::MAX_CAPACITY), a
    /// larger one is that; default 64), rounded up to a power of two as
    /// tokio's broadcast channel and [`Events::new`](crate::events::Events::new)
    /// round it: 100 holds 128. Sending never waits: a receiver further
    /// behind loses the oldest events, counted in
    /// [`Status::lagged_events`].
    ///
    /// ```
    /// use fusebox_std::monitor::HealthMonitor;
    ///
    /// let monitor = HealthMonitor::new().event_capacity(1024);
    /// # drop(monitor);
    /// ```
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.capacity = Some(capacity);
        self
    }

    /// Starts every task on the current tokio runtime.
    ///
    /// # Panics
    ///
    /// Where [`try_spawn`](Self::try_spawn) returns an error: outside a
    /// tokio runtime, or with two checks of one name or one of an empty
    /// name.
    ///
    /// ```
    /// use fusebox_std::monitor::HealthMonitor;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let handle = HealthMonitor::new().spawn();
    /// assert!(handle.status().checks.is_empty());
    /// # });
    /// ```
    pub fn spawn(self) -> MonitorHandle {
        match self.try_spawn() {
            Ok(handle) => handle,
            Err(e) => panic!("HealthMonitor::spawn: {e}"),
        }
    }

    /// Starts every task on the current tokio runtime.
    ///
    /// # Errors
    ///
    /// [`SpawnError`]: outside a tokio runtime, or with two checks of one
    /// name or one of an empty name (their statuses, events and logs could
    /// not be told apart); nothing is started.
    ///
    /// ```
    /// use fusebox_std::monitor::{HealthMonitor, SpawnError};
    ///
    /// assert_eq!(HealthMonitor::new().try_spawn().unwrap_err(), SpawnError::NoRuntime); // no runtime here
    /// ```
    pub fn try_spawn(self) -> Result<MonitorHandle, SpawnError> {
        let mut names = std::collections::HashSet::with_capacity(self.specs.len());
        for spec in &self.specs {
            if spec.name.is_empty() {
                return Err(SpawnError::EmptyCheckName);
            }
            if !names.insert(&*spec.name) {
                return Err(SpawnError::DuplicateCheck {
                    name: crate::registry::shown(&spec.name),
                });
            }
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| SpawnError::NoRuntime)?;
        let started = Instant::now();
        let bus = Bus::new(self.capacity.unwrap_or(64));
        let n = u32::try_from(self.specs.len()).unwrap_or(u32::MAX).max(1);
        let mut cells = Vec::with_capacity(self.specs.len());
        let mut runs = Vec::with_capacity(self.specs.len());
        for (i, spec) in self.specs.into_iter().enumerate() {
            let i = u32::try_from(i).unwrap_or(u32::MAX);
            let first = crate::clock::saturating_add(started, stagger(spec.interval, i, n));
            let recovery = spec.recovery.as_ref().map(|rule| RecoveryStatus {
                primary: stats_for(rule.primary.name()),
                escalation: rule.escalation.as_ref().map(|(_, a)| stats_for(a.name())),
                ..RecoveryStatus::default()
            });
            cells.push(Cell {
                name: Arc::clone(&spec.name),
                target: spec.check.describe().map(|t| redact(&t).into_owned()),
                interval: spec.interval,
                timeout: spec.timeout.unwrap_or(spec.interval),
                thresholds: spec.thresholds,
                critical: spec.critical,
                state: Mutex::new(CheckState {
                    streaks: Streaks::new(),
                    window: Window::new(spec.alerts),
                    runs: 0,
                    failed_runs: 0,
                    last: None,
                    last_run_at: None,
                    recovery,
                }),
            });
            runs.push((spec.check, first, spec.recovery));
        }
        let shared = Arc::new(Shared {
            started,
            cells,
            lag: Arc::clone(&bus.lag),
        });
        let mut tasks = JoinSet::new();
        for (index, (check, first, recovery)) in runs.into_iter().enumerate() {
            let (tx, rx) = watch::channel(Signal::default());
            tasks.spawn_on(
                check_loop(Arc::clone(&shared), bus.clone(), index, check, first, tx),
                &runtime,
            );
            if let Some(rule) = recovery {
                tasks.spawn_on(
                    recovery_loop(Arc::clone(&shared), bus.clone(), index, rule, rx),
                    &runtime,
                );
            }
        }
        Ok(MonitorHandle { shared, bus, tasks })
    }
}

fn stats_for(name: &str) -> ActionStats {
    ActionStats {
        name: name.to_owned(),
        ..ActionStats::default()
    }
}

/// Check `i` of `n`'s first start after spawn: `interval × i / n` (below
/// `interval`, as `i < n`), computed without overflowing for a huge
/// interval (`Duration::MAX`: `interval × i` would not fit).
fn stagger(interval: Duration, i: u32, n: u32) -> Duration {
    interval
        .checked_mul(i)
        .map_or_else(|| interval / n * i, |d| d / n)
}

/// The running monitor. Dropping it aborts every task of the monitor (at
/// their next await point); [`stop`](Self::stop) also waits until they are
/// gone.
///
/// # Cancellation
///
/// A check run or a recovery action in progress when the monitor stops is
/// dropped at its current await point.
///
/// ```
/// use fusebox_std::monitor::{CheckSpec, FnCheck, HealthMonitor};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap().block_on(async {
/// let handle = HealthMonitor::new()
///     .check(CheckSpec::new("noop", FnCheck::new(|| async { Ok(None) })))
///     .spawn();
/// handle.stop().await; // every task has ended here
/// # });
/// ```
///
/// A handle left unused is a warning: the monitor it stands for would stop
/// at once.
///
/// ```compile_fail
/// #![deny(unused_must_use)]
/// use fusebox_std::monitor::{CheckSpec, HealthMonitor, TcpCheck};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// HealthMonitor::new()
///     .check(CheckSpec::new("db", TcpCheck::new("127.0.0.1:5432")))
///     .spawn(); // dropped here: nothing would ever run
/// # });
/// ```
#[derive(Debug)]
#[must_use = "dropping the handle stops the monitor: keep it while the checks should run"]
pub struct MonitorHandle {
    shared: Arc<Shared>,
    bus: Bus,
    tasks: JoinSet<()>,
}

impl MonitorHandle {
    /// A snapshot of every check and of the whole.
    ///
    /// ```
    /// use fusebox_std::monitor::{Health, HealthMonitor};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let status = HealthMonitor::new().spawn().status();
    /// assert_eq!(status.health, Health::Healthy); // no check, nothing wrong
    /// # });
    /// ```
    pub fn status(&self) -> Status {
        self.shared.status()
    }

    /// The monitor's overall health (as in [`status`](Self::status)).
    ///
    /// ```
    /// use fusebox_std::monitor::{Health, HealthMonitor};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// assert_eq!(HealthMonitor::new().spawn().health(), Health::Healthy);
    /// # });
    /// ```
    pub fn health(&self) -> Health {
        self.shared.health()
    }

    /// A cheap, cloneable reader of the monitor's status, for whatever
    /// serves it (a `/health` handler, a registry's report) while the
    /// handle stays with its owner. A reader does not keep the monitor
    /// running; once the monitor stopped it reads the last state, each
    /// check turning [`stale`](super::CheckStatus::stale) (at least
    /// degraded) once its schedule is past.
    ///
    /// ```
    /// use fusebox_std::monitor::{Health, HealthMonitor, StatusReader};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let handle = HealthMonitor::new().spawn();
    /// let reader: StatusReader = handle.reader();
    /// let served = std::thread::spawn(move || reader.health()).join().unwrap();
    /// assert_eq!(served, Health::Healthy);
    /// # });
    /// ```
    pub fn reader(&self) -> StatusReader {
        StatusReader {
            shared: Arc::clone(&self.shared),
        }
    }

    /// A new subscription to the monitor's events (those sent from now
    /// on).
    ///
    /// ```
    /// use fusebox_std::monitor::HealthMonitor;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let handle = HealthMonitor::new().spawn();
    /// let mut events = handle.subscribe();
    /// assert!(events.try_recv().is_none());
    /// # });
    /// ```
    pub fn subscribe(&self) -> Subscription {
        self.bus.subscribe()
    }

    /// Aborts every task and waits until all have ended; subscriptions
    /// then end once drained.
    ///
    /// ```
    /// use fusebox_std::monitor::HealthMonitor;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// HealthMonitor::new().spawn().stop().await;
    /// # });
    /// ```
    pub async fn stop(mut self) {
        self.tasks.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stagger_of_a_huge_interval_does_not_overflow() {
        let second = Duration::from_secs(1);
        assert_eq!(stagger(second, 0, 3), Duration::ZERO);
        assert_eq!(stagger(second * 3, 2, 3), second * 2);
        assert_eq!(stagger(Duration::MAX, 0, 2), Duration::ZERO);
        assert_eq!(stagger(Duration::MAX, 1, 2), Duration::MAX / 2);
        assert!(stagger(Duration::MAX, 2, 3) < Duration::MAX);
    }
}
