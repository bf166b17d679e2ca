//! A minimal axum server for `benches/wrk.sh` and `benches/http_instr.sh`:
//! one `GET /` answering `ok`, bare or behind rate limiters set so high
//! they never limit, to measure what the middleware costs per request.
//!
//!     cargo run --release -p fusebox-benches --example http_server -- --mode fusebox --port 0
//!
//! Modes:
//! * `bare`: axum alone;
//! * `fusebox`: a keyed `RateLimitLayer` and a `CircuitBreakerLayer`
//!   inside it (keyed by the `x-api-key` header into a `SmolStr`,
//!   `key::header_as`: no heap allocation for the key; a `String` key,
//!   `key::header`, costs about 100 instructions more a request;
//!   the default `429` responder and `RateLimit` fields on every
//!   response),
//!   both built from a `fusebox_std::Registry` as a server with
//!   `/metrics` would build them; the quota is 10^9 tokens a second with
//!   a burst of 10^9;
//! * `governor`: tower_governor's `GovernorLayer`, keyed by the same
//!   header into a `SmolStr` too (its own `KeyExtractor`), one token every
//!   nanosecond with a burst of `u32::MAX`, no headers (its default);
//! * `governor-headers`: the same with `use_headers()`, its
//!   `x-ratelimit-limit` and `x-ratelimit-remaining` on every response:
//!   the like-for-like peer of `fusebox`, which sends its fields;
//!
//! parts of `fusebox`, to see where its cost lies:
//! * `fusebox-no-fields`: both layers without the `RateLimit` fields
//!   (`rate_limit_headers(false)`), as tower_governor answers by default;
//! * `fusebox-limit`: the keyed `RateLimitLayer` alone;
//! * `fusebox-limit-no-fields`: the same without its fields: the
//!   like-for-like peer of `governor`;
//! * `fusebox-breaker`: the `CircuitBreakerLayer` alone;
//!
//! and two floors: `identity`, `tower_layer::Identity` (a layer that does
//! nothing), and `static-fields`, a layer that only adds the two fields
//! with fixed values of the same length as fusebox's (what sending them
//! costs, whoever computes them).
//!
//! Where the layers go:
//! * `MODE`: in one `Router::layer` call (a tuple, outer first), as the
//!   README shows and tower_governor's docs do. axum then boxes the
//!   route's service clone and its future on every request (the
//!   `identity` mode is that floor alone, paid by every layer added this
//!   way, whosever it is); `fusebox-two-calls` adds the two layers in two
//!   `Router::layer` calls, which boxes twice;
//! * `MODE-outer`: around the whole `Router`, `Layer::layer(&layers,
//!   router)` served through `ServiceExt::into_make_service`, as axum's
//!   docs show middleware that runs before routing: no boxing. Serving a
//!   finalised router that way is itself about 2 % cheaper than
//!   `axum::serve(listener, router)` (`bare`) here, so the layers' own
//!   cost in this placement is measured against `bare-outer`, the router
//!   alone served the same way.
//!
//! A request without the header is refused in the limited modes, so a run
//! that forgot it shows up as non-2xx answers in wrk's output.
//!
//! It prints `listening on 127.0.0.1:PORT` once bound (port `0` picks a
//! free one) and serves until killed, on tokio's multi-thread runtime
//! with one worker per CPU, or `--workers N`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::Request;
use axum::routing::get;
use axum::{Router, ServiceExt};
use fusebox_std::Registry;
use tokio::net::TcpListener;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::GovernorLayer;
use tower_layer::Layer;

#[path = "peer/mod.rs"]
mod peer;
use peer::{fusebox_breaker, fusebox_limit, ApiKey};

/// The `static-fields` mode: a layer that only adds `RateLimit-Policy`
/// and `RateLimit` with fixed values as long as fusebox's in this server
/// (`from_static`: no formatting, no allocation, no limiter): what sending
/// the two fields costs, whoever builds them.
#[derive(Clone, Copy, Debug)]
struct StaticFields;

impl<S> Layer<S> for StaticFields {
    type Service = StaticFieldsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        StaticFieldsService(inner)
    }
}

#[derive(Clone, Debug)]
struct StaticFieldsService<S>(S);

impl<S, B, RB> tower_service::Service<http::Request<B>> for StaticFieldsService<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<RB>>,
{
    type Response = http::Response<RB>;
    type Error = S::Error;
    type Future = StaticFieldsFuture<S::Future>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        StaticFieldsFuture {
            inner: self.0.call(request),
        }
    }
}

pin_project_lite::pin_project! {
    struct StaticFieldsFuture<F> {
        #[pin]
        inner: F,
    }
}

impl<F, RB, E> std::future::Future for StaticFieldsFuture<F>
where
    F: std::future::Future<Output = Result<http::Response<RB>, E>>,
{
    type Output = F::Output;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let mut result = std::task::ready!(self.project().inner.poll(cx));
        if let Ok(response) = &mut result {
            let headers = response.headers_mut();
            // Built at compile time: `from_static` called at run time
            // checks every byte, on every response.
            headers.insert(
                const { http::HeaderName::from_static("ratelimit-policy") },
                const { http::HeaderValue::from_static("\"per_api_key\";q=1000000000;w=1") },
            );
            headers.insert(
                const { http::HeaderName::from_static("ratelimit") },
                const { http::HeaderValue::from_static("\"per_api_key\";r=999999999;t=1") },
            );
        }
        std::task::Poll::Ready(result)
    }
}

type Error = Box<dyn std::error::Error>;

/// Binds `$layer` to the layers of `$mode` and evaluates `$body` with it
/// (each mode's layers are of another type, so one function cannot
/// return them all).
macro_rules! with_layers {
    ($mode:expr, |$layer:ident| $body:expr) => {{
        let registry = Arc::new(Registry::new());
        let limit = || fusebox_limit(&registry);
        let breaker = fusebox_breaker;
        // tower_governor keyed like fusebox, one token a nanosecond.
        let mut governor = GovernorConfigBuilder::default().key_extractor(ApiKey);
        governor.per_nanosecond(1).burst_size(u32::MAX);
        match $mode {
            "fusebox" => {
                let $layer = (limit()?, breaker(&registry)?);
                $body
            }
            "fusebox-no-fields" => {
                let $layer = (limit()?.rate_limit_headers(false), breaker(&registry)?);
                $body
            }
            "fusebox-limit" => {
                let $layer = limit()?;
                $body
            }
            "fusebox-limit-no-fields" => {
                let $layer = limit()?.rate_limit_headers(false);
                $body
            }
            "fusebox-breaker" => {
                let $layer = breaker(&registry)?;
                $body
            }
            "identity" => {
                let $layer = tower_layer::Identity::new();
                $body
            }
            "static-fields" => {
                let $layer = StaticFields;
                $body
            }
            "governor" => {
                let config = governor.finish().ok_or("governor config")?;
                let $layer = GovernorLayer::new(Arc::new(config));
                $body
            }
            "governor-headers" => {
                let config = governor.use_headers().finish().ok_or("governor config")?;
                let $layer = GovernorLayer::new(Arc::new(config));
                $body
            }
            other => return Err(format!("unknown mode {other:?} (see the example's docs)").into()),
        }
    }};
}

/// Serves `mode` on `listener`, its layers in one `Router::layer` call.
async fn serve_in_router(listener: TcpListener, mode: &str) -> Result<(), Error> {
    let bare = Router::new().route("/", get(|| async { "ok" }));
    // `axum::serve` finalises the router (`with_state(())`) once.
    match mode {
        "bare" => axum::serve(listener, bare).await?,
        "fusebox-two-calls" => {
            let registry = Arc::new(Registry::new());
            let limit = fusebox_limit(&registry)?;
            axum::serve(
                listener,
                bare.layer(fusebox_breaker(&registry)?).layer(limit),
            )
            .await?;
        }
        mode => with_layers!(mode, |layer| axum::serve(listener, bare.layer(layer))
            .await?),
    }
    Ok(())
}

/// Serves `mode` on `listener`, its layers around the whole router.
async fn serve_around_router(listener: TcpListener, mode: &str) -> Result<(), Error> {
    // Finalised before it is wrapped: a `Router` called as a plain
    // service would turn its handlers into routes again on every request.
    let bare: Router = Router::new()
        .route("/", get(|| async { "ok" }))
        .with_state(());
    if mode == "bare" {
        // The baseline of this placement: served the same way, no layer.
        axum::serve(listener, ServiceExt::<Request>::into_make_service(bare)).await?;
        return Ok(());
    }
    with_layers!(mode, |layer| axum::serve(
        listener,
        ServiceExt::<Request>::into_make_service(layer.layer(bare))
    )
    .await?);
    Ok(())
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
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = workers {
        runtime.worker_threads(n);
    }
    runtime.enable_all().build()?.block_on(async move {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let listener = TcpListener::bind(addr).await?;
        println!("listening on {}", listener.local_addr()?);
        match mode.strip_suffix("-outer") {
            Some(mode) => serve_around_router(listener, mode).await,
            None => serve_in_router(listener, &mode).await,
        }
    })
}
