//! Backends that hold rate-limit state: in process ([`MemoryBackend`], the
//! default) or in Redis ([`RedisBackend`], shared by a fleet), behind one
//! [`Backend`] trait, and the distributed [`RedisLimiter`] that survives
//! Redis outages.
//!
//! A request names a limiter, a key (a user, an API key; `""` for a single
//! limiter) and [`Rules`] — several named quotas checked at once: admitted
//! only if every rule admits, and a refused request takes no token from
//! any. The limits travel with every call, so changing a quota needs no
//! migration; the flip side is that a fleet must agree on them. On Redis,
//! processes that send *different* rules for one limiter name share each
//! key's state, and each call reads it under its own rule: a state written
//! under another quota is read as time, capped at this rule's refill time
//! (so a raised quota applies at once), and what the cap cut off still
//! binds every other quota, so no quota gains from another's cap. The
//! memory backend instead moves the tokens available over to the new
//! quota (the core's
//! [`set_quota`](fusebox::bucket::TokenBucket::set_quota)) and keeps a
//! bucket per quota. On both, while several quotas are live on one name,
//! each admits no more than it would alone, and a key gets at most what
//! they would give together. Roll a quota change out quickly, or under a
//! new limiter name.
//!
//! Under unchanged quotas both backends decide exactly as the core
//! [`TokenBucket`](fusebox::bucket::TokenBucket) does on the same schedule
//! (the Redis script is checked against it, and the memory backend
//! against the script, by differential tests), with one exception that
//! only admits less: an admission whose new state lands exactly on the
//! wrap of the core bucket's word is stored one scaled unit later (the
//! word's zero means "never used", see the core's `bucket` module docs),
//! so the memory backend then names a wait or reset up to 1 µs longer
//! than Redis; it takes a process running `2^63 / scale` µs (4.46 years
//! at the finest scale) to get there. Across a quota change they
//! differ as said above: raised from 10/s to 100/s with 2 tokens left,
//! Redis reads the 0.8 s of drain and has 20 left, the memory backend 2;
//! lowered from 100/s to 10/s with 50 left, Redis has 5, the memory
//! backend its burst of 10.
//!
//! | item | what |
//! |---|---|
//! | [`Backend`] | `decide(limiter, key, rules, n)` → [`Decision`] |
//! | [`MemoryBackend`] | core token buckets per (limiter, key), bounded |
//! | [`RedisBackend`] | GCRA in one Lua script, one round trip per decision, Redis `TIME` |
//! | [`RedisLimiter`] | waits and `try_acquire` on Redis, with a per-command timeout and a [`Degrade`] policy |
//! | [`LeasedLimiter`] | tokens leased from Redis in batches, spent in process (bounded over-admission) |
//! | [`storage_keys`] | `<prefix>:{<limiter>:<key>}:<rule>`, escaped |
//!
//! # Guarantees and limits
//!
//! * **Exactness.** The Lua script keeps the core kernel's scaled-time
//!   arithmetic (`scale`, emission interval, capacity, waits rounded up to
//!   a µs) in Lua numbers, every value an integer below 2^53: rules refill
//!   within [`MAX_REFILL`] (2^47 µs, 4.46 years) with `burst · T` at most
//!   [`MAX_CAPACITY`] scaled units, and Redis `TIME` in µs stays in range
//!   until about 2250. Rates from one per day to ten million per second
//!   decide exactly as the core bucket.
//! * **One round trip** (`EVALSHA`) per decision, all rules of a request
//!   in one atomic script under one hash tag (one Cluster slot).
//! * **Expiry.** Each rule's key expires (`PX`) when its bucket would be
//!   full again, so idle keys cost no memory.
//! * **Outages.** A [`RedisLimiter`] never waits on Redis longer than the
//!   command timeout; while Redis is out its [`Degrade`] policy decides.
//!   A command that timed out in a Redis stall was already sent: the
//!   script still runs when Redis resumes and takes the tokens the caller
//!   never got (admitting less, never more).
//!   Redis restarted without persistence forgets its buckets: each key may
//!   admit one extra burst after the restart. `Local` admits, per
//!   instance, the quota divided by the expected instance count, and
//!   Redis never learns of those admissions: a window spanning the
//!   outage's end may admit them and what Redis kept as well.
//! * **Corrupt values** (wrong type, garbage, absurd numbers, an older
//!   layout) are replaced by a *drained* bucket: the request is refused
//!   and the rule refills from empty, never opens wide.
//! * **Secrets and TLS.** Passwords and ACL users travel in the URL,
//!   TLS as `rediss://` (rustls; a private CA and client certificates
//!   through [`RedisConfig`]); no password or client key appears in
//!   `Debug`, errors, logs, metrics or health. A refused certificate
//!   either way is a [`BackendError::Tls`].
//! * **Leasing** ([`LeasedLimiter`]) trades exactness for round trips:
//!   over any interval `T` the fleet admits at most
//!   `burst + rate · T + instances × lease`.
//!
//! Feature `redis`.

mod key;
mod memory;
mod redis;
mod rules;

use std::fmt;
use std::future::Future;
use std::time::Duration;

pub use self::key::{
    escape, storage_keys, KeyPrefix, MAX_KEY_LEN, MAX_PREFIX_LEN, RESERVED_LIMITER_NAMES,
};
pub use self::memory::MemoryBackend;
pub use self::redis::{
    redacted_url, Degrade, FleetConfig, FleetPercentiles, FleetReport, FleetSeries, LeasedLimiter,
    RedisBackend, RedisConfig, RedisConnection, RedisLimiter, RedisLimiterBuilder,
    RedisLimiterMetrics,
};
pub use self::redis::{FleetBreaker, FleetBreakerBuilder, FleetBreakerMetrics};
pub use self::redis::{MAX_INSTANCES, MAX_INSTANCE_LEN};
pub use self::rules::{Decision, Rule, Rules, Source, MAX_CAPACITY, MAX_REFILL, MAX_RULES};

/// Where rate-limit state lives.
///
/// # Examples
///
/// ```
/// use fusebox::bucket::Quota;
/// use fusebox_std::backend::{Backend, MemoryBackend, Rules};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// let backend = MemoryBackend::new(1_000);
/// let rules = Rules::single("per_second", Quota::per_second(2)?)?;
/// assert!(backend.decide("api", "user-1", &rules, 2).await?.allowed);
/// assert!(!backend.decide("api", "user-1", &rules, 1).await?.allowed);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub trait Backend: Send + Sync {
    /// Takes `n` tokens from every rule of `key` in `limiter`, all or none.
    ///
    /// # Errors
    ///
    /// [`BackendError`]: a request larger than a burst, a bad key, or (for
    /// Redis) the server's fault.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::bucket::Quota;
    /// use fusebox_std::backend::{Backend, MemoryBackend, Rule, Rules};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// let backend = MemoryBackend::new(1_000);
    /// let rules = Rules::new([
    ///     Rule::new("per_second", Quota::per_second(5)?)?,
    ///     Rule::new("per_minute", Quota::per_minute(8)?)?,
    /// ])?;
    /// assert!(backend.decide("api", "user-1", &rules, 4).await?.allowed);
    /// // 1 left this second: refused by rule 0, and nothing taken from rule 1.
    /// let refused = backend.decide("api", "user-1", &rules, 3).await?;
    /// assert_eq!((refused.allowed, refused.rule), (false, 0));
    /// tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    /// let taken = backend.decide("api", "user-1", &rules, 4).await?;
    /// assert_eq!((taken.allowed, taken.rule, taken.remaining), (true, 1, 0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    fn decide(
        &self,
        limiter: &str,
        key: &str,
        rules: &Rules,
        n: u32,
    ) -> impl Future<Output = Result<Decision, BackendError>> + Send;
}

/// Why a backend made no decision.
///
/// Messages never carry a secret: everything that comes from a URL or a
/// server error passes through [`redact`](crate::redact::redact).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use fusebox_std::backend::BackendError;
///
/// let e = BackendError::Timeout(Duration::from_millis(5));
/// assert!(e.is_fault());
/// assert_eq!(e.to_string(), "redis did not answer within 5ms");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackendError {
    /// More tokens than a rule's burst: no wait could help.
    InsufficientCapacity {
        /// Tokens asked for.
        requested: u32,
        /// The smallest burst among the rules.
        burst: u32,
    },
    /// A rule that cannot be built.
    InvalidRule(&'static str),
    /// A limiter name, key or prefix that cannot be stored.
    InvalidKey(&'static str),
    /// A configuration that cannot work (e.g. a zero timeout).
    InvalidConfig(&'static str),
    /// The memory backend's table is full of keys that are not idle.
    TableFull,
    /// A wait would end after the caller's deadline.
    DeadlineExceeded {
        /// The wait the limiter named.
        retry_after: Duration,
    },
    /// Redis did not answer within the per-command timeout.
    Timeout(Duration),
    /// Redis could not be reached or failed (redacted message).
    Unavailable(String),
    /// Redis refused the credentials (redacted message).
    Auth(String),
    /// TLS failed (redacted message): a server certificate that does not
    /// chain to the trusted roots or does not name the host, a client
    /// certificate the server refused, a failed handshake, or certificates
    /// in the configuration that cannot be read.
    Tls(String),
    /// The script answered something it never answers (redacted message).
    Protocol(String),
}

impl BackendError {
    /// Whether this is a fault of the backend, to be met by a [`Degrade`]
    /// policy: Redis unreachable, slow, refusing the credentials or the TLS
    /// handshake, or answering garbage ([`Timeout`](Self::Timeout),
    /// [`Unavailable`](Self::Unavailable), [`Auth`](Self::Auth),
    /// [`Tls`](Self::Tls), [`Protocol`](Self::Protocol)). The other
    /// variants refuse the request itself or its configuration, the memory
    /// backend's [`TableFull`](Self::TableFull) included.
    ///
    /// ```
    /// use std::time::Duration;
    /// use fusebox_std::backend::BackendError;
    ///
    /// assert!(BackendError::Timeout(Duration::from_millis(50)).is_fault());
    /// assert!(BackendError::Unavailable("connection refused".into()).is_fault());
    /// // No degraded mode helps a request larger than the burst.
    /// assert!(!BackendError::InsufficientCapacity { requested: 10, burst: 5 }.is_fault());
    /// assert!(!BackendError::TableFull.is_fault());
    /// ```
    pub fn is_fault(&self) -> bool {
        matches!(
            self,
            Self::Timeout(_)
                | Self::Unavailable(_)
                | Self::Auth(_)
                | Self::Tls(_)
                | Self::Protocol(_)
        )
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InsufficientCapacity { requested, burst } => write!(
                f,
                "{requested} tokens requested, more than the burst of {burst}"
            ),
            Self::InvalidRule(why) => write!(f, "invalid rule: {why}"),
            Self::InvalidKey(why) => write!(f, "invalid key: {why}"),
            Self::InvalidConfig(why) => write!(f, "invalid redis configuration: {why}"),
            Self::TableFull => f.write_str("memory backend full: no idle key to evict"),
            Self::DeadlineExceeded { retry_after } => write!(
                f,
                "the rate limit admits no call before the deadline (retry after {retry_after:?})"
            ),
            Self::Timeout(after) => write!(f, "redis did not answer within {after:?}"),
            Self::Unavailable(why) => write!(f, "redis unavailable: {why}"),
            Self::Auth(why) => write!(f, "redis refused the credentials: {why}"),
            Self::Tls(why) => write!(f, "redis TLS failed: {why}"),
            Self::Protocol(why) => write!(f, "unexpected reply from redis: {why}"),
        }
    }
}

impl std::error::Error for BackendError {}

/// `n` against the rules' smallest burst.
fn check_capacity(rules: &Rules, n: u32) -> Result<(), BackendError> {
    let burst = rules.min_burst();
    if n > burst {
        return Err(BackendError::InsufficientCapacity {
            requested: n,
            burst,
        });
    }
    Ok(())
}
