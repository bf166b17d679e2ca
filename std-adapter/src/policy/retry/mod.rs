//! [`Retry`]: attempts, exponential backoff with full jitter, a retry
//! predicate, an overall deadline, a shared [`RetryBudget`] and the
//! server's Retry-After.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::backoff::{ExponentialBackoffMaker, MakeBackoff};
use super::{Backoff, RetryBudget};

mod builder;
mod error;
mod predicate;
#[cfg(test)]
mod tests;

pub use builder::RetryBuilder;
pub use error::{RetryError, Stop};
pub(crate) use predicate::ByRef;
pub use predicate::{HonorRetryAfter, OnCallError, RetryAll, RetryPredicate};

/// Retries a call: up to `max_attempts` attempts, waiting between them what
/// the backoff says (or longer, if the error names a Retry-After), within
/// an overall deadline and a shared [`RetryBudget`].
///
/// Before each retry, in this order: the predicate must accept the error;
/// attempts must be left; a Retry-After must be at most
/// [`max_retry_after`](RetryBuilder::max_retry_after) (by default 60 s
/// without a deadline, the deadline's bound with one);
/// the wait is the backoff's delay, after the Retry-After if there is one
/// (`Retry-After + backoff`: a Retry-After is a minimum, and the jittered
/// delay on top of it spreads the callers one overload told the same
/// Retry-After, who would otherwise all retry at one instant); the
/// retry must start *before* the deadline (else it stops at once, without
/// sleeping: its timer never sleeps past the deadline; a wait ending
/// within 1 ms of it counts as past, since tokio rounds every sleep up to
/// its 1 ms tick; a runtime too busy to wake it on time can still start
/// it late); the budget must grant it. Every first attempt is deposited in
/// the budget when it starts (in a [`Policy`](super::Policy), once every
/// layer has admitted it: one refused by an open breaker or the rate limit
/// puts no load on the callee, and deposits nothing). All waits are
/// `tokio::time` sleeps.
///
/// # Cancellation
///
/// Dropping the future of [`call`](Self::call) drops the attempt in flight
/// or the sleep. A retry granted by the budget and cancelled in its
/// backoff, before its attempt started, is given back to the budget (to
/// the window slot it was counted in, if that slot is still in the
/// window): callers with short timeouts do not drain a shared budget with
/// retries never sent. One cancelled after its attempt started stays
/// counted. In a [`Policy`](super::Policy), an attempt starts when every
/// layer has admitted it: a retry dropped while it waits for a rate-limit
/// token is given back too.
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

impl Retry {
    /// The longest Retry-After honoured by default (60 s; see
    /// [`RetryBuilder::max_retry_after`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// use fusebox_std::policy::Retry;
    ///
    /// assert_eq!(Retry::MAX_RETRY_AFTER, Duration::from_secs(60));
    /// ```
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
        self.run(&self.predicate, |_, granted| {
            granted.start();
            attempt()
        })
        .await
    }

    /// The loop, with another predicate (the policy's), the deadline
    /// passed to each attempt (for the rate-limit wait), and the retry's
    /// grant, for the attempt to [`start`](Granted::start) once it runs
    /// (dropped before, it is given back to the budget).
    pub(crate) async fn run<'a, Q, F, Fut, T, E>(
        &'a self,
        predicate: &Q,
        mut attempt: F,
    ) -> Result<T, RetryError<E>>
    where
        Q: RetryPredicate<E>,
        F: FnMut(Option<Instant>, Granted<'a>) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        // A deadline beyond the far future (`Duration::MAX`) is none.
        let deadline = self
            .deadline
            .filter(|d| *d <= crate::clock::FAR)
            .map(|d| Instant::now() + d);
        let mut backoff = self.backoff.make_backoff();
        let mut attempts = 0;
        // The first attempt was granted nothing, and is deposited in the
        // budget once it starts.
        let mut granted = Granted {
            refund: None,
            deposit: self.budget.as_deref(),
        };
        loop {
            attempts += 1;
            let error = match attempt(deadline, granted).await {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            let next = self.next_wait(predicate, &error, attempts, deadline, &mut backoff);
            let (wake, slot) = match next {
                Ok(next) => next,
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
            // Cancelled in the backoff, the retry never runs: its budget
            // is given back (found by a hostile review: callers with
            // short timeouts drained a shared budget without a retry), as
            // it is if its attempt drops it before it starts.
            granted = Granted {
                refund: self.budget.as_deref().zip(slot),
                deposit: None,
            };
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
    ) -> Result<(Instant, Option<u64>), Stop> {
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
        // A Retry-After is a minimum, and the backoff's delay comes on
        // top of it: every caller told the same Retry-After (by one
        // server, in one overload) would otherwise retry at the same
        // instant, bringing back the spike it was told to wait out; the
        // jitter spreads them over the delay after it.
        let wait = after.map_or(delay, |after| after.saturating_add(delay));
        // A wait longer than ~30 years (`Duration::MAX` from a backoff or a
        // predicate) sleeps until the far future: never a panic.
        let wake = crate::clock::saturating_add(Instant::now(), wait);
        // Started before the deadline, counting tokio's rounding of the
        // sleep up to its 1 ms tick.
        if deadline.is_some_and(|d| !crate::clock::ends_before(wake, d)) {
            return Err(Stop::Deadline);
        }
        let granted = match &self.budget {
            None => None,
            Some(budget) => Some(budget.withdraw().ok_or(Stop::Budget)?),
        };
        Ok((wake, granted))
    }
}

/// An attempt not started yet. A retry granted by the budget is given
/// back to it if dropped (the caller was cancelled in the backoff, or
/// before the attempt ran: a policy's attempt waiting for a rate-limit
/// token, or refused by a layer) and counted for good once
/// [`start`](Self::start)ed; a first attempt is deposited in the budget
/// once started, never if it does not run (refused by an open breaker or
/// the rate limit, it put no load on the callee, and its deposit would buy
/// retries beyond the share of the load the budget allows as soon as the
/// breaker closes).
pub(crate) struct Granted<'a> {
    /// The budget and the slot the retry was counted in; `None` for a
    /// first attempt, without a budget, or once started.
    refund: Option<(&'a RetryBudget, u64)>,
    /// The budget a first attempt is deposited in when it starts.
    deposit: Option<&'a RetryBudget>,
}

impl Granted<'_> {
    /// The attempt runs: a retry stays counted, a first attempt is
    /// deposited.
    pub(crate) fn start(mut self) {
        self.refund = None;
        if let Some(budget) = self.deposit.take() {
            budget.deposit();
        }
    }
}

impl Drop for Granted<'_> {
    fn drop(&mut self) {
        if let Some((budget, slot)) = self.refund {
            budget.refund(slot);
        }
    }
}
