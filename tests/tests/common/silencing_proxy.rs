//! [`SilencingProxy`]: a loopback TCP proxy whose connections can fall
//! silent (no byte either way, and no reset), as behind an expired NAT
//! entry or across a partition, while new connections still pass.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A loopback TCP proxy to `upstream` whose [`silence`](Self::silence)
/// makes every connection opened so far swallow all bytes both ways
/// without closing, while later connections pass.
pub struct SilencingProxy {
    port: u16,
    generation: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl SilencingProxy {
    /// Listens on a free loopback port, forwarding to `upstream`.
    pub async fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let generation = Arc::new(AtomicU64::new(0));
        let shared = Arc::clone(&generation);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let born = shared.load(Ordering::SeqCst);
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                for (from, to) in [
                    (
                        Box::new(client_read) as Box<dyn tokio::io::AsyncRead + Send + Unpin>,
                        Box::new(server_write) as Box<dyn tokio::io::AsyncWrite + Send + Unpin>,
                    ),
                    (Box::new(server_read), Box::new(client_write)),
                ] {
                    tokio::spawn(pump(from, to, born, Arc::clone(&shared)));
                }
            }
        });
        Self {
            port,
            generation,
            task,
        }
    }

    /// Every connection open now goes silent.
    pub fn silence(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }
}

impl SilencingProxy {
    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for SilencingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies `from` to `to` while the proxy's generation is still `born`;
/// after that reads and drops, never closing `to`.
async fn pump(
    mut from: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
    mut to: Box<dyn tokio::io::AsyncWrite + Send + Unpin>,
    born: u64,
    generation: Arc<AtomicU64>,
) {
    let mut buf = vec![0_u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if generation.load(Ordering::SeqCst) == born && to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    // Silent, not closed: no FIN reaches the other side.
    std::future::pending::<()>().await;
    drop(to);
}
