//! Real threads racing on one bucket and one keyed limiter, on a shared
//! virtual clock: the admitted count must equal what the quota allows,
//! exactly. Bounded in threads, steps and time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Barrier;
use std::thread;

use fusebox::bucket::{FullPolicy, KeyedLimiter, Quota, TokenBucket};
use fusebox::{Duration, Instant};

const THREADS: usize = 4;
const ATTEMPTS: usize = if cfg!(miri) { 20 } else { 20_000 };

#[test]
fn threads_never_take_more_than_the_quota() {
    // 1 000 per second, burst 50; the clock advances 10 ms per "tick".
    let bucket = TokenBucket::new(Quota::per_second(1_000).unwrap().with_burst(50).unwrap());
    let clock = AtomicU64::new(0);
    let admitted = AtomicU64::new(0);
    let barrier = Barrier::new(THREADS);
    let ticks = 20u64;
    thread::scope(|s| {
        for t in 0..THREADS {
            let (bucket, clock, admitted, barrier) = (&bucket, &clock, &admitted, &barrier);
            s.spawn(move || {
                barrier.wait();
                for i in 0..ATTEMPTS {
                    // Time moves on only over an empty bucket, so no refill
                    // is capped away by the burst: then admitted + left over
                    // must equal burst + rate · elapsed exactly.
                    if t == 0 && i % (ATTEMPTS / ticks as usize) == 0 {
                        let now = clock.load(Ordering::SeqCst);
                        if bucket.available(Instant::from_micros(now)) == 0 {
                            clock.store((now + 10_000).min(ticks * 10_000), Ordering::SeqCst);
                        }
                    }
                    let now = Instant::from_micros(clock.load(Ordering::SeqCst));
                    if bucket.try_acquire(now).is_ok() {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let elapsed = clock.load(Ordering::SeqCst);
    let limit = 50 + elapsed * 1_000 / 1_000_000;
    let got = admitted.load(Ordering::Relaxed);
    assert!(got <= limit, "{got} admitted > {limit}");
    // Whatever the threads left is still there: no token was lost either.
    let end = Instant::from_micros(elapsed);
    let mut left = 0;
    while bucket.try_acquire(end).is_ok() {
        left += 1;
    }
    assert_eq!(got + left, limit);
}

#[test]
fn keyed_threads_take_exactly_each_keys_burst() {
    let limiter: KeyedLimiter<u32, 64> =
        KeyedLimiter::new(Quota::per_minute(10).unwrap(), FullPolicy::Reject)
            .expect("quota within the keyed range");
    let per_key: Vec<AtomicU64> = (0..8).map(|_| AtomicU64::new(0)).collect();
    let barrier = Barrier::new(THREADS);
    let now = Instant::from_secs(5) + Duration::from_micros(3);
    thread::scope(|s| {
        for t in 0..THREADS {
            let (limiter, per_key, barrier) = (&limiter, &per_key, &barrier);
            s.spawn(move || {
                barrier.wait();
                for i in 0..ATTEMPTS / 10 {
                    let key = ((i + t) % 8) as u32;
                    if limiter.try_acquire(&key, now).is_ok() {
                        per_key[key as usize].fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    for (key, n) in per_key.iter().enumerate() {
        let n = n.load(Ordering::Relaxed);
        assert!(n <= 10, "key {key}: {n} > burst");
        let key = key as u32;
        let mut left = 0;
        while limiter.try_acquire(&key, now).is_ok() {
            left += 1;
        }
        assert_eq!(n + left, 10, "key {key}: no token lost");
    }
    assert_eq!(limiter.metrics().keys, 8, "no key inserted twice");
}
