//! `Limiter` and `KeyedLimiter`: exact waits from the core's refusals,
//! FIFO order, cancel safety, typed errors, deadlines; on paused time.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::ms_since;
use fusebox::bucket::{FullPolicy, Quota, TokenBucket};
use fusebox::Clock;
use fusebox_std::policy::{KeyedLimiter, LimitError, Limiter};
use tokio::time::{sleep, Instant};

fn limiter(per_second: u32, burst: u32) -> Arc<Limiter> {
    let quota = Quota::per_second(per_second)
        .unwrap()
        .with_burst(burst)
        .unwrap();
    Arc::new(Limiter::new(Arc::new(TokenBucket::new(quota))))
}

/// Spawns a waiter for `n` tokens that logs `(id, ms since start)` when served.
fn waiter(
    limiter: &Arc<Limiter>,
    id: u32,
    n: u32,
    start: Instant,
    log: &Arc<Mutex<Vec<(u32, u128)>>>,
) -> tokio::task::JoinHandle<Result<(), LimitError>> {
    let (limiter, log) = (Arc::clone(limiter), Arc::clone(log));
    tokio::spawn(async move {
        limiter.until_n_ready(n).await?;
        log.lock().unwrap().push((id, ms_since(start)));
        Ok(())
    })
}

#[tokio::test(start_paused = true)]
async fn waits_exactly_the_refill_interval() {
    // 10 per second, burst 1: one token every 100 ms.
    let limiter = limiter(10, 1);
    let start = Instant::now();
    let mut served = Vec::new();
    for _ in 0..5 {
        limiter.until_ready().await.unwrap();
        served.push(ms_since(start));
    }
    assert_eq!(served, [0, 100, 200, 300, 400]);
}

#[tokio::test(start_paused = true)]
async fn waiters_are_served_first_come_first_served() {
    let limiter = limiter(1, 1);
    limiter.until_ready().await.unwrap(); // empty now
    let start = Instant::now();
    let log = Arc::new(Mutex::new(Vec::new()));
    let tasks: Vec<_> = (1..=4)
        .map(|id| waiter(&limiter, id, 1, start, &log))
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(
        *log.lock().unwrap(),
        [(1, 1_000), (2, 2_000), (3, 3_000), (4, 4_000)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_large_request_is_not_starved_by_small_ones() {
    // Burst 3 at 1/s. The request for 3 arrives first and is served when
    // 3 tokens are back (3 s); the single-token requests queue behind it.
    let limiter = limiter(1, 3);
    limiter.until_n_ready(3).await.unwrap();
    let start = Instant::now();
    let log = Arc::new(Mutex::new(Vec::new()));
    let big = waiter(&limiter, 0, 3, start, &log);
    let small: Vec<_> = (1..=2)
        .map(|id| waiter(&limiter, id, 1, start, &log))
        .collect();
    big.await.unwrap().unwrap();
    for t in small {
        t.await.unwrap().unwrap();
    }
    assert_eq!(*log.lock().unwrap(), [(0, 3_000), (1, 4_000), (2, 5_000)]);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_waiter_takes_no_token_and_blocks_nobody() {
    let limiter = limiter(1, 1);
    limiter.until_ready().await.unwrap();
    let start = Instant::now();
    let log = Arc::new(Mutex::new(Vec::new()));
    let first = waiter(&limiter, 1, 1, start, &log); // sleeping for tokens
    let second = waiter(&limiter, 2, 1, start, &log); // waiting for the gate
    let third = waiter(&limiter, 3, 1, start, &log);
    sleep(Duration::from_millis(500)).await;
    first.abort(); // cancelled while it sleeps, holding the gate
    second.abort(); // cancelled while it queues for the gate
    assert!(first.await.unwrap_err().is_cancelled());
    assert!(second.await.unwrap_err().is_cancelled());
    third.await.unwrap().unwrap();
    // The third is served when the first would have been: no token was
    // taken by the cancelled ones, and the gate was freed.
    assert_eq!(*log.lock().unwrap(), [(3, 1_000)]);
    assert_eq!(
        limiter
            .bucket()
            .expect("a bucket in process")
            .available(limiter.clock().now()),
        0
    );
    sleep(Duration::from_secs(1)).await;
    assert_eq!(
        limiter
            .bucket()
            .expect("a bucket in process")
            .available(limiter.clock().now()),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn more_than_the_burst_is_an_immediate_typed_error() {
    let limiter = limiter(1, 2);
    limiter.until_n_ready(2).await.unwrap();
    // Someone is queued and sleeping: the error still comes at once.
    let start = Instant::now();
    let log = Arc::new(Mutex::new(Vec::new()));
    let queued = waiter(&limiter, 1, 2, start, &log);
    tokio::task::yield_now().await;
    assert_eq!(
        limiter.until_n_ready(3).await,
        Err(LimitError::InsufficientCapacity {
            requested: 3,
            burst: 2
        })
    );
    assert_eq!(Instant::now(), start);
    queued.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_wait_past_the_deadline_fails_at_once() {
    let limiter = limiter(2, 1); // a token every 500 ms
    limiter.until_ready().await.unwrap();
    let start = Instant::now();
    let early = start + Duration::from_millis(499);
    assert_eq!(
        limiter.until_n_ready_by(1, Some(early)).await,
        Err(LimitError::DeadlineExceeded {
            retry_after: Duration::from_millis(500)
        })
    );
    assert_eq!(Instant::now(), start, "no sleep at all");
    // A deadline at the refill instant is not enough: tokio ends a sleep
    // on its 1 ms tick, at the instant or up to a tick after it, so a wait
    // ending within the last tick before the deadline is given up (it
    // could end past it). One tick later is enough.
    let exact = start + Duration::from_millis(500);
    assert!(matches!(
        limiter.until_n_ready_by(1, Some(exact)).await,
        Err(LimitError::DeadlineExceeded { .. })
    ));
    let tick_later = exact + Duration::from_millis(1);
    limiter.until_n_ready_by(1, Some(tick_later)).await.unwrap();
    assert_eq!(Instant::now(), exact);
}

fn keyed(per_second: u32) -> Arc<KeyedLimiter<u32, 64>> {
    let core =
        fusebox::KeyedLimiter::new(Quota::per_second(per_second).unwrap(), FullPolicy::Reject)
            .unwrap();
    Arc::new(KeyedLimiter::new(Arc::new(core)))
}

#[tokio::test(start_paused = true)]
async fn keyed_waits_per_key_and_never_across_keys() {
    let limiter = keyed(1);
    limiter.until_ready(&1).await.unwrap();
    let start = Instant::now();
    let waiting = {
        let limiter = Arc::clone(&limiter);
        tokio::spawn(async move {
            limiter.until_ready(&1).await.unwrap();
            limiter.until_ready(&1).await.unwrap();
            ms_since(start)
        })
    };
    tokio::task::yield_now().await;
    assert_eq!(limiter.waiting_keys(), 1);
    // Key 2 is served at once while key 1 waits.
    limiter.until_ready(&2).await.unwrap();
    assert_eq!(ms_since(start), 0);
    assert_eq!(waiting.await.unwrap(), 2_000);
    assert_eq!(limiter.waiting_keys(), 0, "empty queues are removed");
}

#[tokio::test(start_paused = true)]
async fn keyed_dropped_waiter_takes_no_token() {
    let limiter = keyed(1);
    limiter.until_ready(&7).await.unwrap();
    let start = Instant::now();
    let cancelled = {
        let limiter = Arc::clone(&limiter);
        tokio::spawn(async move { limiter.until_ready(&7).await })
    };
    sleep(Duration::from_millis(300)).await;
    cancelled.abort();
    assert!(cancelled.await.unwrap_err().is_cancelled());
    assert_eq!(limiter.waiting_keys(), 0);
    limiter.until_ready(&7).await.unwrap();
    assert_eq!(ms_since(start), 1_000);
}

#[tokio::test(start_paused = true)]
async fn keyed_typed_errors() {
    let limiter = keyed(2);
    assert_eq!(
        limiter.until_n_ready(&1, 3).await,
        Err(LimitError::InsufficientCapacity {
            requested: 3,
            burst: 2
        })
    );
    // A table with one slot's worth of probing, held by key 1 until its
    // bucket is full again (a minute): a new key waits for the slot, and
    // fails with `TableFull` when its deadline comes first.
    let core: fusebox::KeyedLimiter<u32, 1> =
        fusebox::KeyedLimiter::new(Quota::per_minute(1).unwrap(), FullPolicy::Reject).unwrap();
    let full = KeyedLimiter::new(Arc::new(core));
    full.until_ready(&1).await.unwrap();
    let start = Instant::now();
    let deadline = Some(start + Duration::from_secs(10));
    assert_eq!(
        full.until_n_ready_by(&2, 1, deadline).await,
        Err(LimitError::TableFull)
    );
    assert!(start.elapsed() <= Duration::from_secs(10));
    assert_eq!(full.waiting_keys(), 0);
    // Without one, it takes the slot once key 1's bucket is full (at
    // 60 s), within a burst span (a minute) of starting to wait: it asks
    // after one token's interval, here the whole span.
    let again = Instant::now();
    full.until_ready(&2).await.unwrap();
    assert!(start.elapsed() >= Duration::from_secs(60));
    assert!(again.elapsed() <= Duration::from_secs(60));
}

/// Zero tokens are granted at once: a wait for none took a turn behind
/// the waiters for tokens (here, a second behind), and the keyed one
/// inserted its key, as the core's `try_acquire_n(key, 0)` did.
#[tokio::test(start_paused = true)]
async fn waiting_for_zero_tokens_takes_no_turn() {
    let single = limiter(1, 1);
    single.until_ready().await.unwrap(); // empty now
    let log = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let queued = waiter(&single, 1, 1, start, &log);
    tokio::task::yield_now().await; // the waiter holds the turn
    single.until_n_ready(0).await.unwrap();
    assert_eq!(ms_since(start), 0, "no turn behind the waiter");
    queued.await.unwrap().unwrap();
    assert_eq!(*log.lock().unwrap(), [(1, 1_000)]);

    let core: fusebox::KeyedLimiter<u32, 1> =
        fusebox::KeyedLimiter::new(Quota::per_second(1).unwrap(), FullPolicy::Reject).unwrap();
    let keyed = Arc::new(KeyedLimiter::new(Arc::new(core)));
    keyed.until_ready(&1).await.unwrap(); // the table's one slot
    let start = Instant::now();
    let queued = {
        let keyed = Arc::clone(&keyed);
        tokio::spawn(async move { keyed.until_ready(&1).await })
    };
    tokio::task::yield_now().await;
    keyed.until_n_ready(&1, 0).await.unwrap();
    keyed.until_n_ready(&2, 0).await.unwrap(); // a full table: not inserted
    assert_eq!(ms_since(start), 0);
    queued.await.unwrap().unwrap();
}
