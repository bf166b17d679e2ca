//! "Over any interval of length `T`, a bucket admits at most
//! `burst + ⌊rate · T⌋` tokens, whatever the interleaving of callers" (the
//! `bucket` module docs), with real threads: four threads share one
//! `TokenBucket` and one `KeyedLimiter` whose few slots hold fewer keys
//! than are asked for (so keys are evicted and inserted while others
//! charge them), each thread reading a shared virtual clock with its own
//! lag (up to a quarter of the 32-bit words' ~1.05 s backward tolerance,
//! the whole history within it on those words), and log
//! what they were granted. The union of the logs must meet the curve,
//! per bucket and per key (`common::check_curve`: an exact token bucket
//! over the admissions sorted by `now`, nothing from the code under
//! test). Whatever the schedule, the promise holds, so the outcome is
//! deterministic.
#![cfg(not(miri))]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Barrier;
use std::thread;

use fusebox::bucket::{FullPolicy, KeyedError, KeyedLimiter, Quota, TokenBucket};
use fusebox::{Duration, Instant};

use crate::common::{check_curve, Rng, NARROW, STALE};

const THREADS: u64 = 4;
const CALLS: usize = 20_000;
const KEYS: usize = 6;

/// Per thread: the bucket's admissions and each key's.
type Log = (Vec<(u64, u32)>, Vec<Vec<(u64, u32)>>);

fn race(tokens: u32, period: u64, burst: u32, start: u64) {
    let quota = Quota::new(tokens, Duration::from_micros(period))
        .unwrap()
        .with_burst(burst)
        .unwrap();
    let bucket = TokenBucket::new(quota);
    let limiter: KeyedLimiter<u32, 4> = KeyedLimiter::new(quota, FullPolicy::Reject).unwrap();
    let clock = AtomicU64::new(start);
    let barrier = Barrier::new(THREADS as usize);
    // A thread may be descheduled between its reading and its call for
    // any time, so its `now` may be behind calls made meanwhile by as much
    // as the clock moves in that time. The 32-bit words promise only
    // ~1.05 s of backward tolerance: there the whole history spans 0.5 s
    // of virtual time (plus the lag), so every reading is within it of
    // every call. The 64-bit words' tolerance is years.
    let advance = if NARROW {
        500_000 / (THREADS * CALLS as u64)
    } else {
        (period / u64::from(tokens)).max(1) / 2
    };
    let logs: Vec<Log> = thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (bucket, limiter, clock, barrier) = (&bucket, &limiter, &clock, &barrier);
                s.spawn(move || {
                    let mut rng = Rng(start ^ (t + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                    let mut mine: Log = (Vec::new(), vec![Vec::new(); KEYS]);
                    barrier.wait();
                    for _ in 0..CALLS {
                        let base = clock.fetch_add(rng.below(advance + 1), Ordering::Relaxed);
                        // This thread's reading: behind the shared clock
                        // by up to a quarter of the 32-bit tolerance.
                        let now = base.saturating_sub(rng.below(STALE / 4));
                        let n = if rng.below(6) == 0 {
                            1 + rng.below(u64::from(burst)) as u32
                        } else {
                            1
                        };
                        if bucket.try_acquire_n(n, Instant::from_micros(now)).is_ok() {
                            mine.0.push((now, n));
                        }
                        let k = rng.below(KEYS as u64) as usize;
                        match limiter.try_acquire_n(&(k as u32), n, Instant::from_micros(now)) {
                            Ok(()) => mine.1[k].push((now, n)),
                            Err(KeyedError::RateLimited(_) | KeyedError::TableFull) => {}
                            Err(e) => panic!("{e:?}"),
                        }
                    }
                    mine
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let what = format!("{tokens}/{period} µs burst {burst} from {start}");
    let mut all = Vec::new();
    let mut keyed = vec![Vec::new(); KEYS];
    for (b, ks) in logs {
        all.extend(b);
        for (k, v) in ks.into_iter().enumerate() {
            keyed[k].extend(v);
        }
    }
    assert!(!all.is_empty());
    check_curve(&format!("bucket {what}"), all, tokens, period, burst);
    for (k, v) in keyed.into_iter().enumerate() {
        check_curve(&format!("key {k} {what}"), v, tokens, period, burst);
    }
    let m = limiter.metrics();
    assert!(m.keys <= 4, "{m:?}");
}

#[test]
fn racing_threads_meet_the_arrival_curve() {
    for (tokens, period, burst) in [(1_000u32, 1_000_000u64, 20u32), (3, 7, 5), (1, 1_000, 1)] {
        for start in [0, (1 << 31) - 1_000, 1 << 40] {
            race(tokens, period, burst, start);
        }
    }
}
