//! Bulkheads in the registry.

use super::{conflict, FieldError, Kind, Registry, RegistryError};
use crate::events::Component;
use crate::policy::{Bulkhead, Overflow};

/// The most slots or queued calls a configured bulkhead may declare.
const MAX_SLOTS: u64 = 1 << 20;

/// A bulkhead in a configuration file: `max_concurrent` slots; with
/// `max_queued`, calls beyond them wait (first come, first served) for at
/// most `max_wait` (default `"1s"`), else they are refused at once.
///
/// ```
/// use fusebox_std::registry::{BulkheadSpec, Registry, RegistryConfig};
///
/// let config = RegistryConfig::from_toml(r#"
///     [bulkheads.db]
///     max_concurrent = 16
///     max_queued = 64
///     max_wait = "50ms"
/// "#)?;
/// assert_eq!(config.bulkheads["db"].max_concurrent, Some(16));
/// let registry = Registry::from_config(&config)?;
/// assert_eq!(registry.health().bulkheads["db"].max_concurrent, 16);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BulkheadSpec {
    /// Calls in flight at once (required, 1..=1048576).
    pub max_concurrent: Option<u64>,
    /// Calls that may wait for a slot (0..=1048576; absent or 0: refuse at
    /// once).
    pub max_queued: Option<u64>,
    /// The longest a call waits (at least `"1us"`, default `"1s"`; only
    /// with a `max_queued` of 1 or more).
    pub max_wait: Option<String>,
}

impl BulkheadSpec {
    /// The settings, or `None` with every problem pushed to `errors`.
    pub(super) fn build(
        &self,
        path: &str,
        errors: &mut Vec<FieldError>,
    ) -> Option<(usize, Overflow)> {
        let before = errors.len();
        let mut at = |field: &str, message: String| {
            errors.push(FieldError::new(format!("{path}.{field}"), message));
        };
        let slots = match self.max_concurrent {
            None => {
                at("max_concurrent", "required".into());
                0
            }
            Some(n) if !(1..=MAX_SLOTS).contains(&n) => {
                at(
                    "max_concurrent",
                    format!("must be 1..={MAX_SLOTS}, got {n}"),
                );
                0
            }
            Some(n) => n,
        };
        let overflow = match self.max_queued {
            None | Some(0) => {
                if self.max_wait.is_some() {
                    at("max_wait", "only with max_queued of 1 or more".into());
                }
                Overflow::Reject
            }
            Some(q) if q > MAX_SLOTS => {
                at("max_queued", format!("must be 0..={MAX_SLOTS}, got {q}"));
                Overflow::Reject
            }
            Some(q) => {
                let wait = match self.max_wait.as_deref().map(super::spec::parse_duration) {
                    None => std::time::Duration::from_secs(1),
                    Some(Ok(d)) if d.as_micros() == 0 => {
                        at("max_wait", "must be at least 1us".into());
                        std::time::Duration::ZERO
                    }
                    Some(Ok(d)) => std::time::Duration::from_micros(d.as_micros()),
                    Some(Err(e)) => {
                        at("max_wait", e);
                        std::time::Duration::ZERO
                    }
                };
                Overflow::Queue {
                    max_queued: usize::try_from(q).unwrap_or(usize::MAX),
                    max_wait: wait,
                }
            }
        };
        (errors.len() == before).then(|| (usize::try_from(slots).unwrap_or(usize::MAX), overflow))
    }
}

/// A bulkhead as the registry keeps it: the policy (clones share its slots)
/// and what it was created with.
pub(crate) struct BulkheadEntry {
    pub(crate) bulkhead: Bulkhead,
    pub(crate) max_concurrent: usize,
    overflow: Overflow,
}

impl Registry {
    /// The bulkhead `name`, created with `max_concurrent` slots and
    /// `overflow` if it does not exist. Every clone handed out shares the
    /// same slots, and the health report and Prometheus text show its
    /// figures (`in_use`, `queued`, `rejected`).
    ///
    /// # Errors
    ///
    /// [`RegistryError::InvalidName`], [`RegistryError::Conflict`] if it
    /// exists with other settings, [`RegistryError::Full`],
    /// [`RegistryError::InvalidConfig`] for settings
    /// [`Bulkhead::new`] refuses (no slots, a queue of no places or no
    /// wait).
    ///
    /// ```
    /// use fusebox_std::policy::Overflow;
    /// use fusebox_std::Registry;
    ///
    /// let registry = Registry::new();
    /// let db = registry.bulkhead("db", 2, Overflow::Reject)?;
    /// let _a = db.try_acquire()?;
    /// let _b = registry.bulkhead("db", 2, Overflow::Reject)?.try_acquire()?; // the same slots
    /// assert!(db.try_acquire().is_err());
    /// let report = &registry.health().bulkheads["db"];
    /// assert_eq!((report.in_use, report.max_concurrent, report.rejected), (2, 2, 1));
    /// assert!(registry.bulkhead("db", 3, Overflow::Reject).is_err()); // other settings
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn bulkhead(
        &self,
        name: &str,
        max_concurrent: usize,
        overflow: Overflow,
    ) -> Result<Bulkhead, RegistryError> {
        self.get_or_insert(
            Kind::Bulkhead,
            name,
            |e| &mut e.bulkheads,
            |entry| {
                (entry.max_concurrent == max_concurrent && entry.overflow == overflow)
                    .then(|| entry.bulkhead.clone())
                    .ok_or_else(|| conflict(Kind::Bulkhead, name))
            },
            || {
                let bulkhead = Bulkhead::new(max_concurrent, overflow)
                    .map_err(|e| {
                        RegistryError::InvalidConfig(FieldError::new(
                            format!("bulkheads.{name}"),
                            e.to_string(),
                        ))
                    })?
                    .reporting_to(self.reporter(name, Component::Bulkhead));
                let entry = BulkheadEntry {
                    bulkhead: bulkhead.clone(),
                    max_concurrent,
                    overflow,
                };
                Ok((entry, bulkhead))
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use crate::policy::Overflow;
    use crate::Registry;

    /// The report shows the slots the bulkhead has: a request past tokio's
    /// semaphore limit is cut to it (found by a hostile review: the report
    /// and `/metrics` showed the number asked for). Asking again with the
    /// same number is the same bulkhead.
    #[test]
    fn the_report_shows_the_slots_the_bulkhead_has() {
        let registry = Registry::new();
        let huge = registry
            .bulkhead("huge", usize::MAX, Overflow::Reject)
            .unwrap();
        let slots = huge.max_concurrent();
        assert!(slots < usize::MAX);
        assert_eq!(registry.health().bulkheads["huge"].max_concurrent, slots);
        assert!(registry
            .bulkhead("huge", usize::MAX, Overflow::Reject)
            .is_ok());
        let text = registry.to_prometheus();
        assert!(
            text.contains(&format!(
                "fusebox_bulkhead_max_concurrent{{name=\"huge\"}} {slots}\n"
            )),
            "{text}"
        );
    }
}
