//! `KeyedLimiter::available` and the requests agree, whatever the table
//! went through: eviction churn on 1, 3 and 16 slots with keys that
//! collide entirely (from `COLLIDE_FROM`: one home slot, fingerprint and
//! eviction mark), clocks up to ~0.5 s stale (inside the backward
//! tolerance of both word widths), so that absent keys read their
//! eviction marks. From the docs:
//!
//! * `available`: "Whole tokens available to `key` at `now`. A key not in
//!   the table reads what it would start with if inserted now: the full
//!   burst of its tier, or less for a caller whose `now` is behind a
//!   recent eviction";
//! * `try_acquire_left`: what the bucket holds right after, "what
//!   `available(key, now)` would read then";
//!
//! so at one `now`, under `FullPolicy::Reject`: a request admitted found
//! `available ≥ 1` and leaves exactly one whole token less (and says so);
//! a request refused as `RateLimited` found `available = 0`. (`TableFull`
//! says nothing about the key's own bucket.) 24 histories of 20 000
//! requests, and 24 more while the tier's quota changes every ~50
//! requests (`set_quota`, at `now`s that may be stale).
#![cfg(not(miri))]

use crate::common::{Key, Rng};
use fusebox::bucket::{FullPolicy, KeyedError, KeyedLimiter, Quota};
use fusebox::{Duration, Instant};

const KEYS: [u32; 10] = [0, 1, 2, 3, 48, 49, 50, 51, 52, 53];

/// Returns how many requests were checked and how many of them refused.
fn history<const N: usize>(seed: u64, requota: bool) -> (u64, u64) {
    let mut rng = Rng(seed | 1);
    let set = [
        (3u32, 1_000_000u64, 2u32),
        (7, 100_000, 5),
        (1_000, 1_000_000, 10),
        (1, 60_000_000, 1),
    ];
    let (tokens, period, burst) = set[rng.below(set.len() as u64) as usize];
    let quota = Quota::new(tokens, Duration::from_micros(period))
        .unwrap()
        .with_burst(burst)
        .unwrap();
    let limiter: KeyedLimiter<Key, N> = KeyedLimiter::new(quota, FullPolicy::Reject).unwrap();
    let step = period / u64::from(tokens) + 1;
    let mut latest = 1u64 << 40;
    let (mut checked, mut refused) = (0, 0);
    for i in 0..20_000 {
        latest += match rng.below(10) {
            0..=5 => rng.below(step / 2 + 1),
            6..=8 => rng.below(2 * step),
            _ => rng.below(20 * step),
        };
        let now = if rng.below(3) == 0 {
            latest - rng.below((1 << 19).min(3 * step))
        } else {
            latest
        };
        let key = Key(KEYS[rng.below(KEYS.len() as u64) as usize]);
        let at = Instant::from_micros(now);
        if requota && rng.below(50) == 0 {
            let (t, p, b) = set[rng.below(set.len() as u64) as usize];
            let q = Quota::new(t, Duration::from_micros(p))
                .unwrap()
                .with_burst(b)
                .unwrap();
            limiter.set_quota(0, q, at).unwrap();
        }
        let before = limiter.available(&key, at);
        let got = limiter.try_acquire_left(&key, at);
        let ctx = format!("seed {seed} N {N} step {i} {key:?} now {now} latest {latest}");
        match got {
            Ok(Some(left)) => {
                checked += 1;
                assert!(before >= 1, "{ctx}: admitted with {before} available");
                assert_eq!(left.tokens, before - 1, "{ctx}");
                assert_eq!(limiter.available(&key, at), left.tokens, "{ctx}");
            }
            Err(KeyedError::RateLimited(_)) => {
                checked += 1;
                refused += 1;
                assert_eq!(before, 0, "{ctx}: refused with {before} available");
            }
            Err(KeyedError::TableFull) => {}
            other => panic!("{ctx}: {other:?}"),
        }
    }
    (checked, refused)
}

#[test]
fn available_agrees_with_the_requests() {
    let (mut checked, mut refused) = (0, 0);
    for s in 1..=8u64 {
        for (c, r) in [
            history::<1>(s * 0x9E37_79B9, false),
            history::<3>(s * 0x2545_F491, false),
            history::<16>(s * 0x51_7CC1_B727, false),
        ] {
            checked += c;
            refused += r;
        }
    }
    assert!(
        checked > 300_000 && refused > 1_000,
        "{checked} checked, {refused} refused"
    );
}

/// The same while the tier's quota keeps changing (`set_quota`: "the
/// tokens available at `now` stay available", a lowered burst holds idle
/// keys in the table), at `now`s that may be stale too.
#[test]
fn available_agrees_across_quota_changes() {
    let (mut checked, mut refused) = (0, 0);
    for s in 9..=16u64 {
        for (c, r) in [
            history::<1>(s * 0x9E37_79B9, true),
            history::<3>(s * 0x2545_F491, true),
            history::<16>(s * 0x51_7CC1_B727, true),
        ] {
            checked += c;
            refused += r;
        }
    }
    assert!(
        checked > 300_000 && refused > 1_000,
        "{checked} checked, {refused} refused"
    );
}
