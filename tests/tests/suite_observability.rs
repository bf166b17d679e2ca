//! The registry's configuration, the health monitor, the health report, Prometheus, the tracker.
//!
//! One test binary for many files (each file a module, named as before):
//! a binary per file linked the same dependencies 135 times. Run one
//! file's tests with `cargo test -p fusebox-tests --test observability -- <file>::`.

mod common;

mod health;
mod health_conditions;
mod health_verdicts;
mod monitor;
mod monitor_hostile;
mod monitor_hostile_runtime;
mod monitor_late_wake;
mod monitor_names;
mod monitor_reason;
mod monitor_recovery_model;
mod prometheus;
mod prometheus_documented;
mod registry_bulkhead;
mod registry_config_hostile;
mod registry_declared;
mod registry_monitor;
mod registry_observer_logs;
mod registry_policy;
mod registry_rejections;
mod tracker;
