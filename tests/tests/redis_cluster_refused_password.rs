//! A Redis Cluster whose password changes on every node while the process
//! runs (`CONFIG SET requirepass`, the clients' connections closed), the
//! Cluster case of `redis_refused_password`: the Cluster connection
//! reconnects with the old password for ever, and every command failed
//! at once with "redis unavailable: No connections found -
//! ClusterConnectionNotFound" for as long as it lasted, sending an
//! operator after the nodes instead of the credentials; a fresh
//! `connect` said "unavailable" too.

use std::time::Duration;

use crate::common::password_rotation::{rotate, rules, until, until_refused, NEW, OLD};
use crate::common::redis_server::{RedisCluster, RedisServer};
use fusebox_std::backend::{BackendError, RedisBackend, RedisConfig};

#[tokio::test]
async fn redis_cluster_a_password_rotated_on_the_nodes_is_reported_as_refused_not_as_a_timeout() {
    let cluster = RedisCluster::start_with_password(3, OLD);
    let ports: Vec<u16> = cluster.nodes.iter().map(RedisServer::port).collect();
    let urls: Vec<String> = ports
        .iter()
        .map(|port| format!("redis://:{OLD}@127.0.0.1:{port}"))
        .collect();
    let backend = RedisBackend::connect(
        RedisConfig::cluster(urls)
            .timeout(Duration::from_millis(50))
            .connect_timeout(Duration::from_millis(200))
            .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200)),
    )
    .await
    .unwrap();
    let rules = rules();
    let (seen, up) = until(&backend, &rules, 100, |r| matches!(r, Ok(true))).await;
    assert!(up, "the cluster never answered: {seen:?}");

    for &port in &ports {
        rotate(port, OLD, NEW);
    }
    until_refused(&backend, &rules).await;
    // A backend connecting now with the old password is told so at once.
    let urls: Vec<String> = ports
        .iter()
        .map(|port| format!("redis://:{OLD}@127.0.0.1:{port}"))
        .collect();
    let fresh =
        RedisBackend::connect(RedisConfig::cluster(urls).connect_timeout(Duration::from_secs(2)))
            .await;
    match fresh {
        Err(BackendError::Auth(text)) => {
            assert!(!text.contains(OLD) && !text.contains(NEW), "{text}");
        }
        other => panic!("a fresh connection with the old password: {other:?}"),
    }

    // The password back: the cluster answers again, and the refusal is
    // forgotten.
    for &port in &ports {
        rotate(port, NEW, OLD);
    }
    let (seen, back) = until(&backend, &rules, 300, |r| matches!(r, Ok(true))).await;
    assert!(back, "never answered again: {seen:?}");
}
