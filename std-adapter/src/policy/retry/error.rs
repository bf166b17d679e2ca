//! [`RetryError`]: the last error, and why retrying [`Stop`]ped.

use std::fmt;

/// Why [`Retry`](super::Retry) gave up.
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
    /// [`max_retry_after`](super::RetryBuilder::max_retry_after): the caller is
    /// told now, instead of being parked that long.
    RetryAfterTooLong,
}

/// The last error, with how many attempts were made and why retrying
/// stopped.
///
/// `Display` names the reason, never the error (see [`CallError`](crate::CallError));
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
