//! A breaker's own snapshot always restores, whatever its counters went
//! through: the statistics counters wrap (at 2³² on Cortex-M, after about
//! 50 days at 1 000 calls a second; at 2⁶⁴ elsewhere, reached from a
//! restored snapshot's values), and a snapshot refused for them would
//! leave the restarted breaker closed however open the snapshot was.
//!
//! `restore` of counters near the wrap stands in for the billions of
//! recorded calls that bring them there.

use fusebox::breaker::{CircuitBreaker, Config, Metrics, Outcome, Snapshot, State};
use fusebox::{Duration, Instant};

/// Cortex-M's word layouts (or the host's emulation of them).
const NARROW: bool = !cfg!(target_has_atomic = "64") || cfg!(fusebox_narrow_words);

/// The largest value a statistics counter holds before wrapping: 32-bit
/// counters on Cortex-M, 64-bit elsewhere (the crate docs' word table).
const COUNTER_MAX: u64 = if NARROW { u32::MAX as u64 } else { u64::MAX };

const NOW: Instant = Instant::from_secs(1_000);
const SLOW: Duration = Duration::from_millis(100);

fn config() -> Config {
    Config::builder()
        .consecutive_failures(3)
        .slow_call(SLOW, 100)
        .open_for(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn record(b: &CircuitBreaker, outcome: Outcome, elapsed: Duration, n: u32) {
    for _ in 0..n {
        b.try_acquire(NOW).unwrap().record(outcome, NOW, elapsed);
    }
}

/// A closed breaker holding `metrics`, as if it had recorded that many
/// calls.
fn with_counters(metrics: Metrics) -> CircuitBreaker {
    let b = CircuitBreaker::new(config());
    let closed = Snapshot {
        metrics,
        ..b.snapshot(NOW)
    };
    b.restore(&closed, NOW).unwrap();
    b
}

/// Trips `b`, then restores its snapshot into a new breaker and into
/// itself: both must read open, with the snapshot's counters.
fn trip_and_restore(b: &CircuitBreaker, case: &str) {
    record(b, Outcome::Failure, Duration::ZERO, 3);
    assert_eq!(b.state(NOW), State::Open, "{case}");
    let snapshot = b.snapshot(NOW);
    let later = NOW + Duration::from_secs(1);
    for target in [&CircuitBreaker::new(config()), b] {
        assert_eq!(
            target.restore(&snapshot, later),
            Ok(()),
            "{case}: {snapshot:?}"
        );
        assert_eq!(
            target.state(later),
            State::Open,
            "{case}: never closed by a restart"
        );
        assert_eq!(target.snapshot(later).metrics, snapshot.metrics, "{case}");
    }
}

#[test]
fn successes_wrapped_below_the_slow_calls() {
    // 100 slow calls, then the success counter wraps past them.
    let b = with_counters(Metrics {
        successes: COUNTER_MAX - 4,
        slow_calls: 100,
        ..Metrics::default()
    });
    record(&b, Outcome::Success, Duration::ZERO, 10);
    assert_eq!(b.metrics().successes, 5, "wrapped");
    trip_and_restore(&b, "successes wrapped");
}

#[test]
fn counters_whose_sum_passes_u64() {
    // Each counter in range, their sum past u64 (only 64-bit counters can
    // get there; 32-bit ones wrap each on its own first).
    let b = with_counters(Metrics {
        rejected: COUNTER_MAX - 1,
        ..Metrics::default()
    });
    record(&b, Outcome::Success, SLOW, 10);
    trip_and_restore(&b, "sum past u64");
}

/// Sound-but-checked (the `Metrics` docs): a snapshot from a 64-bit host
/// restored on Cortex-M keeps each counter modulo 2³², and the counters
/// go on wrapping there; elsewhere they are kept whole.
#[test]
fn a_hosts_counters_restored_on_cortex_m_are_kept_modulo_2_32() {
    let big = 5_000_000_000;
    let b = with_counters(Metrics {
        successes: big,
        rejected: (1 << 32) + 7,
        ..Metrics::default()
    });
    let m = b.metrics();
    if NARROW {
        assert_eq!((m.successes, m.rejected), (705_032_704, 7));
    } else {
        assert_eq!((m.successes, m.rejected), (big, (1 << 32) + 7));
    }
    record(&b, Outcome::Success, Duration::ZERO, 1);
    assert_eq!(
        b.metrics().successes,
        if NARROW { 705_032_705 } else { big + 1 }
    );
}
