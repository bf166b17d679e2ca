//! The README's axum example ("One layer in an axum router, the endpoints
//! mounted") as the README describes its answers: its doctest only
//! compiles it (it would listen on port 8080), so the router is built the
//! same way here and called in process. The one difference: open
//! `HttpOptions::default()` instead of `HttpOptions::from_env()`, which is
//! the same with `FUSEBOX_HTTP_TOKEN` unset, without reading the process's
//! environment.

use std::sync::Arc;

use axum::body::Body;
use axum::{routing::get, Router};
use fusebox::breaker::Config;
use fusebox::bucket::{FullPolicy, Quota};
use fusebox_std::http::{router, HttpOptions};
use fusebox_std::tower::breaker::CircuitBreakerLayer;
use fusebox_std::tower::rate_limit::{key, RateLimitLayer};
use fusebox_std::Registry;
use http_body_util::BodyExt;
use tower::ServiceExt;

/// The README's router.
fn app(registry: &Arc<Registry>) -> Router {
    Router::new()
        .route("/quotes", get(|| async { "42" }))
        .layer((
            RateLimitLayer::keyed_from_registry::<String, 4096, _>(
                registry,
                "per_key",
                Quota::per_second(100).unwrap(),
                FullPolicy::Reject,
                key::header("x-api-key", 64),
            )
            .unwrap(),
            CircuitBreakerLayer::from_registry(
                registry,
                "quotes",
                Config::builder()
                    .failure_rate(50)
                    .window(20)
                    .minimum_calls(10)
                    .max_half_open(fusebox::Duration::from_secs(30))
                    .build()
                    .unwrap(),
            )
            .unwrap(),
        ))
        .nest("/ops", router(Arc::clone(registry), HttpOptions::default()))
}

/// `GET path`, with `x-api-key: k1` if `keyed`: status, headers, body.
async fn get_path(app: &Router, path: &str, keyed: bool) -> (u16, http::HeaderMap, String) {
    let mut request = http::Request::get(path);
    if keyed {
        request = request.header("x-api-key", "k1");
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let (head, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        head.status.as_u16(),
        head.headers,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

#[tokio::test]
async fn the_readme_axum_router_answers_as_the_readme_says() {
    let registry = Arc::new(Registry::new());
    let app = app(&registry);

    // `curl -H 'x-api-key: k1' localhost:8080/quotes` answers `42` with
    // the `RateLimit-Policy` and `RateLimit` fields.
    let (status, headers, body) = get_path(&app, "/quotes", true).await;
    assert_eq!((status, body.as_str()), (200, "42"));
    assert!(headers.contains_key("ratelimit-policy"), "{headers:?}");
    assert!(headers.contains_key("ratelimit"), "{headers:?}");

    // Without the header, a `400` whose body names the policy and reason.
    let (status, _, body) = get_path(&app, "/quotes", false).await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        r#"{"error":"bad_key","policy":"per_key","reason":"missing"}"#
    );

    // The layers cover axum's fallback: `/nope` and `/ops/dashboard/`
    // (trailing slash) answer the `400` without a key, a `404` with one.
    for path in ["/nope", "/ops/dashboard/"] {
        assert_eq!(get_path(&app, path, false).await.0, 400, "{path}");
        assert_eq!(get_path(&app, path, true).await.0, 404, "{path}");
    }

    // Not the `/ops` routes: open, and no key needed.
    for path in [
        "/ops/health",
        "/ops/readyz",
        "/ops/livez",
        "/ops/metrics",
        "/ops/dashboard",
        "/ops/dashboard/data",
    ] {
        let (status, headers, _) = get_path(&app, path, false).await;
        assert_eq!(status, 200, "{path}");
        assert!(!headers.contains_key("ratelimit"), "{path}: {headers:?}");
    }

    // The breaker counted the keyed `/quotes` and the keyed 404s (4xx
    // are ignored), nothing else.
    let quotes = registry.get_breaker("quotes").unwrap().metrics();
    assert_eq!(
        (quotes.successes, quotes.failures, quotes.ignored),
        (1, 0, 2)
    );
}
