//! `Policy` (rate limit and retries) against a model written from the
//! docs: every attempt waits for a token of a GCRA bucket (`burst` at
//! once, then one per interval); a token wait that would end within 1 ms
//! of the retry deadline, or past it, stops the call with
//! `CallError::RateLimited` (a token ready at once is taken even past the
//! deadline); a retry starts only if its backoff ends at least 1 ms before
//! the deadline; the attempts stop at `max_attempts`. Random settings and
//! sequences of calls on paused time, in whole milliseconds.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use fusebox::bucket::{Quota, TokenBucket};
use fusebox_std::policy::{ExponentialBackoffMaker, Jitter, Limiter, Policy, Retry};
use fusebox_std::CallError;

/// How a call ended, as the model sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    Ok,
    /// The callee's error, after this many attempts.
    Failed,
    /// A token wait would have passed the deadline.
    RateLimited,
}

/// The bucket of the docs, in ms: `tat` is when the bucket is full again
/// minus nothing (the theoretical arrival time of the next token).
struct Bucket {
    interval: u64,
    burst: u64,
    tat: u64,
}

impl Bucket {
    /// The wait before one token is free at `now`.
    fn wait(&self, now: u64) -> u64 {
        self.tat
            .saturating_sub((self.burst - 1) * self.interval)
            .saturating_sub(now)
    }

    fn take(&mut self, now: u64) {
        self.tat = self.tat.max(now) + self.interval;
    }
}

struct Settings {
    max_attempts: u32,
    backoff_ms: u64,
    deadline_ms: Option<u64>,
}

/// The attempt times (ms from the call's start) and the end.
fn model(s: &Settings, b: &mut Bucket, start: u64, fails: usize) -> (Vec<u64>, End) {
    let deadline = s.deadline_ms.map(|d| start + d);
    let mut now = start;
    let mut at = Vec::new();
    let mut attempts = 0u32;
    loop {
        let wait = b.wait(now);
        if wait > 0 && deadline.is_some_and(|d| now + wait + 1 > d) {
            return (at, End::RateLimited);
        }
        now += wait;
        b.take(now);
        attempts += 1;
        at.push(now - start);
        if at.len() > fails {
            return (at, End::Ok);
        }
        if attempts >= s.max_attempts {
            return (at, End::Failed);
        }
        let wake = now + s.backoff_ms;
        if deadline.is_some_and(|d| wake + 1 > d) {
            return (at, End::Failed);
        }
        now = wake;
    }
}

async fn history(seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let per_second = [1u32, 2, 4, 5, 10, 20, 50][rng.usize(0..7)];
    let burst = rng.u32(1..4);
    let s = Settings {
        max_attempts: rng.u32(1..6),
        backoff_ms: rng.u64(0..400),
        deadline_ms: rng.bool().then(|| rng.u64(0..1_500)),
    };
    let bucket = Arc::new(TokenBucket::new(
        Quota::per_second(per_second)
            .unwrap()
            .with_burst(burst)
            .unwrap(),
    ));
    let mut model_bucket = Bucket {
        interval: 1_000 / u64::from(per_second),
        burst: u64::from(burst),
        tat: 0,
    };
    let limiter = Arc::new(Limiter::new(bucket));
    let backoff = Duration::from_millis(s.backoff_ms);
    let mut retry = Retry::builder().max_attempts(s.max_attempts).backoff(
        ExponentialBackoffMaker::new(backoff, 1.0, backoff)
            .unwrap()
            .with_jitter(Jitter::None),
    );
    if let Some(d) = s.deadline_ms {
        retry = retry.deadline(Duration::from_millis(d));
    }
    let policy = Policy::builder()
        .limiter(limiter)
        .retry(retry.build())
        .build();
    let origin = tokio::time::Instant::now();
    for call in 0..12 {
        tokio::time::advance(Duration::from_millis(rng.u64(0..1_200))).await;
        let fails = rng.usize(0..5);
        let start = tokio::time::Instant::now();
        let start_ms = u64::try_from((start - origin).as_millis()).unwrap();
        let seen = RefCell::new(Vec::new());
        let result = policy
            .call(|| {
                let since = tokio::time::Instant::now() - start;
                seen.borrow_mut()
                    .push(u64::try_from(since.as_millis()).unwrap());
                let outcome = if seen.borrow().len() > fails {
                    Ok(())
                } else {
                    Err("down")
                };
                async move { outcome }
            })
            .await;
        let got = match result {
            Ok(()) => End::Ok,
            Err(CallError::Inner(_)) => End::Failed,
            Err(CallError::RateLimited(_)) => End::RateLimited,
            Err(e) => panic!("seed {seed}, call {call}: {e:?}"),
        };
        let (want_at, want) = model(&s, &mut model_bucket, start_ms, fails);
        let context = format!(
            "seed {seed}, call {call} at {start_ms} ms, {per_second}/s burst {burst}, \
             attempts {} backoff {} deadline {:?}, fails {fails}",
            s.max_attempts, s.backoff_ms, s.deadline_ms
        );
        assert_eq!((seen.into_inner(), got), (want_at, want), "{context}");
    }
}

#[tokio::test(start_paused = true)]
async fn policy_timelines_match_the_documented_model() {
    for seed in 0..400 {
        history(seed).await;
    }
}
