//! [`KeyedError`]: why a keyed request, or a change of quota, was refused.

use core::fmt;

use crate::bucket::{InsufficientCapacity, QuotaError, RateLimited};

/// Why a keyed request was refused.
///
/// Non-exhaustive: match the variants you handle and keep a `_` arm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum KeyedError {
    /// The key's bucket (or the overflow bucket) is empty for now.
    RateLimited(RateLimited),
    /// More tokens than the key's burst were requested at once.
    InsufficientCapacity(InsufficientCapacity),
    /// No slot for a new key and the policy is [`FullPolicy::Reject`](super::FullPolicy::Reject).
    TableFull,
    /// The tier asked for (by [`try_acquire_tier`](super::KeyedLimiter::try_acquire_tier),
    /// or returned by the [tier function](super::KeyedLimiter::with_tier_fn) for a
    /// new key) is not below the limiter's `TIERS`: a caller's bug, never
    /// clamped to another tier. Nothing was charged or inserted.
    TierOutOfRange {
        /// The tier asked for.
        tier: usize,
    },
    /// The quota given to [`set_quota`](super::KeyedLimiter::set_quota) does not
    /// fit the slots' bucket word (see
    /// [`with_tiers`](super::KeyedLimiter::with_tiers)); nothing was changed.
    Quota(QuotaError),
}

impl fmt::Display for KeyedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RateLimited(e) => e.fmt(f),
            Self::InsufficientCapacity(e) => e.fmt(f),
            Self::TableFull => f.write_str("keyed limiter full: no idle slot for a new key"),
            Self::TierOutOfRange { tier } => write!(f, "no quota tier {tier} in this limiter"),
            Self::Quota(e) => e.fmt(f),
        }
    }
}
impl core::error::Error for KeyedError {}
impl From<RateLimited> for KeyedError {
    fn from(e: RateLimited) -> Self {
        Self::RateLimited(e)
    }
}
impl From<QuotaError> for KeyedError {
    fn from(e: QuotaError) -> Self {
        Self::Quota(e)
    }
}
