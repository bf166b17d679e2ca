//! Environment variables as a careless operator sets them: empty, in
//! another spelling, over every kind of table.

use crate::registry::RegistryConfig;

fn with_env(text: &str, vars: &[(&str, &str)]) -> Result<RegistryConfig, String> {
    let vars = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
    RegistryConfig::from_toml_with_env(text, vars)
        .and_then(|c| c.validate().map(|()| c))
        .map_err(|e| e.to_string())
}

/// A variable set to the empty string (`FOO=` in a unit file, an unset
/// template variable) is a value, not an absence: it is refused on its
/// path, never read as the field's default or as the file's value.
#[test]
fn an_empty_variable_is_refused_on_its_path_not_read_as_unset() {
    let file = "[breakers.a]\nconsecutive_failures = 5\nopen_for = \"30s\"\n\
                [limiters.l]\nrate = 10\n[trackers.t]\n[bulkheads.b]\nmax_concurrent = 2\n";
    let cases = [
        ("FUSEBOX__BREAKERS__A__CONSECUTIVE_FAILURES", "breakers.a.consecutive_failures: invalid type: string \"\", expected u64"),
        ("FUSEBOX__BREAKERS__A__REQUIRED", "breakers.a.required: invalid type: string \"\", expected a boolean"),
        ("FUSEBOX__BREAKERS__A__OPEN_FOR", "breakers.a.open_for: must be a duration such as \"30s\" (units: us, ms, s, m, h), got \"\""),
        ("FUSEBOX__LIMITERS__L__RATE", "limiters.l.rate: invalid type: string \"\", expected u64"),
        ("FUSEBOX__TRACKERS__T__SAMPLE_RATE", "trackers.t.sample_rate: invalid type: string \"\", expected f64"),
        ("FUSEBOX__BULKHEADS__B__MAX_CONCURRENT", "bulkheads.b.max_concurrent: invalid type: string \"\", expected u64"),
        ("FUSEBOX__EVENTS_CAPACITY", "events_capacity: invalid type: string \"\", expected usize"),
        ("FUSEBOX__LIMITERS__L", "limiters.l: invalid type: string \"\", expected struct QuotaSpec"),
    ];
    for (var, expected) in cases {
        assert_eq!(with_env(file, &[(var, "")]).unwrap_err(), expected, "{var}");
    }
    assert!(with_env(file, &[]).is_ok());
}

/// A variable overrides the file in every table, and the file's other
/// fields stay; a variable with the prefix naming no field is refused,
/// one without it (or with the prefix in lowercase) is not read at all.
#[test]
fn variables_override_every_table_and_only_the_prefix_is_read() {
    let file = "events_capacity = 16\n[bulkheads.b]\nmax_concurrent = 2\nmax_queued = 3\n\
                [keyed_limiters.k]\nrate = 1\noverflow = { rate = 5 }\n[trackers.t]\nsample_rate = 0.5\n";
    let config = with_env(
        file,
        &[
            ("FUSEBOX__EVENTS_CAPACITY", "1"),
            ("FUSEBOX__BULKHEADS__B__MAX_CONCURRENT", "7"),
            ("FUSEBOX__KEYED_LIMITERS__K__OVERFLOW__RATE", "9"),
            ("FUSEBOX__TRACKERS__T__SAMPLE_RATE", "1"),
            ("fusebox__trackers__t__sample_rate", "2"),
            ("FUSEBOX_TRACKERS__T__SAMPLE_RATE", "2"),
        ],
    )
    .unwrap();
    assert_eq!(config.events_capacity, Some(1));
    assert_eq!(config.bulkheads["b"].max_concurrent, Some(7));
    assert_eq!(config.bulkheads["b"].max_queued, Some(3));
    let overflow = config.keyed_limiters["k"].overflow.as_ref().unwrap();
    assert_eq!(
        (config.keyed_limiters["k"].rate, overflow.rate),
        (Some(1), Some(9))
    );
    assert_eq!(
        config.trackers["t"].sample_rate.to_bits(),
        1.0_f64.to_bits()
    );
    for (var, path) in [
        ("FUSEBOX__BULKHEADS__B__MAX_WAITS", "bulkheads.b.max_waits"),
        ("FUSEBOX__TRACKER__T__SAMPLE_RATE", "tracker"),
    ] {
        let err = with_env(file, &[(var, "1")]).unwrap_err();
        assert!(err.starts_with(&format!("{path}: unknown field")), "{err}");
    }
    // Numbers as a shell writes them: a sign is read, other spellings
    // are strings, refused where a number is expected.
    let rate = |v: &str| {
        with_env(
            "[limiters.l]\nrate = 1\n",
            &[("FUSEBOX__LIMITERS__L__RATE", v)],
        )
    };
    assert_eq!(rate("+5").unwrap().limiters["l"].rate, Some(5));
    for v in ["0x10", " 5", "5 ", "1_000", "1e3", "5.0", "-1"] {
        assert!(
            rate(v).unwrap_err().starts_with("limiters.l.rate: invalid"),
            "{v}"
        );
    }
}

/// A whole number beyond 64 bits was read as a float and refused as
/// `invalid type: floating point `1e+20`, expected u64`: not what the
/// operator wrote. It is refused on its path as written, in any table.
#[test]
fn an_integer_too_large_is_refused_on_its_path_as_written() {
    let file = "[breakers.quotes]\nconsecutive_failures = 5\n[trackers.t]\n";
    let range = "must be an integer of -9223372036854775808..=18446744073709551615";
    let cases = [
        (
            "FUSEBOX__BREAKERS__QUOTES__CONSECUTIVE_FAILURES",
            "100000000000000000000",
            "breakers.quotes.consecutive_failures",
        ),
        (
            "FUSEBOX__BREAKERS__QUOTES__WINDOW",
            "18446744073709551616",
            "breakers.quotes.window",
        ),
        (
            "FUSEBOX__EVENTS_CAPACITY",
            "+100000000000000000000",
            "events_capacity",
        ),
        (
            "FUSEBOX__BULKHEADS__B__MAX_QUEUED",
            "-9223372036854775809",
            "bulkheads.b.max_queued",
        ),
        (
            "FUSEBOX__TRACKERS__T__SAMPLE_RATE",
            "100000000000000000000",
            "trackers.t.sample_rate",
        ),
        (
            "FUSEBOX__KEYED_LIMITERS__K__OVERFLOW__RATE",
            "99999999999999999999999999999999999999999",
            "keyed_limiters.k.overflow.rate",
        ),
    ];
    for (var, value, path) in cases {
        assert_eq!(
            with_env(file, &[(var, value)]).unwrap_err(),
            format!("{path}: {range}, got {value}"),
            "{var}"
        );
    }
    // The bounds themselves are read (and range-checked as usual).
    let config = with_env(
        file,
        &[("FUSEBOX__EVENTS_CAPACITY", "18446744073709551615")],
    );
    assert!(config
        .unwrap_err()
        .starts_with("events_capacity: must be at most"));
    let neg = with_env(
        file,
        &[("FUSEBOX__EVENTS_CAPACITY", "-9223372036854775808")],
    );
    assert!(neg
        .unwrap_err()
        .starts_with("events_capacity: invalid value: integer `-9223372036854775808`"));
}

/// `FUSEBOX__` alone (a template whose name expanded to nothing) was
/// refused as `: unknown field ``, expected one of ...`: a path of
/// nothing. A variable ending in `__` names the empty field of its table.
#[test]
fn a_variable_naming_no_setting_is_refused_with_a_path() {
    assert_eq!(
        with_env("", &[("FUSEBOX__", "1")]).unwrap_err(),
        "(root): the variable FUSEBOX__ names no setting (FUSEBOX__<TABLE>__<NAME>__<FIELD>)"
    );
    let err = with_env("", &[("FUSEBOX__LIMITERS__API__", "1")]).unwrap_err();
    assert!(err.starts_with("limiters.api.: unknown field ``"), "{err}");
    let err = with_env("", &[("FUSEBOX__LIMITERS____RATE", "1")]).unwrap_err();
    assert_eq!(err, "limiters.: invalid name: must not be empty");
}

/// A float from a variable was shown as read where an integer goes
/// (`1e3` as `1000.0`), where an integer is shown as written. It is shown
/// as written, whatever the table, and so is one of a TOML or JSON
/// document. (Out of a fraction's range, found when the registry is
/// built, it is shown as read: `sample_rate` holds no text.)
#[test]
fn a_float_is_shown_as_written() {
    let file = "[limiters.api]\nrate = 1\n[breakers.Api]\nfailure_rate = 50\nwindow = 2.5e1\n";
    let cases = [
        (
            "FUSEBOX__LIMITERS__API__RATE",
            "1e3",
            "limiters.api.rate: invalid type: floating point `1e3`, expected u64",
        ),
        (
            "FUSEBOX__LIMITERS__API__BURST",
            "2.50",
            "limiters.api.burst: invalid type: floating point `2.50`, expected u64",
        ),
        (
            "FUSEBOX__BREAKERS__B__WINDOW",
            "9007199254740993.0",
            "breakers.b.window: invalid type: floating point `9007199254740993.0`, expected u64",
        ),
        (
            "FUSEBOX__EVENTS_CAPACITY",
            "+1E2",
            "events_capacity: invalid type: floating point `+1E2`, expected usize",
        ),
    ];
    for (var, value, expected) in cases {
        assert_eq!(
            with_env("[limiters.api]\nrate = 1\n", &[(var, value)]).unwrap_err(),
            expected,
            "{var}={value}"
        );
    }
    // Over the file's float, in a table the file names with capitals.
    assert_eq!(
        with_env(file, &[("FUSEBOX__BREAKERS__API__WINDOW", "-0.10")]).unwrap_err(),
        "breakers.Api.window: invalid type: floating point `-0.10`, expected u64"
    );
    // The file's float, when no variable sets it; an integer over it is
    // read (and its own float forgotten).
    assert_eq!(
        with_env(file, &[]).unwrap_err(),
        "breakers.Api.window: invalid type: floating point `2.5e1`, expected u64"
    );
    let config = with_env(file, &[("FUSEBOX__BREAKERS__API__WINDOW", "25")]).unwrap();
    assert_eq!(config.breakers["Api"].window, Some(25));
    let config = with_env(file, &[("FUSEBOX__BREAKERS__API", "x")]).unwrap_err();
    assert!(
        config.starts_with("breakers.Api: invalid type: string"),
        "{config}"
    );

    let toml = [
        (
            "[limiters.a]\nrate = 1e3\n",
            "limiters.a.rate: invalid type: floating point `1e3`, expected u64",
        ),
        (
            "[limiters.a]\nrate = 1\nburst = 1_000.5\n",
            "limiters.a.burst: invalid type: floating point `1_000.5`, expected u64",
        ),
        (
            "[keyed_limiters.k]\nrate = 1\noverflow = { rate = 2.0E0 }\n",
            "keyed_limiters.k.overflow.rate: invalid type: floating point `2.0E0`, expected u64",
        ),
    ];
    for (text, expected) in toml {
        assert_eq!(with_env(text, &[]).unwrap_err(), expected, "{text}");
    }
    let json = [
        (
            r#"{"limiters": {"a": {"rate": 1e3}}}"#,
            "limiters.a.rate: invalid type: floating point `1e3`, expected u64",
        ),
        (
            r#"{"breakers": {"b": {"window": 9007199254740993.0}}}"#,
            "breakers.b.window: invalid type: floating point `9007199254740993.0`, expected u64",
        ),
    ];
    for (text, expected) in json {
        let err = RegistryConfig::from_json(text).unwrap_err().to_string();
        assert_eq!(err, expected, "{text}");
    }
}

/// Checked by a hostile review, and fine: a variable of another type
/// than the file's value (a scalar over a table, a table over a scalar,
/// a string over a number) is one typed error on its path; a variable
/// naming an entry the file does not declare declares it (documented:
/// `from_env_vars` alone declares a whole configuration), so one of a
/// breaker without a trip condition, or of a limiter without a rate, is
/// refused as such.
#[test]
fn an_override_of_another_type_or_of_an_undeclared_name() {
    let file = "events_capacity = 3\n[keyed_limiters.k]\nrate = 1\noverflow = { rate = 5 }\n\
                [breakers.a]\nconsecutive_failures = 1\n";
    let cases = [
        ("FUSEBOX__KEYED_LIMITERS__K__OVERFLOW", "5", "keyed_limiters.k.overflow: invalid type: integer `5`, expected struct QuotaSpec"),
        ("FUSEBOX__KEYED_LIMITERS__K", "x", "keyed_limiters.k: invalid type: string \"x\", expected struct KeyedLimiterSpec"),
        ("FUSEBOX__EVENTS_CAPACITY__X", "1", "events_capacity: invalid type: map, expected usize"),
        ("FUSEBOX__BREAKERS__A__CONSECUTIVE_FAILURES", "abc", "breakers.a.consecutive_failures: invalid type: string \"abc\", expected u64"),
        ("FUSEBOX__BREAKERS__A__REQUIRED", "1", "breakers.a.required: invalid type: integer `1`, expected a boolean"),
        ("FUSEBOX__BREAKERS__B__WINDOW", "5", "breakers.b: no trip condition: set consecutive_failures, failure_rate or slow_call_rate"),
        ("FUSEBOX__LIMITERS__L__BURST", "5", "limiters.l.rate: required"),
    ];
    for (var, value, expected) in cases {
        assert_eq!(
            with_env(file, &[(var, value)]).unwrap_err(),
            expected,
            "{var}"
        );
    }
    let config = with_env(file, &[("FUSEBOX__BULKHEADS__NEW__MAX_CONCURRENT", "2")]).unwrap();
    assert_eq!(config.bulkheads["new"].max_concurrent, Some(2));
}
