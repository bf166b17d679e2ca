//! Degraded conditions: what the health report lists as the reasons a
//! registry is degraded, set by the user
//! ([`Registry::set_degraded`](super::Registry::set_degraded)) or by a
//! component of the registry (a Redis limiter's `redis_<name>`), each
//! keyed by its source name and its setter.

use std::sync::{Arc, Weak};

use super::{check, Kind, Registry, RegistryError};

/// Who set a condition, part of its key: the user
/// ([`Registry::set_degraded`]) and a component of the registry (a Redis
/// limiter's `redis_<name>`) may report under one source name, and never
/// replace or clear each other's (found by a hostile review: a limiter's
/// recovery cleared the user's own `redis_cache`, and a user clearing
/// theirs hid the limiter's outage).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Setter {
    /// [`Registry::set_degraded`].
    User,
    /// A component, for as long as it lives.
    Component,
}

/// A degraded condition in the report.
pub(crate) struct Condition {
    /// Redacted.
    pub(crate) reason: String,
    /// The component that set it, if any: the condition ends with it.
    owner: Option<Weak<()>>,
}

impl Condition {
    /// Whether it is still reported: set by the user, or by a component
    /// that still exists.
    pub(crate) fn is_live(&self) -> bool {
        self.owner.as_ref().is_none_or(|o| o.strong_count() > 0)
    }
}

impl Registry {
    /// Sets or clears the condition `source` (see `Registry::set_degraded`).
    /// With an `owner`, the condition is a component's (a user's without),
    /// and lasts no longer than it: once every
    /// strong reference is gone it is no longer reported (and its entry is
    /// removed at the next change), so a component dropped while degraded
    /// leaves nothing behind, without taking any lock when it is dropped.
    pub(crate) fn set_condition(
        &self,
        source: &str,
        reason: Option<String>,
        owner: Option<&Arc<()>>,
    ) -> Result<(), RegistryError> {
        check(Kind::Condition, source)?;
        self.put_condition(source, reason, owner.map(Arc::downgrade))
    }

    /// [`set_condition`](Self::set_condition) of a source fusebox made
    /// from a valid name (`redis_<limiter>`), taken as it is: a prefix
    /// may take it past [`MAX_NAME_LEN`](crate::registry::MAX_NAME_LEN)
    /// (found by a hostile review: the outage of a limiter with a
    /// 59-byte name never reached the report).
    /// The owner is given as a `Weak`, so that a task working for the
    /// component (a limiter's background probe) can report for it without
    /// ever holding it alive.
    pub(crate) fn put_condition(
        &self,
        source: &str,
        reason: Option<String>,
        owner: Option<Weak<()>>,
    ) -> Result<(), RegistryError> {
        let setter = if owner.is_some() {
            Setter::Component
        } else {
            Setter::User
        };
        let key = (Box::<str>::from(source), setter);
        let mut e = self.write();
        e.conditions.retain(|_, c| c.is_live());
        match reason {
            None => {
                e.conditions.remove(&key);
            }
            Some(reason) => {
                if !e.conditions.contains_key(&key) {
                    self.room(Kind::Condition, e.conditions.len())?;
                }
                e.conditions.insert(key, Condition { reason, owner });
            }
        }
        Ok(())
    }
}
