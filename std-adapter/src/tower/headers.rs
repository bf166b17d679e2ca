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

/// Sets `RateLimit-Policy` and `RateLimit` for the policy `sf_name`
/// (already a Structured Field String), and the legacy trio if asked.
pub(crate) fn insert_rate_limit(headers: &mut HeaderMap, sf_name: &str, q: &Quoted, legacy: bool) {
    let policy = format!("{sf_name};q={};w={}", q.limit, q.window);
    let current = format!("{sf_name};r={};t={}", q.remaining, q.reset);
    // Both are printable ASCII by construction (`sf_string`, digits).
    if let Ok(v) = HeaderValue::from_str(&policy) {
        headers.insert(RATELIMIT_POLICY.clone(), v);
    }
    if let Ok(v) = HeaderValue::from_str(&current) {
        headers.insert(RATELIMIT.clone(), v);
    }
    if legacy {
        headers.insert(X_LIMIT.clone(), HeaderValue::from(q.limit));
        headers.insert(X_REMAINING.clone(), HeaderValue::from(q.remaining));
        headers.insert(X_RESET.clone(), HeaderValue::from(q.reset));
    }
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
        insert_rate_limit(&mut h, "\"api\"", &q, true);
        assert_eq!(h[&RATELIMIT_POLICY], "\"api\";q=100;w=60");
        assert_eq!(h[&RATELIMIT], "\"api\";r=50;t=30");
        assert_eq!(h["x-ratelimit-limit"], "100");
        assert_eq!(h["x-ratelimit-remaining"], "50");
        assert_eq!(h["x-ratelimit-reset"], "30");
        let mut plain = HeaderMap::new();
        insert_rate_limit(&mut plain, "\"api\"", &q, false);
        assert_eq!(plain.len(), 2);
    }
}
