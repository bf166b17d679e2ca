//! A failover of a standalone Redis: the primary is demoted to a replica
//! of another server and the address the clients dial now leads to that
//! new primary (Sentinel with a virtual IP or a DNS name, a managed
//! service's primary endpoint; here a proxy whose upstream is switched).
//! The demoted server keeps its clients' connections and answers every
//! write `READONLY`: a limiter or fleet breaker left on it was degraded
//! for good, until its process restarted. They must find the new primary
//! by themselves.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::redis_server::{cli, RedisServer};
use fusebox::breaker::{CircuitBreaker, Config, State};
use fusebox::bucket::Quota;
use fusebox_std::backend::{
    Degrade, FleetBreaker, RedisBackend, RedisConfig, RedisLimiter, Rules, Source,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// A loopback TCP proxy: each new connection goes to the upstream port
/// set when it is accepted; connections already open stay where they are.
struct SwitchingProxy {
    port: u16,
    upstream: Arc<AtomicU16>,
    task: tokio::task::JoinHandle<()>,
}

impl SwitchingProxy {
    async fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let upstream = Arc::new(AtomicU16::new(upstream));
        let target = Arc::clone(&upstream);
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let to = target.load(Ordering::SeqCst);
                tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(("127.0.0.1", to)).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Self {
            port,
            upstream,
            task,
        }
    }

    fn switch_to(&self, upstream: u16) {
        self.upstream.store(upstream, Ordering::SeqCst);
    }
}

impl Drop for SwitchingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Polls `f` every 10 ms until it holds, failing after 5 s.
async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{what}: not within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn config(port: u16) -> RedisConfig {
    RedisConfig::new(format!("redis://127.0.0.1:{port}"))
        .timeout(Duration::from_millis(500))
        .connect_timeout(Duration::from_millis(500))
        .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200))
}

async fn instance(port: u16) -> FleetBreaker {
    let core = Arc::new(CircuitBreaker::new(
        Config::builder()
            .consecutive_failures(2)
            .open_for(Duration::from_secs(30).into())
            .build()
            .unwrap(),
    ));
    let backend = RedisBackend::connect(config(port)).await.unwrap();
    FleetBreaker::builder("failover", core, backend)
        .sync_interval(Duration::from_millis(50))
        .build()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failover_the_limiter_and_the_breaker_find_the_new_primary() {
    let old = RedisServer::start();
    // Replicates to the demoted server at once (not after the default 5 s
    // of `repl-diskless-sync-delay`): an instance that only reads stays
    // on the demoted server and sees the new primary's data through it.
    let new = RedisServer::start_with(&["--repl-diskless-sync-delay", "0"]);
    let proxy = SwitchingProxy::start(old.port()).await;
    let backend = RedisBackend::connect(config(proxy.port)).await.unwrap();
    let rules = Rules::single("per_hour", Quota::per_hour(100).unwrap()).unwrap();
    let limiter = RedisLimiter::builder("failover", rules, backend)
        .degrade(Degrade::FailClosed)
        .probe_backoff(Duration::from_millis(20), Duration::from_millis(100))
        .build()
        .unwrap();
    let a = instance(proxy.port).await;
    let b = instance(proxy.port).await;
    let d = limiter.try_acquire("k").await.unwrap();
    assert_eq!((d.allowed, d.source), (true, Source::Redis));
    a.sync().await.unwrap();
    b.sync().await.unwrap();

    // The failover: the old primary follows the new one, and the address
    // the instances dial leads to the new one.
    let replica_of = ["replicaof", "127.0.0.1", &new.port().to_string()].map(str::to_owned);
    let replica_of: Vec<&str> = replica_of.iter().map(String::as_str).collect();
    assert!(cli(old.port(), &replica_of).contains("OK"));
    proxy.switch_to(new.port());

    // The first write after it meets READONLY: refused, degraded.
    let d = limiter.try_acquire("k").await.unwrap();
    assert_eq!((d.allowed, d.source), (false, Source::FailClosed), "{d:?}");
    assert!(limiter.is_degraded());
    // Found by itself (its background probe writes): decided by the new
    // primary again.
    until("the limiter on the new primary", || !limiter.is_degraded()).await;
    let d = limiter.try_acquire("k").await.unwrap();
    assert_eq!((d.allowed, d.source), (true, Source::Redis), "{d:?}");
    let stored = cli(new.port(), &["keys", "fusebox:{failover:k}:*"]);
    assert!(stored.contains("per_hour"), "{stored}");

    // A trip after the failover is published on the new primary and
    // reaches the other instance.
    for _ in 0..2 {
        let _ = a.call(async { Err::<(), _>("down") }).await;
    }
    assert_eq!(a.state(), State::Open);
    until("the trip published", || {
        cli(new.port(), &["get", a.decision_key()]).contains(":o:")
    })
    .await;
    until("the other instance open", || b.state() == State::Open).await;
    until("the tripping instance recovered", || !a.is_degraded()).await;
    assert!(!b.is_degraded());
}
