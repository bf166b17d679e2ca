//! Breaker layers over a [`Registry`]'s breakers: read on its clock, shown
//! in its health report and Prometheus text, their transitions, rejections
//! and failures published as its events.

use std::sync::{Arc, Weak};

use fusebox::breaker::{Config, Transition};
use fusebox::Instant;

use super::CircuitBreakerLayer;
use crate::events::{Component, Event};
use crate::policy::BreakerObserver;
use crate::registry::{EventName, Registry, RegistryError};

impl CircuitBreakerLayer {
    /// A layer over the registry's breaker `name` (created with `config` if
    /// it does not exist): read on the registry's clock, so it shows in
    /// [`Registry::health`] and [`Registry::to_prometheus`], with its state
    /// changes logged and published by the registry
    /// ([`Registry::transition`]) and its rejections and failures published
    /// as events, while the registry lives.
    ///
    /// # Errors
    ///
    /// As [`Registry::breaker`].
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fusebox::breaker::Config;
    /// use fusebox_std::tower::CircuitBreakerLayer;
    /// use fusebox_std::Registry;
    ///
    /// let registry = Arc::new(Registry::new());
    /// let layer = CircuitBreakerLayer::from_registry(&registry, "billing", Config::builder().consecutive_failures(3).build()?)?;
    /// assert!(Arc::ptr_eq(layer.breaker(), &registry.get_breaker("billing").unwrap()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_registry(
        registry: &Arc<Registry>,
        name: &str,
        config: Config,
    ) -> Result<Self, RegistryError> {
        // The registry's policy carries the registry's tokio clock.
        let policy = registry.breaker_policy(name, config)?;
        let observer: Arc<dyn BreakerObserver> = Arc::new(RegistryObserver {
            registry: Arc::downgrade(registry),
            name: EventName::of(name.into()),
        });
        Ok(Self::with_clock_and_observer(
            name,
            Arc::clone(policy.core()),
            policy.clock(),
            Some(observer),
        ))
    }
}

/// A layer built by [`CircuitBreakerLayer::from_registry`] reports to its
/// registry through this (a weak reference: it never keeps it alive).
struct RegistryObserver {
    registry: Weak<Registry>,
    /// The layer's name, shared by its events.
    name: EventName,
}

impl BreakerObserver for RegistryObserver {
    fn transition(&self, name: &str, t: Transition) {
        match self.registry.upgrade() {
            Some(registry) => registry.transition(name, t),
            None => crate::policy::log_transition(name, t),
        }
    }

    fn rejected(&self, name: &str, at: Instant) {
        if let Some(registry) = self.registry.upgrade() {
            registry.events().publish(Event::Rejected {
                name: self.name.get(name),
                component: Component::Breaker,
                at,
            });
        }
    }

    fn failure(&self, name: &str, at: Instant, _timed_out: bool) {
        if let Some(registry) = self.registry.upgrade() {
            registry.events().publish(Event::failure_of(
                self.name.get(name),
                Component::Breaker,
                &"failed",
                at,
            ));
        }
    }
}
