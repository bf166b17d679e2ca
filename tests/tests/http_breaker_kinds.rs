//! A registry's breaker and a fleet breaker may share a name (names are
//! unique per kind), and a fleet breaker built with the registry's
//! observer publishes its transitions, refusals and failures on the
//! registry's events. Those events named the breaker and nothing else:
//! every consumer (the dashboard's data, a subscriber) took a fleet
//! breaker's events for the local breaker's of that name.
//!
//! Checked over real HTTP on a real redis-server: the dashboard's data
//! (`/dashboard/data`), read as the page reads it, and the page itself in
//! a headless Chromium (required, as in `http_dashboard.rs`).

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use crate::common::core_breaker;
use crate::common::fleet::{backend, trip};
use crate::common::redis_server::RedisServer;
use crate::http_common::browser::{dom, row};
use crate::http_common::{get, serve};
use fusebox::breaker::{Config, State};
use fusebox_std::backend::FleetBreaker;
use fusebox_std::events::Event;
use fusebox_std::http::{router, HttpOptions};
use fusebox_std::Registry;
use serde_json::Value;

/// A registry breaker policy `payments` (two failures open it) and a
/// fleet breaker `payments` on the Redis at `url`, built with the
/// registry's observer and registered.
async fn namesakes(
    registry: &Arc<Registry>,
    url: &str,
) -> (fusebox_std::policy::Breaker, FleetBreaker) {
    let local = registry
        .breaker_policy(
            "payments",
            Config::builder().consecutive_failures(2).build().unwrap(),
        )
        .unwrap();
    let fleet = FleetBreaker::builder(
        "payments",
        core_breaker(2, Duration::from_secs(600)),
        backend(url).await,
    )
    .observer(registry.breaker_observer())
    .build()
    .await
    .expect("fleet breaker");
    registry.register_fleet_breaker(&fleet).unwrap();
    (local, fleet)
}

/// `(state, observed)` of each change of a timeline.
fn changes(timeline: &Value) -> Vec<(String, bool)> {
    timeline
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| {
                    (
                        c["state"].as_str().unwrap_or("?").to_owned(),
                        c["observed"].as_bool().unwrap_or(false),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The events `sub` holds, as the JSON a subscriber forwarding them
/// would write, keeping `kind`, `name` and `component`.
fn drained(sub: &mut fusebox_std::events::Subscription) -> Vec<(String, String, String)> {
    std::iter::from_fn(|| sub.try_recv())
        .map(|e: Event| {
            let json = serde_json::to_value(&e).unwrap();
            let text = |k: &str| json[k].as_str().unwrap_or("-").to_owned();
            (text("kind"), text("name"), text("component"))
        })
        .collect()
}

/// A local breaker `payments` (a registry policy) and a fleet breaker
/// `payments` built with the registry's observer. The fleet breaker
/// trips and refuses a call; the local one never changed.
///
/// Before: the fleet breaker's `open` event landed on the *local*
/// breaker's timeline (its breaker being the one with the event's name),
/// and the next read observed the local breaker closed again: the data
/// showed `payments` closed → open → closed, a trip and a recovery that
/// never happened. Its refusal was counted under
/// `rejections.breaker.payments`, the local breaker's, which refused
/// nothing. The events themselves carried no component, so a subscriber
/// could not tell them apart either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_breakers_events_stay_off_its_local_namesake() {
    let redis = RedisServer::start();
    let registry = Arc::new(Registry::new());
    let (local, fleet) = namesakes(&registry, &redis.url()).await;
    let mut sub = registry.events().subscribe();
    let server = serve(router(Arc::clone(&registry), HttpOptions::default())).await;
    let data_url = server.url("/dashboard/data");
    let first = get(&data_url).await.json();
    assert_eq!(
        changes(&first["timelines"]["payments"]),
        [("closed".into(), true)]
    );

    trip(&fleet).await;
    assert!(fleet.call(async { Ok::<(), &str>(()) }).await.is_err());
    let mut data = Value::Null;
    for _ in 0..2 {
        data = get(&data_url).await.json();
    }
    assert_eq!(data["health"]["breakers"]["payments"]["state"], "closed");
    assert_eq!(
        data["health"]["fleet_breakers"]["payments"]["state"],
        "open"
    );
    assert_eq!(
        changes(&data["timelines"]["payments"]),
        [("closed".into(), true)],
        "the local breaker never changed: {data}"
    );
    // Observed by the reads: the fleet breaker's events are on its own
    // clock, not the registry's time scale.
    assert_eq!(
        changes(&data["fleet_timelines"]["payments"]),
        [("closed".into(), true), ("open".into(), true)],
        "the fleet breaker's trip: {data}"
    );
    assert_eq!(
        data["rejections"],
        serde_json::json!({"fleet_breaker": {"payments": 1}}),
        "the fleet breaker refused one call, the local one none: {data}"
    );
    assert_eq!(
        drained(&mut sub),
        [
            ("failure", "payments", "fleet_breaker"),
            ("state_change", "payments", "fleet_breaker"),
            ("failure", "payments", "fleet_breaker"),
            ("rejected", "payments", "fleet_breaker"),
        ]
        .map(|(k, n, c)| (k.to_owned(), n.to_owned(), c.to_owned()))
    );

    // The other way round: the local breaker trips, the fleet breaker's
    // timeline is left alone.
    for _ in 0..2 {
        let _ = local.call(async { Err::<(), _>("down") }).await;
    }
    let data = get(&data_url).await.json();
    assert_eq!(
        changes(&data["timelines"]["payments"]),
        [("closed".into(), true), ("open".into(), false)],
        "{data}"
    );
    assert_eq!(
        changes(&data["fleet_timelines"]["payments"]),
        [("closed".into(), true), ("open".into(), true)],
        "{data}"
    );
    let kinds = drained(&mut sub);
    assert!(
        kinds.contains(&("state_change".into(), "payments".into(), "breaker".into())),
        "{kinds:?}"
    );
    assert_eq!(fleet.state(), State::Open);
}

/// The row of the `kind` (`breaker`, `fleet_breaker`) named `name`.
fn breaker_row<'a>(dom: &'a str, kind: &str, name: &str) -> &'a str {
    row(dom, "data-kind", &format!("{kind}\" data-breaker=\"{name}"))
}

/// The page: the fleet breaker tripped after the router was built, the
/// local one never did. Each row is keyed by kind and name; the local
/// row's timeline is closed only (before, its first read recorded the
/// fleet breaker's `open` event on it, then observed it closed: a red
/// segment on a breaker that never opened), the fleet row's shows the
/// trip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_keeps_a_fleet_breakers_trip_off_its_local_namesakes_row() {
    const OPEN: &str = "fill=\"#d64545\"";
    const CLOSED: &str = "fill=\"#2e9d5b\"";
    let redis = RedisServer::start();
    let registry = Arc::new(Registry::new());
    let (_local, fleet) = namesakes(&registry, &redis.url()).await;
    let server = serve(router(Arc::clone(&registry), HttpOptions::default())).await;
    // Read once closed, so the fleet row's timeline starts closed.
    assert_eq!(get(&server.url("/dashboard/data")).await.status, 200);
    trip(&fleet).await;

    let page = dom(&server.url("/dashboard")).await;
    let local = breaker_row(&page, "breaker", "payments");
    assert!(local.contains("data-state=\"closed\""), "{local}");
    assert!(local.contains(">payments<"), "{local}");
    assert!(
        local.contains(CLOSED) && !local.contains(OPEN),
        "the local breaker never opened: {local}"
    );
    let shared = breaker_row(&page, "fleet_breaker", "payments");
    assert!(shared.contains("data-state=\"open\""), "{shared}");
    assert!(shared.contains(">payments (fleet)<"), "{shared}");
    assert!(
        shared.contains(CLOSED) && shared.contains(OPEN),
        "the fleet breaker's trip: {shared}"
    );
}

/// A log reader tells them apart too: a fleet breaker's transition line
/// (through the registry's observer) has `component=fleet_breaker`, the
/// registry breaker's has no such field, as before. Redis is out (nothing
/// listens on port 1): the fleet breaker decides on its local state.
#[test]
fn a_fleet_breakers_transition_log_says_so() {
    use fusebox_std::backend::{RedisBackend, RedisConfig};

    let ((), log) = common::logs::logged(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let registry = Arc::new(Registry::new());
            let local = registry
                .breaker_policy(
                    "payments",
                    Config::builder().consecutive_failures(1).build().unwrap(),
                )
                .unwrap();
            let backend =
                RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:1")).unwrap();
            let fleet = FleetBreaker::builder(
                "payments",
                core_breaker(1, Duration::from_secs(600)),
                backend,
            )
            .observer(registry.breaker_observer())
            .build()
            .await
            .expect("fleet breaker");
            let _ = fleet.call(async { Err::<(), _>("down") }).await;
            let _ = local.call(async { Err::<(), _>("down") }).await;
            assert_eq!(fleet.state(), State::Open);
        });
    });
    let opened: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("breaker opened"))
        .collect();
    assert_eq!(opened.len(), 2, "{log}");
    assert!(opened[0].contains("component=\"fleet_breaker\""), "{log}");
    assert!(!opened[1].contains("component="), "{log}");
}
