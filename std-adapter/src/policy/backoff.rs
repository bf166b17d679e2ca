//! Backoff: [`MakeBackoff`] makes one [`Backoff`] per call (tower's
//! `retry/backoff.rs` shape); [`ExponentialBackoffMaker`] with full jitter
//! from an injectable, seedable [`fastrand::Rng`].

use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// The delays of one call's retries.
///
/// ```
/// use std::time::Duration;
/// use fusebox_std::policy::{Backoff, MakeBackoff, Retry};
///
/// /// Fibonacci delays in seconds: 1, 1, 2, 3, 5, ...
/// struct Fibonacci(u64, u64);
/// impl Backoff for Fibonacci {
///     fn next_delay(&mut self) -> Duration {
///         let d = self.0;
///         (self.0, self.1) = (self.1, self.0 + self.1);
///         Duration::from_secs(d)
///     }
/// }
/// struct MakeFibonacci;
/// impl MakeBackoff for MakeFibonacci {
///     type Backoff = Fibonacci;
///     fn make_backoff(&self) -> Fibonacci {
///         Fibonacci(1, 1)
///     }
/// }
/// let mut b = MakeFibonacci.make_backoff();
/// assert_eq!([b.next_delay(), b.next_delay(), b.next_delay()].map(|d| d.as_secs()), [1, 1, 2]);
/// let retry = Retry::builder().backoff(MakeFibonacci).build();
/// # drop(retry);
/// ```
pub trait Backoff {
    /// The delay before the next retry (the first call: before retry 1).
    fn next_delay(&mut self) -> Duration;
}

/// Makes a fresh [`Backoff`] for each call.
///
/// ```
/// use std::time::Duration;
/// use fusebox_std::policy::{Backoff, ExponentialBackoffMaker, Jitter, MakeBackoff};
///
/// let maker = ExponentialBackoffMaker::new(Duration::from_millis(10), 2.0, Duration::from_secs(1))?
///     .with_jitter(Jitter::None);
/// // Each call starts its own sequence.
/// let (mut a, mut b) = (maker.make_backoff(), maker.make_backoff());
/// a.next_delay();
/// assert_eq!(a.next_delay(), Duration::from_millis(20));
/// assert_eq!(b.next_delay(), Duration::from_millis(10));
/// # Ok::<(), fusebox_std::policy::BackoffError>(())
/// ```
pub trait MakeBackoff {
    /// The per-call backoff.
    type Backoff: Backoff;
    /// A backoff for a new call.
    fn make_backoff(&self) -> Self::Backoff;
}

/// How a delay is drawn below its exponential ceiling.
///
/// ```
/// use std::time::Duration;
/// use fusebox_std::policy::{Backoff, ExponentialBackoffMaker, Jitter, MakeBackoff};
///
/// let maker = ExponentialBackoffMaker::new(Duration::from_secs(1), 2.0, Duration::from_secs(8))?;
/// let mut exact = maker.clone().with_jitter(Jitter::None).make_backoff();
/// assert_eq!(exact.next_delay(), Duration::from_secs(1));
/// let mut jittered = maker.with_jitter(Jitter::Full).make_backoff();
/// assert!(jittered.next_delay() <= Duration::from_secs(1));
/// # Ok::<(), fusebox_std::policy::BackoffError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Jitter {
    /// The ceiling itself: `min(max, base · factor^(k-1))` before retry `k`.
    None,
    /// "Full jitter": uniform over whole milliseconds in `0..=ceiling`
    /// (tokio's timer resolution; a ceiling under 1 ms draws 0), so that
    /// callers that failed together do not retry together.
    Full,
}

/// Why an [`ExponentialBackoffMaker`] was refused.
///
/// ```
/// use std::time::Duration;
/// use fusebox_std::policy::{BackoffError, ExponentialBackoffMaker};
///
/// let e = ExponentialBackoffMaker::new(Duration::from_secs(1), 0.5, Duration::from_secs(9));
/// assert_eq!(e.unwrap_err(), BackoffError::Factor);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackoffError {
    /// The factor was below 1 or not finite.
    Factor,
    /// The cap was below the base.
    Max,
}

impl fmt::Display for BackoffError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Factor => "backoff factor must be finite and at least 1",
            Self::Max => "backoff cap must be at least the base delay",
        })
    }
}

impl std::error::Error for BackoffError {}

/// Exponential backoff: before retry `k` (1-based) the ceiling is
/// `min(max, base · factor^(k-1))`, and the delay is the ceiling or a
/// [`Jitter`] draw below it.
///
/// Each call's [`Backoff`] gets its own RNG, *forked* from the maker's:
/// calls that fail together draw different delays (a cloned RNG would make
/// them retry in lockstep, which is what jitter is for avoiding), and a
/// maker given a seeded RNG with [`with_rng`](Self::with_rng) yields the
/// same delays for the same sequence of calls.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use fusebox_std::policy::{Backoff, ExponentialBackoffMaker, Jitter, MakeBackoff};
///
/// let maker = ExponentialBackoffMaker::new(Duration::from_millis(100), 3.0, Duration::from_secs(1))?
///     .with_jitter(Jitter::None);
/// let mut backoff = maker.make_backoff();
/// let delays: Vec<_> = (0..4).map(|_| backoff.next_delay().as_millis()).collect();
/// assert_eq!(delays, [100, 300, 900, 1_000]);
///
/// let seeded = maker.with_jitter(Jitter::Full).with_rng(fastrand::Rng::with_seed(7));
/// let mut jittered = seeded.make_backoff();
/// assert!(jittered.next_delay() <= Duration::from_millis(100));
/// # Ok::<(), fusebox_std::policy::BackoffError>(())
/// ```
#[derive(Debug)]
pub struct ExponentialBackoffMaker {
    base: Duration,
    factor: f64,
    max: Duration,
    jitter: Jitter,
    rng: Mutex<fastrand::Rng>,
}

impl Clone for ExponentialBackoffMaker {
    fn clone(&self) -> Self {
        Self {
            base: self.base,
            factor: self.factor,
            max: self.max,
            jitter: self.jitter,
            rng: Mutex::new(self.fork()),
        }
    }
}

impl Default for ExponentialBackoffMaker {
    /// 100 ms, factor 2, cap 10 s, full jitter, an unseeded RNG.
    fn default() -> Self {
        Self {
            base: Duration::from_millis(100),
            factor: 2.0,
            max: Duration::from_secs(10),
            jitter: Jitter::Full,
            rng: Mutex::new(fastrand::Rng::new()),
        }
    }
}

impl ExponentialBackoffMaker {
    /// `base · factor^(k-1)` capped at `max`, with full jitter from an
    /// unseeded RNG.
    ///
    /// # Errors
    ///
    /// [`BackoffError`] if `factor` is below 1 or not finite, or `max` is
    /// below `base`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use fusebox_std::policy::{BackoffError, ExponentialBackoffMaker};
    ///
    /// assert!(ExponentialBackoffMaker::new(Duration::from_millis(50), 1.5, Duration::from_secs(5)).is_ok());
    /// assert_eq!(
    ///     ExponentialBackoffMaker::new(Duration::from_secs(5), 2.0, Duration::from_secs(1)).unwrap_err(),
    ///     BackoffError::Max
    /// );
    /// ```
    pub fn new(base: Duration, factor: f64, max: Duration) -> Result<Self, BackoffError> {
        if !factor.is_finite() || factor < 1.0 {
            return Err(BackoffError::Factor);
        }
        if max < base {
            return Err(BackoffError::Max);
        }
        Ok(Self {
            base,
            factor,
            max,
            ..Self::default()
        })
    }

    /// The jitter.
    ///
    /// ```
    /// use std::time::Duration;
    /// use fusebox_std::policy::{Backoff, ExponentialBackoffMaker, Jitter, MakeBackoff};
    ///
    /// let maker = ExponentialBackoffMaker::default().with_jitter(Jitter::None);
    /// assert_eq!(maker.make_backoff().next_delay(), Duration::from_millis(100));
    /// ```
    #[must_use]
    pub fn with_jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// The jitter source (seed it for reproducible tests:
    /// `fastrand::Rng::with_seed(7)`).
    ///
    /// ```
    /// use fusebox_std::policy::{Backoff, ExponentialBackoffMaker, MakeBackoff};
    ///
    /// let a = ExponentialBackoffMaker::default().with_rng(fastrand::Rng::with_seed(3));
    /// let b = ExponentialBackoffMaker::default().with_rng(fastrand::Rng::with_seed(3));
    /// assert_eq!(a.make_backoff().next_delay(), b.make_backoff().next_delay());
    /// ```
    #[must_use]
    pub fn with_rng(mut self, rng: fastrand::Rng) -> Self {
        self.rng = Mutex::new(rng);
        self
    }

    fn fork(&self) -> fastrand::Rng {
        self.rng
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .fork()
    }
}

impl MakeBackoff for ExponentialBackoffMaker {
    type Backoff = ExponentialBackoff;

    fn make_backoff(&self) -> ExponentialBackoff {
        ExponentialBackoff {
            base: self.base,
            factor: self.factor,
            max: self.max,
            jitter: self.jitter,
            rng: self.fork(),
            retries: 0,
        }
    }
}

/// One call's [`Backoff`] from an [`ExponentialBackoffMaker`].
///
/// ```
/// use std::time::Duration;
/// use fusebox_std::policy::{Backoff, ExponentialBackoff, ExponentialBackoffMaker, Jitter, MakeBackoff};
///
/// let maker = ExponentialBackoffMaker::new(Duration::from_millis(100), 2.0, Duration::from_millis(300))?
///     .with_jitter(Jitter::None);
/// let mut backoff: ExponentialBackoff = maker.make_backoff();
/// let delays: Vec<u128> = (0..3).map(|_| backoff.next_delay().as_millis()).collect();
/// assert_eq!(delays, [100, 200, 300]);
/// # Ok::<(), fusebox_std::policy::BackoffError>(())
/// ```
#[derive(Debug, Clone)]
pub struct ExponentialBackoff {
    base: Duration,
    factor: f64,
    max: Duration,
    jitter: Jitter,
    rng: fastrand::Rng,
    retries: u32,
}

impl ExponentialBackoff {
    /// The ceiling before retry `k` (1-based).
    fn ceiling(&self, k: u32) -> Duration {
        // `0 · factor^(k-1)` is zero whatever the power; in floating point
        // it is `0 · ∞ = NaN` once the power overflows (retry 1 025 at
        // factor 2, retry 3 at 1e300), which would read as the cap (found
        // by a hostile review: a zero base jumped to `max`).
        if self.base.is_zero() {
            return Duration::ZERO;
        }
        let exponent = i32::try_from(k.saturating_sub(1)).unwrap_or(i32::MAX);
        let scaled = self.base.as_secs_f64() * self.factor.powi(exponent);
        if scaled.is_finite() && scaled < self.max.as_secs_f64() {
            // Below the cap, so it fits a Duration; rounded to the
            // nanosecond (exact for powers of two times whole ms).
            Duration::from_secs_f64(scaled).min(self.max)
        } else {
            self.max
        }
    }
}

impl Backoff for ExponentialBackoff {
    fn next_delay(&mut self) -> Duration {
        self.retries = self.retries.saturating_add(1);
        let ceiling = self.ceiling(self.retries);
        match self.jitter {
            Jitter::None => ceiling,
            Jitter::Full => {
                let ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
                Duration::from_millis(self.rng.u64(0..=ms))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_grow_then_cap() {
        let maker =
            ExponentialBackoffMaker::new(Duration::from_millis(10), 2.0, Duration::from_millis(50))
                .unwrap()
                .with_jitter(Jitter::None);
        let mut b = maker.make_backoff();
        let got: Vec<u128> = (0..5).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(got, [10, 20, 40, 50, 50]);
        // A huge retry count saturates at the cap, never panics.
        b.retries = u32::MAX - 1;
        assert_eq!(b.next_delay(), Duration::from_millis(50));
        assert_eq!(b.next_delay(), Duration::from_millis(50));
    }

    /// Sound, kept as a test (hostile review): no delay beyond the cap,
    /// jittered or not, for caps off the millisecond grid, a zero cap, a
    /// factor of `f64::MAX`; and `Duration::MAX` bases and caps never panic.
    #[test]
    fn no_delay_beyond_the_cap_whatever_the_settings() {
        for (base_us, factor, max_us) in [
            (1_000u64, 3.0, 1_500u64),
            (999, 1.5, 999),
            (0, 2.0, 0),
            (1, f64::MAX, 7_777),
        ] {
            let max = Duration::from_micros(max_us);
            let maker = ExponentialBackoffMaker::new(Duration::from_micros(base_us), factor, max)
                .unwrap()
                .with_rng(fastrand::Rng::with_seed(base_us));
            let mut jittered = maker.make_backoff();
            assert!((0..200).all(|_| jittered.next_delay() <= max));
            let mut exact = maker.with_jitter(Jitter::None).make_backoff();
            let delays: Vec<Duration> = (0..200).map(|_| exact.next_delay()).collect();
            assert!(delays.iter().all(|d| *d <= max));
            assert_eq!(delays[199], max, "the ceiling reaches the cap");
        }
        for jitter in [Jitter::None, Jitter::Full] {
            let maker = ExponentialBackoffMaker::new(Duration::MAX, 2.0, Duration::MAX)
                .unwrap()
                .with_jitter(jitter);
            let mut b = maker.make_backoff();
            assert!((0..5).all(|_| b.next_delay() <= Duration::MAX));
            let maker = ExponentialBackoffMaker::new(Duration::from_nanos(1), 1e300, Duration::MAX)
                .unwrap()
                .with_jitter(jitter);
            let mut b = maker.make_backoff();
            let _ = b.next_delay();
            if jitter == Jitter::None {
                assert_eq!(b.next_delay(), Duration::MAX);
            }
        }
    }

    #[test]
    fn calls_from_one_maker_draw_different_jitter() {
        // Each call's RNG is forked, not cloned: callers that failed
        // together must not retry in lockstep.
        let maker =
            ExponentialBackoffMaker::new(Duration::from_secs(10), 1.0, Duration::from_secs(10))
                .unwrap()
                .with_rng(fastrand::Rng::with_seed(1));
        let (mut a, mut b) = (maker.make_backoff(), maker.make_backoff());
        let xs: Vec<Duration> = (0..8).map(|_| a.next_delay()).collect();
        let ys: Vec<Duration> = (0..8).map(|_| b.next_delay()).collect();
        assert_ne!(xs, ys);
    }

    #[test]
    fn same_seed_same_delays() {
        let make = || {
            ExponentialBackoffMaker::new(Duration::from_millis(100), 2.0, Duration::from_secs(5))
                .unwrap()
                .with_rng(fastrand::Rng::with_seed(42))
        };
        let (a, b) = (make(), make());
        let (mut x, mut y) = (a.make_backoff(), b.make_backoff());
        for _ in 0..8 {
            assert_eq!(x.next_delay(), y.next_delay());
        }
    }
}
