//! [`RetryAfter`]: one way to ask any refusal when to try again.

use crate::breaker::Rejected;
use crate::bucket::{AcquireError, InsufficientCapacity, KeyedError, RateLimited};
use crate::Duration;

/// A refusal that may say when a retry can succeed: what an HTTP layer
/// turns into `Retry-After`, and what a retry policy waits for.
///
/// `None` means no wait will help by itself: a request larger than the
/// burst, a full keyed table, a breaker forced open, or a half-open breaker
/// whose trials are all in flight (it depends on other calls finishing).
///
/// # Examples
///
/// ```
/// use fusebox::bucket::{Quota, TokenBucket};
/// use fusebox::{Duration, Instant, RetryAfter};
///
/// let bucket = TokenBucket::new(Quota::per_second(1)?);
/// let now = Instant::from_secs(5);
/// bucket.try_acquire(now)?;
/// let refusal = bucket.try_acquire(now).unwrap_err();
/// assert_eq!(refusal.retry_after(), Some(Duration::from_secs(1)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait RetryAfter {
    /// When a retry can succeed, if waiting alone can make it succeed.
    fn retry_after(&self) -> Option<Duration>;
}

impl RetryAfter for Rejected {
    fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl RetryAfter for RateLimited {
    fn retry_after(&self) -> Option<Duration> {
        Some(self.retry_after)
    }
}

impl RetryAfter for InsufficientCapacity {
    fn retry_after(&self) -> Option<Duration> {
        None
    }
}

impl RetryAfter for AcquireError {
    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited(e) => e.retry_after(),
            Self::InsufficientCapacity(e) => e.retry_after(),
        }
    }
}

impl RetryAfter for KeyedError {
    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited(e) => e.retry_after(),
            Self::InsufficientCapacity(e) => e.retry_after(),
            Self::TableFull | Self::TierOutOfRange { .. } | Self::Quota(_) => None,
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::breaker::State;

    #[test]
    fn every_refusal_answers() {
        let limited = RateLimited {
            retry_after: Duration::from_millis(3),
        };
        let never = InsufficientCapacity {
            requested: 5,
            burst: 2,
        };
        assert_eq!(limited.retry_after(), Some(Duration::from_millis(3)));
        assert_eq!(
            AcquireError::from(limited).retry_after(),
            Some(Duration::from_millis(3))
        );
        assert_eq!(AcquireError::from(never).retry_after(), None);
        assert_eq!(
            KeyedError::from(limited).retry_after(),
            Some(Duration::from_millis(3))
        );
        assert_eq!(KeyedError::TableFull.retry_after(), None);
        let open = Rejected {
            state: State::Open,
            retry_after: Some(Duration::from_secs(2)),
            transition: None,
        };
        assert_eq!(RetryAfter::retry_after(&open), Some(Duration::from_secs(2)));
        let trials_busy = Rejected {
            state: State::HalfOpen,
            retry_after: None,
            transition: None,
        };
        assert_eq!(RetryAfter::retry_after(&trials_busy), None);
    }
}
