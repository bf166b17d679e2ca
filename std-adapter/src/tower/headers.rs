//! The HTTP side of a rejection, shared by both layers: delta-seconds
//! `Retry-After`, the IETF `RateLimit-Policy` and `RateLimit` fields
//! (draft-ietf-httpapi-ratelimit-headers-10 and -11, Structured Field
//! syntax),
//! the legacy `X-RateLimit-*` trio, and small JSON bodies.

use fusebox::bucket::Quota;
use fusebox::Duration;
use std::collections::BTreeSet;
use std::sync::{Mutex, OnceLock, PoisonError};

use http::header::{Entry, HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use http::{Response, StatusCode};

const MICROS_PER_SEC: u64 = 1_000_000;

/// The largest Structured Field Integer (RFC 8941 § 3.3.1: at most 15
/// digits; a parser fails the whole field on a longer one).
const SF_INTEGER_MAX: u64 = 999_999_999_999_999;

/// `RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers), for tests
/// that read it back: [`ListField`]'s name, the one the layers use.
#[cfg(test)]
pub(crate) static RATELIMIT_POLICY: HeaderName = ListField::Policy.name();
/// `RateLimit` (draft-ietf-httpapi-ratelimit-headers), as above.
#[cfg(test)]
pub(crate) static RATELIMIT: HeaderName = ListField::Limit.name();
static X_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
static X_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
static X_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// Whole seconds of `d`, rounded up: a client told to wait this long never
/// comes back before the core would admit it.
pub(crate) fn ceil_secs(d: Duration) -> u64 {
    d.as_micros().div_ceil(MICROS_PER_SEC)
}

/// A refusal's wait in whole seconds: [`ceil_secs`], and at least 1. A
/// refused client told `0` comes back at once, in a loop; a wait that
/// rounds to nothing (a `Shared` limit failing closed when its next probe
/// of Redis is already due) is a second.
pub(crate) fn retry_secs(d: Duration) -> u64 {
    ceil_secs(d).max(1)
}

/// A quota as the draft's policy parameters: `q` units per window `w`
/// seconds, where `q` is the bucket's burst and `w` the time it takes to
/// refill it at the quota's rate. So `r` (the tokens left, at most the
/// burst) is never more than `q`, whatever the burst, and `t` (the time
/// until the bucket is full) not more than `w` either, but for a quota of
/// over 65 536 tokens per period (in lowest terms), whose interval the
/// core rounds up: its bucket takes up to a second longer to refill than
/// the quota says, and `t` tells that truth. A burst equal to the quota's tokens (the default)
/// gives the quota as it is (`per_minute(100)`: `q=100;w=60`); 1 a minute
/// with a burst of 10 gives `q=10;w=600`. A window of a fraction of a
/// second is stretched to the next whole second and `q` scaled with it at
/// the quota's rate (rounded down, at least 1), so the advertised rate is
/// never above the real one, and `q` stays at least the burst. A `q` past
/// the largest Structured Field Integer (over 10^15 tokens a second) is
/// that largest one: a lower rate, never a higher one. (`w` cannot pass
/// it: a quota's refill time fits its state word, microseconds on 63
/// bits.)
pub(crate) fn quota_qw(quota: &Quota) -> (u64, u64) {
    let tokens = u128::from(quota.tokens().max(1));
    let burst = u128::from(quota.burst());
    let period = u128::from(quota.period().as_micros().max(1));
    let micros = u128::from(MICROS_PER_SEC);
    let to_u64 = |x: u128| u64::try_from(x).unwrap_or(u64::MAX);
    // The time to refill the whole burst, in microseconds.
    let burst_period = burst.saturating_mul(period);
    if burst_period.is_multiple_of(tokens) && (burst_period / tokens).is_multiple_of(micros) {
        return (to_u64(burst), to_u64(burst_period / tokens / micros).max(1));
    }
    let window = burst_period.div_ceil(tokens).div_ceil(micros).max(1);
    // The quota's rate over the stretched window: at least the burst.
    let q = tokens.saturating_mul(window.saturating_mul(micros)) / period;
    (to_u64(q).clamp(1, SF_INTEGER_MAX), to_u64(window))
}

/// A policy name as a Structured Field String: printable ASCII as it is,
/// `"` and `\` escaped, and every other byte (of a control character,
/// of a non-ASCII character's UTF-8), and `%` itself, percent-encoded in
/// lower-case hex, as RFC 9651's Display String encodes them: `"über"` is
/// `"%c3%bcber"`, `"100%"` is `"100%25"`. One to one, so two different
/// names never share a spelling (a client reading two stacked layers'
/// members could not tell them apart). Done once, when a layer is built.
pub(crate) fn sf_string(name: &str) -> Box<str> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for b in name.bytes() {
        match b {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(char::from(b));
            }
            b'%' => out.push_str("%25"),
            b' '..=b'~' => out.push(char::from(b)),
            _ => {
                out.push('%');
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0xf)]));
            }
        }
    }
    out.push('"');
    out.into()
}

/// What a limiter reports with every response it lets through or refuses
/// for lack of tokens: the figures of the `RateLimit-Policy` (`q`, `w`)
/// and `RateLimit` (`r`, `t`) fields.
///
/// # Examples
///
/// Internal; seen on the wire:
///
/// ```
/// use std::convert::Infallible;
/// use std::sync::Arc;
/// use fusebox::bucket::Quota;
/// use fusebox::TokenBucket;
/// use fusebox_std::tower::RateLimitLayer;
/// use tower::{service_fn, Layer, Service};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// let bucket = Arc::new(TokenBucket::new(Quota::per_second(5)?));
/// let mut service = RateLimitLayer::new("api", bucket).layer(service_fn(|_: http::Request<()>| async {
///     Ok::<_, Infallible>(http::Response::new(String::new()))
/// }));
/// let response = service.call(http::Request::new(())).await?;
/// assert_eq!(response.headers()["ratelimit-policy"], "\"api\";q=5;w=1");
/// assert_eq!(response.headers()["ratelimit"], "\"api\";r=4;t=1");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quoted {
    /// `q`: units per window.
    pub(crate) limit: u64,
    /// `w`: the window, in seconds.
    pub(crate) window: u64,
    /// `r`: units left now.
    pub(crate) remaining: u64,
    /// `t`: seconds until the bucket is full again (rounded up); on a
    /// refusal, its `Retry-After` ([`Quoted::refused`]).
    pub(crate) reset: u64,
    /// Whether this is the quota of a request that found its bucket full
    /// (`r` is the burst − 1): what a client under its limit is told on
    /// almost every response, so its member is built once and kept
    /// ([`PolicyFields`]).
    pub(crate) full: bool,
}

impl Quoted {
    /// The quota as a refusal after `retry_after` reports it: no units
    /// left (`r=0`: the request was just refused) for `t` = the
    /// `Retry-After` seconds. The draft's `t` is the time "until
    /// additional quota … is made available" (-10 § 4.1.2; -11's
    /// "effective window", within which the client can use no more than
    /// `r`), which on a refusal is the wait for the next token, and a
    /// `Retry-After` "SHOULD NOT reference a point in time earlier" than
    /// it (§ 6): the time until the bucket is full, what an admitted
    /// response's `t` says, would point past the `Retry-After` (an hour
    /// past it for a burst of 2 an hour).
    pub(crate) fn refused(self, retry_after: Duration) -> Self {
        Self {
            remaining: 0,
            reset: retry_secs(retry_after),
            full: false,
            ..self
        }
    }

    /// The same figures (whatever `full` says).
    fn same_figures(&self, other: &Self) -> bool {
        (self.limit, self.window, self.remaining, self.reset)
            == (other.limit, other.window, other.remaining, other.reset)
    }
}

/// [`Members::apply`] of `q`'s members under `policy`, for the tests.
#[cfg(test)]
pub(crate) fn add_rate_limit(
    headers: &mut HeaderMap,
    policy: &PolicyFields,
    q: &Quoted,
    legacy: bool,
    own: bool,
) {
    Members::new(policy, *q, legacy).apply(headers, own);
}

/// The two members of a policy's fields, built when a request is
/// admitted and added to its response (with the legacy trio, if asked)
/// when it is ready: the response future holds no reference to the
/// layer.
///
/// Both fields are Structured Field Lists with one member per policy
/// (draft-ietf-httpapi-ratelimit-headers), so layers stack: the member is
/// joined to whatever the response already carries (another layer's, or
/// the inner service's), never replacing it. The legacy trio has room for
/// one policy only: it is set only if none of its three fields is there
/// (a partial trio is an inner policy's, never completed with this one's
/// figures), unless `own` (the response is this layer's own refusal,
/// whose figures are the ones that matter to the client).
#[derive(Clone, Debug)]
pub(crate) struct Members {
    /// The `RateLimit-Policy` and `RateLimit` members; `None` when the
    /// layer sends the legacy trio only.
    fields: Option<(HeaderValue, HeaderValue)>,
    /// The figures, for the legacy trio.
    quoted: Quoted,
    legacy: bool,
}

impl Members {
    /// `q`'s members under `policy`.
    pub(crate) fn new(policy: &PolicyFields, q: Quoted, legacy: bool) -> Self {
        Self {
            fields: Some((
                policy.policy_member(q.limit, q.window),
                policy.limit_member(&q),
            )),
            quoted: q,
            legacy,
        }
    }

    /// `q` as the legacy trio alone (the layer's `RateLimit` fields are
    /// off).
    pub(crate) fn legacy_only(q: Quoted) -> Self {
        Self {
            fields: None,
            quoted: q,
            legacy: true,
        }
    }

    /// Adds them to `headers`, joined to any the response carries; the
    /// legacy trio replaces one already there only if `own` (see
    /// [`Members`]).
    pub(crate) fn apply(self, headers: &mut HeaderMap, own: bool) {
        if let Some((policy, limit)) = self.fields {
            join_value(headers, ListField::Policy, policy);
            join_value(headers, ListField::Limit, limit);
        }
        add_legacy(headers, &self.quoted, self.legacy, own);
    }
}

/// A policy's name as the fields spell it, with two members kept once
/// built, so that on most responses they cost a reference count, not a
/// format, a validation and an allocation (benches/analysis.md, "HTTP"):
///
/// * its `RateLimit-Policy` member: every key of a keyed layer shares one
///   quota (a layer whose tiers differ builds the other tiers' members
///   each time);
/// * the `RateLimit` member of a request that found its bucket full
///   ([`Quoted::full`]): a client under its limit is told the same
///   `r=burst-1;t=..` every time. Any other quota left is built each time.
#[derive(Debug)]
pub(crate) struct PolicyFields {
    /// The name as a Structured Field String.
    pub(crate) sf_name: Box<str>,
    /// The first `RateLimit-Policy` member built, with its `(q, w)`.
    policy: OnceLock<((u64, u64), HeaderValue)>,
    /// The first `RateLimit` member built for a full bucket, with its
    /// figures.
    full: OnceLock<(Quoted, HeaderValue)>,
}

impl PolicyFields {
    /// The fields of the policy called `name`, [redacted](crate::redact)
    /// (every client reads them, refused or not).
    pub(crate) fn new(name: &str) -> Self {
        Self {
            sf_name: sf_string(&crate::redact::redact(name)),
            policy: OnceLock::new(),
            full: OnceLock::new(),
        }
    }

    /// The `RateLimit` member `sf_name;r=..;t=..` of `q`.
    pub(crate) fn limit_member(&self, q: &Quoted) -> HeaderValue {
        if let Some((kept, value)) = self.full.get()
            && kept.same_figures(q)
        {
            return value.clone();
        }
        let member = member(&self.sf_name, "r", q.remaining, "t", q.reset);
        if !q.full || self.full.get().is_some() {
            return member_value(member);
        }
        let value = interned(member);
        let _ = self.full.set((*q, value.clone()));
        value
    }

    /// The `RateLimit-Policy` member `sf_name;q=..;w=..`.
    pub(crate) fn policy_member(&self, q: u64, w: u64) -> HeaderValue {
        if let Some((kept, value)) = self.policy.get()
            && *kept == (q, w)
        {
            return value.clone();
        }
        let member = member(&self.sf_name, "q", q, "w", w);
        if self.policy.get().is_some() {
            // Another tier's quota (or a changed one): built each time.
            return member_value(member);
        }
        let value = interned(member);
        let _ = self.policy.set(((q, w), value.clone()));
        value
    }
}

/// `member` as a header value whose clones are copies of a pointer: its
/// bytes are kept for the life of the process, once per distinct member
/// (a reference-counted value costs two atomic read-modify-writes a
/// response, a clone and a drop). Only the members a [`PolicyFields`]
/// keeps come here: at most two per layer built (its first policy member
/// and its first full-bucket member), a few dozen bytes each, and one
/// copy of equal bytes however many layers keep them. Nothing a client
/// sends reaches it.
fn interned(member: Vec<u8>) -> HeaderValue {
    static KEPT: Mutex<BTreeSet<&'static [u8]>> = Mutex::new(BTreeSet::new());
    let mut kept = KEPT.lock().unwrap_or_else(PoisonError::into_inner);
    let bytes: &'static [u8] = if let Some(bytes) = kept.get(member.as_slice()) {
        bytes
    } else {
        let bytes: &'static [u8] = Box::leak(member.into_boxed_slice());
        kept.insert(bytes);
        bytes
    };
    HeaderValue::from_maybe_shared(bytes::Bytes::from_static(bytes))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A member as a header value, without a copy. `member` is printable
/// ASCII by construction (`sf_string`, digits), so the check passes.
pub(crate) fn member_value(member: Vec<u8>) -> HeaderValue {
    HeaderValue::from_maybe_shared(bytes::Bytes::from(member))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The legacy trio, if asked (see [`Members`]). The check is inlined:
/// a layer without the trio (the default) does not call, and pay the
/// prologue of, the function that adds it, on every response.
#[inline]
pub(crate) fn add_legacy(headers: &mut HeaderMap, q: &Quoted, legacy: bool, own: bool) {
    if legacy {
        add_trio(headers, q, own);
    }
}

/// The legacy trio of `q` (see [`Members`]).
#[inline(never)]
fn add_trio(headers: &mut HeaderMap, q: &Quoted, own: bool) {
    let trio = [
        (&X_LIMIT, q.limit),
        (&X_REMAINING, q.remaining),
        (&X_RESET, q.reset),
    ];
    // One policy's three, or none: an inner policy's partial trio stays
    // as it is rather than gain this policy's figures.
    if !own && trio.iter().any(|(name, _)| headers.contains_key(*name)) {
        return;
    }
    for (name, value) in trio {
        headers.insert(name.clone(), HeaderValue::from(value));
    }
}

/// Adds `value` (one or more List members) to the List field `name`: the
/// field's lines, if any, are joined with `", "` (as RFC 9110 § 5.3
/// combines them) and `value` appended, in one field line, so that a
/// client reading only the first line still sees every policy. A field
/// line that cannot be joined (never, for values a `HeaderValue` holds)
/// gets `value` as a line of its own.
pub(crate) fn join_value(headers: &mut HeaderMap, name: ListField, value: HeaderValue) {
    // One hash of the name, and the name moved into the map, not cloned:
    // `append` is `insert` when the field is not there (the usual case,
    // one policy), and says whether it was.
    if headers.append(name.name(), value) {
        join_lines(headers, name);
    }
}

/// The lines of `name`, `value` last among them, joined in one (see
/// [`join_value`]).
#[cold]
#[inline(never)]
fn join_lines(headers: &mut HeaderMap, name: ListField) {
    let Entry::Occupied(mut lines) = headers.entry(name.name()) else {
        return;
    };
    let mut joined: Vec<u8> = Vec::new();
    for line in lines.iter() {
        let line = line.as_bytes().trim_ascii();
        if !line.is_empty() {
            if !joined.is_empty() {
                joined.extend_from_slice(b", ");
            }
            joined.extend_from_slice(line);
        }
    }
    // Nothing to join (only empty lines): the last one, `value`, alone.
    let joined = if joined.is_empty() {
        lines.iter().next_back().cloned()
    } else {
        HeaderValue::from_bytes(&joined).ok()
    };
    if let Some(joined) = joined {
        lines.insert(joined);
    }
}

/// A List field of the draft that [`join_value`] adds members to.
#[derive(Clone, Copy, Debug)]
pub(crate) enum ListField {
    /// `RateLimit-Policy`.
    Policy,
    /// `RateLimit`.
    Limit,
}

impl ListField {
    /// The field's name, a constant: moved into a map, it costs no clone
    /// (a `static`'s name would be cloned by every insert).
    const fn name(self) -> HeaderName {
        match self {
            // `const` blocks: built at compile time even when called at run
            // time (`from_static` checks every byte where it runs).
            Self::Policy => const { HeaderName::from_static("ratelimit-policy") },
            Self::Limit => const { HeaderName::from_static("ratelimit") },
        }
    }
}

/// One policy's member, `sf_name;a=x;b=y`, in one buffer of the right
/// size (no intermediate `String`). `x` and `y` past the largest
/// Structured Field Integer are written as it (a value from Redis, say:
/// one longer integer would make the whole field unparsable).
pub(crate) fn member(sf_name: &str, a: &str, x: u64, b: &str, y: u64) -> Vec<u8> {
    let (x, y) = (x.min(SF_INTEGER_MAX), y.min(SF_INTEGER_MAX));
    // `itoa`, not `write!`: the formatting machinery cost about a
    // thousand instructions a member, on every response.
    let (mut xb, mut yb) = (itoa::Buffer::new(), itoa::Buffer::new());
    let (x, y) = (xb.format(x).as_bytes(), yb.format(y).as_bytes());
    let mut out = Vec::with_capacity(sf_name.len() + a.len() + b.len() + x.len() + y.len() + 4);
    for piece in [
        sf_name.as_bytes(),
        b";",
        a.as_bytes(),
        b"=",
        x,
        b";",
        b.as_bytes(),
        b"=",
        y,
    ] {
        out.extend_from_slice(piece);
    }
    out
}

/// Sets `Retry-After` to `wait` in delta-seconds, rounded up, at least 1
/// ([`retry_secs`]).
pub(crate) fn insert_retry_after(headers: &mut HeaderMap, wait: Duration) {
    headers.insert(RETRY_AFTER, HeaderValue::from(retry_secs(wait)));
}

/// A response with `status` and `body` as `application/json`.
pub(crate) fn json<B: From<String>>(status: StatusCode, body: &serde_json::Value) -> Response<B> {
    let mut response = Response::new(B::from(body.to_string()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests;
