//! Tower middleware (feature `tower`): [`CircuitBreakerLayer`] and
//! [`RateLimitLayer`] for HTTP services (axum, tonic, hyper), on
//! `tower-layer`/`tower-service` 0.3 and `http` 1.
//!
//! Both layers are thin: the decision is the core's ([`fusebox::CircuitBreaker`],
//! [`fusebox::TokenBucket`], [`fusebox::bucket::KeyedLimiter`]), behind an
//! `Arc` that **every clone of a layer's services shares** (a server clones
//! its service per connection or request; a limit per clone would be no
//! limit). Time is a [`TokioClock`](crate::TokioClock) read right before
//! each core call, so paused tokio time drives them in tests; every layer
//! built over one core (and a registry that made it) reads the same one.
//!
//! Refusals become HTTP responses through a responder you may replace; the
//! defaults are `503` (breaker) and `429` (limiter) with a small JSON body,
//! a delta-seconds `Retry-After` rounded up (never earlier than the core
//! says, and never 0), and the limiter's quota in the `RateLimit-Policy` and `RateLimit`
//! fields of draft-ietf-httpapi-ratelimit-headers, revisions 10
//! (September 2025) and 11 (May 2026), whose fields are the same on the
//! wire (the `RateLimit-Policy`/`RateLimit` pair in Structured Field
//! syntax that replaced the `RateLimit-Limit/-Remaining/-Reset` trio of
//! revisions ≤ 06): `RateLimit-Policy: "api";q=100;w=60`
//! and `RateLimit: "api";r=50;t=30`, optionally with the legacy
//! `X-RateLimit-Limit`, `-Remaining` and `-Reset`.
//!
//! How a token bucket maps onto them: `q` is the burst and `w` the time
//! to refill it at the quota's rate (with the default burst, the quota as
//! it is: `per_minute(100)` is `q=100;w=60`; a window of a fraction of a
//! second is stretched to whole seconds with `q` scaled at the quota's
//! rate, never advertising a higher one), `r` the whole tokens left (at
//! most the burst, so never more than `q`; 0 on a `429`), `t` the seconds
//! until the bucket is full again, rounded up; on a `429`, `t` is its
//! `Retry-After` (the draft's `t` is the time "until additional quota
//! … is made available", and a `Retry-After` should not point earlier
//! than it). Both fields are Structured
//! Field Lists: stacked rate-limit layers each add their policy's member,
//! `RateLimit: "per_key";r=0;t=60, "global";r=98;t=72`.
//!
//! | module | what |
//! |---|---|
//! | [`breaker`] | [`CircuitBreakerLayer`]: owned permits held by the response future (a hung half-open trial is bounded by the core's `max_half_open`: see the layer's "A trial that hangs"), an HTTP classifier (`5xx` fails, `4xx` ignored), `503` |
//! | [`rate_limit`] | [`RateLimitLayer`]: one [`TokenBucket`](fusebox::TokenBucket), or a [`KeyedLimiter`](fusebox::bucket::KeyedLimiter) keyed by a function of the request head, or (with feature `redis`) a `Shared` limit decided by a `RedisLimiter` for a whole fleet; `429`, `400` for a bad key, `503` when Redis is out and the limiter fails closed |
//!
//! # Examples
//!
//! The limit goes outside the breaker, so that a refused request never
//! reaches the breaker (nor takes a half-open trial): with axum,
//! `Router::new().route(..).layer((limit, breaker))` (a tuple's first
//! layer is the outermost; in separate calls the last one is,
//! `.layer(breaker).layer(limit)`). The other way round is safe too: the
//! breaker's [`HttpClassifier`](breaker::HttpClassifier) ignores the
//! limit's refusals. Here by hand, around a plain service:
//!
//! ```
//! use std::convert::Infallible;
//! use std::sync::Arc;
//! use fusebox::breaker::{CircuitBreaker, Config};
//! use fusebox::bucket::Quota;
//! use fusebox::TokenBucket;
//! use fusebox_std::tower::{CircuitBreakerLayer, RateLimitLayer};
//! use tower_layer::Layer;
//! use tower_service::Service;
//!
//! # #[derive(Clone)] struct Hello;
//! # impl Service<http::Request<()>> for Hello {
//! #     type Response = http::Response<String>;
//! #     type Error = Infallible;
//! #     type Future = std::future::Ready<Result<Self::Response, Infallible>>;
//! #     fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Infallible>> { std::task::Poll::Ready(Ok(())) }
//! #     fn call(&mut self, _: http::Request<()>) -> Self::Future { std::future::ready(Ok(http::Response::new("hello".into()))) }
//! # }
//! # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
//! let limit = RateLimitLayer::new("api", Arc::new(TokenBucket::new(Quota::per_minute(100)?)));
//! let breaker = CircuitBreakerLayer::new("backend", Arc::new(CircuitBreaker::new(
//!     Config::builder().failure_rate(50).window(20).build()?,
//! )));
//! let mut service = limit.layer(breaker.layer(Hello));
//! let response = service.call(http::Request::new(())).await?;
//! assert_eq!(response.headers()["ratelimit"], "\"api\";r=99;t=1");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

pub mod breaker;
mod future_state;
mod grpc;
mod headers;
pub mod rate_limit;
#[cfg(test)]
mod test_service;

pub use breaker::{CircuitBreakerLayer, CircuitBreakerService};
pub use rate_limit::{RateLimitLayer, RateLimitService};
