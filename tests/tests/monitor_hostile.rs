//! The health monitor against a hostile or careless user: secrets in
//! URLs of forms a check's owner would not think of, every setting at
//! its least and at its most.

use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use fusebox_std::monitor::{
    probe, AlertKind, AlertThresholds, CheckError, CheckSpec, ErrorKind, FnCheck, Health,
    HealthCheck, HealthMonitor, HttpCheck, RecoveryAction, RecoveryRule, Thresholds,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A server answering every request `403 Forbidden`, as a store answers
/// a presigned URL that expired.
async fn forbidding() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0_u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let answer = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n";
                let _ = stream.write_all(answer).await;
            });
        }
    });
    addr
}

/// A presigned URL (S3's `X-Amz-Signature`, GCS's `X-Goog-Signature`)
/// grants access to whoever holds it until it expires: an `HttpCheck`
/// of one showed its signature in `url()`, its target, its errors and
/// the status (found by a hostile review: `redact` masked `signature=`
/// and `sig=`, not a name ending in `-signature`).
#[tokio::test]
async fn a_presigned_urls_signature_is_never_shown() {
    let addr = forbidding().await;
    let urls = [
        format!(
            "http://{addr}/bucket/health.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=AKIDEXAMPLE%2F20261206%2Fus-east-1%2Fs3%2Faws4_request\
             &X-Amz-Date=20261206T100000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host\
             &X-Amz-Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
        ),
        format!(
            "http://{addr}/b/o?X-Goog-Algorithm=GOOG4-RSA-SHA256&x-goog-signature=5d672d79c15b"
        ),
        format!("http://{addr}/o?request_signature=5d672d79c15b"),
    ];
    let mut monitor = HealthMonitor::new();
    for (i, url) in urls.iter().enumerate() {
        let check = HttpCheck::new(url).unwrap();
        for shown in [check.url().to_owned(), check.target().unwrap()] {
            assert!(!shown.contains("5d672d79c15b"), "{shown}");
            assert!(shown.contains("ignature=***"), "{shown}");
        }
        let run = probe(&check, Duration::from_secs(5)).await;
        let error = run.error.expect("403 is outside 200..=299");
        assert_eq!(error.kind(), ErrorKind::Status, "{error}");
        assert!(!error.message().contains("5d672d79c15b"), "{error}");
        monitor = monitor
            .check(CheckSpec::new(format!("store{i}"), check).interval(Duration::from_millis(30)));
    }
    let monitor = monitor.spawn();
    tokio::time::timeout(Duration::from_secs(10), async {
        while monitor.status().checks.iter().any(|c| c.last.is_none()) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("every check ran");
    let status = monitor.status();
    let json = serde_json::to_string(&status).unwrap();
    assert!(!json.contains("5d672d79c15b"), "{json}");
    let checks = serde_json::to_string(&status.checks).unwrap();
    assert_eq!(checks.matches("status 403").count(), urls.len(), "{checks}");
    // The reason names every check and its answer (a long URL cut in the
    // error's middle, its end kept).
    let reason = status.reason.unwrap();
    assert_eq!(reason.matches("status 403").count(), urls.len(), "{reason}");
    monitor.stop().await;
}

fn failing() -> impl HealthCheck {
    FnCheck::new(|| async { Err(CheckError::other("down")) })
}

fn action(name: &str) -> RecoveryAction {
    RecoveryAction::new(name, || async { Ok::<(), String>(()) })
}

/// Every setting at its maximum: the monitor spawns, runs what is due
/// and reports, without an overflow: a first run staggered past ~30
/// years is put there, a check that runs every `Duration::MAX` never goes
/// stale, counts that can never be reached are not, and durations
/// saturate in the JSON.
#[tokio::test(start_paused = true)]
async fn every_setting_at_its_maximum_runs_and_reports() {
    let most = || {
        Thresholds::new()
            .degraded_after(u32::MAX)
            .unhealthy_after(u32::MAX)
            .healthy_after(u32::MAX)
    };
    let alerts = AlertThresholds::new()
        .window(usize::MAX)
        .min_samples(usize::MAX)
        .min_success_rate(u8::MAX)
        .max_response_time(Duration::MAX);
    let rule = RecoveryRule::new(u32::MAX, action("reconnect"))
        .cooldown(Duration::MAX)
        .backoff(u32::MAX, Duration::MAX)
        .timeout(Duration::MAX)
        .escalate(u32::MAX, action("restart"));
    let spec = |name: &str| {
        CheckSpec::new(name, failing())
            .interval(Duration::MAX)
            .timeout(Duration::MAX)
            .thresholds(most())
            .alerts(alerts)
    };
    let monitor = HealthMonitor::new()
        .event_capacity(usize::MAX)
        .check(spec("first").recovery(rule))
        .check(spec("second"))
        .spawn();
    tokio::time::sleep(Duration::from_secs(1)).await;
    tokio::time::advance(Duration::from_secs(365 * 86_400)).await;
    let status = monitor.status();
    let [first, second] = &status.checks[..] else {
        panic!("{status:?}")
    };
    // Ran once, at 0: out of Unknown at once, never unhealthy.
    assert_eq!(
        (first.runs, first.health, first.stale),
        (1, Health::Degraded, false)
    );
    assert_eq!(first.consecutive_failures, 1);
    assert!(first.alerts.is_empty());
    assert_eq!(first.recovery.as_ref().unwrap().episodes, 0);
    // Staggered by half of `Duration::MAX`: not run yet, and not stale.
    assert_eq!(
        (second.runs, second.health, second.stale),
        (0, Health::Unknown, false)
    );
    assert_eq!(status.health, Health::Degraded);
    let json = serde_json::to_value(&status).unwrap();
    assert_eq!(json["checks"][0]["interval_us"], u64::MAX);
    assert_eq!(json["checks"][0]["timeout_us"], u64::MAX);
    monitor.stop().await;
}

/// Every setting at zero is clamped to its least (an interval, a timeout
/// and a cooldown of 1 ms, counts and windows of 1): a check that
/// alternates flips between healthy and unhealthy on every run, an alert
/// follows every run, and recovery runs once per failing run, each
/// episode ended by the next pass.
#[tokio::test(start_paused = true)]
async fn every_setting_at_zero_is_its_least() {
    let flips = Arc::new(AtomicU32::new(0));
    let seen = Arc::clone(&flips);
    let check = FnCheck::new(move || {
        let passed = seen.fetch_add(1, SeqCst).is_multiple_of(2);
        async move {
            if passed {
                Ok(None)
            } else {
                Err(CheckError::other("down"))
            }
        }
    });
    let least = Thresholds::new()
        .degraded_after(0)
        .unhealthy_after(0)
        .healthy_after(0);
    let alerts = AlertThresholds::new()
        .window(0)
        .min_samples(0)
        .min_success_rate(100);
    let rule = RecoveryRule::new(0, action("reconnect"))
        .cooldown(Duration::ZERO)
        .backoff(0, Duration::ZERO)
        .timeout(Duration::ZERO);
    let monitor = HealthMonitor::new()
        .event_capacity(0)
        .check(
            CheckSpec::new("flapping", check)
                .interval(Duration::ZERO)
                .timeout(Duration::ZERO)
                .thresholds(least)
                .alerts(alerts)
                .recovery(rule),
        )
        .spawn();
    let mut events = monitor.subscribe();
    tokio::time::sleep(Duration::from_micros(9_500)).await;
    let status = monitor.status();
    let check = &status.checks[0];
    // Runs at 0, 1, …, 9 ms: pass, fail, pass, …
    assert_eq!((check.runs, check.failed_runs), (10, 5), "{check:?}");
    assert_eq!(check.health, Health::Unhealthy);
    assert_eq!(check.alerts, [AlertKind::SuccessRate]);
    let recovery = check.recovery.as_ref().unwrap();
    assert_eq!((recovery.episodes, recovery.primary.attempts), (5, 5));
    // A capacity of one: the subscription kept the last event only.
    let mut kept = 0;
    while events.try_recv().is_some() {
        kept += 1;
    }
    assert_eq!(kept, 1);
    assert!(monitor.status().lagged_events > 0);
    monitor.stop().await;
}
