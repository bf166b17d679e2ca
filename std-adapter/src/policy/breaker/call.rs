//! [`BreakerCall`]: the future of [`Breaker::call`](super::Breaker::call).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use fusebox::breaker::Permit;
use fusebox::{Clock, Instant};
use pin_project_lite::pin_project;
use tokio::time::Sleep;

use super::{Breaker, Shared};
use crate::policy::{CallError, Classify};

pin_project! {
    /// The future of [`Breaker::call`].
    ///
    /// On its first poll it asks the core breaker for a permit (an open
    /// breaker resolves it at once to [`CallError::Open`], without polling
    /// the inner future), starts the timeout if there is one, and then polls
    /// the inner future. It records the permit exactly once:
    ///
    /// * the inner future completes: the classifier's outcome, with the
    ///   measured duration;
    /// * the timeout fires first: a failure, with the timeout as duration;
    ///   the inner future is not polled again ([`CallError::Timeout`]).
    ///
    /// Without a timeout, a half-open trial whose future never completes
    /// holds its trial slot (once every slot is so held, every other call
    /// is refused) until the core's `max_half_open` passes (if configured: the next call then reopens
    /// the breaker, reporting the `HalfOpen → Open` transition, and the
    /// trial's late record decides nothing) or forever (if not).
    ///
    /// # Cancellation
    ///
    /// Dropping this future before it completes drops the inner future and
    /// *abandons* the permit: it counts as neither success nor failure
    /// (the core's `Metrics::abandoned`), and a half-open trial slot is
    /// freed without deciding, so a cancelled probe can never keep the
    /// breaker half-open nor close or open it. Dropped before its first
    /// poll, it never asked for a permit at all.
    ///
    /// # Panics
    ///
    /// Polling it again after it returned `Ready` panics.
    ///
    /// ```
    /// use std::time::Duration;
    /// use fusebox::breaker::{CircuitBreaker, Config};
    /// use fusebox_std::policy::{Breaker, BreakerCall};
    /// use fusebox_std::CallError;
    /// # use std::sync::Arc;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(5).half_open_permits(1).build()?));
    /// let breaker = Breaker::builder("api", Arc::clone(&core)).timeout(Duration::from_secs(1)).build();
    /// // Cancelled by an outer timeout: the permit is abandoned, not recorded.
    /// let call = breaker.call(std::future::pending::<Result<(), ()>>());
    /// assert!(tokio::time::timeout(Duration::from_millis(10), call).await.is_err());
    /// assert_eq!((core.metrics().abandoned, core.metrics().failures), (1, 0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    #[must_use = "futures do nothing unless you .await or poll them"]
    pub struct BreakerCall<'a, F, C> {
        #[pin]
        future: F,
        #[pin]
        stage: Stage<'a>,
        shared: &'a Shared<C>,
        timeout: Option<Duration>,
    }
}

pin_project! {
    /// Where a call is. Only a call still pending after its first poll
    /// holds anything (its permit and timer), so a call ready at once
    /// leaves `Done` behind and its drop checks one tag.
    #[project = StageProj]
    #[project_replace = StageOwned]
    enum Stage<'a> {
        Start,
        Running {
            permit: Permit<'a>,
            // When the call started, if its duration is measured (a
            // slow-call rule or a timeout); `None` skips both clock reads.
            started: Option<Instant>,
            // The timeout, if one is set.
            #[pin]
            sleep: Option<Sleep>,
        },
        Done,
    }
}

impl<C> Breaker<C> {
    /// [`call`](Self::call) with this timeout instead of the configured one.
    pub(crate) fn call_with_timeout<F>(
        &self,
        future: F,
        timeout: Option<Duration>,
    ) -> BreakerCall<'_, F, C> {
        BreakerCall {
            future,
            stage: Stage::Start,
            shared: &self.shared,
            timeout,
        }
    }
}

impl<F, C> BreakerCall<'_, F, C> {
    /// The inner future.
    ///
    /// ```
    /// use fusebox_std::policy::Breaker;
    /// # use std::sync::Arc;
    /// # use fusebox::breaker::{CircuitBreaker, Config};
    /// # let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(3).build().unwrap()));
    /// let breaker = Breaker::new("api", core);
    /// let call = breaker.call(std::future::ready(Ok::<u8, ()>(1)));
    /// assert!(call.get_ref().clone().into_inner().is_ok());
    /// ```
    pub fn get_ref(&self) -> &F {
        &self.future
    }

    /// The inner future, mutably.
    ///
    /// ```
    /// use fusebox_std::policy::Breaker;
    /// # use std::sync::Arc;
    /// # use fusebox::breaker::{CircuitBreaker, Config};
    /// # let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(3).build().unwrap()));
    /// let breaker = Breaker::new("api", core);
    /// let mut call = breaker.call(std::future::ready(Ok::<u8, ()>(1)));
    /// *call.get_mut() = std::future::ready(Ok(2));
    /// assert_eq!(call.into_inner().into_inner(), Ok(2));
    /// ```
    pub fn get_mut(&mut self) -> &mut F {
        &mut self.future
    }

    /// The inner future. Only an unpolled call can be moved (a polled one
    /// is pinned), so no permit has been asked for yet.
    ///
    /// ```
    /// use fusebox_std::policy::Breaker;
    /// # use std::sync::Arc;
    /// # use fusebox::breaker::{CircuitBreaker, Config};
    /// # let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(3).build().unwrap()));
    /// let breaker = Breaker::new("api", core);
    /// let inner = breaker.call(std::future::ready(Ok::<u8, ()>(7))).into_inner();
    /// assert_eq!(inner.into_inner(), Ok(7));
    /// assert_eq!(breaker.metrics().calls(), 0, "never asked for a permit");
    /// ```
    pub fn into_inner(self) -> F {
        self.future
    }
}

impl<'a, F, C, T, E> Future for BreakerCall<'a, F, C>
where
    F: Future<Output = Result<T, E>>,
    C: Classify<T, E>,
{
    type Output = Result<T, CallError<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let shared: &'a Shared<C> = this.shared;
        if !matches!(*this.stage, Stage::Start) {
            return later_poll(this.future, this.stage, shared, *this.timeout, cx);
        }
        // The first poll. The stage stays `Done` unless the call is still
        // pending: a future ready now never stores its permit (the common
        // path is straight-line, the permit never leaves this frame).
        this.stage.set(Stage::Done);
        // The clock is read only when something needs it: the duration (a
        // slow-call rule, or the timeout's deadline), or the core (an open
        // or half-open breaker). A closed breaker without a slow-call rule
        // decides with no clock read.
        let clock = &shared.clock;
        let measured = this.timeout.is_some() || shared.breaker.measures_duration();
        let mut now = measured.then(|| clock.now());
        let acquired = shared
            .breaker
            .try_acquire_with(|| *now.get_or_insert_with(|| clock.now()));
        let permit = match acquired {
            Ok(permit) => permit,
            Err(rejected) => return Poll::Ready(Err(shared.rejected(&rejected, now))),
        };
        if let Some(t) = permit.transition() {
            shared.transition(t);
        }
        let started = if measured { now } else { None };
        match this.future.poll(cx) {
            Poll::Ready(result) => Poll::Ready(shared.finish(permit, started, result)),
            Poll::Pending => first_pending(this.stage, shared, permit, started, *this.timeout, cx),
        }
    }
}

/// The first poll found the call pending: stores the permit and arms the
/// timeout (it runs from the start, so a call ready at its first poll never
/// builds a timer). Out of line, so the ready path stays short.
#[inline(never)]
fn first_pending<'a, C, T, E>(
    mut stage: Pin<&mut Stage<'a>>,
    shared: &'a Shared<C>,
    permit: Permit<'a>,
    started: Option<Instant>,
    timeout: Option<Duration>,
    cx: &mut Context<'_>,
) -> Poll<Result<T, CallError<E>>>
where
    C: Classify<T, E>,
{
    // A deadline past tokio's range never fires: no timer.
    let sleep = match (timeout, started) {
        (Some(timeout), Some(start)) => shared
            .clock
            .to_tokio(start)
            .checked_add(timeout)
            .map(tokio::time::sleep_until),
        _ => None,
    };
    stage.set(Stage::Running {
        permit,
        started,
        sleep,
    });
    poll_timer(stage, shared, timeout, cx)
}

/// A poll after the first: the permit was stored by a first poll that
/// found the call pending.
#[inline(never)]
fn later_poll<'a, F, C, T, E>(
    future: Pin<&mut F>,
    stage: Pin<&mut Stage<'a>>,
    shared: &'a Shared<C>,
    timeout: Option<Duration>,
    cx: &mut Context<'_>,
) -> Poll<Result<T, CallError<E>>>
where
    F: Future<Output = Result<T, E>>,
    C: Classify<T, E>,
{
    assert!(
        matches!(*stage, Stage::Running { .. }),
        "BreakerCall polled after completion"
    );
    match future.poll(cx) {
        Poll::Ready(result) => match stage.project_replace(Stage::Done) {
            StageOwned::Running {
                permit, started, ..
            } => Poll::Ready(shared.finish(permit, started, result)),
            _ => unreachable!("checked above"),
        },
        Poll::Pending => poll_timer(stage, shared, timeout, cx),
    }
}

/// Polls a running call's timer: when it fires, the call is recorded as a
/// timed-out failure lasting `timeout` (the inner future is not polled
/// again).
fn poll_timer<'a, C, T, E>(
    mut stage: Pin<&mut Stage<'a>>,
    shared: &'a Shared<C>,
    timeout: Option<Duration>,
    cx: &mut Context<'_>,
) -> Poll<Result<T, CallError<E>>>
where
    C: Classify<T, E>,
{
    let fired = match stage.as_mut().project() {
        StageProj::Running { sleep, .. } => {
            matches!(
                sleep.as_pin_mut().map(|sleep| sleep.poll(cx)),
                Some(Poll::Ready(()))
            )
        }
        _ => false,
    };
    if !fired {
        return Poll::Pending;
    }
    match stage.project_replace(Stage::Done) {
        StageOwned::Running {
            permit, started, ..
        } => Poll::Ready(shared.timed_out(permit, started, timeout)),
        _ => unreachable!("a timer fires only while running"),
    }
}
