//! `redact`: every kind of secret listed in its docs is masked, nothing else
//! is touched, and hostile inputs neither panic nor leak.

use fusebox_std::redact::{redact, Redacted, MASK};

#[test]
fn url_passwords_are_masked() {
    let cases = [
        (
            "redis://user:pass@host:6379/0",
            "redis://user:***@host:6379/0",
        ),
        ("redis://:pass@host", "redis://:***@host"),
        ("rediss://default:p%40ss@host", "rediss://default:***@host"),
        ("https://ghp_abc@github.com/x", "https://***@github.com/x"),
        // A token as the user with an empty password (curl's `-u TOKEN:`).
        ("redis://tok3n:@cache:6379", "redis://***@cache:6379"),
        ("https://ghp_abc:@github.com/x", "https://***@github.com/x"),
        (
            "postgres://u:p@db/app?sslmode=require",
            "postgres://u:***@db/app?sslmode=require",
        ),
        (
            "two: redis://a:b@h1 and redis://c:d@h2",
            "two: redis://a:***@h1 and redis://c:***@h2",
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(redact(input), expected, "{input}");
    }
}

/// `'` is one of the characters a URL's user info may hold as it is
/// (RFC 3986's sub-delims), so a generated password may have one; it
/// ended the authority, and the password was shown whole. A URL quoted in
/// `'` is still read to its end.
#[test]
fn a_password_with_an_apostrophe_is_masked() {
    let cases = [
        (
            "redis://app:it'sme@cache:6379",
            "redis://app:***@cache:6379",
        ),
        ("redis://app:pw'@cache/0", "redis://app:***@cache/0"),
        ("redis://o'brien@cache", "redis://***@cache"),
        (
            "url='redis://app:pw@cache' x",
            "url='redis://app:***@cache' x",
        ),
        (
            "'redis://cache', by 'ops@example.com'",
            "'redis://cache', by 'ops@example.com'",
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(redact(input), expected, "{input}");
    }
}

/// The same `'` in a parameter's value: a URL's query may hold it as it
/// is too, and a `redis+unix://` URL's password is its `pass` parameter,
/// but the value ended at it and the rest of the password was shown
/// (`pass=***'sme`). A value quoted in `'` still ends at its closing quote.
#[test]
fn a_parameter_value_with_an_apostrophe_is_masked() {
    let cases = [
        (
            "redis+unix:///run/redis.sock?db=0&pass=it'sme",
            "redis+unix:///run/redis.sock?db=0&pass=***",
        ),
        (
            "redis+unix:///s?pass=it'sme&db=1",
            "redis+unix:///s?pass=***&db=1",
        ),
        (
            "login failed password=o'brien user=bob",
            "login failed password=*** user=bob",
        ),
        (
            "url='redis+unix:///s?pass=pw' x",
            "url='redis+unix:///s?pass=***' x",
        ),
        ("'token=t0k' next", "'token=***' next"),
    ];
    for (input, expected) in cases {
        let out = redact(input);
        assert_eq!(out, expected, "{input}");
        assert_eq!(redact(&out), out, "idempotent: {input}");
    }
}

/// URLs one after another with no space between (a list quoted in `'`,
/// a comma-separated node list): each one's password is masked. Since `'`
/// no longer ends an authority (10caaa6), the first one read on to the
/// next URL's `//`, and the search for the next `://` began after it, so
/// the second password was shown; unquoted, after a `,`, it always was.
#[test]
fn every_password_of_adjacent_urls_is_masked() {
    let cases = [
        (
            "['redis://app:pw1@cache','redis://app:pw2@cache']",
            "['redis://app:***@cache','redis://app:***@cache']",
        ),
        (
            "redis://:pw1@n1:6379,redis://:pw2@n2:6379",
            "redis://:***@n1:6379,redis://:***@n2:6379",
        ),
        (
            "'redis://cache','redis://app:pw2@cache'",
            "'redis://cache','redis://app:***@cache'",
        ),
    ];
    for (input, expected) in cases {
        let out = redact(input);
        assert_eq!(out, expected, "{input}");
        assert_eq!(redact(&out), out, "idempotent: {input}");
    }
}

#[test]
fn url_without_credentials_is_unchanged() {
    for input in [
        "redis://host:6379",
        "https://example.com/a@b", // '@' in the path, not the authority
        "mailto:someone@example.com",
        "",
    ] {
        assert_eq!(redact(input), input);
    }
}

#[test]
fn sensitive_parameters_are_masked() {
    let cases = [
        ("/cb?token=abc", "/cb?token=***"),
        ("/cb?a=1&key=K&b=2", "/cb?a=1&key=***&b=2"),
        ("/x?secret=s#frag", "/x?secret=***#frag"),
        ("/x?password=p&user=u", "/x?password=***&user=u"),
        (
            "/x?access_token=t&api_key=k",
            "/x?access_token=***&api_key=***",
        ),
        ("/x?X-Api-Key=k", "/x?X-Api-Key=***"),
        ("/x?TOKEN=UP", "/x?TOKEN=***"),
        (
            "login failed password=hunter2 user=bob",
            "login failed password=*** user=bob",
        ),
        ("/x?client_secret=s;more", "/x?client_secret=***;more"),
        // A colon ending the value before a space (an error's text after
        // a URL) stays; one inside the value is part of it.
        (
            "GET http://h/x?token=abc: status 403",
            "GET http://h/x?token=***: status 403",
        ),
        ("GET /x?token=abc:", "GET /x?token=***:"),
        ("token=user:secret rest", "token=*** rest"),
        ("token=a::b: c", "token=***: c"),
        // The redis crate reads a Unix socket URL's password from `pass`.
        (
            "redis+unix:///run/redis.sock?db=0&pass=hunter2",
            "redis+unix:///run/redis.sock?db=0&pass=***",
        ),
        (
            "unix:///tmp/r.sock?pass=p&user=u",
            "unix:///tmp/r.sock?pass=***&user=u",
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(redact(input), expected, "{input}");
    }
}

/// A value written in quotes, as logfmt (and `tracing`'s `key="value"`
/// style) writes one holding a space, is the pair's value too: the quotes
/// stay, what they enclose is masked, an escaped quote inside included. It
/// was shown whole (the opening quote ended the value before it began).
#[test]
fn quoted_parameter_values_are_masked() {
    let cases = [
        (
            "login failed password=\"hunter2\" user=bob",
            "login failed password=\"***\" user=bob",
        ),
        ("auth token='t0k en' next", "auth token='***' next"),
        (r#"api_key="a\"b c" rest"#, r#"api_key="***" rest"#),
        // Unclosed: everything after the quote may be the secret.
        ("password=\"hunter2 user=bob", "password=\"***"),
        ("password=\"\" user=bob", "password=\"\" user=bob"),
    ];
    for (input, expected) in cases {
        let out = redact(input);
        assert_eq!(out, expected, "{input}");
        assert_eq!(redact(&out), out, "idempotent: {input}");
    }
}

/// The same quoted value inside a quoted string, as `{:?}` (an error's
/// `Debug`, a `tracing` field recorded with `?`) or a JSON log line
/// writes it: the quotes escaped (`password=\"hunter2\"`). The `\`
/// before the quote was taken for the whole value, and the secret after
/// it shown.
#[test]
fn escaped_quoted_parameter_values_are_masked() {
    let cases = [
        (
            r#"Custom { error: "login failed password=\"hunter2\" user=bob" }"#,
            r#"Custom { error: "login failed password=\"***\" user=bob" }"#,
        ),
        (
            r#"{"msg":"auth token=\"t0k en\" next"}"#,
            r#"{"msg":"auth token=\"***\" next"}"#,
        ),
        (r"api_key=\'k\' rest", r"api_key=\'***\' rest"),
        // Unclosed: everything after the quote may be the secret.
        (r#"password=\"hunter2 user=bob"#, r#"password=\"***"#),
    ];
    for (input, expected) in cases {
        let out = redact(input);
        assert_eq!(out, expected, "{input}");
        assert_eq!(redact(&out), out, "idempotent: {input}");
    }
}

#[test]
fn harmless_parameters_are_kept() {
    for input in [
        "/search?q=keyboard&page=2",
        "/x?monkey=1", // ends with "key" but not "_key"/"-key"
        "/x?tokens=5", // not "token"
        "/x?token=",   // nothing to mask
        "a == b",
    ] {
        assert_eq!(redact(input), input);
    }
}

#[test]
fn bearer_and_basic_credentials_are_masked() {
    assert_eq!(
        redact("Authorization: Bearer eyJ.abc.def"),
        "Authorization: Bearer ***"
    );
    assert_eq!(
        redact("authorization: bearer t0k, next"),
        "authorization: bearer ***, next"
    );
    assert_eq!(
        redact("Authorization: Basic dXNlcjpwYXNz"),
        "Authorization: Basic ***"
    );
    // Not a scheme: a word that merely contains it.
    assert_eq!(redact("unbearer x"), "unbearer x");
    assert_eq!(redact("Bearer"), "Bearer");
}

#[test]
fn everything_at_once() {
    let line = "GET redis://u:pw@h/0?token=t1 Bearer b1 password=p1";
    let out = redact(line);
    for secret in ["pw@", "t1", "b1", "p1"] {
        assert!(!out.contains(secret), "{secret} leaked in {out}");
    }
    assert_eq!(out.matches(MASK).count(), 4);
}

#[test]
fn redacted_displays_masked() {
    let url = String::from("redis://a:b@c");
    assert_eq!(format!("{}", Redacted(&url)), "redis://a:***@c");
    assert_eq!(format!("{}", Redacted(42)), "42");
}

/// A derived `Debug` showed the raw value (`?Redacted(url)` logged the
/// password); and only control characters were escaped, so a line
/// separator or a right-to-left override in a name could still break or
/// disguise a log line in a viewer.
#[test]
fn redacted_debug_is_masked_and_disguising_characters_are_escaped() {
    let url = "redis://a:b@c";
    assert_eq!(
        format!("{:?}", Redacted(url)),
        r#"Redacted("redis://a:***@c")"#
    );
    for (raw, shown) in [
        ("a\u{2028}b", r"a\u{2028}b"),
        ("a\u{2029}b", r"a\u{2029}b"),
        ("user\u{202E}gnp.exe", r"user\u{202e}gnp.exe"),
        ("a\u{2066}b\u{2069}", r"a\u{2066}b\u{2069}"),
        ("a\u{200F}b", r"a\u{200f}b"),
        ("tab\there", r"tab\there"),
        ("é ü 中 ok", "é ü 中 ok"),
    ] {
        assert_eq!(Redacted(raw).to_string(), shown, "{raw:?}");
    }
}

#[test]
fn hostile_inputs_do_not_panic() {
    for input in [
        "://",
        "://@",
        "x://:@",
        "=",
        "==token=",
        "token=\u{e9}t\u{e9}",
        "Bearer \u{1F600}",
        "redis://\u{e9}:\u{e9}@\u{e9}",
        "?token=a&token=b",
        "@@@://@@@",
        // Masking the value `://` removes the `/` that ended the authority.
        "://@token=://&@",
    ] {
        // No panic on any byte position, and masking is idempotent.
        let once = redact(input).into_owned();
        assert_eq!(redact(&once), once, "{input}");
    }
    assert_eq!(redact("token=\u{e9}t\u{e9}"), "token=***");
    assert_eq!(
        redact("redis://\u{e9}:\u{e9}@\u{e9}"),
        "redis://\u{e9}:***@\u{e9}"
    );
    assert_eq!(redact("?token=a&token=b"), "?token=***&token=***");
}

mod properties {
    use fusebox_std::redact::redact;
    use proptest::prelude::*;

    proptest! {
        /// Any text: no panic (every cut falls on a character boundary),
        /// and masking again changes nothing.
        #[test]
        fn any_text_is_safe_and_idempotent(text in "\\PC{0,64}") {
            let once = redact(&text).into_owned();
            let twice = redact(&once).into_owned();
            prop_assert_eq!(twice, once);
        }

        /// Text made of the pieces the masks look for, in any order.
        #[test]
        fn pieces_in_any_order(parts in proptest::collection::vec(
            prop_oneof![
                Just("://"), Just("@"), Just(":"), Just("="), Just("&"), Just("?"),
                Just("token"), Just("Bearer "), Just("basic "), Just("\u{e9}"), Just(" "),
                Just("x"), Just("/"),
            ],
            0..24,
        )) {
            let text: String = parts.concat();
            let once = redact(&text).into_owned();
            let twice = redact(&once).into_owned();
            prop_assert_eq!(twice, once);
        }

        /// A password in a URL never survives, whatever it is made of.
        #[test]
        fn url_passwords_never_survive(
            user in "[a-z]{0,8}",
            password in "[A-Za-z0-9!$%^*()+.~'-]{6,20}",
            host in "[a-z]{1,10}(\\.[a-z]{2,5})?",
            tail in "(/[a-z]{0,5})?(\\?(page|q|lang)=[a-z0-9]{0,5})?",
        ) {
            let url = format!("redis://{user}:{password}@{host}{tail}");
            let out = redact(&url);
            prop_assert!(!out.contains(&password), "{} -> {}", url, out);
            prop_assert_eq!(out, format!("redis://{user}:***@{host}{tail}"));
        }

        /// Nor does a sensitive parameter's value.
        #[test]
        fn sensitive_values_never_survive(
            name in "(token|key|secret|password|api_key|access_token|X-Api-Key)",
            value in "[A-Za-z0-9._~+/-]{1,24}",
            before in "((page|q|lang)=[a-z0-9]{1,5}&)?",
        ) {
            let url = format!("https://h/p?{before}{name}={value}&page=2");
            prop_assert_eq!(redact(&url), format!("https://h/p?{before}{name}=***&page=2"));
        }

        /// Nor a quoted one, spaces and the other quote included.
        #[test]
        fn quoted_values_never_survive(
            name in "(token|password|api_key|client_secret)",
            quote in "[\"']",
            value in "[A-Za-z0-9 ._~+/=&,;'\"-]{1,24}",
        ) {
            let value: String = value.chars().filter(|c| c.to_string() != quote).collect();
            prop_assume!(!value.is_empty());
            let line = format!("login failed {name}={quote}{value}{quote} user=bob");
            prop_assert_eq!(redact(&line), format!("login failed {name}={quote}***{quote} user=bob"));
        }
    }
}

/// JSON and `Debug` write a field as `name: "value"`: an upstream's JSON
/// error body (`{"error":"bad","api_key":"K3Y"}`) or a `Debug` of a
/// configuration reached logs and health reasons with the secret whole,
/// where `api_key=K3Y` was masked (noticed by a hostile review). Quoted
/// values of sensitive names are masked now; a value not in quotes after
/// a colon is left (free text: `cache key: users`).
#[test]
fn json_and_debug_fields_with_a_sensitive_name_are_masked() {
    for (text, want) in [
        (
            r#"{"error":"bad request","api_key":"K3Y","user":"bob"}"#,
            r#"{"error":"bad request","api_key":"***","user":"bob"}"#,
        ),
        (r#"{"password": "a \"b\" c"}"#, r#"{"password": "***"}"#),
        (
            r#"Config { host: "db", password: "hunter2" }"#,
            r#"Config { host: "db", password: "***" }"#,
        ),
        (
            r#"upstream said "{\"token\":\"abc\",\"n\":1}""#,
            r#"upstream said "{\"token\":\"***\",\"n\":1}""#,
        ),
        (r#"{"key": 42}"#, r#"{"key": 42}"#),
        ("cache key: users", "cache key: users"),
        (
            "https://example.com:8080/key:x",
            "https://example.com:8080/key:x",
        ),
        (r#"{"monkey":"banana"}"#, r#"{"monkey":"banana"}"#),
    ] {
        assert_eq!(redact(text), want, "{text}");
        assert_eq!(redact(&redact(text)), want, "idempotent: {text}");
    }
}

/// The arguments Redis echoes for a command it does not know: a renamed
/// `HELLO` or `AUTH` sent the password back in the error (found by a
/// hostile review: `redis unavailable: ResponseError: unknown command
/// 'HELLO', with args beginning with: '3' 'AUTH' 'app' '<password>'`
/// reached errors, logs and health as it was).
#[test]
fn arguments_echoed_by_redis_are_masked_to_the_end_of_the_line() {
    for (text, want) in [
        (
            "ResponseError: unknown command 'HELLO', with args beginning with: '3' 'AUTH' 'app' 'pw' ",
            "ResponseError: unknown command 'HELLO', with args beginning with: ***",
        ),
        // Not escaped by Redis: a quote in the password ends nothing.
        (
            "unknown command 'AUTH', with args beginning with: 'a' 'p' w\"' x\nnext line",
            "unknown command 'AUTH', with args beginning with: ***\nnext line",
        ),
        (
            "a with args beginning with: 'x'\r\nb with args beginning with: 'y'",
            "a with args beginning with: ***\r\nb with args beginning with: ***",
        ),
        ("with args beginning with:", "with args beginning with:"),
        ("unknown command 'FOO'", "unknown command 'FOO'"),
    ] {
        assert_eq!(redact(text), want, "{text}");
        assert_eq!(redact(&redact(text)), want, "idempotent: {text}");
    }
}
