//! [`GrpcClassifier`]: how a gRPC response counts for the breaker.
//!
//! gRPC answers its errors with HTTP 200 and a `grpc-status`: in the
//! headers of a trailers-only response (how tonic answers a handler's
//! `Err(Status)` and a call to a method it does not serve), else in the
//! trailers after the body. [`HttpClassifier`] sees
//! only the 200, so a breaker over a gRPC service that fails every call
//! with `UNAVAILABLE` would count successes and never open.

use fusebox::breaker::Outcome;
use http::{HeaderMap, Response};

use super::{ClassifyEnd, HttpClassifier};
use crate::policy::Classify;

/// The status codes of gRPC (`google.rpc.Code`), 0 to 16.
const CODES: u32 = 17;
/// `UNKNOWN`: what a status outside 0..=16, or not a number, stands for.
const UNKNOWN: u32 = 2;
/// `UNKNOWN`, `DEADLINE_EXCEEDED`, `UNAVAILABLE`, `DATA_LOSS`.
const DEFAULT_FAILURES: u32 = 1 << 2 | 1 << 4 | 1 << 14 | 1 << 15;

/// A breaker classifier for gRPC services (tonic and any other server of
/// gRPC over HTTP/2), to give
/// [`CircuitBreakerLayer::classifier`](super::CircuitBreakerLayer::classifier).
///
/// * A `grpc-status` in the response's headers decides: `OK` (0) is a
///   success; by default `UNKNOWN` (2), `DEADLINE_EXCEEDED` (4),
///   `UNAVAILABLE` (14) and `DATA_LOSS` (15) are failures, status codes
///   `google.rpc.Code` maps to HTTP 5xx; every other code is
///   [`Outcome::Ignored`], as `4xx` are for [`HttpClassifier`]: the
///   caller's request was at fault, not the service. Two 5xx codes are
///   ignored too, because gRPC libraries answer them to requests any
///   client can send, and such a client could open the breaker at will:
///   `UNIMPLEMENTED` (12, HTTP 501), tonic's answer to any method it does
///   not serve, and `INTERNAL` (13, HTTP 500), the answer the gRPC
///   specification prescribes for a request message that does not parse
///   or a compressed-flag without `grpc-encoding` (tonic also gives it to
///   a unary call sent without its message, or a frame cut short). A
///   service that reports its own faults as `INTERNAL` (tonic's
///   `Status::internal`) and trusts its clients can count it with
///   [`failure_codes`](Self::failure_codes). A code above 16
///   or a value that is not a decimal number counts as `UNKNOWN` (the
///   gRPC specification's reading of a status it does not know).
/// * A response without `grpc-status` in its headers carries it in its
///   trailers, after the body. A layer deciding when the response's
///   headers arrive (the default) does not see them: such a response
///   counts as a success (tonic answers a unary handler's error in the
///   headers, but a streaming call's error in trailers). A layer that
///   [records at the end of the body](super::CircuitBreakerLayer::record_at_end_of_body)
///   reads them ([`ClassifyEnd`]): the trailers' status counts as above
///   (a half-open trial's too, decided then),
///   and a body that ends without one as `UNKNOWN`; a response with
///   `grpc-status` in its headers (trailers-only, `OK` too) is decided by
///   them at once, its empty body not watched. Put such a layer
///   inside tonic's gRPC-Web translation (`GrpcWebLayer`), never outside:
///   gRPC-Web carries the status in the body, not in trailers.
/// * A client can make tonic answer `UNAVAILABLE` or `UNKNOWN` as well: it
///   resets its request stream before its message arrives (`RST_STREAM`
///   with `REFUSED_STREAM`, or with an error code tonic does not know), or
///   closes its connection then (as a client losing its network does), the
///   message cannot be read, and tonic answers the status its reading of
///   the error gives (`UNKNOWN` for a closed connection). Those codes are
///   the service's own failures too, which no classifier can tell apart
///   from the status alone, so they stay failures unless the answer is
///   marked: a [`ClientFaultLayer`](super::ClientFaultLayer) inside the
///   breaker marks the answer to a request whose body failed
///   ([`ClientFault`](super::ClientFault)), which this classifier ignores.
///   Or read the request's message before the breaker, as the layer's "A
///   trial that hangs" says (a reset or a closed connection then fails
///   there, and never reaches the breaker).
/// * `DEADLINE_EXCEEDED` may be caused by the client, whose `grpc-timeout`
///   sets the deadline: a server that answers it when the client's
///   deadline passes (a proxy, or a service passing its deadline on) lets
///   a client choose it. tonic does not (its timeout drops the call, which
///   the layer counts as abandoned); elsewhere, leave 4 out of
///   [`failure_codes`](Self::failure_codes).
/// * A non-2xx HTTP status (a proxy's answer, not gRPC's), an error of the
///   inner service, and a rate limit's or an inner breaker's own refusal
///   count as for [`HttpClassifier`].
///
/// Which codes fail can be chosen with
/// [`failure_codes`](Self::failure_codes).
///
/// # Examples
///
/// ```
/// use fusebox::breaker::Outcome;
/// use fusebox_std::policy::Classify;
/// use fusebox_std::tower::breaker::GrpcClassifier;
///
/// let grpc = |code: &str| {
///     Ok::<_, ()>(http::Response::builder().header("grpc-status", code).body(()).unwrap())
/// };
/// let classifier = GrpcClassifier::new();
/// assert_eq!(classifier.classify(&grpc("0")), Outcome::Success);
/// assert_eq!(classifier.classify(&grpc("14")), Outcome::Failure, "UNAVAILABLE");
/// assert_eq!(classifier.classify(&grpc("5")), Outcome::Ignored, "NOT_FOUND");
/// assert_eq!(classifier.classify(&grpc("13")), Outcome::Ignored, "INTERNAL");
///
/// // INTERNAL and RESOURCE_EXHAUSTED too, for trusted clients of a
/// // service whose quota is its own:
/// let strict = GrpcClassifier::new().failure_codes([2, 4, 8, 13, 14, 15])?;
/// assert_eq!(strict.classify(&grpc("8")), Outcome::Failure);
/// assert_eq!(strict.classify(&grpc("13")), Outcome::Failure);
/// # Ok::<(), fusebox_std::tower::breaker::GrpcCodeError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrpcClassifier {
    /// Bit `c` set: status code `c` is a failure (bit 0, `OK`, never).
    failures: u32,
}

impl GrpcClassifier {
    /// The default codes (see the type's docs).
    ///
    /// ```
    /// use fusebox_std::tower::breaker::GrpcClassifier;
    ///
    /// let grpc = GrpcClassifier::new();
    /// assert!(grpc.is_failure(14)); // UNAVAILABLE
    /// assert!(!grpc.is_failure(5)); // NOT_FOUND: the caller's fault
    /// assert_eq!(grpc, GrpcClassifier::default());
    /// ```
    pub const fn new() -> Self {
        Self {
            failures: DEFAULT_FAILURES,
        }
    }

    /// Counts exactly `codes` as failures (every other non-`OK` code is
    /// ignored).
    ///
    /// # Errors
    ///
    /// [`GrpcCodeError`] if a code is `OK` (0) or not a gRPC status code
    /// (above 16).
    ///
    /// ```
    /// use fusebox_std::tower::breaker::{GrpcClassifier, GrpcCodeError};
    ///
    /// assert!(GrpcClassifier::new().failure_codes([14]).is_ok());
    /// assert_eq!(GrpcClassifier::new().failure_codes([0]), Err(GrpcCodeError { code: 0 }));
    /// assert_eq!(GrpcClassifier::new().failure_codes([17]), Err(GrpcCodeError { code: 17 }));
    /// ```
    pub fn failure_codes(
        self,
        codes: impl IntoIterator<Item = u32>,
    ) -> Result<Self, GrpcCodeError> {
        let mut failures = 0;
        for code in codes {
            if code == 0 || code >= CODES {
                return Err(GrpcCodeError { code });
            }
            failures |= 1 << code;
        }
        Ok(Self { failures })
    }

    /// Whether status code `code` counts as a failure (a code above 16
    /// counts as `UNKNOWN`).
    ///
    /// ```
    /// use fusebox_std::tower::breaker::GrpcClassifier;
    ///
    /// let only_unavailable = GrpcClassifier::new().failure_codes([14])?;
    /// assert!(only_unavailable.is_failure(14));
    /// assert!(!only_unavailable.is_failure(4));
    /// assert!(GrpcClassifier::new().is_failure(99)); // read as UNKNOWN (2), a failure by default
    /// # Ok::<(), fusebox_std::tower::breaker::GrpcCodeError>(())
    /// ```
    pub const fn is_failure(&self, code: u32) -> bool {
        let code = if code < CODES { code } else { UNKNOWN };
        self.failures & 1 << code != 0
    }
}

impl GrpcClassifier {
    /// How status `code` counts.
    const fn outcome(self, code: u32) -> Outcome {
        if code == 0 {
            Outcome::Success
        } else if self.is_failure(code) {
            Outcome::Failure
        } else {
            Outcome::Ignored
        }
    }
}

impl Default for GrpcClassifier {
    fn default() -> Self {
        Self::new()
    }
}

impl<B, E> Classify<Response<B>, E> for GrpcClassifier {
    fn classify(&self, result: &Result<Response<B>, E>) -> Outcome {
        let status = match result {
            Ok(response)
                if response.status().is_success() && !super::classify::is_refusal(response) =>
            {
                response.headers().get("grpc-status")
            }
            _ => None,
        };
        match status {
            None => HttpClassifier.classify(result),
            Some(value) => self.outcome(status_code(value.as_bytes())),
        }
    }
}

/// The status in a streaming response's trailers: as in a head; none
/// at all (a body that ended without its status) counts as `UNKNOWN`, as
/// a gRPC client reads it. A status in the head (a trailers-only answer,
/// `OK` included) ends the call: the head decides, the body is not
/// watched.
impl ClassifyEnd for GrpcClassifier {
    fn classify_end(&self, trailers: Option<&HeaderMap>) -> Outcome {
        match trailers.and_then(|t| t.get("grpc-status")) {
            Some(value) => self.outcome(status_code(value.as_bytes())),
            None => self.outcome(UNKNOWN),
        }
    }

    fn decided_at_head(&self, headers: &HeaderMap) -> bool {
        headers.contains_key("grpc-status")
    }
}

/// The code a `grpc-status` value names: `UNKNOWN` unless it is 1 to 3
/// decimal digits.
fn status_code(value: &[u8]) -> u32 {
    if value.is_empty() || value.len() > 3 || !value.iter().all(u8::is_ascii_digit) {
        return UNKNOWN;
    }
    value
        .iter()
        .fold(0, |code, digit| code * 10 + u32::from(digit - b'0'))
}

/// A code given to [`GrpcClassifier::failure_codes`] that cannot be a
/// failure: `OK` (0), or above 16 (not a gRPC status code).
///
/// # Examples
///
/// ```
/// use fusebox_std::tower::breaker::{GrpcClassifier, GrpcCodeError};
///
/// let err = GrpcClassifier::new().failure_codes([14, 0]).unwrap_err();
/// assert_eq!(err, GrpcCodeError { code: 0 });
/// assert_eq!(err.to_string(), "gRPC status 0 (OK) cannot count as a failure");
/// assert_eq!(GrpcCodeError { code: 17 }.to_string(), "17 is not a gRPC status code (0 to 16)");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrpcCodeError {
    /// The code refused.
    pub code: u32,
}

impl std::fmt::Display for GrpcCodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.code == 0 {
            f.write_str("gRPC status 0 (OK) cannot count as a failure")
        } else {
            write!(f, "{} is not a gRPC status code (0 to 16)", self.code)
        }
    }
}

impl std::error::Error for GrpcCodeError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::unnecessary_wraps)] // what a classifier is given
    fn grpc(code: &str) -> Result<Response<()>, ()> {
        Ok(Response::builder()
            .header("grpc-status", code)
            .body(())
            .unwrap())
    }

    #[test]
    fn every_code_counts_as_its_http_mapping_says_but_those_clients_cause() {
        // google.rpc.Code's HTTP mapping: 5xx fail, 4xx (and 499) ignored;
        // but UNIMPLEMENTED and INTERNAL, a client's made-up method or
        // malformed message.
        let failures = [2, 4, 14, 15];
        for code in 0..CODES {
            let expected = match code {
                0 => Outcome::Success,
                c if failures.contains(&c) => Outcome::Failure,
                _ => Outcome::Ignored,
            };
            let got = GrpcClassifier::new().classify(&grpc(&code.to_string()));
            assert_eq!(got, expected, "grpc-status {code}");
        }
    }

    #[test]
    fn unknown_and_malformed_statuses_count_as_unknown() {
        for value in ["17", "99", "999", "1000", "-1", "", " 0", "0 ", "1x", "０"] {
            let response = Response::builder()
                .header("grpc-status", http::HeaderValue::from_str(value).unwrap())
                .body(())
                .unwrap();
            assert_eq!(
                GrpcClassifier::new().classify(&Ok::<_, ()>(response)),
                Outcome::Failure,
                "{value:?}"
            );
        }
        let quiet = GrpcClassifier::new().failure_codes([14]).unwrap();
        assert_eq!(quiet.classify(&grpc("77")), Outcome::Ignored, "as UNKNOWN");
        assert_eq!(quiet.classify(&grpc("14")), Outcome::Failure);
        assert_eq!(quiet.classify(&grpc("0")), Outcome::Success);
    }

    #[test]
    fn without_a_status_in_the_headers_http_decides() {
        let status = |code: u16| Ok::<_, ()>(Response::builder().status(code).body(()).unwrap());
        let classifier = GrpcClassifier::new();
        assert_eq!(classifier.classify(&status(200)), Outcome::Success);
        assert_eq!(classifier.classify(&status(503)), Outcome::Failure);
        assert_eq!(classifier.classify(&status(404)), Outcome::Ignored);
        assert_eq!(
            classifier.classify(&Err::<Response<()>, _>(())),
            Outcome::Failure
        );
        // A proxy's 502 with a grpc-status of 0 is still the proxy's 502.
        let proxied = Response::builder()
            .status(502)
            .header("grpc-status", "0")
            .body(())
            .unwrap();
        assert_eq!(classifier.classify(&Ok::<_, ()>(proxied)), Outcome::Failure);
    }

    #[test]
    fn a_rate_limits_refusal_is_ignored_whatever_its_grpc_status() {
        use crate::tower::rate_limit::{RateLimitRejection, Refusal};
        let mut refused = grpc("14");
        refused
            .as_mut()
            .unwrap()
            .extensions_mut()
            .insert(RateLimitRejection::new("api", Refusal::Unavailable));
        assert_eq!(GrpcClassifier::new().classify(&refused), Outcome::Ignored);
    }

    #[test]
    fn failure_codes_refuses_ok_and_codes_above_sixteen() {
        let classifier = GrpcClassifier::new();
        assert_eq!(
            classifier.failure_codes([14, 0]),
            Err(GrpcCodeError { code: 0 })
        );
        assert_eq!(
            classifier.failure_codes([u32::MAX]),
            Err(GrpcCodeError { code: u32::MAX })
        );
        let none = classifier.failure_codes([]).unwrap();
        assert_eq!(none.classify(&grpc("13")), Outcome::Ignored);
        assert!(GrpcCodeError { code: 0 }.to_string().contains("OK"));
        assert!(GrpcCodeError { code: 40 }.to_string().contains("40"));
    }
}
