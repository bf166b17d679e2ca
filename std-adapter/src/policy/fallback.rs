//! [`Fallback`] (a value when a call fails) and [`StaleCache`] (cache-first
//! and stale-on-error, on the core's [`LruCache`]).

use std::future::Future;
use std::hash::Hash;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use fusebox::hash::RandomState;
use fusebox::{Clock, Instant, LruCache};

use crate::TokioClock;

/// Replaces an error by a value when the closure has one for it: on any
/// error, or only on some (an open breaker, say).
///
/// # Examples
///
/// ```
/// use fusebox_std::policy::Fallback;
/// use fusebox_std::CallError;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// // An empty recommendation list while the breaker is open; other errors pass.
/// let fallback = Fallback::new(|e: &CallError<&str>| e.is_open().then(Vec::<u32>::new));
/// let open = async { Err(CallError::Open { retry_after: None }) };
/// assert_eq!(fallback.call(open).await.unwrap(), Vec::<u32>::new());
/// let failed = async { Err(CallError::Inner("db down")) };
/// assert!(fallback.call(failed).await.is_err());
/// # });
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Fallback<F> {
    fallback: F,
}

impl<F> Fallback<F> {
    /// A fallback answering with `fallback(&error)` when it is `Some`.
    ///
    /// ```
    /// use fusebox_std::policy::Fallback;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// let zero_on_error = Fallback::new(|_: &std::io::Error| Some(0_u64));
    /// let n = zero_on_error.call(async { Err(std::io::Error::other("down")) }).await?;
    /// assert_eq!(n, 0);
    /// # Ok::<(), std::io::Error>(())
    /// # }).unwrap();
    /// ```
    pub const fn new(fallback: F) -> Self {
        Self { fallback }
    }

    /// Awaits `future`; on an error the closure has a value for, returns
    /// that value instead.
    ///
    /// # Errors
    ///
    /// The call's error when the closure returns `None` for it.
    ///
    /// ```
    /// use fusebox_std::policy::Fallback;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// // Only some errors have a fallback.
    /// let fallback = Fallback::new(|status: &u16| (*status == 503).then_some("maintenance page"));
    /// assert_eq!(fallback.call(async { Err(503) }).await, Ok("maintenance page"));
    /// assert_eq!(fallback.call(async { Err(500) }).await, Err(500));
    /// assert_eq!(fallback.call(async { Ok("page") }).await, Ok("page"));
    /// # });
    /// ```
    pub async fn call<Fut, T, E>(&self, future: Fut) -> Result<T, E>
    where
        Fut: Future<Output = Result<T, E>>,
        F: Fn(&E) -> Option<T>,
    {
        match future.await {
            Ok(value) => Ok(value),
            Err(error) => match (self.fallback)(&error) {
                Some(value) => {
                    tracing::debug!("fallback value served");
                    Ok(value)
                }
                None => Err(error),
            },
        }
    }
}

/// Where a [`StaleCache`] answer came from.
///
/// ```
/// use std::time::Duration;
/// use fusebox_std::policy::{Source, StaleCache};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// let cache: StaleCache<u8, u8, 8> = StaleCache::new(Duration::from_secs(1), Duration::from_secs(9)).unwrap();
/// let first = cache.get_or_fetch(1, || async { Ok::<_, ()>(10) }).await?;
/// let second = cache.get_or_fetch(1, || async { Ok::<_, ()>(11) }).await?;
/// assert_eq!((first.source, second.source), (Source::Fetched, Source::Cached));
/// # Ok::<(), ()>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The call, just now (and the value is now cached).
    Fetched,
    /// The cache, younger than `fresh_for`: no call was made.
    Cached,
    /// The cache, because the call failed: younger than `max_stale`.
    Stale,
}

/// A value from a [`StaleCache`], with where it came from and its age.
///
/// ```
/// use std::time::Duration;
/// use fusebox_std::policy::{Served, Source, StaleCache};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// let cache: StaleCache<u8, &str, 8> = StaleCache::new(Duration::ZERO, Duration::from_secs(60)).unwrap();
/// let served: Served<&str> = cache.get_or_fetch(1, || async { Ok::<_, ()>("v") }).await?;
/// assert_eq!(served, Served { value: "v", source: Source::Fetched, age: Duration::ZERO });
/// # Ok::<(), ()>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Served<V> {
    /// The value.
    pub value: V,
    /// Where it came from.
    pub source: Source,
    /// How long ago it was fetched (zero when [`Source::Fetched`]).
    pub age: Duration,
}

/// Cache-first and stale-on-error answers from the core's [`LruCache`]
/// (exact LRU of `N` entries, behind a `std::sync::Mutex` held only for a
/// lookup or an insert, never across an `.await`). Keys are hashed with a
/// per-cache secret seed ([`fusebox::hash::RandomState`]): keys chosen by
/// clients (ids, URLs) cannot be made to share one chain of the index.
///
/// For a key:
///
/// * a value younger than `fresh_for` is served without calling
///   (cache-first; `fresh_for` zero turns it off);
/// * otherwise the call is made; a success is cached and served;
/// * a failure (an open breaker included) is answered with the cached
///   value if it is younger than `max_stale`, else the error.
///
/// Staleness is bounded: a value is stored with a time to live of
/// `max_stale` (rounded up to the microsecond, the unit of ages: a value
/// aged 1 µs is kept under a `max_stale` of 1.5 µs; the core cache never
/// returns it afterwards), so no answer is ever older than `max_stale` (an
/// age strictly below it). A value's age
/// counts from when its fetch *completed*: data the upstream read at the
/// fetch's start can be older by the fetch's own duration.
///
/// Callers are not coalesced: concurrent callers of a key that is not
/// fresh each make their own call (16 callers, 16 upstream calls), unlike
/// a cache whose loader runs once per key (moka's `get_with`). When
/// several succeed, the last to complete is the value kept, even if it
/// started first. Put a [`Bulkhead`](super::Bulkhead) or a limiter in
/// front where a herd on one key would hurt the upstream.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use fusebox_std::policy::{Source, StaleCache};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// let prices: StaleCache<&str, u32, 128> = StaleCache::new(Duration::ZERO, Duration::from_secs(60)).unwrap();
/// let fresh = prices.get_or_fetch("AAPL", || async { Ok::<_, &str>(190) }).await?;
/// assert_eq!(fresh.source, Source::Fetched);
/// tokio::time::sleep(Duration::from_secs(5)).await;
/// let stale = prices.get_or_fetch("AAPL", || async { Err("breaker open") }).await?;
/// assert_eq!((stale.value, stale.source, stale.age), (190, Source::Stale, Duration::from_secs(5)));
/// # Ok::<(), &str>(())
/// # }).unwrap();
/// ```
pub struct StaleCache<K, V, const N: usize> {
    /// Hashed with a per-cache secret seed: keys come from requests.
    cache: Mutex<Box<Entries<K, V, N>>>,
    fresh_for: Duration,
    max_stale: Duration,
    clock: TokioClock,
}

/// Why a [`StaleCache`] cannot be made (found by a hostile review: both
/// were accepted, and the cache then kept nothing, or dropped fresh values).
///
/// ```
/// use std::time::Duration;
/// use fusebox_std::policy::{StaleCache, StaleCacheError};
///
/// let none = StaleCache::<u8, u8, 4>::new(Duration::ZERO, Duration::ZERO);
/// assert_eq!(none.unwrap_err(), StaleCacheError::NoStaleWindow);
/// let under_a_microsecond = StaleCache::<u8, u8, 4>::new(Duration::ZERO, Duration::from_nanos(500));
/// assert_eq!(under_a_microsecond.unwrap_err(), StaleCacheError::NoStaleWindow);
/// let short = StaleCache::<u8, u8, 4>::new(Duration::from_secs(10), Duration::from_secs(5));
/// assert_eq!(short.unwrap_err(), StaleCacheError::StaleBeforeFresh);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StaleCacheError {
    /// `max_stale` is under a microsecond: no value would ever be kept.
    NoStaleWindow,
    /// `max_stale` is shorter than `fresh_for`: values would expire while
    /// still fresh.
    StaleBeforeFresh,
}

impl std::fmt::Display for StaleCacheError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::NoStaleWindow => "max_stale must be at least a microsecond",
            Self::StaleBeforeFresh => "max_stale must be at least fresh_for",
        })
    }
}

impl std::error::Error for StaleCacheError {}

/// A [`StaleCache`]'s entries: each value with when it was fetched.
type Entries<K, V, const N: usize> = LruCache<K, (V, Instant), N, RandomState>;

/// A stale cache's counters in the registry's reports
/// ([`Registry::register_cache`](crate::Registry::register_cache)).
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use fusebox_std::{policy::StaleCache, Registry};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// let registry = Registry::new();
/// let prices: Arc<StaleCache<u32, u64, 64>> = Arc::new(StaleCache::new(Duration::from_secs(1), Duration::from_secs(60)).unwrap());
/// registry.register_cache("prices", Arc::clone(&prices))?;
/// prices.get_or_fetch(7, || async { Ok::<_, ()>(100) }).await.unwrap();
/// prices.get_or_fetch(7, || async { Ok::<_, ()>(101) }).await.unwrap(); // fresh: from the cache
/// let report = &registry.health().caches["prices"];
/// assert_eq!((report.metrics.inserts, report.metrics.hits), (1, 1));
/// # Ok::<(), fusebox_std::registry::RegistryError>(())
/// # }).unwrap();
/// ```
impl<K: Hash + Eq + Clone + Send, V: Clone + Send, const N: usize> crate::registry::CacheSource
    for StaleCache<K, V, N>
{
    fn cache_metrics(&self) -> fusebox::cache::CacheMetrics {
        self.metrics()
    }
}

impl<K, V, const N: usize> std::fmt::Debug for StaleCache<K, V, N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaleCache")
            .field("capacity", &N)
            .field("fresh_for", &self.fresh_for)
            .field("max_stale", &self.max_stale)
            .finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + Clone, V: Clone, const N: usize> StaleCache<K, V, N> {
    /// A cache serving values younger than `fresh_for` without calling, and
    /// values younger than `max_stale` when the call fails.
    ///
    /// ```
    /// use std::time::Duration;
    /// use fusebox_std::policy::StaleCache;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// // Stale-on-error only (no cache-first), values up to 30 s old.
    /// let cache: StaleCache<String, Vec<u8>, 1_024> = StaleCache::new(Duration::ZERO, Duration::from_secs(30)).unwrap();
    /// assert_eq!(cache.peek(&"k".to_owned()), None);
    /// # });
    /// ```
    ///
    /// # Errors
    ///
    /// [`StaleCacheError::NoStaleWindow`] for a `max_stale` under a
    /// microsecond (no value
    /// would ever be kept), [`StaleCacheError::StaleBeforeFresh`] for a
    /// `max_stale` shorter than `fresh_for` (values would expire while
    /// still fresh).
    pub fn new(fresh_for: Duration, max_stale: Duration) -> Result<Self, StaleCacheError> {
        Self::with_clock(fresh_for, max_stale, TokioClock::new())
    }

    /// [`new`](Self::new) with this clock.
    ///
    /// ```
    /// use std::time::Duration;
    /// use fusebox_std::{policy::StaleCache, TokioClock};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// let cache: StaleCache<u8, u8, 4> =
    ///     StaleCache::with_clock(Duration::ZERO, Duration::from_secs(5), TokioClock::new()).unwrap();
    /// cache.get_or_fetch(1, || async { Ok::<_, ()>(1) }).await?;
    /// assert!(cache.peek(&1).is_some());
    /// # Ok::<(), ()>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    pub fn with_clock(
        fresh_for: Duration,
        max_stale: Duration,
        clock: TokioClock,
    ) -> Result<Self, StaleCacheError> {
        // Ages are kept in whole microseconds: under one is none.
        if max_stale.as_micros() == 0 {
            return Err(StaleCacheError::NoStaleWindow);
        }
        if max_stale < fresh_for {
            return Err(StaleCacheError::StaleBeforeFresh);
        }
        Ok(Self {
            cache: Mutex::new(LruCache::with_hasher_boxed(RandomState::new())),
            fresh_for,
            max_stale,
            clock,
        })
    }

    /// The cached value of `key` and its age, if younger than `max_stale`.
    /// A read, as the core cache's `peek`: it counts no hit or miss in
    /// [`metrics`](Self::metrics) and does not make the entry the most
    /// recently used (an expired entry it finds is freed, and counted in
    /// `expirations`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use fusebox_std::policy::StaleCache;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// let cache: StaleCache<u8, u8, 4> = StaleCache::new(Duration::ZERO, Duration::from_secs(5)).unwrap();
    /// cache.get_or_fetch(1, || async { Ok::<_, ()>(9) }).await?;
    /// tokio::time::sleep(Duration::from_secs(2)).await;
    /// assert_eq!(cache.peek(&1), Some((9, Duration::from_secs(2))));
    /// tokio::time::sleep(Duration::from_secs(3)).await;
    /// assert_eq!(cache.peek(&1), None, "max_stale reached");
    /// # Ok::<(), ()>(())
    /// # }).unwrap();
    /// ```
    pub fn peek(&self, key: &K) -> Option<(V, Duration)> {
        let now = self.clock.now();
        let mut cache = self.lock();
        let (value, stored) = cache.peek_at(key, now)?;
        Some((value.clone(), (now - *stored).into()))
    }

    /// The core cache's counters. Lookups are those of
    /// [`get_or_fetch`](Self::get_or_fetch), never [`peek`](Self::peek)'s:
    /// with a `fresh_for`, the one before the call (a hit whenever a value
    /// younger than `max_stale` is found, even one too old to be served
    /// fresh, the call then being made), and after a failed call, the one
    /// for a stale value.
    ///
    /// ```
    /// use std::time::Duration;
    /// use fusebox_std::policy::StaleCache;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// let cache: StaleCache<u8, u8, 4> = StaleCache::new(Duration::ZERO, Duration::from_secs(5)).unwrap();
    /// cache.get_or_fetch(1, || async { Ok::<_, ()>(9) }).await?;
    /// assert_eq!(cache.metrics().inserts, 1);
    /// # Ok::<(), ()>(())
    /// # }).unwrap();
    /// ```
    pub fn metrics(&self) -> fusebox::cache::CacheMetrics {
        self.lock().metrics()
    }

    /// Answers for `key` (see the type's docs): from the cache, from
    /// `fetch`, or from the cache again when `fetch` fails.
    ///
    /// # Errors
    ///
    /// `fetch`'s error when no value younger than `max_stale` is cached.
    ///
    /// # Cancellation
    ///
    /// Dropping the future drops the fetch; nothing is cached.
    ///
    /// A fetch that never completes is waited for: no stale value is
    /// served while it hangs, and a timeout *around* `get_or_fetch` drops
    /// it and serves nothing. To have a hung upstream answered from the
    /// cache, bound the fetch *inside* `fetch` (a `tokio::time::timeout`
    /// whose elapsed error is the fetch's error, or a
    /// [`Policy`](super::Policy) with a timeout):
    ///
    /// ```
    /// use std::time::Duration;
    /// use fusebox_std::policy::{Source, StaleCache};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// let cache: StaleCache<u8, u8, 4> = StaleCache::new(Duration::ZERO, Duration::from_secs(60)).unwrap();
    /// cache.get_or_fetch(1, || async { Ok::<u8, &str>(7) }).await?;
    /// let hung = || async {
    ///     let upstream = std::future::pending::<Result<u8, &str>>();
    ///     tokio::time::timeout(Duration::from_secs(2), upstream).await.unwrap_or(Err("timed out"))
    /// };
    /// let served = cache.get_or_fetch(1, hung).await?;
    /// assert_eq!((served.value, served.source, served.age), (7, Source::Stale, Duration::from_secs(2)));
    /// # Ok::<(), &str>(())
    /// # }).unwrap();
    /// ```
    ///
    /// ```
    /// use std::time::Duration;
    /// use fusebox_std::policy::{Source, StaleCache};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// let cache: StaleCache<u8, u8, 4> = StaleCache::new(Duration::ZERO, Duration::from_secs(5)).unwrap();
    /// assert_eq!(cache.get_or_fetch(1, || async { Err::<u8, _>("down") }).await, Err("down"));
    /// cache.get_or_fetch(1, || async { Ok::<_, &str>(3) }).await?;
    /// let stale = cache.get_or_fetch(1, || async { Err::<u8, _>("down") }).await?;
    /// assert_eq!((stale.value, stale.source), (3, Source::Stale));
    /// # Ok::<(), &str>(())
    /// # }).unwrap();
    /// ```
    pub async fn get_or_fetch<F, Fut, E>(&self, key: K, fetch: F) -> Result<Served<V>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        if !self.fresh_for.is_zero()
            && let Some((value, age)) = self.lookup(&key, self.clock.now())
            && age < self.fresh_for
        {
            return Ok(Served {
                value,
                source: Source::Cached,
                age,
            });
        }
        match fetch().await {
            Ok(value) => {
                let now = self.clock.now();
                // Rounded *up* to the microsecond (the conversion
                // truncates): ages are whole microseconds, and a value aged
                // 1 µs is younger than a `max_stale` of 1.5 µs (found by a
                // hostile review: truncated, that value was dropped).
                let micros = self.max_stale.as_nanos().div_ceil(1_000);
                let ttl = fusebox::Duration::from_micros(u64::try_from(micros).unwrap_or(u64::MAX));
                self.lock()
                    .put_with_ttl(key, (value.clone(), now), ttl, now);
                Ok(Served {
                    value,
                    source: Source::Fetched,
                    age: Duration::ZERO,
                })
            }
            Err(error) => match self.lookup(&key, self.clock.now()) {
                Some((value, age)) => {
                    tracing::debug!(age_us = age.as_micros(), "stale value served");
                    Ok(Served {
                        value,
                        source: Source::Stale,
                        age,
                    })
                }
                None => Err(error),
            },
        }
    }

    fn lookup(&self, key: &K, now: Instant) -> Option<(V, Duration)> {
        let mut cache = self.lock();
        let (value, stored) = cache.get_at(key, now)?;
        Some((value.clone(), (now - *stored).into()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Box<Entries<K, V, N>>> {
        // The core cache is consistent after every call; a panic in
        // `V::clone` elsewhere cannot leave it half-updated.
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod model_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::hash::{BuildHasher, Hasher};

    thread_local! {
        static COMPARISONS: Cell<usize> = const { Cell::new(0) };
    }

    /// A key hashed as its `u64` (so its hash is computable offline) whose
    /// comparisons are counted: a lookup's chain walk, without a clock.
    #[derive(Clone, Debug)]
    struct Key(u64);
    impl PartialEq for Key {
        fn eq(&self, other: &Self) -> bool {
            COMPARISONS.with(|c| c.set(c.get() + 1));
            self.0 == other.0
        }
    }
    impl Eq for Key {}
    impl Hash for Key {
        fn hash<H: Hasher>(&self, state: &mut H) {
            self.0.hash(state);
        }
    }

    /// `peek` reads, as the core cache's `peek` does: it counts no lookup
    /// and leaves the recency order alone. Found by a hostile review: it
    /// counted a hit and promoted the entry, so a dashboard or health check
    /// peeking at a key raised the hit ratio the registry reports, and kept
    /// the peeked entry from being evicted in favour of ones in real use.
    #[tokio::test(start_paused = true)]
    async fn peek_counts_nothing_and_promotes_nothing() {
        let cache: StaleCache<u8, u8, 2> =
            StaleCache::new(Duration::ZERO, Duration::from_secs(60)).unwrap();
        for key in [1, 2] {
            cache
                .get_or_fetch(key, || async { Ok::<_, ()>(key) })
                .await
                .unwrap();
        }
        for _ in 0..5 {
            assert_eq!(cache.peek(&1), Some((1, Duration::ZERO)));
        }
        assert_eq!(cache.peek(&9), None);
        let m = cache.metrics();
        assert_eq!((m.hits, m.misses, m.inserts), (0, 0, 2));
        // 1 is still the least recently used: a third key evicts it.
        cache
            .get_or_fetch(3, || async { Ok::<_, ()>(3) })
            .await
            .unwrap();
        assert_eq!(cache.peek(&1), None);
        assert_eq!(cache.peek(&2), Some((2, Duration::ZERO)));
        // An expired entry still reads as none.
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(cache.peek(&2), None);
        assert_eq!(cache.metrics().lookups(), 0);
    }

    /// A stale cache is a server's (keys from requests: user ids, URLs):
    /// keys chosen offline against the core's public default seed must
    /// not all land in one bucket's chain, turning every lookup (under
    /// the cache's mutex) into a walk of every entry. Found by a hostile
    /// review: `StaleCache` hashed with `FixedState::new()`, 64 chosen keys
    /// made a miss compare 64 keys.
    #[tokio::test(start_paused = true)]
    async fn chosen_keys_do_not_collide() {
        const N: usize = 64;
        // The core's bucket of a hash, for 2 N buckets (`cache/lru/index.rs`,
        // as anyone reading the source knows).
        let bucket = |hash: u64| ((hash >> 32) * (2 * N as u64)) >> 32;
        let public = fusebox::hash::FixedState::new();
        let target = bucket(public.hash_one(0u64));
        let keys: Vec<u64> = (1u64..)
            .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .filter(|&k| bucket(public.hash_one(k)) == target)
            .take(N + 1)
            .collect();
        let cache: StaleCache<Key, u8, N> =
            StaleCache::new(Duration::ZERO, Duration::from_secs(60)).unwrap();
        for &k in &keys[..N] {
            cache
                .get_or_fetch(Key(k), || async { Ok::<_, ()>(1) })
                .await
                .unwrap();
        }
        COMPARISONS.with(|c| c.set(0));
        assert_eq!(cache.peek(&Key(keys[N])), None);
        let compared = COMPARISONS.with(Cell::get);
        assert!(
            compared < 8,
            "a miss compared {compared} keys: the chosen keys share one chain"
        );
    }

    thread_local! {
        /// `Fragile::clone` panics while set.
        static CLONE_PANICS: Cell<bool> = const { Cell::new(false) };
    }

    /// A value whose `clone` panics on demand.
    #[derive(Debug, PartialEq, Eq)]
    struct Fragile(u32);
    impl Clone for Fragile {
        fn clone(&self) -> Self {
            assert!(!CLONE_PANICS.with(Cell::get), "clone panics");
            Self(self.0)
        }
    }

    /// `V::clone` runs under the cache's mutex (serving a value, storing a
    /// fetched one): a panic there poisons the mutex, and the cache must
    /// stay usable with its entries and counters whole. Sound: a review's
    /// check, no defect found.
    #[tokio::test(start_paused = true)]
    async fn a_panicking_clone_leaves_the_cache_usable() {
        let cache: std::sync::Arc<StaleCache<u8, Fragile, 4>> = std::sync::Arc::new(
            StaleCache::new(Duration::from_secs(1), Duration::from_secs(60)).unwrap(),
        );
        let ok = |v: u32| move || async move { Ok::<_, ()>(Fragile(v)) };
        cache.get_or_fetch(1, ok(10)).await.unwrap();
        // A spawned task on this (current-thread) runtime: its panic is
        // caught by the join handle.
        let panics = |key: u8, v: u32| {
            let cache = std::sync::Arc::clone(&cache);
            tokio::spawn(async move { cache.get_or_fetch(key, ok(v)).await.is_ok() })
        };
        CLONE_PANICS.with(|c| c.set(true));
        // Serving key 1 fresh clones it under the lock; storing a fetched
        // key 2 clones it under the lock too.
        let served = panics(1, 11).await;
        let stored = panics(2, 20).await;
        CLONE_PANICS.with(|c| c.set(false));
        assert!(served.unwrap_err().is_panic() && stored.unwrap_err().is_panic());
        // Key 1 is still cached (the lookup that panicked counted its hit);
        // key 2 was never stored (its lookup before the call, like key 1's
        // first one, was a miss).
        assert_eq!(cache.peek(&1), Some((Fragile(10), Duration::ZERO)));
        assert_eq!(cache.peek(&2), None);
        let m = cache.metrics();
        assert_eq!((m.inserts, m.hits, m.misses), (1, 1, 2));
        let again = cache.get_or_fetch(1, ok(12)).await.unwrap();
        assert_eq!((again.value, again.source), (Fragile(10), Source::Cached));
        let fetched = cache.get_or_fetch(2, ok(21)).await.unwrap();
        assert_eq!(
            (fetched.value, fetched.source),
            (Fragile(21), Source::Fetched)
        );
        assert_eq!(cache.metrics().inserts, 2);
    }
}
