//! The open deadline at any trip time, from the crate docs ("a
//! `now` up to `max(open time, ~1.05 s)` earlier than the trip ... still
//! reads open: a stale clock never fails open"; open time rounded *up* to
//! 1.024 ms), for trips anywhere in `u64` µs (near 0, near `Instant::MAX`,
//! around every multiple of the 26-bit tick word's wrap).
#![cfg(not(miri))]

use fusebox::breaker::{CircuitBreaker, Config, Outcome, State};
use fusebox::{Duration, Instant};
use proptest::prelude::*;

const WRAP: u64 = (1 << 26) * 1_024;

fn trip_time() -> impl Strategy<Value = u64> {
    prop_oneof![
        any::<u64>(),
        (0u64..1 << 20, -5_000_000i64..5_000_000)
            .prop_map(|(k, d)| { k.wrapping_mul(WRAP).wrapping_add_signed(d) }),
        (0u64..10_000_000_000).prop_map(|d| u64::MAX - d),
        0u64..10_000_000,
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4_000, ..ProptestConfig::default() })]

    #[test]
    fn a_stale_or_current_clock_never_reads_a_fresh_trip_as_closed(
        t in trip_time(),
        open_ms in prop_oneof![1u64..2_000, 1u64..17_179_000],
        back_frac in 0u64..=1_000,
        fwd_frac in 0u64..1_000,
    ) {
        let open = Duration::from_millis(open_ms);
        let b = CircuitBreaker::new(
            Config::builder().consecutive_failures(1).open_for(open).build().unwrap(),
        );
        let t = Instant::from_micros(t);
        let p = b.try_acquire(t).unwrap();
        prop_assert!(p.record(Outcome::Failure, t, Duration::ZERO).is_some());
        let tolerance = open.as_micros().max(1_000_000);
        let back = tolerance / 1_000 * back_frac;
        let fwd = open.as_micros() / 1_000 * fwd_frac;
        let stale = Instant::from_micros(t.as_micros().saturating_sub(back));
        prop_assert_eq!(b.state(stale), State::Open, "stale by {} µs", back);
        prop_assert!(b.try_acquire(stale).is_err(), "stale by {} µs admitted", back);
        if t.as_micros().checked_add(fwd).is_some() {
            let later = Instant::from_micros(t.as_micros() + fwd);
            prop_assert_eq!(b.state(later), State::Open, "{} µs after the trip", fwd);
            prop_assert!(b.try_acquire(later).is_err());
        }
        // After the open time (rounded up to a tick), trials are let in.
        let ticks = open.as_micros().div_ceil(1_024) * 1_024;
        if let Some(end) = t.as_micros().checked_add(ticks + 1_024) {
            let end = Instant::from_micros(end);
            prop_assert_eq!(b.state(end), State::HalfOpen, "trip {:?} open {:?}", t, open);
        }
    }
}
