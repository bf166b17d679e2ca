//! Hostile callers of the call path: classifiers that panic, in a plain
//! breaker call and inside a `Policy` with a bulkhead and a retry budget
//! (sound, kept as tests by a hostile review of the call path: nothing
//! the call held is kept, nothing is counted twice).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fusebox::breaker::{CircuitBreaker, Config, Outcome, State};
use fusebox::Instant;
use fusebox_std::policy::{Breaker, Bulkhead, Overflow, Policy, Retry, RetryBudget};

/// One failure opens it for 1 s; one half-open trial.
fn core() -> Arc<CircuitBreaker> {
    Arc::new(CircuitBreaker::new(
        Config::builder()
            .consecutive_failures(1)
            .open_for(fusebox::Duration::from_secs(1))
            .half_open_permits(1)
            .build()
            .unwrap(),
    ))
}

/// The classifier of the breakers below.
type Buggy = fn(&Result<u8, u64>) -> Outcome;

/// Successes succeed, 13 is a bug in the classifier, other errors fail.
fn buggy(result: &Result<u8, u64>) -> Outcome {
    match result {
        Ok(_) => Outcome::Success,
        Err(13) => panic!("the classifier has a bug"),
        Err(_) => Outcome::Failure,
    }
}

/// A call of `breaker` on its own task, ready at once or after a yield.
async fn panics(breaker: &Breaker<Buggy>, yields: bool) -> bool {
    let b = breaker.clone();
    tokio::spawn(async move {
        b.call(async move {
            if yields {
                tokio::task::yield_now().await;
            }
            Err::<u8, u64>(13)
        })
        .await
    })
    .await
    .is_err_and(|e| e.is_panic())
}

/// The classifier runs with the permit in hand: the first poll's ready
/// path or a later poll's. Panicking there, the permit is abandoned (the
/// core's `Drop`), so a half-open trial slot is free again and the breaker
/// stays undecided; the next call is the trial and closes it.
#[tokio::test(start_paused = true)]
async fn a_panicking_classifier_abandons_its_permit() {
    let core = core();
    let breaker = Breaker::builder("buggy", Arc::clone(&core))
        .classifier(buggy as Buggy)
        .build();
    for yields in [false, true] {
        assert!(panics(&breaker, yields).await, "closed, yields {yields}");
    }
    assert_eq!(breaker.state(), State::Closed);
    let _ = breaker.call(async { Err::<u8, u64>(1) }).await;
    assert_eq!(breaker.state(), State::Open);
    tokio::time::advance(Duration::from_secs(2)).await;
    for yields in [false, true] {
        assert!(panics(&breaker, yields).await, "half-open, yields {yields}");
        assert_eq!(breaker.state(), State::HalfOpen, "undecided");
    }
    let m = core.metrics();
    assert_eq!((m.abandoned, m.failures, m.successes), (4, 1, 0));
    assert_eq!(breaker.call(async { Ok::<u8, u64>(1) }).await.unwrap(), 1);
    assert_eq!(breaker.state(), State::Closed);
}

/// The same inside a `Policy`: the bulkhead slot comes back, the first
/// attempt (it started: `make` was called) is deposited once, no retry is
/// charged (the panic ends the call before any), and the next call runs.
#[tokio::test(start_paused = true)]
async fn a_panicking_classifier_in_a_policy_leaks_nothing() {
    let bulkhead = Bulkhead::new(1, Overflow::Reject).unwrap();
    // 100 % of first attempts, no floor: retries only as first attempts buy.
    let budget = Arc::new(RetryBudget::new(Duration::from_secs(60), 100, 0).unwrap());
    let breaker = Breaker::builder("buggy", core())
        .classifier(buggy as Buggy)
        .build();
    let policy = Arc::new(
        Policy::builder()
            .bulkhead(bulkhead.clone())
            .retry(
                Retry::builder()
                    .max_attempts(3)
                    .budget(Arc::clone(&budget))
                    .build(),
            )
            .breaker(breaker.clone())
            .build(),
    );
    let made = Arc::new(AtomicUsize::new(0));
    for yields in [false, true] {
        let (policy, made) = (Arc::clone(&policy), Arc::clone(&made));
        let task = tokio::spawn(async move {
            policy
                .call(|| {
                    made.fetch_add(1, Ordering::Relaxed);
                    async move {
                        if yields {
                            tokio::task::yield_now().await;
                        }
                        Err::<u8, u64>(13)
                    }
                })
                .await
        });
        assert!(task.await.unwrap_err().is_panic());
        assert_eq!(bulkhead.metrics().in_use, 0, "yields {yields}");
    }
    assert_eq!(made.load(Ordering::Relaxed), 2);
    // Two first attempts deposited, no retry withdrawn.
    assert_eq!(budget.remaining_at(Instant::ZERO), 2);
    assert_eq!(breaker.metrics().abandoned, 2);
    assert_eq!(breaker.state(), State::Closed);
    let value = policy.call(|| async { Ok::<u8, u64>(5) }).await.unwrap();
    assert_eq!(value, 5);
}
