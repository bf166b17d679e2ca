//! The fleet breaker (`FleetBreaker`) used carelessly, against a real
//! redis-server: local operations on its core that must not leak to the
//! fleet as decisions nobody made.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::fleet::{backend, raw, stored, trip, until_state};
use crate::common::redis_server::RedisServer;
use fusebox::breaker::{CircuitBreaker, Config, State, Transition};
use fusebox::{Clock, Instant};
use fusebox_std::backend::FleetBreaker;
use fusebox_std::policy::BreakerObserver;
use fusebox_std::CallError;

const SYNC: Duration = Duration::from_millis(50);

/// Two failures trip it; open 300 ms.
fn core() -> Arc<CircuitBreaker> {
    Arc::new(CircuitBreaker::new(
        Config::builder()
            .consecutive_failures(2)
            .open_for(Duration::from_millis(300).into())
            .build()
            .unwrap(),
    ))
}

async fn instance(url: &str, name: &str) -> FleetBreaker {
    FleetBreaker::builder(name, core(), backend(url).await)
        .sync_interval(SYNC)
        .build()
        .await
        .expect("fleet breaker")
}

/// Resetting the local core (an operator clearing one instance's
/// counters, documented by the core as "closed, zero counters") is no
/// trip: the fleet stays closed. Before, the trip counter going back to
/// zero read as "a local trip not yet published", and the next
/// reconciliation opened the breaker on every instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_breaker_a_local_reset_never_opens_the_fleet() {
    let server = RedisServer::start();
    let url = server.url();
    let a = instance(&url, "ledger").await;
    let b = instance(&url, "ledger").await;
    // A tripped once, long ago; the fleet was closed again since.
    trip(&a).await;
    until_state(&b, State::Open, Duration::from_secs(2)).await;
    b.force_close().await.unwrap();
    until_state(&a, State::Closed, Duration::from_secs(2)).await;
    a.sync().await.unwrap();
    let closed = stored(&url, a.decision_key()).await;
    assert!(closed.contains(":c:"), "{closed}");

    // An operator resets A's local breaker.
    let now = a.policy().clock().now();
    assert!(a.core().reset(now).is_none(), "already closed");
    for _ in 0..5 {
        a.sync().await.unwrap();
        b.sync().await.unwrap();
    }
    tokio::time::sleep(SYNC * 4).await;
    assert_eq!(
        stored(&url, a.decision_key()).await,
        closed,
        "the shared decision is unchanged"
    );
    assert_eq!((a.state(), b.state()), (State::Closed, State::Closed));
    assert_eq!(a.metrics().trips, 0);

    // A real trip after the reset is still published.
    trip(&a).await;
    until_state(&b, State::Open, Duration::from_secs(2)).await;
}

/// Closing the local core by hand (its `reset` or `force_close`) while the
/// fleet waits for a trial is no trial's success: the fleet stays open
/// until a trial closes it. Before, the next reconciliation reported the
/// local close as a trial decided locally, and the script closed the
/// fleet's expired open decision for every instance, no call having
/// succeeded anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_breaker_a_local_reset_or_force_close_never_closes_the_fleet() {
    let server = RedisServer::start();
    let url = server.url();
    for (round, name) in ["invoices", "receipts"].into_iter().enumerate() {
        let a = instance(&url, name).await;
        let b = instance(&url, name).await;
        trip(&a).await;
        until_state(&b, State::Open, Duration::from_secs(2)).await;
        // The fleet's open time runs out: both wait for a trial.
        until_state(&a, State::HalfOpen, Duration::from_secs(2)).await;
        until_state(&b, State::HalfOpen, Duration::from_secs(2)).await;
        let open = stored(&url, a.decision_key()).await;
        assert!(open.contains(":o:"), "{open}");
        let now = a.policy().clock().now();
        if round == 0 {
            a.core().reset(now).expect("half-open -> closed");
        } else {
            a.core().force_close(now).expect("half-open -> closed");
        }
        for _ in 0..5 {
            a.sync().await.unwrap();
            b.sync().await.unwrap();
        }
        tokio::time::sleep(SYNC * 4).await;
        let after = stored(&url, a.decision_key()).await;
        assert!(after.contains(":o:"), "{name}: no trial closed it: {after}");
        assert_eq!(b.state(), State::HalfOpen, "{name}");
        // A trial on B still decides for everyone. Its slot request wrote
        // the half-open decision (`fb1:2:h:0:0`); its success closes B's
        // local breaker at once, but the fleet's decision only once the
        // close is published, by a task the slot spawns and by B's
        // background task: a read right after the call could find the
        // half-open decision still (on a loaded machine).
        b.call(async { Ok::<_, ()>(()) }).await.expect("B's trial");
        until_state(&b, State::Closed, Duration::from_secs(2)).await;
        until_stored(&url, a.decision_key(), ":c:", name).await;
    }
}

/// Waits (polling every 5 ms, at most 30 s) until the value stored under
/// `key` contains `want`: a decision published by a background task.
async fn until_stored(url: &str, key: &str, want: &str, name: &str) {
    let mut conn = raw(url).await;
    let start = tokio::time::Instant::now();
    loop {
        let value: Option<String> = redis::cmd("GET")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        let value = value.unwrap_or_default();
        if value.contains(want) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{name}: still {value} after 30 s, wanted {want}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The other side of the test above: a trial decided locally while Redis
/// was out still closes the fleet once Redis is back (the local close
/// was a trial's, counted by the observer hook).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_breaker_a_trial_decided_while_degraded_still_closes_the_fleet() {
    let mut server = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let url = server.url();
    let a = instance(&url, "refunds").await;
    let b = instance(&url, "refunds").await;
    trip(&a).await;
    until_state(&b, State::Open, Duration::from_secs(2)).await;
    server.kill();
    until_state(&a, State::HalfOpen, Duration::from_secs(2)).await;
    a.call(async { Ok::<_, ()>(()) })
        .await
        .expect("a local trial while degraded");
    assert!(a.is_degraded());
    assert_eq!(a.state(), State::Closed);
    server.restart();
    until_state(&b, State::Closed, Duration::from_secs(5)).await;
    let closed = stored(&url, a.decision_key()).await;
    assert!(closed.contains(":c:"), "{closed}");
}

/// Restoring a snapshot into the local core after `build` (an operator
/// carrying one instance's counters over a restart) is no trip while it
/// leaves the breaker closed, whichever way it moves the trip counter.
/// Before, a restored counter *ahead* of the one last published read as
/// a local trip not yet published (and one behind it, but above zero, as
/// trips since a reset): the next reconciliation opened the breaker on
/// every instance, though none had tripped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_breaker_a_restored_closed_snapshot_never_opens_the_fleet() {
    let server = RedisServer::start();
    let url = server.url();
    let a = instance(&url, "payouts").await;
    let b = instance(&url, "payouts").await;
    a.sync().await.unwrap();
    let closed = stored(&url, a.decision_key()).await;
    assert!(closed.contains(":c:"), "{closed}");
    for trips in [7, 3] {
        let now = a.policy().clock().now();
        let mut snapshot = a.core().snapshot(now);
        assert_eq!(snapshot.state, State::Closed);
        snapshot.metrics.trips = trips;
        a.core().restore(&snapshot, now).expect("a valid snapshot");
        assert_eq!(a.metrics().trips, trips);
        for _ in 0..5 {
            a.sync().await.unwrap();
            b.sync().await.unwrap();
        }
        tokio::time::sleep(SYNC * 4).await;
        assert_eq!(
            stored(&url, a.decision_key()).await,
            closed,
            "restored to {trips} trips: the shared decision is unchanged"
        );
        assert_eq!((a.state(), b.state()), (State::Closed, State::Closed));
    }
    // A real trip after the restores is still published.
    trip(&a).await;
    until_state(&b, State::Open, Duration::from_secs(2)).await;
}

/// An operator writes a decision with the version the instances already
/// hold but another state (`fb1:<v>:f:0:0` over `fb1:<v>:c:0:0`). The
/// instances do not apply it (they hold that version), and their report
/// must say so: `fleet_state` is the decision applied here. Before,
/// `fleet_state` (and health) said "forced open" while every call passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_breaker_a_rewritten_decision_of_the_same_version_is_not_reported_as_applied() {
    let server = RedisServer::start();
    let url = server.url();
    let a = instance(&url, "ledgers").await;
    a.sync().await.unwrap();
    let closed = stored(&url, a.decision_key()).await;
    let forced = closed.replace(":c:", ":f:");
    assert_ne!(closed, forced, "{closed}");
    let mut conn = raw(&url).await;
    let () = redis::cmd("SET")
        .arg(a.decision_key())
        .arg(&forced)
        .query_async(&mut conn)
        .await
        .unwrap();
    for _ in 0..3 {
        a.sync().await.unwrap();
    }
    a.call(async { Ok::<_, ()>(()) })
        .await
        .expect("the call passes");
    assert_eq!(a.state(), State::Closed);
    assert_eq!(
        a.fleet_state(),
        Some(State::Closed),
        "the decision applied here, not the one stored"
    );
    // The documented way: a newer version is applied.
    let newer = {
        let version: u64 = forced.split(':').nth(1).unwrap().parse().unwrap();
        format!("fb1:{}:f:0:0", version + 1)
    };
    let () = redis::cmd("SET")
        .arg(a.decision_key())
        .arg(&newer)
        .query_async(&mut conn)
        .await
        .unwrap();
    a.sync().await.unwrap();
    assert_eq!(
        (a.state(), a.fleet_state()),
        (State::ForcedOpen, Some(State::ForcedOpen))
    );
}

/// The fleet opened (A's trip), Redis went out, A's own trial closed it
/// locally once its open time was up, and Redis came back empty: A's
/// reconnect repopulates the store from its state (closed, at the version
/// it knows) and reports its trial's close. The stored decision, the
/// local breaker and every call agree: closed. Before, that reply (the
/// held version, another state) was taken for a decision rewritten by
/// hand: `fleet_state` (and health's `fleet_state`) said open for good,
/// until the next trip anywhere, with a warning telling the operator to
/// write a newer version that no one had written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_breaker_a_repopulated_close_of_the_held_version_is_reported_as_applied() {
    let mut server = RedisServer::start();
    let url = server.url();
    let a = instance(&url, "refunds").await;
    trip(&a).await;
    a.sync().await.unwrap();
    assert_eq!(
        (a.state(), a.fleet_state()),
        (State::Open, Some(State::Open))
    );
    server.kill();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(a.state(), State::HalfOpen);
    a.call(async { Ok::<_, ()>(()) })
        .await
        .expect("a local trial while Redis is out");
    assert_eq!(a.state(), State::Closed);
    // Longer than the command timeout (500 ms): no command read before
    // the trial closed the breaker is still on its way.
    tokio::time::sleep(Duration::from_millis(700)).await;
    server.restart();
    let start = tokio::time::Instant::now();
    while a.sync().await.is_err() {
        assert!(start.elapsed() < Duration::from_secs(5), "no reconnect");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.sync().await.unwrap();
    let stored = stored(&url, a.decision_key()).await;
    assert!(stored.contains(":c:"), "{stored}");
    assert_eq!(
        (a.state(), a.fleet_state()),
        (State::Closed, Some(State::Closed)),
        "stored {stored}"
    );
}

/// A forged version that one instance accepts and another refuses (the
/// script takes a version more than 2^32 past the caller's for forged:
/// one instance that has merged a change reads `known + 2^32` as honest,
/// a fresh one as forged) is replaced once, not fought over. Before, the
/// fresh instance wrote its own version back, the other read that as a
/// store that lost its data and wrote the forged version back again, and
/// so on at every reconciliation of either: each write published (with
/// notifications, both woke at once and did it again, at Redis's speed),
/// and every read of the fresh one was counted corrupt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_breaker_a_forged_version_one_instance_accepts_is_not_fought_over() {
    let server = RedisServer::start();
    let url = server.url();
    // Reconciled by hand only: each step below is one script call.
    let quiet = |url: String| async move {
        FleetBreaker::builder("ledger", core(), backend(&url).await)
            .sync_interval(Duration::from_secs(3_600))
            .build()
            .await
            .expect("fleet breaker")
    };
    let fresh = quiet(url.clone()).await;
    let seasoned = quiet(url.clone()).await;
    seasoned.force_open().await.unwrap();
    seasoned.force_close().await.unwrap();
    let known = seasoned.core().merged_version();
    assert!(known > 0 && fresh.core().merged_version() == 0);
    let mut conn = raw(&url).await;
    let () = redis::cmd("SET")
        .arg(seasoned.decision_key())
        .arg(format!("fb1:{}:c:0:0", known + (1 << 32)))
        .query_async(&mut conn)
        .await
        .unwrap();
    seasoned.sync().await.unwrap();
    assert_eq!(
        seasoned.fleet_metrics().corrupt,
        0,
        "within 2^32 of its own"
    );
    fresh.sync().await.unwrap();
    assert_eq!(fresh.fleet_metrics().corrupt, 1, "past 2^32 of its own");
    let replaced = stored(&url, fresh.decision_key()).await;
    let published = seasoned.fleet_metrics().published + fresh.fleet_metrics().published;
    for _ in 0..3 {
        seasoned.sync().await.unwrap();
        fresh.sync().await.unwrap();
    }
    assert_eq!(stored(&url, fresh.decision_key()).await, replaced);
    assert_eq!(fresh.fleet_metrics().corrupt, 1);
    assert_eq!(
        seasoned.fleet_metrics().published + fresh.fleet_metrics().published,
        published,
        "no decision written since the replacement"
    );
    // The fleet goes on: the fresh instance's trip is shared.
    trip(&fresh).await;
    fresh.sync().await.unwrap();
    assert!(stored(&url, fresh.decision_key()).await.contains(":o:"));
}

/// Counts the refusals it is told of.
#[derive(Default)]
struct Refusals(AtomicU64);

impl BreakerObserver for Refusals {
    fn transition(&self, _: &str, _: Transition) {}

    fn rejected(&self, _: &str, _: Instant) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// A half-open call refused because the fleet's trial slots are all
/// taken (by another instance) is told to the observer, as a call refused
/// by the local breaker is (`BreakerObserver::rejected`: "the breaker
/// open, or its half-open trials all taken"). Before, the observer given
/// to the builder ("also tells `observer` what calls do") never heard of
/// it: a registry's events and a user's counter missed every such refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_breaker_a_call_refused_for_want_of_a_fleet_trial_is_observed() {
    let server = RedisServer::start();
    let url = server.url();
    let refusals = Arc::new(Refusals::default());
    let b = FleetBreaker::builder("ledger", core(), backend(&url).await)
        .sync_interval(SYNC)
        .trial_ttl(Duration::from_secs(60))
        .observer(Arc::clone(&refusals) as Arc<dyn BreakerObserver>)
        .build()
        .await
        .expect("fleet breaker");
    trip(&b).await;
    b.sync().await.unwrap();
    let stored_open = stored(&url, b.decision_key()).await;
    let open: u64 = stored_open.split(':').nth(1).unwrap().parse().unwrap();
    until_state(&b, State::HalfOpen, Duration::from_secs(2)).await;
    // Another instance holds the only trial slot of the half-open decision
    // (open + 1), for a minute.
    let mut conn = raw(&url).await;
    let () = redis::cmd("SET")
        .arg(b.decision_key().replace(":decision", ":trial:1"))
        .arg(format!("{}:elsewhere", open + 1))
        .arg("PX")
        .arg(60_000)
        .query_async(&mut conn)
        .await
        .unwrap();
    let before = refusals.0.load(Ordering::Relaxed);
    let called = AtomicU64::new(0);
    let refused = b
        .call(async {
            called.fetch_add(1, Ordering::Relaxed);
            Ok::<_, ()>(())
        })
        .await;
    assert!(
        matches!(refused, Err(CallError::Open { .. })),
        "{refused:?}"
    );
    assert_eq!(called.load(Ordering::Relaxed), 0);
    assert_eq!(refusals.0.load(Ordering::Relaxed), before + 1);
    // Counted too: the local breaker let it through, so only the fleet
    // breaker's own counter (and the registry's rejected total) has it.
    assert_eq!(b.fleet_metrics().trials_refused, 1);
}

/// Quorum verdicts written in the future (the script stamps each with
/// Redis `TIME`, so none honest is) are removed and counted, not counted
/// toward the quorum. Before, two such members (a score of year 2255) made
/// one instance's trip open a fleet that needs three, and the next trips
/// too (the window never dropped them), with nothing counted corrupt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_breaker_quorum_verdicts_from_the_future_are_removed_not_counted() {
    let server = RedisServer::start();
    let url = server.url();
    let a = FleetBreaker::builder("ledger", core(), backend(&url).await)
        .sync_interval(SYNC)
        .quorum(3, Duration::from_secs(30))
        .instance_id("a")
        .build()
        .await
        .expect("fleet breaker");
    let verdicts = a.decision_key().replace(":decision", ":verdicts");
    let mut conn = raw(&url).await;
    let () = redis::cmd("ZADD")
        .arg(&verdicts)
        .arg(9_000_000_000_000_000_u64)
        .arg("forged1")
        .arg(9_000_000_000_000_000_u64)
        .arg("forged2")
        .query_async(&mut conn)
        .await
        .unwrap();
    trip(&a).await;
    a.sync().await.unwrap();
    let decision = stored(&url, a.decision_key()).await;
    assert!(decision.contains(":c:"), "one trip of three: {decision}");
    assert_eq!(a.fleet_metrics().corrupt, 1);
    let members: Vec<String> = redis::cmd("ZRANGE")
        .arg(&verdicts)
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(members, ["a"]);
}
