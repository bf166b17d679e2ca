//! [`CircuitBreakerLayer`]: a tower layer that puts one core
//! [`CircuitBreaker`] in front of an HTTP service.
//!
//! Files as in tower's own middleware: `layer` (configuration), `service`
//! (the decision, on `call`), `future` (holds the permit until the response
//! is complete), `error` (the rejection and its response), `classify` (how
//! a response counts), `grpc` (how a gRPC response counts), `registry`
//! (layers over a registry's breakers); `end_of_body` and `body` record a
//! response when its body ends instead of when its head arrives.

mod body;
mod classify;
mod client_fault;
mod end_of_body;
mod error;
mod future;
mod grpc;
mod layer;
mod registry;
mod service;

pub use crate::tower::grpc::GrpcBreakerResponse;
pub use body::RecordedBody;
pub use classify::HttpClassifier;
pub use client_fault::{
    ClientFault, ClientFaultFuture, ClientFaultLayer, ClientFaultService, WatchedBody,
};
pub use end_of_body::{ClassifyEnd, EndOfBodyFuture, EndOfBodyLayer, EndOfBodyService};
pub use error::{BreakerRejection, BreakerResponder, JsonBreakerResponse};
pub use future::ResponseFuture;
pub use grpc::{GrpcClassifier, GrpcCodeError};
pub use layer::CircuitBreakerLayer;
pub use service::CircuitBreakerService;

use std::sync::Arc;

use fusebox::breaker::Transition;
use fusebox::CircuitBreaker;

use crate::policy::BreakerObserver;
use crate::TokioClock;

/// What every clone of a layer's service shares: one breaker, its clock,
/// its name, the classifier, the observer and the responder. One `Arc` of
/// it per service (cloned per request by hyper and axum) and per admitted
/// response future (inside its permit, see [`Held`]).
pub(crate) struct Shared<C, R> {
    pub(crate) breaker: Arc<CircuitBreaker>,
    pub(crate) name: Arc<str>,
    pub(crate) clock: TokioClock,
    pub(crate) classifier: C,
    pub(crate) observer: Option<Arc<dyn BreakerObserver>>,
    pub(crate) responder: R,
}

impl<C, R> Shared<C, R> {
    /// Reports a transition: to the observer if there is one, else as a
    /// `tracing` event.
    pub(crate) fn transition(&self, t: Transition) {
        match &self.observer {
            Some(observer) => observer.transition(&self.name, t),
            None => crate::policy::log_transition(&self.name, t),
        }
    }
}

/// The pointer an admitted response future's permit holds: the service's
/// [`Shared`], which leads to the breaker, so that the future needs no
/// second `Arc` (two atomic operations fewer per request).
pub(crate) struct Held<C, R>(pub(crate) Arc<Shared<C, R>>);

impl<C, R> std::ops::Deref for Held<C, R> {
    type Target = CircuitBreaker;

    fn deref(&self) -> &CircuitBreaker {
        &self.0.breaker
    }
}

impl<C, R> std::fmt::Debug for Held<C, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Held").field(&self.0.name).finish()
    }
}

#[cfg(test)]
mod end_of_body_tests;
#[cfg(test)]
mod nested_tests;
#[cfg(test)]
mod readiness_tests;
#[cfg(test)]
mod tests;
