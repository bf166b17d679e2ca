//! The breaker layer on paused tokio time: classification, shared state
//! across clones, the response's exact headers, and cancellation.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use fusebox::breaker::{CircuitBreaker, Config, State};
use fusebox::{Clock, Duration};
use tower_layer::Layer;
use tower_service::Service;

use super::CircuitBreakerLayer;
use crate::tower::test_service::{get, retry_after, send, with_key, FnInner, Scripted};

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
    let wait = retry_after(&open);
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

/// A breaker named after its upstream's URL: its refusals go to every
/// client, so they show the name as the logs do, redacted.
#[tokio::test(start_paused = true)]
async fn a_refusal_never_shows_a_secret_in_the_breakers_name() {
    use super::GrpcBreakerResponse;
    let name = "https://bob:hunter2@api.example.com/v1?api_key=K3Y";
    let breaker = core(5);
    let layer = CircuitBreakerLayer::new(name, Arc::clone(&breaker));
    breaker.force_open(layer.clock().now());
    let json = send(&mut layer.clone().layer(Scripted), get("/200"))
        .await
        .unwrap();
    let grpc = send(
        &mut layer.responder(GrpcBreakerResponse).layer(Scripted),
        get("/200"),
    )
    .await
    .unwrap();
    let message = grpc.headers()["grpc-message"].to_str().unwrap();
    for shown in [json.body().as_str(), message] {
        for secret in ["hunter2", "K3Y"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("https://bob:***@api.example.com/v1?api_key=***"));
    }
    assert_eq!(breaker.metrics().rejected, 2);
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
            assert!(matches!(
                rejection.map(|r| r.refusal),
                Some(Refusal::TableFull { .. })
            ));
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

// ---------------------------------------------------------------------
// Hostile review (tower layers): models written from the documented
// contract, not from the code.
// ---------------------------------------------------------------------

fn half_open_core(trials: u8) -> Arc<CircuitBreaker> {
    Arc::new(CircuitBreaker::new(
        Config::builder()
            .consecutive_failures(1)
            .open_for(Duration::from_secs(30))
            .half_open_permits(trials)
            .build()
            .expect("valid config"),
    ))
}

/// Opens `service`'s breaker with one failure and waits out its
/// `Retry-After`, so that the next call is a half-open trial.
async fn open_then_wait<S>(service: &mut S)
where
    S: Service<http::Request<()>, Response = http::Response<String>, Error = &'static str>,
{
    assert_eq!(send(service, get("/502")).await.unwrap().status(), 502);
    let open = send(service, get("/200")).await.unwrap();
    assert_eq!(open.status(), 503);
    let wait = retry_after(&open);
    tokio::time::advance(StdDuration::from_secs(wait)).await;
}

/// However many response futures are made and dropped (polled or not),
/// no more trials run at once than configured; a trial of an earlier
/// half-open phase, dropped in a later one, frees no slot of the later
/// one.
#[tokio::test(start_paused = true)]
async fn made_and_dropped_futures_never_admit_more_trials_than_configured() {
    let breaker = half_open_core(2);
    let layer = CircuitBreakerLayer::new("probe", Arc::clone(&breaker));
    let clock = layer.clock();
    let mut service = layer.layer(Scripted);
    open_then_wait(&mut service).await;

    // Phase one: two trials, one hangs, one fails (reopens).
    let old_trial = service.call(get("/hang"));
    assert!(old_trial.is_trial());
    let mut refused_now = Vec::new();
    for _ in 0..50 {
        let f = service.call(get("/hang"));
        if f.is_trial() {
            refused_now.push(f);
        }
    }
    assert_eq!(refused_now.len(), 1, "two slots in all");
    // A trial polled once (pending) then dropped frees its slot.
    let mut polled = refused_now.pop().unwrap();
    assert!(futures_poll_once(&mut polled).await.is_none());
    drop(polled);
    assert!(service.call(get("/hang")).is_trial(), "the freed slot");
    let failing = service.call(get("/502"));
    assert!(failing.is_trial());
    assert_eq!(failing.await.unwrap().status(), 502);
    assert_eq!(breaker.state(clock.now()), State::Open);

    // Phase two: two new trials hold the two slots.
    tokio::time::advance(StdDuration::from_secs(31)).await;
    let t1 = service.call(get("/hang"));
    let t2 = service.call(get("/hang"));
    assert!(t1.is_trial() && t2.is_trial());
    drop(old_trial); // a phase-one trial: frees nothing of phase two
    let mut extra = 0;
    for _ in 0..50 {
        extra += u32::from(service.call(get("/hang")).is_trial());
    }
    assert_eq!(extra, 0, "more than two trials at once");
    drop((t1, t2));
}

/// Polls `future` once with a no-op waker: `Some` if it was ready.
async fn futures_poll_once<F: std::future::Future + Unpin>(future: &mut F) -> Option<F::Output> {
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(match std::pin::Pin::new(&mut *future).poll(cx) {
            std::task::Poll::Ready(output) => Some(output),
            std::task::Poll::Pending => None,
        })
    })
    .await
}

/// A classifier that panics on a half-open trial's response leaves the
/// breaker consistent: the trial is abandoned when its future is dropped
/// (its slot freed, nothing decided), and the next request is a trial.
#[tokio::test(start_paused = true)]
async fn a_panicking_classifier_abandons_the_trial() {
    use fusebox::breaker::Outcome;
    use std::panic::AssertUnwindSafe;

    let breaker = half_open_core(1);
    let layer = CircuitBreakerLayer::new("fragile", Arc::clone(&breaker)).classifier(
        |r: &Result<http::Response<String>, &str>| match r {
            Ok(resp) if resp.status() == 418 => panic!("classifier bug"),
            Ok(resp) if resp.status().is_server_error() => Outcome::Failure,
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        },
    );
    let clock = layer.clock();
    let mut service = layer.layer(Scripted);
    open_then_wait(&mut service).await;
    let mut trial = service.call(get("/418"));
    assert!(trial.is_trial());
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let panicked = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let _ = std::pin::Pin::new(&mut trial).poll(&mut cx);
    }));
    assert!(panicked.is_err());
    assert_eq!(breaker.state(clock.now()), State::HalfOpen);
    // Polled again after the panic: a panic, and nothing recorded.
    let again = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let _ = std::pin::Pin::new(&mut trial).poll(&mut cx);
    }));
    assert!(again.is_err());
    let m = breaker.metrics();
    assert_eq!((m.successes, m.failures), (0, 1), "only the first 502");
    drop(trial);
    assert_eq!(breaker.metrics().abandoned, 1);
    let next = service.call(get("/200"));
    assert!(next.is_trial(), "the slot is free again");
    assert_eq!(next.await.unwrap().status(), 200);
    assert_eq!(breaker.state(clock.now()), State::Closed);
}

/// A completed future polled again panics (documented) and records
/// nothing a second time.
#[tokio::test(start_paused = true)]
async fn a_completed_future_polled_again_records_nothing_more() {
    use std::future::Future;
    use std::panic::AssertUnwindSafe;

    let breaker = core(5);
    let mut service = CircuitBreakerLayer::new("db", Arc::clone(&breaker)).layer(Scripted);
    let mut future = service.call(get("/502"));
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let first = std::pin::Pin::new(&mut future).poll(&mut cx);
    assert!(matches!(first, std::task::Poll::Ready(Ok(_))));
    for _ in 0..3 {
        let again = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let _ = std::pin::Pin::new(&mut future).poll(&mut cx);
        }));
        assert!(again.is_err());
    }
    drop(future);
    let m = breaker.metrics();
    assert_eq!((m.failures, m.abandoned, m.calls()), (1, 0, 1));
}

/// An inner service whose `poll_ready` fails takes no permit (the breaker
/// is asked in `call` only) and leaves the breaker as it was.
#[tokio::test(start_paused = true)]
async fn an_inner_poll_ready_error_takes_no_trial() {
    let not_ready = FnInner {
        ready: Err("overloaded"),
        call: |_| unreachable!("never ready"),
    };
    let breaker = half_open_core(1);
    let layer = CircuitBreakerLayer::new("gate", Arc::clone(&breaker));
    let mut scripted = layer.clone().layer(Scripted);
    open_then_wait(&mut scripted).await;
    let mut gated = layer.layer(not_ready);
    for _ in 0..10 {
        let ready = std::future::poll_fn(|cx| gated.poll_ready(cx)).await;
        assert_eq!(ready, Err("overloaded"));
    }
    assert_eq!(breaker.metrics().calls(), 1, "nothing taken");
    assert!(
        scripted.call(get("/200")).is_trial(),
        "the one slot is free"
    );
}

/// Half-open, an inner service not ready has the breaker take a trial for
/// the call to come (see the service's docs); if its readiness then fails
/// (a reconnecting client whose connection is refused, whose service is
/// kept and polled again), there is no call to come: the trial is given
/// back, not held by a service that reported an error.
#[tokio::test(start_paused = true)]
async fn a_readiness_error_after_a_wait_gives_the_trial_back() {
    #[derive(Clone)]
    struct Connecting(u8);
    impl Service<http::Request<()>> for Connecting {
        type Response = http::Response<String>;
        type Error = &'static str;
        type Future = std::future::Ready<Result<http::Response<String>, &'static str>>;
        fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> Poll<Result<(), &'static str>> {
            self.0 += 1;
            if self.0 % 2 == 1 {
                Poll::Pending
            } else {
                Poll::Ready(Err("connection refused"))
            }
        }
        fn call(&mut self, _: http::Request<()>) -> Self::Future {
            unreachable!("never ready")
        }
    }
    use std::task::Poll;
    let breaker = half_open_core(1);
    let layer = CircuitBreakerLayer::new("gate", Arc::clone(&breaker));
    let clock = layer.clock();
    let mut scripted = layer.clone().layer(Scripted);
    open_then_wait(&mut scripted).await;
    let mut connecting = layer.layer(Connecting(0));
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    assert!(connecting.poll_ready(&mut cx).is_pending(), "connecting");
    assert_eq!(
        connecting.poll_ready(&mut cx),
        Poll::Ready(Err("connection refused"))
    );
    let m = breaker.metrics();
    assert_eq!((m.abandoned, m.rejected), (1, 1), "the trial given back");
    let trial = scripted.call(get("/200"));
    assert!(trial.is_trial(), "the one slot is free");
    assert_eq!(trial.await.unwrap().status(), 200);
    assert_eq!(breaker.state(clock.now()), State::Closed);
}

/// `Retry-After` is never 0 nor before the core lets a trial through,
/// however close to the end of the open period the refusal comes: a
/// client refused at `w` that comes back at `w + Retry-After` is let
/// through (and not a whole second later than it could have been).
#[tokio::test(start_paused = true)]
async fn retry_after_is_never_zero_nor_early() {
    for open_ms in [1_u64, 999, 1_000, 1_001, 1_500, 30_000] {
        let breaker = Arc::new(CircuitBreaker::new(
            Config::builder()
                .consecutive_failures(1)
                .open_for(Duration::from_millis(open_ms))
                .half_open_permits(1)
                .build()
                .unwrap(),
        ));
        let mut service = CircuitBreakerLayer::new("edge", Arc::clone(&breaker)).layer(Scripted);
        assert_eq!(send(&mut service, get("/502")).await.unwrap().status(), 502);
        // Coarse steps, then 100 µs ones over the last 5 ms.
        let coarse = StdDuration::from_micros(open_ms * 1_000 / 7 + 1);
        let fine_from = StdDuration::from_millis(open_ms.saturating_sub(5));
        let mut waited = StdDuration::ZERO;
        let mut refusals = Vec::new();
        let trial_at = loop {
            let response = service.call(get("/hang"));
            if response.is_trial() {
                break waited;
            }
            let response = response.await.unwrap();
            assert_eq!(response.status(), 503);
            let secs = retry_after(&response);
            refusals.push((waited, secs));
            let step = if waited + coarse < fine_from {
                coarse
            } else {
                StdDuration::from_micros(100)
            };
            tokio::time::advance(step).await;
            waited += step;
            assert!(
                waited < StdDuration::from_millis(open_ms + 10),
                "never let through"
            );
        };
        for (at, secs) in refusals {
            assert!(secs >= 1, "Retry-After: 0 at {at:?} ({open_ms} ms open)");
            let back = at + StdDuration::from_secs(secs);
            // The trial was found within 100 µs of when it became possible.
            assert!(
                back + StdDuration::from_micros(100) >= trial_at,
                "Retry-After {secs} s at {at:?}: back at {back:?}, trial only at {trial_at:?}"
            );
            assert!(
                back < trial_at + StdDuration::from_secs(1) + StdDuration::from_millis(3),
                "Retry-After {secs} s at {at:?}: a second late (trial at {trial_at:?})"
            );
        }
    }
}

/// On a multi-threaded runtime, clones racing for half-open trials (each
/// made, held across a yield and dropped) never hold more trials at once
/// than configured.
#[test]
fn racing_clones_never_hold_more_trials_than_configured() {
    use std::sync::atomic::{AtomicUsize, Ordering};

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_time()
        .build()
        .unwrap();
    let (most, trials) = runtime.block_on(async {
        let breaker = Arc::new(CircuitBreaker::new(
            Config::builder()
                .consecutive_failures(1)
                .open_for(Duration::from_millis(1))
                .half_open_permits(2)
                .build()
                .unwrap(),
        ));
        let service = CircuitBreakerLayer::new("race", breaker).layer(Scripted);
        assert_eq!(
            send(&mut service.clone(), get("/502"))
                .await
                .unwrap()
                .status(),
            502
        );
        tokio::time::sleep(StdDuration::from_millis(5)).await;
        let live = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let trials = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (mut service, live, most, trials) = (
                service.clone(),
                Arc::clone(&live),
                Arc::clone(&most),
                Arc::clone(&trials),
            );
            tasks.push(tokio::spawn(async move {
                for _ in 0..2_000 {
                    let future = service.call(get("/hang"));
                    if future.is_trial() {
                        let now = live.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        trials.fetch_add(1, Ordering::Relaxed);
                        tokio::task::yield_now().await;
                        live.fetch_sub(1, Ordering::SeqCst);
                    }
                    drop(future);
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        (most.load(Ordering::SeqCst), trials.load(Ordering::Relaxed))
    });
    assert!(trials > 2, "the race ran: {trials} trials");
    assert!(most <= 2, "{most} trials at once");
}

/// An inner service whose `call` panics on a half-open trial leaves the
/// trial's slot free (the permit taken for it is abandoned by the unwind).
#[tokio::test(start_paused = true)]
async fn an_inner_call_that_panics_frees_the_trial() {
    let panics = FnInner {
        ready: Ok(()),
        call: |_| panic!("inner bug"),
    };
    let breaker = half_open_core(1);
    let layer = CircuitBreakerLayer::new("bug", Arc::clone(&breaker));
    let clock = layer.clock();
    let mut scripted = layer.clone().layer(Scripted);
    open_then_wait(&mut scripted).await;
    let mut panicking = layer.layer(panics);
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        drop(panicking.call(get("/")));
    }));
    assert!(unwound.is_err());
    assert_eq!(breaker.metrics().abandoned, 1);
    assert_eq!(breaker.state(clock.now()), State::HalfOpen);
    let trial = scripted.call(get("/200"));
    assert!(trial.is_trial(), "the slot is free");
    assert_eq!(trial.await.unwrap().status(), 200);
    assert_eq!(breaker.state(clock.now()), State::Closed);
}

/// Two layers over one breaker read two clocks: each `new` started its
/// own at zero, so a layer built an hour after the first read times an
/// hour behind the breaker's: the breaker the first layer had just
/// opened let the second layer's requests through to the failing service
/// at once. Every layer over one breaker reads one clock (found by a
/// hostile review).
#[tokio::test(start_paused = true)]
async fn layers_built_apart_over_one_breaker_read_one_clock() {
    let breaker = core(1);
    let first = CircuitBreakerLayer::new("upstream", Arc::clone(&breaker));
    tokio::time::advance(StdDuration::from_secs(3_600)).await;
    let mut a = first.layer(Scripted);
    assert_eq!(send(&mut a, get("/502")).await.unwrap().status(), 502);
    let mut b = CircuitBreakerLayer::new("upstream", Arc::clone(&breaker)).layer(Scripted);
    let refused = send(&mut b, get("/200")).await.unwrap();
    assert_eq!(refused.status(), 503);
    // The 30 s the first layer opened it for (the core's open-until is
    // on its coarse tick, rounded up), not an hour more or less.
    let wait = retry_after(&refused);
    assert!((30..=31).contains(&wait), "{wait}");
    tokio::time::advance(StdDuration::from_secs(wait)).await;
    let trial = send(&mut b, get("/200")).await.unwrap();
    assert_eq!(trial.status(), 200, "{:?}", trial.headers());
    assert_eq!(breaker.state(first.clock().now()), State::Closed);
}

/// A breaker the registry made, under a layer built with `new` (not
/// `from_registry`) an hour after the registry: the layer read its own
/// clock, an hour behind the registry's, so the breaker it had just
/// opened was past its open period for the registry, whose health report
/// and `/readyz` told a breaker the layer kept refusing with as half-open
/// and ready. A layer over a registry's breaker reads the registry's
/// clock (found by a hostile review).
#[tokio::test(start_paused = true)]
async fn a_new_layer_over_a_registry_breaker_reads_the_registry_clock() {
    let registry = crate::Registry::new();
    tokio::time::advance(StdDuration::from_secs(3_600)).await;
    let config = Config::builder()
        .consecutive_failures(1)
        .open_for(Duration::from_secs(30))
        .build()
        .unwrap();
    let breaker = registry.breaker("db", config).unwrap();
    registry.set_required("db", true).unwrap();
    let mut service = CircuitBreakerLayer::new("db", breaker).layer(Scripted);
    assert_eq!(send(&mut service, get("/502")).await.unwrap().status(), 502);
    assert_eq!(send(&mut service, get("/200")).await.unwrap().status(), 503);
    let health = registry.health();
    assert_eq!(health.breakers["db"].state, State::Open);
    assert!(!health.ready);
    // The readiness probe's verdict (feature `http`) agrees.
    #[cfg(feature = "http")]
    assert!(!registry.is_ready());
}
