//! [`Breaker`]: async calls through the core's [`CircuitBreaker`], with a
//! classifier, an optional timeout and tracing of every transition.

use std::sync::Arc;
use std::time::Duration;

use fusebox::breaker::{Metrics, Outcome, Permit, State, Transition};
use fusebox::{CircuitBreaker, Clock, Instant};

use super::{CallError, Classify, DefaultClassifier};
use crate::redact::Redacted;
use crate::TokioClock;

mod builder;
mod call;
#[cfg(test)]
mod tests;

pub use builder::BreakerBuilder;
pub use call::BreakerCall;

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
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use fusebox::breaker::{CircuitBreaker, Config, Transition};
/// use fusebox::Instant;
/// use fusebox_std::policy::{Breaker, BreakerObserver};
///
/// #[derive(Default)]
/// struct TimedOut(AtomicU32);
/// impl BreakerObserver for TimedOut {
///     fn transition(&self, _name: &str, _t: Transition) {}
///     fn failure(&self, _name: &str, _at: Instant, timed_out: bool) {
///         if timed_out {
///             self.0.fetch_add(1, Ordering::Relaxed);
///         }
///     }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// let timed_out = Arc::new(TimedOut::default());
/// let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(5).build()?));
/// let breaker = Breaker::builder("search", core)
///     .timeout(std::time::Duration::from_millis(10))
///     .observer(timed_out.clone())
///     .build();
/// let _ = breaker.call(std::future::pending::<Result<(), &str>>()).await;
/// let _ = breaker.call(async { Err::<(), _>("down") }).await;
/// assert_eq!(timed_out.0.load(Ordering::Relaxed), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
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

    /// The observer a fleet breaker given this one tells instead
    /// (`backend::FleetBreakerBuilder::observer`, feature `redis`, asks),
    /// or `None`, the default: this one. The registry's
    /// ([`Registry::breaker_observer`](crate::Registry::breaker_observer))
    /// answers one publishing the fleet breaker's events as a
    /// [`Component::FleetBreaker`](crate::events::Component::FleetBreaker)'s,
    /// so they are not taken for those of the registry's breaker of the
    /// same name. An observer that wraps the registry's (to count, or to
    /// page, before passing each call on) should answer a wrapper of the
    /// registry's answer: with the default, a fleet breaker given the
    /// wrapper publishes as a [`Component::Breaker`](crate::events::Component::Breaker).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fusebox::breaker::Transition;
    /// use fusebox_std::policy::BreakerObserver;
    /// use fusebox_std::Registry;
    ///
    /// struct Quiet;
    /// impl BreakerObserver for Quiet {
    ///     fn transition(&self, _name: &str, _t: Transition) {}
    /// }
    /// assert!(Quiet.fleet_observer().is_none());
    /// assert!(Arc::new(Registry::new()).breaker_observer().fleet_observer().is_some());
    /// ```
    fn fleet_observer(&self) -> Option<Arc<dyn BreakerObserver>> {
        None
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
            .field("name", &crate::redact::redact(&self.shared.name))
            .field("timeout", &self.shared.timeout)
            .field("breaker", &self.shared.breaker)
            .finish_non_exhaustive()
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

    /// The state a call made now would see.
    ///
    /// A read only: it never moves the breaker. An open breaker whose open
    /// time has passed reads as half-open, but stays open in the core
    /// until a call comes, and keeps reading half-open however long
    /// nobody calls (the core keeps the open deadline in full 1.024 ms
    /// ticks beside its state word).
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

    /// A call refused outside the core (a fleet breaker's half-open call
    /// that found the fleet's trial slots all taken): logged and told to
    /// the observer as the core's refusals are.
    #[cfg(feature = "redis")]
    #[cold]
    pub(crate) fn refused<E>(
        &self,
        state: State,
        retry_after: Option<fusebox::Duration>,
    ) -> CallError<E> {
        self.shared.refused(state, retry_after, None)
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
        F: std::future::Future<Output = Result<T, E>>,
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
        // A timed-out call lasts its timeout, as in `call` (see `timed_out`).
        let elapsed = match (&result, shared.timeout) {
            (None, Some(timeout)) => timeout.into(),
            _ => end - start,
        };
        // The core counts a slow success as a failure (a slow trial fails).
        let slow = shared
            .breaker
            .config()
            .slow_call()
            .is_some_and(|(threshold, _)| elapsed >= threshold);
        let recorded = match verdict {
            Outcome::Success if !slow => Recorded::Success,
            Outcome::Success | Outcome::Failure => Recorded::Failure,
            Outcome::Ignored => Recorded::Undecided,
        };
        let mut end = Some(end);
        shared.record(permit, verdict, elapsed, &mut end);
        let at = end.unwrap_or(start);
        let timed_out = result.is_none();
        if timed_out {
            tracing::debug!(breaker = %Redacted(&shared.name), "call timed out");
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

impl<C> Shared<C> {
    /// A refused call: logged, told to the observer, as the caller sees it.
    /// The transition a refusal can carry (this call found the half-open
    /// timeout passed and reopened the breaker: `Rejected::transition`) is
    /// reported first, as every other transition is.
    #[cold]
    fn rejected<E>(
        &self,
        rejected: &fusebox::breaker::Rejected,
        now: Option<Instant>,
    ) -> CallError<E> {
        if let Some(t) = rejected.transition {
            self.transition(t);
        }
        self.refused(rejected.state, rejected.retry_after, now)
    }

    /// A call refused in `state`: logged, told to the observer, and the
    /// error the caller sees.
    fn refused<E>(
        &self,
        state: State,
        retry_after: Option<fusebox::Duration>,
        now: Option<Instant>,
    ) -> CallError<E> {
        tracing::debug!(breaker = %Redacted(&self.name), state = ?state, "call rejected");
        if let Some(observer) = &self.observer {
            observer.rejected(&self.name, now.unwrap_or_else(|| self.clock.now()));
        }
        CallError::Open {
            retry_after: retry_after.map(Into::into),
        }
    }

    /// Records a finished call and returns its result.
    // The ready path: inlined, the permit stays in registers
    // (benches/instr.sh std_breaker_call).
    #[allow(clippy::inline_always)]
    #[inline(always)]
    fn finish<T, E>(
        &self,
        permit: Permit<'_>,
        started: Option<Instant>,
        result: Result<T, E>,
    ) -> Result<T, CallError<E>>
    where
        C: Classify<T, E>,
    {
        let mut end = started.map(|_| self.clock.now());
        let elapsed = match (started, end) {
            (Some(start), Some(end)) => end - start,
            _ => fusebox::Duration::ZERO,
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

    /// Records a call its timeout ended: a failure lasting the timeout
    /// (as `BreakerCall` documents), not the time the timer took to fire
    /// (tokio's timers end on a millisecond tick, a loaded runtime later
    /// still), so a slow-call threshold above the timeout never counts a
    /// timed-out call as slow. Returns the caller's error.
    #[cold]
    #[inline(never)]
    fn timed_out<T, E>(
        &self,
        permit: Permit<'_>,
        started: Option<Instant>,
        timeout: Option<Duration>,
    ) -> Result<T, CallError<E>> {
        let mut end = started.map(|_| self.clock.now());
        let elapsed = timeout.map_or(fusebox::Duration::ZERO, Into::into);
        self.record(permit, Outcome::Failure, elapsed, &mut end);
        tracing::debug!(breaker = %Redacted(&self.name), "call timed out");
        if let Some(observer) = &self.observer {
            observer.failure(&self.name, end.unwrap_or_else(|| self.clock.now()), true);
        }
        Err(CallError::Timeout)
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
            tracing::warn!(breaker = %Redacted(&name), from = ?t.from, to = ?t.to, at_us, "circuit breaker opened");
        }
        State::HalfOpen => {
            tracing::info!(breaker = %Redacted(&name), from = ?t.from, to = ?t.to, at_us, "circuit breaker half-open");
        }
        State::Closed => {
            tracing::info!(breaker = %Redacted(&name), from = ?t.from, to = ?t.to, at_us, "circuit breaker closed");
        }
    }
}
