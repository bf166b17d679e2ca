//! Real threads racing on one bucket and one keyed limiter, on a shared
//! virtual clock: the admitted count must equal what the quota allows,
//! exactly. Bounded in threads, steps and time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Barrier;
use std::thread;

use fusebox::bucket::{AcquireError, FullPolicy, KeyedLimiter, Quota, TokenBucket};
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

/// Deciders racing a thread that switches the quota back and forth between
/// two of different scales, bursts and rates, on a shared virtual clock.
/// At each tick the switch races the deciders draining the bucket at the
/// same `now`, and time moves on only once they have drained it, so no
/// refill is capped away and no level is ever above the smaller burst:
/// the deciders must take exactly the refill of the quotas in force, tick
/// by tick (less at most the fractions of a token left over or rounded
/// away by the changes), and never report a burst that is neither quota's.
#[test]
fn threads_racing_quota_changes_take_exactly_the_refill() {
    // 1 000/s, burst 50 (scale 1) and 7 000 per 3 s, burst 10 (scale 7):
    // 1 and 7/3 tokens per 1 ms tick.
    let a = Quota::per_second(1_000).unwrap().with_burst(50).unwrap();
    let b = Quota::new(7_000, Duration::from_secs(3))
        .unwrap()
        .with_burst(10)
        .unwrap();
    let bucket = TokenBucket::new(a);
    bucket.try_acquire_n(50, Instant::ZERO).unwrap(); // start empty
    let clock = AtomicU64::new(0);
    let admitted = AtomicU64::new(0);
    let done = std::sync::atomic::AtomicBool::new(false);
    let barrier = Barrier::new(THREADS + 1);
    let tick = 1_000; // µs
    let ticks: u64 = if cfg!(miri) { 6 } else { 1_000 };
    let drained = |now| {
        while bucket.available(Instant::from_micros(now)) >= 2 {
            thread::yield_now();
        }
    };
    thread::scope(|s| {
        for _ in 0..THREADS {
            let (bucket, clock, admitted, barrier, done) =
                (&bucket, &clock, &admitted, &barrier, &done);
            s.spawn(move || {
                barrier.wait();
                while !done.load(Ordering::SeqCst) {
                    let now = Instant::from_micros(clock.load(Ordering::SeqCst));
                    match bucket.try_acquire_n(2, now) {
                        Ok(()) => _ = admitted.fetch_add(2, Ordering::Relaxed),
                        Err(AcquireError::InsufficientCapacity(e)) => {
                            panic!("2 tokens over a burst of {}", e.burst)
                        }
                        Err(AcquireError::RateLimited(_)) => {}
                        Err(other) => panic!("unexpected refusal: {other}"),
                    }
                }
            });
        }
        barrier.wait();
        for k in 0..ticks {
            let now = k * tick;
            // In force over [now, now + tick): b on even ticks, a on odd.
            bucket.set_quota(if k % 2 == 0 { b } else { a }, Instant::from_micros(now));
            drained(now);
            clock.store(now + tick, Ordering::SeqCst);
        }
        drained(ticks * tick);
        done.store(true, Ordering::SeqCst);
    });
    // Refill: ticks/2 of b (7/3 each) and ticks/2 of a (1 each).
    let refill = ticks / 2 * 7 / 3 + ticks / 2;
    let got = admitted.load(Ordering::Relaxed);
    assert!(got <= refill, "{got} admitted > {refill} refilled");
    // Left over: under 2 tokens; rounded away: under 1/1 000 of a token at
    // each change from b to a.
    assert!(
        got + 2 + ticks / 2_000 + 1 >= refill,
        "{got} admitted, {refill} refilled"
    );
    // Alone now: a full bucket of the last quota, then its rate exactly.
    let last = bucket.quota();
    let end = Instant::from_micros(ticks * tick) + Duration::from_secs(60);
    assert_eq!(bucket.available(end), last.burst());
    bucket.try_acquire_n(last.burst(), end).unwrap();
    assert_eq!(
        bucket.try_acquire(end).unwrap_err().retry_after,
        last.replenish_interval()
    );
}
