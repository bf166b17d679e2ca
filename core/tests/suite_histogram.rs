//! The latency histogram: accuracy, merges, saturation, threads.
//!
//! One test binary for many files (each file a module, named as before):
//! a binary per file built and linked the same code 94 times. Run one
//! file's tests with `cargo test -p fusebox --test histogram -- <file>::`.

mod common;

mod histogram_accuracy;
mod histogram_capacity;
mod histogram_clamped_saturates;
mod histogram_concurrent_reads;
mod histogram_extreme_layouts;
mod histogram_merge;
mod histogram_merge_live_source;
mod histogram_merge_refusals;
mod histogram_saturated_sum;
mod histogram_threads_exact;
mod histogram_wrap_model;
mod peer_hdr;
