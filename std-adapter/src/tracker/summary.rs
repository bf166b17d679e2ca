//! Per-request execution summaries, held in a FIFO of bounded length.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use fusebox::Duration;

use super::{TrackerConfig, OVERFLOW};
use crate::redact::redact;

/// One request's run: total and per-stage durations (seed 001's
/// `get_execution_summary`), from [`Tracker::execution_summary`](super::Tracker::execution_summary).
///
/// Durations serialise as microseconds.
///
/// # Examples
///
/// ```
/// use fusebox::Duration;
/// use fusebox_std::{Tracker, TrackerConfig};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let tracker = Tracker::new(TrackerConfig { sample_rate: 1.0, ..TrackerConfig::default() })?;
/// let op = tracker.track_request("req-1", "checkout");
/// for _ in 0..2 {
///     let _db = op.track_stage("db");
///     tokio::time::sleep(std::time::Duration::from_millis(3)).await;
/// }
/// drop(op);
/// let summary = tracker.execution_summary("req-1").unwrap();
/// assert_eq!(summary.total, Some(Duration::from_millis(6)));
/// assert_eq!(summary.stages.len(), 2);
/// assert_eq!(summary.stage_total("checkout/db"), Duration::from_millis(6));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ExecutionSummary {
    /// The request (correlation) id, [redacted](crate::redact) as the
    /// names are: request ids come from clients (a request-id header), and
    /// one may carry a token (`token=…`, `Bearer …`, a URL with a
    /// password), which a summary served by a report must not show. The
    /// summary is still found by the id as sent
    /// ([`Tracker::execution_summary`](super::Tracker::execution_summary)).
    pub request_id: String,
    /// The operation it ran.
    pub operation: String,
    /// The whole run, `None` while it is still going.
    #[serde(rename = "total_us")]
    pub total: Option<Duration>,
    /// Whether the operation was marked failed.
    pub failed: bool,
    /// Stages in the order they finished.
    pub stages: Vec<StageTiming>,
    /// Stages that finished when `max_stages_per_request` were held.
    pub dropped_stages: u64,
}

impl ExecutionSummary {
    /// The time spent in stage `path` over all its runs in this request.
    ///
    /// ```
    /// use fusebox::Duration;
    /// use fusebox_std::tracker::{ExecutionSummary, StageTiming};
    ///
    /// let stage = |ms| StageTiming { stage: "op/db".into(), duration: Duration::from_millis(ms), failed: false };
    /// let summary = ExecutionSummary {
    ///     request_id: "r".into(),
    ///     operation: "op".into(),
    ///     total: None,
    ///     failed: false,
    ///     stages: vec![stage(2), stage(3)],
    ///     dropped_stages: 0,
    /// };
    /// assert_eq!(summary.stage_total("op/db"), Duration::from_millis(5));
    /// assert_eq!(summary.stage_total("op/cache"), Duration::ZERO);
    /// ```
    pub fn stage_total(&self, path: &str) -> Duration {
        self.stages
            .iter()
            .filter(|s| s.stage == path)
            .fold(Duration::ZERO, |sum, s| sum.saturating_add(s.duration))
    }
}

/// One stage run within an [`ExecutionSummary`].
///
/// ```
/// use fusebox::Duration;
/// use fusebox_std::tracker::StageTiming;
///
/// let t = StageTiming { stage: "checkout/db".into(), duration: Duration::from_micros(7), failed: false };
/// assert_eq!(serde_json::to_value(&t)?, serde_json::json!({"stage": "checkout/db", "duration_us": 7, "failed": false}));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct StageTiming {
    /// The stage's full path (`operation/stage/sub-stage`).
    pub stage: String,
    /// How long it took.
    #[serde(rename = "duration_us")]
    pub duration: Duration,
    /// Whether it was marked failed.
    pub failed: bool,
}

/// A live or finished request, shared by its guards and the table.
pub(crate) struct RequestRecord {
    id: Arc<str>,
    max_stages: usize,
    /// Replaced in the table by a newer request of the same id: its
    /// summary can no longer be read, so it keeps no stage (read and
    /// written under `summary`'s lock, which orders them).
    retired: AtomicBool,
    summary: Mutex<ExecutionSummary>,
}

impl RequestRecord {
    pub(super) fn new(id: &str, operation: &str, max_stages: usize) -> Self {
        Self {
            id: id.into(),
            max_stages,
            retired: AtomicBool::new(false),
            summary: Mutex::new(ExecutionSummary {
                // The id as sent stays only in the table's index (for
                // lookups), never in what a summary reports.
                request_id: redact(id).into_owned(),
                operation: bounded(operation).to_owned(),
                total: None,
                failed: false,
                stages: Vec::new(),
                dropped_stages: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ExecutionSummary> {
        self.summary.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn summary(&self) -> ExecutionSummary {
        self.lock().clone()
    }

    pub(super) fn stage(&self, path: &str, duration: Duration, failed: bool) {
        let mut s = self.lock();
        if s.stages.len() < self.max_stages && !self.retired.load(Ordering::Relaxed) {
            s.stages.push(StageTiming {
                stage: bounded(path).to_owned(),
                duration,
                failed,
            });
        } else {
            s.dropped_stages += 1;
        }
    }

    /// Frees the stages of a summary a newer request of the same id
    /// replaced (nobody can read it any more), and keeps none it is given
    /// later (the replaced request may still be running).
    fn retire(&self) {
        let mut s = self.lock();
        self.retired.store(true, Ordering::Relaxed);
        s.stages = Vec::new();
    }

    pub(super) fn finish(&self, total: Duration, failed: bool) {
        let mut s = self.lock();
        s.total = Some(total);
        s.failed = failed;
    }
}

/// A name as a summary keeps it: one longer than
/// [`TrackerConfig::MAX_NAME_LEN`] is shown as [`OVERFLOW`], the series
/// it was counted under, so a summary holds no name of a client's choosing
/// at any length.
fn bounded(name: &str) -> &str {
    if name.len() > TrackerConfig::MAX_NAME_LEN {
        OVERFLOW
    } else {
        name
    }
}

/// Request records by id, oldest first.
#[derive(Default)]
pub(super) struct Requests {
    by_id: HashMap<Arc<str>, Arc<RequestRecord>>,
    /// Every record inserted and not yet dropped, oldest first, replaced
    /// ones included (they are `stale`, retired: their stages freed, so
    /// the stage timings held stay within `max_requests ×
    /// max_stages_per_request` however the ids repeat); compacted when the
    /// stale ones outnumber the live, so it holds at most about twice the
    /// cap.
    order: VecDeque<Arc<RequestRecord>>,
    stale: usize,
}

impl Requests {
    pub(super) fn get(&self, id: &str) -> Option<&Arc<RequestRecord>> {
        self.by_id.get(id)
    }

    pub(super) fn len(&self) -> usize {
        self.by_id.len()
    }

    fn is_live(&self, record: &Arc<RequestRecord>) -> bool {
        self.by_id
            .get(&record.id)
            .is_some_and(|r| Arc::ptr_eq(r, record))
    }

    /// Adds `record` (replacing one with the same id), dropping the oldest
    /// records until at most `cap` are held.
    pub(super) fn insert(&mut self, record: Arc<RequestRecord>, cap: usize) {
        if let Some(replaced) = self
            .by_id
            .insert(Arc::clone(&record.id), Arc::clone(&record))
        {
            // Found by a hostile review: a replaced record kept its
            // stages until compaction, so ids sent twice (request ids come
            // from clients) held twice the documented bound.
            replaced.retire();
            self.stale += 1;
        }
        self.order.push_back(record);
        while self.by_id.len() > cap {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if self.is_live(&old) {
                self.by_id.remove(&old.id);
            } else {
                self.stale -= 1;
            }
        }
        if self.stale > self.by_id.len() {
            let order = std::mem::take(&mut self.order);
            self.order = order.into_iter().filter(|r| self.is_live(r)).collect();
            self.stale = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Tracker, TrackerConfig};

    /// Stage timings held by every record the table keeps, readable or
    /// not.
    fn stages_held(tracker: &Tracker) -> usize {
        let requests = tracker.inner.requests.lock().unwrap();
        requests.order.iter().map(|r| r.lock().stages.len()).sum()
    }

    /// A tracker sampling every request, keeping `cap` summaries of at
    /// most `stages` stage timings each.
    fn tracker_of(cap: usize, stages: usize) -> Tracker {
        Tracker::new(TrackerConfig {
            sample_rate: 1.0,
            max_requests: cap,
            max_stages_per_request: stages,
            ..TrackerConfig::default()
        })
        .unwrap()
    }

    /// A request id carrying a secret (request ids come from clients)
    /// never shows it in its summary, the summary's `Debug` or its JSON,
    /// redacted as operation and stage names are; the summary is found by
    /// the id as sent, and two ids differing only in their secret keep
    /// their own summaries. Found by a review: the id was kept and
    /// reported as sent.
    #[test]
    fn a_secret_in_a_request_id_never_shows_in_its_summary() {
        let tracker = tracker_of(8, 4);
        let ids = [
            ("token=hunter2-abc", "token=***"),
            ("token=hunter2-xyz", "token=***"),
            ("Bearer hunter2.jwt", "Bearer ***"),
            (
                "https://app:hunter2@id.example/r/1",
                "https://app:***@id.example/r/1",
            ),
        ];
        for (id, _) in ids {
            drop(tracker.track_request(id, "op"));
        }
        drop(tracker.track_request("req-plain", "op"));
        for (id, shown) in ids {
            let summary = tracker.execution_summary(id).unwrap();
            assert_eq!(summary.request_id, shown);
            let debug = format!("{summary:?}");
            let json = serde_json::to_string(&summary).unwrap();
            for text in [&summary.request_id, &debug, &json] {
                assert!(!text.contains("hunter2"), "{text}");
            }
        }
        assert_eq!(tracker.requests_held(), ids.len() + 1);
        let plain = tracker.execution_summary("req-plain").unwrap();
        assert_eq!(plain.request_id, "req-plain");
        assert!(tracker.execution_summary("token=***").is_none());
    }

    /// `max_requests × max_stages_per_request` bounds the stage timings
    /// all summaries hold together (`MAX_STAGES_HELD`'s docs), however the
    /// request ids repeat: request ids come from clients (a request-id
    /// header), and each one reused replaces its summary. Found by a
    /// hostile review: a replaced summary stayed in the FIFO, with its
    /// stages, until the replaced ones outnumbered the live ones, so ids
    /// sent twice held twice the bound (24 stage timings for a bound of
    /// 12 here; 2 × 2²⁰ at the largest settings).
    #[test]
    fn reused_request_ids_hold_no_more_stages_than_the_bound() {
        let (cap, stages) = (4usize, 3usize);
        let tracker = tracker_of(cap, stages);
        for round in 0..5 {
            for id in 0..cap {
                let op = tracker.track_request(&format!("req-{id}"), "op");
                for _ in 0..=stages {
                    drop(op.track_stage("s"));
                }
                drop(op);
                let held = stages_held(&tracker);
                assert!(
                    held <= cap * stages,
                    "round {round}, id {id}: {held} stage timings held, bound {}",
                    cap * stages
                );
            }
        }
        // Every live summary is whole: its stages, and the one dropped.
        for id in 0..cap {
            let s = tracker.execution_summary(&format!("req-{id}")).unwrap();
            assert_eq!((s.stages.len(), s.dropped_stages), (stages, 1), "{id}");
        }
        assert_eq!(tracker.requests_held(), cap);
    }

    /// The same bound with requests of reused ids started, staged, read
    /// and finished on four threads at once, a fifth checking it all the
    /// while (the replaced record is retired under the table's lock, then
    /// its own: the order every reader takes them in, so nothing waits
    /// on a lock held by a waiter).
    #[test]
    fn the_bound_holds_on_racing_threads() {
        let (cap, stages) = (8usize, 4usize);
        let tracker = tracker_of(cap, stages);
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            let workers: Vec<_> = (0..4u64)
                .map(|t| {
                    let tracker = &tracker;
                    s.spawn(move || {
                        let mut rng = fastrand::Rng::with_seed(t);
                        for _ in 0..3_000 {
                            let id = format!("req-{}", rng.u8(0..12));
                            let op = tracker.track_request(&id, "op");
                            for _ in 0..rng.usize(0..stages + 3) {
                                drop(op.track_stage("s"));
                            }
                            let _ = tracker.execution_summary(&id);
                            drop(op);
                        }
                    })
                })
                .collect();
            s.spawn(|| {
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    assert!(stages_held(&tracker) <= cap * stages);
                    assert!(tracker.requests_held() <= cap);
                }
            });
            for worker in workers {
                worker.join().unwrap();
            }
            done.store(true, std::sync::atomic::Ordering::Relaxed);
        });
        assert!(stages_held(&tracker) <= cap * stages);
        assert_eq!(tracker.requests_held(), cap);
    }
}
