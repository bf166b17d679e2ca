//! Fleet-wide percentiles through a real redis-server: instances push
//! their tracker histograms, every instance's `health()` reports the
//! merged p50/p95/p99 next to its local ones.
//!
//! Latencies are recorded on paused time (exact microseconds), then time
//! resumes for Redis.

use std::sync::Arc;
use std::time::Duration;

use crate::common::redis_server::RedisServer;
use fusebox::histogram::RELATIVE_ERROR;
use fusebox_std::backend::{FleetConfig, FleetPercentiles, RedisBackend, RedisConfig};
use fusebox_std::{Registry, Tracker, TrackerConfig};

const OP: &str = "checkout";

/// `n` latencies in `lo..hi` µs from a fixed-seed generator.
fn samples(seed: u64, n: usize, lo: u64, hi: u64) -> Vec<u64> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            lo + (x >> 33) % (hi - lo)
        })
        .collect()
}

/// The exact nearest-rank percentile of `all` (the histogram's contract).
fn exact(all: &[u64], q: f64) -> u64 {
    let mut sorted = all.to_vec();
    sorted.sort_unstable();
    #[allow(clippy::cast_precision_loss)] // a few hundred samples
    let n = sorted.len() as f64;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let k = ((q * n / 100.0).ceil() as usize).max(1);
    sorted[k - 1]
}

#[allow(clippy::cast_precision_loss)] // latencies far below 2⁵²
fn within(reported: Option<u64>, exact: u64) -> bool {
    reported.is_some_and(|r| r.abs_diff(exact) as f64 <= exact as f64 * RELATIVE_ERROR)
}

/// Records `latencies` (µs) under [`OP`]; time must be paused.
async fn record(tracker: &Tracker, latencies: &[u64]) {
    for &us in latencies {
        let guard = tracker.track_operation(OP);
        tokio::time::advance(Duration::from_micros(us)).await;
        drop(guard);
    }
}

struct Instance {
    registry: Registry,
    fleet: Arc<FleetPercentiles>,
}

fn registry() -> (Registry, Tracker) {
    let registry = Registry::new();
    let config = TrackerConfig {
        sample_rate: 1.0,
        ..TrackerConfig::default()
    };
    let tracker = registry.tracker("http", config).unwrap();
    (registry, tracker)
}

async fn attach(registry: Registry, tracker: Tracker, url: &str, fleet: FleetConfig) -> Instance {
    let backend = RedisBackend::connect(RedisConfig::new(url).timeout(Duration::from_secs(2)))
        .await
        .expect("connect");
    let fleet = Arc::new(FleetPercentiles::new("http", tracker, &backend, fleet));
    registry.register_fleet_percentiles(&fleet).unwrap();
    Instance { registry, fleet }
}

/// Three instances with different sample sets, pushed, then read back.
async fn three(url: &str, sets: &[Vec<u64>; 3], ttl: Duration) -> Vec<Instance> {
    let mut out = Vec::new();
    let mut trackers = Vec::new();
    for set in sets {
        let (registry, tracker) = registry();
        record(&tracker, set).await;
        trackers.push((registry, tracker));
    }
    tokio::time::resume();
    for (i, (registry, tracker)) in trackers.into_iter().enumerate() {
        let id = format!("pod-{i}");
        let config = FleetConfig::new(&id).unwrap().ttl(ttl);
        out.push(attach(registry, tracker, url, config).await);
    }
    out
}

fn sets() -> [Vec<u64>; 3] {
    [
        samples(1, 400, 800, 5_000),
        samples(2, 150, 20_000, 90_000),
        samples(3, 60, 300, 2_000_000),
    ]
}

#[tokio::test(start_paused = true)]
async fn redis_fleet_percentiles_equal_the_union_of_samples_within_the_error() {
    let server = RedisServer::start();
    let sets = sets();
    let fleet = three(&server.url(), &sets, Duration::from_secs(60)).await;
    for i in &fleet {
        i.fleet.sync().await.expect("push");
    }
    let union: Vec<u64> = sets.iter().flatten().copied().collect();
    for (i, set) in fleet.iter().zip(&sets) {
        i.fleet.sync().await.expect("read");
        let health = i.registry.health();
        let merged = &health.fleet["http"].series[OP];
        assert!(health.fleet["http"].available && !health.fleet["http"].stale);
        assert_eq!(health.fleet["http"].corrupt, 0);
        assert_eq!((merged.instances, merged.count), (3, union.len() as u64));
        for (q, got) in [(50.0, merged.p50), (95.0, merged.p95), (99.0, merged.p99)] {
            let want = exact(&union, q);
            assert!(within(got, want), "p{q}: fleet {got:?}, union {want}");
        }
        // The local figures are still the instance's own.
        let local = &health.trackers["http"][OP];
        assert_eq!(local.calls, set.len() as u64);
        let p99 = local.latency_us.as_ref().unwrap().p99;
        assert!(within(Some(p99), exact(set, 99.0)), "local p99 {p99}");
        // Additive JSON: the fleet sits next to the trackers.
        let json = serde_json::to_value(&health).unwrap();
        assert_eq!(json["fleet"]["http"]["series"][OP]["instances"], 3);
    }
}

#[tokio::test(start_paused = true)]
async fn redis_fleet_percentiles_an_instance_that_stops_pushing_falls_out() {
    let server = RedisServer::start();
    let sets = sets();
    let fleet = three(&server.url(), &sets, Duration::from_millis(600)).await;
    for i in &fleet {
        i.fleet.sync().await.unwrap();
    }
    fleet[0].fleet.sync().await.unwrap();
    assert_eq!(fleet[0].fleet.report().series[OP].instances, 3);
    // pod-2 stops; the others keep pushing past its expiry (Redis time).
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        fleet[0].fleet.sync().await.unwrap();
        fleet[1].fleet.sync().await.unwrap();
    }
    let report = fleet[0].fleet.report();
    let merged = &report.series[OP];
    let both: Vec<u64> = sets[..2].iter().flatten().copied().collect();
    assert_eq!((merged.instances, merged.count), (2, both.len() as u64));
    assert!(within(merged.p99, exact(&both, 99.0)));
    // Its stale field was deleted.
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let key = fleet[0].fleet.key(OP).unwrap();
    let fields: Vec<String> = redis::cmd("HKEYS")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!fields.contains(&"pod-2".to_string()), "{fields:?}");
}

#[tokio::test(start_paused = true)]
async fn redis_fleet_percentiles_corrupt_fields_are_skipped_counted_and_the_rest_merge() {
    let server = RedisServer::start();
    let sets = sets();
    let fleet = three(&server.url(), &sets, Duration::from_secs(60)).await;
    for i in &fleet[..2] {
        i.fleet.sync().await.unwrap();
    }
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let (secs, _): (u64, u64) = redis::cmd("TIME").query_async(&mut conn).await.unwrap();
    let now_ms = secs * 1_000;
    let key = fleet[0].fleet.key(OP).unwrap();
    let hostile: Vec<(&str, String)> = vec![
        ("garbage", "hello world".into()),
        ("version", format!("v9x;{now_ms};1;1;1;1:1:1")),
        ("absurd", format!("v1;{now_ms};1;1;1;1:1:{}", 1u64 << 50)),
        ("huge", "9".repeat(200_000)),
        (
            "not-a-bucket",
            format!("v1;{now_ms};1000;1000;1000;1000:1009:1"),
        ),
        ("future", format!("v1;{};5;5;5;5:5:1", now_ms + 86_400_000)),
        ("lying-totals", format!("v1;{now_ms};0;9000;9000;5:5:1")),
    ];
    for (field, value) in &hostile {
        let () = redis::cmd("HSET")
            .arg(&key)
            .arg(field)
            .arg(value)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let _: () = redis::cmd("HSET")
        .arg(&key)
        .arg("binary")
        .arg(&b"v1;\xff\xfe"[..])
        .query_async(&mut conn)
        .await
        .unwrap();
    fleet[0].fleet.sync().await.unwrap();
    let report = fleet[0].registry.health().fleet["http"].clone();
    assert_eq!(report.corrupt, hostile.len() as u64 + 1);
    let merged = &report.series[OP];
    let both: Vec<u64> = sets[..2].iter().flatten().copied().collect();
    assert_eq!((merged.instances, merged.count), (2, both.len() as u64));
    for (q, got) in [(50.0, merged.p50), (95.0, merged.p95), (99.0, merged.p99)] {
        assert!(within(got, exact(&both, q)), "p{q}");
    }
    assert!(report.available);
    // Deleted, not read again every round.
    let left: usize = redis::cmd("HLEN")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(left, 2, "only the two live instances' fields remain");
    fleet[0].fleet.sync().await.unwrap();
    let again = fleet[0].registry.health().fleet["http"].corrupt;
    assert_eq!(again, report.corrupt, "nothing new to count");
}

#[tokio::test(start_paused = true)]
async fn redis_fleet_percentiles_a_key_of_another_type_is_replaced_not_fatal() {
    let server = RedisServer::start();
    let sets = sets();
    let fleet = three(&server.url(), &sets, Duration::from_secs(60)).await;
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let key = fleet[0].fleet.key(OP).unwrap();
    let () = redis::cmd("SET")
        .arg(&key)
        .arg("not a hash")
        .query_async(&mut conn)
        .await
        .unwrap();
    fleet[0].fleet.sync().await.expect("replaced, not an error");
    for i in &fleet[1..] {
        i.fleet.sync().await.unwrap();
    }
    fleet[0].fleet.sync().await.unwrap();
    let report = fleet[0].registry.health().fleet["http"].clone();
    assert!(report.available);
    assert_eq!(report.corrupt, 1);
    let merged = &report.series[OP];
    let all: Vec<u64> = sets.iter().flatten().copied().collect();
    assert_eq!((merged.instances, merged.count), (3, all.len() as u64));
}

/// The fields read per series at most (the documented `MAX_INSTANCES`).
const CAP: usize = 1024;

#[tokio::test(start_paused = true)]
async fn redis_fleet_percentiles_a_hash_of_too_many_fields_is_read_only_that_far() {
    let server = RedisServer::start();
    let sets = sets();
    let fleet = three(&server.url(), &sets, Duration::from_secs(60)).await;
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let key = fleet[0].fleet.key(OP).unwrap();
    // A flood of junk fields, far beyond the per-series cap.
    let flood = CAP * 3;
    let mut pipe = redis::pipe();
    for i in 0..flood {
        pipe.hset(&key, format!("junk-{i}"), "x").ignore();
    }
    let () = pipe.query_async(&mut conn).await.unwrap();
    fleet[0].fleet.sync().await.unwrap();
    let report = fleet[0].registry.health().fleet["http"].clone();
    assert!(report.available);
    // Every junk field is counted: those read as corrupt, the rest as
    // beyond the cap; at most the cap of them was read and deleted.
    assert!(report.corrupt >= flood as u64, "{}", report.corrupt);
    let left: usize = redis::cmd("HLEN")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(left >= flood - CAP, "{left}");
    // Round after round the flood drains and the fleet merges again.
    for _ in 0..4 {
        fleet[0].fleet.sync().await.unwrap();
    }
    for i in &fleet[1..] {
        i.fleet.sync().await.unwrap();
    }
    fleet[0].fleet.sync().await.unwrap();
    let left: usize = redis::cmd("HLEN")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(left, 3, "only the three instances' fields remain");
    let merged = &fleet[0].registry.health().fleet["http"].series[OP];
    assert_eq!(merged.instances, 3);
}

#[tokio::test(start_paused = true)]
async fn redis_fleet_percentiles_redis_down_keeps_local_marks_fleet_stale_and_recovers() {
    let mut server = RedisServer::start_with(&["--requirepass", "s3cret-pw"]);
    let url = format!("redis://:s3cret-pw@127.0.0.1:{}", server.port());
    let (registry, tracker) = registry();
    let set = samples(7, 200, 1_000, 9_000);
    record(&tracker, &set).await;
    tokio::time::resume();
    let config = FleetConfig::new("pod-a")
        .unwrap()
        .interval(Duration::from_millis(50));
    let i = attach(registry, tracker, &url, config).await;
    let task = i.fleet.spawn();
    let until = |want: fn(&fusebox_std::backend::FleetReport) -> bool| {
        let fleet = Arc::clone(&i.fleet);
        async move {
            for _ in 0..200 {
                if want(&fleet.report()) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("timed out: {:?}", fleet.report());
        }
    };
    until(|r| r.available).await;

    server.kill();
    until(|r| r.stale && !r.available).await;
    let health = i.registry.health();
    let fleet = &health.fleet["http"];
    assert!(fleet.error.is_some() && fleet.faults >= 1);
    // The last merged figures are kept, marked stale; local ones unaffected.
    assert_eq!(fleet.series[OP].instances, 1);
    let local = health.trackers["http"][OP].latency_us.as_ref().unwrap();
    assert!(within(Some(local.p50), exact(&set, 50.0)));
    assert!(health.degraded && health.ready);
    let text = serde_json::to_string(&health).unwrap();
    assert!(!text.contains("s3cret-pw"), "{text}");

    server.restart();
    until(|r| r.available && !r.stale).await;
    let health = i.registry.health();
    assert!(!health.degraded, "{:?}", health.reasons);
    assert!(within(
        health.fleet["http"].series[OP].p99,
        exact(&set, 99.0)
    ));
    task.abort();
}
