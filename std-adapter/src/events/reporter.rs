//! [`RejectionReporter`]: how a limiter or a bulkhead tells the events
//! channel (and `tracing`) that it refused a call.

use std::fmt;
use std::sync::Arc;

use fusebox::Clock;

use super::{Component, Event, Events};
use crate::redact::Redacted;
use crate::TokioClock;

/// Publishes a policy's refusals as [`Event::Rejected`] on an [`Events`]
/// channel, stamped with a clock, and logs each at `debug` with the fields
/// `name` and `component`. Cheap to clone.
///
/// [`Limiter`](crate::policy::Limiter),
/// [`KeyedLimiter`](crate::policy::KeyedLimiter) and
/// [`Bulkhead`](crate::policy::Bulkhead) take one with `reporting_to`;
/// the [`Registry`](crate::Registry) attaches its own to the policies it
/// builds ([`Registry::limiter_policy`](crate::Registry::limiter_policy),
/// [`Registry::bulkhead`](crate::Registry::bulkhead)).
///
/// # Examples
///
/// ```
/// use fusebox_std::events::{Component, Event, Events, RejectionReporter};
/// use fusebox_std::TokioClock;
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// let events = Events::new(8);
/// let mut sub = events.subscribe();
/// let reporter = RejectionReporter::new("search", Component::Limiter, &events, TokioClock::new());
/// reporter.report();
/// assert!(matches!(
///     sub.try_recv(),
///     Some(Event::Rejected { ref name, component: Component::Limiter, .. }) if &**name == "search"
/// ));
/// # });
/// ```
#[derive(Clone)]
pub struct RejectionReporter {
    name: Arc<str>,
    component: Component,
    events: Events,
    clock: TokioClock,
}

impl fmt::Debug for RejectionReporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RejectionReporter")
            .field("name", &crate::redact::redact(&self.name))
            .field("component", &self.component)
            .finish_non_exhaustive()
    }
}

impl RejectionReporter {
    /// A reporter for the `component` named `name` (a label: keep secrets
    /// out of it), publishing to `events` at `clock`'s time.
    ///
    /// ```
    /// use fusebox_std::events::{Component, Events, RejectionReporter};
    /// use fusebox_std::TokioClock;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let reporter = RejectionReporter::new("db", Component::Bulkhead, &Events::new(4), TokioClock::new());
    /// assert_eq!((reporter.name(), reporter.component()), ("db", Component::Bulkhead));
    /// # });
    /// ```
    pub fn new(
        name: impl Into<Arc<str>>,
        component: Component,
        events: &Events,
        clock: TokioClock,
    ) -> Self {
        Self {
            name: name.into(),
            component,
            events: events.clone(),
            clock,
        }
    }

    /// The name refusals are reported under.
    ///
    /// ```
    /// # use fusebox_std::events::{Component, Events, RejectionReporter};
    /// # use fusebox_std::TokioClock;
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let reporter = RejectionReporter::new("api", Component::Limiter, &Events::new(4), TokioClock::new());
    /// assert_eq!(reporter.name(), "api");
    /// # });
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The kind of primitive that refuses.
    ///
    /// ```
    /// # use fusebox_std::events::{Component, Events, RejectionReporter};
    /// # use fusebox_std::TokioClock;
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let reporter = RejectionReporter::new("api", Component::KeyedLimiter, &Events::new(4), TokioClock::new());
    /// assert_eq!(reporter.component(), Component::KeyedLimiter);
    /// # });
    /// ```
    pub fn component(&self) -> Component {
        self.component
    }

    /// Reports one refusal: an [`Event::Rejected`] at the clock's now, and
    /// a `debug` log line. Never blocks.
    ///
    /// ```
    /// # use fusebox_std::events::{Component, Events, RejectionReporter};
    /// # use fusebox_std::TokioClock;
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let events = Events::new(4);
    /// RejectionReporter::new("api", Component::Limiter, &events, TokioClock::new()).report();
    /// assert_eq!(events.published(), 1);
    /// # });
    /// ```
    pub fn report(&self) {
        tracing::debug!(name = %Redacted(&self.name), component = ?self.component, "call rejected");
        self.events.publish(Event::Rejected {
            name: Arc::clone(&self.name),
            component: self.component,
            at: self.clock.now(),
        });
    }
}
