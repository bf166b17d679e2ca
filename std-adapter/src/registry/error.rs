//! Registry errors, name validation and field-path errors.

use std::fmt;

use crate::redact::redact;

/// The kinds of primitive a registry holds; names are unique per kind.
///
/// ```
/// use fusebox_std::registry::Kind;
///
/// assert_eq!(Kind::KeyedLimiter.to_string(), "keyed limiter");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// [`CircuitBreaker`](fusebox::CircuitBreaker).
    Breaker,
    /// [`TokenBucket`](fusebox::TokenBucket).
    Limiter,
    /// [`KeyedLimiter`](fusebox::KeyedLimiter).
    KeyedLimiter,
    /// A cache ([`CacheSource`](super::CacheSource)).
    Cache,
    /// [`Tracker`](crate::Tracker).
    Tracker,
    /// A degraded condition ([`Registry::set_degraded`](crate::Registry::set_degraded)).
    Condition,
    /// [`Bulkhead`](crate::policy::Bulkhead).
    Bulkhead,
    /// A rate limiter shared through Redis (`backend::RedisLimiter`,
    /// feature `redis`).
    RedisLimiter,
    /// A circuit breaker whose decision a fleet shares through Redis
    /// (`backend::FleetBreaker`, feature `redis`).
    FleetBreaker,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Breaker => "breaker",
            Self::Limiter => "limiter",
            Self::KeyedLimiter => "keyed limiter",
            Self::Cache => "cache",
            Self::Tracker => "tracker",
            Self::Condition => "condition",
            Self::Bulkhead => "bulkhead",
            Self::RedisLimiter => "redis limiter",
            Self::FleetBreaker => "fleet breaker",
        })
    }
}

/// The longest registry name, in bytes.
///
/// ```
/// use fusebox_std::registry::{validate_name, MAX_NAME_LEN};
///
/// assert!(validate_name(&"a".repeat(MAX_NAME_LEN)).is_ok());
/// ```
pub const MAX_NAME_LEN: usize = 64;

/// Why a name was refused; see [`validate_name`].
///
/// ```
/// use fusebox_std::registry::{validate_name, NameError};
///
/// assert_eq!(validate_name("9lives"), Err(NameError::BadStart));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty.
    Empty,
    /// Longer than [`MAX_NAME_LEN`] bytes.
    TooLong(usize),
    /// Does not start with an ASCII letter.
    BadStart,
    /// Holds a byte other than ASCII letters, digits and `_`.
    BadChar,
    /// Holds `__` (reserved: it separates path segments in environment
    /// variables).
    DoubleUnderscore,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("must not be empty"),
            Self::TooLong(n) => write!(f, "must be at most {MAX_NAME_LEN} bytes, got {n}"),
            Self::BadStart => f.write_str("must start with an ASCII letter"),
            Self::BadChar => f.write_str("may hold only ASCII letters, digits and '_'"),
            Self::DoubleUnderscore => f.write_str("must not contain '__'"),
        }
    }
}

impl std::error::Error for NameError {}

/// Checks a registry name: 1 to [`MAX_NAME_LEN`] bytes, an ASCII letter
/// then ASCII letters, digits and single underscores. Such a name is a
/// valid Prometheus metric-name fragment and label value as it is, and an
/// environment-variable path segment.
///
/// # Errors
///
/// The first rule broken, as a [`NameError`].
///
/// # Examples
///
/// ```
/// use fusebox_std::registry::{validate_name, NameError};
///
/// assert_eq!(validate_name("payments_eu2"), Ok(()));
/// assert_eq!(validate_name("pay-ments"), Err(NameError::BadChar));
/// assert_eq!(validate_name("a__b"), Err(NameError::DoubleUnderscore));
/// assert_eq!(validate_name(&"a".repeat(65)), Err(NameError::TooLong(65)));
/// ```
pub fn validate_name(name: &str) -> Result<(), NameError> {
    let bytes = name.as_bytes();
    match bytes.first() {
        None => Err(NameError::Empty),
        Some(_) if bytes.len() > MAX_NAME_LEN => Err(NameError::TooLong(bytes.len())),
        Some(b) if !b.is_ascii_alphabetic() => Err(NameError::BadStart),
        Some(_)
            if !bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'_') =>
        {
            Err(NameError::BadChar)
        }
        Some(_) if name.contains("__") => Err(NameError::DoubleUnderscore),
        Some(_) => Ok(()),
    }
}

/// A name as it may appear in an error message: redacted, escaped and cut
/// to [`MAX_NAME_LEN`] characters (a refused name may be anything,
/// a URL with a password included).
pub(crate) fn shown(name: &str) -> String {
    let redacted = redact(name);
    let mut out: String = redacted
        .chars()
        .take(MAX_NAME_LEN)
        .flat_map(char::escape_debug)
        .collect();
    if redacted.chars().count() > MAX_NAME_LEN {
        out.push('…');
    }
    out
}

/// One invalid setting, named by its path in the configuration
/// (`breakers.payments.failure_rate`). Path and message are
/// [redacted](crate::redact) when it is made: neither its `Display` nor its
/// `Debug` shows a secret the configuration held.
///
/// ```
/// use fusebox_std::registry::FieldError;
///
/// let e = FieldError::new("limiters.api.rate", "must be at least 1, got 0");
/// assert_eq!(e.to_string(), "limiters.api.rate: must be at least 1, got 0");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    path: String,
    message: String,
}

impl FieldError {
    /// An error at `path`.
    ///
    /// ```
    /// use fusebox_std::registry::FieldError;
    ///
    /// assert_eq!(FieldError::new("a.b", "bad").path(), "a.b");
    /// ```
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        let (path, message) = (path.into(), message.into());
        Self {
            path: redact(&path).into_owned(),
            message: redact(&message).into_owned(),
        }
    }
    /// The field's path, dot-separated.
    ///
    /// ```
    /// use fusebox_std::registry::FieldError;
    ///
    /// assert_eq!(FieldError::new("x", "y").path(), "x");
    /// ```
    pub fn path(&self) -> &str {
        &self.path
    }
    /// What is wrong.
    ///
    /// ```
    /// use fusebox_std::registry::FieldError;
    ///
    /// assert_eq!(FieldError::new("x", "y").message(), "y");
    /// ```
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for FieldError {}

/// Why a registry call was refused.
///
/// Its `Display` never shows a secret: names are [redacted](crate::redact).
///
/// ```
/// use fusebox_std::Registry;
///
/// let registry = Registry::new();
/// let err = registry.tracker("redis://u:pw@h", Default::default()).unwrap_err();
/// assert_eq!(err.to_string(), "invalid tracker name \"redis://u:***@h\": may hold only ASCII letters, digits and '_'");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegistryError {
    /// The name breaks [`validate_name`].
    InvalidName {
        /// What it was to name.
        kind: Kind,
        /// The name, redacted and cut for display.
        name: String,
        /// The rule it broke.
        reason: NameError,
    },
    /// The name is taken by one with another configuration.
    Conflict {
        /// Its kind.
        kind: Kind,
        /// The name.
        name: String,
    },
    /// The name is taken by one of another type (key, value or capacity).
    TypeMismatch {
        /// Its kind.
        kind: Kind,
        /// The name.
        name: String,
    },
    /// Nothing of this kind has that name (or no configuration for it).
    NotFound {
        /// Its kind.
        kind: Kind,
        /// The name, redacted and cut for display.
        name: String,
    },
    /// The registry holds its limit of entries of this kind.
    Full {
        /// Its kind.
        kind: Kind,
        /// The limit.
        limit: usize,
    },
    /// A setting is invalid.
    InvalidConfig(FieldError),
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidName { kind, name, reason } => {
                write!(f, "invalid {kind} name \"{name}\": {reason}")
            }
            Self::Conflict { kind, name } => write!(
                f,
                "{kind} \"{name}\" already exists with another configuration"
            ),
            Self::TypeMismatch { kind, name } => {
                write!(f, "{kind} \"{name}\" already exists with another type")
            }
            Self::NotFound { kind, name } => write!(f, "no {kind} named \"{name}\""),
            Self::Full { kind, limit } => {
                write!(f, "registry full: at most {limit} entries of kind {kind}")
            }
            Self::InvalidConfig(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for RegistryError {}

/// Every invalid setting of a [`RegistryConfig`](super::RegistryConfig),
/// or the reason it could not be read at all.
///
/// ```
/// use fusebox_std::registry::RegistryConfig;
///
/// let err = RegistryConfig::from_toml("[breakers.payments]\nfailure_rate = 0\n")
///     .and_then(|c| fusebox_std::Registry::from_config(&c))
///     .unwrap_err();
/// assert_eq!(err.to_string(), "breakers.payments.failure_rate: must be 1..=100, got 0");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryConfigError {
    errors: Vec<FieldError>,
}

impl RegistryConfigError {
    pub(crate) fn new(errors: Vec<FieldError>) -> Self {
        Self { errors }
    }

    /// The invalid settings, in file order where known (at least one).
    ///
    /// ```
    /// use fusebox_std::registry::RegistryConfig;
    ///
    /// let err = RegistryConfig::from_json(r#"{"limiters": {"api": {"rate": 0}}}"#)
    ///     .and_then(|c| fusebox_std::Registry::from_config(&c))
    ///     .unwrap_err();
    /// assert_eq!(err.fields()[0].path(), "limiters.api.rate");
    /// ```
    pub fn fields(&self) -> &[FieldError] {
        &self.errors
    }
}

impl RegistryConfigError {
    /// The most invalid settings its `Display` and its `Debug` show, the
    /// rest counted (`…; and 19984 more invalid settings`, `more: 19984`;
    /// `Debug` is what a `main` returning the error prints): a document of thousands of
    /// invalid entries (a generated file gone wrong) would otherwise make
    /// a message of megabytes, in the one line a service logs before it
    /// exits. [`fields`](Self::fields) has every one.
    ///
    /// ```
    /// use fusebox_std::registry::{RegistryConfig, RegistryConfigError};
    ///
    /// let text: String = (0..20).map(|i| format!("[limiters.l{i}]\nrate = 0\n")).collect();
    /// let err = RegistryConfig::from_toml(&text)?.validate().unwrap_err();
    /// assert_eq!(err.fields().len(), 20);
    /// let shown = err.to_string();
    /// assert_eq!(shown.matches("must be").count(), RegistryConfigError::MAX_SHOWN);
    /// assert!(shown.ends_with("; and 4 more invalid settings"));
    /// assert!(format!("{err:?}").ends_with(", more: 4 }"));
    /// # Ok::<(), RegistryConfigError>(())
    /// ```
    pub const MAX_SHOWN: usize = 16;
}

impl fmt::Display for RegistryConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().take(Self::MAX_SHOWN).enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            e.fmt(f)?;
        }
        let rest = self.errors.len().saturating_sub(Self::MAX_SHOWN);
        if rest > 0 {
            write!(f, "; and {rest} more invalid settings")?;
        }
        Ok(())
    }
}

/// At most [`MAX_SHOWN`](RegistryConfigError::MAX_SHOWN) settings too,
/// the rest counted (`more`): `Debug` is what a `main` returning the
/// error prints (`Error: {:?}`), or an `expect` on it (found by a hostile
/// review: derived, it printed all of 20 000 invalid entries, 1.8 MB).
/// Sixteen or fewer print as the derived form did.
impl fmt::Debug for RegistryConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = &self.errors[..self.errors.len().min(Self::MAX_SHOWN)];
        let mut s = f.debug_struct("RegistryConfigError");
        s.field("errors", &shown);
        let rest = self.errors.len() - shown.len();
        if rest > 0 {
            s.field("more", &rest);
        }
        s.finish()
    }
}

impl std::error::Error for RegistryConfigError {}
