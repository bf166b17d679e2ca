//! A registry's breaker policies: the policy and the registry read the same
//! clock, and every state change a call causes reaches the registry's events
//! and health report.

use std::sync::Arc;
use std::time::Duration;

use fusebox::breaker::{Config, State};
use fusebox_std::events::{Component, Event};
use fusebox_std::Registry;

fn config() -> Config {
    Config::builder()
        .consecutive_failures(2)
        .open_for(fusebox::Duration::from_secs(10))
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_policys_transitions_reach_events_and_health() {
    let registry = Arc::new(Registry::builder().build());
    let mut events = registry.events().subscribe();
    let policy = registry.breaker_policy("payments", config()).unwrap();
    registry.set_required("payments", true).unwrap();
    assert!(registry.health().ready);

    for _ in 0..2 {
        let _ = policy.call(async { Err::<(), _>("upstream 503") }).await;
    }
    // Two failures, the second tripping the breaker; then a rejection.
    let _ = policy.call(async { Ok::<_, &str>(0) }).await;
    let mut seen = Vec::new();
    while let Some(event) = events.try_recv() {
        seen.push(event);
    }
    assert!(
        matches!(
            seen.as_slice(),
            [
                Event::Failure { .. },
                Event::StateChange {
                    from: State::Closed,
                    to: State::Open,
                    ..
                },
                Event::Failure { .. },
                Event::Rejected {
                    component: Component::Breaker,
                    ..
                },
            ]
        ),
        "{seen:?}"
    );
    assert!(seen.iter().all(|e| e.name() == "payments"));
    let health = registry.health();
    assert!(!health.ready, "a required breaker is open");
    assert_eq!(health.breakers["payments"].state, State::Open);

    // The registry reads the breaker on the same clock as the policy: open
    // just before the 10 s, half-open (for `state`) from them on.
    tokio::time::advance(Duration::from_millis(9_990)).await;
    assert_eq!(registry.health().breakers["payments"].state, State::Open);
    tokio::time::advance(Duration::from_millis(20)).await;
    assert_eq!(
        registry.health().breakers["payments"].state,
        State::HalfOpen
    );

    // A successful trial closes it: half-open, closed and recovered events.
    assert_eq!(policy.call(async { Ok::<_, &str>(7) }).await.unwrap(), 7);
    let mut seen = Vec::new();
    while let Some(event) = events.try_recv() {
        seen.push(event);
    }
    assert!(
        matches!(
            seen.as_slice(),
            [
                Event::StateChange {
                    from: State::Open,
                    to: State::HalfOpen,
                    ..
                },
                Event::StateChange {
                    from: State::HalfOpen,
                    to: State::Closed,
                    ..
                },
                Event::Recovered { .. },
            ]
        ),
        "{seen:?}"
    );
    assert!(registry.health().ready);
    // The policy and `registry.breaker` share one core breaker.
    assert!(Arc::ptr_eq(
        policy.core(),
        &registry.breaker("payments", config()).unwrap()
    ));
}

#[tokio::test(start_paused = true)]
async fn a_policy_outliving_its_registry_still_logs_and_works() {
    let registry = Arc::new(Registry::builder().build());
    let policy = registry.breaker_policy("search", config()).unwrap();
    drop(registry);
    for _ in 0..2 {
        let _ = policy.call(async { Err::<(), _>("down") }).await;
    }
    assert_eq!(policy.state(), State::Open);
}
