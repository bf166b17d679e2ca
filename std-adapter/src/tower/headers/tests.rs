//! Tests of the rate-limit fields: exact values, kept members, joins.

use super::*;

#[test]
fn retry_after_rounds_up_and_never_early() {
    assert_eq!(ceil_secs(Duration::ZERO), 0);
    assert_eq!(ceil_secs(Duration::from_micros(1)), 1);
    assert_eq!(ceil_secs(Duration::from_secs(1)), 1);
    assert_eq!(ceil_secs(Duration::from_micros(1_000_001)), 2);
    for micros in [1, 999_999, 1_000_000, 1_500_000, 59_999_999] {
        let d = Duration::from_micros(micros);
        assert!(ceil_secs(d) * MICROS_PER_SEC >= d.as_micros());
        assert!((ceil_secs(d) - 1) * MICROS_PER_SEC < d.as_micros());
    }
}

#[test]
fn quota_parameters() {
    let q = |quota: Result<Quota, _>| quota_qw(&quota.unwrap());
    assert_eq!(q(Quota::per_minute(100)), (100, 60));
    assert_eq!(q(Quota::per_second(5)), (5, 1));
    // 10 per 1.5 s is advertised as 13 per 2 s: never a higher rate.
    assert_eq!(q(Quota::new(10, Duration::from_millis(1_500))), (13, 2));
    assert_eq!(q(Quota::new(1, Duration::from_millis(1_500))), (1, 2));
    // A burst above the tokens per period: the burst over its refill.
    let burst = |quota: Result<Quota, _>, b| quota.unwrap().with_burst(b).unwrap();
    assert_eq!(quota_qw(&burst(Quota::per_minute(1), 10)), (10, 600));
    // 10 refilled at 3/s take 3.33 s: 12 per 4 s, at least the burst.
    assert_eq!(quota_qw(&burst(Quota::per_second(3), 10)), (12, 4));
    // A burst below: the rate, over at least a second.
    assert_eq!(quota_qw(&burst(Quota::per_second(10), 4)), (10, 1));
    assert_eq!(quota_qw(&burst(Quota::per_hour(100), 1)), (1, 36));
    // The longest refill a quota takes (its state word's range).
    let extreme = (0..32)
        .map(|shift| u32::MAX >> shift)
        .find_map(|b| Quota::per_hour(1).unwrap().with_burst(b).ok())
        .expect("some burst fits");
    let (q, w) = quota_qw(&extreme);
    assert_eq!(q, u64::from(extreme.burst()));
    assert_eq!(w, u64::from(extreme.burst()) * 3_600, "no overflow");
}

/// Whatever the quota, `q` is at least the burst (so `r` never exceeds
/// it) and the advertised rate never exceeds the real one.
#[test]
fn the_policy_is_never_above_the_quota_nor_below_the_burst() {
    for tokens in [1_u32, 2, 3, 7, 10, 100, 1_000_000] {
        for period_ms in [1_u64, 7, 100, 999, 1_000, 1_500, 60_000, 3_600_000] {
            for burst in [1_u32, 2, 5, 10, 99, 1_000, 1 << 20] {
                let Ok(quota) = Quota::new(tokens, Duration::from_millis(period_ms))
                    .and_then(|q| q.with_burst(burst))
                else {
                    continue;
                };
                let (q, w) = quota_qw(&quota);
                let at = (tokens, period_ms, burst, q, w);
                assert!(q >= u64::from(burst) && w >= 1, "{at:?}");
                // q / w <= tokens / period, in whole numbers.
                assert!(
                    u128::from(q) * u128::from(period_ms)
                        <= u128::from(tokens) * u128::from(w) * 1_000
                        || q == 1,
                    "a higher rate advertised: {at:?}"
                );
            }
        }
    }
}

#[test]
fn names_are_structured_field_strings() {
    assert_eq!(&*sf_string("api"), "\"api\"");
    assert_eq!(&*sf_string("a\"b\\c"), "\"a\\\"b\\\\c\"");
    assert_eq!(&*sf_string("é\n%"), "\"%c3%a9%0a%25\"");
}

#[test]
fn rate_limit_fields_exact() {
    let mut h = HeaderMap::new();
    let q = Quoted {
        limit: 100,
        window: 60,
        remaining: 50,
        reset: 30,
        full: false,
    };
    add_rate_limit(&mut h, &PolicyFields::new("api"), &q, true, true);
    assert_eq!(h[&RATELIMIT_POLICY], "\"api\";q=100;w=60");
    assert_eq!(h[&RATELIMIT], "\"api\";r=50;t=30");
    assert_eq!(h["x-ratelimit-limit"], "100");
    assert_eq!(h["x-ratelimit-remaining"], "50");
    assert_eq!(h["x-ratelimit-reset"], "30");
    let mut plain = HeaderMap::new();
    add_rate_limit(&mut plain, &PolicyFields::new("api"), &q, false, true);
    assert_eq!(plain.len(), 2);
}

#[test]
fn the_kept_policy_member_is_only_used_for_its_own_quota() {
    let fields = PolicyFields::new("tiers");
    let quoted = |limit, window| Quoted {
        limit,
        window,
        remaining: 1,
        reset: 1,
        full: false,
    };
    for (limit, window) in [(10, 1), (10, 1), (500, 60), (10, 1), (500, 60)] {
        let mut h = HeaderMap::new();
        add_rate_limit(&mut h, &fields, &quoted(limit, window), false, false);
        assert_eq!(
            h[&RATELIMIT_POLICY],
            format!("\"tiers\";q={limit};w={window}").as_str()
        );
    }
    // Past 15 digits, the largest Structured Field Integer.
    assert_eq!(
        member("\"n\"", "r", u64::MAX, "t", 0),
        b"\"n\";r=999999999999999;t=0"
    );
}

#[test]
fn the_kept_full_bucket_member_is_only_used_for_its_own_figures() {
    let fields = PolicyFields::new("k");
    // (r, t, found the bucket full): the first full one is kept; a
    // later full one with other figures (a new quota) and every
    // other quota left are built, never answered with the kept one.
    for (remaining, reset, full) in [
        (9, 1, true),
        (9, 1, true),
        (3, 1, false),
        (9, 1, false),
        (0, 2, false),
        (99, 1, true),
        (9, 2, true),
        (9, 1, true),
    ] {
        let mut h = HeaderMap::new();
        let q = Quoted {
            limit: 10,
            window: 1,
            remaining,
            reset,
            full,
        };
        add_rate_limit(&mut h, &fields, &q, false, false);
        assert_eq!(
            h[&RATELIMIT],
            format!("\"k\";r={remaining};t={reset}").as_str()
        );
    }
    let kept = fields.full.get().expect("the first full member is kept");
    assert_eq!((kept.0.remaining, kept.0.reset), (9, 1));
}

#[test]
fn kept_members_are_interned_once_per_distinct_value() {
    let a = interned(b"\"i\";q=1;w=1".to_vec());
    let b = interned(b"\"i\";q=1;w=1".to_vec());
    let c = interned(b"\"i\";q=2;w=1".to_vec());
    assert_eq!(a, "\"i\";q=1;w=1");
    assert_eq!(
        a.as_bytes().as_ptr(),
        b.as_bytes().as_ptr(),
        "one copy kept"
    );
    assert_ne!(a.as_bytes().as_ptr(), c.as_bytes().as_ptr());
    // Two layers of one policy and quota share what they keep.
    let (one, two) = (PolicyFields::new("i"), PolicyFields::new("i"));
    let full = Quoted {
        limit: 1,
        window: 1,
        remaining: 0,
        reset: 1,
        full: true,
    };
    let (m1, m2) = (
        Members::new(&one, full, false),
        Members::new(&two, full, false),
    );
    let (Some((policy1, limit1)), Some((_, limit2))) = (m1.fields, m2.fields) else {
        panic!("the fields are sent");
    };
    assert_eq!(policy1.as_bytes().as_ptr(), a.as_bytes().as_ptr());
    assert_eq!(limit1.as_bytes().as_ptr(), limit2.as_bytes().as_ptr());
}

#[test]
fn members_join_the_inner_fields_and_keep_its_legacy_trio() {
    let q = Quoted {
        limit: 100,
        window: 60,
        remaining: 99,
        reset: 1,
        full: true,
    };
    let mut h = HeaderMap::new();
    h.insert(&RATELIMIT, HeaderValue::from_static("\"inner\";r=0;t=9"));
    h.insert(&X_REMAINING, HeaderValue::from_static("0"));
    Members::new(&PolicyFields::new("outer"), q, true).apply(&mut h, false);
    assert_eq!(h[&RATELIMIT], "\"inner\";r=0;t=9, \"outer\";r=99;t=1");
    assert_eq!(h[&RATELIMIT_POLICY], "\"outer\";q=100;w=60");
    assert_eq!(h[&X_REMAINING], "0", "the inner trio is kept");
    assert!(
        !h.contains_key(&X_LIMIT) && !h.contains_key(&X_RESET),
        "a partial inner trio is never completed with another policy's figures"
    );
}

#[test]
fn stacked_policies_join_their_members_and_keep_the_inner_legacy_trio() {
    let inner = Quoted {
        limit: 1,
        window: 3600,
        remaining: 0,
        reset: 3600,
        full: false,
    };
    let outer = Quoted {
        limit: 100,
        window: 3600,
        remaining: 98,
        reset: 72,
        full: false,
    };
    let mut h = HeaderMap::new();
    h.insert(RETRY_AFTER, HeaderValue::from(3600));
    add_rate_limit(&mut h, &PolicyFields::new("per_key"), &inner, true, true);
    add_rate_limit(&mut h, &PolicyFields::new("global"), &outer, true, false);
    assert_eq!(
        h[&RATELIMIT_POLICY],
        "\"per_key\";q=1;w=3600, \"global\";q=100;w=3600"
    );
    assert_eq!(
        h[&RATELIMIT],
        "\"per_key\";r=0;t=3600, \"global\";r=98;t=72"
    );
    assert_eq!(h.get_all(&RATELIMIT).iter().count(), 1, "one field line");
    assert_eq!(h["x-ratelimit-limit"], "1");
    assert_eq!(h["x-ratelimit-remaining"], "0");
    assert_eq!(h["x-ratelimit-reset"], "3600");
    assert_eq!(h[RETRY_AFTER], "3600");
    // Lines already split (another middleware's `append`) are joined.
    let mut split = HeaderMap::new();
    split.append(&RATELIMIT, HeaderValue::from_static("\"a\";r=1;t=1"));
    split.append(&RATELIMIT, HeaderValue::from_static("\"b\";r=2;t=2"));
    add_rate_limit(&mut split, &PolicyFields::new("c"), &outer, false, false);
    assert_eq!(
        split[&RATELIMIT],
        "\"a\";r=1;t=1, \"b\";r=2;t=2, \"c\";r=98;t=72"
    );
}

/// Lines another middleware left empty or padded with spaces: the
/// padding is dropped, an empty line joins nothing (no stray `", "`), and
/// a field of empty lines only becomes this policy's member alone.
#[test]
fn empty_and_padded_lines_join_cleanly() {
    let mut h = HeaderMap::new();
    h.append(&RATELIMIT, HeaderValue::from_static(""));
    h.append(&RATELIMIT, HeaderValue::from_static("  \"a\";r=1;t=1 "));
    h.append(&RATELIMIT, HeaderValue::from_static(" "));
    join_value(
        &mut h,
        ListField::Limit,
        HeaderValue::from_static("\"b\";r=2;t=2"),
    );
    assert_eq!(h.get_all(&RATELIMIT).iter().count(), 1, "one field line");
    assert_eq!(h[&RATELIMIT], "\"a\";r=1;t=1, \"b\";r=2;t=2");

    let mut empty = HeaderMap::new();
    empty.append(&RATELIMIT_POLICY, HeaderValue::from_static(""));
    empty.append(&RATELIMIT_POLICY, HeaderValue::from_static("\t"));
    join_value(
        &mut empty,
        ListField::Policy,
        HeaderValue::from_static("\"p\";q=1;w=1"),
    );
    assert_eq!(empty.get_all(&RATELIMIT_POLICY).iter().count(), 1);
    assert_eq!(empty[&RATELIMIT_POLICY], "\"p\";q=1;w=1");

    // Into a map without the field: one line, under the draft's names.
    let mut fresh = HeaderMap::new();
    join_value(
        &mut fresh,
        ListField::Policy,
        HeaderValue::from_static("\"p\";q=1;w=1"),
    );
    join_value(
        &mut fresh,
        ListField::Limit,
        HeaderValue::from_static("\"p\";r=0;t=1"),
    );
    assert_eq!(fresh["ratelimit-policy"], "\"p\";q=1;w=1");
    assert_eq!(fresh["ratelimit"], "\"p\";r=0;t=1");
    assert_eq!(fresh.len(), 2);
}

/// A Structured Field Integer has at most 15 digits (RFC 8941 § 3.3.1):
/// a parser fails the whole field on a longer one, every policy's member
/// with it. A quota of more than 10^15 tokens a second (over a billion a
/// microsecond, such as a limit meant to be "unlimited") was advertised as
/// `q=4294967295000000`, sixteen digits (found by a hostile review).
#[test]
fn every_parameter_is_a_structured_field_integer() {
    const SF_MAX: u64 = 999_999_999_999_999;
    let mut quotas = Vec::new();
    for tokens in [u32::MAX, 2_000_000_000, 1_000_000_001, 1_000_000] {
        for micros in [1_u64, 2, 3, 7, 999_999, 1_000_000] {
            if let Ok(quota) = Quota::new(tokens, Duration::from_micros(micros)) {
                quotas.push(quota);
            }
        }
    }
    assert!(
        quotas
            .iter()
            .any(|q| q.tokens() == u32::MAX && q.period().as_micros() == 1),
        "the extreme quota builds"
    );
    for quota in quotas {
        let (q, w) = quota_qw(&quota);
        let at = (quota.tokens(), quota.period(), q, w);
        assert!(q <= SF_MAX && w <= SF_MAX, "{at:?}");
        assert!(q >= 1 && w >= 1, "{at:?}");
        assert!(q >= u64::from(quota.burst()), "{at:?}");
    }
}

/// Two different policy names spelled alike in the fields made them
/// ambiguous: every byte outside printable ASCII was replaced by `_`, so
/// `"über"` and `"_ber"`, `"a\tb"` and `"a\nb"`, listed by two stacked
/// layers, were two members named `"_ber"` (or `"a_b"`) a client could
/// not tell apart (found by a hostile review). The spelling is now one to
/// one.
#[test]
fn different_names_are_spelled_differently() {
    let names = [
        "über",
        "_ber",
        "%c3%bcber",
        "%C3%BCber",
        "a\tb",
        "a\nb",
        "a_b",
        "a%09b",
        "a%b",
        "a%25b",
        "é",
        "\u{e9}",
        "e\u{301}",
        "名前",
        "__",
        "%",
        "%%",
        "%25",
        "",
        " ",
        "_",
    ];
    let mut seen = std::collections::BTreeMap::new();
    for name in names {
        let spelled = sf_string(name);
        if let Some(other) = seen.insert(spelled.clone(), name) {
            assert_eq!(other, name, "{other:?} and {name:?} both spelled {spelled}");
        }
        // Still a Structured Field String: printable ASCII, quoted.
        assert!(
            spelled.bytes().all(|b| (b' '..=b'~').contains(&b)),
            "{spelled}"
        );
    }
}
