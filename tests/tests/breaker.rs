//! `Breaker`: timeouts, the classifier, slow calls, exactly-once records,
//! cancellation and the tracing of transitions, on paused tokio time.

mod common;

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use common::{core_breaker, field, poll_once, Capture};
use fusebox::breaker::{CircuitBreaker, Config, Metrics, Outcome, State};
use fusebox_std::policy::Breaker;
use fusebox_std::CallError;
use tokio::time::{sleep, Instant};

const OPEN_FOR: Duration = Duration::from_secs(1);

/// Fails one call so that a one-failure breaker opens, then waits until it
/// lets a trial through (the core rounds open times up to its tick, so the
/// wait is the one it names).
async fn open_then_wait(breaker: &Breaker) {
    let _ = breaker.call(async { Err::<(), _>("down") }).await;
    assert_eq!(breaker.state(), State::Open);
    let Err(CallError::Open {
        retry_after: Some(after),
    }) = breaker.call(async { Ok::<(), &str>(()) }).await
    else {
        panic!("an open breaker refuses with a retry time");
    };
    assert!(after >= OPEN_FOR, "never earlier than open_for");
    sleep(after).await;
    assert_eq!(breaker.state(), State::HalfOpen);
}

#[tokio::test(start_paused = true)]
async fn timeout_fires_exactly_and_counts_as_a_failure() {
    let breaker = Breaker::builder("slow-dep", core_breaker(2, OPEN_FOR))
        .timeout(Duration::from_millis(300))
        .build();
    let start = Instant::now();
    let result = breaker
        .call(async {
            sleep(Duration::from_secs(60)).await;
            Ok::<_, ()>("never")
        })
        .await;
    assert!(matches!(result, Err(CallError::Timeout)));
    assert_eq!(Instant::now(), start + Duration::from_millis(300));
    assert_eq!(breaker.metrics().failures, 1);

    // A call that finishes before the timeout is not affected by it.
    let start = Instant::now();
    let ok = breaker
        .call(async {
            sleep(Duration::from_millis(299)).await;
            Ok::<_, ()>(5)
        })
        .await;
    assert_eq!(ok.unwrap(), 5);
    assert_eq!(Instant::now(), start + Duration::from_millis(299));
    // The success reset the consecutive count: still closed.
    assert_eq!(breaker.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn open_breaker_short_circuits_without_polling() {
    let breaker = Breaker::new("db", core_breaker(1, OPEN_FOR));
    let _ = breaker.call(async { Err::<(), _>(()) }).await;
    let mut polled = false;
    let refused = breaker
        .call(async {
            polled = true;
            Ok::<(), ()>(())
        })
        .await;
    assert!(refused.unwrap_err().is_open());
    assert!(!polled, "the inner future is never polled when refused");
    assert_eq!(breaker.metrics().rejected, 1);
}

#[tokio::test(start_paused = true)]
async fn classifier_ignored_outcome_changes_nothing() {
    // 404 is the caller's problem, not the dependency's.
    let breaker = Breaker::builder("users", core_breaker(1, OPEN_FOR))
        .classifier(|r: &Result<(), u16>| match r {
            Ok(()) => Outcome::Success,
            Err(404) => Outcome::Ignored,
            Err(_) => Outcome::Failure,
        })
        .build();
    for _ in 0..5 {
        let r = breaker.call(async { Err::<(), u16>(404) }).await;
        assert!(matches!(r, Err(CallError::Inner(404))));
    }
    assert_eq!(breaker.state(), State::Closed);
    let m = breaker.metrics();
    assert_eq!((m.ignored, m.failures, m.successes), (5, 0, 0));

    // In half-open, an ignored trial frees the slot without deciding.
    let _ = breaker.call(async { Err::<(), u16>(503) }).await;
    assert_eq!(breaker.state(), State::Open);
    let Err(CallError::Open {
        retry_after: Some(after),
    }) = breaker.call(async { Ok::<(), u16>(()) }).await
    else {
        panic!("open");
    };
    sleep(after).await;
    let _ = breaker.call(async { Err::<(), u16>(404) }).await;
    assert_eq!(breaker.state(), State::HalfOpen, "ignored: no decision");
    // The slot is free: the next trial gets through and decides.
    breaker.call(async { Ok::<(), u16>(()) }).await.unwrap();
    assert_eq!(breaker.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn measured_duration_feeds_slow_call_detection() {
    let config = Config::builder()
        .slow_call(fusebox::Duration::from_millis(50), 100)
        .window(2)
        .minimum_calls(2)
        .build()
        .unwrap();
    let breaker = Breaker::new("slow", Arc::new(CircuitBreaker::new(config)));
    let call = |ms| {
        breaker.call(async move {
            sleep(Duration::from_millis(ms)).await;
            Ok::<(), ()>(())
        })
    };
    call(49).await.unwrap();
    call(49).await.unwrap();
    assert_eq!(breaker.state(), State::Closed, "fast calls");
    assert_eq!(breaker.metrics().slow_calls, 0);
    call(50).await.unwrap();
    call(70).await.unwrap();
    assert_eq!(breaker.metrics().slow_calls, 2);
    assert_eq!(breaker.state(), State::Open, "two slow calls of two");
}

/// `Breaker::call` skips the clock when nothing needs the time; a slow-call
/// rule switched on by `set_config` must still be measured from the next
/// call on, and a trip must be stamped with the time the call ended.
#[tokio::test(start_paused = true)]
async fn a_slow_rule_set_live_is_measured_and_trips_are_stamped_at_the_end() {
    let plain = Config::builder()
        .consecutive_failures(3)
        .window(2)
        .failure_rate(100)
        .minimum_calls(2)
        .build()
        .unwrap();
    let core = Arc::new(CircuitBreaker::new(plain));
    let seen = Arc::new(Trips::default());
    let breaker = Breaker::builder("live", Arc::clone(&core))
        .observer(seen.clone())
        .build();
    assert!(!core.measures_duration());
    let slow = |ms| {
        breaker.call(async move {
            sleep(Duration::from_millis(ms)).await;
            Ok::<(), &str>(())
        })
    };
    slow(80).await.unwrap();
    assert_eq!(breaker.metrics().slow_calls, 0, "no slow rule yet");
    let with_slow = Config::builder()
        .consecutive_failures(3)
        .window(2)
        .failure_rate(100)
        .slow_call(fusebox::Duration::from_millis(50), 100)
        .minimum_calls(2)
        .build()
        .unwrap();
    core.set_config(with_slow).unwrap();
    assert!(core.measures_duration());
    slow(80).await.unwrap();
    slow(60).await.unwrap();
    assert_eq!(
        breaker.metrics().slow_calls,
        2,
        "measured from the change on"
    );
    assert_eq!(breaker.state(), State::Open);
    let at = *seen.0.lock().unwrap();
    assert_eq!(
        at.map(|at| breaker.clock().to_tokio(at)),
        Some(Instant::now()),
        "stamped when the call ended"
    );
}

/// The time of the last transition a breaker's calls caused.
#[derive(Default)]
struct Trips(std::sync::Mutex<Option<fusebox::Instant>>);

impl fusebox_std::policy::BreakerObserver for Trips {
    fn transition(&self, _: &str, t: fusebox::breaker::Transition) {
        *self.0.lock().unwrap() = Some(t.at);
    }
}

#[tokio::test(start_paused = true)]
async fn every_permit_is_recorded_exactly_once() {
    let breaker = Breaker::builder("once", core_breaker(10, OPEN_FOR))
        .timeout(Duration::from_millis(100))
        .classifier(|r: &Result<(), u16>| match r {
            Ok(()) => Outcome::Success,
            Err(404) => Outcome::Ignored,
            Err(_) => Outcome::Failure,
        })
        .build();
    breaker.call(async { Ok(()) }).await.unwrap();
    breaker.call(async { Err(500) }).await.unwrap_err();
    breaker.call(async { Err(404) }).await.unwrap_err();
    // Timed out: a failure, once (the inner future is never polled again).
    breaker
        .call(async {
            sleep(Duration::from_secs(1)).await;
            Ok(())
        })
        .await
        .unwrap_err();
    // Cancelled after its first poll: abandoned, once.
    {
        let mut call = pin!(breaker.call(std::future::pending::<Result<(), u16>>()));
        assert!(poll_once(call.as_mut()).is_pending());
    }
    // Dropped before its first poll: never asked for a permit.
    drop(breaker.call(async { Ok::<(), u16>(()) }));
    let m = breaker.metrics();
    assert_eq!(
        m,
        Metrics {
            successes: 1,
            failures: 2,
            ignored: 1,
            abandoned: 1,
            ..Metrics::default()
        }
    );
    assert_eq!(m.calls(), 5);
}

#[tokio::test(start_paused = true)]
async fn cancelled_trial_frees_the_half_open_slot_without_deciding() {
    let breaker = Breaker::builder("probe", core_breaker(1, OPEN_FOR))
        .timeout(Duration::from_secs(5))
        .build();
    open_then_wait(&breaker).await;

    // The only trial is in flight (inside the inner future and the timeout).
    let mut trial = Box::pin(breaker.call(std::future::pending::<Result<(), &str>>()));
    assert!(poll_once(trial.as_mut()).is_pending());
    let busy = breaker.call(async { Ok::<(), &str>(()) }).await;
    assert!(matches!(busy, Err(CallError::Open { retry_after: None })));

    drop(trial);
    assert_eq!(breaker.metrics().abandoned, 1);
    assert_eq!(breaker.state(), State::HalfOpen, "no decision");
    breaker.call(async { Ok::<(), &str>(()) }).await.unwrap();
    assert_eq!(breaker.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn into_inner_before_polling_asks_for_nothing() {
    let breaker = Breaker::new("inner", core_breaker(1, OPEN_FOR));
    let call = breaker.call(async { Ok::<u8, ()>(9) });
    let inner = call.into_inner();
    assert_eq!(inner.await, Ok(9));
    assert_eq!(breaker.metrics(), Metrics::default());
}

#[tokio::test(start_paused = true)]
async fn transitions_are_traced_with_structured_fields() {
    let capture = Capture::global();
    let breaker = Breaker::new("checkout", core_breaker(1, OPEN_FOR));
    open_then_wait(&breaker).await;
    breaker.call(async { Ok::<(), &str>(()) }).await.unwrap();

    let events = capture.with("breaker", "checkout");
    let transitions: Vec<(&str, &str, &str)> = events
        .iter()
        .filter_map(|e| Some((field(e, "level")?, field(e, "from")?, field(e, "to")?)))
        .collect();
    assert_eq!(
        transitions,
        [
            ("WARN", "Closed", "Open"),
            ("INFO", "Open", "HalfOpen"),
            ("INFO", "HalfOpen", "Closed"),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn failsafe_call_ok_call_err_and_call_with() {
    // failsafe-rs `futures` tests, with a breaker opening on one failure:
    // a success keeps it closed; an error opens it and the next call is
    // rejected; errors its predicate excuses keep it closed (failsafe
    // counts them as successes, here they are `Ignored`).
    let breaker = Breaker::new("failsafe", core_breaker(1, Duration::from_secs(5)));
    breaker
        .call(async {
            sleep(Duration::from_millis(100)).await;
            Ok::<(), ()>(())
        })
        .await
        .unwrap();
    assert_eq!(breaker.state(), State::Closed);
    assert!(matches!(
        breaker.call(async { Err::<(), ()>(()) }).await,
        Err(CallError::Inner(()))
    ));
    assert_eq!(breaker.state(), State::Open);
    assert!(matches!(
        breaker.call(async { Ok::<(), ()>(()) }).await,
        Err(CallError::Open { .. })
    ));

    let excusing = Breaker::builder("failsafe-with", core_breaker(1, Duration::from_secs(5)))
        .classifier(|r: &Result<(), bool>| match r {
            Err(true) => Outcome::Ignored,
            Err(false) => Outcome::Failure,
            Ok(()) => Outcome::Success,
        })
        .build();
    for _ in 0..2 {
        assert!(matches!(
            excusing.call(async { Err::<(), _>(true) }).await,
            Err(CallError::Inner(true))
        ));
        assert_eq!(excusing.state(), State::Closed);
    }
    let _ = excusing.call(async { Err::<(), _>(false) }).await;
    assert_eq!(excusing.state(), State::Open);
}
