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
