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

/// What a hostile server does with one connection, after the request
/// head: it returns when the client has gone (a read sees the end, or a
/// write fails).
type Answer =
    fn(tokio::net::TcpStream) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// A raw TCP server on loopback answering every connection with `answer`;
/// `open` counts the connections the client has not closed yet.
struct Hostile {
    addr: SocketAddr,
    open: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn hostile(answer: Answer) -> Hostile {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = Arc::clone(&open);
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counted.fetch_add(1, SeqCst);
            let counted = Arc::clone(&counted);
            tokio::spawn(async move {
                if read_request_head(&mut stream).await {
                    answer(stream).await;
                }
                counted.fetch_sub(1, SeqCst);
            });
        }
    });
    Hostile { addr, open, task }
}

/// Reads up to the end of a request head; `false` if the client left.
async fn read_request_head(stream: &mut tokio::net::TcpStream) -> bool {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    let mut buf = [0_u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    true
}

/// Reads until the client closes.
async fn until_closed(stream: &mut tokio::net::TcpStream) {
    use tokio::io::AsyncReadExt;
    let mut buf = [0_u8; 1024];
    while let Ok(1..) = stream.read(&mut buf).await {}
}

/// Writes `bytes` again and again (pausing `pause` between) until the
/// client has gone.
async fn write_until_closed(stream: &mut tokio::net::TcpStream, bytes: &[u8], pause: Duration) {
    use tokio::io::AsyncWriteExt;
    while stream.write_all(bytes).await.is_ok() {
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
}

/// The hostile servers' answers, each named.
fn hostile_answers() -> [(&'static str, Answer); 13] {
    [
        ("never answers", |mut s| {
            Box::pin(async move { until_closed(&mut s).await })
        }),
        ("trickles its status line", |mut s| {
            Box::pin(async move {
                write_until_closed(&mut s, b"H", Duration::from_millis(50)).await;
            })
        }),
        ("sends headers for ever, slowly", |mut s| {
            Box::pin(async move {
                use tokio::io::AsyncWriteExt;
                if s.write_all(b"HTTP/1.1 200 OK\r\n").await.is_ok() {
                    write_until_closed(&mut s, b"X-A: b\r\n", Duration::from_millis(1)).await;
                }
            })
        }),
        ("sends one enormous header", |mut s| {
            Box::pin(async move {
                use tokio::io::AsyncWriteExt;
                if s.write_all(b"HTTP/1.1 200 OK\r\nX-Big: ").await.is_ok() {
                    write_until_closed(&mut s, &[b'a'; 4096], Duration::ZERO).await;
                }
            })
        }),
        ("sends a body for ever", |mut s| {
            Box::pin(async move {
                let head = b"HTTP/1.1 200 OK\r\nContent-Length: 100000000000\r\n\r\n";
                write_until_closed(&mut s, head, Duration::ZERO).await;
            })
        }),
        ("never finishes its body", |mut s| {
            Box::pin(async move {
                use tokio::io::AsyncWriteExt;
                let head = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nab";
                if s.write_all(head).await.is_ok() {
                    until_closed(&mut s).await;
                }
            })
        }),
        ("answers 100 Continue and nothing more", |mut s| {
            Box::pin(async move {
                use tokio::io::AsyncWriteExt;
                if s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await.is_ok() {
                    until_closed(&mut s).await;
                }
            })
        }),
        ("floods informational answers", |mut s| {
            Box::pin(async move {
                let early = b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n";
                write_until_closed(&mut s, early, Duration::ZERO).await;
            })
        }),
        ("redirects", |mut s| {
            Box::pin(async move {
                use tokio::io::AsyncWriteExt;
                let head =
                    b"HTTP/1.1 302 Found\r\nLocation: http://x/\r\nContent-Length: 0\r\n\r\n";
                if s.write_all(head).await.is_ok() {
                    until_closed(&mut s).await;
                }
            })
        }),
        ("speaks HTTP/0.9", |mut s| {
            Box::pin(async move {
                use tokio::io::AsyncWriteExt;
                if s.write_all(b"<html>ok</html>\n").await.is_ok() {
                    until_closed(&mut s).await;
                }
            })
        }),
        ("closes mid-answer", |mut s| {
            Box::pin(async move {
                use tokio::io::AsyncWriteExt;
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nX-A:").await;
            })
        }),
        ("answers 204 and closes at once", |mut s| {
            Box::pin(async move {
                use tokio::io::AsyncWriteExt;
                let _ = s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await;
            })
        }),
        ("answers a status over 999", |mut s| {
            Box::pin(async move {
                use tokio::io::AsyncWriteExt;
                if s.write_all(b"HTTP/1.1 1000 X\r\nContent-Length: 0\r\n\r\n")
                    .await
                    .is_ok()
                {
                    until_closed(&mut s).await;
                }
            })
        }),
    ]
}

/// Every hostile answer is bounded by the check's timeout, and the run
/// leaves nothing behind: the connection is closed (the server sees the
/// client go) and no task is left running soon after the run ended. A
/// server flooding informational (`103`) answers kept hyper's connection
/// task reading, a CPU busy, for seconds after the run timed out (found
/// by a hostile review: ~4 s and ~60 MB of `103`s on a multi-thread
/// runtime; the pooled client drove the connection on a task of its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_server_is_bounded_by_the_timeout_and_left_closed() {
    let cases = hostile_answers();
    let metrics = tokio::runtime::Handle::current().metrics();
    for (what, answer) in cases {
        let server = hostile(answer).await;
        let alive = metrics.num_alive_tasks();
        let check = HttpCheck::new(&format!("http://{}/health", server.addr)).unwrap();
        let started = std::time::Instant::now();
        let result = probe(&check, Duration::from_millis(200)).await;
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{what}: {result:?}"
        );
        // The body is not read: a `2xx` head is a pass, whatever follows.
        let passes = what.contains("body") || what.contains("204");
        assert_eq!(result.passed(), passes, "{what}: {result:?}");
        // The server's connection task is counted in `alive`; it ends
        // once the client has gone.
        let left = tokio::time::timeout(Duration::from_millis(500), async {
            while server.open.load(SeqCst) != 0 || metrics.num_alive_tasks() > alive {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        assert!(
            left.is_ok(),
            "{what}: {} connection(s) still open, {} tasks alive ({alive} before the run), 500 ms after it",
            server.open.load(SeqCst),
            metrics.num_alive_tasks()
        );
    }
}

/// Everything a `tracing` subscriber writes, kept for the test to read.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Everything the monitor logs (at every level), sends and reports about
/// an HTTP check with credentials in its URL, failing and recovered
/// against, leaves them out.
#[tokio::test]
async fn logs_events_and_status_carry_no_secret_of_an_http_check() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);

    let server = serve().await;
    server.status.store(503, SeqCst);
    let secrets = ["s3cret", "t0k3n", "k3y", "p4ss"];
    let url = format!(
        "http://ops:s3cret@{}/health?token=t0k3n&api_key=k3y&password=p4ss",
        server.addr
    );
    let rule = fusebox_std::monitor::RecoveryRule::new(
        1,
        fusebox_std::monitor::RecoveryAction::new("restart", || async {
            Err::<(), _>("restart via http://ops:s3cret@ctl/?token=t0k3n refused")
        }),
    );
    let monitor = HealthMonitor::new()
        .check(
            CheckSpec::new("api?token=t0k3n", HttpCheck::new(&url).unwrap())
                .interval(Duration::from_millis(20))
                .thresholds(Thresholds::new().unhealthy_after(2))
                .alerts(
                    fusebox_std::monitor::AlertThresholds::new()
                        .window(2)
                        .min_samples(1)
                        .min_success_rate(100),
                )
                .recovery(rule),
        )
        .spawn();
    let mut events = monitor.subscribe();
    until_health(&mut events, Health::Unhealthy).await;
    server.status.store(200, SeqCst);
    until_health(&mut events, Health::Healthy).await;
    let status = serde_json::to_string(&monitor.status()).unwrap();
    monitor.stop().await;
    let mut sent = Vec::new();
    while let Some(event) = events.recv().await {
        sent.push(format!(
            "{event:?} {}",
            serde_json::to_string(&event).unwrap()
        ));
    }
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("health changed"), "{logs}");
    assert!(logs.contains("recovery attempted"), "{logs}");
    for secret in secrets {
        assert!(!logs.contains(secret), "{secret} in the logs: {logs}");
        assert!(!status.contains(secret), "{secret} in the status: {status}");
        for event in &sent {
            assert!(!event.contains(secret), "{secret} in an event: {event}");
        }
    }
}

/// A listener whose backlog is full answers no SYN: the connect hangs
/// (the kernel retries for minutes) and the check's timeout bounds it.
#[tokio::test]
async fn a_tcp_check_of_a_black_holed_port_times_out() {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap(); // never accepts
    let addr = listener.local_addr().unwrap();
    let mut held = Vec::new();
    loop {
        let connect = tokio::net::TcpStream::connect(addr);
        match tokio::time::timeout(Duration::from_millis(100), connect).await {
            Ok(Ok(stream)) => held.push(stream),
            Ok(Err(e)) => panic!("{e}"),
            Err(_) => break, // the backlog is full
        }
        assert!(held.len() < 64, "the backlog never filled");
    }
    let started = std::time::Instant::now();
    let result = probe(&TcpCheck::new(addr.to_string()), Duration::from_millis(200)).await;
    assert_eq!(result.error.map(|e| e.kind()), Some(ErrorKind::Timeout));
    assert!(started.elapsed() < Duration::from_secs(1));
}

/// Stopping (or dropping) the monitor during an HTTP run closes that
/// run's connection.
#[tokio::test]
async fn stopping_the_monitor_mid_run_closes_the_connection() {
    for stop in [true, false] {
        let server = hostile(|mut s| Box::pin(async move { until_closed(&mut s).await })).await;
        let check = HttpCheck::new(&format!("http://{}/health", server.addr)).unwrap();
        let monitor = HealthMonitor::new()
            .check(CheckSpec::new("silent", check).interval(Duration::from_secs(60)))
            .spawn();
        tokio::time::timeout(Duration::from_secs(2), async {
            while server.open.load(SeqCst) == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the run connects");
        if stop {
            monitor.stop().await;
        } else {
            drop(monitor);
        }
        tokio::time::timeout(Duration::from_millis(500), async {
            while server.open.load(SeqCst) != 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("still open after the monitor stopped (stop: {stop})"));
    }
}

/// An HTTP check with credentials in its URL, failing: the registry's
/// report, the monitor's status, its events and its `health changed` log
/// line name the check and why it fails (the status the server answered),
/// without the credentials (found by a review: the report said only
/// "monitor is unhealthy").
#[tokio::test]
async fn the_reason_names_a_failing_http_check_without_its_credentials() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);

    let server = serve().await;
    server.status.store(503, SeqCst);
    let url = format!(
        "http://ops:s3cret@{}/health?token=t0k3n&api_key=k3y&probe=1",
        server.addr
    );
    let monitor = HealthMonitor::new()
        .check(
            CheckSpec::new("api", HttpCheck::new(&url).unwrap())
                .interval(Duration::from_millis(20))
                .thresholds(Thresholds::new().unhealthy_after(2)),
        )
        .spawn();
    let registry = fusebox_std::Registry::new();
    registry.attach_monitor(monitor.reader());
    let mut events = monitor.subscribe();
    until_health(&mut events, Health::Unhealthy).await;
    let reader = monitor.reader();
    monitor.stop().await;
    // At the change, and after (a run more may have ended since).
    let reason = |failures: u32| {
        format!(
            "check \"api\" unhealthy: {failures} failures in a row, last: status: \
             GET http://ops:***@{}/health?token=***&api_key=***&probe=1: status 503, expected 200..=299",
            server.addr
        )
    };
    let status = reader.status();
    let now = reason(status.checks[0].consecutive_failures);
    assert_eq!(status.reason.as_deref(), Some(&*now));
    let report = registry.health();
    assert!(
        report
            .reasons
            .contains(&format!("monitor is unhealthy: {now}")),
        "{:?}",
        report.reasons
    );
    let expected = reason(2);
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let line = logs
        .lines()
        .find(|l| l.contains("health changed") && l.contains("to=Unhealthy"))
        .unwrap_or_else(|| panic!("{logs}"));
    assert!(line.contains(&format!("reason={expected}")), "{line}");
    let json = serde_json::to_string(&report).unwrap();
    for secret in ["s3cret", "t0k3n", "k3y"] {
        assert!(!logs.contains(secret), "{secret} in the logs: {logs}");
        assert!(!json.contains(secret), "{secret} in the report: {json}");
    }
}
