//! The registry's latency trackers, by name.

use super::{conflict, FieldError, Kind, Registry, RegistryError};
use crate::tracker::{Tracker, TrackerConfig};

impl Registry {
    /// The tracker `name`, created with `config` if it does not exist.
    ///
    /// # Errors
    ///
    /// [`RegistryError::InvalidName`], [`RegistryError::Conflict`],
    /// [`RegistryError::Full`], or [`RegistryError::InvalidConfig`] naming
    /// the field (`trackers.<name>.<field>`).
    ///
    /// ```
    /// use fusebox_std::{Registry, TrackerConfig};
    ///
    /// let registry = Registry::new();
    /// let http = registry.tracker("http", TrackerConfig::default())?;
    /// drop(http.track_operation("GET /"));
    /// assert_eq!(registry.health().trackers["http"]["GET /"].calls, 1);
    /// # Ok::<(), fusebox_std::registry::RegistryError>(())
    /// ```
    pub fn tracker(&self, name: &str, config: TrackerConfig) -> Result<Tracker, RegistryError> {
        self.get_or_insert(
            Kind::Tracker,
            name,
            |e| &mut e.trackers,
            |tracker| {
                (*tracker.config() == config)
                    .then(|| tracker.clone())
                    .ok_or_else(|| conflict(Kind::Tracker, name))
            },
            || {
                let tracker = Tracker::new(config).map_err(|err| {
                    RegistryError::InvalidConfig(FieldError::new(
                        format!("trackers.{name}.{}", err.field()),
                        err.message(),
                    ))
                })?;
                Ok((tracker.clone(), tracker))
            },
        )
    }

    /// The tracker `name`, if it exists.
    ///
    /// ```
    /// use fusebox_std::Registry;
    ///
    /// assert!(Registry::new().get_tracker("http").is_none());
    /// ```
    pub fn get_tracker(&self, name: &str) -> Option<Tracker> {
        self.read().trackers.get(name).cloned()
    }
}
