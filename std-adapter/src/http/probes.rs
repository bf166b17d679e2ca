//! The probes and reports: `/livez` and `/readyz` (status only),
//! `/health` (the whole report) and `/metrics` (Prometheus text).

use std::num::NonZeroUsize;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use tokio::sync::Semaphore;

use super::AppState;

/// The `Content-Type` of `/metrics`: the Prometheus text format 0.0.4
/// in UTF-8, as Prometheus's own clients send it
/// ([`prometheus::CONTENT_TYPE`](crate::prometheus::CONTENT_TYPE)). The
/// charset is said because names and label values may be any Unicode: a
/// `text/plain` without one is read by a browser in whatever encoding it
/// guesses.
///
/// ```
/// assert_eq!(fusebox_std::http::METRICS_CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8");
/// ```
pub const METRICS_CONTENT_TYPE: &str = crate::prometheus::CONTENT_TYPE;

/// The answers are about now: no cache may keep them.
pub(super) fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `X-Content-Type-Options: nosniff` on every answer of the endpoints
/// (their JSON, their text, their refusals): a browser takes each for the
/// type it says, and never runs a report that holds names a client chose
/// as a script or a page.
pub(super) async fn nosniff(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// The permits of the reports built at once: one per core (they are
/// CPU-bound, and each may be large: the whole registry's text), so that a
/// crowd of clients does not start as many builds as the blocking pool has
/// threads.
pub(super) fn report_builds() -> Semaphore {
    Semaphore::new(std::thread::available_parallelism().map_or(1, NonZeroUsize::get))
}

/// `build`'s response, built on tokio's blocking pool once one of
/// `builds`' permits is free: the reports grow with what the registry
/// tracks (every series' percentiles, the whole registry's text), and
/// built on an async worker they would hold it, and every request it
/// serves (the probes among them), for as long. The permit is held until
/// the build ends, even when the request is dropped before. A panic in
/// `build` goes on unwinding here, as it would have in the handler.
pub(super) async fn off_the_workers(
    builds: &Arc<Semaphore>,
    build: impl FnOnce() -> Response + Send + 'static,
) -> Response {
    let Ok(permit) = Arc::clone(builds).acquire_owned().await else {
        // Closed: never, the router's state holds it open.
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let built = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        build()
    });
    match built.await {
        Ok(response) => response,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Cancelled: the runtime is shutting down.
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

/// `{"status": <yes or no>}` with 200 or 503.
fn status(ok: bool, yes: &'static str, no: &'static str) -> Response {
    let (code, text) = if ok {
        (StatusCode::OK, yes)
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, no)
    };
    no_store((code, Json(serde_json::json!({ "status": text }))).into_response())
}

/// `/livez`: 200 `{"status":"alive"}`, or 503 `{"status":"dead"}` while
/// the configured liveness check fails.
pub(super) async fn livez(State(state): State<AppState>) -> Response {
    status(state.options.alive(&state.registry), "alive", "dead")
}

/// `/readyz`: 200 `{"status":"ready"}`, or 503 `{"status":"not_ready"}`
/// while the report is not ready (a required breaker open, the monitor
/// unhealthy). Nothing else is revealed, and nothing else is computed:
/// open to anyone, it reads each breaker's state and the monitor's health,
/// never the trackers' series, the caches or a report.
pub(super) async fn readyz(State(state): State<AppState>) -> Response {
    status(state.registry.is_ready(), "ready", "not_ready")
}

/// `/health`: the [`HealthReport`](crate::health::HealthReport) as JSON,
/// with 200 when ready and 503 when not (built off the async workers).
pub(super) async fn health(State(state): State<AppState>) -> Response {
    let builds = Arc::clone(&state.builds);
    off_the_workers(&builds, move || {
        let report = state.registry.health();
        let code = if report.ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        no_store((code, Json(report)).into_response())
    })
    .await
}

/// `/metrics`: [`Registry::to_prometheus`](crate::Registry::to_prometheus).
pub(super) async fn metrics(State(state): State<AppState>) -> Response {
    let builds = Arc::clone(&state.builds);
    off_the_workers(&builds, move || {
        let mut text = state.registry.to_prometheus();
        state.refusals.write_prometheus(&mut text);
        no_store(([(CONTENT_TYPE, METRICS_CONTENT_TYPE)], text).into_response())
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::Request;
    use axum::response::IntoResponse;
    use fusebox::breaker::Config;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use crate::http::{router, HttpOptions};
    use crate::Registry;

    async fn get(
        registry: &Arc<Registry>,
        options: HttpOptions,
        path: &str,
    ) -> (u16, String, String) {
        let response = router(Arc::clone(registry), options)
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status().as_u16();
        let kind = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, kind, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn readiness_follows_required_breakers() {
        let registry = Arc::new(Registry::new());
        let db = registry
            .breaker(
                "db",
                Config::builder().consecutive_failures(1).build().unwrap(),
            )
            .unwrap();
        registry.set_required("db", true).unwrap();
        let ready = get(&registry, HttpOptions::default(), "/readyz").await;
        assert_eq!((ready.0, ready.2.as_str()), (200, r#"{"status":"ready"}"#));
        db.force_open(registry.now());
        let ready = get(&registry, HttpOptions::default(), "/readyz").await;
        assert_eq!(
            (ready.0, ready.2.as_str()),
            (503, r#"{"status":"not_ready"}"#)
        );
        let health = get(&registry, HttpOptions::default(), "/health").await;
        assert_eq!(health.0, 503);
        assert!(
            health.2.contains(r#""state":"forced_open""#),
            "{}",
            health.2
        );
    }

    /// Builds wait for a permit, and hold it until they end: never more
    /// at once than there are permits, whatever the crowd.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reports_are_built_at_most_as_many_at_once_as_permits() {
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        use tokio::sync::Semaphore;

        let builds = Arc::new(Semaphore::new(2));
        let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (builds, now, most) =
                    (Arc::clone(&builds), Arc::clone(&now), Arc::clone(&most));
                tokio::spawn(async move {
                    super::off_the_workers(&builds, move || {
                        most.fetch_max(now.fetch_add(1, SeqCst) + 1, SeqCst);
                        // Long enough for the others to be waiting.
                        std::thread::sleep(std::time::Duration::from_millis(20));
                        now.fetch_sub(1, SeqCst);
                        axum::http::StatusCode::OK.into_response()
                    })
                    .await
                })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap().status(), 200);
        }
        // At most the permits (8 when a build does not hold its permit);
        // not asserted to reach 2, which a loaded machine may not overlap.
        assert!((1..=2).contains(&most.load(SeqCst)), "{most:?} at once");
        assert_eq!(builds.available_permits(), 2);
    }

    #[tokio::test]
    async fn liveness_follows_the_configured_check() {
        let registry = Arc::new(Registry::new());
        assert_eq!(
            get(&registry, HttpOptions::default(), "/livez").await.0,
            200
        );
        let dead = HttpOptions::builder().liveness(|_| false).build().unwrap();
        let (code, _, body) = get(&registry, dead, "/livez").await;
        assert_eq!((code, body.as_str()), (503, r#"{"status":"dead"}"#));
    }

    #[tokio::test]
    async fn metrics_are_prometheus_text() {
        let registry = Arc::new(Registry::new());
        registry
            .breaker(
                "db",
                Config::builder().consecutive_failures(1).build().unwrap(),
            )
            .unwrap();
        let (code, kind, body) = get(&registry, HttpOptions::default(), "/metrics").await;
        assert_eq!((code, kind.as_str()), (200, super::METRICS_CONTENT_TYPE));
        assert!(body.starts_with("# HELP fusebox_ready "), "{body}");
        assert!(body.contains("fusebox_breaker_state{name=\"db\",state=\"closed\"} 1\n"));
    }
}
