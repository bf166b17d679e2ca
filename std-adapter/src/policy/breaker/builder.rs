//! [`BreakerBuilder`]: a [`Breaker`]'s name, clock, timeout, classifier
//! and observer.

use std::sync::Arc;
use std::time::Duration;

use fusebox::CircuitBreaker;

use super::{Breaker, BreakerObserver, Shared};
use crate::policy::DefaultClassifier;
use crate::TokioClock;

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
            .field("name", &crate::redact::redact(&self.name))
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
    /// call is then dropped and [`CallError::Timeout`](crate::CallError::Timeout) returned.
    /// At least 1 ms (tokio's timer tick): a zero timeout would fail every
    /// call not ready on its first poll, and open the breaker of a healthy
    /// service (found by a hostile review).
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
        self.timeout = Some(timeout.max(crate::policy::MIN_TIMEOUT));
        self
    }

    /// The clock (default: the one the adapters already over this core
    /// breaker read, else a new [`TokioClock`], at `build`). Give the same
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
        // A clock given is kept for the core: the adapters built over it
        // later without one read it too.
        let clock = match self.clock {
            Some(clock) => {
                crate::core_clock::keep_for(&self.breaker, clock);
                clock
            }
            None => crate::core_clock::of(&self.breaker, TokioClock::new()),
        };
        Breaker {
            shared: Arc::new(Shared {
                breaker: self.breaker,
                name: self.name,
                clock,
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
    /// Every adapter of one core breaker must read it through one clock
    /// (see [`TokioClock`]'s origin). Without [`clock`](BreakerBuilder::clock)
    /// the breaker takes the clock of the adapters already over the same
    /// `Arc` (another `Breaker`, a tower layer, the registry that made it),
    /// or a new one if there is none; a clock given to one builder and not
    /// another is yours to keep the same (two clocks made two minutes
    /// apart: a breaker just opened through one lets a trial through the
    /// other at once, failing open).
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

    /// A breaker with the default classifier, no timeout and the clock of
    /// the adapters already over `breaker` (a new one if there is none; see
    /// [`builder`](Self::builder)).
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
