//! What the dashboard shows over time, which no single health report has:
//! each breaker's recent states (a timeline) and the rejections counted
//! per primitive, gathered from the registry's [events](crate::events).
//!
//! No task runs in the background: every read of the dashboard's data
//! first drains the event subscription the router took when it was built
//! (the channel keeps the newest events up to its capacity between two
//! reads; what a slow reader lost is counted as `missed_events`), then
//! compares each breaker's state now with the last one it recorded and
//! records the difference as an *observed* change (a breaker moves from
//! open to half-open when it is next read, without an event; a breaker
//! driven without [`Registry::transition`](crate::Registry::transition)
//! publishes none).

use std::borrow::Cow;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use fusebox::breaker::State;
use fusebox::Instant;

use crate::events::{Component, Event, Subscription};
use crate::health::{state_name, HealthReport};
use crate::registry::{shown, validate_name};
use crate::Registry;

/// Changes kept per breaker; older ones are dropped first.
pub(super) const MAX_CHANGES: usize = 64;

/// Names counted per component; rejections of further names are ignored
/// (the registry bounds its own entries the same way).
const MAX_NAMES: usize = 1024;

/// A breaker entered `state` at `at_us` (registry clock, µs).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub(super) struct Change {
    pub(super) at_us: u64,
    pub(super) state: &'static str,
    /// Seen by comparing states, not reported by an event.
    pub(super) observed: bool,
}

/// The dashboard's view of the activity, serialised into its data.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub(super) struct ActivityView {
    /// Per breaker, its changes in order, the last one its state now.
    pub(super) timelines: BTreeMap<String, Vec<Change>>,
    /// Per fleet breaker (feature `redis`), its local state's changes as
    /// each read found them; absent when none is registered. Apart from
    /// `timelines`: a fleet breaker may have a breaker's name.
    #[cfg(feature = "redis")]
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(super) fleet_timelines: BTreeMap<String, Vec<Change>>,
    /// Per component (`breaker`, `fleet_breaker`, `limiter`,
    /// `keyed_limiter`, `bulkhead`, `other`), per name, rejections
    /// published since the router was built (a name that is no valid
    /// registry name redacted and cut).
    pub(super) rejections: BTreeMap<&'static str, BTreeMap<String, u64>>,
    /// Events the subscription lost by falling behind.
    pub(super) missed_events: u64,
}

pub(super) struct Activity {
    inner: Mutex<Inner>,
}

/// A timeline per name.
type Timelines = BTreeMap<String, VecDeque<Change>>;

struct Inner {
    events: Subscription,
    timelines: Timelines,
    #[cfg(feature = "redis")]
    fleet_timelines: Timelines,
    rejections: BTreeMap<&'static str, BTreeMap<String, u64>>,
}

/// The most events one dashboard read takes from the channel (its
/// default capacity, twice).
const MAX_DRAIN: usize = 2_048;

impl Activity {
    /// Subscribes to `registry`'s events from now on.
    pub(super) fn new(registry: &Registry) -> Self {
        Self {
            inner: Mutex::new(Inner {
                events: registry.events().subscribe_internal(),
                timelines: BTreeMap::new(),
                #[cfg(feature = "redis")]
                fleet_timelines: BTreeMap::new(),
                rejections: BTreeMap::new(),
            }),
        }
    }

    /// Drains the events, records what `report` shows changed, and
    /// returns a copy of everything kept.
    ///
    /// `now` is read just before `report` is built: the report saw the
    /// breakers at `now` or later, so a state it shows is recorded at
    /// `now`, and not at all when a change already recorded is later than
    /// `now` (the report is older than that change: a breaker tripping
    /// while the report was built, or another reader's newer report).
    pub(super) fn update(&self, report: &HealthReport, now: Instant) -> ActivityView {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        // At most one channel's worth per read: under a publishing storm a
        // drain "until empty" could spin as fast as events arrive; what
        // is left waits for the next read (or is counted as missed).
        for _ in 0..MAX_DRAIN {
            let Some(event) = inner.events.try_recv() else {
                break;
            };
            inner.apply(&event, report);
        }
        for (name, breaker) in &report.breakers {
            record(
                &mut inner.timelines,
                name,
                breaker.state,
                now.as_micros(),
                true,
            );
        }
        // Fleet breakers run on their own clock, and publish events only
        // when built with the registry's observer (`breaker_observer`):
        // their timeline is their local state as each read finds it.
        #[cfg(feature = "redis")]
        for (name, breaker) in &report.fleet_breakers {
            record(
                &mut inner.fleet_timelines,
                name,
                breaker.state,
                now.as_micros(),
                true,
            );
        }
        ActivityView {
            timelines: copy(&inner.timelines),
            #[cfg(feature = "redis")]
            fleet_timelines: copy(&inner.fleet_timelines),
            rejections: inner.rejections.clone(),
            missed_events: inner.events.missed(),
        }
    }
}

impl Inner {
    fn apply(&mut self, event: &Event, report: &HealthReport) {
        match event {
            // Only breakers the registry holds get a timeline: event names
            // are not trusted to be bounded. A fleet breaker's events are
            // not its namesake's (they were recorded on the registry
            // breaker's timeline, a trip that breaker never made), and
            // are on the fleet breaker's own clock: its timeline is what
            // the reads observe.
            Event::StateChange {
                name,
                component: Component::Breaker,
                to,
                at,
                ..
            } if report.breakers.contains_key(&**name) => {
                record(&mut self.timelines, name, *to, at.as_micros(), false);
            }
            Event::Rejected {
                name, component, ..
            } => {
                let names = self.rejections.entry(component.as_str()).or_default();
                // Any publisher's name: kept as an error shows one
                // (redacted, cut) unless it is a registry name.
                let name = if validate_name(name).is_ok() {
                    Cow::Borrowed(&**name)
                } else {
                    Cow::Owned(shown(name))
                };
                if let Some(n) = names.get_mut(&*name) {
                    *n += 1;
                } else if names.len() < MAX_NAMES {
                    names.insert(name.into_owned(), 1);
                }
            }
            _ => {}
        }
    }
}

/// Appends `state` to `name`'s timeline in `timelines` unless it is
/// already its last state, or an observation older than its last change;
/// times never go backwards.
fn record(timelines: &mut Timelines, name: &str, state: State, at_us: u64, observed: bool) {
    let state = state_name(state);
    if !timelines.contains_key(name) {
        timelines.insert(name.to_owned(), VecDeque::new());
    }
    let Some(timeline) = timelines.get_mut(name) else {
        return;
    };
    let last = timeline.back();
    if last.is_some_and(|c| c.state == state || (observed && at_us < c.at_us)) {
        return;
    }
    let at_us = last.map_or(at_us, |c| c.at_us.max(at_us));
    if timeline.len() == MAX_CHANGES {
        timeline.pop_front();
    }
    timeline.push_back(Change {
        at_us,
        state,
        observed,
    });
}

/// The timelines as the view serialises them.
fn copy(timelines: &Timelines) -> BTreeMap<String, Vec<Change>> {
    timelines
        .iter()
        .map(|(name, t)| (name.clone(), t.iter().cloned().collect()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use fusebox::breaker::{Config, Outcome};
    use fusebox::Duration;

    fn registry() -> Registry {
        let registry = Registry::new();
        let config = Config::builder()
            .consecutive_failures(1)
            .open_for(Duration::from_secs(5))
            .build()
            .unwrap();
        registry.breaker("db", config).unwrap();
        registry
    }

    fn fail(registry: &Registry, name: &str, now: Instant) {
        let breaker = registry.get_breaker(name).unwrap();
        let permit = breaker.try_acquire(now).unwrap();
        let t = permit
            .record(Outcome::Failure, now, Duration::ZERO)
            .unwrap();
        registry.transition(name, t);
    }

    fn states(view: &ActivityView, name: &str) -> Vec<(u64, &'static str, bool)> {
        view.timelines[name]
            .iter()
            .map(|c| (c.at_us, c.state, c.observed))
            .collect()
    }

    #[test]
    fn events_give_exact_times_and_reads_fill_in_the_rest() {
        let registry = registry();
        let activity = Activity::new(&registry);
        let t0 = Instant::from_secs(1);
        let view = activity.update(&registry.health(), t0);
        assert_eq!(states(&view, "db"), [(1_000_000, "closed", true)]);

        fail(&registry, "db", Instant::from_secs(2));
        let view = activity.update(&registry.health(), Instant::from_secs(3));
        assert_eq!(
            states(&view, "db"),
            [(1_000_000, "closed", true), (2_000_000, "open", false)]
        );
        // The same state read again adds nothing.
        assert_eq!(
            activity.update(&registry.health(), Instant::from_secs(4)),
            view
        );
    }

    /// A breaker that trips after the report was read and before the
    /// events were drained: the event records `open` at the trip, and the
    /// report, older, still says `closed`. That stale observation was
    /// recorded after the trip (closed again at the trip's instant, open
    /// at the next read: a false recovery drawn for a second). An
    /// observation older than the last change is now known stale, the
    /// time of an observation being read before its report.
    #[test]
    fn a_report_older_than_the_last_change_records_nothing() {
        let registry = registry();
        let activity = Activity::new(&registry);
        activity.update(&registry.health(), Instant::from_secs(1));
        let observed_at = Instant::from_secs(2);
        let report = registry.health();
        fail(&registry, "db", Instant::from_secs(3));
        let view = activity.update(&report, observed_at);
        assert_eq!(
            states(&view, "db"),
            [(1_000_000, "closed", true), (3_000_000, "open", false)]
        );
        let view = activity.update(&registry.health(), Instant::from_secs(4));
        assert_eq!(view.timelines["db"].len(), 2, "{view:?}");
    }

    #[test]
    fn changes_without_events_are_observed_when_read() {
        let registry = registry();
        let activity = Activity::new(&registry);
        activity.update(&registry.health(), Instant::from_secs(1));
        registry
            .get_breaker("db")
            .unwrap()
            .force_open(registry.now());
        let view = activity.update(&registry.health(), Instant::from_secs(9));
        assert_eq!(
            view.timelines["db"][1],
            Change {
                at_us: 9_000_000,
                state: "forced_open",
                observed: true
            }
        );
    }

    #[test]
    fn timelines_are_bounded_and_unknown_breakers_ignored() {
        let registry = registry();
        let activity = Activity::new(&registry);
        for i in 0..(MAX_CHANGES as u64 + 10) {
            let to = if i % 2 == 0 {
                State::Open
            } else {
                State::Closed
            };
            for name in ["db", "ghost"] {
                registry.events().publish(Event::StateChange {
                    name: name.into(),
                    component: Component::Breaker,
                    from: State::Closed,
                    to,
                    at: Instant::from_micros(i),
                });
            }
        }
        let view = activity.update(&registry.health(), Instant::from_secs(1));
        assert_eq!(view.timelines["db"].len(), MAX_CHANGES);
        assert!(!view.timelines.contains_key("ghost"));
        let times: Vec<u64> = view.timelines["db"].iter().map(|c| c.at_us).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    }

    /// A fleet breaker may have a registry breaker's name. Its events
    /// (published through the registry's observer) were taken for that
    /// breaker's: its `open` recorded on the registry breaker's timeline
    /// (a trip it never made, "recovered" at the next read), its
    /// refusals counted as that breaker's. Now each goes by component.
    #[test]
    fn a_fleet_breakers_events_are_not_its_namesakes() {
        let registry = registry();
        let activity = Activity::new(&registry);
        activity.update(&registry.health(), Instant::from_secs(1));
        let events = registry.events();
        events.publish(Event::StateChange {
            name: "db".into(),
            component: Component::FleetBreaker,
            from: State::Closed,
            to: State::Open,
            at: Instant::from_secs(2),
        });
        events.publish(Event::Rejected {
            name: "db".into(),
            component: Component::FleetBreaker,
            at: Instant::from_secs(2),
        });
        let view = activity.update(&registry.health(), Instant::from_secs(3));
        assert_eq!(states(&view, "db"), [(1_000_000, "closed", true)]);
        assert_eq!(
            serde_json::to_value(&view.rejections).unwrap(),
            serde_json::json!({"fleet_breaker": {"db": 1}})
        );
        // The registry breaker's own event still lands on its timeline.
        fail(&registry, "db", Instant::from_secs(4));
        let view = activity.update(&registry.health(), Instant::from_secs(5));
        assert_eq!(
            states(&view, "db"),
            [(1_000_000, "closed", true), (4_000_000, "open", false)]
        );
    }

    #[test]
    fn rejections_are_counted_per_component_and_name() {
        let registry = registry();
        let activity = Activity::new(&registry);
        for (name, component) in [
            ("api", Component::Limiter),
            ("api", Component::Limiter),
            ("db", Component::Breaker),
        ] {
            registry.events().publish(Event::Rejected {
                name: name.into(),
                component,
                at: Instant::ZERO,
            });
        }
        let view = activity.update(&registry.health(), Instant::ZERO);
        assert_eq!(view.rejections["limiter"]["api"], 2);
        assert_eq!(view.rejections["breaker"]["db"], 1);
        assert_eq!(view.missed_events, 0);
    }

    /// Event names are the publisher's (any `Events::publish`, any
    /// `RejectionReporter`), not the registry's: a rejection's name was
    /// kept and served in the dashboard's data as published, a URL with
    /// its password or a name of any length (1 024 names of it, kept for
    /// the router's life), where the registry's own log of an event name
    /// redacts it. A name that is not a registry name is kept as an error
    /// shows one: redacted and cut; a registry name as it is.
    #[test]
    fn rejected_names_are_redacted_and_cut_unless_registry_names() {
        let registry = registry();
        let activity = Activity::new(&registry);
        let long = "x".repeat(100_000);
        for (name, component) in [
            ("redis://app:pw-secret@cache:6379/0", Component::Other),
            ("redis://app:pw-secret@cache:6379/0", Component::Other),
            (long.as_str(), Component::Other),
            ("api", Component::Limiter),
        ] {
            registry.events().publish(Event::Rejected {
                name: name.into(),
                component,
                at: Instant::ZERO,
            });
        }
        let view = activity.update(&registry.health(), Instant::ZERO);
        let shown = serde_json::to_string(&view.rejections).unwrap();
        assert!(!shown.contains("pw-secret"), "{shown}");
        assert!(shown.len() < 1_000, "{} bytes", shown.len());
        assert_eq!(view.rejections["other"]["redis://app:***@cache:6379/0"], 2);
        assert_eq!(view.rejections["other"].len(), 2);
        assert_eq!(view.rejections["limiter"]["api"], 1);
    }

    #[test]
    fn a_reader_that_falls_behind_counts_what_it_missed() {
        let registry = Registry::builder().events_capacity(2).build();
        let activity = Activity::new(&registry);
        for _ in 0..5 {
            registry.events().publish(Event::Rejected {
                name: "api".into(),
                component: Component::Limiter,
                at: Instant::ZERO,
            });
        }
        let view = activity.update(&registry.health(), Instant::ZERO);
        assert_eq!(
            (view.rejections["limiter"]["api"], view.missed_events),
            (2, 3)
        );
    }
}
