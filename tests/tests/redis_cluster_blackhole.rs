//! A Cluster node's connection that falls silent (no reply, no reset: an
//! expired NAT entry, a partition) while new connections to it work: the
//! limiter degrades for the keys on that node and recovers by itself on a
//! new Cluster connection. Before, the Cluster connection retried a
//! command that timed out on the same silent socket, and only the kernel
//! giving up on it (about 15 minutes) brought the node back.
//!
//! The node announces a [`SilencingProxy`]'s port to clients
//! (`cluster-announce-port`), so the Cluster connection reaches it
//! through the proxy.

use crate::common;

use std::time::Duration;

use crate::common::redis_server::RedisCluster;
use crate::common::silencing_proxy::SilencingProxy;
use fusebox::bucket::Quota;
use fusebox_std::backend::{Degrade, RedisBackend, RedisConfig, RedisLimiter, Rules, Source};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_cluster_node_connection_is_replaced_and_the_limiter_recovers() {
    let cluster = RedisCluster::start(3);
    let proxy = SilencingProxy::start(cluster.nodes[0].port()).await;
    cluster.announce_client_port(0, proxy.port());
    let connect_timeout = Duration::from_millis(300);
    let backend = common::redis_server::cluster_backend(&cluster, connect_timeout).await;
    let limiter = RedisLimiter::builder(
        "silenced",
        Rules::single("per_second", Quota::per_second(1_000_000).unwrap()).unwrap(),
        backend.clone(),
    )
    .degrade(Degrade::FailOpen)
    .probe_backoff(Duration::from_millis(20), Duration::from_millis(200))
    .build()
    .unwrap();
    // Thirty keys: some of them on node 0 (it serves a third of the slots).
    let keys: Vec<String> = (0..30).map(|i| format!("user-{i}")).collect();
    let limiter = std::sync::Arc::new(limiter);
    let sources = |limiter: std::sync::Arc<RedisLimiter>, keys: Vec<String>| async move {
        let mut on_redis = 0;
        for key in &keys {
            on_redis +=
                usize::from(limiter.try_acquire(key).await.unwrap().source == Source::Redis);
        }
        on_redis
    };
    // Every key on Redis before node 0 is silenced. Waited for, not
    // assumed: on a loaded machine a first command may miss the 50 ms
    // timeout and send the limiter local for its probe's backoff (0 of
    // 30 keys on Redis, 1 run in 9 of a loaded sweep).
    let healthy = tokio::time::Instant::now();
    while sources(std::sync::Arc::clone(&limiter), keys.clone()).await < keys.len() {
        assert!(
            healthy.elapsed() < Duration::from_secs(30),
            "a healthy cluster never served every key; {:?}",
            limiter.metrics()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let replacements = common::messages_containing("reconnecting on a new connection");
    proxy.silence();
    let start = tokio::time::Instant::now();
    let during = sources(std::sync::Arc::clone(&limiter), keys.clone()).await;
    assert!(during < keys.len(), "node 0's keys degrade");
    assert!(during > 0, "the other nodes' keys stay on Redis");
    // Every key back on Redis after about the connect timeout of silence
    // and a probe: well within 10 s (never, before).
    let recovered = loop {
        if sources(std::sync::Arc::clone(&limiter), keys.clone()).await == keys.len() {
            break start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "still degraded after 10 s; {:?}",
            limiter.metrics()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(recovered >= connect_timeout, "{recovered:?}");
    assert_eq!(
        common::messages_containing("reconnecting on a new connection") - replacements,
        1,
        "one replacement, logged"
    );
    // Raw commands share the replaced connection: a key on every node.
    let mut conn = backend.connection();
    for key in &keys {
        let set: String = tokio::time::timeout(
            Duration::from_secs(2),
            redis::cmd("SET").arg(key).arg(1).query_async(&mut conn),
        )
        .await
        .expect("a raw command on the new connection")
        .unwrap();
        assert_eq!(set, "OK");
    }
}

/// `connect_lazy` takes a Cluster configuration (before, it refused one):
/// with no node up, a decision is an error, not a hang or a panic; on a
/// running Cluster, decisions are Redis's once the background connection
/// is made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lazy_cluster_backend_errs_while_no_node_is_up_and_decides_on_a_live_one() {
    // A free port nothing listens on yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let backend = RedisBackend::connect_lazy(
        RedisConfig::cluster(vec![format!("redis://127.0.0.1:{port}")])
            .timeout(Duration::from_millis(50))
            .connect_timeout(Duration::from_millis(300))
            .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200)),
    )
    .expect("a lazy Cluster backend");
    let rules = Rules::single("per_second", Quota::per_second(10).unwrap()).unwrap();
    let decide = || fusebox_std::backend::Backend::decide(&backend, "lazy", "k", &rules, 1);
    let nothing = tokio::time::timeout(Duration::from_secs(5), decide())
        .await
        .expect("an answer within 5 s");
    assert!(nothing.is_err(), "nothing is up: {nothing:?}");
    let cluster = RedisCluster::start(3);
    let limiter = RedisLimiter::builder(
        "lazy",
        rules.clone(),
        RedisBackend::connect_lazy(
            RedisConfig::cluster(cluster.urls())
                .timeout(Duration::from_millis(200))
                .connect_timeout(Duration::from_millis(500)),
        )
        .unwrap(),
    )
    .degrade(Degrade::FailClosed)
    .build()
    .unwrap();
    let start = tokio::time::Instant::now();
    loop {
        let d = limiter.try_acquire("k").await.unwrap();
        if d.source == Source::Redis {
            assert!(d.allowed);
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "not on Redis after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
