//! Hostile-review checks of token waits (the [`Limiter`] and the
//! [`KeyedLimiter`]): keys charged to the core's overflow bucket, requests
//! no bucket can ever grant. Every check is a count, a state or a
//! paused-time instant.

use std::sync::Arc;
use std::time::Duration;

use fusebox::bucket::{FullPolicy, Quota};
use fusebox::Clock;

use super::*;

/// A table of one slot, held by key 1 for an hour (one token an hour),
/// whose overflow bucket (one token a minute) key 2 has just drained: any
/// other key is charged to the overflow bucket and waits a minute.
async fn full_table() -> (
    Arc<fusebox::KeyedLimiter<u32, 1>>,
    Arc<KeyedLimiter<u32, 1>>,
) {
    let core = Arc::new(
        fusebox::KeyedLimiter::new(
            Quota::per_hour(1).unwrap(),
            FullPolicy::Overflow(Quota::per_minute(1).unwrap()),
        )
        .unwrap(),
    );
    let limiter = Arc::new(KeyedLimiter::new(Arc::clone(&core)));
    limiter.until_ready(&1).await.unwrap();
    limiter.until_ready(&2).await.unwrap(); // the overflow bucket's token
    assert_eq!(core.metrics().limited, 0);
    (core, limiter)
}

/// A key charged to the overflow bucket (the table full) waits for it as
/// a key waits for its own bucket: the core's `limited` counts the wait
/// as one refusal, however long it lasts (`KeyedLimiter`'s docs), and a
/// changed overflow quota still applies within a second. Found by a
/// hostile review: the key is not in the table, so `available` reads its
/// own full bucket and the waiter asked the core every second, counting
/// a one-minute wait as 60 refused requests (the Prometheus
/// `fusebox_keyed_limiter_limited_total`, and every dashboard on it).
#[tokio::test(start_paused = true)]
async fn a_wait_on_the_overflow_bucket_counts_one_refusal() {
    let (core, limiter) = full_table().await;
    let start = tokio::time::Instant::now();
    limiter.until_ready(&3).await.unwrap();
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(60),
        "the overflow's wait"
    );
    let m = core.metrics();
    assert_eq!((m.allowed, m.limited), (3, 1), "{m:?}");

    // A faster overflow quota set while a key waits applies within a
    // second, as a changed limit does for a key's own bucket.
    let (core, limiter) = full_table().await;
    let start = tokio::time::Instant::now();
    let waiter = tokio::spawn({
        let limiter = Arc::clone(&limiter);
        async move { limiter.until_ready(&3).await }
    });
    tokio::time::sleep(Duration::from_millis(5_500)).await;
    assert!(!waiter.is_finished());
    let now = limiter.clock().now();
    core.set_overflow_quota(Quota::per_second(10).unwrap(), now);
    waiter.await.unwrap().unwrap();
    assert!(
        start.elapsed() <= Duration::from_millis(6_500),
        "within a second"
    );
    assert!(core.metrics().limited <= 2, "{:?}", core.metrics());
}

/// Waits for `waiter` (spawned), lowers the burst below its request with
/// `lower` 2 s in, and returns what it got and when, after the change.
async fn refused_after(
    waiter: tokio::task::JoinHandle<Result<(), LimitError>>,
    lower: impl FnOnce(),
) -> (Result<(), LimitError>, Duration) {
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!waiter.is_finished(), "still waiting before the change");
    lower();
    let changed = tokio::time::Instant::now();
    let got = waiter.await.unwrap();
    (got, changed.elapsed())
}

/// Sound, kept as a test (hostile review): a waiter whose request the
/// limit can no longer grant (its burst lowered below the request while
/// it waits, for a bucket, a key's tier, or the overflow bucket a key is
/// charged to) is refused within a second of the change
/// (`InsufficientCapacity`, naming the new burst), never left waiting for
/// tokens that can never be there.
#[tokio::test(start_paused = true)]
async fn a_request_past_a_lowered_burst_is_refused_not_left_waiting() {
    let refused = |burst| {
        Err(LimitError::InsufficientCapacity {
            requested: 3,
            burst,
        })
    };
    // A core bucket.
    let bucket = Arc::new(fusebox::TokenBucket::new(Quota::per_minute(5).unwrap()));
    let limiter = Arc::new(Limiter::new(Arc::clone(&bucket)));
    limiter.until_n_ready(5).await.unwrap();
    let l = Arc::clone(&limiter);
    let waiter = tokio::spawn(async move { l.until_n_ready(3).await });
    let (got, after) = refused_after(waiter, || {
        bucket.set_quota(Quota::per_minute(2).unwrap(), limiter.clock().now());
    })
    .await;
    assert_eq!(got, refused(2));
    assert!(after <= Duration::from_secs(1), "{after:?}");

    // A key's own bucket.
    let core: Arc<fusebox::KeyedLimiter<u32, 4>> = Arc::new(
        fusebox::KeyedLimiter::new(Quota::per_minute(5).unwrap(), FullPolicy::Reject).unwrap(),
    );
    let keyed = Arc::new(KeyedLimiter::new(Arc::clone(&core)));
    keyed.until_n_ready(&1, 5).await.unwrap();
    let k = Arc::clone(&keyed);
    let waiter = tokio::spawn(async move { k.until_n_ready(&1, 3).await });
    let (got, after) = refused_after(waiter, || {
        let now = keyed.clock().now();
        core.set_quota(0, Quota::per_minute(2).unwrap(), now)
            .unwrap();
    })
    .await;
    assert_eq!(got, refused(2));
    assert!(after <= Duration::from_secs(1), "{after:?}");
    assert_eq!(keyed.waiting_keys(), 0);

    // The overflow bucket a key without a slot is charged to.
    let core: Arc<fusebox::KeyedLimiter<u32, 1>> = Arc::new(
        fusebox::KeyedLimiter::new(
            Quota::per_hour(5).unwrap(),
            FullPolicy::Overflow(Quota::per_minute(3).unwrap()),
        )
        .unwrap(),
    );
    let keyed = Arc::new(KeyedLimiter::new(Arc::clone(&core)));
    keyed.until_ready(&1).await.unwrap();
    keyed.until_n_ready(&2, 3).await.unwrap();
    let k = Arc::clone(&keyed);
    let waiter = tokio::spawn(async move { k.until_n_ready(&3, 3).await });
    let (got, after) = refused_after(waiter, || {
        core.set_overflow_quota(Quota::per_minute(2).unwrap(), keyed.clock().now());
    })
    .await;
    assert_eq!(got, refused(2));
    assert!(after <= Duration::from_secs(1), "{after:?}");
    assert_eq!(keyed.waiting_keys(), 0);
}
