//! [`ProbeTask`]: the background probe of a degraded
//! [`RedisLimiter`](super::RedisLimiter), so that a limiter nobody calls
//! still finds Redis back (its health, `is_degraded` and the Prometheus
//! gauge turn clean again) instead of staying degraded until a request
//! comes.
//!
//! One task per outage at most, started when the limiter degrades (only
//! on a current Tokio runtime: without one, requests alone probe, as
//! before) and ended when the outage ends or the limiter is dropped. It
//! keeps to the outage's own schedule: it wakes at the next probe the
//! backoff booked, books it as a request would (one probe at a time,
//! whoever comes first), and a failed probe doubles the backoff up to its
//! maximum. While Redis answers there is no task and the request path
//! does nothing for it.
//!
//! It sleeps on Tokio's clock: under a paused clock, which jumps to the
//! next timer whenever the runtime is idle, it probes once per backoff
//! interval of virtual time, as fast as the probes fail
//! ([`RedisLimiterBuilder::background_probe`](super::RedisLimiterBuilder::background_probe)
//! turns it off for such tests).

use std::sync::{Mutex, PoisonError, Weak};
use std::time::Duration;

use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::limiter::Shared;

/// The shortest time between two wake-ups of the task, whatever the
/// backoff (a minimum of zero makes every request a probe, but must not
/// make the task spin against a server that refuses at once).
const FLOOR: Duration = Duration::from_millis(10);

/// The slot of a limiter's probe task.
///
/// A leaf lock: it is taken alone, or inside the outage's lock, and
/// nothing else is ever taken while it is held. The limiter's `Drop`
/// takes it, which may happen under the registry's lock (`health()`
/// dropping the last `Arc`); that is safe because this lock never waits
/// on another.
#[derive(Debug, Default)]
pub(super) struct ProbeTask(Mutex<Slot>);

#[derive(Debug, Default)]
struct Slot {
    task: Option<AbortHandle>,
    /// Set when the limiter is dropped: no task is started after that (a
    /// probe in flight then, whose failure would start one, is the
    /// aborted task's own, finishing its poll on another worker).
    closed: bool,
}

impl ProbeTask {
    /// A slot that never starts a task (the builder's
    /// `background_probe(false)`).
    pub(super) fn closed() -> Self {
        Self(Mutex::new(Slot {
            task: None,
            closed: true,
        }))
    }

    /// Starts the task for `limiter` unless one runs already, the limiter
    /// is dropped ([`close`](Self::close)d), or no Tokio runtime is
    /// current.
    pub(super) fn start(&self, limiter: &Weak<Shared>) {
        let mut slot = self.slot();
        // A task of a runtime since shut down is finished: replaced.
        if slot.closed || slot.task.as_ref().is_some_and(|task| !task.is_finished()) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        slot.task = Some(runtime.spawn(run(limiter.clone())).abort_handle());
    }

    /// Ends the task, if any (at its next await: it holds no lock there,
    /// and a probe cut short changes nothing).
    pub(super) fn stop(&self) {
        if let Some(task) = self.slot().task.take() {
            task.abort();
        }
    }

    /// Ends the task for good: the limiter is dropped. A probe the task
    /// was still running (holding the state) that fails afterwards starts
    /// no new task (found by a hostile review: it did, and that task slept
    /// until the next probe, an hour with a long backoff, after its limiter
    /// was gone).
    pub(super) fn close(&self) {
        let mut slot = self.slot();
        slot.closed = true;
        if let Some(task) = slot.task.take() {
            task.abort();
        }
    }

    /// Whether a task is running (for tests).
    #[cfg(test)]
    pub(super) fn is_running(&self) -> bool {
        self.slot()
            .task
            .as_ref()
            .is_some_and(|task| !task.is_finished())
    }

    /// The task's handle (for tests).
    #[cfg(test)]
    pub(super) fn handle(&self) -> Option<AbortHandle> {
        self.slot().task.clone()
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The task: sleeps until the next probe is due, probes, until the outage
/// ends or the limiter is gone. It holds the limiter only across a probe
/// (the command timeout bounds that).
///
/// # Cancellation
///
/// Aborted at any await: asleep, nothing is lost; in a probe, the command
/// is dropped as a request's would be (the probe it booked is simply not
/// answered, and the next one is due at its time).
async fn run(limiter: Weak<Shared>) {
    let mut woke: Option<Instant> = None;
    loop {
        let Some(due) = limiter.upgrade().and_then(|l| l.next_probe()) else {
            return;
        };
        // Never spin: at least FLOOR after the last wake-up.
        let due = woke.map_or(due, |w| due.max(w + FLOOR));
        tokio::time::sleep_until(due).await;
        let now = Instant::now();
        woke = Some(now);
        let Some(shared) = limiter.upgrade() else {
            return;
        };
        match shared.book_probe(now) {
            None => return,
            Some(false) => {}
            Some(true) => {
                if shared.probe().await {
                    return;
                }
            }
        }
    }
}
