//! Bucket lists `Histogram::merge_buckets(_with_totals)` must refuse
//! whole (foreign layouts, corrupt or hostile data), counts that must
//! saturate rather than wrap, and arbitrary lists (never a panic; merged
//! whole or not at all). Bucket bounds come from the reference model of
//! `histogram_merge.rs`, written from the documented layout.

use std::cell::Cell;
use std::rc::Rc;

use fusebox::histogram::{buckets_for, Bucket, Histogram, MergeError, Totals, BUCKET_CAPACITY};
use proptest::prelude::*;

/// The tracked range: 1 s in microseconds (beyond it, clamped); 2 ms
/// under Miri, whose checks cost per bucket on every read and call.
const RANGE: u64 = if cfg!(miri) { 2_000 } else { 1_000_000 };
/// The histogram most tests use.
type Small = Histogram<{ buckets_for(RANGE) }>;
/// A histogram of half its range.
type Smaller = Histogram<{ buckets_for(RANGE / 2) }>;

/// A bucket, briefly.
const fn bk(low: u64, high: u64, count: u64) -> Bucket {
    Bucket { low, high, count }
}

/// The reference bucket of `v` in a histogram tracking `0..=max_value`.
fn reference_bounds(v: u64, max_value: u64) -> (u64, u64) {
    if v > max_value {
        return (max_value + 1, u64::MAX);
    }
    if v < 256 {
        return (v, v);
    }
    let w = 1u64 << (v.ilog2() - 7);
    let low = v - v % w;
    (low, low + (w - 1))
}

/// A snapshot of everything observable, to check nothing was applied.
fn observe<const B: usize>(h: &Histogram<B>) -> (Vec<Bucket>, Option<Totals>, u64) {
    (h.buckets().collect(), h.totals(), h.clamped())
}

/// Large under plain `cargo test`, small under Miri (every read walks all
/// the buckets, and every call retags the whole histogram).
const fn scale(large: u64, small: u64) -> u64 {
    if cfg!(miri) {
        small
    } else {
        large
    }
}

fn values_strategy() -> impl Strategy<Value = Vec<u64>> {
    prop::collection::vec(
        prop_oneof![
            0..300u64,
            0..2 * RANGE,
            any::<u64>(),
            (0u32..64).prop_map(|s| 1u64 << s),
        ],
        0..scale(300, 20) as usize,
    )
}

/// Corrupt or foreign lists and the error each must get.
fn bad_lists() -> Vec<(Vec<Bucket>, MergeError)> {
    let ok = bk(300, 301, 1);
    vec![
        // Bounds of another layout, or off by one.
        (
            vec![ok, bk(1_000, 1_002, 1)],
            MergeError::NotABucket {
                low: 1_000,
                high: 1_002,
            },
        ),
        (
            vec![bk(301, 302, 1)],
            MergeError::NotABucket {
                low: 301,
                high: 302,
            },
        ),
        // Beyond this histogram's buckets (fine for a larger one).
        (
            vec![bk(1 << 40, (1 << 40) + (1 << 33) - 1, 1)],
            MergeError::NotABucket {
                low: 1 << 40,
                high: (1 << 40) + (1 << 33) - 1,
            },
        ),
        // A clamped bucket of another size.
        (
            vec![bk(502, u64::MAX, 1)],
            MergeError::NotABucket {
                low: 502,
                high: u64::MAX,
            },
        ),
        // Out of order, repeated.
        (
            vec![bk(400, 401, 1), ok],
            MergeError::OutOfOrder { low: 300 },
        ),
        (vec![ok, ok], MergeError::OutOfOrder { low: 300 }),
        // A count no bucket can hold.
        (
            vec![ok, bk(7, 7, u64::MAX)],
            MergeError::OutOfOrder { low: 7 },
        ),
        (
            vec![ok, bk(400, 401, u64::MAX)],
            MergeError::CountTooLarge {
                low: 400,
                count: u64::MAX,
            },
        ),
        (
            vec![bk(7, 7, BUCKET_CAPACITY + 1)],
            MergeError::CountTooLarge {
                low: 7,
                count: BUCKET_CAPACITY + 1,
            },
        ),
    ]
}

#[test]
fn foreign_or_corrupt_lists_are_refused_whole() {
    let h = Small::new();
    h.record(500);
    h.record(RANGE * 7 / 10);
    let before = observe(&h);
    for (list, error) in bad_lists() {
        assert_eq!(
            h.merge_buckets(list.iter().copied()),
            Err(error),
            "{list:?}"
        );
        let totals = Totals {
            sum: 1,
            min: 0,
            max: u64::MAX,
        };
        assert_eq!(
            h.merge_buckets_with_totals(list.clone(), totals),
            Err(error)
        );
        assert_eq!(observe(&h), before, "{list:?}");
    }
    // A list from a histogram of another size: refused once it holds a
    // bucket this one does not have (the layout is shared, the range not).
    let other = Smaller::new();
    other.record(RANGE / 4);
    other.record(RANGE * 3 / 4); // clamped there
    assert_eq!(
        h.merge_buckets(other.buckets()),
        Err(MergeError::NotABucket {
            low: Smaller::MAX_VALUE + 1,
            high: u64::MAX
        })
    );
    let larger: Histogram<{ buckets_for(5 * RANGE) }> = Histogram::new();
    larger.record(RANGE / 4);
    larger.record(2 * RANGE); // no such bucket here
    assert!(h.merge_buckets(larger.buckets()).is_err());
    assert_eq!(observe(&h), before);
    // Without such buckets, the other size merges like this one.
    other.reset();
    other.record(RANGE / 4);
    h.merge_buckets(other.buckets()).unwrap();
    assert_eq!(h.count(), 3);
    h.reset();
    h.record(500);
    h.record(RANGE * 7 / 10);
    // Empty lists and empty buckets are fine.
    assert_eq!(h.merge_buckets([]), Ok(()));
    assert_eq!(h.merge_buckets([bk(9, 9, 0)]), Ok(()));
    assert_eq!(observe(&h), before);
    assert_eq!(
        std::format!("{}", MergeError::OutOfOrder { low: 3 }),
        "bucket at 3 is out of order"
    );
}

#[test]
fn totals_that_contradict_the_buckets_are_refused() {
    let h = Small::new();
    let list = [bk(100, 100, 2), bk(1_000, 1_003, 1)];
    let bad = [
        Totals {
            sum: 1_200,
            min: 500,
            max: 400,
        }, // min > max
        Totals {
            sum: 1_200,
            min: 101,
            max: 1_001,
        }, // min above the lowest bucket
        Totals {
            sum: 1_200,
            min: 100,
            max: 999,
        }, // max below the highest
    ];
    for totals in bad {
        assert_eq!(
            h.merge_buckets_with_totals(list, totals),
            Err(MergeError::BadTotals)
        );
    }
    // Totals for no values.
    let totals = Totals {
        sum: 0,
        min: 0,
        max: 0,
    };
    assert_eq!(
        h.merge_buckets_with_totals([], totals),
        Err(MergeError::BadTotals)
    );
    assert_eq!(h.count(), 0);
    // Wider extremes than the list (a source read while recording) pass.
    let wide = Totals {
        sum: 1_201,
        min: 50,
        max: 2_000,
    };
    assert_eq!(h.merge_buckets_with_totals(list, wide), Ok(()));
    assert_eq!(
        (h.count(), h.sum(), h.min(), h.max()),
        (3, 1_201, Some(50), Some(2_000))
    );
}

#[test]
fn overflowing_counts_saturate_never_wrap() {
    let h = Small::new();
    let full = bk(7, 7, BUCKET_CAPACITY);
    h.merge_buckets([full]).unwrap();
    h.merge_buckets([full]).unwrap();
    h.record_n(7, u64::MAX);
    assert_eq!(h.buckets().collect::<Vec<_>>(), [full]);
    assert_eq!(h.count(), BUCKET_CAPACITY);
    let top = bk(Small::MAX_VALUE + 1, u64::MAX, BUCKET_CAPACITY);
    h.merge_buckets([top]).unwrap();
    h.merge_buckets([top]).unwrap();
    assert!(h.count() >= BUCKET_CAPACITY);
    assert!(h.percentile(99.0).is_ok());
}

/// An iterator whose clones do not replay it: valid when validated,
/// invalid when applied.
#[derive(Clone)]
struct Fickle {
    passes: Rc<Cell<u32>>,
    at: usize,
}

impl Iterator for Fickle {
    type Item = Bucket;
    fn next(&mut self) -> Option<Bucket> {
        if self.at == 0 {
            self.passes.set(self.passes.get() + 1);
        }
        self.at += 1;
        match self.at {
            1 => Some(bk(5, 5, 1)),
            2 if self.passes.get() > 1 => Some(bk(5, 6, 1)),
            2 => Some(bk(6, 6, 1)),
            _ => None,
        }
    }
}

#[test]
fn an_iterator_that_does_not_replay_is_caught() {
    let h = Small::new();
    let list = Fickle {
        passes: Rc::new(Cell::new(0)),
        at: 0,
    };
    assert_eq!(h.merge_buckets(list), Err(MergeError::Changed));
    // Only the bucket before the change was applied.
    assert_eq!(h.buckets().collect::<Vec<_>>(), [bk(5, 5, 1)]);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: if cfg!(miri) { 4 } else { 512 },
        failure_persistence: None,
        ..ProptestConfig::default()
    })]


    /// Any list at all: merged whole, or refused with nothing applied;
    /// never a panic.
    #[test]
    fn arbitrary_lists_merge_whole_or_not_at_all(
        pre in values_strategy(),
        list in prop::collection::vec(
            (prop_oneof![0..2_000u64, any::<u64>()], 0..4u64, prop_oneof![0..5u64, any::<u64>()]),
            0..8,
        ),
        totals in (any::<u64>(), prop_oneof![0..2_000u64, any::<u64>()], any::<u64>()),
    ) {
        let h = Small::new();
        for &v in &pre {
            h.record(v);
        }
        // Mostly real bounds (a value's bucket), sometimes garbage.
        let list: Vec<Bucket> = list
            .into_iter()
            .map(|(v, mode, count)| {
                let (low, high) = reference_bounds(v, Small::MAX_VALUE);
                match mode {
                    0 => Bucket { low, high: high.wrapping_add(1), count },
                    _ => Bucket { low, high, count },
                }
            })
            .collect();
        let before = observe(&h);
        let n = h.count();
        let added: u64 = list.iter().map(|b| b.count).fold(0, u64::saturating_add);
        if h.merge_buckets(list.iter().copied()).is_ok() {
            prop_assert!(n <= h.count() && h.count() <= n.saturating_add(added));
            for b in list.iter().filter(|b| b.count != 0) {
                let mine = h.buckets().find(|m| (m.low, m.high) == (b.low, b.high));
                prop_assert!(mine.is_some_and(|m| m.count >= b.count), "{:?}", b);
            }
        } else {
            prop_assert_eq!(observe(&h), before.clone());
        }
        let (sum, min, max) = totals;
        let h2 = Small::new();
        for &v in &pre {
            h2.record(v);
        }
        if h2.merge_buckets_with_totals(list, Totals { sum, min, max }).is_err() {
            prop_assert_eq!(observe(&h2), before);
        } else {
            prop_assert!(h2.min() <= h2.max());
        }
        for q in [0.0, 50.0, 99.9, 100.0] {
            prop_assert!(h.percentile(q).is_ok() && h2.percentile(q).is_ok());
        }
        let _ = (h.mean(), h2.mean(), h.sum(), h2.sum());
    }
}
