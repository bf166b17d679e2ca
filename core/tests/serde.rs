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
