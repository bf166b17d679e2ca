//! The dashboard in a real headless browser: Debian's `chromium` loads
//! `/ops/dashboard` from a real server (nested under a prefix, so the
//! page's relative data URL is exercised), runs its script, and the
//! rendered DOM must show every breaker's name and state; after a breaker
//! trips, a second load must show it Open, and a page left open must show
//! a trip by its own polling. A protected page asks for the token and
//! takes it from the URL fragment. A fleet breaker (on a real
//! redis-server) shows its local state next to the fleet's. A screenshot is written to
//! `target/dashboard.png` (or `$FUSEBOX_DASHBOARD_PNG`), and copied to
//! `docs/dashboard.png` when `FUSEBOX_UPDATE_SCREENSHOT=1`.
//!
//! Chromium is required, not optional: without it this test fails and
//! says how to install it (`apt-get install -y chromium`, or set
//! `FUSEBOX_CHROMIUM` to a Chromium or Chrome binary).

use crate::http_common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use crate::common::core_breaker;
use crate::common::redis_server::RedisServer;
use crate::http_common::browser::{browse, dom, row};
use crate::http_common::{serve, Server};
use fusebox::breaker::{Config, Outcome, State};
use fusebox::bucket::{FullPolicy, Quota};
use fusebox_std::backend::{FleetBreaker, RedisBackend, RedisConfig};
use fusebox_std::events::{Component, Event};
use fusebox_std::http::{router, HttpOptions};
use fusebox_std::{Registry, TrackerConfig};

/// Asserts the page shows breaker `name` in `state`, labelled `label`.
fn shows_breaker(dom: &str, name: &str, state: &str, label: &str) {
    let row = row(dom, "data-breaker", name);
    assert!(
        row.contains(&format!("data-state=\"{state}\"")),
        "{name} is not {state}: {row}"
    );
    assert!(
        row.contains(&format!(">{label}<")),
        "{name} does not read {label}: {row}"
    );
    assert!(row.contains("<svg"), "{name} has no timeline: {row}");
}

/// Breakers `payments` (required), `inventory`, `search`; a token bucket,
/// a keyed limiter, a cache at 50 % hits, and a tracker.
fn registry() -> Arc<Registry> {
    let registry = Arc::new(Registry::new());
    let config = Config::builder()
        .consecutive_failures(2)
        .open_for(fusebox::Duration::from_secs(600))
        .build()
        .unwrap();
    for name in ["payments", "inventory", "search"] {
        registry.breaker(name, config).unwrap();
    }
    registry.set_required("payments", true).unwrap();
    registry
        .limiter("api", Quota::per_second(5).unwrap())
        .unwrap();
    let per_user = registry
        .keyed_limiter::<u64, 64>(
            "per_user",
            Quota::per_second(1).unwrap(),
            FullPolicy::Reject,
        )
        .unwrap();
    for _ in 0..3 {
        let _ = per_user.try_acquire(&7, registry.now());
    }
    let cache = registry
        .concurrent_cache::<u32, u32, 16, 2>("sessions")
        .unwrap();
    cache.insert(1, 10).expect("room in an empty cache");
    cache.get(&1);
    cache.get(&2);
    let tracker = registry
        .tracker(
            "http",
            TrackerConfig {
                sample_rate: 1.0,
                ..TrackerConfig::default()
            },
        )
        .unwrap();
    drop(tracker);
    registry
}

/// Twenty `checkout` runs of 1 to 5 ms.
async fn checkouts(registry: &Registry) {
    let tracker = registry.get_tracker("http").unwrap();
    for i in 0..20 {
        let run = tracker.track_operation("checkout");
        tokio::time::sleep(Duration::from_millis(1 + i % 5)).await;
        drop(run);
    }
}

/// Eight calls to the token bucket `api` of 5: three refused, each
/// published as an event (as a policy or middleware would).
fn use_api(registry: &Registry) {
    let api = registry.get_limiter("api").unwrap();
    for _ in 0..8 {
        if api.try_acquire(registry.now()).is_err() {
            registry.events().publish(Event::Rejected {
                name: "api".into(),
                component: Component::Limiter,
                at: registry.now(),
            });
        }
    }
}

/// Two requests without an API key through a keyed layer the registry
/// built (`per_key`): refused, and counted.
async fn keyless(registry: &Registry) {
    use tower::ServiceExt;
    let app = axum::Router::new()
        .route("/", axum::routing::get(|| async { "ok" }))
        .layer(
            fusebox_std::tower::RateLimitLayer::keyed_from_registry::<String, 64, _>(
                registry,
                "per_key",
                Quota::per_second(10).unwrap(),
                FullPolicy::Reject,
                fusebox_std::tower::rate_limit::key::header("x-api-key", 64),
            )
            .unwrap(),
        );
    for _ in 0..2 {
        let request = http::Request::new(axum::body::Body::empty());
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), 400);
    }
}

/// Two failures through the core, reported to the registry: `name` opens.
fn trip(registry: &Registry, name: &str) {
    let breaker = registry.get_breaker(name).unwrap();
    for _ in 0..2 {
        let now = registry.now();
        let permit = breaker.try_acquire(now).unwrap();
        if let Some(t) = permit.record(Outcome::Failure, now, fusebox::Duration::from_millis(3)) {
            registry.transition(name, t);
        }
    }
}

/// Where the screenshot goes: `$FUSEBOX_DASHBOARD_PNG`, else the target
/// directory's `dashboard.png`.
fn screenshot_path() -> PathBuf {
    if let Some(path) = std::env::var_os("FUSEBOX_DASHBOARD_PNG") {
        return PathBuf::from(path);
    }
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).join("dashboard.png")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_renders_breakers_and_shows_a_trip() {
    let registry = registry();
    let server: Server = serve(axum::Router::new().nest(
        "/ops",
        router(Arc::clone(&registry), HttpOptions::default()),
    ))
    .await;
    let url = server.url("/ops/dashboard");
    // After the router is built: it counts the events it sees.
    use_api(&registry);
    checkouts(&registry).await;
    keyless(&registry).await;

    let before = dom(&url).await;
    for name in ["payments", "inventory", "search"] {
        shows_breaker(&before, name, "closed", "Closed");
    }
    assert!(before.contains("payments (required)"));
    assert!(
        row(&before, "data-limiter", "api").contains(">3<"),
        "api: 3 rejections"
    );
    assert!(
        row(&before, "data-limiter", "per_user").contains(">2<"),
        "per_user: 2 limited"
    );
    assert!(
        row(&before, "data-limiter", "per_key").contains("2 without a usable key"),
        "per_key: 2 requests without a key"
    );
    assert!(row(&before, "data-cache", "sessions").contains("50.0 %"));
    let op = row(&before, "data-operation", "http/checkout");
    assert!(
        op.contains(">20<") && op.contains(" ms<") && !op.contains(">0 µs<"),
        "checkout: 20 calls with percentiles: {op}"
    );
    assert!(before.contains(">ready<"), "status pill");

    trip(&registry, "inventory");
    let after = dom(&url).await;
    shows_breaker(&after, "inventory", "open", "Open");
    shows_breaker(&after, "payments", "closed", "Closed");
    assert!(after.contains(">degraded<"), "a breaker open: degraded");
    // Its timeline has two segments now: closed, then open.
    let inventory = row(&after, "data-breaker", "inventory");
    assert!(
        inventory.contains("fill=\"#2e9d5b\"") && inventory.contains("fill=\"#d64545\""),
        "{inventory}"
    );

    let png = screenshot_path();
    if let Some(dir) = png.parent() {
        std::fs::create_dir_all(dir).expect("screenshot directory");
    }
    browse(&url, &[format!("--screenshot={}", png.display())], 2500).await;
    let bytes =
        std::fs::read(&png).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", png.display()));
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 10_000,
        "{} is not a real PNG",
        png.display()
    );
    if std::env::var("FUSEBOX_UPDATE_SCREENSHOT").is_ok_and(|v| v == "1") {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/dashboard.png");
        std::fs::create_dir_all(docs.parent().unwrap()).expect("docs directory");
        std::fs::copy(&png, &docs).expect("copy the screenshot to docs/");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protected_dashboard_asks_for_the_token_and_uses_the_fragment() {
    const TOKEN: &str = "dashboard-token-5d1e8b7a";
    let registry = registry();
    let options = HttpOptions::builder().bearer_token(TOKEN).build().unwrap();
    let server = serve(router(Arc::clone(&registry), options)).await;
    let url = server.url("/dashboard");

    let locked = dom(&url).await;
    assert!(
        locked.contains(">token required<"),
        "status pill asks for the token"
    );
    assert!(
        !locked.contains("data-breaker="),
        "no data without the token"
    );
    let auth = &locked[locked.find("id=\"auth\"").expect("the token form")..];
    assert!(
        !auth[..auth.find('>').unwrap()].contains("hidden"),
        "the token form is shown"
    );

    // The fragment never reaches the server; the page sends it as a bearer token.
    let unlocked = dom(&format!("{url}#token={TOKEN}")).await;
    shows_breaker(&unlocked, "payments", "closed", "Closed");
    assert!(
        !unlocked.contains(TOKEN),
        "the token is not left in the page"
    );
}

/// A token may hold any visible ASCII, `%` included. Given raw in the
/// fragment, `decodeURIComponent` threw a `URIError` at the top of the
/// script: the page never polled, stayed at "loading…" and did not even
/// show the token form.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_with_a_percent_sign_in_the_fragment_still_works() {
    const TOKEN: &str = "100%-of-the-token-5d1e";
    let registry = registry();
    let options = HttpOptions::builder().bearer_token(TOKEN).build().unwrap();
    let server = serve(router(Arc::clone(&registry), options)).await;
    let url = server.url("/dashboard");

    let unlocked = dom(&format!("{url}#token={TOKEN}")).await;
    shows_breaker(&unlocked, "payments", "closed", "Closed");
    // Encoded, as a URL should carry it, it works too.
    let encoded = TOKEN.replace('%', "%25");
    let unlocked = dom(&format!("{url}#token={encoded}")).await;
    shows_breaker(&unlocked, "payments", "closed", "Closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_page_follows_a_trip_by_polling() {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

    let registry = registry();
    let polls = Arc::new(AtomicUsize::new(0));
    // The second poll of the page's data finds `search` freshly tripped.
    let trip_on_second_poll = {
        let registry = Arc::clone(&registry);
        let polls = Arc::clone(&polls);
        move |request: axum::extract::Request, next: axum::middleware::Next| {
            let registry = Arc::clone(&registry);
            let polls = Arc::clone(&polls);
            async move {
                if request.uri().path().ends_with("/dashboard/data")
                    && polls.fetch_add(1, SeqCst) == 1
                {
                    trip(&registry, "search");
                }
                next.run(request).await
            }
        }
    };
    let app = router(Arc::clone(&registry), HttpOptions::default())
        .layer(axum::middleware::from_fn(trip_on_second_poll));
    let server = serve(app).await;

    // One load, never reloaded: only the page's own polling can show it.
    let page = browse(&server.url("/dashboard"), &["--dump-dom".to_owned()], 4000).await;
    assert!(
        polls.load(SeqCst) >= 2,
        "the page polled {} times",
        polls.load(SeqCst)
    );
    shows_breaker(&page, "search", "open", "Open");
    shows_breaker(&page, "inventory", "closed", "Closed");
}

/// A fleet breaker `payments` on the Redis at `url`.
async fn instance(url: &str) -> FleetBreaker {
    let backend = RedisBackend::connect(RedisConfig::new(url).timeout(Duration::from_millis(500)))
        .await
        .expect("connect");
    FleetBreaker::builder(
        "payments",
        core_breaker(2, Duration::from_secs(600)),
        backend,
    )
    .sync_interval(Duration::from_millis(50))
    .build()
    .await
    .expect("fleet breaker")
}

/// The cells of `row` whose text is `text`.
fn cells(row: &str, text: &str) -> usize {
    row.matches(&format!(">{text}<")).count()
}

/// Instance B's page lists its fleet breaker with its local state next
/// to the fleet's decision, closed at first; after instance A trips the
/// shared breaker on a real redis-server, B's page shows both open (B
/// failed nothing), with a timeline, and the report degraded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_fleet_state_next_to_the_local_one() {
    let redis = RedisServer::start();
    let a = instance(&redis.url()).await;
    let b = instance(&redis.url()).await;
    let registry = Arc::new(Registry::new());
    registry.register_fleet_breaker(&b).unwrap();
    let server = serve(router(Arc::clone(&registry), HttpOptions::default())).await;
    let url = server.url("/dashboard");

    let before = dom(&url).await;
    let payments = row(&before, "data-breaker", "payments");
    for attr in [
        "data-state=\"closed\"",
        "data-fleet-state=\"closed\"",
        "data-degraded=\"false\"",
    ] {
        assert!(payments.contains(attr), "{attr}: {payments}");
    }
    assert!(payments.contains(">payments (fleet)<"), "{payments}");
    assert_eq!(cells(payments, "Closed"), 2, "local and fleet: {payments}");
    assert!(before.contains(">ready<"), "status pill");

    for _ in 0..2 {
        let _ = a.call(async { Err::<(), _>("down") }).await;
    }
    let start = tokio::time::Instant::now();
    while b.state() != State::Open {
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "A's trip never reached B"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let after = dom(&url).await;
    let payments = row(&after, "data-breaker", "payments");
    for attr in ["data-state=\"open\"", "data-fleet-state=\"open\""] {
        assert!(payments.contains(attr), "{attr}: {payments}");
    }
    assert_eq!(cells(payments, "Open"), 2, "local and fleet: {payments}");
    assert!(payments.contains("<svg"), "a timeline: {payments}");
    // B failed nothing itself: its failures cell reads 0.
    assert_eq!(b.metrics().failures, 0);
    assert!(
        after.contains(">degraded<"),
        "a fleet breaker open: degraded"
    );
    assert!(
        after.contains("fleet breaker payments is open"),
        "the reason is listed"
    );
}

/// Registry names are ASCII letters, digits and underscores, so
/// `constructor`, `valueOf` or `toString` are valid names, and also the
/// names of properties every JavaScript object inherits. The page looked
/// a limiter's rejections up with `rejections.limiter[name]`, which for
/// such a name without a rejection is an inherited function, not a
/// count: its row read `NaN` instead of `0`. The same lookup of the
/// keyed limiters' bad keys read such a function as a count too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_that_are_javascript_properties_show_their_own_counts() {
    let registry = Arc::new(Registry::new());
    let names = ["constructor", "valueOf", "toString", "hasOwnProperty"];
    for name in names {
        registry
            .limiter(name, Quota::per_second(5).unwrap())
            .unwrap();
        registry
            .breaker(
                &format!("{name}_b"),
                Config::builder().consecutive_failures(2).build().unwrap(),
            )
            .unwrap();
    }
    let server = serve(router(Arc::clone(&registry), HttpOptions::default())).await;
    // One rejection published for another limiter: `rejections.limiter`
    // exists, and none of the names above is in it.
    registry.events().publish(Event::Rejected {
        name: "other".into(),
        component: Component::Limiter,
        at: registry.now(),
    });
    let page = dom(&server.url("/dashboard")).await;
    for name in names {
        let limiter = row(&page, "data-limiter", name);
        assert!(
            !limiter.contains("NaN") && limiter.contains(">0<"),
            "{name}: {limiter}"
        );
    }
}

/// A local breaker and a fleet breaker may share a name (names are
/// unique per kind). The data kept one timeline per name and recorded
/// both breakers' states into it on every read, so with the fleet
/// breaker open and the local one closed, each read appended `closed`
/// then `open` to `payments`' timeline: the page drew the local breaker
/// flapping twice a second, and the fleet breaker's row the same false
/// history. Each breaker now has its own timeline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_breaker_and_a_local_one_of_one_name_keep_their_own_timelines() {
    let redis = RedisServer::start();
    let fleet = instance(&redis.url()).await;
    for _ in 0..2 {
        let _ = fleet.call(async { Err::<(), _>("down") }).await;
    }
    assert_eq!(fleet.state(), State::Open);
    let registry = Arc::new(Registry::new());
    registry
        .breaker(
            "payments",
            Config::builder().consecutive_failures(2).build().unwrap(),
        )
        .unwrap();
    registry.register_fleet_breaker(&fleet).unwrap();
    let server = serve(router(Arc::clone(&registry), HttpOptions::default())).await;

    let states = |changes: &serde_json::Value| -> Vec<String> {
        changes
            .as_array()
            .map(|a| a.iter().map(|c| c["state"].to_string()).collect())
            .unwrap_or_default()
    };
    let mut data = serde_json::Value::Null;
    for _ in 0..3 {
        data = http_common::get(&server.url("/dashboard/data"))
            .await
            .json();
    }
    assert_eq!(data["health"]["breakers"]["payments"]["state"], "closed");
    assert_eq!(
        data["health"]["fleet_breakers"]["payments"]["state"],
        "open"
    );
    assert_eq!(
        states(&data["timelines"]["payments"]),
        ["\"closed\""],
        "the local breaker never changed: {data}"
    );
    assert_eq!(
        states(&data["fleet_timelines"]["payments"]),
        ["\"open\""],
        "the fleet breaker was open at every read: {data}"
    );
}

/// A server whose token is `token`, counting the page's data polls
/// that reach it.
async fn counting_polls(token: &str) -> (Server, Arc<AtomicUsize>) {
    let polls = Arc::new(AtomicUsize::new(0));
    let count_polls = {
        let polls = Arc::clone(&polls);
        move |request: axum::extract::Request, next: axum::middleware::Next| {
            let polls = Arc::clone(&polls);
            async move {
                if request.uri().path().ends_with("/dashboard/data") {
                    polls.fetch_add(1, SeqCst);
                }
                next.run(request).await
            }
        }
    };
    let options = HttpOptions::builder().bearer_token(token).build().unwrap();
    let app = router(registry(), options).layer(axum::middleware::from_fn(count_polls));
    (serve(app).await, polls)
}

/// A page that has no token (or a wrong one) polled its data every
/// second all the same, each poll refused: a locked tab left open counted
/// one `unauthorized` refusal a second in `fusebox_http_refused_total`,
/// the count meant to show a client guessing tokens. A refused page now
/// waits for a token before it asks again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_page_waits_for_a_token_instead_of_polling() {
    let (server, polls) = counting_polls("dashboard-token-5d1e8b7a").await;
    for url in [
        server.url("/dashboard"),
        server.url("/dashboard#token=not-the-token-at-all"),
    ] {
        polls.store(0, SeqCst);
        let page = browse(&url, &["--dump-dom".to_owned()], 4000).await;
        assert!(page.contains(">token required<"), "{url}: locked");
        assert_eq!(polls.load(SeqCst), 1, "{url}: polls while locked");
    }
}

/// A token outside visible ASCII (pasted with a stray `€`, or a non-Latin
/// script) can be no server's token, and a browser will not send it: its
/// `fetch` threw, the page said "offline" (as if the server were down)
/// and tried again every second. It now asks for the token again, and
/// never sends that one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_a_browser_cannot_send_asks_for_another_not_offline() {
    let (server, polls) = counting_polls("dashboard-token-5d1e8b7a").await;
    // `€` (U+20AC) is outside Latin-1: `fetch` refuses it in a header.
    let url = server.url("/dashboard#token=dashboard-token-%E2%82%AC-5d1e8b7a");
    let page = browse(&url, &["--dump-dom".to_owned()], 3000).await;
    assert!(
        page.contains(">token required<"),
        "asks for the token: {page}"
    );
    assert!(!page.contains(">offline<"), "not offline");
    assert!(page.contains("visible ASCII only"), "says why");
    let auth = &page[page.find("id=\"auth\"").expect("the token form")..];
    assert!(
        !auth[..auth.find('>').unwrap()].contains("hidden"),
        "the token form is shown"
    );
    assert_eq!(polls.load(SeqCst), 0, "the token is never sent");
}
