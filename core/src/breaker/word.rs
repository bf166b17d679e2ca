//! The breaker's packed 32-bit state word and its wrapped deadline clock.
//!
//! ```text
//!  31 30 29                    16 15                                    0
//! +-----+------------------------+---------------------------------------+
//! | 00  | generation (14)        | failures (8) | full | window count (7)| Closed
//! | 10  | generation (14)        | streak(4) | in flight(6) | succ(6)    | HalfOpen
//! | 11  | generation (14)        | 0                                     | ForcedOpen
//! +-----+------+-----------------+---------------------------------------+
//! | 01  |strk 4| deadline (26): ticks of 1.024 ms, wrapped mod 2^26       | Open
//! +-----+------+---------------------------------------------------------+
//! ```
//!
//! * The generation identifies one installed Closed/HalfOpen/ForcedOpen
//!   word. The word holds its low 14 bits; the breaker's `epoch` word holds
//!   the full number (64-bit where native, else 32-bit), and a new word's
//!   generation is drawn from it only by the caller whose compare-and-swap
//!   installs the word (see the breaker's module docs), so losing attempts
//!   consume none and a permit is checked against the full number.
//! * Open needs no generation (no permit is ever issued in it) and spends
//!   the bits on its deadline instead.
//! * Closed carries the consecutive-failure count and the sliding window's
//!   cursor (see `window`), so a record's claim of a window slot is the same
//!   CAS that checks its generation.
//! * `streak` counts re-openings from half-open since the last close; the
//!   open time doubles with it, up to `max_open_for`. Saturates at 15.

use super::window::Cursor;
use crate::sync::Epoch;
use crate::{Duration, Instant};

/// Two-bit state tag in bits 31..30.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
    ForcedOpen = 3,
}

const KIND_SHIFT: u32 = 30;
const GEN_SHIFT: u32 = 16;
pub(crate) const GEN_MASK: u32 = (1 << 14) - 1;
const FAILURES_SHIFT: u32 = 8;
const FAILURES_MASK: u32 = 0xFF;
const FULL: u32 = 1 << 7;
const COUNT_MASK: u32 = 0x7F;
const HO_STREAK_SHIFT: u32 = 12;
const HO_IN_FLIGHT_SHIFT: u32 = 6;
const SIX_BITS: u32 = 0x3F;
const OPEN_STREAK_SHIFT: u32 = 26;
const DEADLINE_MASK: u32 = (1 << 26) - 1;

/// A deadline tick is 2^10 µs = 1.024 ms (a shift, not a division: Cortex-M0
/// has no divide instruction).
pub(crate) const TICK_SHIFT: u32 = 10;
pub(crate) const TICK_MICROS: u64 = 1 << TICK_SHIFT;
/// Largest open time: a quarter of the wrapped deadline range (2^24 ticks,
/// about 4 h 46 min), so that "still open" (up to two open times before the
/// deadline, see `remaining`) and "expired" (at least 2^25 ticks, about
/// 9 h 32 min, after it) never overlap.
pub(crate) const MAX_OPEN_FOR: Duration = Duration::from_micros((1 << 24) << TICK_SHIFT);
/// A `now` earlier than the instant that opened the breaker still reads as
/// "open" if it is no more than `max(open time, this many ticks (~1.05 s))`
/// earlier: servers read the clock, await, then call, so another thread's
/// trip is often stamped later than a caller's `now`. A stale clock never
/// fails open.
pub(crate) const BACKWARD_TOLERANCE_TICKS: u32 = 1 << 10;

/// Longest `max_half_open`: 2²² ticks (≈ 71 min 35 s), so that "not yet"
/// (up to two timeouts before the deadline) and "expired" never overlap in
/// the half-open stamp's 2²⁴-tick wrapped range (see `half_open`).
pub(crate) const MAX_HALF_OPEN: Duration = Duration::from_micros((1 << 22) << TICK_SHIFT);

pub(crate) const MAX_CONSECUTIVE: u32 = FAILURES_MASK;
pub(crate) const MAX_HALF_OPEN_PERMITS: u8 = SIX_BITS as u8;
pub(crate) const MAX_CLOSE_AFTER: u8 = SIX_BITS as u8;
pub(crate) const MAX_STREAK: u32 = 15;

/// A decoded copy of the state word. `Copy`, compared by its raw bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Word(pub(crate) u32);

impl Word {
    pub(crate) const fn closed(gen: u32, failures: u32, cursor: Cursor) -> Self {
        Self(
            (Kind::Closed as u32) << KIND_SHIFT
                | (gen & GEN_MASK) << GEN_SHIFT
                | failures << FAILURES_SHIFT
                | if cursor.full { FULL } else { 0 }
                | cursor.count,
        )
    }

    pub(crate) const fn half_open(gen: u32, streak: u32, in_flight: u32, successes: u32) -> Self {
        Self(
            (Kind::HalfOpen as u32) << KIND_SHIFT
                | (gen & GEN_MASK) << GEN_SHIFT
                | streak << HO_STREAK_SHIFT
                | in_flight << HO_IN_FLIGHT_SHIFT
                | successes,
        )
    }

    pub(crate) const fn forced_open(gen: u32) -> Self {
        Self((Kind::ForcedOpen as u32) << KIND_SHIFT | (gen & GEN_MASK) << GEN_SHIFT)
    }

    /// Open until `deadline` (already wrapped to 26 bits).
    pub(crate) const fn open(streak: u32, deadline: u32) -> Self {
        Self((Kind::Open as u32) << KIND_SHIFT | streak << OPEN_STREAK_SHIFT | deadline)
    }

    pub(crate) const fn kind(self) -> Kind {
        match self.0 >> KIND_SHIFT {
            0 => Kind::Closed,
            1 => Kind::Open,
            2 => Kind::HalfOpen,
            _ => Kind::ForcedOpen,
        }
    }

    /// Generation of a Closed, HalfOpen or ForcedOpen word.
    pub(crate) const fn gen(self) -> u32 {
        (self.0 >> GEN_SHIFT) & GEN_MASK
    }

    pub(crate) const fn failures(self) -> u32 {
        (self.0 >> FAILURES_SHIFT) & FAILURES_MASK
    }

    /// The sliding window's cursor of a Closed word.
    pub(crate) const fn cursor(self) -> Cursor {
        Cursor {
            count: self.0 & COUNT_MASK,
            full: self.0 & FULL != 0,
        }
    }

    /// Re-opening streak of a HalfOpen or Open word.
    pub(crate) const fn streak(self) -> u32 {
        match self.kind() {
            Kind::Open => (self.0 >> OPEN_STREAK_SHIFT) & 0xF,
            _ => (self.0 >> HO_STREAK_SHIFT) & 0xF,
        }
    }

    pub(crate) const fn in_flight(self) -> u32 {
        (self.0 >> HO_IN_FLIGHT_SHIFT) & SIX_BITS
    }

    pub(crate) const fn successes(self) -> u32 {
        self.0 & SIX_BITS
    }

    pub(crate) const fn deadline(self) -> u32 {
        self.0 & DEADLINE_MASK
    }

    /// This word with generation `gen` (its low 14 bits), if its kind
    /// carries one; an Open word is returned unchanged.
    pub(crate) const fn with_gen(self, gen: u32) -> Self {
        match self.kind() {
            Kind::Open => self,
            _ => Self(self.0 & !(GEN_MASK << GEN_SHIFT) | (gen & GEN_MASK) << GEN_SHIFT),
        }
    }

    /// Whether a permit issued under `gen` while `half_open` still belongs
    /// to this word.
    pub(crate) fn owns(self, gen: u32, half_open: bool) -> bool {
        let kind = if half_open {
            Kind::HalfOpen
        } else {
            Kind::Closed
        };
        self.kind() == kind && self.gen() == gen
    }
}

/// `now` in wrapped deadline ticks (rounded down).
#[cfg(all(test, not(loom)))]
pub(crate) const fn now_ticks(now: Instant) -> u32 {
    ((now.as_micros() >> TICK_SHIFT) as u32) & DEADLINE_MASK
}

/// The wrapped deadline `open_for` after `now`, rounded *up* to a tick so
/// the breaker never re-admits early (the breaker writes the full one,
/// [`full_deadline_after`]).
#[cfg(all(test, not(loom)))]
pub(crate) const fn deadline_after(now: Instant, open_for: Duration) -> u32 {
    wrapped(full_deadline_after(now, open_for))
}

/// `deadline_after` in full ticks, as wide as an [`Epoch`] (`u64`; `u32`
/// on Cortex-M, wrapping every ≈ 50 days): the breaker's `open_until`.
#[allow(clippy::unnecessary_cast)] // `Epoch` is `u64` where it is not `u32`
pub(crate) const fn full_deadline_after(now: Instant, open_for: Duration) -> Epoch {
    let end = now.as_micros().saturating_add(open_for.as_micros());
    end.div_ceil(TICK_MICROS) as Epoch
}

/// A full deadline's low 26 bits: the deadline an Open word holds.
#[allow(clippy::unnecessary_cast)]
pub(crate) const fn wrapped(full: Epoch) -> u32 {
    (full as u32) & DEADLINE_MASK
}

/// `now` in full ticks, as wide as an [`Epoch`] (rounded down).
#[allow(clippy::unnecessary_cast)]
pub(crate) const fn full_now_ticks(now: Instant) -> Epoch {
    (now.as_micros() >> TICK_SHIFT) as Epoch
}

/// An Open `word`'s deadline in full ticks: its low 26 bits extended to
/// the full deadline nearest `anchor` (see [`remaining_in`]).
pub(crate) fn full_deadline_of(word: Word, anchor: Epoch) -> Epoch {
    const HALF: u32 = 1 << 25;
    let ahead = word
        .deadline()
        .wrapping_sub(wrapped(anchor))
        .wrapping_add(HALF)
        & DEADLINE_MASK;
    anchor
        .wrapping_add(Epoch::from(ahead))
        .wrapping_sub(Epoch::from(HALF))
}

/// How far (2³⁰ ticks, ≈ 12.7 days) a full deadline may be behind another
/// and still read as earlier in [`later`]; any other distance reads as
/// later.
const EARLIER_TICKS: Epoch = 1 << 30;

/// Whether the full deadline `a` is later than `b`, modulo the full ticks'
/// width: `a` is earlier if it is behind `b` by at most ≈ 12.7 days, later
/// otherwise. On Cortex-M, whose full ticks wrap every ≈ 50 days, that
/// leaves ≈ 38 days ahead (a breaker left alone for weeks); with 64-bit
/// ticks, any distance ahead.
pub(crate) fn later(a: Epoch, b: Epoch) -> bool {
    let d = a.wrapping_sub(b);
    d != 0 && d < Epoch::MAX - (EARLIER_TICKS - 1)
}

/// `remaining` in full ticks: `word`'s deadline extended to the full
/// one with its low 26 bits nearest `anchor` (the breaker's `open_until`,
/// the full deadline of the Open word last about to be installed: the
/// word's own, or a racing install's, a few ticks away), then the same
/// rule (`0 < deadline − now ≤ open_for + 2 ticks + max(open_for, ~1.05
/// s)` reads open) in a range no idle breaker wraps (`u64` ticks; on
/// Cortex-M `u32`, ≈ 50 days), so a breaker nobody called since its
/// deadline no longer reads open again before each multiple of ≈ 19 h.
/// An anchor more than 2²⁵ ticks (≈ 9 h 32 min) from the word's full
/// deadline would extend it by a multiple of 2²⁶ ticks; an anchor only
/// moves at an Open install, with the installer's clock, so that takes a
/// clock that many hours behind (outside the ~1.05 s tolerance).
pub(crate) fn remaining_in(
    word: Word,
    anchor: Epoch,
    open_for: Duration,
    now: Instant,
) -> Option<Duration> {
    let full = full_deadline_of(word, anchor);
    let remaining_ticks = full.wrapping_sub(full_now_ticks(now));
    // open_for ≤ MAX_OPEN_FOR = 2^24 ticks: the sum below stays under 2^25 + 5.
    let open_ticks = (open_for.as_micros() >> TICK_SHIFT) as u32 + 2;
    let stale = open_ticks.max(BACKWARD_TOLERANCE_TICKS);
    if remaining_ticks == 0 || remaining_ticks > Epoch::from(open_ticks + stale) {
        return None;
    }
    let sub_tick = now.as_micros() & (TICK_MICROS - 1);
    #[allow(clippy::useless_conversion)]
    Some(Duration::from_micros(
        (u64::from(remaining_ticks) << TICK_SHIFT) - sub_tick,
    ))
}

/// Time left until an Open word's deadline, or `None` once it has passed.
///
/// From the word alone (the breaker reads it in full ticks, see
/// [`remaining_in`]; this is the rule it extends, kept for the tests): the
/// deadline is only known modulo 2^26 ticks
/// (~19 h 5 min). A remaining
/// distance of at most `open_for + 2 ticks + max(open_for, ~1.05 s)` is
/// "still open": that covers a `now` up to `max(open_for, ~1.05 s)` earlier
/// than the trip (a stale clock reads open, never expired). Anything else
/// means the deadline passed. A breaker that nobody asks for a whole
/// multiple of ~19 h can therefore read as open for at most two more open
/// periods plus ~1 s (see the crate docs).
#[cfg(all(test, not(loom)))]
pub(crate) fn remaining(word: Word, open_for: Duration, now: Instant) -> Option<Duration> {
    let remaining_ticks = word.deadline().wrapping_sub(now_ticks(now)) & DEADLINE_MASK;
    // open_for ≤ MAX_OPEN_FOR = 2^24 ticks: the sum below stays under 2^25 + 5.
    let open_ticks = (open_for.as_micros() >> TICK_SHIFT) as u32 + 2;
    let stale = open_ticks.max(BACKWARD_TOLERANCE_TICKS);
    if remaining_ticks == 0 || remaining_ticks > open_ticks + stale {
        return None;
    }
    let sub_tick = now.as_micros() & (TICK_MICROS - 1);
    Some(Duration::from_micros(
        (u64::from(remaining_ticks) << TICK_SHIFT) - sub_tick,
    ))
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip() {
        let cursor = Cursor {
            count: 127,
            full: true,
        };
        let w = Word::closed(GEN_MASK, 255, cursor);
        assert_eq!(
            (w.kind(), w.gen(), w.failures()),
            (Kind::Closed, GEN_MASK, 255)
        );
        assert_eq!(w.cursor(), cursor);
        let w = Word::half_open(7, 15, 63, 62);
        assert_eq!(w.kind(), Kind::HalfOpen);
        assert_eq!(
            (w.gen(), w.streak(), w.in_flight(), w.successes()),
            (7, 15, 63, 62)
        );
        let w = Word::open(15, DEADLINE_MASK);
        assert_eq!(
            (w.kind(), w.streak(), w.deadline()),
            (Kind::Open, 15, DEADLINE_MASK)
        );
        let w = Word::forced_open(3);
        assert_eq!((w.kind(), w.gen()), (Kind::ForcedOpen, 3));
        // The generation is truncated, never allowed to spill into the kind.
        assert_eq!(
            Word::closed(GEN_MASK + 1, 0, Cursor::EMPTY).kind(),
            Kind::Closed
        );
    }

    #[test]
    fn remaining_is_exact_and_never_early() {
        let open_for = Duration::from_millis(100);
        let t0 = Instant::from_micros(123_456);
        let w = Word::open(0, deadline_after(t0, open_for));
        let left = remaining(w, open_for, t0).unwrap();
        assert!(left >= open_for && left < open_for + Duration::from_micros(TICK_MICROS));
        let at = t0 + left;
        assert_eq!(remaining(w, open_for, at), None);
        assert_eq!(
            remaining(w, open_for, at - Duration::from_micros(1)),
            Some(Duration::from_micros(1))
        );
        // A slightly stale `now` (another thread's earlier read) still reads open.
        assert!(remaining(w, open_for, t0 - Duration::from_millis(500)).is_some());
    }

    #[test]
    fn a_stale_now_reads_open_back_to_the_open_time() {
        for open_for in [
            Duration::from_millis(5),
            Duration::from_millis(100),
            Duration::from_secs(5),
            Duration::from_secs(3600),
            MAX_OPEN_FOR,
        ] {
            let tolerance = open_for.max(Duration::from_micros(
                u64::from(BACKWARD_TOLERANCE_TICKS) << TICK_SHIFT,
            ));
            for t0 in [
                Instant::from_secs(100_000),
                Instant::from_micros(((1u64 << 26) - 3) << TICK_SHIFT), // across the wrap
                Instant::from_secs(10 * 365 * 24 * 3600),
            ] {
                let w = Word::open(0, deadline_after(t0, open_for));
                let mut back = Duration::ZERO;
                while back <= tolerance {
                    let stale = t0 - back;
                    let left = remaining(w, open_for, stale)
                        .unwrap_or_else(|| panic!("{open_for:?}: {back:?} stale read expired"));
                    assert!(
                        left >= open_for + back,
                        "never earlier than the deadline: {open_for:?} {t0:?} {back:?} {left:?}"
                    );
                    back = back + Duration::from_micros(tolerance.as_micros() / 64 + 1);
                }
                let exact = remaining(w, open_for, t0 - tolerance);
                assert!(
                    exact.is_some(),
                    "{open_for:?}: the whole tolerance reads open"
                );
                // Past the deadline reads expired for at least 2^25 ticks.
                let deadline = t0 + remaining(w, open_for, t0).unwrap();
                for after in [0, 1, 1_000, 3_600_000_000, ((1u64 << 25) - 8) << TICK_SHIFT] {
                    let later = deadline + Duration::from_micros(after);
                    assert_eq!(remaining(w, open_for, later), None, "{open_for:?} +{after}");
                }
            }
        }
    }

    #[test]
    fn remaining_survives_the_wrap() {
        let open_for = Duration::from_secs(30);
        // Just below a wrap of the 26-bit tick counter.
        let t0 = Instant::from_micros(((1u64 << 26) - 5) << TICK_SHIFT);
        let w = Word::open(0, deadline_after(t0, open_for));
        assert!(remaining(w, open_for, t0 + Duration::from_secs(29)).is_some());
        assert_eq!(remaining(w, open_for, t0 + Duration::from_secs(31)), None);
        // Idle for hours after the deadline: expired.
        assert_eq!(
            remaining(w, open_for, t0 + Duration::from_secs(5 * 3600)),
            None
        );
    }

    #[test]
    fn huge_instants_do_not_overflow() {
        let w = Word::open(0, deadline_after(Instant::MAX, MAX_OPEN_FOR));
        let _ = remaining(w, MAX_OPEN_FOR, Instant::MAX);
        let _ = remaining(w, MAX_OPEN_FOR, Instant::ZERO);
    }
}
