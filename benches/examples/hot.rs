//! One hot path in a loop, for `perf stat` / `valgrind --tool=callgrind`
//! (instructions per operation: run with two counts and subtract).
//!
//!     cargo run --release -p fusebox-benches --example hot -- breaker 10000000
#![allow(clippy::cast_possible_truncation, reason = "indices")]
#![allow(
    clippy::many_single_char_names,
    reason = "short closures over key streams"
)]
use std::hint::black_box;
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use fusebox::breaker::Config;
use fusebox::breaker::Outcome;
use fusebox::bucket::{FullPolicy, Quota};
use fusebox::hash::RandomState;
use fusebox::{CircuitBreaker, ConcurrentCache, Duration, Histogram, Instant, KeyedLimiter};
use fusebox::{Clock, LruCache, TokenBucket};
use fusebox_benches::{uniform_keys, zipf_keys};

const LEN: usize = 1 << 16;

#[allow(clippy::too_many_lines, reason = "one match arm per hot path")]
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let what = args.get(1).map_or("breaker", String::as_str);
    if let "std_breaker_call" | "std_core_lazy" | "failsafe_call" | "failsafe_call_default" = what {
        let n = args
            .get(2)
            .and_then(|s| s.parse().ok())
            .unwrap_or(10_000_000);
        return adapter_call(what, n);
    }
    let n: u64 = args
        .get(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000_000);
    // Opaque to the compiler, as a `now` read from a clock is.
    let now = black_box(Instant::from_secs(1));
    let zipf = zipf_keys(8192, LEN, 3);
    let uni = uniform_keys(1000, LEN, 11);
    let z = |i: u64| zipf[i as usize & (LEN - 1)];
    let u = |i: u64| uni[i as usize & (LEN - 1)];
    let quota = Quota::per_second(1_000_000_000)
        .and_then(|q| q.with_burst(4_000_000_000))
        .expect("quota");
    let gq = governor::Quota::per_second(NonZeroU32::new(1_000_000_000).expect("nz"))
        .allow_burst(NonZeroU32::new(4_000_000_000).expect("nz"));
    match what {
        "fetch_add" => {
            let w = AtomicU64::new(0);
            (0..n).for_each(|_| _ = black_box(w.fetch_add(1, Relaxed)));
        }
        "breaker_rate" => breaker(
            Config::builder()
                .failure_rate(50)
                .window(20)
                .minimum_calls(10)
                .build(),
            n,
            now,
        ),
        "breaker" => breaker(Config::builder().consecutive_failures(5).build(), n, now),
        "bucket" => {
            let b = TokenBucket::new(quota);
            (0..n).for_each(|_| _ = black_box(black_box(&b).try_acquire(now)));
        }
        "keyed" => {
            let k = KeyedLimiter::<u64, 2048>::new_boxed(quota, FullPolicy::Reject)
                .expect("quota within the keyed range");
            (0..n).for_each(|i| _ = black_box(k.try_acquire(&u(i), now)));
        }
        "keyed_random" => {
            // The server's hasher: a per-instance secret seed, same speed.
            let k = KeyedLimiter::<u64, 2048, 1, RandomState>::with_hasher_boxed(
                [quota],
                FullPolicy::Reject,
                RandomState::new(),
            )
            .expect("quota within the keyed range");
            (0..n).for_each(|i| _ = black_box(k.try_acquire(&u(i), now)));
        }
        "keyed_governor" => {
            // fusebox's default hasher (foldhash), as `keyed` hashes.
            let clock = governor::clock::FakeRelativeClock::default();
            let k = governor::RateLimiter::dashmap_with_clock_and_hasher(
                gq,
                clock,
                fusebox::hash::FixedState::default(),
            );
            (0..n).for_each(|i| _ = black_box(k.check_key(&u(i))));
        }
        "keyed_governor_default_hasher" => {
            // governor's default hasher (std `RandomState`, SipHash).
            let clock = governor::clock::FakeRelativeClock::default();
            let k = governor::RateLimiter::dashmap_with_clock(gq, clock);
            (0..n).for_each(|i| _ = black_box(k.check_key(&u(i))));
        }
        "cc_get" | "cc_get_quiet" => {
            let mut c = ConcurrentCache::<u64, u64, 512, 8>::new_boxed();
            // `cc_get` counts lookups (opt-in), `cc_get_quiet` is the default.
            c.set_lookup_counters(what == "cc_get");
            (0..3 * LEN as u64)
                .for_each(|i| _ = c.get(&z(i)).is_none() && c.insert(z(i), 1).is_ok());
            (0..n).for_each(|i| _ = black_box(c.get(&z(i))));
        }
        "cc_insert" => {
            let c = ConcurrentCache::<u64, u64, 512, 8>::new_boxed();
            (0..3 * LEN as u64).for_each(|i| _ = c.insert(z(i), 1));
            (0..n).for_each(|i| _ = black_box(c.insert(z(i), i)));
        }
        "qc_insert" => {
            let c = quick_cache::sync::Cache::<u64, u64>::new(4096);
            (0..3 * LEN as u64).for_each(|i| c.insert(z(i), 1));
            (0..n).for_each(|i| c.insert(black_box(z(i)), i));
        }
        "qc_get" => {
            let c = quick_cache::sync::Cache::<u64, u64>::new(4096);
            (0..3 * LEN as u64).for_each(|i| c.insert(z(i), 1));
            (0..n).for_each(|i| _ = black_box(c.get(&z(i))));
        }
        "lru_get" | "lru_put" => {
            let mut c = LruCache::<u64, u64, 4096>::new_boxed();
            (0..3 * LEN as u64).for_each(|i| _ = c.put(z(i), 1));
            if what == "lru_get" {
                (0..n).for_each(|i| _ = black_box(c.get(&z(i))));
            } else {
                (0..n).for_each(|i| _ = black_box(c.put(z(i), i)));
            }
        }
        "lrurs_get" | "lrurs_put" => {
            let mut c = lru::LruCache::<u64, u64>::new(NonZeroUsize::new(4096).expect("nz"));
            (0..3 * LEN as u64).for_each(|i| _ = c.put(z(i), 1));
            if what == "lrurs_get" {
                (0..n).for_each(|i| _ = black_box(c.get(&z(i))));
            } else {
                (0..n).for_each(|i| _ = black_box(c.put(z(i), i)));
            }
        }
        "histogram" => {
            let h: Box<Histogram> = Box::new(Histogram::new());
            (0..n).for_each(|i| h.record(black_box(z(i) >> 44)));
        }
        other => panic!("unknown hot path {other}"),
    }
}

/// `n` closed calls recorded as fast successes.
fn breaker(config: Result<Config, fusebox::breaker::ConfigError>, n: u64, now: Instant) {
    let b = CircuitBreaker::new(config.expect("config"));
    for _ in 0..n {
        let p = black_box(&b).try_acquire(now).expect("closed");
        black_box(p.record(Outcome::Success, now, Duration::ZERO).is_some());
    }
}

/// `n` calls on a ready future, each polled once with a no-op waker:
/// fusebox-std's `Breaker::call` or failsafe's futures API.
fn adapter_call(what: &str, n: u64) {
    use failsafe::futures::CircuitBreaker as _;
    use std::future::{ready, Future};

    use std::task::{Context, Poll, Waker};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let _entered = rt.enter();
    let mut cx = Context::from_waker(Waker::noop());
    if what == "std_breaker_call" {
        let core = std::sync::Arc::new(CircuitBreaker::new(
            Config::builder()
                .consecutive_failures(5)
                .build()
                .expect("config"),
        ));
        let breaker = fusebox_std::policy::Breaker::new("hot", core);
        for _ in 0..n {
            let call = std::pin::pin!(black_box(&breaker).call(ready(Ok::<u64, ()>(1))));
            black_box(matches!(call.poll(&mut cx), Poll::Ready(Ok(1))));
        }
    } else if what == "std_core_lazy" {
        // What `Breaker::call` does besides being a future: the core's
        // lazily clocked acquire and record.
        let core = CircuitBreaker::new(
            Config::builder()
                .consecutive_failures(5)
                .build()
                .expect("config"),
        );
        let clock = fusebox_std::TokioClock::new();
        for _ in 0..n {
            let permit = black_box(&core)
                .try_acquire_with(|| clock.now())
                .expect("closed");
            let t = permit.record_with(Outcome::Success, fusebox::Duration::ZERO, || clock.now());
            black_box(t.is_some());
        }
    } else if what == "failsafe_call_default" {
        // failsafe's default policy: a success rate over a time window or
        // 5 consecutive failures (two clock reads per success).
        let fs = failsafe::Config::new().build();
        for _ in 0..n {
            let call = std::pin::pin!(black_box(&fs).call(ready(Ok::<u64, ()>(1))));
            black_box(matches!(call.poll(&mut cx), Poll::Ready(Ok(1))));
        }
    } else {
        // Configured as the fusebox breaker above: 5 consecutive failures.
        let fs = failsafe::Config::new()
            .failure_policy(failsafe::failure_policy::consecutive_failures(
                5,
                failsafe::backoff::constant(std::time::Duration::from_mins(1)),
            ))
            .build();
        for _ in 0..n {
            let call = std::pin::pin!(black_box(&fs).call(ready(Ok::<u64, ()>(1))));
            black_box(matches!(call.poll(&mut cx), Poll::Ready(Ok(1))));
        }
    }
}
