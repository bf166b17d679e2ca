//! The count-based sliding window of the last `window` (≤ 64) outcomes.
//!
//! Outcomes live in a ring of slots, one bit per slot in two bitmaps
//! (failures, slow calls), each bitmap split over two 32-bit atomics so that
//! Cortex-M3/M4 keep native atomics. A recording call first *claims* a slot
//! by a CAS on the cursor, then writes its two bits; since every slot is
//! claimed by exactly one call, concurrent records never overwrite each
//! other.
//!
//! The cursor is tagged with the closed-state generation it belongs to.
//! Whoever installs a closed word resets the cursor to that generation with
//! a count of 0 (and a record that still finds a foreign tag restarts it
//! itself), so closing never has to clear the bitmaps: slots not yet written
//! in this generation lie beyond `calls` and are masked out of every tally.
//!
//! Concurrency caveat (statistics, not state): a record that claimed a slot
//! just before a transition may write its bits after the new generation has
//! reused that slot, so a tally can briefly include one outcome per such
//! racing call. The breaker's state word is never affected.

use crate::sync::{const_fn_unless_loom, AtomicU32, Ordering};

/// Cursor layout: `[generation: 14][count: 18]`; `count` runs in
/// `0..2·window` so that `count % window` is the next slot and
/// `count >= window` means the ring is full.
const COUNT_BITS: u32 = 18;
const COUNT_MASK: u32 = (1 << COUNT_BITS) - 1;

/// A tally of the window after a record.
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
    cursor: AtomicU32,
    failures: [AtomicU32; 2],
    slow: [AtomicU32; 2],
}

const fn cursor(gen: u32, count: u32) -> u32 {
    gen << COUNT_BITS | count
}

/// Mask of the first `n` (≤ 64) slots, as (low word, high word).
const fn first_slots(n: u32) -> (u32, u32) {
    let lo = if n >= 32 { u32::MAX } else { (1 << n) - 1 };
    let hi = if n >= 64 {
        u32::MAX
    } else if n > 32 {
        (1 << (n - 32)) - 1
    } else {
        0
    };
    (lo, hi)
}

impl Window {
    const_fn_unless_loom! {
        pub(crate) fn new() -> Self {
            Self {
                cursor: AtomicU32::new(0),
                failures: [AtomicU32::new(0), AtomicU32::new(0)],
                slow: [AtomicU32::new(0), AtomicU32::new(0)],
            }
        }
    }

    /// Records one outcome for generation `gen` and, if it was a failure or
    /// slow, returns the tally the trip decision needs.
    pub(crate) fn record(&self, gen: u32, size: u8, failure: bool, slow: bool) -> Option<Tally> {
        let size = u32::from(size);
        let mut cur = self.cursor.load(Ordering::Acquire);
        let count = loop {
            let count = if cur >> COUNT_BITS == gen {
                cur & COUNT_MASK
            } else {
                0 // first record of this generation: restart the ring
            };
            let next = if count + 1 >= 2 * size {
                count + 1 - size
            } else {
                count + 1
            };
            match self.cursor.compare_exchange_weak(
                cur,
                cursor(gen, next),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break count,
                Err(actual) => cur = actual,
            }
        };
        let slot = if count >= size { count - size } else { count };
        write_bit(&self.failures, slot, failure);
        write_bit(&self.slow, slot, slow);
        if !(failure || slow) {
            return None;
        }
        let calls = (count + 1).min(size);
        let (lo, hi) = first_slots(calls);
        let ones = |words: &[AtomicU32; 2]| {
            (words[0].load(Ordering::Acquire) & lo).count_ones()
                + (words[1].load(Ordering::Acquire) & hi).count_ones()
        };
        Some(Tally {
            calls,
            failures: ones(&self.failures),
            slow: ones(&self.slow),
        })
    }

    /// The outcomes of generation `gen`, oldest first (empty if the window
    /// still belongs to another generation).
    pub(crate) fn outcomes(&self, gen: u32, size: u8) -> Outcomes {
        let size = u32::from(size);
        let cur = self.cursor.load(Ordering::Acquire);
        if cur >> COUNT_BITS != gen {
            return Outcomes::default();
        }
        let count = cur & COUNT_MASK;
        let (calls, oldest) = if count >= size {
            (size, count - size)
        } else {
            (count, 0)
        };
        let failures = read_ring(&self.failures);
        let slow = read_ring(&self.slow);
        let mut out = Outcomes {
            calls: calls as u8,
            ..Outcomes::default()
        };
        for i in 0..calls {
            let slot = (oldest + i) % size;
            out.failures |= (failures >> slot & 1) << i;
            out.slow |= (slow >> slot & 1) << i;
        }
        out
    }

    /// Starts an empty window for the closed generation `gen` just
    /// installed. Done eagerly by whoever installs it, so a generation
    /// number reused after the 14-bit wrap never inherits an old window.
    pub(crate) fn restart(&self, gen: u32) {
        self.cursor.store(cursor(gen, 0), Ordering::Release);
    }

    /// Replaces the window with `outcomes` (already validated to fit) for
    /// generation `gen`.
    pub(crate) fn restore(&self, gen: u32, outcomes: Outcomes) {
        store_ring(&self.failures, outcomes.failures);
        store_ring(&self.slow, outcomes.slow);
        self.cursor
            .store(cursor(gen, u32::from(outcomes.calls)), Ordering::Release);
    }
}

fn write_bit(words: &[AtomicU32; 2], slot: u32, value: bool) {
    let word = &words[(slot / 32) as usize];
    let bit = 1 << (slot % 32);
    // Skip the read-modify-write when the bit already holds the value (the
    // common case for a healthy dependency: a success over a success).
    if (word.load(Ordering::Relaxed) & bit != 0) != value {
        if value {
            word.fetch_or(bit, Ordering::AcqRel);
        } else {
            word.fetch_and(!bit, Ordering::AcqRel);
        }
    }
}

fn read_ring(words: &[AtomicU32; 2]) -> u64 {
    u64::from(words[0].load(Ordering::Acquire)) | u64::from(words[1].load(Ordering::Acquire)) << 32
}

fn store_ring(words: &[AtomicU32; 2], bits: u64) {
    words[0].store(bits as u32, Ordering::Release);
    words[1].store((bits >> 32) as u32, Ordering::Release);
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn slides_over_the_last_n() {
        let w = Window::new();
        // size 3: F S S F  -> last three are S S F
        assert_eq!(
            w.record(0, 3, true, false),
            Some(Tally {
                calls: 1,
                failures: 1,
                slow: 0
            })
        );
        assert_eq!(w.record(0, 3, false, false), None);
        assert_eq!(w.record(0, 3, false, false), None);
        assert_eq!(
            w.record(0, 3, true, true),
            Some(Tally {
                calls: 3,
                failures: 1,
                slow: 1
            })
        );
        let out = w.outcomes(0, 3);
        assert_eq!((out.calls, out.failures, out.slow), (3, 0b100, 0b100));
    }

    #[test]
    fn a_new_generation_starts_empty() {
        let w = Window::new();
        for _ in 0..5 {
            w.record(0, 4, true, false);
        }
        assert_eq!(w.outcomes(0, 4).calls, 4);
        assert_eq!(w.outcomes(1, 4), Outcomes::default());
        assert_eq!(
            w.record(1, 4, true, false),
            Some(Tally {
                calls: 1,
                failures: 1,
                slow: 0
            })
        );
    }

    #[test]
    fn sixty_four_slots_use_both_words() {
        let w = Window::new();
        for i in 0..200u32 {
            w.record(2, 64, i % 2 == 0, i % 4 == 0);
        }
        let t = w.record(2, 64, true, false).unwrap();
        assert_eq!(t.calls, 64);
        // 201 records; the last 64 are i = 137..=199 plus the extra failure.
        let expected_failures = (137..200u32).filter(|i| i % 2 == 0).count() as u32 + 1;
        assert_eq!(t.failures, expected_failures);
        let out = w.outcomes(2, 64);
        assert_eq!(out.failures.count_ones(), expected_failures);
        assert_eq!(out.failures >> 63, 1, "newest is the extra failure");
    }

    #[test]
    fn restore_round_trips() {
        let w = Window::new();
        let src = Outcomes {
            calls: 40,
            failures: 0x00F0_F0F0_F0F0,
            slow: 0x1,
        };
        w.restore(9, src);
        assert_eq!(w.outcomes(9, 64), src);
    }
}
