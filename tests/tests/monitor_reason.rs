//! The reason a monitor gives for being degraded or unhealthy names the
//! failing checks and why they fail: in the registry's health report, in
//! the monitor's status, in its events and its logs; bounded in size and
//! without secrets (found by a review: the report said only "monitor is
//! unhealthy", and an operator had to read every check's status to learn
//! which dependency was down).

use std::time::Duration;

use fusebox_std::monitor::{
    CheckError, CheckSpec, ErrorKind, FnCheck, Health, HealthCheck, HealthMonitor, Thresholds,
};
use fusebox_std::Registry;
use tokio::time::sleep;

fn failing(message: &'static str, target: &'static str) -> impl HealthCheck {
    FnCheck::new(move || async move {
        Err::<Option<String>, _>(CheckError::new(ErrorKind::Connect, message))
    })
    .with_target(target)
}

fn passing() -> impl HealthCheck {
    FnCheck::new(|| async { Ok(None) })
}

/// The monitor's line of the report's reasons.
fn monitor_reason(registry: &Registry) -> String {
    let reasons = registry.health().reasons;
    let mut lines = reasons.iter().filter(|r| r.starts_with("monitor is "));
    let line = lines
        .next()
        .unwrap_or_else(|| panic!("{reasons:?}"))
        .clone();
    assert!(lines.next().is_none(), "{reasons:?}");
    line
}

#[tokio::test(start_paused = true)]
async fn the_report_names_the_failing_check_its_target_and_its_error() {
    let registry = Registry::new();
    let monitor = HealthMonitor::new()
        .check(CheckSpec::new("api", passing()).interval(Duration::from_secs(1)))
        .check(
            CheckSpec::new("db", failing("connection refused", "tcp://10.0.0.5:5432"))
                .interval(Duration::from_secs(1)),
        )
        .spawn();
    registry.attach_monitor(monitor.reader());
    // Staggered: "db" runs at 0.5 s, 1.5 s and 2.5 s, then is unhealthy.
    sleep(Duration::from_secs(3)).await;
    assert_eq!(
        monitor_reason(&registry),
        "monitor is unhealthy: check \"db\" (tcp://10.0.0.5:5432) unhealthy: \
         3 failures in a row, last: connect: connection refused"
    );
    monitor.stop().await;
}

/// Several failing checks: all are named, the worst first (critical
/// unhealthy ones, then degraded ones, each group in the order added), with
/// their count; a passing check is not.
#[tokio::test(start_paused = true)]
async fn the_report_names_every_failing_check_the_worst_first() {
    let registry = Registry::new();
    let monitor = HealthMonitor::new()
        .check(
            CheckSpec::new("cache", failing("reset by peer", "redis://cache:6379"))
                .interval(Duration::from_secs(1))
                .critical(false),
        )
        .check(CheckSpec::new("api", passing()).interval(Duration::from_secs(1)))
        .check(
            CheckSpec::new("db", failing("connection refused", "tcp://db:5432"))
                .interval(Duration::from_secs(1)),
        )
        .spawn();
    registry.attach_monitor(monitor.reader());
    // Staggered over the interval: one run each by 0.9 s, degraded.
    sleep(Duration::from_millis(900)).await;
    assert_eq!(
        monitor_reason(&registry),
        "monitor is degraded: 2 checks failing: \
         check \"db\" (tcp://db:5432) degraded: 1 failure in a row, last: connect: connection refused; \
         check \"cache\" (redis://cache:6379) degraded, not critical: 1 failure in a row, last: connect: reset by peer"
    );
    sleep(Duration::from_secs(2)).await; // three runs each by 2.9 s
    let reason = monitor_reason(&registry);
    assert!(
        reason.starts_with("monitor is unhealthy: 2 checks failing: check \"db\" (tcp://db:5432) unhealthy: 3 failures"),
        "{reason}"
    );
    assert!(
        reason
            .contains("; check \"cache\" (redis://cache:6379) unhealthy, not critical: 3 failures"),
        "{reason}"
    );
    assert!(!reason.contains("\"api\""), "{reason}");
    monitor.stop().await;
}

/// A check failing for a while then passing again, but not yet for
/// `healthy_after` runs, is degraded as recovering.
#[tokio::test(start_paused = true)]
async fn a_recovering_check_says_so() {
    let registry = Registry::new();
    let runs = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counted = std::sync::Arc::clone(&runs);
    let check = FnCheck::new(move || {
        let run = counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async move {
            if run < 1 {
                Err(CheckError::other("down"))
            } else {
                Ok(None)
            }
        }
    });
    let monitor = HealthMonitor::new()
        .check(
            CheckSpec::new("queue", check)
                .interval(Duration::from_secs(1))
                .thresholds(Thresholds::new().unhealthy_after(1).healthy_after(3)),
        )
        .spawn();
    registry.attach_monitor(monitor.reader());
    sleep(Duration::from_millis(1_500)).await; // failed, then passed once
    assert_eq!(
        monitor_reason(&registry),
        "monitor is degraded: check \"queue\" degraded: recovering, 1 pass in a row"
    );
    monitor.stop().await;
}

/// A check whose target and error carry credentials: the reason names it,
/// without them.
#[tokio::test(start_paused = true)]
async fn credentials_in_a_target_or_an_error_stay_out_of_the_reason() {
    let registry = Registry::new();
    let check = FnCheck::new(|| async {
        Err::<Option<String>, _>(CheckError::new(
            ErrorKind::Connect,
            "refused: dial http://ops:hunter2@db:5432/?token=tok3n",
        ))
    })
    .with_target("postgres://app:s3cret@db:5432/app?password=pa55");
    let monitor = HealthMonitor::new()
        .check(CheckSpec::new("db", check).interval(Duration::from_secs(1)))
        .spawn();
    registry.attach_monitor(monitor.reader());
    let mut events = monitor.subscribe();
    sleep(Duration::from_millis(2_500)).await;
    let reason = monitor_reason(&registry);
    assert_eq!(
        reason,
        "monitor is unhealthy: check \"db\" (postgres://app:***@db:5432/app?password=***) unhealthy: \
         3 failures in a row, last: connect: refused: dial http://ops:***@db:5432/?token=***"
    );
    let json = serde_json::to_string(&registry.health()).unwrap();
    let mut sent = String::new();
    while let Some(event) = events.try_recv() {
        sent.push_str(&serde_json::to_string(&event).unwrap());
    }
    assert!(sent.contains("\"reason\":\"check \\\"db\\\""), "{sent}");
    for secret in ["hunter2", "tok3n", "s3cret", "pa55"] {
        assert!(!json.contains(secret), "{secret} in {json}");
        assert!(!sent.contains(secret), "{secret} in {sent}");
    }
    monitor.stop().await;
}

/// Its events carry the check's line: a change to degraded or unhealthy
/// and an alert raised while failing; a change back to healthy, none (the
/// logs: `monitor_net`, a binary of its own for its log subscriber).
#[test]
fn events_carry_the_reason() {
    let (changes, alerts) = {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap()
            .block_on(async {
                let runs = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
                let counted = std::sync::Arc::clone(&runs);
                let check = FnCheck::new(move || {
                    let run = counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    async move {
                        if run < 3 {
                            Err(CheckError::new(ErrorKind::Timeout, "no answer"))
                        } else {
                            Ok(None)
                        }
                    }
                })
                .with_target("tcp://db:5432");
                let monitor = HealthMonitor::new()
                    .check(
                        CheckSpec::new("db", check)
                            .interval(Duration::from_secs(1))
                            .thresholds(Thresholds::new().healthy_after(1))
                            .alerts(
                                fusebox_std::monitor::AlertThresholds::new()
                                    .window(2)
                                    .min_samples(2)
                                    .min_success_rate(100),
                            ),
                    )
                    .spawn();
                let mut events = monitor.subscribe();
                sleep(Duration::from_millis(3_500)).await;
                monitor.stop().await;
                let (mut changes, mut alerts) = (Vec::new(), Vec::new());
                while let Some(event) = events.recv().await {
                    match event {
                        fusebox_std::monitor::MonitorEvent::HealthChanged {
                            to, reason, ..
                        } => {
                            changes.push((to, reason));
                        }
                        fusebox_std::monitor::MonitorEvent::AlertRaised { reason, .. } => {
                            alerts.push(reason);
                        }
                        _ => {}
                    }
                }
                (changes, alerts)
            })
    };
    let line = |health: &str, n: u32| {
        let s = if n == 1 { "" } else { "s" };
        Some(format!(
            "check \"db\" (tcp://db:5432) {health}: {n} failure{s} in a row, last: timeout: no answer"
        ))
    };
    assert_eq!(
        changes,
        [
            (Health::Degraded, line("degraded", 1)),
            (Health::Unhealthy, line("unhealthy", 3)),
            (Health::Healthy, None),
        ]
    );
    assert_eq!(alerts, [line("degraded", 2)]);
}

/// Hostile names and errors (long, with quotes, newlines and reordering
/// characters) and many failing checks: every piece is cut and escaped,
/// the reason stays within `Status::MAX_REASON_CHARS`, and the checks
/// that do not fit are counted.
#[tokio::test(start_paused = true)]
async fn hostile_names_and_errors_keep_the_reason_bounded() {
    let mut monitor = HealthMonitor::new();
    for i in 0..40 {
        let name = format!("n{i}\"\n\u{202E}{}", "x".repeat(10_000));
        let check = FnCheck::new(|| async {
            Err::<Option<String>, _>(CheckError::other(format!("line\n{}", "e".repeat(10_000))))
        })
        .with_target("t".repeat(10_000));
        monitor = monitor.check(CheckSpec::new(name, check).interval(Duration::from_secs(1)));
    }
    let monitor = monitor.spawn();
    sleep(Duration::from_millis(2_999)).await;
    let status = monitor.status();
    let reason = status.reason.unwrap();
    assert!(
        reason.chars().count() <= fusebox_std::monitor::Status::MAX_REASON_CHARS,
        "{} chars",
        reason.chars().count()
    );
    assert!(
        reason.starts_with("40 checks failing: check \"n0\\\"\\n\\u{202e}xxx"),
        "{reason}"
    );
    let first = reason.split("; ").next().unwrap();
    let name = &first["40 checks failing: check \"".len()..];
    let name = &name[..name.find("…\" (").unwrap_or_else(|| panic!("{first}"))];
    // 64 characters, the escapes counted: `n0`, `\"`, `\n`, `\u{202e}`.
    assert_eq!(name.chars().count(), 64, "{name}");
    assert!(
        first.contains(&format!(" ({}…) unhealthy: 3 failures", "t".repeat(128))),
        "{first}"
    );
    // The error (cut to 512 characters when made) cut in its middle to 256.
    assert!(
        first.ends_with(&format!(
            "last: other: line\\n{}…{}…",
            "e".repeat(122),
            "e".repeat(127)
        )),
        "{first}"
    );
    assert!(!reason.contains(['\n', '\u{202E}']), "{reason:?}");
    let shown = reason.matches("; check \"").count() + 1;
    assert!((1..40).contains(&shown), "{reason}");
    assert!(
        reason.ends_with(&format!("; and {} more", 40 - shown)),
        "{reason}"
    );
    monitor.stop().await;
}

/// A check that no longer runs (its monitor stopped) reads degraded, and
/// the reason says it is stale and since when no run ended.
#[tokio::test(start_paused = true)]
async fn a_stale_check_says_for_how_long_no_run_ended() {
    let registry = Registry::new();
    let monitor = HealthMonitor::new()
        .check(CheckSpec::new("db", passing()).interval(Duration::from_secs(1)))
        .spawn();
    registry.attach_monitor(monitor.reader());
    sleep(Duration::from_millis(500)).await; // one run, at 0 s
    assert_eq!(registry.health().reasons, Vec::<String>::new());
    monitor.stop().await;
    sleep(Duration::from_secs(10)).await;
    assert_eq!(
        monitor_reason(&registry),
        "monitor is degraded: check \"db\" degraded: stale, no run ended for 10 s"
    );
}
