//! The circuit breaker: models, scenarios, peers' suites, long histories.
//!
//! One test binary for many files (each file a module, named as before):
//! a binary per file built and linked the same code 94 times. Run one
//! file's tests with `cargo test -p fusebox --test breaker -- <file>::`.

mod common;

mod breaker_generations;
mod breaker_lazy_clock;
mod breaker_merge;
mod breaker_merge_model;
mod breaker_merge_versions;
mod breaker_model;
mod breaker_open_deadline;
mod breaker_open_deadline_model;
mod breaker_permits;
mod breaker_reconfig;
mod breaker_restore_fitting;
mod breaker_restore_hostile;
mod breaker_review_model;
mod breaker_scenarios;
mod breaker_snapshot_counters;
mod breaker_stale_fleet;
mod breaker_threads_ledger;
mod breaker_time_model;
mod peer_breaker;
mod peer_breaker_event_chain;
mod peer_breaker_features;
mod peer_breaker_suites;
