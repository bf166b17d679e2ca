//! A call leaving the queue (cancelled, timed out, refused) frees its
//! place *within* the step that ends it: code that runs from inside that
//! step (the waker of the caller a slot is handed to, a `tracing`
//! subscriber seeing the refusal) already finds the place free. These
//! tests run that code at those exact points on one thread, so the
//! interleavings a multi-thread runtime reaches only by chance are forced.

use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll, Wake, Waker};

use super::*;

fn poll_with<F: Future + ?Sized>(f: Pin<&mut F>, waker: &Waker) -> Poll<F::Output> {
    f.poll(&mut Context::from_waker(waker))
}

/// What a caller arriving at a given point gets on its first poll (its
/// future is dropped at once, so it takes nothing away).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Arrival {
    Slot,
    Queued,
    Refused(BulkheadRejection),
}

fn arrive(bulkhead: &Bulkhead) -> Arrival {
    let mut call = Box::pin(bulkhead.acquire());
    match poll_with(call.as_mut(), Waker::noop()) {
        Poll::Ready(Ok(_)) => Arrival::Slot,
        Poll::Ready(Err(why)) => Arrival::Refused(why),
        Poll::Pending => Arrival::Queued,
    }
}

/// A waker that, when woken, records what a caller arriving right then
/// gets and what the metrics say.
struct Probe {
    bulkhead: Bulkhead,
    seen: Mutex<Vec<(Arrival, BulkheadMetrics)>>,
}

impl Wake for Probe {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        // Metrics first: the arriving caller's own visit is undone by the
        // time it returns, but read it after to keep the two apart.
        let metrics = self.bulkhead.metrics();
        let arrival = arrive(&self.bulkhead);
        self.seen.lock().unwrap().push((arrival, metrics));
    }
}

fn one_slot_one_place() -> Bulkhead {
    Bulkhead::new(
        1,
        Overflow::Queue {
            max_queued: 1,
            max_wait: Duration::from_secs(3_600),
        },
    )
    .unwrap()
}

/// Found by this review: a queued call that was handed the slot and then
/// cancelled (dropped before its task ran again: an outer timeout, a
/// client gone) handed the slot on to the next queued call *before*
/// giving back its own count, so the next call, woken from inside that
/// drop (on a multi-thread runtime its task can run at once on another
/// worker), saw the metrics say one queued with nobody queued, and a
/// caller arriving then was refused `QueueFull` with the queue empty.
#[tokio::test(start_paused = true)]
async fn a_waiter_cancelled_after_being_handed_the_slot_frees_its_place_before_handing_it_on() {
    let bulkhead = one_slot_one_place();
    let held = bulkhead.try_acquire().unwrap();
    let mut first = Box::pin(bulkhead.acquire());
    assert!(poll_with(first.as_mut(), Waker::noop()).is_pending());
    drop(held); // the slot is `first`'s now; its task has not run yet
    let probe = Arc::new(Probe {
        bulkhead: bulkhead.clone(),
        seen: Mutex::new(Vec::new()),
    });
    let waker = Waker::from(Arc::clone(&probe));
    let mut second = Box::pin(bulkhead.acquire());
    assert!(poll_with(second.as_mut(), &waker).is_pending());
    assert_eq!(
        bulkhead.metrics(),
        BulkheadMetrics {
            in_use: 1,
            queued: 1,
            rejected: 0
        }
    );
    drop(first); // cancelled: the slot goes on to `second`, waking it
    let seen = probe.seen.lock().unwrap().clone();
    let now = BulkheadMetrics {
        in_use: 1,
        queued: 0,
        rejected: 0,
    };
    assert_eq!(seen, vec![(Arrival::Queued, now)], "from inside the drop");
    let Poll::Ready(Ok(slot)) = poll_with(second.as_mut(), &waker) else {
        panic!("the slot was handed to `second`");
    };
    assert_eq!(bulkhead.metrics(), now);
    drop(slot);
    assert_eq!(bulkhead.metrics(), BulkheadMetrics::default());
}

/// Calls `hook` on every `tracing` event of this thread: code that runs
/// in the middle of the bulkhead's refusal, between its decision and its
/// return.
struct OnEvent<H>(H);

impl<H: Fn() + Send + Sync + 'static> tracing::Subscriber for OnEvent<H> {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {
        (self.0)();
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// What callers arriving during each refusal of `refuse` (run with the
/// hook installed) got, with the metrics then.
fn during_refusals(
    bulkhead: &Bulkhead,
    refuse: impl FnOnce() -> BulkheadRejection,
) -> (BulkheadRejection, Vec<(Arrival, BulkheadMetrics)>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let hook = {
        let (bulkhead, seen) = (bulkhead.clone(), Arc::clone(&seen));
        let busy = std::sync::atomic::AtomicBool::new(false);
        move || {
            // The arriving caller's own refusal calls the hook again.
            if busy.swap(true, Ordering::SeqCst) {
                return;
            }
            let metrics = bulkhead.metrics();
            let arrival = arrive(&bulkhead);
            seen.lock().unwrap().push((arrival, metrics));
            busy.store(false, Ordering::SeqCst);
        }
    };
    let why = tracing::subscriber::with_default(OnEvent(hook), refuse);
    let seen = seen.lock().unwrap().clone();
    (why, seen)
}

/// Found by this review: a queued call that timed out was refused (its
/// rejection counted, logged and reported) while its place was still
/// counted, so a caller arriving then (say, one reacting to the reported
/// rejection) was refused `QueueFull` with nobody queued.
#[tokio::test(start_paused = true)]
async fn a_timed_out_waiter_frees_its_place_before_its_refusal_is_reported() {
    let bulkhead = Bulkhead::new(
        1,
        Overflow::Queue {
            max_queued: 1,
            max_wait: Duration::from_millis(10),
        },
    )
    .unwrap();
    let _held = bulkhead.try_acquire().unwrap();
    let mut waiting = Box::pin(bulkhead.acquire());
    assert!(poll_with(waiting.as_mut(), Waker::noop()).is_pending());
    tokio::time::advance(Duration::from_millis(10)).await;
    let (why, seen) = during_refusals(&bulkhead, || {
        match poll_with(waiting.as_mut(), Waker::noop()) {
            Poll::Ready(Err(why)) => why,
            other => panic!("expected a refusal, got {other:?}"),
        }
    });
    assert_eq!(why, BulkheadRejection::QueueTimeout);
    let then = BulkheadMetrics {
        in_use: 1,
        queued: 0,
        rejected: 1,
    };
    assert_eq!(seen, vec![(Arrival::Queued, then)]);
}

/// Found by this review: `try_acquire` on a queueing bulkhead counts
/// itself as holding or waiting before it tries for a slot, and when it
/// found every slot taken it was refused (counted, logged, reported) while
/// still counted, so a caller arriving then was refused `QueueFull` by a
/// call that never queues, with the queue empty.
#[tokio::test(start_paused = true)]
async fn a_refused_try_acquire_gives_back_its_count_before_its_refusal_is_reported() {
    let bulkhead = one_slot_one_place();
    let _held = bulkhead.try_acquire().unwrap();
    let (why, seen) = during_refusals(&bulkhead, || bulkhead.try_acquire().unwrap_err());
    assert_eq!(why, BulkheadRejection::Full);
    let then = BulkheadMetrics {
        in_use: 1,
        queued: 0,
        rejected: 1,
    };
    assert_eq!(seen, vec![(Arrival::Queued, then)]);
}
