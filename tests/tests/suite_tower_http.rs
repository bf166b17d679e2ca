//! The tower layers and the HTTP endpoints and dashboard, over real HTTP.
//!
//! One test binary for many files (each file a module, named as before):
//! a binary per file linked the same dependencies 135 times. Run one
//! file's tests with `cargo test -p fusebox-tests --test tower_http -- <file>::`.

mod common;
mod http_common;
mod tower_common;

mod http_breaker_kinds;
mod http_dashboard;
mod http_endpoints;
mod http_logs;
mod peer_tower;
mod readme_axum;
mod readme_grpc;
mod tower_breaker_body;
mod tower_breaker_client_faults;
mod tower_breaker_hostile;
mod tower_fields_inner;
mod tower_fields_parse;
mod tower_grpc;
mod tower_policy_names;
mod tower_rate_limit_hostile;
