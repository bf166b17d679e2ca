//! `TokenBucket` on long random histories against a model written from the
//! documented contract (the `bucket` module docs and the methods' docs),
//! with clocks that go stale (within the documented tolerance), jump
//! forward by hours and years, and start next to every wrap of the
//! arrival-time word, while quotas change, the bucket is reset and
//! restored, and requests ask for 0, 1, the burst, more than the burst
//! and `u32::MAX` tokens.
//!
//! The model is GCRA on exact, unbounded time, with the emission interval
//! `T` the `gcra` module docs define (`period / tokens`, rounded up to
//! `1/scale` µs where the scale is clamped or coarsened), in units of
//! `1/L` µs, `L` the least common multiple of the quotas' scales, so that
//! every `T` is a whole number. (With the exact `T` instead, a rounded-up
//! one admits *more* at a stale `now`, by up to `burst / scale` µs of
//! drain, which the window bound `burst + rate·W` still allows.) A request for `n` moves the arrival time to
//! `max(tat, now) + n·T` and is admitted iff that is at most `burst·T`
//! ahead of `now`; a quota change keeps the tokens available at its `now`
//! (clamped to the new burst) and an overdraft as time; `reset` makes the
//! bucket full; `restore(until_full, now)` drains it by `until_full` at
//! `now` (clamped to empty). The implementation may round toward fewer
//! tokens, and may read a bucket as drained where the docs allow it (a
//! bucket idle for close to a multiple of the word's wrap), so the check is
//! one-sided: everything it admits the model admits (and is charged to the
//! model), it never reports more tokens available than the model, and a
//! snapshot never says full earlier than the model. `InsufficientCapacity`
//! is exact: exactly the requests over the burst.
#![cfg(not(miri))]

use fusebox::bucket::{AcquireError, BucketSnapshot, Quota, TokenBucket};
use fusebox::{Duration, Instant};

use crate::common;
use crate::common::{gcd, scaled, Rng, NARROW, STALE};

/// The quotas a history draws from (those this target can represent), in
/// three sets whose token counts have a small enough common multiple for
/// the model's exact arithmetic: long periods, fast and clamped rates,
/// exact scales that are coarsened on 32 bits.
fn quotas(set: u64) -> Vec<Quota> {
    let day = 86_400_000_000;
    let set: &[(u32, u64, u32)] = match set % 3 {
        0 => &[
            (1, day, 1),
            (1, 600_000_000, 1),
            (3, 1_000_000, 5),
            (7, 1_000, 2),
            (1_000, 1_000_000, 1),
            (10, 1_000_000, 400),
            (1, 1, 1),
            (2, 3, 7),
        ],
        1 => &[
            (u32::MAX, 1_000_000, 1),
            (u32::MAX, 1_000_000, 3),
            (65_537, 1_000_000, 100),
            (7, 1_000, 2),
            (1, 1, 1),
            (2, 3, 7),
        ],
        _ => &[
            (541, 1_000_000, 541),
            (3, 1_000_000, 5),
            (1_000, 1_000_000, 1),
            (1, 1, 1),
        ],
    };
    common::representable(set)
}

/// The contract's bucket: exact, unbounded time in units of `1/l` µs.
struct Model {
    l: u128,
    quota: Quota,
    /// Arrival time in units; `None`: full at any time.
    tat: Option<u128>,
}

impl Model {
    fn t(&self, q: Quota) -> u128 {
        let (scale, interval) = scaled(q);
        interval * (self.l / scale)
    }
    fn cap(&self, q: Quota) -> u128 {
        self.t(q) * u128::from(q.burst())
    }
    fn ahead(&self, now: u64) -> u128 {
        let now = u128::from(now) * self.l;
        self.tat.map_or(0, |tat| tat.saturating_sub(now))
    }
    fn decide(&self, n: u32, now: u64) -> Option<u128> {
        let cost = u128::from(n) * self.t(self.quota);
        let needed = self.ahead(now) + cost;
        (needed <= self.cap(self.quota)).then(|| u128::from(now) * self.l + needed)
    }
    /// Available tokens, as a fraction: `(capacity - ahead) / T`.
    fn available(&self, now: u64) -> u128 {
        self.cap(self.quota).saturating_sub(self.ahead(now)) / self.t(self.quota)
    }
    fn set_quota(&mut self, q: Quota, now: u64) {
        let (old_t, old_cap) = (self.t(self.quota), self.cap(self.quota));
        let (new_t, new_cap) = (self.t(q), self.cap(q));
        let ahead = self.ahead(now);
        self.quota = q;
        if ahead == 0 {
            // Full at the change: full before it too (the lenient side; a
            // 32-bit word read across its wrap may carry a spurious
            // overdraft, see the `gcra` module docs).
            return;
        }
        let new_ahead = if ahead > old_cap {
            new_cap + (ahead - old_cap)
        } else {
            // Tokens available, as a fraction, clamped to the new burst,
            // rounded toward *more* (the model must be the lenient side).
            let avail_units = (old_cap - ahead) * new_t; // tokens · old_t · new_t
            let drain = (new_cap * old_t).saturating_sub(avail_units);
            drain / old_t
        };
        self.tat = Some(u128::from(now) * self.l + new_ahead);
    }
}

/// The clock: mostly small steps, sometimes a long quiet gap, rarely a
/// jump by hours (or years on 64 bits); a reading is sometimes stale,
/// never by more than the tolerance behind the latest. Returns the new
/// latest reading and this call's.
fn tick(rng: &mut Rng, latest: u64) -> (u64, u64) {
    let latest = latest
        + match rng.below(1_000) {
            0 => 3_600_000_000 * (1 + rng.below(48)),
            1 if !NARROW => 31_557_600_000_000 * (1 + rng.below(3)),
            2..=30 => rng.below(3_000_000_000),
            31..=100 => rng.below(2_000_000),
            _ => rng.below(5_000),
        };
    let now = match rng.below(6) {
        0 => latest - rng.below(STALE.min(latest)),
        1 => latest - rng.below(1_000.min(latest)),
        _ => latest,
    };
    (latest, now)
}

/// The last lines of a history, for a failure's message.
fn tail(log: &[String]) -> &[String] {
    &log[log.len().saturating_sub(30)..]
}

/// One request of `n` tokens at `now`, checked against the model: `Some`
/// whether it was admitted, `None` for `n == 0` or over the burst.
fn acquire(
    bucket: &TokenBucket,
    model: &mut Model,
    n: u32,
    now: u64,
    single: bool,
    log: &mut Vec<String>,
) -> Option<bool> {
    let q = model.quota;
    let at = Instant::from_micros(now);
    let got = if n == 1 && single {
        bucket.try_acquire(at).map_err(AcquireError::from)
    } else {
        bucket.try_acquire_n(n, at)
    };
    log.push(format!("acquire {n} at {now} -> {got:?}"));
    match got {
        Ok(()) if n == 0 => None,
        Ok(()) => {
            assert!(n <= q.burst(), "{q:?}: {n} admitted: {:#?}", tail(log));
            let Some(tat) = model.decide(n, now) else {
                panic!(
                    "{q:?}: admitted {n} at {now}, the contract refuses \
                     (ahead {} units of 1/{} µs): {:#?}",
                    model.ahead(now),
                    model.l,
                    tail(log)
                );
            };
            model.tat = Some(tat);
            Some(true)
        }
        Err(AcquireError::InsufficientCapacity(e)) => {
            assert!(n > q.burst(), "{q:?}: {e:?}");
            assert_eq!(e.burst, q.burst());
            None
        }
        Err(AcquireError::RateLimited(_)) => {
            assert!(n <= q.burst(), "{q:?}: {n} refused for now");
            Some(false)
        }
        Err(e) => panic!("{e:?}"),
    }
}

fn run(seed: u64, start: u64, ops: usize) {
    let qs = quotas(seed);
    let l = qs
        .iter()
        .map(|&q| scaled(q).0)
        .fold(1, |a, b| a / gcd(a, b) * b);
    let mut rng = Rng(seed | 1);
    let q0 = qs[rng.below(qs.len() as u64) as usize];
    let bucket = TokenBucket::new(q0);
    let mut model = Model {
        l,
        quota: q0,
        tat: None,
    };
    let mut latest = start;
    let mut log: Vec<String> = Vec::new();
    let mut outcomes = [0u64; 2];
    for _ in 0..ops {
        let now;
        (latest, now) = tick(&mut rng, latest);
        let at = Instant::from_micros(now);
        let q = model.quota;
        match rng.below(100) {
            0..=69 => {
                let n = match rng.below(12) {
                    0 => 0,
                    1 => q.burst(),
                    2 => q.burst().saturating_add(1),
                    3 => u32::MAX,
                    4 => 2,
                    _ => 1,
                };
                let single = rng.below(2) == 0;
                if let Some(admitted) = acquire(&bucket, &mut model, n, now, single, &mut log) {
                    outcomes[usize::from(admitted)] += 1;
                }
            }
            70..=79 => {
                let got = u128::from(bucket.available(at));
                let want = model.available(now);
                assert!(
                    got <= want,
                    "{q:?}: available {got} at {now}, the contract {want}: {:#?}",
                    tail(&log)
                );
            }
            80..=87 => {
                let snap = bucket.snapshot(at);
                let got = u128::from(snap.until_full.as_micros()) * l;
                assert!(
                    got >= model.ahead(now),
                    "{q:?}: full after {:?} at {now}, the contract {} units of 1/{l} µs: {:#?}",
                    snap.until_full,
                    model.ahead(now),
                    tail(&log)
                );
                log.push(format!("snapshot at {now} -> {snap:?}"));
            }
            88..=93 => {
                let new = qs[rng.below(qs.len() as u64) as usize];
                let old = bucket.set_quota(new, at);
                assert_eq!(old, q);
                model.set_quota(new, now);
                log.push(format!("set_quota {new:?} at {now}"));
            }
            94..=95 => {
                bucket.reset();
                model.tat = None;
                log.push("reset".into());
            }
            _ => {
                let until = match rng.below(4) {
                    0 => Duration::MAX,
                    1 => Duration::ZERO,
                    2 => Duration::from_micros(rng.next()),
                    _ => Duration::from_micros(rng.below(q.period().as_micros().saturating_mul(2))),
                };
                bucket.restore(&BucketSnapshot { until_full: until }, at);
                let drain = (u128::from(until.as_micros()) * l).min(model.cap(q));
                model.tat = Some(u128::from(now) * l + drain);
                log.push(format!("restore {until:?} at {now}"));
            }
        }
        if log.len() > 200 {
            log.drain(..100);
        }
    }
    // The history did exercise both outcomes.
    assert!(outcomes.iter().all(|&k| k > 1_000), "{outcomes:?}");
}

/// Starts next to each wrap of the arrival-time word (at the scales the
/// quotas above use) and at random places.
#[test]
fn long_histories_with_stale_and_jumping_clocks_never_exceed_the_contract() {
    let mut starts = vec![
        1,
        (1 << 31) - 5_000,
        (1 << 32) - 5_000,
        (1 << 46) - 5_000,
        (1 << 48) - 5_000,
        (1 << 47) + 12_345,
    ];
    let mut rng = Rng(0x1234_5678);
    for _ in 0..10 {
        starts.push(rng.below(1 << 56));
    }
    for (k, &start) in starts.iter().enumerate() {
        for s in 0..4u64 {
            run(0x9e37_79b9 ^ (k as u64) << 20 ^ s, start, 20_000);
        }
    }
}
