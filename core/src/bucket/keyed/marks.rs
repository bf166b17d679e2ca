//! Eviction marks: an evicted key never comes back fuller than it left.
//!
//! A key is evicted once its bucket is full again at the evicting caller's
//! `now`. Another caller's `now` may be behind that one, by up to the
//! arrival-time word's tolerance (see the `gcra` module), and such a stale
//! `now` must only deny; but at that `now` the evicted bucket was still
//! drained, so a re-inserted key that started full would get a second
//! burst early.
//!
//! So an eviction records the instant (µs) at which the evicted bucket
//! became full in one of [`MARKS`] *marks*, picked by the key's
//! fingerprint, keeping the latest; a key inserted later starts its bucket
//! at its fingerprint's mark instead of full. A mark is never earlier than
//! the arrival time it records, so a bucket restarted from it decides like
//! the evicted one or stricter, at every `now` within the tolerance: per
//! key, the GCRA bound (at most `burst + rate·Δ` tokens among calls whose
//! `now`s lie within `Δ` of each other) holds across evictions, whichever
//! slot the key comes back to and whichever keys were chosen to collide.
//!
//! The price: a *new* key sharing the mark starts drained up to it too.
//! Every mark is at most the evicting caller's `now`, so only a caller
//! whose clock is behind that sees it: an under-admission bounded by the
//! caller's lag, never an over-admission. A key full for longer than the
//! tolerance leaves no mark (no caller within the tolerance can see it
//! drained), and a mark older than the horizon reads as none, so an old
//! mark is never misread across the word's wrap.
//!
//! Marks are plain `u64` microseconds on every target (they do not wrap
//! for 584 542 years): they are read and written only inside the critical
//! section that serialises insertions and evictions, never on the
//! lock-free path. The evicted key's tier converts its arrival time to
//! microseconds and the inserted key's tier converts the mark back.

use core::cell::UnsafeCell;

use crate::bucket::gcra::{Params, FRESH};

/// Eviction marks per limiter (a power of two), picked by the low bits of a
/// key's fingerprint.
pub(super) const MARKS: usize = 8;
const _: () = assert!(MARKS.is_power_of_two());

/// No mark (before any clock reading that matters).
const NONE: u64 = 0;

/// The marks: for each, the latest instant (µs) at which a key evicted
/// under it became full, or [`NONE`].
///
/// Invariant: accessed only inside `crate::sync::critical`.
pub(super) struct Marks(UnsafeCell<[u64; MARKS]>);

impl Marks {
    pub(super) const fn new() -> Self {
        Self(UnsafeCell::new([NONE; MARKS]))
    }

    /// The mark of fingerprint `fp`.
    ///
    /// # Safety
    ///
    /// * The caller is inside `crate::sync::critical`.
    pub(super) unsafe fn get(&self, fp: u32) -> u64 {
        // SAFETY: inside the critical section (the caller's contract), the
        // only place marks are written: no write runs concurrently.
        unsafe { (*self.0.get())[index(fp)] }
    }

    /// Raises the mark of fingerprint `fp` to `mark` if that is later.
    ///
    /// # Safety
    ///
    /// * The caller is inside `crate::sync::critical`.
    pub(super) unsafe fn raise(&self, fp: u32, mark: u64) {
        // SAFETY: inside the critical section (the caller's contract), the
        // only place marks are read or written: this access is exclusive.
        let slot = unsafe { &mut (*self.0.get())[index(fp)] };
        *slot = (*slot).max(mark);
    }
}

const fn index(fp: u32) -> usize {
    fp as usize & (MARKS - 1)
}

/// The mark an evicted bucket leaves: the instant (µs) at which it became
/// full, rounded *later* (never before its arrival time). `None` if it
/// never admitted anything, or became full more than the tolerance before
/// `now_micros`. Its `tat` must read as full at `now_micros` (an idle key).
pub(super) fn left_by(params: &Params, tat: u64, now_micros: u64) -> Option<u64> {
    if tat == FRESH {
        return None;
    }
    // How long it has been full (idle: `tat` is at or before `now`).
    let behind = params.scaled(now_micros).wrapping_sub(tat) & params.mask;
    if behind > params.tolerance() {
        return None;
    }
    // Floor of the scaled distance: the mark lands at or after `tat`.
    match now_micros.saturating_sub(behind / params.scale) {
        NONE => None,
        mark => Some(mark),
    }
}

/// The arrival time a bucket inserted at `now_micros` starts from, given
/// its fingerprint's `mark`: full at the mark, or `FRESH` if there is none
/// or it is older than the horizon (full to every caller within the
/// tolerance of `now`, and never misread across the word's wrap).
pub(super) fn start(params: &Params, mark: u64, now_micros: u64) -> u64 {
    if mark == NONE || now_micros.saturating_sub(mark) > params.horizon / params.scale {
        FRESH
    } else {
        params.full_at(mark)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn params(tokens: u32, period: u64, burst: u32, bits: u32) -> Params {
        Params::new(tokens, period, burst, bits).unwrap()
    }

    /// Where the tolerance is small enough to test at its edge: 32-bit
    /// words (~1.05 s) and 48-bit words at the largest scale (67 s).
    #[test]
    fn a_restarted_bucket_is_never_fuller_than_the_evicted_one() {
        for (p, start_at) in [
            (params(1, 1_000, 2, 32), (1u64 << 32) - 1_500),
            (params(3, 1_000, 3, 32), ((1u64 << 32) / 3) - 700),
            (
                params(4_294_967_291, 1_000_000, 5, 48),
                ((1u64 << 48) >> 16) - 900,
            ),
        ] {
            let tol_us = p.tolerance() / p.scale;
            // Drain at `start_at`; evict exactly when full, and later.
            let tat = p.decide(FRESH, start_at, 2.min(p.capacity / p.interval) as u32);
            let tat = tat.unwrap();
            let full = start_at + (p.drained(tat, start_at)).div_ceil(p.scale);
            for evict_at in [full, full + 1, full + 777, full + tol_us - 1] {
                let mark = left_by(&p, tat, evict_at).expect("within the tolerance");
                let restarted = start(&p, mark, evict_at);
                // Every `now` from the tolerance behind the eviction on.
                for back in [0, 1, 2, 499, 500, 1_000, 2_000, tol_us / 2, tol_us] {
                    let now = evict_at - back;
                    let (old, new) = (p.decide(tat, now, 1), p.decide(restarted, now, 1));
                    assert!(
                        new.is_err() || old.is_ok(),
                        "{p:?}: evicted at {evict_at}, asked at {now}: {old:?} vs {new:?}"
                    );
                    if let (Ok(a), Ok(b)) = (old, new) {
                        // And its state after an admission is no fuller.
                        assert!(p.drained(b, now) >= p.drained(a, now));
                    }
                    // Equal at and after the eviction (no needless denial
                    // of the key itself).
                    if back == 0 {
                        assert_eq!(old.is_ok(), new.is_ok());
                    }
                }
            }
        }
    }

    #[test]
    fn long_idle_keys_and_old_marks_leave_nothing() {
        let p = params(1, 1_000, 1, 32);
        let now = 10_000_000;
        let tat = p.decide(FRESH, now, 1).unwrap();
        assert_eq!(left_by(&p, FRESH, now), None, "never admitted");
        let tol_us = p.tolerance() / p.scale;
        assert!(left_by(&p, tat, now + 1_000 + tol_us).is_some());
        assert_eq!(left_by(&p, tat, now + 1_001 + tol_us), None);
        // A mark past the horizon starts a fresh bucket: no misreading
        // across the 32-bit word's wrap (71.6 min at scale 1).
        let mark = now + 1_000;
        assert_ne!(start(&p, mark, mark), FRESH);
        assert_eq!(start(&p, mark, mark + (1 << 32)), FRESH);
        assert_eq!(start(&p, NONE, now), FRESH);
    }

    #[test]
    fn marks_keep_the_latest_per_fingerprint() {
        let m = Marks::new();
        // SAFETY: single-threaded test, no other access to the marks.
        unsafe {
            m.raise(3, 500);
            m.raise(3 + MARKS as u32, 400);
            m.raise(4, 900);
        }
        // SAFETY: as above.
        let got = unsafe { [m.get(3), m.get(4), m.get(5)] };
        assert_eq!(got, [500, 900, NONE]);
    }
}
