//! [`Slot`]: a fleet trial slot held by a half-open trial, given back
//! when the trial ends or is cancelled.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::script::Op;
use super::Inner;

/// A fleet trial slot asked for or held by a trial. Dropped (the trial
/// completed or was cancelled), a spawned task gives it back by its
/// token, after:
///
/// * a success: counting it toward closing the fleet, unless the local
///   breaker reopened meanwhile or has a trip not yet published (another
///   trial failed): a close never overtakes a reopen;
/// * anything else: a reconciliation, so a failed trial's reopen is
///   published before its slot can go to another trial; but for a caller
///   that left before its slot request was answered (no trial ran) while
///   no trip waits to be published: nothing to publish, so no round trip
///   (each such slot would otherwise queue one behind the sync lock: a
///   crowd of callers timing out on a slow Redis, a queue of them).
pub(super) struct Slot {
    inner: Arc<Inner>,
    /// Unique per process (instances may share an id).
    pub(super) token: String,
    /// The half-open decision the slot was granted in.
    pub(super) version: Option<u64>,
    pub(super) armed: bool,
    pub(super) succeeded: bool,
    /// The slot request was answered (or failed): a trial ran, or was
    /// refused.
    pub(super) answered: bool,
}

impl Slot {
    pub(super) fn new(inner: &Arc<Inner>) -> Self {
        let seq = inner.tokens.fetch_add(1, Ordering::Relaxed);
        Self {
            inner: Arc::clone(inner),
            token: format!("{}:{:016x}:{seq}", inner.instance, inner.nonce),
            version: None,
            armed: true,
            succeeded: false,
            answered: false,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // no runtime left: the slot's TTL frees it
        };
        let inner = Arc::clone(&self.inner);
        let token = std::mem::take(&mut self.token);
        let (version, succeeded, answered) = (self.version, self.succeeded, self.answered);
        runtime.spawn(async move {
            match (version, succeeded) {
                // Left before its slot request was answered: no trial ran.
                (None, _) if !answered && inner.holds_no_unpublished_trip() => {}
                (Some(version), true) => {
                    let needed = inner.policy.core().config().close_after();
                    let _one = inner.sync_lock.lock().await;
                    if inner.holds_no_unpublished_trip() {
                        let _ = inner.invoke(Op::Close(version, needed, &token)).await;
                    }
                }
                // A trial decided locally (Redis failed its slot request)
                // or cancelled before its grant was seen: reconciled too.
                // Given back first, a failed trial's reopen not yet
                // published was undone by the reply (a closed decision
                // that predates it, taken for one made since an earlier
                // lone trip of this instance: found by a hostile review).
                (Some(_), false) | (None, _) => {
                    let _ = inner.reconcile().await;
                }
            }
            let _ = inner.invoke(Op::Release(&token)).await;
        });
    }
}
