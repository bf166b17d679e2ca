//! Sound-but-checked probes of a hostile review: the events bus's
//! counters under concurrent publishers and a reader racing them, and
//! the stale cache letting go of the values it no longer serves.
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use fusebox::Instant;
use fusebox_std::events::{Component, Event, Events};
use fusebox_std::policy::StaleCache;

/// Four threads publish 50 000 events each into a small channel while a
/// fifth drains it as fast as it can: every event is either received or
/// counted as lost, exactly (`received + missed == published`), the total
/// `lagged` is the subscriber's `missed`, and `published` counts every
/// call. Sound: a review's check, no defect found.
#[test]
fn every_event_is_received_or_counted_lost_under_racing_threads() {
    const PER_THREAD: u64 = 50_000;
    let events = Events::new(64);
    let mut sub = events.subscribe();
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let mut received = 0_u64;
            loop {
                // `done` read before the drain: nothing is published after.
                let last = done.load(SeqCst);
                while sub.try_recv().is_some() {
                    received += 1;
                }
                if last {
                    return (received, sub.missed());
                }
                std::thread::yield_now();
            }
        })
    };
    let publishers: Vec<_> = (0..4)
        .map(|t| {
            let events = events.clone();
            std::thread::spawn(move || {
                for i in 0..PER_THREAD {
                    events.publish(Event::Recovered {
                        name: "db".into(),
                        component: Component::Breaker,
                        at: Instant::from_micros(t * PER_THREAD + i),
                    });
                }
            })
        })
        .collect();
    for p in publishers {
        p.join().unwrap();
    }
    done.store(true, SeqCst);
    let (received, missed) = reader.join().unwrap();
    assert_eq!(events.published(), 4 * PER_THREAD);
    assert_eq!(
        received + missed,
        4 * PER_THREAD,
        "received {received}, missed {missed}"
    );
    assert_eq!(events.lagged(), missed);
    assert_eq!(events.subscribers(), 0, "the reader's subscription is gone");
}

/// A value the cache can no longer serve is dropped at once: evicted by
/// a newer key, found expired by a lookup, replaced by a newer fetch of
/// its key; and the cache dropped frees the rest (values counted by
/// their `Arc`'s strong count). Sound: a review's check, no defect found.
#[tokio::test(start_paused = true)]
async fn values_no_longer_served_are_dropped() {
    let cache: StaleCache<u8, Arc<u8>, 2> =
        StaleCache::new(Duration::ZERO, Duration::from_secs(10)).unwrap();
    let values: Vec<Arc<u8>> = (0..4).map(Arc::new).collect();
    let fetch = |i: usize| {
        let value = Arc::clone(&values[i]);
        move || async move { Ok::<_, ()>(value) }
    };
    for k in 0..3 {
        cache.get_or_fetch(k, fetch(usize::from(k))).await.unwrap();
    }
    assert_eq!(Arc::strong_count(&values[0]), 1, "0 evicted by 2 (N = 2)");
    tokio::time::sleep(Duration::from_secs(10)).await; // max_stale reached
    let failed = cache.get_or_fetch(1, || async { Err::<Arc<u8>, _>("down") });
    assert_eq!(failed.await, Err("down"));
    assert_eq!(Arc::strong_count(&values[1]), 1, "1 found expired");
    cache.get_or_fetch(2, fetch(3)).await.unwrap();
    assert_eq!(Arc::strong_count(&values[2]), 1, "2 replaced");
    assert_eq!(Arc::strong_count(&values[3]), 2, "3 cached");
    drop(cache);
    assert_eq!(Arc::strong_count(&values[3]), 1);
}
