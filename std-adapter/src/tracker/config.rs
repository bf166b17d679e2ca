//! [`TrackerConfig`]: sampling and the bounds on memory.

use std::fmt;

/// How a [`Tracker`](super::Tracker) samples and how much it may keep.
///
/// Every bound holds whatever names and request ids arrive: names beyond
/// `max_series` (or longer than [`TrackerConfig::MAX_NAME_LEN`]) are
/// counted under [`OVERFLOW`](super::OVERFLOW), and the oldest request
/// summary is dropped when `max_requests` are held.
///
/// # Examples
///
/// ```
/// use fusebox_std::TrackerConfig;
///
/// let config = TrackerConfig::default();
/// assert_eq!(config.sample_rate, 0.1);
/// assert!(config.validate().is_ok());
/// let every_call = TrackerConfig { sample_rate: 1.0, ..TrackerConfig::default() };
/// assert!(every_call.validate().is_ok());
/// assert!(TrackerConfig { sample_rate: 1.5, ..every_call }.validate().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrackerConfig {
    /// Fraction of operations (or requests) whose latency is recorded, in
    /// `0.0..=1.0` (default 0.1). Calls and errors are always counted.
    pub sample_rate: f64,
    /// Latency series (operations and stages together) held, the overflow
    /// series not included, in `1..=4096` (default 128). Each holds a
    /// histogram of about 20 KiB.
    pub max_series: usize,
    /// Request summaries held; the oldest is dropped first (FIFO), in
    /// `0..=65536` (default 1024; 0 turns summaries off).
    pub max_requests: usize,
    /// Stage timings kept per request summary, in `0..=1024` (default
    /// 64); more are counted in
    /// [`ExecutionSummary::dropped_stages`](super::ExecutionSummary::dropped_stages).
    /// `max_requests × max_stages_per_request` is at most
    /// [`MAX_STAGES_HELD`](Self::MAX_STAGES_HELD).
    pub max_stages_per_request: usize,
}

impl TrackerConfig {
    /// The longest operation or stage name, in bytes (a stage's full path
    /// included); longer ones are counted under the overflow series.
    ///
    /// ```
    /// use fusebox_std::tracker::OVERFLOW;
    /// use fusebox_std::{Tracker, TrackerConfig};
    ///
    /// let tracker = Tracker::new(TrackerConfig::default())?;
    /// drop(tracker.track_operation(&"x".repeat(TrackerConfig::MAX_NAME_LEN + 1)));
    /// assert_eq!(tracker.stats()[OVERFLOW].calls, 1);
    /// # Ok::<(), fusebox_std::TrackerConfigError>(())
    /// ```
    pub const MAX_NAME_LEN: usize = 128;

    /// The most stage timings all request summaries may hold together
    /// (`max_requests × max_stages_per_request`): with names of up to
    /// [`MAX_NAME_LEN`](Self::MAX_NAME_LEN) bytes, at most about 200 MB
    /// (each field at its own maximum would allow about 12 GB).
    ///
    /// ```
    /// use fusebox_std::TrackerConfig;
    ///
    /// let most = TrackerConfig { max_requests: 65_536, max_stages_per_request: 16, ..TrackerConfig::default() };
    /// assert!(most.validate().is_ok());
    /// let e = TrackerConfig { max_stages_per_request: 17, ..most }.validate().unwrap_err();
    /// assert_eq!(e.field(), "max_stages_per_request");
    /// assert_eq!(
    ///     e.message(),
    ///     "max_requests × max_stages_per_request must be at most 1048576, got 1114112"
    /// );
    /// ```
    pub const MAX_STAGES_HELD: usize = 1 << 20;

    /// Checks every field's range.
    ///
    /// # Errors
    ///
    /// A [`TrackerConfigError`] naming the first field out of range, or
    /// `max_stages_per_request` when the two summary bounds together
    /// exceed [`MAX_STAGES_HELD`](Self::MAX_STAGES_HELD).
    ///
    /// # Examples
    ///
    /// ```
    /// use fusebox_std::TrackerConfig;
    ///
    /// let err = TrackerConfig { max_series: 0, ..TrackerConfig::default() }.validate().unwrap_err();
    /// assert_eq!(err.field(), "max_series");
    /// assert_eq!(err.to_string(), "max_series: must be 1..=4096, got 0");
    /// ```
    pub fn validate(&self) -> Result<(), TrackerConfigError> {
        if !(0.0..=1.0).contains(&self.sample_rate) {
            return Err(TrackerConfigError {
                field: "sample_rate",
                message: format!("must be 0.0..=1.0, got {}", self.sample_rate),
            });
        }
        let ranges = [
            ("max_series", self.max_series, 1, 4096),
            ("max_requests", self.max_requests, 0, 65_536),
            (
                "max_stages_per_request",
                self.max_stages_per_request,
                0,
                1024,
            ),
        ];
        for (field, value, low, high) in ranges {
            if !(low..=high).contains(&value) {
                return Err(TrackerConfigError {
                    field,
                    message: format!("must be {low}..={high}, got {value}"),
                });
            }
        }
        let held = self.max_requests * self.max_stages_per_request;
        if held > Self::MAX_STAGES_HELD {
            return Err(TrackerConfigError {
                field: "max_stages_per_request",
                message: format!(
                    "max_requests × max_stages_per_request must be at most {}, got {held}",
                    Self::MAX_STAGES_HELD
                ),
            });
        }
        Ok(())
    }
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            sample_rate: 0.1,
            max_series: 128,
            max_requests: 1024,
            max_stages_per_request: 64,
        }
    }
}

/// A [`TrackerConfig`] field out of range.
///
/// # Examples
///
/// ```
/// use fusebox_std::TrackerConfig;
///
/// let err = TrackerConfig { sample_rate: -1.0, ..TrackerConfig::default() }.validate().unwrap_err();
/// assert_eq!(err.field(), "sample_rate");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackerConfigError {
    field: &'static str,
    message: String,
}

impl TrackerConfigError {
    /// The field's name, as in the config file.
    ///
    /// ```
    /// use fusebox_std::TrackerConfig;
    ///
    /// let e = TrackerConfig { max_requests: 1 << 20, ..TrackerConfig::default() }.validate().unwrap_err();
    /// assert_eq!(e.field(), "max_requests");
    /// ```
    pub fn field(&self) -> &'static str {
        self.field
    }
    /// What is wrong with it (without the field name).
    ///
    /// ```
    /// use fusebox_std::TrackerConfig;
    ///
    /// let e = TrackerConfig { max_series: 0, ..TrackerConfig::default() }.validate().unwrap_err();
    /// assert_eq!(e.message(), "must be 1..=4096, got 0");
    /// ```
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for TrackerConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for TrackerConfigError {}
