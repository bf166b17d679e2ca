//! Hostile callers of the call path: a classifier that panics inside a
//! `Policy` with a bulkhead and a retry budget (sound, kept as a test by a
//! hostile review of the call path: nothing the call held is kept,
//! nothing is counted twice).

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

/// A classifier panicking inside a `Policy`, on the first poll's ready
/// path or a later poll's: the permit is abandoned (as for a plain breaker
/// call, `policy::breaker::tests`), the bulkhead slot comes back, the
/// first attempt (it started: `make` was called) is deposited once, no
/// retry is charged (the panic ends the call before any), and the next
/// call runs.
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

/// A `Policy` timeout of `Duration::MAX`, or of ~292 billion years (past
/// tokio's timer range but not `Instant`'s), with or without a breaker:
/// never a panic, never an early timeout; a call an hour long completes,
/// and a pending call is still running a century on. Sound, kept as a test
/// (hostile review of the call path).
#[tokio::test(start_paused = true)]
async fn a_policy_timeout_past_any_range_never_fires_nor_panics() {
    for timeout in [Duration::MAX, Duration::from_secs(u64::MAX / 2)] {
        for with_breaker in [false, true] {
            let mut builder = Policy::builder().timeout(timeout);
            if with_breaker {
                builder = builder.breaker(Breaker::new("slow", core()));
            }
            let policy = builder.build();
            let hour = policy.call(|| async {
                tokio::time::sleep(Duration::from_secs(3_600)).await;
                Ok::<u8, u64>(1)
            });
            assert_eq!(hour.await.unwrap(), 1, "{timeout:?}, {with_breaker}");
            let century = Duration::from_secs(100 * 365 * 86_400);
            let pending = policy.call(std::future::pending::<Result<u8, u64>>);
            let outer = tokio::time::timeout(century, pending).await;
            assert!(outer.is_err(), "{timeout:?}, {with_breaker}: {outer:?}");
        }
    }
}
