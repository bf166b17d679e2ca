//! [`RedisLimiterMetrics`]: what a [`RedisLimiter`](super::RedisLimiter)
//! counts, and its Prometheus text.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of a [`RedisLimiter`](super::RedisLimiter).
///
/// # Examples
///
/// ```
/// use fusebox_std::backend::RedisLimiterMetrics;
///
/// let m = RedisLimiterMetrics::default();
/// let text = m.to_prometheus("api", false);
/// assert!(text.contains("fusebox_redis_limiter_decisions_total{name=\"api\",source=\"redis\"} 0\n"));
/// assert!(text.contains("fusebox_redis_limiter_admitted_total{name=\"api\"} 0\n"));
/// assert!(text.contains("fusebox_redis_limiter_degraded{name=\"api\"} 0\n"));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisLimiterMetrics {
    /// Decisions made by the Redis script (a background probe of a
    /// degraded limiter is none).
    pub redis_decisions: u64,
    /// Decisions made by the [`Degrade`](super::Degrade) policy while
    /// Redis was out.
    pub degraded_decisions: u64,
    /// Faults: timeouts, lost connections, refused credentials (those of
    /// the background probes of a degraded limiter included, and those of
    /// requests whose callers gave up before the command timeout: their
    /// round trips run on to its end).
    pub faults: u64,
    /// Corrupt stored values the script found and replaced.
    pub corrupt_values: u64,
    /// Requests admitted, by Redis or by the degradation policy (a request
    /// of `n` tokens counts once, a peek of none not at all). Under a
    /// [`LeasedLimiter`](super::LeasedLimiter) these are its leases taken
    /// from Redis (and its requests the degradation policy admitted), not
    /// the requests it admits from the tokens it holds: those it counts
    /// nowhere here.
    pub admitted: u64,
}

impl RedisLimiterMetrics {
    /// These counters, and whether the limiter is `degraded`, in the
    /// Prometheus text format 0.0.4 for the limiter `name` (escaped as a
    /// label value).
    ///
    /// ```
    /// use fusebox_std::backend::RedisLimiterMetrics;
    ///
    /// let text = RedisLimiterMetrics::default().to_prometheus("api \"v2\"", true);
    /// assert!(text.contains("fusebox_redis_limiter_degraded{name=\"api \\\"v2\\\"\"} 1\n"));
    /// ```
    pub fn to_prometheus(&self, name: &str, degraded: bool) -> String {
        let mut out = String::new();
        Self::write_prometheus(&mut out, &[(name, *self, degraded)]);
        out
    }

    /// The families of several limiters (`(name, counters, degraded)`),
    /// each family's HELP and TYPE once, as the text format requires.
    pub(crate) fn write_prometheus(out: &mut String, limiters: &[(&str, Self, bool)]) {
        if limiters.is_empty() {
            return;
        }
        // A registry's names need no escaping; `to_prometheus` takes any.
        let limiters: Vec<(String, Self, bool)> = limiters
            .iter()
            .map(|&(name, m, degraded)| {
                let mut escaped = String::new();
                crate::prometheus::escape_into(&mut escaped, name);
                (escaped, m, degraded)
            })
            .collect();
        let decisions = "fusebox_redis_limiter_decisions_total";
        let _ = writeln!(
            out,
            "# HELP {decisions} Rate-limit decisions, by where they were made.\n\
             # TYPE {decisions} counter"
        );
        for (name, m, _) in &limiters {
            let _ = writeln!(
                out,
                "{decisions}{{name=\"{name}\",source=\"redis\"}} {}\n\
                 {decisions}{{name=\"{name}\",source=\"degraded\"}} {}",
                m.redis_decisions, m.degraded_decisions
            );
        }
        let counters: [Counter; 3] = [
            (
                "fusebox_redis_limiter_admitted_total",
                "Requests admitted, by Redis or by the degradation policy.",
                |m| m.admitted,
            ),
            (
                "fusebox_redis_limiter_faults_total",
                "Redis timeouts, lost connections and refused credentials.",
                |m| m.faults,
            ),
            (
                "fusebox_redis_limiter_corrupt_values_total",
                "Corrupt stored values replaced by a drained bucket.",
                |m| m.corrupt_values,
            ),
        ];
        for (metric, help, get) in counters {
            let _ = writeln!(out, "# HELP {metric} {help}\n# TYPE {metric} counter");
            for (name, m, _) in &limiters {
                let _ = writeln!(out, "{metric}{{name=\"{name}\"}} {}", get(m));
            }
        }
        let gauge = "fusebox_redis_limiter_degraded";
        let _ = writeln!(
            out,
            "# HELP {gauge} 1 while Redis is out and the degradation policy decides.\n\
             # TYPE {gauge} gauge"
        );
        for (name, _, degraded) in &limiters {
            let _ = writeln!(out, "{gauge}{{name=\"{name}\"}} {}", u8::from(*degraded));
        }
    }
}

/// A counter family: name, help, reader.
type Counter = (&'static str, &'static str, fn(&RedisLimiterMetrics) -> u64);

/// The live counters.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) redis: AtomicU64,
    pub(super) degraded: AtomicU64,
    pub(super) faults: AtomicU64,
    pub(super) corrupt: AtomicU64,
    pub(super) admitted: AtomicU64,
}

impl Counters {
    pub(super) fn snapshot(&self) -> RedisLimiterMetrics {
        RedisLimiterMetrics {
            redis_decisions: self.redis.load(Ordering::Relaxed),
            degraded_decisions: self.degraded.load(Ordering::Relaxed),
            faults: self.faults.load(Ordering::Relaxed),
            corrupt_values: self.corrupt.load(Ordering::Relaxed),
            admitted: self.admitted.load(Ordering::Relaxed),
        }
    }
}
