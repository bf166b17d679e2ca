//! Prints `size_of` for every public core type and the bytes per entry of
//! the caches and the keyed limiter, as Markdown (used by `report.py`).
use std::mem::size_of;

use fusebox::breaker::{Config, Metrics, Outcome, Permit, Rejected, Snapshot, State, Transition};
use fusebox::breaker::{ConfigBuilder, ConfigError, SnapshotError};
use fusebox::bucket::{
    AcquireError, BucketSnapshot, FullPolicy, InsufficientCapacity, KeyedError, KeyedMetrics,
    QuotaError,
};
use fusebox::bucket::{Quota, RateLimited};
use fusebox::cache::{CacheMetrics, Contended, Displaced};
use fusebox::histogram::PercentileError;
use fusebox::{
    CircuitBreaker, ConcurrentCache, Duration, Histogram, Instant, KeyedLimiter, LruCache,
    TokenBucket,
};

macro_rules! rows {
    ($($t:ty),* $(,)?) => { $( println!("| `{}` | {} |", stringify!($t), size_of::<$t>()); )* };
}

macro_rules! per_entry {
    ($t:ty, $n:expr) => {
        #[allow(clippy::cast_precision_loss, reason = "a ratio")]
        let per = size_of::<$t>() as f64 / $n as f64;
        println!(
            "| `{}` | {} | {} | {:.1} |",
            stringify!($t),
            size_of::<$t>(),
            $n,
            per
        );
    };
}

fn main() {
    println!("| type | bytes |\n|---|---:|");
    rows!(
        Instant, Duration, Config, ConfigBuilder, ConfigError, CircuitBreaker, Permit<'static>,
        Outcome, State, Transition, Rejected, Metrics, Snapshot, SnapshotError,
        Quota, QuotaError, TokenBucket, BucketSnapshot, RateLimited, InsufficientCapacity,
        AcquireError, FullPolicy, KeyedError, KeyedMetrics, CacheMetrics, Contended,
        Displaced<u64, u64>, PercentileError, Histogram,
    );
    println!("\n| container | bytes | entries | bytes per entry |\n|---|---:|---:|---:|");
    per_entry!(LruCache<u64, u64, 4096>, 4096);
    per_entry!(LruCache<u32, u32, 256>, 256);
    per_entry!(ConcurrentCache<u64, u64, 512, 8>, 4096);
    per_entry!(ConcurrentCache<u32, u32, 64, 4>, 256);
    per_entry!(KeyedLimiter<u64, 2048>, 2048);
    per_entry!(KeyedLimiter<u32, 256>, 256);
}
