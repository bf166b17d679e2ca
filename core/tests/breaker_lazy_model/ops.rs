//! The operations of a history, and their strategies.

use super::*;

#[derive(Clone, Copy, Debug)]
pub(super) enum Clock {
    /// The current reading.
    Now,
    /// A reading this many ms behind (a stale clock).
    Stale(u16),
    /// A clock that panics if read.
    Panics,
    /// A clock that, when read, first records another call of the same
    /// generation (outcome, elapsed ms): an interrupt, or a thread racing
    /// between the record's load and its compare-and-swap. Used where the
    /// contract says the clock is read.
    Reentrant(Outcome, u16),
    /// A clock that resets the breaker when read (an interrupt handler's
    /// reset): the record is then a stale permit's. Used where the
    /// contract says the clock is read.
    Resets,
}

#[derive(Clone, Debug)]
pub(super) enum Op {
    /// Acquire and record at once (`None`: drop the permit).
    Call(Option<Outcome>, u16, Clock),
    /// Acquire and keep the permit (at most a few are kept).
    Hold,
    /// Record a kept permit.
    RecordHeld(usize, Outcome, u16, Clock),
    /// Drop a kept permit.
    DropHeld(usize),
    /// Move the clock by this many ms.
    Tick(u16),
    /// Jump the clock by this many seconds.
    Jump(u32),
    Reconfigure(Thresholds),
    ForceOpen,
    ForceClose,
    Reset,
}

pub(super) fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        5 => Just(Outcome::Success),
        3 => Just(Outcome::Failure),
        1 => Just(Outcome::Ignored),
    ]
}

pub(super) fn clock() -> impl Strategy<Value = Clock> {
    prop_oneof![
        6 => Just(Clock::Now),
        2 => (0u16..400).prop_map(Clock::Stale),
        2 => Just(Clock::Panics),
        2 => (outcome(), 0u16..400).prop_map(|(o, e)| Clock::Reentrant(o, e)),
        1 => Just(Clock::Resets),
    ]
}

pub(super) fn thresholds() -> impl Strategy<Value = Thresholds> {
    (
        prop_oneof![Just(0u32), 1u32..6],
        prop_oneof![Just(0u32), 1u32..=100],
        prop_oneof![
            Just((0u64, 0u32)),
            (50u64..300, 1u32..=100).prop_map(|(ms, rate)| (ms * 1_000, rate))
        ],
        1u32..=8,
    )
        .prop_map(|(consecutive, rate, slow, minimum)| Thresholds {
            consecutive,
            rate,
            slow,
            minimum,
        })
}

pub(super) fn op() -> impl Strategy<Value = Op> {
    // Elapsed times around the slow thresholds (50–300 ms).
    let elapsed = prop_oneof![3 => 0u16..60, 1 => 0u16..400];
    prop_oneof![
        40 => (prop::option::weighted(0.9, outcome()), elapsed.clone(), clock())
            .prop_map(|(o, e, c)| Op::Call(o, e, c)),
        3 => Just(Op::Hold),
        3 => (0usize..4, outcome(), elapsed, clock()).prop_map(|(i, o, e, c)| Op::RecordHeld(i, o, e, c)),
        1 => (0usize..4).prop_map(Op::DropHeld),
        8 => (0u16..1_500).prop_map(Op::Tick),
        1 => prop_oneof![1u32..100, 3_600u32..400_000, 30_000_000u32..400_000_000].prop_map(Op::Jump),
        2 => thresholds().prop_map(Op::Reconfigure),
        1 => Just(Op::ForceOpen),
        1 => Just(Op::ForceClose),
        1 => Just(Op::Reset),
    ]
}

pub(super) fn shapes() -> Vec<Shape> {
    vec![
        Shape::Streak,
        Shape::Count(1),
        Shape::Count(2),
        Shape::Count(5),
        Shape::Count(8),
        #[cfg(feature = "time-window")]
        Shape::Time(1_000_000, 4),
    ]
}
