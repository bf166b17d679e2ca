//! # fusebox-std
//!
//! The std and tokio adapter of [`fusebox`]: a clock, async call policies,
//! and the bookkeeping of a server around the `no_std` core. Every decision
//! stays in the core (the breaker's, the token bucket's, the cache's, the
//! histogram's); this crate reads the clock, waits, names, counts, reports
//! and logs.
//!
//! | module | what |
//! |---|---|
//! | [`TokioClock`] | the core's `Clock` on `tokio::time::Instant`: paused tokio time drives every policy in tests |
//! | [`policy`] | [`Breaker`](policy::Breaker), [`Retry`](policy::Retry) with [`RetryBudget`](policy::RetryBudget), [`Limiter`](policy::Limiter) waits, [`Bulkhead`](policy::Bulkhead), [`Fallback`](policy::Fallback) and [`StaleCache`](policy::StaleCache), composed by [`Policy`](policy::Policy) |
//! | [`CallError`] | why a call through a policy did not return the callee's value |
//! | [`registry`] | [`Registry`]: named breakers, limiters, keyed limiters, caches and trackers; get-or-create, conflicts are errors; built from TOML, JSON or environment variables ([`RegistryConfig`](registry::RegistryConfig)), validated with field paths |
//! | [`tracker`] | [`Tracker`]: per-operation and per-stage latency percentiles on the core histogram, request summaries, sampling, bounded memory |
//! | [`events`] | state changes, rejections, failures and recoveries on a bounded broadcast channel that never blocks |
//! | [`health`] | [`Registry::health`]: a serialisable report with `ready` and `degraded` |
//! | [`prometheus`] | [`Registry::to_prometheus`]: the text exposition format 0.0.4 |
//! | [`redact`] | secrets out of URLs and messages, for logs, errors and reports |
//! | [`monitor`] | [`HealthMonitor`]: HTTP, TCP and custom health checks on staggered intervals, healthy/degraded/unhealthy thresholds, alerts, recovery actions, a serializable status |
//! | `tower` (feature `tower`) | `CircuitBreakerLayer` and `RateLimitLayer` (single, keyed, or shared through Redis with feature `redis`) for axum, tonic and hyper: clones share one breaker and one limit, 503/429 with `Retry-After` and the IETF `RateLimit`/`RateLimit-Policy` fields |
//! | `http` (feature `http`) | an axum `Router`: `/health`, `/readyz`, `/livez`, `/metrics` and a live, offline `/dashboard`; bearer-token protection, opt-in admin actions |
//! | `backend` (feature `redis`) | rate limits shared by a fleet (`RedisLimiter`: one GCRA Lua script per decision, several rules per key, a chosen degradation while Redis is away, local leasing; `MemoryBackend` in process), circuit-breaker decisions shared through Redis (`FleetBreaker`) and fleet-wide percentiles (`FleetPercentiles`) |
//!
//! The clock is read immediately before each core call, never before an
//! `.await` that precedes it; every wait is a `tokio::time` sleep, so the
//! runtime needs its timers (`enable_time`, or `enable_all`): without
//! them, tokio panics wherever something has to wait (a backoff, a token,
//! a bulkhead queue, a timeout, the health monitor's schedule), while
//! calls that wait for nothing still work, so such a runtime can pass its
//! tests and panic under load. Logs go through `tracing` only, with
//! structured fields. `#![forbid(unsafe_code)]`.
//!
//! ## Features
//!
//! | feature | adds |
//! |---|---|
//! | `tower` | the `tower` module: tower-layer and tower-service 0.3 |
//! | `http` | the `http` module: axum 0.8 (HTTP/1, JSON) |
//! | `redis` | the `backend` module (redis 1.x): rate limits shared by a fleet, which `policy::Limiter` (so `Policy`) waits on and the registry reports |
//!
//! Always on: tokio (`time`, `sync`, `rt`, `net`, `macros`), tracing, serde,
//! pin-project-lite, fastrand and hyper's HTTP/1 client connection (with
//! hyper-util's tokio I/O adapter, no TLS; the health monitor's HTTP
//! check); and the core
//! with its features `std`, `serde` and `half-open-timeout`
//! (`ConfigBuilder::max_half_open`: a half-open breaker whose trial hangs
//! reopens after that long instead of waiting for ever; see the tower
//! layer's "A trial that hangs").
//!
//! MSRV: Rust 1.88 (the core keeps its own, lower one).
//!
//! ## Examples
//!
//! A policy around a call:
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use fusebox::breaker::{CircuitBreaker, Config};
//! use fusebox_std::policy::{Breaker, Policy, Retry};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
//! let breaker = Breaker::new("payments", Arc::new(CircuitBreaker::new(
//!     Config::builder().consecutive_failures(5).build()?,
//! )));
//! let policy = Policy::builder()
//!     .retry(Retry::builder().max_attempts(3).build())
//!     .breaker(breaker)
//!     .timeout(Duration::from_secs(1))
//!     .build();
//! let receipt = policy.call(|| async { Ok::<_, std::io::Error>("paid") }).await?;
//! assert_eq!(receipt, "paid");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! A registry built from configuration, with its health report and
//! Prometheus text:
//!
//! ```
//! use fusebox::breaker::Outcome;
//! use fusebox::Duration;
//! use fusebox_std::registry::{Registry, RegistryConfig};
//!
//! let config = RegistryConfig::from_toml(r#"
//!     [breakers.payments]
//!     consecutive_failures = 3
//!     open_for = "30s"
//!     required = true
//! "#)?;
//! let registry = Registry::from_config(&config)?;
//! let payments = registry.get_breaker("payments").unwrap();
//! for _ in 0..3 {
//!     let now = registry.now();
//!     let permit = payments.try_acquire(now)?;
//!     if let Some(t) = permit.record(Outcome::Failure, now, Duration::from_millis(5)) {
//!         registry.transition("payments", t); // tracing + events
//!     }
//! }
//! assert!(!registry.health().ready);
//! assert!(registry.to_prometheus().contains("fusebox_breaker_state{name=\"payments\",state=\"open\"} 1\n"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]

#[cfg(feature = "redis")]
pub mod backend;
mod clock;
mod core_clock;
pub mod events;
pub mod health;
mod high_water;
#[cfg(feature = "http")]
pub mod http;
pub mod monitor;
pub mod policy;
pub mod prometheus;
pub mod redact;
pub mod registry;
#[cfg(feature = "tower")]
pub mod tower;
pub mod tracker;
#[cfg(test)]
mod wrap_tests;

pub use clock::TokioClock;
pub use monitor::{HealthMonitor, MonitorHandle};
pub use policy::CallError;
pub use registry::{Registry, RegistryError};
pub use tracker::{OperationStats, TrackGuard, Tracker, TrackerConfig, TrackerConfigError};

// The README's examples, core and adapter alike, compile and run as this
// crate's doctests (it depends on the core with `std`, `serde` and
// `half-open-timeout`), with
// the features `tower` and `http` (on in a workspace test run: the
// integration tests enable them).
#[cfg(all(doctest, feature = "tower", feature = "http"))]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
