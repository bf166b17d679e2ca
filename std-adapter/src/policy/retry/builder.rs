//! [`RetryBuilder`]: a [`Retry`]'s attempts, backoff, deadline, budget,
//! Retry-After cap and predicate.

use std::sync::Arc;
use std::time::Duration;

use super::{HonorRetryAfter, Retry, RetryAll};
use crate::policy::backoff::{ExponentialBackoffMaker, MakeBackoff};
use crate::policy::RetryBudget;

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
    pub(super) retry: Retry<B, P>,
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

    /// The overall deadline, from the start of the call: no retry starts
    /// at or after it (the first attempt always starts, even with a zero
    /// deadline: there is no error to return without it). One longer than
    /// ~30 years (`Duration::MAX`) is no deadline at all.
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
    /// [`Stop::RetryAfterTooLong`](super::Stop::RetryAfterTooLong), so that no server can park the caller
    /// for hours (or, with `u64::MAX` seconds, 30 years). By default: with
    /// a [`deadline`](Self::deadline), the deadline alone bounds it (a
    /// retry whose wait, the Retry-After and then the backoff's delay,
    /// would end after it stops with [`Stop::Deadline`](super::Stop::Deadline)); without
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

    /// Which errors to retry. It replaces the whole predicate, an earlier
    /// [`honor_retry_after`](Self::honor_retry_after) included: to honour
    /// the errors' Retry-After too, call that one *after* this one
    /// (`.retry_if(p).honor_retry_after()`); in the other order the
    /// Retry-After is silently not waited (noticed by a hostile review).
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
    ///
    /// The order with a Retry-After:
    ///
    /// ```
    /// use std::time::Duration;
    /// use fusebox_std::policy::{Retry, RetryPredicate};
    ///
    /// struct Busy;
    /// impl fusebox::RetryAfter for Busy {
    ///     fn retry_after(&self) -> Option<fusebox::Duration> {
    ///         Some(fusebox::Duration::from_secs(2))
    ///     }
    /// }
    /// let honoured = Retry::builder().retry_if(|_: &Busy| true).honor_retry_after().build();
    /// assert_eq!(honoured.predicate().retry_after(&Busy), Some(Duration::from_secs(2)));
    /// // `retry_if` last replaces the `HonorRetryAfter` wrapper too.
    /// let lost = Retry::builder().honor_retry_after().retry_if(|_: &Busy| true).build();
    /// assert_eq!(lost.predicate().retry_after(&Busy), None);
    /// ```
    pub fn retry_if<P2>(self, predicate: P2) -> RetryBuilder<B, P2> {
        self.map(|b| b, |_| predicate)
    }

    /// Also wait what the error's [`fusebox::RetryAfter`] names (see
    /// [`HonorRetryAfter`]), before the backoff's delay: the retry comes
    /// the delay after the Retry-After, so that callers told the same one
    /// spread over their jittered delays instead of retrying at once.
    /// It wraps the predicate set so far: call it after
    /// [`retry_if`](Self::retry_if), which replaces the whole predicate
    /// (this wrapper included).
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
    /// assert_eq!(start.elapsed(), Duration::from_millis(2_010)); // 2 s, then 10 ms
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
