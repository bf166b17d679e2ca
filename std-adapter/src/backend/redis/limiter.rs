//! [`RedisLimiter`]: a fleet-wide limiter on [`RedisBackend`] that keeps
//! deciding when Redis is unreachable or slow ([`Degrade`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use tokio::time::Instant;

use super::degrade::{Backoff, Outage};
use super::metrics::{Counters, RedisLimiterMetrics};
use super::probe::ProbeTask;
use super::{Degrade, RedisBackend};
use crate::backend::{BackendError, Decision, MemoryBackend, Rules, Source};
use crate::redact::Redacted;
use crate::Registry;

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
/// nobody calls recovers too. The first probe that Redis answers ends the
/// outage: the condition is cleared and Redis decides again. No request
/// waits on Redis longer than the command timeout, nothing is queued;
/// while Redis answers there is no task and no extra work.
/// A request whose command timed out in a Redis stall (not a lost
/// connection) was already sent: when Redis resumes, the script still
/// runs and takes its tokens, though the caller was decided by the
/// [`Degrade`] policy; this can only admit less, never more.
///
/// Corrupt values under its keys are replaced by the script with a
/// drained bucket (never a full one): counted in
/// [`metrics`](Self::metrics), logged once per limiter.
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
    /// This state itself, for the probe task.
    me: Weak<Shared>,
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
    /// only, but may sleep until a far probe).
    fn drop(&mut self) {
        self.shared.probe.stop();
    }
}

/// Builds a [`RedisLimiter`]; see [`RedisLimiter::builder`].
#[derive(Debug)]
#[must_use]
pub struct RedisLimiterBuilder {
    name: String,
    rules: Rules,
    backend: RedisBackend,
    policy: Degrade,
    backoff: Backoff,
    local_keys: usize,
    registry: Option<Arc<Registry>>,
}

impl RedisLimiterBuilder {
    /// The policy while Redis is out (default [`Degrade::FailClosed`]).
    pub fn degrade(mut self, policy: Degrade) -> Self {
        self.policy = policy;
        self
    }

    /// How often a degraded limiter tries Redis again: from `min`,
    /// doubling, up to `max` (default 50 ms to 1 s), by a request or by
    /// its background probe, whichever comes first. Any durations are
    /// accepted: the doubling saturates, and a probe interval longer than
    /// ~30 years (`Duration::MAX`) is clamped to that: no probe for ~30
    /// years (`FailClosed` names that as its wait), never a panic. A
    /// zero interval lets every request probe; the background probe
    /// still waits 10 ms between two of its own.
    pub fn probe_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff = Backoff {
            min,
            max: max.max(min),
        };
        self
    }

    /// The most keys the `Local` policy keeps in process (default 10 000).
    pub fn local_keys(mut self, keys: usize) -> Self {
        self.local_keys = keys;
        self
    }

    /// Reports outages in `registry`'s health as the condition
    /// `redis_<name>`.
    pub fn registry(mut self, registry: Arc<Registry>) -> Self {
        self.registry = Some(registry);
        self
    }

    /// The limiter.
    ///
    /// # Errors
    ///
    /// [`BackendError::InvalidKey`] for a name that is not a registry name,
    /// or is [reserved](crate::backend::RESERVED_LIMITER_NAMES);
    /// [`BackendError::InvalidRule`] if the `Local` policy cannot divide a
    /// quota, [`BackendError::InvalidConfig`] for `Local { instances: 0 }`.
    pub fn build(self) -> Result<RedisLimiter, BackendError> {
        crate::backend::key::check_limiter_name(&self.name)?;
        if self.policy == (Degrade::Local { instances: 0 }) {
            // Read as one, it would hand one instance the whole fleet's
            // quota (found by a hostile review).
            return Err(BackendError::InvalidConfig(
                "Degrade::Local needs at least one instance",
            ));
        }
        let local = match self.policy {
            Degrade::Local { instances } => Some((
                MemoryBackend::new(self.local_keys),
                self.rules.divided(instances)?,
            )),
            _ => None,
        };
        // The name as it is: `api` and `api_` are two limiters, with two
        // conditions (found by a hostile review: both were `redis_api`).
        let condition = format!("redis_{}", self.name);
        let alive = Arc::new(());
        let shared = Arc::new_cyclic(|me| Shared {
            condition,
            owner: Arc::downgrade(&alive),
            me: me.clone(),
            name: self.name.into(),
            rules: self.rules,
            backend: self.backend,
            policy: self.policy,
            local,
            outage: Mutex::new(Outage::new(Instant::now())),
            degraded: AtomicBool::new(false),
            backoff: self.backoff,
            registry: self.registry,
            counters: Counters::default(),
            corrupt_logged: AtomicBool::new(false),
            probe: ProbeTask::default(),
        });
        Ok(RedisLimiter {
            shared,
            _alive: alive,
        })
    }
}

impl RedisLimiter {
    /// A builder for the limiter `name` (a registry name, part of every
    /// storage key) checking `rules` on `backend`.
    pub fn builder(name: &str, rules: Rules, backend: RedisBackend) -> RedisLimiterBuilder {
        RedisLimiterBuilder {
            name: name.into(),
            rules,
            backend,
            policy: Degrade::FailClosed,
            backoff: Backoff {
                min: Duration::from_millis(50),
                max: Duration::from_secs(1),
            },
            local_keys: 10_000,
            registry: None,
        }
    }

    /// The limiter's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Its rules.
    pub fn rules(&self) -> &Rules {
        &self.shared.rules
    }

    /// Whether it is degraded (Redis out) now. A degraded limiter probes
    /// Redis in the background too (a task on the Tokio runtime its
    /// outage began on, following the probe backoff), so this turns back
    /// to `false` once Redis answers again even if no request comes.
    pub fn is_degraded(&self) -> bool {
        self.shared.is_degraded()
    }

    /// The health condition it sets while degraded (`redis_<name>`).
    pub(crate) fn condition(&self) -> &str {
        &self.shared.condition
    }

    /// Its counters.
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
    pub async fn try_acquire_n(&self, key: &str, n: u32) -> Result<Decision, BackendError> {
        let (decision, _) = self.shared.take(key, (n, n)).await?;
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
    /// decision of the [`Degrade`] policy takes none). Counted as one
    /// admission when allowed.
    pub(super) async fn lease(
        &self,
        key: &str,
        most: u32,
        fewest: u32,
    ) -> Result<(Decision, u32), BackendError> {
        let (decision, taken) = self.shared.take(key, (most, fewest.min(most))).await?;
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
    /// it can only admit less, never more.
    ///
    /// # Errors
    ///
    /// [`BackendError::DeadlineExceeded`], or as
    /// [`try_acquire_n`](Self::try_acquire_n).
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

    async fn take(
        &self,
        key: &str,
        (most, fewest): (u32, u32),
    ) -> Result<(Decision, u32), BackendError> {
        crate::backend::check_capacity(&self.rules, most)?;
        crate::backend::key::check_key(key)?;
        // `Some(probe)`: ask Redis, as the outage's probe or not.
        let ask = if self.is_degraded() {
            self.outage().should_ask(Instant::now()).then_some(true)
        } else {
            Some(false)
        };
        if let Some(probe) = ask {
            match self
                .backend
                .run(&self.name, key, &self.rules, (most, fewest), None)
                .await
            {
                Ok((decision, taken)) => {
                    self.answered(&decision);
                    return Ok((decision, taken));
                }
                Err(e) if e.is_fault() => self.failed(&e, probe),
                Err(e) => return Err(e),
            }
        }
        self.counters.degraded.fetch_add(1, Ordering::Relaxed);
        self.fallback(key, fewest).map(|d| (d, 0))
    }

    fn outage(&self) -> std::sync::MutexGuard<'_, Outage> {
        self.outage.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn answered(&self, decision: &Decision) {
        self.counters.redis.fetch_add(1, Ordering::Relaxed);
        self.corrupt_replaced(decision.corrupt);
        if self.is_degraded() && self.succeeded() {
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

    /// When the outage's next probe is due; `None` once Redis answers.
    pub(super) fn next_probe(&self) -> Option<Instant> {
        let outage = self.outage();
        outage.degraded.then_some(outage.next_probe)
    }

    /// Books the probe due at `now` for the background task (as a request
    /// would, so that the two share one schedule and one probe at a time):
    /// `Some(true)` to ask Redis now, `Some(false)` if it is not due (or a
    /// request took it), `None` once Redis answers.
    pub(super) fn book_probe(&self, now: Instant) -> Option<bool> {
        let mut outage = self.outage();
        outage.degraded.then(|| outage.should_ask(now))
    }

    /// The background task's probe: a peek (`n = 0`, which writes nothing)
    /// of the key `""`, through the same script, connection and timeout as
    /// a request. Not a decision: only its fault, or the outage's end, is
    /// counted. True once the outage is over.
    pub(super) async fn probe(&self) -> bool {
        match self
            .backend
            .run(&self.name, "", &self.rules, (0, 0), None)
            .await
        {
            Ok((decision, _)) => {
                self.corrupt_replaced(decision.corrupt);
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
                self.failed(&e, true);
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

    fn failed(&self, e: &BackendError, probe: bool) {
        self.counters.faults.fetch_add(1, Ordering::Relaxed);
        let started = {
            let mut outage = self.outage();
            let started = outage.failed(Instant::now(), self.backoff, probe);
            self.degraded.store(true, Ordering::Release);
            // Under the lock, as every change of `degraded`: a task runs
            // while the limiter is degraded, and only then.
            self.probe.start(&self.me);
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
    fn succeeded(&self) -> bool {
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

    fn fallback(&self, key: &str, n: u32) -> Result<Decision, BackendError> {
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
                let wait = self.outage().until_probe(Instant::now());
                Ok(refused(false, Source::Local, wait))
            }
            (Degrade::Local { .. }, Some((memory, rules))) => {
                memory.decide_now(&self.name, key, rules, n)
            }
            // A peek takes nothing: admitted, as Redis admits it, with no
            // token known to be left (a request for one is refused).
            _ if n == 0 => Ok(refused(true, Source::FailClosed, Duration::ZERO)),
            _ => {
                let wait = self.outage().until_probe(Instant::now());
                Ok(refused(false, Source::FailClosed, wait))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{RedisConfig, Rule};
    use fusebox::bucket::Quota;

    /// A limiter on a port where nothing listens: every command fails at
    /// once, so its first request degrades it.
    fn unreachable(policy: Degrade, backoff: Duration) -> RedisLimiter {
        let config = RedisConfig::new("redis://127.0.0.1:1").timeout(Duration::from_millis(200));
        let backend = RedisBackend::connect_lazy(config).unwrap();
        let rules =
            Rules::new([Rule::new("per_second", Quota::per_second(5).unwrap()).unwrap()]).unwrap();
        RedisLimiter::builder("unit", rules, backend)
            .degrade(policy)
            .probe_backoff(backoff, backoff)
            .local_keys(1)
            .build()
            .unwrap()
    }

    /// A peek (`n = 0`) admits no request and, under the `Local` policy,
    /// leaves no state: it counted an admission and inserted its key in
    /// the local table (a full one refused it with `TableFull`).
    #[tokio::test]
    async fn a_peek_counts_no_admission_and_leaves_no_local_state() {
        let limiter = unreachable(Degrade::Local { instances: 1 }, Duration::from_secs(3_600));
        let local = || &limiter.shared.local.as_ref().unwrap().0;
        let d = limiter.try_acquire_n("a", 0).await.unwrap();
        assert!(limiter.is_degraded());
        assert_eq!((d.allowed, d.source, d.remaining), (true, Source::Local, 5));
        assert_eq!(limiter.metrics().admitted, 0);
        assert!(local().is_empty());
        assert!(limiter.try_acquire("a").await.unwrap().allowed);
        assert_eq!(limiter.metrics().admitted, 1);
        // The table is full (one key, not idle): a peek at another key
        // is answered, and inserts nothing.
        let d = limiter.try_acquire_n("b", 0).await.unwrap();
        assert_eq!((d.allowed, d.source), (true, Source::Local));
        assert_eq!(limiter.metrics().admitted, 1);
        assert_eq!(local().len(), 1);
        for policy in [Degrade::FailOpen, Degrade::FailClosed] {
            let limiter = unreachable(policy, Duration::from_secs(3_600));
            assert!(limiter.try_acquire_n("a", 0).await.unwrap().allowed);
            assert!(limiter.is_degraded());
            assert_eq!(limiter.metrics().admitted, 0, "{policy:?}");
        }
    }

    /// The probe task runs while the limiter is degraded, one at most,
    /// and ends with the limiter, however far its next probe.
    #[tokio::test]
    async fn the_probe_task_runs_while_degraded_and_ends_with_the_limiter() {
        let limiter = unreachable(Degrade::FailOpen, Duration::from_secs(3_600));
        assert!(!limiter.shared.probe.is_running(), "no task while healthy");
        let _ = limiter.try_acquire("k").await.unwrap();
        assert!(limiter.is_degraded());
        assert!(limiter.shared.probe.is_running());
        let task = limiter.shared.probe.handle().unwrap();
        let _ = limiter.try_acquire("k").await.unwrap();
        let again = limiter.shared.probe.handle().unwrap();
        assert_eq!(task.id(), again.id(), "one task at most");
        let state = Arc::downgrade(&limiter.shared);
        drop(limiter);
        assert_eq!(state.strong_count(), 0, "the task held the limiter");
        for _ in 0..100 {
            if task.is_finished() {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(task.is_finished(), "the task outlived its limiter");
    }
}
