//! A fleet breaker's `force_close`/`force_open` whose connection closes
//! after Redis ran it, end to end against a real redis-server: a proxy
//! drops the command's reply and closes the connection (as a server's
//! idle timeout, a `CLIENT KILL` or a proxy's restart may), so the backend
//! sends the command once more on a new connection; meanwhile another
//! instance changed the decision. Its change must stay: the repeat is
//! recognised by the command's admin record and changes nothing.
//!
//! Before the fix, A's `force_close` ran twice and undid B's trip made
//! between its two runs (the fleet closed again, B's opening lost).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::fleet::{backend, stored, sync_ok, trip};
use crate::common::redis_server::RedisServer;
use fusebox::breaker::{CircuitBreaker, Config, State};
use fusebox_std::backend::{FleetBreaker, RedisBackend, RedisConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

/// A loopback proxy to a Redis server that, once armed, holds back the
/// next reply it sees, tells the test (which then acts, and answers),
/// then closes the client's connection without that reply. Later
/// connections pass.
struct DroppingProxy {
    port: u16,
    armed: Arc<AtomicBool>,
    accepted: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl DroppingProxy {
    async fn start(upstream: u16, dropped: mpsc::UnboundedSender<oneshot::Sender<()>>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let armed = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicU64::new(0));
        let (arm, count) = (Arc::clone(&armed), Arc::clone(&accepted));
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let server = TcpStream::connect(("127.0.0.1", upstream)).await.unwrap();
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                });
                let (arm, dropped) = (Arc::clone(&arm), dropped.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0_u8; 16 * 1024];
                    loop {
                        let n = match server_read.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if arm.swap(false, Ordering::SeqCst) {
                            // The command ran: let the test act, then
                            // close the client's side without the reply.
                            let (done, acted) = oneshot::channel();
                            dropped.send(done).unwrap();
                            let _ = acted.await;
                            break;
                        }
                        if client_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = client_write.shutdown().await;
                });
            }
        });
        Self {
            port,
            armed,
            accepted,
            task,
        }
    }
}

impl Drop for DroppingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Two failures trip it; open 60 s.
fn core() -> Arc<CircuitBreaker> {
    Arc::new(CircuitBreaker::new(
        Config::builder()
            .consecutive_failures(2)
            .open_for(Duration::from_secs(60).into())
            .build()
            .unwrap(),
    ))
}

/// Instance A through the proxy (a 10 s command timeout, so the test's
/// action between the two runs never times the command out), instance
/// B straight to the server; both reconcile only when asked or woken.
async fn pair(server: &RedisServer, proxy: &DroppingProxy) -> (FleetBreaker, FleetBreaker) {
    let config = RedisConfig::new(format!("redis://127.0.0.1:{}", proxy.port))
        .timeout(Duration::from_secs(10))
        .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200));
    let a = FleetBreaker::builder(
        "resent",
        core(),
        RedisBackend::connect(config).await.unwrap(),
    )
    .sync_interval(Duration::from_secs(3_600))
    .build()
    .await
    .unwrap();
    let b = FleetBreaker::builder("resent", core(), backend(&server.url()).await)
        .sync_interval(Duration::from_secs(3_600))
        .build()
        .await
        .unwrap();
    sync_ok(&a).await;
    sync_ok(&b).await;
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_force_close_resent_after_its_reply_was_lost_keeps_a_trip_made_between() {
    let server = RedisServer::start();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let proxy = DroppingProxy::start(server.port(), tx).await;
    let (a, b) = pair(&server, &proxy).await;
    let before = proxy.accepted.load(Ordering::SeqCst);

    proxy.armed.store(true, Ordering::SeqCst);
    let closing = tokio::spawn({
        let a = a.clone();
        async move { a.force_close().await }
    });
    // A's force_close ran (the fleet closed, as it was); its reply is held.
    let done = rx.recv().await.unwrap();
    // B trips the fleet meanwhile.
    trip(&b).await;
    sync_ok(&b).await;
    let opened = stored(&server.url(), b.decision_key()).await;
    assert!(opened.contains(":o:"), "{opened}");
    // The connection closes without the reply: A's command is sent again.
    done.send(()).unwrap();
    closing.await.unwrap().unwrap();

    assert_eq!(
        proxy.accepted.load(Ordering::SeqCst),
        before + 1,
        "sent again, on a new connection"
    );
    assert_eq!(
        stored(&server.url(), b.decision_key()).await,
        opened,
        "the force_close sent again undid B's trip"
    );
    assert_eq!(a.state(), State::Open, "A applied the newer decision");
    assert_eq!(a.fleet_metrics().errors, 0);
    assert_eq!(b.sync().await.unwrap(), State::Open);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_force_open_resent_after_its_reply_was_lost_keeps_a_close_made_between() {
    let server = RedisServer::start();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let proxy = DroppingProxy::start(server.port(), tx).await;
    let (a, b) = pair(&server, &proxy).await;
    let before = proxy.accepted.load(Ordering::SeqCst);

    proxy.armed.store(true, Ordering::SeqCst);
    let opening = tokio::spawn({
        let a = a.clone();
        async move { a.force_open().await }
    });
    let done = rx.recv().await.unwrap();
    assert!(stored(&server.url(), b.decision_key())
        .await
        .contains(":f:"));
    // Another operator closes the fleet, on B.
    b.force_close().await.unwrap();
    let closed = stored(&server.url(), b.decision_key()).await;
    assert!(closed.contains(":c:"), "{closed}");
    done.send(()).unwrap();
    opening.await.unwrap().unwrap();

    assert_eq!(
        proxy.accepted.load(Ordering::SeqCst),
        before + 1,
        "sent again, on a new connection"
    );
    assert_eq!(
        stored(&server.url(), b.decision_key()).await,
        closed,
        "the force_open sent again undid the close"
    );
    assert_eq!(a.state(), State::Closed);
}
