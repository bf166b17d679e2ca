//! Shared helpers for the fusebox benchmark suite (`benches/suite.rs`): the
//! clock conversion, pre-generated key streams, pinned thread pairs and the
//! side notes (hit ratios, admission rates) that `report.py` prints beside
//! criterion's times.
use std::fmt::Display;
use std::io::Write as _;
use std::sync::Barrier;
use std::time::{Duration, Instant as StdInstant};

/// `now` for fusebox: microseconds elapsed since `start`, read from the
/// standard clock (the per-call clock cost a server pays).
#[inline]
pub fn fb_now(start: StdInstant) -> fusebox::Instant {
    micros(start.elapsed())
}

/// `now` for fusebox from quanta, read the way governor's default
/// `QuantaClock` reads it (raw counter scaled to nanoseconds), so both pay
/// the same clock cost per call.
#[inline]
pub fn fb_quanta_now(clock: &quanta::Clock) -> fusebox::Instant {
    fusebox::Instant::from_micros(clock.delta_as_nanos(0, clock.raw()) / 1_000)
}

/// Whole microseconds of `d` without `as_micros`' 128-bit division.
#[inline]
fn micros(d: std::time::Duration) -> fusebox::Instant {
    fusebox::Instant::from_micros(d.as_secs() * 1_000_000 + u64::from(d.subsec_micros()))
}

/// A small xorshift64* generator: deterministic key streams without a
/// `rand` dependency.
pub struct Rng(u64);

impl Rng {
    /// A generator from a non-zero seed.
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }
    /// The next pseudo-random word.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// A uniform float in `[0, 1)`.
    #[allow(clippy::cast_precision_loss, reason = "53 random bits")]
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `len` keys (a power of two, so streams index with a mask) drawn from a
/// Zipf distribution with exponent 1 over `distinct` keys, scattered over
/// `u64` so that hashing has real work to do.
///
/// # Panics
///
/// If `len` is not a power of two.
#[allow(clippy::cast_precision_loss, reason = "ranks are small")]
pub fn zipf_keys(distinct: usize, len: usize, seed: u64) -> Vec<u64> {
    assert!(len.is_power_of_two());
    let mut cdf = Vec::with_capacity(distinct);
    let mut total = 0.0;
    for rank in 1..=distinct {
        total += 1.0 / rank as f64;
        cdf.push(total);
    }
    let mut rng = Rng::new(seed);
    (0..len)
        .map(|_| {
            let u = rng.next_f64() * total;
            let rank = cdf.partition_point(|&c| c < u) as u64;
            rank.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        })
        .collect()
}

/// `len` keys uniform over `distinct` values.
///
/// # Panics
///
/// If `len` is not a power of two.
pub fn uniform_keys(distinct: u64, len: usize, seed: u64) -> Vec<u64> {
    assert!(len.is_power_of_two());
    let mut rng = Rng::new(seed);
    (0..len).map(|_| rng.next_u64() % distinct).collect()
}

/// Runs `work(thread, iters)` on two threads pinned to different CPUs,
/// released together by a barrier; returns the slower thread's time (each
/// thread does `iters` operations, so criterion's time per iteration is the
/// time per operation per thread).
///
/// # Panics
///
/// If `work` panics.
pub fn pair<F: Fn(usize, u64) + Sync>(iters: u64, work: F) -> Duration {
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let barrier = Barrier::new(2);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|t| {
                let (barrier, work, cores) = (&barrier, &work, &cores);
                s.spawn(move || {
                    if cores.len() >= 2 {
                        core_affinity::set_for_current(cores[t]);
                    }
                    barrier.wait();
                    let start = StdInstant::now();
                    work(t, iters);
                    start.elapsed()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bench thread panicked"))
            .max()
            .unwrap_or_default()
    })
}

/// Records a side measurement: printed, and appended as `key=value` to the
/// file named by `FUSEBOX_BENCH_NOTES` when set (read by `report.py`).
pub fn note(key: &str, value: impl Display) {
    eprintln!("note: {key} = {value}");
    if let Ok(path) = std::env::var("FUSEBOX_BENCH_NOTES") {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{key}={value}");
        }
    }
}

/// A cache-line-padded value, for independent per-thread words.
#[repr(align(128))]
#[derive(Default)]
pub struct Padded<T>(pub T);
