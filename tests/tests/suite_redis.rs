//! The Redis backend: fleet limits, leases, outages, Cluster, TLS, hostile servers.
//!
//! One test binary for many files (each file a module, named as before):
//! a binary per file linked the same dependencies 135 times. Run one
//! file's tests with `cargo test -p fusebox-tests --test redis -- <file>::`.

mod common;
mod tower_common;

mod backend_storage_keys;
mod memory_redis_differential;
mod peer_redis_limits;
mod peer_redis_rate_suites;
mod redis_acl;
mod redis_blackhole;
mod redis_builder_debug;
mod redis_busy_script;
mod redis_closed_connection;
mod redis_cluster_blackhole;
mod redis_cluster_hung_node;
mod redis_cluster_refused_password;
mod redis_cluster_refused_password_hostile;
mod redis_degrade;
mod redis_degrade_impatient;
mod redis_failover;
mod redis_fleet_percentiles;
mod redis_fleet_percentiles_cluster;
mod redis_fleet_percentiles_hostile;
mod redis_fleet_time_garbage;
mod redis_garbage_replies;
mod redis_limit_cluster;
mod redis_limit_cluster_hostile;
mod redis_limit_differential;
mod redis_limit_faults;
mod redis_limit_fleet_chaos;
mod redis_limit_forged_reply;
mod redis_limit_lease;
mod redis_limit_lease_cancel;
mod redis_limit_lease_debug;
mod redis_limit_lease_lifecycle;
mod redis_limit_lease_mixed_cancel;
mod redis_limit_lease_paced;
mod redis_limit_policy;
mod redis_limit_registry;
mod redis_limit_stall_fleet;
mod redis_limit_tower;
mod redis_limit_two_quotas;
mod redis_readonly_in_script;
mod redis_refused_password;
mod redis_refused_password_logs;
mod redis_replica_for_good;
mod redis_server_restart;
mod redis_slow_handshake;
