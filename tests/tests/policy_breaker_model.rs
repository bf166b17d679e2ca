//! `Policy` (retries with a budget, a circuit breaker and a timeout)
//! against a model written from the docs, over random settings and
//! sequences of calls on paused time (whole milliseconds):
//!
//! * the breaker (`Config` docs): opens after `k` consecutive failures
//!   (a timed-out attempt is one), for `open_for`, its deadline rounded
//!   up to a 1.024 ms tick; the first call at or after it is the trial
//!   (one permit), which closes it on success and reopens it on failure;
//!   a call refused by it is never made;
//! * the retries (`Retry` docs): up to `max_attempts`, a constant backoff,
//!   an open breaker stopping them at once (`OnCallError`);
//! * the budget (`RetryBudget` docs): a first attempt is deposited when it
//!   is made (a `Policy` deposits none the breaker refused), a retry is
//!   admitted at the failure before it if the window then (ten slots) has
//!   `withdrawals + 1 ≤ floor + ⌊percent × deposits / 100⌋`; a retry
//!   the breaker then refuses never ran and is given back.
//!
//! Every call's result, end instant and attempts made, and the budget's
//! remaining retries after each call, must be the model's.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use fusebox::breaker::{CircuitBreaker, Config};
use fusebox::Clock;
use fusebox_std::policy::{Breaker, ExponentialBackoffMaker, Jitter, Policy, Retry, RetryBudget};
use fusebox_std::CallError;
use tokio::time::Instant;

/// What one attempt of the callee does (ms).
#[derive(Clone, Copy, Debug)]
enum Act {
    Ok(u64),
    Err(u64),
    Hang,
}

/// How a call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    Ok,
    Failed,
    TimedOut,
    Open,
}

#[derive(Clone, Copy, Debug)]
struct Settings {
    trip: u32,
    open_ms: u64,
    timeout_ms: u64,
    attempts: u32,
    backoff_ms: u64,
    slot_ms: u64,
    percent: u64,
    floor: u64,
}

/// The breaker of the docs: `Closed(consecutive failures)` or
/// `Open(deadline in µs)`.
enum ModelBreaker {
    Closed(u32),
    Open(u64),
}

struct Model {
    s: Settings,
    breaker: ModelBreaker,
    /// Per budget slot: (deposits, withdrawals).
    slots: Vec<(u64, u64)>,
}

impl Model {
    fn slot(&self, ms: u64) -> usize {
        (ms / self.s.slot_ms) as usize
    }

    fn grow(&mut self, slot: usize) {
        if self.slots.len() <= slot {
            self.slots.resize(slot + 1, (0, 0));
        }
    }

    fn window(&self, slot: usize) -> (u64, u64) {
        let from = slot.saturating_sub(9);
        (from..=slot)
            .filter_map(|i| self.slots.get(i))
            .fold((0, 0), |(d, w), s| (d + s.0, w + s.1))
    }

    fn remaining(&self, ms: u64) -> u64 {
        let (d, w) = self.window(self.slot(ms));
        (self.s.floor + self.s.percent * d / 100).saturating_sub(w)
    }

    /// Whether the breaker lets a call through at `ms`.
    fn admits(&self, ms: u64) -> bool {
        match self.breaker {
            ModelBreaker::Closed(_) => true,
            ModelBreaker::Open(until) => ms * 1_000 >= until,
        }
    }

    fn record(&mut self, ms: u64, ok: bool) {
        let open = |ms: u64, s: &Settings| (ms * 1_000 + s.open_ms * 1_000).div_ceil(1_024) * 1_024;
        self.breaker = match (&self.breaker, ok) {
            (_, true) => ModelBreaker::Closed(0),
            (ModelBreaker::Open(_), false) => ModelBreaker::Open(open(ms, &self.s)),
            (ModelBreaker::Closed(n), false) if n + 1 >= self.s.trip => {
                ModelBreaker::Open(open(ms, &self.s))
            }
            (ModelBreaker::Closed(n), false) => ModelBreaker::Closed(n + 1),
        };
    }

    /// One call from `start`: its end, end instant and attempts made.
    fn call(&mut self, start: u64, acts: &mut VecDeque<Act>) -> (End, u64, u32) {
        let (mut now, mut made, mut granted) = (start, 0u32, None::<usize>);
        loop {
            if !self.admits(now) {
                if let Some(slot) = granted {
                    self.slots[slot].1 -= 1; // never ran: given back
                }
                return (End::Open, now, made);
            }
            if made == 0 {
                let slot = self.slot(now);
                self.grow(slot);
                self.slots[slot].0 += 1;
            }
            made += 1;
            let end = match acts.pop_front().unwrap() {
                Act::Ok(ms) => {
                    self.record(now + ms, true);
                    return (End::Ok, now + ms, made);
                }
                Act::Err(ms) => {
                    now += ms;
                    End::Failed
                }
                Act::Hang => {
                    now += self.s.timeout_ms;
                    End::TimedOut
                }
            };
            self.record(now, false);
            if made >= self.s.attempts {
                return (end, now, made);
            }
            let slot = self.slot(now);
            self.grow(slot);
            let (d, w) = self.window(slot);
            if (w + 1) * 100 > self.s.floor * 100 + self.s.percent * d {
                return (end, now, made);
            }
            self.slots[slot].1 += 1;
            granted = Some(slot);
            now += self.s.backoff_ms;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn policy_with_breaker_and_budget_matches_the_documented_model() {
    let mut rng = fastrand::Rng::with_seed(41);
    for round in 0..60 {
        let s = Settings {
            trip: rng.u32(1..4),
            open_ms: rng.u64(5..60),
            timeout_ms: rng.u64(5..20),
            attempts: rng.u32(1..5),
            backoff_ms: rng.u64(1..15),
            slot_ms: [10, 30, 100][rng.usize(0..3)],
            percent: [0, 20, 50, 100][rng.usize(0..4)],
            floor: rng.u64(0..3),
        };
        let origin = Instant::now();
        let (policy, breaker, budget) = rig(s);
        let mut model = Model {
            s,
            breaker: ModelBreaker::Closed(0),
            slots: Vec::new(),
        };
        let ms = |at: Instant| (at - origin).as_millis() as u64;
        for call in 0..40 {
            tokio::time::advance(Duration::from_millis(rng.u64(0..40))).await;
            let failing = rng.u8(0..10) < 6;
            let acts: VecDeque<Act> = (0..s.attempts)
                .map(|_| match rng.u8(0..10) {
                    0..=2 if failing => Act::Hang,
                    _ if failing || rng.u8(0..10) < 2 => Act::Err(rng.u64(0..s.timeout_ms)),
                    _ => Act::Ok(rng.u64(0..s.timeout_ms)),
                })
                .collect();
            let start = ms(Instant::now());
            let want = model.call(start, &mut acts.clone());
            let (end, made) = run(&policy, acts.clone()).await;
            let at = ms(Instant::now());
            let got = (end, at, made);
            assert_eq!(
                got, want,
                "round {round}, call {call} from {start} ms, {s:?}, {acts:?}"
            );
            assert_eq!(
                budget.remaining_at(breaker.clock().now()),
                model.remaining(at),
                "round {round}, call {call}: budget after, {s:?}"
            );
        }
    }
}

/// The policy of the settings, its breaker and its budget (their clocks
/// start now).
fn rig(s: Settings) -> (Policy, Breaker, Arc<RetryBudget>) {
    let core = CircuitBreaker::new(
        Config::builder()
            .consecutive_failures(s.trip)
            .open_for(fusebox::Duration::from_millis(s.open_ms))
            .build()
            .unwrap(),
    );
    let breaker = Breaker::new("model", Arc::new(core));
    let budget = Arc::new(
        RetryBudget::new(
            Duration::from_millis(s.slot_ms * 10),
            s.percent as u32,
            s.floor as u32,
        )
        .unwrap(),
    );
    let backoff = ExponentialBackoffMaker::new(
        Duration::from_millis(s.backoff_ms),
        1.0,
        Duration::from_millis(s.backoff_ms),
    )
    .unwrap()
    .with_jitter(Jitter::None);
    let policy = Policy::builder()
        .retry(
            Retry::builder()
                .max_attempts(s.attempts)
                .backoff(backoff)
                .budget(Arc::clone(&budget))
                .build(),
        )
        .breaker(breaker.clone())
        .timeout(Duration::from_millis(s.timeout_ms))
        .build();
    (policy, breaker, budget)
}

/// One call through `policy`, each attempt acting as `acts` says: how it
/// ended and the attempts made.
async fn run(policy: &Policy, acts: VecDeque<Act>) -> (End, u32) {
    let script = RefCell::new(acts);
    let made = RefCell::new(0u32);
    let result = policy
        .call(|| {
            *made.borrow_mut() += 1;
            let act = script.borrow_mut().pop_front().unwrap();
            async move {
                match act {
                    Act::Ok(h) => {
                        tokio::time::sleep(Duration::from_millis(h)).await;
                        Ok(())
                    }
                    Act::Err(h) => {
                        tokio::time::sleep(Duration::from_millis(h)).await;
                        Err("down")
                    }
                    Act::Hang => std::future::pending().await,
                }
            }
        })
        .await;
    let end = match result {
        Ok(()) => End::Ok,
        Err(CallError::Inner(_)) => End::Failed,
        Err(CallError::Timeout) => End::TimedOut,
        Err(CallError::Open { .. }) => End::Open,
        Err(e) => panic!("unexpected {e:?}"),
    };
    let made = *made.borrow();
    (end, made)
}
