//! [`Limiter`] and [`KeyedLimiter`]: wait until the core's token bucket
//! admits, sleeping exactly the wait it names.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use fusebox::bucket::{AcquireError, KeyedError, TokenBucket};
use fusebox::hash::FixedState;
use fusebox::{Clock, Instant};
use tokio::sync::Mutex as Gate;

use crate::TokioClock;

/// Why a wait for tokens ended without them.
///
/// Non-exhaustive: match the variants you handle and keep a `_` arm.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use fusebox_std::policy::LimitError;
///
/// let e = LimitError::DeadlineExceeded { retry_after: Duration::from_secs(3) };
/// assert_eq!(e.to_string(), "the rate limit admits no call before the deadline (retry after 3s)");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LimitError {
    /// More tokens than the burst were asked for: no wait could help.
    InsufficientCapacity {
        /// Tokens asked for.
        requested: u32,
        /// The bucket's burst.
        burst: u32,
    },
    /// The tokens would come back only after the caller's deadline.
    DeadlineExceeded {
        /// The wait the bucket named, from the moment it was asked; zero
        /// if the deadline passed while the caller was still queued
        /// behind other waiters.
        retry_after: Duration,
    },
    /// A keyed limiter had no slot for a new key (under
    /// `FullPolicy::Reject`).
    TableFull,
    /// A keyed limiter's tier function named a tier it does not have.
    TierOutOfRange {
        /// The tier named.
        tier: usize,
    },
}

impl fmt::Display for LimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InsufficientCapacity { requested, burst } => write!(
                f,
                "{requested} tokens requested, more than the burst of {burst}"
            ),
            Self::DeadlineExceeded { retry_after } => write!(
                f,
                "the rate limit admits no call before the deadline (retry after {retry_after:?})"
            ),
            Self::TableFull => f.write_str("keyed limiter full: no idle slot for a new key"),
            Self::TierOutOfRange { tier } => write!(f, "no quota tier {tier} in this limiter"),
        }
    }
}

impl std::error::Error for LimitError {}

/// Waits for a core [`TokenBucket`]'s tokens.
///
/// Every decision is the core's: a waiter asks the bucket, and when it is
/// refused sleeps exactly the `retry_after` the refusal names (on tokio's
/// clock; tokio's timer rounds a sleep *up* to its 1 ms resolution, never
/// down), then asks again.
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
/// # Cancellation
///
/// The futures of [`until_ready`](Self::until_ready) and
/// [`until_n_ready`](Self::until_n_ready) take tokens only in the poll in
/// which they complete: dropping one while it waits (for the gate or for
/// tokens) takes no token and frees the gate for the next waiter.
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
    bucket: Arc<TokenBucket>,
    clock: TokioClock,
    gate: Gate<()>,
}

impl fmt::Debug for Limiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limiter")
            .field("bucket", &self.bucket)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl Limiter {
    /// A limiter on `bucket`, with a new [`TokioClock`].
    pub fn new(bucket: Arc<TokenBucket>) -> Self {
        Self::with_clock(bucket, TokioClock::new())
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
        Self {
            bucket,
            clock,
            gate: Gate::new(()),
        }
    }

    /// The core bucket.
    pub fn bucket(&self) -> &Arc<TokenBucket> {
        &self.bucket
    }

    /// The clock.
    pub fn clock(&self) -> TokioClock {
        self.clock
    }

    /// Waits until one token is taken.
    ///
    /// # Errors
    ///
    /// None in practice (a bucket's burst is at least one); the type is
    /// [`until_n_ready`](Self::until_n_ready)'s.
    pub async fn until_ready(&self) -> Result<(), LimitError> {
        self.until_n_ready(1).await
    }

    /// Waits until `n` tokens are taken at once.
    ///
    /// # Errors
    ///
    /// [`LimitError::InsufficientCapacity`] at once, without waiting, if `n`
    /// exceeds the burst.
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
    /// the bucket's wait would end after `deadline` (or the gate is not
    /// reached by then): it never sleeps past the deadline.
    ///
    /// # Errors
    ///
    /// [`LimitError::DeadlineExceeded`] with the bucket's wait, or
    /// [`LimitError::InsufficientCapacity`].
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
        let burst = self.bucket.quota().burst();
        if n > burst {
            return Err(LimitError::InsufficientCapacity {
                requested: n,
                burst,
            });
        }
        let _turn = enter(&self.gate, deadline).await?;
        wait_for(self.clock, deadline, |now| {
            self.bucket.try_acquire_n(n, now).map_err(|e| match e {
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
enum Refused {
    Wait(fusebox::Duration),
    Never(LimitError),
}

/// Takes the gate, giving up at `deadline`.
async fn enter(
    gate: &Gate<()>,
    deadline: Option<tokio::time::Instant>,
) -> Result<tokio::sync::MutexGuard<'_, ()>, LimitError> {
    match deadline {
        None => Ok(gate.lock().await),
        Some(at) => tokio::time::timeout_at(at, gate.lock()).await.map_err(|_| {
            LimitError::DeadlineExceeded {
                retry_after: Duration::ZERO,
            }
        }),
    }
}

/// Asks `decide` (one core call, with the clock read right before it) until
/// it admits, sleeping exactly the wait each refusal names.
async fn wait_for(
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
                if deadline.is_some_and(|d| wake > d) {
                    return Err(LimitError::DeadlineExceeded {
                        retry_after: wait.into(),
                    });
                }
                tokio::time::sleep_until(wake).await;
            }
        }
    }
}

/// Waits for a core [`fusebox::KeyedLimiter`]'s per-key tokens.
///
/// As [`Limiter`], with one FIFO gate per key waiting (created on demand,
/// removed when its last waiter leaves): waiters for one key are served in
/// arrival order, and a waiting key never holds up another.
///
/// # Cancellation
///
/// As [`Limiter`]: a dropped waiter takes no token and leaves its key's
/// queue.
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
    /// A waiter on `limiter`, with a new [`TokioClock`].
    pub fn new(limiter: Arc<fusebox::KeyedLimiter<K, N, TIERS, S>>) -> Self {
        Self::with_clock(limiter, TokioClock::new())
    }

    /// A waiter on `limiter` read through `clock`.
    pub fn with_clock(
        limiter: Arc<fusebox::KeyedLimiter<K, N, TIERS, S>>,
        clock: TokioClock,
    ) -> Self {
        Self {
            limiter,
            clock,
            gates: Mutex::new(HashMap::new()),
        }
    }

    /// The core limiter.
    pub fn core(&self) -> &Arc<fusebox::KeyedLimiter<K, N, TIERS, S>> {
        &self.limiter
    }

    /// Keys with waiters right now.
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
    pub async fn until_ready(&self, key: &K) -> Result<(), LimitError> {
        self.until_n_ready(key, 1).await
    }

    /// Waits until `n` tokens are taken at once for `key`.
    ///
    /// # Errors
    ///
    /// [`LimitError::InsufficientCapacity`] if `n` exceeds the key's burst
    /// (at once if it exceeds every tier's burst, else when the key's turn
    /// comes), [`LimitError::TableFull`] or [`LimitError::TierOutOfRange`]
    /// as the core refuses them.
    pub async fn until_n_ready(&self, key: &K, n: u32) -> Result<(), LimitError> {
        self.until_n_ready_by(key, n, None).await
    }

    /// [`until_n_ready`](Self::until_n_ready), giving up at once when the
    /// wait would end after `deadline`.
    ///
    /// # Errors
    ///
    /// As [`until_n_ready`](Self::until_n_ready), and
    /// [`LimitError::DeadlineExceeded`].
    pub async fn until_n_ready_by(
        &self,
        key: &K,
        n: u32,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<(), LimitError> {
        let largest = (0..TIERS)
            .filter_map(|tier| self.limiter.quota(tier))
            .map(fusebox::bucket::Quota::burst)
            .max()
            .unwrap_or(0);
        if n > largest {
            return Err(LimitError::InsufficientCapacity {
                requested: n,
                burst: largest,
            });
        }
        let queue = Queue::join(self, key);
        let _turn = enter(&queue.gate, deadline).await?;
        wait_for(self.clock, deadline, |now| {
            self.limiter
                .try_acquire_n(key, n, now)
                .map_err(|e| match e {
                    KeyedError::RateLimited(limited) => Refused::Wait(limited.retry_after),
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

/// A place in one key's queue; leaving it removes the key's gate when no
/// one else holds it.
struct Queue<'a, K: Eq + Hash> {
    gates: &'a Mutex<HashMap<K, Arc<Gate<()>>>>,
    key: &'a K,
    gate: Arc<Gate<()>>,
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
            gate,
        }
    }
}

impl<K: Eq + Hash> Drop for Queue<'_, K> {
    fn drop(&mut self) {
        let mut gates = self.gates.lock().unwrap_or_else(PoisonError::into_inner);
        // The map's reference and ours: nobody else is queued on this key.
        if Arc::strong_count(&self.gate) == 2 {
            gates.remove(self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fusebox::bucket::{FullPolicy, Quota};

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

    #[tokio::test(start_paused = true)]
    async fn a_bucket_at_the_clock_origin_starts_full() {
        let bucket = Arc::new(TokenBucket::new(Quota::per_second(2).unwrap()));
        let limiter = Limiter::new(Arc::clone(&bucket));
        let start = tokio::time::Instant::now();
        limiter.until_n_ready(2).await.unwrap();
        assert_eq!(tokio::time::Instant::now(), start);
    }
}
