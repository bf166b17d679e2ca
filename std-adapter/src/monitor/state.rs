//! [`Health`] and the consecutive-count state machine that decides it.

/// The health of one check or of the whole monitor (the worst of its
/// critical checks). Ordered from best to worst.
///
/// ```
/// use fusebox_std::monitor::Health;
///
/// assert!(Health::Healthy < Health::Degraded && Health::Degraded < Health::Unhealthy);
/// assert_eq!(Health::Unknown.max(Health::Degraded), Health::Degraded);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Passing.
    Healthy,
    /// Not run yet.
    Unknown,
    /// Failing, not yet for long enough to be unhealthy, or recovering.
    Degraded,
    /// Failed `unhealthy_after` times in a row and has not recovered.
    Unhealthy,
}

/// The consecutive counts that move a check between [`Health`] states.
///
/// ```text
///             first pass                  pass × healthy_after
///  Unknown ─────────────► Healthy ◄───────────────────────┐
///     │                     │ fail × degraded_after       │
///     │ fail                ▼                             │
///     └───────────────► Degraded ─────────────────────────┤
///                           │ fail × unhealthy_after      │
///                           ▼                             │
///                       Unhealthy ──pass──► Degraded ─────┘
/// ```
///
/// * A failure resets the success streak; a pass resets the failure
///   streak.
/// * `failures ≥ unhealthy_after` → Unhealthy (from any state);
///   otherwise `failures ≥ degraded_after` → Degraded (from Healthy).
/// * A failure out of Unknown → Degraded at once (a check that ran is
///   no longer unknown; `degraded_after` is a healthy check's tolerance).
/// * A pass out of Unknown → Healthy at once; out of Unhealthy →
///   Degraded; `successes ≥ healthy_after` → Healthy (from Degraded, or
///   straight from Unhealthy when `healthy_after` is 1).
///
/// Defaults: degraded after 1 failure, unhealthy after 3, healthy after 2
/// passes. Values are clamped to at least 1 and `degraded_after` to at
/// most `unhealthy_after`.
///
/// ```
/// use fusebox_std::monitor::Thresholds;
///
/// let t = Thresholds::new().degraded_after(2).unhealthy_after(5).healthy_after(3);
/// assert_eq!((t.degraded(), t.unhealthy(), t.healthy()), (2, 5, 3));
/// assert_eq!(Thresholds::new().degraded_after(9).degraded(), 3); // ≤ unhealthy_after
/// // In either order.
/// assert_eq!(Thresholds::new().degraded_after(5).unhealthy_after(10).degraded(), 5);
/// assert_eq!(Thresholds::new().unhealthy_after(10).degraded_after(5).degraded(), 5);
/// // Equal when they act alike.
/// assert_eq!(Thresholds::new().degraded_after(5), Thresholds::new().degraded_after(3));
/// ```
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Thresholds {
    degraded: u32,
    unhealthy: u32,
    healthy: u32,
    /// `degraded_after` as given: `degraded` is it, at most `unhealthy`,
    /// whatever the order the two are set in (found by a hostile review:
    /// setting `degraded_after(5)` before `unhealthy_after(10)` kept 3).
    #[serde(skip)]
    degraded_wanted: u32,
}

/// Equal when they act alike (their effective values, as serialised),
/// whatever each builder was first given.
impl PartialEq for Thresholds {
    fn eq(&self, other: &Self) -> bool {
        (self.degraded, self.unhealthy, self.healthy)
            == (other.degraded, other.unhealthy, other.healthy)
    }
}

impl Eq for Thresholds {}

impl Default for Thresholds {
    fn default() -> Self {
        Self::new()
    }
}

impl Thresholds {
    /// The defaults: 1, 3 and 2.
    ///
    /// ```
    /// use fusebox_std::monitor::Thresholds;
    ///
    /// assert_eq!(Thresholds::new(), Thresholds::default());
    /// ```
    pub const fn new() -> Self {
        Self {
            degraded: 1,
            unhealthy: 3,
            healthy: 2,
            degraded_wanted: 1,
        }
    }

    /// Failures in a row that make a healthy check degraded.
    ///
    /// ```
    /// use fusebox_std::monitor::Thresholds;
    ///
    /// assert_eq!(Thresholds::new().degraded_after(2).degraded(), 2);
    /// ```
    #[must_use]
    pub fn degraded_after(mut self, failures: u32) -> Self {
        self.degraded_wanted = failures.max(1);
        self.degraded = self.degraded_wanted.min(self.unhealthy);
        self
    }

    /// Failures in a row that make a check unhealthy.
    ///
    /// ```
    /// use fusebox_std::monitor::Thresholds;
    ///
    /// assert_eq!(Thresholds::new().unhealthy_after(0).unhealthy(), 1);
    /// ```
    #[must_use]
    pub fn unhealthy_after(mut self, failures: u32) -> Self {
        self.unhealthy = failures.max(1);
        self.degraded = self.degraded_wanted.min(self.unhealthy);
        self
    }

    /// Passes in a row that make a degraded or unhealthy check healthy.
    ///
    /// ```
    /// use fusebox_std::monitor::Thresholds;
    ///
    /// assert_eq!(Thresholds::new().healthy_after(4).healthy(), 4);
    /// ```
    #[must_use]
    pub fn healthy_after(mut self, passes: u32) -> Self {
        self.healthy = passes.max(1);
        self
    }

    /// See [`degraded_after`](Self::degraded_after).
    ///
    /// ```
    /// assert_eq!(fusebox_std::monitor::Thresholds::new().degraded(), 1);
    /// ```
    pub const fn degraded(&self) -> u32 {
        self.degraded
    }

    /// See [`unhealthy_after`](Self::unhealthy_after).
    ///
    /// ```
    /// assert_eq!(fusebox_std::monitor::Thresholds::new().unhealthy(), 3);
    /// ```
    pub const fn unhealthy(&self) -> u32 {
        self.unhealthy
    }

    /// See [`healthy_after`](Self::healthy_after).
    ///
    /// ```
    /// assert_eq!(fusebox_std::monitor::Thresholds::new().healthy(), 2);
    /// ```
    pub const fn healthy(&self) -> u32 {
        self.healthy
    }
}

/// The streaks and the state they decide.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Streaks {
    pub(crate) health: Health,
    pub(crate) failures: u32,
    pub(crate) successes: u32,
}

impl Streaks {
    pub(crate) const fn new() -> Self {
        Self {
            health: Health::Unknown,
            failures: 0,
            successes: 0,
        }
    }

    /// Records one result; returns the new state when it changed.
    pub(crate) fn record(&mut self, passed: bool, t: &Thresholds) -> Option<Health> {
        let next = if passed {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
            match self.health {
                _ if self.successes >= t.healthy => Health::Healthy,
                Health::Unknown => Health::Healthy,
                Health::Unhealthy => Health::Degraded,
                other => other,
            }
        } else {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
            match self.health {
                _ if self.failures >= t.unhealthy => Health::Unhealthy,
                // Ran, so no longer "not run yet" (found by a hostile
                // review: it stayed Unknown until `degraded_after`).
                Health::Unknown => Health::Degraded,
                Health::Healthy if self.failures >= t.degraded => Health::Degraded,
                other => other,
            }
        };
        let changed = next != self.health;
        self.health = next;
        changed.then_some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(t: &Thresholds, results: &str) -> Vec<Health> {
        let mut s = Streaks::new();
        results
            .chars()
            .map(|c| {
                s.record(c == 'p', t);
                s.health
            })
            .collect()
    }

    #[test]
    fn documented_transitions() {
        use Health::{Degraded as D, Healthy as H, Unhealthy as U};
        let t = Thresholds::new(); // 1, 3, 2
        assert_eq!(run(&t, "pfffppp"), [H, D, D, U, D, H, H]);
        assert_eq!(run(&t, "fpp"), [D, D, H]);
        assert_eq!(run(&t, "pfpfpf"), [H, D, D, D, D, D]);
        let t = Thresholds::new()
            .degraded_after(2)
            .unhealthy_after(4)
            .healthy_after(1);
        assert_eq!(run(&t, "pfffffp"), [H, H, D, D, U, U, H]);
        // A failing first run leaves Unknown at once.
        assert_eq!(run(&t, "ffffp"), [D, D, D, U, H]);
    }
}
