//! A [`KeyedLimiter`] waiter whose key finds the core's table full (under
//! `FullPolicy::Reject`): it waits for a slot to go idle, no longer than a
//! slot takes to (the longest tier's burst span) nor past its deadline.
//! Found by a review: it failed with `TableFull` at once, though the slot
//! held by a key that stopped sending frees within that span. Every check
//! is a count, a state or a paused-time instant.

use std::sync::Arc;
use std::time::Duration;

use fusebox::bucket::{FullPolicy, Quota};

use super::*;

/// A table of one slot, key 1 having just taken `taken` tokens of it.
async fn held_by_one(
    quota: Quota,
    taken: u32,
) -> (
    Arc<fusebox::KeyedLimiter<u32, 1>>,
    Arc<KeyedLimiter<u32, 1>>,
) {
    let core = Arc::new(fusebox::KeyedLimiter::new(quota, FullPolicy::Reject).unwrap());
    let limiter = Arc::new(KeyedLimiter::new(Arc::clone(&core)));
    limiter.until_n_ready(&1, taken).await.unwrap();
    (core, limiter)
}

/// Key 1 drained its burst of 2 (one token per 500 ms) and stopped: its
/// slot is idle 1 s later, and key 2's waiter takes it then, asking the
/// core a bounded number of times (each ask refused counts in
/// `table_full` and `limited`).
#[tokio::test(start_paused = true)]
async fn a_waiter_takes_the_slot_a_drained_key_leaves() {
    let (core, limiter) = held_by_one(Quota::per_second(2).unwrap(), 2).await;
    let start = tokio::time::Instant::now();
    assert_eq!(limiter.until_ready(&2).await, Ok(()));
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    let m = core.metrics();
    assert_eq!((m.allowed, m.evictions, m.keys), (2, 1, 1), "{m:?}");
    assert_eq!((m.table_full, m.limited), (2, 2), "{m:?}"); // asked at 0 and 500 ms
    assert_eq!(limiter.waiting_keys(), 0);
}

/// Key 1 took one token of two: idle 500 ms later, when the waiter (asking
/// first after one token's interval, 500 ms)
/// takes its slot.
#[tokio::test(start_paused = true)]
async fn a_key_one_token_short_frees_its_slot_within_a_token() {
    let (_core, limiter) = held_by_one(Quota::per_second(2).unwrap(), 1).await;
    let start = tokio::time::Instant::now();
    assert_eq!(limiter.until_ready(&2).await, Ok(()));
    assert_eq!(start.elapsed(), Duration::from_millis(500));
}

/// Key 1 sending for ever (until the task is aborted), so its slot
/// never goes idle.
fn keep_sending(limiter: &Arc<KeyedLimiter<u32, 1>>) -> tokio::task::JoinHandle<()> {
    let limiter = Arc::clone(limiter);
    tokio::spawn(async move {
        loop {
            limiter.until_ready(&1).await.unwrap();
        }
    })
}

/// Key 1 keeps sending, so its slot never goes idle: the waiter gives up
/// with `TableFull` once the longest burst span (1 s) has passed since the
/// table was first found full, not later, and leaves nothing behind,
/// having asked a bounded number of times (each refusal counted in
/// `table_full`): with a burst of 2 and of 1 000 (at most 18 +
/// log2(1 000)).
#[tokio::test(start_paused = true)]
async fn a_waiter_gives_up_after_a_burst_span_when_no_slot_frees() {
    for (rate, asks) in [(2, 1..=17), (1_000, 2..=28)] {
        let (core, limiter) = held_by_one(Quota::per_second(rate).unwrap(), rate).await;
        let busy = keep_sending(&limiter);
        let start = tokio::time::Instant::now();
        assert_eq!(limiter.until_ready(&2).await, Err(LimitError::TableFull));
        assert_eq!(start.elapsed(), Duration::from_secs(1), "{rate}/s");
        busy.abort();
        let m = core.metrics();
        assert_eq!((m.evictions, m.keys), (0, 1), "{m:?}");
        assert!(asks.contains(&m.table_full), "{rate}/s: {m:?}");
    }
}

/// A deadline before the slot frees: the waiter never sleeps past it,
/// asks last just before it (its sleep ending before it, tokio's tick
/// counted) and fails with `TableFull` (a deadline already past: at once,
/// without a sleep); one after it: admitted at its first ask after the
/// slot frees.
#[tokio::test(start_paused = true)]
async fn a_slot_wait_never_passes_its_deadline() {
    let (_core, limiter) = held_by_one(Quota::per_second(2).unwrap(), 2).await;
    let start = tokio::time::Instant::now();
    let deadline = start + Duration::from_millis(300);
    assert_eq!(
        limiter.until_n_ready_by(&2, 1, Some(deadline)).await,
        Err(LimitError::TableFull)
    );
    assert_eq!(
        tokio::time::Instant::now(),
        deadline - Duration::from_millis(1)
    );
    let past = Some(tokio::time::Instant::now() - Duration::from_millis(1));
    let before = tokio::time::Instant::now();
    assert_eq!(
        limiter.until_n_ready_by(&2, 1, past).await,
        Err(LimitError::TableFull)
    );
    assert_eq!(tokio::time::Instant::now(), before);
    let later = Some(start + Duration::from_secs(2));
    assert_eq!(limiter.until_n_ready_by(&2, 1, later).await, Ok(()));
    // Asked at 299 ms, 799 ms, then 1 299 ms (the slot free since 1 s).
    assert_eq!(start.elapsed(), Duration::from_millis(1_299));
    assert_eq!(limiter.waiting_keys(), 0);
}

/// A slot waiter dropped mid-wait takes nothing: no slot, no token, no
/// gate left; the next waiter is served as if it had never been.
#[tokio::test(start_paused = true)]
async fn a_dropped_slot_waiter_leaves_nothing() {
    let (core, limiter) = held_by_one(Quota::per_second(2).unwrap(), 2).await;
    let waiter = {
        let limiter = Arc::clone(&limiter);
        tokio::spawn(async move { limiter.until_ready(&2).await })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    waiter.abort();
    assert!(waiter.await.unwrap_err().is_cancelled());
    assert_eq!(limiter.waiting_keys(), 0);
    let m = core.metrics();
    assert_eq!((m.allowed, m.keys, m.evictions), (1, 1, 0), "{m:?}");
    assert_eq!(limiter.until_ready(&3).await, Ok(()));
    assert_eq!(core.metrics().evictions, 1);
}

/// A quota raised while a key waits for a slot: the waiter asks at the new
/// quota's pace (from one token, doubling up to a sixteenth of its span),
/// so it takes the slot soon after
/// the holder's bucket, converted to the new quota, is full again, not a
/// sixteenth of the old minute later (found reviewing this change: the
/// pace was taken from the longer of the two spans).
#[tokio::test(start_paused = true)]
async fn a_raised_quota_applies_to_a_slot_wait() {
    use fusebox::Clock;
    let (core, limiter) = held_by_one(Quota::per_minute(1).unwrap(), 1).await;
    let start = tokio::time::Instant::now();
    let waiter = {
        let limiter = Arc::clone(&limiter);
        tokio::spawn(async move { limiter.until_ready(&2).await })
    };
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let fast = Quota::per_second(1_000).unwrap();
    core.set_quota(0, fast, limiter.clock().now()).unwrap();
    assert_eq!(waiter.await.unwrap(), Ok(()));
    // Key 1 kept its 0.025 token: full again 0.975 s after the change
    // (2.475 s). The waiter saw the change at its 2 s re-read and asked
    // 1, 2, 4, ... ms after it, then every 62.5 ms (63 ms: tokio's 1 ms
    // tick), the first ask after 2.475 s at 2.504 s. Asking every 3.75 s (a sixteenth of the
    // old minute), it waited until 5.75 s.
    assert_eq!(start.elapsed(), Duration::from_millis(2_504));
    assert_eq!(core.metrics().evictions, 1);
}

/// Sound, kept as a test (hostile review): `n = 0` and `n = u32::MAX` on a
/// full table, with a deadline already past and the key's gate held by a
/// waiter. `0` returns at once, inserting nothing and queueing behind
/// nobody; `u32::MAX` is refused at once with the burst (no slot wait, no
/// sleep), reported once; neither leaves a gate or a key behind.
#[tokio::test(start_paused = true)]
async fn no_tokens_and_every_token_on_a_full_table() {
    use crate::events::{Component, Events, RejectionReporter};
    let events = Events::new(8);
    let core: Arc<fusebox::KeyedLimiter<u32, 1>> = Arc::new(
        fusebox::KeyedLimiter::new(Quota::per_second(2).unwrap(), FullPolicy::Reject).unwrap(),
    );
    let limiter = Arc::new(KeyedLimiter::new(Arc::clone(&core)).reporting_to(
        RejectionReporter::new(
            "k",
            Component::KeyedLimiter,
            &events,
            crate::TokioClock::new(),
        ),
    ));
    limiter.until_n_ready(&1, 2).await.unwrap();
    // Key 2's gate held by a waiter for a slot.
    let waiter = {
        let limiter = Arc::clone(&limiter);
        tokio::spawn(async move { limiter.until_ready(&2).await })
    };
    tokio::task::yield_now().await;
    assert_eq!(limiter.waiting_keys(), 1);
    let start = tokio::time::Instant::now();
    let past = Some(start - Duration::from_secs(1));
    assert_eq!(limiter.until_n_ready_by(&2, 0, past).await, Ok(()));
    assert_eq!(limiter.until_n_ready_by(&3, 0, past).await, Ok(()));
    let every = Err(LimitError::InsufficientCapacity {
        requested: u32::MAX,
        burst: 2,
    });
    assert_eq!(limiter.until_n_ready_by(&3, u32::MAX, past).await, every);
    assert_eq!(limiter.until_n_ready(&3, u32::MAX).await, every);
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(events.published(), 2);
    assert_eq!(waiter.await.unwrap(), Ok(()));
    let m = core.metrics();
    assert_eq!((m.keys, m.allowed), (1, 2), "{m:?}");
    assert_eq!(limiter.waiting_keys(), 0);
}

/// A large burst (1 000 a second, burst 1 000: a one-second span) whose
/// holder sent a single request: its slot is idle 1 ms later, and the
/// waiter, asking first after one token's interval and then at doubling
/// intervals, takes it then, not a sixteenth of the span (62.5 ms) later.
#[tokio::test(start_paused = true)]
async fn a_key_that_sent_once_frees_its_slot_within_a_token() {
    let (core, limiter) = held_by_one(Quota::per_second(1_000).unwrap(), 1).await;
    let start = tokio::time::Instant::now();
    assert_eq!(limiter.until_ready(&2).await, Ok(()));
    assert_eq!(start.elapsed(), Duration::from_millis(1));
    assert_eq!(core.metrics().evictions, 1);
}

/// A deadline that falls between two asks: the waiter asks once more at
/// the last instant whose sleep ends before it, and takes the slot freed
/// meanwhile. Found by a hostile review: it gave up with `TableFull` as
/// soon as its next scheduled ask fell after the deadline, so a waiter
/// on one token a second with 700 ms left failed at once, though the
/// slot it needed freed 500 ms later.
#[tokio::test(start_paused = true)]
async fn a_slot_wait_asks_once_more_just_before_its_deadline() {
    let (_core, limiter) = held_by_one(Quota::per_second(1).unwrap(), 1).await;
    let start = tokio::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Key 1 is idle at 1 s; the first ask (one token later) would be at 1.5 s.
    let deadline = start + Duration::from_millis(1_200);
    assert_eq!(
        limiter.until_n_ready_by(&2, 1, Some(deadline)).await,
        Ok(())
    );
    assert_eq!(start.elapsed(), Duration::from_millis(1_199));
}

/// A quota set again and again while a key waits for a slot (a
/// configuration re-applied every 500 ms, the holder sending all along):
/// the waiter still gives up, twice the longest span after it first found
/// the table full. Found by a hostile review: each change it saw pushed
/// its give-up a whole span further, so it waited for as long as the
/// changes came (20 s here, for ever under a periodic reload).
#[tokio::test(start_paused = true)]
async fn a_quota_set_again_and_again_does_not_hold_a_slot_wait_for_ever() {
    use fusebox::Clock;
    let quota = Quota::per_second(2).unwrap();
    let (core, limiter) = held_by_one(quota, 2).await;
    let busy = keep_sending(&limiter);
    let reload = {
        let (core, clock) = (Arc::clone(&core), limiter.clock());
        tokio::spawn(async move {
            for _ in 0..40 {
                tokio::time::sleep(Duration::from_millis(500)).await;
                core.set_quota(0, quota, clock.now()).unwrap();
            }
        })
    };
    let start = tokio::time::Instant::now();
    assert_eq!(limiter.until_ready(&2).await, Err(LimitError::TableFull));
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    busy.abort();
    reload.abort();
    assert_eq!(core.metrics().evictions, 0);
}

/// Sound, kept as a test (hostile review): eight new keys wait for the
/// one slot a drained key leaves at 1 s. Exactly one takes it (at 1 s);
/// the slot is then busy again (its new key just sent), so the seven
/// others give up with `TableFull` at the end of their span, none
/// admitted, none twice, nothing left queued.
#[tokio::test(start_paused = true)]
async fn many_waiters_for_one_slot_admit_one() {
    let (core, limiter) = held_by_one(Quota::per_second(2).unwrap(), 2).await;
    let start = tokio::time::Instant::now();
    let waiters: Vec<_> = (2..10u32)
        .map(|key| {
            let limiter = Arc::clone(&limiter);
            tokio::spawn(async move { (limiter.until_ready(&key).await, start.elapsed()) })
        })
        .collect();
    let mut results = Vec::new();
    for waiter in waiters {
        results.push(waiter.await.unwrap());
    }
    let admitted: Vec<_> = results.iter().filter(|(r, _)| r.is_ok()).collect();
    assert_eq!(admitted.len(), 1, "{results:?}");
    assert_eq!(admitted[0].1, Duration::from_secs(1));
    for (result, at) in &results {
        if result.is_err() {
            assert_eq!(
                (result, *at),
                (&Err(LimitError::TableFull), Duration::from_secs(1))
            );
        }
    }
    let m = core.metrics();
    assert_eq!((m.allowed, m.evictions, m.keys), (2, 1, 1), "{m:?}"); // requests: key 1 once
    assert_eq!(limiter.waiting_keys(), 0);
}

/// Sound, kept as a test (hostile review): two tiers that differ (tier 0
/// one a second, burst 1; tier 1, odd keys, 1 000 a second, burst 1 000).
/// The one slot held by key 1 (tier 1) after one request frees 1 ms
/// later, and a tier 0 key's waiter (asking at the shortest token
/// interval) takes it then; held by key 2 (tier 0) after its one token, it
/// frees 1 s later, and a tier 1 key's waiter takes it at its last ask,
/// the end of the longest span (1 s) since it found the table full.
#[tokio::test(start_paused = true)]
async fn tiers_that_differ_free_their_slots_at_their_own_pace() {
    let core: Arc<fusebox::KeyedLimiter<u32, 1, 2>> = Arc::new(
        fusebox::KeyedLimiter::with_tiers(
            [
                Quota::per_second(1).unwrap(),
                Quota::per_second(1_000).unwrap(),
            ],
            FullPolicy::Reject,
        )
        .unwrap()
        .with_tier_fn(|key| (*key % 2) as usize),
    );
    let limiter = KeyedLimiter::new(Arc::clone(&core));
    let start = tokio::time::Instant::now();
    limiter.until_ready(&1).await.unwrap();
    assert_eq!(limiter.until_ready(&2).await, Ok(()));
    assert_eq!(start.elapsed(), Duration::from_millis(1));
    assert_eq!(limiter.until_ready(&3).await, Ok(()));
    assert_eq!(start.elapsed(), Duration::from_millis(1_001));
    let m = core.metrics();
    assert_eq!((m.allowed, m.evictions, m.keys), (3, 2, 1), "{m:?}");
}
