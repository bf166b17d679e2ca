//! A long history of one [`Policy`]'s calls, each dropped at a random
//! point, checked after every call against its [`RetryBudget`]'s books as
//! the docs define them (never the code): no retry unit lost, none
//! counted twice.

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

/// Sound, kept as a test (hostile review): 20 000 calls through one
/// policy (retries in a budget, a rate limit, a breaker), a quarter of
/// them dropped after a random number of polls (in an attempt, a backoff,
/// a token wait), some refused by the open breaker or the rate limit's
/// deadline. After every call, the budget's `remaining_at` is exactly
/// `floor + ⌊percent × first attempts / 100⌋ − retries` over the window
/// (the slot holding now and the nine before), counting the first
/// attempts that started and the retries that started, by the instant
/// they were granted: a retry granted and then dropped, or refused by a
/// layer, is given back, and nothing else is.
#[tokio::test(start_paused = true)]
async fn a_policy_keeps_its_budget_books_exact_over_twenty_thousand_dropped_calls() {
    let clock = TokioClock::new();
    let (percent, floor) = (30u64, 2u64);
    let window = Duration::from_secs(1);
    let budget = Arc::new(RetryBudget::with_clock(window, 30, 2, clock).unwrap());
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
            .with_rng(fastrand::Rng::with_seed(1));
    let policy = Policy::builder()
        .retry(
            Retry::builder()
                .max_attempts(5)
                .budget(Arc::clone(&budget))
                .backoff(backoff)
                .deadline(Duration::from_millis(300))
                .build(),
        )
        .limiter(Arc::new(Limiter::with_clock(Arc::new(bucket), clock)))
        .breaker(breaker)
        .build();
    let mut rng = fastrand::Rng::with_seed(7);
    let (mut deposits, mut retries) = (Vec::new(), Vec::new());
    for call in 0..20_000 {
        let log = Mutex::new(Attempts::default());
        let (work, fails) = (rng.u64(0..20), rng.u8(0..10) < 7);
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
                        Err::<(), _>("down")
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
                tokio::time::advance(Duration::from_millis(rng.u64(1..8))).await;
            }
        }
        for (first, at) in log.into_inner().unwrap().started {
            if first { &mut deposits } else { &mut retries }.push(at);
        }
        if rng.u8(0..50) == 0 {
            // Now and then a gap: windows left empty, ring slots reused.
            tokio::time::advance(Duration::from_millis(rng.u64(0..3_000))).await;
        }
        let now = clock.now().as_micros();
        let slot = u64::try_from(window.as_micros()).unwrap() / 10;
        let from = (now / slot).saturating_sub(9) * slot;
        let firsts = deposits.iter().filter(|&&t| t >= from).count() as u64;
        let taken = retries.iter().filter(|&&t| t >= from).count() as u64;
        let want = (floor + percent * firsts / 100).saturating_sub(taken);
        assert_eq!(
            budget.remaining_at(clock.now()),
            want,
            "after call {call}: {firsts} first attempts, {taken} retries in the window"
        );
    }
    assert!(deposits.len() > 15_000 && retries.len() > 3_000);
}
