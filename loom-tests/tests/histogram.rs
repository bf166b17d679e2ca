//! Loom models of [`fusebox::Histogram`]'s one-RMW recording protocol:
//! each bucket word packs the bucket's count with its values' offset sum
//! (64-bit words: `[offsets 20][count 44]`), offsets that carry out of the
//! word go to a spill sum in a second RMW, and merges add counts with a
//! saturating CAS on the same words.
//!
//! Run only as
//!
//! ```text
//! LOOM_MAX_PREEMPTIONS=3 RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
//!     cargo test -p fusebox-loom --release --test histogram
//! ```
//!
//! and with `--cfg fusebox_narrow_words` for the Cortex-M words (the
//! bucket word is the count alone and every offset is spilled).
//!
//! * (a) two records racing in one bucket, the second carrying out of the
//!   offset field, against a reader of `sum` and `buckets`: exact
//!   once joined; while they run, the reader sees only the states the
//!   protocol allows: a sum of some of the values, or 2²⁰ off when a carry
//!   is in flight (low: the carry left the bucket word but has not reached
//!   the spill; high: `Relaxed` loads saw the spill's carry but an older
//!   bucket word) — and loom must reach the in-flight carry, so the model
//!   cannot pass without exercising it;
//! * (b) a bucket-list merge (CAS) racing a record (`fetch_add`) on the
//!   same word: neither is lost, sum and extremes exact;
//! * (c) two merges racing past the bucket capacity: the count saturates,
//!   never wraps;
//! * (d) two records racing into a full bucket, both past its capacity:
//!   exactly one of them sees its `fetch_add` wrap the count and hands
//!   what the count lost to the spill, so the sum is exact once joined
//!   (with 64-bit words, the second also carries the offsets out).
#![cfg(loom)]

use std::collections::BTreeSet;
use std::sync::{Arc as StdArc, Mutex as StdMutex};

use fusebox::histogram::{buckets_for, Bucket, Histogram, Totals, BUCKET_CAPACITY};
use loom::model::Builder;
use loom::sync::Arc;
use loom::thread;

/// Runs `model` under loom with a fixed preemption bound. Every atomic
/// load is a branch to loom and every read of a histogram loads all its
/// buckets, hence the raised branch limit.
fn run(preemptions: usize, model: impl Fn() + Sync + Send + 'static) {
    let mut builder = Builder::new();
    builder.preemption_bound = Some(preemptions);
    builder.max_branches = 100_000;
    builder.check(model);
}

/// The lowest value of the bucket `[2^26, 2^26 + 2^19)`: offsets up to
/// 2^19 − 1, so three of them overflow a 20-bit offset field once.
const LOW: u64 = 1 << 26;
/// What a carry out of the offset field is worth (64-bit words).
const CARRY: u64 = 1 << 20;
/// The first histogram holding that bucket (its top bucket).
type Wide = Histogram<{ buckets_for(LOW) }>;

/// A `Wide` histogram, built on a thread with a stack for its 2 561 loom
/// atomics (a model thread's stack is too small for them).
fn wide() -> Arc<Wide> {
    thread::Builder::new()
        .stack_size(16 << 20)
        .spawn(|| Arc::new(Wide::new()))
        .unwrap()
        .join()
        .unwrap()
}

#[test]
fn a_records_carrying_out_of_the_offset_field_vs_a_reader() {
    let (a, b, c) = (
        LOW + (1 << 19) - 1,
        LOW + (1 << 19) - 2,
        LOW + (1 << 19) - 3,
    );
    let seen = StdArc::new(StdMutex::new(BTreeSet::new()));
    let seen_in_model = seen.clone();
    run(3, move || {
        let h = wide();
        h.record(a); // offsets a: no carry yet
        let writers: Vec<_> = [b, c]
            .into_iter()
            .map(|v| {
                let h = h.clone();
                thread::spawn(move || h.record(v))
            })
            .collect();
        // Each read walks all 2 561 buckets: two reads keep the model fast.
        let sum = h.sum();
        let listed: Vec<Bucket> = h.buckets().collect();
        for w in writers {
            w.join().unwrap();
        }
        // Exact once joined.
        assert_eq!((h.count(), h.sum()), (3, a + b + c));
        assert_eq!((h.min(), h.max()), (Some(c), Some(a)));
        // While running: sums of 1..=3 of the values, or with a carry in
        // flight (64-bit words) 2^20 off; on Cortex-M words each value's
        // count and offset land separately (count first).
        let allowed: Vec<u64> = if cfg!(fusebox_narrow_words) {
            let offsets = [0, a - LOW, b - LOW, c - LOW];
            (1..=3u64)
                .flat_map(|k| {
                    (0..16u32).map(move |mask| {
                        let off: u64 = (0..4)
                            .filter(|i| mask & (1 << i) != 0)
                            .map(|i| offsets[i])
                            .sum();
                        k * LOW + off
                    })
                })
                .collect()
        } else {
            // The spill is read before the buckets, with Acquire (the
            // carry added with Release after its bucket wrapped): a read
            // that sees the carry sees the wrapped bucket, so a carry is
            // never counted twice (`a + CARRY` and the like were reachable
            // with `Relaxed` loads), only missed while in flight.
            let counted = [a, a + b, a + c, a + b + c];
            counted.into_iter().chain([a + b + c - CARRY]).collect()
        };
        assert!(allowed.contains(&sum), "sum {sum}");
        if sum == a + b + c - CARRY {
            seen_in_model.lock().unwrap().insert("carry in flight");
        }
        // One bucket, with one to three values.
        assert_eq!(listed.len(), 1);
        let Bucket { low, high, count } = listed[0];
        assert_eq!((low, high), (LOW, LOW + (1 << 19) - 1));
        assert!((1..=3).contains(&count), "count {count}");
    });
    if !cfg!(fusebox_narrow_words) {
        assert!(seen.lock().unwrap().contains("carry in flight"));
    }
}

/// A small histogram for the merge models: values up to 1 023.
type Small = Histogram<{ buckets_for(1_000) }>;

#[test]
fn b_merge_buckets_vs_record_on_one_word() {
    run(3, || {
        let h = Arc::new(Small::new());
        // The bucket 1_000..=1_003.
        let bucket = Bucket {
            low: 1_000,
            high: 1_003,
            count: 2,
        };
        let totals = Totals {
            sum: 2_003,
            min: 1_000,
            max: 1_003,
        };
        let merger = {
            let h = h.clone();
            thread::spawn(move || h.merge_buckets_with_totals([bucket], totals).unwrap())
        };
        h.record(1_002);
        merger.join().unwrap();
        assert_eq!(
            h.buckets().collect::<Vec<_>>(),
            [Bucket { count: 3, ..bucket }]
        );
        assert_eq!((h.count(), h.sum()), (3, 3_005));
        assert_eq!((h.min(), h.max()), (Some(1_000), Some(1_003)));
    });
}

#[test]
fn c_merges_racing_past_the_capacity_saturate() {
    run(3, || {
        let h = Arc::new(Small::new());
        let merger = {
            let h = h.clone();
            thread::spawn(move || {
                h.merge_buckets([Bucket {
                    low: 7,
                    high: 7,
                    count: BUCKET_CAPACITY - 1,
                }])
                .unwrap();
            })
        };
        h.merge_buckets([Bucket {
            low: 7,
            high: 7,
            count: 5,
        }])
        .unwrap();
        h.record_n(7, 2);
        merger.join().unwrap();
        assert_eq!(h.count(), BUCKET_CAPACITY);
        assert_eq!(h.buckets().count(), 1);
    });
}

#[test]
fn d_records_racing_into_a_full_bucket_keep_the_sum_exact() {
    // 2^26 + 2^19 − 1 sits 2^19 − 1 above LOW: with the count's carry,
    // two such offsets carry out of a 20-bit field.
    let v = LOW + (1 << 19) - 1;
    run(3, move || {
        let h = wide();
        h.record_n(v, BUCKET_CAPACITY);
        let other = {
            let h = h.clone();
            thread::spawn(move || h.record(v))
        };
        h.record(v);
        other.join().unwrap();
        assert_eq!(h.sum(), v.wrapping_mul(BUCKET_CAPACITY + 2));
        assert_eq!(h.count(), 1, "the count wrapped once, then counted one");
    });
}

/// Review (session 15): a saturating `record_n` (its CAS loop) racing two
/// records that fill, then wrap, the bucket: whichever order, the CAS
/// never adds onto a word the wrap changed under it, the one record that
/// wraps the count hands what it lost to the spill, and the sum is exact
/// once joined, whichever order.
#[test]
fn e_a_saturating_record_n_racing_a_wrapping_record_keeps_the_sum_exact() {
    let v = LOW + (1 << 19) - 1;
    run(2, move || {
        let h = wide();
        h.record_n(v, BUCKET_CAPACITY - 1);
        let other = {
            let h = h.clone();
            thread::spawn(move || h.record_n(v, 3))
        };
        h.record(v);
        h.record(v);
        other.join().unwrap();
        assert_eq!(h.sum(), v.wrapping_mul(BUCKET_CAPACITY - 1 + 2 + 3));
        let n = h.count();
        assert!(
            [0, 1, 3].contains(&n),
            "count {n}: saturated then wrapped, or wrapped then counted 3"
        );
    });
}
