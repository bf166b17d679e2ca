//! The fleet breaker's notifications over a subscription that falls
//! silent (no byte either way, no reset: an expired NAT entry, a
//! partition) while new connections pass: the subscription must notice
//! and subscribe again by itself, or every change reaches the instance
//! only at its sync interval from then on.

use std::sync::Arc;
use std::time::Duration;

use crate::common::fleet::{backend, trip, until_state};
use crate::common::redis_server::RedisServer;
use crate::common::silencing_proxy::SilencingProxy;
use fusebox::breaker::{CircuitBreaker, Config, State};
use fusebox_std::backend::FleetBreaker;

fn core() -> Arc<CircuitBreaker> {
    Arc::new(CircuitBreaker::new(
        Config::builder()
            .consecutive_failures(2)
            .open_for(Duration::from_secs(30).into())
            .build()
            .unwrap(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_breaker_a_silent_subscription_is_noticed_and_made_again() {
    let server = RedisServer::start();
    let url = server.url();
    let proxy = SilencingProxy::start(server.port()).await;
    let via_proxy = format!("redis://127.0.0.1:{}", proxy.port());
    let slow_sync = Duration::from_secs(60);
    let a = FleetBreaker::builder("silent_sub", core(), backend(&url).await)
        .sync_interval(slow_sync)
        .build()
        .await
        .unwrap();
    // B's commands go straight to Redis; its subscription through the proxy.
    let b = FleetBreaker::builder("silent_sub", core(), backend(&url).await)
        .sync_interval(slow_sync)
        .notifications(via_proxy)
        .build()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await; // subscribed
    trip(&a).await;
    a.sync().await.unwrap();
    until_state(&b, State::Open, Duration::from_secs(1)).await;
    a.force_close().await.unwrap();
    until_state(&b, State::Closed, Duration::from_secs(1)).await;
    // The subscription falls silent for good; new connections pass.
    proxy.silence();
    tokio::time::sleep(Duration::from_millis(200)).await;
    trip(&a).await;
    a.sync().await.unwrap();
    // Far sooner than the sync interval (60 s): within a few seconds of
    // silence the subscription is made again and reconciles at once.
    until_state(&b, State::Open, Duration::from_secs(10)).await;
}
