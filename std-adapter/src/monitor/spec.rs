//! [`CheckSpec`]: one check and how the monitor runs it.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::check::DynCheck;
use super::{AlertThresholds, HealthCheck, RecoveryRule, Thresholds};
use crate::redact::redact;

/// The shortest interval and timeout a check is given.
pub(crate) const MIN_PERIOD: Duration = Duration::from_millis(1);

/// A named check with its interval, timeout, health thresholds, alert
/// rules and recovery rule.
///
/// Defaults: every 10 s, a timeout equal to the interval, default
/// [`Thresholds`], no alert rule, no recovery, critical.
///
/// ```
/// use std::time::Duration;
/// use fusebox_std::monitor::{CheckSpec, TcpCheck, Thresholds};
///
/// let spec = CheckSpec::new("postgres", TcpCheck::new("127.0.0.1:5432"))
///     .interval(Duration::from_secs(5))
///     .timeout(Duration::from_secs(1))
///     .thresholds(Thresholds::new().unhealthy_after(2));
/// assert_eq!(spec.name(), "postgres");
/// ```
pub struct CheckSpec {
    pub(crate) name: Arc<str>,
    pub(crate) check: Arc<dyn DynCheck>,
    pub(crate) interval: Duration,
    pub(crate) timeout: Option<Duration>,
    pub(crate) thresholds: Thresholds,
    pub(crate) alerts: AlertThresholds,
    pub(crate) recovery: Option<RecoveryRule>,
    pub(crate) critical: bool,
}

impl CheckSpec {
    /// `check` under `name` (a label for the status, logs and events; keep
    /// secrets out of it: it is [redacted](crate::redact) as a target is,
    /// so `name()` returns it masked).
    ///
    /// ```
    /// use fusebox_std::monitor::{CheckSpec, FnCheck};
    ///
    /// let spec = CheckSpec::new("always", FnCheck::new(|| async { Ok(None) }));
    /// assert_eq!(spec.name(), "always");
    /// ```
    pub fn new(name: impl Into<Arc<str>>, check: impl HealthCheck) -> Self {
        Self {
            name: redacted(name.into()),
            check: Arc::new(check),
            interval: Duration::from_secs(10),
            timeout: None,
            thresholds: Thresholds::new(),
            alerts: AlertThresholds::new(),
            recovery: None,
            critical: true,
        }
    }

    /// Time between the starts of two runs (at least 1 ms). Any longer one
    /// is safe: a run (or a staggered first run) more than ~30 years away
    /// (`Duration::MAX`) is put ~30 years ahead, never a panic.
    ///
    /// ```
    /// use std::time::Duration;
    /// use fusebox_std::monitor::{CheckSpec, FnCheck};
    ///
    /// let spec = CheckSpec::new("c", FnCheck::new(|| async { Ok(None) })).interval(Duration::ZERO);
    /// # drop(spec);
    /// ```
    #[must_use]
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(MIN_PERIOD);
        self
    }

    /// How long one run may take before it counts as a failure
    /// ([`ErrorKind::Timeout`](super::ErrorKind::Timeout)); at least 1 ms,
    /// as for [`interval`](Self::interval) (a zero timeout would fail every
    /// check that does not finish on its first poll, whatever its target's
    /// health).
    ///
    /// ```
    /// use std::time::Duration;
    /// use fusebox_std::monitor::{CheckSpec, FnCheck};
    ///
    /// let spec = CheckSpec::new("c", FnCheck::new(|| async { Ok(None) })).timeout(Duration::from_millis(500));
    /// # drop(spec);
    /// ```
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout.max(MIN_PERIOD));
        self
    }

    /// The consecutive counts deciding [`Health`](super::Health).
    ///
    /// ```
    /// use fusebox_std::monitor::{CheckSpec, FnCheck, Thresholds};
    ///
    /// let spec = CheckSpec::new("c", FnCheck::new(|| async { Ok(None) }))
    ///     .thresholds(Thresholds::new().unhealthy_after(5));
    /// # drop(spec);
    /// ```
    #[must_use]
    pub fn thresholds(mut self, thresholds: Thresholds) -> Self {
        self.thresholds = thresholds;
        self
    }

    /// Alert rules over the recent runs.
    ///
    /// ```
    /// use fusebox_std::monitor::{AlertThresholds, CheckSpec, FnCheck};
    ///
    /// let spec = CheckSpec::new("c", FnCheck::new(|| async { Ok(None) }))
    ///     .alerts(AlertThresholds::new().min_success_rate(90));
    /// # drop(spec);
    /// ```
    #[must_use]
    pub fn alerts(mut self, alerts: AlertThresholds) -> Self {
        self.alerts = alerts;
        self
    }

    /// Recovery actions for when the check keeps failing.
    ///
    /// ```
    /// use fusebox_std::monitor::{CheckSpec, FnCheck, RecoveryAction, RecoveryRule};
    ///
    /// let spec = CheckSpec::new("c", FnCheck::new(|| async { Ok(None) }))
    ///     .recovery(RecoveryRule::new(3, RecoveryAction::new("reset", || async { Ok::<(), String>(()) })));
    /// # drop(spec);
    /// ```
    #[must_use]
    pub fn recovery(mut self, rule: RecoveryRule) -> Self {
        self.recovery = Some(rule);
        self
    }

    /// Whether this check's health bounds the monitor's (default `true`).
    /// A non-critical check makes the monitor at worst
    /// [`Degraded`](super::Health::Degraded).
    ///
    /// ```
    /// use fusebox_std::monitor::{CheckSpec, FnCheck};
    ///
    /// let spec = CheckSpec::new("metrics-sink", FnCheck::new(|| async { Ok(None) })).critical(false);
    /// # drop(spec);
    /// ```
    #[must_use]
    pub fn critical(mut self, critical: bool) -> Self {
        self.critical = critical;
        self
    }

    /// The check's name.
    ///
    /// ```
    /// use fusebox_std::monitor::{CheckSpec, FnCheck};
    ///
    /// assert_eq!(CheckSpec::new("x", FnCheck::new(|| async { Ok(None) })).name(), "x");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// `name` [redacted](crate::redact): a check's or an action's name is
/// stored, logged and sent as its target is (found by a hostile review:
/// names were kept verbatim in the status, whose every string is
/// documented as redacted).
pub(crate) fn redacted(name: Arc<str>) -> Arc<str> {
    match redact(&name) {
        std::borrow::Cow::Borrowed(_) => name,
        std::borrow::Cow::Owned(masked) => masked.into(),
    }
}

impl fmt::Debug for CheckSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckSpec")
            .field("name", &self.name)
            .field(
                "target",
                &self.check.describe().map(|t| redact(&t).into_owned()),
            )
            .field("interval", &self.interval)
            .field("timeout", &self.timeout)
            .field("thresholds", &self.thresholds)
            .field("alerts", &self.alerts)
            .field("recovery", &self.recovery)
            .field("critical", &self.critical)
            .finish()
    }
}
