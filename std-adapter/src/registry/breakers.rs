//! Breakers in the registry: get-or-create, the required marker, and
//! reporting their transitions.

use std::sync::{Arc, OnceLock};

use fusebox::breaker::{Config, State, Transition};
use fusebox::CircuitBreaker;

use crate::redact::Redacted;

use super::{conflict, not_found, BreakerEntry, Kind, Registry, RegistryError};
use crate::events::{Component, Event};

impl Registry {
    /// Reports a breaker's state change: a `tracing` event with structured
    /// fields (`breaker`, `from`, `to`, `failures` of the registry's
    /// breaker `name` (0 if it has none), `at` in µs; `warn` when it
    /// opens, `info` otherwise), an [`Event::StateChange`], and an
    /// [`Event::Recovered`] when it closes again. Policies call this with
    /// every [`Transition`] the core returns.
    ///
    /// ```
    /// use fusebox::breaker::{Config, Outcome, State};
    /// use fusebox::Duration;
    /// use fusebox_std::events::Event;
    /// use fusebox_std::Registry;
    ///
    /// let registry = Registry::new();
    /// let breaker = registry.breaker("db", Config::builder().consecutive_failures(1).build()?)?;
    /// let mut sub = registry.events().subscribe();
    /// let now = registry.now();
    /// let permit = breaker.try_acquire(now)?;
    /// if let Some(t) = permit.record(Outcome::Failure, now, Duration::ZERO) {
    ///     registry.transition("db", t);
    /// }
    /// assert!(matches!(sub.try_recv(), Some(Event::StateChange { to: State::Open, .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn transition(&self, name: &str, t: Transition) {
        let failures = self.get_breaker(name).map_or(0, |b| b.metrics().failures);
        self.report_transition(name.into(), Component::Breaker, t, Some(failures));
    }

    /// [`transition`](Self::transition) of the `component` `name` whose
    /// failures are `failures` (`None`: not known, the field is left out).
    /// A fleet breaker's log line also has the field `component`
    /// (`"fleet_breaker"`); a breaker's has none, as before.
    fn report_transition(
        &self,
        name: Arc<str>,
        component: Component,
        t: Transition,
        failures: Option<u64>,
    ) {
        let at = t.at.as_micros();
        let opened = matches!(t.to, State::Open | State::ForcedOpen);
        let kind = (component != Component::Breaker).then(|| component.as_str());
        match (failures, opened) {
            (Some(failures), true) => {
                tracing::warn!(breaker = %Redacted(&name), component = kind, from = ?t.from, to = ?t.to, failures, at, "breaker opened");
            }
            (Some(failures), false) => {
                tracing::info!(breaker = %Redacted(&name), component = kind, from = ?t.from, to = ?t.to, failures, at, "breaker state changed");
            }
            (None, true) => {
                tracing::warn!(breaker = %Redacted(&name), component = kind, from = ?t.from, to = ?t.to, at, "breaker opened");
            }
            (None, false) => {
                tracing::info!(breaker = %Redacted(&name), component = kind, from = ?t.from, to = ?t.to, at, "breaker state changed");
            }
        }
        self.events.publish(Event::StateChange {
            name: Arc::clone(&name),
            component,
            from: t.from,
            to: t.to,
            at: t.at,
        });
        if t.to == State::Closed && t.from != State::Closed {
            self.events.publish(Event::Recovered {
                name,
                component,
                at: t.at,
            });
        }
    }

    /// A [`Breaker`](crate::policy::Breaker) policy over the breaker `name`
    /// (created with `config` if it does not exist, as
    /// [`breaker`](Self::breaker)), reading the registry's clock, whose
    /// state changes are published as events and logged by the registry
    /// ([`transition`](Self::transition)), and whose rejections and
    /// failures are published as [`Event::Rejected`] and [`Event::Failure`],
    /// while the registry lives.
    ///
    /// # Errors
    ///
    /// As [`breaker`](Self::breaker).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fusebox::breaker::{Config, State};
    /// use fusebox_std::events::Event;
    /// use fusebox_std::Registry;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// let registry = Arc::new(Registry::builder().build());
    /// let mut events = registry.events().subscribe();
    /// let payments = registry.breaker_policy("payments", Config::builder().consecutive_failures(1).build()?)?;
    /// let _ = payments.call(async { Err::<(), _>("declined upstream") }).await;
    /// assert!(matches!(events.try_recv(), Some(Event::StateChange { to: State::Open, .. })));
    /// assert!(!registry.health().breakers.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn breaker_policy(
        self: &Arc<Self>,
        name: &str,
        config: Config,
    ) -> Result<crate::policy::Breaker, RegistryError> {
        let core = self.breaker(name, config)?;
        let name: Arc<str> = name.into();
        let observer = Arc::new(Observer {
            registry: Arc::downgrade(self),
            core: Some(Arc::downgrade(&core)),
            component: Component::Breaker,
            name: EventName::of(Arc::clone(&name)),
        });
        Ok(crate::policy::Breaker::builder(name, core)
            .clock(self.tokio_clock)
            .observer(observer)
            .build())
    }

    /// The observer the registry's own [`breaker_policy`](Self::breaker_policy)
    /// policies report to (a weak reference: it never keeps the registry
    /// alive), for breakers built elsewhere: give it to a
    /// `backend::FleetBreaker`'s builder (feature
    /// `redis`) or a policy's, and their transitions, rejections and
    /// failures are logged and published as events like those of the
    /// registry's policies (a transition's log without the `failures`
    /// field: the observer does not see the breaker, and the registry's
    /// breaker of the same name, if any, is another one).
    ///
    /// A fleet breaker given it publishes its events as a
    /// [`Component::FleetBreaker`]'s (its builder asks the observer for its
    /// [`fleet_observer`](crate::policy::BreakerObserver::fleet_observer)),
    /// so the registry's breaker of the same name, its dashboard timeline
    /// and its rejections are not taken for its own. A breaker policy
    /// built elsewhere is a [`Component::Breaker`]: give it a name of its
    /// own.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fusebox::breaker::{CircuitBreaker, Config, State};
    /// use fusebox_std::events::Event;
    /// use fusebox_std::policy::Breaker;
    /// use fusebox_std::Registry;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// let registry = Arc::new(Registry::new());
    /// let mut events = registry.events().subscribe();
    /// let core = Arc::new(CircuitBreaker::new(Config::builder().consecutive_failures(1).build()?));
    /// let search = Breaker::builder("search", core).observer(registry.breaker_observer()).build();
    /// let _ = search.call(async { Err::<(), _>("timeout") }).await;
    /// assert!(matches!(events.try_recv(), Some(Event::StateChange { to: State::Open, .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn breaker_observer(self: &Arc<Self>) -> Arc<dyn crate::policy::BreakerObserver> {
        Arc::new(Observer {
            registry: Arc::downgrade(self),
            core: None,
            component: Component::Breaker,
            name: EventName::default(),
        })
    }

    /// The breaker `name`, created with `config` if it does not exist.
    /// A breaker whose configuration was changed since
    /// ([`set_config`](fusebox::CircuitBreaker::set_config)) is still
    /// matched against the configuration it was created with, as a
    /// [`limiter`](Self::limiter) is against its quota.
    ///
    /// # Errors
    ///
    /// [`RegistryError::InvalidName`], [`RegistryError::Conflict`] if it
    /// was created with another configuration, [`RegistryError::Full`].
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fusebox::breaker::Config;
    /// use fusebox_std::{Registry, RegistryError};
    ///
    /// let registry = Registry::new();
    /// let five = Config::builder().consecutive_failures(5).build()?;
    /// let db = registry.breaker("db", five)?;
    /// assert_eq!(db.config().consecutive_failures(), Some(5));
    ///
    /// let three = Config::builder().consecutive_failures(3).build()?;
    /// db.set_config(three)?;
    /// assert!(Arc::ptr_eq(&db, &registry.breaker("db", five)?)); // as created
    /// assert!(matches!(registry.breaker("db", three), Err(RegistryError::Conflict { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn breaker(
        &self,
        name: &str,
        config: Config,
    ) -> Result<Arc<CircuitBreaker>, RegistryError> {
        self.get_or_insert(
            Kind::Breaker,
            name,
            |e| &mut e.breakers,
            |entry| {
                (entry.config == config)
                    .then(|| Arc::clone(&entry.breaker))
                    .ok_or_else(|| conflict(Kind::Breaker, name))
            },
            || {
                let breaker = Arc::new(CircuitBreaker::new(config));
                // An adapter built over it without a clock (a tower layer, a
                // policy's `new`) reads this clock.
                let _ = crate::core_clock::of(&breaker, self.tokio_clock);
                let entry = BreakerEntry {
                    breaker: Arc::clone(&breaker),
                    config,
                    required: false,
                };
                Ok((entry, breaker))
            },
        )
    }

    /// The breaker `name`, if it exists.
    ///
    /// ```
    /// use fusebox_std::Registry;
    ///
    /// assert!(Registry::new().get_breaker("db").is_none());
    /// ```
    pub fn get_breaker(&self, name: &str) -> Option<Arc<CircuitBreaker>> {
        self.read()
            .breakers
            .get(name)
            .map(|e| Arc::clone(&e.breaker))
    }

    /// Marks breaker `name` required (or not): while a required breaker is
    /// open, [`health`](Self::health) reports the service not ready.
    ///
    /// # Errors
    ///
    /// [`RegistryError::NotFound`] if there is no such breaker.
    ///
    /// ```
    /// use fusebox::breaker::Config;
    /// use fusebox_std::Registry;
    ///
    /// let registry = Registry::new();
    /// let db = registry.breaker("db", Config::builder().consecutive_failures(1).build()?)?;
    /// registry.set_required("db", true)?;
    /// db.force_open(registry.now());
    /// assert!(!registry.health().ready);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_required(&self, name: &str, required: bool) -> Result<(), RegistryError> {
        match self.write().breakers.get_mut(name) {
            Some(entry) => {
                entry.required = required;
                Ok(())
            }
            None => Err(not_found(Kind::Breaker, name)),
        }
    }
}

/// A registry's breaker policies report to it through this (a weak
/// reference: a policy never keeps its registry alive).
///
/// A transition's `failures` field is the failures of the breaker that
/// changed state: the policy's own core for the registry's policies
/// (`core`), left out for a breaker built elsewhere (`breaker_observer`),
/// which the observer cannot read. It was read from the registry's
/// breaker of the same name (found by a hostile review: a breaker built
/// elsewhere opening after 1 failure was logged with `failures=7`, the
/// count of the registry's own `search`, another breaker; without a
/// namesake, always 0).
struct Observer {
    registry: std::sync::Weak<Registry>,
    core: Option<std::sync::Weak<CircuitBreaker>>,
    /// What its events say the breaker is.
    component: Component,
    /// The breaker's name as its events carry it.
    name: EventName,
}

/// The name an observer's events carry, shared: kept from the first
/// event on (or given), so an event of an observer's breaker, a
/// rejection under load above all, allocates no name of its own.
/// An observer told of another name (one given to two breakers)
/// allocates for that one each time.
#[derive(Default)]
pub(crate) struct EventName(OnceLock<Arc<str>>);

impl EventName {
    /// `name`, kept from the start.
    pub(crate) fn of(name: Arc<str>) -> Self {
        Self(OnceLock::from(name))
    }

    /// `name`, shared with every earlier event of it.
    pub(crate) fn get(&self, name: &str) -> Arc<str> {
        let kept = self.0.get_or_init(|| name.into());
        if **kept == *name {
            Arc::clone(kept)
        } else {
            name.into()
        }
    }
}

impl crate::policy::BreakerObserver for Observer {
    fn transition(&self, name: &str, t: Transition) {
        match self.registry.upgrade() {
            Some(registry) => {
                let failures = self
                    .core
                    .as_ref()
                    .and_then(std::sync::Weak::upgrade)
                    .map(|core| core.metrics().failures);
                registry.report_transition(self.name.get(name), self.component, t, failures);
            }
            None => crate::policy::log_transition(name, t),
        }
    }

    fn rejected(&self, name: &str, at: fusebox::Instant) {
        if let Some(registry) = self.registry.upgrade() {
            registry.events().publish(Event::Rejected {
                name: self.name.get(name),
                component: self.component,
                at,
            });
        }
    }

    fn failure(&self, name: &str, at: fusebox::Instant, timed_out: bool) {
        if let Some(registry) = self.registry.upgrade() {
            let what = if timed_out { "timed out" } else { "failed" };
            registry.events().publish(Event::failure_of(
                self.name.get(name),
                self.component,
                &what,
                at,
            ));
        }
    }

    /// The same registry's, for a fleet breaker (its events are
    /// [`Component::FleetBreaker`]'s).
    fn fleet_observer(&self) -> Option<Arc<dyn crate::policy::BreakerObserver>> {
        Some(Arc::new(Self {
            registry: self.registry.clone(),
            core: None,
            component: Component::FleetBreaker,
            name: EventName::default(),
        }))
    }
}
