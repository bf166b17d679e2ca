//! A Redis further away than the reconnection backoff is long: a round
//! trip of 40 ms (a server across regions, a TLS handshake) with a
//! reconnection backoff of 1 ms to 10 ms. The connect timeout (1 s) is
//! the documented bound on a connection attempt (`RedisConfig::
//! connect_timeout`); the backoff only spaces the attempts ("any
//! durations are safe"). Every limiter decision must reach Redis.

use std::time::Duration;

use crate::common::redis_server::RedisServer;
use fusebox::bucket::Quota;
use fusebox_std::backend::{Degrade, RedisBackend, RedisConfig, RedisLimiter, Rules, Source};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A loopback proxy to `upstream` that holds every chunk the server sends
/// for `delay` (a round trip that long).
async fn delaying_proxy(upstream: u16, delay: Duration) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                continue;
            };
            let (mut client_read, mut client_write) = client.into_split();
            let (mut server_read, mut server_write) = server.into_split();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
            });
            tokio::spawn(async move {
                let mut buf = vec![0; 64 * 1024];
                while let Ok(n) = server_read.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    tokio::time::sleep(delay).await;
                    if client_write.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_reconnection_backoff_does_not_cut_a_slow_connection_short() {
    let server = RedisServer::start();
    let port = delaying_proxy(server.port(), Duration::from_millis(40)).await;
    let config = RedisConfig::new(format!("redis://127.0.0.1:{port}"))
        .timeout(Duration::from_millis(800))
        .connect_timeout(Duration::from_secs(1))
        .reconnect_backoff(Duration::from_millis(1), Duration::from_millis(10));
    let rules = Rules::single("per_hour", Quota::per_hour(3).unwrap()).unwrap();
    for backend in [
        RedisBackend::connect(config.clone())
            .await
            .expect("connect"),
        RedisBackend::connect_lazy(config.clone()).unwrap(),
    ] {
        let limiter = RedisLimiter::builder("far", rules.clone(), backend)
            .degrade(Degrade::FailClosed)
            .background_probe(false)
            .build()
            .unwrap();
        let d = limiter.try_acquire("k").await.unwrap();
        assert_eq!(d.source, Source::Redis, "{d:?} {:?}", limiter.metrics());
        assert!(!limiter.is_degraded());
    }
    // Both took from the one shared bucket of 3.
    let backend = RedisBackend::connect(config).await.unwrap();
    let limiter = RedisLimiter::builder("far", rules, backend)
        .build()
        .unwrap();
    let d = limiter.try_acquire_n("k", 1).await.unwrap();
    assert_eq!((d.allowed, d.remaining, d.source), (true, 0, Source::Redis));
}
