//! Load: 1 100 concurrent HTTP/1.1 keep-alive connections on loopback
//! against one axum server with both tower layers (a keyed
//! `RateLimitLayer` outside a `CircuitBreakerLayer`, both from one
//! `Registry`) and the HTTP endpoints, for about four seconds.
//!
//! Every connection is opened before the load starts and kept for the
//! whole run (hyper's connection API never reconnects: a connection lost is
//! an error), so 1 100 connections are open at once from the first request
//! to the last. Each sends a request, waits for the whole response, and
//! sends the next, until the phase's end. The test checks, with no
//! assertion on speed:
//!
//! * every request is answered: no connection error, and only the statuses
//!   this server can give (`200`; `429` from the limiter; `500` from the
//!   backend, only for requests that ask for it; `503` only with the
//!   breaker's body);
//! * no key is admitted more than the GCRA contract allows over any window
//!   (see [`over_limit`]), and none less than its first `BURST` requests;
//! * the counters in `/metrics`, scraped after the run, equal what the
//!   clients saw, and they never go down while scraped during the run;
//! * resident memory stays flat across the measured run (see
//!   [`RSS_GROWTH_BOUND`]).
//!
//! The process raises its own open-file soft limit first: the default is
//! 1 024, and client and server ends both live here (2 200 sockets).
//!
//! Run it alone, with its summary:
//! `cargo test -p fusebox-tests --test load_1000_clients -- --nocapture`.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::io::BufRead;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::Router;
use fusebox::breaker::Config;
use fusebox::bucket::{FullPolicy, Quota};
use fusebox_std::http::{router, HttpOptions};
use fusebox_std::tower::rate_limit::{key, BadKey};
use fusebox_std::tower::{CircuitBreakerLayer, RateLimitLayer};
use fusebox_std::Registry;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use prometheus_parse::{Scrape, Value};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;

/// Connections open at once for the whole run.
const CONNECTIONS: usize = 1_100;
/// API keys `key-0` … `key-31`; one connection in `KEYS + 1` sends none and
/// is charged to the default key, `anonymous`.
const KEYS: usize = 32;
/// Per key: `RATE` tokens per second, bursts of `BURST`. Far below what
/// 1 100 connections ask (each key has about 33 of them), so most requests
/// are refused and the bound is tested at its edge.
const RATE: u32 = 20;
const BURST: u32 = 10;
/// One connection in `FAIL_EVERY` asks the backend to fail (`x-fail`):
/// about 2 % of the admitted calls, far from the breaker's 50 % over 20
/// calls, so it stays closed; if it opened, its `503`s would be counted
/// and checked like the rest.
const FAIL_EVERY: usize = 64;
const WARM_UP: Duration = Duration::from_secs(1);
const RUN: Duration = Duration::from_secs(3);
/// Connections being opened at once (the listen backlog is 4 096).
const CONNECT_WAVE: usize = 100;
/// Bound on the growth of the process's resident memory from the end of
/// the warm-up to the end of the run, while the same 1 100 connections
/// stay open. The warm-up has already allocated what a connection costs
/// (hyper's read and write buffers at both ends, the tasks, the keyed
/// limiter's fixed table), so the run should add nothing that lasts:
/// what it may add is allocator noise (glibc's per-thread arenas keep
/// freed memory, and 1 100 response bodies in flight at once touch new
/// pages), a few MiB. 64 MiB is loose on purpose, so CI noise never fails
/// the test, yet a leak of a few KiB per request (tens of thousands of
/// requests here) or per-request connection state that is never freed
/// would cross it. The test prints the growth per request.
const RSS_GROWTH_BOUND: u64 = 64 << 20;

const POLICY: &str = "per_api_key";
const BREAKER: &str = "backend";

/// One admitted request: its key, and when it was sent and answered (ns
/// since the start of the run). The limiter decided in between.
#[derive(Clone, Copy, Debug)]
struct Admission {
    key: usize,
    sent: u64,
    answered: u64,
}

/// What clients saw.
#[derive(Debug, Default)]
struct Tally {
    statuses: BTreeMap<u16, u64>,
    /// Requests per key, and admissions per key (`200`, `500` and `503`:
    /// everything past the limiter, which is the outer layer).
    requests: Vec<u64>,
    admitted: Vec<u64>,
    admissions: Vec<Admission>,
    /// Connection and protocol errors, and answers this server cannot give.
    errors: Vec<String>,
}

impl Tally {
    fn new() -> Self {
        Self {
            requests: vec![0; KEYS + 1],
            admitted: vec![0; KEYS + 1],
            ..Self::default()
        }
    }

    fn add(&mut self, other: Self) {
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        for k in 0..=KEYS {
            self.requests[k] += other.requests[k];
            self.admitted[k] += other.admitted[k];
        }
        self.admissions.extend(other.admissions);
        self.errors.extend(other.errors);
    }

    fn count(&self, status: u16) -> u64 {
        self.statuses.get(&status).copied().unwrap_or(0)
    }

    fn total(&self) -> u64 {
        self.statuses.values().sum()
    }
}

/// A client connection: which key it sends and whether it asks to fail.
struct Client {
    key: usize,
    fail: bool,
    sender: SendRequest<Empty<Bytes>>,
    driver: JoinHandle<()>,
}

impl Client {
    async fn connect(addr: SocketAddr, index: usize) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        // Its errors reach the next `ready` or `send_request`.
        let driver = tokio::spawn(async move { drop(connection.await) });
        Self {
            key: index % (KEYS + 1),
            fail: index % FAIL_EVERY == 1,
            sender,
            driver,
        }
    }

    fn request(&self) -> hyper::Request<Empty<Bytes>> {
        let mut request = hyper::Request::get("/api").header("host", "load");
        if self.key < KEYS {
            request = request.header("x-api-key", format!("key-{}", self.key));
        }
        if self.fail {
            request = request.header("x-fail", "1");
        }
        request.body(Empty::new()).expect("a request")
    }

    /// Requests one after the other until `until` (at least one).
    async fn run(mut self, start: Instant, until: Instant) -> (Self, Tally) {
        let mut tally = Tally::new();
        loop {
            if let Err(e) = self.sender.ready().await {
                tally.errors.push(format!("connection lost: {e}"));
                break;
            }
            let sent = elapsed_ns(start);
            let response = match self.sender.send_request(self.request()).await {
                Ok(response) => response,
                Err(e) => {
                    tally.errors.push(format!("request failed: {e}"));
                    break;
                }
            };
            let answered = elapsed_ns(start);
            let status = response.status().as_u16();
            let body = match response.into_body().collect().await {
                Ok(body) => body.to_bytes(),
                Err(e) => {
                    tally.errors.push(format!("body failed: {e}"));
                    break;
                }
            };
            *tally.statuses.entry(status).or_default() += 1;
            tally.requests[self.key] += 1;
            if status != 429 {
                tally.admitted[self.key] += 1;
                tally.admissions.push(Admission {
                    key: self.key,
                    sent,
                    answered,
                });
            }
            if let Some(why) = self.unexpected(status, &body) {
                tally.errors.push(why);
            }
            if Instant::now() >= until {
                break;
            }
        }
        (self, tally)
    }

    /// Why `status` with `body` is not an answer this server gives.
    fn unexpected(&self, status: u16, body: &[u8]) -> Option<String> {
        let body = String::from_utf8_lossy(body);
        let ok = match status {
            200 => !self.fail && body == "ok",
            429 => body.contains("\"rate_limited\""),
            500 => self.fail && body == "upstream failed",
            503 => body.contains("\"circuit_open\""),
            _ => false,
        };
        (!ok).then(|| format!("unexpected {status} (x-fail: {}): {body}", self.fail))
    }

    async fn close(self) {
        drop(self.sender);
        self.driver.await.expect("connection driver");
    }
}

fn elapsed_ns(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_nanos()).expect("a short run")
}

/// The backend: `200 ok`, or `500` when the request says `x-fail`.
async fn backend(headers: HeaderMap) -> (StatusCode, &'static str) {
    if headers.contains_key("x-fail") {
        (StatusCode::INTERNAL_SERVER_ERROR, "upstream failed")
    } else {
        (StatusCode::OK, "ok")
    }
}

/// `/api` behind both layers (the limiter outside: a refused request never
/// reaches the breaker), the endpoints beside it, on a listener with a
/// backlog for 1 100 connects.
fn app(registry: &Arc<Registry>) -> Router {
    let quota = Quota::per_second(RATE)
        .and_then(|q| q.with_burst(BURST))
        .expect("quota");
    let limit = RateLimitLayer::keyed_from_registry::<String, 64, _>(
        registry,
        POLICY,
        quota,
        FullPolicy::Reject,
        key::header("x-api-key", 64),
    )
    .expect("keyed limiter")
    .on_bad_key(BadKey::Default("anonymous".to_owned()));
    let config = Config::builder()
        .failure_rate(50)
        .window(20)
        .build()
        .expect("breaker config");
    let breaker = CircuitBreakerLayer::from_registry(registry, BREAKER, config).expect("breaker");
    Router::new()
        .route("/api", get(backend))
        .layer(breaker)
        .layer(limit)
        .merge(router(Arc::clone(registry), HttpOptions::default()))
}

fn serve(app: Router) -> SocketAddr {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .expect("bind");
    let listener = socket.listen(4096).expect("listen");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("server") });
    addr
}

/// Runs every client until `until`, returning them and their tallies.
async fn phase(clients: Vec<Client>, start: Instant, until: Instant) -> (Vec<Client>, Tally) {
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|c| tokio::spawn(c.run(start, until)))
        .collect();
    let mut clients = Vec::with_capacity(tasks.len());
    let mut tally = Tally::new();
    for task in tasks {
        let (client, t) = task.await.expect("client task");
        clients.push(client);
        tally.add(t);
    }
    (clients, tally)
}

/// `GET path` on its own connection: status and body.
async fn fetch(addr: SocketAddr, path: &str) -> (u16, String) {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    let driver = tokio::spawn(connection);
    let request = hyper::Request::get(path)
        .header("host", "load")
        .body(Empty::<Bytes>::new())
        .expect("request");
    let response = sender.send_request(request).await.expect("answered");
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.expect("body");
    drop(sender);
    driver.await.expect("driver").expect("clean close");
    (
        status,
        String::from_utf8(body.to_bytes().to_vec()).expect("UTF-8"),
    )
}

/// The counters of `/metrics` this test checks, by family name.
async fn scrape(addr: SocketAddr) -> BTreeMap<String, f64> {
    let (status, text) = fetch(addr, "/metrics").await;
    assert_eq!(status, 200);
    let lines = std::io::BufReader::new(text.as_bytes()).lines();
    let parsed = Scrape::parse(lines).expect("Prometheus text");
    let mut out = BTreeMap::new();
    for s in parsed.samples {
        let name = s.labels.get("name");
        if name != Some(POLICY) && name != Some(BREAKER) {
            continue;
        }
        let (Value::Counter(value) | Value::Gauge(value) | Value::Untyped(value)) = s.value else {
            continue;
        };
        out.insert(s.metric, value);
    }
    out
}

/// Scrapes `/metrics` (and `/readyz`) every 100 ms until `until`, checking
/// that no counter ever goes down; returns how many scrapes it made.
async fn watch(addr: SocketAddr, until: Instant) -> usize {
    let mut last: BTreeMap<String, f64> = BTreeMap::new();
    let mut scrapes = 0;
    loop {
        let now = scrape(addr).await;
        for (name, value) in &now {
            if name.ends_with("_total") {
                let before = last.get(name).copied().unwrap_or(0.0);
                assert!(*value >= before, "{name} went down: {before} → {value}");
            }
        }
        last = now;
        assert_eq!(fetch(addr, "/readyz").await.0, 200);
        scrapes += 1;
        if Instant::now() >= until {
            return scrapes;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Where a key was admitted more than GCRA allows. Each admission's
/// decision lies between its `sent` and `answered`, so the admissions
/// sent at or after `a` and answered by `b` were all decided inside
/// `[a, b]`; GCRA admits at most `burst + ⌊Δ / interval⌋` among decisions
/// whose clock readings lie within `Δ` of each other (`n` admissions need
/// `(n − burst)` intervals between the first and the last). The limiter's
/// clock reads whole microseconds, so `Δ` is the window's length rounded
/// up to one. Every window from one admission's `sent` to another's
/// `answered` is checked, so the whole run is one of them.
fn over_limit(admissions: &[Admission], interval_us: u64) -> Option<String> {
    for k in 0..=KEYS {
        let mut mine: Vec<Admission> = admissions.iter().filter(|a| a.key == k).copied().collect();
        mine.sort_by_key(|a| a.sent);
        for from in &mine {
            let mut ends: Vec<u64> = mine
                .iter()
                .filter(|a| a.sent >= from.sent)
                .map(|a| a.answered)
                .collect();
            ends.sort_unstable();
            for (i, end) in ends.iter().enumerate() {
                let delta_us = (end - from.sent).div_ceil(1_000);
                let allowed = u64::from(BURST) + delta_us / interval_us;
                let inside = i as u64 + 1;
                if inside > allowed {
                    return Some(format!(
                        "key {k}: {inside} admitted in {delta_us} µs, at most {allowed} allowed"
                    ));
                }
            }
        }
    }
    None
}

/// The process's resident memory (`VmRSS`), in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kib * 1024
}

fn open_files() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

/// A count or size, far below 2^53, as a float for the summary.
#[allow(clippy::cast_precision_loss)]
fn float(n: u64) -> f64 {
    n as f64
}

fn mib(bytes: u64) -> f64 {
    float(bytes) / f64::from(1 << 20)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines, reason = "one scenario, told in order")]
async fn a_thousand_connections_are_all_answered_within_the_limit() {
    // Both ends of every connection, the listener, and what the runtime
    // and the test harness hold.
    let needed = 2 * CONNECTIONS as u64 + 256;
    let soft = rlimit::increase_nofile_limit(4 * needed).expect("raise RLIMIT_NOFILE");
    assert!(
        soft >= needed,
        "the open-file hard limit allows {soft}, this test needs {needed}"
    );
    let rss_start = rss();

    let registry = Arc::new(Registry::new());
    let addr = serve(app(&registry));
    let mut clients = Vec::with_capacity(CONNECTIONS);
    for wave in (0..CONNECTIONS).collect::<Vec<_>>().chunks(CONNECT_WAVE) {
        let connects: Vec<_> = wave
            .iter()
            .map(|&i| tokio::spawn(Client::connect(addr, i)))
            .collect();
        for c in connects {
            clients.push(c.await.expect("connect task"));
        }
    }

    // Warm-up: every connection allocates what it needs.
    let start = Instant::now();
    let (clients, mut tally) = phase(clients, start, start + WARM_UP).await;
    let warm_requests = tally.total();
    // Every connection has been answered, so accepted: both ends are open.
    let fds = open_files();
    assert!(fds >= 2 * CONNECTIONS, "{fds} files open");
    let rss_warm = rss();

    // The measured run, on the same connections, watched through /metrics.
    let until = Instant::now() + RUN;
    let watcher = tokio::spawn(watch(addr, until));
    let (clients, run) = phase(clients, start, until).await;
    let elapsed = start.elapsed();
    let run_requests = run.total();
    tally.add(run);
    let rss_end = rss();
    let scrapes = watcher.await.expect("watcher");
    for client in clients {
        client.close().await;
    }

    let metrics = scrape(addr).await;
    let counter = |name: &str| -> u64 {
        let v = metrics
            .get(name)
            .copied()
            .unwrap_or_else(|| panic!("{name} missing"));
        // Counts far below 2^53, exact in f64.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let n = v as u64;
        n
    };
    let (ok, limited, failed, open) = (
        tally.count(200),
        tally.count(429),
        tally.count(500),
        tally.count(503),
    );
    let growth = rss_end.saturating_sub(rss_warm);
    println!(
        "{CONNECTIONS} connections ({fds} files open), {:.1} s, {} requests ({warm_requests} \
         warm-up, {run_requests} measured, {:.0}/s): {:?}; {scrapes} scrapes during the run; \
         RSS {:.1} MiB at start, {:.1} after warm-up, {:.1} after the run (+{:.2} MiB, {} bytes \
         per measured request)",
        elapsed.as_secs_f64(),
        tally.total(),
        float(tally.total()) / elapsed.as_secs_f64(),
        tally.statuses,
        mib(rss_start),
        mib(rss_warm),
        mib(rss_end),
        mib(growth),
        growth / run_requests.max(1),
    );

    // Every request answered, each with an answer this server gives.
    assert!(
        tally.errors.is_empty(),
        "{} errors, first: {:?}",
        tally.errors.len(),
        &tally.errors[..tally.errors.len().min(5)]
    );
    assert_eq!(ok + limited + failed + open, tally.total());
    assert!(
        tally.requests.iter().all(|&n| n >= 2),
        "every key asked in both phases"
    );
    // The limit is tested at its edge: clients ask more than they are
    // given (a hostile review noticed nothing checked it).
    assert!(
        limited > 0,
        "no request was limited: the limit was never reached"
    );

    // Never over the limit in any window; never under the burst.
    let interval_us = 1_000_000 / u64::from(RATE);
    if let Some(why) = over_limit(&tally.admissions, interval_us) {
        panic!("over the limit: {why}");
    }
    for (k, (&asked, &admitted)) in tally.requests.iter().zip(&tally.admitted).enumerate() {
        assert!(
            admitted >= asked.min(u64::from(BURST)),
            "key {k}: {admitted} of {asked} admitted, the bucket starts full"
        );
    }

    // /metrics equals what the clients saw: nothing lost, nothing twice.
    let admitted = ok + failed + open;
    assert_eq!(counter("fusebox_keyed_limiter_allowed_total"), admitted);
    assert_eq!(counter("fusebox_keyed_limiter_limited_total"), limited);
    assert_eq!(counter("fusebox_keyed_limiter_table_full_total"), 0);
    assert_eq!(counter("fusebox_keyed_limiter_keys"), KEYS as u64 + 1);
    assert_eq!(counter("fusebox_breaker_successes_total"), ok);
    assert_eq!(counter("fusebox_breaker_failures_total"), failed);
    assert_eq!(counter("fusebox_breaker_rejected_total"), open);
    assert_eq!(counter("fusebox_breaker_ignored_total"), 0);
    assert_eq!(counter("fusebox_breaker_abandoned_total"), 0);
    let (status, health) = fetch(addr, "/health").await;
    let health: serde_json::Value = serde_json::from_str(&health).expect("JSON");
    assert_eq!(status, 200, "ready: no breaker is required");
    assert_eq!(health["keyed_limiters"][POLICY]["allowed"], admitted);

    // Flat memory across the measured run.
    assert!(
        growth < RSS_GROWTH_BOUND,
        "RSS grew {:.1} MiB during the run",
        mib(growth)
    );
}
