//! [`TrackGuard`]: times one run of an operation or stage, records on drop.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::summary::RequestRecord;
use super::{Series, Tracker};
use crate::redact::redact;

/// Times one run of an operation or a stage; recorded when dropped.
///
/// From [`Tracker::track_operation`], [`Tracker::track_request`] or
/// [`TrackGuard::track_stage`]. It owns what it needs (`'static`, `Send`),
/// so it can be held across `.await`s.
///
/// # Cancellation
///
/// Dropping the guard is what records it, so a future cancelled while
/// holding one (a `select!` branch that lost, a `timeout`) still counts
/// the run, with the time it took until it was dropped.
///
/// # Panics
///
/// A run whose guard is dropped while its thread unwinds from a panic
/// (the operation panicked, or the task holding it did) counts as
/// failed: a panic is never recorded as a run that went well.
///
/// # Examples
///
/// ```
/// use fusebox_std::{Tracker, TrackerConfig};
///
/// let tracker = Tracker::new(TrackerConfig { sample_rate: 1.0, ..TrackerConfig::default() })?;
/// let op = tracker.track_operation("import");
/// {
///     let parse = op.track_stage("parse");
///     let mut validate = parse.track_stage("validate");
///     validate.fail();
/// }
/// drop(op);
/// let stats = tracker.stats();
/// assert_eq!(stats["import/parse/validate"].errors, 1);
/// assert_eq!(stats["import/parse"].errors, 0);
/// # Ok::<(), fusebox_std::TrackerConfigError>(())
/// ```
#[must_use = "a guard records its run when dropped; dropping it at once records ~0 µs"]
pub struct TrackGuard {
    tracker: Tracker,
    series: Arc<Series>,
    path: Box<str>,
    start: tokio::time::Instant,
    sampled: bool,
    failed: bool,
    request: Option<Arc<RequestRecord>>,
    /// Whether this is the operation (not a stage): it closes the request.
    root: bool,
}

impl TrackGuard {
    pub(super) fn start(
        tracker: Tracker,
        path: Box<str>,
        sampled: bool,
        request: Option<Arc<RequestRecord>>,
    ) -> Self {
        let series = tracker.series(&path);
        Self {
            tracker,
            series,
            path,
            start: tokio::time::Instant::now(),
            sampled,
            failed: false,
            request,
            root: true,
        }
    }

    /// Starts timing a stage of this run, named `<this path>/<name>`;
    /// sampled (and part of the request summary) exactly when this run is.
    ///
    /// ```
    /// use fusebox_std::{Tracker, TrackerConfig};
    ///
    /// let tracker = Tracker::new(TrackerConfig::default())?;
    /// let op = tracker.track_operation("checkout");
    /// let stage = op.track_stage("payment");
    /// assert_eq!(stage.path(), "checkout/payment");
    /// # Ok::<(), fusebox_std::TrackerConfigError>(())
    /// ```
    pub fn track_stage(&self, name: &str) -> TrackGuard {
        let mut stage = Self::start(
            self.tracker.clone(),
            format!("{}/{}", self.path, redact(name)).into(),
            self.sampled,
            self.request.clone(),
        );
        stage.root = false;
        stage
    }

    /// Marks this run failed: it counts as an error when recorded.
    ///
    /// ```
    /// use fusebox_std::{Tracker, TrackerConfig};
    ///
    /// let tracker = Tracker::new(TrackerConfig::default())?;
    /// let mut op = tracker.track_operation("send");
    /// op.fail();
    /// drop(op);
    /// assert_eq!(tracker.stats()["send"].errors, 1);
    /// # Ok::<(), fusebox_std::TrackerConfigError>(())
    /// ```
    pub fn fail(&mut self) {
        self.failed = true;
    }

    /// Marks this run failed if `result` is an error; returns `result`.
    ///
    /// # Errors
    ///
    /// `result`'s own error, unchanged.
    ///
    /// ```
    /// use fusebox_std::{Tracker, TrackerConfig};
    ///
    /// let tracker = Tracker::new(TrackerConfig::default())?;
    /// let mut op = tracker.track_operation("parse");
    /// let n = op.check("x".parse::<u32>()).unwrap_or(0);
    /// drop(op);
    /// assert_eq!((n, tracker.stats()["parse"].errors), (0, 1));
    /// # Ok::<(), fusebox_std::TrackerConfigError>(())
    /// ```
    pub fn check<T, E>(&mut self, result: Result<T, E>) -> Result<T, E> {
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    /// The series this run is recorded under (its full path).
    ///
    /// ```
    /// use fusebox_std::{Tracker, TrackerConfig};
    ///
    /// let tracker = Tracker::new(TrackerConfig::default())?;
    /// assert_eq!(tracker.track_operation("a").track_stage("b").path(), "a/b");
    /// # Ok::<(), fusebox_std::TrackerConfigError>(())
    /// ```
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Whether this run's latency will be recorded.
    ///
    /// ```
    /// use fusebox_std::{Tracker, TrackerConfig};
    ///
    /// let none = Tracker::new(TrackerConfig { sample_rate: 0.0, ..TrackerConfig::default() })?;
    /// assert!(!none.track_operation("a").is_sampled());
    /// # Ok::<(), fusebox_std::TrackerConfigError>(())
    /// ```
    pub fn is_sampled(&self) -> bool {
        self.sampled
    }
}

impl Drop for TrackGuard {
    fn drop(&mut self) {
        let elapsed = self.start.elapsed();
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.series.calls.fetch_add(1, Ordering::Relaxed);
        // The call is counted before its error and its latency, for every
        // reader that sees those (`Series::errors_and_calls`).
        std::sync::atomic::fence(Ordering::Release);
        // Dropped by a panic's unwinding: the run failed, whatever it
        // was marked (found by a hostile review: it counted as a success).
        self.failed |= std::thread::panicking();
        if self.failed {
            self.series.errors.fetch_add(1, Ordering::Relaxed);
        }
        if self.sampled {
            self.series.latency.record(micros);
        }
        if let Some(request) = &self.request {
            let took = fusebox::Duration::from_micros(micros);
            if self.root {
                request.finish(took, self.failed);
            } else {
                request.stage(&self.path, took, self.failed);
            }
        }
    }
}

impl std::fmt::Debug for TrackGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackGuard")
            .field("path", &self.path)
            .field("sampled", &self.sampled)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}
