//! With the `serde` feature: configs, snapshots and the cache's data types
//! round-trip, and a config read from outside is validated exactly like one
//! built in code.
#![cfg(feature = "serde")]

use fusebox::breaker::{CircuitBreaker, Config, Outcome, Snapshot, State};
use fusebox::{Duration, Instant};

fn config() -> Config {
    Config::builder()
        .consecutive_failures(2)
        .failure_rate(50)
        .window(10)
        .minimum_calls(4)
        .slow_call(Duration::from_millis(200), 80)
        .open_for(Duration::from_secs(3))
        .max_open_for(Duration::from_secs(30))
        .build()
        .unwrap()
}

#[test]
fn config_round_trips() {
    let json = serde_json::to_string(&config()).unwrap();
    let back: Config = serde_json::from_str(&json).unwrap();
    assert_eq!(back, config());
}

#[test]
fn an_invalid_config_is_rejected_on_deserialize() {
    let mut value = serde_json::to_value(config()).unwrap();
    value["window"] = 0.into();
    let err = serde_json::from_value::<Config>(value).unwrap_err();
    assert!(
        err.to_string().contains("window must be in 1..=64"),
        "{err}"
    );

    let mut value = serde_json::to_value(config()).unwrap();
    value["consecutive_failures"] = 0.into();
    value["failure_rate"] = 0.into();
    value["slow_rate"] = 0.into();
    let err = serde_json::from_value::<Config>(value).unwrap_err();
    assert!(err.to_string().contains("no trip condition"), "{err}");
}

#[test]
fn snapshot_round_trips_through_json() {
    let breaker = CircuitBreaker::new(config());
    let now = Instant::from_secs(50);
    for _ in 0..2 {
        let permit = breaker.try_acquire(now).unwrap();
        permit.record(Outcome::Failure, now, Duration::from_millis(1));
    }
    let snapshot = breaker.snapshot(now);
    assert_eq!(snapshot.state, State::Open);
    let json = serde_json::to_string(&snapshot).unwrap();
    let back: Snapshot = serde_json::from_str(&json).unwrap();
    assert_eq!(back, snapshot);

    let elsewhere = CircuitBreaker::new(config());
    elsewhere.restore(&back, Instant::ZERO).unwrap();
    assert_eq!(elsewhere.state(Instant::ZERO), State::Open);
    assert_eq!(elsewhere.metrics(), breaker.metrics());
}

#[test]
fn cache_metrics_and_displaced_round_trip() {
    use fusebox::cache::{CacheMetrics, Displaced};

    let metrics = CacheMetrics {
        hits: 1,
        misses: 2,
        inserts: 3,
        evictions: 4,
        expirations: u64::MAX,
        contended: 0,
    };
    let json = serde_json::to_string(&metrics).unwrap();
    assert_eq!(
        serde_json::from_str::<CacheMetrics>(&json).unwrap(),
        metrics
    );

    for displaced in [
        Displaced::Replaced(1u32, "a".to_owned()),
        Displaced::Evicted(2, "b".to_owned()),
        Displaced::Expired(3, "c".to_owned()),
    ] {
        let json = serde_json::to_string(&displaced).unwrap();
        let back: Displaced<u32, String> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, displaced);
    }
}

#[cfg(feature = "half-open-timeout")]
#[test]
fn max_half_open_round_trips_and_is_optional_on_the_wire() {
    let config = Config::builder()
        .consecutive_failures(3)
        .max_half_open(Duration::from_secs(9))
        .build()
        .unwrap();
    let json = serde_json::to_string(&config).unwrap();
    assert_eq!(serde_json::from_str::<Config>(&json).unwrap(), config);
    // A config written before the field existed reads as "no timeout".
    let mut value = serde_json::to_value(config).unwrap();
    let fields = value.as_object_mut().unwrap();
    for new in [
        "max_half_open",
        "time_interval",
        "time_buckets",
        "failure_count",
    ] {
        fields.remove(new);
    }
    let old: Config = serde_json::from_value(value).unwrap();
    assert_eq!(old.max_half_open(), None);
    let mut value = serde_json::to_value(config).unwrap();
    value["max_half_open"] =
        serde_json::to_value(Config::MAX_HALF_OPEN + Config::MAX_HALF_OPEN).unwrap();
    let err = serde_json::from_value::<Config>(value).unwrap_err();
    assert!(err.to_string().contains("max_half_open"), "{err}");
}

#[cfg(feature = "time-window")]
#[test]
fn a_time_window_config_round_trips() {
    let config = Config::builder()
        .time_window(Duration::from_secs(60), 4)
        .failure_count(5)
        .failure_rate(50)
        .minimum_calls(20)
        .build()
        .unwrap();
    let json = serde_json::to_string(&config).unwrap();
    assert_eq!(serde_json::from_str::<Config>(&json).unwrap(), config);
    let mut value = serde_json::to_value(config).unwrap();
    value["time_buckets"] = 3.into();
    let err = serde_json::from_value::<Config>(value).unwrap_err();
    assert!(err.to_string().contains("time_window"), "{err}");
}

#[cfg(not(feature = "half-open-timeout"))]
#[test]
fn a_half_open_timeout_needs_the_feature() {
    let mut value = serde_json::to_value(config()).unwrap();
    value["max_half_open"] = 5_000_000.into();
    let err = serde_json::from_value::<Config>(value).unwrap_err();
    assert!(err.to_string().contains("half-open-timeout"), "{err}");
}

#[cfg(not(feature = "time-window"))]
#[test]
fn a_time_window_config_needs_the_feature() {
    let mut value = serde_json::to_value(config()).unwrap();
    value["consecutive_failures"] = 0.into();
    value["time_interval"] = 15_000_000.into();
    value["time_buckets"] = 4.into();
    let err = serde_json::from_value::<Config>(value).unwrap_err();
    assert!(err.to_string().contains("time-window"), "{err}");
}

/// A wire config whose fields the decoded `Config` could not hold: every
/// setting of the builder is validated, none is dropped on the way in.
/// `failure_count` or a time interval without time-window buckets (a
/// hand-edited file that forgot `time_buckets`) is what the builder
/// refuses as `failure_count` without `time_window` or a window out of
/// range; in a build without the `time-window` feature it is refused too.
#[test]
fn a_time_window_setting_without_its_buckets_is_rejected_not_dropped() {
    let mut value = serde_json::to_value(config()).unwrap();
    value["failure_count"] = 5.into();
    let err = serde_json::from_value::<Config>(value).unwrap_err();
    assert!(
        err.to_string()
            .contains("failure_count needs a time_window"),
        "{err}"
    );

    // A rate policy over the default window, which a time window could
    // replace without conflict.
    let rate = Config::builder().failure_rate(50).build().unwrap();
    let mut value = serde_json::to_value(rate).unwrap();
    value["time_interval"] = 15_000_000.into();
    let err = serde_json::from_value::<Config>(value).unwrap_err();
    let expected = if cfg!(feature = "time-window") {
        "time_window needs a power-of-two bucket count"
    } else {
        "needs the `time-window` feature"
    };
    assert!(err.to_string().contains(expected), "{err}");
}

/// A hand-edited config with a misspelt key (here the optional half-open
/// timeout and time-window settings, which a config may leave out) is
/// refused with the key's name, never read as if the setting were absent:
/// a `max_half_opn` would otherwise leave the breaker without the timeout
/// its operator set.
#[test]
fn a_misspelt_setting_is_rejected_not_dropped() {
    for typo in [
        "max_half_opn",
        "failure_cont",
        "time_buckts",
        "timeinterval",
        "minimum_call",
    ] {
        let mut value = serde_json::to_value(config()).unwrap();
        value[typo] = 5.into();
        let err = serde_json::from_value::<Config>(value).unwrap_err();
        assert!(err.to_string().contains(typo), "{typo}: {err}");
    }
}

/// A time-window config with a count-based `window` beside it: the
/// builder refuses the pair (`TimeWindowConflict`), so deserialising does.
#[cfg(feature = "time-window")]
#[test]
fn a_time_window_config_with_a_count_window_is_rejected() {
    let config = Config::builder()
        .time_window(Duration::from_secs(60), 4)
        .failure_rate(50)
        .build()
        .unwrap();
    let mut value = serde_json::to_value(config).unwrap();
    value["window"] = 10.into();
    let err = serde_json::from_value::<Config>(value).unwrap_err();
    assert!(
        err.to_string()
            .contains("time_window cannot be combined with a count-based window"),
        "{err}"
    );
}

/// `text` as a tool that reads JSON numbers as IEEE doubles writes it back
/// (JavaScript's `JSON.parse` then `JSON.stringify`: integers print in
/// full, rounded to 53 bits).
fn through_doubles(text: &str) -> String {
    use std::fmt::Write as _;

    let mut out = String::new();
    let mut digits = String::new();
    for c in text.chars().chain(core::iter::once(' ')) {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        if !digits.is_empty() {
            let double: f64 = digits.parse().unwrap();
            write!(out, "{double}").unwrap();
            digits.clear();
        }
        out.push(c);
    }
    out.pop();
    out
}

/// A config is written with numbers every common format keeps: none
/// above 2⁵³ (exact as a double, so JavaScript and other double-based JSON
/// tools keep it; within TOML's `i64`). A config without a slow-call
/// policy holds its threshold as `Duration::MAX` (2⁶⁴ − 1 µs), which must
/// not reach the wire: through doubles it became 18 446 744 073 709 552 000,
/// which no `u64` reads back, so the config could not be read at all.
#[test]
fn a_config_survives_a_tool_that_reads_numbers_as_doubles() {
    let mut configs = vec![
        config(),
        Config::builder().consecutive_failures(5).build().unwrap(),
        Config::builder()
            .failure_rate(50)
            .window(20)
            .build()
            .unwrap(),
        Config::builder()
            .slow_call(Config::MAX_SLOW_THRESHOLD, 100)
            .open_for(Config::MAX_OPEN_FOR)
            .build()
            .unwrap(),
    ];
    #[cfg(feature = "time-window")]
    configs.push(
        Config::builder()
            .time_window(Duration::from_secs(60), 4)
            .failure_count(5)
            .build()
            .unwrap(),
    );
    for config in configs.drain(..) {
        let json = serde_json::to_string(&config).unwrap();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        for (field, number) in value.as_object().unwrap() {
            let n = number.as_u64().unwrap();
            assert!(n <= 1 << 53, "{field} = {n} in {json}");
        }
        let edited = through_doubles(&json);
        let back: Config = serde_json::from_str(&edited)
            .unwrap_or_else(|e| panic!("{e}: {edited} (written as {json})"));
        assert_eq!(back, config, "{edited}");
    }
}

/// A quota written by a server (where every rate's own burst fits) and
/// read by firmware: 100 an hour with a burst of 5 fits a 32-bit word (a
/// 3-minute span) though the hour-long span of a burst of 100 does not,
/// and reads back as the same quota on every target. One whose burst does
/// not fit is refused there, with the validation's message.
#[test]
fn a_quota_whose_burst_fits_deserializes_on_every_target() {
    use fusebox::bucket::Quota;
    let hour = serde_json::to_string(&Duration::from_secs(3_600)).unwrap();
    let json = format!(r#"{{"tokens":100,"period":{hour},"burst":5}}"#);
    let q: Quota = serde_json::from_str(&json).unwrap();
    assert_eq!(
        (q.tokens(), q.period(), q.burst()),
        (100, Duration::from_secs(3_600), 5)
    );
    assert_eq!(serde_json::to_string(&q).unwrap(), json);
    let narrow = !cfg!(target_has_atomic = "64") || cfg!(fusebox_narrow_words);
    let too_long = format!(r#"{{"tokens":100,"period":{hour},"burst":100}}"#);
    assert_eq!(serde_json::from_str::<Quota>(&too_long).is_err(), narrow);
}

/// Every leaf of `v` (object fields and array elements, nested), as a
/// JSON pointer.
fn leaves(v: &serde_json::Value, at: String, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                leaves(x, format!("{at}/{k}"), out);
            }
        }
        serde_json::Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                leaves(x, format!("{at}/{i}"), out);
            }
        }
        _ => out.push(at),
    }
}

/// `doc` with the leaf at `pointer` replaced (`Some`) or removed (`None`).
fn edited(doc: &serde_json::Value, pointer: &str, by: Option<&serde_json::Value>) -> String {
    let mut doc = doc.clone();
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    match doc.pointer_mut(parent).unwrap() {
        serde_json::Value::Object(m) => match by {
            Some(v) => {
                m.insert(key.to_owned(), v.clone());
            }
            None => {
                m.remove(key);
            }
        },
        serde_json::Value::Array(a) => {
            let i: usize = key.parse().unwrap();
            match by {
                Some(v) => a[i] = v.clone(),
                None => {
                    a.remove(i);
                }
            }
        }
        _ => unreachable!(),
    }
    doc.to_string()
}

/// A document's reader: `false` if serde refuses the text, else `true`
/// once the value read has been given to the call that consumes it.
type Apply = Box<dyn Fn(&str) -> bool>;

/// A valid document of each type read from outside, with its reader.
#[allow(clippy::too_many_lines)] // one document and reader per type
fn consumers() -> Vec<(&'static str, serde_json::Value, Apply)> {
    use fusebox::breaker::Decision;
    use fusebox::bucket::{BucketSnapshot, Quota, TokenBucket};
    use fusebox::histogram::{Bucket, Histogram, Totals};

    let now = Instant::from_secs(50);
    // Closed with a window of three (one slow failure), then open.
    let breaker = CircuitBreaker::new(config());
    for outcome in [Outcome::Success, Outcome::Failure, Outcome::Success] {
        let p = breaker.try_acquire(now).unwrap();
        p.record(
            outcome,
            now,
            Duration::from_secs(u64::from(outcome == Outcome::Failure)),
        );
    }
    let closed = breaker.snapshot(now);
    while let Ok(p) = breaker.try_acquire(now) {
        p.record(Outcome::Failure, now, Duration::ZERO);
    }
    let open = breaker.snapshot(now);
    assert_eq!((closed.window_calls, open.state), (3, State::Open));
    let restore = move |text: &str| {
        serde_json::from_str::<Snapshot>(text).is_ok_and(|s| {
            let b = CircuitBreaker::new(config());
            let before = b.snapshot(now);
            let r = b.restore(&s, now);
            assert!(
                r.is_ok() || b.snapshot(now) == before,
                "{r:?} changed {text}"
            );
            true
        })
    };
    let h: Histogram = Histogram::new();
    for v in [3, 700, 1_000_000, u64::MAX] {
        h.record(v);
    }
    let buckets: Vec<Bucket> = h.buckets().collect();
    let decision = Decision {
        version: 9,
        state: State::Open,
        open_remaining: Some(Duration::from_secs(2)),
        reopen_streak: 1,
    };
    let quota = Quota::per_second(10).unwrap().with_burst(4).unwrap();

    vec![
        (
            "Snapshot (closed)",
            serde_json::to_value(closed).unwrap(),
            Box::new(restore),
        ),
        (
            "Snapshot (open)",
            serde_json::to_value(open).unwrap(),
            Box::new(restore),
        ),
        (
            "Decision",
            serde_json::to_value(decision).unwrap(),
            Box::new(move |text| {
                serde_json::from_str::<Decision>(text).is_ok_and(|d| {
                    let _ = CircuitBreaker::new(config()).merge(&d, now);
                    true
                })
            }),
        ),
        (
            "Config",
            serde_json::to_value(config()).unwrap(),
            Box::new(move |text| serde_json::from_str::<Config>(text).is_ok()),
        ),
        (
            "Quota",
            serde_json::to_value(quota).unwrap(),
            Box::new(move |text| {
                serde_json::from_str::<Quota>(text).is_ok_and(|q| {
                    let _ = TokenBucket::new(q).try_acquire(now);
                    true
                })
            }),
        ),
        (
            "BucketSnapshot",
            serde_json::to_value(BucketSnapshot {
                until_full: Duration::from_millis(300),
            })
            .unwrap(),
            Box::new(move |text| {
                serde_json::from_str::<BucketSnapshot>(text).is_ok_and(|s| {
                    let b = TokenBucket::new(quota);
                    b.restore(&s, now);
                    assert!(b.available(now) <= quota.burst());
                    true
                })
            }),
        ),
        (
            "buckets and totals",
            serde_json::json!([buckets, h.totals().unwrap()]),
            Box::new(move |text| {
                serde_json::from_str::<(Vec<Bucket>, Totals)>(text).is_ok_and(|(list, totals)| {
                    let into: Histogram = Histogram::new();
                    let r = into.merge_buckets_with_totals(list.iter().copied(), totals);
                    assert!(
                        r.is_ok() || into.count() == 0,
                        "{r:?} applied part of {text}"
                    );
                    true
                })
            }),
        ),
    ]
}

/// Sound-but-checked (review of persisted state): hostile or damaged JSON
/// for every type read from outside (a breaker's `Snapshot`, closed with a
/// window and open, `Decision` and `Config`, a `Quota`, a
/// `BucketSnapshot`, a histogram's bucket list and `Totals`): each leaf
/// replaced by a negative, fractional, huge (past `u64`, `1e400`), `NaN`
/// or infinite, null, boolean, string, array or object value, or removed;
/// each top-level key given twice; every truncation. Each document is
/// refused by serde, or read and then given to the call that consumes it
/// (`restore`, `merge`, `TokenBucket::restore`,
/// `merge_buckets_with_totals`), which answers with its typed result
/// (a refused restore or merge of buckets changing nothing): none panics,
/// and no truncated or doubled-key document is read at all.
#[test]
fn hostile_documents_are_refused_or_answered_never_panic() {
    let docs = consumers();
    // Raw tokens, some of which no `Value` holds (`1e400`, `NaN`).
    let hostile = [
        "-1",
        "-9223372036854775808",
        "0.5",
        "-0.0",
        "1e3",
        "18446744073709551616",
        "1e400",
        "NaN",
        "-Infinity",
        "null",
        "true",
        "\"NaN\"",
        "\"18\"",
        "[]",
        "{}",
        "18446744073709551615",
    ];
    for (name, doc, apply) in &docs {
        let text = doc.to_string();
        assert!(apply(&text), "{name}: the valid document itself: {text}");
        let mut paths = Vec::new();
        leaves(doc, String::new(), &mut paths);
        for path in &paths {
            let marked = edited(doc, path, Some(&serde_json::json!("@hostile@")));
            for token in hostile {
                let _ = apply(&marked.replace("\"@hostile@\"", token));
            }
            let _ = apply(&edited(doc, path, None));
        }
        for end in 0..text.len() {
            assert!(
                !apply(&text[..end]),
                "{name}: read truncated: {}",
                &text[..end]
            );
        }
        // A key given twice (a tampered copy appended) is refused, not
        // read as either value.
        for (key, value) in doc.as_object().into_iter().flatten() {
            let twice = format!("{},\"{key}\":{value}}}", &text[..text.len() - 1]);
            assert!(!apply(&twice), "{name}: read with `{key}` twice: {twice}");
        }
    }
}
