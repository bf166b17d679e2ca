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
/// not timed: the probe builds no report, and agrees with the report.
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
    // The count counts on the thread that builds the report (/health
    // builds its own on the blocking pool).
    drop(registry.health());
    assert_eq!(built(), before + 1, "the count counts: a report built here");

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

/// `/readyz` computes nothing but its verdict: with a monitor attached, not the monitor's whole
/// status (every check's strings and probes cloned, every alert window
/// of up to `AlertThresholds::MAX_WINDOW` runs summed twice), only its
/// health (found by a hostile review). Counted, not timed, as above.
#[tokio::test(start_paused = true)]
async fn readyz_does_not_build_the_monitors_status() {
    use crate::monitor::{
        AlertThresholds, CheckError, CheckSpec, FnCheck, HealthMonitor, STATUSES_BUILT,
    };
    let built = || STATUSES_BUILT.with(std::cell::Cell::get);
    let registry = Arc::new(Registry::new());
    let mut monitor = HealthMonitor::new();
    for i in 0..4 {
        monitor = monitor.check(
            CheckSpec::new(
                format!("db{i}"),
                FnCheck::new(|| async { Err::<Option<String>, _>(CheckError::other("refused")) }),
            )
            .interval(std::time::Duration::from_secs(1))
            .alerts(AlertThresholds::new().window(AlertThresholds::MAX_WINDOW)),
        );
    }
    let monitor = monitor.spawn();
    registry.attach_monitor(monitor.reader());
    let app = router(Arc::clone(&registry), HttpOptions::default());
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;

    let before = built();
    let (code, body) = send(app.clone(), Method::GET, "/readyz").await;
    assert_eq!((code, body.as_str()), (503, r#"{"status":"not_ready"}"#));
    assert_eq!(monitor.health(), crate::monitor::Health::Unhealthy);
    assert_eq!(monitor.reader().health(), crate::monitor::Health::Unhealthy);
    assert_eq!(
        built(),
        before,
        "the probe or health() built a whole status"
    );
    assert!(!registry.health().ready);
    assert_eq!(
        built(),
        before + 1,
        "the count counts: the report builds one"
    );
}

/// A refused request is counted by reason in `/metrics`, not only logged:
/// a client guessing tokens or probing breaker names shows up there.
#[tokio::test(flavor = "current_thread")]
async fn refusals_are_counted_in_the_metrics() {
    const TOKEN: &str = "a-token-of-twenty-chars";
    let registry = Arc::new(Registry::new());
    let options = HttpOptions::builder()
        .bearer_token(TOKEN)
        .admin(true)
        .build()
        .unwrap();
    let app = router(Arc::clone(&registry), options);
    let call = |method: Method, uri: &str, token: Option<&str>| {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        app.clone().oneshot(request.body(Body::empty()).unwrap())
    };
    let metrics = || async {
        let response = call(Method::GET, "/metrics", Some(TOKEN)).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(body.to_vec()).unwrap()
    };
    let count = |text: &str, reason: &str| -> u64 {
        let prefix = format!("fusebox_http_refused_total{{reason=\"{reason}\"}} ");
        let line = text.lines().find(|l| l.starts_with(&prefix)).unwrap();
        line[prefix.len()..].parse().unwrap()
    };
    let before = metrics().await;
    for reason in [
        "unauthorized",
        "unknown_breaker",
        "unknown_action",
        "bad_path",
    ] {
        assert_eq!(count(&before, reason), 0, "{reason}");
    }
    for token in [None, Some("wrong"), Some("a-token-of-twenty-char")] {
        let status = call(Method::GET, "/health", token).await.unwrap().status();
        assert_eq!(status, 401);
    }
    let status = call(Method::POST, "/admin/breakers/nope/reset", Some(TOKEN))
        .await
        .unwrap()
        .status();
    assert_eq!(status, 404);
    let status = call(Method::POST, "/admin/breakers/%ff/reset", Some(TOKEN))
        .await
        .unwrap()
        .status();
    assert_eq!(status, 400);
    let after = metrics().await;
    assert_eq!(count(&after, "unauthorized"), 3);
    assert_eq!(count(&after, "unknown_breaker"), 1);
    assert_eq!(count(&after, "bad_path"), 1);
    assert!(!after.contains(TOKEN) && !after.contains("nope"));
}

/// A name the admin route does not know is shown redacted; `redact` read
/// the rest of the text again for every `name=` it found, so a name of
/// `token=token=…` (60 KB fit in a request line) cost a read of 60 KB
/// per `=`: ~10 000 × 30 KB on average, seconds of CPU on the runtime's
/// thread per request (6.6 s in a debug build). The bearer check's debug
/// log redacts the path the same way before any token is checked. Each
/// value is now read once: counted, not timed.
#[tokio::test(flavor = "current_thread")]
async fn a_name_of_many_secrets_is_redacted_in_one_read() {
    use crate::redact::VALUE_BYTES_READ;
    const TOKEN: &str = "a-token-of-twenty-chars";
    let read = || VALUE_BYTES_READ.with(std::cell::Cell::get);
    let options = HttpOptions::builder()
        .bearer_token(TOKEN)
        .admin(true)
        .build()
        .unwrap();
    let app = router(Arc::new(Registry::new()), options);
    let name = "token=".repeat(10_000);
    let request = Request::post(format!("/admin/breakers/{name}/reset"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .unwrap();
    let before = read();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 404);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["message"], "no breaker named \"token=***\"");
    let read = read() - before;
    assert!(
        read <= 2 * name.len(),
        "{read} bytes read for {}",
        name.len()
    );
}

/// `/health`, `/metrics` and the dashboard's data build their report in
/// the handler: the percentiles of every tracked series, or the whole
/// registry's text, which grows with what the registry tracks (about
/// 200 ms in a release build for four trackers of 4 096 series, the
/// documented maximum being 1 024 trackers). Built on the async worker,
/// that work held it: on a current-thread runtime nothing else ran, not
/// the application's requests nor `/livez` and `/readyz`, which an
/// orchestrator then finds unanswered. The reports are built on the
/// blocking pool: a probe sent after a report was asked for is answered
/// first.
#[tokio::test(flavor = "current_thread")]
async fn a_probe_is_answered_while_a_report_is_built() {
    use std::sync::Mutex;
    let registry = Arc::new(Registry::new());
    let tracker = registry
        .tracker(
            "http",
            TrackerConfig {
                sample_rate: 1.0,
                max_series: 1024,
                ..TrackerConfig::default()
            },
        )
        .unwrap();
    for i in 0..1024 {
        drop(tracker.track_operation(&format!("op{i}")));
    }
    let app = router(Arc::clone(&registry), HttpOptions::default());
    for report in ["/health", "/metrics", "/dashboard/data"] {
        let done = Arc::new(Mutex::new(Vec::new()));
        let tasks: Vec<_> = [report, "/livez"]
            .into_iter()
            .map(|path| {
                let (app, done) = (app.clone(), Arc::clone(&done));
                tokio::spawn(async move {
                    let (code, _) = send(app, Method::GET, path).await;
                    assert_eq!(code, 200, "{path}");
                    done.lock().unwrap().push(path);
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(*done.lock().unwrap(), ["/livez", report]);
    }
}

/// The router mounts under any prefix, one with a path parameter of its
/// own included (`/tenants/{tenant}`, one router per tenant's registry).
/// The admin route read its path as exactly two parameters, so under
/// such a prefix, which adds the prefix's to them, every admin action
/// answered 400 `bad_path` and nothing was done; under `/{name}` the
/// prefix's parameter shares a name with the route's. The route's own
/// two are read by name, the last of each.
#[tokio::test(flavor = "current_thread")]
async fn admin_actions_work_under_a_prefix_with_a_path_parameter() {
    const TOKEN: &str = "a-token-of-twenty-chars";
    let registry = Arc::new(Registry::new());
    registry
        .breaker(
            "db",
            Config::builder().consecutive_failures(1).build().unwrap(),
        )
        .unwrap();
    let options = HttpOptions::builder()
        .bearer_token(TOKEN)
        .admin(true)
        .build()
        .unwrap();
    for (prefix, uri, state) in [
        (
            "/tenants/{tenant}",
            "/tenants/acme/admin/breakers/db/force-open",
            "forced_open",
        ),
        ("/{name}", "/x/admin/breakers/db/reset", "closed"),
        (
            "/{action}",
            "/x/admin/breakers/db/force-open",
            "forced_open",
        ),
    ] {
        let app = axum::Router::new().nest(prefix, router(Arc::clone(&registry), options.clone()));
        let request = Request::post(uri)
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(Body::empty())
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(status, 200, "{prefix}: {body}");
        assert_eq!(
            (body["name"].as_str(), body["state"].as_str()),
            (Some("db"), Some(state)),
            "{prefix}"
        );
    }
}

/// Mounted at the root (merged: axum's `nest` panics on `"/"`, as the
/// module docs say), every route answers at its bare path, the protected
/// ones behind the token, and the page's relative data URL
/// (`dashboard/data`, from `/dashboard`) is served. Sound-but-checked:
/// the docs had said "any prefix", which a stranger tried with `"/"`.
#[tokio::test(flavor = "current_thread")]
async fn the_router_merged_at_the_root_serves_every_route() {
    const TOKEN: &str = "a-token-of-twenty-chars";
    let registry = Arc::new(Registry::new());
    let options = HttpOptions::builder().bearer_token(TOKEN).build().unwrap();
    let app = axum::Router::new().merge(router(registry, options));
    let mut statuses = Vec::new();
    for uri in [
        "/livez",
        "/readyz",
        "/dashboard",
        "/health",
        "/metrics",
        "/dashboard/data",
    ] {
        statuses.push(send(app.clone(), Method::GET, uri).await.0);
    }
    assert_eq!(statuses, [200, 200, 200, 401, 401, 401]);
    let request = Request::get("/dashboard/data")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.oneshot(request).await.unwrap().status().as_u16(), 200);
    let nested = std::panic::catch_unwind(|| {
        let registry = Arc::new(Registry::new());
        axum::Router::<()>::new().nest("/", router(registry, HttpOptions::default()))
    });
    assert!(
        nested.is_err(),
        "axum nests at the root after all: update the docs"
    );
}
