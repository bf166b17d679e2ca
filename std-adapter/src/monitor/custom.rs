//! [`FnCheck`]: a check from an async closure.

use std::fmt;
use std::future::Future;

use super::{CheckError, HealthCheck};

/// A check from a closure returning a future: a queue depth, a replica's
/// lag, a cache's hit ratio — anything async.
///
/// # Examples
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::sync::Arc;
/// use std::time::Duration;
/// use fusebox_std::monitor::{probe, CheckError, FnCheck};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// let depth = Arc::new(AtomicU32::new(12));
/// let seen = Arc::clone(&depth);
/// let check = FnCheck::new(move || {
///     let depth = seen.load(Ordering::Relaxed);
///     async move {
///         if depth < 100 {
///             Ok(Some(format!("depth {depth}")))
///         } else {
///             Err(CheckError::other(format_args!("depth {depth}")))
///         }
///     }
/// })
/// .with_target("queue://jobs");
/// assert_eq!(probe(&check, Duration::from_secs(1)).await.detail.as_deref(), Some("depth 12"));
/// depth.store(500, Ordering::Relaxed);
/// assert!(!probe(&check, Duration::from_secs(1)).await.passed());
/// # });
/// ```
pub struct FnCheck<F> {
    make: F,
    target: Option<String>,
}

impl<F, Fut> FnCheck<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Option<String>, CheckError>> + Send,
{
    /// A check calling `make` on every run and awaiting its future.
    ///
    /// ```
    /// use fusebox_std::monitor::FnCheck;
    ///
    /// let always_ok = FnCheck::new(|| async { Ok(None) });
    /// # drop(always_ok);
    /// ```
    pub fn new(make: F) -> Self {
        Self { make, target: None }
    }
}

impl<F> FnCheck<F> {
    /// Names what the check looks at, for the status (redacted there).
    ///
    /// ```
    /// use fusebox_std::monitor::{FnCheck, HealthCheck};
    ///
    /// let check = FnCheck::new(|| async { Ok(None) }).with_target("cache://sessions");
    /// assert_eq!(check.target().as_deref(), Some("cache://sessions"));
    /// ```
    #[must_use]
    pub fn with_target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }
}

impl<F> fmt::Debug for FnCheck<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Redacted as the monitor's status shows it: a target may hold
        // credentials (found by a hostile review).
        let target = self.target.as_deref().map(crate::redact::redact);
        f.debug_struct("FnCheck")
            .field("target", &target)
            .finish_non_exhaustive()
    }
}

impl<F, Fut> HealthCheck for FnCheck<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Option<String>, CheckError>> + Send,
{
    fn check(&self) -> impl Future<Output = Result<Option<String>, CheckError>> + Send {
        (self.make)()
    }

    fn target(&self) -> Option<String> {
        self.target.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::FnCheck;

    #[test]
    fn debug_redacts_the_target() {
        let check =
            FnCheck::new(|| async { Ok(None) }).with_target("postgres://app:hunter2@db:5432/app");
        let shown = format!("{check:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("db:5432"), "{shown}");
    }
}
