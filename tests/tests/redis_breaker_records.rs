//! What a fleet breaker leaves in Redis over a long history, against a
//! real redis-server.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::fleet::{backend, raw, stored, sync_ok, trip};
use common::redis_server::RedisServer;
use fusebox::breaker::{CircuitBreaker, Config, State};
use fusebox_std::backend::FleetBreaker;

/// Two failures trip it; open `open_for`.
fn core(open_for: Duration) -> Arc<CircuitBreaker> {
    Arc::new(CircuitBreaker::new(
        Config::builder()
            .consecutive_failures(2)
            .open_for(open_for.into())
            .build()
            .unwrap(),
    ))
}

/// An instance reconciled at once on a local transition, otherwise by
/// hand (`sync`).
async fn instance(url: &str, name: &str, open_for: Duration) -> FleetBreaker {
    FleetBreaker::builder(name, core(open_for), backend(url).await)
        .sync_interval(Duration::from_secs(3_600))
        .build()
        .await
        .expect("fleet breaker")
}

/// The keys under `pattern`, by `SCAN`.
async fn keys(url: &str, pattern: &str) -> Vec<String> {
    let mut conn = raw(url).await;
    let mut cursor = 0u64;
    let mut all = Vec::new();
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1_000)
            .query_async(&mut conn)
            .await
            .unwrap();
        all.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    all.sort();
    all
}

/// 300 trips of one instance, each published and closed again by an
/// operator: every trip is taken (opens the fleet), and the records left
/// in Redis are one per process and kind, not one per trip. Before, each
/// trip left its own record key for a day: 300 here (~86 400 a day for a
/// 1 s open time that kept failing, per instance).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_history_of_trips_leaves_one_record_per_process() {
    const TRIPS: u64 = 300;
    let server = RedisServer::start();
    let url = server.url();
    let a = instance(&url, "records", Duration::from_secs(30)).await;
    let b = instance(&url, "records", Duration::from_secs(30)).await;
    // The first instance built wrote the first (closed) decision.
    let before = (a.fleet_metrics().published, b.fleet_metrics().published);
    assert_eq!(before, (1, 0));
    for _ in 0..TRIPS {
        trip(&a).await;
        sync_ok(&a).await;
        assert!(
            stored(&url, a.decision_key()).await.contains(":o:"),
            "the trip opened the fleet"
        );
        b.force_close().await.unwrap();
        a.sync().await.unwrap();
        assert_eq!(a.state(), State::Closed);
    }
    // Every trip and every close changed the decision once.
    assert_eq!(a.fleet_metrics().published, 1 + TRIPS);
    assert_eq!(b.fleet_metrics().published, TRIPS);
    let all = keys(&url, "*").await;
    assert_eq!(all.len(), 3, "{:?}", &all[..all.len().min(5)]);
    assert_eq!(
        keys(&url, "fusebox:{breaker:records}:tripped:*")
            .await
            .len(),
        1
    );
    assert_eq!(
        keys(&url, "fusebox:{breaker:records}:forced:*").await.len(),
        1
    );
}
