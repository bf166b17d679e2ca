//! Hostile-review checks of token waits (the [`Limiter`] and the
//! [`KeyedLimiter`]): keys charged to the core's overflow bucket, requests
//! no bucket can ever grant. Every check is a count, a state or a
//! paused-time instant.

use std::sync::Arc;
use std::time::Duration;

use fusebox::bucket::{FullPolicy, Quota};
use fusebox::Clock;

use super::*;

/// A table of one slot, held by key 1 (its tier: `per_key`), whose
/// overflow bucket (`overflow`, burst 1) key 2 has just drained: any other
/// key is charged to the overflow bucket until key 1's slot frees.
async fn full_table(
    per_key: Quota,
    overflow: Quota,
) -> (
    Arc<fusebox::KeyedLimiter<u32, 1>>,
    Arc<KeyedLimiter<u32, 1>>,
) {
    let core =
        Arc::new(fusebox::KeyedLimiter::new(per_key, FullPolicy::Overflow(overflow)).unwrap());
    let limiter = Arc::new(KeyedLimiter::new(Arc::clone(&core)));
    limiter.until_ready(&1).await.unwrap();
    limiter.until_ready(&2).await.unwrap(); // the overflow bucket's token
    assert_eq!(core.metrics().limited, 0);
    (core, limiter)
}

/// A key charged to the overflow bucket (the table full) takes a slot of
/// its own as soon as one frees, and a changed overflow quota applies to
/// it within a second (`KeyedLimiter`'s docs: such a key is asked again
/// every second). A regression check of this review: a change that
/// stopped asking such a key before the overflow's wake (to count its
/// wait as one refusal in `limited`, as the docs then promised for every
/// wait) left it waiting the overflow bucket's hour while key 1's slot
/// had been free since 1 s; the docs now name the exception instead.
#[tokio::test(start_paused = true)]
async fn an_overflow_charged_key_takes_a_slot_as_soon_as_one_frees() {
    // Key 1 (one a second) is idle again after 1 s; the overflow bucket
    // would admit key 3 after an hour.
    let (core, limiter) =
        full_table(Quota::per_second(1).unwrap(), Quota::per_hour(1).unwrap()).await;
    let start = tokio::time::Instant::now();
    limiter.until_ready(&3).await.unwrap();
    assert!(
        start.elapsed() <= Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    let m = core.metrics();
    assert_eq!((m.allowed, m.evictions, m.keys), (3, 1, 1), "{m:?}");

    // Key 1 holds its slot for an hour; the overflow bucket (one a
    // minute) is made ten a second 5.5 s in: applied within a second.
    let (core, limiter) =
        full_table(Quota::per_hour(1).unwrap(), Quota::per_minute(1).unwrap()).await;
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
        "within a second: {:?}",
        start.elapsed()
    );
    assert_eq!(core.metrics().allowed, 3);
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
