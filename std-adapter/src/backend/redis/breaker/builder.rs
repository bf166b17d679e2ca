//! [`FleetBreakerBuilder`]: options, loading the stored decision, and the
//! observer hook that wakes the background task on local transitions.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fusebox::breaker::{State, Transition};
use fusebox::{CircuitBreaker, Instant};
use tokio::sync::Notify;

use super::super::tls;
use super::notify::{self, Subscriber};
use super::script::Keys;
use super::{sync, FleetBreaker, Inner, Quorum};
use crate::backend::{BackendError, RedisBackend, RedisConfig};
use crate::policy::{Breaker, BreakerObserver};
use crate::redact::Redacted;

/// Builds a [`FleetBreaker`]; see [`FleetBreaker::builder`].
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use fusebox::breaker::{CircuitBreaker, Config};
/// use fusebox_std::backend::{FleetBreaker, RedisBackend, RedisConfig};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// // Nothing listens on port 1: the breaker starts degraded, on local state.
/// let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:1"))?;
/// let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(1).build()?));
/// let breaker = FleetBreaker::builder("payments", core, backend)
///     .sync_interval(Duration::from_millis(200))
///     .call_timeout(Duration::from_secs(2))
///     .quorum(3, Duration::from_secs(60))
///     .instance_id("payments-7f3a")
///     .build()
///     .await?;
/// assert_eq!(breaker.name(), "payments");
/// assert!(breaker.is_degraded());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct FleetBreakerBuilder {
    name: Arc<str>,
    core: Arc<CircuitBreaker>,
    backend: RedisBackend,
    sync_interval: Duration,
    timeout: Option<Duration>,
    quorum: Option<Quorum>,
    instance: Option<String>,
    trial_ttl: Option<Duration>,
    observer: Option<Arc<dyn BreakerObserver>>,
    notifications: Option<(String, Option<RedisConfig>)>,
}

impl std::fmt::Debug for FleetBreakerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not yet checked (that is `build`'s): the name may be anything,
        // a URL with a password included, so it is redacted as
        // `BreakerBuilder`'s is.
        f.debug_struct("FleetBreakerBuilder")
            .field("name", &crate::redact::redact(&self.name))
            .field("sync_interval", &self.sync_interval)
            .field("quorum", &self.quorum)
            .finish_non_exhaustive()
    }
}

/// The longest quorum window, in ms (Redis expiry arithmetic stays exact).
const MAX_WINDOW_MS: u64 = 1 << 40;

impl FleetBreakerBuilder {
    pub(super) fn new(name: Arc<str>, core: Arc<CircuitBreaker>, backend: RedisBackend) -> Self {
        Self {
            name,
            core,
            backend,
            sync_interval: Duration::from_secs(1),
            timeout: None,
            quorum: None,
            instance: None,
            trial_ttl: None,
            observer: None,
            notifications: None,
        }
    }

    /// How often the decision is reconciled with Redis (default 1 s): a
    /// trip anywhere is seen everywhere within this interval.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use fusebox::breaker::{CircuitBreaker, Config};
    /// use fusebox_std::backend::{FleetBreaker, RedisBackend, RedisConfig};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:6379"))?;
    /// let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(5).build()?));
    /// // At least 1 ms.
    /// let builder = FleetBreaker::builder("payments", core, backend).sync_interval(Duration::ZERO);
    /// assert!(format!("{builder:?}").contains("sync_interval: 1ms"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn sync_interval(mut self, interval: Duration) -> Self {
        self.sync_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// A timeout for every call (see [`crate::policy::BreakerBuilder::timeout`]).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use fusebox::breaker::{CircuitBreaker, Config};
    /// use fusebox_std::CallError;
    /// use fusebox_std::backend::{FleetBreaker, RedisBackend, RedisConfig};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// // Nothing listens on port 1: the breaker starts degraded, on local state.
    /// let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:1"))?;
    /// let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(1).build()?));
    /// let breaker = FleetBreaker::builder("payments", core, backend)
    ///     .call_timeout(Duration::from_millis(10))
    ///     .build()
    ///     .await?;
    /// let slow = breaker.call(async {
    ///     tokio::time::sleep(Duration::from_secs(1)).await;
    ///     Ok::<_, &str>(())
    /// });
    /// assert!(matches!(slow.await, Err(CallError::Timeout)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Quorum mode: the fleet opens only once `min_instances` distinct
    /// instances tripped within `window` (at most about 35 years); without
    /// it any instance's trip opens all.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use fusebox::breaker::{CircuitBreaker, Config};
    /// use fusebox_std::backend::{FleetBreaker, RedisBackend, RedisConfig};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:6379"))?;
    /// let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(5).build()?));
    /// let builder = FleetBreaker::builder("payments", core, backend).quorum(3, Duration::from_secs(60));
    /// assert!(format!("{builder:?}").contains("min: 3, window_ms: 60000"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn quorum(mut self, min_instances: u32, window: Duration) -> Self {
        self.quorum = Some(Quorum {
            min: min_instances.max(1),
            window_ms: u64::try_from(window.as_millis())
                .unwrap_or(u64::MAX)
                .clamp(1, MAX_WINDOW_MS),
        });
        self
    }

    /// This instance's id in quorum verdicts (default: the host name, so
    /// an instance that crash-loops on one host counts once toward a
    /// quorum, not once per restart; a random id if the host name is
    /// unknown). Give each instance its own id when several run on one
    /// host and should count separately. Keep secrets out of it; at most
    /// 128 bytes are used.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use fusebox::breaker::{CircuitBreaker, Config};
    /// use fusebox_std::backend::{FleetBreaker, RedisBackend, RedisConfig};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// // Nothing listens on port 1: the breaker starts degraded, on local state.
    /// let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:1"))?;
    /// let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(1).build()?));
    /// // Two instances on one host, counted separately toward the quorum.
    /// let breaker = FleetBreaker::builder("payments", core, backend)
    ///     .quorum(2, Duration::from_secs(60))
    ///     .instance_id("payments-a")
    ///     .build()
    ///     .await?;
    /// assert_eq!(breaker.name(), "payments");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn instance_id(mut self, id: impl Into<String>) -> Self {
        self.instance = Some(id.into());
        self
    }

    /// How long a fleet trial slot is held if its holder vanishes
    /// (default: the breaker's `open_for`, at least 1 s, and at least the
    /// timeout plus 1 s; at most a day). A trial that outlives it (no
    /// timeout, a hung call) may be joined by another one: set a timeout.
    /// The slot's value claims this TTL: other instances honour it up to
    /// its claim, even one longer than theirs, and take a slot kept longer
    /// than it claims for forged (see [`FleetBreaker`]).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use fusebox::breaker::{CircuitBreaker, Config};
    /// use fusebox_std::backend::{FleetBreaker, RedisBackend, RedisConfig};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// // Nothing listens on port 1: the breaker starts degraded, on local state.
    /// let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:1"))?;
    /// let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(1).build()?));
    /// let breaker = FleetBreaker::builder("payments", core, backend)
    ///     .call_timeout(Duration::from_secs(2))
    ///     .trial_ttl(Duration::from_secs(5)) // above the timeout: a trial never outlives its slot
    ///     .build()
    ///     .await?;
    /// assert_eq!(breaker.policy().timeout(), Some(Duration::from_secs(2)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn trial_ttl(mut self, ttl: Duration) -> Self {
        self.trial_ttl = Some(ttl);
        self
    }

    /// Subscribes to the breaker's `…:events` channel on the server at
    /// `url` (the backend's URL; for a Cluster backend any one node, as the
    /// seed of a Cluster connection that `SSUBSCRIBE`s on the shard owning
    /// the breaker's hash tag; a RESP3 connection of its own; for a
    /// `rediss://` server with a private CA or a client certificate use
    /// [`notifications_with`](Self::notifications_with)),
    /// so a change anywhere in the fleet is applied here within one round
    /// trip instead of one sync interval. Without it, reconciliation every
    /// sync interval alone shares decisions.
    ///
    /// This example connects to a Redis server, so the doctests compile
    /// it without running it.
    ///
    /// ```no_run
    /// # use std::sync::Arc;
    /// # use fusebox::breaker::{CircuitBreaker, Config};
    /// # use fusebox_std::backend::{FleetBreaker, RedisBackend, RedisConfig};
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let url = "redis://127.0.0.1:6379";
    /// let backend = RedisBackend::connect(RedisConfig::new(url)).await?;
    /// # let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(5).build()?));
    /// let breaker = FleetBreaker::builder("payments", core, backend)
    ///     .notifications(url)
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn notifications(mut self, url: impl Into<String>) -> Self {
        self.notifications = Some((url.into(), None));
        self
    }

    /// [`notifications`](Self::notifications) through the server `config`
    /// names (its URL, or a Cluster's first seed node), with its TLS
    /// settings: the backend's own config fits.
    ///
    /// This example connects to a Redis server, so the doctests compile
    /// it without running it.
    ///
    /// ```no_run
    /// # use std::sync::Arc;
    /// # use fusebox::breaker::{CircuitBreaker, Config};
    /// # use fusebox_std::backend::{FleetBreaker, RedisBackend, RedisConfig};
    /// # async fn run(ca_pem: String) -> Result<(), Box<dyn std::error::Error>> {
    /// let config = RedisConfig::new("rediss://redis.internal:6380").tls_root_cert_pem(ca_pem);
    /// let backend = RedisBackend::connect(config.clone()).await?;
    /// # let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(5).build()?));
    /// let breaker = FleetBreaker::builder("payments", core, backend)
    ///     .notifications_with(config)
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn notifications_with(mut self, config: RedisConfig) -> Self {
        self.notifications = Some((config.url().to_owned(), Some(config)));
        self
    }

    /// Also tells `observer` what calls do, and every transition of the
    /// local breaker no call makes: a fleet decision applied here (another
    /// instance's trip, an operator's action, the fleet's trials closing
    /// it), and an admin action applied on this instance only while Redis
    /// is out. It is called while the fleet's decision is applied, under
    /// the lock that orders the breaker's exchanges with Redis: it must not
    /// wait for this breaker's own [`sync`](super::FleetBreaker::sync) or
    /// admin actions (it would wait for itself); spawn a task for such
    /// work. An observer with a
    /// [`fleet_observer`](BreakerObserver::fleet_observer) is told through
    /// that one: the registry's
    /// ([`Registry::breaker_observer`](crate::Registry::breaker_observer))
    /// then publishes the breaker's events as a
    /// [`Component::FleetBreaker`](crate::events::Component::FleetBreaker)'s.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use fusebox::breaker::{CircuitBreaker, Config, Transition};
    /// use fusebox::Instant;
    /// use fusebox_std::backend::{FleetBreaker, RedisBackend, RedisConfig};
    /// use fusebox_std::policy::BreakerObserver;
    ///
    /// #[derive(Default)]
    /// struct Failures(AtomicU32);
    /// impl BreakerObserver for Failures {
    ///     fn transition(&self, _name: &str, _t: Transition) {}
    ///     fn failure(&self, _name: &str, _at: Instant, _timed_out: bool) {
    ///         self.0.fetch_add(1, Ordering::Relaxed);
    ///     }
    /// }
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// // Nothing listens on port 1: the breaker starts degraded, on local state.
    /// let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:1"))?;
    /// let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(1).build()?));
    /// let failures = Arc::new(Failures::default());
    /// let breaker = FleetBreaker::builder("payments", core, backend)
    ///     .observer(Arc::clone(&failures) as Arc<dyn BreakerObserver>)
    ///     .build()
    ///     .await?;
    /// let _ = breaker.call(async { Err::<(), _>("boom") }).await;
    /// assert_eq!(failures.0.load(Ordering::Relaxed), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn observer(mut self, observer: Arc<dyn BreakerObserver>) -> Self {
        // The registry's observer answers one publishing a fleet
        // breaker's events (`Component::FleetBreaker`).
        self.observer = Some(observer.fleet_observer().unwrap_or(observer));
        self
    }

    /// Loads the stored decision (an open breaker stays open after a
    /// restart until its time is up) and starts the background task. If
    /// Redis does not answer, the breaker starts degraded, on local state.
    ///
    /// Must be called within a tokio runtime.
    ///
    /// # Errors
    ///
    /// [`BackendError::InvalidKey`] for a name that is not a registry name
    /// ([`validate_name`](crate::registry::validate_name)): it becomes part
    /// of the Redis keys and their hash tag.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fusebox::breaker::{CircuitBreaker, Config};
    /// use fusebox_std::backend::{BackendError, FleetBreaker, RedisBackend, RedisConfig};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// // Nothing listens on port 1: the breaker starts degraded, on local state.
    /// let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:1"))?;
    /// let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(1).build()?));
    /// let backend2 = backend.clone();
    /// let bad = FleetBreaker::builder("pay:ments", Arc::clone(&core), backend).build().await;
    /// assert!(matches!(bad, Err(BackendError::InvalidKey(_))));
    /// let breaker = FleetBreaker::builder("payments", core, backend2).build().await?;
    /// assert!(breaker.is_degraded()); // Redis did not answer: local state
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn build(self) -> Result<FleetBreaker, BackendError> {
        if crate::registry::validate_name(&self.name).is_err() {
            return Err(BackendError::InvalidKey(
                "a breaker name must be a registry name",
            ));
        }
        let notify = Arc::new(Notify::new());
        let trial_closes = Arc::new(AtomicU64::new(0));
        let hook = Hook {
            notify: Arc::clone(&notify),
            trial_closes: Arc::clone(&trial_closes),
            user: self.observer.clone(),
        };
        let mut policy = Breaker::builder(Arc::clone(&self.name), Arc::clone(&self.core))
            .observer(Arc::new(hook));
        if let Some(timeout) = self.timeout {
            policy = policy.timeout(timeout);
        }
        // The subscription's client, checked now (a bad URL or
        // certificate is an error here, not a silent backstop).
        let sharded = self.backend.connection().is_cluster();
        let notifications = match &self.notifications {
            None => None,
            Some((url, config)) => Some(subscriber(url, config.as_ref(), sharded)?),
        };
        let permits = self.core.config().half_open_permits();
        let open_for: Duration = self.core.config().open_for().into();
        let instance = self.instance.unwrap_or_else(default_instance_id);
        let instance = truncate(&instance, 128).to_owned();
        let inner = Arc::new(Inner {
            policy: policy.build(),
            observer: self.observer,
            conn: self.backend.connection(),
            timeout: self.backend.timeout(),
            keys: Keys::new(self.backend.prefix().as_str(), &self.name, permits),
            sharded,
            quorum: self.quorum,
            instance: instance.into(),
            nonce: nonce(),
            trial_ttl: self.trial_ttl.unwrap_or_else(|| {
                // Outlives a trial cut by the timeout, so no second trial
                // starts while the first still runs.
                let trial = self
                    .timeout
                    .map_or(Duration::ZERO, |t| t.saturating_add(Duration::from_secs(1)));
                open_for.max(trial).max(Duration::from_secs(1))
            }),
            notify: Arc::clone(&notify),
            sync_lock: tokio::sync::Mutex::new(()),
            last: Mutex::new(None),
            trips_published: AtomicU64::new(self.core.metrics().trips),
            pending_trip: Mutex::new(None),
            fleet_open: Mutex::new(None),
            fleet_holds: AtomicBool::new(false),
            fleet_open_waived: AtomicU64::new(u64::MAX),
            close_reported: AtomicU64::new(u64::MAX),
            trial_closes,
            trial_closes_reported: AtomicU64::new(0),
            local_only: AtomicBool::new(false),
            local_only_at: AtomicU64::new(0),
            degraded: AtomicBool::new(false),
            corrupt_logged: AtomicBool::new(false),
            conflict_logged: AtomicBool::new(false),
            corrupt: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            published: AtomicU64::new(0),
            trials_refused: AtomicU64::new(0),
            tokens: AtomicU64::new(0),
            task: Mutex::new(Vec::new()),
        });
        let _ = inner.reconcile().await;
        let mut tasks = Vec::new();
        if let Some(subscriber) = notifications {
            let base = &inner.keys.decision;
            let channel = format!("{}:events", base.strip_suffix(":decision").unwrap_or(base));
            tasks.push(notify::spawn(
                subscriber,
                channel,
                Arc::downgrade(&inner),
                Arc::clone(&notify),
                self.backend.timeout().max(Duration::from_secs(1)),
            ));
        }
        tasks.push(sync::spawn(
            Arc::downgrade(&inner),
            notify,
            self.sync_interval,
            self.sync_interval.saturating_mul(8),
        ));
        *inner
            .task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = tasks;
        Ok(FleetBreaker { inner })
    }
}

/// The subscription for notifications at `url` (with `config`'s TLS
/// settings if given): `SSUBSCRIBE` through the Cluster if the backend is
/// one, else `SUBSCRIBE` on that server. A bare URL goes through the same
/// checks as a config's (`rediss://…/#insecure` refused, rustls's
/// provider installed): it was handed to the `redis` crate alone, which
/// accepts `#insecure` once any crate enables its `tls-rustls-insecure`
/// feature (found by a hostile review).
fn subscriber(
    url: &str,
    config: Option<&RedisConfig>,
    cluster: bool,
) -> Result<Subscriber, BackendError> {
    let bare = RedisConfig::new(url);
    let config = config.unwrap_or(&bare);
    if cluster {
        let nodes = if config.nodes().is_empty() {
            vec![url.to_owned()]
        } else {
            config.nodes().to_vec()
        };
        let certificates = tls::prepare(nodes.iter().map(String::as_str), &config.tls)?;
        return Ok(Subscriber::Cluster {
            nodes,
            certificates,
        });
    }
    let url = notify::resp3(url);
    Ok(Subscriber::Single(config.client_for(&url)?))
}

/// The host name (`HOSTNAME`, else `/etc/hostname`), or a random id.
fn default_instance_id() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("{:016x}", fastrand::u64(..)))
}

/// A random number of this instance's (its records' keys, its trial
/// tokens), from the operating system's randomness (std's `RandomState`
/// keys). Not from fastrand's thread-local generator: a program may seed
/// that one (`fastrand::seed`, for reproducible jitter), and every
/// process of it then had the same nonce, so the same records: one
/// instance's `force_open` and trips read as repeats of another's and
/// changed nothing (found by a hostile review).
fn nonce() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    // Each `RandomState` of a thread has other keys (one counts up):
    // two instances of one process differ too.
    RandomState::new().hash_one(0u8)
}

/// At most `max` bytes of `s`, cut at a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Wakes the background task on every local transition, and counts the
/// closes made by the local breaker's own trials.
struct Hook {
    notify: Arc<Notify>,
    trial_closes: Arc<AtomicU64>,
    user: Option<Arc<dyn BreakerObserver>>,
}

impl BreakerObserver for Hook {
    fn transition(&self, name: &str, t: Transition) {
        if (t.from, t.to) == (State::HalfOpen, State::Closed) {
            self.trial_closes.fetch_add(1, Ordering::AcqRel);
        }
        self.notify.notify_one();
        match &self.user {
            Some(user) => user.transition(name, t),
            None => {
                tracing::info!(breaker = %Redacted(&name), from = ?t.from, to = ?t.to, "circuit breaker transition");
            }
        }
    }

    fn rejected(&self, name: &str, at: Instant) {
        if let Some(user) = &self.user {
            user.rejected(name, at);
        }
    }

    fn failure(&self, name: &str, at: Instant, timed_out: bool) {
        if let Some(user) = &self.user {
            user.failure(name, at, timed_out);
        }
    }
}
