//! What the registry needs from caches and keyed limiters, whatever their
//! type parameters.

use std::hash::{BuildHasher, Hash};
use std::sync::{Mutex, PoisonError};

use fusebox::bucket::{KeyedLimiter, KeyedMetrics};
use fusebox::cache::{CacheMetrics, ConcurrentCache, LruCache};

/// A cache the registry can report on: anything with [`CacheMetrics`].
///
/// Implemented for the core's [`ConcurrentCache`] (shared by `&self`) and
/// for an [`LruCache`] behind a `Mutex` (it needs `&mut self`).
///
/// # Examples
///
/// ```
/// use std::sync::Mutex;
/// use fusebox::cache::LruCache;
/// use fusebox_std::registry::CacheSource;
///
/// let cache = Mutex::new(LruCache::<u32, u32, 4>::new());
/// cache.lock().unwrap().put(1, 10);
/// assert_eq!(cache.cache_metrics().inserts, 1);
/// ```
pub trait CacheSource: Send + Sync {
    /// The cache's counters now.
    fn cache_metrics(&self) -> CacheMetrics;
}

impl<K, V, const SETS: usize, const WAYS: usize, S> CacheSource
    for ConcurrentCache<K, V, SETS, WAYS, S>
where
    K: Copy + Eq + Hash + bytemuck::NoUninit,
    V: Copy + bytemuck::NoUninit,
    S: BuildHasher,
    Self: Send + Sync,
{
    fn cache_metrics(&self) -> CacheMetrics {
        self.metrics()
    }
}

impl<K, V, const N: usize, S> CacheSource for Mutex<LruCache<K, V, N, S>>
where
    LruCache<K, V, N, S>: Send,
{
    fn cache_metrics(&self) -> CacheMetrics {
        self.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .metrics()
    }
}

/// A keyed limiter of any key type and size, for the reports.
pub(crate) trait KeyedSource: Send + Sync {
    fn keyed_metrics(&self) -> KeyedMetrics;
}

impl<K, const N: usize, const TIERS: usize, S> KeyedSource for KeyedLimiter<K, N, TIERS, S>
where
    K: Eq + Hash + Clone,
    S: BuildHasher,
    Self: Send + Sync,
{
    fn keyed_metrics(&self) -> KeyedMetrics {
        self.metrics()
    }
}
