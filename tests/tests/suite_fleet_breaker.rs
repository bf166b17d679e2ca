//! The breaker shared by a fleet over Redis (`redis_breaker*`).
//!
//! One test binary for many files (each file a module, named as before):
//! a binary per file linked the same dependencies 135 times. Run one
//! file's tests with `cargo test -p fusebox-tests --test fleet_breaker -- <file>::`.

mod common;
mod http_common;

mod redis_breaker;
mod redis_breaker_admin;
mod redis_breaker_admin_resent;
mod redis_breaker_admin_resent_e2e;
mod redis_breaker_close_after;
mod redis_breaker_close_once;
mod redis_breaker_cluster;
mod redis_breaker_forged_slot;
mod redis_breaker_hostile;
mod redis_breaker_late_trip;
mod redis_breaker_lost_reply;
mod redis_breaker_nonce;
mod redis_breaker_notify_silent;
mod redis_breaker_observer;
mod redis_breaker_open_for_mismatch;
mod redis_breaker_record_forged;
mod redis_breaker_records;
mod redis_breaker_refusal_memory;
mod redis_breaker_registry;
mod redis_breaker_restart;
mod redis_breaker_trial_resent;
mod redis_breaker_trials;
mod redis_breaker_unwritable;
mod redis_breaker_version_limit;
