//! A hostile review of the observability parts: the tracker, the events
//! channel, the health monitor, the Prometheus text and the registry's
//! configuration, with inputs a careless or hostile user would give.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use fusebox_std::monitor::{
    AlertThresholds, CheckError, CheckSpec, FnCheck, HealthMonitor, RecoveryAction, RecoveryRule,
};
use fusebox_std::registry::{FieldError, RegistryConfig};
use fusebox_std::tracker::OVERFLOW;
use fusebox_std::{Tracker, TrackerConfig};

/// A monitor's event capacity is a plain `usize`: one the broadcast
/// channel cannot hold must not panic `try_spawn` (documented to fail
/// only outside a runtime), as `Events::new` bounds its own.
#[tokio::test(start_paused = true)]
async fn a_huge_monitor_event_capacity_does_not_panic() {
    let spawned = std::panic::catch_unwind(|| {
        HealthMonitor::new()
            .event_capacity(usize::MAX)
            .try_spawn()
            .map(|_| ())
    });
    assert!(matches!(spawned, Ok(Ok(()))), "a panic: {spawned:?}");
}

/// An alert window of `usize::MAX` runs is accepted by the builder
/// ("at least 1"): spawning must not panic preallocating it.
#[tokio::test(start_paused = true)]
async fn a_huge_alert_window_does_not_panic_at_spawn() {
    let spawned = std::panic::catch_unwind(|| {
        HealthMonitor::new()
            .check(
                CheckSpec::new("c", FnCheck::new(|| async { Ok(None) })).alerts(
                    AlertThresholds::new()
                        .window(usize::MAX)
                        .min_success_rate(50),
                ),
            )
            .try_spawn()
            .map(|_| ())
    });
    assert!(matches!(spawned, Ok(Ok(()))), "a panic: {spawned:?}");
}

/// A recovery cooldown of zero ("any duration is safe") must not turn the
/// recovery task into a loop that never waits: on paused time, many
/// attempts at one instant mean the task never lets the clock move (and
/// on real time, that it burns a core running the action).
#[tokio::test(start_paused = true)]
async fn a_zero_recovery_cooldown_does_not_spin() {
    let at_once = Arc::new(tokio::sync::Notify::new());
    let seen = Arc::new(std::sync::Mutex::new((None, 0_usize)));
    let action = {
        let (at_once, seen) = (Arc::clone(&at_once), Arc::clone(&seen));
        RecoveryAction::new("spin", move || {
            let (at_once, seen) = (Arc::clone(&at_once), Arc::clone(&seen));
            async move {
                let now = tokio::time::Instant::now();
                let mut s = seen.lock().unwrap();
                if s.0 == Some(now) {
                    s.1 += 1;
                } else {
                    *s = (Some(now), 1);
                }
                if s.1 == 100 {
                    at_once.notify_one();
                }
                Err::<(), _>("still down")
            }
        })
    };
    let monitor = HealthMonitor::new()
        .check(
            CheckSpec::new(
                "down",
                FnCheck::new(|| async { Err(CheckError::other("no")) }),
            )
            .interval(Duration::from_secs(1))
            .recovery(RecoveryRule::new(1, action).cooldown(Duration::ZERO)),
        )
        .spawn();
    tokio::select! {
        () = at_once.notified() => panic!("100 recovery attempts at one instant"),
        () = tokio::time::sleep(Duration::from_millis(50)) => {}
    }
    monitor.stop().await;
}

/// Request summaries keep at most `max_requests` records, and a request id
/// longer than `MAX_NAME_LEN` gets none; the operation and stage names a
/// summary keeps must be bounded too, or a client-chosen name is held
/// `max_requests × max_stages_per_request` times at any length.
#[test]
fn request_summaries_do_not_keep_unbounded_names() {
    let tracker = Tracker::new(TrackerConfig {
        sample_rate: 1.0,
        ..TrackerConfig::default()
    })
    .unwrap();
    let long = "x".repeat(100_000);
    let op = tracker.track_request("req", &long);
    drop(op.track_stage(&long));
    let short = tracker.track_request("req2", "op");
    drop(short.track_stage(&long));
    drop(short);
    drop(op);
    for id in ["req", "req2"] {
        let summary = tracker.execution_summary(id).unwrap();
        assert!(
            summary.operation.len() <= TrackerConfig::MAX_NAME_LEN,
            "{id}: operation of {} bytes",
            summary.operation.len()
        );
        for stage in &summary.stages {
            assert!(
                stage.stage.len() <= TrackerConfig::MAX_NAME_LEN,
                "{id}: stage of {} bytes",
                stage.stage.len()
            );
        }
    }
    // The series agree: the long names went to the overflow series.
    assert_eq!(tracker.stats()[OVERFLOW].calls, 3);
}

/// Names in a configuration error are shown escaped and cut (as the
/// invalid-name error does), never raw: a name's newline must not forge a
/// log line, whichever of its fields is wrong.
#[test]
fn config_errors_never_show_a_raw_name() {
    let name = format!("evil\nFAKE LOG LINE {}", "y".repeat(10_000));
    for table in ["breakers", "trackers"] {
        let field = if table == "breakers" {
            "failure_rate = 300"
        } else {
            "sample_rate = 2.0"
        };
        let toml = format!("[{table}.{name:?}]\n{field}\n");
        let config = RegistryConfig::from_toml(&toml).unwrap();
        let err = config.validate().unwrap_err();
        for f in err.fields() {
            assert!(!f.path().contains('\n'), "{table}: a raw newline in a path");
            assert!(
                f.path().len() < 1_000,
                "{table}: a path of {} bytes",
                f.path().len()
            );
        }
    }
    // Errors from reading the document: an unknown key, a wrong value,
    // under the name or in a field's place.
    let documents = [
        format!("[breakers.{name:?}]\nbogus = 1\n"),
        format!("[breakers.a]\n{name:?} = 1\n"),
        format!("{name:?} = 1\n"),
        format!("[limiters.a]\nperiod = {name:?}\n"),
        format!("[limiters.a]\nrate = {name:?}\n"),
    ];
    for (i, toml) in documents.iter().enumerate() {
        let err = RegistryConfig::from_toml(toml)
            .and_then(|c| c.validate())
            .unwrap_err();
        for f in err.fields() {
            assert!(
                !f.path().contains('\n'),
                "document {i}: a raw newline in a path"
            );
            assert!(
                !f.message().contains('\n'),
                "document {i}: a raw newline in a message"
            );
            assert!(
                f.path().len() + f.message().len() < 2_000,
                "an error of {} bytes",
                f.to_string().len()
            );
        }
    }
}

/// An environment variable's name sets a path, one table per `__`
/// segment: a name of many segments must be refused (or read) without
/// overflowing the stack, building or dropping the nested tables.
#[test]
fn a_deeply_nested_environment_path_does_not_overflow_the_stack() {
    let key = format!("FUSEBOX__BREAKERS__A{}", "__X".repeat(40_000));
    let read = std::thread::Builder::new()
        .stack_size(8 << 20)
        .spawn(move || RegistryConfig::from_env_vars([(key, "1".to_owned())]).is_err())
        .unwrap()
        .join();
    assert!(matches!(read, Ok(true)));
}

/// A deeply nested TOML or JSON document is a typed error, not a stack
/// overflow.
#[test]
fn a_deeply_nested_document_is_an_error() {
    let read = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(|| {
            let toml = format!("x = {}1{}\n", "[".repeat(50_000), "]".repeat(50_000));
            let json = format!("{{\"x\": {}1{}}}", "[".repeat(50_000), "]".repeat(50_000));
            let inline = format!("x = {}1{}\n", "{a=".repeat(50_000), "}".repeat(50_000));
            (
                RegistryConfig::from_toml(&toml).is_err(),
                RegistryConfig::from_json(&json).is_err(),
                RegistryConfig::from_toml(&inline).is_err(),
            )
        })
        .unwrap()
        .join();
    assert!(matches!(read, Ok((true, true, true))));
}

/// A key given twice is an error in a JSON document as it is in TOML
/// (which refuses it), never a silent "the last one wins".
#[test]
fn a_duplicate_key_is_refused_in_json_as_in_toml() {
    assert!(RegistryConfig::from_toml("[limiters.api]\nrate = 1\nrate = 1000\n").is_err());
    for json in [
        r#"{"limiters": {"api": {"rate": 1, "rate": 1000}}}"#,
        r#"{"limiters": {"api": {"rate": 1}}, "limiters": {"api": {"rate": 1000}}}"#,
        r#"{"events_capacity": 1, "events_capacity": 2}"#,
    ] {
        let read = RegistryConfig::from_json(json);
        assert!(read.is_err(), "{json}: {read:?}");
    }
}

/// A secret longer than the error's cut (a cloud token used as a Redis
/// password runs to hundreds or thousands of characters) must be masked
/// whole: redacted before it is cut, or the cut leaves a URL without its
/// `@` that no longer reads as one, and the password's first hundreds of
/// characters go into the error (found by a hostile review).
#[test]
fn a_long_secret_is_never_shown_in_a_config_error() {
    let password = format!("Tok{}", "s3cr3t".repeat(200));
    let url = format!("rediss://default:{password}@cache.example.com:6380");
    let var = |key: String, value: &str| [(key, value.to_owned())];
    let attempts = [
        (
            "wrong type, TOML",
            RegistryConfig::from_toml(&format!("[limiters.api]\nrate = {url:?}\n")),
        ),
        (
            "wrong type, JSON",
            RegistryConfig::from_json(&format!(
                r#"{{"limiters": {{"api": {{"rate": {url:?}}}}}}}"#
            )),
        ),
        (
            "unknown field",
            RegistryConfig::from_toml(&format!("[limiters.api]\n{url:?} = 1\n")),
        ),
        (
            "wrong type, environment",
            RegistryConfig::from_env_vars(var("FUSEBOX__LIMITERS__API__RATE".to_owned(), &url)),
        ),
        (
            "unknown field, environment",
            RegistryConfig::from_env_vars(var(format!("FUSEBOX__LIMITERS__API__{url}"), "1")),
        ),
    ];
    // Any 16 characters of the password, in either case (an environment
    // path is lowercased).
    let pieces: Vec<String> = (0..password.len() - 16)
        .map(|i| password[i..i + 16].to_ascii_lowercase())
        .collect();
    for (what, read) in attempts {
        let err = read.expect_err(what);
        let shown = format!("{err} {err:?}").to_ascii_lowercase();
        let leak = pieces.iter().find(|p| shown.contains(p.as_str()));
        assert!(leak.is_none(), "{what}: the password shows in {shown:?}");
        assert!(shown.contains("***"), "{what}: masked");
    }
}

/// A TOML syntax error is shown as serde_json's are, on one line and
/// bounded: the TOML crate's report quotes the whole offending line (a
/// line of 100 000 bytes gave an error of 200 000) with its raw control
/// characters (a bare carriage return rewrites the log line it lands in).
#[test]
fn a_toml_syntax_error_is_one_bounded_line() {
    let documents = [
        (
            format!("[limiters.api]\nrate = 1 {}\n", "x".repeat(100_000)),
            "limiters.api.rate",
        ),
        // A bare carriage return is an error of the lexer: no key to name.
        (
            "[limiters.api]\nrate = 1\rFAKE LOG LINE\n".to_owned(),
            "(toml)",
        ),
        (
            "[limiters.api]\nrate = redis://u:hunter2@h\n".to_owned(),
            "limiters.api.rate",
        ),
    ];
    for (toml, path) in &documents {
        let err = RegistryConfig::from_toml(toml).unwrap_err();
        let text = err.to_string();
        // An error in a value is named by its key (was `(toml)`).
        assert_eq!(err.fields()[0].path(), *path, "{text}");
        assert!(text.len() < 1_000, "an error of {} bytes", text.len());
        assert!(!text.contains(char::is_control), "{text:?}");
        assert!(text.contains("line 2"), "{text:?}");
        assert!(!text.contains("hunter2"), "{text:?}");
    }
}

/// Two environment variables that name one field (their paths are
/// lowercased, so they may differ in case only), or a field and a table
/// above it, are an error, as a key given twice in a document is: never
/// a silent "the last one wins", which for variables means whichever the
/// environment happens to list last.
#[test]
fn two_environment_variables_for_one_field_are_refused() {
    let pairs = [
        [
            ("FUSEBOX__LIMITERS__API__RATE", "1"),
            ("FUSEBOX__limiters__api__rate", "1000"),
        ],
        [
            ("FUSEBOX__LIMITERS__API__RATE", "1"),
            ("FUSEBOX__LIMITERS__API", "7"),
        ],
    ];
    for pair in pairs {
        for order in [[0, 1], [1, 0]] {
            let vars = order.map(|i| (pair[i].0.to_owned(), pair[i].1.to_owned()));
            let read = RegistryConfig::from_env_vars(vars.clone());
            let err = read.expect_err(&format!("{vars:?}"));
            assert!(err.to_string().contains("limiters.api"), "{err}");
        }
    }
    // One variable per field, the document's fields overridden: fine.
    let config = RegistryConfig::from_toml_with_env(
        "[limiters.api]\nrate = 5\n",
        [
            ("FUSEBOX__LIMITERS__API__RATE".to_owned(), "1".to_owned()),
            ("FUSEBOX__LIMITERS__API__BURST".to_owned(), "2".to_owned()),
        ],
    )
    .unwrap();
    assert_eq!(
        (config.limiters["api"].rate, config.limiters["api"].burst),
        (Some(1), Some(2))
    );
}

/// Reading the process's environment must not panic when some variable,
/// of this program or any other, is not Unicode (`std::env::vars` panics
/// then): the variables that are not fusebox's are none of its business,
/// and one of fusebox's that is not Unicode is an error. Checked in a
/// child process of this test binary, started with such an environment.
#[cfg(unix)]
#[test]
fn a_variable_that_is_not_unicode_is_no_panic() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    const CHILD: &str = "FUSEBOX_TEST_NOT_UNICODE_CHILD";
    let bad = OsStr::from_bytes(b"caf\xe9");
    if std::env::var_os(CHILD).is_some() {
        let config = std::panic::catch_unwind(RegistryConfig::from_env);
        let path = std::env::temp_dir().join(format!("fusebox-nu-{}.toml", std::process::id()));
        std::fs::write(&path, "[limiters.api]\nrate = 10\n").unwrap();
        let loaded = std::panic::catch_unwind(|| RegistryConfig::load(&path));
        std::fs::remove_file(&path).unwrap();
        let (config, loaded) = (config.expect("no panic"), loaded.expect("no panic"));
        if std::env::var_os("FUSEBOX__LIMITERS__API__PERIOD").is_some() {
            // fusebox's own variable is not Unicode: an error on its path.
            for read in [config, loaded] {
                let err = read.and_then(|c| c.validate()).unwrap_err();
                let paths: Vec<&str> = err.fields().iter().map(FieldError::path).collect();
                assert!(paths.contains(&"limiters.api.period"), "{err}");
            }
        } else {
            assert_eq!(config.unwrap(), RegistryConfig::default());
            assert_eq!(loaded.unwrap().limiters["api"].rate, Some(10));
        }
        return;
    }
    for var in ["SOME_OTHER_PROGRAM", "FUSEBOX__LIMITERS__API__PERIOD"] {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap());
        // Only the variable under test configures fusebox in the child.
        for (key, _) in std::env::vars_os() {
            if key.as_bytes().starts_with(b"FUSEBOX__") {
                child.env_remove(key);
            }
        }
        let out = child
            .arg("--exact")
            .arg(common::harness_name(
                module_path!(),
                "a_variable_that_is_not_unicode_is_no_panic",
            ))
            .args(["--nocapture", "--test-threads=1"])
            .env(CHILD, "1")
            .env(var, bad)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{var}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains("1 passed"),
            "{var}: the child ran the check: {text}"
        );
    }
}

/// A keyed limiter's quota is checked at startup against the keyed
/// limiter's own range (its slots keep a narrower time word than a token
/// bucket), as every other setting is: a configuration `from_config`
/// accepts never fails later, at the first `configured_keyed_limiter`.
#[test]
fn a_keyed_limiter_out_of_its_range_is_refused_at_startup() {
    let specs = [
        "rate = 1\nperiod = \"1000h\"\nburst = 100000",
        "rate = 1\nperiod = \"100000h\"",
        "rate = 1\nperiod = \"10000h\"\nburst = 4294967295",
        "rate = 10\nperiod = \"1s\"\nburst = 20",
    ];
    let mut outcomes = Vec::new();
    for spec in specs {
        let config = RegistryConfig::from_toml(&format!("[keyed_limiters.k]\n{spec}\n")).unwrap();
        let Ok(registry) = fusebox_std::Registry::from_config(&config) else {
            let err = fusebox_std::Registry::from_config(&config).unwrap_err();
            assert!(
                err.fields()[0].path().starts_with("keyed_limiters.k"),
                "{err}"
            );
            outcomes.push(false);
            continue;
        };
        let built = registry.configured_keyed_limiter::<u64, 8>("k");
        assert!(
            built.is_ok(),
            "{spec}: accepted at startup, refused at use: {built:?}"
        );
        outcomes.push(true);
    }
    // A burst of 10^5 at one token per 1000 h spans 3.6·10^14 µs, past
    // the keyed range (2^46 ≈ 7·10^13 scaled units): refused. An ordinary
    // quota is built.
    assert_eq!((outcomes[0], outcomes[3]), (false, true));
}

/// The entry limit holds for the keyed limiters a configuration declares
/// as for every other kind: at startup, with their paths, not at the
/// first `configured_keyed_limiter` past the limit.
#[test]
fn keyed_limiters_past_the_entry_limit_are_refused_at_startup() {
    let config = RegistryConfig::from_toml(
        "[keyed_limiters.a]\nrate = 1\n[keyed_limiters.b]\nrate = 1\n[limiters.c]\nrate = 1\n[limiters.d]\nrate = 1\n",
    )
    .unwrap();
    let built = fusebox_std::Registry::builder()
        .max_entries(1)
        .build_from_config(&config);
    let err = match built {
        Ok(registry) => {
            let a = registry.configured_keyed_limiter::<u64, 8>("a").map(drop);
            let b = registry.configured_keyed_limiter::<u64, 8>("b").map(drop);
            panic!("accepted at startup; at use: a {a:?}, b {b:?}");
        }
        Err(err) => err,
    };
    let paths: Vec<&str> = err.fields().iter().map(FieldError::path).collect();
    assert_eq!(paths, ["limiters.d", "keyed_limiters.b"], "{err}");
    // Within the limit, both are built.
    let registry = fusebox_std::Registry::builder()
        .max_entries(2)
        .build_from_config(&config)
        .unwrap();
    for name in ["a", "b"] {
        registry.configured_keyed_limiter::<u64, 8>(name).unwrap();
    }
}

/// What `f` logs at debug level and above (see [`common::logs::logged`]).
fn logged(f: impl FnOnce()) -> String {
    common::logs::logged(f).1
}

/// A check name, recovery action name or check error is free text: one
/// holding a newline wrote a second, forged line into the log (the
/// monitor logged names with `%`, which `tracing-subscriber`'s fmt layer
/// writes raw). Every event stays one line, with the newline escaped.
#[test]
fn a_name_with_a_newline_cannot_forge_a_log_line() {
    let forged = "db\nWARN forged: breaker opened";
    let log = logged(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async {
            let failing = || FnCheck::new(|| async { Err(CheckError::other("down\nWARN forged")) });
            let handle = HealthMonitor::new()
                .check(
                    CheckSpec::new(forged, failing())
                        .interval(Duration::from_secs(1))
                        .recovery(RecoveryRule::new(
                            1,
                            RecoveryAction::new(forged, || async {
                                Err::<(), _>("no\nWARN forged")
                            }),
                        )),
                )
                .spawn();
            tokio::time::sleep(Duration::from_secs(10)).await;
            assert!(!handle.status().checks.is_empty());
        });
    });
    assert!(log.contains("health changed"), "{log}");
    assert!(log.contains("recovery attempted"), "{log}");
    assert!(log.contains("check ran"), "{log}");
    for line in log.lines() {
        assert!(
            !line.trim_start().starts_with("WARN forged"),
            "a forged line:\n{log}"
        );
    }
    assert!(
        log.contains(r"db\nWARN forged"),
        "the name, escaped:\n{log}"
    );
}

/// A check whose `target` panics (a user's implementation) panicked
/// `try_spawn`, documented to fail only outside a runtime. It has no
/// target, and runs.
#[tokio::test(start_paused = true)]
async fn a_panicking_check_target_does_not_panic_the_monitor() {
    struct Odd;
    impl fusebox_std::monitor::HealthCheck for Odd {
        async fn check(&self) -> Result<Option<String>, CheckError> {
            Ok(None)
        }
        fn target(&self) -> Option<String> {
            panic!("no target")
        }
    }
    let spawned = std::panic::catch_unwind(|| {
        HealthMonitor::new()
            .check(CheckSpec::new("odd", Odd))
            .try_spawn()
    });
    let handle = spawned.expect("no panic").expect("a runtime");
    tokio::time::sleep(Duration::from_millis(10)).await;
    let status = handle.status();
    assert_eq!(status.checks[0].target, None);
    assert_eq!(status.checks[0].runs, 1);
}

/// `Registry::transition` (public, and what every registry breaker policy
/// and layer reports through) logged its name raw (`breaker = name`), the
/// one free-text field left out of `Redacted`: a name holding a URL showed
/// its password in the log, where the same transition logged without a
/// registry (`log_transition`) hid it.
#[test]
fn a_registry_transition_logs_its_name_redacted() {
    use fusebox::breaker::{Config, Outcome};
    let log = logged(|| {
        let registry = fusebox_std::Registry::new();
        let config = Config::builder().consecutive_failures(1).build().unwrap();
        let breaker = registry.breaker("db", config).unwrap();
        let now = registry.now();
        let permit = breaker.try_acquire(now).unwrap();
        let t = permit
            .record(Outcome::Failure, now, fusebox::Duration::ZERO)
            .expect("opened");
        registry.transition("https://ops:s3cret@db.internal/x", t);
    });
    assert!(log.contains("breaker opened"), "{log}");
    assert!(!log.contains("s3cret"), "the password, logged:\n{log}");
    assert!(log.contains("https://ops:***@db.internal/x"), "{log}");
}

/// A router built without a bearer token says so once, in the log: a
/// deployment that forgot its `FUSEBOX_HTTP_TOKEN` serves its detailed
/// report to anyone, and its log is where it can find out. With a token,
/// nothing is said, and the token itself never is.
#[test]
fn a_router_without_a_token_says_its_details_are_open() {
    use fusebox_std::http::{router, HttpOptions};

    let open = logged(|| {
        drop(router(
            Arc::new(fusebox_std::Registry::new()),
            HttpOptions::default(),
        ));
    });
    assert_eq!(open.matches("no bearer token").count(), 1, "{open}");
    assert!(open.contains("INFO"), "{open}");
    let token = "a-secret-token-0123456789";
    let options = HttpOptions::builder().bearer_token(token).build().unwrap();
    let guarded = logged(|| drop(router(Arc::new(fusebox_std::Registry::new()), options)));
    assert!(!guarded.contains("no bearer token"), "{guarded}");
    assert!(!guarded.contains(token), "{guarded}");
}
