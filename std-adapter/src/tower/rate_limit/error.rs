//! Why a request was refused ([`Refusal`], [`KeyError`]), what to do with
//! a request that has no usable key ([`BadKey`]), and how a refusal becomes
//! a response ([`RateLimitResponder`], default [`JsonRateLimitResponse`]).

use std::fmt;
use std::sync::Arc;

use fusebox::Duration;
use http::{Response, StatusCode};

use crate::redact::redact;
use crate::tower::headers;

/// Why a key function could not make a key of a request.
///
/// # Examples
///
/// ```
/// use fusebox_std::tower::rate_limit::KeyError;
///
/// let e = KeyError::TooLong { len: 10_000, max: 256 };
/// assert_eq!(e.to_string(), "key of 10000 bytes, more than 256");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// What the key is made of is absent (no such header, no client address).
    Missing,
    /// A header value is not UTF-8 (visible ASCII and `obs-text` bytes).
    NotUtf8,
    /// The value is longer than the key function's bound.
    TooLong {
        /// Its length in bytes.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// The value does not parse as the key type (an IP address, say).
    Invalid,
    /// The request carries the key's header more than once: which line a
    /// layer before this one (the one that checked the API key, say) read
    /// is not known, and a client free to add a line would choose its
    /// bucket. A field that is not a list has one line (RFC 9110 § 5.3).
    Ambiguous,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing => f.write_str("no key in the request"),
            Self::NotUtf8 => f.write_str("key is not UTF-8"),
            Self::TooLong { len, max } => write!(f, "key of {len} bytes, more than {max}"),
            Self::Invalid => f.write_str("key does not parse"),
            Self::Ambiguous => f.write_str("key header sent more than once"),
        }
    }
}

impl std::error::Error for KeyError {}

impl KeyError {
    /// A short machine-readable code: `missing`, `not_utf8`, `too_long`,
    /// `invalid`, `ambiguous` (the default response's `reason`).
    ///
    /// ```
    /// use fusebox_std::tower::rate_limit::KeyError;
    ///
    /// assert_eq!(KeyError::NotUtf8.code(), "not_utf8");
    /// ```
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::NotUtf8 => "not_utf8",
            Self::TooLong { .. } => "too_long",
            Self::Invalid => "invalid",
            Self::Ambiguous => "ambiguous",
        }
    }
}

/// What a keyed [`RateLimitLayer`](super::RateLimitLayer) does with a
/// request its key function fails on.
///
/// # Examples
///
/// ```
/// use fusebox_std::tower::rate_limit::BadKey;
///
/// // Requests without an API key share one bucket, "anonymous".
/// let policy: BadKey<String> = BadKey::Default("anonymous".to_owned());
/// assert_ne!(policy, BadKey::Reject);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum BadKey<K> {
    /// Refuse it ([`Refusal::BadKey`]; the default response is `400 Bad
    /// Request`). The default.
    #[default]
    Reject,
    /// Charge it to this key's bucket, shared by every such request.
    Default(K),
}

/// Why the limiter refused a request.
///
/// # Examples
///
/// ```
/// use fusebox::Duration;
/// use fusebox_std::tower::rate_limit::Refusal;
///
/// let r = Refusal::Limited { retry_after: Duration::from_millis(200) };
/// assert!(matches!(r, Refusal::Limited { .. }));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// Out of tokens; one is back after `retry_after` (the core's exact
    /// wait).
    Limited {
        /// The core's wait.
        retry_after: Duration,
    },
    /// A keyed limiter could not charge the key at all: never expected
    /// (the key was checked, one token never exceeds a burst), answered
    /// as a fault of the server. A full table is [`Refusal::TableFull`].
    Unavailable,
    /// The key function failed and the layer is set to
    /// [`BadKey::Reject`].
    BadKey(KeyError),
    /// A keyed limiter had no slot for a new key: its table is full of keys
    /// still in use (under `FullPolicy::Reject`, or a `Shared` limit's
    /// in-process table while Redis is out). A slot frees when a key's
    /// bucket is full again; `retry_after` is a hint, the time one token
    /// takes to come back: within it, every key of the table that was at
    /// most one token short and stopped sending is idle, its slot free for
    /// another (a key further short, or still sending, holds its slot
    /// longer; one nearly full, less). Not the client's fault, so the
    /// default response is `503`, not `429`.
    TableFull {
        /// The time one token takes to come back under the key's quota
        /// (the shortest of a `Shared` limit's rules).
        retry_after: Duration,
    },
    /// A `Shared` limit's backend (Redis, feature `redis`) is out and its
    /// limiter degrades with `Degrade::FailClosed`: no decision was made,
    /// and the limiter asks Redis again in `retry_after`. Not the client's
    /// fault, so the default response is `503`, not `429`.
    FailClosed {
        /// The time until the limiter's next probe of Redis.
        retry_after: Duration,
    },
}

/// A refused request, handed to the [`RateLimitResponder`].
///
/// # Examples
///
/// ```
/// use fusebox::Duration;
/// use fusebox_std::tower::rate_limit::{RateLimitRejection, Refusal};
///
/// let r = RateLimitRejection::new("api", Refusal::Limited { retry_after: Duration::from_micros(2_000_001) });
/// assert_eq!(r.retry_after_secs(), Some(3));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct RateLimitRejection {
    /// The layer's policy name.
    pub name: Arc<str>,
    /// Why.
    pub refusal: Refusal,
}

impl RateLimitRejection {
    /// A rejection by the policy `name`.
    ///
    /// ```
    /// use fusebox_std::tower::rate_limit::{RateLimitRejection, Refusal};
    ///
    /// assert_eq!(&*RateLimitRejection::new("api", Refusal::Unavailable).name, "api");
    /// ```
    pub fn new(name: impl Into<Arc<str>>, refusal: Refusal) -> Self {
        Self {
            name: name.into(),
            refusal,
        }
    }

    /// The wait of a [`Refusal::Limited`] (or [`Refusal::FailClosed`],
    /// [`Refusal::TableFull`]) in
    /// whole seconds, rounded up (a delta-seconds `Retry-After`): never
    /// earlier than the limiter said, and at least 1 (a refused client told
    /// `0` comes straight back: a `Shared` limit failing closed when its
    /// next probe of Redis is already due would say so).
    ///
    /// ```
    /// use fusebox_std::tower::rate_limit::{KeyError, RateLimitRejection, Refusal};
    ///
    /// assert_eq!(RateLimitRejection::new("api", Refusal::BadKey(KeyError::Missing)).retry_after_secs(), None);
    /// ```
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self.refusal {
            Refusal::Limited { retry_after }
            | Refusal::FailClosed { retry_after }
            | Refusal::TableFull { retry_after } => Some(headers::retry_secs(retry_after)),
            _ => None,
        }
    }
}

/// Shows the name redacted, as the layer's own `Debug` does: a name built
/// from an upstream's URL or a query can carry a credential, and a
/// responder or a logging layer that prints the rejection with `{:?}`
/// must not write it.
///
/// ```
/// use fusebox_std::tower::rate_limit::{RateLimitRejection, Refusal};
///
/// let r = RateLimitRejection::new("upstream?token=s3cret", Refusal::Unavailable);
/// assert!(!format!("{r:?}").contains("s3cret"));
/// ```
impl fmt::Debug for RateLimitRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitRejection")
            .field("name", &redact(&self.name))
            .field("refusal", &self.refusal)
            .finish()
    }
}

/// Turns a [`RateLimitRejection`] into the response the client gets.
///
/// Implemented by [`JsonRateLimitResponse`] (the default) and by every
/// `Fn(&RateLimitRejection) -> http::Response<B>`. The layer adds the
/// `RateLimit` fields to what it returns for a [`Refusal::Limited`]
/// (unless turned off).
///
/// # Examples
///
/// ```
/// use fusebox::Duration;
/// use fusebox_std::tower::rate_limit::{RateLimitRejection, RateLimitResponder, Refusal};
///
/// let teapot = |_: &RateLimitRejection| http::Response::builder().status(418).body(String::new()).unwrap();
/// let r = RateLimitRejection::new("api", Refusal::Limited { retry_after: Duration::from_secs(1) });
/// assert_eq!(teapot.respond(&r).status(), 418);
/// ```
pub trait RateLimitResponder<B>: Send + Sync + 'static {
    /// The response for `rejection`.
    fn respond(&self, rejection: &RateLimitRejection) -> Response<B>;
}

impl<B, F> RateLimitResponder<B> for F
where
    F: Fn(&RateLimitRejection) -> Response<B> + Send + Sync + 'static,
{
    fn respond(&self, rejection: &RateLimitRejection) -> Response<B> {
        self(rejection)
    }
}

/// The default responses, each with a small JSON body:
///
/// * [`Refusal::Limited`]: `429 Too Many Requests`, delta-seconds
///   `Retry-After` rounded up,
///   `{"error":"rate_limited","policy":"api","retry_after":3}`;
/// * [`Refusal::BadKey`]: `400 Bad Request`,
///   `{"error":"bad_key","policy":"api","reason":"too_long"}`;
/// * [`Refusal::TableFull`]: `503 Service Unavailable`, delta-seconds
///   `Retry-After` rounded up (at least 1),
///   `{"error":"limiter_full","policy":"api","retry_after":1}`;
/// * [`Refusal::Unavailable`]: `503 Service Unavailable`,
///   `{"error":"limiter_error","policy":"api"}`;
/// * [`Refusal::FailClosed`]: `503 Service Unavailable`, delta-seconds
///   `Retry-After` rounded up (the limiter's next probe of Redis),
///   `{"error":"limiter_unavailable","policy":"api","retry_after":1}`.
///
/// The policy's name is [redacted](crate::redact), as in the logs: every
/// refused client reads it.
///
/// # Examples
///
/// ```
/// use fusebox::Duration;
/// use fusebox_std::tower::rate_limit::{JsonRateLimitResponse, RateLimitRejection, RateLimitResponder, Refusal};
///
/// let r = RateLimitRejection::new("api", Refusal::Limited { retry_after: Duration::from_millis(2_500) });
/// let response: http::Response<String> = JsonRateLimitResponse.respond(&r);
/// assert_eq!(response.status(), 429);
/// assert_eq!(response.headers()["retry-after"], "3");
/// assert_eq!(response.body(), r#"{"error":"rate_limited","policy":"api","retry_after":3}"#);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JsonRateLimitResponse;

impl<B: From<String>> RateLimitResponder<B> for JsonRateLimitResponse {
    fn respond(&self, rejection: &RateLimitRejection) -> Response<B> {
        let policy = redact(&rejection.name);
        match rejection.refusal {
            Refusal::Limited { retry_after } => {
                let body = serde_json::json!({
                    "error": "rate_limited",
                    "policy": policy,
                    "retry_after": headers::retry_secs(retry_after),
                });
                let mut response = headers::json(StatusCode::TOO_MANY_REQUESTS, &body);
                headers::insert_retry_after(response.headers_mut(), retry_after);
                response
            }
            Refusal::BadKey(e) => {
                let body =
                    serde_json::json!({"error": "bad_key", "policy": policy, "reason": e.code()});
                headers::json(StatusCode::BAD_REQUEST, &body)
            }
            Refusal::TableFull { retry_after } => {
                unavailable_for(retry_after, "limiter_full", &policy)
            }
            Refusal::Unavailable => {
                let body = serde_json::json!({"error": "limiter_error", "policy": policy});
                headers::json(StatusCode::SERVICE_UNAVAILABLE, &body)
            }
            Refusal::FailClosed { retry_after } => {
                unavailable_for(retry_after, "limiter_unavailable", &policy)
            }
        }
    }
}

/// A `503` with `error` and a delta-seconds `Retry-After` of
/// `retry_after`, in the field and in the body.
fn unavailable_for<B: From<String>>(
    retry_after: Duration,
    error: &str,
    policy: &str,
) -> Response<B> {
    let body = serde_json::json!({
        "error": error,
        "policy": policy,
        "retry_after": headers::retry_secs(retry_after),
    });
    let mut response = headers::json(StatusCode::SERVICE_UNAVAILABLE, &body);
    headers::insert_retry_after(response.headers_mut(), retry_after);
    response
}
