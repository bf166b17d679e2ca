//! fusebox's integration tests live in `tests/tests/`: the std adapter
//! driven through its public API only, with real servers (HTTP, Redis) on
//! loopback ports that each test starts and stops itself. This library is
//! empty; run them with `cargo test -p fusebox-tests`.
//!
//! Each file is a module of one of a few suite binaries (`suite_*.rs`,
//! listed in `Cargo.toml`, which builds no test on its own), or a binary
//! of its own when it reads or sets state of its whole process (its
//! descriptors, memory, a global log subscriber). One file's tests:
//! `cargo test -p fusebox-tests --test redis -- redis_limit_lease::`.
