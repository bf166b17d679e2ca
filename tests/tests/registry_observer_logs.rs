//! The `failures` field of a breaker transition's log line is the
//! failures of the breaker that changed state, never those of another
//! breaker that shares its name.

use crate::common;

use std::sync::Arc;

use fusebox::breaker::{CircuitBreaker, Config, Outcome};
use fusebox::Duration;
use fusebox_std::policy::Breaker;
use fusebox_std::Registry;

fn consecutive(n: u32) -> Config {
    Config::builder().consecutive_failures(n).build().unwrap()
}

/// What `f` logs, run on a paused current-thread runtime.
fn logged_async<F: std::future::Future<Output = ()>>(f: impl FnOnce() -> F) -> String {
    common::logs::logged(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap()
            .block_on(f());
    })
    .1
}

/// The registry holds a breaker `search` with 7 failures; a breaker
/// built elsewhere, also named `search`, reports to the registry
/// through `breaker_observer` and opens on its first failure. Before the
/// fix its log line read `failures=7`: the registry's namesake's count,
/// looked up by name (and `failures=0` for a breaker with no namesake).
/// Now the field is left out (the observer cannot read the breaker); the
/// registry's own policy logs its own core's count.
#[test]
fn a_transition_logs_the_failures_of_the_breaker_that_changed() {
    let log = logged_async(|| async {
        let registry = Arc::new(Registry::new());
        let namesake = registry.breaker("search", consecutive(100)).unwrap();
        for _ in 0..7 {
            let now = registry.now();
            let permit = namesake.try_acquire(now).unwrap();
            let _ = permit.record(Outcome::Failure, now, Duration::ZERO);
        }
        let core = Arc::new(CircuitBreaker::new(consecutive(1)));
        let elsewhere = Breaker::builder("search", core)
            .observer(registry.breaker_observer())
            .build();
        let _ = elsewhere.call(async { Err::<(), _>("timeout") }).await;
    });
    let opened: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("breaker opened"))
        .collect();
    assert_eq!(opened.len(), 1, "{log}");
    assert!(opened[0].contains("breaker=search"), "{log}");
    assert!(!opened[0].contains("failures="), "{log}");

    // The registry's own policy: its core's failures, 2 of them.
    let log = logged_async(|| async {
        let registry = Arc::new(Registry::new());
        let policy = registry.breaker_policy("db", consecutive(2)).unwrap();
        for _ in 0..2 {
            let _ = policy.call(async { Err::<(), _>("down") }).await;
        }
    });
    let opened: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("breaker opened"))
        .collect();
    assert_eq!(opened.len(), 1, "{log}");
    assert!(opened[0].contains("failures=2"), "{log}");
}
