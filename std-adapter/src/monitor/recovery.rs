//! [`RecoveryRule`]: actions run when a check keeps failing, with a
//! cooldown, exponential backoff and escalation.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::redact::redact_cut;

type BoxedAction = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// A named async action (reconnect, clear a cache, restart a worker). Its
/// name (kept [redacted](crate::redact)) and its error are redacted
/// before they are stored, logged or sent.
///
/// ```
/// use fusebox_std::monitor::RecoveryAction;
///
/// let action = RecoveryAction::new("reconnect", || async { Ok::<(), std::io::Error>(()) });
/// assert_eq!(action.name(), "reconnect");
/// ```
#[derive(Clone)]
pub struct RecoveryAction {
    name: Arc<str>,
    run: Arc<dyn Fn() -> BoxedAction + Send + Sync>,
}

impl RecoveryAction {
    /// An action named `name` running the future `make` returns.
    ///
    /// ```
    /// use fusebox_std::monitor::RecoveryAction;
    ///
    /// let flush = RecoveryAction::new("flush-cache", || async { Err::<(), _>("cache://u:pw@c unreachable") });
    /// # drop(flush);
    /// ```
    pub fn new<F, Fut, E>(name: impl Into<Arc<str>>, make: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: fmt::Display,
    {
        Self {
            name: super::spec::redacted(name.into()),
            run: Arc::new(move || {
                let fut = make();
                // Redacted and cut as a check's error is: it is kept in the
                // status, published and logged (found by a hostile review:
                // a 1 MiB error was kept whole).
                Box::pin(async move {
                    fut.await.map_err(|e| {
                        redact_cut(&e.to_string(), super::CheckError::MAX_MESSAGE_CHARS)
                    })
                })
            }),
        }
    }

    /// The action's name.
    ///
    /// ```
    /// use fusebox_std::monitor::RecoveryAction;
    ///
    /// assert_eq!(RecoveryAction::new("noop", || async { Ok::<(), String>(()) }).name(), "noop");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn shared_name(&self) -> Arc<str> {
        Arc::clone(&self.name)
    }

    pub(crate) fn run(&self) -> BoxedAction {
        (self.run)()
    }
}

impl fmt::Debug for RecoveryAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecoveryAction")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// When and how a check's recovery actions run.
///
/// # Schedule
///
/// An *episode* starts when the check's failure streak reaches
/// `after_failures`: attempt 1 runs at once (the instant of that failing
/// result). After attempt *k* ends, the next may start `cooldown × factor^(k−1)`
/// later (capped at `max_backoff`): with the defaults (30 s, ×2, 10 min)
/// the attempts start at 0, 30 s, 90 s, 210 s, … after the trigger when
/// they take no time. The episode is over as soon as the check becomes
/// [`Healthy`](super::Health::Healthy) (the backoff resets, and the
/// status's [`next_attempt_at`](RecoveryStatus::next_attempt_at) is
/// cleared then); until it does, the next attempt runs when its wait is
/// over, whether or not the check ran in between. A check that became
/// healthy and then fails `after_failures` times again starts a new
/// episode at once, its attempt 1 at that failing result (the old
/// episode's wait is not served).
///
/// Attempts `1..=escalate_after` run the primary action; later attempts
/// run the escalation action, if one is set (else the primary again).
/// Every attempt counts in [`ActionStats`]; a failing action does not
/// change the schedule (the check's health decides, not the action's
/// result).
///
/// ```
/// use std::time::Duration;
/// use fusebox_std::monitor::{RecoveryAction, RecoveryRule};
///
/// let rule = RecoveryRule::new(3, RecoveryAction::new("reconnect", || async { Ok::<(), String>(()) }))
///     .cooldown(Duration::from_secs(10))
///     .backoff(3, Duration::from_secs(120))
///     .escalate(2, RecoveryAction::new("restart", || async { Ok::<(), String>(()) }));
/// assert_eq!(rule.delay_after(1), Duration::from_secs(10));
/// assert_eq!(rule.delay_after(2), Duration::from_secs(30));
/// assert_eq!(rule.delay_after(4), Duration::from_secs(120)); // 270 s capped
/// ```
#[derive(Clone, Debug)]
pub struct RecoveryRule {
    pub(crate) after_failures: u32,
    pub(crate) primary: RecoveryAction,
    pub(crate) escalation: Option<(u32, RecoveryAction)>,
    cooldown: Duration,
    factor: u32,
    max_backoff: Duration,
    pub(crate) timeout: Duration,
}

impl RecoveryRule {
    /// Runs `action` once the check failed `after_failures` times in a row
    /// (at least 1).
    ///
    /// ```
    /// use fusebox_std::monitor::{RecoveryAction, RecoveryRule};
    ///
    /// let rule = RecoveryRule::new(0, RecoveryAction::new("a", || async { Ok::<(), String>(()) }));
    /// assert_eq!(rule.after_failures(), 1);
    /// ```
    pub fn new(after_failures: u32, action: RecoveryAction) -> Self {
        Self {
            after_failures: after_failures.max(1),
            primary: action,
            escalation: None,
            cooldown: Duration::from_secs(30),
            factor: 2,
            max_backoff: Duration::from_secs(600),
            timeout: Self::DEFAULT_TIMEOUT,
        }
    }

    /// How long an attempt may run before it is given up:
    /// [`timeout`](Self::timeout)'s default.
    ///
    /// ```
    /// use std::time::Duration;
    /// use fusebox_std::monitor::{RecoveryAction, RecoveryRule};
    ///
    /// assert_eq!(RecoveryRule::DEFAULT_TIMEOUT, Duration::from_secs(60));
    /// let rule = RecoveryRule::new(3, RecoveryAction::new("reconnect", || async { Ok::<(), String>(()) }));
    /// assert!(format!("{rule:?}").contains("timeout: 60s"));
    /// ```
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

    /// How long one attempt may run (default
    /// [`DEFAULT_TIMEOUT`](Self::DEFAULT_TIMEOUT), at least 1 ms). An
    /// attempt still running then is dropped (its future cancelled) and
    /// counted as failed with the error `timed out after …`, and the
    /// schedule goes on: an action that hangs (a reconnect to a host that
    /// never answers) cannot stop the episode's later attempts or its
    /// escalation. `Duration::MAX` never gives up.
    ///
    /// ```
    /// use std::time::Duration;
    /// use fusebox_std::monitor::{RecoveryAction, RecoveryRule};
    ///
    /// let rule = RecoveryRule::new(1, RecoveryAction::new("a", || async { Ok::<(), String>(()) }))
    ///     .timeout(Duration::from_secs(5));
    /// assert_eq!(rule.attempt_timeout(), Duration::from_secs(5));
    /// ```
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// How long one attempt may run.
    ///
    /// ```
    /// use fusebox_std::monitor::{RecoveryAction, RecoveryRule};
    ///
    /// let rule = RecoveryRule::new(1, RecoveryAction::new("a", || async { Ok::<(), String>(()) }));
    /// assert_eq!(rule.attempt_timeout(), RecoveryRule::DEFAULT_TIMEOUT);
    /// ```
    pub const fn attempt_timeout(&self) -> Duration {
        self.timeout
    }

    /// The wait after the first attempt of an episode (default 30 s, at
    /// least 1 ms, as a check's interval: a zero cooldown would run the
    /// action in a loop that never waits). Any longer duration is safe:
    /// the waits saturate at `Duration::MAX` (no further attempt), and so
    /// does the status's `next_attempt_at`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use fusebox_std::monitor::{RecoveryAction, RecoveryRule};
    ///
    /// let rule = RecoveryRule::new(1, RecoveryAction::new("a", || async { Ok::<(), String>(()) }))
    ///     .cooldown(Duration::from_secs(5));
    /// assert_eq!(rule.delay_after(1), Duration::from_secs(5));
    /// ```
    #[must_use]
    pub fn cooldown(mut self, cooldown: Duration) -> Self {
        self.cooldown = cooldown.max(Duration::from_millis(1));
        self
    }

    /// Each wait is `factor` times the previous one (at least 1; default
    /// 2), up to `max` (default 10 min).
    ///
    /// ```
    /// use std::time::Duration;
    /// use fusebox_std::monitor::{RecoveryAction, RecoveryRule};
    ///
    /// let rule = RecoveryRule::new(1, RecoveryAction::new("a", || async { Ok::<(), String>(()) }))
    ///     .cooldown(Duration::from_secs(1))
    ///     .backoff(1, Duration::from_secs(60)); // a fixed 1 s cooldown
    /// assert_eq!(rule.delay_after(9), Duration::from_secs(1));
    /// ```
    #[must_use]
    pub fn backoff(mut self, factor: u32, max: Duration) -> Self {
        self.factor = factor.max(1);
        self.max_backoff = max;
        self
    }

    /// After `after_attempts` attempts of the primary action in one episode
    /// (at least 1), run `action` instead.
    ///
    /// ```
    /// use fusebox_std::monitor::{RecoveryAction, RecoveryRule};
    ///
    /// let ok = || async { Ok::<(), String>(()) };
    /// let rule = RecoveryRule::new(2, RecoveryAction::new("reconnect", ok))
    ///     .escalate(3, RecoveryAction::new("failover", ok));
    /// assert_eq!(rule.action_for(3).name(), "reconnect");
    /// assert_eq!(rule.action_for(4).name(), "failover");
    /// ```
    #[must_use]
    pub fn escalate(mut self, after_attempts: u32, action: RecoveryAction) -> Self {
        self.escalation = Some((after_attempts.max(1), action));
        self
    }

    /// The failure streak that starts an episode.
    ///
    /// ```
    /// use fusebox_std::monitor::{RecoveryAction, RecoveryRule};
    ///
    /// let rule = RecoveryRule::new(4, RecoveryAction::new("a", || async { Ok::<(), String>(()) }));
    /// assert_eq!(rule.after_failures(), 4);
    /// ```
    pub const fn after_failures(&self) -> u32 {
        self.after_failures
    }

    /// The wait after attempt `attempt` (from 1) of an episode:
    /// `cooldown × factor^(attempt−1)`, capped at the backoff maximum.
    ///
    /// ```
    /// use std::time::Duration;
    /// use fusebox_std::monitor::{RecoveryAction, RecoveryRule};
    ///
    /// let rule = RecoveryRule::new(1, RecoveryAction::new("a", || async { Ok::<(), String>(()) }));
    /// assert_eq!(rule.delay_after(3), Duration::from_secs(120));
    /// assert_eq!(rule.delay_after(40), Duration::from_secs(600));
    /// ```
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let cap = self.max_backoff.max(self.cooldown);
        // Multiplied one factor at a time, up to the cap (found by a
        // hostile review: `factor^(attempt−1)` saturated at `u32::MAX`, so
        // with a 1 ms cooldown, ×2 and no cap the waits stopped growing at
        // ~49.7 days from attempt 33 on, below the documented
        // `cooldown × factor^(attempt−1)`). A factor of 2 or more reaches
        // any cap within ~100 steps from 1 ms; a factor of 1 never grows.
        let mut delay = self.cooldown;
        if self.factor > 1 {
            for _ in 1..attempt {
                if delay >= cap {
                    break;
                }
                delay = delay.checked_mul(self.factor).unwrap_or(Duration::MAX);
            }
        }
        delay.min(cap)
    }

    /// The action attempt `attempt` (from 1) of an episode runs, and
    /// whether it is the escalation.
    ///
    /// ```
    /// use fusebox_std::monitor::{RecoveryAction, RecoveryRule};
    ///
    /// let rule = RecoveryRule::new(1, RecoveryAction::new("only", || async { Ok::<(), String>(()) }));
    /// assert_eq!(rule.action_for(100).name(), "only");
    /// ```
    pub fn action_for(&self, attempt: u32) -> &RecoveryAction {
        self.pick(attempt).0
    }

    pub(crate) fn pick(&self, attempt: u32) -> (&RecoveryAction, bool) {
        match &self.escalation {
            Some((after, action)) if attempt > *after => (action, true),
            _ => (&self.primary, false),
        }
    }
}

/// What one recovery action did, in a [`Status`](super::Status).
///
/// ```
/// use fusebox_std::monitor::ActionStats;
///
/// let stats = ActionStats::default();
/// assert_eq!(stats.attempts, 0);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ActionStats {
    /// The action's name.
    pub name: String,
    /// Times it ran.
    pub attempts: u64,
    /// Times it returned `Ok`.
    pub successes: u64,
    /// Its last error, redacted.
    pub last_error: Option<String>,
    /// When its last attempt started (since the monitor started).
    #[serde(rename = "last_attempt_at_us", serialize_with = "super::ser::opt_us")]
    pub last_attempt_at: Option<Duration>,
}

/// The recovery side of a check's status.
///
/// ```
/// use fusebox_std::monitor::RecoveryStatus;
///
/// let status = RecoveryStatus::default();
/// assert!(!status.escalated);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RecoveryStatus {
    /// Episodes begun.
    pub episodes: u64,
    /// Attempts in the current (or last) episode.
    pub episode_attempts: u32,
    /// Whether the current (or last) episode reached the escalation action.
    pub escalated: bool,
    /// When the next attempt may start, while an episode is running
    /// (`None` from the moment the check is healthy again).
    #[serde(rename = "next_attempt_at_us", serialize_with = "super::ser::opt_us")]
    pub next_attempt_at: Option<Duration>,
    /// The primary action's statistics.
    pub primary: ActionStats,
    /// The escalation action's statistics, if one is set.
    pub escalation: Option<ActionStats>,
}

#[cfg(test)]
mod tests {
    use super::{RecoveryAction, RecoveryRule};
    use crate::monitor::CheckError;
    use std::time::Duration;

    /// The wait is `cooldown × factor^(attempt−1)` capped at the maximum,
    /// whatever the attempt: the growth saturated at `u32::MAX`, so with
    /// a 1 ms cooldown, ×2 and no cap every wait from attempt 33 on was
    /// 4 294 967.295 s (not 4 294 967.296 s, 8 589 934.592 s, …), and with
    /// a factor of `u32::MAX` every wait from attempt 2 on was the same
    /// (found by a hostile review). The model is exact integer arithmetic
    /// in nanoseconds, saturating at `Duration::MAX`.
    #[test]
    fn the_backoff_keeps_growing_past_a_u32_factor_power() {
        // The documented formula, in saturating u128 nanoseconds.
        let model = |cooldown: Duration, factor: u32, max: Duration, attempt: u32| {
            let growth = u128::from(factor)
                .checked_pow(attempt.saturating_sub(1))
                .unwrap_or(u128::MAX);
            let nanos = cooldown
                .as_nanos()
                .saturating_mul(growth)
                .min(max.max(cooldown).as_nanos());
            let secs = u64::try_from(nanos / 1_000_000_000).unwrap();
            #[allow(clippy::cast_possible_truncation, reason = "below 10^9")]
            let sub = (nanos % 1_000_000_000) as u32;
            Duration::new(secs, sub)
        };
        let ms = Duration::from_millis;
        let noop = || RecoveryAction::new("a", || async { Ok::<(), String>(()) });
        for (cooldown, factor, max) in [
            (ms(1), 2, Duration::MAX),
            (ms(1), 3, Duration::MAX),
            (Duration::from_secs(1), u32::MAX, Duration::MAX),
            (ms(1), 2, Duration::from_secs(86_400 * 365)),
            (ms(7), 1, Duration::MAX),
            (Duration::MAX, 2, Duration::ZERO),
            (Duration::from_secs(30), 2, Duration::from_secs(600)),
        ] {
            let rule = RecoveryRule::new(1, noop())
                .cooldown(cooldown)
                .backoff(factor, max);
            for attempt in (0..=200).chain([u32::MAX - 1, u32::MAX]) {
                assert_eq!(
                    rule.delay_after(attempt),
                    model(cooldown, factor, max, attempt),
                    "{cooldown:?} ×{factor} up to {max:?}, attempt {attempt}"
                );
            }
        }
        let doubling = RecoveryRule::new(1, noop())
            .cooldown(ms(1))
            .backoff(2, Duration::MAX);
        assert_eq!(doubling.delay_after(33), ms(1 << 32));
        assert_eq!(doubling.delay_after(34), ms(1 << 33));
        assert_eq!(doubling.delay_after(u32::MAX), Duration::MAX);
    }

    /// An action's error is kept in the status, published and logged: it
    /// is redacted and cut as a check's is (found by a hostile review: a
    /// 1 MiB error was kept whole).
    #[tokio::test]
    async fn an_action_error_is_redacted_and_cut() {
        let huge = RecoveryAction::new("restart", || async {
            Err::<(), _>(format!("redis://app:hunter2@db {}", "x".repeat(1 << 20)))
        });
        let error = huge.run().await.unwrap_err();
        assert!(!error.contains("hunter2"), "{}", &error[..40]);
        assert_eq!(
            error.chars().count(),
            CheckError::MAX_MESSAGE_CHARS + 1,
            "cut, with its mark"
        );
    }
}
