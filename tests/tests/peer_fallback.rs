//! Scenarios from peer libraries' own suites, re-expressed against
//! fusebox-std's `Fallback`, `StaleCache` and the keyed limiter policy
//! (`KeyedLimiter`, `Registry::keyed_limiter_policy`), with expectations
//! from their rustdoc only: Polly's `FallbackSpecs`, Resilience4j's
//! fallback decorators, moka / cached / stale-while-revalidate caches (TTL
//! boundaries, evicted keys, concurrent callers for one key), governor's
//! keyed limiter tests (`accepts_first_cell`, `rejects_too_many`,
//! `correct_wait_time`), and hostile callers: cancelled futures, panicking
//! closures, zero and huge durations, clocks far from their start. Paused
//! tokio time throughout.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{core_breaker, poll_once};
use fusebox::bucket::{FullPolicy, Quota};
use fusebox_std::events::{Component, Event};
use fusebox_std::policy::{
    Breaker, Fallback, KeyedLimiter, LimitError, Served, Source, StaleCache, StaleCacheError,
};
use fusebox_std::{CallError, Registry, TokioClock};
use tokio::time::{advance, sleep, Instant};

const US: Duration = Duration::from_micros(1);

// ---------------------------------------------------------------------------
// Fallback (Polly FallbackSpecs, Resilience4j fallback decorators)
// ---------------------------------------------------------------------------

/// `Fallback::new` is `const`: a fallback can be a `static`.
static ZERO_ON_ANY_ERROR: Fallback<fn(&&str) -> Option<u32>> = Fallback::new(|_| Some(0));

/// `cache.get_or_fetch(key, …)` of a call that succeeds with `value`.
async fn fetched<K: std::hash::Hash + Eq + Clone, V: Clone, const N: usize>(
    cache: &StaleCache<K, V, N>,
    key: K,
    value: V,
) -> Served<V> {
    cache
        .get_or_fetch(key, || async { Ok::<_, ()>(value) })
        .await
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_static_fallback_serves_every_caller() {
    assert_eq!(ZERO_ON_ANY_ERROR.call(async { Err("x") }).await, Ok(0));
    assert_eq!(ZERO_ON_ANY_ERROR.call(async { Ok(5) }).await, Ok(5));
}

#[tokio::test(start_paused = true)]
async fn fallback_is_not_consulted_when_the_call_succeeds() {
    // Polly: Should_not_execute_fallback_when_executed_delegate_does_not_throw.
    let consulted = AtomicU32::new(0);
    let fallback = Fallback::new(|_: &&str| {
        consulted.fetch_add(1, Ordering::SeqCst);
        Some(0_u32)
    });
    for i in 0..3 {
        assert_eq!(fallback.call(async move { Ok::<_, &str>(i) }).await, Ok(i));
    }
    assert_eq!(consulted.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn fallback_sees_the_very_error_of_each_failure() {
    // Polly: Should_call_fallbackAction_with_the_exception; the closure is
    // `Fn`, consulted once per failure, and the policy is reusable.
    let seen = Mutex::new(Vec::new());
    let fallback = Fallback::new(|e: &u16| {
        seen.lock().unwrap().push(*e);
        Some(format!("fallback for {e}"))
    });
    assert_eq!(
        fallback.call(async { Err(503) }).await.unwrap(),
        "fallback for 503"
    );
    assert_eq!(
        fallback.call(async { Err(429) }).await.unwrap(),
        "fallback for 429"
    );
    assert_eq!(*seen.lock().unwrap(), [503, 429]);
}

#[tokio::test(start_paused = true)]
async fn an_error_without_a_fallback_passes_unchanged() {
    // Polly: Should_not_execute_fallback_when_executed_delegate_throws_
    // exception_not_handled_by_policy; Resilience4j: a fallback only for the
    // configured exception types, others rethrown as they were.
    let fallback = Fallback::new(|e: &std::io::Error| {
        (e.kind() == std::io::ErrorKind::TimedOut).then_some(0_u8)
    });
    let refused = fallback
        .call(async {
            Err::<u8, _>(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "refused",
            ))
        })
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    assert_eq!(refused.to_string(), "refused");
    let timed_out = fallback
        .call(async { Err(std::io::Error::from(std::io::ErrorKind::TimedOut)) })
        .await;
    assert_eq!(timed_out.unwrap(), 0);
}

#[tokio::test(start_paused = true)]
async fn fallback_covers_call_not_permitted_without_calling() {
    // Resilience4j: a fallback for CallNotPermittedException (an open
    // breaker); the decorated supplier is not invoked while open.
    let breaker = Breaker::new("recs", core_breaker(1, Duration::from_secs(30)));
    let fallback = Fallback::new(|e: &CallError<&str>| e.is_open().then_some("cached"));
    let _ = fallback
        .call(breaker.call(async { Err::<&str, _>("down") }))
        .await;
    let invoked = AtomicU32::new(0);
    let served = fallback
        .call(breaker.call(async {
            invoked.fetch_add(1, Ordering::SeqCst);
            Ok("fresh")
        }))
        .await;
    assert_eq!(served.unwrap(), "cached");
    assert_eq!(invoked.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn dropping_a_fallback_call_drops_the_call_and_never_consults_the_closure() {
    // Polly: cancellation during the executed delegate is not a fault the
    // fallback handles; here, dropping the future.
    struct Dropped<'a>(&'a AtomicU32);
    impl Drop for Dropped<'_> {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let (consulted, dropped) = (AtomicU32::new(0), AtomicU32::new(0));
    let fallback = Fallback::new(|(): &()| {
        consulted.fetch_add(1, Ordering::SeqCst);
        Some(0_u8)
    });
    let call = fallback.call(async {
        let _guard = Dropped(&dropped);
        sleep(Duration::from_secs(10)).await;
        Err::<u8, ()>(())
    });
    let out = tokio::time::timeout(Duration::from_secs(1), call).await;
    assert!(out.is_err(), "timed out");
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
    assert_eq!(consulted.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_fallback_closure_propagates_and_the_policy_stays_usable() {
    // Polly: Should_not_handle_exception_thrown_by_fallback_delegate_even_if_
    // is_exception_handled_by_policy: a fault in the fallback itself is the
    // caller's.
    let fallback = Arc::new(Fallback::new(|e: &u8| {
        assert!(*e != 13, "unlucky");
        Some(u32::from(*e))
    }));
    let panicked = tokio::spawn({
        let fallback = Arc::clone(&fallback);
        async move { fallback.call(async { Err::<u32, u8>(13) }).await }
    })
    .await;
    assert!(panicked.unwrap_err().is_panic());
    assert_eq!(fallback.call(async { Err(7) }).await, Ok(7));
}

#[tokio::test(start_paused = true)]
async fn a_panicking_call_is_not_a_failure_the_fallback_answers() {
    let consulted = Arc::new(AtomicU32::new(0));
    let fallback = Arc::new(Fallback::new({
        let consulted = Arc::clone(&consulted);
        move |(): &()| {
            consulted.fetch_add(1, Ordering::SeqCst);
            Some(1_u8)
        }
    }));
    let joined = tokio::spawn({
        let fallback = Arc::clone(&fallback);
        async move {
            fallback
                .call(async {
                    assert!(!std::hint::black_box(true), "inside the call");
                    Err::<u8, ()>(())
                })
                .await
        }
    })
    .await;
    assert!(joined.unwrap_err().is_panic());
    assert_eq!(consulted.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn fallback_behind_a_stale_cache_answers_once_staleness_runs_out() {
    // Polly's PolicyWrap (fallback outermost) over a cache: stale first, then
    // the fallback value once the cached one is older than `max_stale`.
    let cache: StaleCache<&str, u32, 4> =
        StaleCache::new(Duration::ZERO, Duration::from_secs(10)).unwrap();
    let fallback = Fallback::new(|_: &&str| Some(0_u32));
    let cache = &cache;
    let get = |ok: bool| {
        fallback.call(async move {
            cache
                .get_or_fetch("eur", || async move {
                    if ok {
                        Ok(108)
                    } else {
                        Err("down")
                    }
                })
                .await
                .map(|served| served.value)
        })
    };
    assert_eq!(get(true).await, Ok(108));
    sleep(Duration::from_secs(9)).await;
    assert_eq!(get(false).await, Ok(108), "stale");
    sleep(Duration::from_secs(1)).await;
    assert_eq!(get(false).await, Ok(0), "the fallback's");
}

// ---------------------------------------------------------------------------
// StaleCache: construction (hostile durations)
// ---------------------------------------------------------------------------

#[test]
fn stale_cache_windows_at_their_documented_edges() {
    type C = StaleCache<u8, u8, 4>;
    // "max_stale under a microsecond": one microsecond is a window.
    assert!(C::new(Duration::ZERO, US).is_ok());
    assert_eq!(
        C::new(Duration::ZERO, Duration::from_nanos(999)).unwrap_err(),
        StaleCacheError::NoStaleWindow
    );
    // "max_stale shorter than fresh_for": equal is not shorter.
    assert!(C::new(Duration::from_secs(5), Duration::from_secs(5)).is_ok());
    assert_eq!(
        C::new(Duration::from_secs(5) + US, Duration::from_secs(5)).unwrap_err(),
        StaleCacheError::StaleBeforeFresh
    );
    // Huge durations are windows like any other.
    assert!(C::new(Duration::MAX, Duration::MAX).is_ok());
    assert!(C::new(Duration::ZERO, Duration::MAX).is_ok());
    // Both errors display something.
    assert!(!StaleCacheError::NoStaleWindow.to_string().is_empty());
    assert!(!StaleCacheError::StaleBeforeFresh.to_string().is_empty());
}

#[test]
fn stale_before_fresh_by_a_nanosecond() {
    // "`max_stale` shorter than `fresh_for`" is StaleBeforeFresh: a
    // max_stale one nanosecond shorter is shorter.
    let made = StaleCache::<u8, u8, 4>::new(
        Duration::from_secs(5) + Duration::from_nanos(1),
        Duration::from_secs(5),
    );
    assert_eq!(made.unwrap_err(), StaleCacheError::StaleBeforeFresh);
}

// ---------------------------------------------------------------------------
// StaleCache: TTL boundaries (moka / cached time_to_live edge cases)
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn cache_first_ends_exactly_at_fresh_for() {
    // moka: an entry is expired once now >= inserted + ttl.
    let cache: StaleCache<u8, u32, 4> =
        StaleCache::new(Duration::from_secs(1), Duration::from_secs(5)).unwrap();
    let first = fetched(&cache, 1, 1).await;
    assert_eq!((first.source, first.age), (Source::Fetched, Duration::ZERO));
    advance(Duration::from_micros(999_999)).await;
    let calls = AtomicU32::new(0);
    let cached = cache
        .get_or_fetch(1, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok::<_, ()>(2)
        })
        .await
        .unwrap();
    assert_eq!(
        (cached.value, cached.source, cached.age),
        (1, Source::Cached, Duration::from_micros(999_999))
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0, "no call while fresh");
    advance(US).await;
    let refetched = fetched(&cache, 1, 2).await;
    assert_eq!(
        (refetched.value, refetched.source, refetched.age),
        (2, Source::Fetched, Duration::ZERO),
        "age == fresh_for is not younger than it"
    );
}

#[tokio::test(start_paused = true)]
async fn staleness_ends_exactly_at_max_stale() {
    let cache: StaleCache<u8, u32, 4> =
        StaleCache::new(Duration::ZERO, Duration::from_secs(5)).unwrap();
    cache
        .get_or_fetch(1, || async { Ok::<_, &str>(1) })
        .await
        .unwrap();
    advance(Duration::from_micros(4_999_999)).await;
    let stale = cache
        .get_or_fetch(1, || async { Err("down") })
        .await
        .unwrap();
    assert_eq!(
        (stale.value, stale.source, stale.age),
        (1, Source::Stale, Duration::from_micros(4_999_999))
    );
    assert_eq!(cache.peek(&1), Some((1, Duration::from_micros(4_999_999))));
    advance(US).await;
    assert_eq!(cache.peek(&1), None, "an age strictly below max_stale");
    assert_eq!(
        cache
            .get_or_fetch(1, || async { Err::<u32, _>("down") })
            .await,
        Err("down")
    );
}

#[tokio::test(start_paused = true)]
async fn a_one_microsecond_window_serves_stale_only_at_age_zero() {
    let cache: StaleCache<u8, u32, 4> = StaleCache::new(Duration::ZERO, US).unwrap();
    fetched(&cache, 1, 1).await;
    let stale = cache.get_or_fetch(1, || async { Err(()) }).await.unwrap();
    assert_eq!((stale.source, stale.age), (Source::Stale, Duration::ZERO));
    advance(US).await;
    assert_eq!(
        cache.get_or_fetch(1, || async { Err::<u32, _>(()) }).await,
        Err(())
    );
}

#[tokio::test(start_paused = true)]
async fn a_failure_neither_refreshes_nor_evicts_the_stale_value() {
    // stale-while-revalidate / stale-if-error (RFC 5861): serving stale does
    // not make it younger; the bound counts from the last success.
    let cache: StaleCache<u8, u32, 4> =
        StaleCache::new(Duration::ZERO, Duration::from_secs(10)).unwrap();
    fetched(&cache, 1, 1).await;
    let inserts = cache.metrics().inserts;
    for age in [3, 6, 9] {
        sleep(Duration::from_secs(3)).await;
        let stale = cache.get_or_fetch(1, || async { Err(()) }).await.unwrap();
        assert_eq!(
            (stale.source, stale.age),
            (Source::Stale, Duration::from_secs(age))
        );
    }
    assert_eq!(cache.metrics().inserts, inserts, "a failure caches nothing");
    sleep(Duration::from_secs(1)).await;
    assert_eq!(
        cache.get_or_fetch(1, || async { Err::<u32, _>(()) }).await,
        Err(())
    );
}

#[tokio::test(start_paused = true)]
async fn a_success_restarts_the_age() {
    let cache: StaleCache<u8, u32, 4> =
        StaleCache::new(Duration::ZERO, Duration::from_secs(5)).unwrap();
    fetched(&cache, 1, 1).await;
    sleep(Duration::from_secs(4)).await;
    let again = fetched(&cache, 1, 2).await;
    assert_eq!(
        (again.value, again.source, again.age),
        (2, Source::Fetched, Duration::ZERO)
    );
    sleep(Duration::from_secs(4)).await;
    let stale = cache.get_or_fetch(1, || async { Err(()) }).await.unwrap();
    assert_eq!((stale.value, stale.age), (2, Duration::from_secs(4)));
}

#[tokio::test(start_paused = true)]
async fn no_value_and_a_failure_is_the_error() {
    let cache: StaleCache<String, u32, 4> =
        StaleCache::new(Duration::from_secs(1), Duration::from_secs(5)).unwrap();
    let err = cache
        .get_or_fetch("k".to_owned(), || async {
            Err::<u32, _>(CallError::<()>::Open { retry_after: None })
        })
        .await
        .unwrap_err();
    assert!(err.is_open());
    assert_eq!(cache.peek(&"k".to_owned()), None);
}

#[tokio::test(start_paused = true)]
async fn keys_evicted_while_stale_are_not_served() {
    // moka / cached: a bounded cache evicts the least recently used; the
    // evicted key's stale value is gone too.
    let cache: StaleCache<u8, u32, 2> =
        StaleCache::new(Duration::from_secs(10), Duration::from_secs(60)).unwrap();
    fetched(&cache, 1, 1).await;
    fetched(&cache, 2, 2).await;
    // A fresh hit on 1 makes 2 the least recently used.
    let hit = fetched(&cache, 1, 9).await;
    assert_eq!(hit.source, Source::Cached);
    fetched(&cache, 3, 3).await;
    sleep(Duration::from_secs(20)).await;
    assert_eq!(
        cache.get_or_fetch(2, || async { Err::<u32, _>(()) }).await,
        Err(())
    );
    let one = cache.get_or_fetch(1, || async { Err(()) }).await.unwrap();
    assert_eq!((one.value, one.source), (1, Source::Stale));
    let three = cache.get_or_fetch(3, || async { Err(()) }).await.unwrap();
    assert_eq!((three.value, three.source), (3, Source::Stale));
}

#[tokio::test(start_paused = true)]
async fn huge_windows_survive_a_century() {
    // Hostile: `Duration::MAX` windows (a TTL conversion that overflows or
    // truncates would drop the value or expire it at once).
    let cache: StaleCache<u8, u32, 4> = StaleCache::new(Duration::MAX, Duration::MAX).unwrap();
    fetched(&cache, 1, 1).await;
    let century = Duration::from_secs(100 * 365 * 86_400);
    advance(century).await;
    let cached = fetched(&cache, 1, 2).await;
    assert_eq!(
        (cached.value, cached.source, cached.age),
        (1, Source::Cached, century)
    );
    assert_eq!(cache.peek(&1), Some((1, century)));
}

#[tokio::test(start_paused = true)]
async fn stale_only_with_a_huge_max_stale() {
    let cache: StaleCache<u8, u32, 4> = StaleCache::new(Duration::ZERO, Duration::MAX).unwrap();
    fetched(&cache, 1, 1).await;
    let decade = Duration::from_secs(10 * 365 * 86_400);
    advance(decade).await;
    let stale = cache.get_or_fetch(1, || async { Err(()) }).await.unwrap();
    assert_eq!(
        (stale.value, stale.source, stale.age),
        (1, Source::Stale, decade)
    );
}

#[tokio::test(start_paused = true)]
async fn a_clock_made_long_before_the_cache_still_ages_from_the_fetch() {
    // Hostile: a clock far from its start (a process up for years).
    let clock = TokioClock::new();
    advance(Duration::from_secs(5 * 365 * 86_400)).await;
    let cache: StaleCache<u8, u32, 4> =
        StaleCache::with_clock(Duration::from_secs(1), Duration::from_secs(5), clock).unwrap();
    let first = fetched(&cache, 1, 1).await;
    assert_eq!((first.source, first.age), (Source::Fetched, Duration::ZERO));
    advance(Duration::from_secs(2)).await;
    let stale = cache.get_or_fetch(1, || async { Err(()) }).await.unwrap();
    assert_eq!(
        (stale.source, stale.age),
        (Source::Stale, Duration::from_secs(2))
    );
}

#[tokio::test(start_paused = true)]
async fn a_value_fetched_at_clock_zero_is_cached() {
    // Hostile: the clock's first instant (zero) as a fetch time.
    let cache: StaleCache<u8, u32, 4> = StaleCache::with_clock(
        Duration::from_secs(1),
        Duration::from_secs(5),
        TokioClock::new(),
    )
    .unwrap();
    fetched(&cache, 1, 1).await;
    let cached = fetched(&cache, 1, 2).await;
    assert_eq!(
        (cached.value, cached.source, cached.age),
        (1, Source::Cached, Duration::ZERO)
    );
}

#[tokio::test(start_paused = true)]
async fn fresh_for_equal_to_max_stale_leaves_no_stale_window() {
    let cache: StaleCache<u8, u32, 4> =
        StaleCache::new(Duration::from_secs(5), Duration::from_secs(5)).unwrap();
    fetched(&cache, 1, 1).await;
    advance(Duration::from_micros(4_999_999)).await;
    let cached = cache.get_or_fetch(1, || async { Err(()) }).await.unwrap();
    assert_eq!(
        (cached.source, cached.age),
        (Source::Cached, Duration::from_micros(4_999_999))
    );
    advance(US).await;
    assert_eq!(
        cache.get_or_fetch(1, || async { Err::<u32, _>(()) }).await,
        Err(())
    );
}

#[tokio::test(start_paused = true)]
async fn a_sub_microsecond_fresh_for_is_fresh_only_at_age_zero() {
    // Hostile: 500 ns is not zero, so cache-first is on; an age of zero is
    // younger than it, an age of one microsecond is not.
    let cache: StaleCache<u8, u32, 4> =
        StaleCache::new(Duration::from_nanos(500), Duration::from_secs(5)).unwrap();
    fetched(&cache, 1, 1).await;
    let cached = fetched(&cache, 1, 2).await;
    assert_eq!((cached.value, cached.source), (1, Source::Cached));
    advance(US).await;
    let fetched = fetched(&cache, 1, 2).await;
    assert_eq!((fetched.value, fetched.source), (2, Source::Fetched));
}

// ---------------------------------------------------------------------------
// StaleCache: cancellation, panics, concurrent callers
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_refresh_dropped_midway_keeps_the_old_value_and_its_age() {
    // "Dropping the future drops the fetch; nothing is cached."
    let cache: StaleCache<u8, u32, 4> =
        StaleCache::new(Duration::ZERO, Duration::from_secs(10)).unwrap();
    fetched(&cache, 1, 1).await;
    sleep(Duration::from_secs(2)).await;
    let refresh = cache.get_or_fetch(1, || async {
        sleep(Duration::from_secs(5)).await;
        Ok::<_, ()>(2)
    });
    assert!(tokio::time::timeout(Duration::from_secs(1), refresh)
        .await
        .is_err());
    assert_eq!(cache.peek(&1), Some((1, Duration::from_secs(3))));
    let stale = cache.get_or_fetch(1, || async { Err(()) }).await.unwrap();
    assert_eq!((stale.value, stale.age), (1, Duration::from_secs(3)));
}

#[tokio::test(start_paused = true)]
async fn a_fetch_dropped_before_its_first_poll_calls_nothing() {
    let cache: StaleCache<u8, u32, 4> =
        StaleCache::new(Duration::ZERO, Duration::from_secs(10)).unwrap();
    let called = AtomicU32::new(0);
    let mut get = Box::pin(cache.get_or_fetch(1, || async {
        called.fetch_add(1, Ordering::SeqCst);
        sleep(Duration::from_secs(1)).await;
        Ok::<_, ()>(1)
    }));
    assert!(poll_once(get.as_mut()).is_pending());
    drop(get);
    assert_eq!(cache.peek(&1), None);
    assert_eq!(cache.metrics().inserts, 0);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_fetch_leaves_the_cache_usable() {
    // Hostile: the mutex is "held only for a lookup or an insert, never
    // across an `.await`", so a fetch that panics poisons nothing.
    let cache: Arc<StaleCache<u8, u32, 4>> =
        Arc::new(StaleCache::new(Duration::ZERO, Duration::from_secs(10)).unwrap());
    fetched(&cache, 1, 1).await;
    let joined = tokio::spawn({
        let cache = Arc::clone(&cache);
        async move {
            cache
                .get_or_fetch(1, || async {
                    sleep(Duration::from_millis(1)).await;
                    assert!(!std::hint::black_box(true), "fetch panicked");
                    Ok::<u32, ()>(2)
                })
                .await
        }
    })
    .await;
    assert!(joined.unwrap_err().is_panic());
    let stale = cache.get_or_fetch(1, || async { Err(()) }).await.unwrap();
    assert_eq!((stale.value, stale.source), (1, Source::Stale));
    let other = fetched(&cache, 2, 2).await;
    assert_eq!(other.source, Source::Fetched);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_fetch_closure_leaves_the_cache_usable() {
    let cache: Arc<StaleCache<u8, u32, 4>> =
        Arc::new(StaleCache::new(Duration::from_secs(1), Duration::from_secs(10)).unwrap());
    let joined = tokio::spawn({
        let cache = Arc::clone(&cache);
        async move {
            cache
                .get_or_fetch(1, || -> std::future::Ready<Result<u32, ()>> {
                    panic!("closure panicked")
                })
                .await
        }
    })
    .await;
    assert!(joined.unwrap_err().is_panic());
    let fetched = fetched(&cache, 1, 1).await;
    assert_eq!(fetched.source, Source::Fetched);
}

#[tokio::test(start_paused = true)]
async fn a_thundering_herd_on_a_stale_key_calls_once_per_caller() {
    // moka's `get_with` coalesces concurrent inits; fusebox documents no such
    // thing ("otherwise the call is made"): every caller past `fresh_for`
    // calls. 16 callers, 16 upstream calls, all answered.
    let cache: Arc<StaleCache<u8, u32, 4>> =
        Arc::new(StaleCache::new(Duration::from_secs(1), Duration::from_secs(60)).unwrap());
    fetched(&cache, 1, 0).await;
    sleep(Duration::from_secs(2)).await; // stale now
    let upstream = Arc::new(AtomicU32::new(0));
    let herd: Vec<_> = (0..16)
        .map(|_| {
            let (cache, upstream) = (Arc::clone(&cache), Arc::clone(&upstream));
            tokio::spawn(async move {
                cache
                    .get_or_fetch(1, || async move {
                        let n = upstream.fetch_add(1, Ordering::SeqCst) + 1;
                        sleep(Duration::from_millis(100)).await;
                        Ok::<_, ()>(n)
                    })
                    .await
                    .unwrap()
            })
        })
        .collect();
    for caller in herd {
        assert_eq!(caller.await.unwrap().source, Source::Fetched);
    }
    assert_eq!(upstream.load(Ordering::SeqCst), 16);
    // Once one of them has landed, the next caller is served from the cache.
    let after = fetched(&cache, 1, 99).await;
    assert_eq!(after.source, Source::Cached);
}

#[tokio::test(start_paused = true)]
async fn a_herd_against_a_failing_upstream_is_all_served_stale() {
    let cache: Arc<StaleCache<u8, u32, 4>> =
        Arc::new(StaleCache::new(Duration::ZERO, Duration::from_secs(60)).unwrap());
    fetched(&cache, 1, 7).await;
    sleep(Duration::from_secs(5)).await;
    let herd: Vec<_> = (0..16)
        .map(|_| {
            let cache = Arc::clone(&cache);
            tokio::spawn(async move {
                cache
                    .get_or_fetch(1, || async {
                        sleep(Duration::from_millis(100)).await;
                        Err::<u32, _>(())
                    })
                    .await
                    .unwrap()
            })
        })
        .collect();
    for caller in herd {
        let served = caller.await.unwrap();
        assert_eq!(
            (served.value, served.source, served.age),
            (7, Source::Stale, Duration::from_millis(5_100))
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_slow_fetch_landing_last_overwrites_a_newer_value() {
    // stale-while-revalidate caches differ here (moka coalesces; some keep
    // the newest). fusebox documents only "a success is cached" and an age
    // of zero when fetched: the last success to land is the cached one, its
    // age counted from when it landed.
    let cache: Arc<StaleCache<u8, u32, 4>> =
        Arc::new(StaleCache::new(Duration::ZERO, Duration::from_secs(60)).unwrap());
    let slow = tokio::spawn({
        let cache = Arc::clone(&cache);
        async move {
            cache
                .get_or_fetch(1, || async {
                    sleep(Duration::from_secs(3)).await;
                    Ok::<_, ()>(1) // as of t = 0
                })
                .await
        }
    });
    tokio::task::yield_now().await;
    sleep(Duration::from_secs(1)).await;
    let fast = fetched(&cache, 1, 2).await;
    assert_eq!((fast.value, fast.source), (2, Source::Fetched));
    let slow = slow.await.unwrap().unwrap();
    assert_eq!(
        (slow.value, slow.source, slow.age),
        (1, Source::Fetched, Duration::ZERO)
    );
    sleep(Duration::from_secs(1)).await;
    assert_eq!(cache.peek(&1), Some((1, Duration::from_secs(1))));
}

// ---------------------------------------------------------------------------
// KeyedLimiter (governor's keyed tests)
// ---------------------------------------------------------------------------

fn keyed<const N: usize>(quota: Quota) -> Arc<KeyedLimiter<u32, N>> {
    let core = fusebox::KeyedLimiter::new(quota, FullPolicy::Reject).unwrap();
    Arc::new(KeyedLimiter::new(Arc::new(core)))
}

#[tokio::test(start_paused = true)]
async fn every_key_accepts_its_first_cell_at_once() {
    // governor: accepts_first_cell / rejects_too_many, per key.
    let limiter = keyed::<64>(Quota::per_second(2).unwrap());
    let start = Instant::now();
    for key in 0..32 {
        limiter.until_n_ready(&key, 2).await.unwrap();
    }
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(
        limiter.until_n_ready_by(&5, 1, Some(Instant::now())).await,
        Err(LimitError::DeadlineExceeded {
            retry_after: Duration::from_millis(500)
        })
    );
}

#[tokio::test(start_paused = true)]
async fn a_waiting_key_never_holds_up_another() {
    let limiter = keyed::<64>(Quota::per_second(1).unwrap());
    limiter.until_ready(&1).await.unwrap();
    let start = Instant::now();
    let waiter = tokio::spawn({
        let limiter = Arc::clone(&limiter);
        async move {
            limiter.until_ready(&1).await.unwrap();
            Instant::now()
        }
    });
    tokio::task::yield_now().await;
    assert_eq!(limiter.waiting_keys(), 1);
    limiter.until_ready(&2).await.unwrap();
    assert_eq!(
        start.elapsed(),
        Duration::ZERO,
        "key 2 does not wait for key 1"
    );
    assert_eq!(waiter.await.unwrap() - start, Duration::from_secs(1));
    assert_eq!(limiter.waiting_keys(), 0);
}

#[tokio::test(start_paused = true)]
async fn waiters_of_one_key_are_served_in_arrival_order_without_barging() {
    // A big request at the head is not overtaken by a small one behind it.
    let limiter = keyed::<64>(Quota::per_second(2).unwrap());
    limiter.until_n_ready(&1, 2).await.unwrap();
    let start = Instant::now();
    let order = Arc::new(Mutex::new(Vec::new()));
    let spawn = |name: &'static str, n: u32| {
        let (limiter, order) = (Arc::clone(&limiter), Arc::clone(&order));
        tokio::spawn(async move {
            limiter.until_n_ready(&1, n).await.unwrap();
            order.lock().unwrap().push((name, start.elapsed()));
        })
    };
    let big = spawn("big", 2);
    tokio::task::yield_now().await;
    let small = spawn("small", 1);
    tokio::task::yield_now().await;
    big.await.unwrap();
    small.await.unwrap();
    let order = order.lock().unwrap();
    assert_eq!(order[0], ("big", Duration::from_secs(1)));
    assert_eq!(order[1].0, "small");
    assert_eq!(order[1].1, Duration::from_millis(1_500));
}

#[tokio::test(start_paused = true)]
async fn a_dropped_head_waiter_gives_its_turn_to_the_next() {
    // "a dropped waiter takes no token and leaves its key's queue".
    let limiter = keyed::<64>(Quota::per_second(1).unwrap());
    limiter.until_ready(&1).await.unwrap();
    let start = Instant::now();
    let head = tokio::spawn({
        let limiter = Arc::clone(&limiter);
        async move { limiter.until_ready(&1).await }
    });
    tokio::task::yield_now().await;
    let next = tokio::spawn({
        let limiter = Arc::clone(&limiter);
        async move {
            limiter.until_ready(&1).await.unwrap();
            Instant::now()
        }
    });
    tokio::task::yield_now().await;
    sleep(Duration::from_millis(500)).await;
    head.abort();
    assert!(head.await.unwrap_err().is_cancelled());
    assert_eq!(next.await.unwrap() - start, Duration::from_secs(1));
    assert_eq!(limiter.waiting_keys(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_queued_waiter_gives_up_by_its_deadline_and_takes_no_token() {
    let limiter = keyed::<64>(Quota::per_second(2).unwrap());
    limiter.until_n_ready(&1, 2).await.unwrap();
    let start = Instant::now();
    let head = tokio::spawn({
        let limiter = Arc::clone(&limiter);
        async move { limiter.until_n_ready(&1, 2).await } // until 1 s
    });
    tokio::task::yield_now().await;
    let deadline = start + Duration::from_millis(600);
    let late = limiter.until_n_ready_by(&1, 1, Some(deadline)).await;
    assert!(
        matches!(late, Err(LimitError::DeadlineExceeded { .. })),
        "{late:?}"
    );
    assert!(Instant::now() <= deadline, "gave up after its deadline");
    assert_eq!(limiter.waiting_keys(), 1, "only the head is still queued");
    head.await.unwrap().unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    // The late waiter took nothing: the next token comes 500 ms on.
    limiter.until_ready(&1).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(1_500));
}

#[tokio::test(start_paused = true)]
async fn a_deadline_within_a_tick_of_the_token_is_given_up_and_one_past_it_is_met() {
    // governor: correct_wait_time. `KeyedLimiter` is documented "As
    // `Limiter`", whose `until_n_ready_by` gives up "a wait ending within
    // 1 ms of it" (tokio's tick). The keyed method's own sentence ("when
    // the wait would end after `deadline`") leaves that margin out: a
    // deadline exactly at the token is refused.
    for (extra, met) in [
        (Duration::ZERO, false),
        (Duration::from_micros(999), false),
        (Duration::from_millis(1), true),
    ] {
        let limiter = keyed::<64>(Quota::per_second(2).unwrap());
        limiter.until_n_ready(&1, 2).await.unwrap();
        let start = Instant::now();
        let deadline = start + Duration::from_millis(500) + extra;
        let got = limiter.until_n_ready_by(&1, 1, Some(deadline)).await;
        if met {
            assert_eq!(got, Ok(()));
            assert_eq!(start.elapsed(), Duration::from_millis(500));
        } else {
            assert_eq!(
                got,
                Err(LimitError::DeadlineExceeded {
                    retry_after: Duration::from_millis(500)
                }),
                "{extra:?}"
            );
            assert_eq!(start.elapsed(), Duration::ZERO, "given up at once");
        }
        assert_eq!(limiter.waiting_keys(), 0);
    }
}

#[tokio::test(start_paused = true)]
async fn zero_tokens_are_granted_at_once_and_take_nothing() {
    // Hostile: n = 0 on a drained key neither waits nor queues.
    let limiter = keyed::<64>(Quota::per_second(2).unwrap());
    limiter.until_n_ready(&1, 2).await.unwrap();
    let start = Instant::now();
    assert_eq!(limiter.until_n_ready(&1, 0).await, Ok(()));
    assert_eq!(start.elapsed(), Duration::ZERO);
    limiter.until_ready(&1).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(500));
}

#[tokio::test(start_paused = true)]
async fn a_thousand_abandoned_keys_leave_no_gates_behind() {
    // Hostile: chosen keys, each with one waiter, all cancelled; the map of
    // gates must shrink back ("removed when its last waiter leaves").
    let limiter: Arc<KeyedLimiter<u32, 2048>> = keyed(Quota::per_minute(1).unwrap());
    let t0 = Instant::now();
    let mut waiters = Vec::new();
    for key in 0..1_000 {
        limiter.until_ready(&key).await.unwrap();
        waiters.push(tokio::spawn({
            let limiter = Arc::clone(&limiter);
            async move { limiter.until_ready(&key).await }
        }));
    }
    sleep(Duration::from_millis(1)).await; // every waiter queued
    assert_eq!(limiter.waiting_keys(), 1_000);
    for waiter in &waiters {
        waiter.abort();
    }
    for waiter in waiters {
        assert!(waiter.await.unwrap_err().is_cancelled());
    }
    assert_eq!(limiter.waiting_keys(), 0);
    // No token was taken by the abandoned waiters: each key's next one comes
    // a minute after its first.
    limiter.until_ready(&999).await.unwrap();
    assert_eq!(t0.elapsed(), Duration::from_secs(60));
}

#[tokio::test(start_paused = true)]
async fn more_than_the_burst_is_refused_at_once_even_behind_waiters() {
    let limiter = keyed::<64>(Quota::per_second(2).unwrap());
    limiter.until_n_ready(&1, 2).await.unwrap();
    let waiter = tokio::spawn({
        let limiter = Arc::clone(&limiter);
        async move { limiter.until_ready(&1).await }
    });
    tokio::task::yield_now().await;
    let start = Instant::now();
    assert_eq!(
        limiter.until_n_ready(&1, u32::MAX).await,
        Err(LimitError::InsufficientCapacity {
            requested: u32::MAX,
            burst: 2
        })
    );
    assert_eq!(start.elapsed(), Duration::ZERO);
    waiter.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_full_table_refuses_new_keys_but_not_known_ones() {
    // A new key waits for a slot (key 1's frees when its bucket is full,
    // at 1 s): refused when its deadline comes first; the known key is
    // served at its own pace.
    let limiter = keyed::<1>(Quota::per_second(1).unwrap());
    limiter.until_ready(&1).await.unwrap();
    let start = Instant::now();
    let deadline = Some(start + Duration::from_millis(500));
    assert_eq!(
        limiter.until_n_ready_by(&2, 1, deadline).await,
        Err(LimitError::TableFull)
    );
    limiter.until_ready(&1).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert_eq!(limiter.waiting_keys(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_herd_on_one_key_never_exceeds_the_rate() {
    // governor: never_allows_more_than_capacity, with 100 waiters on one key.
    let limiter = keyed::<64>(Quota::per_second(10).unwrap());
    let start = Instant::now();
    let herd: Vec<_> = (0..100)
        .map(|_| {
            let limiter = Arc::clone(&limiter);
            tokio::spawn(async move {
                limiter.until_ready(&7).await.unwrap();
                start.elapsed()
            })
        })
        .collect();
    let mut times = Vec::new();
    for waiter in herd {
        times.push(waiter.await.unwrap());
    }
    times.sort();
    for (i, at) in times.iter().enumerate() {
        // burst 10 at once, then one every 100 ms
        let earliest = Duration::from_millis(100) * (i.saturating_sub(9) as u32);
        assert!(*at >= earliest, "waiter {i} at {at:?}, before {earliest:?}");
    }
    assert_eq!(*times.last().unwrap(), Duration::from_secs(9));
    assert_eq!(limiter.waiting_keys(), 0);
}

#[tokio::test(start_paused = true)]
async fn registry_policies_of_one_name_share_their_keys() {
    // "created if it does not exist": a second handle is the same limiter.
    let registry = Registry::new();
    let a = registry
        .keyed_limiter_policy::<String, 64>(
            "per_user",
            Quota::per_second(1).unwrap(),
            FullPolicy::Reject,
        )
        .unwrap();
    let b = registry
        .keyed_limiter_policy::<String, 64>(
            "per_user",
            Quota::per_second(1).unwrap(),
            FullPolicy::Reject,
        )
        .unwrap();
    a.until_ready(&"alice".to_owned()).await.unwrap();
    let start = Instant::now();
    b.until_ready(&"alice".to_owned()).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn registry_policy_publishes_a_full_table_and_a_deadline_without_the_key() {
    let registry = Registry::new();
    let mut events = registry.events().subscribe();
    let per_user = registry
        .keyed_limiter_policy::<String, 1>(
            "per_user",
            Quota::per_second(1).unwrap(),
            FullPolicy::Reject,
        )
        .unwrap();
    per_user
        .until_ready(&"alice@example.com".to_owned())
        .await
        .unwrap();
    // Alice's slot frees at 1 s: Mallory's wait for it ends at its
    // deadline first.
    let by = Instant::now() + Duration::from_millis(500);
    assert_eq!(
        per_user
            .until_n_ready_by(&"mallory@example.com".to_owned(), 1, Some(by))
            .await,
        Err(LimitError::TableFull)
    );
    let soon = Instant::now() + Duration::from_millis(10);
    assert!(per_user
        .until_n_ready_by(&"alice@example.com".to_owned(), 1, Some(soon))
        .await
        .is_err());
    for _ in 0..2 {
        let event = events.try_recv().expect("a refusal published");
        assert!(matches!(
            &event,
            Event::Rejected { component: Component::KeyedLimiter, name, .. } if &**name == "per_user"
        ));
        let shown = format!("{event:?}") + &serde_json::to_string(&event).unwrap();
        assert!(!shown.contains("example.com"), "{shown}");
    }
}

// ---------------------------------------------------------------------------
// Real threads (invariants that hold whatever the interleaving)
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn abandoned_waiters_on_real_threads_leave_no_gates_behind() {
    // Hostile: waiters of a few hot keys cancelled at random while others
    // are served, on four worker threads.
    let limiter = keyed::<64>(Quota::per_second(20_000).unwrap().with_burst(1).unwrap());
    let mut waiters = Vec::new();
    for i in 0..2_000_u32 {
        waiters.push(tokio::spawn({
            let limiter = Arc::clone(&limiter);
            async move { limiter.until_ready(&(i % 4)).await }
        }));
    }
    for (i, waiter) in waiters.iter().enumerate() {
        if i % 3 == 0 {
            waiter.abort();
        }
    }
    for waiter in waiters {
        match waiter.await {
            Ok(served) => served.unwrap(),
            Err(e) => assert!(e.is_cancelled()),
        }
    }
    assert_eq!(limiter.waiting_keys(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stale_cache_answers_keep_their_invariants_on_real_threads() {
    // Whatever the interleaving: a fetched value is the fetch's own with age
    // zero, a cached one is younger than `fresh_for`, a stale one is younger
    // than `max_stale` and only answers a failure.
    let (fresh_for, max_stale) = (Duration::from_millis(2), Duration::from_millis(20));
    let cache: Arc<StaleCache<u8, (u8, u32), 4>> =
        Arc::new(StaleCache::new(fresh_for, max_stale).unwrap());
    let mut callers = Vec::new();
    for t in 0..8_u32 {
        let cache = Arc::clone(&cache);
        callers.push(tokio::spawn(async move {
            for i in 0..300_u32 {
                let key = fastrand::u8(..8);
                let fail = fastrand::u8(..4) == 0;
                let mine = (key, t * 1_000 + i);
                let got = cache
                    .get_or_fetch(key, || async move {
                        if fastrand::bool() {
                            tokio::task::yield_now().await;
                        }
                        if fail {
                            Err("down")
                        } else {
                            Ok(mine)
                        }
                    })
                    .await;
                match got {
                    Ok(served) => {
                        assert_eq!(served.value.0, key, "another key's value");
                        match served.source {
                            Source::Fetched => {
                                assert!(!fail);
                                assert_eq!((served.value, served.age), (mine, Duration::ZERO));
                            }
                            Source::Cached => assert!(served.age < fresh_for, "{served:?}"),
                            Source::Stale => {
                                assert!(fail);
                                assert!(served.age < max_stale, "{served:?}");
                            }
                        }
                    }
                    Err(e) => assert!(fail, "{e}"),
                }
                if i % 50 == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }));
    }
    for caller in callers {
        caller.await.unwrap();
    }
}
