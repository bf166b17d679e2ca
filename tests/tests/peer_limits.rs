//! Scenarios from peer crates' own suites, re-expressed against
//! fusebox-std's limiter waits, bulkhead, `Policy` cancellation and the
//! tower `RateLimitLayer`, with expectations from fusebox-std's documented
//! contract (rustdoc and README): tower's `limit/rate`,
//! `limit/concurrency`, `timeout`, `load_shed` and tower#794 (a limit per
//! clone), governor's waiting (`until_ready`, fairness), Resilience4j's and
//! Polly's bulkhead specs, tower_governor's headers and error responses,
//! and the examples of draft-ietf-httpapi-ratelimit-headers. Paused tokio
//! time throughout.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fusebox::breaker::{CircuitBreaker, Config};
use fusebox::bucket::Quota;
use fusebox::{Clock, TokenBucket};
use fusebox_std::policy::{
    Breaker, Bulkhead, BulkheadRejection, ExponentialBackoffMaker, Jitter, LimitError, Limiter,
    Overflow, Policy, Retry,
};
use fusebox_std::tower::RateLimitLayer;
use fusebox_std::CallError;
use tokio::time::Instant as TokioInstant;
use tower::{Layer, Service, ServiceExt};

fn bucket(quota: Quota) -> Arc<TokenBucket> {
    Arc::new(TokenBucket::new(quota))
}

// ---------------------------------------------------------------------------
// Limiter waits (tower limit/rate, governor until_ready)
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn waits_never_admit_faster_than_the_rate() {
    // tower `limit/rate` "reaching_capacity"; 3/s with a burst of 1: tokens
    // every 333.33 ms, tokio rounding each sleep up, never down.
    let limiter = Limiter::new(bucket(Quota::per_second(3).unwrap().with_burst(1).unwrap()));
    let start = TokioInstant::now();
    let mut at = Vec::new();
    for _ in 0..31 {
        limiter.until_ready().await.unwrap();
        at.push(start.elapsed());
    }
    // With a burst of 1 a late waiter cannot bank the fraction of a tick
    // it overslept, so each gap is the interval rounded up to tokio's tick:
    // never shorter than the interval, at most one tick longer.
    for (k, gap) in at
        .windows(2)
        .map(|w| w[1].checked_sub(w[0]).unwrap())
        .enumerate()
    {
        assert!(gap >= Duration::from_nanos(333_333_333), "gap {k}: {gap:?}");
        assert!(gap <= Duration::from_millis(334), "gap {k}: {gap:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_dropped_waiter_takes_no_token_and_frees_the_gate() {
    // tower `limit/rate` + governor: cancel a waiting caller.
    let b = bucket(Quota::per_second(1).unwrap());
    let limiter = Arc::new(Limiter::new(Arc::clone(&b)));
    limiter.until_ready().await.unwrap();
    let cancelled = tokio::time::timeout(Duration::from_millis(500), limiter.until_ready()).await;
    assert!(cancelled.is_err());
    let start = TokioInstant::now();
    limiter.until_ready().await.unwrap();
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(500),
        "the next waiter is not held up"
    );
    assert_eq!(b.available(limiter.clock().now()), 0);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(b.available(limiter.clock().now()), 1);
}

#[tokio::test(start_paused = true)]
async fn a_large_request_is_served_first_in_arrival_order() {
    // governor's `until_n_ready` fairness, with the doc's FIFO gate.
    let limiter = Arc::new(Limiter::new(bucket(Quota::per_second(4).unwrap())));
    limiter.until_n_ready(4).await.unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let start = TokioInstant::now();
    let big = {
        let (limiter, order) = (Arc::clone(&limiter), Arc::clone(&order));
        tokio::spawn(async move {
            limiter.until_n_ready(4).await.unwrap();
            order.lock().unwrap().push(("big", start.elapsed()));
        })
    };
    tokio::task::yield_now().await;
    let smalls: Vec<_> = (0..3)
        .map(|_| {
            let (limiter, order) = (Arc::clone(&limiter), Arc::clone(&order));
            tokio::spawn(async move {
                limiter.until_ready().await.unwrap();
                order.lock().unwrap().push(("small", start.elapsed()));
            })
        })
        .collect();
    big.await.unwrap();
    for s in smalls {
        s.await.unwrap();
    }
    let order = order.lock().unwrap().clone();
    assert_eq!(order[0], ("big", Duration::from_secs(1)));
    assert_eq!(
        order[1..],
        [
            ("small", Duration::from_millis(1_250)),
            ("small", Duration::from_millis(1_500)),
            ("small", Duration::from_millis(1_750)),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn many_concurrent_waiters_get_exactly_the_quota() {
    let b = bucket(Quota::per_second(10).unwrap());
    let limiter = Arc::new(Limiter::new(b));
    let start = TokioInstant::now();
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let limiter = Arc::clone(&limiter);
            tokio::spawn(async move {
                limiter.until_ready().await.unwrap();
                start.elapsed()
            })
        })
        .collect();
    let mut times = Vec::new();
    for t in tasks {
        times.push(t.await.unwrap());
    }
    times.sort();
    // burst 10 at once, then one per 100 ms: token k at (k - 9) × 100 ms.
    for (k, t) in times.iter().enumerate() {
        let expected = Duration::from_millis(100 * (k as u64).saturating_sub(9));
        assert_eq!(*t, expected, "token {k}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_deadline_behind_a_long_waiter_is_never_overslept() {
    let limiter = Arc::new(Limiter::new(bucket(Quota::per_minute(1).unwrap())));
    limiter.until_ready().await.unwrap();
    let first = {
        let limiter = Arc::clone(&limiter);
        tokio::spawn(async move { limiter.until_ready().await })
    };
    tokio::task::yield_now().await;
    let start = TokioInstant::now();
    let by = start + Duration::from_millis(50);
    let r = limiter.until_n_ready_by(1, Some(by)).await;
    assert!(
        matches!(r, Err(LimitError::DeadlineExceeded { .. })),
        "{r:?}"
    );
    assert!(
        start.elapsed() <= Duration::from_millis(50),
        "{:?}",
        start.elapsed()
    );
    first.abort();
}

#[tokio::test(start_paused = true)]
async fn more_than_the_burst_is_refused_at_once() {
    let limiter = Limiter::new(bucket(Quota::per_second(5).unwrap()));
    let start = TokioInstant::now();
    assert_eq!(
        limiter.until_n_ready(u32::MAX).await,
        Err(LimitError::InsufficientCapacity {
            requested: u32::MAX,
            burst: 5
        })
    );
    assert_eq!(start.elapsed(), Duration::ZERO);
}

// ---------------------------------------------------------------------------
// Bulkhead (tower limit/concurrency, load_shed; Resilience4j
// SemaphoreBulkhead; Polly BulkheadPolicy)
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn bulkhead_queue_is_bounded_and_first_come_first_served() {
    // Polly: "should reject when maxQueuingActions exceeded"; R4j FIFO.
    let bulkhead = Bulkhead::new(
        1,
        Overflow::Queue {
            max_queued: 2,
            max_wait: Duration::from_secs(10),
        },
    )
    .unwrap();
    let held = bulkhead.try_acquire().unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let queued: Vec<_> = (0..2)
        .map(|i| {
            let (bulkhead, order) = (bulkhead.clone(), Arc::clone(&order));
            tokio::spawn(async move {
                let _slot = bulkhead.acquire().await.unwrap();
                order.lock().unwrap().push(i);
                tokio::time::sleep(Duration::from_millis(10)).await;
            })
        })
        .collect();
    // Spawned in order; each reaches the queue in order.
    for _ in 0..4 {
        tokio::task::yield_now().await;
    }
    assert_eq!(bulkhead.metrics().queued, 2);
    assert_eq!(
        bulkhead.acquire().await.unwrap_err(),
        BulkheadRejection::QueueFull
    );
    drop(held);
    for q in queued {
        q.await.unwrap();
    }
    assert_eq!(*order.lock().unwrap(), [0, 1]);
    let m = bulkhead.metrics();
    assert_eq!((m.in_use, m.queued, m.rejected), (0, 0, 1));
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_queued_call_gives_its_place_back() {
    let bulkhead = Bulkhead::new(
        1,
        Overflow::Queue {
            max_queued: 1,
            max_wait: Duration::from_secs(10),
        },
    )
    .unwrap();
    let _held = bulkhead.try_acquire().unwrap();
    let r = tokio::time::timeout(Duration::from_millis(100), bulkhead.acquire()).await;
    assert!(r.is_err());
    assert_eq!(bulkhead.metrics().queued, 0);
    // The place is free: the next call queues (and times out) instead of QueueFull.
    let start = TokioInstant::now();
    assert_eq!(
        bulkhead.acquire().await.unwrap_err(),
        BulkheadRejection::QueueTimeout
    );
    assert_eq!(start.elapsed(), Duration::from_secs(10));
}

#[tokio::test(start_paused = true)]
async fn bulkhead_extreme_settings() {
    let huge = Bulkhead::new(usize::MAX, Overflow::Reject).unwrap();
    assert_eq!(huge.max_concurrent(), tokio::sync::Semaphore::MAX_PERMITS);
    let forever = Bulkhead::new(
        1,
        Overflow::Queue {
            max_queued: usize::MAX,
            max_wait: Duration::MAX,
        },
    )
    .unwrap();
    let held = forever.try_acquire().unwrap();
    let waiter = {
        let b = forever.clone();
        tokio::spawn(async move { b.acquire().await.map(drop) })
    };
    tokio::time::sleep(Duration::from_secs(3_600)).await;
    assert_eq!(forever.metrics().queued, 1);
    drop(held);
    assert_eq!(waiter.await.unwrap(), Ok(()));
}

#[tokio::test(start_paused = true)]
async fn bulkhead_clones_share_slots_and_count_every_refusal() {
    let a = Bulkhead::new(2, Overflow::Reject).unwrap();
    let b = a.clone();
    let _x = a.try_acquire().unwrap();
    let _y = b.try_acquire().unwrap();
    assert!(a.try_acquire().is_err());
    assert!(matches!(
        b.call(async { Ok::<_, ()>(()) }).await,
        Err(CallError::Bulkhead(BulkheadRejection::Full))
    ));
    assert_eq!(a.metrics().rejected, 2);
    assert_eq!(b.metrics().in_use, 2);
}

// ---------------------------------------------------------------------------
// Policy: cancellation at each await point, zero timeouts (tower timeout)
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn policy_cancelled_mid_token_wait_returns_its_slot_and_takes_no_token() {
    let b = bucket(Quota::per_second(1).unwrap());
    let bulkhead = Bulkhead::new(1, Overflow::Reject).unwrap();
    let limiter = Arc::new(Limiter::new(Arc::clone(&b)));
    let policy = Policy::builder()
        .bulkhead(bulkhead.clone())
        .limiter(Arc::clone(&limiter))
        .build();
    limiter.until_ready().await.unwrap();
    let calls = AtomicU32::new(0);
    let r = tokio::time::timeout(
        Duration::from_millis(300),
        policy.call(|| {
            calls.fetch_add(1, Ordering::Relaxed);
            async { Ok::<_, ()>(()) }
        }),
    )
    .await;
    assert!(r.is_err());
    assert_eq!(calls.load(Ordering::Relaxed), 0);
    assert_eq!(bulkhead.metrics().in_use, 0, "the slot is back");
    tokio::time::advance(Duration::from_millis(700)).await;
    assert_eq!(b.available(limiter.clock().now()), 1, "no token taken");
}

#[tokio::test(start_paused = true)]
async fn policy_cancelled_mid_call_frees_the_half_open_trial() {
    let core = Arc::new(CircuitBreaker::new(
        Config::builder()
            .consecutive_failures(1)
            .open_for(fusebox::Duration::from_secs(1))
            .half_open_permits(1)
            .build()
            .unwrap(),
    ));
    let policy = Policy::builder()
        .breaker(Breaker::new("dep", Arc::clone(&core)))
        .build();
    let r = policy.call(|| async { Err::<(), _>("down") }).await;
    assert!(matches!(r, Err(CallError::Inner("down"))));
    assert!(matches!(
        policy.call(|| async { Ok::<_, &str>(()) }).await,
        Err(CallError::Open { .. })
    ));
    // The core keeps open deadlines in ~1 ms ticks, rounded up: wait past it.
    tokio::time::advance(Duration::from_millis(1_002)).await;
    // The one trial hangs and its caller gives up.
    let slow = policy.call(|| async {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok::<_, &str>(())
    });
    assert!(tokio::time::timeout(Duration::from_millis(100), slow)
        .await
        .is_err());
    // Its slot is free: the next caller is the trial, and closes the breaker.
    assert_eq!(policy.call(|| async { Ok::<_, &str>(7) }).await.unwrap(), 7);
}

#[tokio::test(start_paused = true)]
async fn a_zero_timeout_is_one_tick_not_an_instant_failure() {
    // tower `timeout`: a ready future is never timed out. Doc: "At least 1 ms".
    let policy = Policy::builder().timeout(Duration::ZERO).build();
    assert_eq!(policy.call(|| async { Ok::<_, ()>(1) }).await.unwrap(), 1);
    let yielding = policy.call(|| async {
        tokio::task::yield_now().await;
        Ok::<_, ()>(2)
    });
    assert_eq!(yielding.await.unwrap(), 2);
    let start = TokioInstant::now();
    let slow = policy.call(|| async {
        tokio::time::sleep(Duration::from_millis(10)).await;
        Ok::<_, ()>(3)
    });
    assert!(matches!(slow.await, Err(CallError::Timeout)));
    assert_eq!(start.elapsed(), Duration::from_millis(1));
}

#[tokio::test(start_paused = true)]
async fn a_rate_limit_wait_past_the_retry_deadline_stops_at_once() {
    let policy = Policy::builder()
        .retry(
            Retry::builder()
                .max_attempts(5)
                .deadline(Duration::from_millis(500))
                .backoff(
                    ExponentialBackoffMaker::new(
                        Duration::from_millis(10),
                        1.0,
                        Duration::from_millis(10),
                    )
                    .unwrap()
                    .with_jitter(Jitter::None),
                )
                .build(),
        )
        .limiter(Arc::new(Limiter::new(bucket(
            Quota::per_second(1).unwrap(),
        ))))
        .build();
    let start = TokioInstant::now();
    let calls = AtomicU32::new(0);
    let r = policy
        .call(|| {
            calls.fetch_add(1, Ordering::Relaxed);
            async { Err::<(), _>("down") }
        })
        .await;
    assert!(
        matches!(
            r,
            Err(CallError::RateLimited(LimitError::DeadlineExceeded { .. }))
        ),
        "{r:?}"
    );
    assert_eq!(calls.load(Ordering::Relaxed), 1);
    assert!(
        start.elapsed() <= Duration::from_millis(10),
        "{:?}",
        start.elapsed()
    );
}

// ---------------------------------------------------------------------------
// tower RateLimitLayer: tower#794 (a limit per clone), tower_governor's
// headers and error responses, the IETF draft's fields.
// ---------------------------------------------------------------------------

type Resp = http::Response<String>;

fn ok_service(
) -> impl Service<http::Request<()>, Response = Resp, Error = Infallible, Future: Send> + Clone {
    tower::service_fn(|_req: http::Request<()>| async {
        Ok::<_, Infallible>(http::Response::new(String::from("ok")))
    })
}

async fn send<S>(service: &S) -> Resp
where
    S: Service<http::Request<()>, Response = Resp, Error = Infallible> + Clone,
{
    service
        .clone()
        .oneshot(http::Request::new(()))
        .await
        .unwrap()
}

fn header(r: &Resp, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

/// `"name";a=1;b=2` → the integer parameters.
fn params(field: &str, name: &str) -> Vec<(String, u64)> {
    let member = field
        .split(", ")
        .find(|m| m.starts_with(&format!("\"{name}\"")))
        .unwrap_or_else(|| panic!("no member {name} in {field}"));
    member
        .split(';')
        .skip(1)
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap();
            (k.to_owned(), v.parse().unwrap())
        })
        .collect()
}

fn param(field: &str, name: &str, key: &str) -> u64 {
    params(field, name)
        .into_iter()
        .find(|(k, _)| k == key)
        .unwrap_or_else(|| panic!("no {key} in {field}"))
        .1
}

#[tokio::test(start_paused = true)]
async fn every_clone_charges_one_limit() {
    // tower#794: tower's RateLimit gives each clone its own limit; the doc
    // says fusebox's clones share one (a deliberate difference).
    let service =
        RateLimitLayer::new("api", bucket(Quota::per_second(5).unwrap())).layer(ok_service());
    let clones: Vec<_> = (0..10).map(|_| service.clone()).collect();
    let mut statuses = Vec::new();
    for c in &clones {
        statuses.push(send(c).await.status().as_u16());
    }
    assert_eq!(statuses.iter().filter(|&&s| s == 200).count(), 5);
    assert_eq!(statuses.iter().filter(|&&s| s == 429).count(), 5);
}

#[tokio::test(start_paused = true)]
async fn fields_follow_the_draft_examples() {
    // The draft's example: `RateLimit-Policy: "default";q=100;w=60`.
    let service =
        RateLimitLayer::new("default", bucket(Quota::per_minute(100).unwrap())).layer(ok_service());
    let first = send(&service).await;
    assert_eq!(first.status(), 200);
    assert_eq!(
        header(&first, "ratelimit-policy").unwrap(),
        "\"default\";q=100;w=60"
    );
    let rl = header(&first, "ratelimit").unwrap();
    assert_eq!(param(&rl, "default", "r"), 99);
    assert_eq!(
        param(&rl, "default", "t"),
        1,
        "one token, 600 ms, rounded up"
    );
    for _ in 0..99 {
        assert_eq!(send(&service).await.status(), 200);
    }
    let refused = send(&service).await;
    assert_eq!(refused.status(), 429);
    let rl = header(&refused, "ratelimit").unwrap();
    let retry_after: u64 = header(&refused, "retry-after").unwrap().parse().unwrap();
    assert_eq!(param(&rl, "default", "r"), 0);
    assert_eq!(retry_after, 1, "600 ms rounded up");
    // § 6: a Retry-After SHOULD NOT reference a point earlier than `t`;
    // nothing is left until the next token, so `t` is the Retry-After
    // (not the 60 s the empty bucket takes to refill).
    assert_eq!(param(&rl, "default", "t"), retry_after);
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_never_earlier_than_the_core_says() {
    // tower_governor's `x-ratelimit-after` / `retry-after` on 429: here
    // 3/s with a burst of 1, so a refusal's wait is 333.33 ms.
    let service = RateLimitLayer::new(
        "api",
        bucket(Quota::per_second(3).unwrap().with_burst(1).unwrap()),
    )
    .layer(ok_service());
    assert_eq!(send(&service).await.status(), 200);
    let refused = send(&service).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(header(&refused, "retry-after").unwrap(), "1");
    // A client honouring it exactly is admitted.
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(send(&service).await.status(), 200);
    // A day-long quota: `Retry-After` in whole seconds, the full day.
    let daily = RateLimitLayer::new(
        "daily",
        bucket(Quota::new(1, fusebox::Duration::from_secs(86_400)).unwrap()),
    )
    .layer(ok_service());
    assert_eq!(send(&daily).await.status(), 200);
    let refused = send(&daily).await;
    assert_eq!(header(&refused, "retry-after").unwrap(), "86400");
    let pol = header(&refused, "ratelimit-policy").unwrap();
    assert_eq!(
        (param(&pol, "daily", "q"), param(&pol, "daily", "w")),
        (1, 86_400)
    );
}

#[tokio::test(start_paused = true)]
async fn a_sub_second_window_never_advertises_a_higher_rate() {
    // Doc: "a window of a fraction of a second is stretched to whole seconds
    // with q scaled at the quota's rate, never advertising a higher one";
    // `r` "at most the burst, so never more than q".
    for (per_second, burst) in [(10, 3), (1_000, 1), (7, 2), (10_000_000, 1)] {
        let quota = Quota::per_second(per_second)
            .unwrap()
            .with_burst(burst)
            .unwrap();
        let service = RateLimitLayer::new("api", bucket(quota)).layer(ok_service());
        let r = send(&service).await;
        let pol = header(&r, "ratelimit-policy").unwrap();
        let (q, w) = (param(&pol, "api", "q"), param(&pol, "api", "w"));
        assert!(w >= 1, "{pol}");
        assert!(
            q <= u64::from(per_second) * w,
            "{pol}: above {per_second}/s"
        );
        let rl = header(&r, "ratelimit").unwrap();
        assert!(param(&rl, "api", "r") <= q, "{rl} vs {pol}");
    }
}

#[tokio::test(start_paused = true)]
async fn legacy_trio_matches_the_fields() {
    // tower_governor's `x-ratelimit-limit/remaining/after` headers.
    let service = RateLimitLayer::new("api", bucket(Quota::per_minute(10).unwrap()))
        .legacy_headers(true)
        .layer(ok_service());
    let r = send(&service).await;
    let rl = header(&r, "ratelimit").unwrap();
    assert_eq!(header(&r, "x-ratelimit-limit").unwrap(), "10");
    assert_eq!(
        header(&r, "x-ratelimit-remaining").unwrap(),
        param(&rl, "api", "r").to_string()
    );
    assert_eq!(
        header(&r, "x-ratelimit-reset").unwrap(),
        param(&rl, "api", "t").to_string()
    );
    let off = RateLimitLayer::new("api", bucket(Quota::per_minute(10).unwrap()))
        .rate_limit_headers(false)
        .layer(ok_service());
    let r = send(&off).await;
    assert!(header(&r, "ratelimit").is_none() && header(&r, "ratelimit-policy").is_none());
}

// ---------------------------------------------------------------------------
// More hostile edges: deadline boundaries, a bulkhead across retries,
// retried timeouts, the breaker layer's Retry-After.
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_token_due_exactly_at_the_deadline_is_given_up() {
    // Doc (`until_n_ready_by`): "a wait ending within 1 ms of it is given up".
    let limiter = Limiter::new(bucket(Quota::per_second(1).unwrap()));
    limiter.until_ready().await.unwrap();
    let start = TokioInstant::now();
    let r = limiter
        .until_n_ready_by(1, Some(start + Duration::from_secs(1)))
        .await;
    assert_eq!(
        r,
        Err(LimitError::DeadlineExceeded {
            retry_after: Duration::from_secs(1)
        })
    );
    assert_eq!(start.elapsed(), Duration::ZERO, "given up at once");
    let r = limiter
        .until_n_ready_by(1, Some(start + Duration::from_millis(1_002)))
        .await;
    assert_eq!(r, Ok(()));
    assert_eq!(start.elapsed(), Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn one_logical_call_holds_one_slot_across_its_retries() {
    // Polly's PolicyWrap(bulkhead, retry): doc "one logical call holds one
    // slot for all its attempts".
    let bulkhead = Bulkhead::new(1, Overflow::Reject).unwrap();
    let policy = Arc::new(
        Policy::builder()
            .bulkhead(bulkhead.clone())
            .retry(
                Retry::builder()
                    .max_attempts(3)
                    .backoff(
                        ExponentialBackoffMaker::new(
                            Duration::from_millis(100),
                            1.0,
                            Duration::from_millis(100),
                        )
                        .unwrap()
                        .with_jitter(Jitter::None),
                    )
                    .build(),
            )
            .build(),
    );
    let first = {
        let policy = Arc::clone(&policy);
        tokio::spawn(async move { policy.call(|| async { Err::<(), _>("down") }).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await; // mid-backoff
    assert_eq!(bulkhead.metrics().in_use, 1);
    assert!(matches!(
        policy.call(|| async { Ok::<_, &str>(()) }).await,
        Err(CallError::Bulkhead(BulkheadRejection::Full))
    ));
    assert!(matches!(
        first.await.unwrap(),
        Err(CallError::Inner("down"))
    ));
    assert_eq!(bulkhead.metrics().in_use, 0);
}

#[tokio::test(start_paused = true)]
async fn timeouts_are_retried_and_each_attempt_is_bounded() {
    // tower `timeout` + `retry`: doc "its timeouts always are [retried]".
    let policy = Policy::builder()
        .retry(
            Retry::builder()
                .max_attempts(3)
                .backoff(
                    ExponentialBackoffMaker::new(
                        Duration::from_millis(10),
                        1.0,
                        Duration::from_millis(10),
                    )
                    .unwrap()
                    .with_jitter(Jitter::None),
                )
                .retry_if(|(): &()| false)
                .build(),
        )
        .timeout(Duration::from_millis(50))
        .build();
    let calls = AtomicU32::new(0);
    let start = TokioInstant::now();
    let r = policy
        .call(|| {
            calls.fetch_add(1, Ordering::Relaxed);
            async {
                tokio::time::sleep(Duration::from_secs(3_600)).await;
                Ok::<_, ()>(())
            }
        })
        .await;
    assert!(matches!(r, Err(CallError::Timeout)), "{r:?}");
    assert_eq!(calls.load(Ordering::Relaxed), 3);
    assert_eq!(start.elapsed(), Duration::from_millis(3 * 50 + 2 * 10));
}

#[tokio::test(start_paused = true)]
async fn the_breaker_layers_retry_after_is_whole_seconds_rounded_up() {
    // tower_governor / Resilience4j: an open breaker answers 503 with a
    // delta-seconds Retry-After, "rounded up (never earlier than the core
    // says)".
    use fusebox_std::tower::CircuitBreakerLayer;
    let core = Arc::new(CircuitBreaker::new(
        Config::builder()
            .consecutive_failures(1)
            .open_for(fusebox::Duration::from_millis(1_500))
            .build()
            .unwrap(),
    ));
    let failing = tower::service_fn(|_req: http::Request<()>| async {
        let mut r = http::Response::new(String::new());
        *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
        Ok::<_, Infallible>(r)
    });
    let service = CircuitBreakerLayer::new("dep", core).layer(failing);
    assert_eq!(send(&service).await.status(), 500);
    let refused = send(&service).await;
    assert_eq!(refused.status(), 503);
    assert_eq!(header(&refused, "retry-after").unwrap(), "2");
    tokio::time::advance(Duration::from_millis(1_499)).await;
    let refused = send(&service).await;
    assert_eq!(refused.status(), 503);
    assert_eq!(
        header(&refused, "retry-after").unwrap(),
        "1",
        "never 0 while still open"
    );
}
