//! What a fleet breaker leaves in Redis over a long history, and how it
//! reads what instances configured otherwise left there, against a real
//! redis-server.

use std::sync::Arc;
use std::time::Duration;

use crate::common::fleet::{
    backend, raw, stored, sync_ok, trip, until_core_half_open_under_the_fleet, until_state,
};
use crate::common::redis_server::RedisServer;
use fusebox::breaker::{CircuitBreaker, Config, State};
use fusebox_std::backend::FleetBreaker;
use fusebox_std::CallError;

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

/// An instance reconciled at once on a local transition, otherwise by
/// hand (`sync`).
async fn instance(url: &str, name: &str, open_for: Duration) -> FleetBreaker {
    FleetBreaker::builder(name, core(open_for), backend(url).await)
        .sync_interval(Duration::from_secs(3_600))
        .build()
        .await
        .expect("fleet breaker")
}

/// The keys under `pattern`, by `SCAN`.
async fn keys(url: &str, pattern: &str) -> Vec<String> {
    let mut conn = raw(url).await;
    let mut cursor = 0u64;
    let mut all = Vec::new();
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1_000)
            .query_async(&mut conn)
            .await
            .unwrap();
        all.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    all.sort();
    all
}
/// 300 trips of one instance, each published and closed again by an
/// operator: every trip is taken (opens the fleet), and the records left
/// in Redis are one per process, not one per trip. Before, each
/// trip left its own record key for a day: 300 here (~86 400 a day for a
/// 1 s open time that kept failing, per instance).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_history_of_trips_leaves_one_record_per_process() {
    const TRIPS: u64 = 300;
    let server = RedisServer::start();
    let url = server.url();
    let a = instance(&url, "records", Duration::from_secs(30)).await;
    let b = instance(&url, "records", Duration::from_secs(30)).await;
    // The first instance built wrote the first (closed) decision.
    let before = (a.fleet_metrics().published, b.fleet_metrics().published);
    assert_eq!(before, (1, 0));
    for _ in 0..TRIPS {
        trip(&a).await;
        sync_ok(&a).await;
        assert!(
            stored(&url, a.decision_key()).await.contains(":o:"),
            "the trip opened the fleet"
        );
        b.force_close().await.unwrap();
        a.sync().await.unwrap();
        assert_eq!(a.state(), State::Closed);
    }
    // Every trip and every close changed the decision once.
    assert_eq!(a.fleet_metrics().published, 1 + TRIPS);
    assert_eq!(b.fleet_metrics().published, TRIPS);
    let all = keys(&url, "*").await;
    assert_eq!(all.len(), 3, "{:?}", &all[..all.len().min(5)]);
    // One record per process (A's trips, B's admin commands).
    assert_eq!(
        keys(&url, "fusebox:{breaker:records}:record:*").await.len(),
        2
    );
}

/// The case the records piled up in: a short open time (20 ms, no
/// growth) whose every fleet trial fails, 50 times over: each failed
/// trial is a trip published, reopening the fleet (versions grow by two a
/// cycle: half-open, reopened), and one trip record stays. Before, one
/// record per trip, each kept a day: ~86 400 a day at a 1 s open time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_trials_over_many_openings_leave_one_trip_record() {
    const CYCLES: u64 = 50;
    let server = RedisServer::start();
    let url = server.url();
    let a = instance(&url, "flapping", Duration::from_millis(20)).await;
    trip(&a).await;
    sync_ok(&a).await;
    for _ in 0..CYCLES {
        until_state(&a, State::HalfOpen, Duration::from_secs(5)).await;
        // A trial refused (the local open time, rounded to the core's
        // ticks, ran out a hair before the stored one) is tried again.
        loop {
            match a.call(async { Err::<(), _>("still down") }).await {
                Err(CallError::Inner(_)) => break,
                Err(CallError::Open { .. }) => tokio::time::sleep(Duration::from_millis(2)).await,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(a.state(), State::Open);
        sync_ok(&a).await;
    }
    assert_eq!(a.metrics().trips, 1 + CYCLES);
    let decision = stored(&url, a.decision_key()).await;
    let version: u64 = decision.split(':').nth(1).unwrap().parse().unwrap();
    // The first decision, the first trip, then half-open and reopened
    // each cycle.
    assert_eq!(version, 1 + 2 * CYCLES, "{decision}");
    let records = keys(&url, "fusebox:{breaker:flapping}:record:*").await;
    assert_eq!(records.len(), 1, "{records:?}");
}

/// An opening written by an instance configured with a longer open time
/// (a configuration rolled out one instance at a time) is honoured by
/// one configured shorter: not counted corrupt, not cut short for the
/// fleet; the shorter instance adopts the fleet's open-until: once its
/// own open time has run out locally, it still reads Open and refuses
/// calls until the stored opening ends. Before, its
/// first reconciliation took the opening for forged, counted it corrupt
/// and wrote it back cut to its own 200 ms, for every instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opening_of_a_longer_configuration_is_honoured() {
    let server = RedisServer::start();
    let url = server.url();
    let long = instance(&url, "rolling", Duration::from_secs(600)).await;
    let short = instance(&url, "rolling", Duration::from_millis(200)).await;
    trip(&long).await;
    sync_ok(&long).await;
    let opened = stored(&url, long.decision_key()).await;
    assert!(opened.contains(":o:"), "{opened}");

    assert_eq!(short.sync().await.unwrap(), State::Open);
    assert_eq!(stored(&url, long.decision_key()).await, opened);
    assert_eq!(short.fleet_metrics().corrupt, 0);

    // The short instance's own open time runs out: its trial is refused
    // (the fleet is still open), and the opening stays as written.
    until_core_half_open_under_the_fleet(&short).await;
    let refused = short.call(async { Ok::<_, &str>(()) }).await;
    assert!(
        matches!(refused, Err(CallError::Open { .. })),
        "{refused:?}"
    );
    assert_eq!(short.fleet_metrics().trials_refused, 1);
    assert_eq!(long.sync().await.unwrap(), State::Open);
    assert_eq!(stored(&url, long.decision_key()).await, opened);
    assert_eq!(
        (long.fleet_metrics().corrupt, short.fleet_metrics().corrupt),
        (0, 0)
    );
}

/// The `EVALSHA` calls the server has run.
async fn evalsha_calls(url: &str) -> u64 {
    let mut conn = raw(url).await;
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

/// The instance configured shorter, half-open locally under the longer
/// opening, asks Redis for no trial: it adopted the opening when it
/// merged it, and its calls are refused locally until it ends (or a
/// newer decision is applied). Before, each of them sent a trial
/// request to Redis (50 calls, 50 `EVALSHA`), for the rest of the
/// longer opening.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shorter_instance_asks_once_per_longer_opening() {
    let server = RedisServer::start();
    let url = server.url();
    let long = instance(&url, "asks", Duration::from_secs(600)).await;
    let short = instance(&url, "asks", Duration::from_millis(200)).await;
    trip(&long).await;
    sync_ok(&long).await;
    assert_eq!(short.sync().await.unwrap(), State::Open);
    until_core_half_open_under_the_fleet(&short).await;
    let before = evalsha_calls(&url).await;
    for _ in 0..50 {
        let refused = short.call(async { Ok::<_, &str>(()) }).await;
        assert!(
            matches!(refused, Err(CallError::Open { .. })),
            "{refused:?}"
        );
    }
    assert_eq!(short.fleet_metrics().trials_refused, 50);
    // The opening is adopted from the merge: no trial request at all
    // (before the fleet's open-until was adopted, one: the first call's).
    assert_eq!(evalsha_calls(&url).await - before, 0, "no trial request");

    // A newer decision (closed by an operator) is applied: calls pass.
    long.force_close().await.unwrap();
    assert_eq!(short.sync().await.unwrap(), State::Closed);
    assert_eq!(short.call(async { Ok::<_, &str>(7) }).await.unwrap(), 7);
}

/// A stored opening further away than any configuration's longest open
/// time is still forged: counted corrupt and cut to the reader's own
/// maximum.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opening_beyond_the_longest_open_time_is_still_cut() {
    let server = RedisServer::start();
    let url = server.url();
    let a = instance(&url, "forged", Duration::from_secs(30)).await;
    sync_ok(&a).await;
    let mut conn = raw(&url).await;
    let (secs, _): (u64, u64) = redis::cmd("TIME").query_async(&mut conn).await.unwrap();
    // Five hours away: past Config::MAX_OPEN_FOR (≈ 4 h 46 min) plus a minute.
    let until = (secs + 5 * 3_600) * 1_000_000;
    let () = redis::cmd("SET")
        .arg(a.decision_key())
        .arg(format!("fb1:9:o:{until}:0"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(a.sync().await.unwrap(), State::Open);
    assert_eq!(a.fleet_metrics().corrupt, 1);
    let cut = stored(&url, a.decision_key()).await;
    let fields: Vec<&str> = cut.split(':').collect();
    assert_eq!(fields[1], "10", "{cut}");
    let cut_until: u64 = fields[3].parse().unwrap();
    assert!(cut_until < (secs + 3_600) * 1_000_000, "{cut}");
}

/// A hostile hand replaces an instance's trip record with another type
/// (a hash): the instance's next trip is still taken (the fleet opens),
/// the record is counted corrupt and written back as a string, and no
/// reconciliation fails on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trip_record_of_another_type_is_replaced() {
    let server = RedisServer::start();
    let url = server.url();
    let a = instance(&url, "hostile", Duration::from_secs(30)).await;
    trip(&a).await;
    sync_ok(&a).await;
    a.force_close().await.unwrap();
    let records = keys(&url, "fusebox:{breaker:hostile}:record:*").await;
    assert_eq!(records.len(), 1, "{records:?}");
    let mut conn = raw(&url).await;
    let () = redis::cmd("DEL")
        .arg(&records[0])
        .query_async(&mut conn)
        .await
        .unwrap();
    let () = redis::cmd("HSET")
        .arg(&records[0])
        .arg("token")
        .arg("1")
        .query_async(&mut conn)
        .await
        .unwrap();
    trip(&a).await;
    sync_ok(&a).await;
    assert!(stored(&url, a.decision_key()).await.contains(":o:"));
    assert_eq!(a.fleet_metrics().corrupt, 1);
    assert_eq!(a.fleet_metrics().errors, 0);
    let kind: String = redis::cmd("TYPE")
        .arg(&records[0])
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(kind, "string");
}
