//! [`MonitorEvent`]s on a bounded broadcast channel that never blocks the
//! monitor, and [`Subscription`], a receiver that counts what it missed.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;

use super::{AlertKind, Health};

/// Something the monitor noticed. Times are since the monitor was spawned
/// (tokio time, so exact under paused time).
///
/// ```
/// use std::time::Duration;
/// use fusebox_std::monitor::{Health, MonitorEvent};
///
/// let e = MonitorEvent::HealthChanged {
///     check: "db".into(), from: Health::Healthy, to: Health::Degraded,
///     reason: Some("check \"db\" degraded: 1 failure in a row, last: other: lag".into()),
///     at: Duration::ZERO,
/// };
/// assert_eq!(e.check(), "db");
/// ```
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum MonitorEvent {
    /// A check's [`Health`] changed.
    HealthChanged {
        /// The check's name.
        check: Arc<str>,
        /// The state before.
        from: Health,
        /// The state after.
        to: Health,
        /// Why, when the check became degraded or unhealthy (`None` when
        /// it became healthy): the check's line as in
        /// [`Status::reason`](super::Status::reason), with the run that
        /// changed it (`check "db" (tcp://db:5432) unhealthy: 3 failures
        /// in a row, last: connect: connection refused`), bounded and
        /// redacted as there.
        reason: Option<String>,
        /// When (since the monitor started).
        #[serde(rename = "at_us", serialize_with = "super::ser::us")]
        at: Duration,
    },
    /// An alert rule was broken ([`AlertThresholds`](super::AlertThresholds)).
    AlertRaised {
        /// The check's name.
        check: Arc<str>,
        /// Which rule.
        kind: AlertKind,
        /// The window's success rate, in percent.
        success_rate: f64,
        /// The window's mean response time.
        #[serde(rename = "mean_latency_us", serialize_with = "super::ser::us")]
        mean_latency: Duration,
        /// The check's line as in [`Status::reason`](super::Status::reason)
        /// when the run that raised the alert left it degraded or
        /// unhealthy (its failures and last error); `None` while it is
        /// healthy (a slow check that passes).
        reason: Option<String>,
        /// When (since the monitor started).
        #[serde(rename = "at_us", serialize_with = "super::ser::us")]
        at: Duration,
    },
    /// A broken alert rule holds again.
    AlertCleared {
        /// The check's name.
        check: Arc<str>,
        /// Which rule.
        kind: AlertKind,
        /// The window's success rate, in percent.
        success_rate: f64,
        /// The window's mean response time.
        #[serde(rename = "mean_latency_us", serialize_with = "super::ser::us")]
        mean_latency: Duration,
        /// When (since the monitor started).
        #[serde(rename = "at_us", serialize_with = "super::ser::us")]
        at: Duration,
    },
    /// A recovery action ran ([`RecoveryRule`](super::RecoveryRule)).
    RecoveryAttempted {
        /// The check's name.
        check: Arc<str>,
        /// The action's name.
        action: Arc<str>,
        /// Attempt number in this failure episode (from 1).
        attempt: u32,
        /// Whether this was the escalation action.
        escalated: bool,
        /// The action's redacted error, if it failed.
        error: Option<String>,
        /// When the attempt started (since the monitor started).
        #[serde(rename = "at_us", serialize_with = "super::ser::us")]
        at: Duration,
    },
}

impl MonitorEvent {
    /// The check the event is about.
    ///
    /// ```
    /// use std::time::Duration;
    /// use fusebox_std::monitor::{AlertKind, MonitorEvent};
    ///
    /// let e = MonitorEvent::AlertCleared {
    ///     check: "api".into(), kind: AlertKind::SuccessRate,
    ///     success_rate: 100.0, mean_latency: Duration::ZERO, at: Duration::ZERO,
    /// };
    /// assert_eq!(e.check(), "api");
    /// ```
    pub fn check(&self) -> &str {
        match self {
            Self::HealthChanged { check, .. }
            | Self::AlertRaised { check, .. }
            | Self::AlertCleared { check, .. }
            | Self::RecoveryAttempted { check, .. } => check,
        }
    }
}

/// The monitor's sending side: a bounded `tokio::sync::broadcast`. Sending
/// never waits; a receiver that falls more than the capacity behind loses
/// the oldest events, which its [`Subscription`] counts.
#[derive(Clone, Debug)]
pub(crate) struct Bus {
    tx: broadcast::Sender<MonitorEvent>,
    pub(crate) lag: Arc<Lag>,
}

/// What receivers missed, for the status.
#[derive(Debug, Default)]
pub(crate) struct Lag {
    /// Events lost by lagging receivers (summed over receivers).
    pub(crate) events: AtomicU64,
    /// Times a receiver found it had lagged.
    pub(crate) receivers: AtomicU64,
}

impl Bus {
    pub(crate) fn new(capacity: usize) -> Self {
        // Bounded as `Events::new` bounds its own: tokio allocates every
        // slot at once and panics above `usize::MAX / 2`.
        let capacity = capacity.clamp(1, crate::events::Events::MAX_CAPACITY);
        let (tx, _) = broadcast::channel(capacity);
        Self {
            tx,
            lag: Arc::default(),
        }
    }

    /// Sends to every current receiver; nobody listening is fine.
    pub(crate) fn send(&self, event: MonitorEvent) {
        let _ = self.tx.send(event);
    }

    pub(crate) fn subscribe(&self) -> Subscription {
        Subscription {
            rx: self.tx.subscribe(),
            lag: Arc::clone(&self.lag),
            missed: 0,
        }
    }
}

/// A subscription to a monitor's events (from
/// [`MonitorHandle::subscribe`](super::MonitorHandle::subscribe)). A
/// receiver that lags past the channel's capacity skips the lost events,
/// and the loss is counted in the monitor's status
/// ([`Status::lagged_events`](super::Status::lagged_events)).
///
/// To bridge into another bus, loop on [`recv`](Self::recv) and forward,
/// or take the raw receiver with [`into_inner`](Self::into_inner).
///
/// ```
/// use std::time::Duration;
/// use fusebox_std::monitor::{CheckError, CheckSpec, FnCheck, HealthMonitor, MonitorEvent};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap().block_on(async {
/// let monitor = HealthMonitor::new()
///     .check(CheckSpec::new("down", FnCheck::new(|| async { Err(CheckError::other("no")) })))
///     .spawn();
/// let mut events = monitor.subscribe();
/// match events.recv().await {
///     Some(MonitorEvent::HealthChanged { to, .. }) => assert_eq!(to, fusebox_std::monitor::Health::Degraded),
///     other => panic!("{other:?}"),
/// }
/// # });
/// ```
#[derive(Debug)]
pub struct Subscription {
    rx: broadcast::Receiver<MonitorEvent>,
    lag: Arc<Lag>,
    missed: u64,
}

impl Subscription {
    /// The next event; `None` once the monitor has stopped and every sent
    /// event was received. Lost events are skipped and counted.
    ///
    /// ```
    /// use fusebox_std::monitor::HealthMonitor;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let monitor = HealthMonitor::new().spawn();
    /// let mut events = monitor.subscribe();
    /// monitor.stop().await;
    /// assert!(events.recv().await.is_none());
    /// # });
    /// ```
    pub async fn recv(&mut self) -> Option<MonitorEvent> {
        loop {
            match self.rx.recv().await {
                Ok(event) => return Some(event),
                Err(broadcast::error::RecvError::Lagged(n)) => self.lagged(n),
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// The next event if one is waiting, without waiting.
    ///
    /// ```
    /// use fusebox_std::monitor::HealthMonitor;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let monitor = HealthMonitor::new().spawn();
    /// assert!(monitor.subscribe().try_recv().is_none());
    /// # });
    /// ```
    pub fn try_recv(&mut self) -> Option<MonitorEvent> {
        loop {
            match self.rx.try_recv() {
                Ok(event) => return Some(event),
                Err(broadcast::error::TryRecvError::Lagged(n)) => self.lagged(n),
                Err(_) => return None,
            }
        }
    }

    /// The raw broadcast receiver (lag is then yours to count).
    ///
    /// ```
    /// use fusebox_std::monitor::HealthMonitor;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let monitor = HealthMonitor::new().spawn();
    /// let rx: tokio::sync::broadcast::Receiver<_> = monitor.subscribe().into_inner();
    /// assert!(rx.is_empty());
    /// # });
    /// ```
    pub fn into_inner(self) -> broadcast::Receiver<MonitorEvent> {
        self.rx
    }

    /// Events this subscription lost by falling behind.
    ///
    /// ```
    /// use fusebox_std::monitor::HealthMonitor;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let monitor = HealthMonitor::new().spawn();
    /// assert_eq!(monitor.subscribe().missed(), 0);
    /// # });
    /// ```
    pub fn missed(&self) -> u64 {
        self.missed
    }

    fn lagged(&mut self, n: u64) {
        self.missed += n;
        self.lag.events.fetch_add(n, Relaxed);
        self.lag.receivers.fetch_add(1, Relaxed);
        tracing::warn!(lost = n, "monitor event receiver lagged");
    }
}
