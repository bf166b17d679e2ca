//! # fusebox-std
//!
//! The std side of fusebox: bookkeeping around the core's primitives.
#![forbid(unsafe_code)]

pub mod tracker;

pub use tracker::{OperationStats, TrackGuard, Tracker, TrackerConfig, TrackerConfigError};
pub mod events;
pub mod health;
pub mod prometheus;
pub mod redact;
pub mod registry;

pub use registry::{Registry, RegistryError};
