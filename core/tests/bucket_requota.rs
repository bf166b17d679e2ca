//! Property tests of `TokenBucket::set_quota` (quota changes under `&self`):
//! an independent model of the documented contract on random schedules of
//! decisions, probes, quota changes, resets and restores (long histories,
//! across the arrival-time word's wrap), and the window bound on schedules
//! whose clocks go backwards.
#![cfg(not(miri))]

use fusebox::bucket::{AcquireError, BucketSnapshot, Quota, TokenBucket};
use fusebox::{Duration, Instant};
use proptest::prelude::*;

/// Whether this build keeps the arrival time in a 32-bit word (Cortex-M,
/// or a host built with `--cfg fusebox_narrow_words`).
const NARROW: bool = !cfg!(target_has_atomic = "64") || cfg!(fusebox_narrow_words);

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// A token bucket as the docs describe it: a level of tokens (kept in
/// units of `1 / period_µs` of a token, so refills are exact), refilled at
/// `tokens / period`, capped at `burst`; a quota change keeps the level at
/// its `now`, rounded toward fewer to the new quota's resolution
/// (`1 / (period / gcd(tokens, period))` of a token) and clamped to the new
/// burst.
#[derive(Clone, Debug)]
struct Model {
    tokens: u128,
    period: u128,
    burst: u128,
    level: u128,
    last: u64,
}

#[derive(Debug, PartialEq, Eq)]
enum Refused {
    Wait(u64),
    Never(u32),
}

impl Model {
    fn new(q: Quota, now: u64) -> Self {
        let (tokens, period, burst) = parts(q);
        Self {
            tokens,
            period,
            burst,
            level: burst * period,
            last: now,
        }
    }

    /// Monotonic `now` only.
    fn refill(&mut self, now: u64) {
        let elapsed = u128::from(now - self.last);
        self.level = (self.level + elapsed * self.tokens).min(self.burst * self.period);
        self.last = now;
    }

    fn acquire(&mut self, n: u32, now: u64) -> Result<(), Refused> {
        self.refill(now);
        let cost = u128::from(n) * self.period;
        if u128::from(n) > self.burst {
            Err(Refused::Never(self.burst as u32))
        } else if self.level >= cost {
            self.level -= cost;
            Ok(())
        } else {
            Err(Refused::Wait(
                ((cost - self.level).div_ceil(self.tokens)) as u64,
            ))
        }
    }

    fn available(&mut self, now: u64) -> u32 {
        self.refill(now);
        (self.level / self.period) as u32
    }

    fn until_full(&mut self, now: u64) -> u64 {
        self.refill(now);
        (self.burst * self.period - self.level).div_ceil(self.tokens) as u64
    }

    fn set_quota(&mut self, q: Quota, now: u64) {
        self.refill(now);
        let (tokens, period, burst) = parts(q);
        // The level as a fraction: level / self.period tokens. In the new
        // resolution r = period / gcd(tokens, period): ⌊level · r / old period⌋ / r.
        let g = u128::from(gcd(tokens as u64, period as u64));
        let resolution = period / g;
        let steps = (self.level * resolution / self.period).min(burst * resolution);
        *self = Self {
            tokens,
            period,
            burst,
            level: steps * g,
            last: now,
        };
    }

    fn reset(&mut self) {
        self.level = self.burst * self.period;
    }

    fn restore(&mut self, until_full: u64, now: u64) {
        self.refill(now);
        let drained = u128::from(until_full) * self.tokens;
        self.level = (self.burst * self.period).saturating_sub(drained);
    }
}

fn parts(q: Quota) -> (u128, u128, u128) {
    (
        u128::from(q.tokens()),
        u128::from(q.period().as_micros()),
        u128::from(q.burst()),
    )
}

/// Quotas with exact rates (`tokens / gcd ≤ 65 536`); `None` where this
/// build's word cannot hold them (a typed error, tested elsewhere) or, on
/// 32 bits, holds them only with a coarser scale (see `gcra`; covered by
/// the unit tests and `bucket_model`'s window bound).
fn quota() -> impl Strategy<Value = Option<Quota>> {
    exact_quota_parts().prop_map(|parts| built(parts).filter(|&q| !NARROW || exact_on_32_bits(q)))
}

/// As [`quota`], with the quotas a 32-bit word holds only at a coarser
/// scale (see `gcra`) kept: for the bounds that do not need exact figures.
fn any_quota() -> impl Strategy<Value = Option<Quota>> {
    prop_oneof![
        exact_quota_parts(),
        // Rates a 32-bit word keeps at a coarser scale: 541 a second.
        (513u32..1_024, Just(1_000_000u64), 1u32..1_024),
    ]
    .prop_map(built)
}

/// `(tokens, period µs, burst)` of rates every word keeps exactly where it
/// has room for them.
fn exact_quota_parts() -> impl Strategy<Value = (u32, u64, u32)> {
    prop_oneof![
        // Everyday rates.
        (
            1u32..200,
            prop_oneof![Just(1_000_000u64), Just(60_000_000)],
            1u32..50
        ),
        // Awkward ratios: tokens coprime with the period.
        (1u32..65_536, 1u64..5_000_000, 1u32..1_000),
        // Very fast and very slow.
        (Just(10_000_000u32), Just(1_000_000u64), 1u32..1_000),
        (Just(1u32), Just(86_400_000_000u64), 1u32..5),
    ]
}

/// The quota of `parts`, if this build's word holds it.
fn built((tokens, period, burst): (u32, u64, u32)) -> Option<Quota> {
    Quota::new(tokens, Duration::from_micros(period))
        .and_then(|q| q.with_burst(burst))
        .ok()
}

/// Whether a 32-bit word holds `q` at its exact scale: its capacity and
/// the ~1.05 s tolerance within 2³⁰ scaled units.
fn exact_on_32_bits(q: Quota) -> bool {
    let t = u64::from(q.tokens());
    let period = q.period().as_micros();
    u64::from(q.burst()) * (period / gcd(t, period)) + (1 << 20) * scale(q) < 1 << 30
}

/// Small scales and bursts (scale ≤ 10, burst · interval ≤ 200 s).
fn small_scale_quota() -> impl Strategy<Value = Option<Quota>> {
    (
        1u32..10,
        prop_oneof![Just(1_000_000u64), Just(10_000_000)],
        1u32..20,
    )
        .prop_map(|(tokens, period, burst)| {
            Quota::new(tokens, Duration::from_micros(period))
                .and_then(|q| q.with_burst(burst))
                .ok()
        })
}

#[derive(Clone, Debug)]
enum Op {
    Acquire(u32),
    Probe,
    Change(Option<Quota>),
    Reset,
    Restore(u64),
}

fn op(quota: BoxedStrategy<Option<Quota>>) -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (1u32..8).prop_map(Op::Acquire),
        2 => Just(Op::Probe),
        3 => quota.prop_map(Op::Change),
        1 => Just(Op::Reset),
        1 => (0u64..5_000_000).prop_map(Op::Restore),
    ]
}

/// The scale of a quota's arrival time: `tokens / gcd(tokens, period)`.
fn scale(q: Quota) -> u64 {
    let t = u64::from(q.tokens());
    t / gcd(t, q.period().as_micros())
}

/// How far from the last write, in µs, `reset` refills a 32-bit bucket
/// (`TokenBucket::reset`'s docs): `2³⁰ − capacity − tolerance / 2` scaled
/// units, the capacity `burst · period / gcd(tokens, period)` and the
/// tolerance 2²⁰ µs.
fn reset_range(q: Quota) -> u64 {
    let t = u64::from(q.tokens());
    let period = q.period().as_micros();
    let capacity = u64::from(q.burst()) * (period / gcd(t, period));
    ((1 << 30) - capacity - (1 << 19) * scale(q)) / scale(q)
}

/// Runs `ops` on a bucket and on the model, `dt` µs apart, comparing every
/// result and probe.
fn compare(q0: Quota, start: u64, ops: &[(u64, Op)]) -> Result<(), TestCaseError> {
    let bucket = TokenBucket::new(q0);
    let mut model = Model::new(q0, start);
    let mut now = start;
    // On 32 bits, `reset` (which takes no `now`) refills for a `now` within
    // about half the word's range of the last write, less the horizon: the
    // history keeps every call that close to it.
    let mut last_write = start;
    let mut quota = q0;
    for (dt, op) in ops {
        let dt = if NARROW {
            let range = reset_range(quota);
            (*dt).min(range.saturating_sub(now - last_write))
        } else {
            *dt
        };
        now += dt;
        let at = Instant::from_micros(now);
        match *op {
            Op::Acquire(n) => {
                let got = match bucket.try_acquire_n(n, at) {
                    Ok(()) => Ok(()),
                    Err(AcquireError::RateLimited(r)) => {
                        Err(Refused::Wait(r.retry_after.as_micros()))
                    }
                    Err(AcquireError::InsufficientCapacity(e)) => {
                        prop_assert_eq!(e.requested, n);
                        Err(Refused::Never(e.burst))
                    }
                    Err(other) => panic!("unexpected refusal: {other}"),
                };
                if got.is_ok() {
                    last_write = now;
                }
                prop_assert_eq!(got, model.acquire(n, now), "acquire {} at {}", n, now);
            }
            Op::Probe | Op::Change(None) => {}
            Op::Change(Some(q)) => {
                let old = bucket.set_quota(q, at);
                prop_assert_eq!(old.tokens() as u128, model.tokens);
                prop_assert_eq!(old.burst() as u128, model.burst);
                model.set_quota(q, now);
                prop_assert_eq!(bucket.quota(), q);
                (quota, last_write) = (q, now);
            }
            Op::Reset => {
                bucket.reset();
                model.reset();
            }
            Op::Restore(until) => {
                let snapshot = BucketSnapshot {
                    until_full: Duration::from_micros(until),
                };
                bucket.restore(&snapshot, at);
                model.restore(until, now);
                last_write = now;
            }
        }
        prop_assert_eq!(
            bucket.available(at),
            model.available(now),
            "available at {}",
            now
        );
        prop_assert_eq!(
            bucket.snapshot(at).until_full.as_micros(),
            model.until_full(now),
            "until_full at {}",
            now
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Decisions, probes, changes, resets and restores on monotonic time
    /// decide exactly as the model, starting anywhere in time or just
    /// before the initial quota's arrival time wraps the word.
    #[test]
    fn set_quota_matches_the_contract_model(
        q0 in quota(),
        start in 0u64..(1 << 50),
        wrap in prop::option::of((1u64..1_000, 0u64..2_000_000)),
        ops in prop::collection::vec((0u64..3_000_000, op(quota().boxed())), 1..200),
    ) {
        let Some(q0) = q0 else { return Ok(()) };
        // On 32 bits the model's figures are exact for gaps between writes
        // under 2^30 scaled units of every quota in force (the crate docs:
        // a bucket idle for close to a multiple of the wrap may admit less).
        let ops = if NARROW {
            let largest = ops
                .iter()
                .filter_map(|(_, op)| match op {
                    Op::Change(Some(q)) => Some(scale(*q)),
                    _ => None,
                })
                .fold(scale(q0), u64::max);
            ops.into_iter().map(|(dt, op)| (dt.min((1 << 30) / largest), op)).collect()
        } else {
            ops
        };
        // The word holds half units: it wraps every 2^63 / scale µs (2^31
        // on 32 bits).
        let start = match wrap {
            Some((k, before)) => {
                let period = (1u64 << if NARROW { 31 } else { 63 }) / scale(q0);
                let wraps = ((u64::MAX - (1 << 40)) / period).max(1);
                (period * (1 + k % wraps)).saturating_sub(before)
            }
            None => start,
        };
        compare(q0, start, &ops)?;
    }

    /// The same over long histories (up to 25 min) at small scales, whose
    /// arrival times cross a 32-bit word's wrap (2^31 scaled units: 35.8
    /// min at scale 1, 3.6 min at scale 10) wherever the target keeps one,
    /// with every gap between writes well inside it (as documented, a
    /// 32-bit bucket idle for close to a whole wrap may read as partly
    /// drained).
    #[test]
    fn set_quota_matches_the_contract_model_over_long_histories(
        q0 in small_scale_quota(),
        start in 0u64..(1 << 50),
        ops in prop::collection::vec((0u64..1_000_000, op(small_scale_quota().boxed())), 1..1_500),
    ) {
        let Some(q0) = q0 else { return Ok(()) };
        compare(q0, start, &ops)?;
    }
}

/// Admission times and sizes, and every admission's window bound check:
/// over `[a, b]`, at most `burst + rate · (b − a)` tokens for the quota with
/// the larger burst and the one with the larger rate.
fn check_windows(
    admitted: &mut [(u64, u32)],
    quotas: &[Quota],
    holds: impl Fn(u64, u64) -> bool,
) -> Result<(), TestCaseError> {
    let burst = u128::from(quotas.iter().map(Quota::burst).max().unwrap());
    // The largest rate, as a fraction.
    let fastest = quotas
        .iter()
        .max_by(|a, b| {
            let (ta, pa, _) = parts(**a);
            let (tb, pb, _) = parts(**b);
            (ta * pb).cmp(&(tb * pa))
        })
        .unwrap();
    let (tokens, period, _) = parts(*fastest);
    admitted.sort_unstable();
    for i in 0..admitted.len() {
        let mut count = 0u128;
        for j in i..admitted.len() {
            count += u128::from(admitted[j].1);
            let (a, b) = (admitted[i].0, admitted[j].0);
            if !holds(a, b) {
                continue;
            }
            let span = u128::from(b - a);
            prop_assert!(
                count * period <= burst * period + span * tokens,
                "{} tokens in [{}, {}] > {} + {}/{} per µs",
                count,
                a,
                b,
                burst,
                tokens,
                period
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 384, ..ProptestConfig::default() })]

    /// Calls on a clock that never goes backwards, quota changes among
    /// them: over every interval, at most the larger burst plus the larger
    /// rate times the interval.
    #[test]
    fn never_more_than_the_larger_quota_allows(
        quotas in prop::collection::vec(any_quota(), 2..4),
        ops in prop::collection::vec((0u64..500_000, 0usize..4, 1u32..4), 1..150),
    ) {
        let quotas: Vec<Quota> = quotas.into_iter().flatten().collect();
        prop_assume!(!quotas.is_empty());
        let bucket = TokenBucket::new(quotas[0]);
        let mut now = 1u64 << 40;
        let mut admitted = Vec::new();
        for (dt, which, n) in ops {
            now += dt;
            let at = Instant::from_micros(now);
            if which < quotas.len() && which != 0 && n == 1 {
                bucket.set_quota(quotas[which], at);
            } else if bucket.try_acquire_n(n.min(bucket.quota().burst()), at).is_ok() {
                admitted.push((now, n.min(bucket.quota().burst())));
            }
        }
        check_windows(&mut admitted, &quotas, |_, _| true)?;
    }

    /// A clock that jumps back (up to 0.9 s: inside the 32-bit word's
    /// backward tolerance) and one quota change whose `now` may be stale or
    /// ahead: over every interval that contains the change's `now`, at
    /// most the larger burst plus the larger rate times the interval.
    #[test]
    fn a_change_on_a_skewed_clock_stays_within_the_bound(
        q0 in any_quota(),
        q1 in any_quota(),
        change_at in 0usize..100,
        change_skew in -900_000i64..900_000,
        steps in prop::collection::vec((-900_000i64..1_000_000, 1u32..4), 1..100),
    ) {
        let (Some(q0), Some(q1)) = (q0, q1) else { return Ok(()) };
        let bucket = TokenBucket::new(q0);
        // Far from 0: `now` stays positive.
        let mut now: i64 = 1 << 40;
        let micros = |t: i64| u64::try_from(t).expect("positive");
        let mut admitted = Vec::new();
        let mut change = None;
        let mut latest = now;
        for (i, (dt, n)) in steps.into_iter().enumerate() {
            // Each jump back is inside the tolerance; on 32 bits their sum
            // is too (a `now` ~1.05 s behind the latest call reads a full
            // bucket there, as documented).
            now += dt;
            if NARROW {
                now = now.max(latest - 900_000);
            }
            latest = latest.max(now);
            if i == change_at {
                let skewed = if NARROW { (now + change_skew).max(latest - 900_000) } else { now + change_skew };
                latest = latest.max(skewed);
                let at = micros(skewed);
                bucket.set_quota(q1, Instant::from_micros(at));
                change = Some(at);
            }
            let n = n.min(bucket.quota().burst());
            if bucket.try_acquire_n(n, Instant::from_micros(micros(now))).is_ok() {
                admitted.push((micros(now), n));
            }
        }
        let quotas = [q0, q1];
        check_windows(&mut admitted, &quotas, |a, b| change.is_none_or(|c| a <= c && c <= b))?;
        // With no change in range, every interval.
        if change.is_none() {
            check_windows(&mut admitted, &quotas[..1], |_, _| true)?;
        }
    }

    /// A change with a stale `now` (behind admissions already made) never
    /// leaves more tokens at the latest admission's `now` than were there,
    /// clamped to the new burst, plus what the new rate refills over the
    /// staleness (the change of rate is dated back to its `now`, the level
    /// is not).
    #[test]
    fn a_stale_change_never_grants_the_level(
        q0 in any_quota(),
        q1 in any_quota(),
        drain in 0u32..1_000,
        stale in 0u64..2_000_000,
    ) {
        let (Some(q0), Some(q1)) = (q0, q1) else { return Ok(()) };
        // Inside the 32-bit word's backward tolerance (~1.05 s).
        let stale = if NARROW { stale / 2 } else { stale };
        let bucket = TokenBucket::new(q0);
        let late = 1u64 << 40;
        let _ = bucket.try_acquire_n(drain.min(q0.burst()), Instant::from_micros(late));
        let before = bucket.available(Instant::from_micros(late));
        bucket.set_quota(q1, Instant::from_micros(late - stale));
        let after = bucket.available(Instant::from_micros(late));
        let (tokens, period, _) = parts(q1);
        let refill = (u128::from(stale) * tokens).div_ceil(period);
        prop_assert!(
            u128::from(after) <= u128::from(before.min(q1.burst())) + refill,
            "{} before, {} after, {} refill over {} µs", before, after, refill, stale
        );
        // And with no time for the new rate to act, nothing at all.
        if refill == 0 {
            prop_assert!(after <= before.min(q1.burst()));
        }
    }

    /// A bucket drained to exactly nothing at `late`, changed with a stale
    /// `now`: its debt is kept as time, so at `late` it is still empty and
    /// its next token comes a whole new interval later (forgiving the debt
    /// would bring it back early by the staleness).
    #[test]
    fn a_stale_change_never_forgives_a_debt(
        q0 in any_quota(),
        q1 in any_quota(),
        stale in 1u64..1_000_000,
    ) {
        let (Some(q0), Some(q1)) = (q0, q1) else { return Ok(()) };
        let bucket = TokenBucket::new(q0);
        let late = Instant::from_micros(1 << 40);
        bucket.try_acquire_n(q0.burst(), late).unwrap(); // full to empty: no fraction left
        bucket.set_quota(q1, late - Duration::from_micros(stale));
        prop_assert_eq!(bucket.available(late), 0);
        let wait = bucket.try_acquire(late).unwrap_err().retry_after.as_micros();
        // wait ≥ period / tokens of the new quota.
        prop_assert!(
            u128::from(wait) * u128::from(q1.tokens()) >= u128::from(q1.period().as_micros()),
            "next token {} µs after the drain; new interval {}/{} µs",
            wait, q1.period().as_micros(), q1.tokens()
        );
    }
}
