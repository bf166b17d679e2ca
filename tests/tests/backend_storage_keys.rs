//! The Redis keys of rate limits, read back by an independent decoder:
//! `<prefix>:{<limiter>:<escaped key>}:<rule>` (the `backend` module's
//! docs). For any prefix, limiter name, rule name and key a client may
//! choose — hash-tag braces, `:`, `%`, `*`, spaces, CR/LF, NUL, any
//! Unicode, up to `MAX_KEY_LEN` bytes — the key decodes back to exactly
//! what made it (so two different limits never share a Redis key), its
//! Cluster hash tag is `<limiter>:<escaped key>` (every rule of a request
//! in one slot, and only that pair's), and no limiter key is a fleet
//! percentiles key (`<prefix>:{hist:<tracker>:<series>}`).

use fusebox::bucket::Quota;
use fusebox_std::backend::{
    escape, storage_keys, FleetConfig, FleetPercentiles, KeyPrefix, RedisBackend, RedisConfig,
    Rule, Rules, MAX_KEY_LEN,
};
use fusebox_std::{Registry, TrackerConfig};
use proptest::prelude::*;

/// `%XX` sequences decoded; `None` if `text` holds anything `escape` never
/// writes.
fn unescape(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            // Upper-case hex only: one spelling per byte.
            if hex.bytes().any(|h| h.is_ascii_lowercase()) {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else if b.is_ascii_alphanumeric() || b".-_~@".contains(&b) {
            out.push(b);
            i += 1;
        } else {
            return None;
        }
    }
    String::from_utf8(out).ok()
}

/// The Cluster hash tag of `key`, as Redis finds it: between the first
/// `{` and the first `}` after it, if not empty.
fn hash_tag(key: &str) -> Option<&str> {
    let open = key.find('{')?;
    let close = key[open + 1..].find('}')? + open + 1;
    (close > open + 1).then(|| &key[open + 1..close])
}

/// `(prefix, limiter, key, rule)` read back from a storage key.
fn decode(stored: &str) -> Option<(String, String, String, String)> {
    let (prefix, rest) = stored.split_once(":{")?;
    let tag = hash_tag(stored)?;
    let rule = rest.strip_prefix(tag)?.strip_prefix("}:")?;
    let (limiter, escaped) = tag.split_once(':')?;
    Some((
        prefix.to_owned(),
        limiter.to_owned(),
        unescape(escaped)?,
        rule.to_owned(),
    ))
}

fn prefix() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("fusebox".to_owned()),
        Just("a:".to_owned()),
        "[!-z|~]{1,12}".prop_filter("no braces", |p| !p.contains(['{', '}'])),
    ]
}

/// Registry names (the only limiter and rule names accepted).
fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z][a-zA-Z0-9]{0,5}(_[a-zA-Z0-9]{1,4}){0,2}"
}

/// Keys a client chooses: hostile characters, any Unicode, long ones.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        "[{}:%* \r\n\u{0}a-c]{0,12}",
        "\\PC{0,40}",
        any::<String>(),
        Just("k".repeat(MAX_KEY_LEN)),
        Just("}".repeat(MAX_KEY_LEN)),
    ]
    .prop_filter("storable", |k| k.len() <= MAX_KEY_LEN)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn every_storage_key_decodes_to_what_made_it(
        p in prefix(),
        limiter in name(),
        k in key(),
        rule_names in proptest::collection::btree_set(name(), 1..4),
    ) {
        let Ok(prefix) = KeyPrefix::new(&p) else { return Ok(()) };
        let quota = Quota::per_second(10).unwrap();
        let rules = Rules::new(rule_names.iter().map(|r| Rule::new(r, quota).unwrap())).unwrap();
        let Ok(keys) = storage_keys(&prefix, &limiter, &k, &rules) else {
            // Only the reserved names are refused.
            prop_assert!(["breaker", "hist"].contains(&limiter.as_str()));
            return Ok(());
        };
        let escaped = escape(&k).unwrap();
        for (stored, rule) in keys.iter().zip(&rule_names) {
            let want = (p.clone(), limiter.clone(), k.clone(), rule.clone());
            prop_assert_eq!(decode(stored), Some(want), "{}", stored);
            // One slot per (limiter, key), whatever the key holds.
            let tag = format!("{limiter}:{escaped}");
            prop_assert_eq!(hash_tag(stored), Some(tag.as_str()));
            // A fleet percentiles key ends at its hash tag.
            prop_assert!(!stored.ends_with('}'), "{}", stored);
        }
    }

    /// Two requests that differ in any part never share a key.
    #[test]
    fn different_limits_never_share_a_key(
        a in (name(), key(), name()),
        b in (name(), key(), name()),
    ) {
        let quota = Quota::per_second(10).unwrap();
        let stored = |(limiter, k, rule): &(String, String, String)| {
            let rules = Rules::single(rule, quota).unwrap();
            storage_keys(&KeyPrefix::default(), limiter, k, &rules).ok()
        };
        if let (Some(x), Some(y)) = (stored(&a), stored(&b)) {
            prop_assert_eq!(x == y, a == b, "{:?} {:?}", a, b);
        }
    }
}

/// Keys that differ only once escaped or prefixed, and the fleet
/// percentiles' keys beside a limiter's.
#[test]
fn near_collisions_stay_apart() {
    let rules = Rules::single("r", Quota::per_second(1).unwrap()).unwrap();
    let default = KeyPrefix::default();
    let keys = |prefix: &KeyPrefix, limiter: &str, key: &str| {
        storage_keys(prefix, limiter, key, &rules)
            .unwrap()
            .remove(0)
    };
    let all = [
        keys(&default, "api", "a:b"),
        keys(&default, "api", "a%3Ab"),
        keys(&default, "api", "a%3ab"),
        keys(&default, "api", "a}:b"),
        keys(&default, "api", ""),
        keys(&default, "api_a", "b"),
        keys(&KeyPrefix::new("fusebox:").unwrap(), "api", "a:b"),
        keys(&KeyPrefix::new("fusebox:{").unwrap_or_default(), "api", "x"),
    ];
    for (i, x) in all.iter().enumerate() {
        assert!(all[..i].iter().all(|y| y != x), "{x} repeated");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let registry = Registry::new();
        let tracker = registry.tracker("api", TrackerConfig::default()).unwrap();
        let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:1")).unwrap();
        let fleet = FleetPercentiles::new("api", tracker, &backend, FleetConfig::new("a").unwrap());
        for series in ["r", "a:b", "}:r", ""] {
            let key = fleet.key(series).unwrap();
            assert!(key.ends_with('}') && hash_tag(&key).is_some_and(|t| t.starts_with("hist:")));
            assert!(
                all.iter().all(|x| *x != key && decode(&key).is_none()),
                "{key}"
            );
        }
    });
}
