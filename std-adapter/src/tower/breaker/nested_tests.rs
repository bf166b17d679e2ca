//! Breakers nested around one service (a breaker per route inside one
//! for the whole upstream, or one layer added twice): an inner breaker's
//! refusal is no answer of the service, so the outer one ignores it.

use std::sync::Arc;

use fusebox::breaker::{CircuitBreaker, Config, State};
use fusebox::{Duration, Instant};
use tower_layer::Layer;

use super::{CircuitBreakerLayer, GrpcBreakerResponse, GrpcClassifier};
use crate::tower::test_service::{get, send, Scripted};

fn core(failures: u32) -> Arc<CircuitBreaker> {
    Arc::new(CircuitBreaker::new(
        Config::builder()
            .consecutive_failures(failures)
            .open_for(Duration::from_secs(30))
            .build()
            .expect("valid config"),
    ))
}

/// Before, the outer breaker counted the inner one's `503`s as the
/// service's failures: one route's open breaker opened the whole
/// upstream's, for every route.
#[tokio::test(start_paused = true)]
async fn an_inner_breakers_refusal_is_ignored_by_the_outer_one() {
    let (outer, inner) = (core(2), core(10));
    inner.force_open(Instant::ZERO);
    let service = CircuitBreakerLayer::new("upstream", Arc::clone(&outer))
        .layer(CircuitBreakerLayer::new("route", Arc::clone(&inner)).layer(Scripted));
    for _ in 0..3 {
        let refused = send(&mut service.clone(), get("/200")).await.unwrap();
        assert_eq!(refused.status(), 503);
    }
    let m = outer.metrics();
    assert_eq!((m.failures, m.ignored, m.successes), (0, 3, 0));
    assert_eq!(outer.state(Instant::ZERO), State::Closed);
    // The service's own 5xx still count.
    for _ in 0..2 {
        send(&mut service.clone(), get("/502")).await.unwrap();
    }
    assert_eq!(outer.metrics().failures, 0, "refused inside, never sent");
    inner.force_close(Instant::ZERO);
    for _ in 0..2 {
        send(&mut service.clone(), get("/502")).await.unwrap();
    }
    assert_eq!(outer.state(Instant::ZERO), State::Open);
}

/// The same with gRPC: the inner breaker answers `UNAVAILABLE`, a failure
/// code of the outer's classifier when the service answers it.
#[tokio::test(start_paused = true)]
async fn an_inner_breakers_grpc_refusal_is_ignored_by_the_outer_one() {
    let (outer, inner) = (core(1), core(1));
    inner.force_open(Instant::ZERO);
    let inner_layer = CircuitBreakerLayer::new("route", Arc::clone(&inner))
        .classifier(GrpcClassifier::new())
        .responder(GrpcBreakerResponse);
    let mut service = CircuitBreakerLayer::new("upstream", Arc::clone(&outer))
        .classifier(GrpcClassifier::new())
        .layer(inner_layer.layer(Scripted));
    let refused = send(&mut service, get("/200")).await.unwrap();
    assert_eq!(refused.headers()["grpc-status"], "14");
    assert_eq!(outer.metrics().ignored, 1);
    assert_eq!(outer.state(Instant::ZERO), State::Closed);
}
