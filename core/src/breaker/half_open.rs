//! The half-open timeout (feature `half-open-timeout`,
//! [`ConfigBuilder::max_half_open`]): a second
//! 32-bit word remembers when the installed half-open generation must have
//! decided.
//!
//! ```text
//!  31                24 23                                              0
//! +--------------------+------------------------------------------------+
//! | generation (low 8) | deadline (24): ticks of 1.024 ms, wrapped 2^24  |
//! +--------------------+------------------------------------------------+
//! ```
//!
//! * Written (a plain store) by every caller about to install a HalfOpen
//!   word, *before* its compare-and-swap, tagged with the generation it
//!   drew; so whoever loads the HalfOpen word (acquire) finds that stamp or
//!   a later one. Racers for the same Open word draw the same generation,
//!   and each stamps its own `now + max_half_open` (all at or past the open
//!   deadline): the timeout starts at one of their clocks.
//! * A stamp whose generation bits do not match the installed word (a
//!   racer stalled since an earlier half-open period overwrote it) is
//!   replaced by the first caller that notices, with its own `now`: the
//!   half-open period then lasts at most `max_half_open` from that call.
//! * The deadline is wrapped like the open deadline (see `word`): a `now`
//!   up to `max(max_half_open, ~1.05 s)` earlier than the stamp reads "not
//!   expired" (a stale clock never times out early), anything else past
//!   the deadline reads expired, except that a half-open breaker nobody
//!   asks for a whole multiple of 2²⁴ ticks (≈ 4 h 46 min) past its
//!   deadline may read "not expired" for up to two more timeouts plus ~1 s.

use super::config::{Config, ConfigBuilder};
use super::generation::low;
use super::word::{
    self, Kind, Word, BACKWARD_TOLERANCE_TICKS, MAX_STREAK, TICK_MICROS, TICK_SHIFT,
};
use super::{transition, CircuitBreaker, Transition};
use crate::sync::{Epoch, Ordering};
use crate::{Duration, Instant};

const DEADLINE_BITS: u32 = 24;
const DEADLINE_MASK: u32 = (1 << DEADLINE_BITS) - 1;
const GEN_BITS_MASK: u32 = 0xFF;

/// The stamp of a half-open generation `gen` entered at `now`.
const fn stamp(gen: u32, now: Instant, max: Duration) -> u32 {
    let end = now.as_micros().saturating_add(max.as_micros());
    let ticks = end.div_ceil(TICK_MICROS) as u32 & DEADLINE_MASK;
    (gen & GEN_BITS_MASK) << DEADLINE_BITS | ticks
}

/// Whether the stamped deadline has passed at `now` (see the module docs
/// for the wrapped range).
fn passed(stamp: u32, max: Duration, now: Instant) -> bool {
    let now_ticks = ((now.as_micros() >> TICK_SHIFT) as u32) & DEADLINE_MASK;
    let remaining = (stamp & DEADLINE_MASK).wrapping_sub(now_ticks) & DEADLINE_MASK;
    // max ≤ 2^22 ticks: the sum stays under 2^23 + 3.
    let max_ticks = (max.as_micros() >> TICK_SHIFT) as u32 + 2;
    let stale = max_ticks.max(BACKWARD_TOLERANCE_TICKS);
    remaining == 0 || remaining > max_ticks + stale
}

impl ConfigBuilder {
    /// Reopen a half-open breaker whose trials have not decided within
    /// `max` of entering half-open (Resilience4j's
    /// `maxWaitDurationInHalfOpenState`): 1.024 ms ticks up to
    /// [`Config::MAX_HALF_OPEN`]. See [`CircuitBreaker`]'s
    /// "Half-open timeout".
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::breaker::{CircuitBreaker, Config, Outcome, State};
    /// use fusebox::{Duration, Instant};
    ///
    /// let config = Config::builder()
    ///     .consecutive_failures(1)
    ///     .open_for(Duration::from_secs(1))
    ///     .max_half_open(Duration::from_secs(5))
    ///     .build()?;
    /// let breaker = CircuitBreaker::new(config);
    /// let t0 = Instant::from_secs(10);
    /// breaker.try_acquire(t0).unwrap().record(Outcome::Failure, t0, Duration::ZERO);
    /// let t1 = t0 + Duration::from_secs(2);
    /// let trial = breaker.try_acquire(t1).expect("half-open trial");
    /// // The trial hangs; 5 s later the next caller finds the timeout passed.
    /// let t2 = t1 + Duration::from_secs(6);
    /// assert_eq!(breaker.state(t2), State::Open);
    /// let rejected = breaker.try_acquire(t2).unwrap_err();
    /// assert_eq!(rejected.transition.map(|t| (t.from, t.to)), Some((State::HalfOpen, State::Open)));
    /// // The late trial decides nothing.
    /// assert_eq!(trial.record(Outcome::Success, t2, Duration::ZERO), None);
    /// assert_eq!(breaker.state(t2), State::Open);
    /// # Ok::<(), fusebox::breaker::ConfigError>(())
    /// ```
    pub const fn max_half_open(mut self, max: Duration) -> Self {
        self.max_half_open = Some(max);
        self
    }
}

impl Config {
    /// Longest time the breaker stays half-open without a decision, if
    /// limited ([`ConfigBuilder::max_half_open`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox::breaker::Config;
    /// use fusebox::Duration;
    ///
    /// let b = Config::builder().consecutive_failures(5);
    /// assert_eq!(b.build()?.max_half_open(), None);
    /// let limited = b.max_half_open(Duration::from_secs(10)).build()?;
    /// assert_eq!(limited.max_half_open(), Some(Duration::from_secs(10)));
    /// # Ok::<(), fusebox::breaker::ConfigError>(())
    /// ```
    pub const fn max_half_open(&self) -> Option<Duration> {
        if self.max_half_open.is_zero() {
            None
        } else {
            Some(self.max_half_open)
        }
    }
}

impl CircuitBreaker {
    /// Stamps the half-open generation `gen` about to be installed at `now`
    /// (before the CAS that installs it). No-op without a timeout.
    #[inline(never)] // two callers, off the closed path: one copy in firmware
    pub(super) fn stamp_half_open(&self, gen: Epoch, now: Instant) {
        let max = self.config.max_half_open;
        if !max.is_zero() {
            self.half_open_stamp
                .store(stamp(low(gen), now, max), Ordering::Release);
        }
    }

    /// Whether the installed HalfOpen word `cur` has outlived
    /// `max_half_open` at `now`. A stamp left by another generation is
    /// replaced with one from `now` (the timeout restarts).
    #[inline(never)]
    pub(super) fn half_open_expired(&self, cur: Word, now: Instant) -> bool {
        let max = self.config.max_half_open;
        if max.is_zero() {
            return false;
        }
        let s = self.half_open_stamp.load(Ordering::Acquire);
        if s >> DEADLINE_BITS != cur.gen() & GEN_BITS_MASK {
            let fresh = stamp(cur.gen(), now, max);
            let _ = self.half_open_stamp.compare_exchange(
                s,
                fresh,
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
            return false;
        }
        passed(s, max, now)
    }

    /// Reopens the expired HalfOpen word `cur` at `now`, as a failed trial
    /// would: the streak grows, a fresh open time starts, a trip is
    /// counted. Fails with the word found if `cur` is no longer installed.
    #[cold]
    pub(super) fn time_out_half_open(&self, cur: Word, now: Instant) -> Result<Transition, Word> {
        // The epoch names this half-open word before it is replaced.
        let _ = self.settled_epoch(cur);
        let streak = (cur.streak() + 1).min(MAX_STREAK);
        let open_for = self.config.open_duration(streak);
        let open = self.open_word(streak, word::full_deadline_after(now, open_for));
        self.cas(cur, open)?;
        self.counters.trips.incr();
        Ok(transition(Kind::HalfOpen, Kind::Open, now))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::super::word::MAX_HALF_OPEN;
    use super::*;

    const MAX: Duration = Duration::from_secs(5);

    #[test]
    fn passes_at_the_rounded_up_deadline_never_before() {
        for t0 in [
            Instant::from_micros(1_234),
            Instant::from_micros(((1u64 << 24) - 3) << TICK_SHIFT), // across the wrap
            Instant::from_secs(10 * 365 * 24 * 3600),
        ] {
            let s = stamp(7, t0, MAX);
            let end = t0 + MAX;
            let deadline =
                Instant::from_micros(end.as_micros().div_ceil(TICK_MICROS) * TICK_MICROS);
            assert!(!passed(s, MAX, t0));
            assert!(!passed(s, MAX, end - Duration::from_micros(1)));
            assert!(!passed(s, MAX, deadline - Duration::from_micros(1)));
            assert!(passed(s, MAX, deadline));
            assert!(passed(s, MAX, deadline + Duration::from_secs(3600)));
            // A stale clock (up to the timeout before the entry) reads "not yet".
            assert!(!passed(s, MAX, t0 - MAX));
            assert!(!passed(s, MAX, t0.saturating_sub(Duration::from_secs(1))));
        }
    }

    #[test]
    fn the_longest_timeout_fits_the_wrapped_range() {
        let t0 = Instant::from_secs(77);
        let s = stamp(0, t0, MAX_HALF_OPEN);
        assert!(!passed(s, MAX_HALF_OPEN, t0));
        assert!(!passed(s, MAX_HALF_OPEN, t0 - MAX_HALF_OPEN));
        let deadline = t0 + MAX_HALF_OPEN + Duration::from_micros(TICK_MICROS);
        assert!(passed(s, MAX_HALF_OPEN, deadline));
        // Expired reads hold for over 2 h past the deadline.
        assert!(passed(
            s,
            MAX_HALF_OPEN,
            deadline + Duration::from_secs(7_000)
        ));
    }

    #[test]
    fn the_generation_tag_is_eight_bits() {
        let s = stamp(0x1234, Instant::ZERO, MAX);
        assert_eq!(s >> DEADLINE_BITS, 0x34);
    }
}
