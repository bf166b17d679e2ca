//! [`Retry`]: attempts, exponential backoff with full jitter, a retry
//! predicate, an overall deadline, a shared [`RetryBudget`] and the
//! server's Retry-After.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::backoff::{ExponentialBackoffMaker, MakeBackoff};
use super::{Backoff, CallError, RetryBudget};

/// Which errors are worth another attempt, and how long the error itself
/// asks to wait.
///
/// Implemented by every `Fn(&E) -> bool` (no Retry-After), by [`RetryAll`],
/// by [`HonorRetryAfter`] (which reads the error's
/// [`fusebox::RetryAfter`]) and by [`OnCallError`] (for errors of the
/// other policy layers).
///
/// # Examples
///
/// ```
/// use fusebox_std::policy::RetryPredicate;
///
/// let transient = |status: &u16| *status >= 500;
/// assert!(transient.should_retry(&503));
/// assert!(!transient.should_retry(&404));
/// assert_eq!(transient.retry_after(&503), None);
/// ```
pub trait RetryPredicate<E> {
    /// Whether `error` may be retried.
    fn should_retry(&self, error: &E) -> bool;

    /// The least wait before retrying after `error`, if it names one (a
    /// server's Retry-After); the retry never comes earlier.
    fn retry_after(&self, error: &E) -> Option<Duration> {
        let _ = error;
        None
    }
}

impl<E, F: Fn(&E) -> bool> RetryPredicate<E> for F {
    fn should_retry(&self, error: &E) -> bool {
        self(error)
    }
}

/// A predicate by reference (a blanket impl for `&P` would overlap the one
/// for closures).
pub(crate) struct ByRef<'a, P>(pub(crate) &'a P);

impl<E, P: RetryPredicate<E>> RetryPredicate<E> for ByRef<'_, P> {
    fn should_retry(&self, error: &E) -> bool {
        self.0.should_retry(error)
    }
    fn retry_after(&self, error: &E) -> Option<Duration> {
        self.0.retry_after(error)
    }
}

/// Retries every error.
///
/// ```
/// use fusebox_std::policy::{RetryAll, RetryPredicate};
///
/// assert!(RetryAll.should_retry(&"anything"));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetryAll;

impl<E> RetryPredicate<E> for RetryAll {
    fn should_retry(&self, _: &E) -> bool {
        true
    }
}

/// `P`, plus the wait the error names through [`fusebox::RetryAfter`]
/// (the core's trait: implement it for your error type, e.g. from an HTTP
/// `Retry-After` header).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use fusebox_std::policy::{HonorRetryAfter, RetryAll, RetryPredicate};
///
/// struct TooMany { after_secs: u64 }
/// impl fusebox::RetryAfter for TooMany {
///     fn retry_after(&self) -> Option<fusebox::Duration> {
///         Some(fusebox::Duration::from_secs(self.after_secs))
///     }
/// }
/// let p = HonorRetryAfter(RetryAll);
/// assert_eq!(p.retry_after(&TooMany { after_secs: 3 }), Some(Duration::from_secs(3)));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HonorRetryAfter<P>(pub P);

impl<E: fusebox::RetryAfter, P: RetryPredicate<E>> RetryPredicate<E> for HonorRetryAfter<P> {
    fn should_retry(&self, error: &E) -> bool {
        self.0.should_retry(error)
    }
    fn retry_after(&self, error: &E) -> Option<Duration> {
        let own = error.retry_after().map(Duration::from);
        own.max(self.0.retry_after(error))
    }
}

/// For errors of the policy layers ([`CallError`]): a callee's error is
/// retried when `P` says so (with `P`'s Retry-After), a timeout is retried,
/// and an open breaker, a rate limit that would overrun the deadline or a
/// full bulkhead stop the retries at once.
///
/// [`Policy`](super::Policy) uses it around its own layers; use it to put a
/// standalone [`Retry`] around a standalone [`Breaker`](super::Breaker).
///
/// # Examples
///
/// ```
/// use fusebox_std::policy::{OnCallError, RetryAll, RetryPredicate};
/// use fusebox_std::CallError;
///
/// let p = OnCallError(RetryAll);
/// assert!(p.should_retry(&CallError::<()>::Timeout));
/// assert!(!p.should_retry(&CallError::<()>::Open { retry_after: None }));
/// ```
///
/// Around a breaker by hand:
///
/// ```
/// use std::sync::Arc;
/// use fusebox::breaker::{CircuitBreaker, Config};
/// use fusebox_std::policy::{Breaker, OnCallError, Retry, RetryAll};
/// use fusebox_std::CallError;
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// let breaker = Breaker::new("db", Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(1).build()?)));
/// let retry = Retry::builder().max_attempts(5).retry_if(OnCallError(RetryAll)).build();
/// let e = retry.call(|| breaker.call(async { Err::<(), _>("down") })).await.unwrap_err();
/// assert!(matches!(e.error, CallError::Open { .. }));
/// assert_eq!(e.attempts, 2); // the failure that opened it, then the refusal
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OnCallError<P>(pub P);

impl<E, P: RetryPredicate<E>> RetryPredicate<CallError<E>> for OnCallError<P> {
    fn should_retry(&self, error: &CallError<E>) -> bool {
        match error {
            CallError::Inner(e) => self.0.should_retry(e),
            CallError::Timeout => true,
            _ => false,
        }
    }
    fn retry_after(&self, error: &CallError<E>) -> Option<Duration> {
        error.inner().and_then(|e| self.0.retry_after(e))
    }
}

/// Why [`Retry`] gave up.
///
/// ```
/// use std::time::Duration;
/// use fusebox_std::policy::{Retry, Stop};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// let retry = Retry::builder().max_attempts(2).retry_if(|code: &u16| *code != 400).build();
/// let e = retry.call(|| async { Err::<(), u16>(400) }).await.unwrap_err();
/// assert_eq!(e.stop, Stop::NotRetryable);
/// # });
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Stop {
    /// The predicate refused this error.
    NotRetryable,
    /// Every attempt was made.
    Exhausted,
    /// The next attempt would have started at or after the deadline.
    Deadline,
    /// The retry budget had no retry left.
    Budget,
    /// The error named a Retry-After longer than
    /// [`max_retry_after`](RetryBuilder::max_retry_after): the caller is
    /// told now, instead of being parked that long.
    RetryAfterTooLong,
}

/// The last error, with how many attempts were made and why retrying
/// stopped.
///
/// `Display` names the reason, never the error (see [`CallError`]);
/// `source` is the error.
///
/// # Examples
///
/// ```
/// use fusebox_std::policy::{RetryError, Stop};
///
/// let e = RetryError { error: std::io::Error::other("secret"), attempts: 3, stop: Stop::Exhausted };
/// assert_eq!(e.to_string(), "gave up after 3 attempts: all attempts failed");
/// ```
#[derive(Debug)]
pub struct RetryError<E> {
    /// The last attempt's error.
    pub error: E,
    /// Attempts made (the first one included).
    pub attempts: u32,
    /// Why there was no other attempt.
    pub stop: Stop,
}

impl<E> fmt::Display for RetryError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = match self.stop {
            Stop::NotRetryable => "the error is not retryable",
            Stop::Exhausted => "all attempts failed",
            Stop::Deadline => "the deadline leaves no time for another attempt",
            Stop::Budget => "the retry budget is spent",
            Stop::RetryAfterTooLong => "the error asks for a longer wait than allowed",
        };
        write!(f, "gave up after {} attempts: {why}", self.attempts)
    }
}

impl<E: std::error::Error + 'static> std::error::Error for RetryError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// Retries a call: up to `max_attempts` attempts, waiting between them what
/// the backoff says (or longer, if the error names a Retry-After), within
/// an overall deadline and a shared [`RetryBudget`].
///
/// Before each retry, in this order: the predicate must accept the error;
/// attempts must be left; a Retry-After must be at most
/// [`max_retry_after`](RetryBuilder::max_retry_after) (by default 60 s
/// without a deadline, the deadline's bound with one);
/// the wait is `max(backoff, Retry-After)`; the
/// retry must start *before* the deadline (else it stops at once, without
/// sleeping: its timer never sleeps past the deadline; a wait ending
/// within 1 ms of it counts as past, since tokio rounds every sleep up to
/// its 1 ms tick; a runtime too busy to wake it on time can still start
/// it late); the budget must grant it. Every first attempt is deposited in
/// the budget. All waits are `tokio::time` sleeps.
///
/// # Cancellation
///
/// Dropping the future of [`call`](Self::call) drops the attempt in flight
/// or the sleep; a retry already granted by the budget stays counted.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use fusebox_std::policy::{ExponentialBackoffMaker, Jitter, Retry, Stop};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// let retry = Retry::builder()
///     .max_attempts(3)
///     .backoff(ExponentialBackoffMaker::new(Duration::from_millis(100), 2.0, Duration::from_secs(1))?
///         .with_jitter(Jitter::None))
///     .build();
/// let start = tokio::time::Instant::now();
/// let mut calls = 0;
/// let result = retry
///     .call(|| {
///         calls += 1;
///         async { Err::<(), _>("down") }
///     })
///     .await;
/// let error = result.unwrap_err();
/// assert_eq!((error.attempts, error.stop), (3, Stop::Exhausted));
/// assert_eq!(start.elapsed(), Duration::from_millis(100 + 200));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct Retry<B = ExponentialBackoffMaker, P = RetryAll> {
    max_attempts: u32,
    backoff: B,
    deadline: Option<Duration>,
    /// `None`: [`Retry::MAX_RETRY_AFTER`] without a deadline, the deadline
    /// alone with one.
    max_retry_after: Option<Duration>,
    budget: Option<Arc<RetryBudget>>,
    predicate: P,
}

/// Builds a [`Retry`]; see [`Retry::builder`] for the defaults.
///
/// ```
/// use std::time::Duration;
/// use fusebox_std::policy::{Retry, RetryBuilder};
///
/// let builder: RetryBuilder = Retry::builder();
/// let retry = builder.max_attempts(5).deadline(Duration::from_secs(3)).build();
/// assert_eq!(retry.max_attempts(), 5);
/// ```
#[derive(Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct RetryBuilder<B = ExponentialBackoffMaker, P = RetryAll> {
    retry: Retry<B, P>,
}

impl Retry {
    /// The longest Retry-After honoured by default (60 s; see
    /// [`RetryBuilder::max_retry_after`]).
    pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

    /// A builder with these defaults: 3 attempts; exponential backoff from
    /// 100 ms, factor 2, capped at 10 s, full jitter from an unseeded RNG;
    /// no deadline; a Retry-After of at most 60 s honoured when there is
    /// no deadline ([`max_retry_after`](RetryBuilder::max_retry_after));
    /// no budget; every error retried.
    ///
    /// ```
    /// use fusebox_std::policy::Retry;
    ///
    /// assert_eq!(Retry::builder().build().max_attempts(), 3);
    /// ```
    pub fn builder() -> RetryBuilder {
        RetryBuilder {
            retry: Retry {
                max_attempts: 3,
                backoff: ExponentialBackoffMaker::default(),
                deadline: None,
                max_retry_after: None,
                budget: None,
                predicate: RetryAll,
            },
        }
    }
}

impl<B, P> RetryBuilder<B, P> {
    /// Attempts in all, the first included (0 reads as 1).
    ///
    /// ```
    /// use fusebox_std::policy::Retry;
    ///
    /// assert_eq!(Retry::builder().max_attempts(0).build().max_attempts(), 1);
    /// ```
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.retry.max_attempts = attempts.max(1);
        self
    }

    /// The overall deadline, from the start of the call: no attempt starts
    /// at or after it. One longer than ~30 years (`Duration::MAX`) is no
    /// deadline at all.
    ///
    /// ```
    /// use std::time::Duration;
    /// use fusebox_std::policy::{ExponentialBackoffMaker, Jitter, Retry, Stop};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// let retry = Retry::builder()
    ///     .max_attempts(100)
    ///     .backoff(ExponentialBackoffMaker::new(Duration::from_secs(1), 1.0, Duration::from_secs(1))?.with_jitter(Jitter::None))
    ///     .deadline(Duration::from_millis(2_500))
    ///     .build();
    /// let start = tokio::time::Instant::now();
    /// let e = retry.call(|| async { Err::<(), _>("down") }).await.unwrap_err();
    /// assert_eq!((e.attempts, e.stop), (3, Stop::Deadline)); // at 0, 1 and 2 s
    /// assert_eq!(start.elapsed(), Duration::from_secs(2));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.retry.deadline = Some(deadline);
        self
    }

    /// The longest Retry-After (the one an error names through
    /// [`HonorRetryAfter`], or any predicate's) the retry sleeps; an error
    /// naming a longer one stops it at once with
    /// [`Stop::RetryAfterTooLong`], so that no server can park the caller
    /// for hours (or, with `u64::MAX` seconds, 30 years). By default: with
    /// a [`deadline`](Self::deadline), the deadline alone bounds it (a
    /// Retry-After ending after it stops with [`Stop::Deadline`]); without
    /// one, [`Retry::MAX_RETRY_AFTER`] (60 s). The backoff's own waits are
    /// not limited by it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use fusebox_std::policy::{Retry, Stop};
    ///
    /// struct Unavailable;
    /// impl fusebox::RetryAfter for Unavailable {
    ///     fn retry_after(&self) -> Option<fusebox::Duration> {
    ///         Some(fusebox::Duration::from_secs(3_600)) // "come back in an hour"
    ///     }
    /// }
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// let retry = Retry::builder().honor_retry_after().max_retry_after(Duration::from_secs(30)).build();
    /// let start = tokio::time::Instant::now();
    /// let e = retry.call(|| async { Err::<(), _>(Unavailable) }).await.unwrap_err();
    /// assert_eq!((e.attempts, e.stop), (1, Stop::RetryAfterTooLong));
    /// assert_eq!(start.elapsed(), Duration::ZERO);
    /// # });
    /// ```
    pub fn max_retry_after(mut self, max: Duration) -> Self {
        self.retry.max_retry_after = Some(max);
        self
    }

    /// A budget shared with other callers.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use fusebox_std::policy::{Retry, RetryBudget, Stop};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// let budget = Arc::new(RetryBudget::new(Duration::from_secs(10), 0, 0)?); // no retries at all
    /// let retry = Retry::builder().max_attempts(3).budget(Arc::clone(&budget)).build();
    /// let e = retry.call(|| async { Err::<(), _>("down") }).await.unwrap_err();
    /// assert_eq!((e.attempts, e.stop), (1, Stop::Budget));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn budget(mut self, budget: Arc<RetryBudget>) -> Self {
        self.retry.budget = Some(budget);
        self
    }

    /// The backoff.
    ///
    /// ```
    /// use std::time::Duration;
    /// use fusebox_std::policy::{ExponentialBackoffMaker, Retry};
    ///
    /// let retry = Retry::builder()
    ///     .backoff(ExponentialBackoffMaker::new(Duration::from_millis(20), 3.0, Duration::from_secs(2))?)
    ///     .build();
    /// # drop(retry);
    /// # Ok::<(), fusebox_std::policy::BackoffError>(())
    /// ```
    pub fn backoff<B2: MakeBackoff>(self, backoff: B2) -> RetryBuilder<B2, P> {
        self.map(|_| backoff, |p| p)
    }

    /// Which errors to retry.
    ///
    /// ```
    /// use fusebox_std::policy::Retry;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// let retry = Retry::builder().retry_if(|e: &std::io::Error| e.kind() == std::io::ErrorKind::TimedOut).build();
    /// let e = retry.call(|| async { Err::<(), _>(std::io::Error::other("bad input")) }).await.unwrap_err();
    /// assert_eq!(e.attempts, 1);
    /// # });
    /// ```
    pub fn retry_if<P2>(self, predicate: P2) -> RetryBuilder<B, P2> {
        self.map(|b| b, |_| predicate)
    }

    /// Also wait at least what the error's [`fusebox::RetryAfter`] names
    /// (see [`HonorRetryAfter`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// use fusebox_std::policy::{ExponentialBackoffMaker, Jitter, Retry};
    ///
    /// struct TooManyRequests;
    /// impl fusebox::RetryAfter for TooManyRequests {
    ///     fn retry_after(&self) -> Option<fusebox::Duration> {
    ///         Some(fusebox::Duration::from_secs(2)) // from the response's header
    ///     }
    /// }
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// let retry = Retry::builder()
    ///     .max_attempts(2)
    ///     .backoff(ExponentialBackoffMaker::new(Duration::from_millis(10), 2.0, Duration::from_secs(1))?.with_jitter(Jitter::None))
    ///     .honor_retry_after()
    ///     .build();
    /// let start = tokio::time::Instant::now();
    /// let _ = retry.call(|| async { Err::<(), _>(TooManyRequests) }).await;
    /// assert_eq!(start.elapsed(), Duration::from_secs(2));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn honor_retry_after(self) -> RetryBuilder<B, HonorRetryAfter<P>> {
        self.map(|b| b, HonorRetryAfter)
    }

    /// The same builder with its backoff and predicate mapped.
    fn map<B2, P2>(
        self,
        backoff: impl FnOnce(B) -> B2,
        predicate: impl FnOnce(P) -> P2,
    ) -> RetryBuilder<B2, P2> {
        let r = self.retry;
        RetryBuilder {
            retry: Retry {
                max_attempts: r.max_attempts,
                backoff: backoff(r.backoff),
                deadline: r.deadline,
                max_retry_after: r.max_retry_after,
                budget: r.budget,
                predicate: predicate(r.predicate),
            },
        }
    }

    /// The retry policy.
    ///
    /// ```
    /// use fusebox_std::policy::Retry;
    ///
    /// let retry = Retry::builder().max_attempts(4).build();
    /// assert_eq!(retry.max_attempts(), 4);
    /// ```
    pub fn build(self) -> Retry<B, P> {
        self.retry
    }
}

impl<B: MakeBackoff, P> Retry<B, P> {
    /// The most attempts.
    ///
    /// ```
    /// use fusebox_std::policy::Retry;
    ///
    /// assert_eq!(Retry::builder().max_attempts(7).build().max_attempts(), 7);
    /// ```
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The predicate.
    ///
    /// ```
    /// use fusebox_std::policy::{Retry, RetryPredicate};
    ///
    /// let retry = Retry::builder().retry_if(|code: &u16| *code >= 500).build();
    /// assert!(retry.predicate().should_retry(&502));
    /// ```
    pub fn predicate(&self) -> &P {
        &self.predicate
    }

    /// Calls `attempt` until it succeeds or retrying stops (see the type's
    /// docs for the order of the checks).
    ///
    /// # Errors
    ///
    /// [`RetryError`] with the last error, the attempts made and the reason.
    ///
    /// ```
    /// use fusebox_std::policy::Retry;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// let retry = Retry::builder().max_attempts(3).build();
    /// let mut left = 2;
    /// let value = retry
    ///     .call(|| {
    ///         left -= 1;
    ///         let outcome = if left > 0 { Err("flaky") } else { Ok(5) };
    ///         async move { outcome }
    ///     })
    ///     .await
    ///     .map_err(|e| e.error)?;
    /// assert_eq!(value, 5);
    /// # Ok::<(), &str>(())
    /// # }).unwrap();
    /// ```
    pub async fn call<F, Fut, T, E>(&self, mut attempt: F) -> Result<T, RetryError<E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        P: RetryPredicate<E>,
    {
        self.run(&self.predicate, |_| attempt()).await
    }

    /// The loop, with another predicate (the policy's) and the deadline
    /// passed to each attempt (for the rate-limit wait).
    pub(crate) async fn run<Q, F, Fut, T, E>(
        &self,
        predicate: &Q,
        mut attempt: F,
    ) -> Result<T, RetryError<E>>
    where
        Q: RetryPredicate<E>,
        F: FnMut(Option<Instant>) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        // A deadline beyond the far future (`Duration::MAX`) is none.
        let deadline = self
            .deadline
            .filter(|d| *d <= crate::clock::FAR)
            .map(|d| Instant::now() + d);
        if let Some(budget) = &self.budget {
            budget.deposit();
        }
        let mut backoff = self.backoff.make_backoff();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let error = match attempt(deadline).await {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            let next = self.next_wait(predicate, &error, attempts, deadline, &mut backoff);
            let wake = match next {
                Ok(wake) => wake,
                Err(stop) => {
                    tracing::debug!(attempts, ?stop, "retry stopped");
                    return Err(RetryError {
                        error,
                        attempts,
                        stop,
                    });
                }
            };
            tracing::debug!(attempts, "retrying");
            tokio::time::sleep_until(wake).await;
        }
    }

    /// When the next attempt starts, or why there is none.
    fn next_wait<Q: RetryPredicate<E>, E>(
        &self,
        predicate: &Q,
        error: &E,
        attempts: u32,
        deadline: Option<Instant>,
        backoff: &mut B::Backoff,
    ) -> Result<Instant, Stop> {
        if !predicate.should_retry(error) {
            return Err(Stop::NotRetryable);
        }
        if attempts >= self.max_attempts {
            return Err(Stop::Exhausted);
        }
        let delay = backoff.next_delay();
        let after = predicate.retry_after(error);
        let cap = match (self.max_retry_after, deadline) {
            (Some(cap), _) => Some(cap),
            (None, None) => Some(Retry::MAX_RETRY_AFTER),
            (None, Some(_)) => None, // the deadline bounds it
        };
        if after.is_some_and(|after| cap.is_some_and(|cap| after > cap)) {
            return Err(Stop::RetryAfterTooLong);
        }
        let wait = after.map_or(delay, |after| after.max(delay));
        // A wait longer than ~30 years (`Duration::MAX` from a backoff or a
        // predicate) sleeps until the far future: never a panic.
        let wake = crate::clock::saturating_add(Instant::now(), wait);
        // Started before the deadline, counting tokio's rounding of the
        // sleep up to its 1 ms tick.
        if deadline.is_some_and(|d| !crate::clock::ends_before(wake, d)) {
            return Err(Stop::Deadline);
        }
        if self.budget.as_ref().is_some_and(|b| !b.try_withdraw()) {
            return Err(Stop::Budget);
        }
        Ok(wake)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::LimitError;

    struct After(u64);
    impl fusebox::RetryAfter for After {
        fn retry_after(&self) -> Option<fusebox::Duration> {
            Some(fusebox::Duration::from_millis(self.0))
        }
    }

    #[test]
    fn policy_refusals_are_never_retried() {
        let p = OnCallError(RetryAll);
        assert!(p.should_retry(&CallError::Inner(())));
        assert!(p.should_retry(&CallError::<()>::Timeout));
        assert!(!p.should_retry(&CallError::<()>::Open { retry_after: None }));
        let limited = CallError::<()>::RateLimited(LimitError::DeadlineExceeded {
            retry_after: Duration::from_secs(1),
        });
        assert!(!p.should_retry(&limited));
        assert_eq!(
            p.retry_after(&limited),
            None,
            "the limit's wait is not a server's"
        );
    }

    #[test]
    fn the_callee_retry_after_passes_through_the_policy() {
        let p = OnCallError(HonorRetryAfter(|_: &After| true));
        assert_eq!(
            p.retry_after(&CallError::Inner(After(1_500))),
            Some(Duration::from_millis(1_500))
        );
        assert_eq!(p.retry_after(&CallError::<After>::Timeout), None);
    }

    #[test]
    fn retry_error_shows_the_reason_and_sources_the_error() {
        let e = RetryError {
            error: std::io::Error::other("token=abc"),
            attempts: 2,
            stop: Stop::Budget,
        };
        assert_eq!(
            e.to_string(),
            "gave up after 2 attempts: the retry budget is spent"
        );
        let source = std::error::Error::source(&e).unwrap();
        assert_eq!(source.to_string(), "token=abc");
    }

    /// tokio rounds a sleep up to its 1 ms tick: a wait ending within the
    /// last millisecond before the deadline would start the attempt after
    /// it (found by a hostile review: 2.2 ms waited, the attempt started at
    /// 3 ms against a 2.5 ms deadline).
    #[tokio::test(start_paused = true)]
    async fn no_attempt_starts_after_the_deadline_whatever_the_tick() {
        use crate::policy::{ExponentialBackoffMaker, Jitter};
        let pause = |us| {
            ExponentialBackoffMaker::new(Duration::from_micros(us), 1.0, Duration::from_micros(us))
                .unwrap()
                .with_jitter(Jitter::None)
        };
        for (wait_us, deadline_us, attempts) in [
            (2_200, 2_500, 1),
            (1_000, 2_000, 2),
            (1_000, 1_999, 1),
            (2_200, 3_200, 2),
        ] {
            let retry = Retry::builder()
                .max_attempts(2)
                .backoff(pause(wait_us))
                .deadline(Duration::from_micros(deadline_us))
                .build();
            let start = Instant::now();
            let mut starts = Vec::new();
            let e = retry
                .call(|| {
                    starts.push(start.elapsed());
                    async { Err::<(), _>("down") }
                })
                .await
                .unwrap_err();
            let at = (wait_us, deadline_us, &starts);
            assert!(
                starts
                    .iter()
                    .all(|s| *s < Duration::from_micros(deadline_us)),
                "{at:?}"
            );
            assert_eq!(e.attempts, attempts, "{at:?}");
        }
    }

    /// A server's Retry-After of any size parked the caller up to 30 years
    /// (found by a hostile review); past `max_retry_after` the retry stops
    /// at once, and the cap itself is honoured to the tick.
    #[tokio::test(start_paused = true)]
    async fn a_retry_after_past_the_cap_stops_at_once() {
        let honour = |max: Duration| {
            Retry::builder()
                .max_attempts(2)
                .retry_if(HonorRetryAfter(RetryAll))
                .max_retry_after(max)
                .build()
        };
        for server_ms in [60_001, 3_600_000, u64::MAX / 1_000] {
            let start = Instant::now();
            let e = Retry::builder()
                .max_attempts(2)
                .honor_retry_after()
                .build()
                .call(|| async move { Err::<(), _>(After(server_ms)) })
                .await
                .unwrap_err();
            assert_eq!(
                (e.attempts, e.stop),
                (1, Stop::RetryAfterTooLong),
                "{server_ms}"
            );
            assert_eq!(start.elapsed(), Duration::ZERO);
        }
        let start = Instant::now();
        let e = honour(Duration::from_secs(5))
            .call(|| async { Err::<(), _>(After(5_000)) })
            .await
            .unwrap_err();
        assert_eq!((e.attempts, e.stop), (2, Stop::Exhausted));
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(5),
            "at the cap: waited"
        );
        // An explicit deadline bounds it instead of the default cap: a
        // server's 90 s is waited within 300 s, and stops a 60 s one.
        for (deadline_s, attempts, stop, waited_s) in
            [(300, 2, Stop::Exhausted, 90), (60, 1, Stop::Deadline, 0)]
        {
            let start = Instant::now();
            let e = Retry::builder()
                .max_attempts(2)
                .honor_retry_after()
                .deadline(Duration::from_secs(deadline_s))
                .build()
                .call(|| async { Err::<(), _>(After(90_000)) })
                .await
                .unwrap_err();
            assert_eq!((e.attempts, e.stop), (attempts, stop), "{deadline_s} s");
            assert_eq!(start.elapsed(), Duration::from_secs(waited_s));
        }
    }
}
