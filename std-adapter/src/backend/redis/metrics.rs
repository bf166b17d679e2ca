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
/// assert!(text.contains("fusebox_redis_limiter_degraded{name=\"api\"} 0\n"));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisLimiterMetrics {
    /// Decisions made by the Redis script.
    pub redis_decisions: u64,
    /// Decisions made by the [`Degrade`](super::Degrade) policy while
    /// Redis was out.
    pub degraded_decisions: u64,
    /// Faults: timeouts, lost connections, refused credentials.
    pub faults: u64,
    /// Corrupt stored values the script found and replaced.
    pub corrupt_values: u64,
}

impl RedisLimiterMetrics {
    /// These counters, and whether the limiter is `degraded`, in the
    /// Prometheus text format 0.0.4 for the limiter `name` (a registry
    /// name, so it needs no escaping).
    pub fn to_prometheus(&self, name: &str, degraded: bool) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP fusebox_redis_limiter_decisions_total Rate-limit decisions, by where they were made.\n\
             # TYPE fusebox_redis_limiter_decisions_total counter\n\
             fusebox_redis_limiter_decisions_total{{name=\"{name}\",source=\"redis\"}} {}\n\
             fusebox_redis_limiter_decisions_total{{name=\"{name}\",source=\"degraded\"}} {}",
            self.redis_decisions, self.degraded_decisions
        );
        for (metric, help, value) in [
            (
                "fusebox_redis_limiter_faults_total",
                "Redis timeouts, lost connections and refused credentials.",
                self.faults,
            ),
            (
                "fusebox_redis_limiter_corrupt_values_total",
                "Corrupt stored values replaced by a drained bucket.",
                self.corrupt_values,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {metric} {help}\n# TYPE {metric} counter\n{metric}{{name=\"{name}\"}} {value}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP fusebox_redis_limiter_degraded 1 while Redis is out and the degradation policy decides.\n\
             # TYPE fusebox_redis_limiter_degraded gauge\n\
             fusebox_redis_limiter_degraded{{name=\"{name}\"}} {}",
            u8::from(degraded)
        );
        out
    }
}

/// The live counters.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) redis: AtomicU64,
    pub(super) degraded: AtomicU64,
    pub(super) faults: AtomicU64,
    pub(super) corrupt: AtomicU64,
}

impl Counters {
    pub(super) fn snapshot(&self) -> RedisLimiterMetrics {
        RedisLimiterMetrics {
            redis_decisions: self.redis.load(Ordering::Relaxed),
            degraded_decisions: self.degraded.load(Ordering::Relaxed),
            faults: self.faults.load(Ordering::Relaxed),
            corrupt_values: self.corrupt.load(Ordering::Relaxed),
        }
    }
}
