//! The fleet breaker on a Redis that answers reads but refuses writes: a
//! full server (`maxmemory` with `noeviction`: `OOM command not allowed`).
//! A trip or a close the instance cannot publish keeps it degraded (its
//! health says so) until Redis takes writes again; then it publishes by
//! itself, with no request and no restart, and the other instances follow.

use std::sync::Arc;
use std::time::Duration;

use crate::common::fleet::{instance_over, stored, sync_ok, trip, until_state};
use crate::common::redis_server::{cli, RedisServer};
use fusebox::breaker::{CircuitBreaker, Config, State};
use fusebox_std::backend::FleetBreaker;
use fusebox_std::Registry;
use tokio::time::Instant;

/// Two failures in a row trip it; open `open_for`.
fn core(open_for: Duration) -> Arc<CircuitBreaker> {
    Arc::new(CircuitBreaker::new(
        Config::builder()
            .consecutive_failures(2)
            .open_for(open_for.into())
            .build()
            .unwrap(),
    ))
}

fn refuse_writes(server: &RedisServer) {
    cli(
        server.port(),
        &["config", "set", "maxmemory-policy", "noeviction"],
    );
    cli(server.port(), &["config", "set", "maxmemory", "1"]);
}

fn take_writes(server: &RedisServer) {
    cli(server.port(), &["config", "set", "maxmemory", "0"]);
}

/// Polls `f` every 10 ms until it holds, failing after `limit`.
async fn until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A trip made while Redis is full cannot be published: the tripping
/// instance is degraded (and its registry's health says so), the other
/// instance, which only reads, is not, and stays closed. Once Redis takes
/// writes again the trip is published by the background task alone and
/// the other instance opens; nothing was counted corrupt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_breaker_a_trip_on_a_full_redis_is_degraded_then_published_by_itself() {
    let server = RedisServer::start();
    let url = server.url();
    let sync = Duration::from_millis(50);
    let a = instance_over(&url, "full", core(Duration::from_secs(30)), sync).await;
    let b = instance_over(&url, "full", core(Duration::from_secs(30)), sync).await;
    let registry = Registry::new();
    registry.register_fleet_breaker(&a).unwrap();
    sync_ok(&a).await;
    sync_ok(&b).await;

    refuse_writes(&server);
    trip(&a).await;
    until(
        "the tripping instance degraded",
        Duration::from_secs(5),
        || a.is_degraded(),
    )
    .await;
    // Several reconciliations later: still unpublished, still degraded.
    let errors = a.fleet_metrics().errors;
    until("more reconciliations", Duration::from_secs(5), || {
        a.fleet_metrics().errors >= errors + 2
    })
    .await;
    assert!(a.is_degraded());
    let health = registry.health();
    assert!(health.degraded, "{health:?}");
    assert!(
        health
            .reasons
            .iter()
            .any(|r| r.contains("full is degraded")),
        "{:?}",
        health.reasons
    );
    assert_eq!((b.state(), b.is_degraded()), (State::Closed, false));
    assert!(stored(&url, a.decision_key()).await.contains(":c:"));

    take_writes(&server);
    until_state(&b, State::Open, Duration::from_secs(5)).await;
    until(
        "the tripping instance recovered",
        Duration::from_secs(5),
        || !a.is_degraded(),
    )
    .await;
    // Healthy but for the breaker being open.
    let reasons = registry.health().reasons;
    assert!(
        !reasons.iter().any(|r| r.contains("degraded")),
        "{reasons:?}"
    );
    assert_eq!(a.state(), State::Open);
    assert_eq!(a.fleet_state(), Some(State::Open));
    assert_eq!(a.fleet_metrics().corrupt + b.fleet_metrics().corrupt, 0);
    assert!(stored(&url, a.decision_key()).await.contains(":o:"));
}

/// An instance of the breaker `name` whose trip the fleet took: open,
/// for 300 ms, in Redis and here. It reconciles only when woken (a local
/// transition) or asked to.
async fn tripped(url: &str, name: &str) -> FleetBreaker {
    let a = instance_over(
        url,
        name,
        core(Duration::from_millis(300)),
        Duration::from_secs(3600),
    )
    .await;
    trip(&a).await;
    sync_ok(&a).await;
    assert!(stored(url, a.decision_key()).await.contains(":o:"));
    a
}

/// Instances whose trials closed their breakers while Redis was full: the
/// closes cannot be published (the fleet's decisions stay open), so the
/// instances must stay degraded. Before the fix the trial slot's release,
/// which only reads when no slot was granted, ended the outage whenever
/// it was the last command answered (in about half the instances here):
/// `is_degraded` false, no reason in the health report and "fleet breaker
/// reconnected" logged, while every reconciliation still failed and the
/// next one was up to twice the sync interval away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_breaker_a_trial_slot_released_on_a_full_redis_does_not_end_the_outage() {
    let server = RedisServer::start();
    let url = server.url();
    let mut fleet = Vec::new();
    for i in 0..10 {
        fleet.push(tripped(&url, &format!("flap{i}")).await);
    }
    refuse_writes(&server);
    for a in &fleet {
        until_state(a, State::HalfOpen, Duration::from_secs(3)).await;
    }
    // The trials: each asks Redis for a slot (which needs a write: refused,
    // degraded), runs locally and succeeds; the local breaker closes.
    let trials: Vec<_> = fleet
        .iter()
        .map(|a| {
            let a = a.clone();
            tokio::spawn(async move { a.call(async { Ok::<_, ()>(()) }).await })
        })
        .collect();
    for t in trials {
        t.await.unwrap().unwrap();
    }
    // Every instance tried to publish its close (and failed), and gave
    // its slot back (answered: a read).
    for a in &fleet {
        until(
            "the close tried and the slot given back",
            Duration::from_secs(5),
            || a.fleet_metrics().errors >= 2 && a.state() == State::Closed,
        )
        .await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for a in &fleet {
        assert_eq!(a.fleet_state(), Some(State::Open), "{}", a.name());
        assert!(stored(&url, a.decision_key()).await.contains(":o:"));
        assert!(
            a.is_degraded(),
            "{}: Redis refuses writes and its close is unpublished, yet not degraded ({:?})",
            a.name(),
            a.fleet_metrics()
        );
    }
    // Redis takes writes: each close is published at the next
    // reconciliation (a sync here), and the outage ends.
    take_writes(&server);
    for a in &fleet {
        sync_ok(a).await;
        assert!(!a.is_degraded());
        assert!(stored(&url, a.decision_key()).await.contains(":c:"));
        assert_eq!(a.fleet_state(), Some(State::Closed));
    }
}
