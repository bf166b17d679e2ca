//! [`HighWater`]: a counter's reading that never goes back.
//!
//! Some counts the core keeps in two steps read low for a moment while an
//! update is under way (never high): a keyed limiter's admissions, moved
//! from its keys to a global count in batches; a latency histogram's sum,
//! carried from a bucket's offsets to a spill sum; and the exposition's
//! last `le` bound, whose core bucket also counts a run past the range
//! until its clamped count takes it out. Prometheus reads a counter that
//! goes back as a reset, so each is reported through a [`HighWater`]: the
//! largest reading returned so far, exact whenever nothing is recorded.

use std::sync::atomic::{AtomicU64, Ordering};

/// The largest reading of a counter [`at_least`](Self::at_least) returned.
#[derive(Debug, Default)]
pub(crate) struct HighWater(AtomicU64);

impl HighWater {
    /// `read`, raised to every reading returned before: never less than
    /// what an earlier call returned.
    pub(crate) fn at_least(&self, read: u64) -> u64 {
        read.max(self.0.fetch_max(read, Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::HighWater;

    #[test]
    fn a_reading_never_goes_back() {
        let seen = HighWater::default();
        assert_eq!(seen.at_least(5), 5);
        assert_eq!(seen.at_least(3), 5, "a low reading is raised");
        assert_eq!(seen.at_least(9), 9);
    }
}
