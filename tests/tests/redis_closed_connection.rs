//! A Redis that closes its clients' connections while they are idle: its
//! `timeout` setting (idle clients closed after that many seconds; a
//! proxy's or a load balancer's idle timeout does the same), or an
//! operator's `CLIENT KILL`. The connection is made again, so no request
//! may fail for it: a limiter whose requests come further apart than the
//! idle timeout must not degrade on each of them (`FailClosed` refused
//! every one, with `broken pipe`, before the fix), nor a fleet breaker's
//! reconciliation fail.

use std::sync::Arc;
use std::time::Duration;

use crate::common::fleet::instance_over;
use crate::common::redis_server::{cli, connections_received_in, RedisServer};
use fusebox::breaker::{CircuitBreaker, Config, State};
use fusebox::bucket::Quota;
use fusebox_std::backend::{
    Degrade, FleetBreaker, LeasedLimiter, RedisBackend, RedisLimiter, Rules, Source,
};

fn limiter(backend: RedisBackend, name: &str) -> RedisLimiter {
    let rules = Rules::single("per_minute", Quota::per_minute(100).unwrap()).unwrap();
    RedisLimiter::builder(name, rules, backend)
        .degrade(Degrade::FailClosed)
        .build()
        .unwrap()
}

async fn breaker(url: &str, name: &str) -> FleetBreaker {
    let core = Arc::new(CircuitBreaker::new(
        Config::builder().consecutive_failures(2).build().unwrap(),
    ));
    // Reconciles only when asked (or woken by a local transition).
    instance_over(url, name, core, Duration::from_secs(3600)).await
}

/// One request of each kind, each on a connection the server closed
/// since the last: a decision, a lease, a fleet breaker's reconciliation.
async fn each_answered(limiter: &RedisLimiter, leased: &LeasedLimiter, breaker: &FleetBreaker) {
    let decided = limiter
        .try_acquire("k")
        .await
        .map(|d| (d.allowed, d.source));
    let spent = leased.try_acquire_n(5).await.map(|d| (d.allowed, d.source));
    let synced = breaker.sync().await;
    assert_eq!(
        (decided, spent, synced),
        (
            Ok((true, Source::Redis)),
            Ok((true, Source::Lease)),
            Ok(State::Closed)
        ),
        "{:?}",
        limiter.metrics()
    );
}

fn no_fault(limiter: &RedisLimiter, leased: &LeasedLimiter, breaker: &FleetBreaker) {
    assert_eq!(limiter.metrics().faults, 0, "{:?}", limiter.metrics());
    assert!(!limiter.is_degraded());
    let lm = leased.limiter().metrics();
    assert_eq!(lm.faults, 0, "{lm:?}");
    assert_eq!(
        breaker.fleet_metrics().errors,
        0,
        "{:?}",
        breaker.fleet_metrics()
    );
    assert!(!breaker.is_degraded());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_killed_between_requests_fail_no_request() {
    let server = RedisServer::start();
    let config = server.outage_config(Duration::from_millis(500));
    let limiter = limiter(
        RedisBackend::connect(config.clone()).await.unwrap(),
        "killed",
    );
    let leased = LeasedLimiter::new(
        self::limiter(RedisBackend::connect(config).await.unwrap(), "killed_lease"),
        "all",
        5,
        Duration::from_secs(60),
    )
    .unwrap();
    let breaker = breaker(&server.url(), "killed").await;
    // Every connection made (the limiters connect on first use).
    each_answered(&limiter, &leased, &breaker).await;
    for _ in 0..4 {
        // Every client connection closed by the server (not this one).
        let killed = cli(server.port(), &["client", "kill", "type", "normal"]);
        assert!(killed.trim().parse::<u32>().unwrap() >= 3, "{killed}");
        each_answered(&limiter, &leased, &breaker).await;
        no_fault(&limiter, &leased, &breaker);
    }
    // 5 decisions and 5 leases of 5 (one per request, spent at once).
    let left = limiter.try_acquire_n("k", 0).await.unwrap().remaining;
    assert_eq!(left, 95);
}

/// The same through the server's own idle timeout: requests 2.5 s apart
/// on a server that closes clients idle for 1 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_further_apart_than_the_servers_idle_timeout_fail_none() {
    let server = RedisServer::start_with(&["--timeout", "1"]);
    let config = server.outage_config(Duration::from_millis(500));
    let limiter = limiter(RedisBackend::connect(config.clone()).await.unwrap(), "idle");
    let leased = LeasedLimiter::new(
        self::limiter(RedisBackend::connect(config).await.unwrap(), "idle_lease"),
        "all",
        5,
        Duration::from_secs(60),
    )
    .unwrap();
    let breaker = breaker(&server.url(), "idle").await;
    each_answered(&limiter, &leased, &breaker).await;
    let before = cli(server.port(), &["info", "stats"]);
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        each_answered(&limiter, &leased, &breaker).await;
        no_fault(&limiter, &leased, &breaker);
    }
    // The server did close them (a new connection per request round).
    let after = cli(server.port(), &["info", "stats"]);
    assert!(
        connections_received_in(&after) >= connections_received_in(&before) + 6,
        "{before}\n{after}"
    );
}

/// Connections killed while four instances race on one key: a command
/// sent again after its connection closed may have run already (its
/// tokens then taken twice), so it may cost an admission, never add one:
/// the instances' admissions (all Redis's: a request failing for a kill
/// is refused, `FailClosed`) add up to at most the quota of 40 an hour.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_killed_mid_race_never_admit_beyond_the_quota() {
    let server = RedisServer::start();
    let rules = Rules::single("per_hour", Quota::per_hour(40).unwrap()).unwrap();
    let mut fleet = Vec::new();
    for _ in 0..4 {
        let backend = RedisBackend::connect(server.outage_config(Duration::from_millis(500)))
            .await
            .unwrap();
        fleet.push(Arc::new(
            RedisLimiter::builder("raced", rules.clone(), backend)
                .degrade(Degrade::FailClosed)
                .probe_backoff(Duration::from_millis(5), Duration::from_millis(20))
                .build()
                .unwrap(),
        ));
    }
    let port = server.port();
    let killer = tokio::spawn(async move {
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(15)).await;
            cli(port, &["client", "kill", "type", "normal"]);
        }
    });
    let tasks: Vec<_> = fleet
        .iter()
        .map(|l| {
            let l = Arc::clone(l);
            tokio::spawn(async move {
                let mut admitted = 0;
                for _ in 0..100 {
                    let d = l.try_acquire("k").await.unwrap();
                    if d.allowed {
                        assert_eq!(d.source, Source::Redis, "{d:?}");
                        admitted += 1;
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                admitted
            })
        })
        .collect();
    let mut admitted = 0;
    for t in tasks {
        admitted += t.await.unwrap();
    }
    killer.await.unwrap();
    assert!((1..=40).contains(&admitted), "{admitted} admitted");
    // What Redis holds agrees: no token left to take.
    let last = fleet[0].try_acquire("k").await.unwrap();
    assert!(!last.allowed || admitted < 40, "{last:?}");
}
