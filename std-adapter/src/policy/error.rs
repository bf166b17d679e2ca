//! [`CallError`]: why a call through a policy did not return the callee's
//! value; [`LimitError`]: why a rate-limit wait ended without tokens.

use std::fmt;
use std::time::Duration;

use super::bulkhead::BulkheadRejection;

/// Why a call made through a policy layer did not return the callee's `Ok`.
///
/// Each layer produces its own variants: [`Breaker`](super::Breaker)
/// `Open`, `Timeout` and `Inner`; the rate-limit wait of a
/// [`Policy`](super::Policy) `RateLimited`; a [`Bulkhead`](super::Bulkhead)
/// `Bulkhead`. Non-exhaustive: match the variants you handle and keep a `_`
/// arm.
///
/// `Display` never prints the callee's error (it may carry URLs, tokens or
/// user data): it says which layer refused, and [`source`] returns the
/// callee's error for whoever decides to log it.
///
/// [`source`]: std::error::Error::source
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use fusebox_std::CallError;
///
/// let open: CallError<std::io::Error> = CallError::Open { retry_after: Some(Duration::from_secs(2)) };
/// assert_eq!(open.to_string(), "circuit breaker open, retry after 2s");
/// let inner = CallError::Inner(std::io::Error::other("password=hunter2"));
/// assert_eq!(inner.to_string(), "the call failed"); // no secret in the message
/// assert!(std::error::Error::source(&inner).is_some());
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum CallError<E> {
    /// The circuit breaker refused the call: open, forced open, or
    /// half-open with every trial in flight.
    Open {
        /// When the breaker will let a trial through; `None` when that
        /// depends on other calls finishing or on an operator.
        retry_after: Option<Duration>,
    },
    /// The call took longer than its timeout (and was dropped).
    Timeout,
    /// A rate limit would not admit the call in time.
    RateLimited(LimitError),
    /// The bulkhead had no room for the call.
    Bulkhead(BulkheadRejection),
    /// The callee returned this error.
    Inner(E),
}

impl<E> CallError<E> {
    /// Whether a circuit breaker refused the call.
    ///
    /// ```
    /// use fusebox_std::CallError;
    ///
    /// assert!(CallError::<()>::Open { retry_after: None }.is_open());
    /// assert!(!CallError::<()>::Timeout.is_open());
    /// ```
    pub const fn is_open(&self) -> bool {
        matches!(self, Self::Open { .. })
    }

    /// Whether the call timed out.
    ///
    /// ```
    /// use fusebox_std::CallError;
    ///
    /// assert!(CallError::<()>::Timeout.is_timeout());
    /// ```
    pub const fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout)
    }

    /// The callee's error, if that is what this is.
    ///
    /// ```
    /// use fusebox_std::CallError;
    ///
    /// assert_eq!(CallError::Inner(404).inner(), Some(&404));
    /// assert_eq!(CallError::<u16>::Timeout.inner(), None);
    /// ```
    pub const fn inner(&self) -> Option<&E> {
        match self {
            Self::Inner(e) => Some(e),
            _ => None,
        }
    }

    /// The callee's error, if that is what this is.
    ///
    /// ```
    /// use fusebox_std::CallError;
    ///
    /// assert_eq!(CallError::Inner("boom").into_inner(), Some("boom"));
    /// ```
    pub fn into_inner(self) -> Option<E> {
        match self {
            Self::Inner(e) => Some(e),
            _ => None,
        }
    }
}

impl<E> fmt::Display for CallError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Open { retry_after: None } => f.write_str("circuit breaker open"),
            Self::Open {
                retry_after: Some(after),
            } => write!(f, "circuit breaker open, retry after {after:?}"),
            Self::Timeout => f.write_str("the call timed out"),
            Self::RateLimited(e) => write!(f, "rate limited: {e}"),
            Self::Bulkhead(e) => write!(f, "bulkhead: {e}"),
            Self::Inner(_) => f.write_str("the call failed"),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for CallError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Inner(e) => Some(e),
            Self::RateLimited(e) => Some(e),
            Self::Bulkhead(e) => Some(e),
            Self::Open { .. } | Self::Timeout => None,
        }
    }
}

/// When a retry could succeed: the breaker's reopening time or the rate
/// limit's wait; `None` for the other variants (the callee's own
/// Retry-After, if any, is the callee error's business).
impl<E> fusebox::RetryAfter for CallError<E> {
    fn retry_after(&self) -> Option<fusebox::Duration> {
        match self {
            Self::Open { retry_after } => retry_after.map(fusebox::Duration::from),
            Self::RateLimited(LimitError::DeadlineExceeded { retry_after }) => {
                Some((*retry_after).into())
            }
            _ => None,
        }
    }
}

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
    /// `FullPolicy::Reject`); from a [`KeyedLimiter`](super::KeyedLimiter)
    /// wait, none freed within a slot's refill time or before the deadline.
    TableFull,
    /// A keyed limiter's tier function named a tier it does not have.
    TierOutOfRange {
        /// The tier named.
        tier: usize,
    },
    /// A shared limit's backend refused the request itself (a key or rule
    /// it cannot store). Never a Redis outage: a shared limiter's
    /// `Degrade` policy decides while Redis is out (feature `redis`).
    Invalid(&'static str),
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
            Self::Invalid(why) => write!(f, "the shared rate limit refused the request: {why}"),
        }
    }
}

impl std::error::Error for LimitError {}

#[cfg(test)]
mod tests {
    use super::*;
    use fusebox::RetryAfter;

    #[test]
    fn display_names_the_layer_not_the_secret() {
        let e: CallError<std::io::Error> = CallError::Inner(std::io::Error::other("token=abc"));
        assert!(!e.to_string().contains("abc"));
        assert_eq!(CallError::<()>::Timeout.to_string(), "the call timed out");
        let full: CallError<()> = CallError::Bulkhead(BulkheadRejection::Full);
        assert!(full.to_string().starts_with("bulkhead"));
    }

    #[test]
    fn retry_after_of_each_refusal() {
        let open: CallError<()> = CallError::Open {
            retry_after: Some(Duration::from_millis(1_500)),
        };
        assert_eq!(
            open.retry_after(),
            Some(fusebox::Duration::from_millis(1_500))
        );
        assert_eq!(CallError::<()>::Timeout.retry_after(), None);
        assert!(open.is_open() && !open.is_timeout());
        assert_eq!(CallError::Inner(3).into_inner(), Some(3));
    }
}
