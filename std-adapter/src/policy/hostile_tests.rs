//! Hostile callers of the composed [`Policy`]: futures dropped after every
//! number of polls, closures that panic, tasks racing on one bulkhead.
//! Every check is an invariant of the docs, never a timing.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use fusebox::breaker::{CircuitBreaker, Config, State};
use fusebox::bucket::{Quota, TokenBucket};

use super::*;

fn poll_once<F: Future + ?Sized>(f: Pin<&mut F>) -> Poll<F::Output> {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    f.poll(&mut cx)
}

struct Rig {
    bulkhead: Bulkhead,
    breaker: Breaker,
    budget: Arc<RetryBudget>,
    policy: Policy,
}

/// Every layer: one slot (a queue of one), 4 attempts 10 ms apart within
/// a budget, 100 tokens a second (burst 1), a breaker opening on two
/// failures for 50 ms with one half-open trial, a 20 ms timeout.
fn rig() -> Rig {
    let bulkhead = Bulkhead::new(
        1,
        Overflow::Queue {
            max_queued: 1,
            max_wait: Duration::from_secs(1),
        },
    )
    .unwrap();
    let config = Config::builder()
        .consecutive_failures(2)
        .open_for(fusebox::Duration::from_millis(50))
        .half_open_permits(1)
        .build()
        .unwrap();
    let breaker = Breaker::new("rig", Arc::new(CircuitBreaker::new(config)));
    let budget = Arc::new(RetryBudget::new(Duration::from_secs(10), 100, 2).unwrap());
    let backoff =
        ExponentialBackoffMaker::new(Duration::from_millis(10), 1.0, Duration::from_millis(10))
            .unwrap()
            .with_jitter(Jitter::None);
    let limiter = Limiter::new(Arc::new(TokenBucket::new(
        Quota::per_second(100).unwrap().with_burst(1).unwrap(),
    )));
    let policy = Policy::builder()
        .bulkhead(bulkhead.clone())
        .retry(
            Retry::builder()
                .max_attempts(4)
                .backoff(backoff)
                .budget(Arc::clone(&budget))
                .deadline(Duration::from_secs(1))
                .build(),
        )
        .limiter(Arc::new(limiter))
        .breaker(breaker.clone())
        .timeout(Duration::from_millis(20))
        .build();
    Rig {
        bulkhead,
        breaker,
        budget,
        policy,
    }
}

/// Dropped after every number of polls (time moving 1 ms between them):
/// the slot and the queue place come back, no breaker permit is left
/// outstanding (a half-open trial is free again), and the budget is never
/// charged for more retries than were started or granted.
#[tokio::test(start_paused = true)]
async fn dropped_after_any_number_of_polls_leaks_nothing() {
    for polls in 0..120 {
        let rig = rig();
        let made = AtomicUsize::new(0);
        {
            let mut call = Box::pin(rig.policy.call(|| {
                let n = made.fetch_add(1, Ordering::Relaxed);
                async move {
                    if n.is_multiple_of(2) {
                        tokio::time::sleep(Duration::from_millis(30)).await; // timed out
                    }
                    Err::<(), _>("down")
                }
            }));
            for _ in 0..polls {
                if poll_once(call.as_mut()).is_ready() {
                    break;
                }
                tokio::time::advance(Duration::from_millis(1)).await;
            }
        }
        let m = rig.bulkhead.metrics();
        assert_eq!((m.in_use, m.queued), (0, 0), "{polls} polls");
        let b = rig.breaker.metrics();
        let made = made.load(Ordering::Relaxed) as u64;
        // Every permit given was settled: recorded or abandoned.
        assert_eq!(b.calls(), made, "{polls} polls: {b:?}");
        // Retries withdrawn: exactly the retries that called `make` (one
        // granted and then dropped in its backoff or waiting for its
        // token, or refused by the breaker, is given back). The first poll
        // deposits the call's first attempt (the slot is free).
        let allowed = 2 + u64::from(polls > 0);
        let spent = allowed - rig.budget.remaining_at(rig.budget_now());
        assert_eq!(
            spent,
            made.saturating_sub(1),
            "{polls} polls: {spent} retries for {made} attempts"
        );
        // Whatever the breaker's state, a half-open trial is never held.
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(
            rig.breaker.call(async { Ok::<(), ()>(()) }).await.is_ok(),
            "{polls} polls: {:?}",
            rig.breaker.state()
        );
        assert_eq!(rig.breaker.state(), State::Closed);
    }
}

impl Rig {
    fn budget_now(&self) -> fusebox::Instant {
        fusebox::Clock::now(&self.breaker.clock())
    }
}

/// A closure that panics while building its future, or a future that
/// panics while running (a half-open trial among them): the task dies,
/// the slot comes back, the permit is abandoned (the trial is free
/// again), and the next call goes through.
#[tokio::test(start_paused = true)]
async fn a_panicking_call_leaks_nothing() {
    let rig = Arc::new(rig());
    // Open the breaker, then let it go half-open.
    let _ = rig.policy.call(|| async { Err::<(), _>("down") }).await;
    assert_eq!(rig.breaker.state(), State::Open);
    tokio::time::advance(Duration::from_millis(60)).await;
    assert_eq!(rig.breaker.state(), State::HalfOpen);
    for in_future in [false, true] {
        let task = tokio::spawn({
            let rig = Arc::clone(&rig);
            async move {
                rig.policy
                    .call(move || {
                        assert!(in_future, "make panics");
                        async {
                            tokio::task::yield_now().await;
                            panic!("the call panics");
                            #[allow(unreachable_code)]
                            Ok::<(), &str>(())
                        }
                    })
                    .await
            }
        });
        assert!(task.await.unwrap_err().is_panic());
        let m = rig.bulkhead.metrics();
        assert_eq!((m.in_use, m.queued), (0, 0));
        assert_eq!(rig.breaker.state(), State::HalfOpen, "undecided");
    }
    assert_eq!(rig.breaker.metrics().abandoned, 2);
    rig.policy
        .call(|| async { Ok::<(), &str>(()) })
        .await
        .unwrap();
    assert_eq!(rig.breaker.state(), State::Closed);
}

/// Tasks on every worker racing for one bulkhead, many of them dropped by
/// tiny outer timeouts while queued or inside: never more inside than its
/// slots, and every slot and queue place back at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_tasks_never_exceed_the_slots() {
    const SLOTS: usize = 3;
    let bulkhead = Bulkhead::new(
        SLOTS,
        Overflow::Queue {
            max_queued: 4,
            max_wait: Duration::from_millis(2),
        },
    )
    .unwrap();
    let inside = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..400u64 {
        let (bulkhead, inside, most) = (bulkhead.clone(), Arc::clone(&inside), Arc::clone(&most));
        tasks.push(tokio::spawn(async move {
            let call = bulkhead.call(async {
                let _inside = Inside::enter(&inside, &most);
                tokio::task::yield_now().await;
                Ok::<(), ()>(())
            });
            let _ = tokio::time::timeout(Duration::from_micros(i % 7 * 100), call).await;
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert!(most.load(Ordering::SeqCst) <= SLOTS);
    let m = bulkhead.metrics();
    assert_eq!((m.in_use, m.queued), (0, 0));
}

/// One call inside the bulkhead, counted out however it ends (a call
/// dropped by its timeout, a cancelled or panicking one included); the
/// bulkhead's own hostile tests count with it too.
pub(super) struct Inside<'a>(&'a AtomicUsize);

impl<'a> Inside<'a> {
    pub(super) fn enter(inside: &'a AtomicUsize, most: &AtomicUsize) -> Self {
        let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
        most.fetch_max(now, Ordering::SeqCst);
        Self(inside)
    }
}

impl Drop for Inside<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A zero timeout is raised to 1 ms: it failed every call not ready on its
/// first poll, and opened the breaker of a healthy service (found by a
/// hostile review).
#[tokio::test(start_paused = true)]
async fn a_zero_timeout_does_not_fail_a_call_that_yields() {
    let core = Arc::new(CircuitBreaker::new(
        Config::builder().consecutive_failures(1).build().unwrap(),
    ));
    let breaker = Breaker::builder("zero", Arc::clone(&core))
        .timeout(Duration::ZERO)
        .build();
    assert_eq!(breaker.timeout(), Some(Duration::from_millis(1)));
    let yields = || async {
        tokio::task::yield_now().await;
        Ok::<_, ()>(())
    };
    assert!(breaker.call(yields()).await.is_ok());
    let policy = Policy::builder()
        .breaker(breaker.clone())
        .timeout(Duration::ZERO)
        .build();
    assert!(policy.call(yields).await.is_ok());
    assert_eq!(breaker.state(), State::Closed);
}

/// A limiter waiter, boxed.
type Waiter<'a> = Pin<Box<dyn Future<Output = Result<(), LimitError>> + 'a>>;

/// Four waiters on each limiter (two on one key of a keyed limiter, two on
/// the plain one; for more tokens and for fewer), dropped together after
/// every number of polls with time moving between them: no key is left
/// queued, no gate is left held, and the tokens they did not get are
/// still there for the next caller.
#[tokio::test(start_paused = true)]
async fn limiter_waiters_dropped_together_after_any_poll_leak_nothing() {
    let quota = Quota::per_second(10).unwrap().with_burst(2).unwrap();
    for polls in 0..120u32 {
        let bucket = Arc::new(TokenBucket::new(quota));
        let limiter = Limiter::new(Arc::clone(&bucket));
        let core: fusebox::KeyedLimiter<u8, 4> =
            fusebox::KeyedLimiter::new(quota, fusebox::bucket::FullPolicy::Reject).unwrap();
        let keyed = KeyedLimiter::new(Arc::new(core));
        limiter.until_n_ready(2).await.unwrap();
        keyed.until_n_ready(&7, 2).await.unwrap();
        let mut admitted = 0;
        {
            let mut waiters: [Waiter<'_>; 4] = [
                Box::pin(limiter.until_n_ready(2)),
                Box::pin(limiter.until_n_ready(1)),
                Box::pin(keyed.until_n_ready(&7, 2)),
                Box::pin(keyed.until_n_ready(&7, 1)),
            ];
            let mut done = [false; 4];
            for i in 0..polls {
                for (w, done) in waiters.iter_mut().zip(&mut done) {
                    if !*done && poll_once(w.as_mut()).is_ready() {
                        *done = true;
                        admitted += 1;
                    }
                }
                let step = if i % 3 == 0 { 1_000 } else { 37_000 };
                tokio::time::advance(Duration::from_micros(step)).await;
            }
        }
        assert_eq!(keyed.waiting_keys(), 0, "{polls} polls");
        // Nothing holds a gate, and a dropped waiter took no token: the
        // next callers are served at once once the bucket refilled.
        tokio::time::advance(Duration::from_secs(1)).await;
        let start = tokio::time::Instant::now();
        limiter.until_n_ready(2).await.unwrap();
        keyed.until_n_ready(&7, 2).await.unwrap();
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "{polls} polls, {admitted} admitted"
        );
    }
}

/// Two adapters on one core structure, built two minutes apart. With a
/// new clock each (`new`), the later one reads the earlier one's time as
/// its future, as their docs now say: a breaker opened through one lets a
/// trial through the other at once (and closes), a bucket makes the later
/// limiter's callers wait out the gap, and a keyed limiter at the largest
/// scale admits four bursts at one instant. With one clock shared, none
/// of it happens. Found by a hostile review (a careless user wrapping a
/// shared `Arc` twice).
#[tokio::test(start_paused = true)]
async fn adapters_of_one_core_structure_must_share_a_clock() {
    let gap = Duration::from_secs(120);
    let config = Config::builder()
        .consecutive_failures(1)
        .open_for(fusebox::Duration::from_secs(30))
        .build()
        .unwrap();
    let quota = Quota::per_second(65_537).unwrap().with_burst(4).unwrap();
    for shared in [false, true] {
        let clock = crate::TokioClock::new();
        let clock_then = |shared: bool| {
            if shared {
                clock
            } else {
                crate::TokioClock::new()
            }
        };
        let core = Arc::new(CircuitBreaker::new(config));
        let bucket = Arc::new(TokenBucket::new(Quota::per_second(10).unwrap()));
        let keyed_core: Arc<fusebox::KeyedLimiter<u8, 4>> = Arc::new(
            fusebox::KeyedLimiter::new(quota, fusebox::bucket::FullPolicy::Reject).unwrap(),
        );
        let first = (
            Breaker::builder("a", Arc::clone(&core))
                .clock(clock)
                .build(),
            Limiter::with_clock(Arc::clone(&bucket), clock),
            KeyedLimiter::with_clock(Arc::clone(&keyed_core), clock),
        );
        tokio::time::advance(gap).await;
        let later = clock_then(shared);
        let second = (
            Breaker::builder("b", core).clock(later).build(),
            Limiter::with_clock(bucket, later),
            KeyedLimiter::with_clock(keyed_core, later),
        );

        let _ = first.0.call(async { Err::<(), ()>(()) }).await;
        let trial = second.0.call(async { Ok::<(), ()>(()) }).await;
        assert_eq!(trial.is_ok(), !shared, "shared {shared}: {trial:?}");

        let start = tokio::time::Instant::now();
        first.1.until_n_ready(10).await.unwrap();
        second.1.until_ready().await.unwrap();
        let waited = start.elapsed();
        assert_eq!(waited >= gap, !shared, "shared {shared}: {waited:?}");

        let start = tokio::time::Instant::now();
        for _ in 0..2 {
            first.2.until_n_ready(&1, 4).await.unwrap();
            second.2.until_n_ready(&1, 4).await.unwrap();
        }
        let instant = start.elapsed() == Duration::ZERO;
        assert_eq!(
            instant, !shared,
            "shared {shared}: 16 tokens of burst 4 at once"
        );
    }
}

/// The same three pairs built with no clock of their own (`new`, a
/// builder without `clock`), two minutes apart: the later one takes the
/// earlier one's clock, so none of the above happens. Before, each took a
/// new clock (the breaker failed open, the limiter waited the gap out, the
/// keyed limiter admitted four bursts at once).
#[tokio::test(start_paused = true)]
async fn adapters_built_without_a_clock_share_their_cores_clock() {
    let gap = Duration::from_secs(120);
    let config = Config::builder()
        .consecutive_failures(1)
        .open_for(fusebox::Duration::from_secs(30))
        .build()
        .unwrap();
    let quota = Quota::per_second(65_537).unwrap().with_burst(4).unwrap();
    let core = Arc::new(CircuitBreaker::new(config));
    let bucket = Arc::new(TokenBucket::new(Quota::per_second(10).unwrap()));
    let keyed_core: Arc<fusebox::KeyedLimiter<u8, 4>> =
        Arc::new(fusebox::KeyedLimiter::new(quota, fusebox::bucket::FullPolicy::Reject).unwrap());
    let first = (
        Breaker::builder("a", Arc::clone(&core)).build(),
        Limiter::new(Arc::clone(&bucket)),
        KeyedLimiter::new(Arc::clone(&keyed_core)),
    );
    tokio::time::advance(gap).await;
    let second = (
        Breaker::builder("b", core).build(),
        Limiter::new(bucket),
        KeyedLimiter::new(keyed_core),
    );
    assert_eq!(first.0.clock(), second.0.clock());

    let _ = first.0.call(async { Err::<(), ()>(()) }).await;
    let trial = second.0.call(async { Ok::<(), ()>(()) }).await;
    assert!(trial.is_err(), "open through the first: {trial:?}");

    let start = tokio::time::Instant::now();
    first.1.until_n_ready(10).await.unwrap();
    second.1.until_ready().await.unwrap();
    assert!(start.elapsed() < gap, "{:?}", start.elapsed());

    let start = tokio::time::Instant::now();
    for _ in 0..2 {
        first.2.until_n_ready(&1, 4).await.unwrap();
        second.2.until_n_ready(&1, 4).await.unwrap();
    }
    assert_ne!(
        start.elapsed(),
        Duration::ZERO,
        "16 tokens of burst 4 at once"
    );
}

/// Sound, kept as a test (hostile review): one `Policy` with every layer
/// shared by 400 tasks on two workers, each dropped by an outer timeout at
/// a different point, calls slow, failing and timing out by turns. Never
/// more calls inside than the bulkhead's slots; at the end every slot and
/// queue place is back, every breaker permit was settled (recorded or
/// abandoned) once per call of `make`, and the budget was charged exactly
/// one retry per retry that called `make` (none for those granted and then
/// dropped), with every first attempt deposited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_policy_under_racing_cancelled_tasks_keeps_its_books() {
    let bulkhead = Bulkhead::new(
        3,
        Overflow::Queue {
            max_queued: 2,
            max_wait: Duration::from_millis(5),
        },
    )
    .unwrap();
    let core = Arc::new(CircuitBreaker::new(
        Config::builder()
            .consecutive_failures(5)
            .open_for(fusebox::Duration::from_millis(10))
            .half_open_permits(2)
            .build()
            .unwrap(),
    ));
    let breaker = Breaker::new("shared", Arc::clone(&core));
    // A window far longer than the test: every count stays in it.
    let budget = Arc::new(RetryBudget::new(Duration::from_secs(100), 50, 5).unwrap());
    let backoff =
        ExponentialBackoffMaker::new(Duration::from_millis(1), 2.0, Duration::from_millis(4))
            .unwrap();
    let bucket = TokenBucket::new(Quota::per_second(2_000).unwrap().with_burst(5).unwrap());
    let policy = Arc::new(
        Policy::builder()
            .bulkhead(bulkhead.clone())
            .retry(
                Retry::builder()
                    .max_attempts(4)
                    .budget(Arc::clone(&budget))
                    .deadline(Duration::from_millis(50))
                    .backoff(backoff)
                    .build(),
            )
            .limiter(Arc::new(Limiter::new(Arc::new(bucket))))
            .breaker(breaker.clone())
            .timeout(Duration::from_millis(3))
            .build(),
    );
    let (first, retries) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (inside, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut tasks = Vec::new();
    for i in 0..400u64 {
        let policy = Arc::clone(&policy);
        let (first, retries) = (Arc::clone(&first), Arc::clone(&retries));
        let (inside, most) = (Arc::clone(&inside), Arc::clone(&most));
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_micros(i % 97 * 150)).await;
            let mut attempt = 0u64;
            let call = policy.call(|| {
                attempt += 1;
                let made = if attempt == 1 { &first } else { &retries };
                made.fetch_add(1, Ordering::SeqCst);
                let (inside, most) = (Arc::clone(&inside), Arc::clone(&most));
                let kind = (i * 7 + attempt * 3) % 5;
                async move {
                    let _inside = Inside::enter(&inside, &most);
                    tokio::time::sleep(Duration::from_micros(kind * 900)).await;
                    if kind.is_multiple_of(2) {
                        Err::<(), _>("down")
                    } else {
                        Ok(())
                    }
                }
            });
            let _ = tokio::time::timeout(Duration::from_micros(i % 11 * 700), call).await;
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert!(most.load(Ordering::SeqCst) <= 3);
    let m = bulkhead.metrics();
    assert_eq!((m.in_use, m.queued), (0, 0));
    let (first, retries) = (
        first.load(Ordering::SeqCst) as u64,
        retries.load(Ordering::SeqCst) as u64,
    );
    assert_eq!(core.metrics().calls(), first + retries);
    let remaining = budget.remaining_at(fusebox::Clock::now(&breaker.clock()));
    assert_eq!(
        remaining + retries,
        5 + first / 2,
        "{first} first attempts, {retries} retries"
    );
}
