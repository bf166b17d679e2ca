//! Fixed-capacity caches.

pub mod concurrent;

pub use concurrent::{ConcurrentCache, Contended};

/// Cache counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct CacheMetrics {
    /// Lookups that found a live entry.
    pub hits: u64,
    /// Lookups that found nothing (or only an expired entry).
    pub misses: u64,
    /// Entries written (new or replaced).
    pub inserts: u64,
    /// Entries pushed out to make room.
    pub evictions: u64,
    /// Entries dropped because their time to live had passed.
    pub expirations: u64,
    /// Writes given up because another writer held the set
    /// ([`ConcurrentCache`] only).
    pub contended: u64,
}
