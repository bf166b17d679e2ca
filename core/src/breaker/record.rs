//! Recording outcomes: the closed fast paths, the sliding window's claim
//! and tally, trips, half-open trials and abandoned permits.

use super::generation::low;
use super::window::Cursor;
use super::word::{self, Kind, Word, MAX_STREAK};
use super::{transition, CircuitBreaker, Outcome, Transition};
use crate::sync::Epoch;
use crate::{Duration, Instant};

impl CircuitBreaker {
    /// Records an outcome, reading `now` only when it matters. The
    /// consecutive policy's success on a breaker with no failure streak is
    /// the hot path: one counter RMW and one load, no state write, no clock;
    /// everything else goes out of line.
    // See `Permit::record_with`: the hot path must reach the caller.
    #[allow(clippy::inline_always)]
    #[inline(always)]
    pub(super) fn record(
        &self,
        gen: Epoch,
        half_open: bool,
        outcome: Outcome,
        now: impl FnOnce() -> Instant,
        elapsed: Duration,
    ) -> Option<Transition> {
        if outcome == Outcome::Success && !half_open && !self.config.uses_window() {
            let cur = self.load();
            // Even a stale permit's success changes nothing in a clean
            // closed word, so the low bits suffice here.
            if cur == Word::closed(low(gen), 0, Cursor::EMPTY) {
                // Still closed, no streak to reset: nothing to write.
                self.counters.successes.incr();
                return None;
            }
            // Counted after the clock is read: if `now` panics, the call
            // counts as abandoned only.
            let transition = self.settle(cur, gen, false, false, false, now());
            self.counters.successes.incr();
            return transition;
        }
        let now = now();
        if outcome == Outcome::Success && !half_open && elapsed < self.config.slow_threshold() {
            // A fast closed success under a rate policy: counted here; its
            // claim returns early in `record_window` in the steady state.
            self.counters.successes.incr();
            return self.settle(self.load(), gen, false, false, false, now);
        }
        self.record_counted(gen, half_open, outcome, now, elapsed)
    }

    /// Every record but the hot path: counts the outcome, then settles it.
    #[inline(never)]
    pub(super) fn record_counted(
        &self,
        gen: Epoch,
        half_open: bool,
        outcome: Outcome,
        now: Instant,
        elapsed: Duration,
    ) -> Option<Transition> {
        let c = &self.counters;
        if outcome == Outcome::Ignored {
            c.ignored.incr();
            if half_open {
                self.release_trial(gen);
            }
            return None;
        }
        let failure = outcome == Outcome::Failure;
        let slow = self.config.trip().slow_rate != 0 && elapsed >= self.config.slow_threshold();
        if failure {
            c.failures.incr();
        } else {
            c.successes.incr();
        }
        if slow {
            c.slow_calls.incr();
        }
        self.settle(self.load(), gen, half_open, failure, slow, now)
    }

    /// Applies a counted outcome to the state word `cur`.
    #[inline(never)]
    pub(super) fn settle(
        &self,
        cur: Word,
        gen: Epoch,
        half_open: bool,
        failure: bool,
        slow: bool,
        now: Instant,
    ) -> Option<Transition> {
        if !self.owns(cur, gen, half_open) {
            return None; // a stale permit: counted, changes no state
        }
        if half_open {
            return self.record_trial(cur, gen, failure || slow, now);
        }
        #[cfg(feature = "time-window")]
        if self.config.timed() {
            return self.record_timed(cur, gen, failure, slow, now);
        }
        self.record_closed(cur, gen, failure, slow, now)
    }

    /// A record of generation `gen`, which `cur` was installed as. Inside
    /// the CAS loops below a changed word is judged by its low bits only.
    pub(super) fn record_closed(
        &self,
        mut cur: Word,
        gen: Epoch,
        failure: bool,
        slow: bool,
        now: Instant,
    ) -> Option<Transition> {
        let cfg = &self.config;
        let windowed = cfg.uses_window();
        let trip = cfg.trip();
        let threshold = trip.consecutive_failures;
        // One CAS updates the failure count and, with a window, claims this
        // record's slot; it fails for a stale generation.
        let claimed = loop {
            if !cur.owns(low(gen), false) {
                return None;
            }
            // Failures in a row are counted whether or not the consecutive
            // policy is on (saturating at 255), so turning it on with
            // `set_config` counts the streak already under way.
            let failures = if failure {
                (cur.failures() + 1).min(word::MAX_CONSECUTIVE)
            } else {
                0
            };
            if threshold != 0 && failures >= threshold {
                match self.trip_closed(cur, gen, now) {
                    Ok(t) => return Some(t),
                    Err(actual) => {
                        cur = actual;
                        continue;
                    }
                }
            }
            let cursor = if windowed {
                cur.cursor().next(u32::from(cfg.window()))
            } else {
                Cursor::EMPTY
            };
            let new = Word::closed(cur.gen(), failures, cursor);
            if new == cur {
                return None; // nothing to write: the closed fast path
            }
            match self.cas(cur, new) {
                Ok(()) => break cur.cursor(),
                Err(actual) => cur = actual,
            }
        };
        if !windowed {
            return None;
        }
        let size = u32::from(cfg.window());
        let first_lap = !claimed.full && claimed.count < size;
        let completes_minimum = first_lap && claimed.count + 1 >= trip.minimum_calls;
        let quiet = !(failure || slow || completes_minimum);
        if quiet && self.window.holds_fast_success(cfg.window(), claimed.count) {
            return None; // the steady state: nothing to write, nothing to tally
        }
        self.record_window(gen, claimed, failure, slow, quiet, now)
    }

    /// The sliding-window part of a closed record: write the claimed slot,
    /// then tally and maybe trip (see the `window` module for who tallies).
    #[inline(never)]
    pub(super) fn record_window(
        &self,
        gen: Epoch,
        claimed: Cursor,
        failure: bool,
        slow: bool,
        quiet: bool,
        now: Instant,
    ) -> Option<Transition> {
        let cfg = &self.config;
        let size = u32::from(cfg.window());
        self.window
            .write(low(gen), cfg.window(), claimed.count, failure, slow, || {
                let cur = self.load();
                cur.owns(low(gen), false) && cur.cursor().still_holds(claimed.count, size)
            });
        if quiet {
            return None; // a fast success in a full window cannot raise a rate
        }
        // The cursor is read after the sync, so it covers every claim whose
        // published write the tally sees.
        self.window.sync();
        let mut cur = self.load();
        loop {
            if !cur.owns(low(gen), false) {
                return None;
            }
            let calls = cur.cursor().calls(size);
            let t = self.window.tally(low(gen), cfg.window(), cur.cursor());
            if !cfg.trip().rates_trip(calls, t.failures, t.slow) {
                return None;
            }
            match self.trip_closed(cur, gen, now) {
                Ok(t) => return Some(t),
                Err(actual) => cur = actual,
            }
        }
    }

    /// Opens the closed word `cur` of generation `gen` at `now`.
    pub(super) fn trip_closed(
        &self,
        cur: Word,
        gen: Epoch,
        now: Instant,
    ) -> Result<Transition, Word> {
        // The Open word carries no generation: the epoch must name `cur`'s
        // before it goes.
        self.publish(gen);
        let open = self.open_word(
            0,
            word::full_deadline_after(now, self.config.open_duration(0)),
        );
        self.cas(cur, open)?;
        self.counters.trips.incr();
        Ok(transition(Kind::Closed, Kind::Open, now))
    }

    #[inline(never)]
    pub(super) fn record_trial(
        &self,
        mut cur: Word,
        gen: Epoch,
        failed: bool,
        now: Instant,
    ) -> Option<Transition> {
        // The epoch names this half-open word before it is replaced.
        self.publish(gen);
        let closed_gen = gen.wrapping_add(1);
        loop {
            if !cur.owns(low(gen), true) {
                return None;
            }
            #[cfg(feature = "half-open-timeout")]
            if self.half_open_expired(cur, now) {
                // Too late to decide: the timeout reopens it instead.
                match self.time_out_half_open(cur, now) {
                    Ok(t) => return Some(t),
                    Err(actual) => {
                        cur = actual;
                        continue;
                    }
                }
            }
            let (new, to) = if failed {
                let streak = (cur.streak() + 1).min(MAX_STREAK);
                let open_for = self.config.open_duration(streak);
                let deadline = word::full_deadline_after(now, open_for);
                (self.open_word(streak, deadline), Some(Kind::Open))
            } else if cur.successes() + 1 >= self.config.trial().1 {
                (
                    Word::closed(low(closed_gen), 0, Cursor::EMPTY),
                    Some(Kind::Closed),
                )
            } else {
                let in_flight = cur.in_flight().saturating_sub(1);
                let next = Word::half_open(cur.gen(), cur.streak(), in_flight, cur.successes() + 1);
                (next, None)
            };
            if to == Some(Kind::Closed) {
                self.prepare(new, closed_gen, now);
            }
            match self.cas(cur, new) {
                Ok(()) => {
                    match to {
                        Some(Kind::Open) => self.counters.trips.incr(),
                        Some(_) => self.publish(closed_gen),
                        None => {}
                    }
                    return to.map(|to| transition(Kind::HalfOpen, to, now));
                }
                Err(actual) => cur = actual,
            }
        }
    }

    #[cold]
    pub(super) fn abandon(&self, gen: Epoch, half_open: bool) {
        self.counters.abandoned.incr();
        if half_open {
            self.release_trial(gen);
        }
    }

    /// Frees a half-open trial's slot without deciding (if its generation is
    /// still installed).
    #[cold]
    fn release_trial(&self, gen: Epoch) {
        let mut cur = self.load();
        if !self.owns(cur, gen, true) {
            return;
        }
        while cur.owns(low(gen), true) {
            let in_flight = cur.in_flight().saturating_sub(1);
            let new = Word::half_open(cur.gen(), cur.streak(), in_flight, cur.successes());
            match self.cas(cur, new) {
                Ok(()) => return,
                Err(actual) => cur = actual,
            }
        }
    }
}
