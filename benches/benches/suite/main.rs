//! fusebox against its peers on the same work in the same run. Each module
//! holds one group; `benches/report.sh` runs them and writes BENCHMARKS.md.
#![allow(
    missing_docs,
    reason = "criterion's macros generate undocumented items"
)]

mod adapter;
mod breaker;
mod bucket;
mod cache;
mod floor;
mod histogram;
mod tracker;

criterion::criterion_group!(
    suite,
    floor::bench,
    breaker::bench,
    bucket::bench,
    cache::bench,
    histogram::bench,
    adapter::bench,
    tracker::bench
);
criterion::criterion_main!(suite);
