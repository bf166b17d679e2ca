//! The health monitor's check names as a careless user writes them: two
//! checks of one name (a copy-pasted spec) or an empty one are refused
//! when the monitor is spawned, nothing started. Before, both ran: their
//! statuses, events (`MonitorEvent::check`) and log lines could not be
//! told apart, so a failing check read as its healthy twin's.

use fusebox_std::monitor::{CheckSpec, FnCheck, HealthCheck, HealthMonitor, SpawnError};

fn ok() -> impl HealthCheck {
    FnCheck::new(|| async { Ok(None) })
}

#[tokio::test(start_paused = true)]
async fn two_checks_of_one_name_or_an_empty_name_are_refused() {
    let twice = HealthMonitor::new()
        .check(CheckSpec::new("postgres", ok()))
        .check(CheckSpec::new("redis", ok()))
        .check(CheckSpec::new("postgres", ok()));
    assert_eq!(
        twice.try_spawn().unwrap_err(),
        SpawnError::DuplicateCheck {
            name: "postgres".into()
        }
    );
    let empty = HealthMonitor::new().check(CheckSpec::new("", ok()));
    assert_eq!(empty.try_spawn().unwrap_err(), SpawnError::EmptyCheckName);

    // A name holding a secret is shown redacted in the error.
    let url = "https://ops:hunter2@db.internal/health";
    let secret = HealthMonitor::new()
        .check(CheckSpec::new(url, ok()))
        .check(CheckSpec::new(url, ok()));
    let shown = secret.try_spawn().unwrap_err().to_string();
    assert!(!shown.contains("hunter2"), "{shown}");

    // Names that differ, if only in case, are two checks.
    let distinct = HealthMonitor::new()
        .check(CheckSpec::new("postgres", ok()))
        .check(CheckSpec::new("Postgres", ok()))
        .try_spawn()
        .expect("distinct names");
    assert_eq!(distinct.status().checks.len(), 2);
}

#[test]
#[should_panic(expected = "two health checks are named \"postgres\"")]
fn spawn_panics_with_the_reason() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let _ = HealthMonitor::new()
            .check(CheckSpec::new("postgres", ok()))
            .check(CheckSpec::new("postgres", ok()))
            .spawn();
    });
}
