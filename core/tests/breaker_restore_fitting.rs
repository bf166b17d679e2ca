//! `CircuitBreaker::restore` of any valid snapshot into any configuration,
//! against its docs: "a snapshot taken under another configuration is
//! fitted to this one, never refused for it: a window larger than this
//! breaker's keeps its newest outcomes; an open time longer than this
//! configuration allows is shortened to it; a closed count of failures in
//! a row that reaches this trip threshold is restored one short of it …,
//! and half-open successes that reach `close_after` one short of that",
//! the re-opening streak kept, the open deadline `now` plus the (fitted)
//! time left rounded up to a 1.024 ms tick (an expired one, zero left,
//! reads half-open at once); `snapshot` at the same `now` reads back what
//! was fitted. Every state, window sizes 1 to 64 on both sides, thresholds,
//! `close_after` and open times across their ranges.
#![cfg(not(miri))]
use fusebox::breaker::*;
use fusebox::{Duration, Instant};
use proptest::prelude::*;

/// A valid configuration: either policy, any window and open-time growth.
fn cfg() -> impl Strategy<Value = Config> {
    (
        prop::option::of(1u32..256),
        prop::option::of(1u8..=100),
        1u8..=64,
        1u8..=64,
        1u64..5_000_000,
        0u32..16,
        1u8..=63,
        prop::option::of(1u8..=63),
    )
        .prop_filter_map("valid", |(cf, fr, w, m, open, grow, hop, ca)| {
            let mut b = Config::builder()
                .open_for(Duration::from_micros(open))
                .max_open_for(Duration::from_micros(open << grow))
                .half_open_permits(hop);
            if let Some(x) = cf {
                b = b.consecutive_failures(x);
            }
            if let Some(x) = fr {
                b = b.failure_rate(x).window(w).minimum_calls(m.min(w));
            }
            if let Some(x) = ca {
                b = b.close_after(x);
            }
            b.build().ok()
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4_000, ..ProptestConfig::default() })]
    #[test]
    fn a_snapshot_of_any_configuration_is_fitted_as_documented(c in cfg(), st in 0u8..4, cf in 0u16..256, hs in any::<u8>(), rs in 0u8..16, left in 0u64..(1u64<<35), wc in 0u8..=64, bits in any::<u64>(), slowbits in any::<u64>(), now in 0u64..(1u64<<45)) {
        let state = [State::Closed, State::Open, State::HalfOpen, State::ForcedOpen][st as usize];
        let mask = if wc == 64 { u64::MAX } else { (1u64 << wc) - 1 };
        let s = Snapshot {
            state,
            consecutive_failures: if state == State::Closed { cf } else { 0 },
            half_open_successes: if state == State::HalfOpen { hs } else { 0 },
            reopen_streak: if matches!(state, State::Open | State::HalfOpen) { rs } else { 0 },
            open_remaining: (state == State::Open).then(|| Duration::from_micros(left.min(Config::MAX_OPEN_FOR.as_micros()))),
            window_calls: if state == State::Closed { wc } else { 0 },
            window_failures: if state == State::Closed { bits & mask } else { 0 },
            window_slow: if state == State::Closed { slowbits & mask } else { 0 },
            metrics: Metrics::default(),
        };
        let b = CircuitBreaker::new(c);
        let at = Instant::from_micros(now);
        prop_assert_eq!(b.restore(&s, at), Ok(()));
        let r = b.snapshot(at);
        prop_assert_eq!(r.state, state);
        match state {
            State::Closed => {
                let thr = c.consecutive_failures().unwrap_or(0);
                let exp = if thr != 0 { cf.min(thr - 1) } else { cf };
                prop_assert_eq!(r.consecutive_failures, exp);
                if c.failure_rate().is_some() {
                    let keep = wc.min(c.window());
                    let drop = u32::from(wc - keep);
                    prop_assert_eq!(r.window_calls, keep);
                    prop_assert_eq!(r.window_failures, (bits & mask).checked_shr(drop).unwrap_or(0));
                    prop_assert_eq!(r.window_slow, (slowbits & mask).checked_shr(drop).unwrap_or(0));
                } else {
                    prop_assert_eq!(r.window_calls, 0);
                }
            }
            State::HalfOpen => {
                prop_assert_eq!(r.half_open_successes, hs.min(c.close_after() - 1));
                prop_assert_eq!(r.reopen_streak, rs);
            }
            State::Open => {
                let od = (c.open_for().as_micros() << rs).min(c.max_open_for().as_micros());
                let l = s.open_remaining.unwrap().as_micros().min(od);
                let until = if l == 0 { now / 1024 * 1024 } else { (now + l).div_ceil(1024) * 1024 };
                prop_assert_eq!(r.open_remaining, Some(Duration::from_micros(until.saturating_sub(now))), "od {} l {}", od, l);
                prop_assert_eq!(r.reopen_streak, rs);
            }
            State::ForcedOpen => {}
        }
    }
}
