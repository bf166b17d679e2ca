//! [`KeyedLimiter`]: waits for a core keyed limiter's per-key tokens, one
//! FIFO queue per waiting key.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::{Arc, Mutex, PoisonError};

use fusebox::bucket::KeyedError;
use fusebox::hash::FixedState;
use tokio::sync::Mutex as Gate;

use super::limiter::{enter, wait_for, Refused};
use super::LimitError;
use crate::events::RejectionReporter;
use crate::TokioClock;

/// Waits for a core [`fusebox::KeyedLimiter`]'s per-key tokens.
///
/// As [`Limiter`](super::Limiter), with one FIFO gate per key waiting (created on demand,
/// removed when its last waiter leaves): waiters for one key are served in
/// arrival order, and a waiting key never holds up another. A waiter
/// looks at its key every second for a changed limit, as a `Limiter`
/// does, but asks the core again before the instant its last refusal
/// named only if a quota changed or the key has the tokens (read without
/// counting): the core's [`limited`](fusebox::bucket::KeyedMetrics::limited)
/// counts a wait as one refusal, however long it lasts. Except for a key
/// charged to the overflow bucket (under
/// [`FullPolicy::Overflow`](fusebox::bucket::FullPolicy::Overflow), the
/// table full): a key without a slot reads the tokens it would start
/// with (usually a full bucket), so it is asked again every second,
/// and takes a slot of its own as soon as one frees (a key gone idle),
/// but each ask it is refused counts in `limited` (a one-minute wait on
/// the overflow bucket: about 60).
///
/// # A full table
///
/// A new key that finds no slot (under
/// [`FullPolicy::Reject`](fusebox::bucket::FullPolicy::Reject), every slot
/// of its window held by a key not idle) waits for one: the core evicts a
/// key once its bucket is full again, so a key that stops sending frees
/// its slot within its tier's burst span (`burst ×`
/// [`replenish_interval`](fusebox::bucket::Quota::replenish_interval)).
/// The waiter asks again after one token's interval (the shortest
/// tier's, at least 1 ms: a key one token short is idle by then), then at
/// doubling intervals up to a sixteenth of the longest tier's span (a
/// slot freed between two asks may be taken by another new key first),
/// and fails with
/// [`LimitError::TableFull`] once that span has passed since it first
/// found the table full (extended by a quota change it sees, to at most
/// twice the longest span seen since then), or when no ask is left before
/// its deadline (an ask that would come after it is made at the last
/// instant before it instead): the slots were then held by keys still
/// sending. Each refused ask counts in the core's `table_full`
/// and `limited` (at most about 18 + log2(burst) per wait with one tier,
/// 18 + log2(longest span ÷ shortest token interval) with several, as
/// many again per quota change, one more for a deadline). A slot
/// held longer by the core (after a change that lowered a burst, or for a
/// clock behind the key's last admission) may outlast the wait: then
/// `TableFull` too.
///
/// A key idle for close to a multiple of the core's 48-bit time wrap
/// (2^48 of the quota's scaled time units: 71.6 min at the largest scale,
/// 78 hours at scale 1 000, 8.9 years at scale 1) may read as drained: it
/// then waits up to the core's backward tolerance (1/64 of the wrap)
/// beyond its burst span. It is admitted less, never more.
///
/// # Cancellation
///
/// As [`Limiter`](super::Limiter): a dropped waiter takes no token and leaves its key's
/// queue (a waiter for a slot holds none).
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use fusebox::bucket::{FullPolicy, Quota};
/// use fusebox_std::policy::KeyedLimiter;
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// let core: fusebox::KeyedLimiter<u32, 64> =
///     fusebox::KeyedLimiter::new(Quota::per_second(1)?, FullPolicy::Reject)?;
/// let limiter = KeyedLimiter::new(Arc::new(core));
/// let start = tokio::time::Instant::now();
/// limiter.until_ready(&1).await?;
/// limiter.until_ready(&2).await?; // another key: no wait
/// limiter.until_ready(&1).await?; // one second later
/// assert_eq!(start.elapsed(), std::time::Duration::from_secs(1));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub struct KeyedLimiter<K, const N: usize, const TIERS: usize = 1, S = FixedState> {
    limiter: Arc<fusebox::KeyedLimiter<K, N, TIERS, S>>,
    clock: TokioClock,
    gates: Mutex<HashMap<K, Arc<Gate<()>>>>,
    reporter: Option<RejectionReporter>,
}

impl<K, const N: usize, const TIERS: usize, S> fmt::Debug for KeyedLimiter<K, N, TIERS, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedLimiter")
            .field("limiter", &self.limiter)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl<K, const N: usize, const TIERS: usize, S> KeyedLimiter<K, N, TIERS, S>
where
    K: Eq + Hash + Clone,
    S: BuildHasher,
{
    /// A waiter on `limiter`, reading the clock of the adapters already
    /// over it (another `KeyedLimiter::new`, a keyed tower layer, the
    /// registry that made it), or a new [`TokioClock`] if there is none.
    /// Two clocks made at different times read its admissions at different
    /// times: a key then waits that gap out, or, once the gap passes the
    /// core's backward tolerance (2^42 scaled units: 67 s at the largest
    /// scale, see [`fusebox::KeyedLimiter`]), reads as full and admits more
    /// than its quota (built two minutes apart at 65 537 a second, burst 4:
    /// 16 tokens at one instant). With [`with_clock`](Self::with_clock),
    /// give every adapter of it the same one.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// # use std::sync::Arc;
    /// # use fusebox::bucket::{FullPolicy, Quota};
    /// use fusebox_std::policy::KeyedLimiter;
    ///
    /// let core: fusebox::KeyedLimiter<u64, 256> = fusebox::KeyedLimiter::new(Quota::per_second(2)?, FullPolicy::Reject)?;
    /// let limiter = KeyedLimiter::new(Arc::new(core));
    /// limiter.until_ready(&42).await?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn new(limiter: Arc<fusebox::KeyedLimiter<K, N, TIERS, S>>) -> Self
    where
        K: Send + Sync + 'static,
        S: Send + Sync + 'static,
    {
        let clock = crate::core_clock::of(&limiter, TokioClock::new());
        Self::read_with(limiter, clock)
    }

    /// The waiter over `limiter`, reading `clock`.
    fn read_with(limiter: Arc<fusebox::KeyedLimiter<K, N, TIERS, S>>, clock: TokioClock) -> Self {
        Self {
            limiter,
            clock,
            gates: Mutex::new(HashMap::new()),
            reporter: None,
        }
    }

    /// The clock.
    ///
    /// ```
    /// use fusebox::{Clock, Instant};
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// # use std::sync::Arc;
    /// # use fusebox::bucket::{FullPolicy, Quota};
    /// use fusebox_std::policy::KeyedLimiter;
    ///
    /// let core: fusebox::KeyedLimiter<u64, 256> = fusebox::KeyedLimiter::new(Quota::per_second(2)?, FullPolicy::Reject)?;
    /// let limiter = KeyedLimiter::new(Arc::new(core));
    /// assert_eq!(limiter.clock().now(), Instant::ZERO);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn clock(&self) -> TokioClock {
        self.clock
    }

    /// A waiter on `limiter` read through `clock`.
    ///
    /// ```
    /// use fusebox_std::TokioClock;
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// # use std::sync::Arc;
    /// # use fusebox::bucket::{FullPolicy, Quota};
    /// use fusebox_std::policy::KeyedLimiter;
    ///
    /// let core: fusebox::KeyedLimiter<u64, 256> = fusebox::KeyedLimiter::new(Quota::per_second(2)?, FullPolicy::Reject)?;
    /// let limiter = KeyedLimiter::with_clock(Arc::new(core), TokioClock::new());
    /// limiter.until_n_ready(&42, 2).await?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn with_clock(
        limiter: Arc<fusebox::KeyedLimiter<K, N, TIERS, S>>,
        clock: TokioClock,
    ) -> Self
    where
        K: Send + Sync + 'static,
        S: Send + Sync + 'static,
    {
        crate::core_clock::keep_for(&limiter, clock);
        Self::read_with(limiter, clock)
    }

    /// Reports every refusal (a wait past the deadline, a request no tier
    /// can grant, a full table) to `reporter` as an
    /// [`Event::Rejected`](crate::events::Event::Rejected). The key is not
    /// reported: it may be personal data.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fusebox::bucket::{FullPolicy, Quota};
    /// use fusebox_std::events::{Component, Events, RejectionReporter};
    /// use fusebox_std::{policy::KeyedLimiter, TokioClock};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// let (events, clock) = (Events::new(8), TokioClock::new());
    /// let core: fusebox::KeyedLimiter<u64, 64> = fusebox::KeyedLimiter::new(Quota::per_second(1)?, FullPolicy::Reject)?;
    /// let limiter = KeyedLimiter::with_clock(Arc::new(core), clock)
    ///     .reporting_to(RejectionReporter::new("per_user", Component::KeyedLimiter, &events, clock));
    /// assert!(limiter.until_n_ready(&7, 2).await.is_err()); // more than the burst
    /// assert_eq!(events.published(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    #[must_use]
    pub fn reporting_to(mut self, reporter: RejectionReporter) -> Self {
        self.reporter = Some(reporter);
        self
    }

    /// The core limiter.
    ///
    /// ```
    /// use fusebox::Instant;
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// # use std::sync::Arc;
    /// # use fusebox::bucket::{FullPolicy, Quota};
    /// use fusebox_std::policy::KeyedLimiter;
    ///
    /// let core: fusebox::KeyedLimiter<u64, 256> = fusebox::KeyedLimiter::new(Quota::per_second(2)?, FullPolicy::Reject)?;
    /// let limiter = KeyedLimiter::new(Arc::new(core));
    /// limiter.until_ready(&1).await?;
    /// assert_eq!(limiter.core().metrics().keys, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn core(&self) -> &Arc<fusebox::KeyedLimiter<K, N, TIERS, S>> {
        &self.limiter
    }

    /// Keys with waiters right now.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// # use std::sync::Arc;
    /// # use fusebox::bucket::{FullPolicy, Quota};
    /// use fusebox_std::policy::KeyedLimiter;
    ///
    /// let core: fusebox::KeyedLimiter<u64, 256> = fusebox::KeyedLimiter::new(Quota::per_second(2)?, FullPolicy::Reject)?;
    /// let limiter = Arc::new(KeyedLimiter::new(Arc::new(core)));
    /// limiter.until_n_ready(&1, 2).await?;
    /// let waiter = tokio::spawn({
    ///     let limiter = Arc::clone(&limiter);
    ///     async move { limiter.until_ready(&1).await }
    /// });
    /// tokio::task::yield_now().await;
    /// assert_eq!(limiter.waiting_keys(), 1);
    /// waiter.await??;
    /// assert_eq!(limiter.waiting_keys(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn waiting_keys(&self) -> usize {
        self.gates
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Waits until one token is taken for `key`.
    ///
    /// # Errors
    ///
    /// As [`until_n_ready`](Self::until_n_ready).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// # use std::sync::Arc;
    /// # use fusebox::bucket::{FullPolicy, Quota};
    /// use fusebox_std::policy::KeyedLimiter;
    ///
    /// let core: fusebox::KeyedLimiter<u64, 256> = fusebox::KeyedLimiter::new(Quota::per_second(2)?, FullPolicy::Reject)?;
    /// let limiter = KeyedLimiter::new(Arc::new(core));
    /// let start = tokio::time::Instant::now();
    /// for _ in 0..3 {
    ///     limiter.until_ready(&7).await?;
    /// }
    /// // Burst 2, then one token per 500 ms.
    /// assert_eq!(start.elapsed(), std::time::Duration::from_millis(500));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn until_ready(&self, key: &K) -> Result<(), LimitError> {
        self.until_n_ready(key, 1).await
    }

    /// Waits until `n` tokens are taken at once for `key`; `n = 0` returns
    /// at once, without a turn behind the key's waiters or inserting it.
    ///
    /// # Errors
    ///
    /// [`LimitError::InsufficientCapacity`] if `n` exceeds the key's burst
    /// (at once if it exceeds every tier's burst, else when the key's turn
    /// comes; a key charged to the core's overflow bucket, under
    /// [`FullPolicy::Overflow`](fusebox::bucket::FullPolicy::Overflow) with
    /// a full table, is held to that bucket's burst, which the error then
    /// names), [`LimitError::TableFull`] when no slot frees for a new key
    /// within the wait the [type's docs](Self#a-full-table) describe, or
    /// [`LimitError::TierOutOfRange`] as the core refuses it.
    ///
    /// ```
    /// use fusebox_std::policy::LimitError;
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// # use std::sync::Arc;
    /// # use fusebox::bucket::{FullPolicy, Quota};
    /// use fusebox_std::policy::KeyedLimiter;
    ///
    /// let core: fusebox::KeyedLimiter<u64, 256> = fusebox::KeyedLimiter::new(Quota::per_second(2)?, FullPolicy::Reject)?;
    /// let limiter = KeyedLimiter::new(Arc::new(core));
    /// assert_eq!(
    ///     limiter.until_n_ready(&1, 3).await,
    ///     Err(LimitError::InsufficientCapacity { requested: 3, burst: 2 })
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn until_n_ready(&self, key: &K, n: u32) -> Result<(), LimitError> {
        self.until_n_ready_by(key, n, None).await
    }

    /// [`until_n_ready`](Self::until_n_ready), giving up at once when the
    /// wait would end after `deadline`: it never sleeps past the deadline
    /// (a wait ending within 1 ms of it is given up: tokio rounds every
    /// sleep up to its 1 ms tick), as [`Limiter`](super::Limiter)'s.
    ///
    /// # Errors
    ///
    /// As [`until_n_ready`](Self::until_n_ready), and
    /// [`LimitError::DeadlineExceeded`]; a wait for a slot (the table full)
    /// asks last just before the deadline (its last sleep ending before
    /// it), and fails with [`LimitError::TableFull`] then (a deadline
    /// already past, or less than a tick away: at once).
    ///
    /// ```
    /// use std::time::Duration;
    /// use fusebox_std::policy::LimitError;
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// # use std::sync::Arc;
    /// # use fusebox::bucket::{FullPolicy, Quota};
    /// use fusebox_std::policy::KeyedLimiter;
    ///
    /// let core: fusebox::KeyedLimiter<u64, 256> = fusebox::KeyedLimiter::new(Quota::per_second(2)?, FullPolicy::Reject)?;
    /// let limiter = KeyedLimiter::new(Arc::new(core));
    /// limiter.until_n_ready(&1, 2).await?;
    /// let soon = tokio::time::Instant::now() + Duration::from_millis(100);
    /// assert_eq!(
    ///     limiter.until_n_ready_by(&1, 1, Some(soon)).await,
    ///     Err(LimitError::DeadlineExceeded { retry_after: Duration::from_millis(500) })
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn until_n_ready_by(
        &self,
        key: &K,
        n: u32,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<(), LimitError> {
        if n == 0 {
            // Nothing to take: no turn behind the key's waiters, and the
            // key is not inserted (as the core's `try_acquire_n(key, 0)`).
            return Ok(());
        }
        let result = self.wait_n(key, n, deadline).await;
        if let (Err(_), Some(reporter)) = (&result, &self.reporter) {
            reporter.report();
        }
        result
    }

    async fn wait_n(
        &self,
        key: &K,
        n: u32,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<(), LimitError> {
        let largest = (0..TIERS)
            .filter_map(|tier| self.limiter.quota(tier))
            .map(|quota| quota.burst())
            .max()
            .unwrap_or(0);
        if n > largest {
            return Err(LimitError::InsufficientCapacity {
                requested: n,
                burst: largest,
            });
        }
        let queue = Queue::join(self, key);
        let _turn = enter(queue.gate(), deadline).await?;
        // The wake the last refusal named, and the quotas it was decided
        // under. `wait_for` asks again every second, to see a changed
        // limit; but the core counts every refusal in `limited` (the
        // Prometheus `fusebox_keyed_limiter_limited_total`), so asking
        // each second counted one waiter admitted after a minute as 60
        // refused requests (found by a hostile review). Before that wake,
        // with the quotas unchanged and the key short of `n` tokens (read
        // without counting), the core would refuse again: not asked. A key
        // charged to the overflow bucket reads as holding its tokens (it has
        // no slot): asked every second, so that it takes a slot as soon as
        // one frees (see the type's docs: each ask is a refusal counted).
        let mut last: Option<(fusebox::Instant, Quotas<TIERS>)> = None;
        // A wait for a slot (the table full, see `SlotWait`).
        let mut slot: Option<SlotWait<TIERS>> = None;
        wait_for(self.clock, deadline, |now| {
            let quotas = self.quotas();
            if let Some((wake, seen)) = last
                && now < wake
                && seen == quotas
                && self.limiter.available(key, now) < n
            {
                return Err(Refused::Wait(wake - now));
            }
            if let Some(wait) = &slot
                && now < wait.next
                && wait.quotas == quotas
            {
                // Before the next ask: the core is not asked (each
                // refusal counts in `table_full`).
                return Err(Refused::Wait(wait.next - now));
            }
            self.limiter
                .try_acquire_n(key, n, now)
                .map_err(|e| match e {
                    KeyedError::RateLimited(limited) => {
                        slot = None;
                        last = Some((now + limited.retry_after, quotas));
                        Refused::Wait(limited.retry_after)
                    }
                    KeyedError::TableFull => {
                        let mut wait = SlotWait::after(slot.take(), self.spans(), quotas, now);
                        if let Some(d) = deadline {
                            // An ask scheduled after the deadline is
                            // moved to the last instant before it, not
                            // given up (found by a hostile review: a
                            // waiter with 700 ms left on one token a
                            // second failed at once, its slot freeing
                            // 500 ms later).
                            wait.next = wait.next.min(self.last_ask_before(d));
                        }
                        if now >= wait.by || wait.next <= now {
                            return Refused::Never(LimitError::TableFull);
                        }
                        slot = Some(wait);
                        Refused::Wait(wait.next - now)
                    }
                    KeyedError::InsufficientCapacity(e) => {
                        Refused::Never(LimitError::InsufficientCapacity {
                            requested: e.requested,
                            burst: e.burst,
                        })
                    }
                    KeyedError::TierOutOfRange { tier } => {
                        Refused::Never(LimitError::TierOutOfRange { tier })
                    }
                    _ => Refused::Never(LimitError::TableFull),
                })
        })
        .await
    }
}

/// What a keyed limiter's decisions depend on besides its buckets: each
/// tier's quota version and the overflow quota.
type Quotas<const TIERS: usize> = ([Option<u32>; TIERS], Option<fusebox::bucket::Quota>);

impl<K: Eq + Hash + Clone, const N: usize, const TIERS: usize, S: BuildHasher>
    KeyedLimiter<K, N, TIERS, S>
{
    /// The limiter's [`Quotas`] now.
    fn quotas(&self) -> Quotas<TIERS> {
        (
            std::array::from_fn(|tier| self.limiter.quota_version(tier)),
            self.limiter.overflow_quota(),
        )
    }

    /// The last instant a waiter may ask at and still end before
    /// `deadline`, counting tokio's rounding of a sleep up to its tick
    /// (see [`crate::clock::ends_before`]); [`fusebox::Instant::ZERO`] if
    /// there is none after the clock's origin.
    fn last_ask_before(&self, deadline: tokio::time::Instant) -> fusebox::Instant {
        deadline
            .checked_sub(crate::clock::TIMER_TICK)
            .map_or(fusebox::Instant::ZERO, |last| self.clock.to_core(last))
    }

    /// The longest burst span among the tiers (the time a drained bucket
    /// takes to be full, so its slot idle) and the shortest token interval.
    fn spans(&self) -> (fusebox::Duration, fusebox::Duration) {
        let quotas = (0..TIERS).filter_map(|tier| self.limiter.quota(tier));
        quotas.fold(
            (fusebox::Duration::ZERO, fusebox::Duration::MAX),
            |(span, token), quota| {
                let interval = quota.replenish_interval();
                (
                    span.max(interval.saturating_mul(u64::from(quota.burst()))),
                    token.min(interval),
                )
            },
        )
    }
}

/// A waiter's wait for a slot: its key found the core's table full (under
/// [`FullPolicy::Reject`](fusebox::bucket::FullPolicy::Reject)). The core
/// evicts a key only once idle, its bucket full again: a key one token
/// short frees its slot within one token's interval, and any key that
/// stops sending within its tier's burst span (the time a drained bucket
/// takes to refill). So the waiter asks again after the shortest token
/// interval (at least 1 ms), then at doubling intervals up to a sixteenth
/// of the longest span, and gives up with `TableFull` once that span has
/// passed since it first found the table full (or since a quota change it
/// saw, the longer of the old and new spans, starting over at the new
/// quotas' pace, but never past twice the longest span seen since the
/// first refusal: quotas set again and again must not hold it for ever),
/// or when no ask is left before its deadline (an ask due after it is
/// made just before it instead): every slot of its window was then taken
/// by a key still sending. At most about 18 + log2(span ÷ token) asks
/// (log2(burst) with one tier), each refusal counted by the core in
/// `table_full` (and `limited`), and as many again per quota change.
#[derive(Clone, Copy)]
struct SlotWait<const TIERS: usize> {
    /// When the waiter gives up.
    by: fusebox::Instant,
    /// When it asks the core again.
    next: fusebox::Instant,
    /// The last interval between two asks (doubled on each).
    step: fusebox::Duration,
    /// The longest interval between two asks.
    cap: fusebox::Duration,
    /// The longest span under `quotas`.
    span: fusebox::Duration,
    /// When the waiter first found the table full.
    first: fusebox::Instant,
    /// The longest span under any quotas seen since `first`.
    longest: fusebox::Duration,
    /// The quotas the bound was computed under.
    quotas: Quotas<TIERS>,
}

impl<const TIERS: usize> SlotWait<TIERS> {
    /// The wait after a refusal at `now` for a full table, `before` the wait
    /// so far (if any), `spans` the limiter's (see `KeyedLimiter::spans`).
    fn after(
        before: Option<Self>,
        (span, token): (fusebox::Duration, fusebox::Duration),
        quotas: Quotas<TIERS>,
        now: fusebox::Instant,
    ) -> Self {
        let mut wait = match before {
            Some(mut wait) if wait.quotas == quotas => {
                wait.step = wait.step.saturating_mul(2).min(wait.cap);
                wait
            }
            Some(wait) => {
                // A quota changed: asked at the new quotas' pace, but a
                // slot may be held for the old quota's span after the
                // change (the core's hold on lowered bursts). Extended at
                // most to twice the longest span from the first refusal,
                // which covers one change anywhere in the wait: changes
                // coming again and again (a configuration re-applied
                // every few seconds) extended it for ever (found by a
                // hostile review).
                let longest = wait.longest.max(span);
                let by = wait
                    .by
                    .max(now + span.max(wait.span))
                    .min(wait.first + longest.saturating_mul(2));
                Self::start((span, token), quotas, (wait.first, by), longest)
            }
            None => Self::start((span, token), quotas, (now, now + span), span),
        };
        wait.next = (now + wait.step).min(wait.by);
        wait
    }

    /// A wait first refused at `first`, giving up `by`, asking at the pace
    /// of `quotas` (of `span` and `token`, see `KeyedLimiter::spans`), the
    /// longest span seen since `first` being `longest`.
    fn start(
        (span, token): (fusebox::Duration, fusebox::Duration),
        quotas: Quotas<TIERS>,
        (first, by): (fusebox::Instant, fusebox::Instant),
        longest: fusebox::Duration,
    ) -> Self {
        let step = token.max(crate::clock::TIMER_TICK.into());
        let cap = span.checked_div(16).unwrap_or(span).max(step);
        Self {
            by,
            next: by,
            step,
            cap,
            span,
            first,
            longest,
            quotas,
        }
    }
}

/// A place in one key's queue; leaving it removes the key's gate when no
/// one else holds it.
struct Queue<'a, K: Eq + Hash> {
    gates: &'a Mutex<HashMap<K, Arc<Gate<()>>>>,
    key: &'a K,
    /// `None` only once dropped: the reference is let go under the map's
    /// lock (see `drop`).
    gate: Option<Arc<Gate<()>>>,
}

impl<'a, K: Eq + Hash + Clone> Queue<'a, K> {
    fn join<const N: usize, const TIERS: usize, S>(
        limiter: &'a KeyedLimiter<K, N, TIERS, S>,
        key: &'a K,
    ) -> Self {
        let mut gates = limiter.gates.lock().unwrap_or_else(PoisonError::into_inner);
        let gate = Arc::clone(
            gates
                .entry(key.clone())
                .or_insert_with(|| Arc::new(Gate::new(()))),
        );
        Self {
            gates: &limiter.gates,
            key,
            gate: Some(gate),
        }
    }

    /// The key's gate.
    fn gate(&self) -> &Gate<()> {
        self.gate
            .as_deref()
            .expect("a queue place holds its gate until dropped")
    }
}

impl<K: Eq + Hash> Drop for Queue<'_, K> {
    fn drop(&mut self) {
        let mut gates = self.gates.lock().unwrap_or_else(PoisonError::into_inner);
        // Our reference goes under the lock: of two waiters leaving at once,
        // the second sees the first gone (released after the unlock, both
        // could see the other and neither remove the key).
        drop(self.gate.take());
        // Only the map's reference left: nobody else is queued on this key.
        if gates
            .get(self.key)
            .is_some_and(|gate| Arc::strong_count(gate) == 1)
        {
            gates.remove(self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fusebox::bucket::{FullPolicy, Quota};

    /// One waiter on a key limited to one a minute: the core counts one
    /// refusal (its first ask), however long it waits, and a quota changed
    /// while it waits is still read within a second. Found by a hostile
    /// review: asking the core again every second (to see a changed
    /// limit) counted each ask as a refused request, `limited` 60 for a
    /// waiter admitted after the minute.
    #[tokio::test(start_paused = true)]
    async fn a_waiter_is_counted_refused_once_however_long_it_waits() {
        use fusebox::Clock;
        let minute = Quota::per_minute(1).unwrap();
        let core: Arc<fusebox::KeyedLimiter<u8, 16>> =
            Arc::new(fusebox::KeyedLimiter::new(minute, FullPolicy::Reject).unwrap());
        let limiter = Arc::new(KeyedLimiter::new(Arc::clone(&core)));
        limiter.until_ready(&1).await.unwrap();
        let start = tokio::time::Instant::now();
        limiter.until_ready(&1).await.unwrap();
        let m = core.metrics();
        assert_eq!(
            (start.elapsed().as_millis(), m.allowed, m.limited),
            (60_000, 2, 1)
        );
        // Emptied again; the quota raised to 1 000 a second at 1.5 s.
        let start = tokio::time::Instant::now();
        let waiter = {
            let limiter = Arc::clone(&limiter);
            tokio::spawn(async move { limiter.until_ready(&1).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
        let fast = Quota::per_second(1_000).unwrap();
        core.set_quota(0, fast, limiter.clock.now()).unwrap();
        waiter.await.unwrap().unwrap();
        let m = core.metrics();
        assert_eq!(
            (start.elapsed().as_millis(), m.allowed, m.limited),
            (2_000, 3, 2)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn keyed_gates_are_removed_when_empty() {
        let core: fusebox::KeyedLimiter<u8, 16> =
            fusebox::KeyedLimiter::new(Quota::per_second(1).unwrap(), FullPolicy::Reject).unwrap();
        let limiter = KeyedLimiter::new(Arc::new(core));
        limiter.until_ready(&1).await.unwrap();
        assert_eq!(limiter.waiting_keys(), 0);
        assert_eq!(
            limiter.until_n_ready(&1, 2).await,
            Err(LimitError::InsufficientCapacity {
                requested: 2,
                burst: 1
            })
        );
        assert_eq!(limiter.waiting_keys(), 0);
    }

    /// Two waiters of one key leaving at once, on two threads: the last
    /// one out removes the key's gate. Found by a hostile review: each
    /// checked the gate's reference count under the map's lock but let go
    /// of its own reference after unlocking, so both could see the other
    /// still there and neither removed the key (a gate left in the map for
    /// ever, `waiting_keys` wrong, the map growing with every such key).
    #[test]
    fn waiters_leaving_together_remove_their_key() {
        let core: fusebox::KeyedLimiter<u32, 16> =
            fusebox::KeyedLimiter::new(Quota::per_second(1).unwrap(), FullPolicy::Reject).unwrap();
        let limiter = KeyedLimiter::new(Arc::new(core));
        for round in 0..20_000u32 {
            let barrier = std::sync::Barrier::new(2);
            std::thread::scope(|s| {
                let a = Queue::join(&limiter, &round);
                let b = Queue::join(&limiter, &round);
                s.spawn(|| {
                    barrier.wait();
                    drop(a);
                });
                barrier.wait();
                drop(b);
            });
            assert_eq!(limiter.waiting_keys(), 0, "round {round}");
        }
    }
}
