//! A limit changed while callers wait (`TokenBucket::set_quota`, `reset`,
//! `fusebox::KeyedLimiter::set_quota`): the waiters read the bucket again
//! within a second, instead of sleeping out a wait the old limit named.

use std::sync::Arc;
use std::time::Duration;

use crate::common::ms_since;
use fusebox::bucket::{FullPolicy, Quota, TokenBucket};
use fusebox::Clock;
use fusebox_std::policy::{KeyedLimiter, Limiter};
use tokio::time::{sleep, Instant};

/// How the test changes the limit while two waiters wait.
#[derive(Clone, Copy, Debug)]
enum Change {
    /// 1 000 a second instead of 1 a minute.
    Raise,
    /// A full bucket again (its burst: one token), still 1 a minute.
    Reset,
}

/// One a minute, emptied; two waiters queued (the first at the gate,
/// asleep for the next token, 60 s away); the limit changed at 1.5 s.
/// Returns when each waiter was admitted (ms).
async fn waiters_across_a_change(change: Change, keyed: bool) -> Vec<u128> {
    let minute = Quota::per_minute(1).unwrap();
    let bucket = Arc::new(TokenBucket::new(minute));
    let plain = Arc::new(Limiter::new(Arc::clone(&bucket)));
    let core: Arc<fusebox::KeyedLimiter<u8, 8>> =
        Arc::new(fusebox::KeyedLimiter::new(minute, FullPolicy::Reject).unwrap());
    let by_key = Arc::new(KeyedLimiter::new(Arc::clone(&core)));
    let take = {
        let (plain, by_key) = (Arc::clone(&plain), Arc::clone(&by_key));
        move || {
            let (plain, by_key) = (Arc::clone(&plain), Arc::clone(&by_key));
            async move {
                if keyed {
                    by_key.until_ready(&1).await.unwrap();
                } else {
                    plain.until_ready().await.unwrap();
                }
            }
        }
    };
    take().await; // empty now
    let start = Instant::now();
    let waiters: Vec<_> = (0..2)
        .map(|_| {
            let take = take.clone();
            tokio::spawn(async move {
                take().await;
                ms_since(start)
            })
        })
        .collect();
    sleep(Duration::from_millis(1_500)).await;
    let now = plain.clock().now();
    assert_eq!(now, by_key.clock().now(), "one clock");
    match (change, keyed) {
        (Change::Raise, false) => drop(bucket.set_quota(Quota::per_second(1_000).unwrap(), now)),
        (Change::Raise, true) => drop(core.set_quota(0, Quota::per_second(1_000).unwrap(), now)),
        (Change::Reset, false) => bucket.reset(),
        (Change::Reset, true) => return vec![], // no keyed reset
    }
    let mut admitted = Vec::new();
    for waiter in waiters {
        admitted.push(waiter.await.unwrap());
    }
    admitted
}

/// Found by a hostile review: a waiter asleep for the token a limit of
/// one a minute named kept sleeping the whole minute after the limit was
/// raised to 1 000 a second (or the bucket reset), holding the gate, so
/// every waiter behind it waited too, while the core admitted 58 500
/// direct callers in that time: both waiters were admitted at 60 000 ms.
/// A waiter now sleeps at most a second before asking the bucket again.
#[tokio::test(start_paused = true)]
async fn waiters_read_a_changed_limit_within_a_second() {
    for keyed in [false, true] {
        // The next reading after the raise (at 1.5 s) is at 2 s; there
        // are 500 tokens by then.
        let raised = waiters_across_a_change(Change::Raise, keyed).await;
        assert_eq!(raised, [2_000, 2_000], "raised, keyed: {keyed}");
    }
    // A reset bucket holds its burst (one token): the first waiter takes
    // it at the next reading, the second one a minute later.
    let reset = waiters_across_a_change(Change::Reset, false).await;
    assert_eq!(reset, [2_000, 62_000]);
}

/// With the limit unchanged, reading the bucket every second changes no
/// admission instant: a wait of 59.999 s still ends at 59.999 s, exactly.
#[tokio::test(start_paused = true)]
async fn an_unchanged_limit_admits_at_the_same_instants() {
    let limiter = Limiter::new(Arc::new(TokenBucket::new(Quota::per_minute(1).unwrap())));
    limiter.until_ready().await.unwrap();
    sleep(Duration::from_millis(1)).await;
    let start = Instant::now();
    limiter.until_ready().await.unwrap();
    assert_eq!(ms_since(start), 59_999);
}
