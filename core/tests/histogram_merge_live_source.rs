//! `Histogram::merge_buckets(_with_totals)` walks its list twice (validate,
//! then apply): `Buckets` is `Clone` for that, and "a clone restarts from
//! where the original stands, re-reading the counts". So a list read from a
//! histogram that is still recording (the documented way to merge one:
//! `b.merge_buckets(a.buckets())`, histograms being shared and lock-free)
//! can hold a value in the second walk that the first did not see; and a
//! hostile `Clone` may replay a different list, or an invalid one
//! ([`MergeError::Changed`]: "the buckets before it were applied").
//!
//! Whatever was applied, the merged histogram must stay consistent: its
//! extremes cover every bucket it counts (`min <= ` the lowest non-empty
//! bucket's `high`, `max >= ` the highest one's `low`), so `min`, `max`
//! and the percentiles (clamped into `[min, max]`) describe the counts.
//!
//! Before the fix the extremes came from the first walk alone: a value
//! recorded between the walks was counted with `max` below its bucket
//! (`max()` 5, a bucket at 999 936..=1 000 447 counted, `percentile(100.0)`
//! 5), and after `Changed` an empty histogram counted a value with no
//! extremes at all (`count()` 1, `min()` `None`, `percentile` `Ok(None)`).

use std::cell::Cell;
use std::rc::Rc;

use fusebox::histogram::{buckets_for, Bucket, Buckets, Histogram, MergeError, Totals};

type H = Histogram<{ buckets_for(10_000_000) }>;

/// The extremes cover every bucket counted, and the ends agree.
fn consistent(h: &H) {
    let buckets: Vec<Bucket> = h.buckets().collect();
    let (Some(first), Some(last)) = (buckets.first(), buckets.last()) else {
        assert_eq!(h.count(), 0);
        return;
    };
    let (min, max) = (h.min().expect("counted, so a min"), h.max().expect("a max"));
    assert!(min <= first.high, "min {min} above {first:?}");
    assert!(max >= last.low, "max {max} below {last:?}");
    assert_eq!(h.percentile(100.0), Ok(Some(max)));
    assert_eq!(h.percentile(0.0), Ok(Some(min)));
    assert!(h.percentile(50.0).unwrap().is_some());
    assert!(h.mean().is_some());
}

/// `a.buckets()`, with a value recorded into `a` when a walk ends: what a
/// thread still recording into `a` does between the merge's two walks.
#[derive(Clone)]
struct Live<'a> {
    buckets: Buckets<'a, { buckets_for(10_000_000) }>,
    source: &'a H,
    late: Rc<Cell<Option<u64>>>,
}

impl Iterator for Live<'_> {
    type Item = Bucket;
    fn next(&mut self) -> Option<Bucket> {
        let next = self.buckets.next();
        if next.is_none() {
            if let Some(v) = self.late.take() {
                self.source.record(v);
            }
        }
        next
    }
}

fn live(source: &H, late: u64) -> Live<'_> {
    Live {
        buckets: source.buckets(),
        source,
        late: Rc::new(Cell::new(Some(late))),
    }
}

#[test]
fn a_value_recorded_between_the_walks_is_within_the_extremes() {
    for late in [1_000_000, 0, 3] {
        let a = H::new();
        a.record(5);
        let b = H::new();
        b.merge_buckets(live(&a, late)).unwrap();
        assert_eq!(b.count(), 2, "late {late}: both walks' values counted");
        consistent(&b);
    }
}

#[test]
fn totals_cover_a_value_recorded_between_the_walks() {
    let a = H::new();
    a.record(5);
    a.record(9);
    let totals = a.totals().unwrap();
    assert_eq!(
        totals,
        Totals {
            sum: 14,
            min: 5,
            max: 9
        }
    );
    let b = H::new();
    b.merge_buckets_with_totals(live(&a, 2_000_000), totals)
        .unwrap();
    assert_eq!(b.count(), 3);
    consistent(&b);
    // The totals' own extremes are kept exactly where they describe the
    // list that was checked.
    assert_eq!(b.min(), Some(5));
    let c = H::new();
    c.merge_buckets_with_totals(a.buckets(), a.totals().unwrap())
        .unwrap();
    assert_eq!((c.min(), c.max(), c.sum()), (a.min(), a.max(), a.sum()));
}

/// Valid when validated; when applied, a bucket then an invalid one.
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
        let second = self.passes.get() > 1;
        match self.at {
            1 if second => Some(Bucket {
                low: 2_000,
                high: 2_007,
                count: 3,
            }),
            1 => Some(Bucket {
                low: 5,
                high: 5,
                count: 1,
            }),
            2 if second => Some(Bucket {
                low: 1,
                high: 9,
                count: 1,
            }),
            2 => Some(Bucket {
                low: 6,
                high: 6,
                count: 1,
            }),
            _ => None,
        }
    }
}

#[test]
fn after_changed_what_was_applied_has_extremes() {
    let fickle = || Fickle {
        passes: Rc::new(Cell::new(0)),
        at: 0,
    };
    let h = H::new();
    assert_eq!(h.merge_buckets(fickle()), Err(MergeError::Changed));
    assert_eq!(h.count(), 3, "the bucket before the change was applied");
    consistent(&h);
    assert_eq!(h.sum(), 3 * 2_004, "as merge_buckets estimates: midpoints");

    let h = H::new();
    let totals = Totals {
        sum: 11,
        min: 5,
        max: 6,
    };
    assert_eq!(
        h.merge_buckets_with_totals(fickle(), totals),
        Err(MergeError::Changed)
    );
    assert_eq!(h.count(), 3);
    consistent(&h);
}
