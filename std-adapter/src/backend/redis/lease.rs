//! [`LeasedLimiter`]: tokens taken from Redis in batches (leases) and spent
//! in process, for request rates where one round trip per decision costs
//! too much.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use fusebox::bucket::TokenBucket;
use fusebox::Clock;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::RedisLimiter;
use crate::backend::{BackendError, Decision, Source};
use crate::TokioClock;

/// What this instance holds (under a short, synchronous lock).
#[derive(Debug)]
struct Lease {
    /// Leased tokens not yet spent.
    tokens: u32,
    /// When the unspent ones are given up.
    expires: Instant,
    /// A task is taking a new lease.
    refilling: bool,
    /// Redis refused `n` tokens: until when, and the request's size.
    refused: Option<(Instant, u32, Decision)>,
}

/// A [`RedisLimiter`] key whose tokens are taken from Redis `lease` at a
/// time and spent locally.
///
/// A request is admitted locally while this instance holds enough leased
/// tokens *and* a local core [`TokenBucket`] on the first rule's quota
/// admits it (so one instance never spends faster than the whole fleet
/// may; a request it refuses is refused in process, without a round
/// trip, so an instance never leases tokens it could not spend);
/// otherwise one round trip takes a new lease: `lease` tokens (or
/// the tokens the request still misses, if more), or when Redis holds
/// fewer, all it holds if that and the tokens held cover the request (the
/// tokens held are kept for that request meanwhile). One task refills at
/// a time, without holding any lock across the round trip: the others
/// wait for its result. A refusal
/// from Redis is remembered until its `retry_after` passes: requests as
/// large meanwhile are refused locally, without a round trip. Unspent
/// tokens are given up `lease_ttl` after the lease that brought them. A
/// refill that fails gives the tokens its request kept aside back with
/// the expiry they had; one that succeeds spends them on that request
/// (asked for more than it held), even if their lease ended while the
/// round trip was in flight, so the tokens left held are fewer than the
/// new lease brought and carry its expiry. A refill whose caller gives
/// up (its own timeout shorter than the command timeout, a dropped
/// future) gives the tokens kept aside back at once and wakes the
/// requests waiting on it; its round trip goes on in a task of its own
/// (see [`RedisLimiter`]): a lease it takes is held by no one (less,
/// never more), and its timeout still counts as a fault and degrades the
/// limiter, whose [`Degrade`](super::Degrade) policy then decides the
/// requests that find no tokens held.
///
/// # Over-admission bound
///
/// Every token spent was first taken from Redis, so over the whole run
/// nothing is admitted beyond the shared limit. Over a window, though,
/// an instance may spend tokens it leased *before* the window began: over
/// any interval `T` the fleet admits at most
/// `burst + rate · T + instances × lease` tokens (a test proves it with
/// real instances), whatever `lease_ttl`: an expiry only ever gives
/// tokens up, it never makes any.
///
/// # Examples
///
/// This example connects to a Redis server, so the doctests compile
/// it without running it.
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
pub struct LeasedLimiter {
    limiter: RedisLimiter,
    key: Box<str>,
    lease: u32,
    ttl: Duration,
    pace: TokenBucket,
    clock: TokioClock,
    held: Mutex<Lease>,
    refilled: Notify,
}

impl std::fmt::Debug for LeasedLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is the caller's, often taken from a request (an API key,
        // a URL): never shown (found by hostile reviews: the derived
        // `Debug` printed it whole, a token in it included; then
        // `redact()`, which masks credentials recognised by their context,
        // a URL's user info or a `token=` pair, showed a bare API key
        // whole, the usual key of a per-client limit).
        f.debug_struct("LeasedLimiter")
            .field("limiter", &self.limiter)
            .field("key", &format_args!("{}", crate::redact::MASK))
            .field("lease", &self.lease)
            .field("lease_ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// Ends a refill however its task ends (a dropped future included):
/// gives back the tokens its request kept aside (`.1`, unless spent),
/// clears the flag and wakes the waiters.
struct Refill<'a>(&'a LeasedLimiter, u32);

impl Drop for Refill<'_> {
    fn drop(&mut self) {
        let mut held = self.0.held();
        held.tokens = held.tokens.saturating_add(std::mem::take(&mut self.1));
        held.refilling = false;
        drop(held);
        self.0.refilled.notify_waiters();
    }
}

impl LeasedLimiter {
    /// Leases of `lease` tokens of `key` in `limiter`, given up after
    /// `lease_ttl` unspent. A `lease_ttl` longer than ~30 years
    /// (`Duration::MAX`) is clamped to that: no panic.
    ///
    /// # Errors
    ///
    /// [`BackendError::InsufficientCapacity`] for a lease of zero or larger
    /// than the smallest burst; [`BackendError::InvalidKey`] for a key that
    /// cannot be stored; [`BackendError::InvalidConfig`] for a zero
    /// `lease_ttl` (every lease would be given up at the next request, all
    /// but the one token it admitted wasted: a tenth of the quota admitted
    /// with leases of 10).
    ///
    /// ```
    /// use std::time::Duration;
    /// use fusebox::bucket::Quota;
    /// use fusebox_std::backend::{BackendError, LeasedLimiter, RedisBackend, RedisConfig, RedisLimiter, Rules};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let config = RedisConfig::new("redis://127.0.0.1:6379");
    /// let rules = Rules::single("per_second", Quota::per_second(5)?)?;
    /// let limiter = || RedisLimiter::builder("api", rules.clone(), RedisBackend::connect_lazy(config.clone())?).build();
    /// let ttl = Duration::from_millis(100);
    /// assert_eq!(LeasedLimiter::new(limiter()?, "all", 5, ttl)?.lease(), 5);
    /// // A lease larger than the burst could never be taken.
    /// let err = LeasedLimiter::new(limiter()?, "all", 6, ttl).unwrap_err();
    /// assert_eq!(err, BackendError::InsufficientCapacity { requested: 6, burst: 5 });
    /// // Leases given up at once would waste the quota.
    /// let err = LeasedLimiter::new(limiter()?, "all", 5, Duration::ZERO).unwrap_err();
    /// assert!(matches!(err, BackendError::InvalidConfig(_)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
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
        if lease_ttl.is_zero() {
            // Found by a hostile review: with a zero TTL every request
            // leased anew and the rest of each lease expired unspent, so
            // 100 requests on a quota of 100 an hour with leases of 10
            // admitted 10.
            return Err(BackendError::InvalidConfig(
                "a lease's time to live must be above zero",
            ));
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
                expires: Instant::now(),
                refilling: false,
                refused: None,
            }),
            refilled: Notify::new(),
        })
    }

    /// The limiter the leases come from.
    ///
    /// ```
    /// use std::time::Duration;
    /// use fusebox::bucket::Quota;
    /// use fusebox_std::backend::{LeasedLimiter, RedisBackend, RedisConfig, RedisLimiter, Rules};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:6379"))?;
    /// let rules = Rules::single("per_second", Quota::per_second(5)?)?;
    /// let limiter = RedisLimiter::builder("api", rules, backend).build()?;
    /// let leased = LeasedLimiter::new(limiter, "all", 2, Duration::from_millis(100))?;
    /// assert_eq!(leased.limiter().name(), "api");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn limiter(&self) -> &RedisLimiter {
        &self.limiter
    }

    /// The lease size.
    ///
    /// ```
    /// use std::time::Duration;
    /// use fusebox::bucket::Quota;
    /// use fusebox_std::backend::{LeasedLimiter, RedisBackend, RedisConfig, RedisLimiter, Rules};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:6379"))?;
    /// let rules = Rules::single("per_second", Quota::per_second(5)?)?;
    /// let limiter = RedisLimiter::builder("api", rules, backend).build()?;
    /// assert_eq!(LeasedLimiter::new(limiter, "all", 3, Duration::from_millis(100))?.lease(), 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn lease(&self) -> u32 {
        self.lease
    }

    /// Takes one token.
    ///
    /// # Errors
    ///
    /// As [`try_acquire_n`](Self::try_acquire_n).
    ///
    /// ```
    /// use std::time::Duration;
    /// use fusebox::bucket::Quota;
    /// use fusebox_std::backend::{Degrade, LeasedLimiter, RedisBackend, RedisConfig, RedisLimiter, Rules, Source};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// // Nothing listens on port 1: no lease can be taken, so the limiter's
    /// // `Degrade` policy decides.
    /// let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:1"))?;
    /// let rules = Rules::single("per_second", Quota::per_second(5)?)?;
    /// let limiter = RedisLimiter::builder("api", rules, backend).degrade(Degrade::FailOpen).build()?;
    /// let leased = LeasedLimiter::new(limiter, "all", 2, Duration::from_millis(100))?;
    /// let decision = leased.try_acquire().await?;
    /// assert_eq!((decision.allowed, decision.source), (true, Source::FailOpen));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn try_acquire(&self) -> Result<Decision, BackendError> {
        self.try_acquire_n(1).await
    }

    /// Takes `n` tokens: from the lease held, or from a new one.
    ///
    /// `n = 0` is a peek, answered from what this instance holds: admitted,
    /// with the tokens held as `remaining`, and no side effect (no round
    /// trip, no lease taken, nothing counted), as
    /// [`RedisLimiter::try_acquire_n`]'s peek. While a refill runs, the
    /// tokens its request keeps aside are not counted: no other request
    /// can spend them (it would wait for the refill), and they are spent by
    /// that request unless the refill fails.
    ///
    /// # Errors
    ///
    /// As [`RedisLimiter::try_acquire_n`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use fusebox::bucket::Quota;
    /// use fusebox_std::backend::{Degrade, LeasedLimiter, RedisBackend, RedisConfig, RedisLimiter, Rules, Source};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:1"))?;
    /// let rules = Rules::single("per_second", Quota::per_second(5)?)?;
    /// let limiter = RedisLimiter::builder("api", rules, backend).degrade(Degrade::FailOpen).build()?;
    /// let leased = LeasedLimiter::new(limiter, "all", 2, Duration::from_millis(100))?;
    /// // A peek: answered from the tokens held (none yet), without a round trip.
    /// let peek = leased.try_acquire_n(0).await?;
    /// assert_eq!((peek.allowed, peek.remaining, peek.source), (true, 0, Source::Lease));
    /// assert_eq!(leased.limiter().metrics().faults, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn try_acquire_n(&self, n: u32) -> Result<Decision, BackendError> {
        // Checked here, not only by the lease's round trip: that asks for
        // the tokens still missing, which may be within the burst when `n`
        // is not.
        crate::backend::check_capacity(self.limiter.rules(), n)?;
        loop {
            let waiting = {
                let mut held = self.held();
                let now = Instant::now();
                if now >= held.expires {
                    held.tokens = 0;
                }
                if held.tokens >= n {
                    return Ok(self.spend(&mut held, n, now));
                }
                match held.refused {
                    Some((until, refused, decision)) if now < until && n >= refused => {
                        let wait = until - now;
                        return Ok(Decision {
                            retry_after: wait,
                            reset: decision
                                .reset
                                .saturating_sub(decision.retry_after)
                                .saturating_add(wait),
                            remaining: u64::from(held.tokens),
                            source: Source::Lease,
                            // Redis's count of the corrupt values it
                            // replaced, not found again by this repeat
                            // (found by a hostile review: every repeat
                            // reported them).
                            corrupt: 0,
                            ..decision
                        });
                    }
                    Some((until, ..)) if now >= until => held.refused = None,
                    _ => {}
                }
                if held.refilling {
                    // Registered before the lock is released: no wake-up is lost.
                    let mut notified = Box::pin(self.refilled.notified());
                    notified.as_mut().enable();
                    Ok(notified)
                } else if let Some(refused) = self.unpaced(&held, n, now) {
                    // The pace would refuse the request after the lease:
                    // refused now, no lease taken (found by a hostile
                    // review: the lease was taken, then the pace refused,
                    // and the instance held more than a lease, tokens the
                    // fleet could not use and it could not spend).
                    return Ok(refused);
                } else {
                    held.refilling = true;
                    // The tokens held (fewer than `n`) are kept aside for
                    // this request, which leases only the rest: spent by
                    // others meanwhile, they would leave it short of the
                    // tokens it leased, held beyond a lease.
                    Err(std::mem::take(&mut held.tokens))
                }
            };
            match waiting {
                Ok(notified) => notified.await,
                Err(have) => {
                    if let Some(decision) = self.refill(n, have).await? {
                        return Ok(decision);
                    }
                }
            }
        }
    }

    /// Takes a new lease (this task alone) of at least the `n - have`
    /// tokens missing (`have < n`, kept aside for this request), then
    /// spends `n`; `None` if the tokens are then still short of `n` (not
    /// expected: nothing else spends or adds tokens while a refill runs;
    /// the caller then looks again).
    ///
    /// (It asked for all `n`, found by redis_rate's `AllowAtMost`
    /// scenario: an instance holding 1 token with Redis holding 2 refused
    /// a request for 3, naming the wait for a third token in Redis. Then
    /// it left the tokens held to others meanwhile, found by a hostile
    /// review: spent, they left the request short of its lease, which
    /// stayed held, more than a lease, and a second lease refused left
    /// the request refused with the tokens it missed held.)
    async fn refill(&self, n: u32, have: u32) -> Result<Option<Decision>, BackendError> {
        let mut refill = Refill(self, have);
        let need = n - have;
        let (d, taken) = self
            .limiter
            .lease(&self.key, (self.lease.max(need), need), n)
            .await?;
        let now = Instant::now();
        let mut held = self.held();
        // The tokens kept aside are held again, whatever the answer.
        held.tokens = held.tokens.saturating_add(std::mem::take(&mut refill.1));
        match d.source {
            Source::Redis if d.allowed => {
                held.tokens = held.tokens.saturating_add(taken);
                // The new lease's expiry for all held: the tokens kept
                // aside (fewer than `n`) are spent by this request just
                // below, so the rest (`have + taken - n < taken`) is the
                // new lease's; no token of an older lease outlives it.
                held.expires = crate::clock::saturating_add(now, self.ttl);
                held.refused = None;
                if held.tokens >= n {
                    return Ok(Some(self.spend(&mut held, n, now)));
                }
                // Never Redis's admission of the lease as this request's:
                // it would admit `n` with fewer tokens spent.
                Ok(None)
            }
            Source::Redis => {
                held.refused = Some((crate::clock::saturating_add(now, d.retry_after), n, d));
                Ok(Some(d))
            }
            // Decided by the degradation policy: no lease.
            _ => Ok(Some(d)),
        }
    }

    /// Spends `n` held tokens, paced by the local core bucket.
    fn spend(&self, held: &mut Lease, n: u32, now: Instant) -> Decision {
        match self.pace.try_acquire_n(n, self.clock.now()) {
            Ok(()) => {
                held.tokens -= n;
                Decision {
                    allowed: true,
                    retry_after: Duration::ZERO,
                    remaining: u64::from(held.tokens),
                    reset: held.expires.saturating_duration_since(now),
                    rule: 0,
                    source: Source::Lease,
                    corrupt: 0,
                }
            }
            Err(e) => Self::paced(held, self.pace_wait(&e), now),
        }
    }

    /// The local pace's refusal of a request that holds fewer than `n`
    /// tokens, before any lease is taken for it (`None`: the pace admits
    /// `n` now). The pace is spent under the lock alone, and nothing
    /// spends while a refill runs, so a pace that refuses `n` now would
    /// refuse it after the lease too: taken anyway, the lease would sit
    /// here unspent, beyond a lease, while the fleet is refused.
    fn unpaced(&self, held: &Lease, n: u32, now: Instant) -> Option<Decision> {
        let at = self.clock.now();
        if self.pace.available(at) >= n {
            return None;
        }
        // A refusal takes nothing. (An admission, not expected after
        // `available`, took the pace's tokens for nothing: the request is
        // refused all the same, which only ever admits less.)
        let wait = match self.pace.try_acquire_n(n, at) {
            Err(e) => self.pace_wait(&e),
            Ok(()) => self.pace.quota().replenish_interval().into(),
        };
        Some(Self::paced(held, wait, now))
    }

    /// The wait the local pace names.
    fn pace_wait(&self, e: &fusebox::bucket::AcquireError) -> Duration {
        match e {
            fusebox::bucket::AcquireError::RateLimited(l) => l.retry_after.into(),
            _ => self.ttl,
        }
    }

    /// A refusal by the local pace.
    fn paced(held: &Lease, retry_after: Duration, now: Instant) -> Decision {
        Decision {
            allowed: false,
            retry_after,
            remaining: u64::from(held.tokens),
            reset: held.expires.saturating_duration_since(now),
            rule: 0,
            source: Source::Lease,
            corrupt: 0,
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Lease> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
