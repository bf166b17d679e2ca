//! Hostile-review checks of [`StaleCache`] at the edges of its time
//! scale: settings between whole microseconds, and settings of
//! `Duration::MAX`. Every check is a source, a value or a paused-time age.

use std::time::Duration;

use super::*;

/// A value younger than `max_stale` is served when the call fails, and
/// one younger than `fresh_for` without calling, for settings between
/// whole microseconds (ages are kept in whole microseconds: a value aged
/// 1 µs is younger than 1.5 µs). Found by a hostile review: the time to
/// live given to the core cache was `max_stale` truncated to the
/// microsecond, so a `max_stale` of 1.999 µs dropped a value aged 1 µs (a
/// failed call got the error instead of the stale value), and one of
/// 1 s + 500 ns dropped values aged exactly 1 s.
#[tokio::test(start_paused = true)]
async fn settings_between_whole_microseconds_keep_younger_values() {
    let ns = Duration::from_nanos;
    for (fresh_for, max_stale, age) in [
        (Duration::ZERO, ns(1_999), ns(1_000)),
        (ns(1_500), ns(1_500), ns(1_000)),
        (Duration::ZERO, ns(1_000_000_500), ns(1_000_000_000)),
        (ns(999_999_999), ns(1_000_000_001), ns(1_000_000_000)),
    ] {
        let cache: StaleCache<u8, u8, 2> = StaleCache::new(fresh_for, max_stale).unwrap();
        cache
            .get_or_fetch(1, || async { Ok::<_, ()>(7) })
            .await
            .unwrap();
        tokio::time::advance(age).await;
        let served = cache.get_or_fetch(1, || async { Err::<u8, _>(()) }).await;
        let source = if age < fresh_for {
            Source::Cached
        } else {
            Source::Stale
        };
        assert_eq!(
            served,
            Ok(Served {
                value: 7,
                source,
                age
            }),
            "fresh_for {fresh_for:?}, max_stale {max_stale:?}, aged {age:?}"
        );
        // One microsecond later the value is at least `max_stale` old:
        // never served.
        tokio::time::advance(ns(1_000)).await;
        let later = cache.get_or_fetch(1, || async { Err::<u8, _>(()) }).await;
        assert_eq!(later, Err(()), "max_stale {max_stale:?}");
    }
}

/// Sound, kept as a test (hostile review): settings of `Duration::MAX`
/// keep a value for ever (its time to live saturates), serving it fresh
/// or stale after twenty years with its exact age.
#[tokio::test(start_paused = true)]
async fn settings_of_duration_max_keep_values_for_ever() {
    let twenty_years = Duration::from_secs(20 * 365 * 24 * 3_600);
    for (fresh_for, source) in [
        (Duration::MAX, Source::Cached),
        (Duration::ZERO, Source::Stale),
    ] {
        let cache: StaleCache<u8, u8, 2> = StaleCache::new(fresh_for, Duration::MAX).unwrap();
        cache
            .get_or_fetch(1, || async { Ok::<_, ()>(7) })
            .await
            .unwrap();
        tokio::time::advance(twenty_years).await;
        let served = cache.get_or_fetch(1, || async { Err::<u8, _>(()) }).await;
        assert_eq!(
            served,
            Ok(Served {
                value: 7,
                source,
                age: twenty_years
            })
        );
    }
}
