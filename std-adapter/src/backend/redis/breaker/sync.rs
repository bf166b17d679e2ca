//! Reconciliation: publishing local trips and closes, applying the fleet's
//! decision with the core's merge, and the background task that does it
//! every sync interval (and at once after a local transition).

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError, Weak};
use std::time::Duration;

use fusebox::breaker::{MergeError, State};
use fusebox::Clock;

use super::script::{self, Local, Op, Record, Reply, CHANGED, CORRUPT, REPOPULATED};
use super::Inner;
use crate::backend::BackendError;
use crate::redact::Redacted;

impl Inner {
    /// The caller's side of an invocation, read at `now`.
    pub(super) fn local(&self) -> Local {
        let now = self.policy.clock().now();
        let core = self.policy.core();
        let snap = core.snapshot(now);
        let config = core.config();
        // The fleet's decision as held here: the local state if the last
        // decision applied was not Closed (a local-only trip, e.g. below a
        // quorum, is not the fleet's and is published by `Trip` instead).
        let held = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .map(|d| d.state);
        let state = match held {
            Some(State::Open | State::ForcedOpen | State::HalfOpen) => core.state(now),
            _ => State::Closed,
        };
        Local {
            known: core.merged_version(),
            open_for: config.open_for().into(),
            max_open_for: config.max_open_for().into(),
            state,
            remaining: snap.open_remaining.map(Into::into).unwrap_or_default(),
            streak: snap.reopen_streak,
        }
    }

    /// Runs `op` and applies its reply; errors mark the breaker degraded.
    pub(super) async fn invoke(&self, op: Op<'_>) -> Result<Reply, BackendError> {
        let local = self.local();
        let trips = self.policy.core().metrics().trips;
        let mut conn = self.conn.clone();
        match script::run(
            &mut conn,
            &self.keys,
            &local,
            op,
            self.timeout,
            self.sharded,
        )
        .await
        {
            Ok(reply) => {
                // A trial slot's request or release carries none of this
                // instance's state and may only read: answered, it ends no
                // outage (a full or read-only Redis answers reads). Before,
                // a slot given back on a full Redis after a trial whose
                // close could not be published cleared `is_degraded` (and
                // logged "reconnected") while every reconciliation still
                // failed. The next reconciliation ends it.
                if !matches!(op, Op::Trial(..) | Op::Release(_)) {
                    self.recovered();
                }
                if reply.flags & CHANGED != 0 {
                    self.published.fetch_add(1, Ordering::Relaxed);
                }
                self.apply(&reply, trips, op);
                Ok(reply)
            }
            Err(e) => {
                self.failed(&e);
                Err(e)
            }
        }
    }

    /// One reconciliation: a local trip since the last one is published
    /// (so no trip is lost), a local close of the fleet's open or half-open
    /// decision is published, otherwise the decision is read; the reply is
    /// merged.
    pub(super) async fn reconcile(&self) -> Result<Reply, BackendError> {
        let _one = self.sync_lock.lock().await;
        let trips = self.policy.core().metrics().trips;
        // Read after `trips`: a trip between the two reads is seen next time.
        let state = self.policy.state();
        let seen = self.trips_published.load(Ordering::Acquire);
        let fleet = *self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let local_closed = state == State::Closed;
        let closes = self.trial_closes.load(Ordering::Acquire);
        let trial_closed = closes != self.trial_closes_reported.load(Ordering::Acquire);
        let (key, token);
        let op = if super::unpublished(trips, seen, state) {
            key = self.keys.record(self.nonce);
            token = self.trip_token(trips);
            Op::Trip {
                quorum: self
                    .quorum
                    .as_ref()
                    .map(|q| (q.min, q.window_ms, &*self.instance)),
                record: Record {
                    key: &key,
                    token: &token,
                },
            }
        } else if let (true, Some(d)) = (local_closed, fleet) {
            if matches!(d.state, State::Open | State::HalfOpen)
                && self.close_reported.load(Ordering::Acquire) != d.version
                && trial_closed
            {
                // Closed here by trials decided locally (while degraded,
                // or through `policy()`, which takes no fleet slots): the
                // core closed after `close_after` successes in a row, so
                // the close is worth that many and closes the decision
                // (a need of 1), once per decision version (the script
                // accepts it only for a half-open or expired open decision
                // of that version). Counted as one success, it left a lone
                // instance closed under a fleet decision open for good
                // whenever `close_after` was above 1 (found running the
                // storm demo, whose `Policy` is on `policy()`). Closed by
                // hand (the core's `reset` or `force_close`): not reported.
                Op::Close(d.version, 1, "")
            } else {
                Op::Sync
            }
        } else {
            Op::Sync
        };
        if matches!(op, Op::Sync) {
            // A trial's close with nothing left to report (the breaker
            // left closed, or the fleet's decision is closed).
            self.trial_closes_reported.store(closes, Ordering::Release);
        }
        let reply = self.invoke(op).await?;
        if matches!(op, Op::Trip { .. }) {
            *self
                .pending_trip
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = None;
        }
        // Published, or no trip: the counter went back (a reset) with no
        // trip since, or moved with the breaker neither open nor half-open
        // (a restore). The count to compare with from now on.
        self.trips_published.store(trips, Ordering::Release);
        if let Op::Close(version, ..) = op {
            // Refused because the fleet's opening of that version is not
            // over (an instance configured with a longer open time opened
            // it): the close stays to report, sent again at each
            // reconciliation, and closes the fleet once the opening ends.
            // Reported once and dropped, it left this instance closed
            // under the fleet's open, then half-open, decision.
            let refused = reply.decision.version == version
                && reply.decision.state == State::Open
                && reply.fleet_remaining.is_some_and(|left| !left.is_zero());
            if !refused {
                self.close_reported.store(version, Ordering::Release);
                self.trial_closes_reported.store(closes, Ordering::Release);
            }
        }
        self.syncs.fetch_add(1, Ordering::Relaxed);
        Ok(reply)
    }

    /// The token of the trip publication that counts `trips` local
    /// trips: the same until it is answered, so a trip sent again after
    /// its reply was lost (the script may have run) is known to the script
    /// as the one it took; a new one once answered, or once another trip
    /// is counted. (A `reset` of the core by hand, not
    /// [`FleetBreaker::reset`](super::FleetBreaker::reset), between a lost
    /// reply and the next trip can bring the count back to the same
    /// number: that trip then reads as the repeat, and protects this
    /// instance alone.)
    fn trip_token(&self, trips: u64) -> String {
        let mut pending = self
            .pending_trip
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match &*pending {
            Some((counted, token)) if *counted == trips => token.clone(),
            _ => {
                let token = self.tokens.fetch_add(1, Ordering::Relaxed).to_string();
                *pending = Some((trips, token.clone()));
                token
            }
        }
    }

    /// Applies the fleet's decision to the local breaker.
    fn apply(&self, reply: &Reply, trips_before: u64, op: Op<'_>) {
        if reply.flags & CORRUPT != 0 {
            self.corrupt.fetch_add(1, Ordering::Relaxed);
            if !self.corrupt_logged.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    breaker = %Redacted(&self.policy.name()),
                    "corrupt or out-of-range shared breaker decision replaced"
                );
            }
        }
        if reply.flags & REPOPULATED != 0 {
            tracing::info!(
                breaker = %Redacted(&self.policy.name()),
                version = reply.decision.version,
                "shared breaker decision repopulated from the local state"
            );
        }
        let d = reply.decision;
        let core = self.policy.core();
        // A local trip made while the script ran must not be undone by a
        // decision that predates it: publish it first (next sync, at once).
        if super::unpublished(core.metrics().trips, trips_before, self.policy.state())
            && matches!(d.state, State::Closed | State::HalfOpen)
        {
            self.notify.notify_one();
            return;
        }
        // A trip the fleet did not take up (below the quorum) protects this
        // instance alone until its own open time is up, against the fleet
        // decisions that predate it: a closed decision does not close it
        // before, unless it was made since the trip, i.e. it is newer than
        // the one the trip was refused in (versions only grow in Redis):
        // an operator's close (`force_close`, or a newer version written
        // by hand; any number of them), or the fleet's own trials closing
        // a fleet that opened after the trip. Except after Redis lost its
        // data: rebuilt closed at the version one instance knows (the trip
        // refused in it) and then at a newer one by an instance that knew
        // more, it reads as a decision made since the trip (the versions
        // carry no author; see the type's docs and
        // redis_breaker_quorum_a_store_rebuilt_at_the_next_version_ends_a_lone_trip).
        if matches!(op, Op::Trip { .. }) && d.state == State::Closed {
            self.local_only_at.store(d.version, Ordering::Release);
            self.local_only.store(true, Ordering::Release);
        }
        if self.local_only.load(Ordering::Acquire) {
            let since_the_trip = d.version > self.local_only_at.load(Ordering::Acquire);
            if d.state == State::Closed && self.policy.state() == State::Open && !since_the_trip {
                return;
            }
            self.local_only.store(false, Ordering::Release);
        }
        let now = self.policy.clock().now();
        // `last` is the fleet's decision as held here: set only once the
        // local breaker holds it (merged now, or before: same version).
        let merged = core.merge(&d, now);
        let held = match merged {
            Ok(_) => true,
            Err(MergeError::Stale { version, merged }) => version == merged,
            Err(_) => false,
        };
        if held {
            let mut last = self
                .last
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match *last {
                // The version held here, stored again with another state
                // that the local breaker does not hold (by hand: every
                // change takes a new version): not applied, so not
                // reported as the fleet's decision here. One the local
                // breaker holds is this instance's own state, written
                // back at the version it knows (Redis came back empty
                // after its trial closed it: found by a hostile review).
                Some(held)
                    if held.version == d.version
                        && held.state != d.state
                        && !holds(self.policy.state(), d.state) =>
                {
                    if !self.conflict_logged.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            breaker = %Redacted(&self.policy.name()),
                            version = d.version,
                            stored = ?d.state,
                            applied = ?held.state,
                            "shared breaker decision rewritten without a new version: not applied (write a newer version)"
                        );
                    }
                }
                _ => *last = Some(d),
            }
        }
        if held && d.state == State::Open {
            // The fleet's open-until is adopted: calls are refused until
            // the stored opening ends, even past this instance's own open
            // time (see `FleetBreaker::call`).
            self.hold_fleet_open(d.version, reply.fleet_remaining.unwrap_or_default(), now);
        }
        match merged {
            Ok(Some(t)) => {
                tracing::info!(breaker = %Redacted(&self.policy.name()), from = ?t.from, to = ?t.to, version = d.version, "fleet decision applied");
                self.tell(t);
            }
            Ok(None) | Err(MergeError::Stale { .. }) => {}
            Err(MergeError::Busy) => self.notify.notify_one(),
            Err(e) => {
                tracing::warn!(breaker = %Redacted(&self.policy.name()), error = %Redacted(&e), "fleet decision not merged");
            }
        }
    }

    fn failed(&self, e: &BackendError) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if !self.degraded.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                breaker = %Redacted(&self.policy.name()),
                error = %Redacted(&e),
                "fleet breaker degraded: deciding on local state until Redis answers"
            );
        }
    }

    fn recovered(&self) {
        if self.degraded.swap(false, Ordering::AcqRel) {
            tracing::info!(breaker = %Redacted(&self.policy.name()), "fleet breaker reconnected");
        }
    }
}

/// Whether a local breaker in state `local` holds a fleet decision of
/// state `fleet`: the same state, open and half-open being one (a
/// decision's open time runs out into half-open locally).
fn holds(local: State, fleet: State) -> bool {
    match fleet {
        State::Open | State::HalfOpen => matches!(local, State::Open | State::HalfOpen),
        other => local == other,
    }
}

/// The background task: reconcile every `interval`, at once when notified,
/// backing off (up to `max_backoff`) while Redis fails. Ends when the last
/// handle drops.
pub(super) fn spawn(
    inner: Weak<Inner>,
    notify: Arc<tokio::sync::Notify>,
    interval: Duration,
    max_backoff: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut delay = interval;
        loop {
            // Woken early by a local transition (a permit is kept if
            // none was waiting, so no wake-up is lost).
            let _ = tokio::time::timeout(delay, notify.notified()).await;
            let Some(inner) = inner.upgrade() else { break };
            delay = match inner.reconcile().await {
                Ok(_) => interval,
                Err(_) => delay.saturating_mul(2).min(max_backoff.max(interval)),
            };
        }
    })
}
