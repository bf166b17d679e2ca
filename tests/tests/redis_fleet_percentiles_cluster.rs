//! Fleet percentiles on a 3-node Redis Cluster: one hash per series, so
//! one slot per script call (read and compare-and-delete), series spread
//! over the nodes, and the scripts reloaded on every node after a
//! `SCRIPT FLUSH` (a failover or restart empties the script cache).

use std::sync::Arc;
use std::time::Duration;

use crate::common::redis_server::{cli, RedisCluster};
use fusebox_std::backend::{FleetConfig, FleetPercentiles};
use fusebox_std::{Registry, TrackerConfig};

const SERIES: [&str; 6] = ["a", "b", "checkout", "search", "login", "cart"];

#[tokio::test(start_paused = true)]
async fn redis_fleet_percentiles_cluster_reads_deletes_and_reloads_its_scripts() {
    let mut trackers = Vec::new();
    for _ in 0..3 {
        let registry = Registry::new();
        let tracker = registry
            .tracker(
                "http",
                TrackerConfig {
                    sample_rate: 1.0,
                    ..TrackerConfig::default()
                },
            )
            .unwrap();
        for op in SERIES {
            for us in [1_000, 2_000, 3_000] {
                let guard = tracker.track_operation(op);
                tokio::time::advance(Duration::from_micros(us)).await;
                drop(guard);
            }
        }
        trackers.push((registry, tracker));
    }
    tokio::time::resume();
    let cluster = RedisCluster::start(3);
    let mut fleet = Vec::new();
    for (i, (registry, tracker)) in trackers.into_iter().enumerate() {
        let backend = cluster.backend().await;
        let config = FleetConfig::new(&format!("pod-{i}")).unwrap();
        let f = Arc::new(FleetPercentiles::new("http", tracker, &backend, config));
        registry.register_fleet_percentiles(&f).unwrap();
        fleet.push((registry, f));
    }
    for (_, f) in &fleet {
        f.sync().await.expect("a round on the cluster");
    }
    let report = fleet[2].1.report();
    for op in SERIES {
        let s = &report.series[op];
        assert_eq!((s.instances, s.count), (3, 9), "{op}");
    }
    // The series live on more than one node.
    let owners: std::collections::BTreeSet<usize> = SERIES
        .iter()
        .map(|op| cluster.owner(&fleet[0].1.key(op).unwrap()))
        .collect();
    assert!(owners.len() >= 2, "series on {owners:?}");
    // Garbage in every hash, and every node's script cache emptied.
    for op in SERIES {
        let key = fleet[0].1.key(op).unwrap();
        let port = cluster.nodes[cluster.owner(&key)].port();
        assert_eq!(cli(port, &["hset", &key, "garbage", "hello"]).trim(), "1");
    }
    for node in &cluster.nodes {
        assert_eq!(cli(node.port(), &["script", "flush"]).trim(), "OK");
    }
    fleet[0]
        .1
        .sync()
        .await
        .expect("the scripts are loaded again");
    let report = fleet[0].1.report();
    assert_eq!(report.corrupt, SERIES.len() as u64);
    for op in SERIES {
        let s = &report.series[op];
        assert_eq!((s.instances, s.count), (3, 9), "{op}");
        let key = fleet[0].1.key(op).unwrap();
        let port = cluster.nodes[cluster.owner(&key)].port();
        assert_eq!(
            cli(port, &["hlen", &key]).trim(),
            "3",
            "{op}: garbage deleted"
        );
    }
    assert!(report.available);
}
