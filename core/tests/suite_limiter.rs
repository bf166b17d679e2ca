//! The GCRA token bucket and the keyed limiter: models, requotas, long histories, peers' scenarios.
//!
//! One test binary for many files (each file a module, named as before):
//! a binary per file built and linked the same code 94 times. Run one
//! file's tests with `cargo test -p fusebox --test limiter -- <file>::`.

mod common;

mod arrival_curve;
mod arrival_curve_threads;
mod bucket_exact_reports;
mod bucket_long_history;
mod bucket_model;
mod bucket_requota;
mod bucket_stress;
mod firmware_quota_ranges;
mod keyed;
mod keyed_adversarial;
mod keyed_available_agrees;
mod keyed_eviction_model;
mod keyed_hashdos;
mod keyed_hostile_history;
mod keyed_left_model;
mod keyed_long_history;
mod keyed_metrics_long;
mod keyed_panics;
mod keyed_pins_crowd;
mod keyed_reentrant;
mod keyed_requota;
mod keyed_requota_churn;
mod keyed_requota_vs_bucket;
mod keyed_threads_churn;
mod peer_gcra_scenarios;
mod peer_governor;
mod peer_keyed_chosen;
mod peer_limiter_suites;
mod time_never_early;
mod time_window_idle_trips;
