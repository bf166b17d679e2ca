//! The std adapter: fusebox-std's `Breaker::call` and `Policy::call`
//! (breaker + retry, no waits) on an immediately ready future, against
//! failsafe's futures API and tower-resilience's circuit breaker service,
//! with the core's acquire + record and two `TokioClock` reads as the
//! baseline (what `Breaker::call` does besides being a future).
//!
//! # Executor
//!
//! Every future here completes on its first poll (no I/O, no timer), so
//! each is polled exactly once with a no-op waker, made once outside the
//! timing loop: the rows measure the breakers, not a scheduler. The calls
//! run inside an entered current-thread tokio runtime (entered once,
//! outside the loop) so that anything needing tokio's context finds it.
//! The owned-permit form of the baseline (an `Arc` clone per call, as a
//! tower response future needs), the lazy-clock form (`try_acquire_with` +
//! `record_with`: no clock read on the closed path, what `Breaker::call`
//! does when no slow-call rule or timeout needs the duration) and two
//! `TokioClock` reads alone are rows too. One control row drives
//! `Breaker::call` through `Runtime::block_on` per call, to show what a
//! real executor adds per call.
//!
//! failsafe is configured as the fusebox breakers are (5 consecutive
//! failures, open for 60 s: no clock read on a closed success in either);
//! its default policy (`Config::new()`, which also keeps a success rate
//! over a time window and reads the clock twice per success) is a context
//! row, not the comparison.
use std::future::{ready, Future};
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Instant as StdInstant;

use criterion::Criterion;
use failsafe::futures::CircuitBreaker as _;
use fusebox::breaker::{Config, Outcome};
use fusebox::{CircuitBreaker, Clock};
use fusebox_std::policy::{Breaker, Policy, Retry};
use fusebox_std::TokioClock;
use tower_service::Service;

struct Noop;

impl Wake for Noop {
    fn wake(self: Arc<Self>) {}
}

/// Polls `fut` once; it must be ready.
#[inline]
fn poll_once<F: Future>(cx: &mut Context<'_>, fut: F) -> F::Output {
    match pin!(fut).poll(cx) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("the benchmarked future was not ready on its first poll"),
    }
}

fn core_breaker() -> Arc<CircuitBreaker> {
    Arc::new(CircuitBreaker::new(
        Config::builder()
            .consecutive_failures(5)
            .build()
            .expect("config"),
    ))
}

/// The inner service for tower-resilience: answers at once.
#[derive(Clone, Copy)]
struct Echo;

impl Service<u64> for Echo {
    type Response = u64;
    type Error = std::io::Error;
    type Future = std::future::Ready<Result<u64, std::io::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: u64) -> Self::Future {
        ready(Ok(req))
    }
}

fn timed(iters: u64, mut f: impl FnMut()) -> std::time::Duration {
    let t = StdInstant::now();
    for _ in 0..iters {
        f();
    }
    t.elapsed()
}

/// The rows without a future: the clock reads and the core's calls.
fn baselines(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    clock: TokioClock,
    core: &Arc<CircuitBreaker>,
) {
    g.bench_function("tokio_clock_two_reads", |b| {
        b.iter_custom(|n| {
            timed(n, || {
                let _ = black_box(black_box(&clock).now());
                let _ = black_box(black_box(&clock).now());
            })
        });
    });
    g.bench_function("core_acquire_record_tokio_clock", |b| {
        b.iter_custom(|n| {
            timed(n, || {
                let start = clock.now();
                let permit = black_box(&**core).try_acquire(start).expect("closed");
                let end = clock.now();
                black_box(permit.record(Outcome::Success, end, end - start).is_some());
            })
        });
    });
    g.bench_function("core_owned_acquire_record_tokio_clock", |b| {
        b.iter_custom(|n| {
            timed(n, || {
                let start = clock.now();
                let permit = CircuitBreaker::try_acquire_owned(Arc::clone(black_box(core)), start)
                    .expect("closed");
                let end = clock.now();
                black_box(permit.record(Outcome::Success, end, end - start).is_some());
            })
        });
    });
    g.bench_function("core_acquire_record_lazy_clock", |b| {
        b.iter_custom(|n| {
            timed(n, || {
                let permit = black_box(&**core)
                    .try_acquire_with(|| clock.now())
                    .expect("closed");
                let t =
                    permit.record_with(Outcome::Success, fusebox::Duration::ZERO, || clock.now());
                black_box(t.is_some());
            })
        });
    });
}

pub fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let _entered = rt.enter();
    let waker = Waker::from(Arc::new(Noop));
    let mut cx = Context::from_waker(&waker);

    let clock = TokioClock::new();
    let core = core_breaker();
    let breaker = Breaker::builder("bench", core_breaker())
        .clock(clock)
        .build();
    let policy = Policy::builder()
        .retry(Retry::builder().max_attempts(3).build())
        .breaker(
            Breaker::builder("bench", core_breaker())
                .clock(clock)
                .build(),
        )
        .build();
    let fs = crate::breaker::failsafe_consecutive(std::time::Duration::from_mins(1));
    let fs_default = failsafe::Config::new().build();
    let mut tr = tower_resilience::circuitbreaker::CircuitBreakerLayer::builder()
        .consecutive_failures(5)
        .build()
        .expect("tower-resilience config")
        .layer_fn(Echo);

    let mut g = c.benchmark_group("adapter");
    baselines(&mut g, clock, &core);
    g.bench_function("fusebox_std_breaker_call", |b| {
        b.iter_custom(|n| {
            timed(n, || {
                let out = poll_once(&mut cx, black_box(&breaker).call(ready(Ok::<u64, ()>(1))));
                black_box(out.is_ok());
            })
        });
    });
    g.bench_function("fusebox_std_policy_call", |b| {
        b.iter_custom(|n| {
            timed(n, || {
                let out = poll_once(&mut cx, black_box(&policy).call(|| ready(Ok::<u64, ()>(1))));
                black_box(out.is_ok());
            })
        });
    });
    g.bench_function("failsafe_futures_call", |b| {
        b.iter_custom(|n| {
            timed(n, || {
                let out = poll_once(&mut cx, black_box(&fs).call(ready(Ok::<u64, ()>(1))));
                black_box(out.is_ok());
            })
        });
    });
    g.bench_function("failsafe_futures_call_default_policy", |b| {
        b.iter_custom(|n| {
            timed(n, || {
                let out = poll_once(
                    &mut cx,
                    black_box(&fs_default).call(ready(Ok::<u64, ()>(1))),
                );
                black_box(out.is_ok());
            })
        });
    });
    g.bench_function("tower_resilience_call", |b| {
        b.iter_custom(|n| {
            timed(n, || {
                let svc = black_box(&mut tr);
                let ready_now = svc.poll_ready(&mut cx);
                assert!(matches!(ready_now, Poll::Ready(Ok(()))));
                let out = poll_once(&mut cx, svc.call(1));
                black_box(out.is_ok());
            })
        });
    });
    g.bench_function("fusebox_std_breaker_call_tokio_block_on", |b| {
        b.iter_custom(|n| {
            timed(n, || {
                let out = rt.block_on(black_box(&breaker).call(ready(Ok::<u64, ()>(1))));
                black_box(out.is_ok());
            })
        });
    });
    g.finish();
}
