//! The fleet breaker (`FleetBreaker`) against a real redis-server: a trip
//! on one instance seen on the others within the sync interval, restarts
//! of instances and of Redis, operators, corrupt keys, fleet-wide
//! half-open permits, quorum mode.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::fleet::{backend, instance_over, raw, sync_ok, until_state};
use crate::common::redis_server::RedisServer;
use fusebox::breaker::{CircuitBreaker, Config, State};
use fusebox_std::backend::{FleetBreaker, RedisBackend, RedisConfig};
use fusebox_std::CallError;
use tokio::time::Instant;

const SYNC: Duration = Duration::from_millis(100);

fn core(open_for: Duration, permits: u8) -> Arc<CircuitBreaker> {
    Arc::new(CircuitBreaker::new(
        Config::builder()
            .consecutive_failures(2)
            .open_for(open_for.into())
            .half_open_permits(permits)
            .build()
            .unwrap(),
    ))
}

async fn instance(url: &str, name: &str, open_for: Duration) -> FleetBreaker {
    instance_over(url, name, core(open_for, 1), SYNC).await
}

async fn fail_twice(b: &FleetBreaker) {
    for _ in 0..2 {
        let _ = b.call(async { Err::<(), _>("down") }).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_breaker_trip_on_a_is_open_on_b_and_c_within_the_sync_interval() {
    let server = RedisServer::start();
    let url = server.url();
    let open_for = Duration::from_secs(30);
    let a = instance(&url, "payments", open_for).await;
    let b = instance(&url, "payments", open_for).await;
    let c = instance(&url, "payments", open_for).await;
    assert_eq!(
        (a.state(), b.state(), c.state()),
        (State::Closed, State::Closed, State::Closed)
    );
    fail_twice(&a).await;
    assert_eq!(a.state(), State::Open);
    let limit = SYNC + Duration::from_millis(300); // scheduling slack on a shared machine
    let tb = until_state(&b, State::Open, limit).await;
    let tc = until_state(&c, State::Open, limit).await;
    eprintln!("seen open on B after {tb:?}, on C after {tc:?} (sync interval {SYNC:?})");
    // B's calls are refused with A's remaining open time, not B's own.
    let refused = b.call(async { Ok::<(), ()>(()) }).await.unwrap_err();
    let CallError::Open {
        retry_after: Some(left),
    } = refused
    else {
        panic!("{refused:?}")
    };
    assert!(
        left > Duration::from_secs(25) && left <= open_for,
        "{left:?}"
    );
    assert_eq!(
        b.metrics().successes + b.metrics().failures,
        0,
        "B made no call"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_breaker_pubsub_notification_beats_the_sync_interval() {
    let mut server = RedisServer::start();
    let url = server.url();
    let slow_sync = Duration::from_secs(5);
    let mut fleet = Vec::new();
    for _ in 0..3 {
        let b = FleetBreaker::builder(
            "notify",
            core(Duration::from_secs(30), 1),
            backend(&url).await,
        )
        .sync_interval(slow_sync)
        .notifications(url.clone())
        .build()
        .await
        .expect("fleet breaker");
        fleet.push(b);
    }
    tokio::time::sleep(Duration::from_millis(200)).await; // subscribed
    fail_twice(&fleet[0]).await;
    let limit = Duration::from_millis(500);
    let tb = until_state(&fleet[1], State::Open, limit).await;
    let tc = until_state(&fleet[2], State::Open, limit).await;
    eprintln!("notified: open on B after {tb:?}, on C after {tc:?} (sync interval {slow_sync:?})");
    // The subscription survives a Redis restart (with its data lost: the
    // open instances repopulate it).
    server.kill();
    server.restart();
    tokio::time::sleep(Duration::from_millis(800)).await;
    fleet[1].force_close().await.unwrap();
    until_state(&fleet[0], State::Closed, Duration::from_secs(2)).await;
    until_state(&fleet[2], State::Closed, Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_breaker_restarted_instance_stays_open_until_its_time_is_up() {
    let server = RedisServer::start();
    let url = server.url();
    let open_for = Duration::from_millis(1_500);
    let a = instance(&url, "ledger", open_for).await;
    fail_twice(&a).await;
    a.sync().await.unwrap();
    drop(a);
    // A new process: a fresh core breaker, loaded from Redis.
    let restarted = instance(&url, "ledger", open_for).await;
    assert_eq!(restarted.state(), State::Open);
    let refused = restarted
        .call(async { Ok::<(), ()>(()) })
        .await
        .unwrap_err();
    assert!(refused.is_open());
    // ... and only until its time is up: then a trial closes it.
    tokio::time::sleep(open_for + Duration::from_millis(50)).await;
    restarted.call(async { Ok::<(), ()>(()) }).await.unwrap();
    assert_eq!(restarted.state(), State::Closed);
    restarted.sync().await.unwrap();
    let again = instance(&url, "ledger", open_for).await;
    assert_eq!(again.state(), State::Closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_breaker_force_open_and_close_apply_fleet_wide_also_from_redis_cli() {
    let server = RedisServer::start();
    let url = server.url();
    let a = instance(&url, "search", Duration::from_secs(10)).await;
    let b = instance(&url, "search", Duration::from_secs(10)).await;
    a.force_open().await.unwrap();
    assert_eq!(a.state(), State::ForcedOpen);
    until_state(&b, State::ForcedOpen, Duration::from_secs(2)).await;
    b.force_close().await.unwrap();
    assert_eq!(b.state(), State::Closed);
    until_state(&a, State::Closed, Duration::from_secs(2)).await;

    // An operator with redis-cli: read the version, write a newer one.
    let mut conn = raw(&url).await;
    let key = a.decision_key().to_owned();
    assert_eq!(key, "fusebox:{breaker:search}:decision");
    let stored: String = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    let version: u64 = stored.split(':').nth(1).unwrap().parse().unwrap();
    let forced = format!("fb1:{}:f:0:0", version + 1);
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg(&forced)
        .query_async(&mut conn)
        .await
        .unwrap();
    until_state(&a, State::ForcedOpen, Duration::from_secs(2)).await;
    until_state(&b, State::ForcedOpen, Duration::from_secs(2)).await;
    let closed = format!("fb1:{}:c:0:0", version + 2);
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg(&closed)
        .query_async(&mut conn)
        .await
        .unwrap();
    until_state(&a, State::Closed, Duration::from_secs(2)).await;
    until_state(&b, State::Closed, Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_breaker_corrupt_and_hostile_values_are_rejected_counted_and_replaced() {
    let server = RedisServer::start();
    let url = server.url();
    let open_for = Duration::from_secs(2);
    let a = instance(&url, "inventory", open_for).await;
    let key = a.decision_key().to_owned();
    let mut conn = raw(&url).await;
    for garbage in [
        "hello",
        "fb1:x:c:0:0",
        "fb1:5:z:0:0",
        "fb1:5:c:7:0",
        "fb1:5:o:1:99",
        "fb1:99999999999999999999:c:0:0",
    ] {
        let _: () = redis::cmd("SET")
            .arg(&key)
            .arg(garbage)
            .query_async(&mut conn)
            .await
            .unwrap();
        let before = a.fleet_metrics().corrupt;
        a.sync().await.unwrap();
        assert_eq!(a.fleet_metrics().corrupt, before + 1, "{garbage}");
        assert_eq!(
            a.state(),
            State::Closed,
            "{garbage}: replaced by the local state"
        );
        let stored: String = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(
            stored.starts_with("fb1:") && stored.ends_with(":c:0:0"),
            "{garbage} -> {stored}"
        );
    }
    // A wrong type under the key: replaced and counted like any corrupt
    // value, never an error that would leave the breaker degraded.
    let _: () = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("HSET")
        .arg(&key)
        .arg("v")
        .arg(1)
        .query_async(&mut conn)
        .await
        .unwrap();
    let before = a.fleet_metrics().corrupt;
    a.sync().await.expect("a hash under the key is replaced");
    assert!(!a.is_degraded());
    assert_eq!(a.fleet_metrics().corrupt, before + 1);
    a.call(async { Ok::<(), ()>(()) }).await.unwrap();

    // A forged far-future deadline is cut to the maximum open time.
    let stored: String = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    let version: u64 = stored.split(':').nth(1).unwrap().parse().unwrap();
    let forged = format!("fb1:{}:o:8000000000000000:0", version + 1);
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg(&forged)
        .query_async(&mut conn)
        .await
        .unwrap();
    a.sync().await.unwrap();
    assert_eq!(a.state(), State::Open);
    let refused = a.call(async { Ok::<(), ()>(()) }).await.unwrap_err();
    let CallError::Open {
        retry_after: Some(left),
    } = refused
    else {
        panic!("{refused:?}")
    };
    assert!(left <= open_for + Duration::from_millis(2), "{left:?}");
    let stored: String = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    let until: u64 = stored.split(':').nth(3).unwrap().parse().unwrap();
    assert!(until < 8_000_000_000_000_000, "{stored}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_breaker_redis_down_decides_locally_and_merges_on_reconnect() {
    let mut server = RedisServer::start();
    let url = server.url();
    let open_for = Duration::from_secs(30);
    let a = instance(&url, "orders", open_for).await;
    let b = instance(&url, "orders", open_for).await;
    server.kill();
    // Local trips still protect the instance.
    fail_twice(&a).await;
    assert_eq!(a.state(), State::Open);
    // Each finds out at its next reconciliation: the command that finds
    // the connection closed is sent again on a new one, which is refused
    // until the command timeout (500 ms) runs out.
    let start = Instant::now();
    while !(a.is_degraded() && b.is_degraded()) {
        assert!(start.elapsed() < Duration::from_secs(5), "not degraded");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(b.state(), State::Closed);
    b.call(async { Ok::<(), ()>(()) }).await.unwrap();
    // Redis comes back empty: A's trip repopulates it and reaches B.
    server.restart();
    until_state(&b, State::Open, Duration::from_secs(5)).await;
    assert!(!a.is_degraded());
    assert_eq!(
        a.state(),
        State::Open,
        "an open breaker is never closed by the merge"
    );
    // Redis loses its data again; closed instances (fresh ones) reach it
    // first: their closed state never closes the open instances, whose open
    // decision repopulates the store and reaches them.
    server.kill();
    server.restart();
    let fresh = instance(&url, "orders", open_for).await;
    let c = instance(&url, "orders", open_for).await;
    c.sync().await.unwrap();
    sync_ok(&b).await;
    assert_eq!(
        b.state(),
        State::Open,
        "never closed by a repopulated closed state"
    );
    sync_ok(&a).await;
    assert_eq!(a.state(), State::Open);
    until_state(&c, State::Open, Duration::from_secs(2)).await;
    until_state(&fresh, State::Open, Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_breaker_sigkilled_redis_with_aof_keeps_an_open_breaker_open() {
    let mut server = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let url = server.url();
    let open_for = Duration::from_secs(30);
    let a = instance(&url, "mail", open_for).await;
    fail_twice(&a).await;
    a.sync().await.unwrap();
    drop(a);
    server.kill();
    server.restart();
    let mut conn = raw(&url).await;
    let key = "fusebox:{breaker:mail}:decision";
    let stored: String = redis::cmd("GET")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(stored.contains(":o:"), "{stored}");
    // A fresh instance (a fresh core) loads it: still open.
    let b = instance(&url, "mail", open_for).await;
    assert_eq!(b.state(), State::Open);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_breaker_at_most_half_open_permits_trials_when_eight_instances_race() {
    let server = RedisServer::start();
    let url = server.url();
    let open_for = Duration::from_millis(800);
    let permits = 2u8;
    let mut fleet = Vec::new();
    for _ in 0..8 {
        let b = FleetBreaker::builder("catalog", core(open_for, permits), backend(&url).await)
            .sync_interval(SYNC)
            .build()
            .await
            .expect("fleet breaker");
        fleet.push(b);
    }
    fail_twice(&fleet[0]).await;
    for b in &fleet {
        until_state(b, State::Open, Duration::from_secs(2)).await;
    }
    // At the half-open moment every instance fires four calls at once.
    for b in &fleet {
        until_state(b, State::HalfOpen, Duration::from_secs(3)).await;
    }
    let trials = Arc::new(AtomicU32::new(0));
    let mut tasks = Vec::new();
    for b in &fleet {
        for _ in 0..4 {
            let (b, trials) = (b.clone(), Arc::clone(&trials));
            tasks.push(tokio::spawn(async move {
                b.call(async move {
                    trials.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Ok::<(), ()>(())
                })
                .await
            }));
        }
    }
    let mut admitted = 0;
    for t in tasks {
        if t.await.unwrap().is_ok() {
            admitted += 1;
        }
    }
    let ran = trials.load(Ordering::SeqCst);
    eprintln!("{ran} trial calls ran fleet-wide ({admitted} succeeded)");
    assert!(ran >= 1 && ran <= u32::from(permits), "{ran} trials");
    // The trial's success is shared: every instance closes.
    for b in &fleet {
        until_state(b, State::Closed, Duration::from_secs(2)).await;
    }
}

async fn quorum_instance(url: &str, id: &str) -> FleetBreaker {
    FleetBreaker::builder(
        "profile",
        core(Duration::from_secs(30), 1),
        backend(url).await,
    )
    .sync_interval(SYNC)
    .quorum(3, Duration::from_secs(10))
    .instance_id(id)
    .build()
    .await
    .expect("fleet breaker")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_breaker_quorum_one_failing_instance_does_not_open_the_others_three_do() {
    let server = RedisServer::start();
    let url = server.url();
    let mut fleet = Vec::new();
    for id in ["a", "b", "c", "d"] {
        fleet.push(quorum_instance(&url, id).await);
    }
    fail_twice(&fleet[0]).await;
    assert_eq!(
        fleet[0].state(),
        State::Open,
        "the bad node protects itself"
    );
    tokio::time::sleep(SYNC * 4).await;
    for b in &fleet[1..] {
        assert_eq!(
            b.state(),
            State::Closed,
            "one instance does not trip the fleet"
        );
    }
    fail_twice(&fleet[1]).await;
    tokio::time::sleep(SYNC * 4).await;
    assert_eq!(fleet[3].state(), State::Closed, "two of three");
    fail_twice(&fleet[2]).await;
    until_state(&fleet[3], State::Open, SYNC + Duration::from_millis(300)).await;

    // Without quorum, any instance's trip opens all (the other tests).
}

#[tokio::test]
async fn redis_breaker_name_must_be_a_registry_name() {
    let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:1")).unwrap();
    for name in ["a}b", "pay:ments", "", "9lives"] {
        let built = FleetBreaker::builder(name, core(Duration::from_secs(1), 1), backend.clone())
            .build()
            .await;
        assert!(
            matches!(
                built,
                Err(fusebox_std::backend::BackendError::InvalidKey(_))
            ),
            "{name:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_breaker_slow_redis_never_delays_a_closed_call() {
    let server = RedisServer::start();
    let url = server.url();
    let a = instance(&url, "slowpath", Duration::from_secs(30)).await;
    server.signal("STOP"); // accepts connections, answers nothing
    let start = Instant::now();
    for _ in 0..100 {
        a.call(async { Ok::<(), ()>(()) }).await.unwrap();
    }
    // A call that waited on Redis would wait its command timeout (500 ms,
    // `common::fleet::backend`): the 100 together take less than one. Not
    // 100 ms, which a loaded machine may take to run a hundred calls.
    assert!(
        start.elapsed() < Duration::from_millis(450),
        "{:?}",
        start.elapsed()
    );
    assert!(a.sync().await.is_err(), "the command timeout ends the sync");
    assert!(a.is_degraded());
    // Local trips still protect the instance.
    fail_twice(&a).await;
    assert_eq!(a.state(), State::Open);
    server.signal("CONT");
    a.sync().await.unwrap();
    assert!(!a.is_degraded());
    assert_eq!(a.state(), State::Open);
    let b = instance(&url, "slowpath", Duration::from_secs(30)).await;
    assert_eq!(
        b.state(),
        State::Open,
        "the trip made while Redis was slow is shared"
    );
}
