//! `Histogram` recorded from racing threads is exact once they stop ("exact
//! once recording has stopped"; "exact count and sum"): four threads
//! record and `record_n` values chosen to exercise every spill path (small
//! values whose offsets carry out of a bucket word's 20-bit field every
//! few hundred records, values from 2²⁸ that spill at once, values past
//! `MAX_VALUE` that are clamped and counted), and also merge a private
//! histogram into the shared one; afterwards `count`, `sum` (modulo 2⁶⁴),
//! `clamped`, `min`, `max` and every bucket's count must equal the sums of
//! what each thread did, computed without the code under test. The values
//! stay below 2³¹, where the 32-bit words' extremes are exact too, except
//! the clamped ones, which are checked through `clamped` and the sum.
#![cfg(not(miri))]

use std::sync::Barrier;
use std::thread;

use fusebox::histogram::{buckets_for, Histogram};

use crate::common::Rng;

const BUCKETS: usize = buckets_for(1 << 30);
type H = Histogram<BUCKETS>;
const THREADS: u64 = 4;
const OPS: usize = 200_000;

/// What one thread did: count, sum (exact), clamped, min, max.
#[derive(Default)]
struct Tally {
    count: u64,
    sum: u128,
    clamped: u64,
    min: Option<u64>,
    max: Option<u64>,
    values: Vec<(u64, u64)>,
}

impl Tally {
    fn add(&mut self, v: u64, n: u64) {
        if n == 0 {
            return;
        }
        self.count += n;
        self.sum += u128::from(v) * u128::from(n);
        if v > H::MAX_VALUE {
            self.clamped += n;
        } else {
            self.min = Some(self.min.map_or(v, |m| m.min(v)));
            self.max = Some(self.max.map_or(v, |m| m.max(v)));
        }
        self.values.push((v, n));
    }
}

fn value(rng: &mut Rng) -> u64 {
    match rng.below(8) {
        // Small values: their offsets carry out of the 20-bit field.
        0..=3 => rng.below(4_096),
        // From 2^28: spilled at once.
        4 => (1 << 28) + rng.below(1 << 30),
        5 => H::MAX_VALUE - rng.below(3),
        // Past the range: clamped into the top bucket and counted.
        6 => H::MAX_VALUE + 1 + rng.below(1 << 40),
        _ => rng.below(1 << 20),
    }
}

#[test]
fn racing_recorders_leave_exact_totals() {
    let shared = H::new();
    let barrier = Barrier::new(THREADS as usize);
    let tallies: Vec<Tally> = thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (shared, barrier) = (&shared, &barrier);
                s.spawn(move || {
                    let mut rng = Rng(0x5EED ^ (t + 1) << 17);
                    let mut tally = Tally::default();
                    let private = H::new();
                    barrier.wait();
                    for i in 0..OPS {
                        let v = value(&mut rng);
                        match rng.below(10) {
                            0 => {
                                let n = rng.below(1_000);
                                shared.record_n(v, n);
                                tally.add(v, n);
                            }
                            1 => {
                                private.record(v);
                                tally.add(v, 1);
                            }
                            _ => {
                                shared.record(v);
                                tally.add(v, 1);
                            }
                        }
                        if i % 5_000 == 4_999 {
                            shared.merge(&private);
                            private.reset();
                        }
                    }
                    shared.merge(&private);
                    tally
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let count: u64 = tallies.iter().map(|t| t.count).sum();
    let sum: u128 = tallies.iter().map(|t| t.sum).sum();
    let clamped: u64 = tallies.iter().map(|t| t.clamped).sum();
    let min = tallies.iter().filter_map(|t| t.min).min();
    let max = tallies.iter().filter_map(|t| t.max).max();
    assert_eq!(shared.count(), count);
    assert_eq!(shared.sum(), sum as u64, "the sum modulo 2^64");
    assert_eq!(shared.clamped(), clamped);
    assert_eq!(shared.min(), min);
    // A clamped value is kept as the top of the range, at most.
    assert!(shared.max() >= max, "{:?} < {max:?}", shared.max());
    // Every value lands in the bucket that a lone histogram puts it in.
    let reference = H::new();
    for t in &tallies {
        for &(v, n) in &t.values {
            reference.record_n(v, n);
        }
    }
    let got: Vec<_> = shared.buckets().collect();
    let want: Vec<_> = reference.buckets().collect();
    assert_eq!(got, want);
}
