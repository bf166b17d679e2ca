//! Hostile long histories for the core's wrapping words: every packed
//! field, generation and time value kept in fewer bits than its range,
//! driven past that range with virtual instants far apart. The
//! expectations come from the documented contract (the crate docs' table
//! "Atomic words and their limits", the module docs), never from the code.
#![cfg(not(miri))]
#![allow(dead_code)] // the constants serve the sections of optional features

const SEC: u64 = 1_000_000;
const DAY: u64 = 86_400 * SEC;

#[cfg(feature = "time-window")]
mod time_window {
    use super::{DAY, SEC};
    use fusebox::breaker::{Config, Outcome, State};
    use fusebox::{CircuitBreaker, Duration, Instant};

    fn at(us: u64) -> Instant {
        Instant::from_micros(us)
    }

    /// The time window (feature `time-window`): on every layout, a record
    /// counts for at most `total` after its interval, whatever idle time came
    /// before it. A healthy service (10 % failures, under a 50 % rate) never
    /// trips, however long the breaker sat idle first.
    #[test]
    fn a_healthy_service_never_trips_after_any_idle_time() {
        // 1 ms intervals: 2^30 of them are 12.4 days, 2^31 24.8 days.
        for idle in [
            DAY,
            12 * DAY,
            (1u64 << 30) * 1_000 + 5_000,
            13 * DAY,
            20 * DAY,
            24 * DAY,
            (1u64 << 31) * 1_000 + 5_000,
            40 * DAY,
        ] {
            let b = CircuitBreaker::new(
                Config::builder()
                    .failure_rate(50)
                    .minimum_calls(10)
                    .time_window(Duration::from_millis(8), 8)
                    .open_for(Duration::from_secs(1))
                    .build()
                    .unwrap(),
            );
            let t0 = 1_000 * SEC;
            // Some history, below `minimum_calls`.
            for i in 0..4 {
                let now = at(t0 + i);
                b.try_acquire(now)
                    .unwrap()
                    .record(Outcome::Failure, now, Duration::ZERO);
            }
            let start = t0 + idle;
            // Then 10 s of four calls a millisecond, one in ten failing: every
            // 8 ms window holds 32 calls and at most 4 failures.
            let mut n = 0u64;
            for ms in 0..10_000u64 {
                for q in 0..4u64 {
                    let now = at(start + ms * 1_000 + q * 100);
                    let p = b.try_acquire(now).unwrap_or_else(|r| {
                        panic!("idle {idle} us: rejected at call {n} ({ms} ms): {r:?}")
                    });
                    let outcome = if n % 10 == 9 {
                        Outcome::Failure
                    } else {
                        Outcome::Success
                    };
                    let t = p.record(outcome, now, Duration::ZERO);
                    assert_eq!(
                        t, None,
                        "idle {idle} us ({} days): a 10 % failure rate tripped the breaker at call {n} ({ms} ms after the idle time)",
                        idle / DAY
                    );
                    n += 1;
                }
            }
            assert_eq!(b.state(at(start + 10_000_000)), State::Closed);
        }
    }
}
