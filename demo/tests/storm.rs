//! The storm binary end to end: `storm --short --seed 1` exits 0, prints
//! the side-by-side table, and the protected run sent fewer calls to the
//! upstream during the outage than the unprotected one.

use std::process::Command;
use std::time::{Duration, Instant};

/// The cells of the table row starting with `label`.
fn row<'a>(table: &'a str, label: &str) -> Vec<&'a str> {
    let line = table
        .lines()
        .find(|l| l.trim_start_matches(['│', ' ']).starts_with(label))
        .unwrap_or_else(|| panic!("no row {label:?} in:\n{table}"));
    line.split(['│', '┆'])
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect()
}

/// `12 345` → 12345.
fn number(cell: &str) -> u64 {
    cell.replace(' ', "")
        .parse()
        .unwrap_or_else(|_| panic!("not a count: {cell:?}"))
}

#[test]
fn short_storm_prints_both_columns_and_the_protected_run_spares_the_outage() {
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_storm"))
        .args(["--short", "--seed", "1"])
        // In process, whatever a shell or CI job exports.
        .env_remove("FUSEBOX_REDIS_URL")
        .output()
        .expect("storm runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    // Every call got an answer: no warning about the process's own
    // failures (this test needs an open-file limit of about 700 or more).
    assert!(!stderr.contains("storm: warning"), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );

    // Not a terminal: plain progress lines, no escape codes.
    assert!(
        !stdout.contains('\u{1b}'),
        "escape codes in piped output:\n{stdout}"
    );
    assert!(stdout.contains("seed 1"), "{stdout}");
    assert!(stdout
        .lines()
        .any(|l| l.trim_start().starts_with("unprotected") && l.contains("OUTAGE")));
    assert!(stdout
        .lines()
        .any(|l| l.trim_start().starts_with("protected") && l.contains("breaker")));

    let header = stdout
        .lines()
        .find(|l| l.starts_with('│') && l.contains("unprotected"))
        .unwrap_or_else(|| panic!("no table header in:\n{stdout}"));
    let columns: Vec<_> = header
        .split(['│', '┆'])
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(columns, ["unprotected", "protected"], "{stdout}");
    for label in [
        "requests",
        "success rate seen by clients",
        "latency p50",
        "latency p95",
        "latency p99",
        "upstream calls (all)",
        "breaker trips",
        "served from stale cache",
        "retries spent",
    ] {
        assert_eq!(row(&stdout, label).len(), 3, "row {label:?}:\n{stdout}");
    }

    let outage = row(&stdout, "upstream calls during outage");
    let (unprotected, protected) = (number(outage[1]), number(outage[2]));
    assert!(
        unprotected > 0,
        "the unprotected clients never met the outage:\n{stdout}"
    );
    assert!(
        protected < unprotected,
        "protected {protected} >= unprotected {unprotected} during the outage:\n{stdout}"
    );
    let requests = row(&stdout, "requests");
    assert!(
        number(requests[1]) > 0 && number(requests[2]) > 0,
        "{stdout}"
    );
}
