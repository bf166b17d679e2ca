//! The registry and fleet breakers on a real redis-server: instance A
//! trips the shared breaker, instance B (which failed nothing) refuses a
//! call; B's `health()` shows its local state next to the fleet's in the
//! documented JSON shape, field by field; its `to_prometheus()` parses
//! back (each family once, every fleet breaker sample checked); while
//! Redis is down the report is degraded, and back.

use std::time::Duration;

use crate::common::core_breaker;
use crate::common::fleet::backend;
use crate::common::redis_server::RedisServer;
use fusebox::breaker::State;
use fusebox_std::backend::FleetBreaker;
use fusebox_std::{CallError, Registry, RegistryError};
use serde_json::{json, Value};
use tokio::time::Instant;

const SYNC: Duration = Duration::from_millis(50);

/// A fleet breaker `payments` (two failures open it for 30 s) registered
/// in `registry`.
async fn instance(url: &str, registry: &Registry) -> FleetBreaker {
    let fleet = FleetBreaker::builder(
        "payments",
        core_breaker(2, Duration::from_secs(30)),
        backend(url).await,
    )
    .sync_interval(SYNC)
    .build()
    .await
    .expect("fleet breaker");
    registry.register_fleet_breaker(&fleet).unwrap();
    fleet
}

/// Waits (at most 3 s) until `done`.
async fn until(what: &str, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(3), "never {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Two registries, one instance each; A tripped, B open by A's decision
/// and refusing one call.
async fn tripped(url: &str) -> ((Registry, FleetBreaker), (Registry, FleetBreaker)) {
    let (ra, rb) = (Registry::new(), Registry::new());
    let a = instance(url, &ra).await;
    let b = instance(url, &rb).await;
    for _ in 0..2 {
        let _ = a.call(async { Err::<(), _>("down") }).await;
    }
    until("A's trip applied on B", || b.state() == State::Open).await;
    until("A's trip published", || {
        a.fleet_state() == Some(State::Open)
    })
    .await;
    let refused = b.call(async { Ok::<(), ()>(()) }).await;
    assert!(
        matches!(refused, Err(CallError::Open { .. })),
        "{refused:?}"
    );
    ((ra, a), (rb, b))
}

/// The value of the sample `line` starts with (whole numbers here).
fn sample(text: &str, line: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(line)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {line} in:\n{text}"))
        .parse()
        .unwrap()
}

fn state(scope: &str, state: &str) -> String {
    format!("fusebox_fleet_breaker_state{{name=\"payments\",scope=\"{scope}\",state=\"{state}\"}}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_breaker_registry_json_shape_field_by_field() {
    let server = RedisServer::start();
    let ((ra, a), (rb, b)) = tripped(&server.url()).await;

    let mut got = serde_json::to_value(rb.health()).unwrap();
    got["process"] = Value::Null; // varies
    let syncs = got["fleet_breakers"]["payments"]["redis"]["syncs"].take();
    assert!(syncs.as_u64().unwrap() >= 1, "{syncs}");
    let expected = json!({
        "ready": true,
        "degraded": true,
        "reasons": ["fleet breaker payments is open"],
        "process": null,
        "breakers": {},
        "limiters": {},
        "keyed_limiters": {},
        "caches": {},
        "trackers": {},
        "bulkheads": {},
        "events": {"published": 0, "lagged": 0, "subscribers": 0, "capacity": 1024},
        "fleet_breakers": {
            "payments": {
                // Open here by A's decision: B failed nothing, tripped
                // nothing, published nothing, and refused one call.
                "state": "open", "fleet_state": "open", "degraded": false,
                "redis": {"syncs": null, "errors": 0, "corrupt": 0, "published": 0, "trials_refused": 0},
                "successes": 0, "failures": 0, "slow_calls": 0, "rejected": 1,
                "trips": 0, "abandoned": 0, "ignored": 0
            }
        }
    });
    for (key, value) in expected.as_object().unwrap() {
        assert_eq!(&got[key], value, "{key}");
    }
    assert_eq!(got, expected);

    // A: the same shape, its own trip.
    let report = ra.health().fleet_breakers["payments"];
    assert_eq!(
        (report.state, report.fleet_state, report.degraded),
        (State::Open, Some(State::Open), false)
    );
    assert_eq!((report.metrics.failures, report.metrics.trips), (2, 1));
    assert!(report.redis.published >= 1, "{report:?}");

    // Registering the same breaker again does nothing; another one under
    // the name is a conflict; lookups find it.
    rb.register_fleet_breaker(&b).unwrap();
    let other = FleetBreaker::builder(
        "payments",
        core_breaker(2, Duration::from_secs(30)),
        backend(&server.url()).await,
    )
    .build()
    .await
    .unwrap();
    assert!(matches!(
        rb.register_fleet_breaker(&other),
        Err(RegistryError::Conflict { .. })
    ));
    let held = rb.get_fleet_breaker("payments").unwrap();
    assert!(std::sync::Arc::ptr_eq(held.core(), b.core()));
    assert!(ra.get_fleet_breaker("other").is_none());
    drop(a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_breaker_registry_prometheus_parses_back() {
    let server = RedisServer::start();
    let (_a, (rb, _b)) = tripped(&server.url()).await;

    let text = rb.to_prometheus();
    let parsed = prometheus_parse::Scrape::parse(std::io::BufRead::lines(text.as_bytes()))
        .expect("valid exposition");
    for (family, kind) in [
        ("fusebox_fleet_breaker_state", "gauge"),
        ("fusebox_fleet_breaker_syncs_total", "counter"),
        ("fusebox_fleet_breaker_errors_total", "counter"),
        ("fusebox_fleet_breaker_corrupt_total", "counter"),
        ("fusebox_fleet_breaker_published_total", "counter"),
        ("fusebox_fleet_breaker_trips_total", "counter"),
        ("fusebox_fleet_breaker_failures_total", "counter"),
        ("fusebox_fleet_breaker_rejected_total", "counter"),
        ("fusebox_fleet_breaker_degraded", "gauge"),
    ] {
        let line = format!("# TYPE {family} {kind}\n");
        assert_eq!(text.matches(&line).count(), 1, "{line}{text}");
    }
    // Both scopes, every state, parsed back with their labels.
    let states: Vec<_> = parsed
        .samples
        .iter()
        .filter(|s| s.metric == "fusebox_fleet_breaker_state")
        .map(|s| {
            let value = match &s.value {
                prometheus_parse::Value::Gauge(v) => *v,
                other => panic!("not a gauge: {other:?}"),
            };
            (
                s.labels.get("scope").unwrap().to_owned(),
                s.labels.get("state").unwrap().to_owned(),
                value,
            )
        })
        .collect();
    assert_eq!(states.len(), 8, "{states:?}");
    for scope in ["local", "fleet"] {
        for (name, want) in [
            ("closed", 0),
            ("open", 1),
            ("half_open", 0),
            ("forced_open", 0),
        ] {
            assert_eq!(sample(&text, &state(scope, name)), want, "{scope} {name}");
        }
    }
    assert!(
        sample(
            &text,
            "fusebox_fleet_breaker_syncs_total{name=\"payments\"}"
        ) >= 1
    );
    // B refused one call, and failed, tripped and published nothing.
    for (counter, want) in [
        ("errors", 0),
        ("corrupt", 0),
        ("published", 0),
        ("trips", 0),
        ("failures", 0),
        ("rejected", 1),
    ] {
        let line = format!("fusebox_fleet_breaker_{counter}_total{{name=\"payments\"}}");
        assert_eq!(sample(&text, &line), want, "{line}");
    }
    assert_eq!(
        sample(&text, "fusebox_fleet_breaker_degraded{name=\"payments\"}"),
        0
    );
    assert_eq!(sample(&text, "fusebox_degraded"), 1);
    assert_eq!(sample(&text, "fusebox_ready"), 1);
    // A registry without fleet breakers writes none of the families.
    assert!(!Registry::new().to_prometheus().contains("fleet_breaker"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_breaker_registry_health_is_degraded_while_redis_is_down() {
    let mut server = RedisServer::start();
    let registry = Registry::new();
    let b = instance(&server.url(), &registry).await;
    let health = registry.health();
    assert!(!health.degraded, "{:?}", health.reasons);
    assert_eq!(
        health.fleet_breakers["payments"].fleet_state,
        Some(State::Closed)
    );

    server.kill();
    until("degraded", || b.is_degraded()).await;
    let health = registry.health();
    assert!(health.ready && health.degraded, "{health:?}");
    assert_eq!(
        health.reasons,
        ["fleet breaker payments is degraded (Redis unavailable: deciding on local state)"]
    );
    assert!(health.fleet_breakers["payments"].degraded);
    let text = registry.to_prometheus();
    assert_eq!(
        sample(&text, "fusebox_fleet_breaker_degraded{name=\"payments\"}"),
        1
    );
    assert!(
        sample(
            &text,
            "fusebox_fleet_breaker_errors_total{name=\"payments\"}"
        ) >= 1
    );
    // The fleet's last decision is still shown next to the local state.
    assert_eq!(sample(&text, &state("fleet", "closed")), 1);

    server.restart();
    let back = Instant::now();
    while b.is_degraded() {
        assert!(back.elapsed() < Duration::from_secs(5), "still degraded");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let health = registry.health();
    assert!(!health.degraded, "{:?}", health.reasons);
}
