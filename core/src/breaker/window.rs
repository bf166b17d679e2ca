//! The count-based sliding window of the last `window` (≤ 64) outcomes.
//!
//! # Claiming: in the state word
//!
//! A record *claims* its place in the window with the same compare-and-swap
//! that checks its generation: the closed state word carries the window
//! cursor (`count` in `0..2·window`, plus a `full` flag; see `word`). So a
//! stale record (older generation) can never claim a place, and a new closed
//! word starts its window empty in the very CAS that installs it. The
//! number of calls in the window is the number of claims the cursor has
//! seen (at most `window`): a call counts from the moment it is claimed.
//!
//! # Outcomes: one tagged `u16` per slot
//!
//! ```text
//!  15                 4   3    2    1      0
//! +--------------------+-----+---+------+---------+
//! | generation (12)    | lap | 0 | slow | failure |
//! +--------------------+-----+---+------+---------+
//! ```
//!
//! Claim number `count` goes to slot `count % window` with lap
//! `count >= window`. A tally counts the failure and slow bits of the slots
//! whose tag is the one the current cursor expects; every other slot (not
//! yet written, or last written by another generation or lap) counts as a
//! fast success, which is what an unwritten claim is until its record
//! writes (a failure or slow call then tallies itself, below).
//!
//! A slot is written only while its writer still owns it, judged against
//! the *current* state word (same generation, and fewer than `window`
//! claims made since its own): a stale record's late write never lands in
//! a newer window, and no slot is ever locked out by an old tag (the bug
//! this replaced: a wrapping "is the slot newer" comparison of 12-bit tags
//! skipped every write to a slot last written 2 049–4 095 generations ago).
//! A fast success over a slot holding a fast success writes nothing: both
//! tally the same.
//!
//! # Who evaluates
//!
//! A failure or slow call writes its slot, bumps `written` with a
//! read-modify-write, then tallies. Those RMWs form one total order, so of
//! two racing failures the later one sees the earlier's write (no trip is
//! lost). A fast success evaluates only when its claim is the one that
//! brings the window to `minimum_calls` or beyond in the generation's first
//! lap: in a full window a fast success replaces an older outcome and can
//! only lower both rates. Claims not yet written count as fast successes in
//! every tally; the ones that are failures tally again when they land.
//!
//! # What is left
//!
//! A tally can still count stale content in a slot that was claimed but not
//! yet written, when that content's tag happens to match: written two laps
//! earlier by the same generation, or by a generation 4 096·k earlier. That
//! needs a record stalled between its claim and its write; the miscount lasts
//! until that write lands. A writer stalled across exactly a multiple of
//! two laps of other claims sees the cursor where it left it and writes its
//! (same-generation) outcome over the newer one.

use crate::sync::{atomic_array, const_fn_unless_loom, AtomicU16, AtomicU32, Ordering};

const GEN_SHIFT: u32 = 4;
const LAP: u16 = 1 << 3;
const SLOW: u16 = 1 << 1;
const FAILURE: u16 = 1;
const OUTCOME: u16 = SLOW | FAILURE;
const TAG_MASK: u16 = !OUTCOME;
const GEN_TAG_MASK: u16 = (1 << 12) - 1;

/// The window cursor kept in the closed state word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cursor {
    /// Next claim number, in `0..2·window`.
    pub(crate) count: u32,
    /// The cursor has wrapped from `2·window` to 0 at least once.
    pub(crate) full: bool,
}

impl Cursor {
    pub(crate) const EMPTY: Self = Self {
        count: 0,
        full: false,
    };

    /// The cursor after one more claim.
    pub(crate) const fn next(self, size: u32) -> Self {
        if self.count + 1 >= 2 * size {
            Self {
                count: 0,
                full: true,
            }
        } else {
            Self {
                count: self.count + 1,
                full: self.full,
            }
        }
    }

    /// Calls in a window of `size`: the claims made, at most `size`.
    pub(crate) const fn calls(self, size: u32) -> u32 {
        if self.full || self.count >= size {
            size
        } else {
            self.count
        }
    }

    /// Whether claim `count` (this cursor's count when it was made) still
    /// owns its slot: fewer than `size` claims made after it.
    pub(crate) const fn still_holds(self, count: u32, size: u32) -> bool {
        // Claims made after it, modulo the cursor's range (no division:
        // Cortex-M0 has no divide instruction).
        let mut after = self.count + 2 * size - count - 1;
        if after >= 2 * size {
            after -= 2 * size;
        }
        after < size
    }
}

/// Failure and slow counts of the window's written slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tally {
    pub(crate) failures: u32,
    pub(crate) slow: u32,
}

/// The window's contents in chronological order (bit 0 = oldest).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Outcomes {
    pub(crate) calls: u8,
    pub(crate) failures: u64,
    pub(crate) slow: u64,
}

#[derive(Debug)]
pub(crate) struct Window {
    slots: [AtomicU16; 64],
    written: AtomicU32,
}

const fn tag(gen: u32, lap: bool) -> u16 {
    (((gen as u16) & GEN_TAG_MASK) << GEN_SHIFT) | if lap { LAP } else { 0 }
}

/// Slot and lap of claim `count`. The mask is a no-op for every valid
/// cursor (`count < 2·size ≤ 128`) and leaves no bounds check (nor its
/// panic) on the record path.
const fn place(size: u32, count: u32) -> (usize, bool) {
    if count >= size {
        ((count - size) as usize & 63, true)
    } else {
        (count as usize & 63, false)
    }
}

impl Window {
    const_fn_unless_loom! {
        pub(crate) fn new() -> Self {
            // Zero is a fast success: never counted, whatever its tag.
            Self {
                slots: atomic_array!(AtomicU16, 0, 64),
                written: AtomicU32::new(0),
            }
        }
    }

    /// Writes the outcome of claim `count` (the cursor's count before the
    /// claim) of generation `gen` (its low bits), while `owns()` says the
    /// claim is still current. A failure or slow outcome is then published
    /// on the `written` chain.
    #[inline]
    pub(crate) fn write(
        &self,
        gen: u32,
        size: u8,
        count: u32,
        failure: bool,
        slow: bool,
        owns: impl Fn() -> bool,
    ) {
        let (slot, lap) = place(u32::from(size), count);
        let mut value = tag(gen, lap);
        if failure {
            value |= FAILURE;
        }
        if slow {
            value |= SLOW;
        }
        let cell = &self.slots[slot];
        let mut current = cell.load(Ordering::Relaxed);
        // A fast success over a fast success tallies the same: no write.
        while (current | value) & OUTCOME != 0 && current != value && owns() {
            // A CAS, not a store: if a newer claim of this slot wrote it
            // after the load above, this fails and `owns` is asked again.
            match cell.compare_exchange_weak(current, value, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
        if value & OUTCOME != 0 {
            // Publishes the slot; the RMW chain orders all published writes.
            self.written.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Whether claim `count`'s slot holds a fast success (of any tag): a
    /// fast success claiming it then has nothing to write.
    #[inline]
    pub(crate) fn holds_fast_success(&self, size: u8, count: u32) -> bool {
        let (slot, _) = place(u32::from(size), count);
        self.slots[slot].load(Ordering::Relaxed) & OUTCOME == 0
    }

    /// Failure and slow counts of generation `gen`'s window as of `cursor`,
    /// seeing every write published before this call.
    pub(crate) fn tally(&self, gen: u32, size: u8, cursor: Cursor) -> Tally {
        self.sync();
        let mut t = Tally {
            failures: 0,
            slow: 0,
        };
        self.each(gen, size, cursor, |value| {
            t.failures += u32::from(value & FAILURE);
            t.slow += u32::from((value & SLOW) >> 1);
        });
        t
    }

    /// Generation `gen`'s outcomes as of `cursor`, oldest first.
    pub(crate) fn outcomes(&self, gen: u32, size: u8, cursor: Cursor) -> Outcomes {
        self.sync();
        let mut out = Outcomes::default();
        self.each(gen, size, cursor, |value| {
            let i = out.calls;
            out.failures |= u64::from(value & FAILURE) << i;
            out.slow |= u64::from((value & SLOW) >> 1) << i;
            out.calls += 1;
        });
        out
    }

    /// Writes `outcomes` (already validated to fit) as generation `gen`'s
    /// claims `0..calls` (claimed by the cursor that installed them), while
    /// `owns(claim)` says they are still current.
    pub(crate) fn restore(
        &self,
        gen: u32,
        size: u8,
        outcomes: Outcomes,
        owns: impl Fn(u32) -> bool,
    ) {
        for i in 0..u32::from(outcomes.calls) {
            let failure = outcomes.failures >> i & 1 == 1;
            let slow = outcomes.slow >> i & 1 == 1;
            self.write(gen, size, i, failure, slow, || owns(i));
        }
    }

    /// The cursor of a window holding `calls` restored claims.
    pub(crate) const fn restored_cursor(calls: u8) -> Cursor {
        Cursor {
            count: calls as u32,
            full: false,
        }
    }

    /// Pairs with the `written` RMWs: every slot published before the
    /// latest of them is visible after this.
    pub(crate) fn sync(&self) {
        self.written.fetch_add(0, Ordering::AcqRel);
    }

    /// Calls `f` with each slot value of the window, oldest first; a slot
    /// whose tag is not the expected one is passed as 0 (a fast success).
    fn each(&self, gen: u32, size: u8, cursor: Cursor, mut f: impl FnMut(u16)) {
        let size = u32::from(size);
        let lap = cursor.count >= size;
        let pos = if lap {
            cursor.count - size
        } else {
            cursor.count
        };
        let full = cursor.full || lap;
        // Oldest first: the previous lap's slots pos.. (when there was one),
        // then this lap's ..pos.
        for k in 0..size {
            let (slot, slot_lap) = if pos + k < size {
                if !full {
                    continue;
                }
                (pos + k, !lap)
            } else {
                (pos + k - size, lap)
            };
            let value = self.slots[slot as usize & 63].load(Ordering::Relaxed);
            f(if value & TAG_MASK == tag(gen, slot_lap) {
                value
            } else {
                0
            });
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn record(w: &Window, gen: u32, size: u8, cursor: &mut Cursor, failure: bool, slow: bool) {
        w.write(gen, size, cursor.count, failure, slow, || true);
        *cursor = cursor.next(u32::from(size));
    }

    fn tally(w: &Window, gen: u32, size: u8, c: Cursor) -> (u32, u32, u32) {
        let t = w.tally(gen, size, c);
        (c.calls(u32::from(size)), t.failures, t.slow)
    }

    #[test]
    fn slides_over_the_last_n() {
        let w = Window::new();
        let mut c = Cursor::EMPTY;
        // size 3: F S S F -> last three are S S F
        for (f, s) in [(true, false), (false, false), (false, false), (true, true)] {
            record(&w, 1, 3, &mut c, f, s);
        }
        assert_eq!(tally(&w, 1, 3, c), (3, 1, 1));
        let out = w.outcomes(1, 3, c);
        assert_eq!((out.calls, out.failures, out.slow), (3, 0b100, 0b100));
    }

    #[test]
    fn other_generations_and_unwritten_claims_count_as_fast_successes() {
        let w = Window::new();
        let mut c = Cursor::EMPTY;
        for _ in 0..4 {
            record(&w, 1, 4, &mut c, true, true);
        }
        assert_eq!(tally(&w, 1, 4, c), (4, 4, 4));
        // A new generation starts from an empty cursor: nothing counted.
        assert_eq!(tally(&w, 2, 4, Cursor::EMPTY), (0, 0, 0));
        // Claimed but not yet written: a call, neither failed nor slow.
        let ahead = Cursor::EMPTY.next(4);
        assert_eq!(tally(&w, 2, 4, ahead), (1, 0, 0));
        w.write(2, 4, 0, true, false, || true);
        assert_eq!(tally(&w, 2, 4, ahead), (1, 1, 0));
    }

    #[test]
    fn a_write_lands_whatever_generation_last_wrote_the_slot() {
        // The bug this module's write rule replaced: a slot last written
        // 2 049–4 095 generations away looked "newer" and was never written
        // again.
        for distance in [1u32, 2_048, 2_049, 3_000, 4_095, 4_096, 10_000] {
            for (older, newer) in [(distance, 0), (0, distance)] {
                let w = Window::new();
                w.write(older, 4, 0, true, false, || true);
                w.write(newer, 4, 0, true, false, || true);
                let c = Cursor::EMPTY.next(4);
                assert_eq!(tally(&w, newer, 4, c), (1, 1, 0), "{older} then {newer}");
            }
        }
    }

    #[test]
    fn a_write_that_no_longer_owns_its_claim_lands_nowhere() {
        let w = Window::new();
        w.write(5, 4, 0, false, true, || true); // generation 5's first outcome
        w.write(4, 4, 0, true, true, || false); // a stale record, late
        let c = Cursor::EMPTY.next(4);
        assert_eq!(tally(&w, 5, 4, c), (1, 0, 1));
    }

    #[test]
    fn a_fast_success_over_a_fast_success_writes_nothing() {
        let w = Window::new();
        let asked = core::cell::Cell::new(0);
        w.write(3, 4, 0, false, false, || {
            asked.set(asked.get() + 1);
            true
        });
        assert_eq!(asked.get(), 0, "zeroed slot: nothing to change");
        w.write(3, 4, 1, true, false, || true);
        // A success over a failure must write (the failure would count again
        // two laps later).
        w.write(3, 4, 5, false, false, || true);
        assert_eq!(w.slots[1].load(Ordering::Relaxed) & OUTCOME, 0);
    }

    #[test]
    fn claims_hold_their_slot_for_one_window() {
        for size in [1u32, 2, 3, 64] {
            for claim in 0..2 * size {
                let mut c = Cursor {
                    count: claim,
                    full: false,
                }
                .next(size);
                for later in 0..size {
                    assert!(
                        c.still_holds(claim, size),
                        "size {size} claim {claim} +{later}"
                    );
                    c = c.next(size);
                }
                assert!(
                    !c.still_holds(claim, size),
                    "size {size} claim {claim} overtaken"
                );
            }
        }
    }

    #[test]
    fn sixty_four_slots_and_wrapping_laps() {
        let w = Window::new();
        let mut c = Cursor::EMPTY;
        for i in 0..201u32 {
            record(&w, 7, 64, &mut c, i % 2 == 0, i % 4 == 0);
        }
        let (calls, failures, _) = tally(&w, 7, 64, c);
        assert_eq!(calls, 64);
        // The last 64 are i = 137..=200.
        let expected = (137..=200u32).filter(|i| i % 2 == 0).count() as u32;
        assert_eq!(failures, expected);
        let out = w.outcomes(7, 64, c);
        assert_eq!(out.failures.count_ones(), expected);
        assert_eq!(out.failures >> 63, 1, "newest (200) failed");
    }

    #[test]
    fn restore_round_trips() {
        let w = Window::new();
        for calls in [0u8, 1, 40, 64] {
            let mask = if calls == 64 {
                u64::MAX
            } else {
                (1 << calls) - 1
            };
            let src = Outcomes {
                calls,
                failures: 0x00F0_F0F0_F0F0_F0F0 & mask,
                slow: 0x1 & mask,
            };
            w.restore(9, 64, src, |_| true);
            assert_eq!(w.outcomes(9, 64, Window::restored_cursor(calls)), src);
        }
    }
}
