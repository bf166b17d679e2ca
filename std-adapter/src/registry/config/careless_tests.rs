//! A careless operator's configuration file and environment: every
//! mistake is one typed error on its path (with its line where the
//! parser gives one), shown without a secret, and never a panic
//! (sound-but-checked: these read as documented).

use crate::registry::RegistryConfig;

const PASSWORD: &str = "hunter2";

/// The error of `text` with `vars` over it, read then validated, as one
/// line, checked to be a single error, free of the password, and no
/// panic.
fn error_of(text: &str, vars: &[(&str, &str)]) -> String {
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let read = std::panic::catch_unwind(|| {
        RegistryConfig::from_toml_with_env(text, vars).and_then(|c| c.validate())
    });
    let err = read
        .unwrap_or_else(|_| panic!("a panic on {text:?}"))
        .expect_err(text);
    assert_eq!(err.fields().len(), 1, "{err}");
    let shown = err.to_string();
    assert!(!shown.contains(PASSWORD), "{shown}");
    assert!(!err.fields()[0].path().is_empty(), "{shown}");
    shown
}

/// Each file of `cases` read (no environment) fails with one error whose
/// text starts with the case's expectation.
fn expect_errors(cases: &[(String, &str)]) {
    for (text, expected) in cases {
        let shown = error_of(text, &[]);
        assert!(
            shown.starts_with(expected),
            "{text:?}\n  got {shown}\n want {expected}"
        );
    }
}

#[test]
fn mistakes_in_the_file_are_named_by_path() {
    let breaker = "[breakers.a]\nconsecutive_failures = 1\n";
    let duration = |v: &str| format!("{breaker}open_for = {v}\n");
    let must = |got: &str| {
        format!("breakers.a.open_for: must be a duration such as \"30s\" (units: us, ms, s, m, h), got \"{got}\"")
    };
    let cases = [
        // Typos in keys and table names.
        (
            "[breakers.a]\nfailur_rate = 5\n".to_owned(),
            "breakers.a.failur_rate: unknown field `failur_rate`, expected one of",
        ),
        (
            "[breaker.a]\nfailure_rate = 5\n".to_owned(),
            "breaker: unknown field `breaker`, expected one of",
        ),
        (
            "[limiters.a]\nrate = 1\nwindow = 5\n".to_owned(),
            "limiters.a.window: unknown field `window`, expected one of `rate`, `period`, `burst`",
        ),
        // Units and their spellings.
        (duration("\"30S\""), &must("30S")),
        (duration("\"30sec\""), &must("30sec")),
        (duration("\"1d\""), &must("1d")),
        (duration("\"1.5s\""), &must("1.5s")),
        (duration("\"-5s\""), &must("-5s")),
        (duration("\"\""), &must("")),
        (
            duration("30"),
            "breakers.a.open_for: invalid type: integer `30`, expected a string",
        ),
        (
            duration("\"0s\""),
            "breakers.a.open_for: open_for must be above zero",
        ),
        // Numbers where integers go.
        (
            "[limiters.a]\nrate = -5\n".to_owned(),
            "limiters.a.rate: invalid value: integer `-5`, expected u64",
        ),
        (
            "[limiters.a]\nrate = 0\n".to_owned(),
            "limiters.a.rate: must be 1..=4294967295, got 0",
        ),
        (
            "[limiters.a]\nrate = 1.5\n".to_owned(),
            "limiters.a.rate: invalid type: floating point `1.5`, expected u64",
        ),
        (
            "[bulkheads.b]\nmax_concurrent = 0\n".to_owned(),
            "bulkheads.b.max_concurrent: must be 1..=1048576, got 0",
        ),
        // Booleans as strings and numbers.
        (
            format!("{breaker}required = \"true\"\n"),
            "breakers.a.required: invalid type: string \"true\", expected a boolean",
        ),
        (
            format!("{breaker}required = 1\n"),
            "breakers.a.required: invalid type: integer `1`, expected a boolean",
        ),
        // CRLF line ends and tabs change nothing.
        (
            "[limiters.a]\r\nrate = \"x\"\r\n".to_owned(),
            "limiters.a.rate: invalid type: string \"x\", expected u64",
        ),
        (
            "[limiters.a]\r\n\trate\t=\t1\r\nrate = 2\r\n".to_owned(),
            "limiters.a.rate: duplicate key at line 3 column 1",
        ),
    ];
    expect_errors(&cases);
}

#[test]
fn names_and_secrets_in_the_file_are_shown_escaped_and_redacted() {
    let duration = |v: &str| format!("[breakers.a]\nconsecutive_failures = 1\nopen_for = {v}\n");
    let must = |got: &str| {
        format!("breakers.a.open_for: must be a duration such as \"30s\" (units: us, ms, s, m, h), got \"{got}\"")
    };
    let cases = [
        // Names: non-ASCII (unquoted: a syntax error, by its place),
        // dots and quotes, empty, too long.
        (
            "[limiters.café]\nrate = 1\n".to_owned(),
            "(toml): invalid unquoted key, expected letters, numbers, `-`, `_` at line 1 column 14",
        ),
        (
            "[limiters.\"café\"]\nrate = 1\n".to_owned(),
            "limiters.café: invalid name: may hold only ASCII letters, digits and '_'",
        ),
        (
            "[limiters.\"a.b\"]\nrate = 1\n".to_owned(),
            "limiters.a.b: invalid name: may hold only ASCII letters, digits and '_'",
        ),
        (
            "[limiters.\"a\\\"b\"]\nrate = 1\n".to_owned(),
            "limiters.a\\\"b: invalid name: may hold only ASCII letters, digits and '_'",
        ),
        (
            "[breakers.\"\"]\nconsecutive_failures = 1\n".to_owned(),
            "breakers.: invalid name: must not be empty",
        ),
        // Secrets, in a name, a value and a key.
        (
            "[limiters.\"redis://app:hunter2@cache:6379\"]\nrate = 1\n".to_owned(),
            "limiters.redis://app:***@cache:6379: invalid name",
        ),
        (
            duration("\"redis://app:hunter2@cache:6379\""),
            &must("redis://app:***@cache:6379"),
        ),
        (
            "[limiters.a]\nrate = \"redis://app:hunter2@cache\"\n".to_owned(),
            "limiters.a.rate: invalid type: string \"redis://app:***@cache\", expected u64",
        ),
        (
            "[limiters.a]\n\"redis://app:hunter2@cache\" = 1\n".to_owned(),
            "limiters.a.redis://app:***@cache: unknown field",
        ),
        (
            "[limiters.a]\nrate = \"redis://app:hunter2@cache\nburst = 1\n".to_owned(),
            "limiters.a.rate: invalid double-quoted string, expected `\"` at line 2 column 34",
        ),
    ];
    expect_errors(&cases);
}

#[test]
fn long_lines_a_byte_order_mark_crlf_and_tabs() {
    // A long line is one bounded error on its key.
    let long = format!("[limiters.a]\nrate = 1 {}\n", "x".repeat(100_000));
    let shown = error_of(&long, &[]);
    assert!(
        shown.starts_with("limiters.a.rate: ") && shown.len() < 200,
        "{shown}"
    );
    let long_name = format!("[limiters.{}]\nrate = 1\n", "x".repeat(100_000));
    let shown = error_of(&long_name, &[]);
    assert!(
        shown.ends_with("invalid name: must be at most 64 bytes, got 100000") && shown.len() < 200,
        "{shown}"
    );
    // A byte-order mark, CRLF and tabs are read as the text without them.
    let config = RegistryConfig::from_toml("\u{feff}[limiters.a]\r\n\trate\t=\t7\r\n").unwrap();
    assert_eq!(config.limiters["a"].rate, Some(7));
}

#[test]
fn mistakes_in_the_environment_are_named_by_path() {
    let file = "[breakers.quotes]\nconsecutive_failures = 5\n[limiters.api]\nrate = 10\n";
    let cases = [
        ("FUSEBOX__BREAKERS__QUOTES__RATE", "5", "breakers.quotes.rate: unknown field `rate`, expected one of"),
        // A field of another table.
        ("FUSEBOX__LIMITERS__API__WINDOW", "5", "limiters.api.window: unknown field `window`, expected one of `rate`, `period`, `burst`"),
        ("FUSEBOX__BREAKER__QUOTES__WINDOW", "5", "breaker: unknown field `breaker`"),
        ("FUSEBOX__BREAKERS__QUOTES__REQUIRED", "yes", "breakers.quotes.required: invalid type: string \"yes\", expected a boolean"),
        ("FUSEBOX__BREAKERS__QUOTES__REQUIRED", "TRUE", "breakers.quotes.required: invalid type: string \"TRUE\", expected a boolean"),
        ("FUSEBOX__BREAKERS__QUOTES__OPEN_FOR", "30", "breakers.quotes.open_for: invalid type: integer `30`, expected a string"),
        ("FUSEBOX__BREAKERS__QUOTES__OPEN_FOR", "true", "breakers.quotes.open_for: invalid type: boolean `true`, expected a string"),
        ("FUSEBOX__LIMITERS__API__RATE", "-5", "limiters.api.rate: invalid value: integer `-5`, expected u64"),
        ("FUSEBOX__LIMITERS__API__RATE", "0", "limiters.api.rate: must be 1..=4294967295, got 0"),
        ("FUSEBOX__LIMITERS__API__RATE", "5.0", "limiters.api.rate: invalid type: floating point `5.0`, expected u64"),
        ("FUSEBOX__LIMITERS__API__RATE", "5\r", "limiters.api.rate: invalid type: string \"5\\r\", expected u64"),
        ("FUSEBOX__LIMITERS__CAFÉ__RATE", "1", "limiters.cafÉ: invalid name"),
        ("FUSEBOX__LIMITERS__A.B__RATE", "1", "limiters.a.b: invalid name"),
        // Secrets in a value and in a name.
        ("FUSEBOX__LIMITERS__API__RATE", "redis://app:hunter2@cache:6379", "limiters.api.rate: invalid type: string \"redis://app:***@cache:6379\", expected u64"),
        ("FUSEBOX__LIMITERS__API__PERIOD", "redis://app:hunter2@cache:6379", "limiters.api.period: must be a duration such as \"30s\" (units: us, ms, s, m, h), got \"redis://app:***@cache:6379\""),
        ("FUSEBOX__LIMITERS__API", "redis://app:hunter2@cache:6379", "limiters.api: invalid type: string \"redis://app:***@cache:6379\", expected struct QuotaSpec"),
        ("FUSEBOX__LIMITERS__redis://app:hunter2@cache__RATE", "1", "limiters.redis://app:***@cache: invalid name"),
    ];
    for (var, value, expected) in cases {
        let shown = error_of(file, &[(var, value)]);
        assert!(
            shown.starts_with(expected),
            "{var}={value:?}\n  got {shown}\n want {expected}"
        );
    }
}

/// `window` and `minimum_calls` shape the window a rate is computed
/// from; a breaker that trips on `consecutive_failures` alone keeps none
/// (and `set_config` cannot add a rate to it later), so they did nothing
/// there and were accepted. Each is refused on its path, saying why;
/// beside a rate (with or without `consecutive_failures`) they are read.
#[test]
fn a_window_setting_beside_consecutive_failures_alone_is_refused() {
    let why = "applies to a failure_rate or slow_call_rate breaker; this one trips on consecutive_failures only";
    let breaker = "[breakers.a]\nconsecutive_failures = 5\n";
    let cases = [
        (
            format!("{breaker}minimum_calls = 10\n"),
            format!("breakers.a.minimum_calls: minimum_calls {why}"),
        ),
        (
            format!("{breaker}window = 20\n"),
            format!("breakers.a.window: window {why}"),
        ),
        // Out of range too: refused for applying to nothing, once.
        (
            format!("{breaker}window = 0\n"),
            format!("breakers.a.window: window {why}"),
        ),
    ];
    for (text, expected) in &cases {
        assert_eq!(&error_of(text, &[]), expected, "{text}");
    }
    // From the environment too, over a file that sets neither.
    let shown = error_of(breaker, &[("FUSEBOX__BREAKERS__A__MINIMUM_CALLS", "3")]);
    assert_eq!(
        shown,
        format!("breakers.a.minimum_calls: minimum_calls {why}")
    );
    // Both: one error each.
    let both = RegistryConfig::from_toml(&format!("{breaker}window = 20\nminimum_calls = 10\n"))
        .unwrap()
        .validate()
        .unwrap_err();
    let paths: Vec<_> = both
        .fields()
        .iter()
        .map(crate::registry::FieldError::path)
        .collect();
    assert_eq!(paths, ["breakers.a.window", "breakers.a.minimum_calls"]);
    // Where a rate reads them, they are accepted and built.
    for rate in [
        "failure_rate = 50\n",
        "slow_call_rate = 50\nslow_call_threshold = \"1s\"\n",
        "consecutive_failures = 5\nfailure_rate = 50\n",
    ] {
        let text = format!("[breakers.a]\n{rate}window = 20\nminimum_calls = 10\n");
        let config = RegistryConfig::from_toml(&text).unwrap();
        let registry = crate::Registry::from_config(&config).expect(&text);
        let built = registry.get_breaker("a").unwrap().config();
        assert_eq!((built.window(), built.minimum_calls()), (20, 10), "{text}");
    }
}

/// Durations are documented as a whole number and a unit; `"30 s"` and
/// `" 30s "` were read as 30 s. Spaces between or around are refused,
/// in the file and from the environment, showing the expected form.
#[test]
fn a_duration_with_spaces_is_refused_showing_the_form() {
    let breaker = "[breakers.a]\nconsecutive_failures = 1\n";
    let must = |got: &str| {
        format!("breakers.a.open_for: must be a duration such as \"30s\" (units: us, ms, s, m, h), got \"{got}\"")
    };
    for (written, shown) in [("30 s", "30 s"), (" 30s ", " 30s "), ("30s\\t", "30s\\t")] {
        let text = format!("{breaker}open_for = \"{written}\"\n");
        assert_eq!(error_of(&text, &[]), must(shown), "{text}");
    }
    for value in ["30 s", " 30s", "30s\n"] {
        let shown = error_of(breaker, &[("FUSEBOX__BREAKERS__A__OPEN_FOR", value)]);
        assert_eq!(shown, must(&value.escape_debug().to_string()), "{value:?}");
    }
    // The documented form, and the micro sign for us, are read.
    for (written, micros) in [("30s", 30_000_000), ("7µs", 8), ("7us", 8)] {
        let text = format!("{breaker}open_for = \"{written}\"\n");
        let config = RegistryConfig::from_toml(&text).unwrap();
        let registry = crate::Registry::from_config(&config).unwrap();
        let open_for = registry.get_breaker("a").unwrap().config().open_for();
        assert_eq!(open_for.as_micros(), micros, "{text}");
    }
}

/// `sample_rate = 0` and `max_requests = 0` switch a tracker's sampling or
/// its summaries off, and an operator flips them with a variable in an
/// incident: the file's other summary settings then do nothing, but must
/// not stop the service from starting (a review's check refused them;
/// reverted for this). Read, and the registry built, every way round.
#[test]
fn switching_summaries_off_keeps_their_settings_readable() {
    let file = "[trackers.t]\nsample_rate = 0.5\nmax_requests = 10\nmax_stages_per_request = 8\n";
    for (variable, value) in [
        ("FUSEBOX__TRACKERS__T__SAMPLE_RATE", "0"),
        ("FUSEBOX__TRACKERS__T__MAX_REQUESTS", "0"),
    ] {
        let vars = vec![(variable.to_owned(), value.to_owned())];
        let config = RegistryConfig::from_toml_with_env(file, vars).unwrap();
        assert!(crate::Registry::from_config(&config).is_ok(), "{variable}");
    }
    for text in [
        "[trackers.t]\nsample_rate = 0.0\nmax_requests = 10\nmax_stages_per_request = 8\n",
        "[trackers.t]\nmax_requests = 0\nmax_stages_per_request = 8\n",
    ] {
        let config = RegistryConfig::from_toml(text).unwrap();
        assert!(crate::Registry::from_config(&config).is_ok(), "{text}");
    }
}
