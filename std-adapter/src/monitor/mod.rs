//! Health monitoring: [`HealthCheck`]s run on intervals by a
//! [`HealthMonitor`], a consecutive-count state machine ([`Thresholds`]),
//! alert rules ([`AlertThresholds`]), recovery actions ([`RecoveryRule`])
//! and a serializable [`Status`].
//!
//! | piece | what |
//! |---|---|
//! | [`HealthCheck`] | the async check trait; [`HttpCheck`] (hyper GET, status range), [`TcpCheck`] (connect), [`FnCheck`] (any async closure); [`probe`] runs one once |
//! | [`CheckSpec`] | a named check with its interval, timeout, thresholds, alerts, recovery |
//! | [`HealthMonitor`] → [`MonitorHandle`] | spawned tasks (staggered, `tokio::time`), stopped by drop or [`MonitorHandle::stop`] |
//! | [`MonitorEvent`], [`Subscription`] | health changes, alert edges, recovery attempts on a bounded broadcast that never blocks the monitor |
//! | [`Status`], [`CheckStatus`], [`RecoveryStatus`], [`StatusReader`] | snapshots (serde with the `serde` feature), readable from anywhere |
//!
//! With the `serde` feature, [`Status`] and [`MonitorEvent`] serialize
//! with durations as whole microseconds in fields named `…_us`
//! (`latency_us`, `at_us`), as the registry's health report does.
//!
//! A check or recovery action that panics fails that run (its error says
//! so); the monitor's tasks keep going.
//!
//! A degraded or unhealthy monitor says why: its status's
//! [`reason`](Status::reason) names every failing check, the worst first,
//! with its target, its health and its last error (`check "db"
//! (tcp://10.0.0.5:5432) unhealthy: 3 failures in a row, last: connect:
//! connection refused`), bounded to [`Status::MAX_REASON_CHARS`]; a
//! [`MonitorEvent::HealthChanged`] to degraded or unhealthy carries the
//! check's line, and so do the `health changed` logs and the registry's
//! health report.
//!
//! Secrets never leave a check: URL user info (`user:password@`) and the
//! values of `token=`, `key=` and `password=` query parameters are removed
//! from targets, details and error messages before they are stored,
//! logged or sent.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use fusebox_std::monitor::{
//!     AlertThresholds, CheckError, CheckSpec, FnCheck, Health, HealthMonitor, RecoveryAction,
//!     RecoveryRule, Thresholds,
//! };
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap().block_on(async {
//! let monitor = HealthMonitor::new()
//!     .check(
//!         CheckSpec::new("replica", FnCheck::new(|| async { Err(CheckError::other("lag 30 s")) }))
//!             .interval(Duration::from_secs(1))
//!             .thresholds(Thresholds::new().unhealthy_after(2))
//!             .alerts(AlertThresholds::new().window(4).min_samples(2).min_success_rate(50))
//!             .recovery(RecoveryRule::new(2, RecoveryAction::new("resync", || async { Ok::<(), String>(()) }))),
//!     )
//!     .spawn();
//! tokio::time::sleep(Duration::from_millis(1_500)).await; // runs at 0 s and 1 s
//! let status = monitor.status();
//! assert_eq!(status.health, Health::Unhealthy);
//! assert_eq!(
//!     status.reason.as_deref(),
//!     Some("check \"replica\" unhealthy: 2 failures in a row, last: other: lag 30 s"),
//! );
//! assert_eq!(status.checks[0].recovery.as_ref().unwrap().primary.attempts, 1);
//! monitor.stop().await;
//! # });
//! ```

mod alert;
mod check;
mod custom;
mod error;
mod event;
mod guard;
mod http;
mod reason;
mod recovery;
mod resolve;
mod runner;
mod ser;
mod spec;
mod state;
mod status;
mod tasks;
mod tcp;

pub use alert::{AlertKind, AlertThresholds};
pub use check::{probe, CheckError, ErrorKind, HealthCheck, Probe};
pub use custom::FnCheck;
pub use error::SpawnError;
pub use event::{MonitorEvent, Subscription};
pub use http::HttpCheck;
pub use recovery::{ActionStats, RecoveryAction, RecoveryRule, RecoveryStatus};
pub use runner::{HealthMonitor, MonitorHandle};
pub use spec::CheckSpec;
pub use state::{Health, Thresholds};
pub use status::{CheckStatus, Status, StatusReader};
pub use tcp::TcpCheck;

#[cfg(all(test, feature = "http"))] // counted by the /readyz test
pub(crate) use tasks::STATUSES_BUILT;
