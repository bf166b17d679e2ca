//! The breaker's configuration in atomic words, so that
//! [`CircuitBreaker::set_config`](super::CircuitBreaker::set_config) can change thresholds and open times of a
//! shared breaker (`&self`) while calls go on.
//!
//! # Layout
//!
//! ```text
//! trip:   [minimum_calls 8][slow_rate 7][failure_rate 7][consecutive_failures 8]
//! trial:  [failure_count 8][close_after 6][half_open_permits 6]
//! slow_threshold: µs (u32)     open_for, max_open_for, open_bound: 8 µs units (u32)
//! ```
//!
//! Every field of a [`Config`] fits exactly: the builder keeps slow
//! thresholds under 2³² µs (~71.6 min) and rounds open times up to a
//! multiple of 8 µs (2³⁴ µs, the longest, is 2³¹ units).
//!
//! # What a change means for calls racing it
//!
//! Reads are `Relaxed` loads of the one word a decision needs (the closed
//! path reads what it read before, from an atomic instead of a plain field:
//! the same load instruction on x86-64 and Arm). The one ordering that
//! matters is the open bound's (below): the open times are stored with
//! `Release` after the bound is raised and read with `Acquire` before it. A decision racing a change
//! sees each *word* wholly old or wholly new: the trip thresholds together,
//! the half-open limits together, each duration on its own. Changes are
//! serialised with each other ([`crate::sync::critical`]), never with calls.
//!
//! The window's size and whether it is kept at all (some rate policy on)
//! are fixed at construction: its slots are laid out for them (see
//! `window`). So are the time window's interval and bucket count, and the
//! half-open timeout (features `time-window`, `half-open-timeout`), kept in
//! plain fields. Everything else may change: a lowered threshold applies from
//! the next outcome (a closed breaker already at or past it trips on its
//! next failure, a half-open one with enough successes closes on its next
//! success); a breaker open at the change keeps its deadline and the new
//! open times apply from the next opening.
//!
//! `open_bound` is, once a change has been made, the longest `max_open_for`
//! ever configured. An open
//! deadline is read against it (see `word::remaining`), so that a shorter
//! open time set while the breaker is open never makes a deadline set under
//! the longer one look expired early (or a stale clock read it as expired).

use super::config::Config;
use super::reconfigure::ReconfigureError;
use super::word::MAX_OPEN_FOR;
use crate::sync::{
    const_fn_unless_loom, AtomicU32,
    Ordering::{Acquire, Relaxed, Release},
};
use crate::Duration;

/// Open times are kept in units of this many µs.
pub(crate) const OPEN_UNIT_MICROS: u64 = 8;
/// The longest slow-call threshold, in µs; `u32::MAX` in the
/// `slow_threshold` word stands for "no slow-call policy" (`Duration::MAX`).
pub(crate) const MAX_SLOW_THRESHOLD_MICROS: u64 = u32::MAX as u64 - 1;
const NO_SLOW_THRESHOLD: u32 = u32::MAX;

const SEVEN: u32 = 0x7F;
const SIX: u32 = 0x3F;
const FAILURE_RATE_SHIFT: u32 = 8;
const SLOW_RATE_SHIFT: u32 = 15;
const MINIMUM_SHIFT: u32 = 22;
const CLOSE_AFTER_SHIFT: u32 = 6;
#[cfg(feature = "time-window")]
const FAILURE_COUNT_SHIFT: u32 = 12;

#[derive(Debug)]
pub(crate) struct LiveConfig {
    /// The sliding window's size (fixed at construction).
    window: u8,
    /// Whether the window is kept: some rate policy on (fixed).
    windowed: bool,
    /// The time window's interval in µs (0: count-based; fixed).
    #[cfg(feature = "time-window")]
    pub(crate) time_interval: u32,
    /// The time window's buckets (0: count-based; fixed).
    #[cfg(feature = "time-window")]
    pub(crate) time_buckets: u8,
    /// The half-open timeout (zero: none; fixed).
    #[cfg(feature = "half-open-timeout")]
    pub(crate) max_half_open: Duration,
    /// `[minimum_calls 8][slow_rate 7][failure_rate 7][consecutive 8]`.
    trip: AtomicU32,
    /// `[failure_count 8][close_after 6][half_open_permits 6]`.
    trial: AtomicU32,
    /// µs.
    slow_threshold: AtomicU32,
    /// 8 µs units.
    open_for: AtomicU32,
    /// 8 µs units.
    max_open_for: AtomicU32,
    /// 0 until the first change; then the longest `max_open_for` ever
    /// configured, 8 µs units; only grows.
    open_bound: AtomicU32,
}

const fn trip_word(c: &Config) -> u32 {
    c.consecutive_failures as u32
        | (c.failure_rate as u32) << FAILURE_RATE_SHIFT
        | (c.slow_rate as u32) << SLOW_RATE_SHIFT
        | (c.minimum_calls as u32) << MINIMUM_SHIFT
}

const fn trial_word(c: &Config) -> u32 {
    let word = c.half_open_permits as u32 | (c.close_after as u32) << CLOSE_AFTER_SHIFT;
    #[cfg(feature = "time-window")]
    let word = word | (c.failure_count as u32) << FAILURE_COUNT_SHIFT;
    word
}

const fn slow_word(d: Duration) -> u32 {
    // The builder keeps real thresholds at most MAX_SLOW_THRESHOLD_MICROS.
    if d.as_micros() > MAX_SLOW_THRESHOLD_MICROS {
        NO_SLOW_THRESHOLD
    } else {
        d.as_micros() as u32
    }
}

const fn units(d: Duration) -> u32 {
    // The builder rounded `d` to a multiple of 8 µs, at most MAX_OPEN_FOR.
    (d.as_micros() / OPEN_UNIT_MICROS) as u32
}

const fn from_units(u: u32) -> Duration {
    Duration::from_micros(u as u64 * OPEN_UNIT_MICROS)
}

impl LiveConfig {
    const_fn_unless_loom! {
        pub(crate) fn new(c: Config) -> Self {
            Self {
                window: c.window,
                windowed: c.uses_window(),
                #[cfg(feature = "time-window")]
                time_interval: c.time_interval,
                #[cfg(feature = "time-window")]
                time_buckets: c.time_buckets,
                #[cfg(feature = "half-open-timeout")]
                max_half_open: c.max_half_open,
                trip: AtomicU32::new(trip_word(&c)),
                trial: AtomicU32::new(trial_word(&c)),
                slow_threshold: AtomicU32::new(slow_word(c.slow_threshold)),
                open_for: AtomicU32::new(units(c.open_for)),
                max_open_for: AtomicU32::new(units(c.max_open_for)),
                open_bound: AtomicU32::new(0),
            }
        }
    }

    /// The configuration as it is now (each word as of its own load).
    pub(crate) fn load(&self) -> Config {
        let trip = self.trip.load(Relaxed);
        let trial = self.trial.load(Relaxed);
        Config {
            consecutive_failures: (trip & 0xFF) as u16,
            failure_rate: ((trip >> FAILURE_RATE_SHIFT) & SEVEN) as u8,
            slow_rate: ((trip >> SLOW_RATE_SHIFT) & SEVEN) as u8,
            minimum_calls: ((trip >> MINIMUM_SHIFT) & 0xFF) as u8,
            half_open_permits: (trial & SIX) as u8,
            close_after: ((trial >> CLOSE_AFTER_SHIFT) & SIX) as u8,
            window: self.window,
            slow_threshold: self.slow_threshold(),
            open_for: from_units(self.open_for.load(Relaxed)),
            max_open_for: from_units(self.max_open_for.load(Relaxed)),
            #[cfg(feature = "half-open-timeout")]
            max_half_open: self.max_half_open,
            #[cfg(feature = "time-window")]
            time_interval: self.time_interval,
            #[cfg(feature = "time-window")]
            time_buckets: self.time_buckets,
            #[cfg(feature = "time-window")]
            failure_count: ((trial >> FAILURE_COUNT_SHIFT) & 0xFF) as u8,
        }
    }

    /// Whether the rate policies use the count-based sliding window.
    #[inline]
    pub(crate) const fn uses_count_window(&self) -> bool {
        self.windowed && !self.timed()
    }

    /// Whether the breaker keeps a time-based window (fixed).
    #[cfg(feature = "time-window")]
    #[inline]
    pub(crate) const fn timed(&self) -> bool {
        self.time_buckets != 0
    }

    /// Whether the breaker keeps a time-based window.
    #[cfg(not(feature = "time-window"))]
    #[allow(clippy::unused_self)] // its twin with the feature reads it
    #[inline]
    pub(crate) const fn timed(&self) -> bool {
        false
    }

    /// Failures within the time window that open the breaker (0: off).
    #[cfg(feature = "time-window")]
    #[inline]
    pub(crate) fn failure_count(&self) -> u32 {
        (self.trial.load(Relaxed) >> FAILURE_COUNT_SHIFT) & 0xFF
    }

    /// Whether the sliding window is kept (fixed at construction).
    #[inline]
    pub(crate) const fn uses_window(&self) -> bool {
        self.windowed
    }

    /// The window's size in calls (fixed at construction).
    #[inline]
    pub(crate) const fn window(&self) -> u8 {
        self.window
    }

    /// The slow-call threshold (`Duration::MAX` with no slow-call policy).
    #[inline]
    pub(crate) fn slow_threshold(&self) -> Duration {
        match self.slow_threshold.load(Relaxed) {
            NO_SLOW_THRESHOLD => Duration::MAX,
            micros => Duration::from_micros(u64::from(micros)),
        }
    }

    /// The trip thresholds, read together.
    #[inline]
    pub(crate) fn trip(&self) -> Trip {
        let w = self.trip.load(Relaxed);
        Trip {
            consecutive_failures: w & 0xFF,
            failure_rate: ((w >> FAILURE_RATE_SHIFT) & SEVEN) as u8,
            slow_rate: ((w >> SLOW_RATE_SHIFT) & SEVEN) as u8,
            minimum_calls: (w >> MINIMUM_SHIFT) & 0xFF,
        }
    }

    /// `(half_open_permits, close_after)`, read together.
    #[inline]
    pub(crate) fn trial(&self) -> (u32, u32) {
        let w = self.trial.load(Relaxed);
        (w & SIX, (w >> CLOSE_AFTER_SHIFT) & SIX)
    }

    /// Open time after `streak` re-openings: `open_for · 2^streak`, capped
    /// at `max_open_for`.
    pub(crate) fn open_duration(&self, streak: u32) -> Duration {
        let open_for = u64::from(self.open_for.load(Relaxed));
        let max = u64::from(self.max_open_for.load(Relaxed));
        from_units(open_for.saturating_mul(1 << streak).min(max) as u32)
    }

    /// The open time an Open word with `streak` is read against (see the
    /// module docs): its open time, and once the configuration has been
    /// changed, at least the longest `max_open_for` ever configured (the
    /// word's deadline may come from any of them).
    pub(crate) fn open_bound(&self, streak: u32) -> Duration {
        // The open times first, with Acquire: a reader that sees a new
        // (shorter) open time then sees the bound raised before it.
        let open_for = u64::from(self.open_for.load(Acquire));
        let max = u64::from(self.max_open_for.load(Acquire));
        let open = from_units(open_for.saturating_mul(1 << streak).min(max) as u32);
        let bound = from_units(self.open_bound.load(Relaxed));
        if bound.as_micros() > open.as_micros() {
            bound
        } else {
            open
        }
    }

    /// Installs `new` (serialised with other changes by the caller),
    /// returning the previous configuration.
    pub(crate) fn store(&self, new: &Config) -> Result<Config, ReconfigureError> {
        let old = self.load();
        if new.window != self.window {
            return Err(ReconfigureError::WindowSize {
                current: old.window,
                requested: new.window,
            });
        }
        if new.uses_window() != self.windowed {
            return Err(ReconfigureError::WindowPolicy);
        }
        #[cfg(feature = "time-window")]
        if (new.time_interval, new.time_buckets) != (self.time_interval, self.time_buckets) {
            return Err(ReconfigureError::TimeWindow);
        }
        #[cfg(feature = "half-open-timeout")]
        if new.max_half_open != self.max_half_open {
            return Err(ReconfigureError::HalfOpenTimeout);
        }
        // The bound first: a deadline set under the new, longer open times
        // must never be read against the old, shorter bound.
        self.open_bound.fetch_max(
            units(old.max_open_for).max(units(new.max_open_for)),
            Relaxed,
        );
        // Release: the bound is visible to whoever sees these (`open_bound`).
        self.max_open_for.store(units(new.max_open_for), Release);
        self.open_for.store(units(new.open_for), Release);
        self.slow_threshold
            .store(slow_word(new.slow_threshold), Relaxed);
        self.trial.store(trial_word(new), Relaxed);
        self.trip.store(trip_word(new), Relaxed);
        Ok(old)
    }
}

/// The trip thresholds of one `trip` word load (0: that policy is off).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Trip {
    pub(crate) consecutive_failures: u32,
    pub(crate) failure_rate: u8,
    pub(crate) slow_rate: u8,
    pub(crate) minimum_calls: u32,
}

impl Trip {
    /// The rate rule, for a window of `calls` holding `failures` and `slow`
    /// calls (count-based or time-based): at least `minimum_calls`, and a
    /// rate at or above its percentage.
    #[inline]
    pub(crate) fn rates_trip(&self, calls: u32, failures: u32, slow: u32) -> bool {
        let over = |count: u32, percent: u8| {
            percent != 0 && u64::from(count) * 100 >= u64::from(percent) * u64::from(calls)
        };
        calls >= self.minimum_calls
            && (over(failures, self.failure_rate) || over(slow, self.slow_rate))
    }
}

// Every field of a valid Config fits its bits.
const _: () = {
    assert!(super::word::MAX_CONSECUTIVE <= 0xFF);
    assert!(super::config::MAX_WINDOW as u32 <= SEVEN);
    assert!(super::word::MAX_HALF_OPEN_PERMITS as u32 <= SIX);
    assert!(super::word::MAX_CLOSE_AFTER as u32 <= SIX);
    assert!(MAX_OPEN_FOR.as_micros() / OPEN_UNIT_MICROS <= u32::MAX as u64);
};
