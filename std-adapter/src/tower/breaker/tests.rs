//! The breaker layer on paused tokio time: classification, shared state
//! across clones, the response's exact headers, and cancellation.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use fusebox::breaker::{CircuitBreaker, Config, State};
use fusebox::{Clock, Duration};
use tower_layer::Layer;
use tower_service::Service;

use super::CircuitBreakerLayer;
use crate::tower::test_service::{get, send, with_key, Scripted};

fn core(failures: u32) -> Arc<CircuitBreaker> {
    Arc::new(CircuitBreaker::new(
        Config::builder()
            .consecutive_failures(failures)
            .open_for(Duration::from_secs(30))
            .half_open_permits(1)
            .build()
            .expect("valid config"),
    ))
}

#[tokio::test(start_paused = true)]
async fn server_errors_trip_it_and_every_clone_sees_it_open() {
    let breaker = core(2);
    let service = CircuitBreakerLayer::new("upstream", Arc::clone(&breaker)).layer(Scripted);
    assert_eq!(
        send(&mut service.clone(), get("/502"))
            .await
            .unwrap()
            .status(),
        502
    );
    assert_eq!(
        send(&mut service.clone(), get("/err")).await.unwrap_err(),
        "inner failed"
    );
    assert_eq!(breaker.metrics().failures, 2);
    tokio::time::advance(StdDuration::from_millis(10_500)).await;
    let refused = send(&mut service.clone(), get("/200")).await.unwrap();
    assert_eq!(refused.status(), 503);
    // 19.5 s left, rounded up: never earlier than the core says.
    assert_eq!(refused.headers()["retry-after"], "20");
    assert_eq!(refused.headers()["content-type"], "application/json");
    assert_eq!(
        refused.body(),
        r#"{"breaker":"upstream","error":"circuit_open","retry_after":20,"state":"open"}"#
    );
    assert_eq!(breaker.metrics().rejected, 1);
    assert_eq!(
        breaker.metrics().successes,
        0,
        "the inner service was not called"
    );
}

#[tokio::test(start_paused = true)]
async fn client_errors_are_ignored_not_failures() {
    let breaker = core(1);
    let mut service = CircuitBreakerLayer::new("users", Arc::clone(&breaker)).layer(Scripted);
    for _ in 0..5 {
        assert_eq!(send(&mut service, get("/404")).await.unwrap().status(), 404);
    }
    let m = breaker.metrics();
    assert_eq!((m.ignored, m.failures, m.successes), (5, 0, 0));
    assert_eq!(breaker.state(fusebox::Instant::ZERO), State::Closed);
    assert_eq!(send(&mut service, get("/200")).await.unwrap().status(), 200);
    assert_eq!(breaker.metrics().successes, 1);
}

#[tokio::test(start_paused = true)]
async fn a_custom_classifier_and_responder_replace_the_defaults() {
    let breaker = core(1);
    let layer = CircuitBreakerLayer::new("strict", Arc::clone(&breaker))
        .classifier(|r: &Result<http::Response<String>, &str>| match r {
            Ok(resp) if resp.status() == 404 => fusebox::breaker::Outcome::Failure,
            _ => fusebox::breaker::Outcome::Success,
        })
        .responder(|r: &super::BreakerRejection| {
            let mut response = http::Response::new(format!("{} is {:?}", r.name, r.state));
            *response.status_mut() = http::StatusCode::BAD_GATEWAY;
            response
        });
    let mut service = layer.layer(Scripted);
    assert_eq!(send(&mut service, get("/404")).await.unwrap().status(), 404);
    let refused = send(&mut service, get("/200")).await.unwrap();
    assert_eq!(
        (refused.status().as_u16(), refused.body().as_str()),
        (502, "strict is Open")
    );
}

#[tokio::test(start_paused = true)]
async fn a_dropped_response_future_abandons_its_permit() {
    let breaker = core(1);
    let mut service = CircuitBreakerLayer::new("slow", Arc::clone(&breaker)).layer(Scripted);
    let pending = service.call(get("/hang"));
    let timed_out = tokio::time::timeout(StdDuration::from_secs(5), pending).await;
    assert!(timed_out.is_err());
    let m = breaker.metrics();
    assert_eq!((m.abandoned, m.failures, m.successes), (1, 0, 0));
    assert_eq!(breaker.state(fusebox::Instant::ZERO), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_half_open_trial_frees_its_slot_without_deciding() {
    let breaker = core(1);
    let layer = CircuitBreakerLayer::new("probe", Arc::clone(&breaker));
    let clock = layer.clock();
    let mut service = layer.layer(Scripted);
    assert_eq!(send(&mut service, get("/502")).await.unwrap().status(), 502);
    // The core's deadline is rounded up to its tick: wait out the whole
    // Retry-After it gave.
    let open = send(&mut service, get("/200")).await.unwrap();
    let wait: u64 = open.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((30..=31).contains(&wait), "{wait}");
    tokio::time::advance(StdDuration::from_secs(wait)).await;

    let trial = service.call(get("/hang"));
    assert!(trial.is_trial());
    assert_eq!(breaker.state(clock.now()), State::HalfOpen);
    let busy = send(&mut service, get("/200")).await.unwrap();
    assert_eq!(busy.status(), 503, "the one trial slot is taken");
    assert!(
        !busy.headers().contains_key("retry-after"),
        "half-open: no known time"
    );
    assert!(busy.body().contains(r#""state":"half_open""#));

    drop(trial);
    assert_eq!(breaker.metrics().abandoned, 1);
    assert_eq!(
        breaker.state(clock.now()),
        State::HalfOpen,
        "nothing decided"
    );
    // The slot is free again: the next request is the trial, and closes it.
    assert_eq!(send(&mut service, get("/200")).await.unwrap().status(), 200);
    assert_eq!(breaker.state(clock.now()), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn the_permit_is_recorded_when_the_response_completes() {
    let breaker = core(1);
    let mut service = CircuitBreakerLayer::new("db", Arc::clone(&breaker)).layer(Scripted);
    let future = service.call(get("/200"));
    assert_eq!(
        breaker.metrics().calls(),
        0,
        "held by the future until it completes"
    );
    assert_eq!(future.await.unwrap().status(), 200);
    assert_eq!(breaker.metrics().successes, 1);
}

#[tokio::test(start_paused = true)]
async fn forced_open_refuses_without_retry_after() {
    let breaker = core(5);
    let layer = CircuitBreakerLayer::new("ops", Arc::clone(&breaker));
    breaker.force_open(layer.clock().now());
    let refused = send(&mut layer.layer(Scripted), get("/200")).await.unwrap();
    assert_eq!(refused.status(), 503);
    assert!(!refused.headers().contains_key("retry-after"));
    assert!(refused
        .body()
        .contains(r#""retry_after":null,"state":"forced_open""#));
}

#[test]
fn the_response_future_is_send() {
    fn send_future<T: std::future::Future + Send>(_: &T) {}
    fn check(service: &mut super::CircuitBreakerService<Scripted>) {
        send_future(&service.call(get("/")));
    }
    let _ = check;
}

/// A breaker around a keyed limit: the limit's own `503`s (a table full of
/// busy keys, which a client sending new keys causes at will) are not the
/// service's failures, so they never open the breaker and cut off the
/// clients the limit admits (found by a hostile review: they did).
#[tokio::test(start_paused = true)]
async fn a_limit_inside_never_opens_the_breaker_with_its_own_refusals() {
    use crate::tower::rate_limit::{key, RateLimitRejection, Refusal};
    use crate::tower::RateLimitLayer;
    use fusebox::bucket::{FullPolicy, KeyedLimiter, Quota};

    let limiter = Arc::new(
        KeyedLimiter::<String, 4>::new(Quota::per_hour(10).unwrap(), FullPolicy::Reject).unwrap(),
    );
    let breaker = core(3);
    let limit = RateLimitLayer::keyed("per_key", limiter, key::header("x-api-key", 64));
    let mut service =
        CircuitBreakerLayer::new("backend", Arc::clone(&breaker)).layer(limit.layer(Scripted));
    let good = send(&mut service, with_key(b"good")).await.unwrap();
    assert_eq!(good.status(), 200);
    let mut refused = 0;
    for i in 0..50 {
        let response = send(&mut service, with_key(format!("attacker-{i}").as_bytes()))
            .await
            .unwrap();
        if response.status() == 503 {
            let rejection = response.extensions().get::<RateLimitRejection>();
            assert_eq!(rejection.map(|r| r.refusal), Some(Refusal::Unavailable));
            refused += 1;
        }
    }
    assert!(refused >= 40, "the table filled: {refused} refused");
    assert_eq!(
        breaker.state(Clock::now(&crate::TokioClock::new())),
        State::Closed
    );
    assert_eq!(breaker.metrics().ignored, refused);
    let good = send(&mut service, with_key(b"good")).await.unwrap();
    assert_eq!(good.status(), 200, "the client the limit admits is served");
}
