//! `Fallback` and `StaleCache`: values on errors and open breakers,
//! cache-first, stale-on-error bounded by `max_stale`, on paused time.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::common::core_breaker;
use fusebox_std::policy::{Breaker, Fallback, Source, StaleCache};
use fusebox_std::CallError;
use tokio::time::sleep;

#[tokio::test(start_paused = true)]
async fn fallback_on_any_error_or_only_an_open_breaker() {
    let any = Fallback::new(|_: &&str| Some(0));
    assert_eq!(any.call(async { Err::<u32, _>("x") }).await, Ok(0));
    assert_eq!(any.call(async { Ok::<u32, &str>(7) }).await, Ok(7));

    let breaker = Breaker::new("recs", core_breaker(1, Duration::from_secs(30)));
    let only_open = Fallback::new(|e: &CallError<&str>| e.is_open().then(|| vec!["default"]));
    // The failure itself is not covered...
    let failed = only_open
        .call(breaker.call(async { Err::<Vec<&str>, _>("down") }))
        .await;
    assert!(matches!(failed, Err(CallError::Inner("down"))));
    // ...the open breaker is.
    let served = only_open
        .call(breaker.call(async { Ok::<_, &str>(vec!["fresh"]) }))
        .await;
    assert_eq!(served.unwrap(), ["default"]);
}

#[tokio::test(start_paused = true)]
async fn stale_value_is_served_while_the_breaker_is_open() {
    let breaker = Breaker::new("prices", core_breaker(1, Duration::from_secs(30)));
    let cache: StaleCache<&str, u32, 16> =
        StaleCache::new(Duration::ZERO, Duration::from_secs(60)).unwrap();
    let fetched = cache
        .get_or_fetch("eur", || breaker.call(async { Ok::<_, &str>(108) }))
        .await
        .unwrap();
    assert_eq!((fetched.value, fetched.source), (108, Source::Fetched));

    sleep(Duration::from_secs(2)).await;
    // The dependency fails: the cached value, 2 s old.
    let stale = cache
        .get_or_fetch("eur", || breaker.call(async { Err::<u32, _>("down") }))
        .await
        .unwrap();
    assert_eq!(
        (stale.value, stale.source, stale.age),
        (108, Source::Stale, Duration::from_secs(2))
    );

    sleep(Duration::from_secs(1)).await;
    // The breaker is open now: still served, and the callee is not called.
    let polled = AtomicU32::new(0);
    let while_open = cache
        .get_or_fetch("eur", || {
            breaker.call(async {
                polled.fetch_add(1, Ordering::Relaxed);
                Ok::<u32, &str>(0)
            })
        })
        .await
        .unwrap();
    assert_eq!(
        (while_open.source, while_open.age),
        (Source::Stale, Duration::from_secs(3))
    );
    assert_eq!(polled.load(Ordering::Relaxed), 0);

    // No value for another key: the breaker's error.
    let none = cache
        .get_or_fetch("usd", || breaker.call(async { Ok::<u32, &str>(1) }))
        .await;
    assert!(matches!(none, Err(CallError::Open { .. })));
}

#[tokio::test(start_paused = true)]
async fn staleness_is_bounded_by_max_stale() {
    let cache: StaleCache<u8, &str, 4> =
        StaleCache::new(Duration::ZERO, Duration::from_secs(10)).unwrap();
    cache
        .get_or_fetch(1, || async { Ok::<_, ()>("v1") })
        .await
        .unwrap();

    // Just under the bound: served.
    sleep(Duration::from_millis(9_999)).await;
    let under = cache.get_or_fetch(1, || async { Err(()) }).await.unwrap();
    assert_eq!(
        (under.source, under.age),
        (Source::Stale, Duration::from_millis(9_999))
    );

    // At the bound: too old, the error comes through.
    sleep(Duration::from_millis(1)).await;
    assert_eq!(cache.get_or_fetch(1, || async { Err(()) }).await, Err(()));
    assert_eq!(cache.peek(&1), None);
}

#[tokio::test(start_paused = true)]
async fn cache_first_skips_the_call_while_fresh() {
    let calls = AtomicU32::new(0);
    let fetch = || {
        let n = calls.fetch_add(1, Ordering::Relaxed) + 1;
        async move { Ok::<_, ()>(n) }
    };
    let cache: StaleCache<u8, u32, 4> =
        StaleCache::new(Duration::from_secs(5), Duration::from_secs(60)).unwrap();
    assert_eq!(cache.get_or_fetch(1, fetch).await.unwrap().value, 1);
    sleep(Duration::from_millis(4_999)).await;
    let hit = cache.get_or_fetch(1, fetch).await.unwrap();
    assert_eq!((hit.value, hit.source), (1, Source::Cached));
    sleep(Duration::from_millis(1)).await;
    // 5 s old: no longer fresh, fetched again.
    let refreshed = cache.get_or_fetch(1, fetch).await.unwrap();
    assert_eq!((refreshed.value, refreshed.source), (2, Source::Fetched));
    assert_eq!(calls.load(Ordering::Relaxed), 2);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_fetch_caches_nothing() {
    let cache: StaleCache<u8, u32, 4> =
        StaleCache::new(Duration::ZERO, Duration::from_secs(60)).unwrap();
    let slow = cache.get_or_fetch(1, || async {
        sleep(Duration::from_secs(1)).await;
        Ok::<_, ()>(5)
    });
    assert!(tokio::time::timeout(Duration::from_millis(10), slow)
        .await
        .is_err());
    assert_eq!(cache.peek(&1), None);
    assert_eq!(cache.metrics().inserts, 0);
}

/// A `StaleCache` read through a clock that went backwards (here: its
/// `TokioClock` read in a second paused runtime, whose virtual now is
/// about the first one's start, an hour behind the value stored there).
/// The value reads as zero old (never an underflow or a panic), so it is
/// fresh; it is never served past its fetch instant plus `max_stale` on
/// that clock; a fetch made behind it replaces it with its own instant.
#[test]
fn a_clock_behind_a_stored_value_reads_it_as_new_and_still_expires_it() {
    use fusebox::{Clock, Instant};
    use fusebox_std::TokioClock;
    let paused = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap()
    };
    let (cache, clock) = paused().block_on(async {
        let clock = TokioClock::new();
        let cache: StaleCache<&str, u32, 4> =
            StaleCache::with_clock(Duration::from_secs(10), Duration::from_secs(60), clock)
                .unwrap();
        sleep(Duration::from_secs(3_600)).await;
        let served = cache.get_or_fetch("k", || async { Ok::<_, ()>(1) }).await;
        assert_eq!(served.unwrap().source, Source::Fetched);
        (cache, clock)
    });
    paused().block_on(async {
        let behind = clock.now();
        assert!(behind < Instant::from_secs(60), "{behind:?}");
        assert_eq!(cache.peek(&"k"), Some((1, Duration::ZERO)));
        let calls = AtomicU32::new(0);
        let fetch = || {
            calls.fetch_add(1, Ordering::Relaxed);
            async { Err::<u32, _>("down") }
        };
        let served = cache.get_or_fetch("k", fetch).await.unwrap();
        assert_eq!(
            (served.value, served.source, served.age),
            (1, Source::Cached, Duration::ZERO)
        );
        assert_eq!(calls.load(Ordering::Relaxed), 0);
        // Served (stale) until 3 600 s + 60 s on the clock, not after.
        tokio::time::advance(Duration::from(Instant::from_secs(3_659) - behind)).await;
        let served = cache.get_or_fetch("k", fetch).await.unwrap();
        assert_eq!(
            (served.source, served.age),
            (Source::Stale, Duration::from_secs(59))
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(cache.get_or_fetch("k", fetch).await.unwrap_err(), "down");
    });
    // A fetch made behind a stored value replaces it, dated at its own now.
    let cache2: StaleCache<&str, u32, 4> = paused().block_on(async {
        let clock = TokioClock::new();
        let cache = StaleCache::with_clock(Duration::ZERO, Duration::from_secs(60), clock).unwrap();
        sleep(Duration::from_secs(3_600)).await;
        cache
            .get_or_fetch("k", || async { Ok::<_, ()>(1) })
            .await
            .unwrap();
        cache
    });
    paused().block_on(async {
        let served = cache2.get_or_fetch("k", || async { Ok::<_, ()>(2) }).await;
        assert_eq!(served.unwrap().source, Source::Fetched);
        sleep(Duration::from_secs(59)).await;
        assert_eq!(cache2.peek(&"k").map(|(v, _)| v), Some(2));
        sleep(Duration::from_secs(2)).await;
        assert_eq!(cache2.peek(&"k"), None, "60 s after its own fetch");
    });
}
