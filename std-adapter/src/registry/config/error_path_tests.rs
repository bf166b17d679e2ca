//! Every error of a TOML document or an environment variable names the
//! setting it is about and what was written, as a careless operator
//! would get them wrong.

use crate::registry::RegistryConfig;

fn toml_error(text: &str) -> (String, String) {
    let err = RegistryConfig::from_toml(text).expect_err(text);
    assert_eq!(err.fields().len(), 1, "{text}");
    let field = &err.fields()[0];
    (field.path().to_owned(), field.message().to_owned())
}

/// A table or key written twice, or a key extending a value, was
/// `(toml): duplicate key at line 3 column 11`: a place, no path.
#[test]
fn a_table_or_key_written_twice_is_named_by_its_path() {
    let cases = [
        (
            "[breakers.quotes]\nwindow = 5\n[breakers.quotes]\nwindow = 6\n",
            "breakers.quotes",
            "duplicate key at line 3 column 11",
        ),
        (
            "[limiters.api]\nrate = 1\r\nrate = 2\n",
            "limiters.api.rate",
            "duplicate key at line 3 column 1",
        ),
        (
            "events_capacity = 1\nevents_capacity = 2\n",
            "events_capacity",
            "duplicate key at line 2 column 1",
        ),
        (
            "[keyed_limiters.k]\nrate = 1\noverflow = { rate = 1, rate = 2 }\n",
            "keyed_limiters.k.overflow.rate",
            "duplicate key at line 3 column 24",
        ),
        (
            "[breakers]\nq.window = 1\n\tq.window = 2\n",
            "breakers.q.window",
            "duplicate key at line 3 column 4",
        ),
        (
            "[breakers]\nq.window = 1\n[breakers.q]\nwindow = 2\n",
            "breakers.q",
            "duplicate key at line 3 column 11",
        ),
        (
            "[breakers.q]\nwindow = 2\n[breakers]\nq.window = 1\n",
            "breakers.q",
            "duplicate key at line 4 column 1",
        ),
        (
            "[breakers.\"q\"]\nwindow = 1\n[breakers.q]\n",
            "breakers.q",
            "duplicate key at line 3 column 11",
        ),
        (
            "breakers = 5\n[breakers.a]\nwindow = 1\n",
            "breakers",
            "cannot extend value of type integer with a dotted key at line 2 column 2",
        ),
        (
            "[breakers.\"redis://app:hunter2@cache\"]\n[breakers.\"redis://app:hunter2@cache\"]\n",
            "breakers.redis://app:***@cache",
            "duplicate key at line 2 column 11",
        ),
    ];
    for (text, path, message) in cases {
        assert_eq!(
            toml_error(text),
            (path.to_owned(), message.to_owned()),
            "{text}"
        );
    }
}

/// An integer outside TOML's 64-bit range was `(toml): invalid type:
/// integer `100000000000000000000` as i128, expected any valid TOML
/// value` or `(toml): u64 value was too large`: no path, and the latter
/// not what is wrong (TOML's integers are i64).
#[test]
fn a_toml_integer_out_of_range_is_named_by_its_path_as_written() {
    let range = "must be an integer of -9223372036854775808..=9223372036854775807 (TOML's range)";
    let cases = [
        (
            "[limiters.a]\nrate = 100000000000000000000\n",
            "limiters.a.rate",
            "100000000000000000000 at line 2 column 8",
        ),
        (
            "[breakers.a]\nfailure_rate = 5\nwindow = 18446744073709551615\n",
            "breakers.a.window",
            "18446744073709551615 at line 3 column 10",
        ),
        (
            "events_capacity = -99999999999999999999\n",
            "events_capacity",
            "-99999999999999999999 at line 1 column 19",
        ),
        (
            "[keyed_limiters.k]\nrate = 1\noverflow = { rate = 1_000_000_000_000_000_000_000 }\n",
            "keyed_limiters.k.overflow.rate",
            "1_000_000_000_000_000_000_000 at line 3 column 21",
        ),
    ];
    for (text, path, written) in cases {
        assert_eq!(
            toml_error(text),
            (path.to_owned(), format!("{range}, got {written}")),
            "{text}"
        );
    }
    // The largest is read.
    let config = RegistryConfig::from_toml("events_capacity = 9223372036854775807\n").unwrap();
    assert_eq!(config.events_capacity, Some(9_223_372_036_854_775_807));
}

/// A value the parser cannot read is named by its key; a key it cannot
/// read by its place only. None shows a password of the document, and
/// an unclosed string is no longer `invalid basic ***` (the parser's
/// "basic string" redacted as if HTTP Basic credentials).
#[test]
fn a_toml_syntax_error_names_the_key_it_is_in_and_no_secret() {
    let cases = [
        (
            "[breakers.a]\nopen_for = \"redis://u:hunter2@h\n",
            "breakers.a.open_for",
            "invalid double-quoted string, expected `\"` at line 2 column 32",
        ),
        (
            "[limiters.a]\nrate =\n",
            "limiters.a.rate",
            "string values must be quoted, expected literal string at line 2 column 7",
        ),
        (
            "[limiters.café]\nrate = 1\n",
            "(toml)",
            "invalid unquoted key, expected letters, numbers, `-`, `_` at line 1 column 14",
        ),
        ("redis://u:hunter2@h = 1\n", "(toml)", ""),
    ];
    for (text, path, message) in cases {
        let (got_path, got) = toml_error(text);
        assert_eq!(got_path, path, "{text}");
        assert!(got.ends_with(message), "{got}");
        assert!(!got.contains("hunter2") && !got.contains("***"), "{got}");
    }
}

/// A key given twice in one JSON object was `(json): duplicate key
/// "rate" at line 1 column 39`: the key, not its path.
#[test]
fn a_json_key_given_twice_is_named_by_its_path() {
    let cases = [
        (
            r#"{"limiters": {"api": {"rate": 1, "rate": 2}}}"#,
            "limiters.api.rate",
            r#"duplicate key "rate" at line 1 column 39"#,
        ),
        (
            "{\"limiters\": {\"api\": {}},\r\n\t\"limiters\": {}}",
            "limiters",
            r#"duplicate key "limiters" at line 2 column 11"#,
        ),
        (
            r#"{"breakers": {"a": {}, "\u0061": {}}}"#,
            "breakers.a",
            r#"duplicate key "a" at line 1 column 31"#,
        ),
        (
            r#"{"breakers": {"redis://u:hunter2@h": {}, "redis://u:hunter2@h": {}}}"#,
            "breakers.redis://u:***@h",
            r#"duplicate key "redis://u:***@h" at line 1 column 62"#,
        ),
    ];
    for (text, path, message) in cases {
        let err = RegistryConfig::from_json(text).expect_err(text);
        assert_eq!(err.fields().len(), 1, "{text}");
        assert_eq!(
            (err.fields()[0].path(), err.fields()[0].message()),
            (path, message),
            "{text}"
        );
    }
    // Other JSON errors keep `(json)`; a document is still read whole.
    let err = RegistryConfig::from_json("{} {}").unwrap_err();
    assert_eq!(err.fields()[0].path(), "(json)");
    let config = RegistryConfig::from_json(r#"{"limiters": {"a": {"rate": 1}}} "#).unwrap();
    assert_eq!(config.limiters["a"].rate, Some(1));
}

/// serde_json reads a whole number beyond 64 bits as a float: it was
/// refused as `invalid type: floating point `1e+20``, not as written.
#[test]
fn a_json_integer_beyond_64_bits_is_named_by_its_path_as_written() {
    let range = "must be an integer of -9223372036854775808..=18446744073709551615";
    let cases = [
        (
            r#"{"limiters": {"api": {"rate": 100000000000000000000}}}"#,
            "limiters.api.rate",
            "100000000000000000000 at line 1 column 51",
        ),
        (
            "{\"trackers\": {\"t\": {\"sample_rate\": 0.5}},\r\n \"events_capacity\": -9223372036854775809}",
            "events_capacity",
            "-9223372036854775809 at line 2 column 40",
        ),
        // Numbers in strings and after escaped quotes are not counted.
        (
            r#"{"a\"1": {"x": "2, 3e5"}, "breakers": {"b": {"window": 1.5e0, "minimum_calls": 18446744073709551616}}}"#,
            "breakers.b.minimum_calls",
            "18446744073709551616 at line 1 column 99",
        ),
    ];
    for (text, path, written) in cases {
        let err = RegistryConfig::from_json(text).expect_err(text);
        assert_eq!(err.fields().len(), 1, "{text}");
        assert_eq!(
            (err.fields()[0].path(), err.fields()[0].message()),
            (path, format!("{range}, got {written}").as_str()),
            "{text}"
        );
    }
    // Floats are read as before, and refused where an integer goes.
    let err = RegistryConfig::from_json(r#"{"limiters": {"a": {"rate": 1e3}}}"#).unwrap_err();
    assert_eq!(err.fields()[0].path(), "limiters.a.rate");
    assert!(
        err.fields()[0].message().contains("floating point"),
        "{err}"
    );
    let config =
        RegistryConfig::from_json(r#"{"trackers": {"t": {"sample_rate": 0.25}}}"#).unwrap();
    assert_eq!(
        config.trackers["t"].sample_rate.to_bits(),
        0.25f64.to_bits()
    );
}

/// Found by a hostile review of JSON numbers and documents: `-0` (an
/// integer 0 to TOML and to a variable) was refused as "beyond 64 bits";
/// a document of another type was named `.` (serde_path_to_error's
/// root), not `(root)`.
#[test]
fn json_minus_zero_and_a_document_of_another_type() {
    let err = |text: &str| {
        let e = RegistryConfig::from_json(text)
            .and_then(|c| c.validate())
            .expect_err(text);
        assert_eq!(e.fields().len(), 1, "{e}");
        e.to_string()
    };
    assert_eq!(
        err(r#"{"limiters": {"a": {"rate": -0}}}"#),
        "limiters.a.rate: must be 1..=4294967295, got 0"
    );
    let config = RegistryConfig::from_json(
        r#"{"bulkheads": {"b": {"max_concurrent": 1, "max_queued": -0}}}"#,
    )
    .unwrap();
    assert_eq!(config.bulkheads["b"].max_queued, Some(0));
    for (text, what) in [
        (r#""x""#, "string \"x\""),
        ("null", "null"),
        ("5", "integer `5`"),
        ("true", "boolean `true`"),
    ] {
        assert_eq!(
            err(text),
            format!("(root): invalid type: {what}, expected struct RegistryConfig")
        );
    }
    // Other syntax errors keep `(json)`.
    assert!(err(r#"{"limiters": {"a": {"rate": 1,}}}"#).starts_with("(json): "));
    // A null is an optional setting left out, as serialized; refused where
    // the setting is not optional.
    let config = RegistryConfig::from_json(
        r#"{"events_capacity": null, "breakers": {"a": {"failure_rate": 5, "window": null}}}"#,
    )
    .unwrap();
    assert_eq!(
        (config.events_capacity, config.breakers["a"].window),
        (None, None)
    );
    let round_trip = serde_json::to_string(&config).unwrap();
    assert_eq!(RegistryConfig::from_json(&round_trip).unwrap(), config);
    assert_eq!(
        err(r#"{"breakers": {"a": {"failure_rate": 5, "required": null}}}"#),
        "breakers.a.required: invalid type: null, expected a boolean"
    );
}
