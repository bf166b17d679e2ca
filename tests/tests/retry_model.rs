//! `Retry` against a model written from its rustdoc: attempts, the
//! backoff's ceilings, the predicate, Retry-After (its cap, and the
//! `Retry-After + backoff` wait), the deadline (a retry starts only if its
//! wait ends at least 1 ms before it) and a shared budget (its window's
//! bound), over random settings and sequences of calls on paused time.
//! Values are whole milliseconds, so every wait ends exactly when the
//! model says.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use fusebox_std::policy::{ExponentialBackoffMaker, Jitter, Retry, RetryBudget, Stop};

/// A callee's error: retryable or not, naming a Retry-After or not (ms).
#[derive(Clone, Copy, Debug)]
struct Failure {
    retryable: bool,
    after_ms: Option<u64>,
}

impl fusebox::RetryAfter for Failure {
    fn retry_after(&self) -> Option<fusebox::Duration> {
        self.after_ms.map(fusebox::Duration::from_millis)
    }
}

/// The budget of the docs: retries admitted while, in the window (the
/// slot of `now` and the nine before it), retries (this one included) are
/// at most `floor + ⌊percent × first attempts / 100⌋`.
struct BudgetModel {
    slot_ms: u64,
    percent: u64,
    floor: u64,
    deposits: Vec<(u64, u64)>,
    withdrawals: Vec<u64>,
}

impl BudgetModel {
    fn in_window(&self, slot: u64, now: u64) -> bool {
        let index = now / self.slot_ms;
        slot <= index && slot + 9 >= index
    }

    fn deposit(&mut self, now: u64) {
        self.deposits.push((now / self.slot_ms, 1));
    }

    fn withdraw(&mut self, now: u64) -> bool {
        let d: u64 = (self.deposits.iter())
            .filter(|(s, _)| self.in_window(*s, now))
            .map(|(_, n)| n)
            .sum();
        let w = (self.withdrawals.iter())
            .filter(|s| self.in_window(**s, now))
            .count() as u64;
        let ok = w < self.floor + self.percent * d / 100;
        if ok {
            self.withdrawals.push(now / self.slot_ms);
        }
        ok
    }
}

#[derive(Debug)]
struct Settings {
    max_attempts: u32,
    base_ms: u64,
    factor: u32,
    max_ms: u64,
    deadline_ms: Option<u64>,
    max_retry_after_ms: Option<u64>,
}

/// The model's attempt times (ms from the call's start) and its stop
/// (`None`: the last attempt succeeded).
fn model(
    s: &Settings,
    failures: &[Failure],
    start: u64,
    budget: Option<&mut BudgetModel>,
) -> (Vec<u64>, Option<Stop>) {
    let mut budget = budget;
    let mut now = 0u64;
    let mut at = Vec::new();
    // Every first attempt is deposited when it starts.
    if let Some(b) = budget.as_deref_mut() {
        b.deposit(start);
    }
    for (i, failure) in failures.iter().enumerate() {
        let attempts = i as u32 + 1;
        at.push(now);
        if !failure.retryable {
            return (at, Some(Stop::NotRetryable));
        }
        if attempts >= s.max_attempts {
            return (at, Some(Stop::Exhausted));
        }
        let ceiling = u64::from(s.factor)
            .checked_pow(attempts - 1)
            .and_then(|p| p.checked_mul(s.base_ms))
            .map_or(s.max_ms, |c| c.min(s.max_ms));
        let cap = match (s.max_retry_after_ms, s.deadline_ms) {
            (Some(cap), _) => Some(cap),
            (None, None) => Some(60_000),
            (None, Some(_)) => None,
        };
        if failure
            .after_ms
            .zip(cap)
            .is_some_and(|(after, cap)| after > cap)
        {
            return (at, Some(Stop::RetryAfterTooLong));
        }
        let wake = now + failure.after_ms.unwrap_or(0) + ceiling;
        if s.deadline_ms.is_some_and(|d| wake + 1 > d) {
            return (at, Some(Stop::Deadline));
        }
        if budget
            .as_deref_mut()
            .is_some_and(|b| !b.withdraw(start + now))
        {
            return (at, Some(Stop::Budget));
        }
        now = wake;
    }
    at.push(now);
    (at, None)
}

async fn history(seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let base_ms = rng.u64(0..300);
    let s = Settings {
        max_attempts: rng.u32(0..7),
        base_ms,
        factor: rng.u32(1..4),
        max_ms: base_ms + rng.u64(0..2_000),
        deadline_ms: rng.bool().then(|| rng.u64(0..4_000)),
        max_retry_after_ms: rng.bool().then(|| [0, 100, 1_000, 90_000][rng.usize(0..4)]),
    };
    let (percent, floor) = (rng.u32(0..150), rng.u32(0..3));
    let with_budget = rng.bool();
    let budget = Arc::new(RetryBudget::new(Duration::from_secs(10), percent, floor).unwrap());
    let mut model_budget = BudgetModel {
        slot_ms: 1_000,
        percent: u64::from(percent),
        floor: u64::from(floor),
        deposits: Vec::new(),
        withdrawals: Vec::new(),
    };
    let mut builder = Retry::builder().max_attempts(s.max_attempts).backoff(
        ExponentialBackoffMaker::new(
            Duration::from_millis(s.base_ms),
            f64::from(s.factor),
            Duration::from_millis(s.max_ms),
        )
        .unwrap()
        .with_jitter(Jitter::None),
    );
    if let Some(d) = s.deadline_ms {
        builder = builder.deadline(Duration::from_millis(d));
    }
    if let Some(cap) = s.max_retry_after_ms {
        builder = builder.max_retry_after(Duration::from_millis(cap));
    }
    if with_budget {
        builder = builder.budget(Arc::clone(&budget));
    }
    let retry = builder
        .retry_if(|f: &Failure| f.retryable)
        .honor_retry_after()
        .build();
    let origin = tokio::time::Instant::now();
    for call in 0..12 {
        tokio::time::advance(Duration::from_millis(rng.u64(0..6_000))).await;
        let failures: Vec<Failure> = (0..rng.usize(0..8))
            .map(|_| Failure {
                retryable: rng.u8(0..10) > 0,
                after_ms: rng
                    .bool()
                    .then(|| [0, 50, 500, 5_000, 70_000][rng.usize(0..5)]),
            })
            .collect();
        let start = tokio::time::Instant::now();
        let start_ms = u64::try_from((start - origin).as_millis()).unwrap();
        let seen = RefCell::new(Vec::new());
        let result = retry
            .call(|| {
                let n = seen.borrow().len();
                seen.borrow_mut().push(
                    u64::try_from((tokio::time::Instant::now() - start).as_millis()).unwrap(),
                );
                let outcome = failures.get(n).map_or(Ok(n), |f| Err(*f));
                async move { outcome }
            })
            .await;
        let (want_at, want_stop) = model(
            &s,
            &failures,
            start_ms,
            with_budget.then_some(&mut model_budget),
        );
        let got_stop = result.as_ref().err().map(|e| e.stop);
        let context = format!(
            "seed {seed}, call {call} at {start_ms} ms, failures {failures:?}, {s:?}, \
             budget {with_budget} {percent} % + {floor}, model stop {want_stop:?}, got {got_stop:?}, model d {:?} w {:?}, remaining {}",
            model_budget.deposits, model_budget.withdrawals,
            budget.remaining_at(fusebox::Instant::from_millis(start_ms))
        );
        assert_eq!(*seen.borrow(), want_at, "{context}");
        assert_eq!(got_stop, want_stop, "{context}");
        if let Err(e) = result {
            assert_eq!(e.attempts as usize, want_at.len(), "{context}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn retry_timelines_match_the_documented_model() {
    for seed in 0..400 {
        history(seed).await;
    }
}
