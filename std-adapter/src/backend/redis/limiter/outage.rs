//! A [`RedisLimiter`](super::RedisLimiter)'s outage: how a fault degrades
//! it, how it probes Redis (on a request that finds a probe due, or in
//! its background task) and how an answer ends the outage, with its
//! health condition.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::time::Instant;

use super::Shared;
use crate::backend::BackendError;
use crate::redact::Redacted;

impl Shared {
    /// When the outage's next probe is due; `None` once Redis answers.
    pub(in crate::backend::redis) fn next_probe(&self) -> Option<Instant> {
        let outage = self.outage();
        outage.degraded.then_some(outage.next_probe)
    }

    /// Books the probe due at `now` for the background task (as a request
    /// would, so that the two share one schedule and one probe at a time):
    /// `Some(true)` to ask Redis now, `Some(false)` if it is not due (or a
    /// request took it), `None` once Redis answers.
    pub(in crate::backend::redis) fn book_probe(&self, now: Instant) -> Option<bool> {
        let mut outage = self.outage();
        outage.degraded.then(|| outage.should_ask(now))
    }

    /// The background task's probe: a peek (`n = 0`, which takes nothing
    /// and creates no key; like any request it replaces a corrupt value
    /// or rewrites another quota's, see `gcra.lua`) of the key `""`,
    /// through the same script, connection and timeout as a request, then
    /// a write Redis must take (`RedisBackend::writable`: a full server or
    /// a read-only replica answers the peek). Not a decision: only its
    /// fault, or the outage's end, is counted. True once the outage is
    /// over.
    pub(in crate::backend::redis) async fn probe(self: &Arc<Self>) -> bool {
        match self
            .backend
            .run(&self.name, "", &self.rules, (0, 0), None)
            .await
        {
            Ok((decision, _)) => {
                self.corrupt_replaced(decision.corrupt);
                // A peek writes nothing: Redis must take a write too (a
                // full server or a read-only replica answers reads).
                if let Err(e) = self.backend.writable(&self.name, "", &self.rules).await {
                    if e.is_fault() {
                        self.failed(&e, true, Instant::now());
                    }
                    return false;
                }
                if self.succeeded() {
                    tracing::info!(
                        limiter = %Redacted(&self.name),
                        probe = "background",
                        "redis answers again: limiter no longer degraded"
                    );
                }
                true
            }
            Err(e) if e.is_fault() => {
                self.failed(&e, true, Instant::now());
                false
            }
            Err(e) => {
                // Not a fault (a reply the script should never give): the
                // outage goes on, the next probe at its booked time.
                tracing::debug!(limiter = %Redacted(&self.name), error = %Redacted(&e), "redis probe answered with an error");
                false
            }
        }
    }

    /// A fault: the outage begins (or goes on, for a failed probe).
    /// `now`: when it failed (the next probe is booked from there).
    pub(super) fn failed(self: &Arc<Self>, e: &BackendError, probe: bool, now: Instant) {
        self.counters.faults.fetch_add(1, Ordering::Relaxed);
        let started = {
            let mut outage = self.outage();
            let started = outage.failed(now, self.backoff, probe);
            self.degraded.store(true, Ordering::Release);
            // Under the lock, as every change of `degraded`: a task runs
            // while the limiter is degraded, and only then.
            self.probe.start(&Arc::downgrade(self));
            // Set under the outage's lock, so that a success ending the
            // outage meanwhile cannot clear it after this; and again on
            // every failed request, so that a condition cleared by another
            // limiter of the name, or set by one since dropped, comes back
            // as this one's.
            self.set_condition(Some(&e.to_string()));
            started
        };
        if started {
            tracing::warn!(
                limiter = %Redacted(&self.name),
                policy = ?self.policy,
                error = %Redacted(&e),
                "redis unreachable or slow: limiter degraded"
            );
        } else {
            tracing::debug!(limiter = %Redacted(&self.name), error = %Redacted(&e), "redis probe failed");
        }
    }

    /// The outage ends (true if this call ended it).
    pub(super) fn succeeded(&self) -> bool {
        let mut outage = self.outage();
        let ended = outage.succeeded();
        self.degraded.store(false, Ordering::Release);
        if ended {
            // Under the lock: a failure after this sets it again after this
            // (and starts a new task).
            self.probe.stop();
            self.set_condition(None);
        }
        ended
    }

    /// Sets (`Some`) or clears the limiter's health condition.
    fn set_condition(&self, reason: Option<&str>) {
        // A limiter dropped (its probe not yet ended) reports nothing: its
        // condition is gone, and one of its name is another limiter's.
        if self.owner.strong_count() == 0 {
            return;
        }
        if let Some(registry) = &self.registry
            && let Err(e) = registry.put_condition(
                &self.condition,
                reason.map(|r| crate::redact::redact_cut(r, 256)),
                Some(self.owner.clone()),
            )
        {
            tracing::warn!(limiter = %Redacted(&self.name), error = %Redacted(&e), "cannot report the redis condition");
        }
    }
}
