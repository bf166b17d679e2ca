//! The [`HealthCheck`] trait, its error and the [`Probe`] the monitor makes
//! of one run.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::redact::redact_cut;

/// One health check: an async probe of a dependency.
///
/// `check` resolves to `Ok(detail)` when the dependency is healthy (an
/// optional short note such as `"status 200"`) or to a [`CheckError`].
/// The monitor times every run itself (the latency of a [`Probe`]), bounds
/// it with the check's timeout, and redacts the detail before storing it.
/// Built in: [`HttpCheck`](super::HttpCheck), [`TcpCheck`](super::TcpCheck)
/// and [`FnCheck`](super::FnCheck) (any async closure).
///
/// # Cancellation
///
/// A run that exceeds its timeout, or is running when the monitor stops,
/// is dropped at its current await point: keep `check` cancel-safe.
///
/// # Blocking
///
/// `check` must not block its thread: the timeout can only cut a run at
/// an await point, and a blocking call holds a runtime worker meanwhile
/// (the whole runtime, on a current-thread one). Move blocking work to
/// `tokio::task::spawn_blocking`. A run that returns after its timeout
/// all the same counts as timed out, whatever it returned.
///
/// # Examples
///
/// ```
/// use fusebox_std::monitor::{probe, CheckError, HealthCheck};
/// use std::time::Duration;
///
/// struct Disk;
/// impl HealthCheck for Disk {
///     async fn check(&self) -> Result<Option<String>, CheckError> {
///         Ok(Some("42% used".into()))
///     }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// let result = probe(&Disk, Duration::from_secs(1)).await;
/// assert!(result.passed());
/// assert_eq!(result.detail.as_deref(), Some("42% used"));
/// # });
/// ```
pub trait HealthCheck: Send + Sync + 'static {
    /// Runs the check once.
    ///
    /// # Errors
    ///
    /// A [`CheckError`] when the dependency is unhealthy.
    ///
    /// ```
    /// use fusebox_std::monitor::{HealthCheck, TcpCheck};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    /// let check = TcpCheck::new(listener.local_addr().unwrap().to_string());
    /// assert_eq!(check.check().await, Ok(None)); // no timing, no timeout: see `probe`
    /// # });
    /// ```
    fn check(&self) -> impl Future<Output = Result<Option<String>, CheckError>> + Send;

    /// What is checked, for the status snapshot (an address or URL); the
    /// monitor redacts it. `None` by default, and when it panics.
    ///
    /// ```
    /// use fusebox_std::monitor::{HealthCheck, TcpCheck};
    ///
    /// let check = TcpCheck::new("127.0.0.1:5432");
    /// assert_eq!(check.target().as_deref(), Some("tcp://127.0.0.1:5432"));
    /// ```
    fn target(&self) -> Option<String> {
        None
    }
}

/// Why a check failed: a kind and a message, redacted when the error is
/// built (so no secret reaches a status, a log or an event).
///
/// ```
/// use fusebox_std::monitor::{CheckError, ErrorKind};
///
/// let e = CheckError::new(ErrorKind::Connect, "refused: http://app:s3cret@db:80/?token=t");
/// assert_eq!(e.to_string(), "refused: http://app:***@db:80/?token=***");
/// assert_eq!(e.kind(), ErrorKind::Connect);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CheckError {
    kind: ErrorKind,
    message: String,
}

/// The class of a [`CheckError`].
///
/// ```
/// use fusebox_std::monitor::ErrorKind;
///
/// assert_ne!(ErrorKind::Timeout, ErrorKind::Status);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// The run exceeded the check's timeout.
    Timeout,
    /// The dependency could not be reached (connect refused, DNS, reset).
    Connect,
    /// The dependency answered, with a status outside the expected range.
    Status,
    /// The check is misconfigured (an invalid URL).
    Config,
    /// Anything else (custom checks).
    Other,
}

impl CheckError {
    /// An error of `kind` with `message`, [redacted](crate::redact) and
    /// cut to [`MAX_MESSAGE_CHARS`](Self::MAX_MESSAGE_CHARS).
    ///
    /// ```
    /// use fusebox_std::monitor::{CheckError, ErrorKind};
    ///
    /// let e = CheckError::new(ErrorKind::Other, "queue depth 10 000");
    /// assert_eq!(e.message(), "queue depth 10 000");
    /// ```
    pub fn new(kind: ErrorKind, message: impl fmt::Display) -> Self {
        Self {
            kind,
            message: redact_cut(&message.to_string(), Self::MAX_MESSAGE_CHARS),
        }
    }

    /// The longest message (and probe detail) kept, in characters: a
    /// check's text may come from the server it probes.
    ///
    /// ```
    /// use fusebox_std::monitor::CheckError;
    ///
    /// let e = CheckError::other("x".repeat(10_000));
    /// assert_eq!(e.message().chars().count(), CheckError::MAX_MESSAGE_CHARS + 1);
    /// ```
    pub const MAX_MESSAGE_CHARS: usize = 512;

    /// An [`ErrorKind::Other`] error; handy in custom checks
    /// (`.map_err(CheckError::other)`).
    ///
    /// ```
    /// use fusebox_std::monitor::{CheckError, ErrorKind};
    ///
    /// let e = CheckError::other("stale replica");
    /// assert_eq!(e.kind(), ErrorKind::Other);
    /// ```
    pub fn other(message: impl fmt::Display) -> Self {
        Self::new(ErrorKind::Other, message)
    }

    /// The error's class.
    ///
    /// ```
    /// use fusebox_std::monitor::{CheckError, ErrorKind};
    ///
    /// assert_eq!(CheckError::new(ErrorKind::Status, "503").kind(), ErrorKind::Status);
    /// ```
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The redacted message.
    ///
    /// ```
    /// use fusebox_std::monitor::CheckError;
    ///
    /// assert_eq!(CheckError::other("password=x").message(), "password=***");
    /// ```
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CheckError {}

impl From<std::io::Error> for CheckError {
    fn from(e: std::io::Error) -> Self {
        Self::new(ErrorKind::of_io(e.kind()), e)
    }
}

impl ErrorKind {
    /// The class of an I/O error: a timeout, an unreachable peer
    /// (refused, reset, aborted), or anything else.
    pub(crate) fn of_io(kind: std::io::ErrorKind) -> Self {
        use std::io::ErrorKind as Io;
        match kind {
            Io::TimedOut => Self::Timeout,
            Io::ConnectionRefused
            | Io::ConnectionReset
            | Io::ConnectionAborted
            | Io::NotConnected
            | Io::AddrNotAvailable => Self::Connect,
            _ => Self::Other,
        }
    }
}

/// The typed result of one run of a check: its verdict, its latency as
/// measured by the monitor (tokio time, so exact under paused time) and
/// its redacted detail. [`probe`] makes one; the monitor keeps the last in
/// [`CheckStatus::last`](super::CheckStatus::last).
///
/// ```
/// use fusebox_std::monitor::{probe, FnCheck};
/// use std::time::Duration;
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// let slow = FnCheck::new(|| async {
///     tokio::time::sleep(Duration::from_secs(3)).await;
///     Ok(None)
/// });
/// let result = probe(&slow, Duration::from_secs(1)).await;
/// assert!(!result.passed());
/// assert_eq!(result.latency, Duration::from_secs(1)); // stopped at the timeout
/// # });
/// ```
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Probe {
    /// The check's verdict: its redacted error, if any.
    pub error: Option<CheckError>,
    /// From the start of the run to its result (the timeout when it fired).
    #[serde(rename = "latency_us", serialize_with = "super::ser::us")]
    pub latency: Duration,
    /// The check's redacted note when it passed.
    pub detail: Option<String>,
}

impl Probe {
    /// Whether the check passed.
    ///
    /// ```
    /// use fusebox_std::monitor::Probe;
    /// use std::time::Duration;
    ///
    /// let ok = Probe { error: None, latency: Duration::from_millis(3), detail: None };
    /// assert!(ok.passed());
    /// ```
    pub fn passed(&self) -> bool {
        self.error.is_none()
    }
}

/// Runs `check` once under `timeout` (at least 1 ms, as in a
/// [`CheckSpec`](super::CheckSpec)) and times it with tokio's clock
/// (paused time in tests): what the monitor does on every tick. A check
/// that panics fails the run ([`ErrorKind::Other`], `check panicked: …`)
/// instead of unwinding into the caller.
///
/// ```
/// use fusebox_std::monitor::{probe, CheckError, ErrorKind, FnCheck};
/// use std::time::Duration;
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// let down = FnCheck::new(|| async { Err(CheckError::other("down")) });
/// let result = probe(&down, Duration::from_secs(1)).await;
/// assert_eq!(result.error.map(|e| e.kind()), Some(ErrorKind::Other));
/// # });
/// ```
pub async fn probe<C: HealthCheck>(check: &C, timeout: Duration) -> Probe {
    timed(
        guarded(|| check.check()),
        timeout.max(super::spec::MIN_PERIOD),
    )
    .await
}

/// Calls `make` and awaits its run; a panic in either is a failed run
/// (found by a hostile review: `probe` let a check's panic unwind into its
/// caller, though the monitor it stands for fails the run).
pub(crate) async fn guarded<F, Fut>(make: F) -> Result<Option<String>, CheckError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Option<String>, CheckError>>,
{
    super::guard::unwind_safe(make)
        .await
        .unwrap_or_else(|panic| Err(CheckError::other(format_args!("check panicked: {panic}"))))
}

/// `run` under `timeout`, timed.
pub(crate) async fn timed(
    run: impl Future<Output = Result<Option<String>, CheckError>>,
    timeout: Duration,
) -> Probe {
    let start = tokio::time::Instant::now();
    let result = tokio::time::timeout(timeout, run).await;
    let latency = start.elapsed();
    // A run that returned after its timeout is one the timer could not
    // cut (it blocked its thread, and tokio polls the run before the
    // timer): a timeout all the same, as documented (found by a hostile
    // review: it passed, with a latency six times its timeout).
    match result.ok().filter(|_| latency <= timeout) {
        Some(Ok(detail)) => Probe {
            error: None,
            latency,
            detail: detail.map(|d| redact_cut(&d, CheckError::MAX_MESSAGE_CHARS)),
        },
        Some(Err(error)) => Probe {
            error: Some(error),
            latency,
            detail: None,
        },
        None => Probe {
            error: Some(CheckError::new(
                ErrorKind::Timeout,
                format_args!("no result within {timeout:?}"),
            )),
            latency,
            detail: None,
        },
    }
}

/// A boxed future of a check run.
pub(crate) type BoxedRun<'a> =
    Pin<Box<dyn Future<Output = Result<Option<String>, CheckError>> + Send + 'a>>;

/// [`HealthCheck`] made object-safe, so the monitor can hold many kinds.
pub(crate) trait DynCheck: Send + Sync + 'static {
    fn run(&self) -> BoxedRun<'_>;
    fn describe(&self) -> Option<String>;
}

impl<C: HealthCheck> DynCheck for C {
    fn run(&self) -> BoxedRun<'_> {
        Box::pin(self.check())
    }
    fn describe(&self) -> Option<String> {
        // A user's `target` that panics is no target, not a panic of
        // `HealthMonitor::try_spawn` (or of a status's `Debug`).
        // Its payload dropped safely too (`guard::caught`).
        super::guard::caught(|| self.target()).unwrap_or(None)
    }
}
