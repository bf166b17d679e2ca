//! What a refused request is ([`BreakerRejection`]) and how it becomes a
//! response ([`BreakerResponder`], default [`JsonBreakerResponse`]).

use std::sync::Arc;

use fusebox::breaker::State;
use fusebox::Duration;
use http::{Response, StatusCode};

use crate::redact::redact;
use crate::tower::headers;

/// A request the breaker refused, handed to the [`BreakerResponder`].
///
/// # Examples
///
/// ```
/// use fusebox::breaker::State;
/// use fusebox::Duration;
/// use fusebox_std::tower::breaker::BreakerRejection;
///
/// let r = BreakerRejection::new("payments", State::Open, Some(Duration::from_millis(1_200)));
/// assert_eq!(r.retry_after_secs(), Some(2)); // rounded up
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct BreakerRejection {
    /// The breaker's name (the layer's).
    pub name: Arc<str>,
    /// The state that refused: `Open`, `HalfOpen` (every trial slot taken)
    /// or `ForcedOpen`.
    pub state: State,
    /// When the breaker lets a trial through, as the core says; `None`
    /// when that depends on other calls (half-open) or an operator (forced).
    pub retry_after: Option<Duration>,
}

impl BreakerRejection {
    /// A rejection by breaker `name` in `state`.
    ///
    /// ```
    /// use fusebox::breaker::State;
    /// use fusebox_std::tower::breaker::BreakerRejection;
    ///
    /// assert_eq!(BreakerRejection::new("db", State::ForcedOpen, None).retry_after_secs(), None);
    /// ```
    pub fn new(name: impl Into<Arc<str>>, state: State, retry_after: Option<Duration>) -> Self {
        Self {
            name: name.into(),
            state,
            retry_after,
        }
    }

    /// [`retry_after`](Self::retry_after) in whole seconds, rounded up (the
    /// value of a delta-seconds `Retry-After`), never earlier than the core
    /// said, and at least 1 (a refused client told `0` comes straight
    /// back).
    ///
    /// ```
    /// use fusebox::breaker::State;
    /// use fusebox::Duration;
    /// use fusebox_std::tower::breaker::BreakerRejection;
    ///
    /// let r = BreakerRejection::new("db", State::Open, Some(Duration::from_secs(30)));
    /// assert_eq!(r.retry_after_secs(), Some(30));
    /// ```
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after.map(headers::retry_secs)
    }
}

/// Shows the name redacted, as the layer's own `Debug` does: a name built
/// from an upstream's URL or a query can carry a credential, and a
/// responder or a logging layer that prints the rejection with `{:?}`
/// must not write it.
///
/// ```
/// use fusebox::breaker::State;
/// use fusebox_std::tower::breaker::BreakerRejection;
///
/// let r = BreakerRejection::new("redis://app:hunter2@cache", State::Open, None);
/// assert!(!format!("{r:?}").contains("hunter2"));
/// ```
impl std::fmt::Debug for BreakerRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BreakerRejection")
            .field("name", &redact(&self.name))
            .field("state", &self.state)
            .field("retry_after", &self.retry_after)
            .finish()
    }
}

/// Turns a [`BreakerRejection`] into the response the client gets.
///
/// Implemented by [`JsonBreakerResponse`] (the default) and by every
/// `Fn(&BreakerRejection) -> http::Response<B>`: a gRPC service answers
/// with a `grpc-status` instead, for example.
///
/// # Examples
///
/// ```
/// use fusebox::breaker::State;
/// use fusebox_std::tower::breaker::{BreakerRejection, BreakerResponder};
///
/// let plain = |r: &BreakerRejection| {
///     http::Response::builder().status(503).body(format!("{} is resting", r.name)).unwrap()
/// };
/// let response = plain.respond(&BreakerRejection::new("search", State::Open, None));
/// assert_eq!(response.body(), "search is resting");
/// ```
pub trait BreakerResponder<B>: Send + Sync + 'static {
    /// The response for `rejection`.
    fn respond(&self, rejection: &BreakerRejection) -> Response<B>;
}

impl<B, F> BreakerResponder<B> for F
where
    F: Fn(&BreakerRejection) -> Response<B> + Send + Sync + 'static,
{
    fn respond(&self, rejection: &BreakerRejection) -> Response<B> {
        self(rejection)
    }
}

/// The default response: `503 Service Unavailable`, a delta-seconds
/// `Retry-After` when the core knows when a trial is let through (rounded
/// up), and a small JSON body:
/// `{"error":"circuit_open","breaker":"payments","state":"open","retry_after":30}`
/// (`retry_after` is `null` when unknown). The name is
/// [redacted](crate::redact), as in the logs: every refused client reads
/// it.
///
/// # Examples
///
/// ```
/// use fusebox::breaker::State;
/// use fusebox::Duration;
/// use fusebox_std::tower::breaker::{BreakerRejection, BreakerResponder, JsonBreakerResponse};
///
/// let r = BreakerRejection::new("payments", State::Open, Some(Duration::from_millis(29_001)));
/// let response: http::Response<String> = JsonBreakerResponse.respond(&r);
/// assert_eq!(response.status(), 503);
/// assert_eq!(response.headers()["retry-after"], "30");
/// assert_eq!(response.body(), r#"{"breaker":"payments","error":"circuit_open","retry_after":30,"state":"open"}"#);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JsonBreakerResponse;

impl<B: From<String>> BreakerResponder<B> for JsonBreakerResponse {
    fn respond(&self, rejection: &BreakerRejection) -> Response<B> {
        let state = match rejection.state {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
            State::ForcedOpen => "forced_open",
        };
        let body = serde_json::json!({
            "error": "circuit_open",
            "breaker": redact(&rejection.name),
            "state": state,
            "retry_after": rejection.retry_after_secs(),
        });
        let mut response = headers::json(StatusCode::SERVICE_UNAVAILABLE, &body);
        if let Some(wait) = rejection.retry_after {
            headers::insert_retry_after(response.headers_mut(), wait);
        }
        response
    }
}
