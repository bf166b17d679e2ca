//! The tower layers' cost per call in process, without a network: the
//! axum router of `benches/examples/http_server.rs` called as a tower
//! service (a new request with the `x-api-key` header, a service clone as
//! hyper makes per request, `poll_ready`, `call`, one poll with a no-op
//! waker: every future here is ready at once), bare or behind the same
//! layers the server's modes use, in both placements.
//!
//!     cargo run --release -p fusebox-benches --example tower_calls [mode ...]
//!
//! Each mode: the fastest of `REPS` runs of `CALLS` calls (the least
//! disturbed), modes interleaved for `ROUNDS` rounds; the table shows the
//! median over rounds, and each mode's time over bare's within a round.
//! Only the calls are timed. `POLLUTE_KB=n` writes one word in each
//! cache line of an `n` KiB buffer before every call (untimed), so that
//! each call starts with caches as cold as a server's after the kernel's
//! socket work; `CALLS` and `REPS` override the defaults (100 000 and 11),
//! e.g. `POLLUTE_KB=2048 CALLS=20000 REPS=5`.
//! On this VM a mode's rounds still spread by about ±10 %: this run tells
//! where a few hundred nanoseconds go, not a per cent (the duets of
//! `benches/wrk.sh` do). In process, the two placements cost the same;
//! in the server, `Router::layer` costs more (see BENCHMARKS.md).

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use fusebox_std::Registry;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::GovernorLayer;
use tower_layer::Layer;
use tower_service::Service;

const ROUNDS: usize = 3;

#[path = "peer/mod.rs"]
mod peer;
use peer::{fusebox_breaker, fusebox_limit, ApiKey};

struct Noop;

impl Wake for Noop {
    fn wake(self: Arc<Self>) {}
}

/// Nanoseconds per call of `service`: the fastest of `REPS` runs.
fn time<S>(service: &S) -> f64
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Clone,
    S::Error: std::fmt::Debug,
{
    let waker = Waker::from(Arc::new(Noop));
    let mut cx = Context::from_waker(&waker);
    let mut best = f64::MAX;
    let calls = env_or("CALLS", 100_000);
    // One `u64` in eight: one write per 64-byte cache line.
    let mut sweep = vec![0u64; env_or("POLLUTE_KB", 0) as usize * 1024 / 8];
    for _ in 0..env_or("REPS", 11) {
        let mut spent = Duration::ZERO;
        for _ in 0..calls {
            for line in sweep.chunks_exact_mut(8) {
                line[0] = line[0].wrapping_add(1);
            }
            std::hint::black_box(&mut sweep);
            let start = Instant::now();
            let request = http::Request::builder()
                .uri("/")
                .header("x-api-key", "bench")
                .body(Body::empty())
                .expect("a valid request");
            let mut service = service.clone();
            assert!(service.poll_ready(&mut cx).is_ready());
            let response = match pin!(service.call(request)).poll(&mut cx) {
                Poll::Ready(response) => response.expect("an answer"),
                Poll::Pending => panic!("the router's answer was not ready at once"),
            };
            assert_eq!(response.status(), 200, "a limit was reached");
            std::hint::black_box(response);
            spent += start.elapsed();
        }
        best = best.min(spent.as_secs_f64() * 1e9 / f64::from(calls));
    }
    best
}

/// The environment variable `name` as a number, else `default`.
fn env_or(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

type Error = Box<dyn std::error::Error>;

/// Times `mode` once.
fn run(mode: &str) -> Result<f64, Error> {
    let registry = Arc::new(Registry::new());
    let limit = fusebox_limit(&registry)?;
    let breaker = fusebox_breaker(&registry)?;
    let mut governor = GovernorConfigBuilder::default().key_extractor(ApiKey);
    governor.per_nanosecond(1).burst_size(u32::MAX);
    let governor = Arc::new(governor.use_headers().finish().ok_or("governor config")?);
    let routes = || Router::new().route("/", get(|| async { "ok" }));
    let bare: Router = routes().with_state(());
    Ok(match mode {
        "bare" => time(&bare),
        "identity" => time(&routes().layer(tower_layer::Identity::new()).with_state(())),
        "fusebox" => time(&routes().layer((limit, breaker)).with_state(())),
        "fusebox-outer" => time(&(limit, breaker).layer(bare)),
        "fusebox-no-fields-outer" => time(&(limit.rate_limit_headers(false), breaker).layer(bare)),
        "fusebox-limit-outer" => time(&limit.layer(bare)),
        "fusebox-breaker-outer" => time(&breaker.layer(bare)),
        "governor-headers" => time(&routes().layer(GovernorLayer::new(governor)).with_state(())),
        "governor-headers-outer" => time(&GovernorLayer::new(governor).layer(bare)),
        other => return Err(format!("unknown mode {other:?} (see the example's docs)").into()),
    })
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn main() -> Result<(), Error> {
    let mut modes: Vec<String> = std::env::args().skip(1).collect();
    if modes.is_empty() {
        modes = [
            "identity",
            "fusebox",
            "fusebox-outer",
            "fusebox-no-fields-outer",
            "fusebox-limit-outer",
            "fusebox-breaker-outer",
            "governor-headers",
            "governor-headers-outer",
        ]
        .map(String::from)
        .to_vec();
    }
    modes.retain(|m| m != "bare");
    // axum and tower_governor need no runtime here; `TokioClock` reads
    // tokio's clock, which needs one entered.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let _entered = runtime.enter();
    let mut ns: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    let mut ratio: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    let mut bare = Vec::new();
    for _ in 0..ROUNDS {
        let b = run("bare")?;
        bare.push(b);
        for (i, mode) in modes.iter().enumerate() {
            let t = run(mode)?;
            ns[i].push(t);
            ratio[i].push(t / b);
        }
    }
    let bare = median(bare);
    println!("| mode | ns/call | over bare | ÷ bare (paired) |");
    println!("|---|---:|---:|---:|");
    println!("| bare | {bare:.0} | | |");
    for (i, mode) in modes.iter().enumerate() {
        let t = median(ns[i].clone());
        let r = median(ratio[i].clone());
        println!("| {mode} | {t:.0} | {:+.0} | {r:.2} |", t - bare);
    }
    Ok(())
}
