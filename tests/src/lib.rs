//! fusebox's integration tests live in `tests/tests/`: the std adapter
//! driven through its public API only, with real servers (HTTP, Redis) on
//! loopback ports that each test starts and stops itself. This library is
//! empty; run them with `cargo test -p fusebox-tests`.
