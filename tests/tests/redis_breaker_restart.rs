//! The fleet breaker (`FleetBreaker`) across restarts of Redis that lose
//! its data (no persistence, or `FLUSHALL`): the shared version counter
//! starts again from nothing while running instances hold higher ones.
//! Every instance must converge on the documented behaviour: a trip
//! anywhere opens all, and a merge never closes an open breaker.

use std::sync::Arc;
use std::time::Duration;

use crate::common::fleet::{backend, instance_over, raw, stored, sync_ok, trip, until_state};
use crate::common::redis_server::RedisServer;
use fusebox::breaker::{CircuitBreaker, Config, State};
use fusebox_std::backend::FleetBreaker;
use tokio::time::Instant;

const SYNC: Duration = Duration::from_millis(50);

/// Two failures trip it; open `open_for`.
fn core(open_for: Duration) -> Arc<CircuitBreaker> {
    Arc::new(CircuitBreaker::new(
        Config::builder()
            .consecutive_failures(2)
            .open_for(open_for.into())
            .build()
            .unwrap(),
    ))
}

async fn instance(url: &str, name: &str, open_for: Duration) -> FleetBreaker {
    instance_over(url, name, core(open_for), SYNC).await
}

async fn flushall(url: &str) {
    let mut conn = raw(url).await;
    redis::cmd("FLUSHALL")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
}

/// The fleet opened and closed (instances hold version 2), then Redis
/// restarted empty. The stored breaker was open while it was down: every
/// instance (and a fresh one) recovers, and the fleet's open decision,
/// repopulated, ends in a closed fleet through one trial; the versions
/// go on from the instances' own, none refused as stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_breaker_an_open_fleet_survives_a_restart_and_closes_by_a_trial() {
    let mut server = RedisServer::start();
    let url = server.url();
    let open_for = Duration::from_millis(400);
    let a = instance(&url, "restart_open", open_for).await;
    let b = instance(&url, "restart_open", open_for).await;
    trip(&a).await;
    sync_ok(&a).await;
    until_state(&b, State::Open, Duration::from_secs(2)).await;
    // Restarted empty while open.
    server.kill();
    server.restart();
    sync_ok(&a).await;
    sync_ok(&b).await;
    let fresh = instance(&url, "restart_open", open_for).await;
    for x in [&a, &b, &fresh] {
        sync_ok(x).await;
        assert!(
            matches!(x.state(), State::Open | State::HalfOpen),
            "{:?}, stored {}",
            x.state(),
            stored(&url, a.decision_key()).await
        );
    }
    // Its time runs out: one trial closes the fleet.
    until_state(&fresh, State::HalfOpen, Duration::from_secs(2)).await;
    fresh.call(async { Ok::<_, ()>(()) }).await.unwrap();
    for x in [&a, &b, &fresh] {
        until_state(x, State::Closed, Duration::from_secs(3)).await;
    }
    let stored = stored(&url, a.decision_key()).await;
    assert!(stored.contains(":c:"), "{stored}");
}

/// Redis lost its data while the fleet held version 2 (closed); a fresh
/// instance, started since, numbers its decisions from 0. Its trip must
/// open the fleet (a trip anywhere opens all) and never be closed again
/// by an older instance finding a version below its own. Before, the
/// older instance took the fresh one's open decision (version 1) for a
/// store rolled back and wrote its own closed state over it at version
/// 2: the fresh instance merged that and closed before its open time,
/// and no other instance ever opened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_breaker_a_trip_after_redis_lost_its_data_opens_the_older_instances() {
    for restart in [false, true] {
        let mut server = RedisServer::start();
        let url = server.url();
        let open_for = Duration::from_secs(30);
        let a = instance(&url, "restart_trip", open_for).await;
        let b = instance(&url, "restart_trip", open_for).await;
        trip(&a).await;
        sync_ok(&a).await;
        until_state(&b, State::Open, Duration::from_secs(2)).await;
        a.force_close().await.unwrap();
        for x in [&a, &b] {
            until_state(x, State::Closed, Duration::from_secs(2)).await;
        }
        if restart {
            server.kill();
            server.restart();
        } else {
            flushall(&url).await;
        }
        let fresh = instance(&url, "restart_trip", open_for).await;
        trip(&fresh).await;
        sync_ok(&fresh).await;
        // The older instances reconcile (every sync interval).
        tokio::time::sleep(SYNC * 6).await;
        sync_ok(&a).await;
        sync_ok(&b).await;
        sync_ok(&fresh).await;
        let stored = stored(&url, a.decision_key()).await;
        assert_eq!(
            fresh.state(),
            State::Open,
            "restart {restart}: a fresh instance's trip was closed by a merge, stored {stored}"
        );
        assert_eq!(
            (a.state(), b.state()),
            (State::Open, State::Open),
            "restart {restart}: a trip after Redis lost its data must open all, stored {stored}"
        );
        assert!(stored.contains(":o:"), "{stored}");
    }
}

/// Redis lost its data while the fleet was half-open and a trial was
/// running on A: the trial's success closes the breaker for all ("their
/// result closes or reopens it for all"), B included, which has had no
/// call since. Before, A wrote its closed state back at the version it
/// held: B, holding that version half-open, took it for a decision
/// rewritten by hand and stayed half-open (its calls limited to its
/// trial permits) until a call of its own closed it; and when B reached
/// Redis first, it wrote back that half-open decision as a new version,
/// in which A's trial (granted in the old one) no longer counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_breaker_a_trial_that_succeeds_after_redis_lost_its_data_closes_all() {
    for b_first in [true, false] {
        let server = RedisServer::start();
        let url = server.url();
        let open_for = Duration::from_millis(300);
        let a = instance(&url, "restart_trial", open_for).await;
        // B reconciles only when told to: the order is the test's.
        let b = FleetBreaker::builder("restart_trial", core(open_for), backend(&url).await)
            .sync_interval(Duration::from_secs(60))
            .build()
            .await
            .expect("fleet breaker");
        trip(&a).await;
        sync_ok(&a).await;
        sync_ok(&b).await;
        assert_eq!(b.state(), State::Open);
        until_state(&a, State::HalfOpen, Duration::from_secs(2)).await;
        until_state(&b, State::HalfOpen, Duration::from_secs(2)).await;
        // The trial starts (its slot granted), B sees the half-open
        // decision it runs in, then Redis loses everything.
        let (started, go) = (
            Arc::new(tokio::sync::Notify::new()),
            Arc::new(tokio::sync::Notify::new()),
        );
        let trial = {
            let (a, started, go) = (a.clone(), Arc::clone(&started), Arc::clone(&go));
            tokio::spawn(async move {
                a.call(async move {
                    started.notify_one();
                    go.notified().await;
                    Ok::<_, ()>(())
                })
                .await
            })
        };
        started.notified().await;
        sync_ok(&b).await;
        assert_eq!(b.fleet_state(), Some(State::HalfOpen));
        flushall(&url).await;
        if b_first {
            // B writes back the half-open decision it holds.
            sync_ok(&b).await;
        }
        go.notify_one();
        trial.await.unwrap().expect("the trial succeeds");
        assert_eq!(a.state(), State::Closed);
        // A reports its trial's success (at once, from the slot's drop).
        let start = Instant::now();
        while b.state() != State::Closed {
            assert!(
                start.elapsed() < Duration::from_secs(3),
                "B first {b_first}: B still {:?} (fleet {:?}), stored {}",
                b.state(),
                b.fleet_state(),
                stored(&url, a.decision_key()).await
            );
            tokio::time::sleep(SYNC).await;
            sync_ok(&b).await;
        }
        assert_eq!(a.state(), State::Closed);
        let stored = stored(&url, a.decision_key()).await;
        assert!(stored.contains(":c:"), "{stored}");
    }
}

/// A fleet forced open stays forced open across a restart that lost
/// Redis's data (an instance that holds it writes it back), a fresh
/// instance started since adopts it, and one force close from any
/// instance closes all: no version held anywhere is refused as stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_breaker_a_forced_open_fleet_survives_a_restart_and_closes_on_one_force_close() {
    let mut server = RedisServer::start();
    let url = server.url();
    let open_for = Duration::from_millis(200);
    let a = instance(&url, "restart_forced", open_for).await;
    let b = instance(&url, "restart_forced", open_for).await;
    a.force_open().await.unwrap();
    until_state(&b, State::ForcedOpen, Duration::from_secs(2)).await;
    server.kill();
    server.restart();
    let fresh = instance(&url, "restart_forced", open_for).await;
    sync_ok(&a).await;
    sync_ok(&b).await;
    sync_ok(&fresh).await;
    // Longer than any open time: forced open does not end by itself.
    tokio::time::sleep(open_for * 3).await;
    for x in [&a, &b, &fresh] {
        sync_ok(x).await;
        assert_eq!(
            x.state(),
            State::ForcedOpen,
            "stored {}",
            stored(&url, a.decision_key()).await
        );
    }
    fresh.force_close().await.unwrap();
    for x in [&a, &b, &fresh] {
        until_state(x, State::Closed, Duration::from_secs(2)).await;
    }
}
