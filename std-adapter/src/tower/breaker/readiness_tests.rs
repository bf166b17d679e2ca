//! The breaker's fast rejections do not wait on the inner service's
//! readiness (found by a hostile review: behind a full `Buffer` in front
//! of a hung backend, an open breaker answered nothing at all).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use fusebox::breaker::{CircuitBreaker, Config, State};
use fusebox::{Clock, Duration};
use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::CircuitBreakerLayer;
use crate::tower::test_service::{get, send};

/// An inner service that is never ready: its `poll_ready` counts polls
/// and stays pending; its `call` must never run.
#[derive(Clone, Default)]
struct NeverReady {
    polls: Arc<AtomicUsize>,
}

impl Service<Request<()>> for NeverReady {
    type Response = Response<String>;
    type Error = &'static str;
    type Future = std::future::Ready<Result<Response<String>, &'static str>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.polls.fetch_add(1, Ordering::SeqCst);
        Poll::Pending
    }

    fn call(&mut self, _: Request<()>) -> Self::Future {
        unreachable!("called without being ready")
    }
}

fn core() -> Arc<CircuitBreaker> {
    Arc::new(CircuitBreaker::new(
        Config::builder()
            .consecutive_failures(1)
            .open_for(Duration::from_secs(30))
            .build()
            .expect("valid config"),
    ))
}

fn now() -> fusebox::Instant {
    crate::TokioClock::new().now()
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_rejects_at_once_whatever_the_inner_readiness() {
    let breaker = core();
    let inner = NeverReady::default();
    let polls = Arc::clone(&inner.polls);
    let mut service = CircuitBreakerLayer::new("db", Arc::clone(&breaker)).layer(inner);
    let open: [fn(&CircuitBreaker); 2] = [
        |b| {
            b.force_open(now());
        },
        |b| {
            b.trip(now());
        },
    ];
    for open in open {
        open(&breaker);
        let refused = tokio::time::timeout(
            std::time::Duration::from_secs(1),
            send(&mut service, get("/200")),
        )
        .await
        .expect("a rejection, not a wait")
        .unwrap();
        assert_eq!(refused.status(), 503);
        assert_eq!(polls.load(Ordering::SeqCst), 0, "the inner was not asked");
        breaker.force_close(now());
    }
    assert_eq!(breaker.metrics().rejected, 2);
}

#[tokio::test(start_paused = true)]
async fn a_closed_breaker_waits_for_the_inner_service() {
    let inner = NeverReady::default();
    let polls = Arc::clone(&inner.polls);
    let mut service = CircuitBreakerLayer::new("db", core()).layer(inner);
    let ready = std::future::poll_fn(|cx| Poll::Ready(service.poll_ready(cx))).await;
    assert!(ready.is_pending());
    assert_eq!(polls.load(Ordering::SeqCst), 1);
}

/// `poll_ready` saw the breaker open; by the `call` it is closed again.
/// The inner service was not made ready, so the call is still rejected,
/// and the permit it would have had is not kept.
#[tokio::test(start_paused = true)]
async fn a_call_after_a_bypassed_readiness_is_rejected_even_if_the_breaker_closed() {
    let breaker = core();
    breaker.force_open(now());
    let mut service =
        CircuitBreakerLayer::new("db", Arc::clone(&breaker)).layer(NeverReady::default());
    let ready = std::future::poll_fn(|cx| service.poll_ready(cx)).await;
    assert_eq!(ready, Ok(()));
    breaker.force_close(now());
    let refused = service.call(get("/200")).await.unwrap();
    assert_eq!(refused.status(), 503);
    assert_eq!(breaker.state(now()), State::Closed);
    let m = breaker.metrics();
    assert_eq!((m.successes, m.failures), (0, 0), "no outcome recorded");
    assert_eq!(m.abandoned, 1, "the permit dropped unused");
    // The next readiness asks the inner service again.
    let ready = std::future::poll_fn(|cx| Poll::Ready(service.poll_ready(cx))).await;
    assert!(ready.is_pending());
}

/// An inner service not ready at its first poll, failing its readiness at
/// the second, ready after that; its calls answer 200.
#[derive(Clone, Default)]
struct PendingThenFails {
    polls: Arc<AtomicUsize>,
}

impl Service<Request<()>> for PendingThenFails {
    type Response = Response<String>;
    type Error = &'static str;
    type Future = std::future::Ready<Result<Response<String>, &'static str>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match self.polls.fetch_add(1, Ordering::SeqCst) {
            0 => Poll::Pending,
            1 => Poll::Ready(Err("the inner service broke")),
            _ => Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, _: Request<()>) -> Self::Future {
        std::future::ready(Ok(Response::new(String::new())))
    }
}

/// Half-open, a caller whose inner service was not ready took the one
/// trial while it waited; the inner readiness then failed, so no call
/// comes: the trial is given back (abandoned), and the next caller takes
/// it and closes the breaker. Probed by a hostile review: held.
#[tokio::test(start_paused = true)]
async fn a_trial_held_for_a_readiness_that_fails_is_given_back() {
    let breaker = core();
    let layer = CircuitBreakerLayer::new("db", Arc::clone(&breaker));
    let clock = layer.clock();
    let mut waiting = layer.layer(PendingThenFails::default());
    let mut next = waiting.clone();
    breaker.trip(clock.now());
    tokio::time::advance(std::time::Duration::from_secs(31)).await;
    assert_eq!(breaker.state(clock.now()), State::HalfOpen);
    let first = std::future::poll_fn(|cx| Poll::Ready(waiting.poll_ready(cx))).await;
    assert!(first.is_pending(), "waits, its trial held");
    let second = std::future::poll_fn(|cx| Poll::Ready(waiting.poll_ready(cx))).await;
    assert_eq!(second, Poll::Ready(Err("the inner service broke")));
    assert_eq!(breaker.metrics().abandoned, 1, "the trial given back");
    drop(waiting);
    let answer = send(&mut next, get("/200")).await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(breaker.state(clock.now()), State::Closed);
    assert_eq!(breaker.metrics().rejected, 0);
}
