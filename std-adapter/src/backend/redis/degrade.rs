//! [`Degrade`]: what a [`RedisLimiter`](super::RedisLimiter) decides while
//! Redis is unreachable or slow, and the bookkeeping of an outage (when to
//! probe Redis again, the health condition).

use std::time::Duration;

use tokio::time::Instant;

/// What a [`RedisLimiter`](super::RedisLimiter) decides while Redis does
/// not answer within the command timeout.
///
/// Whatever the policy, a degraded limiter never waits on Redis for more
/// than one probe at a time: the other requests are decided at once, and
/// once per probe interval (backing off from the minimum to the maximum
/// of the limiter's probe backoff) a request, or the limiter's background
/// probe if no request comes first, tries Redis again. The first probe
/// that succeeds ends the outage, with or without traffic.
///
/// # Examples
///
/// ```
/// use fusebox_std::backend::Degrade;
///
/// // Eight instances share the limit: each keeps an eighth locally.
/// let policy = Degrade::Local { instances: 8 };
/// assert_ne!(policy, Degrade::FailOpen);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Degrade {
    /// Admit every request: availability over protection. The outage is
    /// still reported (health degraded, a warning, a metric): never a
    /// silent loss of protection.
    FailOpen,
    /// Refuse every request that takes tokens, naming the time until the
    /// next probe as the wait: protection over availability. A peek
    /// (`n = 0`, taking nothing) is admitted, as Redis admits it, with
    /// `remaining: 0` and no wait.
    FailClosed,
    /// Decide in process, on core token buckets holding the quota divided
    /// by `instances` (the expected number of instances sharing the
    /// limit): the fleet as a whole keeps roughly its limit. Over an
    /// outage the fleet admits at most what `instances` separate buckets
    /// of that share admit, plus, at the switch, what Redis had already
    /// admitted in the same window; and at the switch back, Redis, which
    /// never learns what was admitted locally, admits from the state it
    /// kept: a window spanning the outage's end may admit the local
    /// buckets' tokens and Redis's burst (on 10 a minute, up to 10 of
    /// each within seconds). A request larger than the share's
    /// burst (yet within the quota's) is refused until the next probe.
    Local {
        /// Expected instances sharing the limit (at least 1).
        instances: u32,
    },
}

/// One limiter's outage state (under its mutex).
#[derive(Debug)]
pub(super) struct Outage {
    pub(super) degraded: bool,
    pub(super) next_probe: Instant,
    pub(super) backoff: Duration,
}

/// The probe backoff bounds. Any `Duration` is safe here: the doubling
/// saturates, and a next probe more than ~30 years away is clamped to the
/// far future (no probe for ~30 years), never a panic.
#[derive(Clone, Copy, Debug)]
pub(super) struct Backoff {
    pub(super) min: Duration,
    pub(super) max: Duration,
}

impl Outage {
    pub(super) fn new(now: Instant) -> Self {
        Self {
            degraded: false,
            next_probe: now,
            backoff: Duration::ZERO,
        }
    }

    /// Whether this request should ask Redis; a degraded limiter lets one
    /// request through per probe interval (and books the next probe now,
    /// so concurrent requests do not all probe).
    pub(super) fn should_ask(&mut self, now: Instant) -> bool {
        if !self.degraded {
            return true;
        }
        if now >= self.next_probe {
            self.next_probe = crate::clock::saturating_add(now, self.backoff);
            return true;
        }
        false
    }

    /// A fault: true if it starts an outage. `probe`: the request was let
    /// through by [`should_ask`](Self::should_ask) during the outage. Only
    /// a failed probe doubles the backoff and books the next probe; a
    /// request sent before the outage was seen that fails late changes
    /// nothing (a burst of those, one per request in flight when Redis
    /// went, took the backoff straight to its maximum, and the first probe
    /// waited that long instead of the minimum), unless the probe is due
    /// by then: it is then booked from `now` at the same backoff (the
    /// failure is as good as that probe's), so the refusal the request
    /// gets names a wait above zero (a request with a command timeout
    /// longer than the backoff, sent just before the outage, failed after
    /// the probe's instant and named a zero wait).
    pub(super) fn failed(&mut self, now: Instant, bounds: Backoff, probe: bool) -> bool {
        let started = !self.degraded;
        if started {
            self.backoff = bounds.min;
        } else if probe {
            self.backoff = self.backoff.saturating_mul(2).clamp(bounds.min, bounds.max);
        } else if now < self.next_probe {
            return false;
        }
        self.degraded = true;
        self.next_probe = crate::clock::saturating_add(now, self.backoff);
        started
    }

    /// A success: true if it ends an outage.
    pub(super) fn succeeded(&mut self) -> bool {
        let ended = self.degraded;
        self.degraded = false;
        self.backoff = Duration::ZERO;
        ended
    }

    /// Time until the next probe.
    pub(super) fn until_probe(&self, now: Instant) -> Duration {
        self.next_probe.saturating_duration_since(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_probe_per_interval_with_backoff() {
        let t0 = Instant::now();
        let bounds = Backoff {
            min: Duration::from_millis(10),
            max: Duration::from_millis(40),
        };
        let mut o = Outage::new(t0);
        assert!(o.should_ask(t0));
        assert!(o.failed(t0, bounds, false));
        assert!(!o.should_ask(t0 + Duration::from_millis(9)));
        assert!(o.should_ask(t0 + Duration::from_millis(10)));
        assert!(
            !o.should_ask(t0 + Duration::from_millis(10)),
            "one probe at a time"
        );
        assert!(!o.failed(t0 + Duration::from_millis(10), bounds, true));
        assert_eq!(
            o.until_probe(t0 + Duration::from_millis(10)),
            Duration::from_millis(20)
        );
        o.failed(t0, bounds, true);
        o.failed(t0, bounds, true);
        assert_eq!(o.backoff, Duration::from_millis(40), "capped");
        assert!(o.succeeded());
        assert!(!o.succeeded());
        assert!(o.should_ask(t0));
    }

    /// Requests in flight when Redis went fail one after another; only the
    /// first counts (it starts the outage): the first probe is due after
    /// the minimum backoff, not the maximum.
    #[test]
    fn late_failures_of_requests_sent_before_the_outage_do_not_back_off() {
        let t0 = Instant::now();
        let bounds = Backoff {
            min: Duration::from_millis(10),
            max: Duration::from_secs(5),
        };
        let mut o = Outage::new(t0);
        assert!(o.failed(t0, bounds, false));
        for i in 1..=20 {
            assert!(!o.failed(t0 + Duration::from_millis(i / 4), bounds, false));
        }
        assert_eq!(o.backoff, bounds.min);
        assert_eq!(o.next_probe, t0 + bounds.min);
        assert!(o.should_ask(t0 + bounds.min));
        // That probe fails: now the backoff doubles.
        assert!(!o.failed(t0 + bounds.min, bounds, true));
        assert_eq!(o.until_probe(t0 + bounds.min), Duration::from_millis(20));
    }

    /// A request sent before the outage was seen that fails once the
    /// probe is due (its command timeout is longer than the backoff) is
    /// refused with the wait until the next probe: above zero. Before, it
    /// changed nothing and named a zero wait (`Retry-After` aside, which
    /// is rounded up to 1 s, a `retry_after` of zero in the decision).
    #[test]
    fn a_late_failure_once_the_probe_is_due_names_a_wait() {
        let t0 = Instant::now();
        let bounds = Backoff {
            min: Duration::from_millis(10),
            max: Duration::from_secs(5),
        };
        let mut o = Outage::new(t0);
        assert!(o.failed(t0, bounds, false));
        let late = t0 + Duration::from_millis(15);
        assert!(!o.failed(late, bounds, false));
        assert_eq!(o.until_probe(late), bounds.min);
        assert_eq!(o.backoff, bounds.min, "not backed off");
        assert!(!o.should_ask(late), "booked from the failure");
        assert!(o.should_ask(late + bounds.min));
    }

    #[test]
    fn huge_bounds_saturate_instead_of_panicking() {
        let t0 = Instant::now();
        let far = crate::clock::far_future(t0);
        // `Duration::MAX` overflowed `now + backoff`; a max above half of
        // it overflowed `backoff * 2`.
        for bounds in [
            Backoff {
                min: Duration::MAX,
                max: Duration::MAX,
            },
            Backoff {
                min: Duration::MAX / 2 + Duration::from_secs(1),
                max: Duration::MAX,
            },
        ] {
            let mut o = Outage::new(t0);
            assert!(o.failed(t0, bounds, false));
            assert_eq!(o.next_probe, far);
            assert!(!o.should_ask(t0 + Duration::from_secs(3_600)));
            assert!(!o.failed(t0, bounds, true), "doubling saturates");
            assert_eq!(o.backoff, Duration::MAX);
            assert_eq!(o.until_probe(t0), far - t0);
            assert!(o.should_ask(far));
            assert_eq!(o.next_probe, crate::clock::far_future(far));
        }
    }
}
