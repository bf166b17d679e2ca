//! Words driven past their range through the adapter (hostile review of
//! wrapping and saturating arithmetic): the core breaker's open deadline
//! across its 26-bit and 2^32 ms wraps, a retry budget at the top of the
//! microsecond range, backoff ceilings at extreme factors, the event
//! channel's loss accounting over millions of events, limiters on clocks
//! years from their origin, and everything after a paused runtime
//! auto-advances ~30 years to its only timer. Sound when written (kept:
//! no other test drives these through the adapter); every check is a
//! count, a state or a paused-time instant.

use std::sync::Arc;
use std::time::Duration;

use fusebox::breaker::{CircuitBreaker, Config, State};
use fusebox::bucket::{FullPolicy, Quota, TokenBucket};
use fusebox::{Clock, Instant};

use crate::events::{Component, Event, Events};
use crate::policy::{
    Backoff, Breaker, ExponentialBackoffMaker, Jitter, KeyedLimiter, Limiter, MakeBackoff,
    RetryBudget,
};
use crate::{CallError, Registry};

/// The core breaker's deadline tick (1.024 ms), in nanoseconds.
const TICK_NS: u64 = 1_024_000;

/// A policy breaker open for 30 s and then called by nobody for up to
/// years (past its state word's 26-bit deadline wrap, ≈ 19 h 5 min, twice,
/// past 2^32 ms, and three years): a call just before the deadline is
/// refused naming what is left (the open time rounded up to its 1.024 ms
/// tick), and the first call after it, however late, is the half-open
/// trial, never refused as if still open.
#[tokio::test(start_paused = true)]
async fn a_breaker_idle_across_its_deadline_wraps_lets_its_trial_through() {
    let wrap26 = Duration::from_nanos(TICK_NS << 26);
    let idles = [
        Duration::from_secs(31),
        wrap26.saturating_sub(Duration::from_secs(5)),
        wrap26,
        wrap26 + Duration::from_secs(5),
        (wrap26 * 2).saturating_sub(Duration::from_secs(5)),
        Duration::from_millis(1 << 32) + Duration::from_secs(5),
        Duration::from_secs(3 * 365 * 86_400),
    ];
    for idle in idles {
        let core = Arc::new(CircuitBreaker::new(
            Config::builder()
                .consecutive_failures(1)
                .open_for(fusebox::Duration::from_secs(30))
                .build()
                .unwrap(),
        ));
        let breaker = Breaker::new("w", core);
        tokio::time::advance(Duration::from_secs(7)).await;
        let _ = breaker.call(async { Err::<(), _>("x") }).await;
        assert_eq!(breaker.state(), State::Open);
        tokio::time::advance(Duration::from_secs(29)).await;
        match breaker.call(async { Ok::<_, ()>(()) }).await {
            Err(CallError::Open { retry_after }) => {
                let r = retry_after.unwrap();
                assert!(
                    r >= Duration::from_secs(1) && r <= Duration::from_millis(1_002),
                    "{r:?}"
                );
            }
            other => panic!("{other:?}"),
        }
        tokio::time::advance(idle.saturating_sub(Duration::from_secs(29))).await;
        assert_eq!(breaker.state(), State::HalfOpen, "{idle:?}");
        assert!(
            breaker.call(async { Ok::<_, ()>(()) }).await.is_ok(),
            "{idle:?}"
        );
        assert_eq!(breaker.state(), State::Closed, "{idle:?}");
    }
}

/// `RetryBudget` at the top of the microsecond range, as its "Clocks that
/// jump" docs allow (any `now` up to `u64::MAX` µs): the widest window
/// and largest percentages count exactly (`floor + ⌊percent × first
/// attempts / 100⌋`, a stale reading counted in the latest window), and a
/// floor-only budget whose every reading is in the last 101 µs before
/// `u64::MAX` still rolls one retry per window of 10 µs.
#[tokio::test(start_paused = true)]
async fn a_retry_budget_at_the_top_of_the_clock_range() {
    let widest = RetryBudget::new(Duration::MAX, u32::MAX, u32::MAX).unwrap();
    widest.deposit_at(Instant::MAX);
    let allowed = u64::from(u32::MAX) + u64::from(u32::MAX) / 100;
    assert_eq!(widest.remaining_at(Instant::MAX), allowed);
    assert!(
        widest.try_withdraw_at(Instant::ZERO),
        "stale: the latest window"
    );
    assert_eq!(widest.remaining_at(Instant::MAX), allowed - 1);

    let floor = RetryBudget::new(Duration::from_micros(10), 0, 1).unwrap();
    let top = u64::MAX - 100;
    let granted: Vec<u64> = (0..=100u64)
        .filter(|i| floor.try_withdraw_at(Instant::from_micros(top + i)))
        .collect();
    assert_eq!(granted, (0..=100).step_by(10).collect::<Vec<u64>>());
}

/// Exponential ceilings at extreme bases and factors (a nanosecond to
/// `Duration::MAX`, factors just above 1 to `f64::MAX`, a zero base)
/// over 3 000 retries: never above the cap, and without jitter never
/// decreasing (`min(max, base · factor^(k-1))` grows with `k`).
#[test]
fn backoff_ceilings_at_extreme_factors_never_shrink() {
    for (base, factor, max) in [
        (Duration::MAX, f64::MAX, Duration::MAX),
        (Duration::from_nanos(1), f64::MAX, Duration::MAX),
        (Duration::from_nanos(1), 1.000_001, Duration::MAX),
        (Duration::from_nanos(1), 2.0, Duration::MAX),
        (Duration::MAX / 3, 2.0, Duration::MAX),
        (Duration::ZERO, 2.0, Duration::MAX),
    ] {
        for jitter in [Jitter::None, Jitter::Full] {
            let maker = ExponentialBackoffMaker::new(base, factor, max)
                .unwrap()
                .with_jitter(jitter);
            let mut b = maker.make_backoff();
            let mut last = Duration::ZERO;
            for _ in 0..3_000 {
                let d = b.next_delay();
                assert!(d <= max);
                if jitter == Jitter::None {
                    assert!(d >= last, "{base:?} {factor} {d:?} < {last:?}");
                    last = d;
                }
            }
        }
    }
}

/// A subscriber of a 4-slot channel reading every seventh publication of
/// 2^21: what it received and what it was told it missed add up to every
/// event published, and the channel's total lag is its loss.
#[test]
fn event_losses_add_up_over_millions_of_events() {
    let events = Events::new(4);
    let mut sub = events.subscribe();
    let mut received = 0u64;
    let e = Event::Recovered {
        name: "db".into(),
        component: Component::Breaker,
        at: Instant::ZERO,
    };
    for i in 0..(1u64 << 21) {
        events.publish(e.clone());
        if i % 7 == 0 {
            while sub.try_recv().is_some() {
                received += 1;
            }
        }
    }
    while sub.try_recv().is_some() {
        received += 1;
    }
    assert_eq!(received + sub.missed(), events.published());
    assert_eq!(events.lagged(), sub.missed());
}

/// A limiter and a keyed limiter (at the largest time scale, whose 48-bit
/// arrival time wraps every 71.6 min) on a clock 1, 9 and 30 years from
/// its origin: the burst at once, the next token after its interval
/// (never early, at most tokio's 1 ms tick late), and a key idle just past
/// a wrap (beyond the core's tolerance) finds its bucket full.
#[tokio::test(start_paused = true)]
async fn limiters_on_clocks_years_from_their_origin() {
    for years in [1u64, 9, 30] {
        let bucket = Arc::new(TokenBucket::new(Quota::per_second(5).unwrap()));
        let clock = crate::TokioClock::new();
        let limiter = Limiter::with_clock(Arc::clone(&bucket), clock);
        let keyed: Arc<fusebox::KeyedLimiter<u32, 4>> = Arc::new(
            fusebox::KeyedLimiter::new(
                Quota::new(65_537, fusebox::Duration::from_secs(1)).unwrap(),
                FullPolicy::Reject,
            )
            .unwrap(),
        );
        let kl = KeyedLimiter::with_clock(Arc::clone(&keyed), clock);
        tokio::time::advance(Duration::from_secs(years * 365 * 86_400)).await;
        let start = tokio::time::Instant::now();
        for _ in 0..5 {
            limiter.until_ready().await.unwrap();
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
        limiter.until_ready().await.unwrap();
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(200) && took <= Duration::from_millis(201),
            "{years} {took:?}"
        );
        let t = tokio::time::Instant::now();
        kl.until_n_ready(&1, 65_537).await.unwrap();
        assert_eq!(t.elapsed(), Duration::ZERO, "{years}");
        // Idle a wrap of the 48-bit arrival time at this scale, then full.
        tokio::time::advance(Duration::from_micros(1 << 32) + Duration::from_secs(3)).await;
        let t = tokio::time::Instant::now();
        kl.until_n_ready(&1, 65_537).await.unwrap();
        assert!(
            t.elapsed() <= Duration::from_secs(2),
            "{years} {:?}",
            t.elapsed()
        );
        assert_eq!(clock.now(), clock.to_core(tokio::time::Instant::now()));
    }
}

/// A paused runtime whose only timer is ~30 years away (a sleep of
/// `Duration::MAX`) auto-advances there: the registry's limiter, breaker
/// policy and a retry budget read from then on keep their exact
/// behaviour (burst then the interval, open 30 s then a trial, the floor
/// per window), and the report and exposition are built.
#[tokio::test(start_paused = true)]
async fn policies_after_an_auto_advance_of_thirty_years() {
    let registry = Arc::new(Registry::new());
    let breaker = registry
        .breaker_policy(
            "b",
            Config::builder()
                .consecutive_failures(1)
                .open_for(fusebox::Duration::from_secs(30))
                .build()
                .unwrap(),
        )
        .unwrap();
    let bucket = registry
        .limiter("l", Quota::per_second(5).unwrap())
        .unwrap();
    let limiter = registry
        .limiter_policy("l", Quota::per_second(5).unwrap())
        .unwrap();
    let budget = RetryBudget::new(Duration::from_secs(10), 0, 2).unwrap();
    let t0 = tokio::time::Instant::now();
    tokio::time::sleep(Duration::MAX).await;
    let jumped = t0.elapsed();
    assert!(
        jumped >= Duration::from_secs(29 * 365 * 86_400),
        "{jumped:?}"
    );
    // Limiter: burst, then exact waits.
    for _ in 0..5 {
        assert!(bucket.try_acquire(registry.now()).is_ok());
    }
    let start = tokio::time::Instant::now();
    limiter.until_ready().await.unwrap();
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(200) && took <= Duration::from_millis(201),
        "{took:?}"
    );
    // Breaker: trips, open 30 s, trial closes.
    let _ = breaker.call(async { Err::<(), _>("x") }).await;
    assert_eq!(breaker.state(), State::Open);
    tokio::time::advance(Duration::from_secs(29)).await;
    assert!(matches!(
        breaker.call(async { Ok::<_, ()>(()) }).await,
        Err(CallError::Open { .. })
    ));
    tokio::time::advance(Duration::from_secs(2)).await;
    assert!(breaker.call(async { Ok::<_, ()>(()) }).await.is_ok());
    assert_eq!(breaker.state(), State::Closed);
    // Budget: its floor per window.
    assert!(budget.try_withdraw() && budget.try_withdraw() && !budget.try_withdraw());
    tokio::time::advance(Duration::from_secs(10)).await;
    assert!(budget.try_withdraw());
    let h = registry.health();
    assert_eq!(h.limiters["l"].burst, 5);
    let _ = registry.to_prometheus();
}
