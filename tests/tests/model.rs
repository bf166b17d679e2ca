//! Property tests against reference models written from the documented
//! contracts: the retry budget (a plain event list, recounted for every
//! decision, against the slot ring) and the exponential backoff (integer
//! arithmetic against the floating-point ceiling and the jitter draw).
#![cfg(not(miri))]

use std::time::Duration;

use fusebox::Instant;
use fusebox_std::policy::{Backoff, ExponentialBackoffMaker, Jitter, MakeBackoff, RetryBudget};
use proptest::prelude::*;

/// The budget's contract, literally: the window at `now` is the slot of
/// `now` (slot = window / 10; a `now` behind the latest one seen reads as
/// the latest) and the nine before it; a retry is granted iff
/// `granted in window + 1 <= floor + percent × first attempts in window /
/// 100`. Clocks that jump: once readings more than a window behind the
/// latest slot have come for a whole window of their own time (the last a
/// window or more after the first) with none within a window of the latest
/// slot between them, the budget resumes at the last one, carrying the
/// counts of the window it leaves into that slot and keeping no other.
#[derive(Clone)]
struct BudgetModel {
    slot: u64,
    percent: u64,
    floor: u64,
    latest: u64,
    /// The first slot read more than a window behind `latest` since the
    /// last one within a window of it.
    behind_since: Option<u64>,
    /// (slot number, is a granted retry) of every counted event.
    events: Vec<(u64, bool)>,
}

impl BudgetModel {
    fn slot_of(&mut self, now: u64) -> u64 {
        let at = now / self.slot;
        if at + 9 >= self.latest {
            self.behind_since = None;
            self.latest = self.latest.max(at);
        } else {
            let since = *self.behind_since.get_or_insert(at);
            if at >= since + 10 {
                let oldest = self.latest.saturating_sub(9);
                let latest = self.latest;
                self.events.retain(|(s, _)| (oldest..=latest).contains(s));
                for (s, _) in &mut self.events {
                    *s = at;
                }
                self.latest = at;
                self.behind_since = None;
            }
        }
        self.latest
    }
    fn in_window(&self, at: u64, retries: bool) -> u64 {
        let oldest = at.saturating_sub(9);
        self.events
            .iter()
            .filter(|(s, r)| *r == retries && (oldest..=at).contains(s))
            .count() as u64
    }
    fn deposit(&mut self, now: u64) {
        let at = self.slot_of(now);
        self.events.push((at, false));
    }
    fn remaining(&mut self, now: u64) -> u64 {
        let at = self.slot_of(now);
        let (firsts, retries) = (self.in_window(at, false), self.in_window(at, true));
        (self.floor + self.percent * firsts / 100).saturating_sub(retries)
    }
    fn withdraw(&mut self, now: u64) -> bool {
        let at = self.slot_of(now);
        let (firsts, retries) = (self.in_window(at, false), self.in_window(at, true));
        let granted = (retries + 1) * 100 <= self.floor * 100 + self.percent * firsts;
        if granted {
            self.events.push((at, true));
        }
        granted
    }
}

/// A step that is one reading at `u64::MAX` µs.
const FAR: i64 = i64::MAX;

#[derive(Clone, Debug)]
enum Op {
    Deposit,
    Withdraw,
}

fn ops() -> impl Strategy<Value = Vec<(Op, i64)>> {
    // Time steps in ms: mostly forward and small (many events per slot),
    // sometimes a jump of several windows, sometimes backwards (a stale
    // clock), rarely a clock stepping back or forward by many windows, or
    // one reading far in the future (then the clock it left).
    let step = prop_oneof![
        80 => 0i64..150,
        10 => 1_000i64..5_000,
        10 => -500i64..0,
        2 => -30_000i64..-1_000,
        1 => Just(FAR),
    ];
    let op = prop_oneof![2 => Just(Op::Deposit), 3 => Just(Op::Withdraw)];
    proptest::collection::vec((op, step), 1..400)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn budget_matches_its_contract(
        percent in 0u32..250,
        floor in 0u32..4,
        schedule in ops(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let _guard = rt.enter();
        // A 1 s window: slots of 100 ms.
        let budget = RetryBudget::new(Duration::from_secs(1), percent, floor).unwrap();
        let mut model = BudgetModel {
            slot: 100_000,
            percent: u64::from(percent),
            floor: u64::from(floor),
            latest: 0,
            behind_since: None,
            events: Vec::new(),
        };
        let mut now_ms: i64 = 10_000;
        for (op, step) in schedule {
            // A far-future reading leaves the clock where it was.
            let now = if step == FAR {
                Instant::from_micros(u64::MAX)
            } else {
                now_ms = (now_ms + step).max(0);
                Instant::from_millis(u64::try_from(now_ms).expect("clamped at 0"))
            };
            match op {
                Op::Deposit => {
                    budget.deposit_at(now);
                    model.deposit(now.as_micros());
                }
                Op::Withdraw => {
                    // `remaining_at` foretells the decision, writing nothing.
                    let foretold = model.clone().remaining(now.as_micros());
                    prop_assert_eq!(budget.remaining_at(now), foretold, "at {:?}", now);
                    let got = budget.try_withdraw_at(now);
                    prop_assert_eq!(got, model.withdraw(now.as_micros()), "at {:?}", now);
                }
            }
        }
    }

    #[test]
    fn backoff_ceilings_and_jitter_match_their_contract(
        base_ms in 0u64..5_000,
        factor in 1u32..5,
        extra_ms in 0u64..100_000,
        seed in any::<u64>(),
    ) {
        let max_ms = base_ms + extra_ms;
        let maker = ExponentialBackoffMaker::new(
            Duration::from_millis(base_ms),
            f64::from(factor),
            Duration::from_millis(max_ms),
        )
        .unwrap();
        let mut exact = maker.clone().with_jitter(Jitter::None).make_backoff();
        let mut jittered = maker
            .with_jitter(Jitter::Full)
            .with_rng(fastrand::Rng::with_seed(seed))
            .make_backoff();
        // The ceiling before retry k: min(max, base · factor^(k-1)), in
        // integers (saturating: past the cap it stays there).
        let mut ceiling = base_ms;
        for k in 1..=80u32 {
            let expected = ceiling.min(max_ms);
            prop_assert_eq!(exact.next_delay(), Duration::from_millis(expected), "retry {}", k);
            let drawn = jittered.next_delay();
            prop_assert!(drawn <= Duration::from_millis(expected), "retry {}: {:?}", k, drawn);
            prop_assert_eq!(drawn.subsec_nanos() % 1_000_000, 0);
            ceiling = ceiling.saturating_mul(u64::from(factor));
        }
    }
}
