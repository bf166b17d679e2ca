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
    /// Every invalid setting, each named by its path; more entries of a
    /// kind than [`max_entries`](Self::max_entries), one error for the
    /// table, on the first entry that does not fit, counting those after
    /// it.
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
        build_each(
            "breakers",
            &built.breakers,
            &mut errors,
            |name, (breaker, required)| {
                registry
                    .breaker(name, *breaker)
                    .and_then(|_| registry.set_required(name, *required))
            },
        );
        build_each("limiters", &built.limiters, &mut errors, |name, quota| {
            registry.limiter(name, *quota).map(drop)
        });
        build_each(
            "bulkheads",
            &built.bulkheads,
            &mut errors,
            |name, (slots, overflow)| registry.bulkhead(name, *slots, *overflow).map(drop),
        );
        build_each(
            "trackers",
            &config.trackers,
            &mut errors,
            |name, tracker| registry.tracker(name, *tracker).map(drop),
        );
        {
            // Built on first use, but bounded now, as every other kind is:
            // a declared one past the limit would fail only at its use.
            let mut entries = registry.write();
            build_each("keyed_limiters", &built.keyed, &mut errors, |name, spec| {
                registry.room(Kind::KeyedLimiter, entries.keyed_specs.len())?;
                entries.keyed_specs.insert(name.into(), *spec);
                Ok(())
            });
        }
        if errors.is_empty() {
            Ok(registry)
        } else {
            Err(RegistryConfigError::new(errors))
        }
    }
}

/// Makes each entry of a configuration's `table` with `make`, every
/// failure pushed to `errors` on the entry's path. Past the registry's
/// limit of entries, one error on the first entry that does not fit,
/// counting those after it (not one per entry: 100 000 entries over the
/// limit would make a message of megabytes).
fn build_each<T>(
    table: &str,
    entries: &std::collections::BTreeMap<String, T>,
    errors: &mut Vec<FieldError>,
    mut make: impl FnMut(&str, &T) -> Result<(), RegistryError>,
) {
    for (i, (name, entry)) in entries.iter().enumerate() {
        match make(name, entry) {
            Ok(()) => {}
            Err(RegistryError::InvalidConfig(f)) => errors.push(f),
            Err(full @ RegistryError::Full { .. }) => {
                let rest = entries.len() - i - 1;
                let more = if rest == 0 {
                    String::new()
                } else {
                    format!(" ({rest} more declared after it)")
                };
                errors.push(FieldError::new(
                    format!("{table}.{name}"),
                    format!("{full}{more}"),
                ));
                return;
            }
            Err(other) => errors.push(FieldError::new(
                format!("{table}.{name}"),
                other.to_string(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::registry::{Registry, RegistryConfig};

    /// A configuration declaring more entries than the registry holds got
    /// one error per entry past the limit: 100 000 breakers over the
    /// default 1024 gave 98 976 errors, a message of about 7 MB in one log
    /// line (found by a hostile review). One error per table now, on the
    /// first entry past the limit, counting the rest.
    #[test]
    fn entries_past_the_limit_are_one_error_per_table() {
        use std::fmt::Write as _;
        let mut text = String::new();
        for i in 0..5 {
            write!(
                text,
                "[breakers.b{i}]\nconsecutive_failures = 1\n[limiters.l{i}]\nrate = 1\n\
                 [keyed_limiters.k{i}]\nrate = 1\n[bulkheads.h{i}]\nmax_concurrent = 1\n\
                 [trackers.t{i}]\n"
            )
            .unwrap();
        }
        let config = RegistryConfig::from_toml(&text).unwrap();
        let err = Registry::builder()
            .max_entries(2)
            .build_from_config(&config)
            .unwrap_err();
        let shown: Vec<String> = err.fields().iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "breakers.b2: registry full: at most 2 entries of kind breaker (2 more declared after it)",
                "limiters.l2: registry full: at most 2 entries of kind limiter (2 more declared after it)",
                "bulkheads.h2: registry full: at most 2 entries of kind bulkhead (2 more declared after it)",
                "trackers.t2: registry full: at most 2 entries of kind tracker (2 more declared after it)",
                "keyed_limiters.k2: registry full: at most 2 entries of kind keyed limiter (2 more declared after it)",
            ]
        );
        // One past the limit reads as before.
        let config = RegistryConfig::from_toml(
            "[breakers.a]\nconsecutive_failures = 1\n[breakers.b]\nconsecutive_failures = 1\n",
        )
        .unwrap();
        let err = Registry::builder()
            .max_entries(1)
            .build_from_config(&config)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "breakers.b: registry full: at most 1 entries of kind breaker"
        );
    }
}
