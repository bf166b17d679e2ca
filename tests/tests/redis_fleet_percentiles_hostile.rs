//! Fleet percentiles (`FleetPercentiles`) under hostile timing and
//! writers, against a real redis-server: one instance's cleanup racing
//! another's push, a hash growing between its size check and its read,
//! huge values, and values of a newer format written during a rolling
//! upgrade.
//!
//! One instance talks to Redis through [`Gate`], a loopback proxy that
//! counts the bytes Redis sends it and can hold its next command that
//! contains a marker until the test releases it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::redis_server::RedisServer;
use fusebox_std::backend::{FleetConfig, FleetPercentiles, FleetReport, RedisBackend, RedisConfig};
use fusebox_std::{Registry, Tracker, TrackerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};

const OP: &str = "checkout";

/// A proxy to `upstream` that counts the bytes sent back to its clients
/// and, while armed with a marker, holds the first client write that
/// contains it until [`release`](Self::release).
struct Gate {
    port: u16,
    received: Arc<AtomicU64>,
    marker: Arc<std::sync::Mutex<Option<Vec<u8>>>>,
    held: Arc<Notify>,
    is_held: Arc<AtomicBool>,
    open: Arc<Semaphore>,
    task: tokio::task::JoinHandle<()>,
}

impl Gate {
    async fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(AtomicU64::new(0));
        let marker: Arc<std::sync::Mutex<Option<Vec<u8>>>> = Arc::default();
        let held = Arc::new(Notify::new());
        let is_held = Arc::new(AtomicBool::new(false));
        let open = Arc::new(Semaphore::new(0));
        let (count, mark, note, flag, gate_open) = (
            Arc::clone(&received),
            Arc::clone(&marker),
            Arc::clone(&held),
            Arc::clone(&is_held),
            Arc::clone(&open),
        );
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                    continue;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let (mark, note, flag, gate_open) = (
                    Arc::clone(&mark),
                    Arc::clone(&note),
                    Arc::clone(&flag),
                    Arc::clone(&gate_open),
                );
                tokio::spawn(async move {
                    let mut buf = vec![0_u8; 64 * 1024];
                    loop {
                        let n = match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let hit = {
                            let mut marker = mark.lock().unwrap();
                            let hit = marker
                                .as_ref()
                                .is_some_and(|mk| buf[..n].windows(mk.len()).any(|w| w == mk));
                            if hit {
                                *marker = None;
                            }
                            hit
                        };
                        if hit {
                            flag.store(true, Ordering::SeqCst);
                            note.notify_one();
                            gate_open.acquire().await.unwrap().forget();
                        }
                        if sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
                let count = Arc::clone(&count);
                tokio::spawn(async move {
                    let mut buf = vec![0_u8; 64 * 1024];
                    loop {
                        let n = match sr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        count.fetch_add(n as u64, Ordering::SeqCst);
                        if cw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Self {
            port,
            received,
            marker,
            held,
            is_held,
            open,
            task,
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Holds the next client write containing `marker`.
    fn arm(&self, marker: &[u8]) {
        self.is_held.store(false, Ordering::SeqCst);
        *self.marker.lock().unwrap() = Some(marker.to_vec());
    }

    fn release(&self) {
        self.open.add_permits(1);
    }

    fn received(&self) -> u64 {
        self.received.load(Ordering::SeqCst)
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A tracker with `n` samples under [`OP`] (time paused while recording).
async fn tracker(n: u64) -> (Registry, Tracker) {
    let registry = Registry::new();
    let config = TrackerConfig {
        sample_rate: 1.0,
        ..TrackerConfig::default()
    };
    let tracker = registry.tracker("http", config).unwrap();
    tokio::time::pause();
    for i in 0..n {
        let guard = tracker.track_operation(OP);
        tokio::time::advance(Duration::from_micros(1_000 + i * 37)).await;
        drop(guard);
    }
    tokio::time::resume();
    (registry, tracker)
}

async fn fleet(url: &str, id: &str, samples: u64) -> Arc<FleetPercentiles> {
    let (registry, tracker) = tracker(samples).await;
    let backend = RedisBackend::connect(RedisConfig::new(url).timeout(Duration::from_secs(5)))
        .await
        .expect("connect");
    let config = FleetConfig::new(id).unwrap().ttl(Duration::from_secs(60));
    let fleet = Arc::new(FleetPercentiles::new("http", tracker, &backend, config));
    registry.register_fleet_percentiles(&fleet).unwrap();
    fleet
}

async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn now_ms(conn: &mut redis::aio::MultiplexedConnection) -> u64 {
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(conn).await.unwrap();
    secs * 1_000 + micros / 1_000
}

async fn hset(conn: &mut redis::aio::MultiplexedConnection, key: &str, field: &str, value: &[u8]) {
    let () = redis::cmd("HSET")
        .arg(key)
        .arg(field)
        .arg(value)
        .query_async(conn)
        .await
        .unwrap();
}

async fn hget(
    conn: &mut redis::aio::MultiplexedConnection,
    key: &str,
    field: &str,
) -> Option<String> {
    redis::cmd("HGET")
        .arg(key)
        .arg(field)
        .query_async(conn)
        .await
        .unwrap()
}

async fn hlen(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> usize {
    redis::cmd("HLEN").arg(key).query_async(conn).await.unwrap()
}

/// Instance A read pod-b's old (corrupt) value and decided to delete it;
/// pod-b pushed a fresh value before A's delete reached Redis. The fresh
/// value must survive: before, A's plain `HDEL` removed it, and pod-b's
/// figures were missing from every instance's fleet report until its
/// next push.
#[tokio::test]
async fn a_cleanup_never_deletes_a_value_pushed_after_its_read() {
    let server = RedisServer::start();
    let gate = Gate::start(server.port()).await;
    let a = fleet(&gate.url(), "pod-a", 50).await;
    let b = fleet(&server.url(), "pod-b", 70).await;
    let key = a.key(OP).unwrap();
    let mut conn = raw(&server.url()).await;
    hset(&mut conn, &key, "pod-b", b"left over by a crashed pod-b").await;

    // A's delete of pod-b's field (its only command naming it) is held.
    gate.arm(b"pod-b");
    let a_round = tokio::spawn({
        let a = Arc::clone(&a);
        async move { a.sync().await }
    });
    gate.held.notified().await;
    // Meanwhile pod-b pushes a fresh value.
    b.sync().await.expect("pod-b's push");
    let fresh = hget(&mut conn, &key, "pod-b").await.expect("pushed");
    assert!(fresh.starts_with("v1;"), "{fresh}");
    gate.release();
    a_round.await.unwrap().expect("A's round");

    assert_eq!(
        hget(&mut conn, &key, "pod-b").await.as_deref(),
        Some(fresh.as_str()),
        "pod-b's fresh value survives A's cleanup of its old one"
    );
    assert_eq!(a.report().corrupt, 1, "the old value was counted");
    a.sync().await.unwrap();
    let series = a.report().series[OP];
    assert_eq!((series.instances, series.count), (2, 120));
}

/// A hash that grows between the check of its size and its read is still
/// read only up to the cap: before, `HLEN` then `HGETALL` were two
/// commands, and a flood written between them was read (and deleted) in
/// full in one round, however large.
#[tokio::test]
async fn a_hash_growing_during_a_round_is_still_read_only_up_to_the_cap() {
    const CAP: usize = 1024;
    let server = RedisServer::start();
    let gate = Gate::start(server.port()).await;
    let a = fleet(&gate.url(), "pod-a", 50).await;
    let key = a.key(OP).unwrap();
    let mut conn = raw(&server.url()).await;
    let flood = CAP * 3;
    let write_flood = |mut conn: redis::aio::MultiplexedConnection| {
        let key = key.clone();
        async move {
            let mut pipe = redis::pipe();
            for i in 0..flood {
                pipe.hset(&key, format!("junk-{i}"), "x").ignore();
            }
            let () = pipe.query_async(&mut conn).await.unwrap();
        }
    };
    gate.arm(b"HGETALL");
    let a_round = tokio::spawn({
        let a = Arc::clone(&a);
        async move { a.sync().await }
    });
    loop {
        if gate.is_held.load(Ordering::SeqCst) {
            // Between the size check and the read: the flood arrives.
            write_flood(conn.clone()).await;
            gate.release();
            a_round.await.unwrap().expect("A's round");
            break;
        }
        if a_round.is_finished() {
            // One atomic, bounded read: nothing to race. The flood then
            // comes before the next round.
            a_round.await.unwrap().expect("A's round");
            write_flood(conn.clone()).await;
            a.sync().await.expect("A's round");
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let left = hlen(&mut conn, &key).await;
    assert!(
        left >= flood - CAP,
        "at most {CAP} fields read (and deleted) in one round; {left} of {flood} left"
    );
    assert!(a.report().available);
}

/// Hostile writers put huge values in the hash: an instance must not
/// download them, every round. Before, every value was read in full
/// (`HGETALL`) and only then refused as too long, so eight 1 MB values
/// cost every instance 8 MB per round.
#[tokio::test]
async fn huge_values_are_refused_without_being_downloaded() {
    const MB: usize = 1 << 20;
    let server = RedisServer::start();
    let gate = Gate::start(server.port()).await;
    let a = fleet(&gate.url(), "pod-a", 50).await;
    let key = a.key(OP).unwrap();
    let mut conn = raw(&server.url()).await;
    let huge = vec![b'9'; MB];
    for round in 1..=2u64 {
        for i in 0..8 {
            hset(&mut conn, &key, &format!("huge-{i}"), &huge).await;
        }
        let before = gate.received();
        a.sync().await.expect("a round");
        let read = gate.received() - before;
        assert!(
            read < 256 * 1024,
            "round {round}: {read} bytes read from Redis"
        );
        let report = a.report();
        assert_eq!(report.corrupt, 8 * round, "each huge value counted");
        assert_eq!(report.series[OP].instances, 1);
        assert_eq!(hlen(&mut conn, &key).await, 1, "and deleted");
    }
}

/// During a rolling upgrade a newer instance writes a newer format
/// (`v2;<written_ms>;…`). Older instances skip it (they cannot merge
/// it), count it apart from corrupt values and leave it for the newer
/// instances; only when it has expired do they delete it. Before, every
/// older instance deleted it as corrupt on every round, so the newer
/// instances' figures vanished from the fleet for the whole upgrade.
#[tokio::test]
async fn a_newer_format_is_skipped_not_deleted_and_only_garbage_is_deleted() {
    let server = RedisServer::start();
    let a = fleet(&server.url(), "pod-a", 50).await;
    let key = a.key(OP).unwrap();
    let mut conn = raw(&server.url()).await;
    let now = now_ms(&mut conn).await;
    let newer = format!("v2;{now};some future layout|with=other;separators");
    hset(&mut conn, &key, "pod-new", newer.as_bytes()).await;
    let expired = format!("v3;{};gone", now - 3_600_000);
    hset(&mut conn, &key, "pod-gone", expired.as_bytes()).await;
    hset(
        &mut conn,
        &key,
        "garbage",
        format!("v2x;{now};1").as_bytes(),
    )
    .await;
    hset(&mut conn, &key, "no-time", b"v2;soon;1").await;
    for _ in 0..3 {
        a.sync().await.expect("a round");
    }
    assert_eq!(
        hget(&mut conn, &key, "pod-new").await.as_deref(),
        Some(newer.as_str()),
        "the newer instance's value stays"
    );
    for gone in ["pod-gone", "garbage", "no-time"] {
        assert_eq!(hget(&mut conn, &key, gone).await, None, "{gone} deleted");
    }
    let report: FleetReport = a.report();
    assert_eq!(report.corrupt, 2, "only the garbage is corrupt");
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["series"][OP]["instances"], 1);
    assert_eq!(json["series"][OP]["newer"], 1, "{json}");
}

/// A name too long to be in a key (`FleetPercentiles::new` takes any;
/// only the registry checks names) failed every series' key, and the
/// round skipped them all: nothing was pushed or read, and the report
/// said available, empty (noticed by a hostile review). The round now
/// fails with the key error, and the report is unavailable, with it.
#[tokio::test]
async fn a_name_too_long_for_a_key_fails_the_round_not_reads_as_empty() {
    let server = RedisServer::start();
    let (_registry, tracker) = tracker(10).await;
    let backend = RedisBackend::connect(RedisConfig::new(server.url()))
        .await
        .expect("connect");
    let name = "h".repeat(fusebox_std::backend::MAX_KEY_LEN + 1);
    let fleet = FleetPercentiles::new(&name, tracker, &backend, FleetConfig::new("pod-a").unwrap());
    let err = fleet.sync().await.unwrap_err();
    assert!(
        matches!(err, fusebox_std::backend::BackendError::InvalidKey { .. }),
        "{err}"
    );
    let report = fleet.report();
    assert!(!report.available && report.stale, "{report:?}");
    assert!(report.error.is_some(), "{report:?}");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut raw(&server.url()).await)
        .await
        .unwrap();
    assert!(keys.is_empty(), "{keys:?}");
}
