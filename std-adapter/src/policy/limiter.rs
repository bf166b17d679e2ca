//! [`Limiter`]: wait until the core's token bucket (or, with the feature
//! `redis`, a limit shared through Redis) admits, sleeping exactly the
//! wait it names; the waiting loop [`KeyedLimiter`](super::KeyedLimiter) shares.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use fusebox::bucket::{AcquireError, TokenBucket};
use fusebox::{Clock, Instant};
use tokio::sync::Mutex as Gate;

use super::error::LimitError;
use crate::events::RejectionReporter;
use crate::TokioClock;

/// Waits for a core [`TokenBucket`]'s tokens, or for a limit shared by a
/// fleet through Redis.
///
/// Every decision is the core's: a waiter asks the bucket, and when it is
/// refused sleeps exactly the `retry_after` the refusal names (on tokio's
/// clock; tokio's timer rounds a sleep *up* to its 1 ms resolution, never
/// down), then asks again. On a core bucket it sleeps at most a second
/// at a time, asking again in between: a limit changed while it waits
/// ([`TokenBucket::set_quota`], `reset`, `restore`, or a keyed limiter's
/// `set_quota`) applies to it within a second, and a limit unchanged
/// admits it at the same instant as one long sleep would.
///
/// # Backends
///
/// [`Limiter::new`] and [`Limiter::with_clock`] wait on a core bucket in
/// this process. With the feature `redis`, `Limiter::shared` waits on a
/// `backend::RedisLimiter` instead (one limit for every process that uses
/// the same Redis, prefix and name), and `Limiter::connect` picks either
/// from an optional Redis configuration. The waiting API is the same:
/// [`until_ready`](Self::until_ready), [`until_n_ready`](Self::until_n_ready),
/// [`until_n_ready_by`](Self::until_n_ready_by),
/// [`reporting_to`](Self::reporting_to); so is everything built on it
/// ([`Policy`](super::Policy)). On Redis, each decision is one round trip
/// (bounded by the command timeout), a refusal's wait is the one the GCRA
/// script names, and a Redis fault is met by the `RedisLimiter`'s
/// `Degrade` policy: a wait never ends later than its deadline plus one
/// command timeout.
///
/// # Order
///
/// Waiters pass through a FIFO gate (a [`tokio::sync::Mutex`], which is
/// fair) held while they wait: the first to arrive is the first served,
/// each waiter then waits only for the tokens of those before it, and a
/// large request cannot be starved by a stream of small ones (it holds up
/// the queue behind it instead: that is the price of fairness). Callers
/// that use the core bucket directly, without waiting, bypass the gate.
///
/// On Redis the gate orders this process's waiters only: while none of
/// them waits, a caller asks Redis at once (concurrent callers do not
/// queue behind each other's round trips); a refused caller joins the
/// queue, and callers arriving while it is not empty queue behind it.
/// Other processes are not in the queue.
///
/// # Cancellation
///
/// The futures of [`until_ready`](Self::until_ready) and
/// [`until_n_ready`](Self::until_n_ready) take tokens only in the poll in
/// which they complete: dropping one while it waits (for the gate or for
/// tokens) takes no token and frees the gate for the next waiter. On
/// Redis, dropping one while a decision is in flight may take the tokens
/// in Redis without admitting the caller (the script runs to its end on
/// the server): it can only admit less, never more.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use fusebox::bucket::{Quota, TokenBucket};
/// use fusebox_std::policy::Limiter;
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// let limiter = Limiter::new(Arc::new(TokenBucket::new(Quota::per_second(10)?)));
/// let start = tokio::time::Instant::now();
/// for _ in 0..11 {
///     limiter.until_ready().await?;
/// }
/// // The burst of 10 at once, the 11th one token interval (100 ms) later.
/// assert_eq!(start.elapsed(), std::time::Duration::from_millis(100));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub struct Limiter {
    pub(super) source: Source,
    pub(super) clock: TokioClock,
    pub(super) gate: Gate<()>,
    pub(super) reporter: Option<RejectionReporter>,
}

/// Where a [`Limiter`]'s tokens come from.
pub(super) enum Source {
    /// A core bucket in this process.
    Local(Arc<TokenBucket>),
    /// A limit shared through Redis.
    #[cfg(feature = "redis")]
    Shared(super::shared::Shared),
}

impl fmt::Debug for Limiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Limiter");
        match &self.source {
            Source::Local(bucket) => d.field("bucket", bucket),
            #[cfg(feature = "redis")]
            Source::Shared(shared) => d.field("shared", shared.limiter()),
        };
        d.field("clock", &self.clock).finish_non_exhaustive()
    }
}

impl Limiter {
    /// A limiter on `bucket`, reading the clock of the adapters already
    /// over it (another `Limiter::new`, a tower layer, the registry that
    /// made it), or a new [`TokioClock`] if there is none. Two clocks made
    /// at different times read the bucket's admissions at different times
    /// (built two minutes apart, two minutes for the later one's first
    /// token): with [`with_clock`](Self::with_clock), give every adapter of
    /// the bucket the same one.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// # use std::sync::Arc;
    /// # use fusebox::bucket::{Quota, TokenBucket};
    /// use fusebox_std::policy::Limiter;
    /// let limiter = Limiter::new(Arc::new(TokenBucket::new(Quota::per_minute(60)?)));
    /// limiter.until_ready().await?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn new(bucket: Arc<TokenBucket>) -> Self {
        let clock = crate::core_clock::of(&bucket, TokioClock::new());
        Self::read_with(bucket, clock)
    }

    /// A limiter on `bucket` read through `clock` (share one clock among
    /// every adapter of one bucket).
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use fusebox::bucket::{Quota, TokenBucket};
    /// use fusebox_std::{policy::Limiter, TokioClock};
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let clock = TokioClock::new();
    /// let limiter = Limiter::with_clock(Arc::new(TokenBucket::new(Quota::per_second(5)?)), clock);
    /// assert_eq!(limiter.clock(), clock);
    /// # Ok::<(), fusebox::bucket::QuotaError>(())
    /// # }).unwrap();
    /// ```
    pub fn with_clock(bucket: Arc<TokenBucket>, clock: TokioClock) -> Self {
        crate::core_clock::keep_for(&bucket, clock);
        Self::read_with(bucket, clock)
    }

    /// The limiter over `bucket`, reading `clock`.
    fn read_with(bucket: Arc<TokenBucket>, clock: TokioClock) -> Self {
        Self {
            source: Source::Local(bucket),
            clock,
            gate: Gate::new(()),
            reporter: None,
        }
    }

    /// Reports every refusal (a wait past the deadline, a request larger
    /// than the burst) to `reporter` as an
    /// [`Event::Rejected`](crate::events::Event::Rejected).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fusebox::bucket::{Quota, TokenBucket};
    /// use fusebox_std::events::{Component, Events, RejectionReporter};
    /// use fusebox_std::{policy::Limiter, TokioClock};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// let (events, clock) = (Events::new(8), TokioClock::new());
    /// let limiter = Limiter::with_clock(Arc::new(TokenBucket::new(Quota::per_second(1)?)), clock)
    ///     .reporting_to(RejectionReporter::new("api", Component::Limiter, &events, clock));
    /// assert!(limiter.until_n_ready(2).await.is_err()); // more than the burst
    /// assert_eq!(events.published(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    #[must_use]
    pub fn reporting_to(mut self, reporter: RejectionReporter) -> Self {
        self.reporter = Some(reporter);
        self
    }

    /// The core bucket; `None` for a limiter shared through Redis
    /// (`Limiter::redis_limiter` returns that one).
    ///
    /// Before the Redis backend this returned `&Arc<TokenBucket>`: a
    /// limiter built with [`new`](Self::new) or [`with_clock`](Self::with_clock)
    /// always has `Some`.
    ///
    /// ```
    /// use fusebox::Clock;
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// # use std::sync::Arc;
    /// # use fusebox::bucket::{Quota, TokenBucket};
    /// use fusebox_std::policy::Limiter;
    /// let limiter = Limiter::new(Arc::new(TokenBucket::new(Quota::per_second(5)?)));
    /// limiter.until_n_ready(2).await?;
    /// let bucket = limiter.bucket().expect("a limiter in process");
    /// assert_eq!(bucket.available(limiter.clock().now()), 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn bucket(&self) -> Option<&Arc<TokenBucket>> {
        match &self.source {
            Source::Local(bucket) => Some(bucket),
            #[cfg(feature = "redis")]
            Source::Shared(_) => None,
        }
    }

    /// The clock.
    ///
    /// ```
    /// use fusebox::{Clock, Instant};
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// # use std::sync::Arc;
    /// # use fusebox::bucket::{Quota, TokenBucket};
    /// use fusebox_std::policy::Limiter;
    /// let limiter = Limiter::new(Arc::new(TokenBucket::new(Quota::per_second(5)?)));
    /// assert_eq!(limiter.clock().now(), Instant::ZERO);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn clock(&self) -> TokioClock {
        self.clock
    }

    /// Waits until one token is taken.
    ///
    /// # Errors
    ///
    /// None in practice on a core bucket (its burst is at least one); the
    /// type is [`until_n_ready`](Self::until_n_ready)'s.
    ///
    /// ```
    /// use std::time::Duration;
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// # use std::sync::Arc;
    /// # use fusebox::bucket::{Quota, TokenBucket};
    /// use fusebox_std::policy::Limiter;
    /// // One token every 250 ms, burst 1.
    /// let limiter = Limiter::new(Arc::new(TokenBucket::new(Quota::per_second(4)?.with_burst(1)?)));
    /// let start = tokio::time::Instant::now();
    /// limiter.until_ready().await?;
    /// limiter.until_ready().await?;
    /// assert_eq!(start.elapsed(), Duration::from_millis(250));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn until_ready(&self) -> Result<(), LimitError> {
        self.until_n_ready(1).await
    }

    /// Waits until `n` tokens are taken at once; `n = 0` returns at once,
    /// without a turn behind earlier waiters.
    ///
    /// # Errors
    ///
    /// [`LimitError::InsufficientCapacity`] at once, without waiting, if `n`
    /// exceeds the burst (the smallest burst of a shared limit's rules);
    /// [`LimitError::TableFull`] from a shared limit's `Local` degradation
    /// policy with no room for the key.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use fusebox::bucket::{Quota, TokenBucket};
    /// use fusebox_std::policy::{LimitError, Limiter};
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let limiter = Limiter::new(Arc::new(TokenBucket::new(Quota::per_second(4)?)));
    /// limiter.until_n_ready(4).await?;
    /// assert_eq!(
    ///     limiter.until_n_ready(5).await,
    ///     Err(LimitError::InsufficientCapacity { requested: 5, burst: 4 })
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn until_n_ready(&self, n: u32) -> Result<(), LimitError> {
        self.until_n_ready_by(n, None).await
    }

    /// [`until_n_ready`](Self::until_n_ready) that gives up at once when
    /// the bucket's wait would end after `deadline` (or the gate, behind
    /// earlier waiters, is not reached by then): it never sleeps past the
    /// deadline, in the queue or for tokens (a wait ending within 1 ms of
    /// it is given up: tokio rounds every sleep up to its 1 ms tick). On
    /// Redis the
    /// last decision may end up to one command timeout after it.
    ///
    /// # Errors
    ///
    /// [`LimitError::DeadlineExceeded`] with the bucket's wait, or as
    /// [`until_n_ready`](Self::until_n_ready).
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use fusebox::bucket::{Quota, TokenBucket};
    /// use fusebox_std::policy::{LimitError, Limiter};
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// let limiter = Limiter::new(Arc::new(TokenBucket::new(Quota::per_second(1)?)));
    /// limiter.until_ready().await?;
    /// let soon = tokio::time::Instant::now() + Duration::from_millis(500);
    /// assert_eq!(
    ///     limiter.until_n_ready_by(1, Some(soon)).await,
    ///     Err(LimitError::DeadlineExceeded { retry_after: Duration::from_secs(1) })
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn until_n_ready_by(
        &self,
        n: u32,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<(), LimitError> {
        if n == 0 {
            // Nothing to take: no turn in the queue behind waiters for
            // tokens (as the core's `try_acquire_n(0)`, always granted).
            return Ok(());
        }
        let result = match &self.source {
            Source::Local(bucket) => self.wait_n(bucket, n, deadline).await,
            #[cfg(feature = "redis")]
            Source::Shared(shared) => shared.wait(&self.gate, n, deadline).await,
        };
        if let (Err(_), Some(reporter)) = (&result, &self.reporter) {
            reporter.report();
        }
        result
    }

    /// The wait on a core bucket.
    async fn wait_n(
        &self,
        bucket: &TokenBucket,
        n: u32,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<(), LimitError> {
        let burst = bucket.quota().burst();
        if n > burst {
            return Err(LimitError::InsufficientCapacity {
                requested: n,
                burst,
            });
        }
        let _turn = enter(&self.gate, deadline).await?;
        wait_for(self.clock, deadline, |now| {
            bucket.try_acquire_n(n, now).map_err(|e| match e {
                AcquireError::RateLimited(limited) => Refused::Wait(limited.retry_after),
                AcquireError::InsufficientCapacity(e) => {
                    Refused::Never(LimitError::InsufficientCapacity {
                        requested: e.requested,
                        burst: e.burst,
                    })
                }
                _ => Refused::Never(LimitError::InsufficientCapacity {
                    requested: n,
                    burst,
                }),
            })
        })
        .await
    }
}

/// What one core decision said.
pub(super) enum Refused {
    Wait(fusebox::Duration),
    Never(LimitError),
}

/// Takes the gate, giving up by `deadline`: the give-up timer is set one
/// tick ([`TIMER_TICK`](crate::clock::TIMER_TICK)) before it, since tokio
/// ends a sleep on the first tick at or after its instant (found by a
/// hostile review: a waiter queued with a deadline 500.5 ms away gave up
/// at 501 ms). A free gate is taken even at or past the deadline, and
/// without a timer (no waiter is queued then: the gate is fair, so none is
/// passed).
pub(super) async fn enter(
    gate: &Gate<()>,
    deadline: Option<tokio::time::Instant>,
) -> Result<tokio::sync::MutexGuard<'_, ()>, LimitError> {
    if let Ok(turn) = gate.try_lock() {
        return Ok(turn);
    }
    match deadline {
        None => Ok(gate.lock().await),
        Some(at) => {
            let give_up = at.checked_sub(crate::clock::TIMER_TICK).unwrap_or(at);
            tokio::time::timeout_at(give_up, gate.lock())
                .await
                .map_err(|_| LimitError::DeadlineExceeded {
                    retry_after: Duration::ZERO,
                })
        }
    }
}

/// The longest a waiter sleeps before asking the bucket again: a limit
/// changed while it waits (`set_quota`, `reset`, `restore` on the core)
/// applies to it within this time, not when the old limit's wait ends.
const REREAD: Duration = Duration::from_secs(1);

/// Asks `decide` (one core call, with the clock read right before it) until
/// it admits, sleeping the wait each refusal names, at most [`REREAD`] at
/// a time (a refusal changes nothing in the core, and with the limit
/// unchanged the last reading names the same instant: found by a hostile
/// review, a waiter asleep for a limit of one a minute kept the gate for
/// the minute after the limit was raised to 1 000 a second).
pub(super) async fn wait_for(
    clock: TokioClock,
    deadline: Option<tokio::time::Instant>,
    mut decide: impl FnMut(Instant) -> Result<(), Refused>,
) -> Result<(), LimitError> {
    loop {
        let now = clock.now();
        match decide(now) {
            Ok(()) => return Ok(()),
            Err(Refused::Never(e)) => return Err(e),
            Err(Refused::Wait(wait)) => {
                let wake = clock.to_tokio(now + wait);
                // Counting tokio's rounding of the sleep up to its tick.
                if deadline.is_some_and(|d| !crate::clock::ends_before(wake, d)) {
                    return Err(LimitError::DeadlineExceeded {
                        retry_after: wait.into(),
                    });
                }
                let reread = clock.to_tokio(now).checked_add(REREAD);
                tokio::time::sleep_until(reread.map_or(wake, |at| at.min(wake))).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fusebox::bucket::Quota;

    #[tokio::test(start_paused = true)]
    async fn a_bucket_at_the_clock_origin_starts_full() {
        let bucket = Arc::new(TokenBucket::new(Quota::per_second(2).unwrap()));
        let limiter = Limiter::new(Arc::clone(&bucket));
        let start = tokio::time::Instant::now();
        limiter.until_n_ready(2).await.unwrap();
        assert_eq!(tokio::time::Instant::now(), start);
    }

    /// A waiter with a deadline that finds the gate free and a token ready
    /// takes it without building a timer, as one without a deadline does:
    /// on a runtime without timers it is admitted (found by a hostile
    /// review: every such wait built the gate's give-up timer, which
    /// panics there, so a `Policy` with a retry deadline and a limiter
    /// panicked on every call, and built a timer per attempt elsewhere).
    #[test]
    fn a_free_gate_is_taken_without_a_timer() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let deadline = Some(tokio::time::Instant::now() + Duration::from_secs(1));
            let limiter = Limiter::new(Arc::new(TokenBucket::new(Quota::per_second(2).unwrap())));
            assert_eq!(limiter.until_n_ready_by(2, deadline).await, Ok(()));
            let core: fusebox::KeyedLimiter<u8, 4> = fusebox::KeyedLimiter::new(
                Quota::per_second(2).unwrap(),
                fusebox::bucket::FullPolicy::Reject,
            )
            .unwrap();
            let keyed = super::super::KeyedLimiter::new(Arc::new(core));
            assert_eq!(keyed.until_n_ready_by(&1, 2, deadline).await, Ok(()));
            assert_eq!(keyed.waiting_keys(), 0);
        });
    }

    /// A token wait never ends past its deadline, counting tokio's rounding
    /// of the sleep up to its 1 ms tick (found by a hostile review: a
    /// 333.33 ms wait ended at 334 ms against a 333.5 ms deadline, `Ok`).
    #[tokio::test(start_paused = true)]
    async fn a_token_wait_never_ends_past_its_deadline() {
        use std::sync::Arc;
        use std::time::Duration as StdDuration;
        let quota = Quota::per_second(3).unwrap().with_burst(1).unwrap();
        for (deadline_us, admitted) in [(333_500, false), (334_400, true), (500_000, true)] {
            let limiter = super::Limiter::new(Arc::new(fusebox::TokenBucket::new(quota)));
            let start = tokio::time::Instant::now();
            limiter.until_ready().await.unwrap();
            let deadline = start + StdDuration::from_micros(deadline_us);
            let got = limiter.until_n_ready_by(1, Some(deadline)).await;
            let ended = tokio::time::Instant::now();
            assert!(ended <= deadline, "{got:?} at {:?}", ended - start);
            assert_eq!(got.is_ok(), admitted, "{deadline_us} µs: {got:?}");
        }
    }

    /// A waiter queued behind another gives up no later than its deadline,
    /// as a token wait does: tokio's timer ends a wait on the first 1 ms
    /// tick at or after its instant. Found by a hostile review: queued
    /// with a deadline 500.5 ms away behind a waiter sleeping for a token,
    /// a caller of either limiter returned `DeadlineExceeded` at 501 ms.
    #[tokio::test(start_paused = true)]
    async fn a_queued_waiter_never_ends_past_its_deadline() {
        use fusebox::bucket::FullPolicy;
        use std::time::Duration as StdDuration;
        let quota = Quota::per_second(1).unwrap().with_burst(1).unwrap();
        for deadline_us in [500_500, 500_000, 999_999, 1_500] {
            let limiter = Arc::new(Limiter::new(Arc::new(TokenBucket::new(quota))));
            limiter.until_ready().await.unwrap();
            let ahead = Arc::clone(&limiter);
            let holder = tokio::spawn(async move { ahead.until_ready().await });
            tokio::task::yield_now().await; // it holds the gate, asleep
            let start = tokio::time::Instant::now();
            let deadline = start + StdDuration::from_micros(deadline_us);
            let got = limiter.until_n_ready_by(1, Some(deadline)).await;
            let ended = tokio::time::Instant::now();
            assert!(got.is_err(), "{deadline_us} µs: {got:?}");
            assert!(
                ended <= deadline,
                "{deadline_us} µs: ended at {:?}",
                ended - start
            );
            holder.await.unwrap().unwrap();

            let core: fusebox::KeyedLimiter<u8, 4> =
                fusebox::KeyedLimiter::new(quota, FullPolicy::Reject).unwrap();
            let keyed = Arc::new(super::super::KeyedLimiter::new(Arc::new(core)));
            keyed.until_ready(&1).await.unwrap();
            let ahead = Arc::clone(&keyed);
            let holder = tokio::spawn(async move { ahead.until_ready(&1).await });
            tokio::task::yield_now().await;
            let start = tokio::time::Instant::now();
            let deadline = start + StdDuration::from_micros(deadline_us);
            let got = keyed.until_n_ready_by(&1, 1, Some(deadline)).await;
            let ended = tokio::time::Instant::now();
            assert!(got.is_err(), "keyed, {deadline_us} µs: {got:?}");
            assert!(
                ended <= deadline,
                "keyed, {deadline_us} µs: ended at {:?}",
                ended - start
            );
            holder.await.unwrap().unwrap();
        }
    }
}
