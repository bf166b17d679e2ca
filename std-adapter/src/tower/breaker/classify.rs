//! [`HttpClassifier`]: how an HTTP response counts for the breaker.

use fusebox::breaker::Outcome;
use http::Response;

use super::BreakerRejection;
use crate::policy::Classify;
use crate::tower::rate_limit::RateLimitRejection;

/// The default classifier of [`CircuitBreakerLayer`](super::CircuitBreakerLayer):
/// a `5xx` response or an error of the inner service is a failure, a `4xx`
/// is [`Outcome::Ignored`] (the client's fault, not the dependency's: it
/// changes no state, and a half-open trial so classified frees its slot
/// without deciding), anything else a success.
///
/// A refusal of a [`RateLimitLayer`](crate::tower::RateLimitLayer) or of
/// another [`CircuitBreakerLayer`](super::CircuitBreakerLayer) inside the
/// breaker (it carries its [`RateLimitRejection`] or
/// [`BreakerRejection`] in the response's extensions) is ignored too,
/// whatever its status: the limit's own `503`s (a full keyed table, which
/// a client sending new keys causes at will; a Redis outage under
/// fail-closed) say nothing of the service behind it, and an inner
/// breaker's `503`s (a breaker per route inside one for the whole
/// upstream) would otherwise open the outer one for every route when one
/// route's breaker opens. So is an answer marked [`ClientFault`](super::ClientFault)
/// by a [`ClientFaultLayer`](super::ClientFaultLayer) inside the breaker:
/// the request's body failed (its client gone mid-upload).
///
/// Any [`Classify<http::Response<B>, E>`](Classify) can replace it, such as a
/// closure over `&Result<http::Response<B>, E>`. gRPC answers errors with
/// HTTP 200 and a `grpc-status`, which this classifier does not read: a
/// breaker in front of a gRPC service (tonic) takes
/// [`GrpcClassifier`](super::GrpcClassifier).
///
/// # Examples
///
/// ```
/// use fusebox::breaker::Outcome;
/// use fusebox_std::policy::Classify;
/// use fusebox_std::tower::breaker::HttpClassifier;
///
/// let status = |code: u16| Ok::<_, ()>(http::Response::builder().status(code).body(()).unwrap());
/// assert_eq!(HttpClassifier.classify(&status(200)), Outcome::Success);
/// assert_eq!(HttpClassifier.classify(&status(404)), Outcome::Ignored);
/// assert_eq!(HttpClassifier.classify(&status(502)), Outcome::Failure);
/// assert_eq!(HttpClassifier.classify(&Err::<http::Response<()>, _>(())), Outcome::Failure);
///
/// // A rate limit's own refusal, even a 503, is not the service's failure.
/// use fusebox_std::tower::rate_limit::{RateLimitRejection, Refusal};
/// let mut full = status(503);
/// full.as_mut().unwrap().extensions_mut().insert(RateLimitRejection::new("api", Refusal::Unavailable));
/// assert_eq!(HttpClassifier.classify(&full), Outcome::Ignored);
///
/// // So is an inner breaker's.
/// use fusebox::breaker::State;
/// use fusebox_std::tower::breaker::BreakerRejection;
/// let mut open = status(503);
/// open.as_mut().unwrap().extensions_mut().insert(BreakerRejection::new("route", State::Open, None));
/// assert_eq!(HttpClassifier.classify(&open), Outcome::Ignored);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HttpClassifier;

impl<B, E> Classify<Response<B>, E> for HttpClassifier {
    fn classify(&self, result: &Result<Response<B>, E>) -> Outcome {
        match result {
            Ok(response) if is_refusal(response) => Outcome::Ignored,
            Ok(response) if response.status().is_server_error() => Outcome::Failure,
            Ok(response) if response.status().is_client_error() => Outcome::Ignored,
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        }
    }
}

/// Whether `response` is a refusal of a rate-limit or breaker layer (the
/// service behind it did not answer it).
pub(super) fn is_refusal<B>(response: &Response<B>) -> bool {
    let extensions = response.extensions();
    extensions.get::<RateLimitRejection>().is_some()
        || extensions.get::<BreakerRejection>().is_some()
        || extensions.get::<super::ClientFault>().is_some()
}
