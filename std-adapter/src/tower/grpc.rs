//! The layers' refusals as gRPC answers ([`GrpcBreakerResponse`],
//! [`GrpcRateLimitResponse`]), for a tonic (or any gRPC) server.
//!
//! A gRPC client reads a call's outcome from `grpc-status`, not from the
//! HTTP status: the JSON `503` and `429` of the default responders reach it
//! as `UNAVAILABLE` and `UNAVAILABLE` with their message lost (gRPC's
//! mapping of HTTP statuses it did not expect). These responders answer
//! the way a gRPC server fails a call: a *trailers-only* response (HTTP
//! 200, `content-type: application/grpc`, an empty body, the status in
//! the headers), the message percent-encoded as the gRPC over HTTP/2
//! specification requires, and the time to wait, when known, in
//! `grpc-retry-pushback-ms` (the server pushback of gRPC's retry design,
//! A6), which gRPC clients with a retry policy obey.

use fusebox::Duration;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::Response;
use percent_encoding::{AsciiSet, CONTROLS};

use crate::redact::redact;
use crate::tower::breaker::{BreakerRejection, BreakerResponder};
use crate::tower::rate_limit::{RateLimitRejection, RateLimitResponder, Refusal};

const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
const GRPC_PUSHBACK: HeaderName = HeaderName::from_static("grpc-retry-pushback-ms");

/// `INVALID_ARGUMENT`.
const INVALID_ARGUMENT: u8 = 3;
/// `RESOURCE_EXHAUSTED`.
const RESOURCE_EXHAUSTED: u8 = 8;
/// `UNAVAILABLE`.
const UNAVAILABLE: u8 = 14;

/// The largest pushback sent, in ms (about 24.8 days): gRPC clients read
/// it into a signed 32-bit count (grpc-java takes anything larger as "do
/// not retry"; a larger one overflows some clients' conversion to a
/// duration).
const MAX_PUSHBACK_MS: u64 = i32::MAX as u64;

/// What `grpc-retry-pushback-ms` tells a client with a retry policy.
#[derive(Clone, Copy, Debug)]
enum Pushback {
    /// Retry after this wait (whole milliseconds, rounded up, at most
    /// [`MAX_PUSHBACK_MS`]).
    After(Duration),
    /// Do not retry (a negative pushback).
    Never,
}

/// A trailers-only gRPC answer with status `code`, `message` and, if
/// given, a pushback.
fn trailers_only<B: Default>(code: u8, message: &str, pushback: Option<Pushback>) -> Response<B> {
    let mut response = Response::new(B::default());
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert(GRPC_STATUS, HeaderValue::from(u16::from(code)));
    if let Ok(message) = HeaderValue::from_bytes(&percent_encode(message)) {
        headers.insert(GRPC_MESSAGE, message);
    }
    match pushback {
        Some(Pushback::After(wait)) => {
            let ms = wait.as_micros().div_ceil(1_000).min(MAX_PUSHBACK_MS);
            headers.insert(GRPC_PUSHBACK, HeaderValue::from(ms));
        }
        Some(Pushback::Never) => {
            headers.insert(GRPC_PUSHBACK, HeaderValue::from_static("-1"));
        }
        None => {}
    }
    response
}

/// What `grpc-message` percent-encodes (gRPC over HTTP/2): every byte
/// outside printable ASCII (those of non-ASCII characters' UTF-8 included)
/// and `%`.
const MESSAGE_ESCAPES: &AsciiSet = &CONTROLS.add(b'%');

/// `message` as `grpc-message` carries it.
fn percent_encode(message: &str) -> Vec<u8> {
    percent_encoding::percent_encode(message.as_bytes(), MESSAGE_ESCAPES)
        .collect::<String>()
        .into_bytes()
}

/// A [`CircuitBreakerLayer`](super::CircuitBreakerLayer)'s refusal as the
/// gRPC status `UNAVAILABLE` (14), with the breaker's name
/// ([redacted](crate::redact)) and state in `grpc-message` and the open time left in `grpc-retry-pushback-ms` (see
/// the module docs; at most `i32::MAX` ms, what gRPC clients read). A
/// breaker forced open (an operator's decision, with no time to wait)
/// answers a pushback of `-1`: "do not retry". The body is empty: any `B: Default` (tonic's and
/// axum's bodies, `String`).
///
/// # Examples
///
/// ```
/// use fusebox::breaker::State;
/// use fusebox::Duration;
/// use fusebox_std::tower::breaker::{BreakerRejection, BreakerResponder, GrpcBreakerResponse};
///
/// let open = BreakerRejection::new("inventory", State::Open, Some(Duration::from_micros(2_500_001)));
/// let response: http::Response<String> = GrpcBreakerResponse.respond(&open);
/// assert_eq!(response.status(), 200);
/// assert_eq!(response.headers()["grpc-status"], "14");
/// assert_eq!(response.headers()["grpc-message"], "circuit breaker inventory is open");
/// assert_eq!(response.headers()["grpc-retry-pushback-ms"], "2501");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GrpcBreakerResponse;

impl<B: Default> BreakerResponder<B> for GrpcBreakerResponse {
    fn respond(&self, rejection: &BreakerRejection) -> Response<B> {
        let state = match rejection.state {
            fusebox::breaker::State::Closed => "closed",
            fusebox::breaker::State::Open => "open",
            fusebox::breaker::State::HalfOpen => "half-open, its trials taken",
            fusebox::breaker::State::ForcedOpen => "forced open",
        };
        let message = format!("circuit breaker {} is {state}", redact(&rejection.name));
        let pushback = match (rejection.state, rejection.retry_after) {
            (_, Some(wait)) => Some(Pushback::After(wait)),
            (fusebox::breaker::State::ForcedOpen, None) => Some(Pushback::Never),
            (_, None) => None,
        };
        trailers_only(UNAVAILABLE, &message, pushback)
    }
}

/// A [`RateLimitLayer`](super::RateLimitLayer)'s refusal as a gRPC status
/// (see the module docs), the body empty (any `B: Default`):
///
/// * [`Refusal::Limited`]: `RESOURCE_EXHAUSTED` (8), the wait in
///   `grpc-retry-pushback-ms`;
/// * [`Refusal::BadKey`]: `INVALID_ARGUMENT` (3), the reason (never the
///   key) in the message;
/// * [`Refusal::Unavailable`] (a full keyed table) and
///   [`Refusal::FailClosed`] (Redis unreachable, with the wait until its
///   next probe): `UNAVAILABLE` (14).
///
/// The policy's name in `grpc-message` is [redacted](crate::redact), as
/// in the logs. The layer adds its `RateLimit` fields to these answers as
/// to any.
///
/// # Examples
///
/// ```
/// use fusebox::Duration;
/// use fusebox_std::tower::rate_limit::{GrpcRateLimitResponse, RateLimitRejection, RateLimitResponder, Refusal};
///
/// let limited = RateLimitRejection::new("api", Refusal::Limited { retry_after: Duration::from_millis(40) });
/// let response: http::Response<String> = GrpcRateLimitResponse.respond(&limited);
/// assert_eq!(response.headers()["grpc-status"], "8");
/// assert_eq!(response.headers()["grpc-retry-pushback-ms"], "40");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GrpcRateLimitResponse;

impl<B: Default> RateLimitResponder<B> for GrpcRateLimitResponse {
    fn respond(&self, rejection: &RateLimitRejection) -> Response<B> {
        let policy = redact(&rejection.name);
        match rejection.refusal {
            Refusal::Limited { retry_after } => trailers_only(
                RESOURCE_EXHAUSTED,
                &format!("rate limit {policy} exceeded"),
                Some(Pushback::After(retry_after)),
            ),
            Refusal::BadKey(e) => {
                trailers_only(INVALID_ARGUMENT, &format!("rate limit {policy}: {e}"), None)
            }
            Refusal::TableFull { retry_after } => trailers_only(
                UNAVAILABLE,
                &format!("rate limit {policy}: no room for another client"),
                Some(Pushback::After(retry_after)),
            ),
            Refusal::Unavailable => trailers_only(
                UNAVAILABLE,
                &format!("rate limit {policy} unavailable"),
                None,
            ),
            Refusal::FailClosed { retry_after } => trailers_only(
                UNAVAILABLE,
                &format!("rate limit {policy} unavailable"),
                Some(Pushback::After(retry_after)),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tower::rate_limit::KeyError;
    use fusebox::breaker::State;

    #[test]
    fn messages_are_percent_encoded_as_grpc_requires() {
        assert_eq!(percent_encode("plain text: ok!"), b"plain text: ok!");
        assert_eq!(percent_encode("100%"), b"100%25");
        assert_eq!(percent_encode("a\nb\r\u{7f}"), b"a%0Ab%0D%7F");
        assert_eq!(percent_encode("café"), b"caf%C3%A9");
        // Every byte ends up a valid header value, whatever the name.
        let hostile = "x\0\n\"%\u{ff}\u{1F600}";
        let r = BreakerRejection::new(hostile, State::Open, None);
        let response: Response<String> = GrpcBreakerResponse.respond(&r);
        let message = response.headers()["grpc-message"].to_str().unwrap();
        assert_eq!(
            message,
            "circuit breaker x%00%0A\"%25%C3%BF%F0%9F%98%80 is open"
        );
    }

    #[test]
    fn breaker_refusals_are_unavailable_with_their_wait() {
        for (state, wait, pushback) in [
            (State::Open, Some(Duration::from_micros(1)), Some("1")),
            (
                State::Open,
                Some(Duration::from_millis(60_000)),
                Some("60000"),
            ),
            (State::Open, Some(Duration::ZERO), Some("0")),
            (State::Open, Some(Duration::MAX), Some("2147483647")),
            (State::ForcedOpen, None, Some("-1")),
            (State::HalfOpen, None, None),
        ] {
            let r = BreakerRejection::new("db", state, wait);
            let response: Response<String> = GrpcBreakerResponse.respond(&r);
            assert_eq!(response.status(), 200);
            assert!(response.body().is_empty());
            let h = response.headers();
            assert_eq!(h["content-type"], "application/grpc");
            assert_eq!(h["grpc-status"], "14");
            assert_eq!(
                h.get("grpc-retry-pushback-ms").map(|v| v.to_str().unwrap()),
                pushback,
                "{state:?}"
            );
        }
    }

    #[test]
    fn every_limit_refusal_has_its_status() {
        let second = Duration::from_secs(1);
        for (refusal, status, pushback) in [
            (
                Refusal::Limited {
                    retry_after: second,
                },
                "8",
                Some("1000"),
            ),
            (Refusal::BadKey(KeyError::Missing), "3", None),
            (Refusal::Unavailable, "14", None),
            (
                Refusal::TableFull {
                    retry_after: second,
                },
                "14",
                Some("1000"),
            ),
            (
                Refusal::FailClosed {
                    retry_after: second,
                },
                "14",
                Some("1000"),
            ),
        ] {
            let r = RateLimitRejection::new("api", refusal);
            let response: Response<String> = GrpcRateLimitResponse.respond(&r);
            let h = response.headers();
            assert_eq!(h["grpc-status"], status, "{refusal:?}");
            assert_eq!(
                h.get("grpc-retry-pushback-ms").map(|v| v.to_str().unwrap()),
                pushback,
                "{refusal:?}"
            );
            assert!(h["grpc-message"].to_str().unwrap().contains("api"));
        }
        let r = RateLimitRejection::new(
            "api",
            Refusal::Limited {
                retry_after: Duration::MAX,
            },
        );
        let response: Response<String> = GrpcRateLimitResponse.respond(&r);
        assert_eq!(response.headers()["grpc-retry-pushback-ms"], "2147483647");
    }
}
