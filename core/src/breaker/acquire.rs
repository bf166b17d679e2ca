//! Asking for permission: the closed fast path, and the slow path through
//! rejections, half-open trials, the Open → HalfOpen transition and the
//! half-open timeout; and [`CircuitBreaker::state`], which reads the same
//! way without changing anything.

use super::generation::{full_gen, low};
use super::permit::{Permit, Ticket};
use super::word::{Kind, Word};
use super::{state_of, CircuitBreaker, Rejected, State};
use crate::sync::{Epoch, Ordering};
use crate::Instant;

impl CircuitBreaker {
    /// Asks to make a call at `now`.
    ///
    /// Closed: always permitted (two atomic loads, no write). Open: rejected
    /// until the open time has passed; the first caller after that moves the
    /// breaker to half-open and gets the first trial permit (exactly one
    /// caller wins; see [`Permit::transition`]). A `now` earlier than the
    /// trip (a clock read before another thread tripped it) reads as open,
    /// back to `max(open time, ~1.05 s)` before the trip: a stale clock
    /// never lets a trial through early. Half-open: permitted while fewer
    /// than `half_open_permits` trials are in flight; once the half-open
    /// timeout has passed (if configured), the first caller to see it
    /// reopens the breaker and is rejected with that transition.
    ///
    /// # Errors
    ///
    /// [`Rejected`] with the rejecting state and, when open, the time until
    /// a trial will be let through (and [`Rejected::transition`] when this
    /// call timed the half-open state out).
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::breaker::{CircuitBreaker, Config, Outcome, State};
    /// use fusebox::{Duration, Instant};
    ///
    /// let breaker = CircuitBreaker::new(Config::builder().consecutive_failures(1).build()?);
    /// let now = Instant::from_secs(1);
    /// let permit = breaker.try_acquire(now).expect("closed: always permitted");
    /// permit.record(Outcome::Failure, now, Duration::ZERO); // trips
    /// let rejected = breaker.try_acquire(now).unwrap_err();
    /// assert_eq!(rejected.state, State::Open);
    ///
    /// // Once the open time has passed, one caller gets the trial and the transition.
    /// let later = now + rejected.retry_after.unwrap();
    /// let trial = breaker.try_acquire(later).expect("half-open trial");
    /// let t = trial.transition().expect("this caller's transition");
    /// assert_eq!((t.from, t.to), (State::Open, State::HalfOpen));
    /// assert_eq!(breaker.try_acquire(later).unwrap_err().state, State::HalfOpen);
    /// # Ok::<(), fusebox::breaker::ConfigError>(())
    /// ```
    #[inline]
    pub fn try_acquire(&self, now: Instant) -> Result<Permit<'_>, Rejected> {
        self.try_acquire_with(|| now)
    }

    /// [`try_acquire`](Self::try_acquire), reading the clock only if the
    /// answer depends on the time: never on the closed path, so a caller
    /// whose clock read costs more than the breaker (an OS clock, ~20 ns)
    /// pays for it only when the breaker is open or half-open.
    ///
    /// ```
    /// use fusebox::breaker::{CircuitBreaker, Config, Outcome, State};
    /// use fusebox::{Duration, Instant};
    ///
    /// let breaker = CircuitBreaker::new(Config::builder().consecutive_failures(1).build()?);
    /// let permit = breaker.try_acquire_with(|| unreachable!("closed: no clock read"))?;
    /// permit.record(Outcome::Failure, Instant::from_secs(1), Duration::ZERO);
    /// let rejected = breaker.try_acquire_with(|| Instant::from_secs(2)).unwrap_err();
    /// assert_eq!(rejected.state, State::Open);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Rejected`], as from `try_acquire`.
    #[inline]
    pub fn try_acquire_with(&self, now: impl FnOnce() -> Instant) -> Result<Permit<'_>, Rejected> {
        // The epoch first: it is then at most the word's full generation.
        let epoch = self.epoch.load(Ordering::Acquire);
        let cur = self.load();
        if cur.kind() == Kind::Closed {
            return Ok(self.permit(Ticket::closed(full_gen(epoch, cur))));
        }
        self.acquire_slow(epoch, cur, now())
    }

    /// `try_acquire` away from Closed: rejections, half-open trials and the
    /// Open → HalfOpen transition (a CAS loop that may end up Closed again).
    #[inline(never)]
    fn acquire_slow(
        &self,
        mut epoch: Epoch,
        mut cur: Word,
        now: Instant,
    ) -> Result<Permit<'_>, Rejected> {
        loop {
            let (gen, new, opened_trial) = match cur.kind() {
                Kind::Closed => return Ok(self.permit(Ticket::closed(full_gen(epoch, cur)))),
                Kind::ForcedOpen => return Err(self.reject(State::ForcedOpen, None)),
                Kind::Open => {
                    let bound = self.config.open_bound(cur.streak());
                    if let Some(left) = self.open_remaining(cur, bound, now) {
                        return Err(self.reject(State::Open, Some(left)));
                    }
                    let gen = self.draw(cur);
                    #[cfg(feature = "half-open-timeout")]
                    self.stamp_half_open(gen, now);
                    // The Open → HalfOpen transition, at `now` (the permit's
                    // `transition()`).
                    (gen, Word::half_open(low(gen), cur.streak(), 1, 0), true)
                }
                Kind::HalfOpen => {
                    #[cfg(feature = "half-open-timeout")]
                    match self.acquire_timed_out(cur, now) {
                        None => {}
                        Some(Ok(rejected)) => return Err(rejected),
                        Some(Err(actual)) => {
                            epoch = self.epoch.load(Ordering::Acquire);
                            cur = actual;
                            continue;
                        }
                    }
                    if cur.in_flight() >= self.config.trial().0 {
                        return Err(self.reject(State::HalfOpen, None));
                    }
                    let next = Word::half_open(
                        cur.gen(),
                        cur.streak(),
                        cur.in_flight() + 1,
                        cur.successes(),
                    );
                    (full_gen(epoch, cur), next, false)
                }
            };
            if self.cas(cur, new).is_ok() {
                if opened_trial {
                    self.publish(gen);
                }
                return Ok(self.permit(Ticket {
                    gen,
                    half_open: true,
                    opened_trial,
                    at: now,
                }));
            }
            epoch = self.epoch.load(Ordering::Acquire);
            cur = self.load();
        }
    }

    /// The state as the next [`try_acquire`](Self::try_acquire) at `now`
    /// would see it: an open breaker whose time has passed reads as
    /// half-open, a half-open one whose timeout
    /// (`ConfigBuilder::max_half_open`, feature `half-open-timeout`)
    /// has passed reads as open. Changes nothing (but may restart a
    /// half-open stamp left by another generation; see the type's docs).
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::breaker::{CircuitBreaker, Config, State};
    /// use fusebox::{Duration, Instant};
    ///
    /// let config = Config::builder().consecutive_failures(5).open_for(Duration::from_secs(10));
    /// let breaker = CircuitBreaker::new(config.build()?);
    /// let now = Instant::from_secs(1);
    /// breaker.trip(now);
    /// assert_eq!(breaker.state(now), State::Open);
    /// let later = now + Duration::from_secs(11);
    /// assert_eq!(breaker.state(later), State::HalfOpen);
    /// // Reading changed nothing: the next caller still makes the transition.
    /// let trial = breaker.try_acquire(later).expect("half-open trial");
    /// assert_eq!(trial.transition().map(|t| t.from), Some(State::Open));
    /// # Ok::<(), fusebox::breaker::ConfigError>(())
    /// ```
    pub fn state(&self, now: Instant) -> State {
        self.state_with(|| now)
    }

    /// [`state`](Self::state), reading the clock only if the answer
    /// depends on the time (an open breaker, or a half-open one with
    /// feature `half-open-timeout`): a server asking on every request
    /// whether to wait for its service at all pays no clock read while the
    /// breaker is closed.
    ///
    /// ```
    /// use fusebox::breaker::{CircuitBreaker, Config, State};
    /// use fusebox::Instant;
    ///
    /// let breaker = CircuitBreaker::new(Config::builder().consecutive_failures(1).build()?);
    /// assert_eq!(breaker.state_with(|| unreachable!("closed: no clock read")), State::Closed);
    /// breaker.force_open(Instant::from_secs(1));
    /// assert_eq!(breaker.state_with(|| Instant::from_secs(2)), State::ForcedOpen);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn state_with(&self, now: impl FnOnce() -> Instant) -> State {
        let cur = self.load();
        match cur.kind() {
            #[cfg(feature = "half-open-timeout")]
            Kind::HalfOpen => {
                if self.half_open_expired(cur, now()) {
                    State::Open
                } else {
                    State::HalfOpen
                }
            }
            Kind::Open => {
                let bound = self.config.open_bound(cur.streak());
                if self.open_remaining(cur, bound, now()).is_some() {
                    State::Open
                } else {
                    State::HalfOpen
                }
            }
            kind => state_of(kind),
        }
    }

    /// The half-open timeout as `try_acquire` meets it (out of line: one
    /// call on the half-open path): `None` if `cur` has not timed out;
    /// else the rejection of the caller that reopened it (open again, for
    /// the new open time, with the transition), or the word that replaced
    /// `cur` first.
    #[cfg(feature = "half-open-timeout")]
    #[inline(never)]
    fn acquire_timed_out(&self, cur: Word, now: Instant) -> Option<Result<Rejected, Word>> {
        if !self.half_open_expired(cur, now) {
            return None;
        }
        Some(self.time_out_half_open(cur, now).map(|t| {
            let open = self.load();
            let retry_after = match open.kind() {
                Kind::Open => self.open_remaining(open, self.config.open_bound(open.streak()), now),
                _ => None,
            };
            let mut rejected = self.reject(State::Open, retry_after);
            rejected.transition = Some(t);
            rejected
        }))
    }
}
