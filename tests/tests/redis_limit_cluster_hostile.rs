//! A 3-node Redis Cluster against keys a client chose to break it
//! (braces that would move the hash tag, colons, very long and non-ASCII
//! keys), and against nodes that answer reads but refuse writes (full):
//! every rule of a request stays in one slot (no CROSSSLOT), distinct
//! keys never share state, and a limiter degraded by full nodes stays
//! degraded until they take writes again (the write probe reaches the
//! key's node). A verification of the key scheme, and the Cluster side of
//! `redis_degrade_unwritable`.

use std::sync::Arc;
use std::time::Duration;

use crate::common::redis_server::{cli, RedisCluster};
use fusebox::bucket::Quota;
use fusebox_std::backend::{Degrade, RedisLimiter, Rule, Rules, Source};
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_limit_cluster_hostile_keys_and_full_nodes() {
    let cluster = RedisCluster::start(3);
    let backend = cluster.backend().await;
    let rules = Rules::new([
        Rule::new("per_second", Quota::per_second(3).unwrap()).unwrap(),
        Rule::new("per_hour", Quota::per_hour(3).unwrap()).unwrap(),
    ])
    .unwrap();
    let limiter = Arc::new(
        RedisLimiter::builder("hostile", rules, backend)
            .degrade(Degrade::FailClosed)
            .probe_backoff(Duration::from_millis(20), Duration::from_millis(100))
            .build()
            .unwrap(),
    );
    let long = "}".repeat(256);
    let keys = [
        "",
        "x",
        "{x}",
        "{x",
        "x}",
        "}{",
        "{}",
        "a{b}c",
        "a:b",
        "a%3Ab",
        "{hostile:x}",
        "é{ü}",
        &long,
    ];
    // 3 each (the whole hour's quota), then refused: no key shares another's
    // state, no request spans two slots.
    for key in keys {
        for i in 0..3 {
            let d = limiter.try_acquire(key).await.unwrap();
            assert_eq!((d.allowed, d.source), (true, Source::Redis), "{key:?} #{i}");
        }
        let d = limiter.try_acquire(key).await.unwrap();
        assert_eq!((d.allowed, d.source), (false, Source::Redis), "{key:?}");
    }
    assert_eq!(limiter.metrics().faults, 0);

    // Every node full: decisions that take a token fail.
    for node in &cluster.nodes {
        cli(
            node.port(),
            &["config", "set", "maxmemory-policy", "noeviction"],
        );
        cli(node.port(), &["config", "set", "maxmemory", "1"]);
    }
    let d = limiter.try_acquire("fresh").await.unwrap();
    assert_eq!((d.allowed, d.source), (false, Source::FailClosed), "{d:?}");
    // Probes that only read (idle, peeks, refused keys) keep it degraded.
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(400) {
        let _ = limiter.try_acquire_n("fresh", 0).await.unwrap();
        let _ = limiter.try_acquire("x").await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(limiter.is_degraded());
    for node in &cluster.nodes {
        cli(node.port(), &["config", "set", "maxmemory", "0"]);
    }
    let back = Instant::now();
    while limiter.is_degraded() {
        assert!(back.elapsed() < Duration::from_secs(5), "never recovered");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let d = limiter.try_acquire("fresh").await.unwrap();
    assert_eq!((d.allowed, d.source), (true, Source::Redis), "{d:?}");
}
