//! [`RegistryBuilder`]: clock, event capacity, entry limit, configuration.

use std::sync::RwLock;

use super::{
    Entries, FieldError, Kind, Registry, RegistryConfig, RegistryConfigError, RegistryError,
};
use crate::events::Events;

/// Builds a [`Registry`].
///
/// # Examples
///
/// ```
/// use fusebox::Instant;
/// use fusebox_std::Registry;
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let registry = Registry::builder().events_capacity(64).max_entries(16).build();
/// assert!(registry.now() >= Instant::ZERO);
/// # });
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct RegistryBuilder {
    pub(super) clock: Option<crate::TokioClock>,
    pub(super) events_capacity: usize,
    pub(super) max_entries: usize,
}

impl RegistryBuilder {
    /// The clock of the registry and of everything it builds
    /// ([`Registry::now`], the health report, the policies and layers it
    /// makes, the events' times); default: a [`TokioClock`](crate::TokioClock)
    /// started at `build` (paused tokio time drives it). Give it the clock
    /// of the adapters you build beside the registry around the same core
    /// structures, so that every reader shares one time scale (a core
    /// structure read through two origins misjudges its deadlines). It is
    /// a `TokioClock` on purpose: the registry's policies sleep on tokio's
    /// timer, and a second clock of another origin (a `StdClock`, say)
    /// would make the health report and the layers disagree about time.
    ///
    /// ```
    /// use fusebox::Clock;
    /// use fusebox_std::{Registry, TokioClock};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// let clock = TokioClock::new();
    /// tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    /// let registry = Registry::builder().clock(clock).build();
    /// assert_eq!(registry.now(), clock.now());
    /// assert_eq!(registry.tokio_clock(), clock);
    /// # });
    /// ```
    pub fn clock(mut self, clock: crate::TokioClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Events kept for slow subscribers (default 1024; at most
    /// [`Events::MAX_CAPACITY`]; see [`Events::new`]).
    ///
    /// ```
    /// use fusebox_std::Registry;
    ///
    /// assert_eq!(Registry::builder().events_capacity(8).build().events().capacity(), 8);
    /// ```
    pub fn events_capacity(mut self, capacity: usize) -> Self {
        self.events_capacity = capacity;
        self
    }

    /// Entries allowed per kind (default 1024).
    ///
    /// ```
    /// use fusebox_std::{Registry, TrackerConfig};
    ///
    /// let registry = Registry::builder().max_entries(1).build();
    /// registry.tracker("a", TrackerConfig::default())?;
    /// assert!(registry.tracker("b", TrackerConfig::default()).is_err());
    /// # Ok::<(), fusebox_std::registry::RegistryError>(())
    /// ```
    pub fn max_entries(mut self, max: usize) -> Self {
        self.max_entries = max;
        self
    }

    /// The registry, empty.
    ///
    /// ```
    /// use fusebox_std::Registry;
    ///
    /// assert!(Registry::builder().build().health().breakers.is_empty());
    /// ```
    pub fn build(self) -> Registry {
        Registry {
            tokio_clock: self.clock.unwrap_or_default(),
            started: tokio::time::Instant::now(),
            max_entries: self.max_entries,
            events: Events::new(self.events_capacity),
            entries: RwLock::new(Entries::default()),
        }
    }

    /// The registry, with everything `config` declares: breakers, limiters
    /// and trackers built, keyed limiters ready for
    /// [`Registry::configured_keyed_limiter`]. The configuration's
    /// `events_capacity`, when set, replaces the builder's.
    ///
    /// # Errors
    ///
    /// Every invalid setting, each named by its path.
    ///
    /// ```
    /// use fusebox_std::registry::{Registry, RegistryConfig};
    ///
    /// let config = RegistryConfig::from_toml("[limiters.api]\nrate = 10\n")?;
    /// let registry = Registry::builder().build_from_config(&config)?;
    /// assert!(registry.get_limiter("api").is_some());
    /// # Ok::<(), fusebox_std::registry::RegistryConfigError>(())
    /// ```
    pub fn build_from_config(
        mut self,
        config: &RegistryConfig,
    ) -> Result<Registry, RegistryConfigError> {
        let built = config.checked()?;
        if let Some(capacity) = config.events_capacity {
            self.events_capacity = capacity;
        }
        let registry = self.build();
        let mut errors = Vec::new();
        let mut report = |table: &str, name: &str, e: RegistryError| {
            errors.push(match e {
                RegistryError::InvalidConfig(f) => f,
                other => FieldError::new(format!("{table}.{name}"), other.to_string()),
            });
        };
        for (name, (breaker, required)) in &built.breakers {
            let made = registry.breaker(name, *breaker);
            if let Err(e) = made.and_then(|_| registry.set_required(name, *required)) {
                report("breakers", name, e);
            }
        }
        for (name, quota) in &built.limiters {
            if let Err(e) = registry.limiter(name, *quota) {
                report("limiters", name, e);
            }
        }
        for (name, (slots, overflow)) in &built.bulkheads {
            if let Err(e) = registry.bulkhead(name, *slots, *overflow) {
                report("bulkheads", name, e);
            }
        }
        for (name, tracker) in &config.trackers {
            if let Err(e) = registry.tracker(name, *tracker) {
                report("trackers", name, e);
            }
        }
        {
            // Built on first use, but bounded now, as every other kind is:
            // a declared one past the limit would fail only at its use.
            let mut entries = registry.write();
            for (name, spec) in built.keyed {
                match registry.room(Kind::KeyedLimiter, entries.keyed_specs.len()) {
                    Ok(()) => {
                        entries.keyed_specs.insert(name.into_boxed_str(), spec);
                    }
                    Err(e) => report("keyed_limiters", &name, e),
                }
            }
        }
        if errors.is_empty() {
            Ok(registry)
        } else {
            Err(RegistryConfigError::new(errors))
        }
    }
}
