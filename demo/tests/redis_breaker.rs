//! Two storm processes with `--redis` against one redis-server share one
//! circuit breaker: a stormy storm trips it, and a calm one next to it
//! (`--calm`: its upstream never fails) is refused by its breaker without
//! a single failure or trip of its own; the calm one's dashboard shows the
//! fleet's state next to its own while it happens, its `/metrics` the
//! fleet breaker's families, and neither prints the Redis password.

#[allow(dead_code)] // the cluster and signal helpers are not used here
#[path = "../../tests/tests/common/redis_server.rs"]
mod redis_server;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use fusebox_demo::fleet::FLEET_LINE;
use redis_server::RedisServer;

/// Kills a storm (a served one runs until Ctrl-C) however the test ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A storm sharing `url`, with a rate limit far above what the clients
/// ask for (the shared limit never refuses a call here: every refusal is
/// the breaker's).
fn storm(url: &str, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_storm"))
        .args(["--rate-limit", "100000", "--redis", url])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("storm starts")
}

/// `GET path` on `host` (HTTP/1.1, `Connection: close`): status and body.
fn get(host: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(host).expect("the dashboard accepts connections");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("a response");
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"));
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_owned())
}

/// The figure after `label` in the fleet line of `out` (`… label 1 234, …`).
fn figure(out: &str, label: &str) -> u64 {
    let line = out
        .lines()
        .find(|l| l.starts_with(FLEET_LINE))
        .unwrap_or_else(|| panic!("no {FLEET_LINE:?} line in:\n{out}"));
    let (_, rest) = line
        .split_once(&format!("{label} "))
        .unwrap_or_else(|| panic!("no {label:?} in {line:?}"));
    let digits: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == ' ')
        .filter(char::is_ascii_digit)
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("no count after {label:?} in {line:?}"))
}

/// What the calm storm's dashboard showed while it ran.
#[derive(Debug, Default)]
struct Seen {
    /// The fleet state was open (or forced open) in some read.
    fleet_open: bool,
    /// Some read had the fleet breaker's local state, fleet state and
    /// Redis counters side by side.
    both_states: bool,
    /// The most calls refused by the fleet breaker a read counted among
    /// the registry's events (the registry is its observer).
    rejections: u64,
    /// Some read counted them as a registry breaker's of its name.
    taken_for_local: bool,
}

/// Polls the dashboard data of the calm storm (started with `--serve`)
/// until it printed its end; returns what the data showed and every line
/// it printed.
fn watch(calm: &mut Killed) -> (Seen, String) {
    let stdout = calm.0.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut out = String::new();
    let host = loop {
        let line = lines
            .recv_timeout(deadline - Instant::now())
            .expect("the calm storm printed its dashboard's URL");
        out.push_str(&line);
        out.push('\n');
        if let Some(url) = line.strip_prefix("dashboard: ") {
            let host = url
                .strip_prefix("http://")
                .and_then(|r| r.strip_suffix("/dashboard"));
            break host.expect("a local dashboard URL").to_owned();
        }
    };
    let mut seen = Seen::default();
    loop {
        assert!(
            Instant::now() < deadline,
            "the calm storm never ended:\n{out}"
        );
        let (status, data) = get(&host, "/dashboard/data");
        assert_eq!(status, 200, "{data:.300}");
        let data: serde_json::Value = serde_json::from_str(&data).expect("JSON data");
        let entry = &data["health"]["fleet_breakers"]["upstream"];
        if entry.is_object() {
            seen.both_states |= entry["state"].is_string()
                && entry["fleet_state"].is_string()
                && entry["redis"]["syncs"].is_u64();
            seen.fleet_open |=
                entry["fleet_state"] == "open" || entry["fleet_state"] == "forced_open";
        }
        // A fleet breaker's refusals are its own kind's, not a registry
        // breaker's of that name.
        if let Some(n) = data["rejections"]["fleet_breaker"]["upstream"].as_u64() {
            seen.rejections = seen.rejections.max(n);
        }
        seen.taken_for_local |= !data["rejections"]["breaker"]["upstream"].is_null();
        let mut ended = false;
        for line in lines.try_iter() {
            ended |= line.starts_with("the dashboard stays up");
            out.push_str(&line);
            out.push('\n');
        }
        if ended {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, metrics) = get(&host, "/metrics");
    assert_eq!(status, 200);
    for family in [
        "fusebox_fleet_breaker_state{name=\"upstream\",scope=\"local\",state=\"closed\"}",
        "fusebox_fleet_breaker_state{name=\"upstream\",scope=\"fleet\",state=\"open\"}",
        "fusebox_fleet_breaker_syncs_total{name=\"upstream\"}",
        "fusebox_fleet_breaker_degraded{name=\"upstream\"}",
    ] {
        assert!(
            metrics.contains(family),
            "{family} missing from:\n{metrics}"
        );
    }
    (seen, out)
}

#[test]
fn redis_breaker_a_calm_storm_is_refused_by_the_breaker_a_stormy_one_tripped() {
    let server = RedisServer::start_with(&["--requirepass", "s3cret"]);
    let url = format!("redis://:s3cret@127.0.0.1:{}", server.port());
    // Both start at once. The stormy one's failing phases (42 % to 90 % of
    // its 4 s protected run, which starts after its 4 s unprotected one)
    // fall inside the calm one's protected run (5 s, after its 5 s
    // unprotected one), whatever the few hundred milliseconds each run
    // takes to wind down.
    let stormy = storm(&url, &["--duration", "4", "--clients", "40", "--seed", "1"]);
    let calm = storm(
        &url,
        &[
            "--calm",
            "--duration",
            "5",
            "--clients",
            "20",
            "--seed",
            "2",
            "--serve",
            "127.0.0.1:0",
        ],
    );
    let (seen, calm_out) = watch(&mut Killed(calm));
    let stormy = stormy.wait_with_output().expect("the stormy storm");
    let stormy_out = String::from_utf8_lossy(&stormy.stdout).into_owned();
    assert!(
        stormy.status.success(),
        "exit {:?}\n{stormy_out}\n{}",
        stormy.status,
        String::from_utf8_lossy(&stormy.stderr)
    );

    for out in [&stormy_out, &calm_out] {
        assert!(!out.contains("s3cret"), "the password leaked:\n{out}");
        assert!(out.contains("breaker: `upstream`, shared through"), "{out}");
    }
    // The stormy storm tripped the shared breaker and changed the shared
    // decision.
    assert!(figure(&stormy_out, "trips here") >= 1, "{stormy_out}");
    assert!(
        figure(&stormy_out, "decision changes made here") >= 1,
        "{stormy_out}"
    );
    // The calm one never failed and never tripped, yet its breaker refused
    // calls: the open state came from the other process, through Redis.
    assert_eq!(figure(&calm_out, "failures here"), 0, "{calm_out}");
    assert_eq!(figure(&calm_out, "trips here"), 0, "{calm_out}");
    assert!(figure(&calm_out, "calls refused here") > 0, "{calm_out}");
    assert!(
        calm_out.contains("another storm tripped the breaker they share"),
        "{calm_out}"
    );
    // And its dashboard showed the fleet's state next to its own, and the
    // refusals among the registry's events (before, the fleet breaker had
    // no observer: its refusals and transitions were no events).
    assert!(seen.both_states && seen.fleet_open, "{seen:?}\n{calm_out}");
    assert!(
        seen.rejections > 0 && !seen.taken_for_local,
        "{seen:?}\n{calm_out}"
    );
}
