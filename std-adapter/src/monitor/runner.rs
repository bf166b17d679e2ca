//! [`HealthMonitor`]: spawns one task per check (and one per recovery
//! rule), keeps their state for [`Status`] snapshots and sends events.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::alert::Window;
use super::check::{timed, DynCheck};
use super::event::Bus;
use super::guard::unwind_safe;
use super::scrub::scrub;
use super::state::Streaks;
use super::{
    ActionStats, AlertKind, CheckError, CheckSpec, Events, Health, MonitorEvent, Probe,
    RecoveryRule, RecoveryStatus, Thresholds,
};

/// Runs health checks in the background and keeps their verdicts.
///
/// Each check runs on its own interval, in its own task. Starts are
/// staggered deterministically: with `n` checks, check `i` (in the order
/// they were added) first runs `interval_i × i / n` after [`spawn`](Self::spawn),
/// then every `interval_i` after its previous scheduled start (fixed rate;
/// a run that overruns its slot is followed by the next at once). Each run
/// is bounded by the check's timeout. Every wait is a `tokio::time` sleep,
/// so paused time drives the whole schedule in tests.
///
/// Results move each check through the [`Thresholds`] state machine, feed
/// its [`AlertThresholds`](super::AlertThresholds) window and its
/// [`RecoveryRule`]; changes are logged through `tracing` (fields `check`,
/// `from`, `to`, `kind`, `action`, …) and sent as [`MonitorEvent`]s.
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
    /// (at least 1; default 64). Sending never waits: a receiver further
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
    /// Outside a tokio runtime; [`try_spawn`](Self::try_spawn) returns an
    /// error instead.
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
        self.try_spawn()
            .expect("HealthMonitor::spawn called outside a tokio runtime")
    }

    /// Starts every task on the current tokio runtime.
    ///
    /// # Errors
    ///
    /// Outside a tokio runtime.
    ///
    /// ```
    /// use fusebox_std::monitor::HealthMonitor;
    ///
    /// assert!(HealthMonitor::new().try_spawn().is_err()); // no runtime here
    /// ```
    pub fn try_spawn(self) -> Result<MonitorHandle, tokio::runtime::TryCurrentError> {
        let runtime = tokio::runtime::Handle::try_current()?;
        let started = Instant::now();
        let bus = Bus::new(self.capacity.unwrap_or(64));
        let n = u32::try_from(self.specs.len()).unwrap_or(u32::MAX).max(1);
        let mut cells = Vec::with_capacity(self.specs.len());
        let mut runs = Vec::with_capacity(self.specs.len());
        for (i, spec) in self.specs.into_iter().enumerate() {
            let i = u32::try_from(i).unwrap_or(u32::MAX);
            let first = started + spec.interval * i / n;
            let recovery = spec.recovery.as_ref().map(|rule| RecoveryStatus {
                primary: stats_for(rule.primary.name()),
                escalation: rule.escalation.as_ref().map(|(_, a)| stats_for(a.name())),
                ..RecoveryStatus::default()
            });
            cells.push(Cell {
                name: Arc::clone(&spec.name),
                target: spec.check.describe().map(|t| scrub(&t)),
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
#[derive(Debug)]
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
        self.shared.status().health
    }

    /// A cheap, cloneable reader of the monitor's status, for whatever
    /// serves it (a `/health` handler, a registry's report) while the
    /// handle stays with its owner. A reader does not keep the monitor
    /// running; once the monitor stopped it reads the last state.
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
    pub fn subscribe(&self) -> Events {
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

/// Reads a monitor's status without owning it ([`MonitorHandle::reader`]).
///
/// ```
/// use fusebox_std::monitor::HealthMonitor;
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let handle = HealthMonitor::new().spawn();
/// let reader = handle.reader();
/// handle.stop().await;
/// assert!(reader.status().checks.is_empty()); // the last state
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct StatusReader {
    shared: Arc<Shared>,
}

impl StatusReader {
    /// As [`MonitorHandle::status`].
    ///
    /// ```
    /// use fusebox_std::monitor::HealthMonitor;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let handle = HealthMonitor::new().spawn();
    /// assert_eq!(handle.reader().status().lagged_events, 0);
    /// # });
    /// ```
    pub fn status(&self) -> Status {
        self.shared.status()
    }

    /// As [`MonitorHandle::health`].
    ///
    /// ```
    /// use fusebox_std::monitor::{Health, HealthMonitor};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// assert_eq!(HealthMonitor::new().spawn().reader().health(), Health::Healthy);
    /// # });
    /// ```
    pub fn health(&self) -> Health {
        self.shared.status().health
    }
}

/// Snapshot of a monitor ([`MonitorHandle::status`]); serializable with the
/// `serde` feature. Every string in it is redacted. Times are since the
/// monitor was spawned.
///
/// ```
/// use fusebox_std::monitor::HealthMonitor;
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let status = HealthMonitor::new().spawn().status();
/// assert_eq!(status.lagged_events, 0);
/// # });
/// ```
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Status {
    /// The worst health of the critical checks (a non-critical check
    /// counts at most as degraded); healthy with no check.
    pub health: Health,
    /// Time since the monitor was spawned.
    pub uptime: Duration,
    /// Every check, in the order added.
    pub checks: Vec<CheckStatus>,
    /// Events lost by receivers that fell behind.
    pub lagged_events: u64,
    /// Times a receiver found it had fallen behind.
    pub lagged_receivers: u64,
}

/// One check in a [`Status`].
///
/// ```
/// use fusebox_std::monitor::{CheckSpec, HealthMonitor, TcpCheck, Health};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap().block_on(async {
/// let handle = HealthMonitor::new()
///     .check(CheckSpec::new("db", TcpCheck::new("127.0.0.1:5432")))
///     .spawn();
/// let check = &handle.status().checks[0];
/// assert_eq!((check.name.as_str(), check.health), ("db", Health::Unknown)); // not run yet
/// assert_eq!(check.target.as_deref(), Some("tcp://127.0.0.1:5432"));
/// # });
/// ```
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct CheckStatus {
    /// The check's name.
    pub name: String,
    /// What it checks, redacted.
    pub target: Option<String>,
    /// Its health.
    pub health: Health,
    /// Whether it bounds the monitor's health.
    pub critical: bool,
    /// Its interval.
    pub interval: Duration,
    /// Its timeout.
    pub timeout: Duration,
    /// Failed runs in a row.
    pub consecutive_failures: u32,
    /// Passed runs in a row.
    pub consecutive_successes: u32,
    /// Runs so far.
    pub runs: u64,
    /// Failed runs so far.
    pub failed_runs: u64,
    /// Success rate of the alert window, in percent (100 before any run).
    pub success_rate: f64,
    /// Mean latency of the alert window.
    pub mean_latency: Duration,
    /// The last run's result.
    pub last: Option<Probe>,
    /// When the last run ended.
    pub last_run_at: Option<Duration>,
    /// Alerts raised and not cleared.
    pub alerts: Vec<AlertKind>,
    /// Recovery statistics, if the check has a rule.
    pub recovery: Option<RecoveryStatus>,
}

#[derive(Debug)]
struct Shared {
    started: Instant,
    cells: Vec<Cell>,
    /// The bus's lag counters (the bus itself lives in the tasks and the
    /// handle, so a [`StatusReader`] never keeps subscriptions open).
    lag: Arc<super::event::Lag>,
}

#[derive(Debug)]
struct Cell {
    name: Arc<str>,
    target: Option<String>,
    interval: Duration,
    timeout: Duration,
    thresholds: Thresholds,
    critical: bool,
    state: Mutex<CheckState>,
}

#[derive(Debug)]
struct CheckState {
    streaks: Streaks,
    window: Window,
    runs: u64,
    failed_runs: u64,
    last: Option<Probe>,
    last_run_at: Option<Duration>,
    recovery: Option<RecoveryStatus>,
}

/// What a check task tells its recovery task after every run.
#[derive(Clone, Copy, Debug, Default)]
struct Signal {
    failures: u32,
    /// Bumped each time the check becomes healthy.
    healthy_epoch: u64,
}

impl Cell {
    fn lock(&self) -> std::sync::MutexGuard<'_, CheckState> {
        // The state stays consistent across a panic (plain field writes).
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Shared {
    fn since(&self, at: Instant) -> Duration {
        at.saturating_duration_since(self.started)
    }

    fn status(&self) -> Status {
        let checks: Vec<CheckStatus> = self
            .cells
            .iter()
            .map(|cell| {
                let s = cell.lock();
                CheckStatus {
                    name: cell.name.to_string(),
                    target: cell.target.clone(),
                    health: s.streaks.health,
                    critical: cell.critical,
                    interval: cell.interval,
                    timeout: cell.timeout,
                    consecutive_failures: s.streaks.failures,
                    consecutive_successes: s.streaks.successes,
                    runs: s.runs,
                    failed_runs: s.failed_runs,
                    success_rate: s.window.success_rate(),
                    mean_latency: s.window.mean_latency(),
                    last: s.last.clone(),
                    last_run_at: s.last_run_at,
                    alerts: s.window.active(),
                    recovery: s.recovery.clone(),
                }
            })
            .collect();
        let health = checks
            .iter()
            .map(|c| {
                if c.critical {
                    c.health
                } else {
                    c.health.min(Health::Degraded)
                }
            })
            .max()
            .unwrap_or(Health::Healthy);
        Status {
            health,
            uptime: self.since(Instant::now()),
            checks,
            lagged_events: self.lag.events.load(Relaxed),
            lagged_receivers: self.lag.receivers.load(Relaxed),
        }
    }

    /// Records one run; returns the events it causes and the new signal.
    fn record(&self, index: usize, probe: Probe, signal: &mut Signal) -> Vec<MonitorEvent> {
        let cell = &self.cells[index];
        let at = self.since(Instant::now());
        let mut events = Vec::new();
        let mut s = cell.lock();
        let passed = probe.passed();
        s.runs += 1;
        s.failed_runs += u64::from(!passed);
        let from = s.streaks.health;
        if let Some(to) = s.streaks.record(passed, &cell.thresholds) {
            if to == Health::Healthy {
                signal.healthy_epoch += 1;
            }
            events.push(MonitorEvent::HealthChanged {
                check: Arc::clone(&cell.name),
                from,
                to,
                at,
            });
        }
        signal.failures = s.streaks.failures;
        for edge in s.window.push(passed, probe.latency) {
            let (check, kind) = (Arc::clone(&cell.name), edge.kind);
            let (success_rate, mean_latency) = (s.window.success_rate(), s.window.mean_latency());
            events.push(if edge.raised {
                MonitorEvent::AlertRaised {
                    check,
                    kind,
                    success_rate,
                    mean_latency,
                    at,
                }
            } else {
                MonitorEvent::AlertCleared {
                    check,
                    kind,
                    success_rate,
                    mean_latency,
                    at,
                }
            });
        }
        s.last = Some(probe);
        s.last_run_at = Some(at);
        events
    }
}

/// Logs `event` and sends it.
fn publish(bus: &Bus, event: MonitorEvent) {
    match &event {
        MonitorEvent::HealthChanged {
            check, from, to, ..
        } => {
            if *to > Health::Unknown {
                tracing::warn!(check = %check, from = ?from, to = ?to, "health changed");
            } else {
                tracing::info!(check = %check, from = ?from, to = ?to, "health changed");
            }
        }
        MonitorEvent::AlertRaised {
            check,
            kind,
            success_rate,
            mean_latency,
            ..
        } => {
            tracing::warn!(check = %check, kind = ?kind, success_rate, mean_latency_us = mean_latency.as_micros(), "alert raised");
        }
        MonitorEvent::AlertCleared {
            check,
            kind,
            success_rate,
            mean_latency,
            ..
        } => {
            tracing::info!(check = %check, kind = ?kind, success_rate, mean_latency_us = mean_latency.as_micros(), "alert cleared");
        }
        MonitorEvent::RecoveryAttempted {
            check,
            action,
            attempt,
            escalated,
            error,
            ..
        } => {
            tracing::warn!(check = %check, action = %action, attempt, escalated, error = ?error, "recovery attempted");
        }
    }
    bus.send(event);
}

async fn check_loop(
    shared: Arc<Shared>,
    bus: Bus,
    index: usize,
    check: Arc<dyn DynCheck>,
    first: Instant,
    signal_tx: watch::Sender<Signal>,
) {
    let (interval, timeout) = (shared.cells[index].interval, shared.cells[index].timeout);
    let mut next = first;
    let mut signal = Signal::default();
    loop {
        tokio::time::sleep_until(next).await;
        let run = async {
            unwind_safe(|| check.run()).await.unwrap_or_else(|panic| {
                Err(CheckError::other(format_args!("check panicked: {panic}")))
            })
        };
        let probe = timed(run, timeout).await;
        tracing::debug!(
            check = %shared.cells[index].name,
            passed = probe.passed(),
            latency_us = probe.latency.as_micros(),
            error = probe.error.as_ref().map(super::CheckError::message),
            "check ran"
        );
        for event in shared.record(index, probe, &mut signal) {
            publish(&bus, event);
        }
        signal_tx.send_replace(signal);
        next += interval;
        let now = Instant::now();
        if next < now {
            next = now;
        }
    }
}

async fn recovery_loop(
    shared: Arc<Shared>,
    bus: Bus,
    index: usize,
    rule: RecoveryRule,
    mut signal: watch::Receiver<Signal>,
) {
    let cell = &shared.cells[index];
    loop {
        let Ok(epoch) = signal
            .wait_for(|s| s.failures >= rule.after_failures)
            .await
            .map(|s| s.healthy_epoch)
        else {
            return; // the check task ended
        };
        if let Some(r) = cell.lock().recovery.as_mut() {
            r.episodes += 1;
            r.episode_attempts = 0;
            r.escalated = false;
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (action, escalated) = rule.pick(attempt);
            let at = shared.since(Instant::now());
            let result = unwind_safe(|| action.run())
                .await
                .unwrap_or_else(|panic| Err(scrub(&format!("action panicked: {panic}"))));
            let delay = rule.delay_after(attempt);
            let next_at = shared.since(Instant::now()) + delay;
            if let Some(r) = cell.lock().recovery.as_mut() {
                r.episode_attempts = attempt;
                r.escalated |= escalated;
                r.next_attempt_at = Some(next_at);
                let stats = match (&mut r.escalation, escalated) {
                    (Some(stats), true) => stats,
                    _ => &mut r.primary,
                };
                stats.attempts += 1;
                stats.last_attempt_at = Some(at);
                match &result {
                    Ok(()) => stats.successes += 1,
                    Err(e) => stats.last_error = Some(e.clone()),
                }
            }
            publish(
                &bus,
                MonitorEvent::RecoveryAttempted {
                    check: Arc::clone(&cell.name),
                    action: action.shared_name(),
                    attempt,
                    escalated,
                    error: result.err(),
                    at,
                },
            );
            tokio::time::sleep(delay).await;
            if signal.borrow().healthy_epoch != epoch {
                if let Some(r) = cell.lock().recovery.as_mut() {
                    r.next_attempt_at = None;
                }
                break;
            }
        }
    }
}
