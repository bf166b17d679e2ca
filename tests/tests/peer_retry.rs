//! Scenarios from peer crates' own retry suites, re-expressed against
//! `fusebox_std::policy::{Retry, RetryBudget, ExponentialBackoffMaker}`,
//! with expectations taken from fusebox-std's documented contract (its
//! rustdoc), not from its code: tower's `retry/budget` (`TpsBudget`
//! deposit/withdraw), backon / backoff / tokio-retry (exponential growth,
//! caps, max elapsed time, jitter bounds), Finagle's retry budget under
//! contention, and hostile Retry-After values. Paused tokio time throughout.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fusebox::Instant;
use fusebox_std::policy::{
    Backoff, BackoffError, BudgetError, ExponentialBackoffMaker, Jitter, MakeBackoff, Retry,
    RetryBudget, Stop,
};

fn exact(base_ms: u64, factor: f64, max_ms: u64) -> ExponentialBackoffMaker {
    ExponentialBackoffMaker::new(
        Duration::from_millis(base_ms),
        factor,
        Duration::from_millis(max_ms),
    )
    .unwrap()
    .with_jitter(Jitter::None)
}

/// An error naming a Retry-After (as parsed from an HTTP header).
#[derive(Debug, Clone, Copy)]
struct After(fusebox::Duration);

impl fusebox::RetryAfter for After {
    fn retry_after(&self) -> Option<fusebox::Duration> {
        Some(self.0)
    }
}

// ---------------------------------------------------------------------------
// Backoff (backon `ExponentialBuilder`, backoff `ExponentialBackoff`,
// tokio-retry `ExponentialBackoff`)
// ---------------------------------------------------------------------------

#[test]
fn backoff_grows_exponentially_then_stays_at_cap() {
    // backon: "test_exponential_max_delay"; doc: ceiling before retry k is
    // `min(max, base · factor^(k-1))`.
    let mut b = exact(100, 2.0, 1_000).make_backoff();
    let delays: Vec<u128> = (0..7).map(|_| b.next_delay().as_millis()).collect();
    assert_eq!(delays, [100, 200, 400, 800, 1_000, 1_000, 1_000]);
}

#[test]
fn backoff_factor_one_is_constant() {
    // backon ConstantBuilder / tokio-retry FixedInterval, through factor 1.
    let mut b = exact(250, 1.0, 250).make_backoff();
    assert!((0..50).all(|_| b.next_delay() == Duration::from_millis(250)));
}

#[test]
fn backoff_thousands_of_retries_saturate_at_cap_without_overflow() {
    // tokio-retry/backoff: "exponential backoff does not overflow" after many
    // retries; here to Duration::MAX and the largest finite factor.
    let maker = ExponentialBackoffMaker::new(Duration::from_secs(1), f64::MAX, Duration::MAX)
        .unwrap()
        .with_jitter(Jitter::None);
    let mut b = maker.make_backoff();
    assert_eq!(b.next_delay(), Duration::from_secs(1));
    for _ in 0..5_000 {
        assert_eq!(b.next_delay(), Duration::MAX);
    }
    let mut b = exact(1, 1.5, 60_000).make_backoff();
    let delays: Vec<Duration> = (0..10_000).map(|_| b.next_delay()).collect();
    assert!(delays.windows(2).all(|w| w[0] <= w[1]), "never shrinks");
    assert_eq!(*delays.last().unwrap(), Duration::from_secs(60));
}

#[test]
fn backoff_zero_base_is_zero_delays() {
    let mut b = exact(0, 2.0, 0).make_backoff();
    assert!((0..20).all(|_| b.next_delay() == Duration::ZERO));
}

/// A zero base is zero delays below any cap, however many retries and
/// however large the factor: `min(max, 0 · factor^(k-1))` is zero. Found
/// by a hostile review: the ceiling computed `0 · factor^(k-1)` in floating
/// point, which is `0 · ∞ = NaN` once the power overflows, read as the cap:
/// at factor 2 the delays jumped from zero to the 10 s cap at retry 1 025,
/// at factor 1e300 at retry 3 (a call retrying "at once" slept 20 s).
#[tokio::test(start_paused = true)]
async fn backoff_zero_base_stays_zero_below_any_cap() {
    let zero_base = |factor| {
        ExponentialBackoffMaker::new(Duration::ZERO, factor, Duration::from_secs(10))
            .unwrap()
            .with_jitter(Jitter::None)
    };
    for factor in [1.0, 2.0, 10.0, 1e300, f64::MAX] {
        for jitter in [Jitter::None, Jitter::Full] {
            let mut b = zero_base(factor).with_jitter(jitter).make_backoff();
            let late = (0..2_000).position(|_| !b.next_delay().is_zero());
            assert_eq!(late, None, "factor {factor}, {jitter:?}: a delay at retry");
        }
    }
    let retry = Retry::builder()
        .max_attempts(5)
        .backoff(zero_base(1e300))
        .build();
    let start = tokio::time::Instant::now();
    let e = retry
        .call(|| async { Err::<(), _>("down") })
        .await
        .unwrap_err();
    assert_eq!((e.attempts, e.stop), (5, Stop::Exhausted));
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[test]
fn backoff_rejects_bad_factors_and_caps() {
    let s = Duration::from_secs(1);
    for factor in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.999, 0.0, -2.0] {
        assert_eq!(
            ExponentialBackoffMaker::new(s, factor, s).unwrap_err(),
            BackoffError::Factor,
            "factor {factor}"
        );
    }
    assert_eq!(
        ExponentialBackoffMaker::new(s, 2.0, Duration::from_nanos(999_999_999)).unwrap_err(),
        BackoffError::Max
    );
}

#[test]
fn full_jitter_stays_in_whole_ms_under_each_ceiling_and_spreads() {
    // backoff crate: "randomization bounds"; AWS full jitter: uniform in
    // 0..=ceiling. Doc: "uniform over whole milliseconds in `0..=ceiling`".
    let maker =
        ExponentialBackoffMaker::new(Duration::from_millis(100), 2.0, Duration::from_secs(1))
            .unwrap()
            .with_rng(fastrand::Rng::with_seed(42));
    let ceilings = [100u64, 200, 400, 800, 1_000, 1_000];
    let mut firsts = Vec::new();
    for _ in 0..2_000 {
        let mut b = maker.make_backoff();
        for (k, &ceiling) in ceilings.iter().enumerate() {
            let d = b.next_delay();
            assert!(d <= Duration::from_millis(ceiling), "retry {k}: {d:?}");
            assert_eq!(d.subsec_nanos() % 1_000_000, 0, "whole ms: {d:?}");
            if k == 0 {
                firsts.push(d.as_millis());
            }
        }
    }
    // Uniform over 0..=100: both ends are reached, the mean is near 50.
    assert!(firsts.contains(&0) && firsts.contains(&100));
    let (sum, n) = (firsts.iter().sum::<u128>(), firsts.len() as u128);
    assert!((45 * n..55 * n).contains(&sum), "mean {}", sum / n);
}

#[test]
fn full_jitter_under_one_ms_draws_zero() {
    let maker =
        ExponentialBackoffMaker::new(Duration::from_micros(300), 2.0, Duration::from_micros(900))
            .unwrap();
    let mut b = maker.make_backoff();
    assert!((0..100).all(|_| b.next_delay() == Duration::ZERO));
}

#[test]
fn full_jitter_with_the_largest_ceiling_does_not_panic() {
    // Hostile config: a cap of Duration::MAX with full jitter.
    let maker = ExponentialBackoffMaker::new(Duration::MAX, 2.0, Duration::MAX)
        .unwrap()
        .with_rng(fastrand::Rng::with_seed(1));
    let mut b = maker.make_backoff();
    for _ in 0..100 {
        let d = b.next_delay();
        assert_eq!(d.subsec_nanos() % 1_000_000, 0, "whole ms: {d:?}");
    }
}

#[test]
fn each_call_draws_its_own_delays_and_seeds_replay() {
    // Doc: calls that fail together draw different delays (forked RNG);
    // a seeded maker yields the same delays for the same sequence of calls.
    let seeded = || {
        ExponentialBackoffMaker::new(Duration::from_secs(1), 2.0, Duration::from_secs(60))
            .unwrap()
            .with_rng(fastrand::Rng::with_seed(9))
    };
    let draw = |m: &ExponentialBackoffMaker| -> Vec<Duration> {
        let mut b = m.make_backoff();
        (0..8).map(|_| b.next_delay()).collect()
    };
    let (m1, m2) = (seeded(), seeded());
    let (a1, b1) = (draw(&m1), draw(&m1));
    let (a2, b2) = (draw(&m2), draw(&m2));
    assert_ne!(a1, b1, "two calls of one maker retry in lockstep");
    assert_eq!((a1, b1), (a2, b2), "the same seed replays");
}

// ---------------------------------------------------------------------------
// Retry: attempts, deadline (backon `with_max_times`, backoff
// `max_elapsed_time`), Retry-After
// ---------------------------------------------------------------------------

async fn failures<B: MakeBackoff, P: fusebox_std::policy::RetryPredicate<After>>(
    retry: &Retry<B, P>,
    after: After,
) -> (u32, Stop, Duration, u32) {
    let calls = AtomicU32::new(0);
    let start = tokio::time::Instant::now();
    let e = retry
        .call(|| {
            calls.fetch_add(1, Ordering::Relaxed);
            async move { Err::<(), _>(after) }
        })
        .await
        .unwrap_err();
    (
        e.attempts,
        e.stop,
        start.elapsed(),
        calls.load(Ordering::Relaxed),
    )
}

#[tokio::test(start_paused = true)]
async fn zero_attempts_read_as_one() {
    let retry = Retry::builder().max_attempts(0).build();
    let (attempts, stop, elapsed, calls) = failures(&retry, After(fusebox::Duration::ZERO)).await;
    assert_eq!(
        (attempts, stop, elapsed, calls),
        (1, Stop::Exhausted, Duration::ZERO, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn zero_deadline_still_runs_the_first_attempt() {
    let retry = Retry::builder()
        .max_attempts(10)
        .deadline(Duration::ZERO)
        .build();
    let (attempts, stop, elapsed, calls) = failures(&retry, After(fusebox::Duration::ZERO)).await;
    assert_eq!(
        (attempts, stop, elapsed, calls),
        (1, Stop::Deadline, Duration::ZERO, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn deadline_counts_a_wait_ending_within_one_ms_of_it_as_past() {
    // backoff's max_elapsed_time; doc: "a wait ending within 1 ms of it
    // counts as past".
    let make = |deadline: Duration| {
        Retry::builder()
            .max_attempts(100)
            .backoff(exact(1_000, 1.0, 1_000))
            .deadline(deadline)
            .build()
    };
    let (a, s, e, _) = failures(
        &make(Duration::from_micros(2_000_500)),
        After(fusebox::Duration::ZERO),
    )
    .await;
    assert_eq!((a, s, e), (2, Stop::Deadline, Duration::from_secs(1)));
    let (a, s, e, _) = failures(
        &make(Duration::from_millis(2_002)),
        After(fusebox::Duration::ZERO),
    )
    .await;
    assert_eq!((a, s, e), (3, Stop::Deadline, Duration::from_secs(2)));
}

#[tokio::test(start_paused = true)]
async fn huge_retry_after_without_deadline_stops_at_once() {
    // A server answering `Retry-After: 18446744073709551615`.
    let retry = Retry::builder().max_attempts(5).honor_retry_after().build();
    let (a, s, e, c) = failures(&retry, After(fusebox::Duration::MAX)).await;
    assert_eq!(
        (a, s, e, c),
        (1, Stop::RetryAfterTooLong, Duration::ZERO, 1)
    );
    // Just over the 60 s default, too.
    let (a, s, e, _) = failures(&retry, After(fusebox::Duration::from_micros(60_000_001))).await;
    assert_eq!((a, s, e), (1, Stop::RetryAfterTooLong, Duration::ZERO));
}

#[tokio::test(start_paused = true)]
async fn retry_after_at_the_cap_is_honoured() {
    // Doc: "a Retry-After must be at most max_retry_after".
    let retry = Retry::builder()
        .max_attempts(2)
        .backoff(exact(1, 2.0, 10))
        .honor_retry_after()
        .build();
    let (a, s, e, _) = failures(&retry, After(fusebox::Duration::from_secs(60))).await;
    // The Retry-After, then the backoff's 1 ms on top.
    assert_eq!(
        (a, s, e),
        (2, Stop::Exhausted, Duration::from_millis(60_001))
    );
}

#[tokio::test(start_paused = true)]
async fn huge_retry_after_with_a_deadline_stops_with_deadline_at_once() {
    let retry = Retry::builder()
        .max_attempts(5)
        .deadline(Duration::from_secs(10))
        .honor_retry_after()
        .build();
    let (a, s, e, _) = failures(&retry, After(fusebox::Duration::MAX)).await;
    assert_eq!((a, s, e), (1, Stop::Deadline, Duration::ZERO));
    // A Retry-After inside the deadline is honoured, above the 60 s default.
    let retry = Retry::builder()
        .max_attempts(2)
        .backoff(exact(1, 2.0, 10))
        .deadline(Duration::from_secs(600))
        .honor_retry_after()
        .build();
    let (a, s, e, _) = failures(&retry, After(fusebox::Duration::from_secs(120))).await;
    assert_eq!(
        (a, s, e),
        (2, Stop::Exhausted, Duration::from_millis(120_001))
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_in_the_past_waits_the_backoff() {
    // An HTTP-date in the past parses to a zero Retry-After: the wait is
    // `Retry-After + backoff`, the backoff.
    let retry = Retry::builder()
        .max_attempts(3)
        .backoff(exact(100, 2.0, 1_000))
        .honor_retry_after()
        .build();
    let (a, s, e, _) = failures(&retry, After(fusebox::Duration::ZERO)).await;
    assert_eq!((a, s, e), (3, Stop::Exhausted, Duration::from_millis(300)));
}

#[tokio::test(start_paused = true)]
async fn a_duration_max_deadline_is_no_deadline_so_the_60s_cap_applies() {
    // Doc (`deadline`): "One longer than ~30 years (Duration::MAX) is no
    // deadline at all"; (`max_retry_after`): "without one, 60 s".
    let retry = Retry::builder()
        .max_attempts(3)
        .deadline(Duration::MAX)
        .honor_retry_after()
        .build();
    let (a, s, e, _) = failures(&retry, After(fusebox::Duration::from_secs(3_600))).await;
    assert_eq!((a, s, e), (1, Stop::RetryAfterTooLong, Duration::ZERO));
}

#[tokio::test(start_paused = true)]
async fn dropping_the_call_mid_attempt_drops_the_attempt() {
    struct Guard(Arc<AtomicU32>);
    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
    let dropped = Arc::new(AtomicU32::new(0));
    let retry = Retry::builder().max_attempts(3).build();
    let d = Arc::clone(&dropped);
    let call = retry.call(move || {
        let guard = Guard(Arc::clone(&d));
        async move {
            let _guard = guard;
            tokio::time::sleep(Duration::from_secs(10)).await;
            Err::<(), _>("late")
        }
    });
    let r = tokio::time::timeout(Duration::from_secs(1), call).await;
    assert!(r.is_err(), "timed out");
    assert_eq!(
        dropped.load(Ordering::Relaxed),
        1,
        "the attempt in flight is dropped"
    );
}

// ---------------------------------------------------------------------------
// RetryBudget: tower's `TpsBudget` tests (empty, leaky, slots), Finagle's
// budget under contention, hostile values.
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn budget_empty_admits_nothing() {
    // tower `tps_empty`: no floor, no deposits, no retry.
    let budget = RetryBudget::new(Duration::from_secs(1), 100, 0).unwrap();
    assert!(!budget.try_withdraw());
    assert_eq!(budget.remaining_at(Instant::ZERO), 0);
}

#[tokio::test(start_paused = true)]
async fn budget_deposits_leak_out_of_the_window() {
    // tower `tps_leaky`: a deposit made 3 windows ago buys nothing.
    let budget = RetryBudget::new(Duration::from_secs(1), 100, 0).unwrap();
    budget.deposit();
    tokio::time::advance(Duration::from_secs(3)).await;
    assert!(!budget.try_withdraw());
}

#[test]
fn budget_slots_expire_one_by_one() {
    // tower `tps_slots`: window 1 s in 10 slots of 100 ms; deposits at 0 s
    // are in the windows of every slot to 900 ms, gone at 1 000 ms.
    let budget = RetryBudget::new(Duration::from_secs(1), 50, 0).unwrap();
    budget.deposit_at(Instant::ZERO);
    budget.deposit_at(Instant::ZERO);
    assert_eq!(budget.remaining_at(Instant::from_millis(999)), 1);
    assert!(budget.try_withdraw_at(Instant::from_millis(950)));
    assert!(!budget.try_withdraw_at(Instant::from_millis(950)));
    // At 1 s the deposits have left, but the withdrawal at 950 ms is still
    // in the window: a new deposit pair buys nothing until it leaves too.
    budget.deposit_at(Instant::from_millis(1_000));
    budget.deposit_at(Instant::from_millis(1_000));
    assert!(!budget.try_withdraw_at(Instant::from_millis(1_000)));
    assert!(budget.try_withdraw_at(Instant::from_millis(1_900)));
}

#[test]
fn budget_floor_and_percent_combine_as_documented() {
    // tower's default shape: 20 % of a 10 s window plus a floor.
    let budget = RetryBudget::new(Duration::from_secs(10), 20, 10).unwrap();
    let now = Instant::from_secs(3);
    for _ in 0..101 {
        budget.deposit_at(now);
    }
    assert_eq!(budget.remaining_at(now), 10 + 20);
    let admitted = (0..100).filter(|_| budget.try_withdraw_at(now)).count();
    assert_eq!(admitted, 30);
}

#[test]
fn budget_stale_clock_never_reopens_an_old_window() {
    let budget = RetryBudget::new(Duration::from_secs(1), 0, 1).unwrap();
    assert!(budget.try_withdraw_at(Instant::from_secs(5)));
    // Back to 0 s (a stale read): it reads as the 5 s slot, whose floor is spent.
    assert!(!budget.try_withdraw_at(Instant::ZERO));
    assert!(!budget.try_withdraw_at(Instant::from_millis(5_500)));
    assert!(budget.try_withdraw_at(Instant::from_secs(6)));
}

#[test]
fn budget_window_bounds_and_rounding() {
    assert_eq!(
        RetryBudget::new(Duration::from_micros(9), 10, 1).unwrap_err(),
        BudgetError::WindowTooShort
    );
    let b = RetryBudget::new(Duration::from_micros(10), 10, 1).unwrap();
    assert_eq!(b.window(), Duration::from_micros(10));
    // Sub-microsecond parts are rounded down with the rest.
    let b = RetryBudget::new(Duration::from_nanos(25_999), 10, 1).unwrap();
    assert_eq!(b.window(), Duration::from_micros(20));
}

#[test]
fn budget_extreme_values_do_not_panic() {
    let b = RetryBudget::new(Duration::from_secs(1), u32::MAX, u32::MAX).unwrap();
    let now = Instant::from_secs(1);
    for _ in 0..1_000 {
        b.deposit_at(now);
    }
    assert_eq!(
        b.remaining_at(now),
        u64::from(u32::MAX) + u64::from(u32::MAX) * 1_000 / 100
    );
    assert!(b.try_withdraw_at(now));
    let b = RetryBudget::new(Duration::MAX, 100, 0).unwrap();
    assert!(b.window() > Duration::from_secs(365 * 24 * 3_600));
    assert_eq!(b.window().subsec_nanos() % 10_000, 0);
    b.deposit_at(Instant::MAX);
    assert!(b.try_withdraw_at(Instant::MAX));
    assert!(!b.try_withdraw_at(Instant::MAX));
}

#[test]
fn budget_is_exact_under_contention() {
    // Finagle/tower: a check-then-withdraw budget over-admits under races;
    // the doc says this bound "holds at every retry, exactly and whatever
    // the concurrency".
    let budget = Arc::new(RetryBudget::new(Duration::from_secs(10), 10, 3).unwrap());
    let now = Instant::from_secs(2);
    let admitted = Arc::new(AtomicU32::new(0));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (budget, admitted) = (Arc::clone(&budget), Arc::clone(&admitted));
            std::thread::spawn(move || {
                for _ in 0..500 {
                    budget.deposit_at(now);
                    for _ in 0..3 {
                        if budget.try_withdraw_at(now) {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let bound = 3 + 10 * 4_000 / 100;
    assert_eq!(admitted.load(Ordering::Relaxed), bound);
    assert!(!budget.try_withdraw_at(now));
}

#[tokio::test(start_paused = true)]
async fn a_shared_budget_caps_retries_of_concurrent_callers() {
    // Finagle: 20 % of the requests may be retries, however many callers.
    let budget = Arc::new(RetryBudget::new(Duration::from_secs(10), 20, 0).unwrap());
    for _ in 0..10 {
        budget.deposit();
    }
    let retry = Arc::new(
        Retry::builder()
            .max_attempts(5)
            .backoff(exact(10, 2.0, 100))
            .budget(Arc::clone(&budget))
            .build(),
    );
    let calls = Arc::new(AtomicU32::new(0));
    let tasks: Vec<_> = (0..30)
        .map(|_| {
            let (retry, calls) = (Arc::clone(&retry), Arc::clone(&calls));
            tokio::spawn(async move {
                retry
                    .call(|| {
                        calls.fetch_add(1, Ordering::Relaxed);
                        async { Err::<(), _>("down") }
                    })
                    .await
                    .unwrap_err()
                    .stop
            })
        })
        .collect();
    let mut stops = Vec::new();
    for t in tasks {
        stops.push(t.await.unwrap());
    }
    // 40 first attempts in the window: at most 8 retries in all.
    let retries = calls.load(Ordering::Relaxed) - 30;
    assert!(retries <= 8, "{retries} retries");
    assert!(stops
        .iter()
        .all(|s| *s == Stop::Budget || *s == Stop::Exhausted));
    assert!(stops.contains(&Stop::Budget));
}

#[tokio::test(start_paused = true)]
async fn every_first_attempt_is_deposited() {
    // Finagle: successful requests fund retries. Doc: "Every first attempt
    // is deposited in the budget."
    let budget = Arc::new(RetryBudget::new(Duration::from_secs(10), 100, 0).unwrap());
    let retry = Retry::builder().budget(Arc::clone(&budget)).build();
    for _ in 0..3 {
        retry.call(|| async { Ok::<_, ()>(()) }).await.unwrap();
    }
    assert_eq!(budget.remaining_at(Instant::ZERO), 3);
}

#[tokio::test(start_paused = true)]
async fn zero_retry_after_cap_refuses_any_server_wait_but_not_the_backoff() {
    let retry = Retry::builder()
        .max_attempts(2)
        .backoff(exact(100, 1.0, 100))
        .honor_retry_after()
        .max_retry_after(Duration::ZERO)
        .build();
    let (a, s, e, _) = failures(&retry, After(fusebox::Duration::from_micros(1))).await;
    assert_eq!((a, s, e), (1, Stop::RetryAfterTooLong, Duration::ZERO));
    let (a, s, e, _) = failures(&retry, After(fusebox::Duration::ZERO)).await;
    assert_eq!((a, s, e), (2, Stop::Exhausted, Duration::from_millis(100)));
}

#[tokio::test(start_paused = true)]
async fn a_retry_cancelled_in_its_backoff_is_given_back_to_the_budget() {
    // Doc (`Retry`, Cancellation): "A retry granted by the budget and
    // cancelled in its backoff, before its attempt started, is given back
    // to the budget". (This test first found that doc saying the opposite,
    // "stays counted", of what the code had been changed to do.)
    let budget = Arc::new(RetryBudget::new(Duration::from_secs(10), 0, 1).unwrap());
    let retry = Retry::builder()
        .max_attempts(3)
        .backoff(exact(5_000, 1.0, 5_000))
        .budget(Arc::clone(&budget))
        .build();
    let calls = AtomicU32::new(0);
    let a = retry.call(|| {
        calls.fetch_add(1, Ordering::Relaxed);
        async { Err::<(), _>("a down") }
    });
    let b = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        retry
            .call(|| async { Err::<(), _>("b down") })
            .await
            .unwrap_err()
    };
    // A fails at once and sleeps 5 s; B fails at 100 ms, while A sleeps; A
    // is dropped at 1 s, mid-backoff.
    let (a, b) = tokio::join!(tokio::time::timeout(Duration::from_secs(1), a), b);
    assert!(a.is_err(), "A was cancelled");
    assert_eq!(calls.load(Ordering::Relaxed), 1);
    // The floor's one retry went to A before its sleep: B is refused.
    assert_eq!((b.attempts, b.stop), (1, Stop::Budget));
    // ... and A's cancellation gives that retry back.
    assert_eq!(
        budget.remaining_at(Instant::from_secs(1)),
        1,
        "the retry granted to the cancelled call is given back"
    );
}
