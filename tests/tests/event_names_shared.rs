//! A breaker's events carry its name as one shared `Arc<str>`: a
//! rejection storm on an open breaker publishes an event per refused
//! call, and each allocated a copy of the name (`name.into()` in the
//! registry's observer and the tower layer's). The observer now keeps
//! the name from its first event (or from the start, for the registry's
//! own policies and layers) and clones it; these tests check that the
//! events still carry the right name, that the names are one allocation
//! (`Arc::ptr_eq`; before, every event's was its own), and that an
//! observer given to two breakers names each one right.

use std::sync::Arc;

use fusebox::breaker::{CircuitBreaker, Config};
use fusebox_std::events::{Component, Event, Subscription};
use fusebox_std::policy::Breaker;
use fusebox_std::Registry;

fn consecutive(n: u32) -> Config {
    Config::builder().consecutive_failures(n).build().unwrap()
}

/// The name an event carries, as shared.
fn name_of(event: &Event) -> &Arc<str> {
    match event {
        Event::StateChange { name, .. }
        | Event::Rejected { name, .. }
        | Event::Failure { name, .. }
        | Event::Recovered { name, .. } => name,
        other => panic!("unexpected {other:?}"),
    }
}

fn drain(sub: &mut Subscription) -> Vec<Event> {
    std::iter::from_fn(|| sub.try_recv()).collect()
}

/// `(kind, name)` of each event, `kind` as it serialises.
fn kinds_and_names(events: &[Event]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|e| {
            let json = serde_json::to_value(e).unwrap();
            (
                json["kind"].as_str().unwrap().to_owned(),
                e.name().to_owned(),
            )
        })
        .collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(k, n)| ((*k).to_owned(), (*n).to_owned()))
        .collect()
}

/// The registry's own policy: its trip, failure and every refusal carry
/// `payments`, one allocation for all of them.
#[tokio::test(start_paused = true)]
async fn a_registry_policys_events_share_its_name() {
    let registry = Arc::new(Registry::new());
    let mut sub = registry.events().subscribe();
    let policy = registry.breaker_policy("payments", consecutive(1)).unwrap();
    let _ = policy.call(async { Err::<(), _>("down") }).await;
    for _ in 0..3 {
        assert!(policy.call(async { Ok::<(), &str>(()) }).await.is_err());
    }
    let events = drain(&mut sub);
    assert_eq!(
        kinds_and_names(&events),
        pairs(&[
            ("state_change", "payments"),
            ("failure", "payments"),
            ("rejected", "payments"),
            ("rejected", "payments"),
            ("rejected", "payments"),
        ])
    );
    let first = name_of(&events[0]);
    for e in &events {
        assert!(Arc::ptr_eq(first, name_of(e)), "{e:?}: its own copy");
        assert_eq!(e.component(), Component::Breaker);
    }
}

/// One observer of the registry given to two breakers built elsewhere,
/// refusing in turn: each event names its own breaker (the kept name is
/// the first breaker's; the other's is allocated, as before), and the
/// first breaker's events share one name.
#[tokio::test(start_paused = true)]
async fn an_observer_shared_by_two_breakers_names_each_right() {
    let registry = Arc::new(Registry::new());
    let observer = registry.breaker_observer();
    let breaker = |name: &str| {
        Breaker::builder(name, Arc::new(CircuitBreaker::new(consecutive(1))))
            .observer(Arc::clone(&observer))
            .build()
    };
    let (alpha, beta) = (breaker("alpha"), breaker("beta"));
    let _ = alpha.call(async { Err::<(), _>("down") }).await;
    let _ = beta.call(async { Err::<(), _>("down") }).await;
    let mut sub = registry.events().subscribe();
    for _ in 0..2 {
        for b in [&alpha, &beta] {
            assert!(b.call(async { Ok::<(), &str>(()) }).await.is_err());
        }
    }
    let events = drain(&mut sub);
    assert_eq!(
        kinds_and_names(&events),
        pairs(&[
            ("rejected", "alpha"),
            ("rejected", "beta"),
            ("rejected", "alpha"),
            ("rejected", "beta"),
        ])
    );
    assert!(Arc::ptr_eq(name_of(&events[0]), name_of(&events[2])));
}

/// A tower layer over the registry's breaker: its refusals carry its
/// name, one allocation for all of them.
#[tokio::test(start_paused = true)]
async fn a_registry_layers_refusals_share_its_name() {
    use fusebox_std::tower::CircuitBreakerLayer;
    use tower::{Layer, Service, ServiceExt};

    let registry = Arc::new(Registry::new());
    let layer = CircuitBreakerLayer::from_registry(&registry, "billing", consecutive(1)).unwrap();
    // Answers with the status the request's URI names.
    let mut service = layer.layer(tower::service_fn(|req: http::Request<()>| async move {
        let status: u16 = req.uri().path()[1..].parse().unwrap();
        let response = http::Response::builder()
            .status(status)
            .body(String::new())
            .unwrap();
        Ok::<_, std::convert::Infallible>(response)
    }));
    let request = |status: u16| {
        http::Request::builder()
            .uri(format!("/{status}"))
            .body(())
            .unwrap()
    };
    let mut sub = registry.events().subscribe();
    let failed = ServiceExt::ready(&mut service)
        .await
        .unwrap()
        .call(request(500))
        .await;
    assert_eq!(failed.unwrap().status(), 500);
    for _ in 0..3 {
        let refused = ServiceExt::ready(&mut service)
            .await
            .unwrap()
            .call(request(200))
            .await;
        assert_eq!(refused.unwrap().status(), 503, "refused while open");
    }
    let events = drain(&mut sub);
    let rejections: Vec<&Event> = events
        .iter()
        .filter(|e| matches!(e, Event::Rejected { .. }))
        .collect();
    assert_eq!(rejections.len(), 3, "{events:?}");
    for e in &rejections {
        assert_eq!(e.name(), "billing");
        assert!(Arc::ptr_eq(name_of(rejections[0]), name_of(e)), "{e:?}");
    }
}
