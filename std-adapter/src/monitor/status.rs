//! [`Status`] snapshots and the [`StatusReader`] that takes them.

use std::sync::Arc;
use std::time::Duration;

use super::tasks::Shared;
use super::{AlertKind, Health, Probe, RecoveryStatus};

/// Reads a monitor's status without owning it ([`MonitorHandle::reader`](super::MonitorHandle::reader)).
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
    pub(crate) shared: Arc<Shared>,
}

impl StatusReader {
    /// As [`MonitorHandle::status`](super::MonitorHandle::status).
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

    /// As [`MonitorHandle::health`](super::MonitorHandle::health).
    ///
    /// ```
    /// use fusebox_std::monitor::{Health, HealthMonitor};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// assert_eq!(HealthMonitor::new().spawn().reader().health(), Health::Healthy);
    /// # });
    /// ```
    pub fn health(&self) -> Health {
        self.shared.health()
    }
}

/// Snapshot of a monitor ([`MonitorHandle::status`](super::MonitorHandle::status)); serializable with the
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
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Status {
    /// The worst health of the critical checks (a non-critical check
    /// counts at most as degraded); healthy with no check.
    pub health: Health,
    /// Why the monitor is degraded or unhealthy (`None` while no check is
    /// degraded or unhealthy): every such check, the worst first
    /// (unhealthy critical checks, then degraded ones, then those not
    /// critical, each group in the order added), as `check "NAME"
    /// (TARGET) HEALTH: WHY`, where WHY is the failures in a row and the
    /// last error (its kind and message), that the check is stale, or
    /// that it is recovering (passing, not yet for `healthy_after` runs).
    /// With several, `N checks failing: ` comes first and the lines are
    /// joined with `; `.
    ///
    /// Bounded: a name is cut to 64 characters and a target to 128 (then
    /// `…`), an error to 256 by its middle (its start and its end kept,
    /// `…` between: the end of `GET <a long URL>: status 503` says what
    /// failed), and the whole to
    /// [`MAX_REASON_CHARS`](Self::MAX_REASON_CHARS), the checks that do not
    /// fit counted (`; and 7 more`). Redacted, control and reordering
    /// characters escaped (`\n`, `\u{202e}`), a `"` in a name as `\"`.
    /// The target is left out when the error names it already (an
    /// [`HttpCheck`](super::HttpCheck)'s errors name its URL).
    ///
    /// ```
    /// use std::time::Duration;
    /// use fusebox_std::monitor::{CheckError, CheckSpec, ErrorKind, FnCheck, HealthMonitor};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap().block_on(async {
    /// let refused = FnCheck::new(|| async { Err(CheckError::new(ErrorKind::Connect, "connection refused")) })
    ///     .with_target("tcp://app:s3cret@10.0.0.5:5432");
    /// let monitor = HealthMonitor::new()
    ///     .check(CheckSpec::new("db", refused).interval(Duration::from_secs(1)))
    ///     .check(CheckSpec::new("api", FnCheck::new(|| async { Ok(None) })))
    ///     .spawn();
    /// assert_eq!(monitor.status().reason, None); // not run yet
    /// tokio::time::sleep(Duration::from_millis(2_500)).await; // 3 runs
    /// assert_eq!(
    ///     monitor.status().reason.as_deref(),
    ///     Some("check \"db\" (tcp://app:***@10.0.0.5:5432) unhealthy: \
    ///           3 failures in a row, last: connect: connection refused"),
    /// );
    /// # });
    /// ```
    pub reason: Option<String>,
    /// Time since the monitor was spawned.
    #[serde(rename = "uptime_us", serialize_with = "super::ser::us")]
    pub uptime: Duration,
    /// Every check, in the order added.
    pub checks: Vec<CheckStatus>,
    /// Events lost by receivers that fell behind.
    pub lagged_events: u64,
    /// Times a receiver found it had fallen behind.
    pub lagged_receivers: u64,
}

impl Status {
    /// The longest [`reason`](Self::reason), in characters.
    ///
    /// ```
    /// assert_eq!(fusebox_std::monitor::Status::MAX_REASON_CHARS, 1_024);
    /// ```
    pub const MAX_REASON_CHARS: usize = super::reason::MAX_CHARS;
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
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct CheckStatus {
    /// The check's name.
    pub name: String,
    /// What it checks, redacted.
    pub target: Option<String>,
    /// Its health: at least [`Health::Degraded`] while it is
    /// [`stale`](Self::stale).
    pub health: Health,
    /// No run has ended for longer than its schedule allows (one interval
    /// more than `interval + timeout` since the last, at least 1 s more):
    /// its task stopped or never ran (the monitor was stopped or dropped,
    /// its runtime shut down or has no timers). Its health then reads at
    /// least degraded, so that a monitor nobody runs any more does not go
    /// on reporting a healthy dependency.
    pub stale: bool,
    /// Whether it bounds the monitor's health.
    pub critical: bool,
    /// Its interval.
    #[serde(rename = "interval_us", serialize_with = "super::ser::us")]
    pub interval: Duration,
    /// Its timeout.
    #[serde(rename = "timeout_us", serialize_with = "super::ser::us")]
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
    #[serde(rename = "mean_latency_us", serialize_with = "super::ser::us")]
    pub mean_latency: Duration,
    /// The last run's result.
    pub last: Option<Probe>,
    /// When the last run ended.
    #[serde(rename = "last_run_at_us", serialize_with = "super::ser::opt_us")]
    pub last_run_at: Option<Duration>,
    /// Alerts raised and not cleared.
    pub alerts: Vec<AlertKind>,
    /// Recovery statistics, if the check has a rule.
    pub recovery: Option<RecoveryStatus>,
}
