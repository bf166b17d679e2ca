//! A health monitor attached to a registry: its checks and recovery
//! statistics in `health()`, and its verdict in `ready` and `degraded`.

use std::time::Duration;

use fusebox_std::monitor::{
    CheckError, CheckSpec, FnCheck, HealthMonitor, RecoveryAction, RecoveryRule,
};
use fusebox_std::Registry;
use tokio::time::sleep;

#[tokio::test(start_paused = true)]
async fn an_unhealthy_monitor_makes_the_report_not_ready_and_shows_its_recovery() {
    let registry = Registry::new();
    let monitor = HealthMonitor::new()
        .check(
            CheckSpec::new(
                "db",
                FnCheck::new(|| async {
                    Err::<Option<String>, _>(CheckError::other(
                        "postgres://app:hunter2@db:5432 refused",
                    ))
                }),
            )
            .interval(Duration::from_secs(1))
            .recovery(RecoveryRule::new(
                3,
                RecoveryAction::new("reconnect", || async {
                    Err::<(), _>("postgres://app:hunter2@db:5432 still refused")
                }),
            )),
        )
        .spawn();
    assert!(registry.health().monitor.is_none());
    registry.attach_monitor(monitor.reader());
    // Three failures in a row (defaults: degraded after 1, unhealthy after
    // 3), and the recovery action's first attempt at the third.
    sleep(Duration::from_millis(2_500)).await;
    let health = registry.health();
    assert!(!health.ready, "{:?}", health.reasons);
    assert!(health.degraded);
    assert!(
        health.reasons.iter().any(|r| r
            == "monitor is unhealthy: check \"db\" unhealthy: 3 failures in a row, \
                last: other: postgres://app:***@db:5432 refused"),
        "{:?}",
        health.reasons
    );
    let status = health.monitor.as_ref().unwrap();
    let db = &status.checks[0];
    assert_eq!((db.name.as_str(), db.consecutive_failures), ("db", 3));
    let recovery = db.recovery.as_ref().unwrap();
    assert_eq!(recovery.primary.attempts, 1);
    // The JSON carries it, with no secret.
    let json = serde_json::to_string(&health).unwrap();
    assert!(json.contains("\"monitor\""), "{json}");
    assert!(!json.contains("hunter2"), "{json}");
    monitor.stop().await;
}
