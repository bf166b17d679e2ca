//! Cancellation at scale: a runtime shut down under calls parked in every
//! layer, and hundreds of policy calls racing on two workers, cut by
//! random outer timeouts. Afterwards, as in `cancellation.rs`: every slot,
//! permit, trial and retry grant settled.

use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use crate::common::poll_once;
use fusebox::breaker::{Config, State};
use fusebox::bucket::Quota;
use fusebox::Clock;
use fusebox_std::policy::{ExponentialBackoffMaker, Jitter, Overflow, Policy, Retry, RetryBudget};
use fusebox_std::CallError;

const MS: Duration = Duration::from_millis(1);

fn constant_backoff(ms: u64) -> ExponentialBackoffMaker {
    ExponentialBackoffMaker::new(Duration::from_millis(ms), 1.0, Duration::from_millis(ms))
        .unwrap()
        .with_jitter(Jitter::None)
}

/// Waits until `parked` holds, failing (rather than spinning for good)
/// if it does not within a minute of real time.
async fn parked_until(what: &str, parked: impl Fn() -> bool) {
    let start = std::time::Instant::now();
    while !parked() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "not parked after a minute: {what}"
        );
        tokio::time::sleep(MS).await;
    }
}

/// The layers of the shutdown test: a half-open breaker (one trial), an
/// emptied limiter and key of one token an hour, a budget of one retry.
async fn parked_layers() -> (
    fusebox_std::policy::Breaker,
    Arc<fusebox_std::policy::Limiter>,
    Arc<fusebox_std::policy::KeyedLimiter<u8, 4>>,
    Arc<RetryBudget>,
) {
    use fusebox_std::policy::{Breaker, KeyedLimiter, Limiter};
    let config = Config::builder()
        .consecutive_failures(1)
        .open_for(fusebox::Duration::from_millis(1))
        .half_open_permits(1)
        .build()
        .unwrap();
    let breaker = Breaker::new("shutdown", Arc::new(fusebox::CircuitBreaker::new(config)));
    let _ = breaker.call(async { Err::<(), _>("trip") }).await;
    tokio::time::sleep(10 * MS).await; // half-open from here
    let quota = Quota::per_hour(1).unwrap();
    let limiter = Arc::new(Limiter::new(Arc::new(fusebox::TokenBucket::new(quota))));
    limiter.until_ready().await.unwrap();
    let core: fusebox::KeyedLimiter<u8, 4> =
        fusebox::KeyedLimiter::new(quota, fusebox::bucket::FullPolicy::Reject).unwrap();
    let keyed = Arc::new(KeyedLimiter::new(Arc::new(core)));
    keyed.until_ready(&1).await.unwrap();
    let budget = Arc::new(RetryBudget::new(Duration::from_secs(3_600), 0, 1).unwrap());
    (breaker, limiter, keyed, budget)
}

/// A runtime shut down under tasks parked in every layer (in the call
/// holding a half-open trial, queued for the bulkhead, waiting for a
/// token, queued on a key, asleep in a retry backoff): dropping their
/// futures, the runtime's shutdown settles everything as a drop does, and
/// nothing panics.
#[test]
fn a_runtime_shut_down_under_parked_calls_leaks_nothing() {
    use fusebox_std::policy::Bulkhead;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let bulkhead = Bulkhead::new(
        1,
        Overflow::Queue {
            max_queued: 4,
            max_wait: Duration::from_secs(60),
        },
    )
    .unwrap();
    let (breaker, limiter, keyed, budget) = runtime.block_on(parked_layers());
    let trial = Policy::builder()
        .bulkhead(bulkhead.clone())
        .breaker(breaker.clone())
        .build();
    let queued = trial.clone();
    let (in_backoff, hold_budget) = (
        Retry::builder()
            .max_attempts(2)
            .backoff(constant_backoff(3_600_000))
            .budget(Arc::clone(&budget))
            .build(),
        Arc::clone(&budget),
    );
    runtime.block_on(async {
        // The trial first, holding the bulkhead's slot and the breaker's one
        // trial, before the call meant to queue behind it is spawned: spawned
        // together, the second could run first on the other worker, take
        // both, succeed and close the breaker, and nothing would ever queue
        // (the wait below then spun for good in a CI run).
        let holder = tokio::spawn(async move {
            let _ = trial.call(std::future::pending::<Result<(), ()>>).await;
        });
        parked_until("the trial holds the slot", || {
            bulkhead.metrics().in_use == 1
        })
        .await;
        let parked = [
            holder,
            tokio::spawn(async move {
                let _ = queued.call(|| async { Ok::<(), ()>(()) }).await;
            }),
            tokio::spawn({
                let limiter = Arc::clone(&limiter);
                async move {
                    let _ = limiter.until_ready().await;
                }
            }),
            tokio::spawn({
                let keyed = Arc::clone(&keyed);
                async move {
                    let _ = keyed.until_ready(&1).await;
                }
            }),
            tokio::spawn(async move {
                let _ = in_backoff.call(|| async { Err::<(), _>("down") }).await;
            }),
        ];
        // Until every task is parked: the trial in flight, one queued, the
        // key queued, the retry granted.
        parked_until("every call parked", || {
            bulkhead.metrics().queued == 1
                && keyed.waiting_keys() == 1
                && hold_budget.remaining_at(fusebox::Instant::ZERO) == 0
        })
        .await;
        assert!(parked.iter().all(|task| !task.is_finished()));
    });
    drop(runtime);
    let m = bulkhead.metrics();
    assert_eq!((m.in_use, m.queued, m.rejected), (0, 0, 0));
    let b = breaker.metrics();
    assert_eq!((b.abandoned, b.failures, b.successes), (1, 1, 0));
    assert_eq!(
        breaker.state(),
        State::HalfOpen,
        "the trial decided nothing"
    );
    assert_eq!(keyed.waiting_keys(), 0);
    assert_eq!(
        budget.remaining_at(fusebox::Instant::ZERO),
        1,
        "the retry given back"
    );
    // A runtime again: the trial slot is free.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        breaker.call(async { Ok::<(), ()>(()) }).await.unwrap();
        assert_eq!(breaker.state(), State::Closed);
    });
}

/// Tasks on two workers racing through one composed policy (a queueing
/// bulkhead, retries within a budget, a limiter, a breaker with two
/// half-open trials, a timeout), most cut by tiny outer timeouts at
/// random points, over attempts that succeed, fail or hang: afterwards
/// the slots are back, every breaker permit was settled once, the budget
/// was charged for exactly the retries that called the operation, and
/// both half-open trial slots are free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_cancelled_policy_calls_leak_nothing() {
    use fusebox_std::policy::{Breaker, Bulkhead, Limiter};
    let bulkhead = Bulkhead::new(
        3,
        Overflow::Queue {
            max_queued: 8,
            max_wait: 5 * MS,
        },
    )
    .unwrap();
    let config = Config::builder()
        .failure_rate(50)
        .window(10)
        .minimum_calls(10)
        .open_for(fusebox::Duration::from_millis(5))
        .half_open_permits(2)
        .close_after(2)
        .build()
        .unwrap();
    let breaker = Breaker::new("race", Arc::new(fusebox::CircuitBreaker::new(config)));
    let quota = Quota::per_second(2_000).unwrap().with_burst(4).unwrap();
    let limiter = Arc::new(Limiter::new(Arc::new(fusebox::TokenBucket::new(quota))));
    let budget = Arc::new(RetryBudget::new(Duration::from_secs(3_600), 0, 100_000).unwrap());
    let policy = Arc::new(
        Policy::builder()
            .bulkhead(bulkhead.clone())
            .retry(
                Retry::builder()
                    .max_attempts(3)
                    .backoff(constant_backoff(1))
                    .budget(Arc::clone(&budget))
                    .build(),
            )
            .limiter(limiter)
            .breaker(breaker.clone())
            .timeout(2 * MS)
            .build(),
    );
    let retries_run = Arc::new(AtomicU32::new(0));
    let made_total = Arc::new(AtomicU32::new(0));
    let mut rng = fastrand::Rng::with_seed(7);
    let mut tasks = Vec::new();
    for _ in 0..600 {
        let (policy, retries_run, made_total) = (
            Arc::clone(&policy),
            Arc::clone(&retries_run),
            Arc::clone(&made_total),
        );
        let (start, cut) = (
            Duration::from_micros(rng.u64(0..400_000)),
            Duration::from_micros(rng.u64(0..6_000)),
        );
        let mut kinds = rng.u8(..);
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(start).await;
            let made = AtomicU32::new(0);
            let call = policy.call(|| {
                if made.fetch_add(1, SeqCst) > 0 {
                    retries_run.fetch_add(1, SeqCst);
                }
                made_total.fetch_add(1, SeqCst);
                let kind = kinds % 3;
                kinds /= 3;
                async move {
                    match kind {
                        0 => Ok::<_, &str>(()),
                        1 => {
                            tokio::task::yield_now().await;
                            Err("down")
                        }
                        _ => std::future::pending().await,
                    }
                }
            });
            let _ = tokio::time::timeout(cut, call).await;
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let m = bulkhead.metrics();
    assert_eq!((m.in_use, m.queued), (0, 0));
    let b = breaker.metrics();
    assert_eq!(b.calls(), u64::from(made_total.load(SeqCst)), "{b:?}");
    let retries = u64::from(retries_run.load(SeqCst));
    assert_eq!(
        budget.remaining_at(breaker.clock().now()),
        100_000 - retries
    );
    // Both trial slots free.
    assert_two_trials_are_free(&breaker).await;
}

/// Trips `breaker` (a failure rate over 10 calls), lets it go half-open
/// and holds two trials at once: a third call is refused, and once the
/// two are dropped, two successes close it.
async fn assert_two_trials_are_free(breaker: &fusebox_std::policy::Breaker) {
    breaker.core().force_open(breaker.clock().now());
    breaker.core().force_close(breaker.clock().now());
    for _ in 0..10 {
        let _ = breaker.call(async { Err::<(), _>("trip") }).await;
    }
    assert_eq!(breaker.state(), State::Open);
    tokio::time::sleep(10 * MS).await;
    let trials = [
        breaker.call(std::future::pending::<Result<(), ()>>()),
        breaker.call(std::future::pending::<Result<(), ()>>()),
    ];
    let mut trials = trials.map(Box::pin);
    for trial in &mut trials {
        assert!(poll_once(trial.as_mut()).is_pending());
    }
    let third = breaker.call(async { Ok::<(), ()>(()) }).await;
    assert!(
        matches!(third, Err(CallError::Open { retry_after: None })),
        "{third:?}"
    );
    drop(trials);
    breaker.call(async { Ok::<(), ()>(()) }).await.unwrap();
    breaker.call(async { Ok::<(), ()>(()) }).await.unwrap();
    assert_eq!(breaker.state(), State::Closed);
}
