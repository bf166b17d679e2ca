//! `storm --serve`: the dashboard and the endpoints answer on the printed
//! local URL while the storm runs, and show the storm's breaker trip.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Kills the storm (it serves until Ctrl-C) however the test ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `GET path` on `host`, HTTP/1.1 with `Connection: close`: the status
/// code and the body.
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

#[test]
fn the_dashboard_is_served_while_the_storm_runs_and_shows_the_trip() {
    let child = Command::new(env!("CARGO_BIN_EXE_storm"))
        .args([
            "--serve",
            "127.0.0.1:0",
            "--short",
            "--seed",
            "3",
            "--clients",
            "60",
        ])
        // In process, whatever a shell or CI job exports.
        .env_remove("FUSEBOX_REDIS_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("storm starts");
    let mut child = Killed(child);
    let stdout = child.0.stdout.take().unwrap();
    let (lines_tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let url = loop {
        let line = lines
            .recv_timeout(deadline - Instant::now())
            .expect("storm printed the dashboard's URL");
        if let Some(url) = line.strip_prefix("dashboard: ") {
            break url.to_owned();
        }
    };
    let host = url
        .strip_prefix("http://")
        .and_then(|rest| rest.strip_suffix("/dashboard"))
        .unwrap_or_else(|| panic!("not a local dashboard URL: {url}"));
    assert!(host.starts_with("127.0.0.1:"), "{host}");

    let (status, page) = get(host, "/dashboard");
    assert_eq!(status, 200);
    assert!(page.contains("<html"), "the page: {page:.200}");

    // Poll the page's data as the page does, until the breaker is seen open.
    let mut seen_open = false;
    let mut finished = false;
    while Instant::now() < deadline && !seen_open && !finished {
        let (status, data) = get(host, "/dashboard/data");
        assert_eq!(status, 200, "{data:.300}");
        let data: serde_json::Value = serde_json::from_str(&data).expect("JSON data");
        let state = &data["health"]["breakers"]["upstream"]["state"];
        seen_open |= state == "open" || state == "half_open";
        finished = lines
            .try_iter()
            .any(|l| l.starts_with("the dashboard stays up"));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        seen_open,
        "the served dashboard data showed the breaker open at some point"
    );
    let (status, metrics) = get(host, "/metrics");
    assert_eq!(status, 200);
    assert!(metrics.contains("fusebox_breaker_state"), "{metrics:.300}");
}
