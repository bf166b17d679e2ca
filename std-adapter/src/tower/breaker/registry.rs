//! Breaker layers over a [`Registry`]'s breakers: read on its clock, shown
//! in its health report and Prometheus text, their transitions, rejections
//! and failures published as its events.

use std::sync::{Arc, Weak};

use fusebox::breaker::{Config, Transition};
use fusebox::Instant;

use super::CircuitBreakerLayer;
use crate::events::{Component, Event};
use crate::policy::BreakerObserver;
use crate::registry::{EventName, Kind, Registry, RegistryError};

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
        let core = registry.breaker(name, config)?;
        Ok(Self::over_registry_breaker(registry, name, core))
    }

    /// A layer over the registry's breaker `name` as it is, with its
    /// configuration: one the registry's
    /// [configuration](crate::registry::RegistryConfig) declares (so the
    /// configuration is the operator's, `max_half_open = "30s"` included,
    /// and the code needs not repeat it), or one built before. The layer
    /// is the one [`from_registry`](Self::from_registry) builds over that
    /// breaker (the registry's clock, health report, metrics, logs and
    /// events, so the dashboard's timeline).
    ///
    /// # Errors
    ///
    /// [`RegistryError::NotFound`] if the registry has no breaker `name`.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fusebox_std::registry::{Registry, RegistryConfig, RegistryError};
    /// use fusebox_std::tower::CircuitBreakerLayer;
    ///
    /// let config = RegistryConfig::from_toml(
    ///     "[breakers.quotes]\nconsecutive_failures = 3\nmax_half_open = \"30s\"\n",
    /// )?;
    /// let registry = Arc::new(Registry::from_config(&config)?);
    /// let layer = CircuitBreakerLayer::configured_from_registry(&registry, "quotes")?;
    /// assert_eq!(layer.breaker().config().consecutive_failures(), Some(3));
    /// let missing = CircuitBreakerLayer::configured_from_registry(&registry, "other");
    /// assert!(matches!(missing, Err(RegistryError::NotFound { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn configured_from_registry(
        registry: &Arc<Registry>,
        name: &str,
    ) -> Result<Self, RegistryError> {
        let core = registry
            .get_breaker(name)
            .ok_or_else(|| RegistryError::NotFound {
                kind: Kind::Breaker,
                name: crate::registry::shown(name),
            })?;
        Ok(Self::over_registry_breaker(registry, name, core))
    }

    /// The layer over the registry's breaker `core`, named `name`: the
    /// registry's clock (the one its breakers read) and an observer
    /// reporting to it.
    fn over_registry_breaker(
        registry: &Arc<Registry>,
        name: &str,
        core: Arc<fusebox::CircuitBreaker>,
    ) -> Self {
        let observer: Arc<dyn BreakerObserver> = Arc::new(RegistryObserver {
            registry: Arc::downgrade(registry),
            name: EventName::of(name.into()),
        });
        Self::with_clock_and_observer(name, core, registry.tokio_clock(), Some(observer))
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

#[cfg(test)]
mod tests {
    use tower_layer::Layer;

    use super::*;
    use crate::registry::RegistryConfig;
    use crate::tower::test_service::{get, send, Scripted};
    use fusebox::breaker::State;

    /// A breaker the operator's file declares goes in front of a service
    /// with no configuration written in the code, and reports to the
    /// registry as `from_registry`'s layers do. Before, the rate-limit
    /// layers had `configured_from_registry` and the breaker layer did
    /// not: its file's breaker could only be reached by repeating its
    /// configuration in the code (a conflict as soon as the two differ),
    /// or by `new` over `get_breaker`, whose layer publishes no events
    /// (no dashboard timeline, no transition in the registry's log).
    #[tokio::test(start_paused = true)]
    async fn a_layer_over_a_configured_breaker_takes_the_operators_configuration() {
        let config = RegistryConfig::from_toml(
            "[breakers.quotes]\nconsecutive_failures = 2\nopen_for = \"30s\"\n\
             max_half_open = \"10s\"\nrequired = true\n",
        )
        .unwrap();
        let registry = Arc::new(Registry::from_config(&config).unwrap());
        let mut events = registry.events().subscribe();
        let layer = CircuitBreakerLayer::configured_from_registry(&registry, "quotes").unwrap();
        let core = registry.get_breaker("quotes").unwrap();
        assert!(Arc::ptr_eq(layer.breaker(), &core));
        assert_eq!(layer.clock(), registry.tokio_clock());
        let mut service = layer.layer(Scripted);
        let mut statuses = Vec::new();
        for path in ["/502", "/502", "/200"] {
            statuses.push(
                send(&mut service, get(path))
                    .await
                    .unwrap()
                    .status()
                    .as_u16(),
            );
        }
        // The file's two failures open it; the third request is refused.
        assert_eq!(statuses, [502, 502, 503]);
        assert_eq!(core.state(registry.now()), State::Open);
        assert!(!registry.health().ready);
        let mut opened = 0;
        let mut rejected = 0;
        while let Some(event) = events.try_recv() {
            match event {
                Event::StateChange {
                    to: State::Open, ..
                } => opened += 1,
                Event::Rejected {
                    component: Component::Breaker,
                    ..
                } => rejected += 1,
                _ => {}
            }
        }
        assert_eq!((opened, rejected), (1, 1));
        let missing = CircuitBreakerLayer::configured_from_registry(&registry, "other");
        assert!(matches!(missing, Err(RegistryError::NotFound { .. })));
    }
}
