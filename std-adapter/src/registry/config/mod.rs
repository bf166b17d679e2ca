//! [`RegistryConfig`]: a registry declared in TOML, JSON or environment
//! variables, validated with field paths.

use std::collections::BTreeMap;

use fusebox::breaker::Config;
use fusebox::bucket::{FullPolicy, Quota};
use serde_json::{Map, Value};

use super::error::{shown, validate_name, FieldError, RegistryConfigError};
use super::spec::{BreakerSpec, KeyedLimiterSpec, QuotaSpec};
use super::strict_json::{escaped, Strict};

mod env;
use crate::tracker::TrackerConfig;
pub use env::ENV_PREFIX;

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
    /// unless set there); at most
    /// [`Events::MAX_CAPACITY`](crate::events::Events::MAX_CAPACITY), 0
    /// read as 1, as [`Events::new`](crate::events::Events::new) does.
    pub events_capacity: Option<usize>,
    /// Bulkheads by name.
    pub bulkheads: BTreeMap<String, super::BulkheadSpec>,
}

/// The text of the configuration file at `path`: a regular file (a FIFO
/// or a device such as `/dev/zero` named `*.toml` would block or never
/// end), of at most [`RegistryConfig::MAX_FILE_BYTES`], in UTF-8. A
/// leading byte-order mark, which editors on Windows write and neither
/// parser accepts, is dropped.
fn read_config_file(path: &std::path::Path) -> Result<String, String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".to_owned());
    }
    let max = RegistryConfig::MAX_FILE_BYTES;
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > max {
        return Err(format!("larger than {max} bytes"));
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        format!(
            "not UTF-8 (an invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        )
    })?;
    Ok(match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_owned(),
        None => text,
    })
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
    /// A syntax error, or a value of the wrong type (a list included: no
    /// setting is one), a `nan` or `inf`, or an unknown field, named by
    /// its path. Ranges are checked when the registry is built.
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
        // The extension first: a path of another kind (a log, a device
        // such as `/dev/zero`) is refused before it is read, not read
        // whole (or forever) to be refused after.
        let toml = match path.extension().and_then(|e| e.to_str()) {
            Some("toml") => true,
            Some("json") => false,
            _ => {
                return Err(file_error(format!(
                    "{}: the extension must be .toml or .json",
                    path.display()
                )))
            }
        };
        let text = read_config_file(path)
            .map_err(|reason| file_error(format!("cannot read {}: {reason}", path.display())))?;
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
    /// tables are made); two variables for one path (differing in case
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
        let table: toml::Table = toml::from_str(text)
            .map_err(|e| one(FieldError::new("(toml)", toml_error(text, &e))))?;
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
        let Strict(value) = serde_json::from_str(text)
            .map_err(|e| one(FieldError::new("(json)", e.to_string())))?;
        Self::from_value(value, vars)
    }

    fn from_value(
        mut value: Value,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, RegistryConfigError> {
        env::apply(&mut value, vars)?;
        if let Some(path) = first_list(&value, String::new()) {
            return Err(one(FieldError::new(
                escaped(&path),
                "invalid type: a list (no setting is one; a table is written with [] in TOML, {} in JSON)",
            )));
        }
        serde_path_to_error::deserialize(value).map_err(|e| {
            // Both hold keys (and values) of the document: shown escaped
            // and cut, as names are.
            let path = e.path().to_string();
            one(FieldError::new(
                escaped(&path),
                escaped(&e.into_inner().to_string()),
            ))
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
            bulkheads: BTreeMap::new(),
        };
        let names = [
            ("breakers", self.breakers.keys().collect::<Vec<_>>()),
            ("limiters", self.limiters.keys().collect()),
            ("keyed_limiters", self.keyed_limiters.keys().collect()),
            ("trackers", self.trackers.keys().collect()),
            ("bulkheads", self.bulkheads.keys().collect()),
        ];
        for (table, keys) in names {
            for name in keys {
                if let Err(e) = validate_name(name) {
                    errors.push(FieldError::new(
                        format!("{table}.{}", shown(name)),
                        format!("invalid name: {e}"),
                    ));
                }
            }
        }
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
        if let Some(capacity) = self.events_capacity
            && capacity > crate::events::Events::MAX_CAPACITY
        {
            errors.push(FieldError::new(
                "events_capacity".to_owned(),
                format!(
                    "must be at most {} events, not {capacity}",
                    crate::events::Events::MAX_CAPACITY
                ),
            ));
        }
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
}

/// The path and value of the first float of `value` that is NaN or
/// infinite (TOML writes them, JSON has no number for them: read into a
/// JSON value they became null, and an optional field given one was
/// silently its default). The depth is bounded by the TOML parser's own
/// recursion limit.
fn non_finite(value: &toml::Value, path: String) -> Option<(String, f64)> {
    let at = |key: &dyn std::fmt::Display| {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    match value {
        toml::Value::Float(f) if !f.is_finite() => Some((path, *f)),
        toml::Value::Table(table) => table.iter().find_map(|(k, v)| non_finite(v, at(k))),
        toml::Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| non_finite(v, at(&i))),
        _ => None,
    }
}

/// The path of the first list in `value` (`(root)` for the document
/// itself). No setting of a [`RegistryConfig`] is a list, but serde reads
/// a struct from one as well as from a table, field by field in order:
/// `a = [5, 50]` would be a breaker with `consecutive_failures = 5` and
/// `failure_rate = 50`, a JSON document `[]` an empty configuration. The
/// depth is bounded by the parsers' recursion limits (environment
/// variables make no lists).
fn first_list(value: &Value, path: String) -> Option<String> {
    match value {
        Value::Array(_) if path.is_empty() => Some("(root)".to_owned()),
        Value::Array(_) => Some(path),
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            first_list(
                v,
                if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                },
            )
        }),
        _ => None,
    }
}

/// A TOML syntax error as serde_json words its own, on one bounded line
/// (`<message> at line L column C`): the TOML crate's report quotes the
/// whole offending line, at any length and with its control characters.
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let message = escaped(e.message().trim_end());
    let Some(at) = e.span().map(|s| s.start.min(text.len())) else {
        return message;
    };
    let before = text.get(..at).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("{message} at line {line} column {column}")
}

fn one(e: FieldError) -> RegistryConfigError {
    RegistryConfigError::new(vec![e])
}

#[cfg(test)]
mod tests {
    /// serde reads a struct from a list as well as from a table, field
    /// by field in order: `a = [5, 50]` was a breaker with
    /// `consecutive_failures = 5` and `failure_rate = 50`, and a JSON
    /// document `[]` an empty configuration, where no setting is a list
    /// (found by a hostile review).
    #[test]
    fn a_list_is_refused_where_a_table_is_expected() {
        use crate::registry::RegistryConfig;
        let toml = [
            ("[breakers]\na = [5, 50]\n", "breakers.a"),
            ("[limiters]\napi = [100, \"1s\", 20]\n", "limiters.api"),
            ("[trackers]\nt = [0.5]\n", "trackers.t"),
            (
                "[keyed_limiters.k]\nrate = 1\noverflow = [1]\n",
                "keyed_limiters.k.overflow",
            ),
            ("[bulkheads]\nb = []\n", "bulkheads.b"),
        ];
        for (text, path) in toml {
            let err = RegistryConfig::from_toml(text).expect_err(text);
            assert_eq!(err.fields().len(), 1, "{text}");
            assert_eq!(err.fields()[0].path(), path, "{text}");
            assert!(err.fields()[0].message().contains("a list"), "{err}");
        }
        let err = RegistryConfig::from_json("[]").unwrap_err();
        assert!(err.fields()[0].message().contains("a list"), "{err}");
        let err = RegistryConfig::from_json(r#"{"breakers": {"a": [5]}}"#).unwrap_err();
        assert_eq!(err.fields()[0].path(), "breakers.a");
    }

    /// A path of another extension was read whole before it was refused:
    /// `load("/dev/zero")` read until memory ran out, and a file of
    /// another kind that is not UTF-8 was refused as unreadable rather
    /// than for its extension (found by a hostile review).
    #[test]
    fn a_file_of_another_extension_is_refused_before_it_is_read() {
        use crate::registry::RegistryConfig;
        let path = std::env::temp_dir().join(format!("fusebox-cfg-{}.bin", std::process::id()));
        std::fs::write(&path, [0xff, 0xfe, 0x00]).unwrap();
        let err = RegistryConfig::load(&path).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(err.fields()[0].path(), "(file)");
        assert!(
            err.fields()[0]
                .message()
                .ends_with("the extension must be .toml or .json"),
            "{err}"
        );
    }

    /// `load` read any file whole: a `*.toml` that was a FIFO blocked
    /// forever, one that was a link to `/dev/zero` (or a log) filled the
    /// memory, and a file saved with a byte-order mark (as Windows editors
    /// do) was refused with "expected value at line 1 column 1". Files
    /// are now checked to be regular and at most `MAX_FILE_BYTES`, and
    /// the mark is dropped.
    #[test]
    fn load_reads_regular_files_of_bounded_size_and_drops_a_byte_order_mark() {
        use crate::registry::RegistryConfig;
        let dir = std::env::temp_dir().join(format!("fusebox-cfg-load-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bom_json = dir.join("bom.json");
        std::fs::write(
            &bom_json,
            "\u{feff}{\"limiters\": {\"api\": {\"rate\": 5}}}",
        )
        .unwrap();
        let bom_toml = dir.join("bom.toml");
        std::fs::write(&bom_toml, "\u{feff}[limiters.api]\nrate = 7\n").unwrap();
        let big = dir.join("big.toml");
        let line = "# padding padding padding padding padding padding padding padding\n";
        let lines = usize::try_from(RegistryConfig::MAX_FILE_BYTES).unwrap() / line.len() + 1;
        std::fs::write(&big, line.repeat(lines)).unwrap();
        let latin1 = dir.join("latin1.toml");
        std::fs::write(&latin1, b"[limiters.caf\xe9]\nrate = 1\n").unwrap();
        let a_dir = dir.join("a-directory.toml");
        std::fs::create_dir_all(&a_dir).unwrap();

        let json = RegistryConfig::load(&bom_json);
        let toml = RegistryConfig::load(&bom_toml);
        let errors = [&big, &latin1, &a_dir].map(|p| RegistryConfig::load(p).unwrap_err());
        std::fs::remove_dir_all(&dir).unwrap();

        assert_eq!(json.unwrap().limiters["api"].rate, Some(5));
        assert_eq!(toml.unwrap().limiters["api"].rate, Some(7));
        let messages = errors.map(|e| e.fields()[0].message().to_owned());
        assert!(
            messages[0].ends_with("larger than 16777216 bytes"),
            "{messages:?}"
        );
        assert!(messages[1].contains("not UTF-8"), "{messages:?}");
        assert!(messages[2].ends_with("not a regular file"), "{messages:?}");
    }

    /// A device behind a configuration's name is refused unread.
    #[cfg(unix)]
    #[test]
    fn load_refuses_a_device_named_like_a_configuration() {
        use crate::registry::RegistryConfig;
        let link =
            std::env::temp_dir().join(format!("fusebox-cfg-zero-{}.toml", std::process::id()));
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        let err = RegistryConfig::load(&link).unwrap_err();
        std::fs::remove_file(&link).unwrap();
        assert!(
            err.fields()[0].message().ends_with("not a regular file"),
            "{err}"
        );
    }

    /// TOML writes `nan` and `inf`, which no JSON number holds: they were
    /// read as null, so an optional field given one was silently its
    /// default (`burst = nan` a burst of `rate`, `window = inf` a window
    /// of 64, `max_queued = -inf` no queue) instead of refused (found by
    /// a hostile review).
    #[test]
    fn a_toml_nan_or_infinity_is_refused_on_its_path() {
        use crate::registry::RegistryConfig;
        let cases = [
            (
                "[limiters.a]\nrate = 5\nburst = nan\n",
                "limiters.a.burst",
                "nan",
            ),
            (
                "[breakers.a]\nfailure_rate = 50\nwindow = inf\n",
                "breakers.a.window",
                "inf",
            ),
            ("events_capacity = +nan\n", "events_capacity", "nan"),
            (
                "[bulkheads.a]\nmax_concurrent = 2\nmax_queued = -inf\n",
                "bulkheads.a.max_queued",
                "-inf",
            ),
            (
                "[trackers.a]\nsample_rate = -nan\n",
                "trackers.a.sample_rate",
                "nan",
            ),
            (
                "[keyed_limiters.a]\nrate = 1\noverflow = { rate = 1, burst = inf }\n",
                "keyed_limiters.a.overflow.burst",
                "inf",
            ),
        ];
        for (text, path, shown) in cases {
            let err = RegistryConfig::from_toml(text).expect_err(text);
            assert_eq!(err.fields().len(), 1, "{text}");
            assert_eq!(err.fields()[0].path(), path, "{text}");
            assert_eq!(
                err.fields()[0].message(),
                format!("must be a finite number, got {shown}"),
                "{text}"
            );
        }
        // Finite floats are read as before.
        let config = RegistryConfig::from_toml("[trackers.a]\nsample_rate = 0.5\n").unwrap();
        assert_eq!(config.trackers["a"].sample_rate.to_bits(), 0.5f64.to_bits());
    }

    /// A capacity the events channel cannot hold is a typed error on its
    /// path, never a panic in the channel (found by a hostile review:
    /// `i64::MAX` overflowed its power of two; 2^40 slots aborted the
    /// process allocating them).
    #[test]
    fn an_events_capacity_out_of_range_is_refused() {
        use crate::events::Events;
        use crate::registry::RegistryConfig;
        use crate::Registry;
        for capacity in [Events::MAX_CAPACITY + 1, 1 << 40, i64::MAX as usize] {
            let config =
                RegistryConfig::from_toml(&format!("events_capacity = {capacity}\n")).unwrap();
            let built = std::panic::catch_unwind(|| Registry::from_config(&config).map(|_| ()));
            let err = built
                .unwrap_or_else(|_| panic!("{capacity}: a panic"))
                .expect_err("refused");
            assert_eq!(err.fields()[0].path(), "events_capacity", "{capacity}");
        }
        let config = RegistryConfig::from_toml("events_capacity = 1048576\n").unwrap();
        let registry = Registry::from_config(&config).unwrap();
        assert_eq!(registry.events().capacity(), Events::MAX_CAPACITY);
        // 0 is read as 1, in a configuration as in code.
        let config = RegistryConfig::from_toml("events_capacity = 0\n").unwrap();
        assert_eq!(
            Registry::from_config(&config).unwrap().events().capacity(),
            1
        );
        // The builder, infallible, keeps the bound.
        let registry = Registry::builder().events_capacity(usize::MAX).build();
        assert_eq!(registry.events().capacity(), Events::MAX_CAPACITY);
    }
}
