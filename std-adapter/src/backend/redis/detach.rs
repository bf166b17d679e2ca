//! A round trip to Redis that outlives a caller who gives up on it.
//!
//! A request's round trip counts its own outcome (a timeout is a fault,
//! which degrades the limiter; an answer may end an outage). Polled only
//! by the request's future, a round trip whose caller left first counted
//! nothing: with every caller more impatient than the command timeout, a
//! stalled Redis never degraded anything. [`Detach`] polls the round trip
//! in place, in the caller's own task, and hands what is left of it to a
//! task of its own only when the caller is dropped before it ends.
//!
//! Why not always a task: on a multi-threaded runtime with idle workers,
//! a spawned task wakes another worker, which takes it; a lone caller
//! then paid a thread's wake-up per decision (its client CPU per decision
//! grew from about 29 µs to 55 µs in `benches/redis.sh`, and its
//! decisions/s fell by a quarter). Detached on drop, the round trip costs
//! one allocation per decision, and a task only when a caller leaves.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::runtime::Handle;

/// `round_trip`, polled by whoever awaits this, and spawned on `runtime`
/// with whatever is left of it if this is dropped before it ends.
pub(super) struct Detach<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    /// `None` once it has ended, or panicked (nothing left to hand over).
    round_trip: Option<Pin<Box<F>>>,
    runtime: Handle,
}

impl<F> Detach<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    /// `round_trip`, to be handed to `runtime` if dropped unfinished.
    pub(super) fn new(round_trip: F, runtime: Handle) -> Self {
        Self {
            round_trip: Some(Box::pin(round_trip)),
            runtime,
        }
    }
}

impl<F> Future for Detach<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // `Detach` is `Unpin` (its future is boxed), so `self` may be
        // reached mutably.
        // Taken out while it is polled: a round trip that panics ends
        // there, dropped by the unwinding, never handed to a task to be
        // polled again (found by a hostile review: it was, and a
        // poisoned `async fn` panicked a second time in a task of its
        // own).
        let Some(mut round_trip) = self.round_trip.take() else {
            // Polled after it ended: a caller's bug, answered as tokio's
            // own futures do.
            panic!("a round trip to Redis was polled after it ended");
        };
        let outcome = round_trip.as_mut().poll(cx);
        if outcome.is_pending() {
            self.round_trip = Some(round_trip);
        }
        outcome
    }
}

impl<F> Drop for Detach<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn drop(&mut self) {
        if let Some(round_trip) = self.round_trip.take() {
            // The caller left: the round trip goes on to Redis's answer or
            // the command timeout, and counts its outcome there; what it
            // decides is for no one. A runtime shutting down drops the
            // task at once.
            drop(self.runtime.spawn(round_trip));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Detach;
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Context, Poll};
    use std::time::Duration;

    /// A round trip that ends after `wait`, noting that it did.
    async fn ends_after(wait: Duration, ended: Arc<AtomicBool>) -> u32 {
        tokio::time::sleep(wait).await;
        ended.store(true, Ordering::SeqCst);
        7
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn an_awaited_round_trip_answers_its_caller() {
        let ended = Arc::new(AtomicBool::new(false));
        let runtime = tokio::runtime::Handle::current();
        let round_trip = ends_after(Duration::from_millis(300), Arc::clone(&ended));
        assert_eq!(Detach::new(round_trip, runtime).await, 7);
        assert!(ended.load(Ordering::SeqCst));
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_round_trip_whose_caller_gave_up_still_ends() {
        let ended = Arc::new(AtomicBool::new(false));
        let runtime = tokio::runtime::Handle::current();
        let round_trip = ends_after(Duration::from_millis(300), Arc::clone(&ended));
        let impatient =
            tokio::time::timeout(Duration::from_millis(100), Detach::new(round_trip, runtime));
        assert!(impatient.await.is_err(), "the caller gave up first");
        assert!(!ended.load(Ordering::SeqCst));
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(ended.load(Ordering::SeqCst), "the round trip went on");
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_round_trip_dropped_before_its_first_poll_still_runs() {
        let ended = Arc::new(AtomicBool::new(false));
        let runtime = tokio::runtime::Handle::current();
        let round_trip = ends_after(Duration::from_millis(300), Arc::clone(&ended));
        drop(Detach::new(round_trip, runtime));
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert!(ended.load(Ordering::SeqCst));
    }

    /// A round trip that panics on its first poll, and would answer if
    /// polled again (as a poisoned `async fn` would panic again).
    struct PanicsOnce(Arc<AtomicUsize>);

    impl Future for PanicsOnce {
        type Output = u32;

        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<u32> {
            assert!(
                self.0.fetch_add(1, Ordering::SeqCst) != 0,
                "the round trip panicked"
            );
            Poll::Ready(7)
        }
    }

    /// A round trip that panicked ended there: its caller's task gets the
    /// panic, and the round trip is not handed to a task of its own to be
    /// polled again (a poisoned `async fn` would panic a second time, in
    /// a task nobody awaits).
    #[tokio::test(flavor = "current_thread")]
    async fn a_round_trip_that_panicked_is_not_polled_again() {
        let polls = Arc::new(AtomicUsize::new(0));
        let runtime = tokio::runtime::Handle::current();
        let round_trip = PanicsOnce(Arc::clone(&polls));
        let caller = tokio::spawn(Detach::new(round_trip, runtime));
        assert!(caller.await.unwrap_err().is_panic());
        // A task handed over now would run before this one goes on.
        for _ in 0..8 {
            tokio::task::yield_now().await;
        }
        assert_eq!(polls.load(Ordering::SeqCst), 1);
    }

    /// Sound, kept as a test (hostile review): dropped outside any
    /// runtime after its runtime has shut down, polled or not, nothing
    /// panics and the round trip is dropped there (the runtime takes no
    /// task), not run.
    #[test]
    fn dropped_outside_after_its_runtime_is_gone() {
        for polled in [false, true] {
            let ended = Arc::new(AtomicBool::new(false));
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let round_trip = ends_after(Duration::from_millis(300), Arc::clone(&ended));
            let mut caller = Box::pin(Detach::new(round_trip, runtime.handle().clone()));
            if polled {
                let impatient = async {
                    let wait = Duration::from_millis(5);
                    tokio::time::timeout(wait, caller.as_mut()).await
                };
                assert!(runtime.block_on(impatient).is_err());
            }
            drop(runtime);
            drop(caller);
            assert!(!ended.load(Ordering::SeqCst));
            assert_eq!(Arc::strong_count(&ended), 1, "polled: {polled}");
        }
    }

    /// Sound, kept as a test (hostile review): a runtime shutting down
    /// (current-thread or multi-threaded) drops a task that awaits a round
    /// trip; the round trip handed over then is dropped with it, no panic.
    #[test]
    fn a_runtime_shutting_down_drops_the_round_trip() {
        for multi in [false, true] {
            let mut builder = if multi {
                tokio::runtime::Builder::new_multi_thread()
            } else {
                tokio::runtime::Builder::new_current_thread()
            };
            let runtime = builder.enable_all().build().unwrap();
            let ended = Arc::new(AtomicBool::new(false));
            let (started, polled) = tokio::sync::oneshot::channel();
            let ends = Arc::clone(&ended);
            let round_trip = async move {
                let _ = started.send(());
                ends_after(Duration::from_secs(5), ends).await
            };
            let handle = runtime.handle().clone();
            drop(runtime.spawn(Detach::new(round_trip, handle)));
            runtime.block_on(polled).unwrap();
            drop(runtime);
            assert!(!ended.load(Ordering::SeqCst));
            assert_eq!(Arc::strong_count(&ended), 1, "multi-threaded: {multi}");
        }
    }
}
