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
//! at its fingerprint's mark instead of full. (Unless the mark kept lies
//! further ahead of the evicting caller's `now` than the largest horizon
//! of the limiter's tiers: left by a clock that far ahead, it protects no
//! caller near this one, and kept, it would hide every later mark of its
//! fingerprints for good.) A mark is never earlier than the arrival time
//! it records, so a bucket restarted from it decides like the evicted one
//! or stricter, at every `now` within the tolerance: per key, the GCRA
//! bound (at most `burst + rate·Δ` tokens among calls whose `now`s lie
//! within `Δ` of each other) holds across evictions, whichever slot the
//! key comes back to and whichever keys were chosen to collide, *as long
//! as every evicting caller's clock lies within that horizon of the
//! others'*. One mark cannot serve two clocks further apart: the replaced
//! mark did protect the callers near the clock that left it, so a key
//! evicted under it and brought back by one of them after an eviction by
//! a caller that far behind comes back full (a second burst among calls
//! within `Δ` of each other: `an_eviction_far_behind_replaces_a_mark_still_in_use`
//! in `core/tests/keyed.rs`). Keeping the latest mark instead would let a
//! clock far ahead do that to every later caller, for good; the far
//! behind one must evict again for each mark it replaces. The horizon is
//! 2^42 scaled units plus the burst span with 64-bit atomics (50.9 days at
//! scale 1), but only ~1.05 s plus the burst span on Cortex-M.
//!
//! The price: a *new* key sharing the mark starts drained up to it too.
//! Every mark is at most the evicting caller's `now`, so only a caller
//! whose clock is behind that sees it: an under-admission bounded by the
//! caller's lag, never an over-admission. A key full for longer than the
//! tolerance leaves no mark (no caller within the tolerance can see it
//! drained), and a mark older than the horizon reads as none, so an old
//! mark is never misread across the word's wrap.
//!
//! # Ordering against evictions, and lock-free reads
//!
//! Marks are written only under the table's lock (by evictions, which
//! also happen only there) and read there by insertions: that is all the
//! bound above needs. [`KeyedLimiter::available`] also reads them, without
//! any lock, for a key it does not find; for its answer to stand for a
//! moment of the call, an eviction raises the mark *before* it locks the
//! evicted key's slot (a reader that no longer finds the key then sees the
//! mark). A lock that fails after the raise (someone pinned or charged the
//! key meanwhile) leaves the mark raised for nothing: still at most the
//! evicting caller's `now`, so it costs only the under-admission above.
//!
//! Marks are `u64` microseconds on every target (they do not wrap for
//! 584 542 years), kept as two `u32` halves so that 32-bit targets read
//! them too: a *double buffer*. The writer (holding the lock) fills the
//! copy not in use, then publishes it by bumping a version; a reader reads
//! the copy the version names and retries if the version moved. A writer
//! never touches the copy a reader was sent to without first completing a
//! version bump, so a writer stalled mid-update never holds a reader up:
//! a retry means some update finished. The evicted key's tier converts its
//! arrival time to microseconds and the inserted key's tier converts the
//! mark back.
//!
//! [`KeyedLimiter::available`]: super::KeyedLimiter::available

use crate::bucket::gcra::{Params, FRESH};
use crate::sync::{fence, AtomicU32, Ordering};

/// Eviction marks per limiter (a power of two), picked by the low bits of a
/// key's fingerprint.
pub(super) const MARKS: usize = 8;
const _: () = assert!(MARKS.is_power_of_two());

/// No mark (before any clock reading that matters).
const NONE: u64 = 0;

/// The marks: for each, the latest instant (µs) at which a key evicted
/// under it became full, or [`NONE`].
///
/// Invariant: written only under the table's lock; `copies[version % 2]`
/// is the current copy, the other one is written only by the lock holder
/// and published by incrementing `version` (see the module docs).
pub(super) struct Marks {
    /// Updates published so far; its parity names the current copy.
    version: AtomicU32,
    /// `[copy][mark][high half, low half]`.
    copies: [[[AtomicU32; 2]; MARKS]; 2],
}

impl Marks {
    crate::sync::const_fn_unless_loom! {
        pub(super) fn new() -> Self {
            #[cfg(not(loom))]
            let copies = [const { [const { [const { AtomicU32::new(0) }; 2] }; MARKS] }; 2];
            #[cfg(loom)]
            let copies = core::array::from_fn(|_| {
                core::array::from_fn(|_| core::array::from_fn(|_| AtomicU32::new(0)))
            });
            Self {
                version: AtomicU32::new(0),
                copies,
            }
        }
    }

    /// The mark of fingerprint `fp`. Lock-free: retries only when an update
    /// completed meanwhile.
    pub(super) fn get(&self, fp: u32) -> u64 {
        let mut version = self.version.load(Ordering::Acquire);
        loop {
            let [hi, lo] = &self.copies[version as usize & 1][index(fp)];
            let mark =
                u64::from(hi.load(Ordering::Relaxed)) << 32 | u64::from(lo.load(Ordering::Relaxed));
            // Orders the halves' loads before the re-check (seqlock read
            // side): a half written by a later update makes it see a later
            // version.
            fence(Ordering::Acquire);
            let now = self.version.load(Ordering::Acquire);
            if now == version {
                return mark;
            }
            version = now;
        }
    }

    /// Raises the mark of fingerprint `fp` to `mark` if that is later, or
    /// if the mark kept is later than `ceiling` (the evicting caller's
    /// `now` plus the largest horizon of the limiter's tiers: a mark left
    /// by a clock that far ahead protects no caller near this one, and
    /// kept, it would hide this mark and every later one for good).
    ///
    /// # Safety
    ///
    /// * The caller holds the table's lock (the only writer).
    pub(super) unsafe fn raise(&self, fp: u32, mark: u64, ceiling: u64) {
        let version = self.version.load(Ordering::Relaxed);
        let (current, next) = (version as usize & 1, !version as usize & 1);
        let i = index(fp);
        let get = |copy: usize, j: usize| {
            let [hi, lo] = &self.copies[copy][j];
            u64::from(hi.load(Ordering::Relaxed)) << 32 | u64::from(lo.load(Ordering::Relaxed))
        };
        let kept = get(current, i);
        if kept >= mark && kept <= ceiling {
            return;
        }
        // Orders the version that sent readers to the other copy (stored
        // by an earlier update, before this lock holder's lock) before
        // this update's stores to it: a reader that sees one of them sees
        // that version moved (seqlock write side).
        fence(Ordering::Release);
        for j in 0..MARKS {
            let value = if j == i { mark } else { get(current, j) };
            let [hi, lo] = &self.copies[next][j];
            hi.store((value >> 32) as u32, Ordering::Relaxed);
            lo.store(value as u32, Ordering::Relaxed);
        }
        self.version
            .store(version.wrapping_add(1), Ordering::Release);
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

    /// The version that names the current copy wraps (after 2^32 raises):
    /// from `u32::MAX` (odd, copy 1) to 0 (copy 0), every raise still
    /// publishes the copy it wrote and keeps the other marks.
    #[test]
    fn marks_survive_the_versions_wrap() {
        let m = Marks::new();
        m.version.store(u32::MAX - 2, Ordering::Relaxed);
        let mut want = [NONE; MARKS];
        for (k, mark) in [100u64, 200, 1 << 33, 300, 5 << 40, 400]
            .into_iter()
            .enumerate()
        {
            let fp = k as u32 * 3;
            // SAFETY: single-threaded test: the only writer.
            unsafe { m.raise(fp, mark, u64::MAX) };
            want[index(fp)] = want[index(fp)].max(mark);
            for j in 0..MARKS as u32 {
                assert_eq!(m.get(j), want[j as usize], "raise {k}, mark {j}");
            }
        }
        assert_eq!(m.version.load(Ordering::Relaxed), 3, "wrapped");
    }

    #[test]
    fn marks_keep_the_latest_per_fingerprint() {
        let m = Marks::new();
        // SAFETY: single-threaded test: the only writer.
        unsafe {
            m.raise(3, 500, u64::MAX);
            m.raise(3 + MARKS as u32, 400, u64::MAX);
            m.raise(4, 900, u64::MAX);
            m.raise(5, 1 << 40 | 7, u64::MAX);
        }
        assert_eq!(
            [m.get(3), m.get(4), m.get(5), m.get(6)],
            [500, 900, 1 << 40 | 7, NONE]
        );
        // A mark kept above the ceiling (left by a clock far ahead of the
        // evicting caller's) gives way to an earlier one; below, it stays.
        // SAFETY: single-threaded test: the only writer.
        unsafe {
            m.raise(4, 800, 899);
            m.raise(3, 400, 500);
        }
        assert_eq!([m.get(3), m.get(4)], [500, 800]);
    }
}
