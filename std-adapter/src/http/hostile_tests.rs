//! Requests a hostile or careless client could send, through the router.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request};
use fusebox::breaker::Config;
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::http::{router, HttpOptions};
use crate::{Registry, TrackerConfig};

async fn send(app: axum::Router, method: Method, uri: &str) -> (u16, String) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// `/readyz` is open to anyone: its cost must not grow with what the
/// registry tracks. Before, it built the whole health report, computing
/// the percentiles of every tracker's every series (about a second of CPU
/// per request in a debug build with 2 048 series): an unauthenticated
/// request bought as much work as an authenticated `/health`. Counted,
/// not timed: the probe builds no report, `/health` does, and the two
/// agree.
#[tokio::test(flavor = "current_thread")]
async fn readyz_does_not_build_the_whole_report() {
    use crate::health::REPORTS_BUILT;
    let built = || REPORTS_BUILT.with(std::cell::Cell::get);
    let registry = Arc::new(Registry::new());
    registry
        .breaker(
            "db",
            Config::builder().consecutive_failures(1).build().unwrap(),
        )
        .unwrap();
    registry.set_required("db", true).unwrap();
    let tracker = registry.tracker("http", TrackerConfig::default()).unwrap();
    drop(tracker.track_operation("op"));
    let app = router(Arc::clone(&registry), HttpOptions::default());

    let before = built();
    let (code, body) = send(app.clone(), Method::GET, "/readyz").await;
    assert_eq!((code, body.as_str()), (200, r#"{"status":"ready"}"#));
    assert_eq!(built(), before, "the probe built a whole report");
    assert_eq!(send(app.clone(), Method::GET, "/health").await.0, 200);
    assert_eq!(built(), before + 1, "the count counts: /health builds one");

    // The same verdict as the report's.
    registry
        .get_breaker("db")
        .unwrap()
        .force_open(registry.now());
    let (code, body) = send(app, Method::GET, "/readyz").await;
    assert!(!registry.health().ready);
    assert_eq!((code, body.as_str()), (503, r#"{"status":"not_ready"}"#));
}

/// The probe's verdict stays the report's when an attached monitor is
/// unhealthy (the other way to be not ready).
#[tokio::test(start_paused = true)]
async fn readyz_follows_an_unhealthy_monitor() {
    use crate::monitor::{CheckError, CheckSpec, FnCheck, HealthMonitor};

    let registry = Arc::new(Registry::new());
    let monitor = HealthMonitor::new()
        .check(
            CheckSpec::new(
                "db",
                FnCheck::new(|| async { Err::<Option<String>, _>(CheckError::other("refused")) }),
            )
            .interval(std::time::Duration::from_secs(1)),
        )
        .spawn();
    registry.attach_monitor(monitor.reader());
    let app = router(Arc::clone(&registry), HttpOptions::default());
    assert_eq!(send(app.clone(), Method::GET, "/readyz").await.0, 200);
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    assert!(!registry.health().ready);
    let (code, body) = send(app, Method::GET, "/readyz").await;
    assert_eq!((code, body.as_str()), (503, r#"{"status":"not_ready"}"#));
}
