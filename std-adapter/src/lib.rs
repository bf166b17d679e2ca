//! # fusebox-std
//!
//! The std side of [fusebox]: bookkeeping around the core's
//! primitives for tokio servers. Every decision stays in the core; this
//! crate names, counts, reports and exports.
//!
//! | module | what |
//! |---|---|
//! | [`registry`] | [`Registry`]: named breakers, limiters, keyed limiters, caches and trackers; get-or-create, conflicts are errors; built from TOML, JSON or environment variables ([`RegistryConfig`](registry::RegistryConfig)), validated with field paths |
//! | [`tracker`] | [`Tracker`]: per-operation and per-stage latency percentiles on the core histogram, request summaries, sampling, bounded memory |
//! | [`events`] | state changes, rejections, failures and recoveries on a bounded broadcast channel that never blocks |
//! | [`health`] | [`Registry::health`]: a serialisable report with `ready` and `degraded` |
//! | [`prometheus`] | [`Registry::to_prometheus`]: the text exposition format 0.0.4 |
//! | [`redact`] | secrets out of URLs and messages, for logs, errors and reports |
//!
//! `#![forbid(unsafe_code)]`; logging through `tracing` only.
//!
//! # Examples
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

pub mod events;
pub mod health;
pub mod prometheus;
pub mod redact;
pub mod registry;
pub mod tracker;

pub use registry::{Registry, RegistryError};
pub use tracker::{OperationStats, TrackGuard, Tracker, TrackerConfig, TrackerConfigError};
