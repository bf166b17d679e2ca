//! [`QuoteCache`]: what a keyed limit's `RateLimit` fields derive from its
//! quota, kept between requests.
//!
//! Deriving them reads the quota back from the limiter (which re-derives
//! its GCRA parameters) and divides: a handful of 64-bit divisions that
//! cost a server about 1.5 % of its throughput on the minimal axum
//! benchmark (benches/analysis.md, "HTTP"). The limiter's
//! [`quota_version`](fusebox::bucket::KeyedLimiter::quota_version) says
//! with one load whether the quota is still the one they were derived
//! from; if so, they are read from here instead.
//!
//! The cache is a sequence lock over atomics: readers never write, so
//! they never contend; one writer at a time (the others skip the write,
//! it is only a cache), and a reader that overlaps a write misses and
//! derives the figures itself.

use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

use fusebox::bucket::{KeyedLeft, Quota};
use fusebox::Duration;

use crate::tower::headers::{ceil_secs, quota_qw, Quoted};

/// The figures of one quota that every quote under it shares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Base {
    burst: u32,
    /// `q` and `w` of `RateLimit-Policy`.
    limit: u64,
    window: u64,
}

impl Base {
    /// `quota`'s figures.
    pub(super) fn of(quota: &Quota) -> Self {
        let (limit, window) = quota_qw(quota);
        Self {
            burst: quota.burst(),
            limit,
            window,
        }
    }

    /// The fields of a key whose admission `left` it so: its whole
    /// tokens, and its exact time until full (rounded up to a second).
    pub(super) fn quote(&self, left: KeyedLeft) -> Quoted {
        let missing = self.burst.saturating_sub(left.tokens);
        Quoted {
            limit: self.limit,
            window: self.window,
            remaining: u64::from(left.tokens),
            reset: ceil_secs(left.until_full),
            full: missing == 1,
        }
    }

    /// The fields of a key its own bucket refused, `retry_after` before
    /// its next token: none left for as long as the `Retry-After` they
    /// come with says (see [`Quoted::refused`]).
    pub(super) fn refused(&self, retry_after: Duration) -> Quoted {
        Quoted {
            limit: self.limit,
            window: self.window,
            remaining: 0,
            reset: crate::tower::headers::retry_secs(retry_after),
            full: false,
        }
    }
}

/// One [`Base`] and the quota version it was derived under.
#[derive(Debug)]
pub(super) struct QuoteCache {
    /// Even: the slot is stable; odd: a writer is in it.
    seq: AtomicU32,
    /// The quota version plus one; `0`: nothing kept yet.
    version: AtomicU64,
    burst: AtomicU32,
    limit: AtomicU64,
    window: AtomicU64,
}

impl QuoteCache {
    pub(super) const fn new() -> Self {
        Self {
            seq: AtomicU32::new(0),
            version: AtomicU64::new(0),
            burst: AtomicU32::new(0),
            limit: AtomicU64::new(0),
            window: AtomicU64::new(0),
        }
    }

    /// The base kept for quota `version`, if that is the one kept and no
    /// write overlapped this read.
    #[inline]
    pub(super) fn get(&self, version: u32) -> Option<Base> {
        let before = self.seq.load(Ordering::Acquire);
        if before & 1 != 0 {
            return None;
        }
        let kept = self.version.load(Ordering::Relaxed);
        let base = Base {
            burst: self.burst.load(Ordering::Relaxed),
            limit: self.limit.load(Ordering::Relaxed),
            window: self.window.load(Ordering::Relaxed),
        };
        // The loads above happen before the sequence is read again: a
        // write that began meanwhile changed it.
        fence(Ordering::Acquire);
        let stable = self.seq.load(Ordering::Relaxed) == before;
        (stable && kept == u64::from(version) + 1).then_some(base)
    }

    /// Keeps `base` as quota `version`'s, unless another writer is at it
    /// (then that one's is kept: either is right for its own version).
    pub(super) fn put(&self, version: u32, base: Base) {
        let before = self.seq.load(Ordering::Relaxed);
        if before & 1 != 0
            || self
                .seq
                // Acquire: this writer's stores come after the previous
                // writer's (whose even sequence it read), or a reader
                // could find this version with the previous figures.
                .compare_exchange(
                    before,
                    before.wrapping_add(1),
                    Ordering::Acquire,
                    Ordering::Relaxed,
                )
                .is_err()
        {
            return;
        }
        // The odd sequence is visible before any of the stores below.
        fence(Ordering::Release);
        self.version
            .store(u64::from(version) + 1, Ordering::Relaxed);
        self.burst.store(base.burst, Ordering::Relaxed);
        self.limit.store(base.limit, Ordering::Relaxed);
        self.window.store(base.window, Ordering::Relaxed);
        self.seq.store(before.wrapping_add(2), Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    use super::*;

    /// A base whose every field is derived from `n`: a torn read mixes two.
    fn base(n: u32) -> Base {
        Base {
            burst: n,
            limit: u64::from(n) * 3,
            window: u64::from(n) * 5,
        }
    }

    #[test]
    fn a_base_is_kept_for_its_own_version_only() {
        let cache = QuoteCache::new();
        assert_eq!(cache.get(0), None, "nothing kept yet, even for version 0");
        cache.put(0, base(1));
        assert_eq!(cache.get(0), Some(base(1)));
        assert_eq!(cache.get(1), None);
        cache.put(u32::MAX, base(2));
        assert_eq!(cache.get(u32::MAX), Some(base(2)), "the last version too");
        assert_eq!(cache.get(0), None);
    }

    #[test]
    fn readers_never_see_a_torn_base() {
        let cache = Arc::new(QuoteCache::new());
        let done = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..2)
            .map(|w| {
                let (cache, done) = (Arc::clone(&cache), Arc::clone(&done));
                std::thread::spawn(move || {
                    let mut n = w;
                    while !done.load(Ordering::Relaxed) {
                        n = (n + 1) % 8;
                        cache.put(n, base(n));
                    }
                })
            })
            .collect();
        // Read until many reads have found a base (the writers may start
        // late on a loaded machine), for at most a minute.
        let (mut hits, start) = (0_u32, std::time::Instant::now());
        while hits < 100_000 && start.elapsed() < std::time::Duration::from_secs(60) {
            for version in 0..8 {
                if let Some(seen) = cache.get(version) {
                    assert_eq!(seen, base(version), "a torn or misfiled base");
                    hits += 1;
                }
            }
        }
        done.store(true, Ordering::Relaxed);
        for writer in writers {
            writer.join().unwrap();
        }
        assert!(
            hits > 0,
            "the readers never found a base: the test saw nothing"
        );
    }

    #[test]
    fn quotes_match_the_quota_they_come_from() {
        let quota = Quota::per_second(10).unwrap().with_burst(4).unwrap();
        let base = Base::of(&quota);
        let left = |tokens, ms| KeyedLeft {
            tokens,
            until_full: Duration::from_millis(ms),
        };
        let full: Vec<bool> = (0..=4_u32)
            .map(|tokens| base.quote(left(tokens, 100 * u64::from(4 - tokens))).full)
            .collect();
        assert_eq!(full, [false, false, false, true, false]);
        // Full in 250 ms, rounded up to 1 s.
        let q = base.quote(left(1, 250));
        assert_eq!((q.limit, q.window, q.remaining, q.reset), (10, 1, 1, 1));
        let slow = Base::of(&Quota::per_minute(6).unwrap());
        assert_eq!(
            slow.quote(left(0, 55_000)).reset,
            55,
            "the time the limiter reports, not the whole tokens' 60 s"
        );
    }

    #[test]
    fn a_refused_key_has_nothing_left_until_its_retry_after() {
        // draft-ietf-httpapi-ratelimit-headers § 6 (-10 and -11): a
        // Retry-After SHOULD NOT reference a point earlier than `t`; and
        // `t` at least Retry-After keeps the fields true. So they are
        // equal, whatever the burst left to refill after the next token.
        for quota in [
            Quota::per_hour(1).unwrap(),
            Quota::per_hour(1).unwrap().with_burst(2).unwrap(),
            Quota::per_second(3).unwrap(),
        ] {
            let base = Base::of(&quota);
            for (wait, secs) in [(1_000_000, 1), (333_333, 1), (1_000_001, 2), (0, 1)] {
                let q = base.refused(Duration::from_micros(wait));
                assert_eq!(
                    (q.remaining, q.reset, q.full),
                    (0, secs, false),
                    "{quota:?} {wait}"
                );
            }
        }
    }
}
