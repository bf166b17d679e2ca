//! `Bulkhead`: saturation, the queue's bound and its maximum wait (exact
//! instants), FIFO service, cancellation returning slots and queue places,
//! metrics.

use std::sync::Arc;
use std::time::Duration;

use crate::common::ms_since;
use fusebox_std::policy::{Bulkhead, BulkheadMetrics, BulkheadRejection, Overflow};
use fusebox_std::CallError;
use tokio::sync::Notify;
use tokio::time::{sleep, Instant};

/// Spawns a call that holds its slot until `release` is notified.
fn hold(
    bulkhead: &Bulkhead,
    release: &Arc<Notify>,
) -> tokio::task::JoinHandle<Result<(), CallError<()>>> {
    let (bulkhead, release) = (bulkhead.clone(), Arc::clone(release));
    tokio::spawn(async move {
        bulkhead
            .call(async move {
                release.notified().await;
                Ok(())
            })
            .await
    })
}

#[tokio::test(start_paused = true)]
async fn saturated_bulkhead_rejects_at_once() {
    let bulkhead = Bulkhead::new(2, Overflow::Reject).unwrap();
    let release = Arc::new(Notify::new());
    let a = hold(&bulkhead, &release);
    let b = hold(&bulkhead, &release);
    tokio::task::yield_now().await;
    assert_eq!(
        bulkhead.metrics(),
        BulkheadMetrics {
            in_use: 2,
            queued: 0,
            rejected: 0
        }
    );
    let start = Instant::now();
    let refused = bulkhead.call(async { Ok::<(), ()>(()) }).await;
    assert!(matches!(
        refused,
        Err(CallError::Bulkhead(BulkheadRejection::Full))
    ));
    assert_eq!(Instant::now(), start);
    release.notify_waiters();
    a.await.unwrap().unwrap();
    b.await.unwrap().unwrap();
    assert_eq!(
        bulkhead.metrics(),
        BulkheadMetrics {
            in_use: 0,
            queued: 0,
            rejected: 1
        }
    );
}

#[tokio::test(start_paused = true)]
async fn queued_call_times_out_at_exactly_max_wait() {
    let bulkhead = Bulkhead::new(
        1,
        Overflow::Queue {
            max_queued: 4,
            max_wait: Duration::from_millis(250),
        },
    )
    .unwrap();
    let release = Arc::new(Notify::new());
    let holder = hold(&bulkhead, &release);
    tokio::task::yield_now().await;
    let start = Instant::now();
    let refused = bulkhead.call(async { Ok::<(), ()>(()) }).await;
    assert!(matches!(
        refused,
        Err(CallError::Bulkhead(BulkheadRejection::QueueTimeout))
    ));
    assert_eq!(Instant::now(), start + Duration::from_millis(250));
    assert_eq!(bulkhead.metrics().queued, 0, "the place was given back");
    release.notify_waiters();
    holder.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn queued_calls_are_served_in_order_when_slots_free() {
    let bulkhead = Bulkhead::new(
        1,
        Overflow::Queue {
            max_queued: 2,
            max_wait: Duration::from_secs(10),
        },
    )
    .unwrap();
    let start = Instant::now();
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let calls: Vec<_> = (0..3)
        .map(|id| {
            let (bulkhead, order) = (bulkhead.clone(), Arc::clone(&order));
            tokio::spawn(async move {
                bulkhead
                    .call(async {
                        sleep(Duration::from_millis(100)).await;
                        order.lock().unwrap().push((id, ms_since(start)));
                        Ok::<(), ()>(())
                    })
                    .await
            })
        })
        .collect();
    tokio::task::yield_now().await;
    assert_eq!(bulkhead.metrics().queued, 2);
    // A fourth finds the queue full.
    let full = bulkhead.call(async { Ok::<(), ()>(()) }).await;
    assert!(matches!(
        full,
        Err(CallError::Bulkhead(BulkheadRejection::QueueFull))
    ));
    for c in calls {
        c.await.unwrap().unwrap();
    }
    assert_eq!(*order.lock().unwrap(), [(0, 100), (1, 200), (2, 300)]);
}

#[tokio::test(start_paused = true)]
async fn cancellation_returns_slots_and_queue_places() {
    let bulkhead = Bulkhead::new(
        1,
        Overflow::Queue {
            max_queued: 1,
            max_wait: Duration::from_secs(10),
        },
    )
    .unwrap();
    let release = Arc::new(Notify::new());
    let running = hold(&bulkhead, &release);
    let queued = hold(&bulkhead, &release);
    tokio::task::yield_now().await;
    let m = bulkhead.metrics();
    assert_eq!((m.in_use, m.queued), (1, 1));

    queued.abort(); // cancelled while queueing
    assert!(queued.await.unwrap_err().is_cancelled());
    assert_eq!(bulkhead.metrics().queued, 0);

    running.abort(); // cancelled while running
    assert!(running.await.unwrap_err().is_cancelled());
    assert_eq!(bulkhead.metrics().in_use, 0);

    // Both the slot and the place are usable again, at once.
    let start = Instant::now();
    let again = hold(&bulkhead, &release);
    let behind = hold(&bulkhead, &release);
    tokio::task::yield_now().await;
    let m = bulkhead.metrics();
    assert_eq!((m.in_use, m.queued, m.rejected), (1, 1, 0));
    release.notify_waiters();
    again.await.unwrap().unwrap();
    tokio::task::yield_now().await;
    release.notify_waiters();
    behind.await.unwrap().unwrap();
    assert_eq!(Instant::now(), start);
}
