//! A headless Chromium for the dashboard tests: runs a page's script and
//! returns its rendered DOM (or writes a screenshot).
//!
//! Chromium is required, not optional: without it a test using it fails
//! and says how to install it (`apt-get install -y chromium`, or set
//! `FUSEBOX_CHROMIUM` to a Chromium or Chrome binary).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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
pub async fn browse(url: &str, args: &[String], budget_ms: u32) -> String {
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
pub async fn dom(url: &str) -> String {
    browse(url, &["--dump-dom".to_owned()], 2500).await
}

/// The `<tr>` element whose `attr` is `value`, as serialised.
pub fn row<'a>(dom: &'a str, attr: &str, value: &str) -> &'a str {
    let needle = format!("{attr}=\"{value}\"");
    let start = dom
        .find(&needle)
        .unwrap_or_else(|| panic!("no row with {needle} in the page:\n{dom}"));
    let end = dom[start..].find("</tr>").map_or(dom.len(), |e| start + e);
    &dom[start..end]
}
