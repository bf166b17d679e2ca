//! [`Breaker`]: async calls through the core's [`CircuitBreaker`], with a
//! classifier, an optional timeout and tracing of every transition.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use fusebox::breaker::{Metrics, Outcome, Permit, State, Transition};
use fusebox::{CircuitBreaker, Clock, Instant};
use pin_project_lite::pin_project;
use tokio::time::Sleep;

use super::{CallError, Classify, DefaultClassifier};
use crate::TokioClock;

/// An async circuit breaker: the core's [`CircuitBreaker`] (every decision
/// is the core's), a [`TokioClock`], a name for the logs, a classifier and
/// an optional timeout. Cheap to clone (one `Arc`); clones share the breaker.
///
/// Transitions are emitted as `tracing` events with the fields `breaker`
/// (the name), `from` and `to`: `warn` when it opens, `info` otherwise.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use fusebox::breaker::{CircuitBreaker, Config};
/// use fusebox_std::policy::Breaker;
/// use fusebox_std::CallError;
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(1).build()?));
/// let breaker = Breaker::builder("billing", core)
///     .timeout(std::time::Duration::from_secs(2))
///     .build();
/// let failed: Result<u32, CallError<&str>> = breaker.call(async { Err("boom") }).await;
/// assert!(matches!(failed, Err(CallError::Inner("boom"))));
/// let refused = breaker.call(async { Ok::<_, &str>(1) }).await;
/// assert!(matches!(refused, Err(CallError::Open { retry_after: Some(_) })));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub struct Breaker<C = DefaultClassifier> {
    shared: Arc<Shared<C>>,
}

struct Shared<C> {
    breaker: Arc<CircuitBreaker>,
    name: Arc<str>,
    clock: TokioClock,
    timeout: Option<Duration>,
    classifier: C,
    observer: Option<Arc<dyn BreakerObserver>>,
}

/// Told what calls through a [`Breaker`] do, with the breaker's name: a
/// [`Registry`](crate::Registry) publishes it as events
/// ([`Registry::breaker_policy`](crate::Registry::breaker_policy)); see
/// [`BreakerBuilder::observer`]. Called on the calling task: keep it short
/// and never block.
pub trait BreakerObserver: Send + Sync {
    /// A state change a call caused (instead of the policy's own `tracing`
    /// event, so an observer that logs does not log twice).
    fn transition(&self, name: &str, t: Transition);

    /// A call refused at `at`: the breaker open, or its half-open trials
    /// all taken. Default: nothing.
    fn rejected(&self, name: &str, at: Instant) {
        let _ = (name, at);
    }

    /// A call recorded as a failure at `at`; `timed_out` when the policy's
    /// timeout ended it. Default: nothing.
    fn failure(&self, name: &str, at: Instant, timed_out: bool) {
        let _ = (name, at, timed_out);
    }
}

impl<C> Clone for Breaker<C> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<C> std::fmt::Debug for Breaker<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Breaker")
            .field("name", &self.shared.name)
            .field("timeout", &self.shared.timeout)
            .field("breaker", &self.shared.breaker)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Breaker`]; see [`Breaker::builder`].
///
/// ```
/// use std::time::Duration;
/// use fusebox_std::policy::{Breaker, BreakerBuilder};
/// # use std::sync::Arc;
/// # use fusebox::breaker::{CircuitBreaker, Config};
/// # let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(3).build().unwrap()));
/// let builder: BreakerBuilder = Breaker::builder("search", core);
/// let breaker = builder.timeout(Duration::from_millis(800)).build();
/// assert_eq!(breaker.timeout(), Some(Duration::from_millis(800)));
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct BreakerBuilder<C = DefaultClassifier> {
    breaker: Arc<CircuitBreaker>,
    name: Arc<str>,
    clock: Option<TokioClock>,
    timeout: Option<Duration>,
    classifier: C,
    observer: Option<Arc<dyn BreakerObserver>>,
}

impl<C> std::fmt::Debug for BreakerBuilder<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BreakerBuilder")
            .field("name", &self.name)
            .field("timeout", &self.timeout)
            .field("observer", &self.observer.is_some())
            .finish_non_exhaustive()
    }
}

impl BreakerBuilder {
    /// Uses `classifier` instead of [`DefaultClassifier`].
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use fusebox::breaker::{CircuitBreaker, Config, Outcome};
    /// # use fusebox_std::policy::Breaker;
    /// # let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(1).build().unwrap()));
    /// let breaker = Breaker::builder("users", core)
    ///     .classifier(|r: &Result<(), u16>| match r {
    ///         Err(404) => Outcome::Ignored,
    ///         Err(_) => Outcome::Failure,
    ///         Ok(()) => Outcome::Success,
    ///     })
    ///     .build();
    /// # drop(breaker);
    /// ```
    pub fn classifier<C>(self, classifier: C) -> BreakerBuilder<C> {
        BreakerBuilder {
            breaker: self.breaker,
            name: self.name,
            clock: self.clock,
            timeout: self.timeout,
            classifier,
            observer: self.observer,
        }
    }
}

impl<C> BreakerBuilder<C> {
    /// A timeout for every call, counted as a failure when it fires; the
    /// call is then dropped and [`CallError::Timeout`] returned.
    ///
    /// ```
    /// use std::time::Duration;
    /// use fusebox_std::policy::Breaker;
    /// # use std::sync::Arc;
    /// # use fusebox::breaker::{CircuitBreaker, Config};
    /// # let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(3).build().unwrap()));
    /// let breaker = Breaker::builder("search", core).timeout(Duration::from_secs(1)).build();
    /// assert_eq!(breaker.timeout(), Some(Duration::from_secs(1)));
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The clock (default: a new [`TokioClock`] at `build`). Give the same
    /// clock to every adapter that shares this core breaker.
    ///
    /// ```
    /// use fusebox_std::{policy::Breaker, TokioClock};
    /// # use std::sync::Arc;
    /// # use fusebox::breaker::{CircuitBreaker, Config};
    /// # let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(3).build().unwrap()));
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// let clock = TokioClock::new(); // shared with every adapter of this core breaker
    /// let breaker = Breaker::builder("search", core).clock(clock).build();
    /// assert_eq!(breaker.clock(), clock);
    /// # });
    /// ```
    pub fn clock(mut self, clock: TokioClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Tells `observer` of every state change, rejection and failure a
    /// call causes (state changes then go to it instead of the policy's own
    /// `tracing` event). [`Registry::breaker_policy`](crate::Registry::breaker_policy)
    /// sets this up with the registry's events.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use fusebox::breaker::{CircuitBreaker, Config, State, Transition};
    /// use fusebox::Instant;
    /// use fusebox_std::policy::{Breaker, BreakerObserver};
    ///
    /// #[derive(Default)]
    /// struct Seen(Mutex<Vec<String>>);
    /// impl BreakerObserver for Seen {
    ///     fn transition(&self, name: &str, t: Transition) {
    ///         self.0.lock().unwrap().push(format!("{name}: {:?}", t.to));
    ///     }
    ///     fn rejected(&self, name: &str, _at: Instant) {
    ///         self.0.lock().unwrap().push(format!("{name}: rejected"));
    ///     }
    /// }
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// let seen = Arc::new(Seen::default());
    /// let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(1).build()?));
    /// let breaker = Breaker::builder("search", core).observer(seen.clone()).build();
    /// let _ = breaker.call(async { Err::<(), _>("down") }).await;
    /// let _ = breaker.call(async { Ok::<(), &str>(()) }).await;
    /// assert_eq!(*seen.0.lock().unwrap(), ["search: Open", "search: rejected"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn observer(mut self, observer: Arc<dyn BreakerObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The breaker.
    ///
    /// ```
    /// use fusebox::breaker::State;
    /// use fusebox_std::policy::Breaker;
    /// # use std::sync::Arc;
    /// # use fusebox::breaker::{CircuitBreaker, Config};
    /// # let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(3).build().unwrap()));
    /// let breaker = Breaker::builder("search", core).build();
    /// assert_eq!(breaker.state(), State::Closed);
    /// ```
    pub fn build(self) -> Breaker<C> {
        Breaker {
            shared: Arc::new(Shared {
                breaker: self.breaker,
                name: self.name,
                clock: self.clock.unwrap_or_default(),
                timeout: self.timeout,
                classifier: self.classifier,
                observer: self.observer,
            }),
        }
    }
}

impl Breaker {
    /// A builder for a breaker named `name` (a label for logs and metrics;
    /// keep secrets out of it) over `breaker`.
    ///
    /// ```
    /// use fusebox_std::policy::Breaker;
    /// # use std::sync::Arc;
    /// # use fusebox::breaker::{CircuitBreaker, Config};
    /// # let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(3).build().unwrap()));
    /// let breaker = Breaker::builder("ledger", core).build();
    /// assert_eq!(breaker.name(), "ledger");
    /// ```
    pub fn builder(name: impl Into<Arc<str>>, breaker: Arc<CircuitBreaker>) -> BreakerBuilder {
        BreakerBuilder {
            breaker,
            name: name.into(),
            clock: None,
            timeout: None,
            classifier: DefaultClassifier,
            observer: None,
        }
    }

    /// A breaker with the default classifier, no timeout and a new clock.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use fusebox::breaker::{CircuitBreaker, Config, State};
    /// # use fusebox_std::policy::Breaker;
    /// let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(3).build()?));
    /// let breaker = Breaker::new("search", core);
    /// assert_eq!(breaker.state(), State::Closed);
    /// # Ok::<(), fusebox::breaker::ConfigError>(())
    /// ```
    pub fn new(name: impl Into<Arc<str>>, breaker: Arc<CircuitBreaker>) -> Self {
        Self::builder(name, breaker).build()
    }
}

impl<C> Breaker<C> {
    /// Calls `future` if the breaker permits, and records how it went.
    ///
    /// The permit is asked for on the first poll, the duration is measured
    /// from there to completion and fed to the core's slow-call detection,
    /// and the classifier decides the outcome. See [`BreakerCall`] for
    /// timeouts and cancellation.
    ///
    /// The future borrows the breaker (no reference count is touched per
    /// call); to move a call into a spawned task, move a clone of the
    /// breaker into it: `tokio::spawn(async move { b.call(f).await })`.
    ///
    /// The clock is read only when something needs the time: at the start
    /// if the core has a slow-call rule or a timeout is set (and then again
    /// at the end, for the duration), and whenever the core's decision
    /// depends on it (open or half-open, a trip). A call on a closed breaker
    /// with neither reads no clock: its cost is the core's two atomic
    /// operations. A slow-call rule enabled by `set_config` applies from
    /// the next call.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use fusebox::breaker::{CircuitBreaker, Config};
    /// # use fusebox_std::policy::Breaker;
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// # let breaker = Breaker::new("db", Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(3).build().unwrap())));
    /// let rows = breaker.call(async { Ok::<_, std::io::Error>(7) }).await?;
    /// assert_eq!(rows, 7);
    /// assert_eq!(breaker.metrics().successes, 1);
    /// # Ok::<(), fusebox_std::CallError<std::io::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn call<F>(&self, future: F) -> BreakerCall<'_, F, C> {
        self.call_with_timeout(future, self.shared.timeout)
    }

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

    /// The state a call made now would see.
    ///
    /// ```
    /// use fusebox::breaker::State;
    /// use fusebox_std::policy::Breaker;
    /// # use std::sync::Arc;
    /// # use fusebox::breaker::{CircuitBreaker, Config};
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(1).build()?));
    /// let breaker = Breaker::new("cache", core);
    /// let _ = breaker.call(async { Err::<(), _>("down") }).await;
    /// assert_eq!(breaker.state(), State::Open);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn state(&self) -> State {
        self.shared.breaker.state(self.shared.clock.now())
    }

    /// The core breaker's counters.
    ///
    /// ```
    /// use fusebox_std::policy::Breaker;
    /// # use std::sync::Arc;
    /// # use fusebox::breaker::{CircuitBreaker, Config};
    /// # let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(3).build().unwrap()));
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// let breaker = Breaker::new("cache", core);
    /// breaker.call(async { Ok::<_, ()>(()) }).await.unwrap();
    /// assert_eq!(breaker.metrics().successes, 1);
    /// # });
    /// ```
    pub fn metrics(&self) -> Metrics {
        self.shared.breaker.metrics()
    }

    /// The core breaker.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fusebox_std::policy::Breaker;
    /// # use fusebox::breaker::{CircuitBreaker, Config};
    /// # let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(3).build().unwrap()));
    /// let breaker = Breaker::new("cache", Arc::clone(&core));
    /// assert!(Arc::ptr_eq(breaker.core(), &core));
    /// ```
    pub fn core(&self) -> &Arc<CircuitBreaker> {
        &self.shared.breaker
    }

    /// The name given at construction.
    ///
    /// ```
    /// use fusebox_std::policy::Breaker;
    /// # use std::sync::Arc;
    /// # use fusebox::breaker::{CircuitBreaker, Config};
    /// # let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(3).build().unwrap()));
    /// assert_eq!(Breaker::new("cache", core).name(), "cache");
    /// ```
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The clock the breaker is read with.
    ///
    /// ```
    /// use fusebox::Clock;
    /// use fusebox_std::policy::Breaker;
    /// # use std::sync::Arc;
    /// # use fusebox::breaker::{CircuitBreaker, Config};
    /// # let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(3).build().unwrap()));
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// let breaker = Breaker::new("cache", core);
    /// assert_eq!(breaker.clock().now(), fusebox::Instant::ZERO);
    /// # });
    /// ```
    pub fn clock(&self) -> TokioClock {
        self.shared.clock
    }

    /// The configured timeout.
    ///
    /// ```
    /// use fusebox_std::policy::Breaker;
    /// # use std::sync::Arc;
    /// # use fusebox::breaker::{CircuitBreaker, Config};
    /// # let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(3).build().unwrap()));
    /// assert_eq!(Breaker::new("cache", core).timeout(), None);
    /// ```
    pub fn timeout(&self) -> Option<Duration> {
        self.shared.timeout
    }

    /// [`call`](Self::call), also telling what the core recorded (the
    /// fleet breaker shares a half-open trial's result only if it really
    /// succeeded). Cancelled, it abandons the permit as `call` does.
    #[cfg(feature = "redis")]
    pub(crate) async fn call_recorded<F, T, E>(
        &self,
        future: F,
    ) -> (Result<T, CallError<E>>, Recorded)
    where
        F: Future<Output = Result<T, E>>,
        C: Classify<T, E>,
    {
        let shared = &*self.shared;
        let start = shared.clock.now();
        let permit = match shared.breaker.try_acquire(start) {
            Ok(permit) => permit,
            Err(rejected) => {
                return (
                    Err(shared.rejected(&rejected, Some(start))),
                    Recorded::Refused,
                );
            }
        };
        if let Some(t) = permit.transition() {
            shared.transition(t);
        }
        let deadline = shared
            .timeout
            .and_then(|t| shared.clock.to_tokio(start).checked_add(t));
        let result = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, future).await.ok(),
            None => Some(future.await),
        };
        let verdict = result
            .as_ref()
            .map_or(Outcome::Failure, |r| shared.classifier.classify(r));
        let end = shared.clock.now();
        // The core counts a slow success as a failure (a slow trial fails).
        let slow = shared
            .breaker
            .config()
            .slow_call()
            .is_some_and(|(threshold, _)| end - start >= threshold);
        let recorded = match verdict {
            Outcome::Success if !slow => Recorded::Success,
            Outcome::Success | Outcome::Failure => Recorded::Failure,
            Outcome::Ignored => Recorded::Undecided,
        };
        let mut end = Some(end);
        shared.record(permit, verdict, end.unwrap_or(start) - start, &mut end);
        let at = end.unwrap_or(start);
        let timed_out = result.is_none();
        if timed_out {
            tracing::debug!(breaker = %shared.name, "call timed out");
        }
        if let (Outcome::Failure, Some(observer)) = (verdict, &shared.observer) {
            observer.failure(&shared.name, at, timed_out);
        }
        let result = result.map_or(Err(CallError::Timeout), |r| r.map_err(CallError::Inner));
        (result, recorded)
    }
}

/// What [`Breaker::call_recorded`] recorded.
#[cfg(feature = "redis")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Recorded {
    /// A success within the slow-call threshold.
    Success,
    /// A failure, a timeout or a slow success.
    Failure,
    /// An ignored outcome: neither.
    Undecided,
    /// The breaker refused the call.
    Refused,
}

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
            return later_poll(this.future, this.stage, shared, cx);
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
            Poll::Ready(result) => Poll::Ready(shared.finish(permit, started, Some(result))),
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
    poll_timer(stage, shared, cx)
}

/// A poll after the first: the permit was stored by a first poll that
/// found the call pending.
#[inline(never)]
fn later_poll<'a, F, C, T, E>(
    future: Pin<&mut F>,
    stage: Pin<&mut Stage<'a>>,
    shared: &'a Shared<C>,
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
            } => Poll::Ready(shared.finish(permit, started, Some(result))),
            _ => unreachable!("checked above"),
        },
        Poll::Pending => poll_timer(stage, shared, cx),
    }
}

/// Polls a running call's timer: when it fires, the call is recorded as a
/// timed-out failure (the inner future is not polled again).
fn poll_timer<'a, C, T, E>(
    mut stage: Pin<&mut Stage<'a>>,
    shared: &'a Shared<C>,
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
        } => Poll::Ready(shared.finish(permit, started, None)),
        _ => unreachable!("a timer fires only while running"),
    }
}

impl<C> Shared<C> {
    /// A refused call: logged, told to the observer, as the caller sees it.
    #[cold]
    fn rejected<E>(
        &self,
        rejected: &fusebox::breaker::Rejected,
        now: Option<Instant>,
    ) -> CallError<E> {
        tracing::debug!(breaker = %self.name, state = ?rejected.state, "call rejected");
        if let Some(observer) = &self.observer {
            observer.rejected(&self.name, now.unwrap_or_else(|| self.clock.now()));
        }
        CallError::Open {
            retry_after: rejected.retry_after.map(Into::into),
        }
    }

    /// Records a finished call (`None`: timed out) and returns its result.
    // The ready path: inlined, the permit stays in registers
    // (benches/instr.sh std_breaker_call).
    #[allow(clippy::inline_always)]
    #[inline(always)]
    fn finish<T, E>(
        &self,
        permit: Permit<'_>,
        started: Option<Instant>,
        result: Option<Result<T, E>>,
    ) -> Result<T, CallError<E>>
    where
        C: Classify<T, E>,
    {
        let mut end = started.map(|_| self.clock.now());
        let elapsed = match (started, end) {
            (Some(start), Some(end)) => end - start,
            _ => fusebox::Duration::ZERO,
        };
        let Some(result) = result else {
            self.record(permit, Outcome::Failure, elapsed, &mut end);
            tracing::debug!(breaker = %self.name, "call timed out");
            if let Some(observer) = &self.observer {
                observer.failure(&self.name, end.unwrap_or_else(|| self.clock.now()), true);
            }
            return Err(CallError::Timeout);
        };
        let verdict = self.classifier.classify(&result);
        self.record(permit, verdict, elapsed, &mut end);
        if verdict == Outcome::Failure
            && let Some(observer) = &self.observer
        {
            observer.failure(&self.name, end.unwrap_or_else(|| self.clock.now()), false);
        }
        result.map_err(CallError::Inner)
    }

    /// Records `permit`, reading the clock into `end` only if the core
    /// needs the time (and it was not read yet).
    // The ready path: inlined, the permit stays in registers
    // (benches/instr.sh std_breaker_call).
    #[allow(clippy::inline_always)]
    #[inline(always)]
    fn record(
        &self,
        permit: Permit<'_>,
        outcome: Outcome,
        elapsed: fusebox::Duration,
        end: &mut Option<Instant>,
    ) {
        let clock = self.clock;
        if let Some(t) =
            permit.record_with(outcome, elapsed, || *end.get_or_insert_with(|| clock.now()))
        {
            self.transition(t);
        }
    }

    /// A transition this policy caused: to the observer, or logged.
    fn transition(&self, t: Transition) {
        match &self.observer {
            Some(observer) => observer.transition(&self.name, t),
            None => log_transition(&self.name, t),
        }
    }
}

/// One `tracing` event per transition, with structured fields.
pub(crate) fn log_transition(name: &str, t: Transition) {
    let at_us = t.at.as_micros();
    match t.to {
        State::Open | State::ForcedOpen => {
            tracing::warn!(breaker = %name, from = ?t.from, to = ?t.to, at_us, "circuit breaker opened");
        }
        State::HalfOpen => {
            tracing::info!(breaker = %name, from = ?t.from, to = ?t.to, at_us, "circuit breaker half-open");
        }
        State::Closed => {
            tracing::info!(breaker = %name, from = ?t.from, to = ?t.to, at_us, "circuit breaker closed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fusebox::breaker::Config;

    fn breaker(n: u32) -> Breaker {
        let config = Config::builder()
            .consecutive_failures(n)
            .open_for(fusebox::Duration::from_secs(1))
            .build()
            .unwrap();
        Breaker::new("test", Arc::new(CircuitBreaker::new(config)))
    }

    #[tokio::test(start_paused = true)]
    async fn not_polled_asks_nothing() {
        let b = breaker(1);
        let call = b.call(async { Ok::<(), ()>(()) });
        drop(call);
        assert_eq!(b.metrics(), Metrics::default());
    }

    #[tokio::test(start_paused = true)]
    async fn timeout_counts_as_failure_and_opens() {
        let b = Breaker::builder("t", Arc::clone(breaker(1).core()))
            .timeout(Duration::from_millis(100))
            .build();
        let start = tokio::time::Instant::now();
        let r = b
            .call(async {
                tokio::time::sleep(Duration::from_secs(10)).await;
                Ok::<(), ()>(())
            })
            .await;
        assert!(matches!(r, Err(CallError::Timeout)));
        assert_eq!(
            tokio::time::Instant::now(),
            start + Duration::from_millis(100)
        );
        assert_eq!(b.metrics().failures, 1);
        assert_eq!(b.state(), State::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn the_largest_timeout_never_fires_nor_overflows() {
        let b = Breaker::builder("t", Arc::clone(breaker(1).core()))
            .timeout(Duration::MAX)
            .build();
        let call = b.call(std::future::pending::<Result<(), ()>>());
        assert!(tokio::time::timeout(Duration::from_secs(3600), call)
            .await
            .is_err());
        assert_eq!(b.metrics().abandoned, 1);
    }

    #[cfg(feature = "redis")]
    #[tokio::test(start_paused = true)]
    async fn call_recorded_reports_what_the_core_recorded() {
        let config = Config::builder()
            .consecutive_failures(100)
            .slow_call(fusebox::Duration::from_millis(50), 100)
            .window(4)
            .build()
            .unwrap();
        let b = Breaker::builder("t", Arc::new(CircuitBreaker::new(config)))
            .timeout(Duration::from_secs(1))
            .build();
        let after = |ms: u64, ok: bool| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            if ok {
                Ok(())
            } else {
                Err(())
            }
        };
        assert_eq!(b.call_recorded(after(10, true)).await.1, Recorded::Success);
        // A success past the slow-call threshold is recorded as a failure.
        let (slow, recorded) = b.call_recorded(after(60, true)).await;
        assert!(slow.is_ok(), "the caller still gets its value");
        assert_eq!(recorded, Recorded::Failure);
        assert_eq!(b.metrics().slow_calls, 1);
        assert_eq!(b.call_recorded(after(1, false)).await.1, Recorded::Failure);
        let (timed_out, recorded) = b.call_recorded(after(5_000, true)).await;
        assert!(matches!(timed_out, Err(CallError::Timeout)));
        assert_eq!(recorded, Recorded::Failure);
        b.core().force_open(b.clock().now());
        assert_eq!(b.call_recorded(after(1, true)).await.1, Recorded::Refused);
        // Cancelled: the permit is abandoned.
        b.core().force_close(b.clock().now());
        let hung = b.call_recorded(std::future::pending::<Result<(), ()>>());
        assert!(tokio::time::timeout(Duration::from_millis(10), hung)
            .await
            .is_err());
        assert_eq!(b.metrics().abandoned, 1);
    }

    #[tokio::test(start_paused = true)]
    #[should_panic(expected = "polled after completion")]
    async fn polled_after_completion_panics() {
        let b = breaker(1);
        let mut call = std::pin::pin!(b.call(async { Ok::<(), ()>(()) }));
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(call.as_mut().poll(&mut cx).is_ready());
        let _ = call.as_mut().poll(&mut cx);
    }
}
