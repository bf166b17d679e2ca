//! Two storm processes with `--redis` against one redis-server share one
//! rate limit: the calls both protected runs were admitted, added up, stay
//! within what one limit admits over the time both ran, and the Redis
//! password never shows in their output.

#[allow(dead_code)] // the cluster and signal helpers are not used here
#[path = "../../tests/tests/common/redis_server.rs"]
mod redis_server;

use std::process::{Command, Output, Stdio};

use fusebox_demo::report::SHARED_LINE;
use redis_server::RedisServer;

/// The shared limit: 100 calls per second (burst 11) for 2 × 40 clients
/// asking about 10 times a second each, so that it binds.
const RATE: u32 = 100;
const BURST: u32 = RATE / 10 + 1;

/// What one storm's shared-limit line says.
#[derive(Debug)]
struct Took {
    admitted: u64,
    without_redis: u64,
    from: f64,
    to: f64,
}

/// `1 234` → 1234.
fn number(text: &str) -> u64 {
    text.replace(' ', "")
        .parse()
        .unwrap_or_else(|_| panic!("not a count: {text:?}"))
}

/// `shared rate limit: 1 234 calls admitted here from A s to B s (unix); N decided without Redis`.
fn took(stdout: &str) -> Took {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix(SHARED_LINE))
        .unwrap_or_else(|| panic!("no {SHARED_LINE:?} line in:\n{stdout}"));
    let (admitted, rest) = line.split_once(" call").expect("a call count");
    let (_, window) = rest.split_once(" from ").expect("a window");
    let (from, rest) = window.split_once(" s to ").expect("a window start");
    let (to, rest) = rest.split_once(" s (unix); ").expect("a window end");
    let (without, _) = rest
        .split_once(" decided")
        .expect("decisions without redis");
    Took {
        admitted: number(admitted),
        without_redis: number(without),
        from: from.parse().expect("unix seconds"),
        to: to.parse().expect("unix seconds"),
    }
}

fn storm(url: &str) -> std::process::Child {
    let rate = RATE.to_string();
    Command::new(env!("CARGO_BIN_EXE_storm"))
        .args(["--duration", "3", "--clients", "40", "--seed", "1"])
        .args(["--rate-limit", &rate, "--redis", url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("storm starts")
}

fn stdout(output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn redis_limit_two_storms_share_one_limit() {
    let server = RedisServer::start_with(&["--requirepass", "s3cret"]);
    let url = format!("redis://:s3cret@127.0.0.1:{}", server.port());
    let (a, b) = (storm(&url), storm(&url));
    let (a, b) = (
        a.wait_with_output().expect("storm a"),
        b.wait_with_output().expect("storm b"),
    );
    let outputs = [stdout(&a), stdout(&b)];
    for out in &outputs {
        assert!(!out.contains("s3cret"), "the password leaked:\n{out}");
        assert!(
            out.contains(&format!(
                "shared through redis://:***@127.0.0.1:{}",
                server.port()
            )),
            "{out}"
        );
    }
    let took: Vec<Took> = outputs.iter().map(|o| took(o)).collect();

    // The two protected runs overlapped (else adding them up proves
    // nothing): by at least half the shorter one.
    let union = took.iter().map(|t| t.to).fold(f64::MIN, f64::max)
        - took.iter().map(|t| t.from).fold(f64::MAX, f64::min);
    let overlap = took.iter().map(|t| t.to).fold(f64::MAX, f64::min)
        - took.iter().map(|t| t.from).fold(f64::MIN, f64::max);
    let shortest = took.iter().map(|t| t.to - t.from).fold(f64::MAX, f64::min);
    assert!(overlap >= shortest / 2.0, "{took:?}");

    // Every admission happened within the union of the windows: one limit
    // admits at most its burst and its rate over it (decisions made
    // without Redis, by each process's own share, are allowed on top).
    // Two separate limits, over windows overlapping this much, would
    // each have admitted about that much.
    let admitted: u64 = took.iter().map(|t| t.admitted).sum();
    let without_redis: u64 = took.iter().map(|t| t.without_redis).sum();
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let bound = u64::from(BURST) + (f64::from(RATE) * union).ceil() as u64 + without_redis;
    assert!(
        admitted <= bound,
        "{admitted} admitted over {union:.3} s, one limit admits {bound}: {took:?}"
    );
    // And the limit was used, by both.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let used = (f64::from(RATE) * overlap / 2.0) as u64;
    assert!(admitted >= used, "{admitted} < {used}: {took:?}");
    assert!(took.iter().all(|t| t.admitted > 0), "{took:?}");
}
