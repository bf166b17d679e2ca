//! A private `redis-server` for one test: a free loopback port, a
//! temporary directory, no persistence; killed (and its directory
//! removed) on drop. No shared global server, no leftover process.
//! [`RedisServer::start_tls`] serves TLS only (`rediss://`), with PEM
//! files the test made.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A running (or deliberately killed) redis-server.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    extra: Vec<String>,
    /// TLS only: `--port 0 --tls-port <port>` and the files in `dir`.
    tls: bool,
}

/// The PEM texts of a TLS server: its certificate chain and key, and the
/// CA that client certificates must chain to.
pub struct TlsPem<'a> {
    /// The server's certificate (chain).
    pub cert: &'a str,
    /// The server's private key.
    pub key: &'a str,
    /// The CA for client certificates (`--tls-ca-cert-file`).
    pub ca: &'a str,
    /// Whether clients must present a certificate (`--tls-auth-clients`).
    pub auth_clients: bool,
}

/// A free loopback port. A Cluster node also listens on its port plus
/// 10 000 (the cluster bus), so its port must be at most 55 535 (redis
/// refuses a higher one and exits: an ephemeral port above it failed a
/// Cluster test now and then) and that bus port free too.
fn free_port(cluster: bool) -> u16 {
    let bind = |port: u16| TcpListener::bind(("127.0.0.1", port));
    for _ in 0..1_000 {
        let port = bind(0)
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        if !cluster || (port <= 55_535 && bind(port + 10_000).is_ok()) {
            return port;
        }
    }
    panic!("no free loopback port with a free cluster bus port");
}

impl RedisServer {
    /// A fresh server on a free port.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// A fresh server with extra `redis-server` arguments (e.g. an ACL
    /// user, one token per argument: `["--user", "app", "on", ">pw", "~*", "+@all"]`).
    pub fn start_with(extra: &[&str]) -> Self {
        Self::new(extra, None)
    }

    /// A fresh server that speaks TLS only, on a free port; `extra` as in
    /// [`start_with`](Self::start_with). The PEM files live in the
    /// server's temporary directory.
    pub fn start_tls(pem: &TlsPem<'_>, extra: &[&str]) -> Self {
        Self::new(extra, Some(pem))
    }

    fn new(extra: &[&str], tls: Option<&TlsPem<'_>>) -> Self {
        let cluster = extra.contains(&"--cluster-enabled");
        let port = free_port(cluster);
        let dir = std::env::temp_dir().join(format!("fusebox-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory for redis-server");
        let mut extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        if let Some(pem) = tls {
            for (flag, name, text) in [
                ("--tls-cert-file", "server.crt", pem.cert),
                ("--tls-key-file", "server.key", pem.key),
                ("--tls-ca-cert-file", "ca.crt", pem.ca),
            ] {
                let path = dir.join(name);
                std::fs::write(&path, text).expect("a PEM file for redis-server");
                extra.push(flag.to_owned());
                extra.push(path.display().to_string());
            }
            let auth = if pem.auth_clients { "yes" } else { "no" };
            extra.extend(["--tls-auth-clients".to_owned(), auth.to_owned()]);
        }
        let mut server = Self {
            child: None,
            port,
            dir,
            extra,
            tls: tls.is_some(),
        };
        // The port was free when picked, not reserved: another process
        // may bind it first, and redis-server then exits at once
        // ("Address already in use", exit status 1: once in a sweep of
        // the Redis tests on a loaded machine). Another free port then
        // (the directory keeps its first name).
        for attempt in 1.. {
            match server.start_on_port() {
                Ok(()) => break,
                Err(_) if attempt < 5 => server.port = free_port(cluster),
                Err(status) => panic!("redis-server exited at start {attempt} times: {status}"),
            }
        }
        server
    }

    /// `redis://127.0.0.1:<port>` (`rediss://` for a TLS server).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// A client configuration for this server that notices an outage
    /// fast: commands time out after `timeout`, a connection attempt after
    /// 500 ms, and reconnections back off from 20 ms to 200 ms.
    pub fn outage_config(&self, timeout: Duration) -> fusebox_std::backend::RedisConfig {
        fusebox_std::backend::RedisConfig::new(self.url())
            .timeout(timeout)
            .connect_timeout(Duration::from_millis(500))
            .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200))
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// SIGKILLs the server (no shutdown, as in a crash) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops (SIGSTOP) or resumes (SIGCONT) the server: a server that
    /// accepts connections but answers nothing.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("a running server").id();
        let status = Command::new("kill")
            .args([format!("-{signal}"), pid.to_string()])
            .status()
            .expect("kill(1)");
        assert!(status.success(), "kill -{signal} {pid}");
    }

    /// Starts the server again on the same port (after [`kill`](Self::kill))
    /// and waits until it answers `PING`.
    ///
    /// The port is the clients' address, so it cannot change here; while
    /// the server was down, it was free for anyone: a test binary running
    /// beside this one may hold it (a client connection of a load test
    /// takes its local port from the range `free_port`'s come from), and
    /// redis-server then exits at once. Tried again for up to 10 s, as
    /// such a holder lets go.
    pub fn restart(&mut self) {
        let start = Instant::now();
        loop {
            match self.start_on_port() {
                Ok(()) => return,
                Err(_) if start.elapsed() < Duration::from_secs(10) => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(status) => panic!(
                    "redis-server exited at start on port {} for 10 s: {status}",
                    self.port
                ),
            }
        }
    }

    /// How long [`restart_while_port_held`](Self::restart_while_port_held)
    /// lets another listener hold the port.
    pub const PORT_HELD: Duration = Duration::from_millis(600);

    /// Kills the server, lets `hold` have its port (a listener bound to
    /// it, and the instant to let go, [`PORT_HELD`](Self::PORT_HELD) on)
    /// on a thread of its own, and restarts the server meanwhile: how long
    /// the restart took (the holder has let go when this returns). For the
    /// tests of [`restart`](Self::restart) itself.
    pub fn restart_while_port_held(
        &mut self,
        hold: impl FnOnce(TcpListener, Instant) + Send + 'static,
    ) -> Duration {
        self.kill();
        let holder =
            TcpListener::bind(("127.0.0.1", self.port)).expect("the port, free after the kill");
        let start = Instant::now();
        let until = start + Self::PORT_HELD;
        let holding = std::thread::spawn(move || hold(holder, until));
        self.restart();
        let took = start.elapsed();
        holding.join().expect("the holder");
        took
    }

    /// A TLS server started again on the same port presenting `cert`
    /// (its chain) and `key` instead: a certificate renewed, rotated or
    /// broken by an operator.
    pub fn restart_with_certificate(&mut self, cert: &str, key: &str) {
        assert!(self.tls, "a TLS server");
        self.kill();
        std::fs::write(self.dir.join("server.crt"), cert).expect("the new certificate");
        std::fs::write(self.dir.join("server.key"), key).expect("its key");
        self.restart();
    }

    /// Starts the server on its port and waits until it answers `PING`;
    /// its exit status if it exited first.
    fn start_on_port(&mut self) -> Result<(), ExitStatus> {
        self.kill();
        let port = self.port.to_string();
        let ports: &[&str] = if self.tls {
            &["--port", "0", "--tls-port", &port]
        } else {
            &["--port", &port]
        };
        // Its log, read by `wait_ready`: this start's only.
        let _ = std::fs::remove_file(self.log());
        let child = Command::new("redis-server")
            .args(ports)
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(self.log())
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server ({e}): install the Debian package `redis-server`")
            });
        self.child = Some(child);
        self.wait_ready()
    }

    /// The server's log file, in its directory.
    fn log(&self) -> PathBuf {
        self.dir.join("redis.log")
    }

    fn wait_ready(&mut self) -> Result<(), ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(status)) = self.child.as_mut().expect("spawned").try_wait() {
                self.child = None;
                return Err(status);
            }
            // Listening (its log says so: something else may hold the
            // port until the server finds it taken and exits), and
            // answering.
            let listening = std::fs::read_to_string(self.log())
                .is_ok_and(|log| log.contains("Ready to accept connections"));
            if listening && self.answers_ping() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!(
            "redis-server on port {} did not answer PING within 10 s",
            self.port
        );
    }

    /// Any reply to `PING` (`+PONG`, or `-NOAUTH` with a password set)
    /// but `-LOADING` (a restarted server still reading its AOF or RDB
    /// refuses every command with it: `BusyLoading` in the test right
    /// after); for a TLS server, an accepted connection (a plain `PING`
    /// gets no reply there, and the server listens only once it is set
    /// up). Asked only once the server's log says it listens: the port
    /// is then the server's, not another listener's.
    fn answers_ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        if self.tls {
            return true;
        }
        let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
        let mut reply = [0u8; 8];
        stream.write_all(b"PING\r\n").is_ok()
            && stream
                .read(&mut reply)
                .is_ok_and(|n| n >= 2 && !reply[..n].starts_with(b"-L"))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // SIGKILL ends a SIGSTOPped server too.
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis Cluster of `n` primaries on loopback, each a [`RedisServer`]
/// with `cluster-enabled yes`, joined by `redis-cli --cluster create`.
/// Dropping it kills every node.
pub struct RedisCluster {
    /// The nodes.
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts `n` nodes (at least 3) and waits for `cluster_state:ok`.
    pub fn start(n: usize) -> Self {
        Self::new(n, None, None)
    }

    /// [`start`](Self::start) with every node asking for `password`
    /// (`requirepass`, and `masterauth` for the cluster's own links).
    pub fn start_with_password(n: usize, password: &str) -> Self {
        Self::new(n, None, Some(password))
    }

    /// [`start`](Self::start) with TLS only, between clients and nodes and
    /// on the cluster bus (`--tls-cluster yes`).
    pub fn start_tls(n: usize, pem: &TlsPem<'_>) -> Self {
        Self::new(n, Some(pem), None)
    }

    fn new(n: usize, tls: Option<&TlsPem<'_>>, password: Option<&str>) -> Self {
        let mut args = vec![
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "2000",
        ];
        if tls.is_some() {
            args.extend(["--tls-cluster", "yes", "--tls-replication", "yes"]);
        }
        if let Some(password) = password {
            args.extend(["--requirepass", password, "--masterauth", password]);
        }
        let nodes: Vec<RedisServer> = (0..n).map(|_| RedisServer::new(&args, tls)).collect();
        // redis-cli speaks TLS too, trusting the nodes' CA (with a client
        // certificate when the nodes ask for one: the server's own).
        let mut cli_args: Vec<String> = match tls {
            None => Vec::new(),
            Some(pem) => {
                let dir = &nodes[0].dir;
                let mut a = vec!["--tls".to_owned(), "--cacert".to_owned()];
                a.push(dir.join("ca.crt").display().to_string());
                if pem.auth_clients {
                    a.push("--cert".to_owned());
                    a.push(dir.join("server.crt").display().to_string());
                    a.push("--key".to_owned());
                    a.push(dir.join("server.key").display().to_string());
                }
                a
            }
        };
        if let Some(password) = password {
            cli_args.extend([
                "-a".to_owned(),
                password.to_owned(),
                "--no-auth-warning".to_owned(),
            ]);
        }
        let output = Command::new("redis-cli")
            .args(&cli_args)
            .arg("--cluster")
            .arg("create")
            .args(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port())))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli (Debian package redis-tools)");
        assert!(
            output.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        let start = Instant::now();
        for node in &nodes {
            loop {
                let info = Command::new("redis-cli")
                    .args(&cli_args)
                    .args(["-p", &node.port().to_string(), "cluster", "info"])
                    .output()
                    .expect("redis-cli");
                if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                    break;
                }
                assert!(
                    start.elapsed() < Duration::from_secs(20),
                    "cluster not ok within 20 s"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Self { nodes }
    }

    /// The nodes' URLs.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// A backend connected to the cluster (a 2 s command timeout, 5 s to
    /// connect: a new cluster's slot map may take a moment).
    pub async fn backend(&self) -> fusebox_std::backend::RedisBackend {
        fusebox_std::backend::RedisBackend::connect(
            fusebox_std::backend::RedisConfig::cluster(self.urls())
                .timeout(Duration::from_secs(2))
                .connect_timeout(Duration::from_secs(5)),
        )
        .await
        .expect("connect to the cluster")
    }

    /// Makes node `node` announce `port` as its client port (a proxy in
    /// front of it: clients following the slot map then reach it through
    /// the proxy), and waits until every node's slot map says so.
    pub fn announce_client_port(&self, node: usize, port: u16) {
        let real = self.nodes[node].port();
        let bus = (real + 10_000).to_string();
        let port = port.to_string();
        for (name, value) in [
            ("cluster-announce-bus-port", bus.as_str()),
            ("cluster-announce-port", port.as_str()),
        ] {
            assert_eq!(cli(real, &["config", "set", name, value]).trim(), "OK");
        }
        let start = Instant::now();
        while !self.nodes.iter().all(|n| {
            cli(n.port(), &["cluster", "slots"])
                .lines()
                .any(|l| l.trim() == port)
        }) {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "port {port} not announced within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The index of the node that serves `key`'s slot.
    pub fn owner(&self, key: &str) -> usize {
        self.nodes
            .iter()
            .position(|n| !cli(n.port(), &["exists", key]).contains("MOVED"))
            .expect("an owner")
    }
}

/// A backend on `cluster` as the silence tests use it: a 50 ms command
/// timeout, `connect_timeout`, and a 20–200 ms reconnection backoff.
pub async fn cluster_backend(
    cluster: &RedisCluster,
    connect_timeout: Duration,
) -> fusebox_std::backend::RedisBackend {
    fusebox_std::backend::RedisBackend::connect(
        fusebox_std::backend::RedisConfig::cluster(cluster.urls())
            .timeout(Duration::from_millis(50))
            .connect_timeout(connect_timeout)
            .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200)),
    )
    .await
    .unwrap()
}

/// `redis-cli -p port args…`'s standard output (plain TCP).
pub fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli (Debian package redis-tools)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The connections `port`'s server accepted so far (`INFO stats`; each
/// call of this adds one).
pub fn connections_received(port: u16) -> u64 {
    connections_received_in(&cli(port, &["info", "stats"]))
}

/// [`connections_received`] of a server that wants `password`.
pub fn connections_received_as(port: u16, password: &str) -> u64 {
    connections_received_in(&cli(
        port,
        &["-a", password, "--no-auth-warning", "info", "stats"],
    ))
}

/// The `total_connections_received` of an `INFO stats` reply.
pub fn connections_received_in(info: &str) -> u64 {
    info.lines()
        .find_map(|l| l.strip_prefix("total_connections_received:"))
        .expect("total_connections_received")
        .trim()
        .parse()
        .unwrap()
}

/// Redis's clock beside the test's: a shared limit decides on Redis's
/// `TIME` (the wall clock of the machine Redis runs on), the tests time
/// admissions on their own monotonic clock. Read at a run's start and
/// end, it gives what a bound measured on the test's clock must allow
/// for a wall clock that moved further than the monotonic one meanwhile
/// (a step or a slew of the wall clock: Redis then lets the tokens of the
/// extra time through, by its contract). Each reading is one `TIME` on a
/// plain connection, between two readings of the test's clock; what the
/// two clocks' difference cannot be told apart from those round trips is
/// not allowed for, so two clocks that agree allow nothing.
pub struct RedisClock {
    port: u16,
    /// The test's clock before and after the `TIME`.
    local: (std::time::Instant, std::time::Instant),
    redis: Duration,
}

impl RedisClock {
    /// Reads both clocks now.
    pub fn read(port: u16) -> Self {
        use std::io::{Read, Write};
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect for TIME");
        conn.set_nodelay(true).expect("nodelay");
        let before = std::time::Instant::now();
        conn.write_all(b"*1\r\n$4\r\nTIME\r\n").expect("send TIME");
        // `*2 $n secs $m micros`: five CRLF-ended lines.
        let mut reply = Vec::new();
        let mut buf = [0u8; 128];
        while reply.windows(2).filter(|w| w == b"\r\n").count() < 5 {
            let n = conn.read(&mut buf).expect("TIME reply");
            assert!(n > 0, "Redis closed the connection: {reply:?}");
            reply.extend_from_slice(&buf[..n]);
        }
        let after = std::time::Instant::now();
        let text = String::from_utf8(reply).expect("TIME reply");
        let lines: Vec<&str> = text.split("\r\n").collect();
        let (secs, micros): (u64, u64) = (
            lines[2].parse().expect("TIME seconds"),
            lines[4].parse().expect("TIME µs"),
        );
        Self {
            port,
            local: (before, after),
            redis: Duration::from_secs(secs) + Duration::from_micros(micros),
        }
    }

    /// The tokens at `rate` a second in the time Redis's clock ran ahead
    /// of the test's between this reading and one made now (rounded up;
    /// 0 if it did not run ahead by more than the two round trips).
    pub fn extra_tokens(&self, rate: u64) -> u64 {
        let now = Self::read(self.port);
        let redis = now.redis.saturating_sub(self.redis);
        // The longest local span the two `TIME`s may have been apart:
        // clocks that agree never read Redis's span longer.
        let local = now.local.1.saturating_duration_since(self.local.0);
        let ahead = redis.saturating_sub(local);
        let extra = (u128::from(rate) * ahead.as_nanos()).div_ceil(1_000_000_000) as u64;
        if extra > 0 {
            eprintln!(
                "Redis's clock ran {ahead:?} ahead of the test's: {extra} more tokens allowed"
            );
        }
        extra
    }
}
