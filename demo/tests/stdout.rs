//! `storm` when its stdout cannot be written: a clear one-line error and a
//! failing exit, never a panic.

/// `/dev/full` refuses every write (`ENOSPC`): the first line printed
/// fails. The storm stops at once, before either run.
#[cfg(target_os = "linux")]
#[test]
fn a_full_stdout_is_a_clear_error_not_a_panic() {
    use std::fs::OpenOptions;
    use std::process::Command;

    let full = OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    let output = Command::new(env!("CARGO_BIN_EXE_storm"))
        .args(["--short", "--seed", "1"])
        .env("RUST_BACKTRACE", "0")
        .env_remove("FUSEBOX_REDIS_URL")
        .stdout(full)
        .output()
        .expect("storm runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.starts_with("storm: cannot write to stdout: ") && stderr.lines().count() == 1,
        "{stderr}"
    );
}
