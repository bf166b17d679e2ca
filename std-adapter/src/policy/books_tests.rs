//! A long history of one [`Policy`]'s calls, each dropped at a random
//! point, checked after every call against its [`RetryBudget`]'s books as
//! the docs define them (never the code): no retry unit lost, none
//! counted twice.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use fusebox::breaker::{CircuitBreaker, Config};
use fusebox::bucket::{Quota, TokenBucket};
use fusebox::Clock;

use super::*;
use crate::TokioClock;

fn poll_once<F: Future + ?Sized>(f: Pin<&mut F>) -> Poll<F::Output> {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    f.poll(&mut cx)
}

/// One call's attempts that called `make`: whether each was the first,
/// and when it was deposited (a first attempt, when it started) or
/// granted (a retry: when the attempt before it failed).
#[derive(Default)]
struct Attempts {
    started: Vec<(bool, u64)>,
    failed_at: Option<u64>,
}

/// The callee's error, naming a Retry-After (µs) now and then.
#[derive(Debug)]
struct Down(Option<u64>);

impl fusebox::RetryAfter for Down {
    fn retry_after(&self) -> Option<fusebox::Duration> {
        self.0.map(fusebox::Duration::from_micros)
    }
}

/// Sound, kept as a test (hostile review): 100 000 calls through one
/// policy (retries in a budget, a rate limit, a breaker; the callee
/// naming a Retry-After of up to 2.5 s now and then), a quarter of them
/// dropped after a random number of polls (in an attempt, a backoff or a
/// Retry-After wait, a token wait; some after their retry's window slot
/// has left the window), some refused by the open breaker or the rate
/// limit's deadline. After every call, the budget's `remaining_at` is exactly
/// `floor + ⌊percent × first attempts / 100⌋ − retries` over the window
/// (the slot holding now and the nine before), counting the first
/// attempts that started and the retries that started, by the instant
/// they were granted: a retry granted and then dropped, or refused by a
/// layer, is given back, and nothing else is.
#[tokio::test(start_paused = true)]
async fn a_policy_keeps_its_budget_books_exact_over_a_hundred_thousand_dropped_calls() {
    books_history(7, 100_000).await;
}

/// `calls` calls of the test above, drawn from `seed`.
/// Retries (5 attempts within 3 s, a Retry-After honoured) in `budget`,
/// 50 tokens a second (burst 2), a breaker opening on four failures for
/// 20 ms with one half-open trial; every layer on `clock`.
fn policy(
    seed: u64,
    clock: TokioClock,
    budget: &Arc<RetryBudget>,
) -> Policy<DefaultClassifier, ExponentialBackoffMaker, HonorRetryAfter<RetryAll>> {
    let bucket = TokenBucket::new(Quota::per_second(50).unwrap().with_burst(2).unwrap());
    let config = Config::builder()
        .consecutive_failures(4)
        .open_for(fusebox::Duration::from_millis(20))
        .half_open_permits(1)
        .build()
        .unwrap();
    let breaker = Breaker::builder("books", Arc::new(CircuitBreaker::new(config)))
        .clock(clock)
        .build();
    let backoff =
        ExponentialBackoffMaker::new(Duration::from_millis(3), 2.0, Duration::from_millis(40))
            .unwrap()
            .with_rng(fastrand::Rng::with_seed(seed));
    Policy::builder()
        .retry(
            Retry::builder()
                .max_attempts(5)
                .budget(Arc::clone(budget))
                .backoff(backoff)
                .deadline(Duration::from_secs(3))
                .honor_retry_after()
                .build(),
        )
        .limiter(Arc::new(Limiter::with_clock(Arc::new(bucket), clock)))
        .breaker(breaker)
        .build()
}

pub(super) async fn books_history(seed: u64, calls: usize) {
    let clock = TokioClock::new();
    let (percent, floor) = (30u64, 2u64);
    let window = Duration::from_secs(1);
    let budget = Arc::new(RetryBudget::with_clock(window, 30, 2, clock).unwrap());
    let policy = policy(seed, clock, &budget);
    let mut rng = fastrand::Rng::with_seed(seed);
    // The instants still in the window (in order: calls run one after
    // another), and how many there were in all.
    let (mut deposits, mut retries) = (VecDeque::new(), VecDeque::new());
    let (mut all_deposits, mut all_retries) = (0usize, 0usize);
    for call in 0..calls {
        let log = Mutex::new(Attempts::default());
        let (work, fails) = (rng.u64(0..20), rng.u8(0..10) < 7);
        let after = (rng.u8(0..8) == 0).then(|| rng.u64(0..2_500_000));
        {
            let mut future = Box::pin(policy.call(|| {
                let mut log_now = log.lock().unwrap();
                let now = clock.now().as_micros();
                let first = log_now.started.is_empty();
                let at = if first { Some(now) } else { log_now.failed_at };
                log_now
                    .started
                    .push((first, at.expect("a retry follows a failure")));
                let log = &log;
                async move {
                    tokio::time::sleep(Duration::from_millis(work)).await;
                    if fails {
                        log.lock().unwrap().failed_at = Some(clock.now().as_micros());
                        Err::<(), _>(Down(after))
                    } else {
                        Ok(())
                    }
                }
            }));
            let polls = if rng.u8(0..4) == 0 {
                rng.usize(0..40)
            } else {
                usize::MAX
            };
            for _ in 0..polls {
                if poll_once(future.as_mut()).is_ready() {
                    break;
                }
                let step = if rng.u8(0..10) == 0 {
                    rng.u64(100..1_500)
                } else {
                    rng.u64(1..8)
                };
                tokio::time::advance(Duration::from_millis(step)).await;
            }
        }
        for (first, at) in log.into_inner().unwrap().started {
            let (times, all) = if first {
                (&mut deposits, &mut all_deposits)
            } else {
                (&mut retries, &mut all_retries)
            };
            assert!(times.back().is_none_or(|&last| last <= at));
            times.push_back(at);
            *all += 1;
        }
        if rng.u8(0..50) == 0 {
            // Now and then a gap: windows left empty, ring slots reused.
            tokio::time::advance(Duration::from_millis(rng.u64(0..3_000))).await;
        }
        let now = clock.now().as_micros();
        let slot = u64::try_from(window.as_micros()).unwrap() / 10;
        let from = (now / slot).saturating_sub(9) * slot;
        for times in [&mut deposits, &mut retries] {
            while times.front().is_some_and(|&t| t < from) {
                times.pop_front();
            }
        }
        let (firsts, taken) = (deposits.len() as u64, retries.len() as u64);
        let want = (floor + percent * firsts / 100).saturating_sub(taken);
        assert_eq!(
            budget.remaining_at(clock.now()),
            want,
            "after call {call}: {firsts} first attempts, {taken} retries in the window"
        );
    }
    assert!(
        all_deposits > calls / 2 && all_retries > calls / 5,
        "{all_deposits} {all_retries}"
    );
}
