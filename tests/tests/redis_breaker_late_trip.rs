//! A fleet breaker's trip that timed out (Redis stalled on its
//! connection) and ran late, after the same instance's newer
//! `force_close` (sent on the connection made in its place), end to end
//! against a real redis-server behind a proxy that holds the stalled
//! connection's bytes and delivers them when told. The docs: a process's
//! commands carry tokens that grow, and "an older trip or admin command
//! arriving late changes nothing"; the operator's close must stay.
//!
//! Found by a hostile review: trips and admin commands kept separate
//! records (`…:tripped:<nonce>`, `…:forced:<nonce>`; now one,
//! `…:record:<nonce>`), so a trip arriving
//! after a newer admin command was new to its record, and reopened the
//! fleet the operator had just closed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::fleet::{stored, sync_ok, trip};
use crate::common::redis_server::RedisServer;
use fusebox::breaker::{CircuitBreaker, Config, State};
use fusebox_std::backend::{FleetBreaker, RedisBackend, RedisConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const MARK: &[u8] = b"fusebox-held-bytes-ran";

/// A loopback proxy whose connections open at [`hold`](Self::hold) keep
/// what the client sends (and drop what the server answers) until
/// [`release`](Self::release) sends it on, followed by an `ECHO` whose
/// answer tells `ran` that the server ran all of it.
struct HoldingProxy {
    port: u16,
    held: Arc<AtomicBool>,
    release: watch::Sender<bool>,
    ran: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl HoldingProxy {
    async fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let held = Arc::new(AtomicBool::new(false));
        let (release, released) = watch::channel(false);
        let (ran_tx, ran) = watch::channel(false);
        let ran_tx = Arc::new(ran_tx);
        let hold = Arc::clone(&held);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                // Opened while held: passes (the replacement connection).
                let born_held = hold.load(Ordering::SeqCst);
                let held = Arc::clone(&hold);
                let server = TcpStream::connect(("127.0.0.1", upstream)).await.unwrap();
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let mut released = released.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0_u8; 16 * 1024];
                    let mut kept = Vec::new();
                    loop {
                        let n = match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if !born_held && held.load(Ordering::SeqCst) {
                            kept.extend_from_slice(&buf[..n]);
                        } else if sw.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                    if kept.is_empty() {
                        return;
                    }
                    let _ = released.wait_for(|r| *r).await;
                    kept.extend_from_slice(b"ECHO ");
                    kept.extend_from_slice(MARK);
                    kept.extend_from_slice(b"\r\n");
                    let _ = sw.write_all(&kept).await;
                    std::future::pending::<()>().await;
                });
                let held = Arc::clone(&hold);
                let ran_tx = Arc::clone(&ran_tx);
                tokio::spawn(async move {
                    let mut buf = vec![0_u8; 16 * 1024];
                    let mut dropped = Vec::new();
                    loop {
                        let n = match sr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if !born_held && held.load(Ordering::SeqCst) {
                            dropped.extend_from_slice(&buf[..n]);
                            if dropped.windows(MARK.len()).any(|w| w == MARK) {
                                let _ = ran_tx.send(true);
                            }
                        } else if cw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Self {
            port,
            held,
            release,
            ran,
            task,
        }
    }

    fn hold(&self) {
        self.held.store(true, Ordering::SeqCst);
    }

    /// Sends the held bytes on, and waits until the server ran them.
    async fn release(&mut self) {
        self.release.send_replace(true);
        tokio::time::timeout(Duration::from_secs(10), self.ran.wait_for(|r| *r))
            .await
            .expect("the held commands ran")
            .unwrap();
    }
}

impl Drop for HoldingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trip_run_late_does_not_undo_the_instances_newer_force_close() {
    let server = RedisServer::start();
    let mut proxy = HoldingProxy::start(server.port()).await;
    let backend = RedisBackend::connect(
        RedisConfig::new(format!("redis://127.0.0.1:{}", proxy.port))
            .timeout(Duration::from_millis(200))
            .connect_timeout(Duration::from_millis(300))
            .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200)),
    )
    .await
    .unwrap();
    let core = Arc::new(CircuitBreaker::new(
        Config::builder().consecutive_failures(2).build().unwrap(),
    ));
    let a = FleetBreaker::builder("late", core, backend)
        .sync_interval(Duration::from_secs(3_600))
        .build()
        .await
        .unwrap();
    sync_ok(&a).await;
    let decision = "fusebox:{breaker:late}:decision";
    assert!(stored(&server.url(), decision).await.contains(":c:"));
    // Redis stalls on A's connection: its trip times out, unanswered.
    proxy.hold();
    trip(&a).await;
    let start = tokio::time::Instant::now();
    while !a.is_degraded() {
        assert!(start.elapsed() < Duration::from_secs(10), "trip not sent");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(stored(&server.url(), decision).await.contains(":c:"));
    // The operator closes it through A, on the connection made in the
    // stalled one's place (earlier tries are held as well).
    while a.force_close().await.is_err() {
        assert!(start.elapsed() < Duration::from_secs(10), "never replaced");
    }
    assert_eq!(a.state(), State::Closed);
    let closed = stored(&server.url(), decision).await;
    assert!(closed.contains(":c:"), "{closed}");
    // The stalled connection's commands (the trip first) reach Redis.
    proxy.release().await;
    let after = stored(&server.url(), decision).await;
    assert_eq!(after, closed, "A's older trip undid its newer force_close");
}
