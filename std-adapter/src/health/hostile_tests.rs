//! The health report read by a hostile or careless user: secrets and odd
//! text in every free-text place it has, and its verdicts against the
//! readiness probe's.

use std::time::Duration;

use crate::monitor::{CheckError, CheckSpec, ErrorKind, FnCheck, HealthMonitor};
use crate::{Registry, TrackerConfig};

/// Text a client or a dependency chooses: a quote, a newline, a NUL, a
/// line separator, a right-to-left override, non-ASCII, and secrets.
const ODD: &str = "q\"uote\n\u{0}\u{2028}\u{202E}é ✓ redis://app:hunter2@cache token=tok3n";

/// Every free-text place of the report (a condition's reason, a tracker's
/// path, a monitor check's name, target and error) given odd text with
/// secrets: the JSON parses back to the report's own strings (stable
/// whatever the text), shows neither secret, and holds no raw control
/// character. Sound: a review's check, no defect found.
#[tokio::test(start_paused = true)]
async fn odd_text_and_secrets_in_every_free_text_place() {
    let registry = Registry::new();
    registry.set_degraded("dep", Some(ODD)).unwrap();
    let tracker = registry
        .tracker(
            "http",
            TrackerConfig {
                sample_rate: 1.0,
                ..TrackerConfig::default()
            },
        )
        .unwrap();
    drop(tracker.track_operation(ODD));
    let failing =
        FnCheck::new(|| async { Err::<Option<String>, _>(CheckError::new(ErrorKind::Other, ODD)) })
            .with_target(ODD);
    let handle = HealthMonitor::new()
        .check(CheckSpec::new(ODD, failing).interval(Duration::from_secs(1)))
        .spawn();
    registry.attach_monitor(handle.reader());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let report = registry.health();
    let text = serde_json::to_string(&report).unwrap();
    for secret in ["hunter2", "tok3n"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    assert!(!text.chars().any(char::is_control), "{text}");
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json, serde_json::to_value(&report).unwrap());
    assert_eq!(report.reasons.len(), 2, "{:?}", report.reasons);
    assert!(
        report.reasons[0].starts_with("dep: q\"uote\n"),
        "{:?}",
        report.reasons
    );
    // The monitor's reason names the check and its error (its target,
    // which the error holds, left out), each redacted and escaped.
    let monitor = &report.reasons[1];
    assert_eq!(
        monitor,
        "monitor is unhealthy: check \"q\\\"uote\\n\\0\\u{2028}\\u{202e}é ✓ \
         redis://app:***@cache token=***\" unhealthy: 3 failures in a row, last: other: \
         q\"uote\\n\\0\\u{2028}\\u{202e}é ✓ redis://app:***@cache token=***"
    );
    handle.stop().await;
}

/// The readiness probe's verdict (`is_ready`, which builds no report) is
/// the report's `ready` in every state they both follow: required and
/// optional breakers closed, open, half open and forced open. Sound: a
/// review's check, no defect found.
#[cfg(feature = "http")]
#[tokio::test(start_paused = true)]
async fn the_probe_and_the_report_agree_on_ready() {
    use fusebox::breaker::Config;

    let registry = Registry::new();
    let config = || {
        Config::builder()
            .consecutive_failures(1)
            .open_for(fusebox::Duration::from_secs(10))
            .build()
            .unwrap()
    };
    let required = registry.breaker("required", config()).unwrap();
    registry.set_required("required", true).unwrap();
    let optional = registry.breaker("optional", config()).unwrap();
    let check = |what: &str| {
        let report = registry.health();
        assert_eq!(registry.is_ready(), report.ready, "{what}: {report:?}");
        report.ready
    };
    assert!(check("all closed"));
    optional.force_open(registry.now());
    assert!(check("optional forced open"));
    required.force_open(registry.now());
    assert!(!check("required forced open"));
    required.reset(registry.now());
    optional.reset(registry.now());
    assert!(check("reset"));
    let permit = required.try_acquire(registry.now()).unwrap();
    permit.record(
        fusebox::breaker::Outcome::Failure,
        registry.now(),
        fusebox::Duration::ZERO,
    );
    assert!(!check("required open"));
    tokio::time::advance(Duration::from_secs(10)).await;
    check("required half open");
}
