//! `/dashboard`: one self-contained HTML page (`dashboard.html`, embedded
//! with `include_str!`: no build step, no CDN, no external font), and
//! `/dashboard/data`, the JSON it polls every second.
//!
//! The page holds no data and no secret, so it is served without the
//! token; its data is protected like `/health`. When the data answers 401
//! the page stops polling and asks for the token (kept in the tab's
//! `sessionStorage`; a locked tab left open is no stream of refusals), or
//! takes it from the URL fragment (`…/dashboard#token=…`: a fragment never
//! reaches the server or its logs). It builds every element with
//! `textContent`, never `innerHTML`, and fetches `dashboard/data` by a
//! relative URL, so it works under any prefix.
//!
//! A breaker's row is keyed by kind and name (`data-kind`, `breaker` or
//! `fleet_breaker`, and `data-breaker`), its timeline by the data's
//! `timelines` or `fleet_timelines`: a fleet breaker may have a registry
//! breaker's name, and neither's events show on the other's row.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::activity::ActivityView;
use super::probes::{no_store, off_the_workers};
use super::AppState;
use crate::health::HealthReport;

/// The page, as served.
pub(super) const PAGE: &str = include_str!("dashboard.html");

/// Everything the page may load: its one inline script and its one
/// inline style, each by its SHA-256 (no `'unsafe-inline'`: a script or
/// style injected into the page would not run), and its data from the
/// same origin. A test recomputes both hashes from [`PAGE`]: editing the
/// page means updating them (the test prints the new values).
const CSP: &str = "default-src 'none'; \
script-src 'sha256-mVoUXTmF7UVdjnOCAYvWHOqyccW23y03qQZTOg2m+WE='; \
style-src 'sha256-Nju9eLvEsPCHKgi0ZscEP79PFYXrOuGBJaV5w0GfyZY='; \
connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `/dashboard/data`: `{"now_us", "health", "timelines",
/// "fleet_timelines", "rejections", "missed_events"}` (`fleet_timelines`
/// with feature `redis`, when a fleet breaker is registered).
#[derive(serde::Serialize)]
struct Data {
    /// The registry's clock now (µs), the time scale of the timelines.
    now_us: u64,
    health: HealthReport,
    #[serde(flatten)]
    activity: ActivityView,
}

/// The page with headers that keep it to itself.
pub(super) async fn page() -> Response {
    let headers = [
        (CONTENT_TYPE, "text/html; charset=utf-8"),
        (CACHE_CONTROL, "no-store"),
        (CONTENT_SECURITY_POLICY, CSP),
        (X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (X_FRAME_OPTIONS, "DENY"),
        (REFERRER_POLICY, "no-referrer"),
    ];
    (headers, PAGE).into_response()
}

/// The page's data: the health report and the activity, read together
/// (off the async workers, as `/health`).
pub(super) async fn data(State(state): State<AppState>) -> Response {
    let builds = Arc::clone(&state.builds);
    off_the_workers(&builds, move || {
        // Read before the report: what the report shows is then never
        // earlier than this, so one older than a change already recorded
        // is known stale (`Activity::update`).
        let observed_at = state.registry.now();
        let health = state.registry.health();
        let activity = state.activity.update(&health, observed_at);
        // The time scale the timelines end at: read after the update.
        let now = state.registry.now();
        let data = Data {
            now_us: now.as_micros(),
            health,
            activity,
        };
        no_store(Json(data).into_response())
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::Request;
    use fusebox::breaker::Config;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::{CSP, PAGE};
    use crate::http::{router, HttpOptions};
    use crate::Registry;

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        for outside in ["http://", "https://", "//", "@import", "url("] {
            // `//` starts comments in the script: only look at attributes.
            let needle = format!("=\"{outside}");
            assert!(!PAGE.contains(&needle), "{needle}");
        }
        assert!(!PAGE.contains("<link"));
        assert!(!PAGE.contains("src="));
        assert!(!PAGE.contains("innerHTML"));
        assert!(PAGE.contains("'dashboard/data'"), "relative data URL");
    }

    /// The text between the page's one `open` tag and the next `close`.
    fn only_element<'a>(open: &str, close: &str) -> &'a str {
        assert_eq!(PAGE.matches(open).count(), 1, "one {open} element");
        let start = PAGE.find(open).unwrap() + open.len();
        let end = start + PAGE[start..].find(close).unwrap();
        &PAGE[start..end]
    }

    #[test]
    fn the_policy_allows_exactly_the_pages_script_and_style() {
        use base64::Engine as _;
        use sha2::Digest as _;
        let source = |text: &str| {
            let digest = sha2::Sha256::digest(text.as_bytes());
            format!(
                "'sha256-{}'",
                base64::engine::general_purpose::STANDARD.encode(digest)
            )
        };
        let script = source(only_element("<script>", "</script>"));
        let style = source(only_element("<style>", "</style>"));
        assert!(
            CSP.contains(&format!("script-src {script};")),
            "the page's script changed: its source is {script}"
        );
        assert!(
            CSP.contains(&format!("style-src {style};")),
            "the page's style changed: its source is {style}"
        );
        assert!(!CSP.contains("unsafe"), "{CSP}");
        // Inline attributes would need 'unsafe-hashes': the page has none.
        assert!(!PAGE.contains(" style="), "a style attribute");
        for handler in [
            " onclick=",
            " onload=",
            " onsubmit=",
            " onerror=",
            "javascript:",
        ] {
            assert!(!PAGE.contains(handler), "{handler}");
        }
    }

    #[tokio::test]
    async fn data_carries_health_and_timelines() {
        let registry = Arc::new(Registry::new());
        let db = registry
            .breaker(
                "db",
                Config::builder().consecutive_failures(1).build().unwrap(),
            )
            .unwrap();
        let app = router(Arc::clone(&registry), HttpOptions::default());
        db.force_open(registry.now());
        let response = app
            .oneshot(Request::get("/dashboard/data").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["health"]["breakers"]["db"]["state"], "forced_open");
        assert_eq!(json["timelines"]["db"][0]["state"], "forced_open");
        assert_eq!(json["missed_events"], 0);
        assert!(json["now_us"].is_u64());
    }

    #[tokio::test]
    async fn the_page_is_html_with_a_strict_policy() {
        let response = router(Arc::new(Registry::new()), HttpOptions::default())
            .oneshot(Request::get("/dashboard").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let headers = response.headers();
        assert_eq!(headers["content-type"], "text/html; charset=utf-8");
        assert!(headers["content-security-policy"]
            .to_str()
            .unwrap()
            .starts_with("default-src 'none'"));
        assert_eq!(headers["content-security-policy"], CSP);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, PAGE.as_bytes());
    }
}
