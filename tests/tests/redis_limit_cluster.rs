//! Keyed and multi-rule limits on a 3-node Redis Cluster on loopback: the
//! rules of one request share a hash tag, so one slot, so one atomic
//! script; different keys spread over the nodes.

use std::time::Duration;

use crate::common::redis_server::RedisCluster;
use fusebox::bucket::Quota;
use fusebox_std::backend::{RedisBackend, RedisConfig, Rule, Rules, Source};

const T0: u64 = 1_800_000_000_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_limit_cluster_serves_keyed_and_multi_rule_limits() {
    let cluster = RedisCluster::start(3);
    let backend = cluster.backend().await;
    let rules = Rules::new([
        Rule::new("per_second", Quota::per_second(10).unwrap()).unwrap(),
        Rule::new("per_minute", Quota::per_minute(15).unwrap()).unwrap(),
    ])
    .unwrap();
    for user in 0..30 {
        let key = format!("user-{user}");
        for i in 0..10 {
            let d = backend
                .decide_at("payments", &key, &rules, 1, T0)
                .await
                .unwrap();
            assert_eq!((d.allowed, d.source), (true, Source::Redis), "{key} #{i}");
        }
        let d = backend
            .decide_at("payments", &key, &rules, 1, T0)
            .await
            .unwrap();
        assert_eq!((d.allowed, d.rule), (false, 0), "{key}: per_second spent");
        // A second later per_second is full but per_minute has 5: a request
        // for 6 is refused by per_minute and takes nothing from per_second.
        let later = T0 + 1_000_000;
        let d = backend
            .decide_at("payments", &key, &rules, 6, later)
            .await
            .unwrap();
        assert_eq!((d.allowed, d.rule), (false, 1), "{key}");
        assert!(
            backend
                .decide_at("payments", &key, &rules, 5, later)
                .await
                .unwrap()
                .allowed
        );
    }
    // The keys spread over the nodes, two per user on the same node.
    let mut total = 0;
    let mut used = 0;
    for url in cluster.urls() {
        let client = redis::Client::open(url).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let keys: i64 = redis::cmd("DBSIZE").query_async(&mut conn).await.unwrap();
        assert_eq!(keys % 2, 0, "both rules of a user live on one node");
        total += keys;
        used += i64::from(keys > 0);
    }
    assert_eq!(total, 60);
    assert!(used >= 2, "keys on {used} node(s)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_limit_cluster_reloads_the_script_on_every_node() {
    let cluster = RedisCluster::start(3);
    let backend = RedisBackend::connect(
        RedisConfig::cluster(cluster.urls())
            .timeout(Duration::from_secs(2))
            .connect_timeout(Duration::from_secs(5)),
    )
    .await
    .unwrap();
    let rules = Rules::single("per_second", Quota::per_second(100).unwrap()).unwrap();
    for user in 0..20 {
        backend
            .decide_at("flush", &format!("u{user}"), &rules, 1, T0)
            .await
            .unwrap();
    }
    for url in cluster.urls() {
        let client = redis::Client::open(url).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    for user in 0..20 {
        let d = backend
            .decide_at("flush", &format!("u{user}"), &rules, 1, T0)
            .await
            .unwrap();
        assert_eq!((d.allowed, d.remaining), (true, 98), "u{user}");
    }
}
