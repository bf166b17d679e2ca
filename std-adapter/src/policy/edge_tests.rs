//! Hostile-review checks of documented edges that held (sound, kept as
//! tests): futures dropped at the moments no other test drops them, waits
//! at rates past one a microsecond, timeouts of years, deadlines already
//! past. Every check is a count, a state or a paused-time instant.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use fusebox::breaker::{CircuitBreaker, Config, State};
use fusebox::bucket::{FullPolicy, Quota, TokenBucket};
use fusebox::Clock;

use super::*;

fn poll_once<F: Future + ?Sized>(f: Pin<&mut F>) -> Poll<F::Output> {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    f.poll(&mut cx)
}

/// Opens on one failure, for 50 ms, then one half-open trial.
fn breaker() -> Breaker {
    let config = Config::builder()
        .consecutive_failures(1)
        .open_for(fusebox::Duration::from_millis(50))
        .half_open_permits(1)
        .build()
        .unwrap();
    Breaker::new("edge", Arc::new(CircuitBreaker::new(config)))
}

/// A half-open trial whose policy timeout has passed, dropped before any
/// poll saw the timer fire: the permit is abandoned (`BreakerCall`'s
/// `# Cancellation`), not recorded as the timed-out failure it would have
/// been one poll later, so the breaker stays half-open and the next call
/// is the trial that closes it.
#[tokio::test(start_paused = true)]
async fn a_trial_dropped_after_its_timeout_passed_unpolled_is_abandoned() {
    let breaker = breaker();
    let _ = breaker.call(async { Err::<(), _>("down") }).await;
    tokio::time::advance(Duration::from_millis(60)).await;
    let policy = Policy::builder()
        .breaker(breaker.clone())
        .timeout(Duration::from_millis(10))
        .build();
    {
        let mut call = Box::pin(policy.call(std::future::pending::<Result<(), ()>>));
        assert!(poll_once(call.as_mut()).is_pending());
        tokio::time::advance(Duration::from_millis(20)).await;
    }
    let m = breaker.metrics();
    assert_eq!((m.failures, m.abandoned), (1, 1));
    assert_eq!(breaker.state(), State::HalfOpen);
    assert!(breaker.call(async { Ok::<_, ()>(()) }).await.is_ok());
    assert_eq!(breaker.state(), State::Closed);
}

/// The retry after a failure that opened the breaker is refused by it:
/// it never ran, so the budget gets it back (`Policy`'s `# Cancellation`:
/// "refused by the rate limit or the breaker ... given back").
#[tokio::test(start_paused = true)]
async fn a_retry_the_breaker_refuses_is_given_back_to_the_budget() {
    let breaker = breaker();
    let budget = Arc::new(RetryBudget::new(Duration::from_secs(10), 0, 3).unwrap());
    let backoff =
        ExponentialBackoffMaker::new(Duration::from_millis(1), 1.0, Duration::from_millis(1))
            .unwrap()
            .with_jitter(Jitter::None);
    let retry = Retry::builder()
        .max_attempts(5)
        .backoff(backoff)
        .budget(Arc::clone(&budget))
        .build();
    let policy = Policy::builder()
        .retry(retry)
        .breaker(breaker.clone())
        .build();
    let made = AtomicUsize::new(0);
    let result = policy
        .call(|| {
            made.fetch_add(1, Ordering::Relaxed);
            async { Err::<(), _>("down") }
        })
        .await;
    assert!(matches!(result, Err(CallError::Open { .. })));
    assert_eq!(made.load(Ordering::Relaxed), 1);
    assert_eq!(budget.remaining_at(breaker.clock().now()), 3);
}

/// A queued caller the slot was handed to, dropped before it polled
/// again: the slot goes to the next in line (FIFO), and nothing stays
/// counted once that one leaves.
#[tokio::test(start_paused = true)]
async fn a_slot_handed_to_a_dropped_waiter_goes_to_the_next() {
    let queue = Overflow::Queue {
        max_queued: 2,
        max_wait: Duration::from_secs(1),
    };
    let bulkhead = Bulkhead::new(1, queue).unwrap();
    let held = bulkhead.try_acquire().unwrap();
    let mut first = Box::pin(bulkhead.acquire());
    let mut second = Box::pin(bulkhead.acquire());
    assert!(poll_once(first.as_mut()).is_pending());
    assert!(poll_once(second.as_mut()).is_pending());
    assert_eq!(bulkhead.metrics().queued, 2);
    drop(held); // handed to `first`, which never sees it
    assert_eq!(
        (bulkhead.metrics().in_use, bulkhead.metrics().queued),
        (1, 1)
    );
    drop(first);
    // Handed on to `second`, which holds it (no longer waits) before it
    // polls again.
    assert_eq!(
        (bulkhead.metrics().in_use, bulkhead.metrics().queued),
        (1, 0)
    );
    let Poll::Ready(Ok(slot)) = poll_once(second.as_mut()) else {
        panic!("the slot did not pass on");
    };
    assert_eq!(bulkhead.metrics().in_use, 1);
    drop((slot, second));
    let m = bulkhead.metrics();
    assert_eq!((m.in_use, m.queued, m.rejected), (0, 0, 0));
}

/// A deadline already past: a free gate with a token admits (the docs of
/// `enter`), an empty bucket refuses at once with the bucket's wait.
#[tokio::test(start_paused = true)]
async fn a_deadline_already_past_admits_a_ready_token_only() {
    let limiter = Limiter::new(Arc::new(TokenBucket::new(Quota::per_second(1).unwrap())));
    let past = tokio::time::Instant::now();
    tokio::time::advance(Duration::from_millis(5)).await;
    assert_eq!(limiter.until_n_ready_by(1, Some(past)).await, Ok(()));
    let start = tokio::time::Instant::now();
    assert_eq!(
        limiter.until_n_ready_by(1, Some(past)).await,
        Err(LimitError::DeadlineExceeded {
            retry_after: Duration::from_secs(1)
        })
    );
    assert_eq!(tokio::time::Instant::now(), start);
}

/// Rates past one token a microsecond (the core's scaled units), burst 1:
/// a waiter never spins on a zero wait (paused time would then never
/// move, and this test never end), and each wait ends on tokio's next
/// 1 ms tick, as the docs say (rounded up, never down): 50 waits, 49 ms,
/// on both limiters.
#[tokio::test(start_paused = true)]
async fn waits_at_rates_past_a_token_a_microsecond_end_on_the_next_tick() {
    for rate in [999_999u32, 1_000_000, 3_000_000, u32::MAX] {
        let quota = Quota::per_second(rate).unwrap().with_burst(1).unwrap();
        let limiter = Limiter::new(Arc::new(TokenBucket::new(quota)));
        let start = tokio::time::Instant::now();
        for _ in 0..50 {
            limiter.until_ready().await.unwrap();
        }
        assert_eq!(start.elapsed(), Duration::from_millis(49), "{rate}");
        let core: fusebox::KeyedLimiter<u8, 4> =
            fusebox::KeyedLimiter::new(quota, FullPolicy::Reject).unwrap();
        let keyed = KeyedLimiter::new(Arc::new(core));
        let start = tokio::time::Instant::now();
        for _ in 0..50 {
            keyed.until_ready(&1).await.unwrap();
        }
        assert_eq!(start.elapsed(), Duration::from_millis(49), "keyed, {rate}");
    }
}

/// Timeouts of ten years (past the ~2.2 years of tokio's timer wheel,
/// under the 30 years `FAR` clamps to), with and without a breaker:
/// pending through nine years, fired by the tenth.
#[tokio::test(start_paused = true)]
async fn timeouts_of_years_fire_neither_early_nor_never() {
    let year = Duration::from_secs(365 * 86_400);
    let plain = Policy::builder().timeout(year * 10).build();
    let guarded = Policy::builder()
        .breaker(breaker())
        .timeout(year * 10)
        .build();
    let mut a = Box::pin(plain.call(std::future::pending::<Result<(), ()>>));
    let mut b = Box::pin(guarded.call(std::future::pending::<Result<(), ()>>));
    assert!(poll_once(a.as_mut()).is_pending());
    assert!(poll_once(b.as_mut()).is_pending());
    for years in 1..10 {
        tokio::time::advance(year).await;
        assert!(poll_once(a.as_mut()).is_pending(), "{years} years");
        assert!(poll_once(b.as_mut()).is_pending(), "{years} years, breaker");
    }
    tokio::time::advance(year).await;
    assert!(matches!(
        poll_once(a.as_mut()),
        Poll::Ready(Err(CallError::Timeout))
    ));
    assert!(matches!(
        poll_once(b.as_mut()),
        Poll::Ready(Err(CallError::Timeout))
    ));
}
