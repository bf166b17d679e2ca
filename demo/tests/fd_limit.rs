//! `storm` under an open-file limit too low for its clients (macOS's
//! default is 256, a container's may be lower): the calls the process
//! itself cannot make (`EMFILE` at connect or accept) are no failure of
//! the upstream, whose story never refuses or resets a connection. They
//! must not pass silently for the upstream's failures: the storm says so,
//! on stderr, with the count and what to do.

use std::process::{Command, Output};

/// `storm` with `args`, its open-file limit lowered to `nofile` by the
/// shell that execs it, which first closes every descriptor above 2 that
/// this test inherited (a CI harness leaves some, as many as it likes:
/// with 55 of them held, a limit of 64 left the storm no descriptor for
/// its upstream's socket, with 60 none for its runtime) and then opens
/// `inherited` descriptors (from 10 up) that the storm inherits, as from
/// a CI harness: the storm starts with exactly 3 + `inherited` of
/// `nofile` in use, wherever it runs.
#[cfg(unix)]
fn storm_with_nofile(nofile: u32, inherited: u32, args: &[&str]) -> Output {
    let end = 10 + inherited;
    // bash: dash redirects only descriptors 0 to 9.
    Command::new("bash")
        .arg("-c")
        .arg(format!(
            "for fd in /dev/fd/*; do fd=${{fd##*/}}; \
             if [ \"$fd\" -gt 2 ]; then eval \"exec $fd<&-\"; fi; done; \
             i=10; while [ $i -lt {end} ]; do eval \"exec $i</dev/null\"; i=$((i + 1)); done; \
             ulimit -n {nofile} && exec \"$0\" \"$@\""
        ))
        .arg(env!("CARGO_BIN_EXE_storm"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        // In process, whatever a shell or CI job exports.
        .env_remove("FUSEBOX_REDIS_URL")
        .output()
        .expect("bash runs")
}

/// 100 clients need about 200 descriptors (a connection at each end);
/// 64 leave room for the runtime and the listener, not for them.
/// Before the fix: exit 0, nothing on stderr, and a table in which the
/// protected clients did worse than the unprotected ones (65.3 % against
/// 75.7 % success with seed 1: the breaker tripped on the process's own
/// `EMFILE`s, read as the upstream's failures).
#[cfg(unix)]
#[test]
fn calls_the_process_cannot_make_are_reported_not_counted_silently() {
    expect_one_warning(&storm_with_nofile(
        64,
        0,
        &["--short", "--seed", "1", "--clients", "100"],
    ));
}

/// The same with 40 of the 64 descriptors held from the start, as a CI
/// harness may leave them: the first run's connections filled the rest,
/// and the second run's upstream found none free when it bound, its
/// previous connections still being closed (`storm: Too many open
/// files`, exit 1: CI's first failure; here in 9 of 48 runs with 30 to
/// 60 inherited before the fix, in 0 of 48 after; `upstream_descriptors`
/// tests the two parts of the fix deterministically).
#[cfg(unix)]
#[test]
fn the_second_run_binds_after_the_first_has_released_its_descriptors() {
    expect_one_warning(&storm_with_nofile(
        64,
        40,
        &["--short", "--seed", "1", "--clients", "100"],
    ));
}

/// A successful storm with one warning about calls that got no answer.
#[cfg(unix)]
fn expect_one_warning(output: &Output) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "exit {:?}\nstderr:\n{stderr}",
        output.status
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let warning: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("storm: warning: "))
        .collect();
    assert_eq!(warning.len(), 1, "stderr:\n{stderr}\nstdout:\n{stdout}");
    let warning = warning[0];
    assert!(
        warning.contains("no answer") && warning.contains("ulimit -n"),
        "{warning}"
    );
    // The count it gives is a positive number of calls.
    let count: u64 = warning
        .trim_start_matches("storm: warning: ")
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(count > 0, "{warning}");
}

/// A limit too low for the storm to start is refused with a one-line
/// error naming it, not a panic: before, `ulimit -n 8` panicked building
/// tokio's runtime and `ulimit -n 6` in tokio's signal driver (exit 101,
/// a backtrace). With 16 descriptors free it runs.
#[cfg(target_os = "linux")]
#[test]
fn a_limit_too_low_to_start_is_an_error_not_a_panic() {
    let args = ["--short", "--seed", "1", "--clients", "10"];
    for nofile in [4, 6, 8, 15] {
        let output = storm_with_nofile(nofile, 0, &args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(1),
            "ulimit -n {nofile}: {stderr}"
        );
        assert_eq!(
            stderr.trim_end(),
            format!(
                "storm: the open-file limit (`ulimit -n`) is {nofile}: the storm needs 16 to \
                 start, and 2 per client plus 64 to make all its calls; raise it"
            ),
        );
    }
    // 16 beyond those the process inherits (a CI harness may leave some).
    let output = Command::new("bash")
        .arg("-c")
        .arg("ulimit -n $(($(ls /proc/self/fd | wc -l) + 16)) && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_storm"))
        .args(args)
        .env_remove("FUSEBOX_REDIS_URL")
        .output()
        .expect("bash runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "16 free descriptors: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
