//! [`RegistryConfig`]: a registry declared in TOML, JSON or environment
//! variables, validated with field paths.

use std::collections::BTreeMap;

use fusebox::breaker::Config;
use fusebox::bucket::{FullPolicy, Quota};
use serde_json::{Map, Value};

use super::error::{shown, validate_name, FieldError, RegistryConfigError};
use super::spec::{BreakerSpec, KeyedLimiterSpec, QuotaSpec};
use super::strict_json::{self, escaped};

mod document;
mod env;
mod toml_path;
use crate::tracker::TrackerConfig;
use document::{
    first_list, non_finite, read_config_file, toml_field_error, too_deep, MAX_TOML_DEPTH,
};
pub use env::ENV_PREFIX;

/// A registry declared as data; build it with
/// [`Registry::from_config`](super::Registry::from_config).
///
/// Unknown fields are errors, numbers are range-checked at startup, and
/// every error names its path (`breakers.payments.failure_rate: must be
/// 1..=100, got 300`). Durations are strings: a whole number and a unit,
/// `us` (or `µs`), `ms`, `s`, `m` or `h`, with nothing between or around
/// them (`"250ms"`, `"30s"`; `"30 s"` and `" 30s"` are refused).
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
///     max_half_open = "10s"  # a hung trial reopens it after 10 s
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
/// let payments = registry.get_breaker("payments").unwrap();
/// assert_eq!(payments.config().max_half_open(), Some(fusebox::Duration::from_secs(10)));
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
    /// unless set there); 1 to
    /// [`Events::MAX_CAPACITY`](crate::events::Events::MAX_CAPACITY) (0,
    /// which [`Events::new`](crate::events::Events::new) reads as 1, is
    /// refused: no configuration turns events off).
    pub events_capacity: Option<usize>,
    /// Bulkheads by name.
    pub bulkheads: BTreeMap<String, super::BulkheadSpec>,
}

/// A validated configuration, ready to build.
pub(crate) struct Validated {
    pub(crate) breakers: BTreeMap<String, (Config, bool)>,
    pub(crate) limiters: BTreeMap<String, Quota>,
    pub(crate) keyed: BTreeMap<String, (Quota, FullPolicy)>,
    pub(crate) bulkheads: BTreeMap<String, (usize, crate::policy::Overflow)>,
}

impl RegistryConfig {
    /// Reads a TOML document.
    ///
    /// # Errors
    ///
    /// A syntax error, a document nested deeper than 32 levels (tables,
    /// dotted keys and arrays together; no setting is deeper than 4), or
    /// a value of the wrong type (a list included: no setting is one; a
    /// float shown as written, `1e3`, not as read, `1000.0`), a
    /// `nan` or `inf`, or an unknown field, named by its path. Ranges,
    /// and the settings that apply only beside others (a breaker's
    /// `window`), are checked when
    /// the registry is built. A table or key written twice
    /// is named by the second one's path, an integer out of TOML's 64-bit
    /// range or a value that does not parse by its key's, each with its
    /// line and column; an error where no key can be read (in a key, a
    /// table header, between lines) by its line and column, path `(toml)`.
    ///
    /// ```
    /// use fusebox_std::registry::RegistryConfig;
    ///
    /// let err = RegistryConfig::from_toml("[limiters.api]\nrate = \"many\"\n").unwrap_err();
    /// assert_eq!(err.fields()[0].path(), "limiters.api.rate");
    ///
    /// let twice = "[breakers.quotes]\nwindow = 5\n[breakers.quotes]\n";
    /// let err = RegistryConfig::from_toml(twice).unwrap_err();
    /// assert_eq!(err.to_string(), "breakers.quotes: duplicate key at line 3 column 11");
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
        // Shown as the document's text is, its control characters
        // escaped and cut (found by a hostile review: a file name holding
        // a newline was shown raw, a forged line in any log of the error).
        let shown = escaped(&path.display().to_string());
        // The extension first: a path of another kind (a log, a device
        // such as `/dev/zero`) is refused before it is read, not read
        // whole (or forever) to be refused after.
        let toml = match path.extension().and_then(|e| e.to_str()) {
            Some("toml") => true,
            Some("json") => false,
            _ => {
                return Err(file_error(format!(
                    "{shown}: the extension must be .toml or .json"
                )))
            }
        };
        let text = read_config_file(path)
            .map_err(|reason| file_error(format!("cannot read {shown}: {reason}")))?;
        if toml {
            Self::from_toml_with_env(&text, env::process_vars())
        } else {
            Self::from_json_with_env(&text, env::process_vars())
        }
    }

    /// The largest file [`load`](Self::load) reads: 16 MiB, hundreds of
    /// times a configuration of thousands of entries. A larger one (a log
    /// or a dump given by mistake, a file still growing) is refused, not
    /// read whole into memory.
    ///
    /// ```
    /// assert_eq!(fusebox_std::registry::RegistryConfig::MAX_FILE_BYTES, 16 << 20);
    /// ```
    pub const MAX_FILE_BYTES: u64 = 16 << 20;

    /// Reads a JSON document. A `null` is an optional setting left out
    /// (its default), as this type serializes one; where a setting is not
    /// optional (`required`, a table), it is refused as of the wrong type.
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
    /// [`ENV_PREFIX`]. Other variables are ignored, Unicode or not; one of
    /// these that is not Unicode is read with U+FFFD in place of its bad
    /// bytes, which no name, number or duration accepts.
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
        Self::from_env_vars(env::process_vars())
    }

    /// Reads `vars` as environment variables: those starting with
    /// [`ENV_PREFIX`] set the field at their lowercased `__`-separated
    /// path; values `true`/`false` are booleans, numbers are numbers,
    /// anything else a string.
    ///
    /// # Errors
    ///
    /// A value of the wrong type or an unknown field, named by its path
    /// (a variable's path deeper than any field is refused before its
    /// tables are made); a whole number beyond 64 bits (outside
    /// `-9223372036854775808..=18446744073709551615`), named by its path
    /// and shown as written (as is a float where an integer goes: `1e3`,
    /// not `1000.0`); two variables for one path (differing in case
    /// only) or for a field and a table above it; a path naming an entry
    /// the document writes in more than one case (`Payments` and
    /// `payments`: a path is read in lowercase and names either).
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
        Self::from_value(Value::Object(Map::new()), Vec::new(), vars)
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
        if let Some((line, column)) = too_deep(text) {
            return Err(one(FieldError::new(
                "(toml)",
                format!(
                    "nested deeper than {MAX_TOML_DEPTH} levels (no setting is deeper than 4) at line {line} column {column}"
                ),
            )));
        }
        let table: toml::Table =
            toml::from_str(text).map_err(|e| one(toml_field_error(text, &e)))?;
        let table = toml::Value::Table(table);
        if let Some((path, number)) = non_finite(&table, String::new()) {
            // As TOML spells it.
            let number = match number {
                n if n.is_nan() => "nan",
                n if n > 0.0 => "inf",
                _ => "-inf",
            };
            return Err(one(FieldError::new(
                escaped(&path),
                format!("must be a finite number, got {number}"),
            )));
        }
        let value: Value = table
            .try_into()
            .map_err(|e: toml::de::Error| one(FieldError::new("(toml)", escaped(e.message()))))?;
        Self::from_value(value, toml_path::float_literals(text), vars)
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
        let (value, floats) = strict_json::parse(text).map_err(|(duplicate, e)| {
            let path = duplicate.map_or_else(|| "(json)".to_owned(), |path| escaped(&path));
            one(FieldError::new(path, e.to_string()))
        })?;
        Self::from_value(value, floats, vars)
    }

    /// The configuration `value` holds, with `vars` over it. `floats`
    /// holds the dotted path and text, as written, of each number of the
    /// document that is not a whole one.
    fn from_value(
        mut value: Value,
        mut floats: strict_json::Floats,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, RegistryConfigError> {
        env::apply(&mut value, vars, &mut floats)?;
        let written = |path: &str| {
            floats
                .iter()
                .rev()
                .find_map(|(p, raw)| (p == path).then_some(raw.as_str()))
        };
        if let Some(path) = first_list(&value, String::new()) {
            return Err(one(FieldError::new(
                escaped(&path),
                "invalid type: a list (no setting is one; a table is written with [] in TOML, {} in JSON)",
            )));
        }
        let config: Self = serde_path_to_error::deserialize(&value).map_err(|e| {
            // Both hold keys (and values) of the document: shown escaped
            // and cut, as names are. The document itself is `(root)`, not
            // serde_path_to_error's `.` (found by a review: a JSON
            // document `"x"` was `.: invalid type: string`).
            let path = match e.path().to_string() {
                root if root == "." => "(root)".to_owned(),
                path => path,
            };
            let mut message = e.into_inner().to_string();
            if let Some(raw) = written(&path) {
                message = float_as_written(&message, raw);
            }
            one(FieldError::new(escaped(&path), escaped(&message)))
        })?;
        Ok(config)
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
            bulkheads: BTreeMap::new(),
        };
        self.check_names(&mut errors);
        for (name, spec) in &self.breakers {
            let path = format!("breakers.{}", shown(name));
            if let Some(config) = spec.build(&path, &mut errors) {
                out.breakers.insert(name.clone(), (config, spec.required));
            }
        }
        for (name, spec) in &self.limiters {
            if let Some(quota) = spec.build(&format!("limiters.{}", shown(name)), &mut errors) {
                out.limiters.insert(name.clone(), quota);
            }
        }
        for (name, spec) in &self.keyed_limiters {
            let path = format!("keyed_limiters.{}", shown(name));
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
                // The keyed limiter's slots keep a narrower time word than
                // a token bucket: its own range, checked now rather than
                // at the first `configured_keyed_limiter`.
                match fusebox::KeyedLimiter::<u8, 1>::new(quota, policy) {
                    Ok(_) => {
                        out.keyed.insert(name.clone(), (quota, policy));
                    }
                    Err(e) => errors.push(FieldError::new(path, e.to_string())),
                }
            }
        }
        for (name, spec) in &self.bulkheads {
            if let Some(settings) = spec.build(&format!("bulkheads.{}", shown(name)), &mut errors) {
                out.bulkheads.insert(name.clone(), settings);
            }
        }
        self.check_events_capacity(&mut errors);
        for (name, tracker) in &self.trackers {
            if let Err(e) = tracker.validate() {
                errors.push(FieldError::new(
                    format!("trackers.{}.{}", shown(name), e.field()),
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

    /// Each table's names: valid, and none the same as another of its
    /// table but for case.
    fn check_names(&self, errors: &mut Vec<FieldError>) {
        let names = [
            ("breakers", self.breakers.keys().collect::<Vec<_>>()),
            ("limiters", self.limiters.keys().collect()),
            ("keyed_limiters", self.keyed_limiters.keys().collect()),
            ("trackers", self.trackers.keys().collect()),
            ("bulkheads", self.bulkheads.keys().collect()),
        ];
        for (table, keys) in names {
            // Names by their lowercase: two that differ only in case are
            // one to an environment variable, read in lowercase (found by
            // a review: both were built, and a variable for either was
            // refused only once one was set).
            let mut lowercase = BTreeMap::new();
            for name in keys {
                if let Err(e) = validate_name(name) {
                    errors.push(FieldError::new(
                        format!("{table}.{}", shown(name)),
                        format!("invalid name: {e}"),
                    ));
                } else if let first = *lowercase.entry(name.to_ascii_lowercase()).or_insert(name)
                    && first != name
                {
                    errors.push(FieldError::new(
                        format!("{table}.{}", shown(name)),
                        format!(
                            "the name of {table}.{} in another case (environment variables, \
                             read in lowercase, could not tell them apart)",
                            shown(first)
                        ),
                    ));
                }
            }
        }
    }

    /// `events_capacity` within the channel's bounds.
    fn check_events_capacity(&self, errors: &mut Vec<FieldError>) {
        match self.events_capacity {
            // 0 was read as 1, as `Events::new` reads it: a silent clamp,
            // where an operator may have meant no events at all.
            Some(0) => errors.push(FieldError::new(
                "events_capacity".to_owned(),
                "must be at least 1 event (none cannot be configured), got 0",
            )),
            Some(capacity) if capacity > crate::events::Events::MAX_CAPACITY => {
                errors.push(FieldError::new(
                    "events_capacity".to_owned(),
                    format!(
                        "must be at most {} events, not {capacity}",
                        crate::events::Events::MAX_CAPACITY
                    ),
                ));
            }
            _ => {}
        }
    }
}

/// serde's `message` about a float (`invalid type: floating point
/// `1000.0`, expected u64`) with the float shown as the operator wrote it
/// (`1e3`).
fn float_as_written(message: &str, raw: &str) -> String {
    const FLOAT: &str = "floating point `";
    let Some(start) = message.find(FLOAT).map(|i| i + FLOAT.len()) else {
        return message.to_owned();
    };
    match message[start..].find('`') {
        Some(len) => format!("{}{raw}{}", &message[..start], &message[start + len..]),
        None => message.to_owned(),
    }
}

fn one(e: FieldError) -> RegistryConfigError {
    RegistryConfigError::new(vec![e])
}

#[cfg(test)]
mod careless_tests;
#[cfg(test)]
mod depth_tests;
#[cfg(test)]
mod env_tests;
#[cfg(test)]
mod error_path_tests;
#[cfg(test)]
mod tests;
