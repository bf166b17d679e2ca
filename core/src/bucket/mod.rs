//! Rate limiting: a lock-free GCRA [`TokenBucket`] in one atomic word.
//!
//! A token bucket holds up to `burst` tokens and refills `tokens` per
//! `period` ([`Quota`]); each request takes one or more. It is implemented
//! as GCRA (see the `gcra` module): the whole state is one atomic word, and
//! every decision is one load plus one compare-and-swap.
//!
//! # Exactness
//!
//! Over any interval of length `T`, a bucket admits at most
//! `burst + ⌊rate · T⌋` tokens, whatever the interleaving of callers: every
//! admission is a CAS from the state it was decided on. Rates are exact (no
//! rounding drift) whenever `tokens / gcd(tokens, period in µs) ≤ 65 536`,
//! which covers everything from one per day to ten million per second;
//! others round the refill interval up by less than 1/65 536 µs, which only
//! admits less.
//!
//! # Examples
//!
//! ```
//! use fusebox::bucket::{Quota, TokenBucket};
//! use fusebox::{Duration, Instant};
//!
//! let bucket = TokenBucket::new(Quota::per_second(2)?.with_burst(3)?);
//! let now = Instant::from_secs(10);
//! for _ in 0..3 {
//!     bucket.try_acquire(now)?; // the burst
//! }
//! let limited = bucket.try_acquire(now).unwrap_err();
//! assert_eq!(limited.retry_after, Duration::from_millis(500));
//! assert!(bucket.try_acquire(now + limited.retry_after).is_ok());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod gcra;
mod keyed;
mod quota;

pub use keyed::{FullPolicy, KeyedError, KeyedLimiter, KeyedMetrics, MAX_TIERS, PROBE};
pub use quota::{Quota, QuotaError};

use core::fmt;

use crate::sync::{const_fn_unless_loom, Ordering, TatWord};
use crate::{Duration, Instant};

/// A request was refused for now; retrying after `retry_after` succeeds if
/// nobody else takes the tokens first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RateLimited {
    /// Time until enough tokens are back (rounded up to a microsecond).
    pub retry_after: Duration,
}

/// More tokens were requested at once than the bucket can ever hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct InsufficientCapacity {
    /// Tokens asked for.
    pub requested: u32,
    /// The bucket's burst.
    pub burst: u32,
}

/// Why [`TokenBucket::try_acquire_n`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum AcquireError {
    /// Not now; see [`RateLimited::retry_after`].
    RateLimited(RateLimited),
    /// Never: the request exceeds the burst.
    InsufficientCapacity(InsufficientCapacity),
}

impl fmt::Display for RateLimited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rate limited, retry after {:?}", self.retry_after)
    }
}
impl fmt::Display for InsufficientCapacity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} tokens requested, more than the burst of {}",
            self.requested, self.burst
        )
    }
}
impl fmt::Display for AcquireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RateLimited(e) => e.fmt(f),
            Self::InsufficientCapacity(e) => e.fmt(f),
        }
    }
}
impl core::error::Error for RateLimited {}
impl core::error::Error for InsufficientCapacity {}
impl core::error::Error for AcquireError {}
impl From<RateLimited> for AcquireError {
    fn from(e: RateLimited) -> Self {
        Self::RateLimited(e)
    }
}
impl From<InsufficientCapacity> for AcquireError {
    fn from(e: InsufficientCapacity) -> Self {
        Self::InsufficientCapacity(e)
    }
}

/// A bucket's state as plain data, relative to the `now` it was taken at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct BucketSnapshot {
    /// Time until the bucket is full again (zero: full), rounded up.
    pub until_full: Duration,
}

/// A lock-free GCRA token bucket.
///
/// `Sync`; [`TokenBucket::new`] is `const`, so a bucket can be a `static`.
///
/// # Size
///
/// One atomic word (8 bytes where the target has 64-bit atomics, 4 on
/// Cortex-M) plus the 56-byte [`Quota`] (rate, burst and the pre-computed
/// GCRA parameters): 64 bytes, one cache line, on x86-64 and on Cortex-M.
#[derive(Debug)]
pub struct TokenBucket {
    /// Theoretical arrival time in wrapped scaled units (see `gcra`).
    tat: TatWord,
    quota: Quota,
}

impl TokenBucket {
    const_fn_unless_loom! {
        /// A full bucket.
        pub fn new(quota: Quota) -> Self {
            Self { tat: TatWord::new(gcra::FRESH as _), quota }
        }
    }

    /// The quota.
    pub const fn quota(&self) -> &Quota {
        &self.quota
    }

    /// Takes one token at `now`.
    ///
    /// # Errors
    ///
    /// [`RateLimited`] with the exact time until a token is back.
    #[inline]
    pub fn try_acquire(&self, now: Instant) -> Result<(), RateLimited> {
        self.take(1, now)
    }

    /// Takes `n` tokens at `now`, all or none. `n = 0` always succeeds.
    ///
    /// # Errors
    ///
    /// [`AcquireError::InsufficientCapacity`] if `n` exceeds the burst (it
    /// could never succeed); [`AcquireError::RateLimited`] otherwise.
    pub fn try_acquire_n(&self, n: u32, now: Instant) -> Result<(), AcquireError> {
        if n > self.quota.burst() {
            return Err(InsufficientCapacity {
                requested: n,
                burst: self.quota.burst(),
            }
            .into());
        }
        Ok(self.take(n, now)?)
    }

    #[inline]
    fn take(&self, n: u32, now: Instant) -> Result<(), RateLimited> {
        take(&self.tat, &self.quota, n, now)
    }

    /// Whole tokens available at `now`.
    pub fn available(&self, now: Instant) -> u32 {
        let tat = load(&self.tat);
        self.quota.params().available(tat, now.as_micros()) as u32
    }

    /// Refills the bucket completely.
    pub fn reset(&self) {
        self.tat.store(gcra::FRESH as _, Ordering::Release);
    }

    /// The state at `now`, as plain data.
    pub fn snapshot(&self, now: Instant) -> BucketSnapshot {
        let params = self.quota.params();
        let drained = params.drained(load(&self.tat), now.as_micros());
        BucketSnapshot {
            until_full: Duration::from_micros(drained.div_ceil(params.scale)),
        }
    }

    /// Restores a snapshot taken (with the same quota) at another `now`.
    /// An `until_full` beyond an empty bucket is clamped to empty, so a
    /// hostile snapshot can only ever *deny* tokens.
    pub fn restore(&self, snapshot: &BucketSnapshot, now: Instant) {
        let params = self.quota.params();
        let drained = snapshot
            .until_full
            .as_micros()
            .saturating_mul(params.scale)
            .min(params.capacity);
        let tat = params.at(now.as_micros(), drained);
        self.tat.store(tat as _, Ordering::Release);
    }

    /// Changes the quota at run time, keeping the tokens available now:
    /// raising the burst grants no free tokens, lowering it clamps the
    /// available tokens to the new burst. Exclusive access (`&mut`) keeps
    /// the word and its interpretation consistent.
    pub fn reconfigure(&mut self, quota: Quota, now: Instant) {
        let old = *self.quota.params();
        let new = *quota.params();
        let now = now.as_micros();
        let drained = old.drained(load(&self.tat), now);
        let tat = new.carried_over(&old, drained, now);
        self.tat.store(tat as _, Ordering::Release);
        self.quota = quota;
    }
}

/// The arrival-time word, widened to the kernel's `u64`.
#[inline]
pub(crate) fn load(tat: &TatWord) -> u64 {
    widen(tat.load(Ordering::Acquire))
}

#[inline]
#[allow(clippy::useless_conversion)] // u32 -> u64 on Cortex-M, u64 -> u64 elsewhere
fn widen<T: Into<u64>>(word: T) -> u64 {
    word.into()
}

/// One GCRA decision on `tat`: a load, then a CAS from exactly the state
/// the decision was made on (so concurrent callers can never both spend the
/// same token). `n <= quota.burst()` is the caller's to check.
#[inline]
pub(crate) fn take(tat: &TatWord, quota: &Quota, n: u32, now: Instant) -> Result<(), RateLimited> {
    let params = quota.params();
    let now = now.as_micros();
    let mut current = tat.load(Ordering::Acquire);
    loop {
        let new = params
            .decide(widen(current), now, n)
            .map_err(|wait| RateLimited {
                retry_after: Duration::from_micros(wait),
            })?;
        match tat.compare_exchange_weak(current, new as _, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Ok(()),
            Err(actual) => current = actual,
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests;

// The documented size, checked by every build, the thumb targets included.
#[cfg(not(loom))]
const _: () = assert!(core::mem::size_of::<TokenBucket>() == 64);
