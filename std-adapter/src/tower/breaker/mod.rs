//! [`CircuitBreakerLayer`]: a tower layer that puts one core
//! [`CircuitBreaker`] in front of an HTTP service.
//!
//! Files as in tower's own middleware: `layer` (configuration), `service`
//! (the decision, on `call`), `future` (holds the permit until the response
//! is complete), `error` (the rejection and its response), `classify` (how
//! a response counts), `registry` (layers over a registry's breakers).

mod classify;
mod error;
mod future;
mod layer;
mod registry;
mod service;

pub use classify::HttpClassifier;
pub use error::{BreakerRejection, BreakerResponder, JsonBreakerResponse};
pub use future::ResponseFuture;
pub use layer::CircuitBreakerLayer;
pub use service::CircuitBreakerService;

use std::sync::Arc;

use fusebox::breaker::Transition;
use fusebox::CircuitBreaker;

use crate::policy::BreakerObserver;
use crate::TokioClock;

/// What every clone of a layer's service shares: one breaker, its clock,
/// its name, the classifier and the observer.
pub(crate) struct Shared<C> {
    pub(crate) breaker: Arc<CircuitBreaker>,
    pub(crate) name: Arc<str>,
    pub(crate) clock: TokioClock,
    pub(crate) classifier: C,
    pub(crate) observer: Option<Arc<dyn BreakerObserver>>,
}

impl<C> Shared<C> {
    /// Reports a transition: to the observer if there is one, else as a
    /// `tracing` event.
    pub(crate) fn transition(&self, t: Transition) {
        match &self.observer {
            Some(observer) => observer.transition(&self.name, t),
            None => crate::policy::log_transition(&self.name, t),
        }
    }
}

#[cfg(test)]
mod tests;
