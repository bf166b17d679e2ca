//! [`Limiter`] on a limit shared through Redis (feature `redis`): its
//! constructors, and the wait on a [`RedisLimiter`], which decides (GCRA
//! in Redis) and meets Redis faults with its [`Degrade`] policy.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fusebox::bucket::{Quota, TokenBucket};
use tokio::sync::Mutex as Gate;
use tokio::time::Instant;

use super::limiter::{enter, Limiter, Source};
use super::LimitError;
use crate::backend::{BackendError, Degrade, RedisBackend, RedisConfig, RedisLimiter, Rules};
use crate::TokioClock;

/// The key a [`Limiter`] takes its tokens under: one limit, no keys.
const KEY: &str = "";

/// A [`Limiter`]'s shared source: the Redis limiter and this process's
/// queue length.
pub(super) struct Shared {
    limiter: Arc<RedisLimiter>,
    /// Callers of this process queued at the gate (or about to be): while
    /// it is zero, a caller asks Redis without queueing.
    queued: AtomicUsize,
}

/// One caller counted in [`Shared::queued`] until dropped (completed,
/// failed or cancelled).
struct Queued<'a>(&'a AtomicUsize);

impl<'a> Queued<'a> {
    fn join(queued: &'a AtomicUsize) -> Self {
        queued.fetch_add(1, Ordering::Relaxed);
        Self(queued)
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Shared {
    pub(super) fn limiter(&self) -> &Arc<RedisLimiter> {
        &self.limiter
    }

    /// Waits until Redis (or, while it is out, the degradation policy)
    /// admits `n` tokens, never sleeping past `deadline`.
    pub(super) async fn wait(
        &self,
        gate: &Gate<()>,
        n: u32,
        deadline: Option<Instant>,
    ) -> Result<(), LimitError> {
        // Nobody of this process waits: ask at once, concurrently with
        // the other callers, and queue only if refused.
        let mut wake = None;
        if self.queued.load(Ordering::Relaxed) == 0 {
            let decision = self
                .limiter
                .try_acquire_n(KEY, n)
                .await
                .map_err(|e| limit_error(&e))?;
            if decision.allowed {
                return Ok(());
            }
            // Never spin: a refusal names at least a millisecond.
            let wait = decision.retry_after.max(Duration::from_millis(1));
            let at = crate::clock::saturating_add(Instant::now(), wait);
            // Counting tokio's rounding of the sleep up to its tick.
            if deadline.is_some_and(|d| !crate::clock::ends_before(at, d)) {
                return Err(LimitError::DeadlineExceeded {
                    retry_after: decision.retry_after,
                });
            }
            wake = Some(at);
        }
        let _queued = Queued::join(&self.queued);
        let _turn = enter(gate, deadline).await?;
        if let Some(at) = wake {
            // The wait the refusal named (already checked against the
            // deadline), unless the queue took longer.
            tokio::time::sleep_until(at).await;
        }
        self.limiter
            .until_n_ready_by(KEY, n, deadline)
            .await
            .map(drop)
            .map_err(|e| limit_error(&e))
    }
}

/// A Redis limiter's refusal as a [`LimitError`]. Faults never reach
/// here: [`RedisLimiter::try_acquire_n`] meets them with its
/// [`Degrade`] policy.
fn limit_error(e: &BackendError) -> LimitError {
    match *e {
        BackendError::InsufficientCapacity { requested, burst } => {
            LimitError::InsufficientCapacity { requested, burst }
        }
        BackendError::DeadlineExceeded { retry_after } => {
            LimitError::DeadlineExceeded { retry_after }
        }
        BackendError::TableFull => LimitError::TableFull,
        BackendError::InvalidKey(why)
        | BackendError::InvalidRule(why)
        | BackendError::InvalidConfig(why) => LimitError::Invalid(why),
        BackendError::Timeout(_)
        | BackendError::Unavailable(_)
        | BackendError::Auth(_)
        | BackendError::Tls(_)
        | BackendError::Protocol(_) => LimitError::Invalid("the redis backend failed"),
    }
}

impl Limiter {
    /// The name of the one rule [`connect`](Self::connect) gives a shared
    /// limit (part of its storage keys: every process sharing the limit
    /// must use the same).
    ///
    /// ```
    /// use fusebox::bucket::Quota;
    /// use fusebox_std::backend::{storage_keys, KeyPrefix, Rules};
    /// use fusebox_std::policy::Limiter;
    ///
    /// // The key every process sharing the limit `search` reads and writes.
    /// let rules = Rules::single(Limiter::SHARED_RULE, Quota::per_second(5)?)?;
    /// assert_eq!(storage_keys(&KeyPrefix::default(), "search", "", &rules)?, ["fusebox:{search:}:quota"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub const SHARED_RULE: &'static str = "quota";

    /// A limiter waiting on `limiter`: one limit (its key `""`) shared by
    /// every process that uses the same Redis, prefix and limiter name;
    /// see [Backends](Self#backends).
    ///
    /// This example connects to a Redis server, so the doctests compile
    /// it without running it.
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use fusebox::bucket::Quota;
    /// use fusebox_std::backend::{Degrade, RedisBackend, RedisConfig, RedisLimiter, Rules};
    /// use fusebox_std::policy::Limiter;
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let backend = RedisBackend::connect(RedisConfig::new("redis://127.0.0.1:6379")).await?;
    /// let rules = Rules::single("per_second", Quota::per_second(100)?)?;
    /// let shared = RedisLimiter::builder("search", rules, backend)
    ///     .degrade(Degrade::Local { instances: 4 })
    ///     .build()?;
    /// let limiter = Limiter::shared(Arc::new(shared));
    /// limiter.until_ready().await?; // one token of the fleet's 100 per second
    /// assert!(limiter.bucket().is_none() && limiter.redis_limiter().is_some());
    /// # Ok(()) }
    /// ```
    pub fn shared(limiter: Arc<RedisLimiter>) -> Self {
        Self::shared_with_clock(limiter, TokioClock::new())
    }

    /// [`shared`](Self::shared) with the clock [`clock`](Self::clock)
    /// returns (a registry's).
    pub(crate) fn shared_with_clock(limiter: Arc<RedisLimiter>, clock: TokioClock) -> Self {
        Self {
            source: Source::Shared(Shared {
                limiter,
                queued: AtomicUsize::new(0),
            }),
            clock,
            gate: Gate::new(()),
            reporter: None,
        }
    }

    /// The limiter `name` admitting `quota`: shared through Redis (one
    /// rule, [`SHARED_RULE`](Self::SHARED_RULE), with `degrade` while Redis
    /// is out) when `redis` is given, else on a core bucket in this
    /// process (`degrade` unused). The same code then runs alone or in a
    /// fleet.
    ///
    /// Connects now: a wrong address or password is an error here, not a
    /// limiter degraded from its start (build the backend with
    /// [`RedisBackend::connect_lazy`] and use [`shared`](Self::shared) to
    /// start while Redis is down).
    ///
    /// # Errors
    ///
    /// [`BackendError::InvalidKey`] for a `name` that is not a
    /// [registry name](crate::registry::validate_name); a quota the Redis
    /// script cannot hold ([`BackendError::InvalidRule`]); the connection's
    /// errors (redacted: no password in them).
    ///
    /// ```
    /// use fusebox::bucket::Quota;
    /// use fusebox_std::backend::{Degrade, RedisConfig};
    /// use fusebox_std::policy::Limiter;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap().block_on(async {
    /// // e.g. `std::env::var("REDIS_URL").ok().map(RedisConfig::new)`;
    /// // none here: a limiter in this process.
    /// let redis: Option<RedisConfig> = None;
    /// let limiter = Limiter::connect("search", Quota::per_second(5)?, redis, Degrade::FailClosed).await?;
    /// limiter.until_n_ready(5).await?;
    /// assert!(limiter.bucket().is_some());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn connect(
        name: &str,
        quota: Quota,
        redis: Option<RedisConfig>,
        degrade: Degrade,
    ) -> Result<Self, BackendError> {
        crate::registry::validate_name(name)
            .map_err(|_| BackendError::InvalidKey("a limiter name must be a registry name"))?;
        let Some(config) = redis else {
            return Ok(Self::new(Arc::new(TokenBucket::new(quota))));
        };
        let rules = Rules::single(Self::SHARED_RULE, quota)?;
        let backend = RedisBackend::connect(config).await?;
        let limiter = RedisLimiter::builder(name, rules, backend)
            .degrade(degrade)
            .build()?;
        Ok(Self::shared(Arc::new(limiter)))
    }

    /// The Redis limiter of a shared limiter; `None` for one on a core
    /// bucket ([`bucket`](Self::bucket) returns that one).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fusebox::bucket::{Quota, TokenBucket};
    /// use fusebox_std::backend::{RedisBackend, RedisConfig, RedisLimiter, Rules};
    /// use fusebox_std::policy::Limiter;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let local = Limiter::new(Arc::new(TokenBucket::new(Quota::per_second(5)?)));
    /// assert!(local.redis_limiter().is_none());
    ///
    /// // Connects on first use: nothing here talks to Redis.
    /// let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:6379"))?;
    /// let rules = Rules::single("per_second", Quota::per_second(5)?)?;
    /// let shared = Limiter::shared(Arc::new(RedisLimiter::builder("search", rules, backend).build()?));
    /// if let Some(redis) = shared.redis_limiter() {
    ///     println!("degraded: {}, {:?}", redis.is_degraded(), redis.metrics());
    ///     assert_eq!(redis.name(), "search");
    /// }
    /// assert!(shared.redis_limiter().is_some());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn redis_limiter(&self) -> Option<&Arc<RedisLimiter>> {
        match &self.source {
            Source::Shared(shared) => Some(shared.limiter()),
            Source::Local(_) => None,
        }
    }
}

/// [`Limiter::shared`].
impl From<Arc<RedisLimiter>> for Limiter {
    fn from(limiter: Arc<RedisLimiter>) -> Self {
        Self::shared(limiter)
    }
}

/// [`Limiter::shared`].
impl From<RedisLimiter> for Limiter {
    fn from(limiter: RedisLimiter) -> Self {
        Self::shared(Arc::new(limiter))
    }
}
