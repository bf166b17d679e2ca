//! The HTTP endpoints (`fusebox_std::http`, feature `http`) on a real
//! server on loopback, called over real HTTP/1: status codes, content
//! types, JSON shapes, Prometheus text, prefix mounting, the bearer token
//! and the admin actions, on and off.

use std::io::BufRead;
use std::sync::Arc;

use crate::http_common::{call, get, get_with, serve, Server};
use fusebox::breaker::Config;
use fusebox::bucket::Quota;
use fusebox_std::http::{router, HttpConfigError, HttpOptions, METRICS_CONTENT_TYPE};
use fusebox_std::{Registry, TrackerConfig};
use hyper::{Method, StatusCode};

const TOKEN: &str = "integration-token-7f3a9c2e";

/// A registry with two breakers (`payments` required), a token bucket, a
/// cache and a tracked operation.
fn registry() -> Arc<Registry> {
    let registry = Arc::new(Registry::new());
    let config = Config::builder().consecutive_failures(2).build().unwrap();
    registry.breaker("payments", config).unwrap();
    registry.breaker("inventory", config).unwrap();
    registry.set_required("payments", true).unwrap();
    registry
        .limiter("api", Quota::per_second(50).unwrap())
        .unwrap();
    let cache = registry
        .concurrent_cache::<u32, u32, 16, 2>("sessions")
        .unwrap();
    cache.get(&1);
    let tracker = registry
        .tracker(
            "http",
            TrackerConfig {
                sample_rate: 1.0,
                ..TrackerConfig::default()
            },
        )
        .unwrap();
    drop(tracker.track_operation("checkout"));
    registry
}

async fn serve_under(prefix: &str, registry: &Arc<Registry>, options: HttpOptions) -> Server {
    let endpoints = router(Arc::clone(registry), options);
    if prefix == "/" {
        serve(endpoints).await
    } else {
        serve(axum::Router::new().nest(prefix, endpoints)).await
    }
}

fn protected() -> HttpOptions {
    HttpOptions::builder().bearer_token(TOKEN).build().unwrap()
}

fn with_admin() -> HttpOptions {
    HttpOptions::builder()
        .bearer_token(TOKEN)
        .admin(true)
        .build()
        .unwrap()
}

#[tokio::test]
async fn open_setup_serves_every_route_under_a_prefix() {
    let registry = registry();
    let server = serve_under("/ops", &registry, HttpOptions::default()).await;

    for (path, body) in [
        ("/ops/livez", r#"{"status":"alive"}"#),
        ("/ops/readyz", r#"{"status":"ready"}"#),
    ] {
        let r = get(&server.url(path)).await;
        assert_eq!(
            (r.status, r.content_type(), r.body.as_str()),
            (StatusCode::OK, "application/json", body)
        );
    }

    let health = get(&server.url("/ops/health")).await;
    assert_eq!(
        (health.status, health.content_type()),
        (StatusCode::OK, "application/json")
    );
    assert_eq!(health.headers["cache-control"], "no-store");
    let json = health.json();
    assert_eq!(json["ready"], true);
    assert_eq!(json["breakers"]["payments"]["state"], "closed");
    assert_eq!(json["breakers"]["payments"]["required"], true);
    assert_eq!(json["limiters"]["api"]["burst"], 50);
    assert_eq!(json["caches"]["sessions"]["misses"], 1);
    assert_eq!(json["trackers"]["http"]["checkout"]["calls"], 1);

    let metrics = get(&server.url("/ops/metrics")).await;
    assert_eq!(
        (metrics.status, metrics.content_type()),
        (StatusCode::OK, METRICS_CONTENT_TYPE)
    );
    assert_eq!(
        METRICS_CONTENT_TYPE,
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let scrape =
        prometheus_parse::Scrape::parse(std::io::BufReader::new(metrics.body.as_bytes()).lines())
            .unwrap();
    let open = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "fusebox_breaker_state"
                && s.labels.get("name") == Some("inventory")
                && s.labels.get("state") == Some("closed")
        })
        .expect("a state sample for inventory");
    assert_eq!(open.value, prometheus_parse::Value::Gauge(1.0));
    assert!(scrape
        .samples
        .iter()
        .any(|s| s.metric == "fusebox_operation_duration_seconds_count"));

    let page = get(&server.url("/ops/dashboard")).await;
    assert_eq!(
        (page.status, page.content_type()),
        (StatusCode::OK, "text/html; charset=utf-8")
    );
    assert!(page.body.contains("'dashboard/data'"));

    let data = get(&server.url("/ops/dashboard/data")).await;
    assert_eq!(data.status, StatusCode::OK);
    let data = data.json();
    assert_eq!(data["health"]["breakers"]["inventory"]["state"], "closed");
    assert_eq!(data["timelines"]["inventory"][0]["state"], "closed");
    assert!(data["now_us"].is_u64() && data["rejections"].is_object());

    // Only under the prefix.
    assert_eq!(
        get(&server.url("/health")).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn readiness_shows_status_only_and_follows_required_breakers() {
    let registry = registry();
    let server = serve_under("/", &registry, HttpOptions::default()).await;
    registry
        .get_breaker("inventory")
        .unwrap()
        .force_open(registry.now());
    // Not required: degraded, still ready.
    assert_eq!(get(&server.url("/readyz")).await.status, StatusCode::OK);

    registry
        .get_breaker("payments")
        .unwrap()
        .force_open(registry.now());
    let ready = get(&server.url("/readyz")).await;
    assert_eq!(
        (ready.status, ready.body.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, r#"{"status":"not_ready"}"#)
    );
    let health = get(&server.url("/health")).await;
    assert_eq!(health.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        health.json()["reasons"][0],
        "breaker inventory is forced_open"
    );
    assert_eq!(get(&server.url("/livez")).await.status, StatusCode::OK);
}

#[tokio::test]
async fn the_token_protects_details_but_not_probes_or_the_page() {
    let registry = registry();
    let server = serve_under("/internal", &registry, protected()).await;
    for path in [
        "/internal/health",
        "/internal/metrics",
        "/internal/dashboard/data",
    ] {
        let url = server.url(path);
        for auth in [
            None,
            Some("Bearer wrong-token-wrong-token"),
            Some("Basic aW50ZWdyYXRpb24="),
            Some(TOKEN),
        ] {
            let r = call(Method::GET, &url, auth).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path} with {auth:?}");
            assert_eq!(r.headers["www-authenticate"], "Bearer realm=\"fusebox\"");
            assert_eq!(r.headers["x-content-type-options"], "nosniff", "{path}");
            assert_eq!(r.json()["error"], "unauthorized");
            assert!(
                !r.body.contains("wrong-token") && !r.body.contains(TOKEN),
                "{}",
                r.body
            );
        }
        let ok = get_with(&url, TOKEN).await;
        assert_eq!(ok.status, StatusCode::OK, "{path}");
        // Taken for the type it says, never sniffed (a report carries
        // names a client may have chosen).
        assert_eq!(ok.headers["x-content-type-options"], "nosniff", "{path}");
    }
    let lowercase = call(
        Method::GET,
        &server.url("/internal/health"),
        Some(&format!("bearer {TOKEN}")),
    )
    .await;
    assert_eq!(lowercase.status, StatusCode::OK);
    for path in ["/internal/livez", "/internal/readyz", "/internal/dashboard"] {
        let r = get(&server.url(path)).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert_eq!(r.headers["x-content-type-options"], "nosniff", "{path}");
        assert!(
            !r.body.contains("payments"),
            "{path} reveals only status: {}",
            r.body
        );
    }
}

#[tokio::test]
async fn admin_routes_are_off_by_default() {
    let registry = registry();
    for options in [HttpOptions::default(), protected()] {
        let server = serve_under("/", &registry, options).await;
        let r = call(
            Method::POST,
            &server.url("/admin/breakers/payments/force-open"),
            Some(&format!("Bearer {TOKEN}")),
        )
        .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
    }
    assert_eq!(
        registry.health().breakers["payments"].state,
        fusebox::breaker::State::Closed
    );
}

#[test]
fn admin_without_a_token_is_refused_at_configuration() {
    assert_eq!(
        HttpOptions::builder().admin(true).build().unwrap_err(),
        HttpConfigError::AdminWithoutToken
    );
    let env = |name: &str| (name == fusebox_std::http::ADMIN_VAR).then(|| "true".to_owned());
    assert_eq!(
        HttpOptions::from_vars(env).unwrap_err(),
        HttpConfigError::AdminWithoutToken
    );
}

#[tokio::test]
async fn admin_actions_need_the_token_and_drive_the_breaker() {
    let registry = registry();
    let mut events = registry.events().subscribe();
    let server = serve_under("/ops", &registry, with_admin()).await;
    let url =
        |name: &str, action: &str| server.url(&format!("/ops/admin/breakers/{name}/{action}"));
    let bearer = format!("Bearer {TOKEN}");

    for auth in [None, Some("Bearer not-the-token-at-all")] {
        let r = call(Method::POST, &url("payments", "force-open"), auth).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        get_with(&server.url("/ops/readyz"), TOKEN).await.status,
        StatusCode::OK
    );

    let r = call(Method::POST, &url("payments", "force-open"), Some(&bearer)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json(),
        serde_json::json!({"name": "payments", "action": "force-open", "changed": true, "state": "forced_open"})
    );
    assert_eq!(
        get(&server.url("/ops/readyz")).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert!(matches!(
        events.try_recv(),
        Some(fusebox_std::events::Event::StateChange { .. })
    ));

    let r = call(Method::POST, &url("payments", "force-close"), Some(&bearer)).await;
    assert_eq!(
        (r.json()["changed"].clone(), r.json()["state"].clone()),
        (true.into(), "closed".into())
    );
    let r = call(Method::POST, &url("payments", "reset"), Some(&bearer)).await;
    assert_eq!(r.json()["state"], "closed");
    assert_eq!(get(&server.url("/ops/readyz")).await.status, StatusCode::OK);

    // The timeline saw it all.
    let data = get_with(&server.url("/ops/dashboard/data"), TOKEN)
        .await
        .json();
    let states: Vec<&str> = data["timelines"]["payments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["forced_open", "closed"]);

    let unknown = call(Method::POST, &url("nope", "reset"), Some(&bearer)).await;
    assert_eq!(
        (unknown.status, unknown.json()["error"].clone()),
        (StatusCode::NOT_FOUND, "unknown_breaker".into())
    );
    let action = call(Method::POST, &url("payments", "melt"), Some(&bearer)).await;
    assert_eq!(
        (action.status, action.json()["error"].clone()),
        (StatusCode::NOT_FOUND, "unknown_action".into())
    );
    let get_admin = call(Method::GET, &url("payments", "reset"), Some(&bearer)).await;
    assert_eq!(get_admin.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn error_bodies_never_carry_secrets() {
    let registry = registry();
    let server = serve_under("/", &registry, with_admin()).await;
    let bearer = format!("Bearer {TOKEN}");
    // A name that carries a credential: redacted before it is shown.
    let r = call(
        Method::POST,
        &server.url("/admin/breakers/db%3Ftoken%3Dhunter2/reset"),
        Some(&bearer),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json()["message"], "no breaker named \"db?token=***\"");
    let r = call(
        Method::POST,
        &server.url("/admin/breakers/redis:%2F%2Fu:pw-secret@h/reset"),
        Some(&bearer),
    )
    .await;
    assert!(!r.body.contains("pw-secret"), "{}", r.body);
    // A path that cannot be decoded is refused without echoing it.
    let r = call(
        Method::POST,
        &server.url("/admin/breakers/%FFsecret%FE/reset"),
        Some(&bearer),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(!r.body.contains("secret"), "{}", r.body);
    // A wrong token is never echoed, nor the right one.
    let r = call(
        Method::GET,
        &server.url("/health"),
        Some("Bearer guess-guess-guess-guess"),
    )
    .await;
    assert!(!r.body.contains("guess") && !r.body.contains(TOKEN));
}

/// Sends `request` as raw bytes on a new connection and returns the
/// status line and the rest of the answer (the connection is closed).
async fn raw(server: &Server, request: &[u8]) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (status, rest) = answer.split_once("\r\n").unwrap_or((&answer, ""));
    (status.to_owned(), rest.to_owned())
}

/// What a hostile client sends on the wire, under a prefix: no path,
/// method, header or request-target form reaches a protected route
/// without the token, and no answer echoes the token tried.
#[tokio::test]
async fn hostile_requests_on_the_wire_never_reach_the_details() {
    let registry = registry();
    let server = serve_under("/ops", &registry, with_admin()).await;
    let host = format!("Host: {}\r\nConnection: close\r\n", server.addr);
    let bearer = format!("Authorization: Bearer {TOKEN}\r\n");
    let cases: Vec<(String, &str)> = vec![
        // Path tricks: nothing is normalised, so nothing is reached.
        (format!("GET /ops/health HTTP/1.1\r\n{host}\r\n"), "401"),
        (format!("GET /ops/health/ HTTP/1.1\r\n{host}\r\n"), "404"),
        (format!("GET /ops//health HTTP/1.1\r\n{host}\r\n"), "404"),
        (format!("GET /ops/./health HTTP/1.1\r\n{host}\r\n"), "404"),
        (
            format!("GET /ops/x/../health HTTP/1.1\r\n{host}\r\n"),
            "404",
        ),
        (format!("GET /ops/%68ealth HTTP/1.1\r\n{host}\r\n"), "404"),
        (
            format!("GET /ops/dashboard%2Fdata HTTP/1.1\r\n{host}\r\n"),
            "404",
        ),
        (format!("GET /OPS/health HTTP/1.1\r\n{host}\r\n"), "404"),
        (
            format!("GET /ops/metrics?token={TOKEN} HTTP/1.1\r\n{host}\r\n"),
            "401",
        ),
        (
            format!(
                "GET http://{}/ops/metrics HTTP/1.1\r\n{host}\r\n",
                server.addr
            ),
            "401",
        ),
        // Methods.
        (format!("HEAD /ops/health HTTP/1.1\r\n{host}\r\n"), "401"),
        (
            format!("OPTIONS /ops/metrics HTTP/1.1\r\n{host}\r\n"),
            "401",
        ),
        (
            format!("POST /ops/dashboard/data HTTP/1.1\r\n{host}Content-Length: 0\r\n\r\n"),
            "401",
        ),
        (
            format!("GET /ops/admin/breakers/payments/force-open HTTP/1.1\r\n{host}{bearer}\r\n"),
            "405",
        ),
        // Authorization variants.
        (
            format!("GET /ops/health HTTP/1.1\r\n{host}{bearer}{bearer}\r\n"),
            "401",
        ),
        (
            format!(
                "GET /ops/health HTTP/1.1\r\n{host}Authorization: Bearer wrong\r\n{bearer}\r\n"
            ),
            "401",
        ),
        (
            format!(
                "GET /ops/health HTTP/1.1\r\n{host}Authorization: Bearer {TOKEN}, Bearer x\r\n\r\n"
            ),
            "401",
        ),
        (
            format!("GET /ops/health HTTP/1.1\r\n{host}Authorization: Token {TOKEN}\r\n\r\n"),
            "401",
        ),
        (
            format!(
                "GET /ops/health HTTP/1.1\r\n{host}Authorization: Bearer {}\r\n\r\n",
                "x".repeat(60_000)
            ),
            "401",
        ),
        (
            format!("GET /ops/health HTTP/1.1\r\n{host}authorization: bearer   {TOKEN}\r\n\r\n"),
            "200",
        ),
    ];
    for (request, expected) in &cases {
        let (status, rest) = raw(&server, request.as_bytes()).await;
        let line = request.lines().next().unwrap();
        assert!(status.contains(expected), "{line}: {status}");
        assert!(
            !rest.contains("wrong") || !status.contains("401"),
            "{line}: echoed"
        );
        if !status.contains("200") {
            assert!(!rest.contains("payments"), "{line}: {rest}");
        }
    }
    // Bytes that are not UTF-8 in the header.
    let mut request =
        format!("GET /ops/health HTTP/1.1\r\n{host}Authorization: Bearer ").into_bytes();
    request.extend_from_slice(b"\xff\xfe\x80\r\n\r\n");
    let (status, _) = raw(&server, &request).await;
    assert!(status.contains("401"), "{status}");
    assert_eq!(
        registry.health().breakers["payments"].state,
        fusebox::breaker::State::Closed
    );
}

/// `HttpOptions::from_env` read a variable that is set but not Unicode
/// as unset: a token variable holding one stray byte (a secret file in
/// Latin-1, a corrupted mount) left `/health`, `/metrics` and the
/// dashboard's data open to anyone, without an error. Such a token is
/// refused, as a token that is not visible ASCII is, and so is such an
/// admin switch. Checked in a child process of this test binary, started
/// with that environment.
#[cfg(unix)]
#[test]
fn a_variable_that_is_not_unicode_is_refused_not_read_as_unset() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    const CHILD: &str = "FUSEBOX_TEST_HTTP_NOT_UNICODE_CHILD";
    const NAME: &str = "a_variable_that_is_not_unicode_is_refused_not_read_as_unset";
    let bad = OsStr::from_bytes(b"integration-token-\xe9-7f3a9c2e");
    if let Some(var) = std::env::var_os(CHILD) {
        let result = HttpOptions::from_env();
        if var == fusebox_std::http::TOKEN_VAR {
            assert!(
                matches!(result, Err(HttpConfigError::InvalidToken { .. })),
                "{result:?}"
            );
        } else {
            assert_eq!(result.unwrap_err(), HttpConfigError::InvalidAdminFlag);
        }
        return;
    }
    for var in [fusebox_std::http::TOKEN_VAR, fusebox_std::http::ADMIN_VAR] {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap());
        child
            .args([
                "--exact",
                &crate::common::harness_name(module_path!(), NAME),
            ])
            .args(["--nocapture", "--test-threads=1"])
            .env_remove(fusebox_std::http::TOKEN_VAR)
            .env_remove(fusebox_std::http::ADMIN_VAR)
            .env(CHILD, var)
            .env(var, bad);
        let out = child.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{var}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("1 passed"), "{var}: the child ran: {text}");
    }
}

/// The dashboard's own event subscription drains only when its data is
/// read. It was one of the registry's subscribers, and what it skipped
/// while nobody looked was added to `fusebox_events_lagged_total` at the
/// next look: the count of events lost by slow subscribers measured how
/// long nobody had looked at the dashboard, and an alert on it fired at
/// the first look after a busy spell (noticed by a hostile review). Its
/// losses are the dashboard's `missed_events` only now.
#[tokio::test]
async fn the_dashboards_own_subscription_is_not_a_lagging_subscriber() {
    use fusebox::Instant;
    use fusebox_std::events::{Component, Event};

    let registry = Arc::new(Registry::builder().events_capacity(4).build());
    let server = serve_under("/", &registry, HttpOptions::default()).await;
    assert_eq!(registry.health().events.subscribers, 0);
    for at in 0..10 {
        registry.events().publish(Event::Recovered {
            name: "db".into(),
            component: Component::Breaker,
            at: Instant::from_micros(at),
        });
    }
    let data = get(&server.url("/dashboard/data")).await;
    assert_eq!(data.status, StatusCode::OK);
    let data: serde_json::Value = serde_json::from_str(&data.body).unwrap();
    assert_eq!(
        data["missed_events"], 6,
        "the dashboard kept the newest 4 of 10"
    );
    let events = registry.health().events;
    assert_eq!(
        (events.published, events.lagged, events.subscribers),
        (10, 0, 0)
    );
    let metrics = get(&server.url("/metrics")).await.body;
    assert!(
        metrics.contains("\nfusebox_events_lagged_total 0\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("\nfusebox_events_subscribers 0\n"),
        "{metrics}"
    );

    // A subscriber of the application's own still counts, and its lag too.
    let mut sub = registry.events().subscribe();
    for at in 0..6 {
        registry.events().publish(Event::Recovered {
            name: "db".into(),
            component: Component::Breaker,
            at: Instant::from_micros(at),
        });
    }
    assert!(sub.try_recv().is_some());
    let events = registry.health().events;
    assert_eq!((events.lagged, events.subscribers), (2, 1));
}

/// `Events::publish` returns how many subscribers an event reached, and
/// the dashboard's own subscription is none of them (bd0579c took it out
/// of `subscribers` but not out of what `publish` returns: with the
/// dashboard served and nobody subscribed, every event said it reached 1).
#[tokio::test]
async fn publish_counts_no_dashboard_among_the_subscribers_it_reached() {
    use fusebox::Instant;
    use fusebox_std::events::{Component, Event};

    let registry = Arc::new(Registry::builder().events_capacity(4).build());
    let _server = serve_under("/", &registry, HttpOptions::default()).await;
    let recovered = || Event::Recovered {
        name: "db".into(),
        component: Component::Breaker,
        at: Instant::ZERO,
    };
    assert_eq!(registry.events().subscribers(), 0);
    assert_eq!(registry.events().publish(recovered()), 0);
    let _sub = registry.events().subscribe();
    assert_eq!(registry.events().publish(recovered()), 1);
}
