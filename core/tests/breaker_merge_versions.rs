//! Fleet decisions (`CircuitBreaker::merge`) whose versions run past the
//! width they are kept in, against a model of `Decision::version`'s docs:
//! "Versions are kept in 63 bits (31 on Cortex-M) and compared modulo that
//! width, so a counter may wrap: a version is newer than the one merged
//! last if it is ahead of it by less than half the range (2⁶², or 2³⁰ on
//! Cortex-M). A version further ahead, such as a forged `u64::MAX` on a
//! fresh breaker, reads as older and is refused with `MergeError::Stale`";
//! "a breaker applies each version at most once and never an older one
//! after a newer". And `merge`'s: the decided state is applied, with the
//! transition it made (`None` if the breaker was already in the decided
//! state); a refused decision changes nothing (`MergeError`: "The breaker
//! is unchanged").
//!
//! Versions step forward by 1, by anything up to the largest newer step
//! (half the range less one), by exactly half the range (refused), stay
//! or step back (refused), and jump to `u64::MAX` or to an alias of the
//! last version (`+ 2^63`, `+ 2^31`); so the width wraps thousands of
//! times. 8 histories of 20 000 decisions on both word widths. The clock
//! stands still, so an open decision never expires between merges.
#![cfg(not(miri))]

use crate::common::{Rng, NARROW};
use fusebox::breaker::{CircuitBreaker, Config, Decision, MergeError, State};
use fusebox::{Duration, Instant};

/// Bits a version is kept in.
const WIDTH: u32 = if NARROW { 31 } else { 63 };
const RANGE: u128 = 1 << WIDTH;

/// Whether `v` is newer than `last` by the docs' rule.
fn newer(v: u64, last: u64) -> bool {
    let d = (u128::from(v) + RANGE - u128::from(last) % RANGE) % RANGE;
    d != 0 && d < RANGE / 2
}

fn decision(rng: &mut Rng, version: u64) -> Decision {
    let (state, open_remaining, reopen_streak) = match rng.below(3) {
        0 => (State::Closed, None, 0),
        1 => (
            State::Open,
            Some(Duration::from_secs(1 + rng.below(9))),
            rng.below(4) as u8,
        ),
        _ => (State::HalfOpen, None, rng.below(4) as u8),
    };
    Decision {
        version,
        state,
        open_remaining,
        reopen_streak,
    }
}

fn history(seed: u64) {
    let mut rng = Rng(seed | 1);
    let breaker = CircuitBreaker::new(
        Config::builder()
            .consecutive_failures(3)
            .open_for(Duration::from_secs(10))
            .max_open_for(Duration::from_secs(80))
            .build()
            .unwrap(),
    );
    let now = Instant::from_secs(1_000);
    let half = (RANGE / 2) as u64;
    // The newest version merged, as published (0 on a fresh breaker: the
    // docs' forged example reads `u64::MAX` as older than it).
    let (mut last, mut state, mut applied) = (0u64, State::Closed, 0);
    for i in 0..20_000 {
        let version = match rng.below(20) {
            0..=7 => last.wrapping_add(1),
            8..=11 => last.wrapping_add(1 + rng.below(half - 1)),
            12 => last.wrapping_add(half - 1),
            13 => last.wrapping_add(half),
            14 => last,
            15 => last.wrapping_sub(1 + rng.below(1 << 20)),
            16 => u64::MAX,
            17 => last.wrapping_add(1 << 31),
            18 => last.wrapping_add(1 << 63),
            _ => rng.next(),
        };
        let d = decision(&mut rng, version);
        let got = breaker.merge(&d, now);
        let ctx = format!("seed {seed} step {i}: version {version} after {last}, {d:?}");
        if newer(version, last) {
            let t = got.unwrap_or_else(|e| panic!("{ctx}: refused: {e:?}"));
            assert_eq!(
                t.map(|t| (t.from, t.to, t.at)),
                (state != d.state).then_some((state, d.state, now)),
                "{ctx}"
            );
            (last, state) = (version, d.state);
            applied += 1;
        } else {
            assert!(
                matches!(got, Err(MergeError::Stale { .. })),
                "{ctx}: {got:?}"
            );
        }
        assert_eq!(breaker.state(now), state, "{ctx}");
    }
    assert!(applied > 5_000, "seed {seed}: only {applied} applied");
}

#[test]
fn versions_wrap_and_order() {
    for seed in 1..=8u64 {
        history(seed * 0x9E37_79B9);
    }
}

/// On a fresh breaker: every version ahead of 0 by less than half the
/// range is newer; `u64::MAX` (ahead by the whole range less one) and
/// half the range are not.
#[test]
fn a_fresh_breaker_takes_what_is_ahead_of_zero() {
    let half = (RANGE / 2) as u64;
    let decide = |version| Decision {
        version,
        state: State::HalfOpen,
        open_remaining: None,
        reopen_streak: 0,
    };
    let fresh = || CircuitBreaker::new(Config::builder().consecutive_failures(1).build().unwrap());
    let now = Instant::from_secs(1);
    for v in [1, 2, half - 1] {
        assert!(fresh().merge(&decide(v), now).is_ok(), "version {v}");
    }
    for v in [half, half + 1, u64::MAX] {
        assert!(
            matches!(
                fresh().merge(&decide(v), now),
                Err(MergeError::Stale { .. })
            ),
            "version {v}"
        );
    }
}
