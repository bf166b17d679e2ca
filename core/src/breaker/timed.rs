//! The time-based window (feature `time-window`): a ring of per-interval
//! buckets keyed by time, Resilience4j's `TIME_BASED` sliding window made
//! lock-free in fixed memory.
//!
//! # Buckets: one word each
//!
//! ```text
//!  wide (u64, native 64-bit atomics): F = 16;  Cortex-M (u32): F = 8
//! +--------------+--------------+--------------+--------------+
//! | tag (F)      | slow (F)     | failures (F) | calls (F)    |
//! +--------------+--------------+--------------+--------------+
//! ```
//!
//! Interval `i` (`⌊now / interval⌋`) lives in slot `i mod buckets` (a power
//! of two, so the slot survives the wrap of the interval counters), tagged
//! with `i mod 2^F`. A bucket whose counts are all zero is empty whatever
//! its tag. Each count saturates at `2^F − 1` (`BUCKET_CAP`): it never
//! wraps to a small number, and as calls saturate first, a saturated
//! bucket over-states its failure and slow rates (errs toward opening).
//!
//! # `newest`: the interval the window has reached
//!
//! One word holds `newest << 1 | 1` (0: nothing recorded yet, or since a
//! `reset`, which forgets it), in the
//! breaker's epoch width (64-bit where native; 31 interval bits on
//! Cortex-M). A record at interval `j` later than `newest` first *moves the
//! window*: it empties the slots of the intervals it skips over (at most
//! `buckets` of them), only while `newest` is unchanged and only buckets
//! whose tag is not newer than `newest`, then publishes `j` by CAS; losers
//! retry against the new value. So every bucket holds either nothing or an
//! interval within the last `buckets` before `newest` (a 2^F tag cannot
//! alias), and a bucket is reset only by the mover that passes its interval
//! or by the first writer of its new interval (tag older than its own).
//!
//! A record whose `now` is *not* later than `newest` (a stale clock, or a
//! clock within the same interval; on Cortex-M, up to 2²⁰ intervals
//! behind, see below) is counted in `newest`'s bucket: it
//! counts at least as long as it would have, and never resets or expires a
//! newer bucket. A bucket found with a newer tag than the writer's
//! interval makes it read `newest` again.
//!
//! # Tally
//!
//! Every writer bumps `written` (an AcqRel RMW) after its bucket write and
//! before its tally, as the count window does: of two racing records, the
//! later in that RMW order sees the other's bucket. A tally at reference
//! interval `r` (the newer of the caller's and `newest`) sums the buckets
//! whose tag lies within `buckets` intervals before `r`; if `newest` itself
//! is `buckets` or more intervals behind `r`, the window is empty.
//!
//! # What is left
//!
//! A writer that read `newest`, then lost the race to a mover that jumped
//! a whole multiple of 2^F intervals (`≥ 256` on Cortex-M, `≥ 65 536`
//! elsewhere) further, may land its outcome in the new window (one
//! outcome; it needs two concurrent clocks that many intervals apart). On
//! Cortex-M, `newest` keeps 31 bits of interval, so "behind" and "ahead"
//! share the space: an interval up to 2²⁰ behind `newest` (modulo 2³¹;
//! ≥ 17 min at 1 ms) reads as a stale clock, any other as later. So a
//! breaker idle for any time moves its window on, but one idle for within
//! 2²⁰ intervals short of a whole multiple of 2³¹ (24.8 days at 1 ms)
//! reads as stale until time passes `newest` again (at most 2²⁰ intervals:
//! the window stops expiring meanwhile, never fails open), and a clock
//! more than 2²⁰ intervals behind `newest` reads as later: it moves the
//! window, emptying it.

// `BucketInt` and `Epoch` are `u64` or `u32` by target: some casts and
// conversions below are no-ops on one of them.
#![allow(clippy::unnecessary_cast, clippy::useless_conversion)]

use super::generation::low;
use super::word::Word;
use super::{CircuitBreaker, Transition};
use crate::sync::{
    atomic_array, const_fn_unless_loom, AtomicU32, BucketInt, BucketWord, Epoch, EpochWord,
    Ordering,
};
use crate::Instant;

/// Largest number of buckets.
pub(crate) const MAX_BUCKETS: usize = 16;
const F: u32 = BucketInt::BITS / 4;
const FIELD: BucketInt = (1 << F) - 1;
const FAILURES_SHIFT: u32 = F;
const SLOW_SHIFT: u32 = 2 * F;
const TAG_SHIFT: u32 = 3 * F;
const COUNTS: BucketInt = (1 << TAG_SHIFT) - 1;
/// Half the tag space: tags within it compare as older/newer.
const TAG_HALF: BucketInt = 1 << (F - 1);

/// The largest count a bucket holds (per interval): 65 535 where the target
/// has native 64-bit atomics, 255 on Cortex-M.
///
/// # Examples
///
/// ```
/// use fusebox::breaker::TIME_BUCKET_CAP;
///
/// // One 16-bit field per count where the target has 64-bit atomics, 8 bits on Cortex-M.
/// # #[cfg(not(fusebox_narrow_words))]
/// #[cfg(target_has_atomic = "64")]
/// assert_eq!(TIME_BUCKET_CAP, u32::from(u16::MAX));
/// #[cfg(not(target_has_atomic = "64"))]
/// assert_eq!(TIME_BUCKET_CAP, u32::from(u8::MAX));
/// # #[cfg(fusebox_narrow_words)] // the host's emulation of Cortex-M's words
/// # assert_eq!(TIME_BUCKET_CAP, u32::from(u8::MAX));
/// ```
pub const TIME_BUCKET_CAP: u32 = FIELD as u32;

/// Interval numbers as `newest` keeps them: one bit less than its word.
const SPACE: Epoch = Epoch::MAX >> 1;
const SPACE_HALF: Epoch = 1 << (Epoch::BITS - 2);
/// How far (intervals) behind `newest` a record's interval may be and still
/// read as a stale clock: half the space where it is 63 bits; on Cortex-M
/// 2²⁰ (≥ 17 min at 1 ms). Beyond it, the interval reads as *later* than
/// `newest`: with 31 bits, "2³⁰ behind" is also "2³⁰ ahead", and a
/// breaker left idle for 2³⁰ intervals (12.4 days at 1 ms) read every
/// later record as stale, writing them all into one bucket that never
/// expired for up to 12.4 more days (a 10 % failure rate tripped a 50 %
/// rule after ~1 250 calls, again after every close).
const STALE: Epoch = if Epoch::BITS > 32 {
    SPACE_HALF
} else {
    1 << 20
};
/// The smallest distance `j − newest` (mod the space) that reads as behind.
const BEHIND: Epoch = SPACE - STALE + 1;

/// Calls, failures and slow calls in the window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) calls: u32,
    pub(crate) failures: u32,
    pub(crate) slow: u32,
}

#[derive(Debug)]
pub(crate) struct TimeWindow {
    /// `newest << 1 | 1`, or 0 before the first record (see the module docs).
    newest: EpochWord,
    /// Publication chain for tallies (see the module docs).
    written: AtomicU32,
    /// The ring; layout in the module docs.
    buckets: [BucketWord; MAX_BUCKETS],
}

#[allow(clippy::unnecessary_cast)] // `Epoch` and `BucketInt` differ by target
const fn tag(interval: Epoch) -> BucketInt {
    (interval as BucketInt) & FIELD
}

const fn field(v: BucketInt, shift: u32) -> u32 {
    ((v >> shift) & FIELD) as u32
}

/// Whether tag `a` is older than tag `b` (wrapping, within half the space).
const fn older(a: BucketInt, b: BucketInt) -> bool {
    let d = b.wrapping_sub(a) & FIELD;
    d != 0 && d < TAG_HALF
}

/// `1 << shift` if `yes` and that count of `v` is not saturated.
const fn bump(v: BucketInt, shift: u32, yes: bool) -> BucketInt {
    if yes && (v >> shift) & FIELD < FIELD {
        1 << shift
    } else {
        0
    }
}

/// `v` (already of interval `tag`, or empty) with one more outcome,
/// saturating each count.
const fn add(v: BucketInt, tag: BucketInt, failure: bool, slow: bool) -> BucketInt {
    let counts = v & COUNTS;
    tag << TAG_SHIFT
        | (counts
            + bump(counts, 0, true)
            + bump(counts, FAILURES_SHIFT, failure)
            + bump(counts, SLOW_SHIFT, slow))
}

/// The slot of interval `i` in a ring of `size` (a power of two).
#[allow(clippy::unnecessary_cast)]
const fn slot(i: Epoch, size: u32) -> usize {
    (i as usize) & (size as usize - 1) & (MAX_BUCKETS - 1)
}

impl TimeWindow {
    const_fn_unless_loom! {
        pub(crate) fn new() -> Self {
            Self {
                newest: EpochWord::new(0),
                written: AtomicU32::new(0),
                buckets: atomic_array!(BucketWord, 0, MAX_BUCKETS),
            }
        }
    }

    /// Records an outcome at interval `j` (⌊now / interval⌋, truncated to
    /// the epoch width) in a ring of `size` buckets, then returns the
    /// window's counts as this record sees them.
    pub(crate) fn record(&self, j: u64, size: u8, failure: bool, slow: bool) -> Counts {
        let size = u32::from(size);
        #[allow(clippy::unnecessary_cast)]
        let j = (j as Epoch) & SPACE;
        let mut at = self.advance(j, size);
        'write: loop {
            let cell = &self.buckets[slot(at, size)];
            let want = tag(at);
            let mut v = cell.load(Ordering::Acquire);
            loop {
                let t = v >> TAG_SHIFT;
                let base = if v & COUNTS == 0 || older(t, want) {
                    0 // empty, or a past interval: this write resets it
                } else if t == want {
                    v
                } else {
                    // A newer interval holds the slot: the window moved on.
                    let again = self.advance(j, size);
                    if again != at {
                        at = again;
                        continue 'write;
                    }
                    0 // not newer after all (a stale tag): reset it
                };
                let new = add(base, want, failure, slow);
                // Release/acquire: a writer that finds this tag also finds
                // the `newest` it was written under.
                match cell.compare_exchange_weak(v, new, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => break 'write,
                    Err(actual) => v = actual,
                }
            }
        }
        self.written.fetch_add(1, Ordering::AcqRel);
        self.tally(at, size)
    }

    /// Moves the window to interval `j` if that is newer than `newest`
    /// (emptying the slots it skips); returns the interval a record at `j`
    /// is written to: the newer of the two.
    fn advance(&self, j: Epoch, size: u32) -> Epoch {
        let mut n = self.newest.load(Ordering::Acquire);
        loop {
            if n != 0 {
                let cur = n >> 1;
                let d = j.wrapping_sub(cur) & SPACE;
                if d == 0 || d >= BEHIND {
                    return cur; // not newer: write to `newest`
                }
                #[allow(clippy::useless_conversion)]
                let skipped = if d < Epoch::from(size) {
                    d as u32
                } else {
                    size
                };
                for step in 1..=skipped {
                    #[allow(clippy::useless_conversion)]
                    let i = cur.wrapping_add(Epoch::from(step)) & SPACE;
                    self.empty(slot(i, size), tag(cur), n);
                }
            }
            match self
                .newest
                .compare_exchange(n, j << 1 | 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return j,
                Err(actual) => n = actual,
            }
        }
    }

    /// Empties `slot` unless it holds an interval newer than `cur`, while
    /// `newest` is still `seen`.
    fn empty(&self, slot: usize, cur: BucketInt, seen: Epoch) {
        let cell = &self.buckets[slot];
        let mut v = cell.load(Ordering::Relaxed);
        while v & COUNTS != 0 && !older(cur, v >> TAG_SHIFT) {
            if self.newest.load(Ordering::Acquire) != seen {
                return; // moved on: the caller's CAS on `newest` fails
            }
            match cell.compare_exchange_weak(v, 0, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return,
                Err(actual) => v = actual,
            }
        }
    }

    /// The window's counts at interval `at` (or `newest`, if newer), seeing
    /// every bucket write published before this call.
    pub(crate) fn tally(&self, at: Epoch, size: u32) -> Counts {
        self.written.fetch_add(0, Ordering::AcqRel);
        let stored = self.newest.load(Ordering::Acquire);
        let mut counts = Counts::default();
        if stored == 0 {
            return counts;
        }
        let cur = stored >> 1;
        let d = at.wrapping_sub(cur) & SPACE;
        let r = if d < BEHIND { at } else { cur };
        #[allow(clippy::useless_conversion)]
        if r.wrapping_sub(cur) & SPACE >= Epoch::from(size) {
            return counts; // nothing recorded for a whole window
        }
        let want = tag(r);
        for cell in self.buckets.iter().take(size as usize) {
            let v = cell.load(Ordering::Relaxed);
            let age = want.wrapping_sub(v >> TAG_SHIFT) & FIELD;
            if v & COUNTS != 0 && age < BucketInt::from(size as u8) {
                counts.calls += field(v, 0);
                counts.failures += field(v, FAILURES_SHIFT);
                counts.slow += field(v, SLOW_SHIFT);
            }
        }
        counts
    }

    /// Forgets the newest interval reached, as in a new window (`reset`):
    /// a clock read far ahead before no longer makes every later record a
    /// stale one.
    pub(crate) fn forget(&self) {
        self.newest.store(0, Ordering::Release);
    }

    /// Empties every bucket (a new closed generation starts with an empty
    /// window). Called before the CAS that installs the Closed word, whose
    /// release orders these stores before any record of that generation.
    pub(crate) fn clear(&self, size: u8) {
        for cell in self.buckets.iter().take(usize::from(size)) {
            cell.store(0, Ordering::Relaxed);
        }
    }
}

impl CircuitBreaker {
    /// A closed record of generation `gen` (which `cur` was installed as)
    /// under a time window: counted in its interval's bucket, then the
    /// window is tallied and may trip. Every record that can change the
    /// verdict tallies (a success can bring the window to `minimum_calls`;
    /// with `failure_count` alone, successes are not counted at all).
    #[inline(never)]
    pub(super) fn record_timed(
        &self,
        mut cur: Word,
        gen: Epoch,
        failure: bool,
        slow: bool,
        now: Instant,
    ) -> Option<Transition> {
        let cfg = &self.config;
        let rule = cfg.trip();
        let failure_count = cfg.failure_count();
        let rates = rule.failure_rate != 0 || rule.slow_rate != 0;
        if !(failure || slow || rates) {
            return None;
        }
        // `time_interval` ≥ 1 000 µs: validated by the builder.
        let interval = now.as_micros() / u64::from(cfg.time_interval.max(1));
        let c = self.timed.record(interval, cfg.time_buckets, failure, slow);
        let counted = failure_count != 0 && c.failures >= failure_count;
        let rated = rule.rates_trip(c.calls, c.failures, c.slow);
        if !(counted || rated) {
            return None;
        }
        loop {
            if !cur.owns(low(gen), false) {
                return None;
            }
            match self.trip_closed(cur, gen, now) {
                Ok(t) => return Some(t),
                Err(actual) => cur = actual,
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    const CAP: u32 = TIME_BUCKET_CAP;

    fn failures(w: &TimeWindow, j: u64, size: u8) -> u32 {
        #[allow(clippy::unnecessary_cast)]
        w.tally((j as Epoch) & SPACE, u32::from(size)).failures
    }

    #[test]
    #[cfg_attr(miri, ignore)] // 65 545 records on 64-bit hosts: minutes under Miri
    fn counts_saturate_and_never_wrap() {
        let w = TimeWindow::new();
        let n = CAP + 10;
        let mut last = Counts::default();
        for _ in 0..n {
            last = w.record(7, 2, true, true);
        }
        assert_eq!((last.calls, last.failures, last.slow), (CAP, CAP, CAP));
        // Calls saturate first: the failure rate is over-stated, never under.
        let w = TimeWindow::new();
        for _ in 0..n {
            w.record(7, 2, false, false);
        }
        let c = w.record(7, 2, true, false);
        assert_eq!((c.calls, c.failures), (CAP, 1));
    }

    #[test]
    fn the_oldest_bucket_expires_whole() {
        let w = TimeWindow::new();
        for j in 10..14 {
            w.record(j, 4, true, false);
        }
        assert_eq!(failures(&w, 13, 4), 4);
        assert_eq!(w.record(14, 4, false, false).failures, 3);
        assert_eq!(failures(&w, 16, 4), 1);
        assert_eq!(failures(&w, 17, 4), 0);
        assert_eq!(failures(&w, 1_000, 4), 0);
    }

    #[test]
    fn a_stale_interval_is_counted_in_the_newest() {
        let w = TimeWindow::new();
        w.record(100, 4, true, false);
        // Fifty intervals stale: counted at 100, and as long as 100 is.
        assert_eq!(w.record(50, 4, true, false).failures, 2);
        assert_eq!(failures(&w, 103, 4), 2);
        assert_eq!(failures(&w, 104, 4), 0);
    }

    #[test]
    fn the_newest_interval_wraps_cleanly() {
        // Across the wrap of the interval counter (31 bits on Cortex-M).
        #[allow(clippy::unnecessary_cast)]
        let top = SPACE as u64;
        let w = TimeWindow::new();
        for k in 0..8u64 {
            let c = w.record(top - 3 + k, 4, true, false);
            assert_eq!(c.failures, (k + 1).min(4) as u32, "step {k}");
        }
        assert_eq!(failures(&w, top + 7, 4), 1);
        assert_eq!(failures(&w, top + 8, 4), 0);
    }

    #[test]
    fn sparse_activity_never_revives_an_old_bucket() {
        // A failure in slot 0, then records in every interval but slot 0's,
        // for two whole tag ranges: the old failure must never alias back.
        let w = TimeWindow::new();
        w.record(0, 4, true, false);
        let range = if cfg!(miri) { 64 } else { 2u64 << F };
        for j in 1..range {
            if j % 4 != 0 {
                let c = w.record(j, 4, false, false);
                assert!(j < 4 || c.failures == 0, "interval {j}");
            }
        }
    }

    #[test]
    fn a_jump_past_half_the_interval_space_moves_the_window() {
        // 2³⁰ + 5 intervals (12.4 days at 1 ms) is half the Cortex-M
        // space: it read as stale there, and the window never expired.
        let w = TimeWindow::new();
        w.record(1_000, 4, true, false);
        let far = 1_000 + (1 << 30) + 5;
        assert_eq!(w.record(far, 4, true, false).failures, 1);
        assert_eq!(failures(&w, far + 4, 4), 0);
        // A clock 2²⁰ intervals behind is still a stale clock.
        assert_eq!(w.record(far - (1 << 20), 4, true, false).failures, 2);
        assert_eq!(failures(&w, far + 3, 4), 2);
    }

    #[test]
    fn a_jump_of_whole_tag_ranges_empties_the_window() {
        for k in [1u64, 2, 5] {
            let w = TimeWindow::new();
            w.record(3, 4, true, false);
            let far = 3 + (k << F);
            assert_eq!(w.record(far, 4, false, false).failures, 0, "k {k}");
            assert_eq!(failures(&w, far + 1, 4), 0);
        }
    }

    #[test]
    fn clear_empties_every_bucket_but_keeps_time() {
        let w = TimeWindow::new();
        w.record(40, 16, true, true);
        w.clear(16);
        assert_eq!(w.tally(40, 16), Counts::default());
        // A stale record after the clear still lands in the newest interval.
        assert_eq!(w.record(1, 16, true, false).failures, 1);
        assert_eq!(failures(&w, 55, 16), 1);
        assert_eq!(failures(&w, 56, 16), 0);
    }
}
