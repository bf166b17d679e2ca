//! Leased tokens over an instance's life: tokens leased by an instance
//! that is dropped (or restarted), or left to expire, are lost to the
//! fleet, never spent twice nor handed back to be spent again. On 20 an
//! hour (nothing refills within the test) the fleet admits exactly what
//! Redis handed out less what was lost. A verification: it passes on the
//! code as it is.

use std::time::Duration;

use crate::common::redis_server::RedisServer;
use fusebox::bucket::Quota;
use fusebox_std::backend::{LeasedLimiter, RedisBackend, RedisConfig, RedisLimiter, Rules};

async fn leased(server: &RedisServer, lease: u32, ttl: Duration) -> LeasedLimiter {
    let backend =
        RedisBackend::connect(RedisConfig::new(server.url()).timeout(Duration::from_secs(2)))
            .await
            .unwrap();
    let rules = Rules::single("per_hour", Quota::per_hour(20).unwrap()).unwrap();
    let limiter = RedisLimiter::builder("lifecycle", rules, backend)
        .build()
        .unwrap();
    LeasedLimiter::new(limiter, "k", lease, ttl).unwrap()
}

/// Admissions until the first refusal.
async fn drain(leased: &LeasedLimiter) -> u32 {
    let mut admitted = 0;
    while leased.try_acquire().await.unwrap().allowed {
        admitted += 1;
        assert!(admitted <= 20, "more than the hour's quota");
    }
    admitted
}

#[tokio::test]
async fn redis_limit_tokens_of_a_dropped_instance_are_lost_not_spent_twice() {
    let server = RedisServer::start();
    let first = leased(&server, 5, Duration::from_secs(60)).await;
    assert!(first.try_acquire().await.unwrap().allowed);
    assert_eq!(first.try_acquire_n(0).await.unwrap().remaining, 4);
    drop(first); // 4 leased tokens die with it
                 // Its replacement (a restart) and a second instance share the rest.
    let again = leased(&server, 5, Duration::from_secs(60)).await;
    let other = leased(&server, 5, Duration::from_secs(60)).await;
    let mut admitted = 1;
    assert!(again.try_acquire().await.unwrap().allowed);
    assert!(other.try_acquire().await.unwrap().allowed);
    admitted += 2 + drain(&again).await + drain(&other).await;
    // 20 handed out: 4 lost with the dropped instance; what the two live
    // ones still hold was handed out too, and is theirs alone.
    let held = again.try_acquire_n(0).await.unwrap().remaining
        + other.try_acquire_n(0).await.unwrap().remaining;
    assert_eq!(
        u64::from(admitted) + held,
        16,
        "{admitted} admitted, {held} held"
    );
}

#[tokio::test]
async fn redis_limit_expired_lease_tokens_are_given_up_not_spent() {
    let server = RedisServer::start();
    let leased = leased(&server, 5, Duration::from_millis(100)).await;
    assert!(leased.try_acquire().await.unwrap().allowed);
    tokio::time::sleep(Duration::from_millis(150)).await;
    // The 4 held expired: given up. 15 are left in Redis, in leases of 5.
    assert_eq!(leased.try_acquire_n(0).await.unwrap().remaining, 0);
    assert_eq!(drain(&leased).await, 15);
    assert_eq!(leased.limiter().metrics().redis_decisions, 5);
}
