//! [`AlertThresholds`]: success rate and response time over a window of
//! recent runs, and the window that evaluates them.

use std::collections::VecDeque;
use std::time::Duration;

/// Alert rules of one check, evaluated after every run over its last
/// `window` runs (a run that timed out counts as a failure whose response
/// time is the timeout). An alert is raised when its rule is first broken
/// and cleared when it holds again; each edge is one
/// [`MonitorEvent`](super::MonitorEvent). No rule is evaluated before the
/// window holds `min_samples` runs.
///
/// * success rate: passes ÷ runs in the window, in percent, below
///   `min_success_rate`;
/// * response time: the mean latency of the window above
///   `max_response_time`.
///
/// Defaults: a window of 10 runs, 5 samples minimum, no rule.
///
/// ```
/// use std::time::Duration;
/// use fusebox_std::monitor::AlertThresholds;
///
/// let alerts = AlertThresholds::new()
///     .window(20)
///     .min_samples(10)
///     .min_success_rate(95)
///     .max_response_time(Duration::from_millis(300));
/// assert_eq!(alerts.window_len(), 20);
/// ```
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct AlertThresholds {
    window: usize,
    min_samples: usize,
    /// `min_samples` as given: `min_samples` is it, at most the window,
    /// whatever the order the two are set in (found by a hostile review).
    #[serde(skip)]
    min_samples_wanted: usize,
    min_success_rate: Option<u8>,
    #[serde(rename = "max_response_time_us", serialize_with = "super::ser::opt_us")]
    max_response_time: Option<Duration>,
}

/// Equal when they act alike (their effective values, as serialised),
/// whatever each builder was first given.
impl PartialEq for AlertThresholds {
    fn eq(&self, other: &Self) -> bool {
        let key = |a: &Self| {
            (
                a.window,
                a.min_samples,
                a.min_success_rate,
                a.max_response_time,
            )
        };
        key(self) == key(other)
    }
}

impl Eq for AlertThresholds {}

impl Default for AlertThresholds {
    fn default() -> Self {
        Self::new()
    }
}

impl AlertThresholds {
    /// The longest window, in runs: the window is held (and allocated at
    /// spawn), so a length from a configuration must not be able to take
    /// the process's memory.
    ///
    /// ```
    /// use fusebox_std::monitor::AlertThresholds;
    ///
    /// assert_eq!(AlertThresholds::new().window(usize::MAX).window_len(), AlertThresholds::MAX_WINDOW);
    /// ```
    pub const MAX_WINDOW: usize = 1 << 16;

    /// A window of 10, 5 samples minimum, no rule.
    ///
    /// ```
    /// use fusebox_std::monitor::AlertThresholds;
    ///
    /// assert_eq!(AlertThresholds::new().window_len(), 10);
    /// ```
    pub const fn new() -> Self {
        Self {
            window: 10,
            min_samples: 5,
            min_samples_wanted: 5,
            min_success_rate: None,
            max_response_time: None,
        }
    }

    /// How many recent runs the rules look at (at least 1, at most
    /// [`MAX_WINDOW`](Self::MAX_WINDOW): a larger one is that).
    ///
    /// ```
    /// use fusebox_std::monitor::AlertThresholds;
    ///
    /// assert_eq!(AlertThresholds::new().window(0).window_len(), 1);
    /// ```
    #[must_use]
    pub fn window(mut self, runs: usize) -> Self {
        self.window = runs.clamp(1, Self::MAX_WINDOW);
        self.min_samples = self.min_samples_wanted.min(self.window);
        self
    }

    /// Runs the window must hold before any rule is evaluated (1 to the
    /// window's length).
    ///
    /// ```
    /// use fusebox_std::monitor::AlertThresholds;
    ///
    /// let a = AlertThresholds::new().window(4).min_samples(9);
    /// assert_eq!(a.window_len(), 4); // min_samples clamped to 4
    /// // In either order.
    /// let json = |a: AlertThresholds| serde_json::to_value(a).unwrap()["min_samples"].clone();
    /// assert_eq!(json(AlertThresholds::new().min_samples(20).window(50)), 20);
    /// assert_eq!(json(AlertThresholds::new().window(50).min_samples(20)), 20);
    /// // Equal when they act alike.
    /// assert_eq!(AlertThresholds::new().window(4).min_samples(9), AlertThresholds::new().window(4).min_samples(4));
    /// ```
    #[must_use]
    pub fn min_samples(mut self, runs: usize) -> Self {
        self.min_samples_wanted = runs.max(1);
        self.min_samples = self.min_samples_wanted.min(self.window);
        self
    }

    /// Alerts when fewer than `percent` % of the window's runs passed
    /// (clamped to 100).
    ///
    /// ```
    /// use fusebox_std::monitor::AlertThresholds;
    ///
    /// let a = AlertThresholds::new().min_success_rate(90);
    /// # drop(a);
    /// ```
    #[must_use]
    pub fn min_success_rate(mut self, percent: u8) -> Self {
        self.min_success_rate = Some(percent.min(100));
        self
    }

    /// Alerts when the window's mean response time exceeds `limit`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use fusebox_std::monitor::AlertThresholds;
    ///
    /// let a = AlertThresholds::new().max_response_time(Duration::from_millis(250));
    /// # drop(a);
    /// ```
    #[must_use]
    pub fn max_response_time(mut self, limit: Duration) -> Self {
        self.max_response_time = Some(limit);
        self
    }

    /// The window's length.
    ///
    /// ```
    /// assert_eq!(fusebox_std::monitor::AlertThresholds::new().window(3).window_len(), 3);
    /// ```
    pub const fn window_len(&self) -> usize {
        self.window
    }
}

/// Which alert rule.
///
/// ```
/// use fusebox_std::monitor::AlertKind;
///
/// assert_ne!(AlertKind::SuccessRate, AlertKind::ResponseTime);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// The window's success rate fell below `min_success_rate`.
    SuccessRate,
    /// The window's mean response time rose above `max_response_time`.
    ResponseTime,
}

/// The recent runs of one check and the alerts they hold up.
#[derive(Debug)]
pub(crate) struct Window {
    rules: AlertThresholds,
    runs: VecDeque<(bool, Duration)>,
    /// Passed runs in `runs`, and the sum of their latencies in
    /// nanoseconds (no overflow: 2^16 × `Duration::MAX` < 2^111), kept
    /// as runs come and go: the rules and the status read them after
    /// every run, which summed the whole window each time (found by a
    /// hostile review: with a window of `MAX_WINDOW` runs and a 1 ms
    /// interval, ~2^17 entries read per run).
    passed: usize,
    latency_nanos: u128,
    pub(crate) rate_alert: bool,
    pub(crate) time_alert: bool,
}

/// An alert edge found by [`Window::push`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Edge {
    pub(crate) kind: AlertKind,
    pub(crate) raised: bool,
}

impl Window {
    pub(crate) fn new(rules: AlertThresholds) -> Self {
        Self {
            rules,
            runs: VecDeque::with_capacity(rules.window),
            passed: 0,
            latency_nanos: 0,
            rate_alert: false,
            time_alert: false,
        }
    }

    /// Success rate of the window in percent (100 when empty).
    pub(crate) fn success_rate(&self) -> f64 {
        if self.runs.is_empty() {
            return 100.0;
        }
        #[allow(clippy::cast_precision_loss, reason = "window lengths are small")]
        let rate = self.passed as f64 * 100.0 / self.runs.len() as f64;
        rate
    }

    /// Mean latency of the window (zero when empty).
    pub(crate) fn mean_latency(&self) -> Duration {
        let n = u32::try_from(self.runs.len()).unwrap_or(u32::MAX);
        if n == 0 {
            return Duration::ZERO;
        }
        // The sum as a `Duration` divided as one: the mean a sum of the
        // window's latencies gave (`Duration::MAX` past it).
        let secs = u64::try_from(self.latency_nanos / 1_000_000_000);
        #[allow(clippy::cast_possible_truncation, reason = "below 10^9")]
        let sum = secs.map_or(Duration::MAX, |secs| {
            Duration::new(secs, (self.latency_nanos % 1_000_000_000) as u32)
        });
        sum / n
    }

    /// Adds a run; returns the alert edges it causes (at most one per rule).
    pub(crate) fn push(&mut self, passed: bool, latency: Duration) -> Vec<Edge> {
        if self.runs.len() == self.rules.window
            && let Some((gone, gone_latency)) = self.runs.pop_front()
        {
            self.passed -= usize::from(gone);
            self.latency_nanos -= gone_latency.as_nanos();
        }
        self.runs.push_back((passed, latency));
        self.passed += usize::from(passed);
        self.latency_nanos += latency.as_nanos();
        let mut edges = Vec::new();
        if self.runs.len() < self.rules.min_samples {
            return edges;
        }
        if let Some(min) = self.rules.min_success_rate {
            let broken = self.success_rate() < f64::from(min);
            if broken != self.rate_alert {
                self.rate_alert = broken;
                edges.push(Edge {
                    kind: AlertKind::SuccessRate,
                    raised: broken,
                });
            }
        }
        if let Some(max) = self.rules.max_response_time {
            let broken = self.mean_latency() > max;
            if broken != self.time_alert {
                self.time_alert = broken;
                edges.push(Edge {
                    kind: AlertKind::ResponseTime,
                    raised: broken,
                });
            }
        }
        edges
    }

    pub(crate) fn active(&self) -> Vec<AlertKind> {
        let mut v = Vec::new();
        if self.rate_alert {
            v.push(AlertKind::SuccessRate);
        }
        if self.time_alert {
            v.push(AlertKind::ResponseTime);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edges_once_per_crossing() {
        let rules = AlertThresholds::new()
            .window(4)
            .min_samples(4)
            .min_success_rate(75);
        let mut w = Window::new(rules);
        let ms = Duration::from_millis;
        assert!(w.push(true, ms(1)).is_empty());
        assert!(w.push(false, ms(1)).is_empty());
        assert!(w.push(true, ms(1)).is_empty());
        // 4 samples, 2 of 4 passed = 50 % < 75 %: raised once.
        let raised = Edge {
            kind: AlertKind::SuccessRate,
            raised: true,
        };
        assert_eq!(w.push(false, ms(1)), [raised]);
        assert!(w.push(true, ms(1)).is_empty()); // f t f t = 50 %
        let cleared = Edge {
            kind: AlertKind::SuccessRate,
            raised: false,
        };
        assert_eq!(w.push(true, ms(1)), [cleared]); // t f t t = 75 %: not below
        assert!(!w.rate_alert);
    }

    /// The window keeps its passes and its latency sum as runs come and
    /// go; they are what scanning it gives (the mean as a `Duration` sum
    /// divided by the runs, `Duration::MAX` past it, where the scan's
    /// `Sum` panicked), over pseudo-random runs, window lengths and
    /// latencies up to `Duration::MAX`.
    #[test]
    fn running_counts_are_what_a_scan_of_the_window_gives() {
        let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let latencies = [
            Duration::ZERO,
            Duration::from_nanos(1),
            Duration::from_millis(3),
            Duration::new(7, 999_999_999),
            Duration::MAX,
        ];
        for window in [1, 2, 3, 10, 64] {
            let rules = AlertThresholds::new().window(window).min_samples(1);
            let mut w = Window::new(rules);
            let mut model: VecDeque<(bool, Duration)> = VecDeque::new();
            for _ in 0..500 {
                let passed = next() % 3 != 0;
                // Mostly small, now and then huge.
                let pick = usize::try_from(next() % 16)
                    .unwrap()
                    .min(latencies.len() - 1);
                let latency = latencies[pick];
                w.push(passed, latency);
                model.push_back((passed, latency));
                if model.len() > window {
                    model.pop_front();
                }
                let n = model.len();
                let ok = model.iter().filter(|(p, _)| *p).count();
                #[allow(clippy::cast_precision_loss, reason = "small")]
                let rate = ok as f64 * 100.0 / n as f64;
                let sum = model
                    .iter()
                    .try_fold(Duration::ZERO, |s, (_, l)| s.checked_add(*l))
                    .unwrap_or(Duration::MAX);
                let mean = sum / u32::try_from(n).unwrap();
                assert_eq!(w.success_rate().to_bits(), rate.to_bits(), "{window}");
                assert_eq!(w.mean_latency(), mean, "{window}: {model:?}");
            }
        }
    }

    #[test]
    fn response_time_mean() {
        let rules = AlertThresholds::new()
            .window(2)
            .min_samples(2)
            .max_response_time(Duration::from_millis(100));
        let mut w = Window::new(rules);
        assert!(w.push(true, Duration::from_millis(150)).is_empty());
        assert!(w.push(true, Duration::from_millis(50)).is_empty()); // mean 100: not above
        assert_eq!(
            w.push(true, Duration::from_millis(200)),
            [Edge {
                kind: AlertKind::ResponseTime,
                raised: true
            }]
        );
        assert_eq!(
            w.push(true, Duration::from_millis(0)),
            [Edge {
                kind: AlertKind::ResponseTime,
                raised: false
            }]
        );
    }
}
