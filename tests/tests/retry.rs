//! `Retry`: exact delays, jitter bounds, Retry-After, the deadline and the
//! predicate, on paused tokio time. Some scenarios are re-expressed from
//! Polly's `RetryHelperTests` (exponential delays, the cap, overflow,
//! randomness) and resilience4j's retry docs (attempts include the first
//! call).

use std::cell::RefCell;
use std::time::Duration;

use fusebox_std::policy::{
    Backoff, ExponentialBackoffMaker, Jitter, MakeBackoff, Retry, RetryError, Stop,
};
use tokio::time::Instant;

const MS: Duration = Duration::from_millis(1);

fn exponential(base_ms: u64, factor: f64, max_ms: u64) -> ExponentialBackoffMaker {
    ExponentialBackoffMaker::new(
        Duration::from_millis(base_ms),
        factor,
        Duration::from_millis(max_ms),
    )
    .unwrap()
    .with_jitter(Jitter::None)
}

/// Runs `retry` on a call that fails `failures` times with `error()` and
/// then succeeds; returns the result and the instant of every attempt,
/// relative to the start.
async fn attempts<B: MakeBackoff, E>(
    retry: &Retry<B, impl fusebox_std::policy::RetryPredicate<E>>,
    failures: usize,
    error: impl Fn() -> E,
) -> (Result<usize, RetryError<E>>, Vec<Duration>) {
    let start = Instant::now();
    let at = RefCell::new(Vec::new());
    let result = retry
        .call(|| {
            at.borrow_mut().push(Instant::now() - start);
            let n = at.borrow().len();
            let outcome = if n > failures { Ok(n) } else { Err(error()) };
            async move { outcome }
        })
        .await;
    (result, at.into_inner())
}

fn ms(list: &[u64]) -> Vec<Duration> {
    list.iter().map(|&m| Duration::from_millis(m)).collect()
}

#[tokio::test(start_paused = true)]
async fn exponential_delays_are_exact_and_capped() {
    // Ceilings before retries 1..5: 100, 200, 400, 800, then the 1 s cap.
    let retry = Retry::builder()
        .max_attempts(6)
        .backoff(exponential(100, 2.0, 1_000))
        .build();
    let (result, at) = attempts(&retry, usize::MAX, || "down").await;
    let e = result.unwrap_err();
    assert_eq!((e.attempts, e.stop), (6, Stop::Exhausted));
    assert_eq!(at, ms(&[0, 100, 300, 700, 1_500, 2_500]));
}

#[tokio::test(start_paused = true)]
async fn max_attempts_include_the_first_call() {
    // resilience4j: "maxAttempts: the maximum number of attempts (including
    // the initial call as the first attempt)".
    let retry = Retry::builder()
        .max_attempts(3)
        .backoff(exponential(10, 1.0, 10))
        .build();
    let (result, at) = attempts(&retry, usize::MAX, || ()).await;
    assert_eq!(result.unwrap_err().attempts, 3);
    assert_eq!(at.len(), 3);
    // And a call that succeeds on its third attempt returns its value.
    let (ok, at) = attempts(&retry, 2, || ()).await;
    assert_eq!(ok.unwrap(), 3);
    assert_eq!(at, ms(&[0, 10, 20]));
}

#[test]
fn polly_exponential_ok_and_overflow() {
    // Polly: base 1 s, exponential: 1 s, 2 s, 4 s.
    let mut b = exponential(1_000, 2.0, 3_600_000).make_backoff();
    let secs: Vec<u64> = (0..3).map(|_| b.next_delay().as_secs()).collect();
    assert_eq!(secs, [1, 2, 4]);
    // Polly: attempt 1 000 with a maximum returns the maximum (no overflow).
    let mut b = exponential(86_400_000, 2.0, 2 * 86_400_000).make_backoff();
    let last = (0..1_000).map(|_| b.next_delay()).last().unwrap();
    assert_eq!(last, Duration::from_secs(2 * 86_400));
    // Polly MaxDelay_Ok: base 10 s above a 10 s cap stays at the cap.
    let mut b = exponential(10_000, 2.0, 10_000).make_backoff();
    assert_eq!(b.next_delay(), Duration::from_secs(10));
    assert_eq!(b.next_delay(), Duration::from_secs(10));
}

#[tokio::test(start_paused = true)]
async fn full_jitter_stays_within_its_ceiling() {
    let ceilings = [100u64, 200, 400, 800, 1_000, 1_000, 1_000, 1_000, 1_000];
    let mut all_gaps = Vec::new();
    for seed in 0..20 {
        let retry = Retry::builder()
            .max_attempts(10)
            .backoff(
                exponential(100, 2.0, 1_000)
                    .with_jitter(Jitter::Full)
                    .with_rng(fastrand::Rng::with_seed(seed)),
            )
            .build();
        let (_, at) = attempts(&retry, usize::MAX, || ()).await;
        assert_eq!(at.len(), 10);
        for (k, pair) in at.windows(2).enumerate() {
            let gap = pair[1].checked_sub(pair[0]).expect("attempts in order");
            assert!(
                gap <= Duration::from_millis(ceilings[k]),
                "seed {seed} retry {k}: {gap:?}"
            );
            assert_eq!(gap.subsec_nanos() % 1_000_000, 0, "whole milliseconds");
            all_gaps.push(gap);
        }
    }
    // Jitter spreads: not every draw is its ceiling, nor zero.
    assert!(all_gaps.iter().any(|g| *g > Duration::ZERO));
    let distinct: std::collections::HashSet<_> = all_gaps.iter().collect();
    assert!(distinct.len() > 20, "{} distinct delays", distinct.len());
}

#[tokio::test(start_paused = true)]
async fn same_seed_same_schedule_unseeded_runs_differ() {
    let seeded = |seed| {
        Retry::builder()
            .max_attempts(8)
            .backoff(
                exponential(100, 2.0, 10_000)
                    .with_jitter(Jitter::Full)
                    .with_rng(fastrand::Rng::with_seed(seed)),
            )
            .build()
    };
    let (_, a) = attempts(&seeded(11), usize::MAX, || ()).await;
    let (_, b) = attempts(&seeded(11), usize::MAX, || ()).await;
    assert_eq!(a, b);
    // Polly's EnsureRandomness: two unseeded schedules differ (8 draws up
    // to 100..6 400 ms each: equal by chance with negligible probability).
    let unseeded = || {
        Retry::builder()
            .max_attempts(8)
            .backoff(exponential(100, 2.0, 10_000).with_jitter(Jitter::Full))
            .build()
    };
    let (_, x) = attempts(&unseeded(), usize::MAX, || ()).await;
    let (_, y) = attempts(&unseeded(), usize::MAX, || ()).await;
    assert_ne!(x, y);
}

/// An error with a server's Retry-After.
#[derive(Debug)]
struct Throttled(Option<u64>);

impl fusebox::RetryAfter for Throttled {
    fn retry_after(&self) -> Option<fusebox::Duration> {
        self.0.map(fusebox::Duration::from_millis)
    }
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured_never_early_then_the_backoff() {
    // Backoff 100 ms; the server says 3 s: the retry is the backoff after
    // 3 s (the jitter a real backoff has there spreads the callers told
    // the same Retry-After), never before.
    let retry = Retry::builder()
        .max_attempts(3)
        .backoff(exponential(100, 1.0, 100))
        .honor_retry_after()
        .build();
    let (result, at) = attempts(&retry, 2, || Throttled(Some(3_000))).await;
    assert_eq!(result.unwrap(), 3);
    assert_eq!(at, ms(&[0, 3_100, 6_200]));

    // A Retry-After shorter than the backoff: it comes before it too.
    let (_, at) = attempts(&retry, 2, || Throttled(Some(20))).await;
    assert_eq!(at, ms(&[0, 120, 240]));

    // No Retry-After: the backoff.
    let (_, at) = attempts(&retry, 2, || Throttled(None)).await;
    assert_eq!(at, ms(&[0, 100, 200]));
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_ignored_unless_asked_for() {
    let retry = Retry::builder()
        .max_attempts(2)
        .backoff(exponential(100, 1.0, 100))
        .build();
    let (_, at) = attempts(&retry, 1, || Throttled(Some(3_000))).await;
    assert_eq!(at, ms(&[0, 100]));
}

#[tokio::test(start_paused = true)]
async fn deadline_is_never_overslept() {
    // Delays 300, 600, 1 200 ms; deadline 1 s: attempts at 0, 300 and 900;
    // the next would start at 2 100 ms, after the deadline: stop at once.
    let retry = Retry::builder()
        .max_attempts(10)
        .backoff(exponential(300, 2.0, 10_000))
        .deadline(Duration::from_secs(1))
        .build();
    let start = Instant::now();
    let (result, at) = attempts(&retry, usize::MAX, || ()).await;
    let e = result.unwrap_err();
    assert_eq!((e.attempts, e.stop), (3, Stop::Deadline));
    assert_eq!(at, ms(&[0, 300, 900]));
    assert_eq!(Instant::now(), start + 900 * MS, "gave up without sleeping");
}

#[tokio::test(start_paused = true)]
async fn a_retry_at_exactly_the_deadline_is_not_started() {
    let retry = Retry::builder()
        .max_attempts(10)
        .backoff(exponential(500, 1.0, 500))
        .deadline(Duration::from_secs(1))
        .build();
    let (result, at) = attempts(&retry, usize::MAX, || ()).await;
    assert_eq!(result.unwrap_err().stop, Stop::Deadline);
    assert_eq!(at, ms(&[0, 500]), "a third attempt would start at 1 s");
}

#[tokio::test(start_paused = true)]
async fn retry_after_beyond_the_deadline_stops_at_once() {
    let retry = Retry::builder()
        .max_attempts(5)
        .backoff(exponential(10, 1.0, 10))
        .deadline(Duration::from_secs(2))
        .honor_retry_after()
        .build();
    let start = Instant::now();
    let (result, at) = attempts(&retry, usize::MAX, || Throttled(Some(5_000))).await;
    let e = result.unwrap_err();
    assert_eq!((e.attempts, e.stop), (1, Stop::Deadline));
    assert_eq!(at, ms(&[0]));
    assert_eq!(Instant::now(), start);
}

#[tokio::test(start_paused = true)]
async fn the_predicate_decides_what_is_retried() {
    let retry = Retry::builder()
        .max_attempts(5)
        .backoff(exponential(10, 1.0, 10))
        .retry_if(|status: &u16| *status >= 500)
        .build();
    let (result, at) = attempts(&retry, usize::MAX, || 404u16).await;
    let e = result.unwrap_err();
    assert_eq!((e.error, e.attempts, e.stop), (404, 1, Stop::NotRetryable));
    assert_eq!(at.len(), 1);
    let (result, _) = attempts(&retry, usize::MAX, || 503u16).await;
    assert_eq!(result.unwrap_err().stop, Stop::Exhausted);
}

#[tokio::test(start_paused = true)]
async fn cancelling_during_the_backoff_stops_everything() {
    let retry = Retry::builder()
        .max_attempts(5)
        .backoff(exponential(1_000, 1.0, 1_000))
        .build();
    let calls = std::sync::atomic::AtomicU32::new(0);
    let run = retry.call(|| {
        calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        async { Err::<(), ()>(()) }
    });
    // The first attempt fails at once; the call then sleeps 1 s.
    let cut = tokio::time::timeout(Duration::from_millis(1_500), run).await;
    assert!(cut.is_err(), "cancelled during the second backoff");
    assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 2);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        calls.load(std::sync::atomic::Ordering::Relaxed),
        2,
        "no attempt after the drop"
    );
}

#[tokio::test(start_paused = true)]
async fn resilience4j_retry_scenarios() {
    // resilience4j's retry tests with its default fixed 500 ms wait: a
    // success is not retried (nothing slept); one failure then a success
    // is 2 calls and 500 ms; three failures with maxAttempts 3 are 3 calls
    // and 1 000 ms, ending in the last error.
    let retry = Retry::builder()
        .max_attempts(3)
        .backoff(exponential(500, 1.0, 500))
        .build();
    let start = Instant::now();
    let (ok, at) = attempts(&retry, 0, || "boom").await;
    assert_eq!((ok.unwrap(), at.len()), (1, 1));
    assert_eq!(Instant::now(), start);

    let (ok, at) = attempts(&retry, 1, || "boom").await;
    assert_eq!(ok.unwrap(), 2);
    assert_eq!(at, ms(&[0, 500]));

    let start = Instant::now();
    let (err, at) = attempts(&retry, usize::MAX, || "boom").await;
    let e = err.unwrap_err();
    assert_eq!((e.error, e.attempts), ("boom", 3));
    assert_eq!(at.len(), 3);
    assert_eq!(Instant::now(), start + Duration::from_secs(1));
}
