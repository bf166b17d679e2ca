//! Long histories on virtual time, checked against models written from
//! the docs (never from the code): a retry budget's bound over weeks of
//! calls cancelled at random, and waiting limiters' admissions over a
//! month of waiters with deadlines, cancelled at random, across the keyed
//! limiter's 71.6-minute wrap at the largest scale.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fusebox::bucket::{FullPolicy, Quota, TokenBucket};
use fusebox::Clock;

use super::*;
use crate::TokioClock;

/// First attempts (µs) and the grant times (µs) of retries that started.
#[derive(Default)]
struct Calls {
    deposits: Vec<u64>,
    retries: Vec<u64>,
}

/// `steps` calls through one budget, each failing every attempt, some
/// cancelled at a random point (in an attempt or in a backoff).
async fn budget_history(seed: u64, window: Duration, percent: u32, floor: u32, steps: usize) {
    let clock = TokioClock::new();
    let budget = Arc::new(RetryBudget::with_clock(window, percent, floor, clock).unwrap());
    let calls = Arc::new(Mutex::new(Calls::default()));
    let mut rng = fastrand::Rng::with_seed(seed);
    let w = u64::try_from(window.as_micros()).unwrap();
    let mut tasks = Vec::new();
    for _ in 0..steps {
        // Busy stretches, and now and then a gap of up to 30 windows
        // (windows left empty, ring slots reused).
        let gap = if rng.u32(0..50) == 0 {
            rng.u64(0..30 * w)
        } else {
            rng.u64(0..w / 20)
        };
        tokio::time::sleep(Duration::from_micros(gap)).await;
        let backoff =
            ExponentialBackoffMaker::new(Duration::from_micros(rng.u64(0..w / 5)), 2.0, window)
                .unwrap()
                .with_rng(fastrand::Rng::with_seed(rng.u64(..)));
        let retry = Retry::builder()
            .max_attempts(rng.u32(1..6))
            .budget(Arc::clone(&budget))
            .backoff(backoff)
            .build();
        let calls = Arc::clone(&calls);
        let attempt_len = Duration::from_micros(rng.u64(0..w / 3));
        let cancel = rng.bool().then(|| Duration::from_micros(rng.u64(1..w)));
        let call = async move {
            calls.lock().unwrap().deposits.push(clock.now().as_micros());
            let failed_at = Arc::new(Mutex::new(None::<u64>));
            let _ = retry
                .call(|| {
                    // A retry started: granted when the last attempt failed.
                    if let Some(at) = *failed_at.lock().unwrap() {
                        calls.lock().unwrap().retries.push(at);
                    }
                    let failed_at = Arc::clone(&failed_at);
                    async move {
                        tokio::time::sleep(attempt_len).await;
                        *failed_at.lock().unwrap() = Some(clock.now().as_micros());
                        Err::<(), _>("down")
                    }
                })
                .await;
        };
        tasks.push(tokio::spawn(async move {
            match cancel {
                Some(after) => drop(tokio::time::timeout(after, call).await),
                None => call.await,
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    // The docs: at each retry, the retries of the window then (the slot
    // of `window / 10` holding it and the nine before), this one
    // included, are at most floor + ⌊percent × its first attempts / 100⌋.
    let calls = calls.lock().unwrap();
    let slot = w / 10;
    let mut retries = calls.retries.clone();
    retries.sort_unstable();
    for (k, &at) in retries.iter().enumerate() {
        let from = (at / slot).saturating_sub(9) * slot;
        let firsts = calls
            .deposits
            .iter()
            .filter(|&&t| (from..=at).contains(&t))
            .count() as u64;
        let taken = retries[..=k].iter().filter(|&&t| t >= from).count() as u64;
        let allowed = u64::from(floor) + u64::from(percent) * firsts / 100;
        assert!(
            taken <= allowed,
            "seed {seed}: a retry at {at} µs is the {taken}th of its window, {firsts} first attempts allow {allowed}"
        );
    }
    assert!(
        retries.len() > steps / 50,
        "seed {seed}: {} retries, too few to tell",
        retries.len()
    );
}

#[tokio::test(start_paused = true)]
async fn a_retry_budget_holds_its_bound_over_weeks_of_cancelled_calls() {
    for seed in 0..3 {
        budget_history(seed, Duration::from_secs(10), 20, 2, 1_500).await;
        budget_history(seed, Duration::from_millis(10), 50, 1, 1_500).await;
        budget_history(seed, Duration::from_secs(3_600), 10, 0, 1_000).await;
    }
}

/// Waiters of `n` tokens arriving at random over a long time, some with
/// deadlines, some cancelled: the tokens admitted in any interval of
/// length `T` are at most `burst + ⌊rate · T⌋` (the core's contract).
async fn limiter_history(quota: Quota, keyed: bool, seed: u64, steps: usize, max_gap: Duration) {
    let limiter = Arc::new(Limiter::new(Arc::new(TokenBucket::new(quota))));
    let core: fusebox::KeyedLimiter<u8, 4> =
        fusebox::KeyedLimiter::new(quota, FullPolicy::Reject).unwrap();
    let keyed_limiter = Arc::new(KeyedLimiter::new(Arc::new(core)));
    let admitted = Arc::new(Mutex::new(Vec::<(tokio::time::Instant, u32)>::new()));
    let mut rng = fastrand::Rng::with_seed(seed);
    let period = u64::try_from(Duration::from(quota.period()).as_micros()).unwrap();
    let mut tasks = Vec::new();
    for _ in 0..steps {
        let gap = rng.u64(0..u64::try_from(max_gap.as_micros()).unwrap());
        tokio::time::sleep(Duration::from_micros(gap)).await;
        let n = rng.u32(1..=quota.burst());
        let now = tokio::time::Instant::now();
        let deadline = rng
            .bool()
            .then(|| now + Duration::from_micros(rng.u64(0..3 * period)));
        let cancel = rng
            .bool()
            .then(|| Duration::from_micros(rng.u64(0..2 * period)));
        let (limiter, keyed_limiter, admitted) = (
            Arc::clone(&limiter),
            Arc::clone(&keyed_limiter),
            Arc::clone(&admitted),
        );
        let wait = async move {
            let got = if keyed {
                keyed_limiter.until_n_ready_by(&1, n, deadline).await
            } else {
                limiter.until_n_ready_by(n, deadline).await
            };
            if got.is_ok() {
                admitted
                    .lock()
                    .unwrap()
                    .push((tokio::time::Instant::now(), n));
            }
        };
        tasks.push(tokio::spawn(async move {
            match cancel {
                Some(after) => drop(tokio::time::timeout(after, wait).await),
                None => wait.await,
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let admitted = admitted.lock().unwrap();
    let (tokens, burst) = (u128::from(quota.tokens()), u64::from(quota.burst()));
    for (i, &(from, _)) in admitted.iter().enumerate() {
        let mut sum = 0u64;
        for &(at, n) in &admitted[i..] {
            sum += u64::from(n);
            let span = (at - from).as_micros();
            let allowed = burst + u64::try_from(tokens * span / u128::from(period)).unwrap();
            assert!(
                sum <= allowed,
                "keyed {keyed}, seed {seed}: {sum} tokens in {:?} (at most {allowed})",
                at - from
            );
            if span > u128::from(period) * u128::from(burst + 4) {
                break;
            }
        }
    }
    assert!(
        admitted.len() > steps / 4,
        "keyed {keyed}, seed {seed}: too few admitted"
    );
}

#[tokio::test(start_paused = true)]
async fn waiting_limiters_never_admit_past_the_quota_over_a_month() {
    // Scale 65 537 (the largest): the keyed limiter's word wraps every
    // 71.6 minutes; 1 000 gaps of up to an hour span about three weeks.
    let fine = Quota::per_second(65_537).unwrap().with_burst(4).unwrap();
    let slow = Quota::per_minute(7).unwrap().with_burst(3).unwrap();
    let fast = Quota::new(3, fusebox::Duration::from_millis(1))
        .unwrap()
        .with_burst(2)
        .unwrap();
    for seed in 0..2 {
        for keyed in [false, true] {
            limiter_history(fine, keyed, seed, 1_000, Duration::from_secs(3_600)).await;
            limiter_history(slow, keyed, seed, 1_000, Duration::from_secs(60)).await;
            limiter_history(fast, keyed, seed, 1_000, Duration::from_millis(5)).await;
        }
    }
}
