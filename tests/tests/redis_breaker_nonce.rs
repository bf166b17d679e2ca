//! Two processes' fleet breakers of one name keep their records apart,
//! against a real redis-server. The docs: each process has its own
//! record (`…:record:<nonce>`, one key per process), holding tokens that
//! grow per process; a token not above
//! the one recorded is a repeat and changes nothing.
//!
//! Found by a hostile review: the nonce came from fastrand's thread-local
//! generator, which a program may seed (`fastrand::seed`, for
//! reproducible jitter or sampling): every process of such a program had
//! the same nonce, so the same records, and one instance's `force_open`
//! (its token 0, below another's recorded 2) answered Ok and changed
//! nothing, its trips too. Two instances are built here in one process,
//! each after the same `fastrand::seed`, as two processes of that program
//! would.

use std::sync::Arc;
use std::time::Duration;

use crate::common::fleet::{backend, raw, stored};
use crate::common::redis_server::RedisServer;
use fusebox::breaker::{CircuitBreaker, Config, State};
use fusebox_std::backend::FleetBreaker;

/// An instance of the breaker `seeded`, built right after
/// `fastrand::seed(7)` on this thread (the test's runtime has one).
async fn instance(url: &str) -> FleetBreaker {
    let core = Arc::new(CircuitBreaker::new(
        Config::builder().consecutive_failures(2).build().unwrap(),
    ));
    let backend = backend(url).await;
    fastrand::seed(7);
    FleetBreaker::builder("seeded", core, backend)
        .sync_interval(Duration::from_secs(3_600))
        .build()
        .await
        .unwrap()
}

async fn record_keys(url: &str, kind: &str) -> Vec<String> {
    redis::cmd("KEYS")
        .arg(format!("fusebox:{{breaker:seeded}}:{kind}:*"))
        .query_async(&mut raw(url).await)
        .await
        .unwrap()
}

#[tokio::test]
async fn instances_of_a_program_seeding_fastrand_keep_their_own_records() {
    let server = RedisServer::start();
    let url = server.url();
    let a = instance(&url).await;
    let b = instance(&url).await;
    // A's admin commands: its record holds its third token.
    a.force_open().await.unwrap();
    a.force_close().await.unwrap();
    a.force_close().await.unwrap();
    // B forces the fleet open: it must run.
    b.force_open().await.unwrap();
    assert_eq!(
        b.fleet_state(),
        Some(State::ForcedOpen),
        "B's force_open ignored"
    );
    assert!(stored(&url, "fusebox:{breaker:seeded}:decision")
        .await
        .contains(":f:"));
    assert_eq!(record_keys(&url, "record").await.len(), 2);
    // A closes it; B's trip then opens the fleet.
    a.force_close().await.unwrap();
    a.sync().await.unwrap();
    b.sync().await.unwrap();
    assert_eq!(b.fleet_state(), Some(State::Closed));
    for _ in 0..2 {
        let _ = b.call(async { Err::<(), _>("down") }).await;
    }
    b.sync().await.unwrap();
    a.sync().await.unwrap();
    assert_eq!(a.fleet_state(), Some(State::Open), "B's trip ignored");
}
