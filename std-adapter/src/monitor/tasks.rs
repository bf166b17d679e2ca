//! The monitor's tasks: one per check (run, record, publish) and one per
//! recovery rule, and the shared state they keep for [`Status`] snapshots.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::alert::Window;
use super::check::{guarded, timed, DynCheck};
use super::event::{Bus, Lag};
use super::guard::unwind_safe;
use super::reason::Line;
use super::state::Streaks;
use super::{
    CheckStatus, Health, MonitorEvent, Probe, RecoveryRule, RecoveryStatus, Status, Thresholds,
};
use crate::redact::{redact_cut, Redacted};

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) started: Instant,
    pub(crate) cells: Vec<Cell>,
    /// The bus's lag counters (the bus itself lives in the tasks and the
    /// handle, so a [`StatusReader`](super::StatusReader) never keeps subscriptions open).
    pub(crate) lag: Arc<Lag>,
}

#[derive(Debug)]
pub(crate) struct Cell {
    pub(crate) name: Arc<str>,
    pub(crate) target: Option<String>,
    pub(crate) interval: Duration,
    pub(crate) timeout: Duration,
    pub(crate) thresholds: Thresholds,
    pub(crate) critical: bool,
    pub(crate) state: Mutex<CheckState>,
}

#[derive(Debug)]
pub(crate) struct CheckState {
    pub(crate) streaks: Streaks,
    pub(crate) window: Window,
    pub(crate) runs: u64,
    pub(crate) failed_runs: u64,
    pub(crate) last: Option<Probe>,
    pub(crate) last_run_at: Option<Duration>,
    pub(crate) recovery: Option<RecoveryStatus>,
}

/// What a check task tells its recovery task after every run.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Signal {
    pub(crate) failures: u32,
    /// Bumped each time the check becomes healthy.
    pub(crate) healthy_epoch: u64,
}

impl Cell {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, CheckState> {
        // The state stays consistent across a panic (plain field writes).
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether no run has ended for longer than the schedule allows: runs
    /// end at most `interval + timeout` apart (a run starts one interval
    /// after the previous start, or at once after an overrun, and lasts
    /// at most its timeout; after a late start, whose missed slots are
    /// skipped, between half an interval and one and a half, within the
    /// margin below), and the first one within `interval + timeout`
    /// of the start; a check is stale past that by one more interval (at
    /// least 1 s, room for a busy runtime). Saturating: a check that runs
    /// every `Duration::MAX` is never stale.
    fn is_stale(&self, last_run_at: Option<Duration>, now: Duration) -> bool {
        let allowed = self
            .interval
            .saturating_add(self.timeout)
            .saturating_add(self.interval.max(Duration::from_secs(1)));
        now.saturating_sub(last_run_at.unwrap_or(Duration::ZERO)) > allowed
    }

    /// The check's health as reported at `now` (since the start), and
    /// whether it is stale: a stale check (its task stopped, or never ran:
    /// the monitor stopped, its runtime gone or without timers) is never
    /// better than [`Health::Degraded`], and keeps a worse verdict: going
    /// stale never turns an unhealthy check ready.
    fn reported(&self, s: &CheckState, now: Duration) -> (Health, bool) {
        let stale = self.is_stale(s.last_run_at, now);
        let health = if stale {
            s.streaks.health.max(Health::Degraded)
        } else {
            s.streaks.health
        };
        (health, stale)
    }
}

impl Shared {
    pub(crate) fn since(&self, at: Instant) -> Duration {
        at.saturating_duration_since(self.started)
    }

    pub(crate) fn status(&self) -> Status {
        #[cfg(test)]
        STATUSES_BUILT.with(|built| built.set(built.get() + 1));
        let now = self.since(Instant::now());
        let checks: Vec<CheckStatus> = self
            .cells
            .iter()
            .map(|cell| {
                let s = cell.lock();
                let (health, stale) = cell.reported(&s, now);
                CheckStatus {
                    name: cell.name.to_string(),
                    target: cell.target.clone(),
                    health,
                    stale,
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
        let health = overall(checks.iter().map(|c| (c.health, c.critical)));
        Status {
            health,
            reason: super::reason::of_status(&checks, now),
            uptime: self.since(Instant::now()),
            checks,
            lagged_events: self.lag.events.load(Relaxed),
            lagged_receivers: self.lag.receivers.load(Relaxed),
        }
    }

    /// The overall health alone, as [`status`](Self::status) has it,
    /// without building the rest (found by a hostile review: `/readyz`,
    /// open to anyone and documented to compute nothing but its verdict,
    /// built the whole status, every alert window summed).
    pub(crate) fn health(&self) -> Health {
        let now = self.since(Instant::now());
        overall(
            self.cells
                .iter()
                .map(|cell| (cell.reported(&cell.lock(), now).0, cell.critical)),
        )
    }

    /// Records one run; returns the events it causes and the new signal.
    fn record(&self, index: usize, probe: Probe, signal: &mut Signal) -> Vec<MonitorEvent> {
        let cell = &self.cells[index];
        let at = self.since(Instant::now());
        let mut events = Vec::new();
        let mut s = cell.lock();
        let passed = probe.passed();
        // The check's line in a reason, at `health`, as the run leaves it.
        let line_of = |s: &CheckState, health: Health| {
            Line {
                name: &cell.name,
                target: cell.target.as_deref(),
                health,
                critical: cell.critical,
                stale: None,
                failures: s.streaks.failures,
                successes: s.streaks.successes,
                error: probe.error.as_ref(),
            }
            .render()
        };
        s.runs += 1;
        s.failed_runs += u64::from(!passed);
        let from = s.streaks.health;
        if let Some(to) = s.streaks.record(passed, &cell.thresholds) {
            if to == Health::Healthy {
                signal.healthy_epoch += 1;
            }
            let reason = (to >= Health::Degraded).then(|| line_of(&s, to));
            events.push(MonitorEvent::HealthChanged {
                check: Arc::clone(&cell.name),
                from,
                to,
                reason,
                at,
            });
        }
        signal.failures = s.streaks.failures;
        // The check's line, for the alerts raised by this run, while it
        // is failing.
        let line = (s.streaks.health >= Health::Degraded).then(|| line_of(&s, s.streaks.health));
        for edge in s.window.push(passed, probe.latency) {
            let (check, kind) = (Arc::clone(&cell.name), edge.kind);
            let (success_rate, mean_latency) = (s.window.success_rate(), s.window.mean_latency());
            events.push(if edge.raised {
                MonitorEvent::AlertRaised {
                    check,
                    kind,
                    success_rate,
                    mean_latency,
                    reason: line.clone(),
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

/// The worst health of the critical checks, a non-critical one counting
/// at most as degraded; healthy with no check.
fn overall(checks: impl Iterator<Item = (Health, bool)>) -> Health {
    checks
        .map(|(health, critical)| {
            if critical {
                health
            } else {
                health.min(Health::Degraded)
            }
        })
        .max()
        .unwrap_or(Health::Healthy)
}

/// Logs `event` and sends it.
fn publish(bus: &Bus, event: MonitorEvent) {
    match &event {
        MonitorEvent::HealthChanged {
            check,
            from,
            to,
            reason,
            ..
        } => {
            // The reason is redacted and escaped already; `Redacted` again
            // all the same (idempotent), as every text field here.
            let reason = reason.as_deref().map(Redacted);
            if *to > Health::Unknown {
                tracing::warn!(check = %Redacted(&check), from = ?from, to = ?to, reason = reason.map(tracing::field::display), "health changed");
            } else {
                tracing::info!(check = %Redacted(&check), from = ?from, to = ?to, reason = reason.map(tracing::field::display), "health changed");
            }
        }
        MonitorEvent::AlertRaised {
            check,
            kind,
            success_rate,
            mean_latency,
            reason,
            ..
        } => {
            let reason = reason.as_deref().map(Redacted);
            tracing::warn!(check = %Redacted(&check), kind = ?kind, success_rate, mean_latency_us = mean_latency.as_micros(), reason = reason.map(tracing::field::display), "alert raised");
        }
        MonitorEvent::AlertCleared {
            check,
            kind,
            success_rate,
            mean_latency,
            ..
        } => {
            tracing::info!(check = %Redacted(&check), kind = ?kind, success_rate, mean_latency_us = mean_latency.as_micros(), "alert cleared");
        }
        MonitorEvent::RecoveryAttempted {
            check,
            action,
            attempt,
            escalated,
            error,
            ..
        } => {
            tracing::warn!(check = %Redacted(&check), action = %Redacted(&action), attempt, escalated, error = ?error, "recovery attempted");
        }
    }
    bus.send(event);
}

pub(crate) async fn check_loop(
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
        let started = Instant::now();
        let probe = timed(guarded(|| check.run()), timeout).await;
        tracing::debug!(
            check = %Redacted(&shared.cells[index].name),
            passed = probe.passed(),
            latency_us = probe.latency.as_micros(),
            error = probe.error.as_ref().map(super::CheckError::message),
            "check ran"
        );
        for event in shared.record(index, probe, &mut signal) {
            publish(&bus, event);
        }
        signal_tx.send_replace(signal);
        // An interval over ~30 years (`Duration::MAX`) puts the next run
        // in the far future (~30 years): never a panic.
        next = next_slot(next, interval, started);
        let now = Instant::now();
        if next < now {
            next = now;
        }
    }
}

/// The first slot of the schedule `scheduled + k × interval` (`k ≥ 1`)
/// at least half an interval after `started`, when the run of the slot
/// `scheduled` began: the next slot, unless that run began more than half
/// an interval late (a host suspended, a runtime stalled), whose missed
/// slots, and a slot too close after it, are skipped rather than caught
/// up. Run back to back, two runs would sample one moment and count as
/// two failures (or passes) toward the thresholds: one bad moment after a
/// wake-up would make a check with `unhealthy_after(2)` unhealthy. So
/// runs that start late are between half an interval and one and a half
/// apart (found by a second hostile review: a wake-up 1 ms before a slot
/// was followed by that slot's run 1 ms later). Skipping keeps each check
/// on its staggered grid.
fn next_slot(scheduled: Instant, interval: Duration, started: Instant) -> Instant {
    const NANOS: u128 = 1_000_000_000;
    let late = started.saturating_duration_since(scheduled);
    let step = interval.as_nanos().max(1);
    let earliest = late.as_nanos() + step / 2;
    if earliest <= step {
        return crate::clock::saturating_add(scheduled, interval);
    }
    // In nanoseconds, exact (`late` and `interval` are below 2^95 ns): a
    // count of slots past `u32::MAX` (2^32 slots of 1 ms are 50 days)
    // stays on the grid (found by a hostile review: `Duration`'s `u32`
    // multiplier made a new grid from the run's start, off the check's
    // stagger, so checks of one interval ran in step after such a wake).
    let ahead = earliest.div_ceil(step) * step;
    let ahead = u64::try_from(ahead / NANOS).map_or(Duration::MAX, |secs| {
        Duration::new(secs, u32::try_from(ahead % NANOS).unwrap_or_default())
    });
    crate::clock::saturating_add(scheduled, ahead)
}

pub(crate) async fn recovery_loop(
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
            // Saturating: a check failing for ever with a 1 ms cooldown
            // reaches 2^32 attempts in 50 days.
            attempt = u32::saturating_add(attempt, 1);
            let (action, escalated) = rule.pick(attempt);
            let at = shared.since(Instant::now());
            let result =
                match tokio::time::timeout(rule.timeout, unwind_safe(|| action.run())).await {
                    Ok(Ok(result)) => result,
                    Ok(Err(panic)) => Err(redact_cut(
                        &format!("action panicked: {panic}"),
                        super::CheckError::MAX_MESSAGE_CHARS,
                    )),
                    Err(_) => Err(format!("timed out after {:?}", rule.timeout)),
                };
            let delay = rule.delay_after(attempt);
            // Saturating: a cooldown of `Duration::MAX` is "never again".
            let next_at = shared.since(Instant::now()).saturating_add(delay);
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
            // The wait, cut short by the end of the episode: the check
            // became healthy. The episode ends then, not when its wait
            // would have (found by a hostile review: a check healthy
            // again still showed `next_attempt_at`, an attempt that would
            // never run, for up to `max_backoff`, for ever with a cooldown
            // of `Duration::MAX`). A new streak of `after_failures`
            // failures starts a new episode, its attempt 1 at once (found
            // by an earlier review: it waited out this episode's backoff).
            let over = |s: &Signal| s.healthy_epoch != epoch;
            if let Ok(Err(_)) = tokio::time::timeout(delay, signal.wait_for(over)).await {
                return; // the check task ended
            }
            if signal.borrow().healthy_epoch != epoch {
                if let Some(r) = cell.lock().recovery.as_mut() {
                    r.next_attempt_at = None;
                }
                break;
            }
        }
    }
}

#[cfg(test)]
thread_local! {
    /// Whole statuses built on this thread: a test asks whether a caller
    /// built one (the `/readyz` probe and `health()` must not).
    pub(crate) static STATUSES_BUILT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

#[cfg(test)]
mod slot_tests {
    use super::next_slot;
    use std::time::Duration;
    use tokio::time::Instant;

    /// A check of 1 ms woken 2^32 ms and a half late (a host suspended
    /// some 50 days): its next run is its own next slot, 2^32 + 1 slots
    /// after the one it missed, as the runner's docs say. More slots than
    /// a `u32` counts made a new grid from the late run's start (half a
    /// millisecond off its slots), so checks staggered on one interval
    /// ran in step after such a wake.
    #[test]
    fn a_wake_past_u32_max_slots_keeps_the_grid() {
        let ms = Duration::from_millis;
        let base = Instant::now();
        let late = ms(1 << 32) + Duration::from_micros(500);
        assert_eq!(
            next_slot(base, ms(1), base + late),
            base + ms((1 << 32) + 1)
        );
        // Sub-nanosecond-exact on an interval of a prime number of ns.
        let interval = Duration::from_nanos(1_000_003);
        let slots = (1u128 << 33) + 7;
        let at = Duration::from_nanos(u64::try_from(slots * 1_000_003).unwrap());
        assert_eq!(next_slot(base, interval, base + at), base + at + interval);
        assert_eq!(
            next_slot(base, interval, base + at + Duration::from_nanos(1)),
            base + at + interval
        );
    }

    /// Lateness just under, at and just over whole intervals, and the
    /// extremes of the interval (sound-but-checked).
    #[test]
    fn lateness_around_multiples_of_the_interval() {
        let base = Instant::now();
        let i = Duration::from_millis(10);
        let ns = Duration::from_nanos;
        for k in 1..=3u32 {
            let slot = base + i * k;
            // Half an interval before a slot: kept; just after: skipped.
            let half = slot - i / 2;
            assert_eq!(next_slot(base, i, half), slot, "k={k}");
            assert_eq!(next_slot(base, i, half + ns(1)), slot + i, "k={k}");
            assert_eq!(next_slot(base, i, slot - ns(1)), slot + i, "k={k}");
            assert_eq!(next_slot(base, i, slot), slot + i, "k={k}");
            assert_eq!(next_slot(base, i, slot + ns(1)), slot + i, "k={k}");
        }
        assert_eq!(next_slot(base, i, base), base + i);
        // Never a panic for `Duration::MAX`: the far future.
        assert!(next_slot(base, Duration::MAX, base + i) > base + ns(1) * 1_000_000_000 * 3600);
    }
}
