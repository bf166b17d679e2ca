//! The count-based sliding window of the last `window` (≤ 64) outcomes.
//!
//! # Claiming: in the state word
//!
//! A record *claims* its place in the window with the same compare-and-swap
//! that checks its generation: the closed state word carries the window
//! cursor (`count` in `0..2·window`, plus a `full` flag; see `word`). So a
//! stale record (older generation) can never claim a place, and a new closed
//! word starts its window empty in the very CAS that installs it.
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
//! Claim number `count` writes slot `count % window` with lap
//! `count >= window`. A tally counts only slots whose tag is the one the
//! current cursor expects, so slots claimed but not yet written, or last
//! written by another generation, are left out rather than miscounted.
//! A slot is written by a CAS that gives up if a *newer* generation already
//! wrote it (a stale record's late write never clobbers a fresh outcome).
//! After writing its slot every record bumps `written` with a
//! read-modify-write; those form one total order, so the last record to
//! finish sees every earlier slot write (no trip is lost between two
//! racing failures).

use crate::sync::{atomic_array, const_fn_unless_loom, AtomicU16, AtomicU32, Ordering};

const GEN_SHIFT: u32 = 4;
const LAP: u16 = 1 << 3;
const SLOW: u16 = 1 << 1;
const FAILURE: u16 = 1;
const TAG_MASK: u16 = !(SLOW | FAILURE);
const GEN_TAG_MASK: u16 = (1 << 12) - 1;
const HALF_GEN_TAGS: u16 = 1 << 11;

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
}

/// A tally of the window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tally {
    pub(crate) calls: u32,
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

impl Window {
    const_fn_unless_loom! {
        pub(crate) fn new() -> Self {
            // Generation 0 is the initial closed word's; its window starts
            // with nothing claimed, so these zeroes are never counted.
            Self {
                slots: atomic_array!(AtomicU16, 0, 64),
                written: AtomicU32::new(0),
            }
        }
    }

    /// Writes the outcome of claim `count` (the cursor's count before the
    /// claim) of generation `gen`.
    pub(crate) fn write(&self, gen: u32, size: u8, count: u32, failure: bool, slow: bool) {
        let size = u32::from(size);
        let (slot, lap) = if count >= size {
            (count - size, true)
        } else {
            (count, false)
        };
        let mut value = tag(gen, lap);
        if failure {
            value |= FAILURE;
        }
        if slow {
            value |= SLOW;
        }
        // Never overwrite a slot a newer generation wrote: a record that
        // claimed its slot just before a transition may write it after.
        // Generations come from a monotonic counter, so "newer" is a
        // wrapping comparison of the 12-bit tags.
        let slot = &self.slots[slot as usize];
        let mine = (gen as u16) & GEN_TAG_MASK;
        let mut current = slot.load(Ordering::Relaxed);
        loop {
            let ahead = (current >> GEN_SHIFT).wrapping_sub(mine) & GEN_TAG_MASK;
            if ahead != 0 && ahead < HALF_GEN_TAGS {
                break;
            }
            match slot.compare_exchange_weak(current, value, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
        // Publishes the slot; the RMW chain orders all records' writes.
        self.written.fetch_add(1, Ordering::AcqRel);
    }

    /// Tallies generation `gen`'s outcomes as of `cursor`.
    pub(crate) fn tally(&self, gen: u32, size: u8, cursor: Cursor) -> Tally {
        let mut t = Tally {
            calls: 0,
            failures: 0,
            slow: 0,
        };
        self.each(gen, size, cursor, |value| {
            t.calls += 1;
            t.failures += u32::from(value & FAILURE);
            t.slow += u32::from((value & SLOW) >> 1);
        });
        t
    }

    /// Generation `gen`'s outcomes as of `cursor`, oldest first.
    pub(crate) fn outcomes(&self, gen: u32, size: u8, cursor: Cursor) -> Outcomes {
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
    /// first claims, and returns the cursor that goes with them.
    pub(crate) fn restore(&self, gen: u32, size: u8, outcomes: Outcomes) -> Cursor {
        for i in 0..u32::from(outcomes.calls) {
            let failure = outcomes.failures >> i & 1 == 1;
            let slow = outcomes.slow >> i & 1 == 1;
            self.write(gen, size, i, failure, slow);
        }
        Cursor {
            count: u32::from(outcomes.calls),
            full: false,
        }
    }

    /// Calls `f` with each counted slot value, oldest first.
    fn each(&self, gen: u32, size: u8, cursor: Cursor, mut f: impl FnMut(u16)) {
        // Pairs with the `written` RMWs: every slot written before the
        // latest of them is visible below.
        self.written.fetch_add(0, Ordering::AcqRel);
        let size = u32::from(size);
        let lap = cursor.count >= size;
        let pos = if lap {
            cursor.count - size
        } else {
            cursor.count
        };
        let full = cursor.full || lap;
        // Oldest first: the previous lap's slots pos.., then this lap's ..pos.
        let previous = (pos..size).filter(|_| full).map(|s| (s, !lap));
        let current = (0..pos).map(|s| (s, lap));
        for (slot, slot_lap) in previous.chain(current) {
            let value = self.slots[slot as usize].load(Ordering::Relaxed);
            if value & TAG_MASK == tag(gen, slot_lap) {
                f(value);
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn record(w: &Window, gen: u32, size: u8, cursor: &mut Cursor, failure: bool, slow: bool) {
        w.write(gen, size, cursor.count, failure, slow);
        *cursor = cursor.next(u32::from(size));
    }

    #[test]
    fn slides_over_the_last_n() {
        let w = Window::new();
        let mut c = Cursor::EMPTY;
        // size 3: F S S F -> last three are S S F
        for (f, s) in [(true, false), (false, false), (false, false), (true, true)] {
            record(&w, 1, 3, &mut c, f, s);
        }
        assert_eq!(
            w.tally(1, 3, c),
            Tally {
                calls: 3,
                failures: 1,
                slow: 1
            }
        );
        let out = w.outcomes(1, 3, c);
        assert_eq!((out.calls, out.failures, out.slow), (3, 0b100, 0b100));
    }

    #[test]
    fn other_generations_and_unwritten_claims_are_not_counted() {
        let w = Window::new();
        let mut c = Cursor::EMPTY;
        for _ in 0..4 {
            record(&w, 1, 4, &mut c, true, false);
        }
        // A new generation starts from an empty cursor: nothing counted.
        assert_eq!(w.tally(2, 4, Cursor::EMPTY).calls, 0);
        // Claimed but not yet written (cursor moved, slot not): left out.
        let ahead = Cursor::EMPTY.next(4);
        assert_eq!(w.tally(2, 4, ahead).calls, 0);
        w.write(2, 4, 0, false, false);
        assert_eq!(w.tally(2, 4, ahead).calls, 1);
    }

    #[test]
    fn sixty_four_slots_and_wrapping_laps() {
        let w = Window::new();
        let mut c = Cursor::EMPTY;
        for i in 0..201u32 {
            record(&w, 7, 64, &mut c, i % 2 == 0, i % 4 == 0);
        }
        let t = w.tally(7, 64, c);
        assert_eq!(t.calls, 64);
        // The last 64 are i = 137..=200.
        let expected = (137..=200u32).filter(|i| i % 2 == 0).count() as u32;
        assert_eq!(t.failures, expected);
        let out = w.outcomes(7, 64, c);
        assert_eq!(out.failures.count_ones(), expected);
        assert_eq!(out.failures >> 63, 1, "newest (200) failed");
    }

    #[test]
    fn a_late_stale_write_never_clobbers_a_newer_generation() {
        let w = Window::new();
        w.write(5, 4, 0, false, false); // generation 5's first outcome
        w.write(4, 4, 0, true, true); // generation 4, claimed earlier, lands late
        let c = Cursor::EMPTY.next(4);
        assert_eq!(
            w.tally(5, 4, c),
            Tally {
                calls: 1,
                failures: 0,
                slow: 0
            }
        );
        // Across the 12-bit wrap too.
        w.write(1, 4, 1, false, false);
        w.write(4095, 4, 1, true, false);
        assert_eq!(w.tally(1, 4, c.next(4)).calls, 1);
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
            let c = w.restore(9, 64, src);
            assert_eq!(w.outcomes(9, 64, c), src);
        }
    }
}
