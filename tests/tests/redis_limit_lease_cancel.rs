//! Leasing with its futures dropped mid-call: a refill cancelled while
//! its round trip is in flight (a stalled Redis) leaves no refill marked
//! as running, wakes the requests waiting on it, and admits nothing it
//! did not take from Redis (a verification: it passes on the code as it
//! is).

use std::sync::Arc;
use std::time::Duration;

use crate::common::redis_server::RedisServer;
use fusebox::bucket::Quota;
use fusebox_std::backend::{LeasedLimiter, RedisBackend, RedisConfig, RedisLimiter, Rules};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_limit_a_refill_cancelled_mid_flight_leaks_neither_the_refill_nor_tokens() {
    let server = RedisServer::start();
    let backend =
        RedisBackend::connect(RedisConfig::new(server.url()).timeout(Duration::from_secs(3)))
            .await
            .unwrap();
    // 20 per minute: nothing refills within the test.
    let rules = Rules::single("per_minute", Quota::per_minute(20).unwrap()).unwrap();
    let limiter = RedisLimiter::builder("lease_cancel", rules, backend)
        .build()
        .unwrap();
    let leased = Arc::new(LeasedLimiter::new(limiter, "k", 5, Duration::from_secs(60)).unwrap());
    // Redis stalls: the first request's refill hangs, a second waits on it.
    server.signal("STOP");
    let first = tokio::time::timeout(Duration::from_millis(100), leased.try_acquire()).await;
    assert!(first.is_err(), "the refill hung and was dropped");
    let waiter = {
        let leased = Arc::clone(&leased);
        tokio::spawn(async move { leased.try_acquire().await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    server.signal("CONT");
    // The waiter refills by itself (no refill left marked as running).
    let d = tokio::time::timeout(Duration::from_secs(2), waiter)
        .await
        .expect("the waiter is not stuck behind a dropped refill")
        .unwrap()
        .unwrap();
    assert!(d.allowed, "{d:?}");
    // Whether or not the dropped refill's command ran on the server once
    // it resumed (its tokens then taken, never admitted), nothing is
    // admitted beyond the quota: 20 in all, the waiter's included.
    let mut admitted = 1;
    for _ in 0..40 {
        if leased.try_acquire().await.unwrap().allowed {
            admitted += 1;
        }
    }
    assert!((15..=20).contains(&admitted), "{admitted} admitted of 20");
}
