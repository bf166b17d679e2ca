//! # fusebox-std
//!
//! The std and tokio adapter of [`fusebox`]: a clock, async call policies
//! and their bookkeeping around the `no_std` core. Every decision stays in
//! the core (the breaker's, the token bucket's, the cache's); this crate
//! reads the clock, waits, counts and logs.
//!
//! | module | what |
//! |---|---|
//! | [`TokioClock`] | the core's `Clock` on `tokio::time::Instant`: paused tokio time drives every policy in tests |
//! | [`policy`] | [`Breaker`](policy::Breaker), [`Retry`](policy::Retry) with [`RetryBudget`](policy::RetryBudget), [`Limiter`](policy::Limiter) waits, [`Bulkhead`](policy::Bulkhead), [`Fallback`](policy::Fallback) and [`StaleCache`](policy::StaleCache), composed by [`Policy`](policy::Policy) |
//! | [`CallError`] | why a call through a policy did not return the callee's value |
//! | [`monitor`] | [`HealthMonitor`]: HTTP, TCP and custom health checks on staggered intervals, healthy/degraded/unhealthy thresholds, alerts, recovery actions, a serializable status |
//!
//! The clock is read immediately before each core call, never before an
//! `.await` that precedes it; every wait is a `tokio::time` sleep. Logs go
//! through `tracing` only, with structured fields.
//!
//! ## Features
//!
//! | feature | default | what |
//! |---|---|---|
//! | `serde` | on | `Serialize` for the monitor's [`Status`](monitor::Status) and events |
//!
//! tokio (`time`, `sync`, `rt`, `net`), tracing, pin-project-lite,
//! fastrand and hyper's HTTP/1 client (hyper-util's legacy client, no TLS)
//! are always on. The tower layers, the HTTP endpoints and the Redis
//! backend arrive behind `tower`, `http` and `redis`.
//!
//! MSRV: Rust 1.88 (the core keeps its own, lower one).
//!
//! ## Example
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
#![forbid(unsafe_code)]

mod clock;
pub mod monitor;
pub mod policy;

pub use clock::TokioClock;
pub use monitor::{HealthMonitor, MonitorHandle};
pub use policy::CallError;
