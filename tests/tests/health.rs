//! `health()`: the documented JSON shape field by field, the `ready` and
//! `degraded` verdicts through a breaker's life, and no secret in it.

use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use fusebox::breaker::{Config, Outcome, State};
use fusebox::bucket::{FullPolicy, Quota};
use fusebox::cache::LruCache;
use fusebox::Duration;
use fusebox_std::events::{Component, Event};
use fusebox_std::{Registry, TrackerConfig};
use serde_json::{json, Value};
use tokio::time::sleep;

fn all() -> TrackerConfig {
    TrackerConfig {
        sample_rate: 1.0,
        ..TrackerConfig::default()
    }
}

#[tokio::test(start_paused = true)]
#[allow(clippy::too_many_lines)] // one literal: the whole documented shape
async fn the_json_shape_field_by_field() {
    let r = Registry::new();
    let payments = r
        .breaker(
            "payments",
            Config::builder()
                .consecutive_failures(2)
                .open_for(Duration::from_secs(30))
                .build()
                .unwrap(),
        )
        .unwrap();
    r.set_required("payments", true).unwrap();
    let now = r.now();
    for outcome in [Outcome::Success, Outcome::Failure, Outcome::Failure] {
        let _ = payments
            .try_acquire(now)
            .unwrap()
            .record(outcome, now, Duration::ZERO);
    }
    assert!(payments.try_acquire(now).is_err()); // 1 rejected

    let api = r.limiter("api", Quota::per_second(10).unwrap()).unwrap();
    api.try_acquire_n(4, now).unwrap(); // 6 left (and 0.2 more refilled by the end)

    let per_ip = r
        .keyed_limiter::<u32, 64>("per_ip", Quota::per_second(1).unwrap(), FullPolicy::Reject)
        .unwrap();
    per_ip.try_acquire(&1, now).unwrap();
    assert!(per_ip.try_acquire(&1, now).is_err());
    per_ip.try_acquire(&2, now).unwrap();

    let sessions = r.concurrent_cache::<u32, u32, 16, 2>("sessions").unwrap();
    sessions.insert(1, 10).unwrap();
    assert_eq!(sessions.get(&1), Some(10));
    assert_eq!(sessions.get(&2), None);
    assert_eq!(sessions.get(&1), Some(10));
    let users = Arc::new(Mutex::new(LruCache::<u32, u32, 1>::new()));
    r.register_cache("users", Arc::clone(&users)).unwrap();
    users.lock().unwrap().put(1, 1);
    users.lock().unwrap().put(2, 2); // evicts 1

    let http = r.tracker("http", all()).unwrap();
    for fail in [false, true] {
        let mut op = http.track_operation("checkout");
        sleep(StdDuration::from_millis(10)).await;
        if fail {
            op.fail();
        }
    }
    let _sub = r.events().subscribe();
    r.events().publish(Event::Recovered {
        name: "x".into(),
        component: Component::Breaker,
        at: now,
    });

    let mut got = serde_json::to_value(r.health()).unwrap();
    let rss = got["process"]["resident_memory_bytes"].take();
    if cfg!(target_os = "linux") {
        assert!(rss.as_u64().unwrap() > 1 << 20, "{rss}");
    } else {
        assert_eq!(rss, Value::Null);
    }
    let expected = json!({
        "ready": false,
        "degraded": true,
        "reasons": ["breaker payments is open (required)"],
        "process": {"resident_memory_bytes": null, "uptime_seconds": 0.02},
        "breakers": {
            "payments": {
                "state": "open", "required": true,
                "successes": 1, "failures": 2, "slow_calls": 0, "rejected": 1,
                "trips": 1, "abandoned": 0, "ignored": 0
            }
        },
        "limiters": {"api": {"tokens": 10, "period_us": 1_000_000, "burst": 10, "available": 6}},
        "keyed_limiters": {
            "per_ip": {"allowed": 2, "limited": 1, "evictions": 0, "table_full": 0, "keys": 2}
        },
        "caches": {
            "sessions": {
                "hits": 2, "misses": 1, "inserts": 1, "evictions": 0, "expirations": 0,
                "contended": 0, "hit_ratio": 2.0 / 3.0
            },
            "users": {
                "hits": 0, "misses": 0, "inserts": 2, "evictions": 1, "expirations": 0,
                "contended": 0, "hit_ratio": null
            }
        },
        "trackers": {
            "http": {
                "checkout": {
                    "calls": 2, "errors": 1, "sampled": 2,
                    "latency_us": {
                        "p50": 10_000, "p95": 10_000, "p99": 10_000, "p999": 10_000,
                        "max": 10_000, "mean": 10_000.0
                    }
                }
            }
        },
        "bulkheads": {},
        "events": {"published": 1, "lagged": 0, "subscribers": 1, "capacity": 1024}
    });
    // Field by field, so a difference names its place.
    for (key, value) in expected.as_object().unwrap() {
        assert_eq!(&got[key], value, "{key}");
    }
    assert_eq!(got, expected);
}

#[tokio::test(start_paused = true)]
async fn limiter_tokens_are_read_at_the_registry_clock() {
    let r = Registry::new();
    let api = r.limiter("api", Quota::per_second(10).unwrap()).unwrap();
    api.try_acquire_n(10, r.now()).unwrap();
    assert_eq!(r.health().limiters["api"].available, 0);
    sleep(StdDuration::from_millis(500)).await;
    assert_eq!(r.health().limiters["api"].available, 5);
}

#[tokio::test(start_paused = true)]
async fn ready_and_degraded_through_a_breaker_life() {
    let r = Registry::new();
    let config = Config::builder()
        .consecutive_failures(1)
        .open_for(Duration::from_secs(10))
        .build()
        .unwrap();
    let db = r.breaker("db", config).unwrap();
    let cache = r.breaker("cache", config).unwrap();
    r.set_required("db", true).unwrap();
    let verdict = |r: &Registry| {
        let h = r.health();
        (h.ready, h.degraded, h.reasons)
    };
    assert_eq!(verdict(&r), (true, false, vec![]));

    // An optional breaker open: degraded, still ready.
    let now = r.now();
    let _ = cache
        .try_acquire(now)
        .unwrap()
        .record(Outcome::Failure, now, Duration::ZERO);
    assert_eq!(
        verdict(&r),
        (true, true, vec!["breaker cache is open".to_owned()])
    );

    // The required one open: not ready.
    let _ = db
        .try_acquire(now)
        .unwrap()
        .record(Outcome::Failure, now, Duration::ZERO);
    assert_eq!(
        verdict(&r),
        (
            false,
            true,
            vec![
                "breaker cache is open".to_owned(),
                "breaker db is open (required)".to_owned()
            ]
        )
    );
    assert_eq!(r.health().breakers["db"].state, State::Open);

    // Its open time over (plus the core's 1.024 ms rounding): half-open
    // lets trial calls through, so ready again, still degraded.
    sleep(StdDuration::from_millis(10_002)).await;
    let h = r.health();
    assert_eq!(h.breakers["db"].state, State::HalfOpen);
    assert!(h.ready && h.degraded);

    // Both recover.
    let now = r.now();
    for b in [&db, &cache] {
        let _ = b
            .try_acquire(now)
            .unwrap()
            .record(Outcome::Success, now, Duration::ZERO);
    }
    assert_eq!(verdict(&r), (true, false, vec![]));

    // Forced open counts as open.
    db.force_open(r.now());
    assert_eq!(
        verdict(&r),
        (
            false,
            true,
            vec!["breaker db is forced_open (required)".to_owned()]
        )
    );
    r.set_required("db", false).unwrap();
    assert!(r.health().ready);
}

#[tokio::test]
async fn no_secret_reaches_the_report() {
    let r = Registry::new();
    let http = r.tracker("http", all()).unwrap();
    drop(http.track_operation("GET https://bob:hunter2@api.example.com/v1?api_key=K3Y"));
    drop(
        http.track_request("req", "POST /login?password=pa55")
            .track_stage("Bearer t0ken"),
    );
    assert!(r.tracker("redis://u:s3cret@h", all()).is_err());
    r.events()
        .publish(Event::failure("db", &"redis://u:s3cret@h down", r.now()));
    let text = serde_json::to_string(&r.health()).unwrap();
    for secret in ["hunter2", "K3Y", "pa55", "t0ken", "s3cret"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    assert!(text.contains("GET https://bob:***@api.example.com/v1?api_key=***"));
}

#[test]
fn degraded_conditions_are_reported_bounded_and_redacted() {
    let r = Registry::builder().max_entries(2).build();
    r.breaker(
        "db",
        Config::builder().consecutive_failures(1).build().unwrap(),
    )
    .unwrap()
    .force_open(r.now());
    r.set_degraded("redis", Some("timeout talking to redis://u:pw@h?token=abc"))
        .unwrap();
    r.set_degraded("dns", Some(&"x".repeat(1_000))).unwrap();
    let h = r.health();
    assert!(h.ready && h.degraded);
    assert_eq!(h.reasons.len(), 3);
    assert_eq!(h.reasons[0], "breaker db is forced_open");
    assert_eq!(h.reasons[1], format!("dns: {}…", "x".repeat(256)));
    assert_eq!(
        h.reasons[2],
        "redis: timeout talking to redis://u:***@h?token=***"
    );
    // Updating a known source needs no room; a third one does.
    r.set_degraded("redis", Some("still down")).unwrap();
    assert!(matches!(
        r.set_degraded("disk", Some("full")),
        Err(fusebox_std::RegistryError::Full { limit: 2, .. })
    ));
    assert!(matches!(
        r.set_degraded("not a name", Some("x")),
        Err(fusebox_std::RegistryError::InvalidName { .. })
    ));
    // Clearing, also of an unknown source, is fine.
    for source in ["redis", "dns", "disk"] {
        r.set_degraded(source, None).unwrap();
    }
    assert_eq!(r.health().reasons, ["breaker db is forced_open"]);
    r.get_breaker("db").unwrap().force_close(r.now());
    let h = r.health();
    assert!(!h.degraded && h.reasons.is_empty());
    assert!(r.to_prometheus().contains("fusebox_degraded 0\n"));
}
