//! The policies (breaker, limiters, retry, budget, bulkhead, fallbacks), their models and peers' scenarios.
//!
//! One test binary for many files (each file a module, named as before):
//! a binary per file linked the same dependencies 135 times. Run one
//! file's tests with `cargo test -p fusebox-tests --test policies -- <file>::`.

mod common;

mod binary_layout;
mod breaker_hung_trial;
mod budget;
mod bulkhead;
mod bulkhead_model;
mod cancellation;
mod cancellation_monitor;
mod cancellation_runtime;
mod debug_redacts_names;
mod event_names_shared;
mod events_and_stale_cache_checked;
mod fallback;
mod hostile_calls;
mod hostile_durations;
mod hostile_observability;
mod limiter;
mod limiter_model;
mod limiter_requota;
mod memory_backend_model;
mod model;
mod peer_breaker_suites;
mod peer_fallback;
mod peer_limits;
mod peer_retry;
mod policy;
mod policy_breaker_model;
mod policy_model;
mod redact;
mod retry;
mod retry_model;
