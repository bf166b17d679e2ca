//! `CircuitBreakerLayer` under a real axum server as careless and hostile
//! handlers and clients use it: half-open trials under a crowd of
//! connections, a handler that panics, and the layer inside tower's
//! error-handling stacks.

use crate::tower_common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::tower_common::{eventually, get, serve};
use axum::http::StatusCode;
use axum::routing::get as route;
use axum::Router;
use fusebox::breaker::{CircuitBreaker, Config, State};
use fusebox::Clock;
use fusebox_std::tower::CircuitBreakerLayer;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

/// Opens after one failure, for `open_ms`, then lets `trials` through.
fn breaker(open_ms: u64, trials: u8) -> Arc<CircuitBreaker> {
    Arc::new(CircuitBreaker::new(
        Config::builder()
            .consecutive_failures(1)
            .open_for(fusebox::Duration::from_millis(open_ms))
            .half_open_permits(trials)
            .build()
            .expect("valid config"),
    ))
}

/// `/fail` answers 500; `/slow` counts its entry, then waits for a permit
/// of `gate` before answering 200.
fn app(entered: &Arc<AtomicUsize>, gate: &Arc<Semaphore>) -> Router {
    let (entered, gate) = (Arc::clone(entered), Arc::clone(gate));
    Router::new()
        .route(
            "/fail",
            route(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
        )
        .route(
            "/slow",
            route(move || {
                let (entered, gate) = (Arc::clone(&entered), Arc::clone(&gate));
                async move {
                    entered.fetch_add(1, Ordering::SeqCst);
                    gate.acquire().await.unwrap().forget();
                    "ok"
                }
            }),
        )
}

/// `n` clients sending `GET /slow` at once, each returning its status.
fn crowd(addr: SocketAddr, n: usize) -> Vec<JoinHandle<u16>> {
    (0..n)
        .map(|_| tokio::spawn(async move { get(addr, "/slow", &[]).await.status }))
        .collect()
}

/// The statuses the `crowd` saw, in its order.
async fn statuses(crowd: Vec<JoinHandle<u16>>) -> Vec<u16> {
    let mut statuses = Vec::new();
    for client in crowd {
        statuses.push(client.await.unwrap());
    }
    statuses
}

/// 40 connections at once into a half-open breaker allowing 3 trials:
/// exactly 3 reach the handler, every other is refused at once with 503,
/// and the 3 trials' successes close the breaker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowd_into_a_half_open_breaker_gets_exactly_its_trials() {
    let core = breaker(50, 3);
    let layer = CircuitBreakerLayer::new("trials", Arc::clone(&core));
    let clock = layer.clock();
    let (entered, gate) = (Arc::new(AtomicUsize::new(0)), Arc::new(Semaphore::new(0)));
    let addr = serve(app(&entered, &gate).layer(layer)).await;
    assert_eq!(get(addr, "/fail", &[]).await.status, 500);
    assert_eq!(core.metrics().trips, 1);
    eventually("half-open", || core.state(clock.now()) == State::HalfOpen).await;
    let crowd = crowd(addr, 40);
    // Every refusal comes back while the trials are still held.
    eventually("3 trials in, 37 refused", || {
        entered.load(Ordering::SeqCst) == 3 && core.metrics().rejected == 37
    })
    .await;
    gate.add_permits(40);
    let statuses = statuses(crowd).await;
    assert_eq!(statuses.iter().filter(|&&s| s == 200).count(), 3);
    assert_eq!(statuses.iter().filter(|&&s| s == 503).count(), 37);
    assert_eq!(entered.load(Ordering::SeqCst), 3);
    assert_eq!(core.state(clock.now()), State::Closed);
}

/// A handler that panics (no `CatchPanicLayer` inside the breaker): the
/// connection's task unwinds and drops the response future, so the permit
/// is abandoned, as for a client that hangs up: no failure counted, and
/// a half-open trial that panics frees its slot for the next request
/// rather than keep the breaker half-open. (So a panic alone never opens
/// the breaker, as `ResponseFuture`'s docs say: a `CatchPanicLayer`
/// inside it makes panics `500`s, which count.)
#[tokio::test]
async fn a_panicking_handler_abandons_its_permit_and_frees_its_trial() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let core = breaker(50, 1);
    let layer = CircuitBreakerLayer::new("panics", Arc::clone(&core));
    let clock = layer.clock();
    let router = Router::new()
        .route(
            "/fail",
            route(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
        )
        .route("/ok", route(|| async { "ok" }))
        .route(
            "/panic",
            route(|| async {
                assert!(core::hint::black_box(false), "a handler's bug");
                "never"
            }),
        )
        .layer(layer);
    let addr = serve(router).await;
    let panic = || async move {
        let mut stream = tower_common::connect_from(addr, std::net::Ipv4Addr::LOCALHOST).await;
        stream
            .write_all(&tower_common::request("/panic", &[]))
            .await
            .unwrap();
        let mut raw = Vec::new();
        let _ = stream.read_to_end(&mut raw).await;
        raw
    };
    // Closed: three panics, three abandoned permits, the breaker closed.
    for _ in 0..3 {
        assert!(panic().await.is_empty(), "no answer from a panicked task");
    }
    let m = core.metrics();
    assert_eq!((m.abandoned, m.failures, m.successes), (3, 0, 0));
    assert_eq!(core.state(clock.now()), State::Closed);
    // Half-open with one trial: a panicking trial frees it.
    assert_eq!(get(addr, "/fail", &[]).await.status, 500);
    eventually("half-open", || core.state(clock.now()) == State::HalfOpen).await;
    assert!(panic().await.is_empty());
    eventually("the trial is abandoned", || core.metrics().abandoned == 4).await;
    assert_eq!(core.state(clock.now()), State::HalfOpen);
    assert_eq!(get(addr, "/ok", &[]).await.status, 200);
    assert_eq!(core.state(clock.now()), State::Closed);
}

/// The same crowd with a `ConcurrencyLimit` of 1 inside the breaker (the
/// inner service not ready while one request is in): the waiting callers
/// take their trials while they wait for readiness, and still no more
/// than 3 are let through; the 37 others are refused at once, without
/// waiting for the inner service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trials_taken_while_the_inner_service_is_not_ready_are_still_3() {
    let core = breaker(50, 3);
    let layer = CircuitBreakerLayer::new("trials", Arc::clone(&core));
    let clock = layer.clock();
    let (entered, gate) = (Arc::new(AtomicUsize::new(0)), Arc::new(Semaphore::new(0)));
    let router = app(&entered, &gate)
        .layer(tower::limit::ConcurrencyLimitLayer::new(1))
        .layer(layer);
    let addr = serve(router).await;
    assert_eq!(get(addr, "/fail", &[]).await.status, 500);
    eventually("half-open", || core.state(clock.now()) == State::HalfOpen).await;
    let crowd = crowd(addr, 40);
    // One trial in the handler, two waiting for the inner service, 37
    // refused while they wait.
    eventually("1 in, 37 refused", || {
        entered.load(Ordering::SeqCst) == 1 && core.metrics().rejected == 37
    })
    .await;
    gate.add_permits(40);
    let statuses = statuses(crowd).await;
    assert_eq!(statuses.iter().filter(|&&s| s == 200).count(), 3);
    assert_eq!(statuses.iter().filter(|&&s| s == 503).count(), 37);
    assert_eq!(entered.load(Ordering::SeqCst), 3);
    assert_eq!(core.state(clock.now()), State::Closed);
}
