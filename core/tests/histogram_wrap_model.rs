//! A model of the histogram written from its docs (a hostile review's)
//! alone — an exact reference sum (u128, reduced mod 2⁶⁴), the count of
//! every bucket as the docs define it (`record` wraps a full bucket's
//! count to 0, `record_n` / `merge` / clamped values saturate at
//! `BUCKET_CAPACITY`), `clamped`, the extremes — driven past the buckets'
//! capacity again and again, through every writing path, on both word
//! widths (run once more with `RUSTFLAGS="--cfg fusebox_narrow_words"`).
//!
//! Checked after every operation: `sum`, `count`, `buckets`, `clamped`,
//! `min`, `max`, nearest-rank percentiles, and `mean` as documented:
//! "`sum / count` whenever that is exact [...] Otherwise estimated from
//! the buckets".

// Long histories of the public, safe API: native runs only (Miri runs
// the unit tests and the shorter integration tests, which take the same
// unsafe paths).
#![cfg(not(miri))]
#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::float_cmp
)]

use fusebox::histogram::{buckets_for, Bucket, Histogram, BUCKET_CAPACITY, RELATIVE_ERROR};

const CAP: u64 = BUCKET_CAPACITY;

/// Cortex-M words (or a host built with `--cfg fusebox_narrow_words`):
/// `min`/`max` exact only below 2³¹, and the clamped counter saturates at
/// 2³² − 1 (as the top bucket's count does; it used to wrap).
const NARROW: bool = !cfg!(target_has_atomic = "64") || cfg!(fusebox_narrow_words);

/// The clamped counter saturates at `BUCKET_CAPACITY`, as the top
/// bucket's count that holds its values does, on both layouts (2^44 - 1
/// wide: it went on to `u64::MAX` there, past the count, before a second
/// review).
fn add_clamped(clamped: &mut u64, n: u64) {
    *clamped = clamped.saturating_add(n).min(CAP);
}

/// The module docs' layout: `v < 256` → `v`; else `(h − 7)·128 + (v >> (h − 7))`.
fn index(v: u64) -> usize {
    if v < 256 {
        return v as usize;
    }
    let h = v.ilog2();
    (((h - 7) as u64) * 128 + (v >> (h - 7))) as usize
}

/// Lowest value and width of bucket `i`.
fn bucket(i: usize) -> (u64, u64) {
    if i < 256 {
        return (i as u64, 1);
    }
    let shift = (i / 128 - 1) as u32;
    let mantissa = (i - (shift as usize) * 128) as u64;
    (mantissa << shift, 1 << shift)
}

fn midpoint(i: usize) -> u64 {
    let (low, width) = bucket(i);
    low + width / 2
}

/// A tiny deterministic PRNG (xorshift64*).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Clone, Debug)]
struct Model<const B: usize> {
    counts: Vec<u64>,
    clamped: u64,
    sum: u128,
    extremes: Option<(u64, u64)>,
    /// The sum holds values no count does (a wrapped count, directly or
    /// through a merge): `sum / count` is then not the mean of anything.
    inexact: bool,
}

impl<const B: usize> Model<B> {
    const MAX_VALUE: u64 = Histogram::<B>::MAX_VALUE;

    fn new() -> Self {
        Self {
            counts: vec![0; B],
            clamped: 0,
            sum: 0,
            extremes: None,
            inexact: false,
        }
    }

    fn extremes(&mut self, lo: u64, hi: u64) {
        self.extremes = Some(match self.extremes {
            None => (lo, hi),
            Some((a, b)) => (a.min(lo), b.max(hi)),
        });
    }

    fn sum(&self) -> u64 {
        self.sum as u64
    }

    fn add_sum(&mut self, v: u128) {
        self.sum = (self.sum + v) & u128::from(u64::MAX);
    }

    fn record(&mut self, v: u64) {
        self.extremes(v, v);
        self.add_sum(u128::from(v));
        let i = index(v);
        if i >= B {
            add_clamped(&mut self.clamped, 1);
            self.counts[B - 1] = (self.counts[B - 1] + 1).min(CAP);
            return;
        }
        if self.counts[i] == CAP {
            self.counts[i] = 0;
            self.inexact = true;
        } else {
            self.counts[i] += 1;
        }
    }

    fn record_n(&mut self, v: u64, n: u64) {
        match n {
            0 => return,
            1 => return self.record(v),
            _ => {}
        }
        self.extremes(v, v);
        self.add_sum(u128::from(v) * u128::from(n));
        let i = index(v).min(B - 1);
        if index(v) >= B {
            add_clamped(&mut self.clamped, n);
        }
        self.counts[i] = self.counts[i].saturating_add(n).min(CAP);
    }

    fn merge(&mut self, other: &Self) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine = (*mine + theirs).min(CAP);
        }
        add_clamped(&mut self.clamped, other.clamped);
        self.add_sum(other.sum);
        if let Some((lo, hi)) = other.extremes {
            self.extremes(lo, hi);
        }
        self.inexact |= other.inexact;
    }

    /// `buckets()` as documented: the top bucket's clamped values (as many
    /// as it counts) listed apart, in `MAX_VALUE + 1 ..= u64::MAX`.
    fn buckets(&self) -> Vec<Bucket> {
        let mut out = Vec::new();
        let shown = self.clamped.min(self.counts[B - 1]);
        for (i, &c) in self.counts.iter().enumerate() {
            let c = if i == B - 1 { c - shown } else { c };
            if c != 0 {
                let (low, width) = bucket(i);
                out.push(Bucket {
                    low,
                    high: low + (width - 1),
                    count: c,
                });
            }
        }
        if shown != 0 {
            out.push(Bucket {
                low: Self::MAX_VALUE + 1,
                high: u64::MAX,
                count: shown,
            });
        }
        out
    }

    /// `merge_buckets_with_totals(other.buckets(), other.totals())`.
    fn merge_list_with_totals(&mut self, other: &Self) {
        let Some((lo, hi)) = other.extremes else {
            return;
        };
        for b in other.buckets() {
            if b.low > Self::MAX_VALUE {
                add_clamped(&mut self.clamped, b.count);
                self.counts[B - 1] = (self.counts[B - 1] + b.count).min(CAP);
            } else {
                let i = index(b.low);
                self.counts[i] = (self.counts[i] + b.count).min(CAP);
            }
        }
        self.add_sum(other.sum);
        self.extremes(lo, hi);
        self.inexact |= other.inexact;
    }

    fn count(&self) -> u64 {
        self.counts.iter().fold(0u64, |n, &c| n.saturating_add(c))
    }

    /// The documented mean: `sum / count` when that is exact (the sum
    /// cannot have wrapped, no bucket full, no value in the sum that no
    /// count holds); otherwise an estimate from the buckets — each counted
    /// value somewhere in its bucket (a clamped one in `MAX_VALUE + 1 ..=
    /// max`) — so between these bounds, and in `[min, max]`.
    fn mean(&self) -> Option<Result<f64, (f64, f64)>> {
        let (min, max) = self.extremes?;
        let n = self.count();
        if n == 0 {
            return None;
        }
        let full = self.counts.contains(&CAP);
        if !full && !self.inexact && n.checked_mul(max).is_some() {
            return Some(Ok(self.sum() as f64 / n as f64));
        }
        let (mut lo, mut hi) = (0u128, 0u128);
        for (i, &c) in self.counts.iter().enumerate() {
            let mut c = u128::from(c);
            if i == B - 1 {
                let clamped = u128::from(self.clamped).min(c);
                lo += clamped * u128::from(Self::MAX_VALUE + 1);
                hi += clamped * u128::from(max);
                c -= clamped;
            }
            let (low, width) = bucket(i);
            lo += c * u128::from(low);
            hi += c * u128::from(low + (width - 1));
        }
        let (min, max) = (min as f64, max as f64);
        let lo = (lo as f64 / n as f64).clamp(min, max);
        let hi = (hi as f64 / n as f64).clamp(min, max);
        Some(Err(if lo <= hi { (lo, hi) } else { (min, max) }))
    }

    /// Nearest rank, as `percentile` documents it (for `q` whose rank has
    /// no rounding noise).
    fn percentile(&self, q: u64) -> Option<u64> {
        let (min, max) = self.extremes?;
        let n = self.count();
        if n == 0 {
            return None;
        }
        let k = (u128::from(q) * u128::from(n)).div_ceil(100).max(1) as u64;
        if k == 1 {
            return Some(min);
        }
        if k == n {
            return Some(max);
        }
        let mut below = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            if below + c >= k {
                if i == B - 1 && k - below > c - self.clamped.min(c) {
                    return Some(max);
                }
                return Some(midpoint(i).max(min).min(max));
            }
            below += c;
        }
        Some(max)
    }
}

fn check<const B: usize>(h: &Histogram<B>, m: &Model<B>, step: &str) {
    assert_eq!(h.sum(), m.sum(), "{step}: sum");
    assert_eq!(h.count(), m.count(), "{step}: count");
    assert_eq!(h.clamped(), m.clamped, "{step}: clamped");
    assert_eq!(h.min(), m.extremes.map(|e| e.0), "{step}: min");
    assert_eq!(h.max(), m.extremes.map(|e| e.1), "{step}: max");
    assert_eq!(
        h.buckets().collect::<Vec<_>>(),
        m.buckets(),
        "{step}: buckets"
    );
    for q in [10, 25, 50, 90] {
        assert_eq!(
            h.percentile(q as f64).unwrap(),
            m.percentile(q),
            "{step}: p{q}"
        );
    }
    match (h.mean(), m.mean()) {
        (None, None) => {}
        (Some(got), Some(Ok(want))) => {
            assert!(
                (got - want).abs() <= want.abs() * 1e-12,
                "{step}: mean {got}, exactly {want}"
            );
        }
        (Some(got), Some(Err((lo, hi)))) => {
            let (min, max) = m.extremes.unwrap();
            assert!(
                (min as f64..=max as f64).contains(&got),
                "{step}: mean {got} outside [{min}, {max}]"
            );
            let want = (lo, hi);
            assert!(
                got >= lo * (1.0 - 1e-9) && got <= hi * (1.0 + 1e-9),
                "{step}: mean {got}, the counted values' mean in {want:?}; model {:?}",
                (
                    m.count(),
                    m.clamped,
                    m.sum(),
                    m.extremes,
                    m.inexact,
                    m.counts
                        .iter()
                        .enumerate()
                        .filter(|c| *c.1 != 0)
                        .collect::<Vec<_>>()
                )
            );
        }
        (got, want) => panic!("{step}: mean {got:?}, documented {want:?}"),
    }
}

/// Values that exercise every path of a bucket word: below 256 (no
/// offset), small offsets, offsets that carry out of a 64-bit word's
/// 20-bit field, offsets too wide for it (≥ 2²⁸), and (for small `B`)
/// values above `MAX_VALUE`.
fn value(rng: &mut Rng, max_value: u64) -> u64 {
    const VALUES: [u64; 12] = [
        0,
        1,
        5,
        255,
        300,
        70_000,
        (1 << 19) + 7,
        (1 << 28) + (1 << 19) + 1,
        (1 << 30) + (1 << 21) + 3,
        (1 << 36) + 12_345,
        (1 << 39) - 1,
        u64::MAX,
    ];
    let v = VALUES[rng.below(VALUES.len() as u64) as usize];
    // Now and then, a value right at the top of the range.
    let v = if rng.below(8) == 0 {
        max_value - rng.below(2)
    } else {
        v
    };
    if NARROW {
        v.min((1 << 31) - 1)
    } else {
        v
    }
}

fn run<const B: usize>(seed: u64, steps: usize) {
    let max_value = Histogram::<B>::MAX_VALUE;
    let mut rng = Rng(seed);
    let h: Histogram<B> = Histogram::new();
    let mut m = Model::<B>::new();
    let other: Histogram<B> = Histogram::new();
    let mut mo = Model::<B>::new();
    for step in 0..steps {
        let v = value(&mut rng, max_value);
        let op = rng.below(9);
        let name = format!("seed {seed} B {B} step {step} op {op} v {v}");
        match op {
            0 => {
                h.record(v);
                m.record(v);
            }
            1 => {
                let n = 2 + rng.below(1_000);
                h.record_n(v, n);
                m.record_n(v, n);
            }
            2 => {
                h.record_n(v, CAP);
                m.record_n(v, CAP);
            }
            3 | 4 => {
                // Fill the bucket, then wrap it with single records.
                h.record_n(v, CAP);
                m.record_n(v, CAP);
                for _ in 0..=rng.below(3) {
                    h.record(v);
                    m.record(v);
                }
            }
            5 => {
                // Drive the other histogram, wraps included.
                other.record_n(v, CAP);
                mo.record_n(v, CAP);
                other.record(v);
                mo.record(v);
                other.record(v);
                mo.record(v);
            }
            6 => {
                h.merge(&other);
                m.merge(&mo);
            }
            7 => {
                if let Some(totals) = other.totals() {
                    // Refused on Cortex-M while the clamped counter
                    // wrapped (its values listed below `min`); no longer.
                    h.merge_buckets_with_totals(other.buckets(), totals)
                        .unwrap_or_else(|e| panic!("{name}: round trip refused: {e:?}"));
                    m.merge_list_with_totals(&mo);
                }
            }
            _ => {
                if rng.below(4) == 0 {
                    h.reset();
                    m = Model::new();
                }
            }
        }
        check(&h, &m, &name);
        check(&other, &mo, &format!("{name} (other)"));
    }
}

/// Sum, counts, bucket list, percentiles: the arithmetic of the wrap and
/// of saturation, without the mean (which the next test covers).
#[test]
fn model_wide_range() {
    for seed in 1..=40 {
        run::<{ buckets_for(1 << 40) }>(seed, 120);
    }
}

#[test]
fn model_small_range_with_clamped_values() {
    for seed in 100..=140 {
        run::<300>(seed, 120);
    }
}

/// The mean after a `record` wrapped a bucket's count. The docs: `sum /
/// count` only "whenever that is exact: [...] no bucket is full (at
/// `BUCKET_CAPACITY` a count stops, or wraps, while the sum goes on, so
/// the sum also holds values no count does)". A wrapped bucket is no
/// longer full, so the check misses it: the sum still holds the
/// `BUCKET_CAPACITY + 1` values the count dropped, and `sum / count` —
/// inside `[min, max]`, so taken — is neither the counted values' mean
/// (what the bucket estimate gives) nor all values' mean (about 1).
///
/// Values: `BUCKET_CAPACITY + 1 + k` ones (the count wrapped, then counted
/// `k`), and one `M = (BUCKET_CAPACITY + 1) / 64`. On Cortex-M words the
/// wrap takes 2³² values into one bucket: 72 minutes at a million records
/// a second.
#[test]
fn mean_after_a_wrap_is_not_the_sum_over_the_wrapped_count() {
    let h: Histogram<{ buckets_for(1 << 40) }> = Histogram::new();
    let k = 1_000u64;
    let big = (CAP + 1) / 64;
    h.record_n(1, CAP);
    h.record(1); // wraps the bucket's count to 0
    for _ in 0..k {
        h.record(1);
    }
    h.record(big);
    assert_eq!(h.count(), k + 1, "the count wrapped, as documented");
    assert_eq!(
        h.sum(),
        (CAP + 1 + k) + big,
        "the sum is exact, as documented"
    );
    // What the buckets say (each value exact: 1 and a power of two are
    // their buckets' lowest values, the midpoint clamped to max).
    let counted = (k + big) as f64 / (k + 1) as f64;
    let mean = h.mean().unwrap();
    assert!(
        (mean - counted).abs() <= counted * RELATIVE_ERROR,
        "mean {mean}: the counted values' mean is {counted}; all values' is ~1; \
         sum/count over the wrapped count is {}",
        h.sum() as f64 / h.count() as f64
    );
}

/// Concurrent writers past the capacity, in threads: records wrapping a
/// full bucket while `record_n` and `merge` saturate it — every operation
/// one atomic step on the word, so the sum is exact once all returned.
#[test]
fn concurrent_wraps_and_saturations_keep_the_sum_exact() {
    use std::sync::Arc;
    let v = (1u64 << 28) + (1 << 19) + 1;
    let h: Arc<Histogram<{ buckets_for(1 << 30) }>> = Arc::new(Histogram::new());
    let donor: Histogram<{ buckets_for(1 << 30) }> = Histogram::new();
    donor.record_n(v, 3);
    let donor = Arc::new(donor);
    let rounds = 200u64;
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let h = Arc::clone(&h);
            let donor = Arc::clone(&donor);
            std::thread::spawn(move || {
                for _ in 0..rounds {
                    match t {
                        0 | 1 => h.record(v),
                        2 => h.record_n(v, CAP / 2),
                        _ => h.merge(&donor),
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let n = u128::from(rounds) * (2 + u128::from(CAP / 2) + 3);
    assert_eq!(
        u128::from(h.sum()),
        (n * u128::from(v)) & u128::from(u64::MAX)
    );
}
