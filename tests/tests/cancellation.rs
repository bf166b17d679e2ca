//! Every async API of the policies and of the registry's policies,
//! cancelled after every number of polls: each future is polled
//! k times (k = 0, 1, 2, … until it completes), paused time moving 1 ms
//! between polls, then dropped. Afterwards the invariants their docs
//! promise must hold: every permit settled exactly once (a dropped call
//! abandoned, never a success, never twice), every slot, queue place,
//! half-open trial and token back, the retry budget charged only for the
//! retries that ran, the registry's events, health report and
//! Prometheus text telling the same story. The monitor's are in
//! `cancellation_monitor.rs`; a runtime shut down under parked calls and
//! calls racing on two workers in `cancellation_runtime.rs`.

use crate::common;

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use crate::common::{poll_once, poll_then_drop};
use fusebox::breaker::{Config, State};
use fusebox::bucket::Quota;
use fusebox::Clock;
use fusebox_std::events::{Event, Subscription};
use fusebox_std::policy::{
    ExponentialBackoffMaker, Jitter, Overflow, Policy, Retry, RetryBudget, RetryError, Stop,
};
use fusebox_std::{CallError, Registry};

const MS: Duration = Duration::from_millis(1);

/// The most polls any harness below needs (each completes well before).
const MAX_POLLS: u32 = 400;

/// The events published so far, by kind, for one name.
#[derive(Debug, Default, PartialEq, Eq)]
struct Seen {
    failures: u64,
    timed_out: u64,
    rejected: u64,
    to_open: u64,
    to_half_open: u64,
    to_closed: u64,
}

fn drain(events: &mut Subscription, name: &str) -> Seen {
    let mut seen = Seen::default();
    while let Some(event) = events.try_recv() {
        if event.name() != name {
            continue;
        }
        match event {
            Event::Failure { error, .. } => {
                seen.failures += 1;
                seen.timed_out += u64::from(error == "timed out");
            }
            Event::Rejected { .. } => seen.rejected += 1,
            Event::StateChange { to, .. } => match to {
                State::Open => seen.to_open += 1,
                State::HalfOpen => seen.to_half_open += 1,
                _ => seen.to_closed += 1,
            },
            _ => {}
        }
    }
    seen
}

/// The value of the Prometheus sample `family{name="name"}`.
fn sample(text: &str, family: &str, name: &str) -> u64 {
    let prefix = format!("{family}{{name=\"{name}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
        .parse()
        .unwrap()
}

fn constant_backoff(ms: u64) -> ExponentialBackoffMaker {
    ExponentialBackoffMaker::new(Duration::from_millis(ms), 1.0, Duration::from_millis(ms))
        .unwrap()
        .with_jitter(Jitter::None)
}

/// How the operation behind a call ends, if nobody drops it first.
#[derive(Clone, Copy, Debug)]
enum Op {
    /// `Ok` after 10 ms.
    Succeeds,
    /// `Err` after 10 ms.
    Fails,
    /// Never: the policy's 20 ms timeout ends it.
    Hangs,
}

impl Op {
    async fn run(self) -> Result<u32, &'static str> {
        match self {
            Self::Succeeds => {
                tokio::time::sleep(10 * MS).await;
                Ok(7)
            }
            Self::Fails => {
                tokio::time::sleep(10 * MS).await;
                Err("down")
            }
            Self::Hangs => std::future::pending().await,
        }
    }
}

/// A registry's breaker policy (behind a policy's 20 ms timeout), on a
/// closed breaker and on a half-open one, its call dropped after every
/// number of polls: every permit is settled once (recorded as the call
/// ended, or abandoned if dropped), the events, the health report and the
/// Prometheus text say the same, and a dropped trial leaves the half-open
/// slot free (the next call is a trial, admitted at once).
#[tokio::test(start_paused = true)]
async fn a_registry_breaker_call_dropped_after_any_poll_settles_its_permit_once() {
    for half_open in [false, true] {
        for op in [Op::Succeeds, Op::Fails, Op::Hangs] {
            for polls in 0..MAX_POLLS {
                let registry = Arc::new(Registry::new());
                let mut events = registry.events().subscribe();
                let config = Config::builder()
                    .consecutive_failures(1)
                    .open_for(fusebox::Duration::from_millis(50))
                    .half_open_permits(1)
                    .build()
                    .unwrap();
                let breaker = registry.breaker_policy("api", config).unwrap();
                if half_open {
                    breaker.core().force_open(breaker.clock().now());
                    breaker.core().force_close(breaker.clock().now());
                    let _ = breaker.call(async { Err::<(), _>("trip") }).await;
                    tokio::time::advance(60 * MS).await;
                }
                let before = breaker.metrics();
                let _ = drain(&mut events, "api");
                let policy = Policy::builder()
                    .breaker(breaker.clone())
                    .timeout(20 * MS)
                    .build();
                let made = AtomicU32::new(0);
                let out = poll_then_drop(
                    policy.call(|| {
                        made.fetch_add(1, SeqCst);
                        op.run()
                    }),
                    polls,
                )
                .await;
                let at = format!("{op:?}, half-open {half_open}, {polls} polls: {out:?}");
                let m = breaker.metrics();
                let made = u64::from(made.load(SeqCst));
                assert_eq!(made, u64::from(polls > 0), "{at}");
                let (successes, failures, abandoned) = (
                    m.successes - before.successes,
                    m.failures - before.failures,
                    m.abandoned - before.abandoned,
                );
                let expected = match &out {
                    None => (0, 0, made),
                    Some(Ok(7)) => (1, 0, 0),
                    Some(Err(CallError::Inner("down") | CallError::Timeout)) => (0, 1, 0),
                    Some(other) => panic!("{at}: {other:?}"),
                };
                assert_eq!((successes, failures, abandoned), expected, "{at}");
                assert_eq!(m.rejected, before.rejected, "{at}");
                let seen = drain(&mut events, "api");
                let timed_out = u64::from(matches!(out, Some(Err(CallError::Timeout))));
                assert_eq!(
                    (seen.failures, seen.timed_out),
                    (failures, timed_out),
                    "{at}"
                );
                assert_eq!(seen.rejected, 0, "{at}");
                assert_eq!(seen.to_half_open, u64::from(half_open && made > 0), "{at}");
                // A failure opens it, a trial's success closes it; an
                // abandoned call changes nothing.
                let closed = if half_open { successes } else { 0 };
                assert_eq!((seen.to_open, seen.to_closed), (failures, closed), "{at}");
                let text = registry.to_prometheus();
                for (family, value) in [
                    ("successes", m.successes),
                    ("failures", m.failures),
                    ("abandoned", m.abandoned),
                ] {
                    let family = format!("fusebox_breaker_{family}_total");
                    assert_eq!(sample(&text, &family, "api"), value, "{at}: {family}");
                }
                assert_eq!(registry.health().breakers["api"].metrics, m, "{at}");
                // No trial held: a call now is admitted at once, unless the
                // call failed (and so opened the breaker).
                let next = breaker.call(async { Ok::<_, ()>(()) }).await;
                assert_eq!(next.is_ok(), failures == 0, "{at}: {next:?}");
                if out.is_some() {
                    break;
                }
            }
        }
    }
}

/// A registry's bulkhead (one slot, a queue of one with a 10 ms wait), its
/// slot held by another caller who lets go at 5 ms or never, and a call
/// through it dropped after every number of polls: the slot and the queue
/// place come back, a refusal is counted (and published) only when the
/// call was refused, and the full capacity is available afterwards.
#[tokio::test(start_paused = true)]
async fn a_registry_bulkhead_call_dropped_after_any_poll_returns_its_slot() {
    let queue = Overflow::Queue {
        max_queued: 1,
        max_wait: 10 * MS,
    };
    for release_at in [Some(5), None] {
        for polls in 0..MAX_POLLS {
            let registry = Registry::new();
            let mut events = registry.events().subscribe();
            let bulkhead = registry.bulkhead("db", 1, queue).unwrap();
            let mut holder = Some(bulkhead.try_acquire().unwrap());
            let mut out = None;
            {
                let mut call = std::pin::pin!(bulkhead.call(Op::Succeeds.run()));
                for poll in 0..polls {
                    if release_at == Some(poll) {
                        holder = None;
                    }
                    if let Poll::Ready(result) = poll_once(call.as_mut()) {
                        out = Some(result);
                        break;
                    }
                    tokio::time::advance(MS).await;
                }
            }
            drop(holder);
            let at = format!("released at {release_at:?}, {polls} polls: {out:?}");
            let refused = u64::from(matches!(out, Some(Err(CallError::Bulkhead(_)))));
            assert!(
                matches!(out, None | Some(Ok(7) | Err(CallError::Bulkhead(_)))),
                "{at}"
            );
            let m = bulkhead.metrics();
            assert_eq!((m.in_use, m.queued, m.rejected), (0, 0, refused), "{at}");
            assert_eq!(drain(&mut events, "db").rejected, refused, "{at}");
            let report = &registry.health().bulkheads["db"];
            assert_eq!(
                (report.in_use, report.queued, report.rejected),
                (0, 0, refused),
                "{at}"
            );
            let text = registry.to_prometheus();
            assert_eq!(sample(&text, "fusebox_bulkhead_in_use", "db"), 0, "{at}");
            assert_eq!(
                sample(&text, "fusebox_bulkhead_rejected_total", "db"),
                refused,
                "{at}"
            );
            // The whole capacity, at once.
            let slot = bulkhead.try_acquire();
            assert!(slot.is_ok(), "{at}");
            if out.is_some() {
                break;
            }
        }
    }
}

/// A retry through `budget` (at most 4 attempts, 10 ms apart) of a call
/// failing after 5 ms, dropped after `polls` polls: its output and the
/// attempts made.
async fn retry_dropped_after(
    budget: &Arc<RetryBudget>,
    polls: u32,
) -> (Option<Result<(), RetryError<&'static str>>>, u64) {
    let retry = Retry::builder()
        .max_attempts(4)
        .backoff(constant_backoff(10))
        .budget(Arc::clone(budget))
        .build();
    let made = AtomicU32::new(0);
    let out = poll_then_drop(
        retry.call(|| {
            made.fetch_add(1, SeqCst);
            async {
                tokio::time::sleep(5 * MS).await;
                Err::<(), _>("down")
            }
        }),
        polls,
    )
    .await;
    (out, u64::from(made.load(SeqCst)))
}

/// A retry dropped after every number of polls charges its budget for
/// exactly the retries whose attempt started (one dropped in its backoff
/// is given back) and deposits its first attempt once: with a floor of
/// three retries, three minus the retries started are left; with 100 % of
/// first attempts and no floor, one minus them.
#[tokio::test(start_paused = true)]
async fn a_retry_dropped_after_any_poll_charges_the_budget_for_started_retries_only() {
    // A stale `now` reads as the latest slot: the window the calls ran in.
    let latest = fusebox::Instant::ZERO;
    for (percent, floor, stop) in [(0, 3, Stop::Exhausted), (100, 0, Stop::Budget)] {
        for polls in 0..MAX_POLLS {
            let budget =
                Arc::new(RetryBudget::new(Duration::from_secs(10), percent, floor).unwrap());
            let (out, made) = retry_dropped_after(&budget, polls).await;
            let at = format!("{percent} % + {floor}, {polls} polls, {made} attempts: {out:?}");
            let allowed = u64::from(floor) + u64::from(percent) * u64::from(polls > 0) / 100;
            let retries = made.saturating_sub(1);
            assert_eq!(budget.remaining_at(latest), allowed - retries, "{at}");
            if let Some(out) = out {
                assert_eq!(out.map_err(|e| e.stop).unwrap_err(), stop, "{at}");
                break;
            }
        }
    }
}

/// Two waiters on a registry's limiter (10 tokens a second, burst 3,
/// emptied first): one for 2 tokens (granted at 200 ms), one for 1 token
/// by 250 ms queued behind it (refused at 200 ms: its token would come at
/// 300 ms), both dropped after every number of polls. Only a refusal is
/// published, once; a dropped waiter takes no token; and the same for a
/// keyed limiter's key, whose queue is gone afterwards.
#[tokio::test(start_paused = true)]
async fn registry_limiter_waiters_dropped_after_any_poll_take_and_report_nothing() {
    let quota = Quota::per_second(10).unwrap().with_burst(3).unwrap();
    for keyed in [false, true] {
        for polls in 0..MAX_POLLS {
            let registry = Registry::new();
            let mut events = registry.events().subscribe();
            let plain = registry.limiter_policy("api", quota).unwrap();
            let per_user = registry.keyed_limiter_policy::<u32, 8>(
                "api",
                quota,
                fusebox::bucket::FullPolicy::Reject,
            );
            let per_user = if keyed { Some(per_user.unwrap()) } else { None };
            let start = tokio::time::Instant::now();
            match &per_user {
                None => plain.until_n_ready(3).await.unwrap(),
                Some(limiter) => limiter.until_n_ready(&7, 3).await.unwrap(),
            }
            let deadline = Some(start + 250 * MS);
            let waiters = async {
                match &per_user {
                    None => {
                        tokio::join!(plain.until_n_ready(2), plain.until_n_ready_by(1, deadline))
                    }
                    Some(limiter) => tokio::join!(
                        limiter.until_n_ready(&7, 2),
                        limiter.until_n_ready_by(&7, 1, deadline)
                    ),
                }
            };
            // `join!` polls both waiters on every poll: each is dropped
            // after as many polls, whichever is still pending.
            let out = poll_then_drop(waiters, polls).await;
            let at = format!("keyed {keyed}, {polls} polls: {out:?}");
            let elapsed = start.elapsed();
            let refused = u64::from(out.as_ref().is_some_and(|(_, second)| second.is_err()));
            if let Some((first, _)) = &out {
                assert!(first.is_ok(), "{at}");
                assert_eq!(refused, 1, "{at}");
            }
            let seen = drain(&mut events, "api");
            assert_eq!(seen.rejected, refused, "{at}");
            // Tokens refilled since the start, less the 2 of a granted first
            // waiter: nothing else was taken.
            let granted = if out.is_some() { 2 } else { 0 };
            let refilled = u32::try_from(elapsed.as_millis() / 100).unwrap().min(3);
            let available = match &per_user {
                None => plain.bucket().unwrap().available(plain.clock().now()),
                Some(limiter) => {
                    assert_eq!(limiter.waiting_keys(), 0, "{at}");
                    let now = registry.now();
                    limiter.core().available(&7, now)
                }
            };
            assert_eq!(available, refilled - granted, "{at}: {elapsed:?}");
            if out.is_some() {
                break;
            }
        }
    }
}

/// A stale cache's fetch dropped after every number of polls caches
/// nothing (the registry's report counts no insert), and the next caller
/// still gets the old value when its own fetch fails.
#[tokio::test(start_paused = true)]
async fn a_stale_cache_fetch_dropped_after_any_poll_caches_nothing() {
    use fusebox_std::policy::{Source, StaleCache};
    for polls in 0..MAX_POLLS {
        let registry = Registry::new();
        let cache: Arc<StaleCache<u8, u32, 4>> =
            Arc::new(StaleCache::new(Duration::ZERO, Duration::from_secs(60)).unwrap());
        registry
            .register_cache("prices", Arc::clone(&cache))
            .unwrap();
        cache
            .get_or_fetch(1, || async { Ok::<_, ()>(1) })
            .await
            .unwrap();
        let out = poll_then_drop(
            cache.get_or_fetch(1, || async {
                tokio::time::sleep(10 * MS).await;
                Ok::<_, ()>(2)
            }),
            polls,
        )
        .await;
        let at = format!("{polls} polls: {out:?}");
        let inserts = 1 + u64::from(out.is_some());
        assert_eq!(
            registry.health().caches["prices"].metrics.inserts,
            inserts,
            "{at}"
        );
        let served = cache
            .get_or_fetch(1, || async { Err::<u32, _>("down") })
            .await
            .unwrap();
        let expected = if out.is_some() { 2 } else { 1 };
        assert_eq!(
            (served.value, served.source),
            (expected, Source::Stale),
            "{at}"
        );
        if out.is_some() {
            break;
        }
    }
}

/// An operation that counts how it ended: completed, or dropped before.
struct Ending<'a> {
    made: &'a AtomicU32,
    completed: &'a AtomicU32,
}

impl Ending<'_> {
    /// Attempt `n` (from 0) fails after 10 ms when even and hangs (to the
    /// policy's timeout) when odd.
    fn make(&self) -> impl Future<Output = Result<u32, &'static str>> + '_ {
        let n = self.made.fetch_add(1, SeqCst);
        async move {
            if n % 2 == 1 {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(10 * MS).await;
            self.completed.fetch_add(1, SeqCst);
            Err("down")
        }
    }
}

/// Every layer from one registry (its bulkhead, limiter and breaker, a
/// retry with a budget of three retries, a 20 ms timeout) over attempts
/// that fail or hang, dropped after every number of polls: the slot is
/// back; every breaker permit was settled once (a failure per completed
/// or timed-out attempt, abandoned if dropped), the events say as much
/// (a failure event per failure, as many "timed out" as timeouts); a
/// token was taken by every attempt that passed the limiter (each then
/// called, or refused by the open breaker; a burst large enough for all),
/// and the budget charged for every retry that called the operation.
#[tokio::test(start_paused = true)]
async fn a_registry_policy_dropped_after_any_poll_accounts_for_every_attempt() {
    for polls in 0..MAX_POLLS {
        let registry = Arc::new(Registry::new());
        let mut events = registry.events().subscribe();
        let bulkhead = registry.bulkhead("dep", 1, Overflow::Reject).unwrap();
        let quota = Quota::per_hour(10).unwrap().with_burst(10).unwrap();
        let limiter = Arc::new(registry.limiter_policy("dep", quota).unwrap());
        let config = Config::builder()
            .consecutive_failures(3)
            .open_for(fusebox::Duration::from_secs(60))
            .build()
            .unwrap();
        let breaker = registry.breaker_policy("dep", config).unwrap();
        let budget = Arc::new(RetryBudget::new(Duration::from_secs(10), 0, 3).unwrap());
        let policy = Policy::builder()
            .bulkhead(bulkhead.clone())
            .retry(
                Retry::builder()
                    .max_attempts(5)
                    .backoff(constant_backoff(10))
                    .budget(Arc::clone(&budget))
                    .build(),
            )
            .limiter(Arc::clone(&limiter))
            .breaker(breaker.clone())
            .timeout(20 * MS)
            .build();
        let (made, completed) = (AtomicU32::new(0), AtomicU32::new(0));
        let ending = Ending {
            made: &made,
            completed: &completed,
        };
        let out = poll_then_drop(policy.call(|| ending.make()), polls).await;
        let (made, completed) = (
            u64::from(made.load(SeqCst)),
            u64::from(completed.load(SeqCst)),
        );
        let at = format!("{polls} polls, {made} made, {completed} completed: {out:?}");
        let m = bulkhead.metrics();
        assert_eq!((m.in_use, m.queued, m.rejected), (0, 0, 0), "{at}");
        let b = breaker.metrics();
        assert_eq!(b.calls(), made, "{at}: {b:?}");
        assert_eq!(b.successes, 0, "{at}: {b:?}");
        // At most the attempt in flight abandoned, and only if dropped.
        let most_abandoned = u64::from(out.is_none());
        assert!(b.abandoned <= most_abandoned, "{at}: {b:?}");
        let timed_out = b.failures - completed;
        let seen = drain(&mut events, "dep");
        assert_eq!(
            (seen.failures, seen.timed_out),
            (b.failures, timed_out),
            "{at}"
        );
        assert_eq!(seen.rejected, b.rejected, "{at}: {seen:?}");
        let passed_the_limiter = made + b.rejected;
        let available = limiter.bucket().unwrap().available(limiter.clock().now());
        assert_eq!(u64::from(10 - available), passed_the_limiter, "{at}");
        // A retry the breaker refused never ran: given back.
        let retries = made.saturating_sub(1);
        assert_eq!(
            budget.remaining_at(fusebox::Instant::ZERO),
            3 - retries,
            "{at}"
        );
        if let Some(out) = out {
            // Three failures open the breaker: the fourth attempt is refused.
            assert!(matches!(out, Err(CallError::Open { .. })), "{at}");
            assert_eq!((made, b.rejected), (3, 1), "{at}");
            break;
        }
    }
}

/// A policy's retry, granted by the budget, dropped while it waits for
/// its rate-limit token (its backoff over, its attempt not admitted) never
/// ran: the budget gives it back, as it does a retry dropped in its
/// backoff, so another caller's retry is still granted. Found by this
/// review: it stayed charged, so callers cut by short timeouts while the
/// limiter was saturated drained a shared budget with retries never sent.
#[tokio::test(start_paused = true)]
async fn a_policy_retry_dropped_while_waiting_for_its_token_is_given_back() {
    use fusebox_std::policy::Limiter;
    let bucket = fusebox::TokenBucket::new(Quota::per_second(1).unwrap());
    let limiter = Arc::new(Limiter::new(Arc::new(bucket)));
    let budget = Arc::new(RetryBudget::new(Duration::from_secs(10), 0, 1).unwrap());
    let policy = Policy::builder()
        .retry(
            Retry::builder()
                .max_attempts(2)
                .backoff(constant_backoff(10))
                .budget(Arc::clone(&budget))
                .build(),
        )
        .limiter(limiter)
        .build();
    let made = AtomicU32::new(0);
    let failing = || {
        made.fetch_add(1, SeqCst);
        async { Err::<(), _>("down") }
    };
    // The first attempt takes the token and fails; the retry is granted,
    // sleeps 10 ms, then waits for the next token (at 1 s): dropped at 500 ms.
    let out = poll_then_drop(policy.call(failing), 500).await;
    assert!(out.is_none());
    assert_eq!(made.load(SeqCst), 1);
    let latest = fusebox::Instant::ZERO;
    assert_eq!(
        budget.remaining_at(latest),
        1,
        "a retry never sent is given back"
    );
    // Another caller: its retry is granted (and sent).
    let out = policy.call(failing).await;
    assert!(matches!(out, Err(CallError::Inner("down"))), "{out:?}");
    assert_eq!(made.load(SeqCst), 3);
    assert_eq!(budget.remaining_at(latest), 0);
}

/// A fallback around a breaker's call (an open breaker or a failure
/// answered with a default), dropped after every number of polls: the
/// fallback is asked only for a call that ended in an error, once, and
/// the breaker's permit is settled as the call's drop or end says.
#[tokio::test(start_paused = true)]
async fn a_fallback_dropped_after_any_poll_asks_for_a_value_only_for_an_error() {
    use fusebox_std::policy::{Breaker, Fallback};
    for polls in 0..MAX_POLLS {
        let breaker = Breaker::new("fb", common::core_breaker(1, Duration::from_secs(1)));
        let asked = AtomicU32::new(0);
        let fallback = Fallback::new(|_: &CallError<&str>| {
            asked.fetch_add(1, SeqCst);
            Some(0)
        });
        let out = poll_then_drop(fallback.call(breaker.call(Op::Fails.run())), polls).await;
        let at = format!("{polls} polls: {out:?}");
        let m = breaker.metrics();
        assert_eq!(asked.load(SeqCst), u32::from(out.is_some()), "{at}");
        assert_eq!(
            (m.failures, m.abandoned),
            (
                u64::from(out.is_some()),
                u64::from(out.is_none() && polls > 0)
            ),
            "{at}"
        );
        if let Some(out) = out {
            assert!(matches!(out, Ok(0)), "{at}");
            break;
        }
    }
}
