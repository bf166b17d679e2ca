//! Hostile configuration documents: each is refused with a typed error on
//! the path at fault (or `(toml)`/`(json)` for the document itself),
//! never a panic, a stack overflow or a silent default, and no error
//! shows a secret, a raw control character or an unbounded text.

use fusebox_std::registry::{Registry, RegistryConfig, RegistryConfigError};

/// Read, validated and built: the first error on the way.
fn built(read: Result<RegistryConfig, RegistryConfigError>) -> RegistryConfigError {
    match read.and_then(|config| Registry::from_config(&config).map(drop)) {
        Ok(()) => panic!("accepted"),
        Err(e) => e,
    }
}

/// Every error is on `path`, says `what`, and is shown bounded, escaped
/// and without the secret `hunter2`.
fn refused(e: &RegistryConfigError, path: &str, what: &str) {
    let shown = e.to_string();
    assert_eq!(e.fields()[0].path(), path, "{shown}");
    assert!(e.fields()[0].message().contains(what), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(!shown.contains(char::is_control), "{shown:?}");
    assert!(
        shown.chars().count() < 2_000,
        "{} chars",
        shown.chars().count()
    );
}

/// TOML is refused past the registry's own bound (32 levels), checked
/// before the parser reads it: the parser bounds each way of nesting but
/// not their sum, and overflowed the stack (`registry::config::depth_tests`
/// in the adapter). JSON by serde_json's recursion limit.
#[test]
fn deeply_nested_documents_are_refused_by_the_parsers_limits() {
    let n = 100_000;
    let (open, close) = ("[".repeat(n), "]".repeat(n));
    for text in [
        format!("a = {open}1{close}"),
        format!("a = {}1{}", "{b=".repeat(n), "}".repeat(n)),
        format!("[{}]", vec!["a"; n].join(".")),
        format!("{} = 1", vec!["a"; n].join(".")),
    ] {
        refused(
            &built(RegistryConfig::from_toml(&text)),
            "(toml)",
            "nested deeper than 32 levels",
        );
    }
    for text in [
        format!("{open}1{close}"),
        format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n)),
    ] {
        refused(
            &built(RegistryConfig::from_json(&text)),
            "(json)",
            "recursion",
        );
    }
}

#[test]
fn duplicate_keys_are_refused_in_json_as_in_toml() {
    // Named by the path of the second one (they were `(json)`).
    let json = [
        (
            r#"{"breakers": {"a": {"window": 1, "window": 2}}}"#,
            "breakers.a.window",
        ),
        (r#"{"breakers": {}, "breakers": {}}"#, "breakers"),
        // One key once escaped: the same name.
        (r#"{"breakers": {"a": {}, "\u0061": {}}}"#, "breakers.a"),
        (
            r#"{"breakers": {"redis://u:hunter2@h": {}, "redis://u:hunter2@h": {}}}"#,
            "breakers.redis://u:***@h",
        ),
    ];
    for (text, path) in json {
        refused(
            &built(RegistryConfig::from_json(text)),
            path,
            "duplicate key",
        );
    }
    // Named by the path of the second one (they were `(toml)`).
    let toml = [
        (
            "[breakers.a]\nwindow = 1\nwindow = 2\n",
            "breakers.a.window",
        ),
        (
            "[breakers.a]\nwindow = 1\n[breakers.a]\nrequired = true\n",
            "breakers.a",
        ),
        (
            "[breakers.a]\nwindow = 1\n[breakers.\"a\"]\nrequired = true\n",
            "breakers.a",
        ),
    ];
    for (text, path) in toml {
        refused(
            &built(RegistryConfig::from_toml(text)),
            path,
            "duplicate key",
        );
    }
}

#[test]
fn json_numbers_out_of_every_range_are_refused_on_their_path() {
    let json = [
        (
            r#"{"breakers": {"a": {"window": 18446744073709551616}}}"#,
            "breakers.a.window",
            // As written (was `floating point `1.8446744073709552e19``).
            "got 18446744073709551616",
        ),
        (
            r#"{"breakers": {"a": {"window": -1}}}"#,
            "breakers.a.window",
            "-1",
        ),
        (
            r#"{"breakers": {"a": {"window": 1.0}}}"#,
            "breakers.a.window",
            "floating point",
        ),
        (
            r#"{"breakers": {"a": {"window": 1e400}}}"#,
            "(json)",
            "out of range",
        ),
        (
            r#"{"breakers": {"a": {"consecutive_failures": 256}}}"#,
            "breakers.a.consecutive_failures",
            "1..=255",
        ),
        (
            r#"{"limiters": {"a": {"rate": 4294967296}}}"#,
            "limiters.a.rate",
            "1..=4294967295",
        ),
        (
            r#"{"limiters": {"a": {"rate": 1, "period": "18446744073709551615us"}}}"#,
            "limiters.a",
            "out of range",
        ),
        (
            r#"{"keyed_limiters": {"a": {"rate": 1, "period": "99999999999999999999h"}}}"#,
            "keyed_limiters.a.period",
            "too long",
        ),
        (
            r#"{"bulkheads": {"a": {"max_concurrent": 1, "max_queued": 9223372036854775807}}}"#,
            "bulkheads.a.max_queued",
            "0..=",
        ),
        (
            r#"{"trackers": {"a": {"max_requests": 65536, "max_stages_per_request": 1024}}}"#,
            "trackers.a.max_stages_per_request",
            "at most",
        ),
        (
            r#"{"trackers": {"a": {"sample_rate": -0.5}}}"#,
            "trackers.a.sample_rate",
            "0.0..=1.0",
        ),
        (
            r#"{"events_capacity": 9223372036854775807}"#,
            "events_capacity",
            "at most",
        ),
        (
            r#"{"breakers": {"a": {"consecutive_failures": 1, "max_half_open": "18446744073709551615us"}}}"#,
            "breakers.a.max_half_open",
            "at most",
        ),
    ];
    for (text, path, what) in json {
        refused(&built(RegistryConfig::from_json(text)), path, what);
    }
}

#[test]
fn toml_and_environment_numbers_out_of_range_are_refused_on_their_path() {
    let toml = [
        (
            "[breakers.a]\nwindow = 99999999999999999999\n",
            "breakers.a.window",
            "(TOML's range), got 99999999999999999999",
        ),
        ("[breakers.a]\nwindow = -1\n", "breakers.a.window", "-1"),
        (
            "events_capacity = 18446744073709551615\n",
            "events_capacity",
            "(TOML's range), got 18446744073709551615",
        ),
        (
            "[trackers.t]\nsample_rate = -inf\n",
            "trackers.t.sample_rate",
            "finite",
        ),
        (
            "[breakers.a]\nwindow = 1979-05-27\n",
            "breakers.a.window",
            "expected u64",
        ),
    ];
    for (text, path, what) in toml {
        refused(&built(RegistryConfig::from_toml(text)), path, what);
    }
    let env = [
        (
            "FUSEBOX__BREAKERS__A__WINDOW",
            "99999999999999999999",
            "breakers.a.window",
            // As written (was `floating point `1e20``).
            "got 99999999999999999999",
        ),
        (
            "FUSEBOX__TRACKERS__A__SAMPLE_RATE",
            "inf",
            "trackers.a.sample_rate",
            "string",
        ),
        (
            "FUSEBOX__TRACKERS__A__SAMPLE_RATE",
            "1e999",
            "trackers.a.sample_rate",
            "string",
        ),
        ("FUSEBOX__EVENTS_CAPACITY", "-1", "events_capacity", "-1"),
    ];
    for (var, value, path, what) in env {
        let read = RegistryConfig::from_env_vars([(var.to_owned(), value.to_owned())]);
        refused(&built(read), path, what);
    }
}

#[test]
fn hostile_names_and_strings_are_shown_escaped_cut_and_redacted() {
    let huge = "x".repeat(1 << 20);
    let cases = [
        (
            r#"{"breakers": {"a\u0000\nb": {"consecutive_failures": 1}}}"#.to_owned(),
            "breakers.a\\0\\nb",
            "invalid name",
        ),
        (
            r#"{"breakers": {"redis://u:hunter2@h": {"consecutive_failures": 1}}}"#.to_owned(),
            "breakers.redis://u:***@h",
            "invalid name",
        ),
        (
            r#"{"breakers": {"a": {"redis://u:hunter2@h": 1}}}"#.to_owned(),
            "breakers.a.redis://u:***@h",
            "unknown field",
        ),
        (
            r#"{"breakers": {"a": {"window": "redis://u:hunter2@h"}}}"#.to_owned(),
            "breakers.a.window",
            "redis://u:***@h",
        ),
        (
            r#"{"breakers": {"a": {"required": "token=hunter2"}}}"#.to_owned(),
            "breakers.a.required",
            "token=***",
        ),
        (
            r#"{"breakers": {"a": {"consecutive_failures": 1, "open_for": "password=hunter2\r\n"}}}"#.to_owned(),
            "breakers.a.open_for",
            "password=***",
        ),
        (
            format!(r#"{{"breakers": {{"a": {{"consecutive_failures": 1, "open_for": "{huge}"}}}}}}"#),
            "breakers.a.open_for",
            "must be a duration",
        ),
        (
            format!(r#"{{"breakers": {{"a": {{"{huge}": 1}}}}}}"#),
            &format!("breakers.a.{}…", "x".repeat(512 - "breakers.a.".len())),
            "unknown field",
        ),
    ];
    for (text, path, what) in &cases {
        let e = built(RegistryConfig::from_json(text));
        refused(&e, path, what);
    }
    // TOML syntax errors quote no text of the document; one in a value
    // is named by its key.
    for (text, path) in [
        (
            "[breakers.a]\nopen_for = \"redis://u:hunter2@h\n",
            "breakers.a.open_for",
        ),
        ("redis://u:hunter2@h = 1\n", "(toml)"),
        ("a = redis://u:hunter2@h\n", "a"),
        ("a = 'token=hunter2\n", "a"),
    ] {
        refused(&built(RegistryConfig::from_toml(text)), path, " at line ");
    }
    // An environment variable's name is shown as a path, escaped.
    let read = RegistryConfig::from_env_vars([(
        "FUSEBOX__BREAKERS__A\nB__CONSECUTIVE_FAILURES".to_owned(),
        "1".to_owned(),
    )]);
    refused(&built(read), "breakers.a\\nb", "invalid name");
}

/// A document of many invalid entries (a generated file gone wrong, a
/// unit read as another) was one error per entry in its `Display`, the
/// line a service logs before it exits: 20 000 breakers with
/// `failure_rate = 300` gave a message of 1 108 888 characters (found by
/// a hostile review; entries past the entry limit were already one error
/// per table, for this reason). The `Display` now shows the first
/// errors and counts the rest; `fields()` still has every one.
#[test]
fn many_invalid_entries_are_shown_bounded_and_counted() {
    use std::fmt::Write as _;
    let mut text = String::new();
    for i in 0..20_000 {
        write!(text, "[breakers.b{i}]\nfailure_rate = 300\n").unwrap();
    }
    let config = RegistryConfig::from_toml(&text).unwrap();
    let err = config.validate().unwrap_err();
    assert_eq!(err.fields().len(), 20_000);
    let shown = err.to_string();
    assert!(
        shown.chars().count() < 8_000,
        "{} chars",
        shown.chars().count()
    );
    assert!(
        shown.starts_with("breakers.b0.failure_rate: must be 1..=100, got 300; "),
        "{}",
        &shown[..200]
    );
    assert_eq!(
        shown.matches("must be 1..=100").count(),
        RegistryConfigError::MAX_SHOWN
    );
    let rest = 20_000 - RegistryConfigError::MAX_SHOWN;
    assert!(
        shown.ends_with(&format!("; and {rest} more invalid settings")),
        "{}",
        &shown[shown.len().saturating_sub(200)..]
    );
    // A few errors are all shown, as before.
    let few =
        RegistryConfig::from_toml("[breakers.a]\nfailure_rate = 300\n[limiters.b]\nburst = 0\n")
            .unwrap()
            .validate()
            .unwrap_err();
    assert_eq!(
        few.to_string(),
        "breakers.a.failure_rate: must be 1..=100, got 300; limiters.b.rate: required; limiters.b.burst: must be 1..=4294967295, got 0"
    );
}

/// The `Debug` form is bounded too: it is what a service prints when its
/// `main` returns the error (`fn main() -> Result<(), Box<dyn Error>>`
/// prints `Error: {:?}`) or `expect`s the configuration, the one line it
/// logs before it exits. Found by a hostile review: `MAX_SHOWN` bounded
/// only `Display`, and the derived `Debug` of 20 000 invalid breakers
/// printed every one of them (megabytes).
#[test]
fn many_invalid_entries_are_debugged_bounded_and_counted() {
    use std::fmt::Write as _;
    let mut text = String::new();
    for i in 0..20_000 {
        write!(text, "[breakers.b{i}]\nfailure_rate = 300\n").unwrap();
    }
    let err = RegistryConfig::from_toml(&text)
        .unwrap()
        .validate()
        .unwrap_err();
    let debugged = format!("{err:?}");
    assert!(debugged.len() < 8_000, "{} bytes", debugged.len());
    let shown = &err.fields()[..RegistryConfigError::MAX_SHOWN];
    assert_eq!(
        debugged,
        format!(
            "RegistryConfigError {{ errors: {shown:?}, more: {} }}",
            20_000 - RegistryConfigError::MAX_SHOWN
        )
    );
    // A few errors are all shown, as the derived form did.
    let few = RegistryConfig::from_toml("[breakers.a]\nfailure_rate = 300\n")
        .unwrap()
        .validate()
        .unwrap_err();
    assert_eq!(
        format!("{few:?}"),
        format!("RegistryConfigError {{ errors: {:?} }}", few.fields())
    );
}
