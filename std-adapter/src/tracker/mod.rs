//! [`Tracker`]: per-operation latency percentiles, nested stages, request
//! summaries and sampling, in bounded memory.
//!
//! Every operation and every stage is a *series*, named by its path
//! (`"checkout"`, `"checkout/db"`, `"checkout/db/query"`): a core
//! [`Histogram`] of sampled latencies in microseconds plus exact call and
//! error counters. A [`TrackGuard`] times one run and records it when it is
//! dropped — at the end of a scope, or when the future holding it is
//! cancelled.
//!
//! # Bounds
//!
//! * names are [redacted](crate::redact) before use, so a name built from
//!   a URL never shows its credentials (and all its variants share one
//!   series); so is a request id in its summary (found by the id as sent);
//! * at most [`TrackerConfig::max_series`] series; calls under any further
//!   name (or a name longer than [`TrackerConfig::MAX_NAME_LEN`]) are
//!   counted under the one [`OVERFLOW`] series, so names chosen by clients
//!   never grow memory;
//! * latencies are kept to 60 s: a percentile that falls among longer
//!   runs reads the maximum (see [`Latency`](Latency#range));
//! * at most [`TrackerConfig::max_requests`] request summaries, the oldest
//!   dropped first, each with at most
//!   [`TrackerConfig::max_stages_per_request`] stage timings.
//!
//! # Sampling
//!
//! Calls and errors are always counted; only a sampled run's latency is
//! recorded (`sample_rate`, default 10 %). [`Tracker::track_operation`]
//! draws at random; [`Tracker::track_request`] decides from a hash of the
//! request id, so every stage of a request, and every service seeing the
//! same id, makes the same choice. Stages inherit their operation's choice.
//!
//! The hash is specified, so that another build, another architecture or
//! a service in another language can make the same choice: the 64-bit
//! FNV-1a hash of the id's UTF-8 bytes, passed through splitmix64's
//! finalizer (`h ^= h >> 30; h *= 0xbf58476d1ce4e5b9; h ^= h >> 27;
//! h *= 0x94d049bb133111eb; h ^= h >> 31`, wrapping); the request is
//! sampled when that is below `sample_rate · 2⁶⁴` (always at rate 1).
//!
//! # Examples
//!
//! ```
//! use fusebox_std::{Tracker, TrackerConfig};
//!
//! let tracker = Tracker::new(TrackerConfig { sample_rate: 1.0, ..TrackerConfig::default() })?;
//! {
//!     let op = tracker.track_operation("checkout");
//!     let _db = op.track_stage("db");
//! } // both recorded here
//! let stats = tracker.stats();
//! assert_eq!(stats["checkout"].calls, 1);
//! assert_eq!(stats["checkout/db"].calls, 1);
//! # Ok::<(), fusebox_std::TrackerConfigError>(())
//! ```

mod config;
mod guard;
#[cfg(test)]
mod history_tests;
mod summary;

pub use config::{TrackerConfig, TrackerConfigError};
pub use guard::TrackGuard;
pub use summary::{ExecutionSummary, StageTiming};

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use fusebox::histogram::{buckets_for, Histogram};

use crate::high_water::HighWater;
use crate::redact::redact;
use summary::{RequestRecord, Requests};

/// The series that counts every call under a name the tracker had no room
/// for (see the [module docs](self#bounds)).
///
/// ```
/// use fusebox_std::{tracker::OVERFLOW, Tracker, TrackerConfig};
///
/// let tracker = Tracker::new(TrackerConfig { max_series: 1, ..TrackerConfig::default() })?;
/// drop(tracker.track_operation("a"));
/// drop(tracker.track_operation("b")); // no room: counted as overflow
/// assert_eq!(tracker.stats()[OVERFLOW].calls, 1);
/// # Ok::<(), fusebox_std::TrackerConfigError>(())
/// ```
pub const OVERFLOW: &str = "__overflow__";

/// The latency histogram of a series: microseconds up to 60 s (2 533
/// buckets, about 20 KiB); a longer run is counted in the top bucket (its
/// exact value still counts in the sum and the maximum), and a percentile
/// of rank among such runs reads the maximum ([`Latency`]'s range).
pub(crate) type LatencyHistogram = Histogram<{ buckets_for(60_000_000) }>;

/// One operation or stage: sampled latencies and exact counters.
pub(crate) struct Series {
    pub(crate) latency: Box<LatencyHistogram>,
    calls: AtomicU64,
    errors: AtomicU64,
    /// The largest latency sum [`latency_sum`](Self::latency_sum) returned.
    sum_seen: HighWater,
    /// The largest count [`last_bound_count`](Self::last_bound_count)
    /// returned.
    last_bound_seen: HighWater,
}

// Only the exposition's last `le` bound (60 s) shares a core bucket with
// the runs past the range (the top one, from 59.77 s): the bound before it
// ends below that bucket.
const _: () = {
    use crate::prometheus::LATENCY_BOUNDS_US;
    let n = LATENCY_BOUNDS_US.len();
    assert!(buckets_for(LATENCY_BOUNDS_US[n - 2]) < buckets_for(LATENCY_BOUNDS_US[n - 1]));
    assert!(buckets_for(LATENCY_BOUNDS_US[n - 1]) == buckets_for(60_000_000));
};

impl Series {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            latency: LatencyHistogram::new_boxed(),
            calls: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            sum_seen: HighWater::default(),
            last_bound_seen: HighWater::default(),
        })
    }

    pub(crate) fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// The errors, then the calls, for a reader that read the latency
    /// first. A run ends by counting its call, then (after the guard's
    /// release fence) its error and its latency: read backwards, with the
    /// acquire fence here, every run seen in the latency or the errors is
    /// counted in the calls, so no report has more sampled or failed runs
    /// than runs (found by a hostile review: with the calls read first,
    /// runs ending during a walk of the histogram were sampled, not
    /// called).
    pub(crate) fn errors_and_calls(&self) -> (u64, u64) {
        let errors = self.errors.load(Ordering::Relaxed);
        std::sync::atomic::fence(Ordering::Acquire);
        (errors, self.calls())
    }

    /// The sampled latencies' sum in microseconds, never less than it
    /// returned before (the Prometheus `_sum`, a counter). The histogram's
    /// sum read while a run is recorded may miss a carry of a bucket's
    /// offsets on its way to the spill (up to 2^20 us; never counts one
    /// twice): the largest sum read is returned, never above the runs
    /// recorded, exact once none is being recorded.
    pub(crate) fn latency_sum(&self) -> u64 {
        let sum = self.latency.sum();
        self.sum_seen.at_least(sum)
    }

    /// The Prometheus count at the last `le` bound (60 s): `read`, the runs
    /// the bucket list had in the core buckets that start at or below it,
    /// raised to the largest count returned before, never above `total`
    /// (the runs of that same list), so it never goes back between
    /// scrapes. The top core bucket (59.77 s to 60.03 s) also counts a run
    /// past the range until the clamped count takes it out; that count is
    /// raised first, so a list read between the two steps has one run
    /// fewer there (never one more). Exact once none is being recorded.
    pub(crate) fn last_bound_count(&self, read: u64, total: u64) -> u64 {
        self.last_bound_seen.at_least(read).min(total)
    }

    fn stats(&self) -> OperationStats {
        #[cfg(test)]
        STATS_COMPUTED.with(|computed| computed.set(computed.get() + 1));
        let h = &self.latency;
        let pct = |q| h.percentile(q).ok().flatten().unwrap_or(0);
        // The maximum read last: each read sees every run the ones before
        // it saw, so runs recorded meanwhile never put a percentile or the
        // mean above the maximum reported (found by a hostile review: read
        // first, it was below p99.9 in reports taken during runs).
        let (p50, p95, p99, p999) = (pct(50.0), pct(95.0), pct(99.0), pct(99.9));
        let mean = h.mean().unwrap_or(0.0);
        let latency = h.max().map(|max| Latency {
            p50,
            p95,
            p99,
            p999,
            max,
            mean,
        });
        let sampled = h.count();
        let (errors, calls) = self.errors_and_calls();
        OperationStats {
            calls,
            errors,
            sampled,
            latency_us: latency,
        }
    }
}

/// What a tracker knows about one operation or stage.
///
/// # Examples
///
/// ```
/// use fusebox_std::{Tracker, TrackerConfig};
///
/// let tracker = Tracker::new(TrackerConfig { sample_rate: 0.0, ..TrackerConfig::default() })?;
/// let mut op = tracker.track_operation("login");
/// op.fail();
/// drop(op);
/// let stats = tracker.stats()["login"];
/// assert_eq!((stats.calls, stats.errors, stats.sampled), (1, 1, 0));
/// assert_eq!(stats.latency_us, None); // nothing sampled
/// # Ok::<(), fusebox_std::TrackerConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct OperationStats {
    /// Runs finished (sampled or not).
    pub calls: u64,
    /// Runs marked failed ([`TrackGuard::fail`]).
    pub errors: u64,
    /// Runs whose latency was recorded.
    pub sampled: u64,
    /// Percentiles of the sampled latencies, `None` before the first.
    pub latency_us: Option<Latency>,
}

/// Sampled latency in microseconds: nearest-rank percentiles within 1/256
/// of the exact run (≈ 0.39 %, the core [`Histogram`]'s bound), the exact
/// maximum and mean.
///
/// # Range
///
/// The bound holds for runs of up to 60 s (the histogram's range: 60 s
/// rounded up to the end of its bucket, 60 030 975 µs). Longer runs are
/// counted and weigh exactly in `max` and `mean`, but a percentile whose
/// rank falls on one of them is reported as `max`, an upper bound: with
/// three runs of 90 s and one of 300 s, the median reads 300 s.
///
/// ```
/// use fusebox_std::{Tracker, TrackerConfig};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let tracker = Tracker::new(TrackerConfig { sample_rate: 1.0, ..TrackerConfig::default() })?;
/// for secs in [90, 90, 90, 300] {
///     let op = tracker.track_operation("export");
///     tokio::time::advance(std::time::Duration::from_secs(secs)).await;
///     drop(op);
/// }
/// let latency = tracker.stats()["export"].latency_us.unwrap();
/// assert_eq!((latency.p50, latency.max), (300_000_000, 300_000_000)); // not 90 s
/// assert_eq!(latency.mean, 142_500_000.0);
/// # Ok(())
/// # }
/// ```
///
/// # Examples
///
/// ```
/// use fusebox_std::{Tracker, TrackerConfig};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let tracker = Tracker::new(TrackerConfig { sample_rate: 1.0, ..TrackerConfig::default() })?;
/// let op = tracker.track_operation("render");
/// tokio::time::sleep(std::time::Duration::from_millis(5)).await; // paused: exact
/// drop(op);
/// let latency = tracker.stats()["render"].latency_us.unwrap();
/// assert_eq!((latency.p50, latency.max), (5_000, 5_000));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Latency {
    /// Median.
    pub p50: u64,
    /// 95th percentile.
    pub p95: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest.
    pub max: u64,
    /// Mean.
    pub mean: f64,
}

/// Per-operation latency tracker; see the [module docs](self).
///
/// Cheap to clone (one `Arc`); clones share everything.
///
/// # Examples
///
/// ```
/// use fusebox_std::{Tracker, TrackerConfig};
///
/// let tracker = Tracker::new(TrackerConfig::default())?;
/// let shared = tracker.clone();
/// std::thread::spawn(move || drop(shared.track_operation("job"))).join().unwrap();
/// assert_eq!(tracker.stats()["job"].calls, 1);
/// # Ok::<(), fusebox_std::TrackerConfigError>(())
/// ```
#[derive(Clone)]
pub struct Tracker {
    inner: Arc<Inner>,
}

struct Inner {
    config: TrackerConfig,
    /// `sample_rate` as a threshold on a uniform `u64`: sampled when
    /// below; `None` samples everything.
    threshold: Option<u64>,
    series: RwLock<HashMap<Box<str>, Arc<Series>>>,
    overflow: Arc<Series>,
    requests: Mutex<Requests>,
}

impl std::fmt::Debug for Tracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracker")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Tracker {
    /// A tracker with `config`.
    ///
    /// # Errors
    ///
    /// [`TrackerConfigError`] if a field is out of range
    /// ([`TrackerConfig::validate`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox_std::{Tracker, TrackerConfig};
    ///
    /// let tracker = Tracker::new(TrackerConfig::default())?;
    /// assert_eq!(tracker.config().sample_rate, 0.1);
    /// # Ok::<(), fusebox_std::TrackerConfigError>(())
    /// ```
    pub fn new(config: TrackerConfig) -> Result<Self, TrackerConfigError> {
        config.validate()?;
        // `sample_rate` is in 0..=1: the product fits u64 unless it is 1.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let threshold =
            (config.sample_rate < 1.0).then(|| (config.sample_rate * 2f64.powi(64)) as u64);
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                threshold,
                series: RwLock::new(HashMap::new()),
                overflow: Series::new(),
                requests: Mutex::new(Requests::default()),
            }),
        })
    }

    /// The configuration.
    ///
    /// ```
    /// use fusebox_std::{Tracker, TrackerConfig};
    ///
    /// let tracker = Tracker::new(TrackerConfig { max_series: 8, ..TrackerConfig::default() })?;
    /// assert_eq!(tracker.config().max_series, 8);
    /// # Ok::<(), fusebox_std::TrackerConfigError>(())
    /// ```
    pub fn config(&self) -> &TrackerConfig {
        &self.inner.config
    }

    /// Starts timing one run of `operation`, sampled at random. Recorded
    /// when the guard is dropped.
    ///
    /// ```
    /// use fusebox_std::{Tracker, TrackerConfig};
    ///
    /// let tracker = Tracker::new(TrackerConfig::default())?;
    /// drop(tracker.track_operation("search"));
    /// assert_eq!(tracker.stats()["search"].calls, 1);
    /// # Ok::<(), fusebox_std::TrackerConfigError>(())
    /// ```
    pub fn track_operation(&self, operation: &str) -> TrackGuard {
        let sampled = self.inner.sample(fastrand::u64(..));
        TrackGuard::start(self.clone(), redact(operation).into(), sampled, None)
    }

    /// Starts timing one run of `operation` for request `request_id`,
    /// sampled by the id's hash (the [specified one](self#sampling)), and
    /// (if sampled) keeps an [`ExecutionSummary`] of it and its stages,
    /// readable with [`execution_summary`](Self::execution_summary) while
    /// it runs and after, until `max_requests` newer requests push it out. An id
    /// longer than [`TrackerConfig::MAX_NAME_LEN`] bytes gets no summary;
    /// an operation or stage name (its full path) longer than that shows
    /// in the summary as [`OVERFLOW`], the series it is counted under.
    /// The summary shows the id [redacted](crate::redact) (ids come from
    /// clients, and may carry a token) and is found by the id as sent.
    ///
    /// ```
    /// use fusebox_std::{Tracker, TrackerConfig};
    ///
    /// let tracker = Tracker::new(TrackerConfig { sample_rate: 1.0, ..TrackerConfig::default() })?;
    /// let op = tracker.track_request("req-42", "checkout");
    /// drop(op.track_stage("db"));
    /// let running = tracker.execution_summary("req-42").unwrap();
    /// assert_eq!(running.total, None); // still running
    /// assert_eq!(running.stages[0].stage, "checkout/db");
    /// drop(op);
    /// assert!(tracker.execution_summary("req-42").unwrap().total.is_some());
    /// # Ok::<(), fusebox_std::TrackerConfigError>(())
    /// ```
    pub fn track_request(&self, request_id: &str, operation: &str) -> TrackGuard {
        let sampled = self.inner.sample(request_draw(request_id));
        let operation = redact(operation);
        let record = (sampled && request_id.len() <= TrackerConfig::MAX_NAME_LEN)
            .then(|| self.inner.open_request(request_id, &operation))
            .flatten();
        TrackGuard::start(self.clone(), operation.into(), sampled, record)
    }

    /// The summary of request `request_id`, if it was sampled and is still
    /// held.
    ///
    /// ```
    /// use fusebox_std::{Tracker, TrackerConfig};
    ///
    /// let tracker = Tracker::new(TrackerConfig { sample_rate: 1.0, ..TrackerConfig::default() })?;
    /// assert!(tracker.execution_summary("nobody").is_none());
    /// # Ok::<(), fusebox_std::TrackerConfigError>(())
    /// ```
    pub fn execution_summary(&self, request_id: &str) -> Option<ExecutionSummary> {
        let requests = self
            .inner
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        requests.get(request_id).map(|record| record.summary())
    }

    /// Request summaries currently held.
    ///
    /// ```
    /// use fusebox_std::{Tracker, TrackerConfig};
    ///
    /// let tracker = Tracker::new(TrackerConfig { sample_rate: 1.0, max_requests: 2, ..TrackerConfig::default() })?;
    /// for id in ["a", "b", "c"] {
    ///     drop(tracker.track_request(id, "op"));
    /// }
    /// assert_eq!(tracker.requests_held(), 2);
    /// assert!(tracker.execution_summary("a").is_none()); // the oldest went first
    /// # Ok::<(), fusebox_std::TrackerConfigError>(())
    /// ```
    pub fn requests_held(&self) -> usize {
        self.inner
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Every series by path (operations and stages), the
    /// [`OVERFLOW`] series included once it has counted a call.
    ///
    /// ```
    /// use fusebox_std::{Tracker, TrackerConfig};
    ///
    /// let tracker = Tracker::new(TrackerConfig::default())?;
    /// assert!(tracker.stats().is_empty());
    /// # Ok::<(), fusebox_std::TrackerConfigError>(())
    /// ```
    pub fn stats(&self) -> BTreeMap<String, OperationStats> {
        let mut out = BTreeMap::new();
        self.for_each_series(|name, series| {
            out.insert(name.to_owned(), series.stats());
        });
        out
    }

    /// Calls `f` with every series in name order (for the exporters).
    pub(crate) fn for_each_series(&self, mut f: impl FnMut(&str, &Series)) {
        let series = self
            .inner
            .series
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let mut named: Vec<(&str, &Series)> = series.iter().map(|(k, v)| (&**k, &**v)).collect();
        if self.inner.overflow.calls() != 0 {
            named.push((OVERFLOW, &self.inner.overflow));
        }
        named.sort_unstable_by_key(|(name, _)| *name);
        for (name, s) in named {
            f(name, s);
        }
    }

    /// The series for `path`, created if there is room, else the overflow.
    fn series(&self, path: &str) -> Arc<Series> {
        let inner = &*self.inner;
        if path.len() > TrackerConfig::MAX_NAME_LEN || path == OVERFLOW {
            return Arc::clone(&inner.overflow);
        }
        {
            let map = inner.series.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(s) = map.get(path) {
                return Arc::clone(s);
            }
            // Full: a flood of new names never takes the write lock.
            if map.len() >= inner.config.max_series {
                return Arc::clone(&inner.overflow);
            }
        }
        let mut map = inner.series.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = map.get(path) {
            return Arc::clone(s);
        }
        if map.len() >= inner.config.max_series {
            return Arc::clone(&inner.overflow);
        }
        Arc::clone(map.entry(path.into()).or_insert_with(Series::new))
    }
}

/// The draw a request id samples with (see the [module docs](self#sampling)):
/// FNV-1a, 64 bits, of the id's bytes, then splitmix64's finalizer (FNV-1a
/// alone mixes its last bytes poorly into the high bits the threshold
/// reads). Found by a hostile review: it was foldhash's, which its authors
/// do not keep across versions or platforms (a 32-bit target computes
/// another product), so services seeing one id could choose differently.
fn request_draw(id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in id.as_bytes() {
        h = (h ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

impl Inner {
    fn sample(&self, draw: u64) -> bool {
        self.threshold.is_none_or(|t| draw < t)
    }

    fn open_request(&self, id: &str, operation: &str) -> Option<Arc<RequestRecord>> {
        let cap = self.config.max_requests;
        (cap > 0).then(|| {
            let record = Arc::new(RequestRecord::new(
                id,
                operation,
                self.config.max_stages_per_request,
            ));
            self.requests
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(Arc::clone(&record), cap);
            record
        })
    }
}

#[cfg(test)]
thread_local! {
    /// Series statistics (percentiles) computed on this thread: a test asks
    /// whether a scrape computed any (the Prometheus exposition must not).
    pub(crate) static STATS_COMPUTED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documented choice, written from the docs: FNV-1a (64 bits) of
    /// the id's UTF-8 bytes, through splitmix64's finalizer, sampled when
    /// below `sample_rate · 2⁶⁴`.
    fn documented_draw(id: &str) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in id.as_bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^ (h >> 31)
    }

    /// Sampling by request id is the function the docs name, so that every
    /// service seeing an id (another build, another architecture, another
    /// language) makes the same choice. Found by a hostile review: it was
    /// foldhash's, whose output its authors do not keep across versions or
    /// platforms (a 32-bit target computes another product), so two
    /// services could split one request's stages between sampled and not.
    #[test]
    fn request_sampling_is_the_documented_stable_function() {
        // FNV-1a's published test vectors pin the model itself.
        let fnv = |s: &str| {
            s.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
            })
        };
        assert_eq!(fnv(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv("foobar"), 0x8594_4171_f739_67e8);
        for rate in [0.01, 0.1, 0.5, 0.9] {
            let tracker = Tracker::new(TrackerConfig {
                sample_rate: rate,
                max_requests: 0,
                ..TrackerConfig::default()
            })
            .unwrap();
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let threshold = (rate * 2f64.powi(64)) as u64;
            let mut sampled = 0u32;
            for i in 0..4_000 {
                let id = format!("req-{i}");
                let want = documented_draw(&id) < threshold;
                let got = tracker.track_request(&id, "op").is_sampled();
                assert_eq!(got, want, "rate {rate}, id {id}");
                sampled += u32::from(got);
            }
            let expected = rate * 4_000.0;
            assert!(
                (f64::from(sampled) - expected).abs() <= 4_000f64.sqrt() * 4.0,
                "rate {rate}: {sampled} of 4000"
            );
        }
    }

    /// Sound, kept as a test (hostile review): against the exact
    /// nearest-rank percentiles of the recorded runs (the `Latency` docs),
    /// every reported percentile is within 1/256 (or 1 µs), and the
    /// maximum and mean are exact, for mixes of short, long (up to 60 s)
    /// and whole-millisecond runs.
    #[tokio::test(start_paused = true)]
    async fn percentiles_are_nearest_rank_within_the_bound() {
        let mut rng = fastrand::Rng::with_seed(11);
        for round in 0..30 {
            let tracker = Tracker::new(TrackerConfig {
                sample_rate: 1.0,
                ..TrackerConfig::default()
            })
            .unwrap();
            let n = rng.usize(1..2_000);
            let mut runs: Vec<u64> = (0..n)
                .map(|_| match rng.u8(0..4) {
                    0 => rng.u64(0..300),
                    1 => rng.u64(0..60_000_000),
                    2 => rng.u64(1_000..50_000),
                    _ => 1_000 * rng.u64(0..100),
                })
                .collect();
            for &micros in &runs {
                let op = tracker.track_operation("op");
                tokio::time::advance(std::time::Duration::from_micros(micros)).await;
                drop(op);
            }
            runs.sort_unstable();
            // Rank k = max(1, ⌈q·n/100⌉), in integers (q in tenths).
            let exact = |tenths: usize| runs[(tenths * n).div_ceil(1_000).max(1) - 1];
            let l = tracker.stats()["op"].latency_us.unwrap();
            for (tenths, got) in [(500, l.p50), (950, l.p95), (990, l.p99), (999, l.p999)] {
                let want = exact(tenths);
                assert!(
                    got.abs_diff(want) <= 1 || got.abs_diff(want) * 256 <= want,
                    "round {round}, {n} runs, q {tenths}‰: {got} for {want}"
                );
            }
            assert_eq!(l.max, runs[n - 1]);
            let sum: u64 = runs.iter().sum();
            #[allow(clippy::cast_precision_loss)]
            let mean = sum as f64 / n as f64;
            assert!(
                (l.mean - mean).abs() <= 1e-9 * mean.max(1.0),
                "{} for {mean}",
                l.mean
            );
        }
    }

    /// The bound is 1/256 exactly, and it is reached (the docs said
    /// 0.39 %, which it exceeds by 0.000625 points): a run of 2^20 µs is
    /// the lowest value of its core bucket (2^20 ..= 2^20 + 8191, the
    /// core's documented layout), reported as the bucket's midpoint.
    #[tokio::test(start_paused = true)]
    async fn the_percentile_bound_is_one_in_256_and_is_reached() {
        let tracker = Tracker::new(TrackerConfig {
            sample_rate: 1.0,
            ..TrackerConfig::default()
        })
        .unwrap();
        for micros in [1, 1 << 20, 1 << 20, 2_000_000] {
            let op = tracker.track_operation("op");
            tokio::time::advance(std::time::Duration::from_micros(micros)).await;
            drop(op);
        }
        // Rank ⌈0.5 · 4⌉ = 2: a run of 2^20 µs, reported 2^20 / 256 above it.
        let p50 = tracker.stats()["op"].latency_us.unwrap().p50;
        assert_eq!(p50, (1 << 20) + (1 << 20) / 256);
        assert!(p50 - (1 << 20) > (1 << 20) * 39 / 10_000);
    }

    /// Sound, kept as a test (hostile review): request summaries under
    /// reused ids follow a model of the docs: at most `max_requests` held,
    /// the oldest dropped first, an id reads its latest request.
    #[test]
    fn reused_request_ids_follow_the_fifo_model() {
        let mut rng = fastrand::Rng::with_seed(3);
        for cap in [1usize, 2, 3, 7] {
            let tracker = Tracker::new(TrackerConfig {
                sample_rate: 1.0,
                max_requests: cap,
                ..TrackerConfig::default()
            })
            .unwrap();
            // (id, operation), oldest first, one entry per id.
            let mut model: Vec<(String, String)> = Vec::new();
            for step in 0..2_000 {
                let id = format!("r{}", rng.u8(0..10));
                let op = format!("op{step}");
                drop(tracker.track_request(&id, &op));
                model.retain(|(held, _)| *held != id);
                model.push((id, op));
                if model.len() > cap {
                    model.remove(0);
                }
                assert_eq!(
                    tracker.requests_held(),
                    model.len(),
                    "cap {cap}, step {step}"
                );
                for i in 0..10 {
                    let id = format!("r{i}");
                    let want = model.iter().find(|(held, _)| *held == id).map(|(_, op)| op);
                    let got = tracker.execution_summary(&id).map(|s| s.operation);
                    assert_eq!(got.as_ref(), want, "cap {cap}, step {step}, {id}");
                }
            }
        }
    }
}
