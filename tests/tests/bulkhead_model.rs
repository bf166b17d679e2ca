//! `Bulkhead` callers arriving at random instants, holding their slot for
//! random times, some cancelled by an outer timeout, against a model of
//! the docs: `max_concurrent` slots; when none is free, `Reject` refuses
//! at once (`Full`), `Queue` queues first come, first served while fewer
//! than `max_queued` wait (else `QueueFull`), for at most `max_wait`
//! (`QueueTimeout`); a slot freed goes to the first in the queue at once;
//! a call cancelled while queued leaves the queue, one cancelled inside
//! returns its slot; `rejected` counts every refusal. Every outcome and
//! its instant must be the model's (whole milliseconds on paused time;
//! draws where two events would share an instant are skipped, since the
//! order of simultaneous wake-ups is the runtime's).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fusebox_std::policy::{Bulkhead, BulkheadRejection, Overflow};
use tokio::time::Instant;

/// One caller: arrival, hold, and cancellation (all ms from the start;
/// the cancellation is an instant, `None` for never).
#[derive(Clone, Copy, Debug)]
struct Caller {
    arrive: u64,
    hold: u64,
    cancel: Option<u64>,
}

/// What happened to a caller, and when (ms).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// Admitted at, then left (done or cancelled inside) at.
    Ran(u64, u64),
    Refused(BulkheadRejection, u64),
    /// Cancelled while queued, at.
    CancelledQueued(u64),
}

/// The docs' bulkhead: outcomes, the rejection count, and whether two
/// events shared an instant (the draw is then skipped).
fn model(slots: usize, overflow: Overflow, callers: &[Caller]) -> (Vec<Option<Outcome>>, bool) {
    let (max_queued, max_wait) = match overflow {
        Overflow::Queue {
            max_queued,
            max_wait,
        } => (max_queued, max_wait.as_millis() as u64),
        Overflow::Reject => (0, 0),
    };
    let mut out: Vec<Option<Outcome>> = vec![None; callers.len()];
    let mut inside: Vec<(usize, u64, u64)> = Vec::new(); // (caller, admitted, leaves)
    let mut queue: VecDeque<usize> = VecDeque::new();
    let mut instants: Vec<u64> = Vec::new();
    let leave = |i: usize, at: u64| {
        let c = callers[i];
        let done = at + c.hold;
        c.cancel.map_or(done, |k| k.min(done))
    };
    for t in 0..2_000u64 {
        // Departures first, then timeouts and cancellations of queued
        // callers, then arrivals: none of them shares an instant in a
        // draw that is kept, so the order is only for bookkeeping.
        while let Some(pos) = inside.iter().position(|&(_, _, l)| l == t) {
            let (i, admitted, left) = inside.remove(pos);
            out[i] = Some(Outcome::Ran(admitted, left));
            instants.push(t);
            if let Some(j) = queue.pop_front() {
                inside.push((j, t, leave(j, t)));
            }
        }
        let mut kept = VecDeque::new();
        for j in queue.drain(..) {
            let c = callers[j];
            if c.cancel == Some(t) {
                out[j] = Some(Outcome::CancelledQueued(t));
                instants.push(t);
            } else if c.arrive + max_wait == t {
                out[j] = Some(Outcome::Refused(BulkheadRejection::QueueTimeout, t));
                instants.push(t);
            } else {
                kept.push_back(j);
            }
        }
        queue = kept;
        for (i, c) in callers.iter().enumerate().filter(|(_, c)| c.arrive == t) {
            instants.push(t);
            if c.cancel == Some(t) {
                continue; // never polled; the draw avoids it anyway
            }
            if inside.len() < slots {
                inside.push((i, t, leave(i, t)));
            } else if queue.len() < max_queued {
                queue.push_back(i);
            } else {
                let why = if max_queued == 0 {
                    BulkheadRejection::Full
                } else {
                    BulkheadRejection::QueueFull
                };
                out[i] = Some(Outcome::Refused(why, t));
            }
        }
    }
    let mut sorted = instants.clone();
    sorted.sort_unstable();
    let shared = sorted.windows(2).any(|w| w[0] == w[1]);
    (out, shared)
}

async fn run(slots: usize, overflow: Overflow, callers: &[Caller]) -> (Vec<Option<Outcome>>, u64) {
    let bulkhead = Bulkhead::new(slots, overflow).unwrap();
    let start = Instant::now();
    let ms = move |at: Instant| (at - start).as_millis() as u64;
    let out = Arc::new(Mutex::new(vec![None; callers.len()]));
    let mut tasks = Vec::new();
    for (i, &c) in callers.iter().enumerate() {
        let (bulkhead, out) = (bulkhead.clone(), Arc::clone(&out));
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(start + Duration::from_millis(c.arrive)).await;
            let admitted = Arc::new(Mutex::new(None));
            let seen = Arc::clone(&admitted);
            let call = async {
                match bulkhead.acquire().await {
                    Ok(slot) => {
                        *seen.lock().unwrap() = Some(ms(Instant::now()));
                        tokio::time::sleep(Duration::from_millis(c.hold)).await;
                        drop(slot);
                        None
                    }
                    Err(why) => Some(why),
                }
            };
            let result = match c.cancel {
                Some(k) => tokio::time::timeout_at(start + Duration::from_millis(k), call)
                    .await
                    .ok(),
                None => Some(call.await),
            };
            let now = ms(Instant::now());
            let admitted = *admitted.lock().unwrap();
            let outcome = match (result, admitted) {
                (Some(Some(why)), _) => Outcome::Refused(why, now),
                (_, Some(at)) => Outcome::Ran(at, now),
                (None, None) => Outcome::CancelledQueued(now),
                (Some(None), None) => unreachable!("ran without a slot"),
            };
            out.lock().unwrap()[i] = Some(outcome);
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let m = bulkhead.metrics();
    assert_eq!((m.in_use, m.queued), (0, 0), "slots and places all back");
    let out = out.lock().unwrap().clone();
    (out, m.rejected)
}

#[tokio::test(start_paused = true)]
async fn bulkhead_outcomes_match_the_documented_model() {
    let mut rng = fastrand::Rng::with_seed(23);
    let mut checked = 0;
    while checked < 300 {
        let slots = rng.usize(1..4);
        let overflow = if rng.u8(0..4) == 0 {
            Overflow::Reject
        } else {
            Overflow::Queue {
                max_queued: rng.usize(1..4),
                max_wait: Duration::from_millis(rng.u64(1..40)),
            }
        };
        let callers: Vec<Caller> = (0..rng.usize(2..16))
            .map(|_| {
                let arrive = rng.u64(0..200);
                Caller {
                    arrive,
                    hold: rng.u64(1..60),
                    cancel: (rng.u8(0..3) == 0).then(|| arrive + rng.u64(1..80)),
                }
            })
            .collect();
        let (want, shared) = model(slots, overflow, &callers);
        if shared {
            continue;
        }
        let (got, rejected) = run(slots, overflow, &callers).await;
        assert_eq!(
            got, want,
            "{slots} slots, {overflow:?}, callers {callers:?}"
        );
        let refused = want
            .iter()
            .filter(|o| matches!(o, Some(Outcome::Refused(..))))
            .count() as u64;
        assert_eq!(
            rejected, refused,
            "{slots} slots, {overflow:?}, {callers:?}"
        );
        checked += 1;
    }
}
