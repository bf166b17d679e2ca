//! Circuit breaker: the closed path (acquire + record success) and the
//! open path (rejection), fusebox against failsafe configured the same way
//! (5 consecutive failures, open for an hour). The closed path reads no
//! clock in either (fusebox is given a pre-read `now` it does not need
//! there). The open path needs the time in both: failsafe reads
//! `Instant::now()` itself, so its row is compared with fusebox reading
//! `std::time::Instant` on every call; the pre-read row is shown too.
//! failsafe's default policy (`Config::new()`: a success rate over a time
//! window *or* 5 consecutive failures) reads the clock twice on every
//! success; its row is context, not the comparison.
use std::hint::black_box;
use std::time::Instant as StdInstant;

use criterion::Criterion;
use fusebox::breaker::{Config, Outcome};
use fusebox::{CircuitBreaker, Duration, Instant};
use fusebox_benches::{fb_now, pair};

/// failsafe with fusebox's `consecutive()` semantics: 5 consecutive
/// failures open it for `open_for` (a constant backoff).
pub type FailsafeConsecutive = failsafe::StateMachine<
    failsafe::failure_policy::ConsecutiveFailures<failsafe::backoff::Constant>,
    (),
>;

/// failsafe tripping after 5 consecutive failures, open for `open_for`.
pub fn failsafe_consecutive(open_for: std::time::Duration) -> FailsafeConsecutive {
    failsafe::Config::new()
        .failure_policy(failsafe::failure_policy::consecutive_failures(
            5,
            failsafe::backoff::constant(open_for),
        ))
        .build()
}

fn consecutive() -> CircuitBreaker {
    CircuitBreaker::new(
        Config::builder()
            .consecutive_failures(5)
            .open_for(Duration::from_secs(3_600))
            .build()
            .expect("config"),
    )
}

fn failure_rate() -> CircuitBreaker {
    CircuitBreaker::new(
        Config::builder()
            .failure_rate(50)
            .window(20)
            .minimum_calls(10)
            .open_for(Duration::from_secs(3_600))
            .build()
            .expect("config"),
    )
}

/// A time window of 60 s in 4 buckets, `failure_count(5)`: a closed
/// success takes the consecutive policy's fast path.
fn time_window_count() -> CircuitBreaker {
    CircuitBreaker::new(
        Config::builder()
            .time_window(Duration::from_secs(60), 4)
            .failure_count(5)
            .open_for(Duration::from_secs(3_600))
            .build()
            .expect("config"),
    )
}

/// A time window of 60 s in 4 buckets with `failure_rate(50)`: every
/// closed success is counted in its bucket and the window tallied.
fn time_window_rate() -> CircuitBreaker {
    CircuitBreaker::new(
        Config::builder()
            .time_window(Duration::from_secs(60), 4)
            .failure_rate(50)
            .minimum_calls(10)
            .open_for(Duration::from_secs(3_600))
            .build()
            .expect("config"),
    )
}

/// One closed-path call. The transition is consumed the way a caller does,
/// by branching on it: `black_box` of the whole 16-byte `Option<Transition>`
/// would add a stack spill and copy that no caller pays.
#[inline]
fn closed_call(breaker: &CircuitBreaker, now: Instant) {
    let permit = breaker.try_acquire(now).expect("closed");
    black_box(
        permit
            .record(Outcome::Success, now, Duration::ZERO)
            .is_some(),
    );
}

fn timed(iters: u64, mut f: impl FnMut()) -> std::time::Duration {
    let t = StdInstant::now();
    for _ in 0..iters {
        f();
    }
    t.elapsed()
}

pub fn bench(c: &mut Criterion) {
    // Opaque to the compiler, as a `now` read from a clock is: a literal
    // would let it fold what the core computes from `now`.
    let now = black_box(Instant::from_secs(1));
    let fb = consecutive();
    let fb_rate = failure_rate();
    let fb_tw = time_window_count();
    let fb_tw_rate = time_window_rate();
    let fs = failsafe_consecutive(std::time::Duration::from_hours(1));
    let fs_default = failsafe::Config::new().build();
    let mut g = c.benchmark_group("breaker");
    g.bench_function("fusebox_closed", |b| {
        b.iter_custom(|n| timed(n, || closed_call(black_box(&fb), now)));
    });
    g.bench_function("fusebox_closed_failure_rate", |b| {
        b.iter_custom(|n| timed(n, || closed_call(black_box(&fb_rate), now)));
    });
    g.bench_function("fusebox_closed_time_window", |b| {
        b.iter_custom(|n| timed(n, || closed_call(black_box(&fb_tw), now)));
    });
    g.bench_function("fusebox_closed_time_window_rate", |b| {
        b.iter_custom(|n| timed(n, || closed_call(black_box(&fb_tw_rate), now)));
    });
    g.bench_function("failsafe_closed", |b| {
        b.iter_custom(|n| {
            timed(n, || {
                assert!(black_box(&fs).is_call_permitted());
                fs.on_success();
            })
        });
    });
    g.bench_function("failsafe_closed_default_policy", |b| {
        b.iter_custom(|n| {
            timed(n, || {
                assert!(black_box(&fs_default).is_call_permitted());
                fs_default.on_success();
            })
        });
    });

    let fb_open = consecutive();
    for _ in 0..5 {
        let p = fb_open.try_acquire(now).expect("closed");
        p.record(Outcome::Failure, now, Duration::ZERO);
    }
    assert!(fb_open.try_acquire(now).is_err());
    // Opened at a `now` read from the clock the timed calls read.
    let start = StdInstant::now();
    let fb_open_std = consecutive();
    for _ in 0..5 {
        let at = fb_now(start);
        let p = fb_open_std.try_acquire(at).expect("closed");
        p.record(Outcome::Failure, at, Duration::ZERO);
    }
    assert!(fb_open_std.try_acquire(fb_now(start)).is_err());
    let fs_open = failsafe_consecutive(std::time::Duration::from_hours(1));
    g.bench_function("fusebox_open_reject", |b| {
        b.iter_custom(|n| timed(n, || assert!(black_box(&fb_open).try_acquire(now).is_err())));
    });
    g.bench_function("fusebox_open_reject_std_now", |b| {
        b.iter_custom(|n| {
            timed(n, || {
                assert!(black_box(&fb_open_std).try_acquire(fb_now(start)).is_err());
            })
        });
    });
    g.bench_function("failsafe_open_reject", |b| {
        b.iter_custom(|n| {
            while fs_open.is_call_permitted() {
                fs_open.on_error();
            }
            timed(n, || assert!(!black_box(&fs_open).is_call_permitted()))
        });
    });
    g.finish();

    let mut g = c.benchmark_group("breaker_2t");
    g.bench_function("fusebox_closed", |b| {
        b.iter_custom(|n| {
            pair(n, |_, n| {
                for _ in 0..n {
                    closed_call(black_box(&fb), now);
                }
            })
        });
    });
    g.bench_function("failsafe_closed", |b| {
        b.iter_custom(|n| {
            pair(n, |_, n| {
                for _ in 0..n {
                    assert!(black_box(&fs).is_call_permitted());
                    fs.on_success();
                }
            })
        });
    });
    g.finish();
}
