//! Rate limiting: a lock-free GCRA [`TokenBucket`] in one atomic word.
//!
//! A token bucket holds up to `burst` tokens and refills `tokens` per
//! `period` ([`Quota`]); each request takes one or more. It is implemented
//! as GCRA (see the `gcra` module): the whole state is one atomic word, and
//! every decision is one load plus one compare-and-swap. The word also
//! names which of two quota slots it was written under (the `tagged`
//! module), so that [`TokenBucket::set_quota`] can change the quota of a
//! shared bucket while decisions go on, none of them waiting and each one
//! made wholly under the old quota or wholly under the new.
//!
//! # Exactness
//!
//! Over any interval of length `T`, a bucket admits at most
//! `burst + ⌊rate · T⌋` tokens, whatever the interleaving of callers: every
//! admission is a CAS from the state it was decided on. Rates are exact (no
//! rounding drift) whenever `tokens / gcd(tokens, period in µs) ≤ 65 536`,
//! which covers everything from one per day to ten million per second;
//! others round the refill interval up by less than 1/65 536 µs, which only
//! admits less. One more exception, which also only admits less: the
//! stored word's all-zero value means "never used" (full), so an admission
//! whose new state would land exactly on a multiple of the wrap of the
//! word its time is kept in is stored one scaled unit later, and a
//! `retry_after` or `until_full` read from that state is then up to one
//! microsecond long.
//!
//! Across quota changes the bound is the larger burst plus the larger rate
//! times `T`, when no call's `now` is earlier than one already made; a
//! change whose `now` is out of order dates its change of *rate* to that
//! `now` (never its tokens, see [`TokenBucket::set_quota`]), and the bound
//! then holds over the intervals that contain that `now`.
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
mod tagged;

pub use keyed::{FullPolicy, KeyedError, KeyedLeft, KeyedLimiter, KeyedMetrics, MAX_TIERS, PROBE};
pub use quota::{Quota, QuotaError};

use core::fmt;

use crate::sync::const_fn_unless_loom;
use crate::{Duration, Instant};
use tagged::{Refusal, Tagged};

/// A request was refused for now; retrying after `retry_after` succeeds if
/// nobody else takes the tokens first.
///
/// # Examples
///
/// ```
/// use fusebox::bucket::{Quota, RateLimited, TokenBucket};
/// use fusebox::{Duration, Instant};
///
/// let bucket = TokenBucket::new(Quota::per_second(1)?);
/// let now = Instant::from_secs(1);
/// assert!(bucket.try_acquire(now).is_ok());
/// let RateLimited { retry_after } = bucket.try_acquire(now).unwrap_err();
/// assert_eq!(retry_after, Duration::from_secs(1));
/// assert!(bucket.try_acquire(now + retry_after).is_ok());
/// # Ok::<(), fusebox::bucket::QuotaError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RateLimited {
    /// Time until enough tokens are back (rounded up to a microsecond).
    pub retry_after: Duration,
}

/// More tokens were requested at once than the bucket can ever hold.
///
/// # Examples
///
/// ```
/// use fusebox::bucket::{AcquireError, InsufficientCapacity, Quota, TokenBucket};
/// use fusebox::Instant;
///
/// let bucket = TokenBucket::new(Quota::per_second(10)?);
/// let refused = bucket.try_acquire_n(11, Instant::ZERO).unwrap_err();
/// let expected = InsufficientCapacity { requested: 11, burst: 10 };
/// assert_eq!(refused, AcquireError::InsufficientCapacity(expected));
/// # Ok::<(), fusebox::bucket::QuotaError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct InsufficientCapacity {
    /// Tokens asked for.
    pub requested: u32,
    /// The bucket's burst.
    pub burst: u32,
}

/// Why [`TokenBucket::try_acquire_n`] refused.
///
/// # Examples
///
/// ```
/// use fusebox::bucket::{AcquireError, Quota, TokenBucket};
/// use fusebox::{Duration, Instant};
///
/// let bucket = TokenBucket::new(Quota::per_second(10)?);
/// let now = Instant::from_secs(1);
/// assert!(bucket.try_acquire_n(6, now).is_ok());
/// // 4 left: 6 more is a matter of time, 11 can never fit.
/// match bucket.try_acquire_n(6, now) {
///     Err(AcquireError::RateLimited(e)) => assert_eq!(e.retry_after, Duration::from_millis(200)),
///     other => panic!("{other:?}"),
/// }
/// assert!(matches!(
///     bucket.try_acquire_n(11, now),
///     Err(AcquireError::InsufficientCapacity(_))
/// ));
/// # Ok::<(), fusebox::bucket::QuotaError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
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
///
/// # Examples
///
/// ```
/// use fusebox::bucket::{Quota, TokenBucket};
/// use fusebox::{Duration, Instant};
///
/// let quota = Quota::per_second(10)?;
/// let bucket = TokenBucket::new(quota);
/// assert!(bucket.try_acquire_n(5, Instant::from_secs(1)).is_ok());
/// let saved = bucket.snapshot(Instant::from_secs(1));
/// assert_eq!(saved.until_full, Duration::from_millis(500));
///
/// // After a restart whose clock has another origin: still 5 tokens short.
/// let restored = TokenBucket::new(quota);
/// restored.restore(&saved, Instant::from_secs(7));
/// assert_eq!(restored.available(Instant::from_secs(7)), 5);
/// # Ok::<(), fusebox::bucket::QuotaError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct BucketSnapshot {
    /// Time until the bucket is full again (zero: full), rounded up.
    pub until_full: Duration,
}

/// A lock-free GCRA token bucket whose quota can change at run time.
///
/// `Sync`; [`TokenBucket::new`] is `const`, so a bucket can be a `static`.
/// Every decision is one load and one compare-and-swap of the arrival-time
/// word; [`set_quota`](Self::set_quota) changes the quota under `&self`
/// (through an `Arc`, or in a `static`) without ever making a decision wait.
///
/// # Examples
///
/// ```
/// use fusebox::bucket::Quota;
/// use fusebox::{Duration, Instant, TokenBucket};
///
/// // 10 per second, bursts of up to 10; a `static` works too (`new` is `const`).
/// let bucket = TokenBucket::new(Quota::per_second(10)?);
/// let now = Instant::from_secs(1);
/// for _ in 0..10 {
///     bucket.try_acquire(now)?;
/// }
/// let limited = bucket.try_acquire(now).unwrap_err(); // a 429
/// assert_eq!(limited.retry_after, Duration::from_millis(100));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Size
///
/// One atomic arrival-time word (8 bytes where the target has 64-bit
/// atomics, 4 on Cortex-M) and two quota slots (the one in force and the
/// next, 48 or 32 bytes each): 104 bytes on x86-64, 68 on Cortex-M.
pub struct TokenBucket {
    /// The arrival-time word tagged with its quota slot (see `tagged`).
    tat: Tagged,
}

impl TokenBucket {
    const_fn_unless_loom! {
        /// A full bucket.
        ///
        /// # Examples
        ///
        /// ```
        /// use fusebox::bucket::{Quota, TokenBucket};
        /// use fusebox::Instant;
        ///
        /// static LIMITER: TokenBucket = TokenBucket::new(match Quota::per_second(5) {
        ///     Ok(q) => q,
        ///     Err(_) => panic!("bad quota"),
        /// });
        /// assert_eq!(LIMITER.available(Instant::ZERO), 5);
        /// ```
        pub fn new(quota: Quota) -> Self {
            Self { tat: Tagged::new(&quota) }
        }
    }

    /// The quota in force.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::bucket::{Quota, TokenBucket};
    ///
    /// let bucket = TokenBucket::new(Quota::per_second(5)?);
    /// assert_eq!(bucket.quota().burst(), 5);
    /// # Ok::<(), fusebox::bucket::QuotaError>(())
    /// ```
    pub fn quota(&self) -> Quota {
        self.tat.quota()
    }

    /// Takes one token at `now`.
    ///
    /// # Errors
    ///
    /// [`RateLimited`] with the exact time until a token is back.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::bucket::{Quota, TokenBucket};
    /// use fusebox::{Duration, Instant};
    ///
    /// let bucket = TokenBucket::new(Quota::per_second(2)?);
    /// let now = Instant::from_secs(1);
    /// assert!(bucket.try_acquire(now).is_ok());
    /// assert!(bucket.try_acquire(now).is_ok());
    /// assert_eq!(bucket.try_acquire(now).unwrap_err().retry_after, Duration::from_millis(500));
    /// # Ok::<(), fusebox::bucket::QuotaError>(())
    /// ```
    #[inline]
    pub fn try_acquire(&self, now: Instant) -> Result<(), RateLimited> {
        self.tat.take(1, now, Refusal::limited)
    }

    /// Takes `n` tokens at `now`, all or none. `n = 0` always succeeds.
    ///
    /// # Errors
    ///
    /// [`AcquireError::InsufficientCapacity`] if `n` exceeds the burst (it
    /// could never succeed); [`AcquireError::RateLimited`] otherwise.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::bucket::{Quota, TokenBucket};
    /// use fusebox::Instant;
    ///
    /// let bucket = TokenBucket::new(Quota::per_second(10)?);
    /// let now = Instant::from_secs(1);
    /// assert!(bucket.try_acquire_n(7, now).is_ok());
    /// // 3 left: a request for 5 is refused whole and takes none of them.
    /// assert!(bucket.try_acquire_n(5, now).is_err());
    /// assert_eq!(bucket.available(now), 3);
    /// assert!(bucket.try_acquire_n(0, now).is_ok());
    /// # Ok::<(), fusebox::bucket::QuotaError>(())
    /// ```
    pub fn try_acquire_n(&self, n: u32, now: Instant) -> Result<(), AcquireError> {
        if n == 0 {
            return Ok(());
        }
        self.tat.take(n, now, |refusal| match refusal {
            Refusal::Never(burst) => InsufficientCapacity {
                requested: n,
                burst,
            }
            .into(),
            wait @ Refusal::Wait(_) => wait.limited().into(),
        })
    }

    /// Whole tokens available at `now`.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::bucket::{Quota, TokenBucket};
    /// use fusebox::{Duration, Instant};
    ///
    /// let bucket = TokenBucket::new(Quota::per_second(10)?);
    /// let now = Instant::from_secs(1);
    /// assert_eq!(bucket.available(now), 10);
    /// assert!(bucket.try_acquire_n(10, now).is_ok());
    /// // 150 ms refill 1.5 tokens: one whole token.
    /// assert_eq!(bucket.available(now + Duration::from_millis(150)), 1);
    /// # Ok::<(), fusebox::bucket::QuotaError>(())
    /// ```
    pub fn available(&self, now: Instant) -> u32 {
        self.tat.available(now)
    }

    /// Refills the bucket completely: full for any `now` within years of
    /// its last admission, either way (on Cortex-M within about half the
    /// arrival-time word's range less the burst span: `2³⁰ / scale` µs
    /// less `burst × period / tokens` and 0.52 s, the scale being `tokens
    /// / gcd(tokens, period in µs)`, or the coarser power of two the quota
    /// takes where that leaves its burst no room (see the crate docs' word
    /// table; 541 a second with its burst: scale 512, ±0.57 s): 17.9 min
    /// at scale 1 with a short burst, 0.5 s at the largest 32-bit scale,
    /// 1 023);
    /// a bucket never used stays full at any time. For a refill dated by
    /// your clock, [`restore`](Self::restore) a zero `until_full` at `now`.
    ///
    /// A change of state like [`set_quota`](Self::set_quota): it takes the
    /// critical section (the target's `critical-section` implementation;
    /// the `std` feature provides one on hosts) and never makes a decision
    /// wait.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::bucket::{Quota, TokenBucket};
    /// use fusebox::Instant;
    ///
    /// let bucket = TokenBucket::new(Quota::per_second(10)?);
    /// let now = Instant::from_secs(1);
    /// assert!(bucket.try_acquire_n(10, now).is_ok());
    /// bucket.reset();
    /// assert_eq!(bucket.available(now), 10);
    /// # Ok::<(), fusebox::bucket::QuotaError>(())
    /// ```
    pub fn reset(&self) {
        crate::sync::critical(|| self.tat.reset());
    }

    /// The state at `now`, as plain data.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::bucket::{Quota, TokenBucket};
    /// use fusebox::{Duration, Instant};
    ///
    /// let bucket = TokenBucket::new(Quota::per_second(4)?);
    /// let now = Instant::from_secs(1);
    /// assert_eq!(bucket.snapshot(now).until_full, Duration::ZERO);
    /// assert!(bucket.try_acquire(now).is_ok());
    /// assert_eq!(bucket.snapshot(now).until_full, Duration::from_millis(250));
    /// # Ok::<(), fusebox::bucket::QuotaError>(())
    /// ```
    pub fn snapshot(&self, now: Instant) -> BucketSnapshot {
        BucketSnapshot {
            until_full: self.tat.until_full(now),
        }
    }

    /// Restores a snapshot taken (with the same quota) at another `now`.
    /// An `until_full` beyond an empty bucket is clamped to empty, so a
    /// hostile snapshot can only ever *deny* tokens.
    ///
    /// Takes the critical section, like [`reset`](Self::reset).
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::bucket::{BucketSnapshot, Quota, TokenBucket};
    /// use fusebox::{Duration, Instant};
    ///
    /// let bucket = TokenBucket::new(Quota::per_second(10)?);
    /// let now = Instant::from_secs(60);
    /// // Saved 300 ms short of full, i.e. 3 tokens down.
    /// bucket.restore(&BucketSnapshot { until_full: Duration::from_millis(300) }, now);
    /// assert_eq!(bucket.available(now), 7);
    /// // A hostile snapshot only empties the bucket.
    /// bucket.restore(&BucketSnapshot { until_full: Duration::MAX }, now);
    /// assert_eq!(bucket.available(now), 0);
    /// # Ok::<(), fusebox::bucket::QuotaError>(())
    /// ```
    pub fn restore(&self, snapshot: &BucketSnapshot, now: Instant) {
        crate::sync::critical(|| self.tat.restore(snapshot.until_full, now));
    }

    /// Changes the quota at `now` and returns the one it replaces. Callable
    /// on a shared bucket; concurrent decisions never wait for it, and each
    /// one is decided wholly under the old quota or wholly under the new.
    ///
    /// The bucket's state carries over:
    ///
    /// * the tokens available at `now` stay available, fractions of a token
    ///   included (rounded toward fewer, to the new quota's resolution of
    ///   `1 / (period / gcd(tokens, period in µs))` of a token): raising the
    ///   burst grants no free tokens, lowering it clamps what is available
    ///   to the new burst;
    /// * the new rate refills from `now` on;
    /// * a bucket that `now` reads as overdrawn — `now` is behind an
    ///   admission already made — stays overdrawn for the same time
    ///   (rounded up): a stale `now` never turns a debt into tokens, and
    ///   never reads more tokens than the latest admission left. It does
    ///   date the change of *rate* back to `now`, so a raised rate refills
    ///   over the staleness too (see the [module docs](self) for the bound
    ///   this keeps). On Cortex-M, as for decisions, a `now` more than
    ///   ~1.05 s stale may read a drained bucket as full;
    /// * the state is dated at `now`, even a full bucket's: a later
    ///   decision whose `now` is behind the change by more than the new
    ///   burst's span reads the bucket as drained by that lag (it waits;
    ///   it is never given more), where [`reset`](Self::reset) reads full
    ///   either way.
    ///
    /// Changes (with [`reset`](Self::reset) and [`restore`](Self::restore))
    /// are serialised by the critical section: the target's
    /// `critical-section` implementation, which the `std` feature provides
    /// on hosts.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fusebox::bucket::{Quota, TokenBucket};
    /// use fusebox::{Duration, Instant};
    ///
    /// let bucket = Arc::new(TokenBucket::new(Quota::per_second(10)?));
    /// let now = Instant::from_secs(1);
    /// bucket.try_acquire_n(8, now)?; // 2 left
    ///
    /// // An operator raises the limit while requests keep flowing.
    /// let raised = Quota::per_second(100)?;
    /// let shared = Arc::clone(&bucket);
    /// let old = std::thread::spawn(move || shared.set_quota(raised, now))
    ///     .join()
    ///     .unwrap();
    /// assert_eq!(old.tokens(), 10);
    /// assert_eq!(bucket.available(now), 2, "no free burst");
    /// assert_eq!(bucket.available(now + Duration::from_millis(10)), 3, "the new rate");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_quota(&self, quota: Quota, now: Instant) -> Quota {
        crate::sync::critical(|| self.tat.set_quota(&quota, now))
    }

    /// Changes the quota at run time, keeping the tokens available now:
    /// [`set_quota`](Self::set_quota) through exclusive access, without the
    /// critical section.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::bucket::{Quota, TokenBucket};
    /// use fusebox::Instant;
    ///
    /// let mut bucket = TokenBucket::new(Quota::per_second(10)?);
    /// let now = Instant::from_secs(1);
    /// assert!(bucket.try_acquire_n(8, now).is_ok());
    /// #[allow(deprecated)]
    /// bucket.reconfigure(Quota::per_second(100)?, now);
    /// assert_eq!(bucket.available(now), 2, "no free burst");
    /// # Ok::<(), fusebox::bucket::QuotaError>(())
    /// ```
    #[deprecated(note = "use `set_quota`, which takes `&self`")]
    pub fn reconfigure(&mut self, quota: Quota, now: Instant) {
        self.tat.set_quota(&quota, now);
    }
}

impl fmt::Debug for TokenBucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenBucket")
            .field("quota", &self.quota())
            .field("word", &self.tat.word())
            .finish()
    }
}

/// A word value widened to the kernel's `u64` (the keyed limiter's tier
/// parameters, stored in `TatWord`s).
#[inline]
#[allow(clippy::useless_conversion)] // u32 -> u64 on Cortex-M, u64 -> u64 elsewhere
fn widen<T: Into<u64>>(word: T) -> u64 {
    word.into()
}

impl Refusal {
    /// As [`RateLimited`]: "never" is the longest wait.
    #[cold]
    fn limited(self) -> RateLimited {
        RateLimited {
            retry_after: match self {
                Refusal::Wait(micros) => Duration::from_micros(tagged::wide(micros)),
                Refusal::Never(_) => Duration::MAX,
            },
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests;

// The documented size, checked by every build, the thumb targets included.
#[cfg(not(loom))]
const _: () = assert!(
    core::mem::size_of::<TokenBucket>() == if crate::sync::TAT_BITS == 64 { 104 } else { 68 }
);
