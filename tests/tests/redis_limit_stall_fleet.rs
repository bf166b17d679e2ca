//! A fleet on one redis-server that stalls (SIGSTOP) and resumes
//! (SIGCONT) twice mid-run: plain and leased instances, FailClosed. The
//! commands that timed out in the stall run when Redis resumes and take
//! tokens nobody was admitted on; leases taken then are lost. Whatever
//! the interleaving, the fleet admits no more than Redis handed out
//! (50 a second, burst 10, under a demand of thousands a second), and
//! only Redis or a lease admits. A verification: it passes on the code
//! as it is.

use std::sync::Arc;
use std::time::Duration;

use crate::common::redis_server::RedisServer;
use fusebox::bucket::Quota;
use fusebox_std::backend::{Degrade, LeasedLimiter, RedisBackend, RedisLimiter, Rules, Source};
use tokio::time::Instant;

enum Instance {
    Plain(RedisLimiter),
    Leased(Box<LeasedLimiter>),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_limit_a_stalling_redis_never_lets_the_fleet_past_its_quota() {
    let server = RedisServer::start();
    let rules = Rules::single(
        "per_second",
        Quota::per_second(50).unwrap().with_burst(10).unwrap(),
    )
    .unwrap();
    let run_for = Duration::from_millis(1_200);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for instance in 0..4 {
        let backend = RedisBackend::connect(server.outage_config(Duration::from_millis(30)))
            .await
            .unwrap();
        let limiter = RedisLimiter::builder("stall_fleet", rules.clone(), backend)
            .degrade(Degrade::FailClosed)
            .probe_backoff(Duration::from_millis(10), Duration::from_millis(50))
            .build()
            .unwrap();
        // Every other instance leases 5 tokens at a time.
        let instance = Arc::new(if instance % 2 == 0 {
            Instance::Leased(Box::new(
                LeasedLimiter::new(limiter, "k", 5, Duration::from_secs(60)).unwrap(),
            ))
        } else {
            Instance::Plain(limiter)
        });
        for _ in 0..2 {
            let instance = Arc::clone(&instance);
            tasks.push(tokio::spawn(async move {
                let mut admitted = 0u32;
                while start.elapsed() < run_for {
                    let d = match &*instance {
                        Instance::Leased(l) => l.try_acquire().await.unwrap(),
                        Instance::Plain(l) => l.try_acquire("k").await.unwrap(),
                    };
                    if d.allowed {
                        assert!(matches!(d.source, Source::Redis | Source::Lease), "{d:?}");
                        admitted += 1;
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                admitted
            }));
        }
    }
    for (at, signal) in [(200, "STOP"), (450, "CONT"), (650, "STOP"), (800, "CONT")] {
        tokio::time::sleep_until(start + Duration::from_millis(at)).await;
        server.signal(signal);
    }
    let mut admitted = 0;
    for task in tasks {
        admitted += task.await.unwrap();
    }
    // Redis handed out at most the burst and what refilled since the
    // start (Redis's clock runs on through a stall); the fleet spent no
    // more than that.
    let handed_out = 10 + 50 * start.elapsed().as_millis() / 1_000;
    assert!(
        u128::from(admitted) <= handed_out,
        "{admitted} admitted, {handed_out} handed out"
    );
    assert!(
        admitted >= 20,
        "{admitted}: the fleet admitted next to nothing"
    );
}
