//! The dashboard in a real headless browser: Debian's `chromium` loads
//! `/ops/dashboard` from a real server (nested under a prefix, so the
//! page's relative data URL is exercised), runs its script, and the
//! rendered DOM must show every breaker's name and state; after a breaker
//! trips, a second load must show it Open, and a page left open must show
//! a trip by its own polling. A protected page asks for the token and
//! takes it from the URL fragment. A screenshot is written to
//! `target/dashboard.png` (or `$FUSEBOX_DASHBOARD_PNG`), and copied to
//! `docs/dashboard.png` when `FUSEBOX_UPDATE_SCREENSHOT=1`.
//!
//! Chromium is required, not optional: without it this test fails and
//! says how to install it (`apt-get install -y chromium`, or set
//! `FUSEBOX_CHROMIUM` to a Chromium or Chrome binary).

mod http_common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fusebox::breaker::{Config, Outcome};
use fusebox::bucket::{FullPolicy, Quota};
use fusebox_std::events::{Component, Event};
use fusebox_std::http::{router, HttpOptions};
use fusebox_std::{Registry, TrackerConfig};
use http_common::{serve, Server};

/// The longest a single browser run may take before it counts as hung
/// (a run takes 1 to 3 s here; the margin is for a cold, loaded machine).
const BROWSER_DEADLINE: Duration = Duration::from_secs(60);

/// The browser: `$FUSEBOX_CHROMIUM`, else the first of `chromium`,
/// `chromium-browser`, `google-chrome` on `PATH`.
fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("FUSEBOX_CHROMIUM") {
        return PathBuf::from(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser", "google-chrome"] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "chromium not found on PATH: this test needs a headless browser. \
         Install it with `apt-get install -y chromium` (Debian), or set \
         FUSEBOX_CHROMIUM to a Chromium/Chrome binary."
    );
}

/// Runs the browser headless on `url` with `args` (output mode), letting
/// the page's script run for `budget_ms` of virtual time; returns stdout.
async fn browse(url: &str, args: &[String], budget_ms: u32) -> String {
    let binary = chromium();
    let profile = tempdir();
    let mut command = Command::new(&binary);
    command
        .args([
            "--headless",
            "--no-sandbox", // tests run as root in CI containers
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--hide-scrollbars",
            "--window-size=1280,1000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--virtual-time-budget={budget_ms}"))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let output = tokio::task::spawn_blocking(move || {
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let id = child.id();
        let started = Instant::now();
        let waiter = std::thread::spawn(move || child.wait_with_output());
        while !waiter.is_finished() {
            if started.elapsed() > BROWSER_DEADLINE {
                // Our own child, by its id.
                let _ = Command::new("kill").arg("-9").arg(id.to_string()).status();
                panic!("chromium did not finish within {BROWSER_DEADLINE:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        waiter
            .join()
            .expect("waiter thread")
            .expect("chromium output")
    })
    .await
    .expect("browser task");
    let _ = std::fs::remove_dir_all(&profile);
    assert!(
        output.status.success(),
        "chromium failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A fresh directory for one browser profile.
fn tempdir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "chromium-profile-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).expect("profile directory");
    dir
}

/// The rendered DOM of `url` after its script ran.
async fn dom(url: &str) -> String {
    browse(url, &["--dump-dom".to_owned()], 2500).await
}

/// The `<tr>` element whose `attr` is `value`, as serialised.
fn row<'a>(dom: &'a str, attr: &str, value: &str) -> &'a str {
    let needle = format!("{attr}=\"{value}\"");
    let start = dom
        .find(&needle)
        .unwrap_or_else(|| panic!("no row with {needle} in the page:\n{dom}"));
    let end = dom[start..].find("</tr>").map_or(dom.len(), |e| start + e);
    &dom[start..end]
}

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
