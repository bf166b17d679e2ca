//! [`RedisLimiter`]: a fleet-wide limiter on [`RedisBackend`] that keeps
//! deciding when Redis is unreachable or slow ([`Degrade`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use tokio::time::Instant;

use super::degrade::{Backoff, Outage};
use super::detach::Detach;
use super::metrics::{Counters, RedisLimiterMetrics};
use super::probe::ProbeTask;
use super::{Degrade, RedisBackend};
use crate::backend::{BackendError, Decision, MemoryBackend, Rules, Source};
use crate::redact::Redacted;
use crate::Registry;

mod builder;
mod outage;

pub use self::builder::RedisLimiterBuilder;

/// A distributed rate limiter: every instance of a fleet that uses the
/// same Redis, prefix, limiter name and key shares one limit.
///
/// Each decision is one round trip to Redis (the GCRA script) bounded by
/// the backend's command timeout. On a fault (timeout, lost connection)
/// the limiter is *degraded*: it decides by its [`Degrade`] policy at once,
/// registers the health condition `redis_<name>` in the
/// [`Registry`] given to the builder (so `health()` reports `degraded`),
/// logs one warning, and probes Redis once per probe interval (the
/// connection manager reconnects in the background, with backoff): the
/// request that comes when a probe is due asks Redis, and so does a
/// background task, started when the outage begins (on the current Tokio
/// runtime) and ended with it or with the limiter, so that a limiter
/// nobody calls recovers too ([`RedisLimiterBuilder::background_probe`]
/// turns that task off, for tests on a paused Tokio clock). The first probe that Redis answers ends the
/// outage: the condition is cleared and Redis decides again. A probe that
/// wrote nothing (a peek, a refusal) also needs Redis to take a write
/// (one more round trip): a full Redis (`maxmemory`, `noeviction`) or a
/// read-only replica answers reads but fails every decision that takes a
/// token, and stays an outage; nor does a request sent before the outage
/// began and refused after it end the outage. No request
/// waits on Redis longer than the command timeout, nothing is queued;
/// while Redis answers there is no task and no extra work.
/// A request whose command timed out in a Redis stall (not a lost
/// connection) was already sent: when Redis resumes, the script still
/// runs and takes its tokens, though the caller was decided by the
/// [`Degrade`] policy; this can only admit less, never more.
///
/// A caller may give up sooner than the command timeout (its own
/// `tokio::time::timeout`, a tower `Timeout` layer, a dropped future):
/// each round trip to Redis runs in the request's own task and, when its
/// caller leaves, goes on in a task of its own on the current Tokio
/// runtime, until Redis answers or the command timeout ends it, and its
/// outcome counts as any request's: a timeout or a lost connection is a
/// fault (counted in [`metrics`](Self::metrics), and it degrades the
/// limiter, sets the health condition and starts the background probe),
/// an answer may end an outage. So callers all more impatient than the
/// command timeout still see a stalled or blackholed Redis degrade the
/// limiter, within about one command timeout, and their requests decided
/// at once from then on. Such a round trip decides for no one: the tokens
/// it takes in Redis are admitted to no request (less, never more), and
/// the [`Degrade`] policy decides nothing for it. A round trip costs one
/// allocation, and a task only for a caller that left. (Outside a Tokio
/// runtime the round trip runs in the request's own future only, and
/// ends with it.)
///
/// Corrupt values under its keys are replaced by the script with a
/// drained bucket (never a full one): counted in
/// [`metrics`](Self::metrics), logged once per limiter.
///
/// A bucket lives in Redis only: a key that Redis drops before it expires
/// comes back as a full bucket, so a client may have a second burst. Redis
/// drops keys early when it restarts without persistence, on `FLUSHALL`,
/// and under `maxmemory` with any eviction policy but `noeviction`: the
/// buckets' keys carry a time to live, so the `volatile-*` policies evict
/// them as the `allkeys-*` ones do. Give the limiter a Redis with
/// `noeviction` (a full one then fails decisions, an outage its
/// [`Degrade`] policy decides), or one whose memory its keys never fill.
///
/// # Examples
///
/// This example connects to a Redis server, so the doctests compile
/// it without running it.
///
/// ```no_run
/// use std::sync::Arc;
/// use fusebox::bucket::Quota;
/// use fusebox_std::backend::{Degrade, RedisBackend, RedisConfig, RedisLimiter, Rule, Rules};
/// use fusebox_std::Registry;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let registry = Arc::new(Registry::new());
/// let backend = RedisBackend::connect(RedisConfig::new("redis://127.0.0.1:6379")).await?;
/// let rules = Rules::new([
///     Rule::new("per_second", Quota::per_second(10)?)?,
///     Rule::new("per_minute", Quota::per_minute(500)?)?,
/// ])?;
/// let limiter = RedisLimiter::builder("api", rules, backend)
///     .degrade(Degrade::Local { instances: 8 })
///     .registry(Arc::clone(&registry))
///     .build()?;
/// let decision = limiter.try_acquire("user-42").await?;
/// if !decision.allowed {
///     println!("429, Retry-After: {:?}", decision.retry_after);
/// }
/// limiter.until_ready("batch-job").await?; // sleeps the named waits
/// # Ok(()) }
/// ```
pub struct RedisLimiter {
    shared: Arc<Shared>,
    /// The owner of its health condition: a limiter dropped while
    /// degraded (replaced on a quota change, say) leaves no condition
    /// behind, and its drop takes no lock but its probe task's slot (a
    /// leaf lock: see `ProbeTask`).
    _alive: Arc<()>,
}

/// A limiter's state, shared with its background probe task (which holds
/// it by a `Weak` only: the task never keeps a dropped limiter alive).
pub(super) struct Shared {
    name: Box<str>,
    condition: String,
    /// `RedisLimiter::_alive`, the owner given with the condition.
    owner: Weak<()>,
    rules: Rules,
    backend: RedisBackend,
    policy: Degrade,
    local: Option<(MemoryBackend, Rules)>,
    outage: Mutex<Outage>,
    /// `outage.degraded`, readable without the lock (written under it):
    /// while Redis answers, a decision takes no lock at all.
    degraded: AtomicBool,
    backoff: Backoff,
    registry: Option<Arc<Registry>>,
    counters: Counters,
    corrupt_logged: AtomicBool,
    /// The background probe of an outage (none while Redis answers).
    probe: ProbeTask,
}

/// How a request's round trip to Redis ended, when it brought no
/// decision.
enum Asked {
    /// A fault, counted, at that instant (the policy's waits count from
    /// there).
    Fault(Instant),
    /// Not a fault (a key that cannot be stored, a reply the script never
    /// gives): the request's error.
    Error(BackendError),
}

impl std::fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("name", &self.shared.name)
            .field("rules", &self.shared.rules)
            .field("policy", &self.shared.policy)
            .finish_non_exhaustive()
    }
}

impl Drop for RedisLimiter {
    /// Ends the background probe at once (it holds the state by a `Weak`
    /// only, but may sleep until a far probe), for good: a probe it was
    /// running that fails afterwards starts no other.
    fn drop(&mut self) {
        self.shared.probe.close();
    }
}

impl RedisLimiter {
    /// The limiter's name.
    ///
    /// ```
    /// use fusebox::bucket::Quota;
    /// use fusebox_std::backend::{RedisBackend, RedisConfig, RedisLimiter, Rules};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:6379"))?;
    /// let rules = Rules::single("per_second", Quota::per_second(5)?)?;
    /// assert_eq!(RedisLimiter::builder("api", rules, backend).build()?.name(), "api");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Its rules.
    ///
    /// ```
    /// use fusebox::bucket::Quota;
    /// use fusebox_std::backend::{RedisBackend, RedisConfig, RedisLimiter, Rule, Rules};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:6379"))?;
    /// let rules = Rules::new([
    ///     Rule::new("per_second", Quota::per_second(10)?)?,
    ///     Rule::new("per_minute", Quota::per_minute(500)?)?,
    /// ])?;
    /// let limiter = RedisLimiter::builder("api", rules, backend).build()?;
    /// assert_eq!(limiter.rules().len(), 2);
    /// assert_eq!(limiter.rules().min_burst(), 10);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn rules(&self) -> &Rules {
        &self.shared.rules
    }

    /// Whether it is degraded (Redis out) now. A degraded limiter probes
    /// Redis in the background too (a task on the Tokio runtime its
    /// outage began on, following the probe backoff), so this turns back
    /// to `false` once Redis answers (and takes writes) again even if no
    /// request comes.
    ///
    /// ```
    /// use fusebox::bucket::Quota;
    /// use fusebox_std::backend::{RedisBackend, RedisConfig, RedisLimiter, Rules};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// // Nothing listens on port 1: the first request degrades the limiter.
    /// let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:1"))?;
    /// let rules = Rules::single("per_second", Quota::per_second(5)?)?;
    /// let limiter = RedisLimiter::builder("api", rules, backend).build()?;
    /// assert!(!limiter.is_degraded()); // nothing asked yet
    /// let _ = limiter.try_acquire("user-1").await?;
    /// assert!(limiter.is_degraded());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn is_degraded(&self) -> bool {
        self.shared.is_degraded()
    }

    /// The health condition it sets while degraded (`redis_<name>`).
    pub(crate) fn condition(&self) -> &str {
        &self.shared.condition
    }

    /// Its counters.
    ///
    /// ```
    /// use fusebox::bucket::Quota;
    /// use fusebox_std::backend::{Degrade, RedisBackend, RedisConfig, RedisLimiter, Rules};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// // Nothing listens on port 1: the first request degrades the limiter.
    /// let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:1"))?;
    /// let rules = Rules::single("per_second", Quota::per_second(5)?)?;
    /// let limiter = RedisLimiter::builder("api", rules, backend).degrade(Degrade::FailOpen).build()?;
    /// let _ = limiter.try_acquire("user-1").await?;
    /// let m = limiter.metrics();
    /// assert_eq!((m.redis_decisions, m.degraded_decisions, m.admitted), (0, 1, 1));
    /// assert!(m.faults >= 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn metrics(&self) -> RedisLimiterMetrics {
        self.shared.counters.snapshot()
    }

    /// Its counters and state in the Prometheus text format 0.0.4, for a
    /// limiter outside a registry: one registered with
    /// [`Registry::register_redis_limiter`] is in
    /// [`Registry::to_prometheus`] already.
    ///
    /// ```
    /// use fusebox::bucket::Quota;
    /// use fusebox_std::backend::{RedisBackend, RedisConfig, RedisLimiter, Rules};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// // Connects on first use: nothing here talks to Redis.
    /// let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:6379"))?;
    /// let rules = Rules::single("per_second", Quota::per_second(100)?)?;
    /// let limiter = RedisLimiter::builder("api", rules, backend).build()?;
    /// let text = limiter.to_prometheus();
    /// assert!(text.contains("fusebox_redis_limiter_faults_total{name=\"api\"} 0\n"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn to_prometheus(&self) -> String {
        self.metrics()
            .to_prometheus(&self.shared.name, self.is_degraded())
    }

    /// Takes one token of `key` (`""` for a limiter without keys), or
    /// says how long to wait.
    ///
    /// # Errors
    ///
    /// As [`try_acquire_n`](Self::try_acquire_n).
    ///
    /// ```
    /// use fusebox::bucket::Quota;
    /// use fusebox_std::backend::{Degrade, RedisBackend, RedisConfig, RedisLimiter, Rules, Source};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// // Nothing listens on port 1: the `Local` policy decides, on a share of the quota.
    /// let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:1"))?;
    /// let rules = Rules::single("per_second", Quota::per_second(5)?)?;
    /// let limiter = RedisLimiter::builder("api", rules, backend)
    ///     .degrade(Degrade::Local { instances: 1 })
    ///     .build()?;
    /// for _ in 0..5 {
    ///     assert!(limiter.try_acquire("user-1").await?.allowed);
    /// }
    /// let refused = limiter.try_acquire("user-1").await?;
    /// assert_eq!((refused.allowed, refused.source), (false, Source::Local));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn try_acquire(&self, key: &str) -> Result<Decision, BackendError> {
        self.try_acquire_n(key, 1).await
    }

    /// Takes `n` tokens of `key` from every rule, all or none. A refusal is
    /// an `Ok` decision with `allowed == false`.
    ///
    /// `n = 0` is a peek: always admitted (by Redis, or by the [`Degrade`]
    /// policy while Redis is out), it takes nothing, creates no state (no
    /// key in Redis, no entry in the `Local` policy's table, so never a
    /// [`BackendError::TableFull`]) and is not counted as an admission in
    /// [`metrics`](Self::metrics); it is counted as a decision where it
    /// was made, and while degraded it may be the request that probes
    /// Redis.
    ///
    /// # Errors
    ///
    /// [`BackendError::InsufficientCapacity`] if `n` exceeds a burst,
    /// [`BackendError::InvalidKey`] for a key too long; never a Redis
    /// fault (the [`Degrade`] policy decides instead), except a
    /// [`BackendError::TableFull`] from the `Local` policy.
    ///
    /// ```
    /// use fusebox::bucket::Quota;
    /// use fusebox_std::backend::{BackendError, Degrade, RedisBackend, RedisConfig, RedisLimiter, Rules};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// // Nothing listens on port 1: the first request degrades the limiter.
    /// let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:1"))?;
    /// let rules = Rules::single("per_second", Quota::per_second(5)?)?;
    /// let limiter = RedisLimiter::builder("api", rules, backend)
    ///     .degrade(Degrade::Local { instances: 1 })
    ///     .build()?;
    /// assert!(limiter.try_acquire_n("user-1", 4).await?.allowed);
    /// assert!(!limiter.try_acquire_n("user-1", 2).await?.allowed); // all or none
    /// assert_eq!(limiter.try_acquire_n("user-1", 0).await?.remaining, 1); // a peek
    /// let err = limiter.try_acquire_n("user-1", 6).await.unwrap_err();
    /// assert_eq!(err, BackendError::InsufficientCapacity { requested: 6, burst: 5 });
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn try_acquire_n(&self, key: &str, n: u32) -> Result<Decision, BackendError> {
        let (decision, _) = self.shared.take(key, (n, n), n).await?;
        // A peek admits no request.
        if decision.allowed && n > 0 {
            self.shared
                .counters
                .admitted
                .fetch_add(1, Ordering::Relaxed);
        }
        Ok(decision)
    }

    /// A lease for [`LeasedLimiter`](super::LeasedLimiter): at most `most`
    /// tokens of `key`, as many as Redis holds if that is at least
    /// `fewest`, in one round trip; the decision and the tokens taken (a
    /// decision of the [`Degrade`] policy takes none: it decides the
    /// `request` itself, the whole request of `request` tokens the lease is
    /// taken for, which the leased tokens held may cover in part). Counted
    /// as one admission when allowed.
    pub(super) async fn lease(
        &self,
        key: &str,
        (most, fewest): (u32, u32),
        request: u32,
    ) -> Result<(Decision, u32), BackendError> {
        let (decision, taken) = self
            .shared
            .take(key, (most, fewest.min(most)), request)
            .await?;
        if decision.allowed {
            self.shared
                .counters
                .admitted
                .fetch_add(1, Ordering::Relaxed);
        }
        Ok((decision, taken))
    }

    /// Waits until one token of `key` is taken.
    ///
    /// # Errors
    ///
    /// As [`until_n_ready_by`](Self::until_n_ready_by).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tokio::time::Instant;
    /// use fusebox::bucket::Quota;
    /// use fusebox_std::backend::{Degrade, RedisBackend, RedisConfig, RedisLimiter, Rules};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// // Nothing listens on port 1: the `Local` policy decides, on a share of the quota.
    /// let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:1"))?;
    /// let rules = Rules::single("per_second", Quota::per_second(5)?)?;
    /// let limiter = RedisLimiter::builder("api", rules, backend)
    ///     .degrade(Degrade::Local { instances: 1 })
    ///     .build()?;
    /// assert!(limiter.try_acquire_n("user-1", 5).await?.allowed);
    /// let start = Instant::now();
    /// assert!(limiter.until_ready("user-1").await?.allowed); // one token refills in 200 ms
    /// assert!(start.elapsed() >= Duration::from_millis(150));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn until_ready(&self, key: &str) -> Result<Decision, BackendError> {
        self.until_n_ready_by(key, 1, None).await
    }

    /// Waits until `n` tokens of `key` are taken, sleeping the wait each
    /// refusal names; gives up at once when that wait would end after
    /// `deadline`.
    ///
    /// # Cancellation
    ///
    /// Dropping the future while it sleeps takes no token. Dropping it
    /// while a decision is in flight may take the tokens in Redis without
    /// admitting the caller (the script runs to its end on the server):
    /// it can only admit less, never more. The round trip itself goes on
    /// without it, to Redis's answer or the command timeout, and its
    /// outcome is counted (a timeout degrades the limiter): see the
    /// type's docs.
    ///
    /// # Errors
    ///
    /// [`BackendError::DeadlineExceeded`], or as
    /// [`try_acquire_n`](Self::try_acquire_n).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tokio::time::Instant;
    /// use fusebox::bucket::Quota;
    /// use fusebox_std::backend::{BackendError, Degrade, RedisBackend, RedisConfig, RedisLimiter, Rules};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// // Nothing listens on port 1: the `Local` policy decides, on a share of the quota.
    /// let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:1"))?;
    /// let rules = Rules::single("per_second", Quota::per_second(5)?)?;
    /// let limiter = RedisLimiter::builder("api", rules, backend)
    ///     .degrade(Degrade::Local { instances: 1 })
    ///     .build()?;
    /// assert!(limiter.try_acquire_n("user-1", 5).await?.allowed);
    /// // Two tokens take 400 ms to refill: a 50 ms deadline gives up at once.
    /// let deadline = Instant::now() + Duration::from_millis(50);
    /// let err = limiter.until_n_ready_by("user-1", 2, Some(deadline)).await.unwrap_err();
    /// assert!(matches!(err, BackendError::DeadlineExceeded { .. }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn until_n_ready_by(
        &self,
        key: &str,
        n: u32,
        deadline: Option<Instant>,
    ) -> Result<Decision, BackendError> {
        loop {
            let decision = self.try_acquire_n(key, n).await?;
            if decision.allowed {
                return Ok(decision);
            }
            // Never spin: a refusal names at least a millisecond.
            let wait = decision.retry_after.max(Duration::from_millis(1));
            let wake = crate::clock::saturating_add(Instant::now(), wait);
            // Counting tokio's rounding of the sleep up to its tick.
            if deadline.is_some_and(|d| !crate::clock::ends_before(wake, d)) {
                return Err(BackendError::DeadlineExceeded {
                    retry_after: decision.retry_after,
                });
            }
            tokio::time::sleep_until(wake).await;
        }
    }
}

impl Shared {
    fn is_degraded(&self) -> bool {
        self.degraded.load(Ordering::Acquire)
    }

    /// Asks Redis for at most `most` tokens, at least `fewest`; while
    /// degraded, the [`Degrade`] policy decides a request of `request`
    /// tokens instead.
    async fn take(
        self: &Arc<Self>,
        key: &str,
        (most, fewest): (u32, u32),
        request: u32,
    ) -> Result<(Decision, u32), BackendError> {
        crate::backend::check_capacity(&self.rules, most.max(request))?;
        crate::backend::key::check_key(key)?;
        // `Some(probe)`: ask Redis, as the outage's probe or not. `seen`:
        // when the outage was last looked at, so that a refusal names the
        // wait until the probe it was refused by (never zero: a request
        // read a clock past the probe it had just found not yet due).
        let mut seen = None;
        let ask = if self.is_degraded() {
            let now = Instant::now();
            seen = Some(now);
            self.outage().should_ask(now).then_some(true)
        } else {
            Some(false)
        };
        if let Some(probe) = ask {
            match self.ask(key, (most, fewest), probe).await {
                Ok(answer) => return Ok(answer),
                Err(Asked::Fault(at)) => seen = Some(at),
                Err(Asked::Error(e)) => return Err(e),
            }
        }
        self.counters.degraded.fetch_add(1, Ordering::Relaxed);
        let now = seen.unwrap_or_else(Instant::now);
        self.fallback(key, request, now).map(|d| (d, 0))
    }

    /// Asks Redis for at most `most` tokens of `key`, at least `fewest`
    /// (`probe`: as the outage's probe), and counts the outcome: an
    /// answer (which may end the outage), or a fault (which begins it, or
    /// backs a failed probe off).
    ///
    /// The round trip runs in the caller's task and, if the caller gives
    /// up first, goes on in a task of its own ([`Detach`]), so its
    /// timeout or error is still counted; what it decides is then for no
    /// one (see [`RedisLimiter`]'s docs). Outside a Tokio runtime it runs
    /// in the caller's future only.
    async fn ask(
        self: &Arc<Self>,
        key: &str,
        (most, fewest): (u32, u32),
        probe: bool,
    ) -> Result<(Decision, u32), Asked> {
        let backend = &self.backend;
        let cmd = backend
            .command(&self.name, key, &self.rules, (most, fewest), None)
            .map_err(Asked::Error)?;
        // Built now, while the key is at hand; sent only by a probe whose
        // decision wrote nothing.
        let writable = if probe {
            let set = backend.writable_command(&self.name, key, &self.rules);
            Some(set.map_err(Asked::Error)?)
        } else {
            None
        };
        let round_trip = Arc::clone(self).round_trip(cmd, (most, fewest), writable);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => Detach::new(round_trip, runtime).await,
            Err(_) => round_trip.await,
        }
    }

    /// The round trip of [`ask`](Self::ask): the script call `cmd`, then,
    /// for a probe (`writable`, its `SET`) whose decision wrote nothing,
    /// a write Redis must take; its outcome counted.
    async fn round_trip(
        self: Arc<Self>,
        cmd: redis::Cmd,
        asked: (u32, u32),
        writable: Option<redis::Cmd>,
    ) -> Result<(Decision, u32), Asked> {
        let probe = writable.is_some();
        match self.backend.execute(&cmd, &self.rules, asked).await {
            Ok((decision, taken)) => {
                // Only a decision that took tokens (the script wrote)
                // shows Redis back; a probe that wrote nothing (a peek, a
                // refusal) must also see Redis take a write. A full Redis
                // or a read-only replica answers reads.
                let mut proven = decision.allowed && taken > 0;
                if let (Some(set), false) = (&writable, proven) {
                    match self.backend.execute_writable(set).await {
                        Ok(()) => proven = true,
                        Err(e) if e.is_fault() => self.failed(&e, true, Instant::now()),
                        Err(_) => {}
                    }
                }
                // Redis's decision either way (unproven, it took nothing).
                self.answered(&decision, proven);
                Ok((decision, taken))
            }
            Err(e) if e.is_fault() => {
                let now = Instant::now();
                self.failed(&e, probe, now);
                Err(Asked::Fault(now))
            }
            Err(e) => Err(Asked::Error(e)),
        }
    }

    fn outage(&self) -> std::sync::MutexGuard<'_, Outage> {
        self.outage.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A decision Redis made; `proven`: Redis took a write with it (or
    /// the probe's own), which alone ends an outage (a request sent before
    /// the outage and refused after it proves nothing of a full Redis).
    fn answered(&self, decision: &Decision, proven: bool) {
        self.counters.redis.fetch_add(1, Ordering::Relaxed);
        self.corrupt_replaced(decision.corrupt);
        if proven && self.is_degraded() && self.succeeded() {
            tracing::info!(limiter = %Redacted(&self.name), "redis answers again: limiter no longer degraded");
        }
    }

    /// Counts (and logs once) corrupt values the script replaced.
    fn corrupt_replaced(&self, corrupt: u32) {
        if corrupt > 0 {
            self.counters
                .corrupt
                .fetch_add(u64::from(corrupt), Ordering::Relaxed);
            if !self.corrupt_logged.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    limiter = %Redacted(&self.name),
                    corrupt,
                    "corrupt rate-limit state in redis replaced by a drained bucket"
                );
            }
        }
    }

    /// The [`Degrade`] policy's decision; `now`: when the outage was last
    /// looked at (its waits are counted from there).
    fn fallback(&self, key: &str, n: u32, now: Instant) -> Result<Decision, BackendError> {
        let refused = |allowed: bool, source: Source, retry_after: Duration| Decision {
            allowed,
            retry_after,
            remaining: 0,
            reset: retry_after,
            rule: 0,
            source,
            corrupt: 0,
        };
        match (&self.policy, &self.local) {
            (Degrade::FailOpen, _) => Ok(refused(true, Source::FailOpen, Duration::ZERO)),
            // More than the local share's burst, yet within the quota
            // (checked before): no local decision can admit it, Redis may;
            // refused until the next probe, as `FailClosed` would (an
            // `InsufficientCapacity` would tell the caller no wait helps).
            (Degrade::Local { .. }, Some((_, rules))) if n > rules.min_burst() => {
                let wait = self.outage().until_probe(now);
                Ok(refused(false, Source::Local, wait))
            }
            (Degrade::Local { .. }, Some((memory, rules))) => {
                memory.decide_now(&self.name, key, rules, n)
            }
            // A peek takes nothing: admitted, as Redis admits it, with no
            // token known to be left (a request for one is refused).
            _ if n == 0 => Ok(refused(true, Source::FailClosed, Duration::ZERO)),
            _ => {
                let wait = self.outage().until_probe(now);
                Ok(refused(false, Source::FailClosed, wait))
            }
        }
    }
}

#[cfg(test)]
mod tests;
