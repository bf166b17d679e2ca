//! Tests of the bulkhead's bounds and settings.

use super::*;

#[tokio::test(start_paused = true)]
async fn queue_bound_is_exact() {
    let bulkhead = Bulkhead::new(
        1,
        Overflow::Queue {
            max_queued: 2,
            max_wait: Duration::from_secs(1),
        },
    )
    .unwrap();
    let held = bulkhead.acquire().await.unwrap();
    let a = tokio::spawn({
        let b = bulkhead.clone();
        async move { b.acquire().await.map(drop) }
    });
    let c = tokio::spawn({
        let b = bulkhead.clone();
        async move { b.acquire().await.map(drop) }
    });
    tokio::task::yield_now().await;
    assert_eq!(bulkhead.metrics().queued, 2);
    assert_eq!(
        bulkhead.acquire().await.unwrap_err(),
        BulkheadRejection::QueueFull
    );
    drop(held);
    a.await.unwrap().unwrap();
    c.await.unwrap().unwrap();
    let m = bulkhead.metrics();
    assert_eq!((m.in_use, m.queued, m.rejected), (0, 0, 1));
}

#[test]
fn too_many_slots_are_clamped_not_a_panic() {
    let bulkhead = Bulkhead::new(usize::MAX, Overflow::Reject).unwrap();
    assert_eq!(bulkhead.max_concurrent(), Semaphore::MAX_PERMITS);
    assert_eq!(bulkhead.metrics().in_use, 0);
}

/// Found by a hostile review: `Bulkhead::new(0, _)` was accepted and
/// refused every call, and a queue of no places or no wait refused
/// every queued call, each without a word at construction.
#[test]
fn settings_that_refuse_everything_are_rejected_at_construction() {
    let queue = |max_queued, max_wait| Overflow::Queue {
        max_queued,
        max_wait,
    };
    let second = Duration::from_secs(1);
    assert_eq!(
        Bulkhead::new(0, Overflow::Reject).unwrap_err(),
        BulkheadError::NoSlots
    );
    assert_eq!(
        Bulkhead::new(0, queue(4, second)).unwrap_err(),
        BulkheadError::NoSlots
    );
    assert_eq!(
        Bulkhead::new(1, queue(0, second)).unwrap_err(),
        BulkheadError::NoQueuePlaces
    );
    assert_eq!(
        Bulkhead::new(1, queue(4, Duration::ZERO)).unwrap_err(),
        BulkheadError::NoQueueWait
    );
    let smallest = Bulkhead::new(1, queue(1, Duration::from_nanos(1))).unwrap();
    assert_eq!(smallest.max_concurrent(), 1);
}

/// A `max_wait` under tokio's 1 ms tick gives up on that tick, as its
/// docs say (they claimed "at most `max_wait`"; found by a hostile review).
#[tokio::test(start_paused = true)]
async fn a_sub_millisecond_max_wait_ends_on_the_first_tick() {
    let bulkhead = Bulkhead::new(
        1,
        Overflow::Queue {
            max_queued: 1,
            max_wait: Duration::from_micros(100),
        },
    )
    .unwrap();
    let _held = bulkhead.acquire().await.unwrap();
    let start = tokio::time::Instant::now();
    assert_eq!(
        bulkhead.acquire().await.unwrap_err(),
        BulkheadRejection::QueueTimeout
    );
    assert_eq!(start.elapsed(), Duration::from_millis(1));
}

/// Sound, kept as a test (hostile review): a queue wait of
/// `Duration::MAX` neither panics nor gives up, even 40 years on; the
/// queued call gets the slot when it is returned.
#[tokio::test(start_paused = true)]
async fn an_endless_queue_wait_never_gives_up_nor_panics() {
    let bulkhead = Bulkhead::new(
        1,
        Overflow::Queue {
            max_queued: 1,
            max_wait: Duration::MAX,
        },
    )
    .unwrap();
    let held = bulkhead.acquire().await.unwrap();
    let queued = tokio::spawn({
        let b = bulkhead.clone();
        async move { b.acquire().await.map(drop) }
    });
    tokio::time::advance(Duration::from_secs(86_400 * 365 * 40)).await;
    tokio::task::yield_now().await;
    assert_eq!(bulkhead.metrics().queued, 1);
    drop(held);
    queued.await.unwrap().unwrap();
    assert_eq!(
        bulkhead.metrics(),
        BulkheadMetrics {
            in_use: 0,
            queued: 0,
            rejected: 0
        }
    );
}
