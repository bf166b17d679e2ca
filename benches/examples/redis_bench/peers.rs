//! The two peers, written as a client typically writes them, on the same
//! `redis` crate connection the fusebox backend uses (its
//! [`RedisConnection`]: a multiplexed `ConnectionManager`).

use std::time::{Duration, Instant};

use fusebox_std::backend::RedisConnection;

use crate::BoxError;

/// The classic fixed window: `INCR key`; when the count is 1 (a new
/// window), `EXPIRE key window`. Admitted while the count is at most
/// `limit`. Atomic per request (one `INCR`), but it allows up to twice
/// the limit across a window edge, and a client that dies between the
/// two commands leaves a key that never expires.
#[derive(Clone, Copy, Debug)]
pub struct FixedWindow {
    /// Requests admitted per window.
    pub limit: u64,
    /// The window, whole seconds (`EXPIRE`).
    pub window_secs: u64,
}

impl FixedWindow {
    /// One decision on `key`: one round trip, two at the start of a
    /// window.
    pub async fn decide(&self, conn: &mut RedisConnection, key: &str) -> Result<bool, BoxError> {
        let count: u64 = redis::cmd("INCR").arg(key).query_async(conn).await?;
        if count == 1 {
            let () = redis::cmd("EXPIRE")
                .arg(key)
                .arg(self.window_secs)
                .query_async(conn)
                .await?;
        }
        Ok(count <= self.limit)
    }

    /// The most a correct fixed window admits over `elapsed`: windows
    /// start at a key's first `INCR` and last `window_secs` each, so at
    /// most `⌊elapsed / window⌋ + 1` of them begin within the run.
    pub fn bound(&self, elapsed: Duration) -> u64 {
        self.limit * (elapsed.as_secs() / self.window_secs + 1)
    }
}

/// GCRA done from the client: `GET key` (the theoretical arrival time,
/// ns on the client's clock), decide, then `SET key tat PX ttl` when
/// admitted. Two round trips per admitted request, one per refused one,
/// and not atomic: requests that read the same `tat` before either
/// writes are all admitted (the over-admissions this benchmark counts).
#[derive(Clone, Copy, Debug)]
pub struct ClientGcra {
    /// The emission interval, ns (one token every `interval_ns`).
    pub interval_ns: u64,
    /// `burst × interval_ns`.
    pub tolerance_ns: u64,
    /// The clock's origin (shared by every task of a run).
    pub epoch: Instant,
}

impl ClientGcra {
    /// `rate` per second with a burst of `burst`, ns on a clock from
    /// `epoch`.
    pub fn new(rate: u64, burst: u64, epoch: Instant) -> Self {
        let interval_ns = 1_000_000_000 / rate.max(1);
        Self {
            interval_ns,
            tolerance_ns: interval_ns * burst,
            epoch,
        }
    }

    /// One decision on `key`.
    pub async fn decide(&self, conn: &mut RedisConnection, key: &str) -> Result<bool, BoxError> {
        let stored: Option<u64> = redis::cmd("GET").arg(key).query_async(conn).await?;
        // One second past the epoch, so that a fresh key (tat = now) never
        // goes below zero.
        let now = u64::try_from(self.epoch.elapsed().as_nanos())? + 1_000_000_000;
        let tat = stored.unwrap_or(now).max(now) + self.interval_ns;
        if tat - now > self.tolerance_ns {
            return Ok(false);
        }
        let ttl_ms = (tat - now).div_ceil(1_000_000).max(1);
        let () = redis::cmd("SET")
            .arg(key)
            .arg(tat)
            .arg("PX")
            .arg(ttl_ms)
            .query_async(conn)
            .await?;
        Ok(true)
    }
}
