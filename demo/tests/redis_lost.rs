//! A Redis lost while the storm runs: the storm goes on, each piece
//! shared through Redis deciding on local state (the rate limit here, the
//! breaker on its own), exits 0, and says how many decisions it made
//! without Redis. (A Redis unreachable at the start is an error instead:
//! `redis_url_env.rs`.)

#[allow(dead_code)] // the cluster and signal helpers are not used here
#[path = "../../tests/tests/common/redis_server.rs"]
mod redis_server;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

use fusebox_demo::report::SHARED_LINE;
use redis_server::RedisServer;

#[test]
fn redis_lost_during_the_storm_degrades_to_local_state() {
    let mut redis = RedisServer::start();
    let mut storm = Command::new(env!("CARGO_BIN_EXE_storm"))
        .args(["--duration", "2", "--clients", "10", "--seed", "1"])
        .args(["--redis", &redis.url()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("storm starts");
    let mut out = BufReader::new(storm.stdout.take().expect("stdout"));
    let mut stdout = String::new();
    // The story is printed once Redis answered; the unprotected run (2 s)
    // starts after it, so Redis is gone before the protected run begins.
    while !stdout.contains("story:") {
        let mut line = String::new();
        if out.read_line(&mut line).expect("stdout reads") == 0 {
            break;
        }
        stdout.push_str(&line);
    }
    redis.kill();
    out.read_to_string(&mut stdout).expect("stdout reads");
    let status = storm.wait().expect("storm ends");
    let mut stderr = String::new();
    if let Some(mut e) = storm.stderr.take() {
        e.read_to_string(&mut stderr).expect("stderr reads");
    }
    assert!(status.success(), "exit {status:?}\n{stdout}\n{stderr}");
    let shared = stdout
        .lines()
        .find_map(|l| l.strip_prefix(SHARED_LINE))
        .unwrap_or_else(|| panic!("no {SHARED_LINE:?} line in:\n{stdout}"));
    let (_, without) = shared
        .rsplit_once("; ")
        .expect("the decisions without Redis");
    let without: u64 = without
        .trim_end_matches(" decided without Redis")
        .replace(' ', "")
        .parse()
        .unwrap_or_else(|_| panic!("not a count: {shared}"));
    assert!(without > 0, "{shared}");
    assert!(stdout.contains("success rate seen by clients"), "{stdout}");
}
