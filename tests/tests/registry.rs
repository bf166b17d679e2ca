//! The registry's contract: get-or-create returns one instance per name,
//! another configuration or type is an error, names and entry counts are
//! bounded, a configuration file or environment is validated with field
//! paths; events never block and count what slow subscribers miss;
//! transitions reach `tracing` with structured fields.
#![allow(clippy::many_single_char_names, clippy::float_cmp)]

use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use fusebox::breaker::{Config, Outcome, State};
use fusebox::bucket::{FullPolicy, Quota};
use fusebox::cache::LruCache;
use fusebox::{Duration, Instant};
use fusebox_std::events::{Component, Event};
use fusebox_std::registry::{Kind, NameError, RegistryConfig};
use fusebox_std::{Registry, RegistryError, TrackerConfig};

fn consecutive(n: u32) -> Config {
    Config::builder().consecutive_failures(n).build().unwrap()
}

#[test]
fn get_or_create_returns_one_instance_per_name() {
    let r = Registry::new();
    let a = r.breaker("db", consecutive(3)).unwrap();
    assert!(Arc::ptr_eq(&a, &r.breaker("db", consecutive(3)).unwrap()));
    assert!(Arc::ptr_eq(&a, &r.get_breaker("db").unwrap()));

    let q = Quota::per_second(10).unwrap();
    let l = r.limiter("api", q).unwrap();
    assert!(Arc::ptr_eq(&l, &r.limiter("api", q).unwrap()));
    // The quota it was created with still matches after a change.
    l.set_quota(Quota::per_second(20).unwrap(), Instant::ZERO);
    assert!(Arc::ptr_eq(&l, &r.limiter("api", q).unwrap()));

    let k = r
        .keyed_limiter::<u32, 64>("per_ip", q, FullPolicy::Reject)
        .unwrap();
    let k2 = r
        .keyed_limiter::<u32, 64>("per_ip", q, FullPolicy::Reject)
        .unwrap();
    assert!(Arc::ptr_eq(&k, &k2));

    let c = r.concurrent_cache::<u32, u32, 8, 2>("c").unwrap();
    assert!(Arc::ptr_eq(
        &c,
        &r.concurrent_cache::<u32, u32, 8, 2>("c").unwrap()
    ));

    let t = r.tracker("http", TrackerConfig::default()).unwrap();
    drop(t.track_operation("x"));
    let t2 = r.tracker("http", TrackerConfig::default()).unwrap();
    assert_eq!(t2.stats()["x"].calls, 1, "same tracker");
    assert_eq!(r.get_tracker("http").unwrap().stats()["x"].calls, 1);

    // Names are per kind.
    r.limiter("db", q).unwrap();
}

#[test]
fn another_configuration_is_a_conflict() {
    let r = Registry::new();
    r.breaker("db", consecutive(3)).unwrap();
    let e = r.breaker("db", consecutive(4)).unwrap_err();
    assert_eq!(
        e,
        RegistryError::Conflict {
            kind: Kind::Breaker,
            name: "db".into()
        }
    );
    assert_eq!(
        e.to_string(),
        "breaker \"db\" already exists with another configuration"
    );

    let q = Quota::per_second(10).unwrap();
    r.limiter("api", q).unwrap();
    assert!(matches!(
        r.limiter("api", q.with_burst(5).unwrap()),
        Err(RegistryError::Conflict {
            kind: Kind::Limiter,
            ..
        })
    ));

    r.keyed_limiter::<u32, 64>("k", q, FullPolicy::Reject)
        .unwrap();
    assert!(matches!(
        r.keyed_limiter::<u32, 64>("k", q, FullPolicy::Overflow(q)),
        Err(RegistryError::Conflict {
            kind: Kind::KeyedLimiter,
            ..
        })
    ));

    r.tracker("t", TrackerConfig::default()).unwrap();
    let other = TrackerConfig {
        sample_rate: 1.0,
        ..TrackerConfig::default()
    };
    assert!(matches!(
        r.tracker("t", other),
        Err(RegistryError::Conflict {
            kind: Kind::Tracker,
            ..
        })
    ));

    let lru = Arc::new(Mutex::new(LruCache::<u32, u32, 4>::new()));
    r.register_cache("lru", Arc::clone(&lru)).unwrap();
    r.register_cache("lru", Arc::clone(&lru)).unwrap(); // the same one: fine
    let another = Arc::new(Mutex::new(LruCache::<u32, u32, 4>::new()));
    assert!(matches!(
        r.register_cache("lru", another),
        Err(RegistryError::Conflict {
            kind: Kind::Cache,
            ..
        })
    ));
}

#[test]
fn another_type_is_a_mismatch() {
    let r = Registry::new();
    let q = Quota::per_second(10).unwrap();
    r.keyed_limiter::<u32, 64>("k", q, FullPolicy::Reject)
        .unwrap();
    for e in [
        r.keyed_limiter::<u64, 64>("k", q, FullPolicy::Reject)
            .map(drop),
        r.keyed_limiter::<u32, 128>("k", q, FullPolicy::Reject)
            .map(drop),
    ] {
        assert_eq!(
            e,
            Err(RegistryError::TypeMismatch {
                kind: Kind::KeyedLimiter,
                name: "k".into()
            })
        );
    }
    r.concurrent_cache::<u32, u32, 8, 2>("c").unwrap();
    assert!(matches!(
        r.concurrent_cache::<u32, u64, 8, 2>("c"),
        Err(RegistryError::TypeMismatch {
            kind: Kind::Cache,
            ..
        })
    ));
    let lru = Arc::new(Mutex::new(LruCache::<u32, u32, 4>::new()));
    r.register_cache("lru", lru).unwrap();
    assert!(matches!(
        r.concurrent_cache::<u32, u32, 8, 2>("lru"),
        Err(RegistryError::TypeMismatch {
            kind: Kind::Cache,
            ..
        })
    ));
}

#[test]
fn names_are_validated_and_errors_never_show_secrets() {
    let r = Registry::new();
    let cases = [
        ("", NameError::Empty),
        ("1abc", NameError::BadStart),
        ("_abc", NameError::BadStart),
        ("a-b", NameError::BadChar),
        ("a b", NameError::BadChar),
        ("a\"b", NameError::BadChar),
        ("a\nb", NameError::BadChar),
        ("caf\u{e9}", NameError::BadChar),
        ("a__b", NameError::DoubleUnderscore),
    ];
    for (name, reason) in cases {
        match r.breaker(name, consecutive(1)) {
            Err(RegistryError::InvalidName {
                kind: Kind::Breaker,
                reason: got,
                ..
            }) => {
                assert_eq!(got, reason, "{name:?}");
            }
            other => panic!("{name:?}: {other:?}"),
        }
    }
    assert_eq!(
        r.limiter(&"a".repeat(65), Quota::per_second(1).unwrap())
            .unwrap_err(),
        RegistryError::InvalidName {
            kind: Kind::Limiter,
            name: format!("{}…", "a".repeat(64)),
            reason: NameError::TooLong(65),
        }
    );
    r.breaker(&"a".repeat(64), consecutive(1)).unwrap();

    let secret = "redis://admin:hunter2@10.0.0.1:6379?token=tok123";
    let e = r.tracker(secret, TrackerConfig::default()).unwrap_err();
    let shown = format!("{e} {e:?}");
    assert!(
        !shown.contains("hunter2") && !shown.contains("tok123"),
        "{shown}"
    );
    let e = r.set_required(secret, true).unwrap_err();
    assert!(!e.to_string().contains("hunter2"), "{e}");
    // Nor do configuration errors, in Display or Debug.
    let e = RegistryConfig::from_toml(
        "[breakers.\"redis://u:hunter2@h\"]\nfailure_rate = \"redis://u:hunter2@h\"\n",
    )
    .unwrap_err();
    let shown = format!("{e} {e:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    let config =
        RegistryConfig::from_toml("[breakers.\"x?token=t0k\"]\nfailure_rate = 5\n").unwrap();
    let e = Registry::from_config(&config).unwrap_err();
    let shown = format!("{e} {e:?}");
    assert!(!shown.contains("t0k"), "{shown}");
    // Control characters are escaped, not printed.
    let e = r.breaker("a\nb", consecutive(1)).unwrap_err();
    assert!(!e.to_string().contains('\n'));
}

#[test]
fn entries_are_bounded_per_kind() {
    let r = Registry::builder().max_entries(2).build();
    r.breaker("a", consecutive(1)).unwrap();
    r.breaker("b", consecutive(1)).unwrap();
    assert_eq!(
        r.breaker("c", consecutive(1)).unwrap_err(),
        RegistryError::Full {
            kind: Kind::Breaker,
            limit: 2
        }
    );
    r.breaker("a", consecutive(1)).unwrap(); // existing names still resolve
    r.tracker("c", TrackerConfig::default()).unwrap(); // other kinds have their own bound
}

#[test]
fn required_marker() {
    let r = Registry::new();
    assert_eq!(
        r.set_required("db", true),
        Err(RegistryError::NotFound {
            kind: Kind::Breaker,
            name: "db".into()
        })
    );
    r.breaker("db", consecutive(1)).unwrap();
    r.set_required("db", true).unwrap();
    assert!(r.health().breakers["db"].required);
    r.set_required("db", false).unwrap();
    assert!(!r.health().breakers["db"].required);
}

const FULL_TOML: &str = r#"
events_capacity = 64

[breakers.payments]
failure_rate = 50
window = 20
minimum_calls = 10
slow_call_threshold = "2s"
slow_call_rate = 80
open_for = "30s"
max_open_for = "5m"
half_open_permits = 2
close_after = 3
max_half_open = "20s"
required = true

[breakers.search]
consecutive_failures = 5

[limiters.api]
rate = 100
period = "1s"
burst = 20

[keyed_limiters.per_client]
rate = 10
period = "1m"
overflow = { rate = 1000 }

[trackers.http]
sample_rate = 0.25
max_series = 64
"#;

#[test]
fn a_registry_from_a_toml_file() {
    let r = Registry::from_config(&RegistryConfig::from_toml(FULL_TOML).unwrap()).unwrap();
    let p = r.get_breaker("payments").unwrap();
    let c = p.config();
    assert_eq!(c.failure_rate(), Some(50));
    assert_eq!((c.window(), c.minimum_calls()), (20, 10));
    assert_eq!(c.slow_call(), Some((Duration::from_secs(2), 80)));
    assert_eq!(
        (c.open_for(), c.max_open_for()),
        (Duration::from_secs(30), Duration::from_secs(300))
    );
    assert_eq!((c.half_open_permits(), c.close_after()), (2, 3));
    assert_eq!(c.max_half_open(), Some(Duration::from_secs(20)));
    assert_eq!(c.consecutive_failures(), None);
    assert_eq!(
        r.get_breaker("search")
            .unwrap()
            .config()
            .consecutive_failures(),
        Some(5)
    );
    let search = r.get_breaker("search").unwrap().config();
    assert_eq!(
        search.max_half_open(),
        None,
        "no half-open timeout unless set"
    );
    let h = r.health();
    assert!(h.breakers["payments"].required);
    assert!(!h.breakers["search"].required);
    assert_eq!(h.events.capacity, 64);

    let api = r.get_limiter("api").unwrap().quota();
    assert_eq!(
        (api.tokens(), api.period(), api.burst()),
        (100, Duration::from_secs(1), 20)
    );

    let k = r
        .configured_keyed_limiter::<String, 256>("per_client")
        .unwrap();
    let q = k.quota(0).unwrap();
    assert_eq!(
        (q.tokens(), q.period(), q.burst()),
        (10, Duration::from_secs(60), 10)
    );
    // The configuration is what the code gets back, not a second copy.
    let again = r
        .keyed_limiter::<String, 256>(
            "per_client",
            q,
            FullPolicy::Overflow(Quota::per_second(1000).unwrap()),
        )
        .unwrap();
    assert!(Arc::ptr_eq(&k, &again));
    assert!(matches!(
        r.configured_keyed_limiter::<String, 256>("nope"),
        Err(RegistryError::NotFound {
            kind: Kind::KeyedLimiter,
            ..
        })
    ));

    let t = r.get_tracker("http").unwrap();
    assert_eq!((t.config().sample_rate, t.config().max_series), (0.25, 64));
    // Code asking for what the file declared, identically, gets it.
    assert!(Arc::ptr_eq(&p, &r.breaker("payments", c).unwrap()));
}

#[test]
fn the_same_registry_from_json() {
    let json = r#"{
        "breakers": {"payments": {"failure_rate": 50, "window": 20, "minimum_calls": 10, "open_for": "30s", "required": true}},
        "limiters": {"api": {"rate": 100, "burst": 20}},
        "trackers": {"http": {"sample_rate": 1.0}}
    }"#;
    let r = Registry::from_config(&RegistryConfig::from_json(json).unwrap()).unwrap();
    assert_eq!(
        r.get_breaker("payments").unwrap().config().failure_rate(),
        Some(50)
    );
    assert!(r.health().breakers["payments"].required);
    assert_eq!(r.get_limiter("api").unwrap().quota().burst(), 20);
    assert_eq!(r.get_tracker("http").unwrap().config().sample_rate, 1.0);
}

/// The startup error of `toml`, as one string.
fn toml_error(text: &str) -> String {
    match RegistryConfig::from_toml(text) {
        Ok(config) => Registry::from_config(&config).unwrap_err().to_string(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn invalid_values_name_their_field() {
    let cases = [
        ("[breakers.p]\nfailure_rate = 300", "breakers.p.failure_rate: must be 1..=100, got 300"),
        ("[breakers.p]\nfailure_rate = 0", "breakers.p.failure_rate: must be 1..=100, got 0"),
        ("[breakers.p]\nconsecutive_failures = 256", "breakers.p.consecutive_failures: must be 1..=255, got 256"),
        ("[breakers.p]\nfailure_rate = 5\nwindow = 65", "breakers.p.window: must be 1..=64, got 65"),
        (
            "[breakers.p]\nfailure_rate = 5\nwindow = 20\nminimum_calls = 30",
            "breakers.p.minimum_calls: must be 1..=20, got 30",
        ),
        ("[breakers.p]\nconsecutive_failures = 1\nhalf_open_permits = 64", "breakers.p.half_open_permits: must be 1..=63, got 64"),
        ("[breakers.p]\nconsecutive_failures = 1\nclose_after = 0", "breakers.p.close_after: must be 1..=63, got 0"),
        (
            "[breakers.p]\nconsecutive_failures = 1\nopen_for = \"30x\"",
            "breakers.p.open_for: must be a duration such as \"30s\" (units: us, ms, s, m, h), got \"30x\"",
        ),
        ("[breakers.p]\nopen_for = \"30s\"", "breakers.p: no trip condition: set consecutive_failures, failure_rate or slow_call_rate"),
        ("[breakers.p]\nslow_call_rate = 50", "breakers.p.slow_call_threshold: required with slow_call_rate"),
        ("[breakers.p]\nslow_call_threshold = \"1s\"", "breakers.p.slow_call_rate: required with slow_call_threshold"),
        ("[limiters.api]\nperiod = \"1s\"", "limiters.api.rate: required"),
        ("[limiters.api]\nrate = 4294967296", "limiters.api.rate: must be 1..=4294967295, got 4294967296"),
        ("[limiters.api]\nrate = 1\nburst = 0", "limiters.api.burst: must be 1..=4294967295, got 0"),
        ("[limiters.api]\nrate = 1\nperiod = \"0s\"", "limiters.api.period: quota period must be at least one microsecond"),
        ("[keyed_limiters.k]\nrate = 1\noverflow = { burst = 2 }", "keyed_limiters.k.overflow.rate: required"),
        ("[trackers.http]\nsample_rate = 2.0", "trackers.http.sample_rate: must be 0.0..=1.0, got 2"),
        ("[trackers.http]\nmax_series = 0", "trackers.http.max_series: must be 1..=4096, got 0"),
        (
            "[breakers.bad-name]\nconsecutive_failures = 1",
            "breakers.bad-name: invalid name: may hold only ASCII letters, digits and '_'",
        ),
    ];
    for (toml, expected) in cases {
        assert_eq!(toml_error(toml), expected, "{toml}");
    }
}

#[test]
fn builder_refusals_name_their_field_too() {
    // Ranges the core's builder checks (open time limits).
    let e = toml_error("[breakers.p]\nconsecutive_failures = 1\nopen_for = \"0s\"");
    assert!(
        e.starts_with("breakers.p.open_for: open_for must be above zero"),
        "{e}"
    );
    let e = toml_error(
        "[breakers.p]\nconsecutive_failures = 1\nopen_for = \"10s\"\nmax_open_for = \"5s\"",
    );
    assert!(e.starts_with("breakers.p.max_open_for: "), "{e}");
    // The half-open timeout: above zero, at most `Config::MAX_HALF_OPEN`.
    for bad in ["0s", "72m"] {
        let e = toml_error(&format!(
            "[breakers.p]\nconsecutive_failures = 1\nmax_half_open = \"{bad}\""
        ));
        assert!(
            e.starts_with("breakers.p.max_half_open: max_half_open must be above zero"),
            "{bad}: {e}"
        );
    }
    let e = toml_error("[breakers.p]\nconsecutive_failures = 1\nmax_half_open = \"soon\"");
    assert!(
        e.starts_with("breakers.p.max_half_open: must be a duration"),
        "{e}"
    );
}

#[test]
fn every_invalid_value_is_reported_at_once() {
    let config = RegistryConfig::from_toml(
        "[breakers.a]\nfailure_rate = 101\nwindow = 0\n[limiters.b]\nrate = 0\n[trackers.c]\nmax_requests = 70000\n",
    )
    .unwrap();
    let e = Registry::from_config(&config).unwrap_err();
    let paths: Vec<&str> = e
        .fields()
        .iter()
        .map(fusebox_std::registry::FieldError::path)
        .collect();
    assert_eq!(
        paths,
        [
            "breakers.a.failure_rate",
            "breakers.a.window",
            "limiters.b.rate",
            "trackers.c.max_requests"
        ]
    );
}

#[test]
fn types_and_unknown_fields_are_refused_with_their_path() {
    let e = RegistryConfig::from_toml("[limiters.api]\nrate = \"many\"").unwrap_err();
    assert_eq!(e.fields()[0].path(), "limiters.api.rate");
    let e = RegistryConfig::from_toml("[breakers.p]\nfailure_rat = 5").unwrap_err();
    assert!(e.fields()[0].path().starts_with("breakers.p"), "{e}");
    assert!(e.to_string().contains("failure_rat"), "{e}");
    let e = RegistryConfig::from_toml("[breakers.p]\nconsecutive_failures = -1").unwrap_err();
    assert_eq!(e.fields()[0].path(), "breakers.p.consecutive_failures");
    let e = RegistryConfig::from_toml("breakers = 3").unwrap_err();
    assert_eq!(e.fields()[0].path(), "breakers");
    let e = RegistryConfig::from_toml("[breakers.p\n").unwrap_err();
    assert_eq!(e.fields()[0].path(), "(toml)");
    let e = RegistryConfig::from_json("{").unwrap_err();
    assert_eq!(e.fields()[0].path(), "(json)");
    let e =
        RegistryConfig::from_json(r#"{"trackers": {"t": {"sample_rate": "all"}}}"#).unwrap_err();
    assert_eq!(e.fields()[0].path(), "trackers.t.sample_rate");
}

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn environment_variables_declare_and_override() {
    let env = vars(&[
        ("FUSEBOX__BREAKERS__PAYMENTS__FAILURE_RATE", "60"),
        ("FUSEBOX__BREAKERS__NEW__CONSECUTIVE_FAILURES", "2"),
        ("FUSEBOX__BREAKERS__NEW__OPEN_FOR", "250ms"),
        ("FUSEBOX__BREAKERS__NEW__MAX_HALF_OPEN", "3s"),
        ("FUSEBOX__BREAKERS__PAYMENTS__MAX_HALF_OPEN", "45s"),
        ("FUSEBOX__BREAKERS__NEW__REQUIRED", "true"),
        ("FUSEBOX__TRACKERS__HTTP__SAMPLE_RATE", "1"),
        ("FUSEBOX__EVENTS_CAPACITY", "8"),
        ("PATH", "/usr/bin"),
        ("fusebox__breakers__x__failure_rate", "1"), // the prefix is case-sensitive
    ]);
    let config = RegistryConfig::from_toml_with_env(FULL_TOML, env).unwrap();
    let r = Registry::from_config(&config).unwrap();
    assert_eq!(
        r.get_breaker("payments").unwrap().config().failure_rate(),
        Some(60)
    );
    assert_eq!(
        r.get_breaker("payments").unwrap().config().window(),
        20,
        "the file's other fields stay"
    );
    let new = r.get_breaker("new").unwrap();
    assert_eq!(new.config().open_for(), Duration::from_millis(250));
    assert_eq!(new.config().max_half_open(), Some(Duration::from_secs(3)));
    assert_eq!(
        r.get_breaker("payments").unwrap().config().max_half_open(),
        Some(Duration::from_secs(45)),
        "the file's 20 s overridden"
    );
    assert!(r.health().breakers["new"].required);
    assert!(r.get_breaker("x").is_none());
    assert_eq!(r.get_tracker("http").unwrap().config().sample_rate, 1.0);
    assert_eq!(r.events().capacity(), 8);

    let e = RegistryConfig::from_env_vars(vars(&[("FUSEBOX__BREAKERS__P__FAILURE_RATE", "lots")]))
        .unwrap_err();
    assert_eq!(e.fields()[0].path(), "breakers.p.failure_rate");
    let e =
        RegistryConfig::from_env_vars(vars(&[("FUSEBOX__BREAKERS__P__BOGUS", "1")])).unwrap_err();
    assert!(e.to_string().contains("bogus"), "{e}");
    let config =
        RegistryConfig::from_env_vars(vars(&[("FUSEBOX__BREAKERS__P__FAILURE_RATE", "300")]))
            .unwrap();
    assert_eq!(
        Registry::from_config(&config).unwrap_err().to_string(),
        "breakers.p.failure_rate: must be 1..=100, got 300"
    );
}

/// Environment variables are read in lowercase: an override of a breaker
/// the file names `Payments` made a second breaker `payments` and left the
/// file's at its old setting. It sets the file's entry; a name the file
/// writes twice in different cases is refused, not guessed.
#[test]
fn an_environment_override_reaches_a_name_written_with_capitals() {
    let file = "[breakers.Payments]\nfailure_rate = 50\nwindow = 20\n";
    let env = vars(&[("FUSEBOX__BREAKERS__PAYMENTS__FAILURE_RATE", "60")]);
    let config = RegistryConfig::from_toml_with_env(file, env).unwrap();
    assert_eq!(config.breakers.keys().collect::<Vec<_>>(), ["Payments"]);
    let r = Registry::from_config(&config).unwrap();
    let payments = r.get_breaker("Payments").unwrap();
    assert_eq!(payments.config().failure_rate(), Some(60));
    assert_eq!(payments.config().window(), 20);
    assert!(r.get_breaker("payments").is_none());

    let twice = "[breakers.Payments]\nwindow = 20\n[breakers.PAYMENTS]\nwindow = 30\n";
    let env = vars(&[("FUSEBOX__BREAKERS__PAYMENTS__FAILURE_RATE", "60")]);
    let e = RegistryConfig::from_toml_with_env(twice, env).unwrap_err();
    assert_eq!(e.fields()[0].path(), "breakers.payments", "{e}");
}

/// A variable's path is read in lowercase, so `FUSEBOX__BREAKERS__PAYMENTS__…`
/// names the file's `Payments` as much as its `payments`: with both in the
/// file it was applied to `payments` in silence (a guess), where a name
/// the file writes twice in different cases is to be refused.
#[test]
fn an_environment_override_of_a_name_written_in_two_cases_is_refused() {
    let file = "[breakers.Payments]\nwindow = 20\n[breakers.payments]\nwindow = 30\n";
    let env = vars(&[("FUSEBOX__BREAKERS__PAYMENTS__FAILURE_RATE", "60")]);
    let e = RegistryConfig::from_toml_with_env(file, env).unwrap_err();
    assert_eq!(e.fields()[0].path(), "breakers.payments", "{e}");
}

#[test]
fn publishing_never_blocks_and_lag_is_counted() {
    let r = Registry::builder().events_capacity(4).build();
    let ev = |i: u64| Event::Recovered {
        name: "db".into(),
        component: Component::Breaker,
        at: Instant::from_micros(i),
    };
    assert_eq!(r.events().publish(ev(0)), 0, "no subscriber: counted only");

    let mut slow = r.events().subscribe();
    let mut fast = r.events().subscribe();
    for i in 1..=10 {
        assert_eq!(r.events().publish(ev(i)), 2);
        assert_eq!(fast.try_recv(), Some(ev(i)));
    }
    // The slow one kept the newest 4 of 10 and lost 6.
    let got: Vec<Event> = std::iter::from_fn(|| slow.try_recv()).collect();
    assert_eq!(got, (7..=10).map(ev).collect::<Vec<_>>());
    assert_eq!((slow.missed(), fast.missed()), (6, 0));
    assert_eq!((r.events().published(), r.events().lagged()), (11, 6));
    let h = r.health();
    assert_eq!(
        (h.events.published, h.events.lagged, h.events.subscribers),
        (11, 6, 2)
    );
}

#[test]
fn publishing_from_many_threads_with_a_stuck_subscriber_completes() {
    let r = Arc::new(Registry::builder().events_capacity(16).build());
    let _stuck = r.events().subscribe(); // never reads
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let r = Arc::clone(&r);
            std::thread::spawn(move || {
                for i in 0..10_000 {
                    r.events().publish(Event::Rejected {
                        name: "api".into(),
                        component: Component::Limiter,
                        at: Instant::from_micros(t * 100_000 + i),
                    });
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(r.events().published(), 40_000);
}

#[tokio::test(start_paused = true)]
async fn subscribers_wait_for_events() {
    let r = Arc::new(Registry::new());
    let mut sub = r.events().subscribe();
    let publisher = Arc::clone(&r);
    tokio::spawn(async move {
        tokio::time::sleep(StdDuration::from_secs(1)).await;
        publisher.events().publish(Event::failure(
            "db",
            &"timeout talking to redis://u:pw@h",
            publisher.now(),
        ));
    });
    let got = sub.recv().await.unwrap();
    assert_eq!(
        got,
        Event::Failure {
            name: "db".into(),
            component: Component::Breaker,
            error: "timeout talking to redis://u:***@h".into(),
            at: Instant::from_secs(1),
        }
    );
}

/// A tracing event: its level and its fields, values as text.
type Logged = (tracing::Level, Vec<(String, String)>);

/// Captures tracing events.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Logged>>>);

impl Capture {
    /// The process-wide capture, installed once as the global default
    /// subscriber (a per-test `set_default` one loses events when another
    /// test thread registers the same callsite without a subscriber);
    /// tests tell their events apart by a breaker name of their own.
    fn global() -> Capture {
        static GLOBAL: std::sync::OnceLock<Capture> = std::sync::OnceLock::new();
        GLOBAL
            .get_or_init(|| {
                let capture = Capture::default();
                tracing::subscriber::set_global_default(capture.clone())
                    .expect("no other global subscriber in the test binary");
                capture
            })
            .clone()
    }
}

struct Fields(Vec<(String, String)>);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.push((field.name().to_owned(), value.to_owned()));
    }
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.0.push((field.name().to_owned(), value.to_string()));
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = Fields(Vec::new());
        event.record(&mut fields);
        self.0
            .lock()
            .unwrap()
            .push((*event.metadata().level(), fields.0));
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[tokio::test(start_paused = true)]
async fn transitions_reach_tracing_and_the_events() {
    let capture = Capture::global();
    let r = Registry::new();
    let db = r
        .breaker(
            "db_traced",
            Config::builder()
                .consecutive_failures(2)
                .open_for(Duration::from_secs(1))
                .build()
                .unwrap(),
        )
        .unwrap();
    let mut sub = r.events().subscribe();

    for _ in 0..2 {
        let now = r.now();
        if let Some(t) = db
            .try_acquire(now)
            .unwrap()
            .record(Outcome::Failure, now, Duration::ZERO)
        {
            r.transition("db_traced", t);
        }
    }
    // The core rounds the open time up to its 1.024 ms tick.
    tokio::time::sleep(StdDuration::from_millis(1_002)).await;
    let now = r.now();
    let trial = db.try_acquire(now).unwrap();
    r.transition("db_traced", trial.transition().unwrap());
    let closed = trial.record(Outcome::Success, now, Duration::ZERO).unwrap();
    r.transition("db_traced", closed);

    let events: Vec<Event> = std::iter::from_fn(|| sub.try_recv()).collect();
    let change = |from, to, ms| Event::StateChange {
        name: "db_traced".into(),
        component: Component::Breaker,
        from,
        to,
        at: Instant::from_millis(ms),
    };
    assert_eq!(
        events,
        [
            change(State::Closed, State::Open, 0),
            change(State::Open, State::HalfOpen, 1_002),
            change(State::HalfOpen, State::Closed, 1_002),
            Event::Recovered {
                name: "db_traced".into(),
                component: Component::Breaker,
                at: Instant::from_millis(1_002)
            },
        ]
    );

    let logged = capture.0.lock().unwrap().clone();
    let field = |fields: &[(String, String)], name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let rows: Vec<(tracing::Level, String, String, String, String, String)> = logged
        .iter()
        .filter(|(_, f)| field(f, "breaker") == "db_traced")
        .map(|(level, f)| {
            (
                *level,
                field(f, "from"),
                field(f, "to"),
                field(f, "failures"),
                field(f, "at"),
                field(f, "breaker"),
            )
        })
        .collect();
    let row = |level, from: &str, to: &str, at: &str| {
        (
            level,
            from.to_owned(),
            to.to_owned(),
            "2".to_owned(),
            at.to_owned(),
            "db_traced".to_owned(),
        )
    };
    assert_eq!(
        rows,
        [
            row(tracing::Level::WARN, "Closed", "Open", "0"),
            row(tracing::Level::INFO, "Open", "HalfOpen", "1002000"),
            row(tracing::Level::INFO, "HalfOpen", "Closed", "1002000"),
        ]
    );
}

#[test]
fn builder_settings_meet_the_configuration() {
    let config = RegistryConfig::from_toml(
        "[breakers.a]\nconsecutive_failures = 1\n[breakers.b]\nconsecutive_failures = 1\n",
    )
    .unwrap();
    // Without `events_capacity` in the file, the builder's stands.
    let r = Registry::builder()
        .events_capacity(32)
        .build_from_config(&config)
        .unwrap();
    assert_eq!(r.events().capacity(), 32);
    // More entries than the builder allows: named by path.
    let e = Registry::builder()
        .max_entries(1)
        .build_from_config(&config)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "breakers.b: registry full: at most 1 entries of kind breaker"
    );
}

#[test]
fn configuration_files_by_extension() {
    let dir = std::env::temp_dir();
    let id = std::process::id();
    let toml = dir.join(format!("fusebox-registry-test-{id}.toml"));
    let json = dir.join(format!("fusebox-registry-test-{id}.json"));
    let yaml = dir.join(format!("fusebox-registry-test-{id}.yaml"));
    std::fs::write(&toml, "[breakers.db]\nconsecutive_failures = 3\n").unwrap();
    std::fs::write(
        &json,
        r#"{"breakers": {"db": {"consecutive_failures": 4}}}"#,
    )
    .unwrap();
    std::fs::write(&yaml, "breakers: {}").unwrap();
    let from_toml = RegistryConfig::load(&toml);
    let from_json = RegistryConfig::load(&json);
    let from_yaml = RegistryConfig::load(&yaml);
    for path in [&toml, &json, &yaml] {
        std::fs::remove_file(path).unwrap();
    }
    assert_eq!(
        from_toml.unwrap().breakers["db"].consecutive_failures,
        Some(3)
    );
    assert_eq!(
        from_json.unwrap().breakers["db"].consecutive_failures,
        Some(4)
    );
    let e = from_yaml.unwrap_err();
    assert_eq!(e.fields()[0].path(), "(file)");
    assert!(
        e.to_string()
            .ends_with("the extension must be .toml or .json"),
        "{e}"
    );
}

#[test]
fn racing_creators_get_one_instance() {
    let r = Arc::new(Registry::new());
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let r = Arc::clone(&r);
            std::thread::spawn(move || {
                let b = r.breaker("db", consecutive(3)).unwrap();
                let l = r.limiter("api", Quota::per_second(5).unwrap()).unwrap();
                (b, l)
            })
        })
        .collect();
    let got: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    for (b, l) in &got[1..] {
        assert!(Arc::ptr_eq(b, &got[0].0));
        assert!(Arc::ptr_eq(l, &got[0].1));
    }
}
