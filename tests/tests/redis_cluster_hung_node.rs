//! The watched Cluster connection against one node whose client port
//! hangs for good (accepts, never answers; no failover, as with no
//! replica or a partition the cluster bus does not see), and one node
//! that is slow but answers; and `connect_lazy` outside a runtime. Found
//! by a hostile review of the first version, which swapped in a fresh
//! connection without a socket to the hung node: the healthy nodes' keys
//! then failed 41 % of the time and the hung node got 286 connections a
//! minute, for good.
//!
//! Node 0 announces a [`HangProxy`]'s port to clients, so every client
//! connection to it (existing and new) goes through the proxy.

#![allow(clippy::cast_precision_loss)]

use crate::common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::redis_server::{connections_received, RedisCluster};
use fusebox::bucket::Quota;
use fusebox_std::backend::{Backend, BackendError, RedisBackend, RedisConfig, Rules};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A loopback proxy to `upstream`, delaying every chunk from the server by
/// `delay` (a timed queue, not a sleep per chunk: throughput is kept), or
/// after [`hang`](Self::hang) swallowing everything on every connection,
/// open or new (accepted, never answered, never closed).
struct HangProxy {
    port: u16,
    hung: Arc<AtomicBool>,
    delay_ms: Arc<AtomicU64>,
    accepted: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl HangProxy {
    async fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hung = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicU64::new(0));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let (h, a, d) = (
            Arc::clone(&hung),
            Arc::clone(&accepted),
            Arc::clone(&delay_ms),
        );
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pump(Box::new(cr), Box::new(sw), None, Arc::clone(&h)));
                tokio::spawn(pump(
                    Box::new(sr),
                    Box::new(cw),
                    Some(Arc::clone(&d)),
                    Arc::clone(&h),
                ));
            }
        });
        Self {
            port,
            hung,
            delay_ms,
            accepted,
            task,
        }
    }

    fn hang(&self) {
        self.hung.store(true, Ordering::SeqCst);
    }

    fn slow_down(&self, delay: Duration) {
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for HangProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pump(
    mut from: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
    mut to: Box<dyn tokio::io::AsyncWrite + Send + Unpin>,
    delay: Option<Arc<AtomicU64>>,
    hung: Arc<AtomicBool>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let h = Arc::clone(&hung);
    let writer = tokio::spawn(async move {
        while let Some((at, bytes)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if !h.load(Ordering::SeqCst) && to.write_all(&bytes).await.is_err() {
                break;
            }
        }
        std::future::pending::<()>().await;
        drop(to);
    });
    let mut buf = vec![0_u8; 16 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let d = delay.as_ref().map_or(0, |d| d.load(Ordering::SeqCst));
                let _ = tx.send((
                    tokio::time::Instant::now() + Duration::from_millis(d),
                    buf[..n].to_vec(),
                ));
            }
        }
    }
    std::future::pending::<()>().await;
    drop(writer);
}

/// The watched connection's replacements so far, process-wide (one
/// warning each).
fn replaced() -> u64 {
    common::messages_containing("reconnecting on a new connection") as u64
}

struct Tally {
    ok: u64,
    err: u64,
    /// Errors on the keys of `healthy` (in `tally_split`).
    healthy_err: u64,
    healthy_ok: u64,
}

/// Decisions on `keys` for `run`, one key after the other, each bounded by
/// the backend's per-command timeout.
async fn tally(backend: &RedisBackend, keys: &[String], run: Duration) -> Tally {
    tally_split(backend, keys, &[], run).await
}

async fn tally_split(
    backend: &RedisBackend,
    keys: &[String],
    healthy: &[String],
    run: Duration,
) -> Tally {
    let rules = Rules::single("per_second", Quota::per_second(1_000_000).unwrap()).unwrap();
    let mut t = Tally {
        ok: 0,
        err: 0,
        healthy_err: 0,
        healthy_ok: 0,
    };
    let start = tokio::time::Instant::now();
    while start.elapsed() < run {
        for key in keys {
            let ok = backend.decide("h", key, &rules, 1).await.is_ok();
            t.ok += u64::from(ok);
            t.err += u64::from(!ok);
            if healthy.contains(key) {
                t.healthy_ok += u64::from(ok);
                t.healthy_err += u64::from(!ok);
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    t
}

/// Keys of limiter "h" on node `node` (`want`) or on other nodes.
fn keys_on(cluster: &RedisCluster, node: usize, want: bool, n: usize) -> Vec<String> {
    (0..)
        .map(|i| format!("user-{i}"))
        .filter(|k| (cluster.owner(&format!("{{h:{k}}}")) == node) == want)
        .take(n)
        .collect()
}

/// Node 0's client port hangs for good; the cluster bus does not see it,
/// so no failover happens. Its keys are lost; the other nodes' keys must
/// stay on Redis, and the healthy nodes must not see a reconnection storm.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_hung_for_good_does_not_churn_or_degrade_the_healthy_nodes() {
    let cluster = RedisCluster::start(3);
    let proxy = HangProxy::start(cluster.nodes[0].port()).await;
    cluster.announce_client_port(0, proxy.port);
    let connect_timeout = Duration::from_millis(300);
    let backend = common::redis_server::cluster_backend(&cluster, connect_timeout).await;
    let healthy = keys_on(&cluster, 0, false, 6);
    let hung_keys = keys_on(&cluster, 0, true, 2);
    let before = tally(&backend, &healthy, Duration::from_millis(300)).await;
    assert_eq!(before.err, 0);

    let replaced_before = replaced();
    proxy.hang();
    let conns = |c: &RedisCluster| {
        connections_received(c.nodes[1].port()) + connections_received(c.nodes[2].port())
    };
    let (healthy_before, proxy_before) = (conns(&cluster), proxy.accepted());
    let run = Duration::from_secs(10);
    let mut all = healthy.clone();
    all.extend(hung_keys);
    let start = tokio::time::Instant::now();
    // Traffic on every node, as a service would send; the healthy keys
    // are tallied separately afterwards, on the same churn.
    let mixed = tally_split(&backend, &all, &healthy, run).await;
    let during = tally(&backend, &healthy, Duration::from_secs(3)).await;
    let elapsed = start.elapsed().as_secs_f64();
    // Each reading's own redis-cli connections (one per node) excluded.
    let healthy_conns = conns(&cluster) - healthy_before - 2;
    let hung_conns = proxy.accepted() - proxy_before;
    let per_min = |n: u64| n as f64 * 60.0 / elapsed;
    let replacements = replaced() - replaced_before;
    eprintln!(
        "{replacements} replacements ({:.0}/min)",
        per_min(replacements)
    );
    let failed = during.err as f64 / (during.ok + during.err) as f64;
    eprintln!(
        "over {elapsed:.1} s: {healthy_conns} connections to the 2 healthy nodes ({:.0}/min), \
         {hung_conns} to the hung node ({:.0}/min); healthy keys failed {:.1} % \
         ({} ok, {} err); mixed {} ok {} err, of which healthy keys {} ok {} err",
        per_min(healthy_conns),
        per_min(hung_conns),
        failed * 100.0,
        during.ok,
        during.err,
        mixed.ok,
        mixed.err,
        mixed.healthy_ok,
        mixed.healthy_err
    );
    let mixed_failed = mixed.healthy_err as f64 / (mixed.healthy_ok + mixed.healthy_err) as f64;
    assert!(
        mixed_failed < 0.05,
        "healthy nodes' keys failed {:.1} % while the hung node's keys were asked too",
        mixed_failed * 100.0
    );
    assert!(
        failed < 0.05,
        "healthy nodes' keys failed {:.1} % while another node hung",
        failed * 100.0
    );
    // Bounded churn: the hung node is not redialled by every command,
    // nor the healthy ones every two silences (600 ms here).
    assert!(
        per_min(hung_conns) <= 60.0,
        "{:.0} connections/min to the hung node",
        per_min(hung_conns)
    );
    assert!(
        per_min(healthy_conns) <= 60.0,
        "{:.0} connections/min to healthy nodes while another node hung",
        per_min(healthy_conns)
    );
}

/// Node 0 answers every command, but 200 ms late (above the 50 ms command
/// timeout, below the 300 ms connect timeout): it must never be torn down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_node_that_answers_within_the_connect_timeout_is_not_torn_down() {
    let cluster = RedisCluster::start(3);
    let proxy = HangProxy::start(cluster.nodes[0].port()).await;
    cluster.announce_client_port(0, proxy.port);
    let backend = common::redis_server::cluster_backend(&cluster, Duration::from_millis(300)).await;
    proxy.slow_down(Duration::from_millis(200));
    let slow = keys_on(&cluster, 0, true, 4);
    let healthy = keys_on(&cluster, 0, false, 4);
    let mut all = healthy.clone();
    all.extend(slow);
    let conns = |c: &RedisCluster| {
        connections_received(c.nodes[1].port()) + connections_received(c.nodes[2].port())
    };
    let (healthy_before, proxy_before) = (conns(&cluster), proxy.accepted());
    let replaced_before = replaced();
    let start = tokio::time::Instant::now();
    let t = tally(&backend, &all, Duration::from_secs(10)).await;
    let elapsed = start.elapsed().as_secs_f64();
    let healthy_conns = conns(&cluster) - healthy_before - 2;
    let slow_conns = proxy.accepted() - proxy_before;
    eprintln!(
        "over {elapsed:.1} s: {healthy_conns} connections to healthy nodes, {slow_conns} to the slow one; {} ok {} err",
        t.ok, t.err
    );
    assert_eq!(replaced() - replaced_before, 0, "replacements");
    assert_eq!(slow_conns, 0, "the slow node's connection was replaced");
    assert_eq!(healthy_conns, 0, "the Cluster connection was replaced");
}

/// `connect_lazy` is a plain function, documented for a service that
/// starts while Redis is down: built before the runtime (in `main`, a
/// `lazy_static`, a sync constructor), a Cluster configuration must not
/// panic. (The pending Cluster connection spawns its task at once.)
#[test]
fn connect_lazy_with_a_cluster_outside_a_runtime_does_not_panic() {
    let built = std::panic::catch_unwind(|| {
        RedisBackend::connect_lazy(RedisConfig::cluster(vec!["redis://127.0.0.1:1".to_owned()]))
    });
    assert!(
        matches!(built, Ok(Err(BackendError::InvalidConfig(_)))),
        "connect_lazy(cluster) outside a runtime: {:?}",
        built.map(|b| b.map(|_| ()))
    );
}

/// The standalone one, for comparison.
#[test]
fn connect_lazy_standalone_outside_a_runtime_does_not_panic() {
    let built = std::panic::catch_unwind(|| {
        RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:1"))
    });
    assert!(
        matches!(built, Ok(Err(BackendError::InvalidConfig(_)))),
        "connect_lazy(standalone) outside a runtime: {:?}",
        built.map(|b| b.map(|_| ()))
    );
}
