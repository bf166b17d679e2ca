//! `Policy`: the composition order and what it promises, on paused time:
//! an open breaker stops retries at once, timeouts are failures that are
//! retried, a rate-limit wait past the deadline stops at once, the bulkhead
//! slot is held across attempts, and a call cancelled at any await point
//! gives back everything it held.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::{core_breaker, ms_since, poll_once};
use fusebox::breaker::State;
use fusebox::bucket::{Quota, TokenBucket};
use fusebox::Clock;
use fusebox_std::policy::{
    Breaker, Bulkhead, BulkheadRejection, ExponentialBackoffMaker, Jitter, LimitError, Limiter,
    Overflow, Policy, Retry,
};
use fusebox_std::CallError;
use tokio::time::{sleep, Instant};

fn constant_backoff(ms: u64) -> ExponentialBackoffMaker {
    let d = Duration::from_millis(ms);
    ExponentialBackoffMaker::new(d, 1.0, d)
        .unwrap()
        .with_jitter(Jitter::None)
}

fn retry(attempts: u32, backoff_ms: u64) -> Retry {
    Retry::builder()
        .max_attempts(attempts)
        .backoff(constant_backoff(backoff_ms))
        .build()
}

fn limiter(per_second: u32) -> Arc<Limiter> {
    Arc::new(Limiter::new(Arc::new(TokenBucket::new(
        Quota::per_second(per_second).unwrap(),
    ))))
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_stops_the_retries_at_once() {
    let breaker = Breaker::new("dep", core_breaker(2, Duration::from_secs(30)));
    let policy = Policy::builder()
        .retry(retry(5, 100))
        .breaker(breaker.clone())
        .build();
    let calls = AtomicU32::new(0);
    let start = Instant::now();
    let result = policy
        .call(|| {
            calls.fetch_add(1, Ordering::Relaxed);
            async { Err::<(), _>("down") }
        })
        .await;
    // Attempt 1 at 0, attempt 2 at 100 ms opens the breaker, attempt 3 at
    // 200 ms is refused by it: no fourth, no sleep after the refusal.
    assert!(matches!(result, Err(CallError::Open { .. })));
    assert_eq!(calls.load(Ordering::Relaxed), 2);
    assert_eq!(ms_since(start), 200);
    assert_eq!(breaker.metrics().rejected, 1);
}

#[tokio::test(start_paused = true)]
async fn timeouts_are_failures_and_are_retried() {
    let breaker = Breaker::new("slow", core_breaker(10, Duration::from_secs(30)));
    let policy = Policy::builder()
        .retry(retry(3, 50))
        .breaker(breaker.clone())
        .timeout(Duration::from_millis(100))
        .build();
    let start = Instant::now();
    let result = policy
        .call(|| async {
            sleep(Duration::from_secs(60)).await;
            Ok::<(), ()>(())
        })
        .await;
    assert!(matches!(result, Err(CallError::Timeout)));
    // 100 (timeout) + 50 + 100 + 50 + 100.
    assert_eq!(ms_since(start), 400);
    assert_eq!(breaker.metrics().failures, 3);
}

#[tokio::test(start_paused = true)]
async fn timeout_without_a_breaker() {
    let policy = Policy::builder().timeout(Duration::from_millis(20)).build();
    let start = Instant::now();
    let r = policy
        .call(|| async {
            sleep(Duration::from_secs(1)).await;
            Ok::<(), ()>(())
        })
        .await;
    assert!(matches!(r, Err(CallError::Timeout)));
    assert_eq!(ms_since(start), 20);
}

#[tokio::test(start_paused = true)]
async fn the_callee_errors_go_through_the_retry_predicate() {
    let policy = Policy::builder()
        .retry(
            Retry::builder()
                .max_attempts(4)
                .backoff(constant_backoff(10))
                .retry_if(|status: &u16| *status >= 500)
                .build(),
        )
        .build();
    let calls = AtomicU32::new(0);
    let r = policy
        .call(|| {
            calls.fetch_add(1, Ordering::Relaxed);
            async { Err::<(), u16>(404) }
        })
        .await;
    assert!(matches!(r, Err(CallError::Inner(404))));
    assert_eq!(calls.load(Ordering::Relaxed), 1);
}

#[tokio::test(start_paused = true)]
async fn each_attempt_takes_a_token_and_a_wait_past_the_deadline_stops() {
    // One token per second; retries 10 ms apart within a 1.5 s deadline.
    let policy = Policy::builder()
        .retry(
            Retry::builder()
                .max_attempts(5)
                .backoff(constant_backoff(10))
                .deadline(Duration::from_millis(1_500))
                .build(),
        )
        .limiter(limiter(1))
        .build();
    let calls = Arc::new(std::sync::Mutex::new(Vec::new()));
    let start = Instant::now();
    let result = policy
        .call(|| {
            calls.lock().unwrap().push(ms_since(start));
            async { Err::<(), _>("down") }
        })
        .await;
    // Attempt 1 at 0 ms (the burst), attempt 2 waits for the token at
    // 1 000 ms; attempt 3, at 1 010 ms, would get one only at 2 000 ms,
    // after the deadline: it stops there without sleeping.
    assert_eq!(*calls.lock().unwrap(), [0, 1_000]);
    assert_eq!(ms_since(start), 1_010);
    assert!(matches!(
        result,
        Err(CallError::RateLimited(LimitError::DeadlineExceeded { retry_after }))
            if retry_after == Duration::from_millis(990)
    ));
}

#[tokio::test(start_paused = true)]
async fn the_bulkhead_slot_is_held_across_attempts_and_backoffs() {
    let bulkhead = Bulkhead::new(1, Overflow::Reject).unwrap();
    let policy = Arc::new(
        Policy::builder()
            .bulkhead(bulkhead.clone())
            .retry(retry(3, 1_000))
            .build(),
    );
    let running = {
        let policy = Arc::clone(&policy);
        tokio::spawn(async move { policy.call(|| async { Err::<(), _>("down") }).await })
    };
    sleep(Duration::from_millis(500)).await; // in the first backoff
    assert_eq!(bulkhead.metrics().in_use, 1);
    let refused = policy.call(|| async { Ok::<(), &str>(()) }).await;
    assert!(matches!(
        refused,
        Err(CallError::Bulkhead(BulkheadRejection::Full))
    ));
    assert!(running.await.unwrap().is_err());
    assert_eq!(bulkhead.metrics().in_use, 0);
}

/// Every layer, for the cancellation tests: a bulkhead of one slot with a
/// queue of one, retries 500 ms apart, one token per second, a breaker
/// opening on one failure for 1 s with one half-open trial.
struct Rig {
    bulkhead: Bulkhead,
    limiter: Arc<Limiter>,
    breaker: Breaker,
    policy: Arc<Policy>,
}

fn rig() -> Rig {
    let bulkhead = Bulkhead::new(
        1,
        Overflow::Queue {
            max_queued: 1,
            max_wait: Duration::from_secs(60),
        },
    )
    .unwrap();
    let limiter = limiter(1);
    let breaker = Breaker::new("rig", core_breaker(1, Duration::from_secs(1)));
    let policy = Arc::new(
        Policy::builder()
            .bulkhead(bulkhead.clone())
            .retry(retry(3, 500))
            .limiter(Arc::clone(&limiter))
            .breaker(breaker.clone())
            .build(),
    );
    Rig {
        bulkhead,
        limiter,
        breaker,
        policy,
    }
}

impl Rig {
    fn tokens(&self) -> u32 {
        self.limiter
            .bucket()
            .expect("a bucket in process")
            .available(self.limiter.clock().now())
    }
    fn assert_bulkhead_empty(&self) {
        let m = self.bulkhead.metrics();
        assert_eq!((m.in_use, m.queued), (0, 0));
    }
}

#[tokio::test(start_paused = true)]
async fn cancelled_while_queued_for_the_bulkhead() {
    let rig = rig();
    let mut first = Box::pin(rig.policy.call(std::future::pending::<Result<(), ()>>));
    assert!(poll_once(first.as_mut()).is_pending()); // holds the slot, in the call
    let mut second = Box::pin(rig.policy.call(|| async { Ok::<(), ()>(()) }));
    assert!(poll_once(second.as_mut()).is_pending());
    assert_eq!(rig.bulkhead.metrics().queued, 1);
    drop(second);
    assert_eq!(rig.bulkhead.metrics().queued, 0);
    assert_eq!(rig.tokens(), 0, "only the first call's token is gone");
    drop(first);
    rig.assert_bulkhead_empty();
    assert_eq!(rig.breaker.metrics().abandoned, 1);
}

#[tokio::test(start_paused = true)]
async fn cancelled_while_waiting_for_a_token() {
    let rig = rig();
    rig.limiter.until_ready().await.unwrap(); // empty until 1 s
    let mut call = Box::pin(rig.policy.call(|| async { Ok::<(), ()>(()) }));
    assert!(poll_once(call.as_mut()).is_pending());
    sleep(Duration::from_millis(600)).await;
    drop(call);
    rig.assert_bulkhead_empty();
    sleep(Duration::from_millis(400)).await;
    assert_eq!(rig.tokens(), 1, "the token at 1 s was not taken");
    assert_eq!(rig.breaker.metrics().calls(), 0, "no breaker permit asked");
}

#[tokio::test(start_paused = true)]
async fn cancelled_during_a_half_open_trial() {
    let rig = rig();
    let _ = rig.breaker.call(async { Err::<(), ()>(()) }).await; // opens
    let Err(CallError::Open {
        retry_after: Some(after),
    }) = rig.breaker.call(async { Ok::<(), ()>(()) }).await
    else {
        panic!("open");
    };
    sleep(after).await;
    let mut trial = Box::pin(rig.policy.call(std::future::pending::<Result<(), ()>>));
    assert!(poll_once(trial.as_mut()).is_pending());
    let busy = rig.breaker.call(async { Ok::<(), ()>(()) }).await;
    assert!(matches!(busy, Err(CallError::Open { retry_after: None })));
    drop(trial);
    rig.assert_bulkhead_empty();
    assert_eq!(rig.breaker.metrics().abandoned, 1);
    assert_eq!(rig.breaker.state(), State::HalfOpen, "no decision");
    rig.breaker.call(async { Ok::<(), ()>(()) }).await.unwrap();
    assert_eq!(rig.breaker.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn cancelled_during_a_retry_backoff() {
    let rig = rig();
    // A breaker that stays closed for this one: two failures are needed.
    let breaker = Breaker::new("backoff", core_breaker(2, Duration::from_secs(1)));
    let policy = Policy::builder()
        .bulkhead(rig.bulkhead.clone())
        .retry(retry(3, 500))
        .limiter(Arc::clone(&rig.limiter))
        .breaker(breaker.clone())
        .build();
    let mut call = Box::pin(policy.call(|| async { Err::<(), _>("down") }));
    assert!(poll_once(call.as_mut()).is_pending()); // failed once, now sleeping
    assert_eq!(breaker.metrics().failures, 1);
    sleep(Duration::from_millis(250)).await;
    drop(call);
    rig.assert_bulkhead_empty();
    let m = breaker.metrics();
    assert_eq!((m.failures, m.abandoned, m.calls()), (1, 0, 1));
    sleep(Duration::from_millis(750)).await;
    assert_eq!(
        rig.tokens(),
        1,
        "one token taken by the one attempt, refilled"
    );
}

#[tokio::test(start_paused = true)]
async fn a_caller_waiting_for_a_token_holds_no_breaker_permit() {
    let rig = rig();
    let _ = rig.breaker.call(async { Err::<(), ()>(()) }).await;
    let Err(CallError::Open {
        retry_after: Some(after),
    }) = rig.breaker.call(async { Ok::<(), ()>(()) }).await
    else {
        panic!("open");
    };
    sleep(after).await;
    rig.limiter.until_ready().await.unwrap(); // the policy call must wait
    let waiting = {
        let policy = Arc::clone(&rig.policy);
        tokio::spawn(async move { policy.call(|| async { Ok::<u8, ()>(1) }).await })
    };
    tokio::task::yield_now().await;
    // The only half-open trial is still free for someone else.
    rig.breaker.call(async { Ok::<(), ()>(()) }).await.unwrap();
    assert_eq!(rig.breaker.state(), State::Closed);
    assert_eq!(waiting.await.unwrap().unwrap(), 1);
}
