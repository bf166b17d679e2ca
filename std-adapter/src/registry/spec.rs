//! The settings of one breaker, limiter or keyed limiter as a
//! configuration spells them, and their validation into core values.

use fusebox::breaker::{Config, ConfigError};
use fusebox::bucket::{Quota, QuotaError};
use fusebox::Duration;

use super::error::FieldError;

/// A circuit breaker's settings (see the core's
/// [`ConfigBuilder`](fusebox::breaker::ConfigBuilder) for their meaning);
/// at least one of `consecutive_failures`, `failure_rate` or
/// `slow_call_rate` must be set.
///
/// ```
/// use fusebox_std::registry::BreakerSpec;
///
/// let spec: BreakerSpec = serde_json::from_str(
///     r#"{"consecutive_failures": 5, "open_for": "10s", "max_half_open": "30s"}"#,
/// )?;
/// assert_eq!(spec.consecutive_failures, Some(5));
/// assert_eq!(spec.max_half_open.as_deref(), Some("30s"));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerSpec {
    /// Open after this many failures in a row (1..=255).
    pub consecutive_failures: Option<u64>,
    /// Open at this failure percentage over the window (1..=100).
    pub failure_rate: Option<u64>,
    /// The sliding window, in calls (1..=64, default 64). Only with
    /// `failure_rate` or `slow_call_rate`: a breaker that trips on
    /// `consecutive_failures` alone keeps no window, and one set beside
    /// it is refused.
    pub window: Option<u64>,
    /// Calls the window must hold before a rate counts (1..=window); only
    /// with `failure_rate` or `slow_call_rate`, as `window`.
    pub minimum_calls: Option<u64>,
    /// A call this long or longer is slow (with `slow_call_rate`).
    pub slow_call_threshold: Option<String>,
    /// Open at this slow-call percentage (1..=100; with
    /// `slow_call_threshold`).
    pub slow_call_rate: Option<u64>,
    /// Time open before trial calls (default `"60s"`).
    pub open_for: Option<String>,
    /// Upper bound as the open time doubles on repeated trips.
    pub max_open_for: Option<String>,
    /// Trial calls in flight while half-open (1..=63, default 1).
    pub half_open_permits: Option<u64>,
    /// Successful trials that close it (1..=63).
    pub close_after: Option<u64>,
    /// Reopen a half-open breaker whose trials have not decided within
    /// this long (`"10s"`; above zero, at most
    /// [`Config::MAX_HALF_OPEN`](fusebox::breaker::Config::MAX_HALF_OPEN),
    /// about 71 min; see
    /// [`ConfigBuilder::max_half_open`](fusebox::breaker::ConfigBuilder::max_half_open)).
    /// Default: none, a half-open breaker waits for its trials however
    /// long they take (Resilience4j's default), so a trial to an upstream
    /// that hangs holds it half-open, every other call refused, until
    /// something else (a timeout around the call) ends that trial.
    pub max_half_open: Option<String>,
    /// While open, the service is not ready.
    pub required: bool,
}

/// A token bucket's quota: `rate` tokens per `period` (default `"1s"`),
/// holding up to `burst` (default `rate`).
///
/// ```
/// use fusebox_std::registry::QuotaSpec;
///
/// let spec: QuotaSpec = serde_json::from_str(r#"{"rate": 100, "burst": 20}"#)?;
/// assert_eq!((spec.rate, spec.period, spec.burst), (Some(100), None, Some(20)));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuotaSpec {
    /// Tokens per period (required, 1..=4294967295).
    pub rate: Option<u64>,
    /// The period (default `"1s"`).
    pub period: Option<String>,
    /// The bucket's size (1..=4294967295, default `rate`).
    pub burst: Option<u64>,
}

/// A keyed limiter: a quota per key, and what to do with a new key when
/// the table is full (with `overflow`: charge a bucket shared by all such
/// keys; without: reject).
///
/// ```
/// use fusebox_std::registry::KeyedLimiterSpec;
///
/// let spec: KeyedLimiterSpec = serde_json::from_str(r#"{"rate": 10, "overflow": {"rate": 100}}"#)?;
/// assert_eq!(spec.overflow.and_then(|o| o.rate), Some(100));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeyedLimiterSpec {
    /// Tokens per period per key (required).
    pub rate: Option<u64>,
    /// The period (default `"1s"`).
    pub period: Option<String>,
    /// Each key's bucket size (default `rate`).
    pub burst: Option<u64>,
    /// The shared bucket for keys that find no slot.
    pub overflow: Option<QuotaSpec>,
}

impl BreakerSpec {
    /// `window` and `minimum_calls`, to be checked for their range; each
    /// `None` where it applies to nothing, refused into `errors`.
    ///
    /// The window holds the outcomes a rate is computed from: a breaker
    /// that trips on `consecutive_failures` alone keeps none, and
    /// `set_config` cannot give it a rate later (the window is laid out
    /// at construction), so `window` and `minimum_calls` beside it would
    /// do nothing (found by a review: they were accepted).
    fn window_settings(
        &self,
        path: &str,
        errors: &mut Vec<FieldError>,
    ) -> (Option<u64>, Option<u64>) {
        let windowless = self.consecutive_failures.is_some()
            && self.failure_rate.is_none()
            && self.slow_call_rate.is_none()
            && self.slow_call_threshold.is_none();
        let mut applied = |field: &str, value: Option<u64>| {
            if windowless && value.is_some() {
                errors.push(FieldError::new(
                    format!("{path}.{field}"),
                    format!(
                        "{field} applies to a failure_rate or slow_call_rate breaker; \
                         this one trips on consecutive_failures only"
                    ),
                ));
                None
            } else {
                value
            }
        };
        (
            applied("window", self.window),
            applied("minimum_calls", self.minimum_calls),
        )
    }

    pub(super) fn build(&self, path: &str, errors: &mut Vec<FieldError>) -> Option<Config> {
        let before = errors.len();
        let window = self.window.unwrap_or(64);
        let (checked_window, checked_minimum) = self.window_settings(path, errors);
        let mut at = |field: &str, message: String| {
            errors.push(FieldError::new(format!("{path}.{field}"), message));
        };
        let ranges = [
            (
                "consecutive_failures",
                self.consecutive_failures,
                1,
                u64::from(Config::MAX_CONSECUTIVE_FAILURES),
            ),
            ("failure_rate", self.failure_rate, 1, 100),
            ("slow_call_rate", self.slow_call_rate, 1, 100),
            ("window", checked_window, 1, 64),
            ("minimum_calls", checked_minimum, 1, window.clamp(1, 64)),
            ("half_open_permits", self.half_open_permits, 1, 63),
            ("close_after", self.close_after, 1, 63),
        ];
        for (field, value, low, high) in ranges {
            if let Some(v) = value.filter(|v| !(low..=high).contains(v)) {
                at(field, format!("must be {low}..={high}, got {v}"));
            }
        }
        let mut duration = |field: &str, text: &Option<String>| {
            text.as_deref().and_then(|t| match parse_duration(t) {
                Ok(d) => Some(d),
                Err(message) => {
                    at(field, message);
                    None
                }
            })
        };
        let open_for = duration("open_for", &self.open_for);
        let max_open_for = duration("max_open_for", &self.max_open_for);
        let slow_threshold = duration("slow_call_threshold", &self.slow_call_threshold);
        let max_half_open = duration("max_half_open", &self.max_half_open);
        match (&self.slow_call_threshold, self.slow_call_rate) {
            (Some(_), None) => at("slow_call_rate", "required with slow_call_threshold".into()),
            (None, Some(_)) => at("slow_call_threshold", "required with slow_call_rate".into()),
            _ => {}
        }
        if errors.len() > before {
            return None;
        }
        // In range: the narrowing casts below are exact.
        let mut b = Config::builder();
        if let Some(n) = self.consecutive_failures {
            b = b.consecutive_failures(n as u32);
        }
        if let Some(p) = self.failure_rate {
            b = b.failure_rate(p as u8);
        }
        if let (Some(t), Some(p)) = (slow_threshold, self.slow_call_rate) {
            b = b.slow_call(t, p as u8);
        }
        if let Some(w) = self.window {
            b = b.window(w as u8);
        }
        if let Some(m) = self.minimum_calls {
            b = b.minimum_calls(m as u8);
        }
        if let Some(d) = open_for {
            b = b.open_for(d);
        }
        if let Some(d) = max_open_for {
            b = b.max_open_for(d);
        }
        if let Some(n) = self.half_open_permits {
            b = b.half_open_permits(n as u8);
        }
        if let Some(n) = self.close_after {
            b = b.close_after(n as u8);
        }
        if let Some(d) = max_half_open {
            b = b.max_half_open(d);
        }
        b.build()
            .map_err(|e| {
                let field = match e {
                    ConfigError::ZeroSlowThreshold | ConfigError::SlowThresholdTooLong(_) => {
                        ".slow_call_threshold"
                    }
                    ConfigError::OpenForOutOfRange(_) => ".open_for",
                    ConfigError::MaxOpenForOutOfRange(_) => ".max_open_for",
                    ConfigError::MaxHalfOpenOutOfRange(_) => ".max_half_open",
                    ConfigError::MinimumCallsOutOfRange { .. } => ".minimum_calls",
                    _ => "",
                };
                let message = match e {
                    ConfigError::NoTripCondition => {
                        "no trip condition: set consecutive_failures, failure_rate or slow_call_rate".to_owned()
                    }
                    other => other.to_string(),
                };
                errors.push(FieldError::new(format!("{path}{field}"), message));
            })
            .ok()
    }
}

impl QuotaSpec {
    pub(super) fn build(&self, path: &str, errors: &mut Vec<FieldError>) -> Option<Quota> {
        let before = errors.len();
        let mut at = |field: &str, message: String| {
            errors.push(FieldError::new(format!("{path}.{field}"), message));
        };
        let max = u64::from(u32::MAX);
        match self.rate {
            None => at("rate", "required".into()),
            Some(r) if !(1..=max).contains(&r) => at("rate", format!("must be 1..={max}, got {r}")),
            Some(_) => {}
        }
        if let Some(b) = self.burst.filter(|b| !(1..=max).contains(b)) {
            at("burst", format!("must be 1..={max}, got {b}"));
        }
        let period = match self.period.as_deref().map(parse_duration) {
            None => Some(Duration::from_secs(1)),
            Some(Ok(d)) => Some(d),
            Some(Err(message)) => {
                at("period", message);
                None
            }
        };
        if errors.len() > before {
            return None;
        }
        let (rate, period) = (self.rate? as u32, period?);
        // With a burst, built directly: `Quota::new` first checks the
        // range of the rate's own burst of `rate` tokens, which may be
        // out of range where the burst asked for is not (found by a
        // hostile review: 4294967295 per 2^50 us with a burst of 1000, a
        // 262 s burst span, was refused as "burst × period / tokens is
        // out of range").
        let quota = match self.burst {
            Some(b) => Quota::new_with_burst(rate, period, b as u32),
            None => Quota::new(rate, period),
        };
        quota
            .map_err(|e| {
                let field = match e {
                    QuotaError::ZeroPeriod => ".period",
                    QuotaError::ZeroTokens => ".rate",
                    QuotaError::ZeroBurst => ".burst",
                    _ => "",
                };
                errors.push(FieldError::new(format!("{path}{field}"), e.to_string()));
            })
            .ok()
    }
}

/// `"250ms"`, `"30s"`, …: a whole number and a unit, nothing between or
/// around them (as documented: `" 30s "` and `"30 s"` were read, found by
/// a review).
pub(super) fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let per_unit = match unit {
        "us" | "µs" => Some(1),
        "ms" => Some(1_000),
        "s" => Some(1_000_000),
        "m" => Some(60_000_000),
        "h" => Some(3_600_000_000),
        _ => None,
    };
    let too_long = || format!("duration \"{}\" is too long", super::error::shown(text));
    match (digits.parse::<u64>(), per_unit) {
        (Ok(n), Some(per)) => n
            .checked_mul(per)
            .map(Duration::from_micros)
            .ok_or_else(too_long),
        // Digits only, but more than a u64 holds.
        (Err(e), Some(_)) if *e.kind() == std::num::IntErrorKind::PosOverflow => Err(too_long()),
        // The text is the document's: shown escaped and cut, as names are.
        _ => Err(format!(
            "must be a duration such as \"30s\" (units: us, ms, s, m, h), got \"{}\"",
            super::error::shown(text)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use fusebox::Duration;

    /// A slow-call threshold over the core's bound was reported on the
    /// breaker (`breakers.a`), not on the field that holds it (found by a
    /// hostile review).
    #[test]
    fn a_slow_call_threshold_too_long_is_reported_on_its_field() {
        use crate::registry::RegistryConfig;
        let config = RegistryConfig::from_toml(
            "[breakers.a]\nslow_call_rate = 50\nslow_call_threshold = \"3h\"\n",
        )
        .unwrap();
        let err = config.validate().unwrap_err();
        assert_eq!(err.fields().len(), 1);
        assert_eq!(err.fields()[0].path(), "breakers.a.slow_call_threshold");
    }

    /// A quota whose burst is in range was refused when the rate's own
    /// burst (of `rate` tokens) was not: it was built as `Quota::new`,
    /// then `with_burst` (found by a hostile review).
    #[test]
    fn a_quota_is_checked_with_the_burst_it_asks_for() {
        use crate::registry::{Registry, RegistryConfig};
        let text =
            "[limiters.a]\nrate = 4294967295\nperiod = \"1125899906842624us\"\nburst = 1000\n";
        let registry = Registry::from_config(&RegistryConfig::from_toml(text).unwrap()).unwrap();
        let quota = registry.get_limiter("a").unwrap().quota();
        assert_eq!((quota.tokens(), quota.burst()), (u32::MAX, 1000));
        assert_eq!(quota.period(), Duration::from_micros(1 << 50));
        // Without a burst, the rate's own is out of range, on the limiter.
        let text = "[limiters.a]\nrate = 4294967295\nperiod = \"1125899906842624us\"\n";
        let err = RegistryConfig::from_toml(text)
            .unwrap()
            .validate()
            .unwrap_err();
        assert_eq!(err.fields()[0].path(), "limiters.a");
    }

    #[test]
    fn durations() {
        let ok = [
            ("0s", Duration::ZERO),
            ("7us", Duration::from_micros(7)),
            ("7µs", Duration::from_micros(7)),
            ("250ms", Duration::from_millis(250)),
            ("5m", Duration::from_secs(300)),
            ("2h", Duration::from_secs(7_200)),
        ];
        for (text, d) in ok {
            assert_eq!(parse_duration(text), Ok(d), "{text}");
        }
        // Spellings other tools accept: an exponent, hex, a sign, another
        // case, infinity, a Greek mu (not the micro sign), a full-width
        // digit, an ISO 8601 duration.
        let other = [
            "1e3s",
            "0x10s",
            "+1s",
            "10S",
            "1H",
            "∞",
            "10\u{3bc}s",
            "\u{ff11}s",
            "PT1S",
        ];
        // Spaces between or around (the documented form has none).
        let spaced = [
            " 30s ",
            "30 s",
            " 30s",
            "30s ",
            "30s\n",
            "\t30s",
            "30\u{a0}s",
        ];
        for bad in ["", "s", "30", "1.5s", "-1s", "30sec", "1d", "1 h m"]
            .into_iter()
            .chain(other)
            .chain(spaced)
        {
            assert!(
                parse_duration(bad)
                    .unwrap_err()
                    .starts_with("must be a duration"),
                "{bad}"
            );
        }
        assert_eq!(
            parse_duration("99999999999999999h").unwrap_err(),
            "duration \"99999999999999999h\" is too long"
        );
    }

    /// A count too large for any unit is a duration too long, as one that
    /// overflows only once multiplied by its unit is: not "must be a
    /// duration", which reads as a malformed value.
    #[test]
    fn a_count_past_u64_is_too_long() {
        for text in [
            "18446744073709551616us",
            "99999999999999999999999h",
            "1000000000000000000000s",
        ] {
            assert_eq!(
                parse_duration(text).unwrap_err(),
                format!("duration \"{text}\" is too long")
            );
        }
        assert_eq!(
            parse_duration("18446744073709551615us"),
            Ok(Duration::from_micros(u64::MAX))
        );
    }
}
