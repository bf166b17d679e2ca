//! The exact and the lock-free LRU caches: models, contracts, hostile keys, threads.
//!
//! One test binary for many files (each file a module, named as before):
//! a binary per file built and linked the same code 94 times. Run one
//! file's tests with `cargo test -p fusebox --test cache -- <file>::`.

mod common;

mod concurrent_cache;
mod concurrent_cache_contract;
mod concurrent_cache_hostile_keys;
mod concurrent_cache_metrics_threads;
mod concurrent_cache_reentrant;
mod concurrent_cache_sets;
mod hash_multiword_keys;
mod large_tables;
mod lru_contract_large;
mod lru_hostile_history;
mod lru_model;
mod lru_panics;
mod lru_unstable_hash;
mod peer_lru;
