//! Caches in the registry: the ones it builds, and any other with
//! [`CacheMetrics`].

use std::any::Any;
use std::hash::{BuildHasher, Hash};
use std::sync::{Arc, Mutex, PoisonError};

use fusebox::cache::{CacheMetrics, ConcurrentCache, LruCache};
use fusebox::hash::RandomState;

use super::{conflict, type_mismatch, CacheEntry, Kind, Registry, RegistryError};

/// A concurrent cache as the registry builds it: keys hashed with a secret
/// per-instance seed, hits and misses counted.
///
/// ```
/// use std::sync::Arc;
/// use fusebox_std::registry::{Registry, ServerCache};
///
/// let registry = Registry::new();
/// let cache: Arc<ServerCache<u32, u32, 64, 4>> = registry.concurrent_cache("tokens")?;
/// assert!(cache.counts_lookups());
/// # Ok::<(), fusebox_std::RegistryError>(())
/// ```
pub type ServerCache<K, V, const SETS: usize, const WAYS: usize> =
    ConcurrentCache<K, V, SETS, WAYS, RandomState>;

/// A cache the registry can report on: anything with [`CacheMetrics`].
///
/// Implemented for the core's [`ConcurrentCache`] (shared by `&self`) and
/// for an [`LruCache`] behind a `Mutex` (it needs `&mut self`).
///
/// The registry calls [`cache_metrics`](Self::cache_metrics) (for
/// [`Registry::health`] and the Prometheus exposition) without holding
/// its own lock, so it may wait for the cache's lock, and code holding
/// that lock may call the registry meanwhile. Only the thread holding it
/// must not build a report itself: a `Mutex` is not re-entrant, and
/// `cache_metrics` would wait for that thread.
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

impl Registry {
    /// The concurrent cache `name` (`SETS` × `WAYS` entries), created if it
    /// does not exist: on the heap, keys hashed with a secret seed, hits
    /// and misses counted.
    ///
    /// # Errors
    ///
    /// [`RegistryError::InvalidName`], [`RegistryError::TypeMismatch`]
    /// (another type, or a cache registered with
    /// [`register_cache`](Self::register_cache)), [`RegistryError::Full`].
    ///
    /// ```
    /// use fusebox_std::Registry;
    ///
    /// let registry = Registry::new();
    /// let sessions = registry.concurrent_cache::<u64, u64, 256, 4>("sessions")?;
    /// sessions.insert(1, 42)?;
    /// assert_eq!(sessions.get(&1), Some(42));
    /// assert_eq!(registry.health().caches["sessions"].metrics.hits, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn concurrent_cache<K, V, const SETS: usize, const WAYS: usize>(
        &self,
        name: &str,
    ) -> Result<Arc<ServerCache<K, V, SETS, WAYS>>, RegistryError>
    where
        K: Copy + Eq + Hash + bytemuck::NoUninit + Send + Sync + 'static,
        V: Copy + bytemuck::NoUninit + Send + Sync + 'static,
        ServerCache<K, V, SETS, WAYS>: Send + Sync,
    {
        self.get_or_insert(
            Kind::Cache,
            name,
            |e| &mut e.caches,
            |entry| {
                entry
                    .any
                    .clone()
                    .and_then(|any| any.downcast().ok())
                    .ok_or_else(|| type_mismatch(Kind::Cache, name))
            },
            || {
                let mut cache =
                    ServerCache::<K, V, SETS, WAYS>::with_hasher_boxed(RandomState::new());
                cache.set_lookup_counters(true);
                let cache: Arc<ServerCache<K, V, SETS, WAYS>> = cache.into();
                let entry = CacheEntry {
                    source: Arc::clone(&cache) as Arc<dyn CacheSource>,
                    any: Some(Arc::clone(&cache) as Arc<dyn Any + Send + Sync>),
                };
                Ok((entry, cache))
            },
        )
    }

    /// Registers a cache built elsewhere (an `LruCache` behind a `Mutex`, a
    /// `ConcurrentCache` of another hasher) under `name`, for the reports.
    /// Registering the same `Arc` again is a no-op.
    ///
    /// # Errors
    ///
    /// [`RegistryError::InvalidName`], [`RegistryError::Conflict`] if
    /// another cache has the name, [`RegistryError::Full`].
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use fusebox::cache::LruCache;
    /// use fusebox_std::Registry;
    ///
    /// let registry = Registry::new();
    /// let users = Arc::new(Mutex::new(LruCache::<u32, u32, 64>::new()));
    /// registry.register_cache("users", Arc::clone(&users))?;
    /// users.lock().unwrap().put(1, 1);
    /// assert_eq!(registry.health().caches["users"].metrics.inserts, 1);
    /// # Ok::<(), fusebox_std::registry::RegistryError>(())
    /// ```
    pub fn register_cache<C: CacheSource + 'static>(
        &self,
        name: &str,
        cache: Arc<C>,
    ) -> Result<(), RegistryError> {
        let ptr = Arc::as_ptr(&cache);
        self.get_or_insert(
            Kind::Cache,
            name,
            |e| &mut e.caches,
            |entry| {
                std::ptr::addr_eq(Arc::as_ptr(&entry.source), ptr)
                    .then_some(())
                    .ok_or_else(|| conflict(Kind::Cache, name))
            },
            || {
                let entry = CacheEntry {
                    source: cache,
                    any: None,
                };
                Ok((entry, ()))
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use fusebox::cache::{CacheMetrics, LruCache};

    use super::CacheSource;
    use crate::Registry;

    /// A user's cache behind their own lock, whose report says when it
    /// starts reading (then waits for that lock).
    struct Watched {
        cache: Mutex<LruCache<u32, u32, 4>>,
        reading: Mutex<mpsc::Sender<()>>,
    }

    impl CacheSource for Watched {
        fn cache_metrics(&self) -> CacheMetrics {
            let _ = self.reading.lock().unwrap().send(());
            self.cache.lock().unwrap().metrics()
        }
    }

    /// A handler holds its cache's lock and calls the registry (here the
    /// call runs on a helper thread, so that a deadlock fails the test
    /// instead of hanging it) while the health endpoint builds a report,
    /// which waits for that cache's lock. Found by a hostile review: the
    /// report read every `CacheSource` under the registry's read lock, so
    /// the registry call (its write lock) waited for the report, the report
    /// for the handler, and the handler for the call: a deadlock, here
    /// caught as the call not finishing in 30 s (it takes microseconds).
    #[test]
    fn a_report_waiting_for_a_cache_lock_holds_up_no_registry_call() {
        let registry = Arc::new(Registry::new());
        let (reading, read_started) = mpsc::channel();
        let users = Arc::new(Watched {
            cache: Mutex::new(LruCache::new()),
            reading: Mutex::new(reading),
        });
        registry
            .register_cache("users", Arc::clone(&users))
            .unwrap();
        let held = users.cache.lock().unwrap();
        let reporter = {
            let registry = Arc::clone(&registry);
            std::thread::spawn(move || registry.health())
        };
        read_started.recv().unwrap();
        let (done, call_done) = mpsc::channel();
        {
            let registry = Arc::clone(&registry);
            std::thread::spawn(move || {
                let made = registry.concurrent_cache::<u32, u32, 4, 1>("sessions");
                let _ = done.send(made.is_ok());
            });
        }
        let call = call_done.recv_timeout(Duration::from_secs(30));
        drop(held);
        assert_eq!(
            call,
            Ok(true),
            "the registry call waited for a report reading a cache"
        );
        let report = reporter.join().unwrap();
        assert_eq!(report.caches["users"].metrics, CacheMetrics::default());
    }
}
