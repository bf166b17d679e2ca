//! [`RegistryConfig`]: a registry declared in TOML, JSON or environment
//! variables, validated with field paths.

use std::collections::BTreeMap;

use fusebox::breaker::{Config, ConfigError};
use fusebox::bucket::{FullPolicy, Quota, QuotaError};
use fusebox::Duration;
use serde_json::{Map, Value};

use super::error::{validate_name, FieldError, RegistryConfigError};
use crate::tracker::TrackerConfig;

/// The prefix of the environment variables read by
/// [`RegistryConfig::from_env`]: `FUSEBOX__<TABLE>__<NAME>__<FIELD>`, path
/// segments separated by `__` and lowercased
/// (`FUSEBOX__BREAKERS__PAYMENTS__FAILURE_RATE=50`).
///
/// ```
/// use fusebox_std::registry::{RegistryConfig, ENV_PREFIX};
///
/// let var = format!("{ENV_PREFIX}LIMITERS__API__RATE");
/// let config = RegistryConfig::from_env_vars([(var, "7".to_owned())])?;
/// assert_eq!(config.limiters["api"].rate, Some(7));
/// # Ok::<(), fusebox_std::registry::RegistryConfigError>(())
/// ```
pub const ENV_PREFIX: &str = "FUSEBOX__";

/// A registry declared as data; build it with
/// [`Registry::from_config`](super::Registry::from_config).
///
/// Unknown fields are errors, numbers are range-checked at startup, and
/// every error names its path (`breakers.payments.failure_rate: must be
/// 1..=100, got 300`). Durations are strings: a whole number and a unit,
/// `us`, `ms`, `s`, `m` or `h` (`"250ms"`, `"30s"`).
///
/// # Examples
///
/// ```
/// use fusebox_std::registry::{Registry, RegistryConfig};
///
/// let config = RegistryConfig::from_toml(r#"
///     events_capacity = 256
///
///     [breakers.payments]
///     failure_rate = 50
///     window = 20
///     minimum_calls = 10
///     open_for = "30s"
///     max_open_for = "5m"
///     required = true
///
///     [limiters.api]
///     rate = 100
///     period = "1s"
///     burst = 20
///
///     [keyed_limiters.per_client]
///     rate = 10
///     overflow = { rate = 1000 }
///
///     [trackers.http]
///     sample_rate = 0.25
/// "#)?;
/// let registry = Registry::from_config(&config)?;
/// assert!(registry.health().breakers["payments"].required);
/// # Ok::<(), fusebox_std::registry::RegistryConfigError>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    /// Circuit breakers by name.
    pub breakers: BTreeMap<String, BreakerSpec>,
    /// Token buckets by name.
    pub limiters: BTreeMap<String, QuotaSpec>,
    /// Keyed limiters by name (built on first use, see
    /// [`Registry::configured_keyed_limiter`](super::Registry::configured_keyed_limiter)).
    pub keyed_limiters: BTreeMap<String, KeyedLimiterSpec>,
    /// Trackers by name.
    pub trackers: BTreeMap<String, TrackerConfig>,
    /// Events kept for slow subscribers (default: the builder's, 1024
    /// unless set there).
    pub events_capacity: Option<usize>,
    // EXTENSION POINT (policies branch): `bulkheads: BTreeMap<String, BulkheadSpec>`.
}

/// A circuit breaker's settings (see the core's
/// [`ConfigBuilder`](fusebox::breaker::ConfigBuilder) for their meaning);
/// at least one of `consecutive_failures`, `failure_rate` or
/// `slow_call_rate` must be set.
///
/// ```
/// use fusebox_std::registry::BreakerSpec;
///
/// let spec: BreakerSpec = serde_json::from_str(r#"{"consecutive_failures": 5, "open_for": "10s"}"#)?;
/// assert_eq!(spec.consecutive_failures, Some(5));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerSpec {
    /// Open after this many failures in a row (1..=255).
    pub consecutive_failures: Option<u64>,
    /// Open at this failure percentage over the window (1..=100).
    pub failure_rate: Option<u64>,
    /// The sliding window, in calls (1..=64, default 64).
    pub window: Option<u64>,
    /// Calls the window must hold before a rate counts (1..=window).
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

/// A validated configuration, ready to build.
pub(crate) struct Validated {
    pub(crate) breakers: BTreeMap<String, (Config, bool)>,
    pub(crate) limiters: BTreeMap<String, Quota>,
    pub(crate) keyed: BTreeMap<String, (Quota, FullPolicy)>,
}

impl RegistryConfig {
    /// Reads a TOML document.
    ///
    /// # Errors
    ///
    /// A syntax error, or a value of the wrong type or an unknown field,
    /// named by its path. Ranges are checked when the registry is built.
    ///
    /// ```
    /// use fusebox_std::registry::RegistryConfig;
    ///
    /// let err = RegistryConfig::from_toml("[limiters.api]\nrate = \"many\"\n").unwrap_err();
    /// assert_eq!(err.fields()[0].path(), "limiters.api.rate");
    /// ```
    pub fn from_toml(text: &str) -> Result<Self, RegistryConfigError> {
        Self::from_toml_with_env(text, std::iter::empty())
    }

    /// Reads a configuration file, TOML or JSON by its extension (`.toml`,
    /// `.json`), then lets the process's environment variables override
    /// its fields (see [`from_env_vars`](Self::from_env_vars)).
    ///
    /// # Errors
    ///
    /// The file unreadable or of another extension (path `(file)`), else
    /// as [`from_toml`](Self::from_toml).
    ///
    /// ```
    /// use fusebox_std::registry::RegistryConfig;
    ///
    /// let path = std::env::temp_dir().join(format!("fusebox-doc-{}.toml", std::process::id()));
    /// std::fs::write(&path, "[limiters.api]\nrate = 10\n").unwrap();
    /// let config = RegistryConfig::load(&path);
    /// std::fs::remove_file(&path).unwrap();
    /// assert_eq!(config?.limiters["api"].rate, Some(10));
    ///
    /// let missing = RegistryConfig::load("/nonexistent/fusebox.toml").unwrap_err();
    /// assert_eq!(missing.fields()[0].path(), "(file)");
    /// # Ok::<(), fusebox_std::registry::RegistryConfigError>(())
    /// ```
    pub fn load(path: impl AsRef<std::path::Path>) -> Result<Self, RegistryConfigError> {
        let path = path.as_ref();
        let file_error = |message: String| one(FieldError::new("(file)", message));
        let text = std::fs::read_to_string(path)
            .map_err(|e| file_error(format!("cannot read {}: {e}", path.display())))?;
        match path.extension().and_then(|e| e.to_str()) {
            Some("toml") => Self::from_toml_with_env(&text, std::env::vars()),
            Some("json") => Self::from_json_with_env(&text, std::env::vars()),
            _ => Err(file_error(format!(
                "{}: the extension must be .toml or .json",
                path.display()
            ))),
        }
    }

    /// Reads a JSON document.
    ///
    /// # Errors
    ///
    /// As [`from_toml`](Self::from_toml).
    ///
    /// ```
    /// use fusebox_std::registry::RegistryConfig;
    ///
    /// let config = RegistryConfig::from_json(r#"{"limiters": {"api": {"rate": 5}}}"#)?;
    /// assert_eq!(config.limiters["api"].rate, Some(5));
    /// # Ok::<(), fusebox_std::registry::RegistryConfigError>(())
    /// ```
    pub fn from_json(text: &str) -> Result<Self, RegistryConfigError> {
        Self::from_json_with_env(text, std::iter::empty())
    }

    /// Reads the process's environment variables starting with
    /// [`ENV_PREFIX`].
    ///
    /// # Errors
    ///
    /// As [`from_env_vars`](Self::from_env_vars).
    ///
    /// ```
    /// use fusebox_std::registry::RegistryConfig;
    ///
    /// let config = RegistryConfig::from_env()?; // whatever FUSEBOX__* says
    /// # drop(config);
    /// # Ok::<(), fusebox_std::registry::RegistryConfigError>(())
    /// ```
    pub fn from_env() -> Result<Self, RegistryConfigError> {
        Self::from_env_vars(std::env::vars())
    }

    /// Reads `vars` as environment variables: those starting with
    /// [`ENV_PREFIX`] set the field at their lowercased `__`-separated
    /// path; values `true`/`false` are booleans, numbers are numbers,
    /// anything else a string.
    ///
    /// # Errors
    ///
    /// A value of the wrong type or an unknown field, named by its path.
    ///
    /// ```
    /// use fusebox_std::registry::RegistryConfig;
    ///
    /// let config = RegistryConfig::from_env_vars([
    ///     ("FUSEBOX__BREAKERS__PAYMENTS__FAILURE_RATE".to_owned(), "50".to_owned()),
    ///     ("FUSEBOX__BREAKERS__PAYMENTS__REQUIRED".to_owned(), "true".to_owned()),
    ///     ("HOME".to_owned(), "/root".to_owned()),
    /// ])?;
    /// assert_eq!(config.breakers["payments"].failure_rate, Some(50));
    /// assert!(config.breakers["payments"].required);
    /// # Ok::<(), fusebox_std::registry::RegistryConfigError>(())
    /// ```
    pub fn from_env_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, RegistryConfigError> {
        Self::from_value(Value::Object(Map::new()), vars)
    }

    /// Reads a TOML document, then lets environment variables (as in
    /// [`from_env_vars`](Self::from_env_vars)) override its fields.
    ///
    /// # Errors
    ///
    /// As [`from_toml`](Self::from_toml).
    ///
    /// ```
    /// use fusebox_std::registry::RegistryConfig;
    ///
    /// let config = RegistryConfig::from_toml_with_env(
    ///     "[limiters.api]\nrate = 10\n",
    ///     [("FUSEBOX__LIMITERS__API__RATE".to_owned(), "20".to_owned())],
    /// )?;
    /// assert_eq!(config.limiters["api"].rate, Some(20));
    /// # Ok::<(), fusebox_std::registry::RegistryConfigError>(())
    /// ```
    pub fn from_toml_with_env(
        text: &str,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, RegistryConfigError> {
        let value: Value = toml::from_str(text)
            .map_err(|e| one(FieldError::new("(toml)", e.to_string().trim_end())))?;
        Self::from_value(value, vars)
    }

    /// Reads a JSON document, then lets environment variables override its
    /// fields.
    ///
    /// # Errors
    ///
    /// As [`from_toml`](Self::from_toml).
    ///
    /// ```
    /// use fusebox_std::registry::RegistryConfig;
    ///
    /// let config = RegistryConfig::from_json_with_env(
    ///     "{}",
    ///     [("FUSEBOX__TRACKERS__HTTP__SAMPLE_RATE".to_owned(), "0.5".to_owned())],
    /// )?;
    /// assert_eq!(config.trackers["http"].sample_rate, 0.5);
    /// # Ok::<(), fusebox_std::registry::RegistryConfigError>(())
    /// ```
    pub fn from_json_with_env(
        text: &str,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, RegistryConfigError> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| one(FieldError::new("(json)", e.to_string())))?;
        Self::from_value(value, vars)
    }

    fn from_value(
        mut value: Value,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, RegistryConfigError> {
        for (key, raw) in vars {
            let Some(path) = key.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let segments: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
            set_path(&mut value, &segments, env_value(&raw));
        }
        serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            one(FieldError::new(path, e.into_inner().to_string()))
        })
    }

    /// Checks every name and value without building anything.
    ///
    /// # Errors
    ///
    /// Every invalid setting, each named by its path.
    ///
    /// ```
    /// use fusebox_std::registry::RegistryConfig;
    ///
    /// let config = RegistryConfig::from_toml("[breakers.a]\nfailure_rate = 300\n[limiters.b]\nburst = 0\n")?;
    /// let err = config.validate().unwrap_err();
    /// assert_eq!(err.to_string(), "breakers.a.failure_rate: must be 1..=100, got 300; limiters.b.rate: required; limiters.b.burst: must be 1..=4294967295, got 0");
    /// # Ok::<(), fusebox_std::registry::RegistryConfigError>(())
    /// ```
    pub fn validate(&self) -> Result<(), RegistryConfigError> {
        self.checked().map(drop)
    }

    pub(crate) fn checked(&self) -> Result<Validated, RegistryConfigError> {
        let mut errors = Vec::new();
        let mut out = Validated {
            breakers: BTreeMap::new(),
            limiters: BTreeMap::new(),
            keyed: BTreeMap::new(),
        };
        let names = [
            ("breakers", self.breakers.keys().collect::<Vec<_>>()),
            ("limiters", self.limiters.keys().collect()),
            ("keyed_limiters", self.keyed_limiters.keys().collect()),
            ("trackers", self.trackers.keys().collect()),
        ];
        for (table, keys) in names {
            for name in keys {
                if let Err(e) = validate_name(name) {
                    errors.push(FieldError::new(
                        format!("{table}.{}", super::error::shown(name)),
                        format!("invalid name: {e}"),
                    ));
                }
            }
        }
        for (name, spec) in &self.breakers {
            let path = format!("breakers.{name}");
            if let Some(config) = spec.build(&path, &mut errors) {
                out.breakers.insert(name.clone(), (config, spec.required));
            }
        }
        for (name, spec) in &self.limiters {
            if let Some(quota) = spec.build(&format!("limiters.{name}"), &mut errors) {
                out.limiters.insert(name.clone(), quota);
            }
        }
        for (name, spec) in &self.keyed_limiters {
            let path = format!("keyed_limiters.{name}");
            let quota = QuotaSpec {
                rate: spec.rate,
                period: spec.period.clone(),
                burst: spec.burst,
            }
            .build(&path, &mut errors);
            let policy = match &spec.overflow {
                None => Some(FullPolicy::Reject),
                Some(o) => o
                    .build(&format!("{path}.overflow"), &mut errors)
                    .map(FullPolicy::Overflow),
            };
            if let (Some(quota), Some(policy)) = (quota, policy) {
                out.keyed.insert(name.clone(), (quota, policy));
            }
        }
        for (name, tracker) in &self.trackers {
            if let Err(e) = tracker.validate() {
                errors.push(FieldError::new(
                    format!("trackers.{name}.{}", e.field()),
                    e.message(),
                ));
            }
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(RegistryConfigError::new(errors))
        }
    }
}

impl BreakerSpec {
    fn build(&self, path: &str, errors: &mut Vec<FieldError>) -> Option<Config> {
        let before = errors.len();
        let mut at = |field: &str, message: String| {
            errors.push(FieldError::new(format!("{path}.{field}"), message));
        };
        let window = self.window.unwrap_or(64);
        let ranges = [
            (
                "consecutive_failures",
                self.consecutive_failures,
                1,
                u64::from(Config::MAX_CONSECUTIVE_FAILURES),
            ),
            ("failure_rate", self.failure_rate, 1, 100),
            ("slow_call_rate", self.slow_call_rate, 1, 100),
            ("window", self.window, 1, 64),
            ("minimum_calls", self.minimum_calls, 1, window.clamp(1, 64)),
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
        b.build()
            .map_err(|e| {
                let field = match e {
                    ConfigError::ZeroSlowThreshold => ".slow_call_threshold",
                    ConfigError::OpenForOutOfRange(_) => ".open_for",
                    ConfigError::MaxOpenForOutOfRange(_) => ".max_open_for",
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
    fn build(&self, path: &str, errors: &mut Vec<FieldError>) -> Option<Quota> {
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
        let quota = Quota::new(rate, period).and_then(|q| match self.burst {
            Some(b) => q.with_burst(b as u32),
            None => Ok(q),
        });
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

fn one(e: FieldError) -> RegistryConfigError {
    RegistryConfigError::new(vec![e])
}

/// `"250ms"`, `"30s"`, …: a whole number and a unit.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let per_unit = match unit.trim() {
        "us" | "µs" => Some(1),
        "ms" => Some(1_000),
        "s" => Some(1_000_000),
        "m" => Some(60_000_000),
        "h" => Some(3_600_000_000),
        _ => None,
    };
    match (digits.parse::<u64>(), per_unit) {
        (Ok(n), Some(per)) => n
            .checked_mul(per)
            .map(Duration::from_micros)
            .ok_or_else(|| format!("duration \"{text}\" is too long")),
        _ => Err(format!(
            "must be a duration such as \"30s\" (units: us, ms, s, m, h), got \"{text}\""
        )),
    }
}

fn env_value(raw: &str) -> Value {
    match raw {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ => raw
            .parse::<u64>()
            .map(Value::from)
            .or_else(|_| raw.parse::<i64>().map(Value::from))
            .ok()
            .or_else(|| {
                raw.parse::<f64>()
                    .ok()
                    .and_then(|f| serde_json::Number::from_f64(f).map(Value::Number))
            })
            .unwrap_or_else(|| Value::String(raw.to_owned())),
    }
}

fn set_path(root: &mut Value, path: &[String], value: Value) {
    let mut node = root;
    for segment in path {
        if !node.is_object() {
            *node = Value::Object(Map::new());
        }
        let Value::Object(map) = node else {
            return;
        };
        node = map.entry(segment.clone()).or_insert(Value::Null);
    }
    *node = value;
}
