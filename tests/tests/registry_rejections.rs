//! Refusals of the registry's limiters and bulkheads reach its events
//! (`Event::Rejected` with the primitive's name, kind and time), as the
//! breaker's do, also when they refuse inside a composed `Policy`.

use std::sync::Arc;
use std::time::Duration;

use fusebox::breaker::Config;
use fusebox::bucket::{FullPolicy, Quota};
use fusebox::Instant;
use fusebox_std::events::{Component, Event};
use fusebox_std::policy::{BulkheadRejection, LimitError, Overflow, Policy};
use fusebox_std::{CallError, Registry};
use tokio::time::sleep;

fn rejected(events: &mut fusebox_std::events::Subscription) -> Vec<(String, Component, Instant)> {
    std::iter::from_fn(|| events.try_recv())
        .filter_map(|e| match e {
            Event::Rejected {
                name,
                component,
                at,
            } => Some((name.to_string(), component, at)),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn limiter_keyed_limiter_and_bulkhead_refusals_are_published() {
    let registry = Registry::new();
    let mut events = registry.events().subscribe();
    let api = registry
        .limiter_policy("api", Quota::per_second(1).unwrap())
        .unwrap();
    let per_user = registry
        .keyed_limiter_policy::<u32, 64>(
            "per_user",
            Quota::per_second(2).unwrap(),
            FullPolicy::Reject,
        )
        .unwrap();
    let db = registry.bulkhead("db", 1, Overflow::Reject).unwrap();

    sleep(Duration::from_millis(250)).await;
    api.until_ready().await.unwrap();
    let soon = tokio::time::Instant::now() + Duration::from_millis(100);
    assert!(matches!(
        api.until_n_ready_by(1, Some(soon)).await,
        Err(LimitError::DeadlineExceeded { .. })
    ));
    per_user.until_n_ready(&9, 2).await.unwrap();
    assert!(per_user.until_n_ready_by(&9, 1, Some(soon)).await.is_err());
    assert!(
        per_user.until_n_ready(&9, 3).await.is_err(),
        "over the burst"
    );
    let held = db.try_acquire().unwrap();
    assert_eq!(db.try_acquire().unwrap_err(), BulkheadRejection::Full);
    // A clone handed out again by the registry reports too.
    let again = registry.bulkhead("db", 1, Overflow::Reject).unwrap();
    assert!(again.try_acquire().is_err());
    drop(held);

    let at = Instant::from_millis(250);
    assert_eq!(
        rejected(&mut events),
        [
            ("api".to_owned(), Component::Limiter, at),
            ("per_user".to_owned(), Component::KeyedLimiter, at),
            ("per_user".to_owned(), Component::KeyedLimiter, at),
            ("db".to_owned(), Component::Bulkhead, at),
            ("db".to_owned(), Component::Bulkhead, at),
        ]
    );
    assert_eq!(registry.health().bulkheads["db"].rejected, 2);
}

#[tokio::test(start_paused = true)]
async fn a_policy_of_registry_parts_publishes_each_layers_refusals() {
    let registry = Arc::new(Registry::new());
    let mut events = registry.events().subscribe();
    let policy = Policy::builder()
        .bulkhead(registry.bulkhead("pay_slots", 1, Overflow::Reject).unwrap())
        .limiter(Arc::new(
            registry
                .limiter_policy("pay_rate", Quota::per_second(2).unwrap())
                .unwrap(),
        ))
        .breaker(
            registry
                .breaker_policy(
                    "pay",
                    Config::builder().consecutive_failures(1).build().unwrap(),
                )
                .unwrap(),
        )
        .build();

    // The bulkhead: one call in flight, a second one refused.
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let first = {
        let (policy, gate) = (policy.clone(), Arc::clone(&gate));
        tokio::spawn(async move {
            policy
                .call(|| {
                    let gate = Arc::clone(&gate);
                    async move {
                        let _open = gate.acquire().await;
                        Err::<(), _>("upstream down")
                    }
                })
                .await
        })
    };
    tokio::task::yield_now().await;
    let busy = policy.call(|| async { Ok::<(), &str>(()) }).await;
    assert!(matches!(
        busy,
        Err(CallError::Bulkhead(BulkheadRejection::Full))
    ));
    gate.add_permits(1);
    assert!(matches!(
        first.await.unwrap(),
        Err(CallError::Inner("upstream down"))
    ));
    // The breaker is now open; the limiter has one token left.
    let open = policy.call(|| async { Ok::<(), &str>(()) }).await;
    assert!(matches!(open, Err(CallError::Open { .. })));

    let kinds: Vec<(String, Component)> = rejected(&mut events)
        .into_iter()
        .map(|(name, component, _)| (name, component))
        .collect();
    assert_eq!(
        kinds,
        [
            ("pay_slots".to_owned(), Component::Bulkhead),
            ("pay".to_owned(), Component::Breaker),
        ]
    );
}
