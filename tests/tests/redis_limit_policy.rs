//! `policy::Limiter` and `Policy` on a limit shared through a real
//! redis-server: two limiters on separate connections share one quota,
//! deadlines hold, and a killed Redis meets the `Degrade` policy within
//! the command timeout.

use crate::common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::redis_server::{RedisClock, RedisServer};
use crate::common::shared_limit::{redis_limiter, wait_within, DEADLINE, SLACK, TIMEOUT};
use fusebox::bucket::Quota;
use fusebox_std::backend::{Degrade, RedisLimiter};
use fusebox_std::policy::{LimitError, Limiter, Policy, Retry};
use fusebox_std::CallError;
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_limit_policy_two_limiters_share_one_quota() {
    let server = RedisServer::start();
    let (rate, burst) = (50u32, 10u32);
    let quota = Quota::per_second(rate).unwrap().with_burst(burst).unwrap();
    let run_for = Duration::from_secs(2);
    // Two "processes": two connections, two limiters, one name.
    let limiters = [
        Arc::new(Limiter::shared(Arc::new(
            redis_limiter(
                &server,
                "shared",
                quota,
                Degrade::FailClosed,
                Duration::from_secs(1),
            )
            .await,
        ))),
        Arc::new(Limiter::from(
            redis_limiter(
                &server,
                "shared",
                quota,
                Degrade::FailClosed,
                Duration::from_secs(1),
            )
            .await,
        )),
    ];
    let clock = RedisClock::read(server.port());
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (i, limiter) in limiters.iter().enumerate() {
        for _ in 0..4 {
            let limiter = Arc::clone(limiter);
            tasks.push(tokio::spawn(async move {
                let mut admitted = Vec::new();
                loop {
                    let asked = start.elapsed();
                    let deadline = start + run_for;
                    match limiter.until_n_ready_by(1, Some(deadline)).await {
                        Ok(()) => admitted.push((asked, start.elapsed())),
                        Err(LimitError::DeadlineExceeded { .. }) => break,
                        Err(e) => panic!("limiter {i}: {e}"),
                    }
                }
                (i, admitted)
            }));
        }
    }
    let mut per_limiter = [0u64; 2];
    let mut admitted = Vec::new();
    for task in tasks {
        let (i, a) = task.await.unwrap();
        per_limiter[i] += a.len() as u64;
        admitted.extend(a);
    }
    let elapsed = start.elapsed();
    let extra = clock.extra_tokens(rate.into());
    for limiter in &limiters {
        let m = limiter.redis_limiter().expect("shared").metrics();
        assert_eq!((m.faults, m.degraded_decisions), (0, 0), "{m:?}");
    }
    // Every admission happened within the run: both limiters together
    // never admitted more than one quota allows over it.
    let total: u64 = per_limiter.iter().sum();
    let bound =
        u64::from(burst) + (u128::from(rate) * elapsed.as_micros() / 1_000_000) as u64 + extra;
    assert!(
        total <= bound,
        "{total} admitted in {elapsed:?}, bound {bound} ({per_limiter:?})"
    );
    common::assert_window_bound(&mut admitted, burst.into(), rate.into(), extra);
    // The quota was used, by both: the burst and most of the rate.
    let used = u64::from(burst) + u64::from(rate) * run_for.as_millis() as u64 / 1_000;
    assert!(
        total * 10 >= used * 8,
        "{total} of {used} ({per_limiter:?})"
    );
    assert!(per_limiter.iter().all(|&n| n >= 10), "{per_limiter:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_limit_policy_until_n_ready_by_respects_the_deadline() {
    let server = RedisServer::start();
    let quota = Quota::per_second(1).unwrap().with_burst(2).unwrap();
    let limiter = Limiter::shared(Arc::new(
        redis_limiter(
            &server,
            "slow",
            quota,
            Degrade::FailClosed,
            Duration::from_secs(1),
        )
        .await,
    ));
    assert_eq!(
        limiter.until_n_ready(3).await,
        Err(LimitError::InsufficientCapacity {
            requested: 3,
            burst: 2
        })
    );
    limiter.until_n_ready(2).await.unwrap();

    // The next token comes in a second: a deadline 100 ms away fails at
    // once, naming the wait.
    let asked = Instant::now();
    let err = limiter
        .until_n_ready_by(1, Some(asked + Duration::from_millis(100)))
        .await
        .unwrap_err();
    assert!(
        asked.elapsed() < Duration::from_millis(100),
        "{:?}",
        asked.elapsed()
    );
    match err {
        LimitError::DeadlineExceeded { retry_after } => assert!(
            retry_after > Duration::from_millis(800) && retry_after <= Duration::from_secs(1),
            "{retry_after:?}"
        ),
        e => panic!("{e:?}"),
    }

    // A deadline past the wait: admitted when the token comes, not before.
    let asked = Instant::now();
    limiter
        .until_n_ready_by(1, Some(asked + Duration::from_secs(3)))
        .await
        .unwrap();
    let waited = asked.elapsed();
    assert!(
        waited > Duration::from_millis(800) && waited < Duration::from_secs(1) + SLACK,
        "{waited:?}"
    );

    // Three callers queue (this process's FIFO) with 1.5 s to go: the
    // next token comes within it, the one after it does not.
    let limiter = Arc::new(limiter);
    let deadline = Instant::now() + Duration::from_millis(1_500);
    let tasks: Vec<_> = (0..3)
        .map(|_| {
            let limiter = Arc::clone(&limiter);
            tokio::spawn(async move {
                let r = limiter.until_n_ready_by(1, Some(deadline)).await;
                (r, Instant::now())
            })
        })
        .collect();
    let mut served = 0;
    for task in tasks {
        let (r, at) = task.await.unwrap();
        match r {
            Ok(()) => served += 1,
            Err(LimitError::DeadlineExceeded { .. }) => {}
            Err(e) => panic!("{e}"),
        }
        assert!(
            at <= deadline + SLACK,
            "{:?} past the deadline",
            at - deadline
        );
    }
    assert_eq!(served, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_limit_policy_a_killed_redis_meets_each_degrade_policy() {
    let mut server = RedisServer::start();
    let quota = Quota::per_second(20).unwrap().with_burst(4).unwrap();
    let closed = Limiter::shared(Arc::new(
        redis_limiter(&server, "closed", quota, Degrade::FailClosed, TIMEOUT).await,
    ));
    let open = Limiter::shared(Arc::new(
        redis_limiter(&server, "open", quota, Degrade::FailOpen, TIMEOUT).await,
    ));
    let local = Limiter::shared(Arc::new(
        redis_limiter(
            &server,
            "local",
            quota,
            Degrade::Local { instances: 2 },
            TIMEOUT,
        )
        .await,
    ));
    for limiter in [&closed, &open, &local] {
        limiter.until_ready().await.unwrap();
    }
    server.kill();

    // FailClosed: refused; the wait ends by the deadline plus one command
    // timeout, never later.
    for _ in 0..5 {
        let (r, took) = wait_within(&closed, DEADLINE).await;
        assert!(
            matches!(r, Err(LimitError::DeadlineExceeded { .. })),
            "{r:?}"
        );
        assert!(took <= DEADLINE + TIMEOUT + SLACK, "{took:?}");
    }
    let shared = closed.redis_limiter().unwrap();
    assert!(shared.is_degraded());
    assert!(shared.metrics().faults >= 1 && shared.metrics().admitted == 1);

    // FailOpen: admitted at once, as often as asked.
    let asked = Instant::now();
    for _ in 0..50 {
        let (r, took) = wait_within(&open, DEADLINE).await;
        r.unwrap();
        assert!(took <= TIMEOUT + SLACK, "{took:?}");
    }
    assert!(asked.elapsed() < Duration::from_secs(2));
    let m = open.redis_limiter().unwrap().metrics();
    assert_eq!(m.admitted, 51);
    assert!(m.degraded_decisions >= 40, "{m:?}");

    // Local with two instances: half the quota in process (10/s, burst 2),
    // then refused at a deadline nearer than the next local token.
    let mut admitted = 0u64;
    let asked = Instant::now();
    loop {
        let within = Duration::from_millis(50);
        let (r, took) = wait_within(&local, within).await;
        assert!(took <= within + TIMEOUT + SLACK, "{took:?}");
        match r {
            Ok(()) => admitted += 1,
            Err(LimitError::DeadlineExceeded { .. }) => break,
            Err(e) => panic!("{e}"),
        }
        assert!(admitted < 100, "the local share never refused");
    }
    // What 10/s with a burst of 2 admits over the loop, plus the one
    // probe Redis could still have answered.
    let most = 2 + (asked.elapsed().as_millis() as u64 / 100) + 1;
    assert!(admitted >= 2 && admitted <= most, "{admitted} > {most}");

    // Redis back: the waits are Redis's again.
    server.restart();
    let back = Instant::now();
    loop {
        let before = closed.redis_limiter().unwrap().metrics().redis_decisions;
        let _ = closed
            .until_n_ready_by(1, Some(Instant::now() + Duration::from_millis(100)))
            .await;
        if closed.redis_limiter().unwrap().metrics().redis_decisions > before {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(5),
            "redis decisions did not resume"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!closed.redis_limiter().unwrap().is_degraded());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_limit_policy_a_policy_waits_on_the_shared_limit() {
    let server = RedisServer::start();
    // Two tokens, then one per second, for both policies together.
    let quota = Quota::per_second(1).unwrap().with_burst(2).unwrap();
    let policy = |limiter: RedisLimiter| {
        Policy::builder()
            .retry(
                Retry::builder()
                    .max_attempts(3)
                    .deadline(Duration::from_millis(300))
                    .build(),
            )
            .limiter(Arc::new(Limiter::from(limiter)))
            .build()
    };
    let first = policy(
        redis_limiter(
            &server,
            "payments",
            quota,
            Degrade::FailClosed,
            Duration::from_secs(1),
        )
        .await,
    );
    let second = policy(
        redis_limiter(
            &server,
            "payments",
            quota,
            Degrade::FailClosed,
            Duration::from_secs(1),
        )
        .await,
    );
    let calls = AtomicU32::new(0);
    let call = || async {
        calls.fetch_add(1, Ordering::Relaxed);
        Ok::<_, std::io::Error>("paid")
    };
    assert_eq!(first.call(call).await.unwrap(), "paid");
    assert_eq!(second.call(call).await.unwrap(), "paid");
    // The shared burst is spent: the next token is a second away, past
    // the retry deadline, so both refuse at once without calling.
    for policy in [&first, &second] {
        let asked = Instant::now();
        let r = policy.call(call).await;
        assert!(
            matches!(
                r,
                Err(CallError::RateLimited(LimitError::DeadlineExceeded { .. }))
            ),
            "{r:?}"
        );
        assert!(
            asked.elapsed() < Duration::from_millis(300),
            "{:?}",
            asked.elapsed()
        );
    }
    assert_eq!(calls.load(Ordering::Relaxed), 2);
    // Without a deadline the policy waits for the token.
    let patient = Policy::builder()
        .limiter(Arc::new(Limiter::from(
            redis_limiter(
                &server,
                "payments",
                quota,
                Degrade::FailClosed,
                Duration::from_secs(1),
            )
            .await,
        )))
        .build();
    let asked = Instant::now();
    assert_eq!(patient.call(call).await.unwrap(), "paid");
    assert!(
        asked.elapsed() > Duration::from_millis(500),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(calls.load(Ordering::Relaxed), 3);
}
