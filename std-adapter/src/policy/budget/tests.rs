//! `RetryBudget`'s unit tests: the window, the floor, refunds and clocks
//! that jump.

use super::*;

fn budget(percent: u32, floor: u32) -> RetryBudget {
    RetryBudget::with_clock(
        Duration::from_secs(10),
        percent,
        floor,
        TokioClock::with_origin(tokio::time::Instant::now()),
    )
    .unwrap()
}

#[test]
fn floor_alone() {
    let b = budget(0, 2);
    let now = Instant::from_secs(1);
    assert!(b.try_withdraw_at(now));
    assert!(b.try_withdraw_at(now));
    assert!(!b.try_withdraw_at(now));
}

/// tower's own `TpsBudget` scenarios (`tps_empty`, `tps_leaky`,
/// `tps_slots`, `tps_reserve`), re-expressed on this budget's rule,
/// plus the end of time (`now` at `u64::MAX` µs): sound, kept as a
/// test (hostile review).
#[test]
fn towers_budget_scenarios() {
    let one_second = |percent, floor| {
        RetryBudget::with_clock(
            Duration::from_secs(1),
            percent,
            floor,
            TokioClock::with_origin(tokio::time::Instant::now()),
        )
        .unwrap()
    };
    // Empty: no first attempt, no floor, no retry.
    assert!(!one_second(100, 0).try_withdraw_at(Instant::ZERO));
    // Leaky: a first attempt 3 s ago buys nothing.
    let b = one_second(100, 0);
    b.deposit_at(Instant::ZERO);
    assert!(!b.try_withdraw_at(Instant::from_secs(3)));
    // Slots: two first attempts still count 901 ms later; later, the
    // first of three spread ones has left the window, the next two
    // buy one retry at 50 %.
    let b = one_second(50, 0);
    b.deposit_at(Instant::ZERO);
    b.deposit_at(Instant::ZERO);
    assert!(b.try_withdraw_at(Instant::from_millis(901)));
    for at in [2_902, 3_203, 4_004] {
        b.deposit_at(Instant::from_millis(at));
    }
    assert!(b.try_withdraw_at(Instant::from_millis(4_004)));
    assert!(!b.try_withdraw_at(Instant::from_millis(4_004)));
    // Reserve: the floor alone, exactly.
    let b = one_second(100, 5);
    assert_eq!(
        (0..8).filter(|_| b.try_withdraw_at(Instant::ZERO)).count(),
        5
    );
    // The end of time: no overflow, and the window still holds.
    let b = one_second(100, 1);
    let end = Instant::from_micros(u64::MAX);
    b.deposit_at(end);
    assert_eq!((0..4).filter(|_| b.try_withdraw_at(end)).count(), 2);
    assert_eq!(
        b.remaining_at(Instant::ZERO),
        0,
        "a stale now reads as the end"
    );
}

#[test]
fn deposits_leave_the_window() {
    let b = budget(100, 0);
    b.deposit_at(Instant::from_secs(0));
    // Slot 0 is in the window up to slot 9 (9.999 s), not at 10 s.
    assert_eq!(b.remaining_at(Instant::from_micros(9_999_999)), 1);
    assert_eq!(b.remaining_at(Instant::from_secs(10)), 0);
}

#[test]
fn a_stale_now_reads_as_the_latest() {
    let b = budget(100, 0);
    b.deposit_at(Instant::from_secs(100));
    // A now from long before reads as 100 s: the deposit counts, and
    // nothing is written into an old slot.
    assert!(b.try_withdraw_at(Instant::from_secs(1)));
    assert!(!b.try_withdraw_at(Instant::from_secs(100)));
}

/// `remaining_at` is a read: asked about a later instant (a forecast,
/// or a report read on another clock, ahead of the budget's), it moves
/// nothing. Found by a hostile review: it advanced the window to that
/// instant, so every later deposit and retry read as that slot: the
/// first attempts of the window before it were forgotten at once, and
/// those made afterwards stayed in one slot (buying retries) until the
/// budget's clock reached it.
#[test]
fn remaining_at_a_later_instant_moves_nothing() {
    let b = budget(100, 0);
    b.deposit_at(Instant::from_secs(0));
    assert_eq!(
        b.remaining_at(Instant::from_secs(60)),
        0,
        "the window then is empty"
    );
    // The window at 1 s still holds the first attempt at 0 s.
    assert_eq!(b.remaining_at(Instant::from_secs(1)), 1);
    assert!(b.try_withdraw_at(Instant::from_secs(1)));
    // First attempts at 1 s leave the window at 11 s, as always.
    b.deposit_at(Instant::from_secs(1));
    assert_eq!(b.remaining_at(Instant::from_secs(11)), 0);
    assert!(!b.try_withdraw_at(Instant::from_secs(11)));
}

/// The docs' bounds, from a model of the docs: at every retry, the
/// window then; for every window, its first attempts and those of the
/// nine slots before it. Found by a hostile review: the docs claimed
/// every window's own first attempts bound its retries, yet 10 first
/// attempts at 0 s buy 10 retries at 9 s, which the window 9..=18 s
/// holds with no first attempt.
#[test]
fn every_window_holds_its_bound() {
    let (percent, floor) = (100u64, 1u64);
    let b = budget(100, 1);
    let (mut deposits, mut withdrawals) = ([0u64; 40], [0u64; 40]);
    let sum =
        |counts: &[u64; 40], from: usize, to: usize| -> u64 { counts[from..=to].iter().sum() };
    let mut rng = fastrand::Rng::with_seed(5);
    for slot in 0..40usize {
        for _ in 0..rng.usize(0..6) {
            if rng.bool() {
                b.deposit_at(Instant::from_secs(slot as u64));
                deposits[slot] += 1;
            } else if b.try_withdraw_at(Instant::from_secs(slot as u64)) {
                withdrawals[slot] += 1;
                // At the retry: the window then, this retry included.
                let from = slot.saturating_sub(9);
                let (d, w) = (sum(&deposits, from, slot), sum(&withdrawals, from, slot));
                assert!(w <= floor + percent * d / 100, "slot {slot}: {w} for {d}");
            }
        }
    }
    // 10 first attempts at 0 s buy 10 retries at 9 s (and the floor's).
    let b = budget(100, 0);
    for _ in 0..10 {
        b.deposit_at(Instant::from_secs(0));
    }
    let granted = (0..20)
        .filter(|_| b.try_withdraw_at(Instant::from_secs(9)))
        .count();
    assert_eq!(granted, 10);
    // The window 9..=18 s holds them with no first attempt of its own:
    // only the 19 slots 0..=18 bound it.
    assert_eq!(b.remaining_at(Instant::from_secs(18)), 0);
    for end in 9..40 {
        let w: u64 = sum(&withdrawals, end - 9, end);
        let d19: u64 = sum(&deposits, end.saturating_sub(18), end);
        assert!(
            w <= floor + percent * d19 / 100,
            "window ending at slot {end}: {w} retries for {d19} first attempts in 19 slots"
        );
    }
}

/// Feeds `b` a withdrawal at every second of `secs` (a deposit first
/// at the seconds `deposit` picks), checking that `remaining_at`
/// foretells each decision; the seconds a retry was granted.
fn run(b: &RetryBudget, secs: std::ops::Range<u64>, deposit: fn(u64) -> bool) -> Vec<u64> {
    let mut granted = Vec::new();
    for s in secs {
        let now = Instant::from_secs(s);
        if deposit(s) {
            b.deposit_at(now);
        }
        let foretold = b.remaining_at(now) > 0;
        assert_eq!(b.try_withdraw_at(now), foretold, "at {s} s");
        if foretold {
            granted.push(s);
        }
    }
    granted
}

/// One far-future `now` (a bad NTP step, a corrupt time, a careless
/// caller), then the normal clock again: the budget follows the normal
/// clock within two windows, as the docs' "Clocks that jump" say. The
/// far-future reading's first attempts and retries read as the latest
/// window until then (failing closed: no fresh floor), and after it the
/// floor comes back every window. Found by a review: every later
/// reading went to the far-future slot for good, so its first attempts
/// were never forgotten and the floor never came back.
#[test]
fn a_far_future_now_freezes_no_window() {
    for far in [
        Instant::from_micros(u64::MAX),
        Instant::from_secs(1 << 40),
        Instant::from_secs(125),
    ] {
        let b = budget(100, 1);
        assert!(b.try_withdraw_at(far), "the floor, at {far:?}");
        assert!(!b.try_withdraw_at(far), "{far:?}");
        b.deposit_at(far);
        // The normal clock: 100 s on, one retry asked every second. The
        // first at 100 s reads as the latest window: its first attempt
        // buys one; then nothing until the window the budget resumes at
        // (110 s, a window of readings after 100 s, carrying the counts)
        // has passed: the floor again at 120, 130, 140 s.
        let granted = run(&b, 100..150, |_| false);
        assert_eq!(granted, [100, 120, 130, 140], "after {far:?}");
    }
}

/// After two windows of normal readings, every window is the docs'
/// window again: `floor + percent × first attempts / 100` less the
/// retries, both counted over the slot of `now` and the nine before
/// it, whatever was counted at a far-future reading before.
#[test]
fn after_two_windows_the_jump_is_forgotten() {
    for far in [u64::MAX, 1 << 50, 30_000_000] {
        let b = budget(50, 1);
        for _ in 0..50 {
            b.deposit_at(Instant::from_micros(far));
            b.try_withdraw_at(Instant::from_micros(far));
        }
        // (second, first attempts, retries) at the normal clock.
        let mut counted: Vec<(u64, u64, u64)> = Vec::new();
        for s in 10..100 {
            let now = Instant::from_secs(s);
            let deposits = s % 3;
            for _ in 0..deposits {
                b.deposit_at(now);
            }
            if s >= 30 {
                let (d, w) = counted
                    .iter()
                    .filter(|(at, ..)| *at + 9 >= s)
                    .fold((deposits, 0), |(d, w), (_, dd, ww)| (d + dd, w + ww));
                let allowed: u64 = 1 + 50 * d / 100;
                assert_eq!(b.remaining_at(now), allowed.saturating_sub(w), "at {s} s");
            }
            let retries = (0..2).filter(|_| b.try_withdraw_at(now)).count() as u64;
            counted.push((s, deposits, retries));
        }
    }
}

/// A clock stepped back by many windows: at first a reading reads as
/// the latest window (a stale clock reopens nothing: the window's
/// retries stay counted), and within two windows the budget follows
/// the clock it steps back to, instead of freezing until that clock
/// catches up with the latest reading (here 900 s).
#[test]
fn a_clock_stepped_back_is_followed_within_two_windows() {
    let b = budget(0, 2);
    assert!(b.try_withdraw_at(Instant::from_secs(1_000)));
    assert!(b.try_withdraw_at(Instant::from_secs(1_000)));
    let granted = run(&b, 100..140, |_| false);
    assert_eq!(granted, [120, 121, 130, 131]);
}

/// Stale readings among current ones (a caller delayed by minutes,
/// one on a clock behind) resume nothing, however far behind they are
/// and however long they keep coming: each reads as the latest window,
/// so none is given a fresh floor. A stale clock never fails open.
#[test]
fn stale_readings_among_current_ones_resume_nothing() {
    let b = budget(0, 1);
    for s in 1_000..1_100 {
        let fresh = s % 10 == 0;
        // The floor is spent on the current clock, once per window...
        assert_eq!(b.try_withdraw_at(Instant::from_secs(s)), fresh, "at {s} s");
        assert_eq!(b.lock().behind_since, None, "at {s} s");
        // ...and readings 500 s behind, every second for 100 s (ten
        // windows of their own time), get none of it.
        assert!(!b.try_withdraw_at(Instant::from_secs(s - 500)), "at {s} s");
        b.deposit_at(Instant::from_secs(s - 500));
    }
    // Nor does a single reading far behind, a window after another one:
    // the stale readings must span a window with none current between.
    let b = budget(0, 1);
    assert!(b.try_withdraw_at(Instant::from_secs(1_000)));
    assert!(!b.try_withdraw_at(Instant::from_secs(10)));
    assert!(!b.try_withdraw_at(Instant::from_secs(1_001)));
    assert!(
        !b.try_withdraw_at(Instant::from_secs(20)),
        "a current reading came between"
    );
}

/// The time word at the top of its range (slots of 1 µs, a 10 µs
/// window): a timeline running into `u64::MAX` µs, a jump to it and
/// back to zero, a resume just below it: no overflow, no panic, and
/// the window rolls on after each within two windows.
#[test]
fn the_top_of_the_time_word() {
    let b = RetryBudget::with_clock(
        Duration::from_micros(10),
        0,
        1,
        TokioClock::with_origin(tokio::time::Instant::now()),
    )
    .unwrap();
    let at = Instant::from_micros;
    // Running into the end: one floor retry per window of 10 µs.
    let granted = (u64::MAX - 39..=u64::MAX)
        .filter(|&t| b.try_withdraw_at(at(t)))
        .count();
    assert_eq!(granted, 4);
    assert_eq!(b.remaining_at(at(u64::MAX)), 0);
    // Back to zero: the latest window first, then the clock it is on.
    let granted: Vec<u64> = (0..40).filter(|&t| b.try_withdraw_at(at(t))).collect();
    assert_eq!(granted, [20, 30]);
    // Then up to just below the end, and one step back of two windows.
    let b = RetryBudget::with_clock(
        Duration::from_micros(10),
        100,
        0,
        TokioClock::with_origin(tokio::time::Instant::now()),
    )
    .unwrap();
    b.deposit_at(at(u64::MAX));
    assert!(
        b.try_withdraw_at(at(u64::MAX - 20)),
        "the latest window's first attempt"
    );
    b.deposit_at(at(u64::MAX - 10));
    assert_eq!(
        b.remaining_at(at(u64::MAX - 10)),
        1,
        "carried: 2 first attempts, 1 retry"
    );
    assert!(b.try_withdraw_at(at(u64::MAX - 10)));
    assert_eq!(b.remaining_at(at(u64::MAX - 1)), 0);
    assert_eq!(
        b.remaining_at(at(u64::MAX)),
        0,
        "the end of time is current"
    );
    b.deposit_at(at(u64::MAX));
    assert_eq!(b.remaining_at(at(u64::MAX)), 1);
}

/// A retry counted before the budget resumes on another clock is not
/// given back after (its slot was carried): the refund is lost, never
/// taken twice or from a count of the new window.
#[test]
fn a_refund_across_a_resume_gives_nothing_back() {
    let b = budget(0, 2);
    let slot = b.withdraw_at(Instant::from_secs(1_000)).unwrap();
    assert_eq!(
        b.withdraw_at(Instant::from_secs(100)),
        Some(slot),
        "the latest slot"
    );
    assert_eq!(
        b.remaining_at(Instant::from_secs(110)),
        0,
        "carried: two retries"
    );
    assert_eq!(b.withdraw_at(Instant::from_secs(110)), None);
    b.refund(slot);
    assert_eq!(b.remaining_at(Instant::from_secs(110)), 0);
    assert_eq!(b.remaining_at(Instant::from_secs(120)), 2);
}

/// Counters past any count a test can reach by calling: every slot of
/// the window holding `u64::MAX - 1` first attempts and retries (the
/// window's sums pass `u64::MAX`, as do `percent × deposits` and
/// `floor × 100`). Sums saturate instead of wrapping to a small number
/// (which would refuse every retry, or admit them all), a counter at
/// `u64::MAX` stays there, and a refund never wraps below zero. Sound,
/// kept as a test (hostile review of the call path).
#[test]
fn counters_past_u64_saturate() {
    let b = budget(u32::MAX, u32::MAX);
    let now = Instant::from_secs(9);
    let near = u64::MAX - 1;
    {
        let mut ring = b.lock();
        ring.latest = 9;
        for (index, slot) in ring.slots.iter_mut().enumerate() {
            *slot = Slot {
                index: index as u64,
                deposits: near,
                withdrawals: near,
            };
        }
    }
    // Saturated sums: u64::MAX first attempts, u64::MAX retries; the
    // allowance (≈ 4.3e9 × u64::MAX / 100) is still far above.
    assert_eq!(b.remaining_at(now), u64::MAX);
    assert!(b.try_withdraw_at(now));
    assert!(b.try_withdraw_at(now), "the slot's count saturates");
    b.deposit_at(now);
    b.deposit_at(now);
    let slot = b.lock().slots[9];
    assert_eq!((slot.deposits, slot.withdrawals), (u64::MAX, u64::MAX));
    // A budget of no percent and no floor with saturated retries: none.
    let none = budget(0, 0);
    assert!(!none.try_withdraw_at(now));
    assert_eq!(none.remaining_at(now), 0);
    // Refunds of slots at zero stay at zero.
    let fresh = budget(0, 1);
    fresh.refund(0);
    assert_eq!(fresh.lock().slots[0].withdrawals, 0);
    assert!(fresh.try_withdraw_at(Instant::ZERO));
    assert!(!fresh.try_withdraw_at(Instant::ZERO));
}
