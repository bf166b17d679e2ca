//! A minimal axum server for `benches/wrk.sh`: one `GET /` answering `ok`,
//! bare or behind a rate limiter set so high it never limits, to measure
//! what the middleware costs per request.
//!
//!     cargo run --release -p fusebox-benches --example http_server -- --mode fusebox --port 0
//!
//! Modes:
//! * `bare`: axum alone;
//! * `fusebox`: a `CircuitBreakerLayer` inside a keyed `RateLimitLayer`,
//!   added in one `Router::layer((limit, breaker))` call
//!   (keyed by the `x-api-key` header, a `String` key, the default `429`
//!   responder and `RateLimit` fields on every response), both built from
//!   a `fusebox_std::Registry` as a server with `/metrics` would build
//!   them; the quota is 10^9 tokens a second with a burst of 10^9;
//! * `governor`: tower_governor's `GovernorLayer`, keyed by the same
//!   header into a `String` (its own `KeyExtractor`), one token every
//!   nanosecond with a burst of `u32::MAX`, no headers (its default);
//! * `governor-headers`: the same with `use_headers()`, its
//!   `x-ratelimit-limit` and `x-ratelimit-remaining` on every response:
//!   the like-for-like peer of `fusebox`, which sends its fields.
//!
//! and, to see where fusebox's cost lies, parts of `fusebox`:
//! * `fusebox-no-fields`: the same without the `RateLimit` fields
//!   (`rate_limit_headers(false)`), as tower_governor answers by default;
//! * `fusebox-two-calls`: the same layers added in two `Router::layer`
//!   calls, which makes axum box the route twice;
//! * `identity`: `tower_layer::Identity` (a layer that does nothing) in
//!   one `Router::layer` call: the floor every layered mode pays, axum
//!   boxing the layered route's service and future on every request;
//! * `fusebox-limit`: the keyed `RateLimitLayer` alone;
//! * `fusebox-breaker`: the `CircuitBreakerLayer` alone.
//!
//! A request without the header is refused in both limited modes, so a
//! run that forgot it shows up as non-2xx answers in wrk's output.
//!
//! It prints `listening on 127.0.0.1:PORT` once bound (port `0` picks a
//! free one) and serves until killed, on tokio's multi-thread runtime
//! with one worker per CPU, or `--workers N`.
use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use fusebox::breaker::Config;
use fusebox::bucket::{FullPolicy, Quota};
use fusebox_std::tower::rate_limit::key;
use fusebox_std::tower::{CircuitBreakerLayer, RateLimitLayer};
use fusebox_std::Registry;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::KeyExtractor;
use tower_governor::{GovernorError, GovernorLayer};

/// The `x-api-key` header as a `String`, as `key::header` makes it.
#[derive(Clone, Copy, Debug)]
struct ApiKey;

impl KeyExtractor for ApiKey {
    type Key = String;

    fn extract<T>(&self, req: &http::Request<T>) -> Result<String, GovernorError> {
        req.headers()
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .filter(|v| v.len() <= 64)
            .map(str::to_owned)
            .ok_or(GovernorError::UnableToExtractKey)
    }
}

type Error = Box<dyn std::error::Error>;

/// The breaker of the `fusebox` modes, from `registry`.
fn breaker(registry: &Arc<Registry>) -> Result<CircuitBreakerLayer, Error> {
    let config = Config::builder().failure_rate(50).window(20).build()?;
    Ok(CircuitBreakerLayer::from_registry(
        registry, "backend", config,
    )?)
}

fn app(mode: &str) -> Result<Router, Error> {
    let bare = Router::new().route("/", get(|| async { "ok" }));
    let registry = Arc::new(Registry::new());
    let quota = Quota::per_second(1_000_000_000)?.with_burst(1_000_000_000)?;
    // The keyed limit of the `fusebox` modes, from the registry.
    let limit = || {
        RateLimitLayer::keyed_from_registry::<String, 1024, _>(
            &registry,
            "per_api_key",
            quota,
            FullPolicy::Reject,
            key::header("x-api-key", 64),
        )
    };
    Ok(match mode {
        "bare" => bare,
        // Both layers in one `Router::layer` (a tuple: outer first), as
        // axum's docs advise for several middleware: each `Router::layer`
        // call boxes the route again (an allocation for the service
        // clone and one for the future, on every request).
        "fusebox" => bare.layer((limit()?, breaker(&registry)?)),
        "fusebox-no-fields" => {
            bare.layer((limit()?.rate_limit_headers(false), breaker(&registry)?))
        }
        // The same two layers in two `Router::layer` calls.
        "fusebox-two-calls" => bare.layer(breaker(&registry)?).layer(limit()?),
        "fusebox-limit" => bare.layer(limit()?),
        // A layer that does nothing, added the same way: what one
        // `Router::layer` call costs on its own (every layered mode pays it).
        "identity" => bare.layer(tower_layer::Identity::new()),
        "fusebox-breaker" => bare.layer(breaker(&registry)?),
        "governor" => {
            let config = GovernorConfigBuilder::default()
                .key_extractor(ApiKey)
                .per_nanosecond(1)
                .burst_size(u32::MAX)
                .finish()
                .ok_or("governor config")?;
            bare.layer(GovernorLayer::new(Arc::new(config)))
        }
        "governor-headers" => {
            let config = GovernorConfigBuilder::default()
                .key_extractor(ApiKey)
                .per_nanosecond(1)
                .burst_size(u32::MAX)
                .use_headers()
                .finish()
                .ok_or("governor config")?;
            bare.layer(GovernorLayer::new(Arc::new(config)))
        }
        other => return Err(format!("unknown mode {other:?} (see the example's docs)").into()),
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut mode = String::from("bare");
    let mut port = 0_u16;
    let mut workers: Option<usize> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--mode" => mode = args.next().ok_or("--mode needs a value")?,
            "--port" => port = args.next().ok_or("--port needs a value")?.parse()?,
            "--workers" => workers = Some(args.next().ok_or("--workers needs a value")?.parse()?),
            _ => return Err(format!("unknown argument {arg:?}").into()),
        }
    }
    let app = app(&mode)?;
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = workers {
        runtime.worker_threads(n);
    }
    runtime.enable_all().build()?.block_on(async move {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let listener = tokio::net::TcpListener::bind(addr).await?;
        println!("listening on {}", listener.local_addr()?);
        axum::serve(listener, app).await?;
        Ok(())
    })
}
