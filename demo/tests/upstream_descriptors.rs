//! The upstream in a process short of file descriptors. CI found the
//! storm ending with `storm: Too many open files` under `ulimit -n 64`
//! (reproduced here with 30 to 60 descriptors inherited, as from a
//! harness, in 9 runs of 48): the first run's
//! connections were still being closed by tasks that had not run yet
//! when the second run bound its upstream. A run now stops its upstream
//! and waits for every connection to close, and a bind finding no free
//! descriptor waits a while for one.
//!
//! Each test runs in a child process (this binary again, under a low
//! `ulimit -n`, so that the table fills in a moment), where filling the
//! descriptor table or counting it disturbs no other test.
#![cfg(target_os = "linux")]

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use fusebox_demo::scenario::Scenario;
use fusebox_demo::upstream::Upstream;
use tokio::runtime::Runtime;

/// Names the test a child process runs.
const CHILD: &str = "FUSEBOX_DEMO_DESCRIPTOR_TEST";

/// Runs `body` (given a runtime with one worker) in a child process whose
/// open-file limit leaves it 40 descriptors beyond those it inherits, or
/// is that child.
fn in_child(test: &str, body: impl FnOnce(&Runtime)) {
    if std::env::var(CHILD).as_deref() == Ok(test) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime");
        body(&runtime);
        return;
    }
    let output = Command::new("sh")
        .arg("-c")
        .arg("ulimit -n $(($(ls /proc/self/fd | wc -l) + 40)) && exec \"$0\" \"$@\"")
        .arg(std::env::current_exe().expect("the test binary"))
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, test)
        .output()
        .expect("sh runs");
    assert!(
        output.status.success(),
        "child {test}: {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("1 passed"),
        "the child ran no test:\n{stdout}"
    );
}

/// Opens `/dev/null` until the process has no descriptor left.
fn fill_descriptors() -> Vec<File> {
    let mut held = Vec::new();
    loop {
        match File::open("/dev/null") {
            Ok(file) => held.push(file),
            Err(e) if e.raw_os_error() == Some(24) => return held,
            Err(e) => panic!("opening /dev/null: {e}"),
        }
    }
}

/// The descriptors the process holds.
fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").expect("/proc").count()
}

fn scenario() -> Arc<Scenario> {
    Arc::new(Scenario::calm(Duration::from_secs(60)))
}

/// A bind waits for a descriptor another task is about to release.
/// Before the fix: `EMFILE` at once.
#[test]
fn a_bind_waits_for_a_descriptor_being_released() {
    in_child("a_bind_waits_for_a_descriptor_being_released", |runtime| {
        let mut held = fill_descriptors();
        assert!(!held.is_empty());
        let released = held.pop().expect("one");
        runtime.spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            drop(released);
        });
        let upstream = runtime.block_on(Upstream::start(scenario(), 1, 100));
        assert!(upstream.is_ok(), "{:?}", upstream.err());
    });
}

/// With no descriptor ever released, the bind gives up with a hint.
#[test]
fn a_bind_without_descriptors_fails_with_a_hint() {
    in_child("a_bind_without_descriptors_fails_with_a_hint", |runtime| {
        let _held = fill_descriptors();
        let upstream = runtime.block_on(Upstream::start(scenario(), 1, 100));
        let e = upstream.expect_err("no descriptor");
        assert_eq!(e.raw_os_error(), None, "{e}");
        let message = e.to_string();
        assert!(
            message.contains("Too many open files") && message.contains("ulimit -n"),
            "{message}"
        );
    });
}

/// `stop` returns once the upstream's side of every connection is
/// closed: only the clients' ends remain open.
#[test]
fn stop_closes_every_connection_before_returning() {
    in_child("stop_closes_every_connection_before_returning", |runtime| {
        let before = open_descriptors();
        let upstream = runtime
            .block_on(Upstream::start(scenario(), 1, 10_000))
            .expect("bound");
        let addr = upstream.addr();
        // Ten keep-alive connections, each answered once (so accepted).
        let clients: Vec<TcpStream> = (0..10)
            .map(|i| {
                let mut stream = TcpStream::connect(addr).expect("connect");
                write!(stream, "GET /item/{i} HTTP/1.1\r\nhost: x\r\n\r\n").expect("write");
                let mut answer = [0u8; 9];
                stream.read_exact(&mut answer).expect("an answer");
                assert_eq!(&answer, b"HTTP/1.1 ");
                stream
            })
            .collect();
        // The listener, 10 accepted connections and the clients' 10.
        assert_eq!(open_descriptors(), before + 21);
        runtime.block_on(upstream.stop());
        assert_eq!(open_descriptors(), before + clients.len());
    });
}
