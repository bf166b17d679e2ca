//! Permits: [`Permit`] borrows its breaker; [`OwnedPermit`] holds any
//! pointer to it (`Arc`, `&'static`, …) so it can live in a `'static`
//! future, such as a tower service's response future.

use core::ops::Deref;

use super::{CircuitBreaker, Outcome, Rejected, State, Transition};
use crate::sync::Epoch;
use crate::{Duration, Instant};

/// What a permit carries: the full generation that issued it, whether it
/// is a half-open trial, and whether issuing it moved the breaker Open →
/// HalfOpen (the only transition an acquire makes), at `at`.
///
/// Three words, no `Option<Transition>`: a permit is moved through
/// `Result`s and futures on every call, and plain words move in a few
/// instructions where a niche-packed transition moved byte by byte.
#[derive(Clone, Copy, Debug)]
pub(super) struct Ticket {
    pub(super) gen: Epoch,
    pub(super) half_open: bool,
    pub(super) opened_trial: bool,
    /// The `now` of the Open → HalfOpen transition (unused without one).
    pub(super) at: Instant,
}

impl Ticket {
    /// A permit on a closed breaker (no transition).
    #[inline]
    pub(super) const fn closed(gen: Epoch) -> Self {
        Self {
            gen,
            half_open: false,
            opened_trial: false,
            at: Instant::ZERO,
        }
    }

    /// The transition issuing the permit made, if any.
    #[inline]
    fn transition(&self) -> Option<Transition> {
        self.opened_trial.then_some(Transition {
            from: State::Open,
            to: State::HalfOpen,
            at: self.at,
        })
    }
}

/// Permission for one call, from [`CircuitBreaker::try_acquire`].
///
/// Record how the call went with [`Permit::record`]. Dropping it unrecorded
/// frees its half-open slot and counts as neither success nor failure (it is
/// counted in [`Metrics::abandoned`](super::Metrics::abandoned)).
///
/// # Examples
///
/// ```
/// use fusebox::breaker::{CircuitBreaker, Config, Outcome};
/// use fusebox::{Duration, Instant};
///
/// let breaker = CircuitBreaker::new(Config::builder().consecutive_failures(3).build()?);
/// let now = Instant::from_secs(1);
/// let permit = breaker.try_acquire(now).expect("closed");
/// permit.record(Outcome::Success, now, Duration::from_millis(3));
/// drop(breaker.try_acquire(now).expect("closed")); // abandoned
/// let m = breaker.metrics();
/// assert_eq!((m.successes, m.abandoned), (1, 1));
/// # Ok::<(), fusebox::breaker::ConfigError>(())
/// ```
#[must_use = "a permit must be recorded (or dropped to abandon the call)"]
#[derive(Debug)]
pub struct Permit<'a> {
    breaker: &'a CircuitBreaker,
    ticket: Ticket,
}

/// A [`Permit`] that owns its pointer to the breaker, from
/// [`CircuitBreaker::try_acquire_owned`]: `OwnedPermit<Arc<CircuitBreaker>>`
/// is `'static` and `Send`, so it can be held by a future across `.await`s
/// and recorded when the response completes.
///
/// Same rules as [`Permit`]: record it once, or drop it to abandon the call
/// (a dropped half-open trial frees its slot without deciding).
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use fusebox::breaker::{CircuitBreaker, Config, Outcome};
/// use fusebox::{Duration, Instant};
///
/// let breaker = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(3).build()?));
/// let now = Instant::from_secs(1);
/// let permit = CircuitBreaker::try_acquire_owned(Arc::clone(&breaker), now)?;
/// let task = std::thread::spawn(move || permit.record(Outcome::Success, now, Duration::ZERO));
/// assert_eq!(task.join().unwrap(), None);
/// assert_eq!(breaker.metrics().successes, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a permit must be recorded (or dropped to abandon the call)"]
#[derive(Debug)]
pub struct OwnedPermit<B: Deref<Target = CircuitBreaker>> {
    breaker: B,
    ticket: Ticket,
    /// Cleared by `record_in_place_with` (which every record goes
    /// through), so that `Drop` does not abandon it as well.
    live: bool,
}

impl CircuitBreaker {
    #[inline]
    pub(super) fn permit(&self, ticket: Ticket) -> Permit<'_> {
        Permit {
            breaker: self,
            ticket,
        }
    }

    /// [`try_acquire`](Self::try_acquire) for a permit that owns `breaker`
    /// (any pointer to a breaker: `Arc<CircuitBreaker>`, `&'static
    /// CircuitBreaker`, …).
    ///
    /// # Errors
    ///
    /// [`Rejected`], as from `try_acquire`.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::breaker::{CircuitBreaker, Config, OwnedPermit, Outcome};
    /// use fusebox::{Duration, Instant};
    ///
    /// static BREAKER: CircuitBreaker =
    ///     CircuitBreaker::new(match Config::builder().consecutive_failures(3).build() {
    ///         Ok(c) => c,
    ///         Err(_) => panic!("bad config"),
    ///     });
    ///
    /// let now = Instant::from_secs(1);
    /// // A `'static` permit without an `Arc`: it owns a `&'static CircuitBreaker`.
    /// let permit: OwnedPermit<&'static CircuitBreaker> =
    ///     CircuitBreaker::try_acquire_owned(&BREAKER, now).expect("closed");
    /// assert_eq!(permit.record(Outcome::Success, now, Duration::ZERO), None);
    /// assert_eq!(BREAKER.metrics().successes, 1);
    /// ```
    #[inline]
    pub fn try_acquire_owned<B: Deref<Target = CircuitBreaker>>(
        breaker: B,
        now: Instant,
    ) -> Result<OwnedPermit<B>, Rejected> {
        Self::try_acquire_owned_with(breaker, || now)
    }

    /// [`try_acquire_owned`](Self::try_acquire_owned), reading the clock
    /// only if the answer depends on the time, as
    /// [`try_acquire_with`](Self::try_acquire_with).
    ///
    /// # Errors
    ///
    /// [`Rejected`], as from `try_acquire`.
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::breaker::{CircuitBreaker, Config, Outcome, State};
    /// use fusebox::{Duration, Instant};
    ///
    /// let breaker = CircuitBreaker::new(Config::builder().consecutive_failures(1).build()?);
    /// let no_clock = || unreachable!("closed: no clock read");
    /// let permit = CircuitBreaker::try_acquire_owned_with(&breaker, no_clock).expect("closed");
    /// permit.record(Outcome::Failure, Instant::from_secs(1), Duration::ZERO);
    /// let clock = || Instant::from_secs(2);
    /// let rejected = CircuitBreaker::try_acquire_owned_with(&breaker, clock).unwrap_err();
    /// assert_eq!(rejected.state, State::Open);
    /// # Ok::<(), fusebox::breaker::ConfigError>(())
    /// ```
    #[inline]
    pub fn try_acquire_owned_with<B: Deref<Target = CircuitBreaker>>(
        breaker: B,
        now: impl FnOnce() -> Instant,
    ) -> Result<OwnedPermit<B>, Rejected> {
        let permit = breaker.try_acquire_with(now)?;
        let ticket = permit.ticket;
        core::mem::forget(permit); // its ticket moves to the owned permit
        Ok(OwnedPermit {
            breaker,
            ticket,
            live: true,
        })
    }
}

impl Permit<'_> {
    /// Records how the call went; `elapsed` is its duration (for slow-call
    /// detection). Returns the transition this record caused, if any.
    ///
    /// A permit issued before a transition (a different generation) is
    /// counted in the metrics but cannot change the new state.
    ///
    /// ```
    /// use fusebox::breaker::{CircuitBreaker, Config, Outcome, State};
    /// use fusebox::{Duration, Instant};
    ///
    /// let breaker = CircuitBreaker::new(Config::builder().consecutive_failures(1).build()?);
    /// let now = Instant::from_secs(1);
    /// let a = breaker.try_acquire(now).expect("closed");
    /// let b = breaker.try_acquire(now).expect("closed");
    /// let opened = a.record(Outcome::Failure, now, Duration::ZERO);
    /// assert_eq!(opened.map(|t| t.to), Some(State::Open));
    /// // `b` was issued before the trip: counted, but it changes nothing.
    /// assert_eq!(b.record(Outcome::Success, now, Duration::ZERO), None);
    /// assert_eq!(breaker.state(now), State::Open);
    /// assert_eq!(breaker.metrics().successes, 1);
    /// # Ok::<(), fusebox::breaker::ConfigError>(())
    /// ```
    #[inline]
    pub fn record(self, outcome: Outcome, now: Instant, elapsed: Duration) -> Option<Transition> {
        self.record_with(outcome, elapsed, || now)
    }

    /// [`record`](Self::record), reading the clock only if the record
    /// needs the time: a success on a closed breaker without a failure
    /// streak or a rate window never calls `now`. `now` runs before the
    /// record changes any state; if it panics, the permit is abandoned and
    /// the call counts as abandoned only. Pass
    /// [`Duration::ZERO`] as `elapsed` when
    /// [`CircuitBreaker::measures_duration`] is false (no slow-call rule)
    /// and skip timing the call altogether.
    ///
    /// ```
    /// use std::cell::Cell;
    /// use fusebox::breaker::{CircuitBreaker, Config, Outcome, State};
    /// use fusebox::{Duration, Instant};
    ///
    /// let breaker = CircuitBreaker::new(Config::builder().consecutive_failures(1).build()?);
    /// let reads = Cell::new(0);
    /// let clock = || { reads.set(reads.get() + 1); Instant::from_secs(5) };
    /// let permit = breaker.try_acquire_with(clock)?;
    /// assert_eq!(permit.record_with(Outcome::Success, Duration::ZERO, clock), None);
    /// assert_eq!(reads.get(), 0, "the closed success path reads no clock");
    /// let permit = breaker.try_acquire_with(clock)?;
    /// let opened = permit.record_with(Outcome::Failure, Duration::ZERO, clock);
    /// assert_eq!(opened.map(|t| (t.to, t.at)), Some((State::Open, Instant::from_secs(5))));
    /// assert_eq!(reads.get(), 1, "a trip needs the time");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    // The adapter's futures record on their hot path; left to the inliner,
    // a large caller kept the call and moved the permit through memory
    // (benches/instr.sh std_breaker_call: 182 -> 152 instructions).
    #[allow(clippy::inline_always)]
    #[inline(always)]
    pub fn record_with(
        self,
        outcome: Outcome,
        elapsed: Duration,
        now: impl FnOnce() -> Instant,
    ) -> Option<Transition> {
        let t = self.ticket;
        // The permit stays armed while `now` may run: if it panics, the
        // unwind drops the permit, which abandons it (a half-open slot is
        // freed) — `now` runs before any state change a trial makes.
        let transition = self
            .breaker
            .record(t.gen, t.half_open, outcome, now, elapsed);
        core::mem::forget(self); // recorded: nothing left to abandon
        transition
    }

    /// The Open → HalfOpen transition that issuing this permit caused, if it
    /// did (exactly one caller per opening gets it).
    ///
    /// ```
    /// use fusebox::breaker::{CircuitBreaker, Config, State};
    /// use fusebox::{Duration, Instant};
    ///
    /// let config = Config::builder().consecutive_failures(1).half_open_permits(2);
    /// let breaker = CircuitBreaker::new(config.build()?);
    /// let now = Instant::from_secs(1);
    /// breaker.trip(now);
    /// let later = now + breaker.try_acquire(now).unwrap_err().retry_after.unwrap();
    /// let first = breaker.try_acquire(later).expect("trial");
    /// let second = breaker.try_acquire(later).expect("trial");
    /// let t = first.transition().expect("the first trial made the transition");
    /// assert_eq!((t.from, t.to, t.at), (State::Open, State::HalfOpen, later));
    /// assert_eq!(second.transition(), None);
    /// # Ok::<(), fusebox::breaker::ConfigError>(())
    /// ```
    pub fn transition(&self) -> Option<Transition> {
        self.ticket.transition()
    }

    /// Whether this is a half-open trial permit.
    ///
    /// ```
    /// use fusebox::breaker::{CircuitBreaker, Config, Outcome};
    /// use fusebox::{Duration, Instant};
    ///
    /// let breaker = CircuitBreaker::new(Config::builder().consecutive_failures(1).build()?);
    /// let now = Instant::from_secs(1);
    /// let permit = breaker.try_acquire(now).expect("closed");
    /// assert!(!permit.is_trial());
    /// permit.record(Outcome::Failure, now, Duration::ZERO); // trips
    /// let later = now + breaker.try_acquire(now).unwrap_err().retry_after.unwrap();
    /// assert!(breaker.try_acquire(later).expect("half-open").is_trial());
    /// # Ok::<(), fusebox::breaker::ConfigError>(())
    /// ```
    pub fn is_trial(&self) -> bool {
        self.ticket.half_open
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.breaker.abandon(self.ticket.gen, self.ticket.half_open);
    }
}

impl<B: Deref<Target = CircuitBreaker>> OwnedPermit<B> {
    /// Records how the call went, as [`Permit::record`].
    ///
    /// ```
    /// use fusebox::breaker::{CircuitBreaker, Config, Outcome, State};
    /// use fusebox::{Duration, Instant};
    ///
    /// let breaker = CircuitBreaker::new(Config::builder().consecutive_failures(1).build()?);
    /// let now = Instant::from_secs(1);
    /// let permit = CircuitBreaker::try_acquire_owned(&breaker, now).expect("closed");
    /// let opened = permit.record(Outcome::Failure, now, Duration::ZERO);
    /// assert_eq!(opened.map(|t| t.to), Some(State::Open));
    /// # Ok::<(), fusebox::breaker::ConfigError>(())
    /// ```
    #[inline]
    pub fn record(self, outcome: Outcome, now: Instant, elapsed: Duration) -> Option<Transition> {
        self.record_with(outcome, elapsed, || now)
    }

    /// Records how the call went, reading the clock only if needed, as
    /// [`Permit::record_with`].
    ///
    /// ```
    /// use fusebox::breaker::{CircuitBreaker, Config, Outcome};
    /// use fusebox::{Duration, Instant};
    ///
    /// let breaker = CircuitBreaker::new(Config::builder().consecutive_failures(1).build()?);
    /// let now = Instant::from_secs(1);
    /// let permit = CircuitBreaker::try_acquire_owned(&breaker, now).expect("closed");
    /// let no_clock = || unreachable!("a closed success reads no clock");
    /// assert_eq!(permit.record_with(Outcome::Success, Duration::ZERO, no_clock), None);
    /// assert_eq!(breaker.metrics().successes, 1);
    /// # Ok::<(), fusebox::breaker::ConfigError>(())
    /// ```
    // The adapter's futures record on their hot path; left to the inliner,
    // a large caller kept the call and moved the permit through memory
    // (benches/instr.sh std_breaker_call: 182 -> 152 instructions).
    #[allow(clippy::inline_always)]
    #[inline(always)]
    pub fn record_with(
        mut self,
        outcome: Outcome,
        elapsed: Duration,
        now: impl FnOnce() -> Instant,
    ) -> Option<Transition> {
        self.record_in_place_with(outcome, elapsed, now)
    }

    /// [`record_with`](Self::record_with) through `&mut self`: the permit
    /// keeps its pointer, so that what it points into (a struct that holds
    /// the breaker with its name and observer, say) is still at hand after
    /// the record, without a second pointer for it. The permit is spent:
    /// recording it again returns `None` and counts nothing, and dropping
    /// it abandons nothing. If `now` panics, the permit stays live (nothing
    /// was recorded): dropped, it is abandoned, as `record_with`'s is.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fusebox::breaker::{CircuitBreaker, Config, Outcome, State};
    /// use fusebox::{Duration, Instant};
    ///
    /// let breaker = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(1).build()?));
    /// let mut permit = CircuitBreaker::try_acquire_owned(Arc::clone(&breaker), Instant::ZERO)?;
    /// let opened = permit.record_in_place_with(Outcome::Failure, Duration::ZERO, || Instant::from_secs(1));
    /// assert_eq!(opened.map(|t| t.to), Some(State::Open));
    /// assert_eq!(permit.breaker().state(Instant::from_secs(1)), State::Open, "still at hand");
    /// assert_eq!(permit.record_in_place_with(Outcome::Success, Duration::ZERO, || Instant::ZERO), None);
    /// drop(permit);
    /// let m = breaker.metrics();
    /// assert_eq!((m.failures, m.successes, m.abandoned), (1, 0, 0), "recorded once, abandoned never");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    // Inlined for the reason `record_with` is.
    #[allow(clippy::inline_always)]
    #[inline(always)]
    pub fn record_in_place_with(
        &mut self,
        outcome: Outcome,
        elapsed: Duration,
        now: impl FnOnce() -> Instant,
    ) -> Option<Transition> {
        if !self.live {
            return None;
        }
        let t = self.ticket;
        // Still live while `now` may run: after a panic there, the permit's
        // drop abandons it (on unwind for `record_with`, which owns it).
        let transition = self
            .breaker
            .record(t.gen, t.half_open, outcome, now, elapsed);
        self.live = false;
        transition
    }

    /// The Open → HalfOpen transition that issuing this permit caused, if it
    /// did.
    ///
    /// ```
    /// use fusebox::breaker::{CircuitBreaker, Config, State};
    /// use fusebox::{Duration, Instant};
    ///
    /// let breaker = CircuitBreaker::new(Config::builder().consecutive_failures(1).build()?);
    /// let now = Instant::from_secs(1);
    /// breaker.trip(now);
    /// let later = now + breaker.try_acquire(now).unwrap_err().retry_after.unwrap();
    /// let trial = CircuitBreaker::try_acquire_owned(&breaker, later).expect("trial");
    /// let t = trial.transition().expect("this trial's transition");
    /// assert_eq!((t.from, t.to), (State::Open, State::HalfOpen));
    /// # Ok::<(), fusebox::breaker::ConfigError>(())
    /// ```
    pub fn transition(&self) -> Option<Transition> {
        self.ticket.transition()
    }

    /// Whether this is a half-open trial permit.
    ///
    /// ```
    /// use fusebox::breaker::{CircuitBreaker, Config};
    /// use fusebox::Instant;
    ///
    /// let breaker = CircuitBreaker::new(Config::builder().consecutive_failures(1).build()?);
    /// let now = Instant::from_secs(1);
    /// assert!(!CircuitBreaker::try_acquire_owned(&breaker, now).expect("closed").is_trial());
    /// breaker.trip(now);
    /// let later = now + breaker.try_acquire(now).unwrap_err().retry_after.unwrap();
    /// assert!(CircuitBreaker::try_acquire_owned(&breaker, later).expect("trial").is_trial());
    /// # Ok::<(), fusebox::breaker::ConfigError>(())
    /// ```
    pub fn is_trial(&self) -> bool {
        self.ticket.half_open
    }

    /// The breaker it was issued by.
    ///
    /// ```
    /// use fusebox::breaker::{CircuitBreaker, Config};
    /// use fusebox::Instant;
    ///
    /// let breaker = CircuitBreaker::new(Config::builder().consecutive_failures(1).build()?);
    /// let permit = CircuitBreaker::try_acquire_owned(&breaker, Instant::ZERO).expect("closed");
    /// assert!(core::ptr::eq(*permit.breaker(), &breaker));
    /// # Ok::<(), fusebox::breaker::ConfigError>(())
    /// ```
    pub fn breaker(&self) -> &B {
        &self.breaker
    }
}

impl<B: Deref<Target = CircuitBreaker>> Drop for OwnedPermit<B> {
    fn drop(&mut self) {
        if self.live {
            self.breaker.abandon(self.ticket.gen, self.ticket.half_open);
        }
    }
}
