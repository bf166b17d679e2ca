//! The backend as a Redis ACL user with only the permissions the README
//! lists (read from the README itself, so the two cannot drift apart),
//! the default user switched off as in a locked-down deployment: every
//! part of the backend runs, and Redis's `ACL LOG` (an entry per command,
//! key or channel it refused) stays empty. The control: the same user
//! without `+script|load` works until Redis loses its scripts, and the
//! refusal is then seen (in `ACL LOG`, and as a degraded limiter).

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use crate::common::fleet::{sync_ok, trip, until_state};
use crate::common::redis_server::{cli, RedisCluster, RedisServer};
use fusebox::breaker::State;
use fusebox::bucket::Quota;
use fusebox_std::backend::{
    Degrade, FleetBreaker, FleetConfig, FleetPercentiles, LeasedLimiter, RedisBackend, RedisConfig,
    RedisLimiter, Rules, Source,
};
use fusebox_std::{Registry, TrackerConfig};
use redis::Value;
use tokio::time::Instant;

const PASSWORD: &str = "acl-user-pw";
const ADMIN: &str = "acl-admin-pw";

/// The README's `ACL SETUSER fusebox …` lines, as arguments, with
/// [`PASSWORD`] for the placeholder: the user's rules first, then what a
/// Cluster's nodes need besides.
fn documented_rules() -> Vec<Vec<String>> {
    let readme = include_str!("../../README.md");
    let lines: Vec<Vec<String>> = readme
        .lines()
        .filter(|l| l.starts_with("ACL SETUSER fusebox "))
        .map(|l| {
            l.split_whitespace()
                .map(|w| w.replace(">PASSWORD", &format!(">{PASSWORD}")))
                .collect()
        })
        .collect();
    assert_eq!(lines.len(), 2, "the README lists the backend's ACL");
    assert!(lines[0].contains(&format!(">{PASSWORD}")), "{lines:?}");
    lines
}

/// Makes `port`'s server as locked down as a deployment's: `rules` (`ACL
/// SETUSER` lines) make the user `fusebox`, `admin` may do anything, and
/// the default user is off. An admin connection.
async fn lock_down(port: u16, rules: &[Vec<String>]) -> redis::aio::MultiplexedConnection {
    for line in rules {
        let line: Vec<&str> = line.iter().map(String::as_str).collect();
        assert_eq!(cli(port, &line).trim(), "OK", "{line:?}");
    }
    let admin = [
        "ACL",
        "SETUSER",
        "admin",
        "on",
        ">acl-admin-pw",
        "~*",
        "&*",
        "+@all",
    ];
    assert_eq!(cli(port, &admin).trim(), "OK");
    assert_eq!(
        cli(port, &["ACL", "SETUSER", "default", "off"]).trim(),
        "OK"
    );
    redis::Client::open(format!("redis://admin:{ADMIN}@127.0.0.1:{port}"))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("admin")
}

/// The user's URL for `port`.
fn user_url(port: u16) -> String {
    format!("redis://fusebox:{PASSWORD}@127.0.0.1:{port}")
}

/// What the servers refused so far, one line per `ACL LOG` entry.
async fn refused(admins: &mut [redis::aio::MultiplexedConnection]) -> Vec<String> {
    let mut out = Vec::new();
    for admin in admins {
        let log: Vec<Value> = redis::cmd("ACL")
            .arg("LOG")
            .query_async(admin)
            .await
            .unwrap();
        out.extend(log.iter().map(|entry| format!("{entry:?}")));
    }
    out
}

/// `REPLICAOF` the local server on `port`, or `NO ONE`.
async fn replica_of(admin: &mut redis::aio::MultiplexedConnection, port: Option<u16>) {
    let mut cmd = redis::cmd("REPLICAOF");
    match port {
        Some(port) => cmd.arg("127.0.0.1").arg(port),
        None => cmd.arg("NO").arg("ONE"),
    };
    let () = cmd.query_async(admin).await.unwrap();
}

async fn flush_scripts(admins: &mut [redis::aio::MultiplexedConnection]) {
    for admin in admins {
        let () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async(admin)
            .await
            .unwrap();
    }
}

/// Where the user connects: one server, or a Cluster's nodes.
#[derive(Clone, Debug)]
enum Target {
    Standalone(String),
    Cluster(Vec<String>),
}

impl Target {
    /// The URL notifications subscribe through (any node of a Cluster).
    fn url(&self) -> &str {
        match self {
            Target::Standalone(url) => url,
            Target::Cluster(urls) => &urls[0],
        }
    }
}

async fn backend(target: &Target) -> RedisBackend {
    let config = match target {
        Target::Standalone(url) => RedisConfig::new(url),
        Target::Cluster(urls) => RedisConfig::cluster(urls.clone()),
    };
    RedisBackend::connect(
        config
            .timeout(Duration::from_millis(500))
            .connect_timeout(Duration::from_secs(5))
            .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200)),
    )
    .await
    .expect("connect as the ACL user")
}

/// Five a minute: no token comes back while a test runs its six
/// requests (at five a second, the sixth was admitted whenever the six
/// took over 200 ms: 1 run in 20 of the Cluster test on a loaded machine).
fn rules() -> Rules {
    Rules::single("per_minute", Quota::per_minute(5).unwrap()).unwrap()
}

/// Decisions, a lost script cache, an outage of `server` (if given) and
/// the background probe that ends it (a peek and a write), and a leased
/// limiter.
async fn limits(
    target: &Target,
    admins: &mut [redis::aio::MultiplexedConnection],
    server: Option<&RedisServer>,
) {
    let limiter = RedisLimiter::builder("acl_limit", rules(), backend(target).await)
        .degrade(Degrade::FailClosed)
        .probe_backoff(Duration::from_millis(20), Duration::from_millis(100))
        .background_probe(true)
        .build()
        .unwrap();
    for i in 0..6 {
        let d = limiter.try_acquire("k").await.unwrap();
        assert_eq!((d.allowed, d.source), (i < 5, Source::Redis), "request {i}");
    }
    flush_scripts(admins).await;
    let d = limiter.try_acquire("k2").await.unwrap();
    assert_eq!((d.allowed, d.source), (true, Source::Redis), "reloaded");

    if let Some(server) = server {
        server.signal("STOP");
        let d = limiter.try_acquire("k3").await.unwrap();
        assert_eq!((d.allowed, d.source), (false, Source::FailClosed));
        // Checked while Redis is still stopped: the background probe (20
        // ms after the fault) is answered the moment Redis resumes, so
        // after `CONT` the limiter may have recovered already (1 run in 6
        // on a loaded machine: `kill -CONT` took longer than the backoff).
        assert!(limiter.is_degraded());
        server.signal("CONT");
        let start = Instant::now();
        while limiter.is_degraded() {
            assert!(start.elapsed() < Duration::from_secs(5), "never recovered");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    if server.is_some() {
        // The server made a replica, as a failover leaves the old primary:
        // writes are answered READONLY, and the connection looks for a
        // primary at its address (`ROLE`), finds none and keeps its own;
        // once the server is a primary again the limiter recovers.
        let primary = RedisServer::start();
        replica_of(&mut admins[0], Some(primary.port())).await;
        let start = Instant::now();
        while !limiter.is_degraded() {
            assert!(start.elapsed() < Duration::from_secs(5), "never read-only");
            let _ = limiter.try_acquire("k4").await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Long enough for the look, which runs beside the commands.
        tokio::time::sleep(Duration::from_millis(300)).await;
        replica_of(&mut admins[0], None).await;
        let start = Instant::now();
        while limiter.is_degraded() {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "never writable again"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    let inner = RedisLimiter::builder("acl_lease", rules(), backend(target).await)
        .build()
        .unwrap();
    let leased = LeasedLimiter::new(inner, "tenant", 2, Duration::from_secs(1)).unwrap();
    let mut sources = Vec::new();
    for _ in 0..4 {
        let d = leased.try_acquire().await.unwrap();
        assert!(d.allowed, "{d:?}");
        sources.push(d.source);
    }
    assert!(sources.contains(&Source::Lease), "{sources:?}");
}

/// Two instances with notifications: a trip, its trial closing the
/// fleet, the operators' force-open and force-close; then quorum mode.
async fn breakers(target: &Target) {
    let open_for = Duration::from_millis(300);
    let mut fleet = Vec::new();
    for _ in 0..2 {
        let b = FleetBreaker::builder(
            "acl_breaker",
            common::core_breaker(2, open_for),
            backend(target).await,
        )
        .sync_interval(Duration::from_secs(5))
        .notifications(target.url())
        .build()
        .await
        .expect("fleet breaker");
        fleet.push(b);
    }
    tokio::time::sleep(Duration::from_millis(200)).await; // subscribed
    trip(&fleet[0]).await;
    until_state(&fleet[1], State::Open, Duration::from_secs(2)).await;
    tokio::time::sleep(open_for + Duration::from_millis(50)).await;
    // One fleet-wide trial slot: A's slow trial holds it while B asks
    // for one (the script checks the taken slot's expiry).
    let slow = fleet[0].call(async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok::<(), ()>(())
    });
    let other = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        fleet[1].call(async { Ok::<(), ()>(()) }).await
    };
    let (slow, other) = tokio::join!(slow, other);
    assert!(slow.is_ok() || other.is_ok(), "{slow:?} {other:?}");
    for b in &fleet {
        until_state(b, State::Closed, Duration::from_secs(2)).await;
    }
    fleet[1].force_open().await.unwrap();
    until_state(&fleet[0], State::ForcedOpen, Duration::from_secs(2)).await;
    fleet[1].force_close().await.unwrap();
    until_state(&fleet[0], State::Closed, Duration::from_secs(2)).await;
    for b in &fleet {
        sync_ok(b).await;
    }

    let mut quorum = Vec::new();
    for id in ["q1", "q2"] {
        let b = FleetBreaker::builder(
            "acl_quorum",
            common::core_breaker(2, Duration::from_secs(30)),
            backend(target).await,
        )
        .sync_interval(Duration::from_millis(100))
        .quorum(2, Duration::from_secs(10))
        .instance_id(id)
        .build()
        .await
        .expect("quorum breaker");
        quorum.push(b);
    }
    trip(&quorum[0]).await;
    trip(&quorum[1]).await;
    for b in &quorum {
        sync_ok(b).await;
    }
}

/// Two instances' histograms pushed and read back, the first's field
/// expired for the second and deleted by it.
async fn percentiles(target: &Target) {
    let mut fleet = Vec::new();
    for pod in ["pod-a", "pod-b"] {
        let registry = Registry::new();
        let config = TrackerConfig {
            sample_rate: 1.0,
            ..TrackerConfig::default()
        };
        let tracker = registry.tracker("http", config).unwrap();
        drop(tracker.track_operation("GET /"));
        // pod-b's histograms count for 1 s, so pod-a's push, read by
        // pod-b 1.5 s later, is expired there and deleted, and pod-b's
        // own, read right after its push, is not (with 50 ms and 100 ms,
        // pod-b's own expired too whenever its push and read took over
        // 50 ms: 0 instances, 1 run in 20 of the Cluster test on a loaded
        // machine).
        let ttl = if pod == "pod-b" { 1_000 } else { 10_000 };
        let config = FleetConfig::new(pod)
            .unwrap()
            .ttl(Duration::from_millis(ttl));
        fleet.push(FleetPercentiles::new(
            "http",
            tracker,
            &backend(target).await,
            config,
        ));
    }
    fleet[0].sync().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    fleet[1].sync().await.unwrap();
    let report = fleet[1].report();
    assert_eq!(report.error, None);
    assert_eq!(report.series["GET /"].instances, 1, "pod-a's expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_acl_is_all_the_backend_needs() {
    let server = RedisServer::start();
    let mut admins = [lock_down(server.port(), &documented_rules()[..1]).await];
    let target = Target::Standalone(user_url(server.port()));
    limits(&target, &mut admins, Some(&server)).await;
    breakers(&target).await;
    percentiles(&target).await;
    let refused = refused(&mut admins).await;
    assert!(refused.is_empty(), "Redis refused: {refused:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_acl_is_all_the_backend_needs_on_a_cluster() {
    let cluster = RedisCluster::start(3);
    let mut admins = Vec::new();
    for node in &cluster.nodes {
        admins.push(lock_down(node.port(), &documented_rules()).await);
    }
    let target = Target::Cluster(cluster.nodes.iter().map(|n| user_url(n.port())).collect());
    limits(&target, &mut admins, None).await;
    breakers(&target).await;
    percentiles(&target).await;
    let refused = refused(&mut admins).await;
    assert!(refused.is_empty(), "Redis refused: {refused:#?}");
}

/// The control: the checks above see a missing permission.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_script_load_a_lost_script_cache_degrades_the_limiter() {
    let rules: Vec<String> = documented_rules()[0]
        .iter()
        .filter(|r| *r != "+script|load")
        .cloned()
        .collect();
    let server = RedisServer::start();
    let mut admins = [lock_down(server.port(), &[rules]).await];
    let target = Target::Standalone(user_url(server.port()));
    let limiter = RedisLimiter::builder("acl_limit", self::rules(), backend(&target).await)
        .degrade(Degrade::FailClosed)
        .registry(Arc::new(Registry::new()))
        .build()
        .unwrap();
    // A fresh server holds no script: the first decision must load it.
    let d = limiter.try_acquire("k").await.unwrap();
    assert_eq!(d.source, Source::FailClosed);
    let refused = refused(&mut admins).await;
    assert!(
        refused.iter().any(|e| e.contains("script|load")),
        "{refused:#?}"
    );
    assert!(limiter.is_degraded());
}
