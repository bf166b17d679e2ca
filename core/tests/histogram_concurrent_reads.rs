//! The bucket list read while values are recorded from other threads.

// Threads spinning until the reader is done: native runs only.
#![cfg(not(miri))]

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

use fusebox::histogram::{buckets_for, Histogram};

/// Values past the range are listed in the clamped bucket only, also
/// while they are recorded: no read lists one in the top bucket. The top
/// bucket's count was raised before the clamped count, so a read between
/// the two listed the value in the top bucket (below the range's end:
/// the tracker's Prometheus `le="60"`), and the next read took it out
/// again (found by a review).
#[test]
fn clamped_values_are_never_listed_in_the_top_bucket() {
    let h: Arc<Histogram<{ buckets_for(60_000_000) }>> = Arc::new(Histogram::new());
    let done = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|_| {
            let (h, done) = (Arc::clone(&h), Arc::clone(&done));
            std::thread::spawn(move || {
                while !done.load(Relaxed) {
                    for _ in 0..1_000 {
                        h.record(3_600_000_000);
                    }
                }
            })
        })
        .collect();
    let mut listed = 0;
    for _ in 0..20_000 {
        let in_range: u64 = h
            .buckets()
            .filter(|b| b.low <= 60_000_000)
            .map(|b| b.count)
            .sum();
        listed += u64::from(in_range != 0);
    }
    done.store(true, Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    assert_eq!(listed, 0, "reads listing a clamped value in range");
    let all: Vec<_> = h.buckets().collect();
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!((all[0].count, h.clamped()), (h.count(), h.count()));
}
