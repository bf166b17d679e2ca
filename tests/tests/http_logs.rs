//! What the HTTP endpoints (`fusebox_std::http`) log about the requests
//! they refuse, as a user's `tracing-subscriber` writes it: enough to see
//! a refusal, never a secret a client put in its request.

use crate::common;

use std::sync::Arc;

use axum::body::Body;
use fusebox::breaker::Config;
use fusebox_std::http::{router, HttpOptions};
use fusebox_std::Registry;
use http::{Method, Request, StatusCode};
use tower::ServiceExt;

const TOKEN: &str = "integration-token-7f3a9c2e";

/// Sends each of `requests` (method, URI, `Authorization` value) to
/// `app` on a current-thread runtime, and returns their statuses and
/// what was logged meanwhile at debug level and above.
fn logged(
    app: &axum::Router,
    requests: &[(Method, &str, Option<&str>)],
) -> (Vec<StatusCode>, String) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    common::logs::logged(|| {
        runtime.block_on(async {
            let mut statuses = Vec::new();
            for (method, uri, auth) in requests {
                let mut request = Request::builder().method(method.clone()).uri(*uri);
                if let Some(auth) = auth {
                    request = request.header("authorization", *auth);
                }
                let request = request.body(Body::empty()).unwrap();
                statuses.push(app.clone().oneshot(request).await.unwrap().status());
            }
            statuses
        })
    })
}

/// A refused request was logged with its path redacted as it arrived,
/// percent-encoded: a name holding a URL or a `token=` can only arrive
/// so (`?` would start the query, `/` another segment), and
/// `redis:%2F%2Fu:pw@h` or `db%3Ftoken%3Dhunter2` was logged whole, the
/// secret with it, though the admin route's own answer to the same name
/// (decoded, then redacted) masks it. The path is decoded before it is
/// redacted, as the admin route decodes the name.
#[test]
fn a_refused_request_logs_no_secret_from_its_path() {
    let registry = Arc::new(Registry::new());
    registry
        .breaker(
            "payments",
            Config::builder().consecutive_failures(2).build().unwrap(),
        )
        .unwrap();
    let options = HttpOptions::builder()
        .bearer_token(TOKEN)
        .admin(true)
        .build()
        .unwrap();
    let app = axum::Router::new().nest("/ops", router(registry, options));
    let paths = [
        "/ops/admin/breakers/redis:%2F%2Fops:pw-secret@cache%2F0/reset",
        "/ops/admin/breakers/db%3Ftoken%3Dhunter2/force-open",
        "/ops/admin/breakers/api_key%3Dk3y-secret/reset",
        // Decoded, a newline: escaped, never a forged line.
        "/ops/admin/breakers/db%0AWARN%20forged/reset",
    ];
    let mut requests = Vec::new();
    for path in paths {
        requests.push((Method::POST, path, None));
        requests.push((Method::POST, path, Some("Bearer a-wrong-token-0123456789")));
    }
    let (statuses, log) = logged(&app, &requests);
    assert!(
        statuses.iter().all(|s| *s == StatusCode::UNAUTHORIZED),
        "{statuses:?}"
    );
    // Each refusal is logged, with its path (relative to the router).
    assert_eq!(
        log.matches("bearer token missing or wrong").count(),
        requests.len(),
        "{log}"
    );
    assert!(log.contains("/admin/breakers/db?token=***"), "{log}");
    assert_eq!(log.lines().count(), requests.len(), "{log}");
    for secret in ["pw-secret", "hunter2", "k3y-secret", "a-wrong-token", TOKEN] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
}
