//! The fleet breaker at the end of its version space, against a real
//! redis-server. The script numbers decisions with Lua numbers (doubles):
//! it takes a stored version above 9 007 199 254 740 000 (just below
//! 2^53) for forged. Honest use never gets there (2^53 changes); a hand
//! that writes versions 2^32 ahead again and again, each adopted, does.
//!
//! Found by a hostile review: at that limit a trip wrote the next
//! version, which an instance that had not merged it yet took for
//! forged and rewrote closed at its own, older, version (the trip
//! undone, then the two instances rewriting each other's at every
//! sync); at 2^53 itself, v + 1 == v, so every change was written under
//! the version instances held, and never applied. Now the script writes
//! no version past the limit: it answers that the version space is
//! exhausted, and each instance decides on local state alone (degraded,
//! logged) until an operator deletes the decision key and restarts it.

use std::sync::Arc;
use std::time::Duration;

use crate::common::fleet::{backend, raw, stored, trip, until_state};
use crate::common::redis_server::RedisServer;
use fusebox::breaker::{CircuitBreaker, Config, Decision, State};
use fusebox_std::backend::FleetBreaker;

/// The last version the script writes.
const LIMIT: u64 = 9_007_199_254_740_000;

/// An instance of `edge` whose core already merged the closed decision
/// `LIMIT` (as after adopting every forged jump on the way there).
async fn instance(url: &str) -> FleetBreaker {
    let core = Arc::new(CircuitBreaker::new(
        Config::builder()
            .consecutive_failures(2)
            .open_for(Duration::from_millis(200).into())
            .build()
            .unwrap(),
    ));
    let at_limit = Decision {
        version: LIMIT,
        state: State::Closed,
        open_remaining: None,
        reopen_streak: 0,
    };
    core.merge(&at_limit, fusebox::Instant::from_secs(1))
        .expect("merged");
    FleetBreaker::builder("edge", core, backend(url).await)
        .sync_interval(Duration::from_millis(50))
        .build()
        .await
        .expect("fleet breaker")
}

fn version(stored: &str) -> u64 {
    stored.split(':').nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_breaker_an_exhausted_version_space_degrades_to_local_state() {
    let server = RedisServer::start();
    let url = server.url();
    let mut conn = raw(&url).await;
    let key = "fusebox:{breaker:edge}:decision";
    let () = redis::cmd("SET")
        .arg(key)
        .arg(format!("fb1:{LIMIT}:c:0:0"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let a = instance(&url).await;
    let b = instance(&url).await;
    trip(&a).await;
    for _ in 0..5 {
        let _ = a.sync().await;
        let _ = b.sync().await;
        let now = stored(&url, key).await;
        assert!(version(&now) <= LIMIT, "written past the limit: {now}");
    }
    assert!(a.sync().await.is_err(), "the exhaustion is reported");
    assert!(a.is_degraded() && b.is_degraded());
    assert_eq!(
        (a.fleet_metrics().corrupt, b.fleet_metrics().corrupt),
        (0, 0)
    );
    // Local state alone: A's trip protects A; B stays closed; A's trial,
    // decided locally, closes A.
    assert_eq!(b.state(), State::Closed);
    until_state(&a, State::HalfOpen, Duration::from_secs(2)).await;
    a.call(async { Ok::<_, ()>(()) })
        .await
        .expect("a local trial");
    assert_eq!(a.state(), State::Closed);
}
