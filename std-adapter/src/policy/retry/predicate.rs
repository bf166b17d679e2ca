//! [`RetryPredicate`]: which errors are worth another attempt, and how
//! long the error asks to wait.

use std::time::Duration;

use crate::policy::CallError;

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
/// [`Policy`](crate::policy::Policy) uses it around its own layers; use it to put a
/// standalone [`Retry`](super::Retry) around a standalone [`Breaker`](crate::policy::Breaker).
///
/// With a [`RetryBudget`](crate::policy::RetryBudget), prefer a `Policy`:
/// a standalone `Retry` counts an attempt as started when it calls the
/// closure, so it cannot tell a call the breaker refused from one that
/// ran. A first attempt the open breaker refused is deposited (an outage's
/// refused calls buy retries for when it closes: ten of them, two retries
/// at 20 %), and a retry the breaker refused stays charged; a `Policy`
/// deposits and charges neither.
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
