//! The monitor's HTTP and TCP checks against real loopback sockets, on real
//! time with short intervals (tens of milliseconds; every wait is bounded).
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fusebox_std::monitor::{
    probe, CheckSpec, ErrorKind, Health, HealthMonitor, HttpCheck, MonitorEvent, Subscription,
    TcpCheck, Thresholds,
};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// A local HTTP server answering every request with `status` after
/// `delay_ms`, recording the `Authorization` headers it sees.
struct Server {
    addr: SocketAddr,
    status: Arc<AtomicU16>,
    delay_ms: Arc<AtomicU64>,
    auth: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let status = Arc::new(AtomicU16::new(200));
    let delay_ms = Arc::new(AtomicU64::new(0));
    let auth = Arc::new(Mutex::new(Vec::new()));
    let (s, d, a) = (
        Arc::clone(&status),
        Arc::clone(&delay_ms),
        Arc::clone(&auth),
    );
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (s, d, a) = (Arc::clone(&s), Arc::clone(&d), Arc::clone(&a));
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    if let Some(v) = req.headers().get(hyper::header::AUTHORIZATION) {
                        a.lock().unwrap().push(v.to_str().unwrap().to_owned());
                    }
                    let (status, delay) = (s.load(SeqCst), d.load(SeqCst));
                    async move {
                        tokio::time::sleep(Duration::from_millis(delay)).await;
                        Ok::<_, Infallible>(
                            Response::builder()
                                .status(status)
                                .body(Full::new(Bytes::from_static(b"ok")))
                                .unwrap(),
                        )
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Server {
        addr,
        status,
        delay_ms,
        auth,
        task,
    }
}

/// Waits (at most 3 s) for the health of `check` to become `to`.
async fn until_health(events: &mut Subscription, to: Health) {
    tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            if let Some(MonitorEvent::HealthChanged { to: now, .. }) = events.recv().await {
                if now == to {
                    return;
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no change to {to:?} within 3 s"));
}

/// Waits (at most 2 s) until the runtime has `tasks` alive tasks.
async fn until_alive_tasks(tasks: usize) {
    let metrics = tokio::runtime::Handle::current().metrics();
    tokio::time::timeout(Duration::from_secs(2), async {
        while metrics.num_alive_tasks() != tasks {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "{} tasks alive, expected {tasks}",
            metrics.num_alive_tasks()
        )
    });
}

#[tokio::test]
async fn http_check_follows_a_failing_server_to_unhealthy_and_back() {
    let server = serve().await;
    let before = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    let check = HttpCheck::new(&format!("http://{}/health", server.addr)).unwrap();
    let monitor = HealthMonitor::new()
        .check(
            CheckSpec::new("api", check)
                .interval(Duration::from_millis(20))
                .timeout(Duration::from_millis(500))
                .thresholds(Thresholds::new().unhealthy_after(2).healthy_after(2)),
        )
        .spawn();
    let mut events = monitor.subscribe();
    until_health(&mut events, Health::Healthy).await;
    assert_eq!(
        monitor.status().checks[0]
            .last
            .as_ref()
            .unwrap()
            .detail
            .as_deref(),
        Some("status 200")
    );

    server.status.store(503, SeqCst);
    until_health(&mut events, Health::Unhealthy).await;
    let status = monitor.status();
    let error = status.checks[0]
        .last
        .as_ref()
        .unwrap()
        .error
        .clone()
        .unwrap();
    assert_eq!(error.kind(), ErrorKind::Status);
    assert!(
        error.message().ends_with("status 503, expected 200..=299"),
        "{error}"
    );
    assert_eq!(status.health, Health::Unhealthy);

    server.status.store(204, SeqCst);
    until_health(&mut events, Health::Healthy).await;
    assert_eq!(monitor.health(), Health::Healthy);
    monitor.stop().await;
    // No client connection task (nor server connection task) outlives it.
    until_alive_tasks(before).await;
}

#[tokio::test]
async fn http_credentials_are_sent_as_basic_auth_and_never_shown() {
    let server = serve().await;
    let url = format!(
        "http://monitor:s3cret@{}/health?token=t0k3n&v=1",
        server.addr
    );
    let check = HttpCheck::new(&url).unwrap();
    let shown = format!("http://monitor:***@{}/health?token=***&v=1", server.addr);
    assert_eq!(check.url(), shown);
    assert!(!format!("{check:?}").contains("s3cret"));
    let result = probe(&check, Duration::from_secs(2)).await;
    assert!(result.passed(), "{result:?}");
    assert_eq!(*server.auth.lock().unwrap(), ["Basic bW9uaXRvcjpzM2NyZXQ="]);

    // The same credentials towards a closed port: the error names the
    // target without them.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let down = HttpCheck::new(&format!(
        "http://monitor:s3cret@{closed}/health?password=p4ss"
    ))
    .unwrap();
    let monitor = HealthMonitor::new()
        .check(CheckSpec::new("up", check).interval(Duration::from_millis(50)))
        .check(
            CheckSpec::new("down", down)
                .interval(Duration::from_millis(50))
                .timeout(Duration::from_secs(2)),
        )
        .spawn();
    let mut events = monitor.subscribe();
    until_health(&mut events, Health::Degraded).await;
    let status = monitor.status();
    let error = status.checks[1]
        .last
        .as_ref()
        .unwrap()
        .error
        .clone()
        .unwrap();
    assert_eq!(error.kind(), ErrorKind::Connect);
    let message = error.message();
    assert!(
        message.starts_with("GET http://")
            && message.contains(&format!("{closed}/health?password=***")),
        "{error}"
    );
    assert_eq!(status.checks[0].target.as_deref(), Some(shown.as_str()));
    {
        let json = serde_json::to_string(&status).unwrap();
        for secret in ["s3cret", "t0k3n", "p4ss"] {
            assert!(!json.contains(secret), "{secret} in {json}");
        }
    }
    let debug = format!("{status:?}");
    for secret in ["s3cret", "t0k3n", "p4ss"] {
        assert!(!debug.contains(secret), "{secret} in {debug}");
    }
    monitor.stop().await;
}

/// A token passed as the user with an empty password (`http://TOKEN:@host`,
/// curl's `-u TOKEN:`) is user info with no password to mask: it must be
/// hidden whole, as `http://TOKEN@host` is (found by a hostile review: the
/// token showed in `url()`, the status and every error).
#[tokio::test]
async fn a_token_as_user_with_an_empty_password_is_never_shown() {
    let server = serve().await;
    let check = HttpCheck::new(&format!("http://ghp_t0k3n:@{}/health", server.addr)).unwrap();
    assert_eq!(check.url(), format!("http://***@{}/health", server.addr));
    assert!(!format!("{check:?}").contains("t0k3n"));
    let result = probe(&check, Duration::from_secs(2)).await;
    assert!(result.passed(), "{result:?}");
    // Still sent, as `user:` with an empty password (RFC 7617).
    assert_eq!(*server.auth.lock().unwrap(), ["Basic Z2hwX3QwazNuOg=="]);
    // Nor in the error of a URL refused after parsing.
    let e = HttpCheck::new("https://ghp_t0k3n:@example.com/").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(!e.message().contains("t0k3n"), "{e}");
    assert!(e.message().contains("example.com"), "{e}");
    let monitor = HealthMonitor::new()
        .check(CheckSpec::new("api", check).interval(Duration::from_millis(50)))
        .spawn();
    let mut events = monitor.subscribe();
    until_health(&mut events, Health::Healthy).await;
    let json = serde_json::to_string(&monitor.status()).unwrap();
    assert!(!json.contains("t0k3n"), "{json}");
    monitor.stop().await;
}

/// `ErrorKind::Connect` is documented as "the dependency could not be
/// reached (connect refused, DNS, reset)", as `TcpCheck` maps a reset; an
/// HTTP server that accepts and resets the connection was an
/// `ErrorKind::Other` (found by a hostile review).
#[tokio::test]
async fn an_http_server_resetting_the_connection_is_a_connect_error() {
    use tokio::io::AsyncReadExt;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = [0_u8; 1024];
            let _ = stream.read(&mut buf).await; // the request
            stream.set_zero_linger().unwrap();
            drop(stream); // RST
        }
    });
    let check = HttpCheck::new(&format!("http://{addr}/health?token=t0k3n")).unwrap();
    let result = probe(&check, Duration::from_secs(2)).await;
    let error = result.error.unwrap();
    assert_eq!(error.kind(), ErrorKind::Connect, "{error}");
    assert!(!error.message().contains("t0k3n"), "{error}");
    server.abort();
}

#[tokio::test]
async fn tcp_check_passes_on_a_bound_port_and_fails_on_a_closed_one() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let open = TcpCheck::new(listener.local_addr().unwrap().to_string());
    let result = probe(&open, Duration::from_secs(1)).await;
    assert!(result.passed(), "{result:?}");

    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let result = probe(&TcpCheck::new(closed.to_string()), Duration::from_secs(1)).await;
    let error = result.error.unwrap();
    assert_eq!(error.kind(), ErrorKind::Connect, "{error}");
    drop(listener);
}

/// A TCP address that is no address (no port, a port that is no number)
/// is a misconfigured check, `ErrorKind::Config`, not `Other` (found by a
/// hostile review); the answer comes before any DNS lookup.
#[tokio::test]
async fn a_tcp_check_of_an_invalid_address_is_a_config_error() {
    for addr in [
        "localhost",
        "127.0.0.1",
        "127.0.0.1:http",
        "127.0.0.1:99999",
    ] {
        let result = probe(&TcpCheck::new(addr), Duration::from_secs(5)).await;
        let error = result.error.unwrap();
        assert_eq!(error.kind(), ErrorKind::Config, "{addr}: {error}");
    }
}

#[tokio::test]
async fn a_slow_response_hits_the_timeout() {
    let server = serve().await;
    server.delay_ms.store(1_000, SeqCst);
    let check = HttpCheck::new(&format!("http://{}/slow", server.addr)).unwrap();
    let started = std::time::Instant::now();
    let result = probe(&check, Duration::from_millis(50)).await;
    let error = result.error.unwrap();
    assert_eq!(error.kind(), ErrorKind::Timeout);
    assert!(
        result.latency >= Duration::from_millis(50) && result.latency < Duration::from_millis(900)
    );
    assert!(started.elapsed() < Duration::from_millis(900));
}
