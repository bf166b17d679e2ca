//! [`LeasedLimiter`]: tokens taken from Redis in batches (leases) and spent
//! in process, for request rates where one round trip per decision costs
//! too much.

use std::time::Duration;

use fusebox::bucket::TokenBucket;
use fusebox::Clock;
use tokio::sync::Mutex;

use super::RedisLimiter;
use crate::backend::{BackendError, Decision, Source};
use crate::TokioClock;

/// What this instance holds.
#[derive(Debug)]
struct Lease {
    /// Leased tokens not yet spent.
    tokens: u32,
    /// When the unspent ones are given up.
    expires: tokio::time::Instant,
}

/// A [`RedisLimiter`] key whose tokens are taken from Redis `lease` at a
/// time and spent locally.
///
/// A request is admitted locally while this instance holds enough leased
/// tokens *and* a local core [`TokenBucket`] on the first rule's quota
/// admits it (so one instance never spends faster than the whole fleet
/// may); otherwise one round trip takes a new lease (or, when Redis has
/// fewer tokens than a lease, exactly what the request needs). Unspent
/// tokens are given up after `lease_ttl`.
///
/// # Over-admission bound
///
/// Every token spent was first taken from Redis, so over the whole run
/// nothing is admitted beyond the shared limit. Over a window, though,
/// an instance may spend tokens it leased *before* the window began: over
/// any interval `T` the fleet admits at most
/// `burst + rate · T + instances × lease` tokens (a test proves it with
/// real instances).
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use fusebox::bucket::Quota;
/// use fusebox_std::backend::{LeasedLimiter, RedisBackend, RedisConfig, RedisLimiter, Rules};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let backend = RedisBackend::connect(RedisConfig::new("redis://127.0.0.1:6379")).await?;
/// let rules = Rules::single("per_second", Quota::per_second(100_000)?)?;
/// let limiter = RedisLimiter::builder("ingest", rules, backend).build()?;
/// let leased = LeasedLimiter::new(limiter, "all", 100, Duration::from_millis(100))?;
/// assert!(leased.try_acquire().await?.allowed);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct LeasedLimiter {
    limiter: RedisLimiter,
    key: Box<str>,
    lease: u32,
    ttl: Duration,
    pace: TokenBucket,
    clock: TokioClock,
    held: Mutex<Lease>,
}

impl LeasedLimiter {
    /// Leases of `lease` tokens of `key` in `limiter`, given up after
    /// `lease_ttl` unspent.
    ///
    /// # Errors
    ///
    /// [`BackendError::InsufficientCapacity`] for a lease of zero or larger
    /// than the smallest burst; [`BackendError::InvalidKey`] for a key that
    /// cannot be stored.
    pub fn new(
        limiter: RedisLimiter,
        key: &str,
        lease: u32,
        lease_ttl: Duration,
    ) -> Result<Self, BackendError> {
        let burst = limiter.rules().min_burst();
        if lease == 0 || lease > burst {
            return Err(BackendError::InsufficientCapacity {
                requested: lease,
                burst,
            });
        }
        crate::backend::escape(key)?;
        let first = limiter
            .rules()
            .iter()
            .next()
            .map(crate::backend::Rule::quota);
        let pace = TokenBucket::new(first.ok_or(BackendError::InvalidRule("no rule"))?);
        Ok(Self {
            limiter,
            key: key.into(),
            lease,
            ttl: lease_ttl,
            pace,
            clock: TokioClock::new(),
            held: Mutex::new(Lease {
                tokens: 0,
                expires: tokio::time::Instant::now(),
            }),
        })
    }

    /// The limiter the leases come from.
    pub fn limiter(&self) -> &RedisLimiter {
        &self.limiter
    }

    /// The lease size.
    pub fn lease(&self) -> u32 {
        self.lease
    }

    /// Takes one token.
    ///
    /// # Errors
    ///
    /// As [`try_acquire_n`](Self::try_acquire_n).
    pub async fn try_acquire(&self) -> Result<Decision, BackendError> {
        self.try_acquire_n(1).await
    }

    /// Takes `n` tokens: from the lease held, or from a new one.
    ///
    /// # Errors
    ///
    /// As [`RedisLimiter::try_acquire_n`].
    pub async fn try_acquire_n(&self, n: u32) -> Result<Decision, BackendError> {
        let mut held = self.held.lock().await;
        let now = tokio::time::Instant::now();
        if now >= held.expires {
            held.tokens = 0;
        }
        if held.tokens < n {
            let d = self
                .limiter
                .try_acquire_n(&self.key, self.lease.max(n))
                .await?;
            let d = if !d.allowed && d.source == Source::Redis && d.remaining >= u64::from(n) {
                // Fewer tokens than a lease: take what is there, at least n.
                let take = u32::try_from(d.remaining)
                    .unwrap_or(u32::MAX)
                    .min(self.lease);
                let again = self.limiter.try_acquire_n(&self.key, take).await?;
                if again.allowed && again.source == Source::Redis {
                    self.credit(&mut held, take, now);
                    again
                } else {
                    return Ok(again);
                }
            } else if d.allowed && d.source == Source::Redis {
                self.credit(&mut held, self.lease.max(n), now);
                d
            } else {
                // Refused, or decided by the degradation policy: no lease.
                return Ok(d);
            };
            if held.tokens < n {
                return Ok(d);
            }
        }
        // Spent from the lease, paced by the local core bucket.
        match self.pace.try_acquire_n(n, self.clock.now()) {
            Ok(()) => {
                held.tokens -= n;
                Ok(Decision {
                    allowed: true,
                    retry_after: Duration::ZERO,
                    remaining: u64::from(held.tokens),
                    reset: held.expires.saturating_duration_since(now),
                    rule: 0,
                    source: Source::Lease,
                    corrupt: 0,
                })
            }
            Err(e) => Ok(Decision {
                allowed: false,
                retry_after: match e {
                    fusebox::bucket::AcquireError::RateLimited(l) => l.retry_after.into(),
                    _ => self.ttl,
                },
                remaining: u64::from(held.tokens),
                reset: held.expires.saturating_duration_since(now),
                rule: 0,
                source: Source::Lease,
                corrupt: 0,
            }),
        }
    }

    fn credit(&self, held: &mut Lease, tokens: u32, now: tokio::time::Instant) {
        held.tokens = held.tokens.saturating_add(tokens);
        held.expires = now + self.ttl;
    }
}
