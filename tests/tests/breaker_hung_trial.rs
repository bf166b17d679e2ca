//! A half-open breaker whose trial goes to an upstream that never answers,
//! through the tower `CircuitBreakerLayer` (real tower: `ServiceExt`,
//! clones, spawned requests) and the async `Breaker::call`, on paused
//! tokio time.
//!
//! Without `max_half_open` the breaker waits for its trial for as long as
//! the trial takes (Resilience4j's default for
//! `maxWaitDurationInHalfOpenState`, and the documented behaviour): every
//! other request is refused. With it, the undecided trial reopens the
//! breaker once the timeout passed (the core counts it as a failed trial:
//! one transition, one more trip), the next trials are let through after
//! the open time, and an upstream that recovered closes the breaker. The
//! hung trial, answering late or dropped, changes nothing afterwards (the
//! core's rule for late records: a permit of a generation that is gone
//! decides nothing).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration as StdDuration;

use fusebox::breaker::{CircuitBreaker, Config, State, Transition};
use fusebox::{Clock, Duration, Instant};
use fusebox_std::policy::{Breaker, BreakerObserver};
use fusebox_std::tower::CircuitBreakerLayer;
use fusebox_std::{CallError, TokioClock};
use http::{Request, Response, StatusCode};
use tokio::sync::Semaphore;
use tower::{Layer, Service, ServiceExt};

/// The breaker's open time (10.004 s once rounded up to the core's tick).
const OPEN_FOR: Duration = Duration::from_secs(10);
/// The half-open timeout of the tests that set one.
const MAX_HALF_OPEN: Duration = Duration::from_secs(5);

/// One failure opens it; one trial at a time; `max_half_open` if given.
fn core(max_half_open: Option<Duration>) -> Arc<CircuitBreaker> {
    let mut config = Config::builder()
        .consecutive_failures(1)
        .open_for(OPEN_FOR)
        .half_open_permits(1);
    if let Some(max) = max_half_open {
        config = config.max_half_open(max);
    }
    Arc::new(CircuitBreaker::new(config.build().expect("valid config")))
}

struct Upstream {
    /// While set, a call waits for a [`Gate::release`] before answering.
    down: AtomicBool,
    gate: Semaphore,
    calls: AtomicUsize,
}

/// The upstream service: `/500` answers 500, anything else 200; while it
/// is down, a call hangs until released (then answers as its path says).
#[derive(Clone)]
struct Gate(Arc<Upstream>);

impl Gate {
    fn new() -> Self {
        Self(Arc::new(Upstream {
            down: AtomicBool::new(false),
            gate: Semaphore::new(0),
            calls: AtomicUsize::new(0),
        }))
    }
    fn hang(&self) {
        self.0.down.store(true, Ordering::SeqCst);
    }
    fn recover(&self) {
        self.0.down.store(false, Ordering::SeqCst);
    }
    /// Lets `n` hung calls answer.
    fn release(&self, n: usize) {
        self.0.gate.add_permits(n);
    }
    fn calls(&self) -> usize {
        self.0.calls.load(Ordering::SeqCst)
    }
}

type Reply = Pin<Box<dyn Future<Output = Result<Response<String>, &'static str>> + Send>>;

impl<B> Service<Request<B>> for Gate {
    type Response = Response<String>;
    type Error = &'static str;
    type Future = Reply;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        self.0.calls.fetch_add(1, Ordering::SeqCst);
        let upstream = Arc::clone(&self.0);
        let hung = upstream.down.load(Ordering::SeqCst);
        let status = if request.uri().path() == "/500" {
            500
        } else {
            200
        };
        Box::pin(async move {
            if hung {
                upstream.gate.acquire().await.expect("gate").forget();
            }
            let mut response = Response::new(String::from("upstream"));
            *response.status_mut() = StatusCode::from_u16(status).unwrap();
            Ok(response)
        })
    }
}

/// The transitions reported to the layer's or policy's observer.
#[derive(Default)]
struct Transitions(Mutex<Vec<(State, State)>>);

impl Transitions {
    fn seen(&self) -> Vec<(State, State)> {
        self.0.lock().unwrap().clone()
    }
}

impl BreakerObserver for Transitions {
    fn transition(&self, _: &str, t: Transition) {
        self.0.lock().unwrap().push((t.from, t.to));
    }
}

fn req(path: &str) -> Request<()> {
    Request::builder().uri(path).body(()).unwrap()
}

/// `ready().call()` on `service` and the response.
async fn send<S>(service: &mut S, path: &str) -> Response<String>
where
    S: Service<Request<()>, Response = Response<String>>,
    S::Error: std::fmt::Debug,
{
    service
        .ready()
        .await
        .unwrap()
        .call(req(path))
        .await
        .unwrap()
}

/// A request on a clone of `service`, in its own task (it may hang).
fn spawn_send<S>(service: &S, path: &'static str) -> tokio::task::JoinHandle<u16>
where
    S: Service<Request<()>, Response = Response<String>> + Clone + Send + 'static,
    S::Error: std::fmt::Debug,
    S::Future: Send,
{
    let mut clone = service.clone();
    tokio::spawn(async move { send(&mut clone, path).await.status().as_u16() })
}

/// Lets spawned tasks run (paused time: nothing sleeps for real).
async fn settle() {
    for _ in 0..16 {
        tokio::task::yield_now().await;
    }
}

/// The `state` of a refusal's JSON body.
fn refused_state(response: &Response<String>) -> String {
    assert_eq!(response.status(), 503, "{response:?}");
    let body: serde_json::Value = serde_json::from_str(response.body()).unwrap();
    body["state"].as_str().unwrap().to_owned()
}

/// Trips the breaker with one failing request, then waits out its open
/// time: the next request is a trial.
async fn trip_and_wait<S>(service: &mut S, core: &CircuitBreaker, clock: TokioClock)
where
    S: Service<Request<()>, Response = Response<String>>,
    S::Error: std::fmt::Debug,
{
    assert_eq!(send(service, "/500").await.status(), 500);
    assert_eq!(core.state(clock.now()), State::Open);
    tokio::time::advance(StdDuration::from_secs(11)).await;
    assert_eq!(core.state(clock.now()), State::HalfOpen);
}

/// Past the half-open timeout of a trial taken at `at` (its deadline is
/// rounded up to the core's 1.024 ms tick).
async fn past_the_timeout(clock: TokioClock, at: Instant) {
    let deadline = clock.to_tokio(at) + StdDuration::from(MAX_HALF_OPEN);
    tokio::time::advance(deadline + StdDuration::from_millis(2) - tokio::time::Instant::now())
        .await;
}

/// The documented behaviour without the option: the hung trial holds the
/// breaker half-open for an hour (for ever), every other request refused
/// without reaching the upstream; only the trial's own answer decides.
#[tokio::test(start_paused = true)]
async fn without_max_half_open_a_hung_trial_holds_the_breaker_half_open() {
    let upstream = Gate::new();
    let core = core(None);
    let layer = CircuitBreakerLayer::new("inventory", Arc::clone(&core));
    let clock = layer.clock();
    let mut service = layer.layer(upstream.clone());
    trip_and_wait(&mut service, &core, clock).await;
    upstream.hang();
    let trial = spawn_send(&service, "/");
    settle().await;
    assert_eq!(upstream.calls(), 2, "the tripping call and the trial");
    tokio::time::advance(StdDuration::from_secs(3_600)).await;
    assert_eq!(core.state(clock.now()), State::HalfOpen);
    for _ in 0..3 {
        let refused = send(&mut service.clone(), "/").await;
        assert_eq!(refused_state(&refused), "half_open");
    }
    assert_eq!(upstream.calls(), 2, "nothing else reached the upstream");
    assert_eq!(core.metrics().trips, 1);
    upstream.release(1);
    assert_eq!(trial.await.unwrap(), 200);
    assert_eq!(core.state(clock.now()), State::Closed);
}

/// With `max_half_open`, the hung trial reopens the breaker once the
/// timeout passed: the first request after it is refused as open (with
/// the HalfOpen → Open transition, reported once), the next trial is let
/// through after the open time, a second hung trial times out the same
/// way, and once the upstream answers again a trial closes the breaker.
/// The hung trials answering late (one of them a 500, which would trip a
/// closed one-failure breaker if it counted) change nothing.
#[tokio::test(start_paused = true)]
async fn max_half_open_reopens_behind_a_hung_trial_until_the_upstream_recovers() {
    use State::{Closed, HalfOpen, Open};
    let upstream = Gate::new();
    let core = core(Some(MAX_HALF_OPEN));
    let seen = Arc::new(Transitions::default());
    let layer = CircuitBreakerLayer::new("inventory", Arc::clone(&core))
        .observer(Arc::clone(&seen) as Arc<dyn BreakerObserver>);
    let clock = layer.clock();
    let mut service = layer.layer(upstream.clone());
    trip_and_wait(&mut service, &core, clock).await;
    upstream.hang();

    let mut hung = Vec::new();
    for (cycle, path) in [(1, "/"), (2, "/500")] {
        let entered = clock.now();
        hung.push(spawn_send(&service, path));
        settle().await;
        assert_eq!(upstream.calls(), 1 + cycle, "cycle {cycle}: the trial");
        let refused = send(&mut service.clone(), "/").await;
        assert_eq!(refused_state(&refused), "half_open", "cycle {cycle}");
        // Not a moment early (the timeout is 5 s).
        tokio::time::advance(StdDuration::from_millis(4_999)).await;
        assert_eq!(core.state(clock.now()), State::HalfOpen, "cycle {cycle}");
        past_the_timeout(clock, entered).await;
        assert_eq!(core.state(clock.now()), State::Open, "cycle {cycle}");
        let trips = core.metrics().trips;
        let refused = send(&mut service.clone(), "/").await;
        assert_eq!(refused_state(&refused), "open", "cycle {cycle}");
        assert_eq!(refused.headers()["retry-after"], "11", "a fresh open time");
        assert_eq!(
            core.metrics().trips,
            trips + 1,
            "timed out as a failed trial"
        );
        assert_eq!(upstream.calls(), 1 + cycle, "the refusal reached nothing");
        assert!(
            !hung.iter().any(tokio::task::JoinHandle::is_finished),
            "still hung"
        );
        tokio::time::advance(StdDuration::from_secs(11)).await;
        assert_eq!(core.state(clock.now()), State::HalfOpen, "cycle {cycle}");
    }
    let cycle = [(Open, HalfOpen), (HalfOpen, Open)];
    let mut expected = vec![(Closed, Open)];
    expected.extend(cycle.iter().chain(&cycle));
    assert_eq!(seen.seen(), expected, "each timeout reported once");

    upstream.recover();
    assert_eq!(send(&mut service.clone(), "/").await.status(), 200);
    assert_eq!(core.state(clock.now()), State::Closed);
    let before = core.metrics();

    // The hung trials answer at last: their records are stale.
    upstream.release(2);
    let mut late = Vec::new();
    for trial in hung {
        late.push(trial.await.unwrap());
    }
    assert_eq!(late, [200, 500], "the clients still get their answers");
    assert_eq!(
        core.state(clock.now()),
        State::Closed,
        "a late 500 trips nothing"
    );
    let after = core.metrics();
    assert_eq!(
        (after.trips, after.abandoned),
        (before.trips, before.abandoned)
    );
    expected.extend([(Open, HalfOpen), (HalfOpen, Closed)]);
    assert_eq!(seen.seen(), expected);
    assert_eq!(send(&mut service, "/").await.status(), 200);
}

/// A hung trial whose client goes away after the timeout (its response
/// future dropped) abandons a stale permit: nothing is decided, the
/// reopened breaker keeps its open time, and its next trial is admitted.
#[tokio::test(start_paused = true)]
async fn a_hung_trial_dropped_after_the_timeout_decides_nothing() {
    let upstream = Gate::new();
    let core = core(Some(MAX_HALF_OPEN));
    let layer = CircuitBreakerLayer::new("inventory", Arc::clone(&core));
    let clock = layer.clock();
    let mut service = layer.layer(upstream.clone());
    trip_and_wait(&mut service, &core, clock).await;
    upstream.hang();
    let entered = clock.now();
    let trial = spawn_send(&service, "/");
    settle().await;
    past_the_timeout(clock, entered).await;
    // Timed out by a reader that changes nothing, then by a request.
    assert_eq!(core.state(clock.now()), State::Open);
    assert_eq!(
        refused_state(&send(&mut service.clone(), "/").await),
        "open"
    );
    let before = core.metrics();
    trial.abort();
    assert!(trial.await.unwrap_err().is_cancelled());
    let after = core.metrics();
    assert_eq!(
        after.abandoned,
        before.abandoned + 1,
        "abandoned, not recorded"
    );
    assert_eq!(
        (after.successes, after.failures, after.trips),
        (before.successes, before.failures, before.trips)
    );
    assert_eq!(core.state(clock.now()), State::Open, "still open");
    tokio::time::advance(StdDuration::from_secs(11)).await;
    upstream.recover();
    assert_eq!(send(&mut service, "/").await.status(), 200);
    assert_eq!(core.state(clock.now()), State::Closed);
}

/// The async `Breaker::call` holds its permit the same way (until the
/// call's future completes), so the same hang wedges it without a policy
/// timeout; with `max_half_open` on the core the hung trial reopens the
/// breaker (the transition reported to the observer, as a layer's is),
/// a later trial closes it, and the hung call finishing late with an
/// error trips nothing.
#[tokio::test(start_paused = true)]
async fn breaker_call_reopens_behind_a_hung_trial_with_max_half_open() {
    for max in [None, Some(MAX_HALF_OPEN)] {
        let core = core(max);
        let seen = Arc::new(Transitions::default());
        let breaker = Breaker::builder("billing", Arc::clone(&core))
            .observer(Arc::clone(&seen) as Arc<dyn BreakerObserver>)
            .build();
        let clock = breaker.clock();
        let _ = breaker.call(async { Err::<(), _>("down") }).await;
        tokio::time::advance(StdDuration::from_secs(11)).await;
        let entered = clock.now();
        let release = Arc::new(Semaphore::new(0));
        let hung = {
            let (breaker, release) = (breaker.clone(), Arc::clone(&release));
            tokio::spawn(async move {
                breaker
                    .call(async move {
                        release.acquire().await.unwrap().forget();
                        Err::<(), _>("late")
                    })
                    .await
            })
        };
        settle().await;
        assert_eq!(core.state(clock.now()), State::HalfOpen);
        past_the_timeout(clock, entered).await;
        let refused = breaker.call(async { Ok::<_, &str>(()) }).await;
        let Some(_) = max else {
            // Without a timeout: refused as half-open (no retry time), for ever.
            assert!(matches!(
                refused,
                Err(CallError::Open { retry_after: None })
            ));
            tokio::time::advance(StdDuration::from_secs(3_600)).await;
            assert_eq!(breaker.state(), State::HalfOpen);
            release.add_permits(1);
            assert!(matches!(hung.await.unwrap(), Err(CallError::Inner("late"))));
            assert_eq!(breaker.state(), State::Open, "only its answer decided");
            continue;
        };
        assert!(
            matches!(
                refused,
                Err(CallError::Open {
                    retry_after: Some(_)
                })
            ),
            "{refused:?}"
        );
        assert_eq!(
            seen.seen(),
            [
                (State::Closed, State::Open),
                (State::Open, State::HalfOpen),
                (State::HalfOpen, State::Open)
            ],
            "the timeout's transition is reported"
        );
        tokio::time::advance(StdDuration::from_secs(11)).await;
        assert_eq!(breaker.call(async { Ok::<_, &str>(7) }).await.unwrap(), 7);
        assert_eq!(breaker.state(), State::Closed);
        release.add_permits(1);
        assert!(matches!(hung.await.unwrap(), Err(CallError::Inner("late"))));
        assert_eq!(
            breaker.state(),
            State::Closed,
            "a late failure trips nothing"
        );
        assert_eq!(core.metrics().trips, 2);
    }
}
