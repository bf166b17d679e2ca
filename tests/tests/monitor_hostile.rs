//! The health monitor against a hostile or careless user: secrets in
//! URLs of forms a check's owner would not think of.

use std::time::Duration;

use fusebox_std::monitor::{probe, CheckSpec, ErrorKind, HealthCheck, HealthMonitor, HttpCheck};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A server answering every request `403 Forbidden`, as a store answers
/// a presigned URL that expired.
async fn forbidding() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0_u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let answer = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n";
                let _ = stream.write_all(answer).await;
            });
        }
    });
    addr
}

/// A presigned URL (S3's `X-Amz-Signature`, GCS's `X-Goog-Signature`)
/// grants access to whoever holds it until it expires: an `HttpCheck`
/// of one showed its signature in `url()`, its target, its errors and
/// the status (found by a hostile review: `redact` masked `signature=`
/// and `sig=`, not a name ending in `-signature`).
#[tokio::test]
async fn a_presigned_urls_signature_is_never_shown() {
    let addr = forbidding().await;
    let urls = [
        format!(
            "http://{addr}/bucket/health.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=AKIDEXAMPLE%2F20261206%2Fus-east-1%2Fs3%2Faws4_request\
             &X-Amz-Date=20261206T100000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host\
             &X-Amz-Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
        ),
        format!(
            "http://{addr}/b/o?X-Goog-Algorithm=GOOG4-RSA-SHA256&x-goog-signature=5d672d79c15b"
        ),
        format!("http://{addr}/o?request_signature=5d672d79c15b"),
    ];
    let mut monitor = HealthMonitor::new();
    for (i, url) in urls.iter().enumerate() {
        let check = HttpCheck::new(url).unwrap();
        for shown in [check.url().to_owned(), check.target().unwrap()] {
            assert!(!shown.contains("5d672d79c15b"), "{shown}");
            assert!(shown.contains("ignature=***"), "{shown}");
        }
        let run = probe(&check, Duration::from_secs(5)).await;
        let error = run.error.expect("403 is outside 200..=299");
        assert_eq!(error.kind(), ErrorKind::Status, "{error}");
        assert!(!error.message().contains("5d672d79c15b"), "{error}");
        monitor = monitor
            .check(CheckSpec::new(format!("store{i}"), check).interval(Duration::from_millis(30)));
    }
    let monitor = monitor.spawn();
    tokio::time::timeout(Duration::from_secs(10), async {
        while monitor.status().checks.iter().any(|c| c.last.is_none()) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("every check ran");
    let json = serde_json::to_string(&monitor.status()).unwrap();
    assert!(!json.contains("5d672d79c15b"), "{json}");
    assert_eq!(json.matches("status 403").count(), urls.len(), "{json}");
    monitor.stop().await;
}
