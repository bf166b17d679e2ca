//! [`SpawnError`]: why a [`HealthMonitor`](super::HealthMonitor) did not
//! start.

use std::fmt;

/// Why [`HealthMonitor::try_spawn`](super::HealthMonitor::try_spawn)
/// started nothing.
///
/// # Examples
///
/// ```
/// use fusebox_std::monitor::{CheckSpec, FnCheck, HealthMonitor, SpawnError};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let ok = || FnCheck::new(|| async { Ok(None) });
/// let twice = HealthMonitor::new()
///     .check(CheckSpec::new("postgres", ok()))
///     .check(CheckSpec::new("postgres", ok()));
/// let err = twice.try_spawn().unwrap_err();
/// assert_eq!(err, SpawnError::DuplicateCheck { name: "postgres".into() });
/// assert_eq!(err.to_string(), "two health checks are named \"postgres\"");
/// # });
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpawnError {
    /// Called outside a tokio runtime.
    NoRuntime,
    /// Two checks have this name: their statuses, events and logs could
    /// not be told apart.
    DuplicateCheck {
        /// The name, [redacted](crate::redact), escaped and cut as an
        /// error shows a name.
        name: String,
    },
    /// A check has an empty name.
    EmptyCheckName,
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoRuntime => {
                f.write_str("a health monitor is spawned on a tokio runtime: none is running here")
            }
            Self::DuplicateCheck { name } => write!(f, "two health checks are named \"{name}\""),
            Self::EmptyCheckName => f.write_str("a health check has an empty name"),
        }
    }
}

impl std::error::Error for SpawnError {}
