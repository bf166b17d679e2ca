//! The bearer-token check in front of the protected routes: the token is
//! compared in constant time, and a refusal never echoes what was sent,
//! in its answer or in the log.

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;

use super::error::HttpError;
use super::AppState;
use crate::redact::Redacted;

/// Lets the request through when the options hold no token, or when its
/// `Authorization` header carries that token; answers
/// [`HttpError::Unauthorized`] otherwise.
///
/// A refusal is logged at `debug` with the request's path decoded, then
/// [redacted](crate::redact): a name in the path arrives
/// percent-encoded (`redis:%2F%2Fu:pw@h`), a form no redaction reads.
pub(super) async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, HttpError> {
    if let Some(expected) = state.options.token()
        && !authorized(expected, request.headers())
    {
        let path = percent_encoding::percent_decode_str(request.uri().path()).decode_utf8_lossy();
        tracing::debug!(
            path = %Redacted(&path),
            "request refused: bearer token missing or wrong"
        );
        return Err(HttpError::Unauthorized);
    }
    Ok(next.run(request).await)
}

/// Whether `headers` carry `Authorization: Bearer <expected>` (the scheme
/// in any case, one or more spaces after it), in one field: two are an
/// ambiguous request (a singleton field, whose copies proxies resolve
/// differently), refused whatever they hold.
fn authorized(expected: &str, headers: &HeaderMap) -> bool {
    let mut fields = headers.get_all(AUTHORIZATION).iter();
    let (Some(value), None) = (fields.next(), fields.next()) else {
        return false;
    };
    let value = value.as_bytes();
    let Some((scheme, rest)) = value.split_first_chunk::<6>() else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case(b"bearer") || rest.first() != Some(&b' ') {
        return false;
    }
    let given = rest.trim_ascii_start();
    constant_time_eq(expected.as_bytes(), given)
}

/// `expected == given`, taking a time that depends only on
/// `expected.len()`: every byte of `expected` is compared, whatever
/// `given` holds, and the verdict is read once at the end.
fn constant_time_eq(expected: &[u8], given: &[u8]) -> bool {
    let mut diff = u8::from(expected.len() != given.len());
    for (i, e) in expected.iter().enumerate() {
        diff |= e ^ given.get(i).copied().unwrap_or(!e);
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    const TOKEN: &str = "0123456789abcdef-xyz";

    #[test]
    fn equal_only_when_every_byte_and_the_length_match() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"abc", b""));
        // A prefix padded with the bytes `unwrap_or` would invent.
        assert!(!constant_time_eq(b"a\0", b"a"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn accepts_the_bearer_scheme_in_any_case() {
        for value in [
            format!("Bearer {TOKEN}"),
            format!("bearer {TOKEN}"),
            format!("BEARER   {TOKEN}"),
        ] {
            assert!(authorized(TOKEN, &headers(&value)), "{value}");
        }
    }

    #[test]
    fn refuses_other_schemes_wrong_tokens_and_no_header() {
        assert!(!authorized(TOKEN, &HeaderMap::new()));
        for value in [
            format!("Basic {TOKEN}"),
            format!("Bearer{TOKEN}"),
            format!("Bearer {TOKEN}x"),
            format!("Bearer {}", &TOKEN[1..]),
            "Bearer".to_owned(),
            String::new(),
        ] {
            assert!(!authorized(TOKEN, &headers(&value)), "{value:?}");
        }
    }

    /// Two `Authorization` fields (a singleton field, RFC 9110 § 11.6.2:
    /// not a list, so never two credentials) were decided by the first
    /// alone: a wrong token first was refused, a wrong one second let in,
    /// so the verdict hung on an order proxies do not agree on (some keep
    /// the first, some the last, some join them). An ambiguous request
    /// is refused whatever the order (found by a hostile review).
    #[test]
    fn two_authorization_fields_are_refused_in_either_order() {
        let good = HeaderValue::from_str(&format!("Bearer {TOKEN}")).unwrap();
        let bad = HeaderValue::from_static("Bearer not-the-token-at-all");
        for pair in [[&good, &bad], [&bad, &good], [&good, &good]] {
            let mut h = HeaderMap::new();
            for value in pair {
                h.append(AUTHORIZATION, value.clone());
            }
            assert!(!authorized(TOKEN, &h), "{pair:?}");
        }
    }
}
