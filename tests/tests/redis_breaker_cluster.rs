//! The fleet breaker on a 3-node loopback Redis Cluster: every key of one
//! breaker shares a hash tag, so its script runs on one node.

use std::sync::Arc;
use std::time::Duration;

use crate::common::fleet::until_state;
use crate::common::redis_server::RedisCluster;
use fusebox::breaker::{CircuitBreaker, Config, State};
use fusebox_std::backend::{FleetBreaker, RedisBackend, RedisConfig};

const SYNC: Duration = Duration::from_millis(100);

async fn instance(cluster: &RedisCluster, open_for: Duration) -> FleetBreaker {
    let backend = cluster.backend().await;
    let core = Arc::new(CircuitBreaker::new(
        Config::builder()
            .consecutive_failures(2)
            .open_for(open_for.into())
            .build()
            .unwrap(),
    ));
    FleetBreaker::builder("checkout", core, backend)
        .sync_interval(SYNC)
        .build()
        .await
        .expect("fleet breaker")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_breaker_cluster_notifications_reach_every_instance() {
    let cluster = RedisCluster::start(3);
    let urls = cluster.urls();
    let mut fleet = Vec::new();
    for i in 0..3 {
        let backend = RedisBackend::connect(
            RedisConfig::cluster(urls.clone())
                .timeout(Duration::from_secs(2))
                .connect_timeout(Duration::from_secs(5)),
        )
        .await
        .unwrap();
        let core = Arc::new(CircuitBreaker::new(
            Config::builder().consecutive_failures(1).build().unwrap(),
        ));
        // Each instance is given a different node as its seed: the
        // subscription is sharded, routed to the shard owning the slot.
        fleet.push(
            FleetBreaker::builder("notify", core, backend)
                .sync_interval(Duration::from_secs(10))
                .notifications(urls[i].clone())
                .build()
                .await
                .expect("fleet breaker"),
        );
    }
    // Sharded pub/sub: all three subscribers sit on the owning shard's
    // `SSUBSCRIBE` list, none on a classic channel of any node. Each
    // subscribes in the background: counted until all three have (not
    // after a fixed 300 ms, which a loaded machine may not give them).
    let channel = fleet[0].decision_key().replace(":decision", ":events");
    let since = tokio::time::Instant::now();
    loop {
        let (sharded, classic) = subscribers(&urls, &channel).await;
        assert_eq!(classic, 0, "a subscriber on a classic channel");
        if sharded == 3 {
            break;
        }
        assert!(
            sharded < 3 && since.elapsed() < Duration::from_secs(10),
            "{sharded} sharded subscribers"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = fleet[0].call(async { Err::<(), _>("down") }).await;
    until_state(&fleet[1], State::Open, Duration::from_secs(1)).await;
    until_state(&fleet[2], State::Open, Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_breaker_cluster_trip_force_and_trial_are_shared() {
    let cluster = RedisCluster::start(3);
    let open_for = Duration::from_millis(700);
    let a = instance(&cluster, open_for).await;
    let b = instance(&cluster, open_for).await;
    let c = instance(&cluster, open_for).await;
    for _ in 0..2 {
        let _ = a.call(async { Err::<(), _>("down") }).await;
    }
    assert_eq!(a.state(), State::Open);
    let limit = SYNC + Duration::from_millis(400);
    until_state(&b, State::Open, limit).await;
    until_state(&c, State::Open, limit).await;
    assert!(!a.is_degraded() && !b.is_degraded());

    // A restarted instance loads the open decision.
    let restarted = instance(&cluster, open_for).await;
    assert_eq!(restarted.state(), State::Open);

    // The fleet trial: B's success closes every instance.
    until_state(&b, State::HalfOpen, Duration::from_secs(2)).await;
    b.call(async { Ok::<(), ()>(()) }).await.unwrap();
    for x in [&a, &b, &c, &restarted] {
        until_state(x, State::Closed, Duration::from_secs(2)).await;
    }

    c.force_open().await.unwrap();
    for x in [&a, &b, &restarted] {
        until_state(x, State::ForcedOpen, Duration::from_secs(2)).await;
    }
    a.force_close().await.unwrap();
    for x in [&b, &c, &restarted] {
        until_state(x, State::Closed, Duration::from_secs(2)).await;
    }
}

/// The subscribers of `channel` over every node of `urls`: on its shard
/// (`SSUBSCRIBE`) and on the classic channel of that name.
async fn subscribers(urls: &[String], channel: &str) -> (i64, i64) {
    let (mut sharded, mut classic) = (0, 0);
    for url in urls {
        let mut node = redis::Client::open(url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let shard: (String, i64) = redis::cmd("PUBSUB")
            .arg("SHARDNUMSUB")
            .arg(channel)
            .query_async(&mut node)
            .await
            .unwrap();
        let plain: (String, i64) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(channel)
            .query_async(&mut node)
            .await
            .unwrap();
        sharded += shard.1;
        classic += plain.1;
    }
    (sharded, classic)
}
