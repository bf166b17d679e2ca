//! The registry's default clock.
//!
//! MERGE NOTE: the policies branch adds `clock.rs` with `TokioClock`; this
//! private stand-in does the same (tokio's clock, so paused time drives
//! tests) and should be replaced by it at merge time.

use fusebox::{Clock, Instant};

/// `tokio::time::Instant` as microseconds since `origin`.
pub(crate) struct TokioNow {
    origin: tokio::time::Instant,
}

impl TokioNow {
    pub(crate) fn new() -> Self {
        Self {
            origin: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioNow {
    fn now(&self) -> Instant {
        let micros = self.origin.elapsed().as_micros();
        Instant::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
    }
}
