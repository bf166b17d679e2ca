//! Async call policies over the core's primitives, and [`Policy`], which
//! composes them.
//!
//! | layer | type | core primitive |
//! |---|---|---|
//! | circuit breaker (+ timeout, classifier) | [`Breaker`] | [`fusebox::CircuitBreaker`] |
//! | retries | [`Retry`], [`RetryBudget`], [`ExponentialBackoffMaker`] | — (a windowed counter) |
//! | rate-limit waits | [`Limiter`], [`KeyedLimiter`] | [`fusebox::TokenBucket`], [`fusebox::KeyedLimiter`]; or a limit shared through Redis (feature `redis`) |
//! | concurrency | [`Bulkhead`] | — (a tokio semaphore) |
//! | fallbacks | [`Fallback`], [`StaleCache`] | [`fusebox::LruCache`] |

mod backoff;
#[cfg(test)]
mod books_tests;
mod breaker;
mod budget;
mod bulkhead;
mod classify;
#[cfg(test)]
mod edge_tests;
mod error;
mod fallback;
#[cfg(test)]
mod history_tests;
#[cfg(test)]
mod hostile_tests;
mod keyed_limiter;
mod limiter;
mod retry;
#[cfg(feature = "redis")]
mod shared;
#[cfg(test)]
mod slot_wait_tests;
#[cfg(test)]
mod stale_tests;
#[cfg(test)]
mod wait_tests;

pub use backoff::{
    Backoff, BackoffError, ExponentialBackoff, ExponentialBackoffMaker, Jitter, MakeBackoff,
};
pub(crate) use breaker::log_transition;
#[cfg(feature = "redis")]
pub(crate) use breaker::Recorded;
pub use breaker::{Breaker, BreakerBuilder, BreakerCall, BreakerObserver};
pub use budget::{BudgetError, RetryBudget};
pub use bulkhead::{
    Bulkhead, BulkheadError, BulkheadMetrics, BulkheadPermit, BulkheadRejection, Overflow,
};
pub use classify::{Classify, DefaultClassifier};
pub use error::{CallError, LimitError};
pub use fallback::{Fallback, Served, Source, StaleCache, StaleCacheError};
pub use keyed_limiter::KeyedLimiter;
pub use limiter::Limiter;
pub use retry::{
    HonorRetryAfter, OnCallError, Retry, RetryAll, RetryBuilder, RetryError, RetryPredicate, Stop,
};

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// The shortest timeout a call is given (tokio's timer tick): see
/// [`PolicyBuilder::timeout`] and [`BreakerBuilder::timeout`].
pub(crate) const MIN_TIMEOUT: Duration = Duration::from_millis(1);

/// Bulkhead, retries, rate limit, circuit breaker and timeout around one
/// call, each optional, in one fixed order (outermost first):
///
/// ```text
/// bulkhead → retry → rate limit → circuit breaker → timeout → the call
/// ```
///
/// * **Bulkhead outermost**: one logical call holds one slot for all its
///   attempts, so retries never raise the concurrency past the bulkhead,
///   and a call refused a slot spends nothing else (no token, no permit).
/// * **Retry outside the rate limit and the breaker**: every attempt is
///   real load, so each one takes a token and asks the breaker; an open
///   breaker stops the retries at once ([`OnCallError`]), and a rate-limit
///   wait that would end after the retry deadline stops them at once too.
/// * **Rate limit before the breaker**: a caller waiting for a token holds
///   no breaker permit, so a half-open trial slot is never held by a
///   sleeping caller.
/// * **Timeout inside the breaker**: a timed-out attempt is recorded as a
///   failure (the breaker's own timeout; with no breaker, a plain
///   `tokio::time` timeout).
///
/// The retry deadline runs from the start of the retry layer, after the
/// bulkhead admitted the call (a bulkhead queue has its own maximum wait);
/// it bounds the waits (backoffs, Retry-After, rate-limit waits), not an
/// attempt in flight: bound those with the timeout.
///
/// A fallback is not a layer of `Policy`: wrap the call in a [`Fallback`]
/// or a [`StaleCache`], which see the final error of all the layers.
///
/// # Cancellation
///
/// Dropping the call's future at any await point returns the bulkhead slot,
/// takes no rate-limit token it was waiting for, and abandons a breaker
/// permit without recording an outcome (a half-open trial slot is freed).
/// A retry the budget granted counts once its attempt calls `make`:
/// dropped before (in its backoff, or waiting for its token), or refused
/// by the rate limit or the breaker, it never ran and is given back to
/// the budget.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use fusebox::breaker::{CircuitBreaker, Config};
/// use fusebox::bucket::{Quota, TokenBucket};
/// use fusebox_std::policy::{Breaker, Bulkhead, Limiter, Overflow, Policy, Retry};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// let policy = Policy::builder()
///     .bulkhead(Bulkhead::new(64, Overflow::Reject)?)
///     .retry(Retry::builder().max_attempts(3).deadline(Duration::from_secs(2)).build())
///     .limiter(Arc::new(Limiter::new(Arc::new(TokenBucket::new(Quota::per_second(100)?)))))
///     .breaker(Breaker::new("inventory", Arc::new(CircuitBreaker::new(
///         Config::builder().failure_rate(50).window(20).minimum_calls(10).build()?,
///     ))))
///     .timeout(Duration::from_millis(250))
///     .build();
/// let stock = policy.call(|| async { Ok::<_, std::io::Error>(42) }).await?;
/// assert_eq!(stock, 42);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct Policy<C = DefaultClassifier, B = ExponentialBackoffMaker, P = RetryAll> {
    bulkhead: Option<Bulkhead>,
    retry: Option<Retry<B, P>>,
    limiter: Option<Arc<Limiter>>,
    breaker: Option<Breaker<C>>,
    timeout: Option<Duration>,
}

/// Builds a [`Policy`]; every layer is optional.
///
/// ```
/// use fusebox_std::policy::{Policy, PolicyBuilder};
///
/// let builder: PolicyBuilder = Policy::builder();
/// let policy = builder.timeout(std::time::Duration::from_secs(1)).build();
/// # drop(policy);
/// ```
#[derive(Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct PolicyBuilder<C = DefaultClassifier, B = ExponentialBackoffMaker, P = RetryAll> {
    policy: Policy<C, B, P>,
}

impl Policy {
    /// A builder with no layer at all (a policy that just calls).
    ///
    /// ```
    /// use fusebox_std::policy::Policy;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// // No layer: the call as it is.
    /// let policy = Policy::builder().build();
    /// assert_eq!(policy.call(|| async { Ok::<_, ()>(1) }).await.unwrap(), 1);
    /// # });
    /// ```
    pub fn builder() -> PolicyBuilder {
        PolicyBuilder {
            policy: Policy {
                bulkhead: None,
                retry: None,
                limiter: None,
                breaker: None,
                timeout: None,
            },
        }
    }
}

impl<C, B, P> PolicyBuilder<C, B, P> {
    /// The bulkhead (outermost layer).
    ///
    /// ```
    /// use fusebox_std::policy::{Bulkhead, Overflow, Policy};
    ///
    /// let policy = Policy::builder().bulkhead(Bulkhead::new(32, Overflow::Reject)?).build();
    /// # drop(policy);
    /// # Ok::<(), fusebox_std::policy::BulkheadError>(())
    /// ```
    pub fn bulkhead(mut self, bulkhead: Bulkhead) -> Self {
        self.policy.bulkhead = Some(bulkhead);
        self
    }

    /// The rate limit: each attempt waits for a token.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// use fusebox::bucket::{Quota, TokenBucket};
    /// use fusebox_std::policy::{Limiter, Policy};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// let limiter = Arc::new(Limiter::new(Arc::new(TokenBucket::new(Quota::per_second(1)?))));
    /// let policy = Policy::builder().limiter(limiter).build();
    /// let start = tokio::time::Instant::now();
    /// policy.call(|| async { Ok::<_, ()>(()) }).await.unwrap();
    /// policy.call(|| async { Ok::<_, ()>(()) }).await.unwrap();
    /// assert_eq!(start.elapsed(), std::time::Duration::from_secs(1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn limiter(mut self, limiter: Arc<Limiter>) -> Self {
        self.policy.limiter = Some(limiter);
        self
    }

    /// A timeout per attempt (overrides the breaker's own timeout; counted
    /// as a failure by the breaker). At least 1 ms (tokio's timer tick): a
    /// zero timeout would fail every call not ready on its first poll, and
    /// open the breaker of a healthy service.
    ///
    /// ```
    /// use std::time::Duration;
    /// use fusebox_std::{policy::Policy, CallError};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// let policy = Policy::builder().timeout(Duration::from_millis(50)).build();
    /// let slow = policy.call(|| async {
    ///     tokio::time::sleep(Duration::from_secs(1)).await;
    ///     Ok::<_, ()>(())
    /// });
    /// assert!(matches!(slow.await, Err(CallError::Timeout)));
    /// # });
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.policy.timeout = Some(timeout.max(MIN_TIMEOUT));
        self
    }

    /// The retries. The predicate sees the callee's errors (through
    /// [`OnCallError`]): the policy's own refusals are never retried, its
    /// timeouts always are (within the attempts, deadline and budget).
    ///
    /// ```
    /// use fusebox_std::policy::{Policy, Retry};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// let policy = Policy::builder()
    ///     .retry(Retry::builder().max_attempts(2).retry_if(|code: &u16| *code >= 500).build())
    ///     .build();
    /// let mut calls = 0;
    /// let _ = policy.call(|| { calls += 1; async { Err::<(), u16>(503) } }).await;
    /// assert_eq!(calls, 2);
    /// # });
    /// ```
    pub fn retry<B2, P2>(self, retry: Retry<B2, P2>) -> PolicyBuilder<C, B2, P2> {
        self.map(|_| Some(retry), |b| b)
    }

    /// The circuit breaker.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fusebox::breaker::{CircuitBreaker, Config};
    /// use fusebox_std::policy::{Breaker, Policy};
    ///
    /// let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(5).build()?));
    /// let policy = Policy::builder().breaker(Breaker::new("search", core)).build();
    /// # drop(policy);
    /// # Ok::<(), fusebox::breaker::ConfigError>(())
    /// ```
    pub fn breaker<C2>(self, breaker: Breaker<C2>) -> PolicyBuilder<C2, B, P> {
        self.map(|r| r, |_| Some(breaker))
    }

    /// The same builder with its retry and breaker layers mapped.
    fn map<C2, B2, P2>(
        self,
        retry: impl FnOnce(Option<Retry<B, P>>) -> Option<Retry<B2, P2>>,
        breaker: impl FnOnce(Option<Breaker<C>>) -> Option<Breaker<C2>>,
    ) -> PolicyBuilder<C2, B2, P2> {
        let p = self.policy;
        PolicyBuilder {
            policy: Policy {
                bulkhead: p.bulkhead,
                retry: retry(p.retry),
                limiter: p.limiter,
                breaker: breaker(p.breaker),
                timeout: p.timeout,
            },
        }
    }

    /// The policy.
    ///
    /// ```
    /// use fusebox_std::policy::Policy;
    ///
    /// let policy: Policy = Policy::builder().build();
    /// # drop(policy);
    /// ```
    pub fn build(self) -> Policy<C, B, P> {
        self.policy
    }
}

impl<C, B: MakeBackoff, P> Policy<C, B, P> {
    /// Calls `make()`'s future through every layer. `make` is called once
    /// per attempt, and only once every layer has admitted the attempt
    /// (inside the breaker's permit): a refused attempt never calls it.
    ///
    /// # Errors
    ///
    /// The last attempt's [`CallError`]: the callee's error
    /// ([`CallError::Inner`]), or the refusal of a layer.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fusebox::breaker::{CircuitBreaker, Config};
    /// use fusebox_std::policy::{Breaker, Policy, Retry};
    /// use fusebox_std::CallError;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(2).build()?));
    /// let policy = Policy::builder()
    ///     .retry(Retry::builder().max_attempts(5).build())
    ///     .breaker(Breaker::new("flaky", core))
    ///     .build();
    /// let mut calls = 0;
    /// let result = policy.call(|| { calls += 1; async { Err::<(), _>("down") } }).await;
    /// // Two failures open the breaker; the third attempt is refused by it and
    /// // the retries stop there.
    /// assert!(matches!(result, Err(CallError::Open { .. })));
    /// assert_eq!(calls, 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn call<F, Fut, T, E>(&self, make: F) -> Result<T, CallError<E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        C: Classify<T, E>,
        P: RetryPredicate<E>,
    {
        let _slot = match &self.bulkhead {
            Some(bulkhead) => Some(bulkhead.acquire().await.map_err(CallError::Bulkhead)?),
            None => None,
        };
        // Shared by the attempts (one at a time), each calling it only once
        // admitted; a mutex rather than a `RefCell` keeps the future `Send`.
        let make = Mutex::new(make);
        match &self.retry {
            None => self.attempt(&make, None, None).await,
            Some(retry) => retry
                .run(
                    &OnCallError(retry::ByRef(retry.predicate())),
                    |deadline, granted| self.attempt(&make, deadline, Some(granted)),
                )
                .await
                .map_err(|stopped| stopped.error),
        }
    }

    /// One attempt: rate limit, breaker, timeout, then `make`'s future. A
    /// retry's grant starts when `make` is called: dropped before (the
    /// call cancelled while it waits for a token, or refused by a layer),
    /// the retry never ran and is given back to the budget.
    async fn attempt<F, Fut, T, E>(
        &self,
        make: &Mutex<F>,
        deadline: Option<tokio::time::Instant>,
        granted: Option<retry::Granted<'_>>,
    ) -> Result<T, CallError<E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        C: Classify<T, E>,
    {
        if let Some(limiter) = &self.limiter {
            limiter
                .until_n_ready_by(1, deadline)
                .await
                .map_err(CallError::RateLimited)?;
        }
        // Lazy: built on the breaker's first poll of it, after the permit.
        let future = async {
            let future = {
                let mut make = make.lock().unwrap_or_else(PoisonError::into_inner);
                make()
            };
            if let Some(granted) = granted {
                granted.start();
            }
            future.await
        };
        match (&self.breaker, self.timeout) {
            (Some(breaker), timeout) => {
                breaker
                    .call_with_timeout(future, timeout.or(breaker.timeout()))
                    .await
            }
            (None, Some(timeout)) => match tokio::time::timeout(timeout, future).await {
                Ok(result) => result.map_err(CallError::Inner),
                Err(_) => Err(CallError::Timeout),
            },
            (None, None) => future.await.map_err(CallError::Inner),
        }
    }
}
