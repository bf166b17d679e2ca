//! The HTTP side of a rejection, shared by both layers: delta-seconds
//! `Retry-After`, the IETF `RateLimit-Policy` and `RateLimit` fields
//! (draft-ietf-httpapi-ratelimit-headers-10, Structured Field syntax),
//! the legacy `X-RateLimit-*` trio, and small JSON bodies.

use fusebox::bucket::Quota;
use fusebox::Duration;
use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use http::{Response, StatusCode};

const MICROS_PER_SEC: u64 = 1_000_000;

/// `RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers).
pub(crate) static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit` (draft-ietf-httpapi-ratelimit-headers).
pub(crate) static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
static X_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
static X_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
static X_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// Whole seconds of `d`, rounded up: a client told to wait this long never
/// comes back before the core would admit it.
pub(crate) fn ceil_secs(d: Duration) -> u64 {
    d.as_micros().div_ceil(MICROS_PER_SEC)
}

/// A quota as the draft's policy parameters: `q` units per window `w`
/// seconds. A period of whole seconds is given as it is; any other is
/// stretched to the next whole second and `q` scaled down with it
/// (rounded down, at least 1), so the advertised rate is never above the
/// real one.
pub(crate) fn quota_qw(quota: &Quota) -> (u64, u64) {
    let tokens = u64::from(quota.tokens());
    let period = quota.period().as_micros().max(1);
    if period.is_multiple_of(MICROS_PER_SEC) {
        return (tokens, period / MICROS_PER_SEC);
    }
    let window = period.div_ceil(MICROS_PER_SEC);
    let q = u128::from(tokens) * u128::from(window * MICROS_PER_SEC) / u128::from(period);
    (u64::try_from(q).unwrap_or(u64::MAX).max(1), window)
}

/// A policy name as a Structured Field String: printable ASCII with `"`
/// and `\` escaped, anything else replaced by `_`. Done once, when a
/// layer is built.
pub(crate) fn sf_string(name: &str) -> Box<str> {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('_'),
        }
    }
    out.push('"');
    out.into()
}

/// What a limiter reports with every response it lets through or refuses
/// for lack of tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quoted {
    /// `q`: units per window.
    pub(crate) limit: u64,
    /// `w`: the window, in seconds.
    pub(crate) window: u64,
    /// `r`: units left now.
    pub(crate) remaining: u64,
    /// `t`: seconds until the bucket is full again (rounded up).
    pub(crate) reset: u64,
}

impl Quoted {
    /// The quota as a refusal after `retry_after` reports it: no units
    /// left (`r=0`: the request was just refused), and the bucket full no
    /// sooner than the client may retry (`t` at least `Retry-After`), so
    /// the fields never contradict the `429` they come with.
    pub(crate) fn refused(self, retry_after: Duration) -> Self {
        Self {
            remaining: 0,
            reset: self.reset.max(ceil_secs(retry_after)),
            ..self
        }
    }
}

/// Adds this policy's members to `RateLimit-Policy` and `RateLimit` for
/// the policy `sf_name` (already a Structured Field String), and the
/// legacy trio if asked.
///
/// Both fields are Structured Field Lists with one member per policy
/// (draft-ietf-httpapi-ratelimit-headers), so layers stack: the member is
/// joined to whatever the response already carries (another layer's, or
/// the inner service's), never replacing it. The legacy trio has room for
/// one policy only: it is set only where absent, unless `own` (the
/// response is this layer's own refusal, whose figures are the ones that
/// matter to the client).
pub(crate) fn add_rate_limit(
    headers: &mut HeaderMap,
    sf_name: &str,
    q: &Quoted,
    legacy: bool,
    own: bool,
) {
    join_member(
        headers,
        &RATELIMIT_POLICY,
        member(sf_name, "q", q.limit, "w", q.window),
    );
    add_service_limit(headers, sf_name, q, legacy, own);
}

/// The `RateLimit` member of the policy `sf_name`, and the legacy trio if
/// asked (see [`add_rate_limit`]).
pub(crate) fn add_service_limit(
    headers: &mut HeaderMap,
    sf_name: &str,
    q: &Quoted,
    legacy: bool,
    own: bool,
) {
    join_member(
        headers,
        &RATELIMIT,
        member(sf_name, "r", q.remaining, "t", q.reset),
    );
    if legacy {
        for (name, value) in [
            (&X_LIMIT, q.limit),
            (&X_REMAINING, q.remaining),
            (&X_RESET, q.reset),
        ] {
            if own || !headers.contains_key(name) {
                headers.insert(name.clone(), HeaderValue::from(value));
            }
        }
    }
}

/// Adds `member` to the List field `name` (see [`join_value`]).
/// `member` is printable ASCII by construction (`sf_string`, digits).
fn join_member(headers: &mut HeaderMap, name: &HeaderName, member: Vec<u8>) {
    // The member's buffer becomes the value without a copy.
    if let Ok(value) = HeaderValue::from_maybe_shared(bytes::Bytes::from(member)) {
        join_value(headers, name, value);
    }
}

/// Adds `value` (one or more List members) to the List field `name`: the
/// field's lines, if any, are joined with `", "` (as RFC 9110 § 5.3
/// combines them) and `value` appended, in one field line, so that a
/// client reading only the first line still sees every policy. A field
/// line that cannot be joined (never, for values a `HeaderValue` holds)
/// gets `value` as a line of its own.
pub(crate) fn join_value(headers: &mut HeaderMap, name: &HeaderName, value: HeaderValue) {
    if !headers.contains_key(name) {
        // The usual case, one policy.
        headers.insert(name.clone(), value);
        return;
    }
    let mut joined: Vec<u8> = Vec::new();
    for line in headers.get_all(name) {
        let line = line.as_bytes().trim_ascii();
        if !line.is_empty() {
            joined.extend_from_slice(line);
            joined.extend_from_slice(b", ");
        }
    }
    if joined.is_empty() {
        headers.insert(name.clone(), value);
        return;
    }
    joined.extend_from_slice(value.as_bytes());
    match HeaderValue::from_bytes(&joined) {
        Ok(joined) => {
            headers.insert(name.clone(), joined);
        }
        Err(_) => {
            headers.append(name.clone(), value);
        }
    }
}

/// One policy's member, `sf_name;a=x;b=y`, in one buffer of the right
/// size (no intermediate `String`).
pub(crate) fn member(sf_name: &str, a: &str, x: u64, b: &str, y: u64) -> Vec<u8> {
    use std::io::Write as _;
    let mut out = Vec::with_capacity(sf_name.len() + a.len() + b.len() + 2 * 20 + 4);
    // Writing to a `Vec` cannot fail.
    let _ = write!(out, "{sf_name};{a}={x};{b}={y}");
    out
}

/// Sets `Retry-After` to `wait` in delta-seconds, rounded up.
pub(crate) fn insert_retry_after(headers: &mut HeaderMap, wait: Duration) {
    headers.insert(RETRY_AFTER, HeaderValue::from(ceil_secs(wait)));
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
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_and_never_early() {
        assert_eq!(ceil_secs(Duration::ZERO), 0);
        assert_eq!(ceil_secs(Duration::from_micros(1)), 1);
        assert_eq!(ceil_secs(Duration::from_secs(1)), 1);
        assert_eq!(ceil_secs(Duration::from_micros(1_000_001)), 2);
        for micros in [1, 999_999, 1_000_000, 1_500_000, 59_999_999] {
            let d = Duration::from_micros(micros);
            assert!(ceil_secs(d) * MICROS_PER_SEC >= d.as_micros());
            assert!((ceil_secs(d) - 1) * MICROS_PER_SEC < d.as_micros());
        }
    }

    #[test]
    fn quota_parameters() {
        let q = |quota: Result<Quota, _>| quota_qw(&quota.unwrap());
        assert_eq!(q(Quota::per_minute(100)), (100, 60));
        assert_eq!(q(Quota::per_second(5)), (5, 1));
        // 10 per 1.5 s is advertised as 13 per 2 s: never a higher rate.
        assert_eq!(q(Quota::new(10, Duration::from_millis(1_500))), (13, 2));
        assert_eq!(q(Quota::new(1, Duration::from_millis(1_500))), (1, 2));
    }

    #[test]
    fn names_are_structured_field_strings() {
        assert_eq!(&*sf_string("api"), "\"api\"");
        assert_eq!(&*sf_string("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(&*sf_string("é\n"), "\"__\"");
    }

    #[test]
    fn rate_limit_fields_exact() {
        let mut h = HeaderMap::new();
        let q = Quoted {
            limit: 100,
            window: 60,
            remaining: 50,
            reset: 30,
        };
        add_rate_limit(&mut h, "\"api\"", &q, true, true);
        assert_eq!(h[&RATELIMIT_POLICY], "\"api\";q=100;w=60");
        assert_eq!(h[&RATELIMIT], "\"api\";r=50;t=30");
        assert_eq!(h["x-ratelimit-limit"], "100");
        assert_eq!(h["x-ratelimit-remaining"], "50");
        assert_eq!(h["x-ratelimit-reset"], "30");
        let mut plain = HeaderMap::new();
        add_rate_limit(&mut plain, "\"api\"", &q, false, true);
        assert_eq!(plain.len(), 2);
    }

    #[test]
    fn stacked_policies_join_their_members_and_keep_the_inner_legacy_trio() {
        let inner = Quoted {
            limit: 1,
            window: 3600,
            remaining: 0,
            reset: 3600,
        };
        let outer = Quoted {
            limit: 100,
            window: 3600,
            remaining: 98,
            reset: 72,
        };
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from(3600));
        add_rate_limit(&mut h, "\"per_key\"", &inner, true, true);
        add_rate_limit(&mut h, "\"global\"", &outer, true, false);
        assert_eq!(
            h[&RATELIMIT_POLICY],
            "\"per_key\";q=1;w=3600, \"global\";q=100;w=3600"
        );
        assert_eq!(
            h[&RATELIMIT],
            "\"per_key\";r=0;t=3600, \"global\";r=98;t=72"
        );
        assert_eq!(h.get_all(&RATELIMIT).iter().count(), 1, "one field line");
        assert_eq!(h["x-ratelimit-limit"], "1");
        assert_eq!(h["x-ratelimit-remaining"], "0");
        assert_eq!(h["x-ratelimit-reset"], "3600");
        assert_eq!(h[RETRY_AFTER], "3600");
        // Lines already split (another middleware's `append`) are joined.
        let mut split = HeaderMap::new();
        split.append(&RATELIMIT, HeaderValue::from_static("\"a\";r=1;t=1"));
        split.append(&RATELIMIT, HeaderValue::from_static("\"b\";r=2;t=2"));
        add_rate_limit(&mut split, "\"c\"", &outer, false, false);
        assert_eq!(
            split[&RATELIMIT],
            "\"a\";r=1;t=1, \"b\";r=2;t=2, \"c\";r=98;t=72"
        );
    }
}
