//! [`FleetPercentiles`]: every instance pushes its tracker's latency
//! histograms to Redis; each reads everyone's back, merges them with the
//! core's [`merge_buckets_with_totals`] and reports fleet p50/p95/p99 in
//! [`Registry::health`](crate::Registry::health) next to its local ones.
//!
//! # Keys and values
//!
//! One Redis hash per tracked series, `<prefix>:{hist:<tracker>:<series>}`
//! (both names [escaped](crate::backend::escape), so one hash tag holds
//! one series: Cluster-safe, one read per series). The field is the
//! instance id; the value is the instance's non-empty buckets with its
//! totals and the Redis `TIME` it was written at (format in `codec.rs`).
//! Every push sets the field and `PEXPIRE`s the hash to the `ttl`. A field
//! older than the `ttl` (its instance stopped pushing) is ignored and
//! deleted; `HEXPIRE` would do this per field but needs Redis 7.4. A hash
//! is read by one script call (`scripts/fleet_read.lua`; one key, so
//! Cluster-safe), atomic and bounded: at most [`MAX_INSTANCES`] fields
//! (`HSCAN` inside the script), no name or value over 128 KiB sent (such
//! fields are deleted there and counted). Deleting a stale or corrupt
//! field is a compare-and-delete (`scripts/fleet_delete.lua`, on the
//! SHA-1 of the value read): a fresh value its instance pushed after the
//! read stays.
//!
//! # Faults
//!
//! A value of a newer format (`v2;<written_ms>;…` and on, written by a
//! newer instance during a rolling upgrade) is skipped, not merged,
//! counted per series in [`FleetSeries::newer`] and left in place for the
//! instances that read it; it is deleted only once expired (and counted
//! corrupt if written in the future). Any other value that does not
//! decode, is too large, claims absurd counts, is
//! written in the future or that the core refuses to merge is skipped,
//! deleted and counted ([`FleetReport::corrupt`]); the first is logged, the others
//! only at debug level; the value itself never is. While Redis fails the
//! report keeps the last merged figures marked `available: false`,
//! `stale: true`, with the (redacted) error; [`spawn`](FleetPercentiles::spawn)'s
//! task retries every interval. The local percentiles are unaffected.
//!
//! [`merge_buckets_with_totals`]: fusebox::histogram::Histogram::merge_buckets_with_totals

mod codec;
mod report;

pub use report::{FleetConfig, FleetReport, FleetSeries, MAX_INSTANCE_LEN};

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::Duration;

use redis::{Script, Value};

use super::super::{escape, BackendError, KeyPrefix};
use super::{RedisBackend, RedisConnection};
use crate::redact::Redacted;
use crate::tracker::{LatencyHistogram, Tracker};
use codec::Corrupt;

/// Whether Redis refused a command for the key's type (`WRONGTYPE`).
fn is_wrong_type(e: &BackendError) -> bool {
    matches!(e, BackendError::Unavailable(text) if text.contains("WRONGTYPE"))
}

/// The read script (`scripts/fleet_read.lua`).
static READ: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../scripts/fleet_read.lua")));
/// The compare-and-delete script (`scripts/fleet_delete.lua`).
static DELETE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../scripts/fleet_delete.lua")));

/// The digest the delete script compares a field's value with.
fn digest(value: &[u8]) -> String {
    sha1_smol::Sha1::from(value).hexdigest()
}

/// The most instances merged per series; further fields count as corrupt.
///
/// ```
/// use fusebox_std::backend::MAX_INSTANCES;
///
/// assert_eq!(MAX_INSTANCES, 1024);
/// ```
pub const MAX_INSTANCES: usize = 1024;

/// Fleet-wide percentiles of one [`Tracker`] through Redis: each instance
/// pushes its histograms to one hash per series
/// (`<prefix>:{hist:<tracker>:<series>}`, a field per instance, expiring
/// with the `ttl`), reads everyone's back and merges them; corrupt fields
/// are skipped, deleted and counted, at most [`MAX_INSTANCES`] are read.
///
/// # Examples
///
/// This example connects to a Redis server, so the doctests compile
/// it without running it.
///
/// ```no_run
/// use std::sync::Arc;
/// use fusebox_std::backend::{FleetConfig, FleetPercentiles, RedisBackend, RedisConfig};
/// use fusebox_std::{Registry, TrackerConfig};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let registry = Registry::new();
/// let http = registry.tracker("http", TrackerConfig::default())?;
/// let backend = RedisBackend::connect(RedisConfig::new("redis://127.0.0.1:6379")).await?;
/// let fleet = Arc::new(FleetPercentiles::new("http", http, &backend, FleetConfig::new("pod-a")?));
/// registry.register_fleet_percentiles(&fleet)?;
/// let _task = fleet.spawn(); // pushes and merges every interval
/// let report = &registry.health().fleet["http"];
/// println!("fleet p99 of checkout: {:?}", report.series.get("checkout").and_then(|s| s.p99));
/// # Ok(()) }
/// ```
pub struct FleetPercentiles {
    name: Box<str>,
    tracker: Tracker,
    conn: RedisConnection,
    prefix: KeyPrefix,
    timeout: Duration,
    config: FleetConfig,
    state: Mutex<State>,
    corrupt: AtomicU64,
    faults: AtomicU64,
    warned_corrupt: AtomicBool,
}

#[derive(Default)]
struct State {
    synced: bool,
    error: Option<String>,
    series: BTreeMap<String, FleetSeries>,
}

impl std::fmt::Debug for FleetPercentiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetPercentiles")
            .field("name", &self.name)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl FleetPercentiles {
    /// Fleet percentiles of `tracker`, published under `name` (the
    /// tracker's registry name) through `backend`'s connection, prefix
    /// and per-command timeout. Nothing is sent until
    /// [`sync`](Self::sync) or [`spawn`](Self::spawn).
    ///
    /// ```
    /// use fusebox_std::backend::{FleetConfig, FleetPercentiles, RedisBackend, RedisConfig};
    /// use fusebox_std::{Registry, TrackerConfig};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let registry = Registry::new();
    /// let http = registry.tracker("http", TrackerConfig::default())?;
    /// let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:1"))?;
    /// let fleet = FleetPercentiles::new("http", http, &backend, FleetConfig::new("pod-a")?);
    /// // Nothing sent yet: no figures, and no fault either.
    /// let report = fleet.report();
    /// assert!(!report.available && !report.stale && report.series.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn new(name: &str, tracker: Tracker, backend: &RedisBackend, config: FleetConfig) -> Self {
        Self {
            name: name.into(),
            tracker,
            conn: backend.connection(),
            prefix: backend.prefix().clone(),
            timeout: backend.timeout(),
            config,
            state: Mutex::new(State::default()),
            corrupt: AtomicU64::new(0),
            faults: AtomicU64::new(0),
            warned_corrupt: AtomicBool::new(false),
        }
    }

    /// The tracker's name.
    ///
    /// ```
    /// use fusebox_std::backend::{FleetConfig, FleetPercentiles, RedisBackend, RedisConfig};
    /// use fusebox_std::{Registry, TrackerConfig};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let registry = Registry::new();
    /// let http = registry.tracker("http", TrackerConfig::default())?;
    /// let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:1"))?;
    /// let fleet = FleetPercentiles::new("http", http, &backend, FleetConfig::new("pod-a")?);
    /// assert_eq!(fleet.name(), "http");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The hash of `series`: `<prefix>:{hist:<name>:<series>}`, escaped.
    ///
    /// # Errors
    ///
    /// [`BackendError::InvalidKey`] for a name longer than
    /// [`MAX_KEY_LEN`](crate::backend::MAX_KEY_LEN).
    ///
    /// ```
    /// use fusebox_std::backend::{FleetConfig, FleetPercentiles, RedisBackend, RedisConfig};
    /// use fusebox_std::{Registry, TrackerConfig};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let registry = Registry::new();
    /// let http = registry.tracker("http", TrackerConfig::default())?;
    /// let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:1"))?;
    /// let fleet = FleetPercentiles::new("http", http, &backend, FleetConfig::new("pod-a")?);
    /// assert_eq!(fleet.key("GET /users")?, "fusebox:{hist:http:GET%20%2Fusers}");
    /// assert!(fleet.key(&"x".repeat(257)).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn key(&self, series: &str) -> Result<String, BackendError> {
        Ok(format!(
            "{}:{{hist:{}:{}}}",
            self.prefix.as_str(),
            escape(&self.name)?,
            escape(series)?
        ))
    }

    /// One round: pushes every non-empty local series, then reads and
    /// merges every instance's, updating the [`report`](Self::report).
    ///
    /// # Errors
    ///
    /// The first Redis fault ([`BackendError::Timeout`] after the
    /// backend's per-command timeout), or [`BackendError::InvalidKey`] for
    /// a name too long to be in a key (every round, before any command);
    /// the report is then marked stale.
    ///
    /// ```
    /// use fusebox_std::backend::{FleetConfig, FleetPercentiles, RedisBackend, RedisConfig};
    /// use fusebox_std::{Registry, TrackerConfig};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// // Nothing listens on port 1.
    /// let registry = Registry::new();
    /// let http = registry.tracker("http", TrackerConfig::default())?;
    /// let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:1"))?;
    /// let fleet = FleetPercentiles::new("http", http, &backend, FleetConfig::new("pod-a")?);
    /// assert!(fleet.sync().await.unwrap_err().is_fault());
    /// let report = fleet.report();
    /// assert!(report.stale && !report.available);
    /// assert_eq!(report.faults, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn sync(&self) -> Result<(), BackendError> {
        let result = self.round().await;
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match result {
            Ok(series) => {
                if state.error.take().is_some() {
                    tracing::info!(fleet = %Redacted(&self.name), "fleet percentiles available again");
                }
                state.synced = true;
                state.series = series;
                Ok(())
            }
            Err(e) => {
                self.faults.fetch_add(1, Ordering::Relaxed);
                if state.error.is_none() {
                    tracing::warn!(fleet = %Redacted(&self.name), error = %Redacted(&e), "fleet percentiles unavailable");
                }
                state.error = Some(e.to_string());
                Err(e)
            }
        }
    }

    /// Runs [`sync`](Self::sync) every [`FleetConfig::interval`] on a
    /// tokio task, which ends once every other `Arc` of `self` is dropped
    /// (or when the handle is aborted). A failed round is retried at the
    /// next tick.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use fusebox_std::backend::{FleetConfig, FleetPercentiles, RedisBackend, RedisConfig};
    /// use fusebox_std::{Registry, TrackerConfig};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let registry = Registry::new();
    /// let http = registry.tracker("http", TrackerConfig::default())?;
    /// let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:1"))?;
    /// let config = FleetConfig::new("pod-a")?.interval(Duration::from_millis(10));
    /// let fleet = Arc::new(FleetPercentiles::new("http", http, &backend, config));
    /// let task = fleet.spawn();
    /// // The task holds no `Arc` between rounds: dropping the last one ends it.
    /// drop(fleet);
    /// task.await?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn spawn(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        // tokio's `Interval` adds its period to an instant unchecked: one
        // of `Duration::MAX` panicked on the first tick. ~30 years is never.
        let mut tick = tokio::time::interval(self.config.interval.min(crate::clock::FAR));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::spawn(async move {
            loop {
                tick.tick().await;
                let Some(fleet) = weak.upgrade() else { return };
                let _ = fleet.sync().await;
            }
        })
    }

    /// The report now (what [`Registry::health`](crate::Registry::health)
    /// shows under `fleet.<name>`).
    ///
    /// ```
    /// use fusebox_std::backend::{FleetConfig, FleetPercentiles, RedisBackend, RedisConfig};
    /// use fusebox_std::{Registry, TrackerConfig};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// // Nothing listens on port 1.
    /// let registry = Registry::new();
    /// let http = registry.tracker("http", TrackerConfig::default())?;
    /// let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:1"))?;
    /// let fleet = FleetPercentiles::new("http", http, &backend, FleetConfig::new("pod-a")?);
    /// let _ = fleet.sync().await;
    /// let report = fleet.report();
    /// assert!(report.stale);
    /// assert!(report.error.is_some()); // the fault, redacted
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn report(&self) -> FleetReport {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        FleetReport {
            available: state.synced && state.error.is_none(),
            stale: state.error.is_some(),
            error: state.error.clone(),
            corrupt: self.corrupt.load(Ordering::Relaxed),
            faults: self.faults.load(Ordering::Relaxed),
            series: state.series.clone(),
        }
    }

    async fn round(&self) -> Result<BTreeMap<String, FleetSeries>, BackendError> {
        // A name that cannot be in a key fails the round, which the report
        // shows: every series was skipped, and the empty round read as
        // available.
        escape(&self.name)?;
        let mut conn = self.conn.clone();
        let (secs, micros): (u64, u64) = self
            .timed(redis::cmd("TIME").query_async(&mut conn))
            .await?;
        // Which instances' fields have expired is decided on this time:
        // a reply no clock gives is refused before anything is sent.
        let now_ms = redis_time_ms(secs, micros).ok_or_else(|| {
            BackendError::Protocol(format!(
                "TIME answered {secs} s and {micros} µs, which is no time"
            ))
        })?;
        let mut local = Vec::new();
        self.tracker.for_each_series(|name, s| {
            local.push((name.to_owned(), codec::encode(&s.latency, now_ms)));
        });
        let ttl_ms = redis_ttl_ms(self.config.ttl);
        let mut out = BTreeMap::new();
        for (series, value) in local {
            // Tracker paths are at most 128 bytes, within the key limit.
            let Ok(key) = self.key(&series) else { continue };
            let merged = match self
                .series(&mut conn, &key, value.as_deref(), now_ms, ttl_ms)
                .await
            {
                // Another type under the key (a careless or hostile
                // write): replaced, counted, and the series merged anew.
                Err(e) if is_wrong_type(&e) => {
                    self.refuse(&key, Corrupt::Malformed, 1);
                    let _: Value = self
                        .timed(redis::cmd("DEL").arg(&key).query_async(&mut conn))
                        .await?;
                    self.series(&mut conn, &key, value.as_deref(), now_ms, ttl_ms)
                        .await?
                }
                merged => merged?,
            };
            out.insert(series, merged);
        }
        Ok(out)
    }

    /// One series: pushes this instance's `value` (if any) to `key`, reads
    /// every instance's back, merges them and deletes the expired and
    /// corrupt fields.
    async fn series(
        &self,
        conn: &mut RedisConnection,
        key: &str,
        value: Option<&str>,
        now_ms: u64,
        ttl_ms: u64,
    ) -> Result<FleetSeries, BackendError> {
        if let Some(value) = value {
            // Not MULTI (a Cluster connection may refuse it): a push
            // whose PEXPIRE is lost is expired by the next one.
            let mut pipe = redis::pipe();
            pipe.hset(key, self.config.instance.as_str(), value)
                .ignore()
                .pexpire(key, i64::try_from(ttl_ms).unwrap_or(i64::MAX))
                .ignore();
            let () = self.timed(pipe.query_async(conn)).await?;
        }
        let fields = self.read_fields(conn, key).await?;
        let (merged, stale) = self.merge(key, fields, now_ms, ttl_ms);
        if !stale.is_empty() {
            // Compare-and-delete: a field its instance pushed again since
            // the read (a fresh value) is kept.
            let mut invocation = DELETE.prepare_invoke();
            invocation.key(key);
            for (field, digest) in &stale {
                invocation.arg(field.as_slice()).arg(digest.as_str());
            }
            let _: Value = self.timed(invocation.invoke_async(conn)).await?;
        }
        Ok(merged)
    }

    /// The fields of one hash, bounded, in one atomic script call
    /// (`scripts/fleet_read.lua`): at most [`MAX_INSTANCES`] of them (a
    /// larger hash, hostile or a runaway fleet, is read only that far, the
    /// rest counted as corrupt), none larger than
    /// [`MAX_VALUE_LEN`](codec::MAX_VALUE_LEN) (those are deleted by the
    /// script, never sent, and counted).
    async fn read_fields(
        &self,
        conn: &mut RedisConnection,
        key: &str,
    ) -> Result<HashMap<Vec<u8>, Vec<u8>>, BackendError> {
        let mut invocation = READ.prepare_invoke();
        invocation
            .key(key)
            .arg(MAX_INSTANCES)
            .arg(codec::MAX_VALUE_LEN);
        let (len, flat, deleted): (usize, Vec<Vec<u8>>, usize) =
            self.timed(invocation.invoke_async(conn)).await?;
        if deleted > 0 {
            self.refuse(key, Corrupt::TooLong, deleted);
        }
        let mut fields = HashMap::with_capacity(flat.len() / 2);
        let mut flat = flat.into_iter();
        while let (Some(field), Some(value)) = (flat.next(), flat.next()) {
            fields.insert(field, value);
        }
        let beyond = len.saturating_sub(fields.len() + deleted);
        if beyond > 0 {
            self.refuse(key, Corrupt::TooManyInstances, beyond);
        }
        Ok(fields)
    }

    /// Merges the fields of one hash; returns the series and the fields
    /// to delete, with the digest of the value read: expired ones and
    /// corrupt ones (replaced by the writer's next push, if it is a live
    /// instance).
    fn merge(
        &self,
        key: &str,
        fields: HashMap<Vec<u8>, Vec<u8>>,
        now_ms: u64,
        ttl_ms: u64,
    ) -> (FleetSeries, Vec<(Vec<u8>, String)>) {
        let acc = LatencyHistogram::new_boxed();
        let (mut instances, mut newer) = (0, 0);
        let mut stale = Vec::new();
        for (field, value) in fields {
            let decoded = codec::decode(&value);
            let entry = match (decoded, codec::newer(&value)) {
                (Ok(entry), _) => entry,
                // A newer instance's format (a rolling upgrade): skipped
                // while fresh, left for the instances that read it, and
                // deleted only once expired (or written in the future).
                (Err(Corrupt::Version), Some(written_ms)) => {
                    if written_ms.saturating_add(ttl_ms) < now_ms {
                        stale.push((field, digest(&value)));
                    } else if written_ms > now_ms.saturating_add(ttl_ms) {
                        self.refuse(key, Corrupt::Future, 1);
                        stale.push((field, digest(&value)));
                    } else {
                        newer += 1;
                    }
                    continue;
                }
                (Err(why), _) => {
                    self.refuse(key, why, 1);
                    stale.push((field, digest(&value)));
                    continue;
                }
            };
            if entry.written_ms.saturating_add(ttl_ms) < now_ms {
                stale.push((field, digest(&value)));
            } else if entry.written_ms > now_ms.saturating_add(ttl_ms) {
                self.refuse(key, Corrupt::Future, 1);
                stale.push((field, digest(&value)));
            } else if acc
                .merge_buckets_with_totals(entry.buckets, entry.totals)
                .is_err()
            {
                self.refuse(key, Corrupt::Merge, 1);
                stale.push((field, digest(&value)));
            } else {
                instances += 1;
            }
        }
        let pct = |q| acc.percentile(q).ok().flatten();
        let series = FleetSeries {
            instances,
            newer,
            count: acc.count(),
            p50: pct(50.0),
            p95: pct(95.0),
            p99: pct(99.0),
        };
        (series, stale)
    }

    fn refuse(&self, key: &str, why: Corrupt, n: usize) {
        self.corrupt.fetch_add(n as u64, Ordering::Relaxed);
        if self.warned_corrupt.swap(true, Ordering::Relaxed) {
            tracing::debug!(fleet = %Redacted(&self.name), key, reason = ?why, "corrupt fleet histogram skipped");
        } else {
            tracing::warn!(fleet = %Redacted(&self.name), key, reason = ?why, "corrupt fleet histogram skipped (logged once)");
        }
    }

    /// `op` within the per-command timeout, its error redacted.
    async fn timed<T>(
        &self,
        op: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, BackendError> {
        match tokio::time::timeout(self.timeout, op).await {
            Err(_) => Err(self.conn.unanswered(self.timeout)),
            Ok(Err(e)) => Err(self.conn.failed(&e, self.timeout)),
            Ok(Ok(v)) => Ok(v),
        }
    }
}

/// The longest `PEXPIRE` sent: 100 years. Redis refuses an expiry that
/// overflows its clock (`invalid expire time`), which a `ttl` of
/// `Duration::MAX` would ask for on every push.
const MAX_TTL_MS: u64 = 100 * 365 * 86_400 * 1_000;

/// `ttl` in whole milliseconds, at most [`MAX_TTL_MS`].
fn redis_ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).map_or(MAX_TTL_MS, |ms| ms.min(MAX_TTL_MS))
}

/// The last second of the year 9999 (UTC), in Unix seconds.
const MAX_TIME_SECS: u64 = 253_402_300_799;

/// Redis's `TIME` reply in Unix milliseconds, or `None` for one that no
/// clock gives: microseconds past a second, or a time past the year 9999.
fn redis_time_ms(secs: u64, micros: u64) -> Option<u64> {
    (micros < 1_000_000 && secs <= MAX_TIME_SECS).then(|| secs * 1_000 + micros / 1_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absurd_times_are_refused_and_ttls_saturate() {
        assert_eq!(
            redis_time_ms(1_700_000_000, 123_456),
            Some(1_700_000_000_123)
        );
        assert_eq!(
            redis_time_ms(MAX_TIME_SECS, 999_999),
            Some(253_402_300_799_999)
        );
        assert_eq!(redis_time_ms(MAX_TIME_SECS + 1, 0), None);
        assert_eq!(redis_time_ms(1_700_000_000, 1_000_000), None);
        assert_eq!(redis_time_ms(u64::MAX / 1_000, 999_999), None);
        assert_eq!(redis_time_ms(u64::MAX, u64::MAX), None);
        assert_eq!(redis_ttl_ms(Duration::from_secs(30)), 30_000);
        assert_eq!(redis_ttl_ms(Duration::MAX), MAX_TTL_MS);
        assert_eq!(
            redis_ttl_ms(Duration::from_secs(u64::MAX / 1_000)),
            MAX_TTL_MS
        );
    }
}
