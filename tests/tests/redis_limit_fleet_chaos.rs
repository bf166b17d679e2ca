//! A fleet of separate clients (plain and leased instances, requests of
//! 1 to 3 tokens, two rules of one key) hammering one key while the
//! script cache is flushed (`SCRIPT FLUSH`: `NOSCRIPT`) before and while
//! they start, and every client connection is killed (`CLIENT KILL`). On 400 an hour
//! (nothing refills within the test) the contract's bound needs no
//! clock: the fleet admits at most the burst, 400 tokens, however the
//! requests interleave. A verification: it passes on the code as it is.

use std::sync::Arc;
use std::time::Duration;

use crate::common::redis_server::{cli, RedisServer};
use fusebox::bucket::Quota;
use fusebox_std::backend::{
    Degrade, LeasedLimiter, RedisBackend, RedisConfig, RedisLimiter, Rule, Rules, Source,
};

enum Instance {
    Plain(RedisLimiter),
    Leased(Box<LeasedLimiter>),
}

impl Instance {
    async fn take(&self, n: u32) -> (bool, Source) {
        let d = match self {
            Self::Plain(limiter) => limiter.try_acquire_n("k", n).await.unwrap(),
            Self::Leased(leased) => leased.try_acquire_n(n).await.unwrap(),
        };
        (d.allowed, d.source)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_limit_fleet_chaos_never_admits_past_the_burst() {
    let server = RedisServer::start();
    let rules = Rules::new([
        Rule::new("per_hour", Quota::per_hour(400).unwrap()).unwrap(),
        Rule::new("per_second", Quota::per_second(1_000).unwrap()).unwrap(),
    ])
    .unwrap();
    // The first requests of every client meet NOSCRIPT at once.
    assert_eq!(cli(server.port(), &["SCRIPT", "FLUSH"]).trim(), "OK");
    let mut tasks = Vec::new();
    for i in 0..6u32 {
        let config = RedisConfig::new(server.url()).timeout(Duration::from_millis(500));
        let backend = RedisBackend::connect(config).await.unwrap();
        let limiter = RedisLimiter::builder("chaos", rules.clone(), backend)
            .degrade(Degrade::FailClosed)
            .probe_backoff(Duration::from_millis(5), Duration::from_millis(20))
            .build()
            .unwrap();
        let instance = Arc::new(if i % 2 == 0 {
            Instance::Leased(Box::new(
                LeasedLimiter::new(limiter, "k", 3, Duration::from_secs(3_600)).unwrap(),
            ))
        } else {
            Instance::Plain(limiter)
        });
        for worker in 0..3u32 {
            let instance = Arc::clone(&instance);
            tasks.push(tokio::spawn(async move {
                let mut admitted = 0u32;
                for step in 0..150u32 {
                    let n = 1 + (step + worker + i) % 3;
                    let (allowed, source) = instance.take(n).await;
                    if allowed {
                        assert!(
                            matches!(source, Source::Redis | Source::Lease),
                            "admitted by {source:?}"
                        );
                        admitted += n;
                    }
                    if step % 10 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                admitted
            }));
        }
    }
    // While the tokens flow (the workers' first requests).
    for _ in 0..2 {
        let _ = cli(server.port(), &["CLIENT", "KILL", "TYPE", "normal"]);
        assert_eq!(cli(server.port(), &["SCRIPT", "FLUSH"]).trim(), "OK");
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    assert!(total <= 400, "{total} tokens admitted on a burst of 400");
    // The tokens not admitted were lost in leases or in commands cut off,
    // never more than the burst; and Redis did hand its burst out.
    assert!(total >= 200, "only {total} admitted");
}
