//! Key functions for a keyed [`RateLimitLayer`](super::RateLimitLayer):
//! each makes a bounded key of a request head, or a [`KeyError`], never a
//! panic.
//!
//! A key function is any `Fn(&http::request::Parts) -> Result<K, KeyError>`;
//! these cover the usual ones. A client IP as the server saw it lives in
//! the framework's extensions (axum's `ConnectInfo<SocketAddr>`): key on it
//! with a closure, as the examples of
//! [`RateLimitLayer::keyed`](super::RateLimitLayer::keyed) do.

use std::net::IpAddr;

use http::header::{AsHeaderName, HeaderName};
use http::request::Parts;

use super::KeyError;

/// Bound on a header value [`forwarded_ip`] reads (bytes).
///
/// ```
/// use fusebox_std::tower::rate_limit::{key, KeyError};
///
/// let long = format!("203.0.113.9{}", ", 10.0.0.1".repeat(200)); // 2 011 bytes
/// let (head, ()) = http::Request::builder().header("x-forwarded-for", &long).body(()).unwrap().into_parts();
/// assert_eq!(key::forwarded_ip()(&head), Err(KeyError::TooLong { len: long.len(), max: key::MAX_FORWARDED_LEN }));
/// ```
pub const MAX_FORWARDED_LEN: usize = 1024;

/// The value of header `name`, as a `String` of at most `max_len` bytes.
///
/// Fails with [`KeyError::Missing`] without the header,
/// [`KeyError::NotUtf8`] if its value is not UTF-8, and
/// [`KeyError::TooLong`] past `max_len` (checked before anything is
/// copied). With several values the first one is the key.
///
/// # Panics
///
/// If `name` is not a valid header name (a constant in your code).
///
/// # Examples
///
/// ```
/// use fusebox_std::tower::rate_limit::{key, KeyError};
///
/// let api_key = key::header("x-api-key", 8);
/// let (head, ()) = http::Request::builder().header("x-api-key", "k-123").body(()).unwrap().into_parts();
/// assert_eq!(api_key(&head), Ok("k-123".to_owned()));
/// let (head, ()) = http::Request::builder().header("x-api-key", "far-too-long").body(()).unwrap().into_parts();
/// assert_eq!(api_key(&head), Err(KeyError::TooLong { len: 12, max: 8 }));
/// ```
pub fn header(
    name: &'static str,
    max_len: usize,
) -> impl Fn(&Parts) -> Result<String, KeyError> + Clone + Send + Sync + 'static {
    let name = HeaderName::from_static(name);
    move |head: &Parts| bounded(head, &name, max_len).map(str::to_owned)
}

/// The request path (without the query) as a `String` of at most
/// `max_len` bytes: one bucket per route.
///
/// # Examples
///
/// ```
/// use fusebox_std::tower::rate_limit::key;
///
/// let (head, ()) = http::Request::builder().uri("/search?q=rust").body(()).unwrap().into_parts();
/// assert_eq!(key::path(64)(&head), Ok("/search".to_owned()));
/// ```
pub fn path(
    max_len: usize,
) -> impl Fn(&Parts) -> Result<String, KeyError> + Clone + Send + Sync + 'static {
    move |head: &Parts| {
        let path = head.uri.path();
        if path.len() > max_len {
            return Err(KeyError::TooLong {
                len: path.len(),
                max: max_len,
            });
        }
        Ok(path.to_owned())
    }
}

/// The first address of `X-Forwarded-For`, for a server behind a proxy
/// that sets it (trust it only then: clients can send any value).
///
/// Fails with [`KeyError::Missing`], [`KeyError::NotUtf8`],
/// [`KeyError::TooLong`] past [`MAX_FORWARDED_LEN`] bytes, or
/// [`KeyError::Invalid`] if the first entry is not an IP address.
///
/// # Examples
///
/// ```
/// use std::net::IpAddr;
/// use fusebox_std::tower::rate_limit::{key, KeyError};
///
/// let ip = key::forwarded_ip();
/// let (head, ()) = http::Request::builder().header("x-forwarded-for", "203.0.113.9, 10.0.0.1").body(()).unwrap().into_parts();
/// assert_eq!(ip(&head), Ok("203.0.113.9".parse::<IpAddr>().unwrap()));
/// let (head, ()) = http::Request::builder().header("x-forwarded-for", "nobody").body(()).unwrap().into_parts();
/// assert_eq!(ip(&head), Err(KeyError::Invalid));
/// ```
pub fn forwarded_ip() -> impl Fn(&Parts) -> Result<IpAddr, KeyError> + Clone + Send + Sync + 'static
{
    |head: &Parts| {
        let value = bounded(head, "x-forwarded-for", MAX_FORWARDED_LEN)?;
        let first = value.split(',').next().unwrap_or_default().trim();
        first.parse().map_err(|_| KeyError::Invalid)
    }
}

/// The first value of header `name`, checked for length, then UTF-8.
fn bounded(head: &Parts, name: impl AsHeaderName, max_len: usize) -> Result<&str, KeyError> {
    let value = head.headers.get(name).ok_or(KeyError::Missing)?;
    let len = value.as_bytes().len();
    if len > max_len {
        return Err(KeyError::TooLong { len, max: max_len });
    }
    std::str::from_utf8(value.as_bytes()).map_err(|_| KeyError::NotUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn head(name: &str, value: &[u8]) -> Parts {
        let mut head = http::Request::new(()).into_parts().0;
        head.headers.insert(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_bytes(value).unwrap(),
        );
        head
    }

    #[test]
    fn bad_header_values_are_errors_not_panics() {
        let api_key = header("x-api-key", 16);
        assert_eq!(
            api_key(&http::Request::new(()).into_parts().0),
            Err(KeyError::Missing)
        );
        assert_eq!(
            api_key(&head("x-api-key", b"caf\xe9")),
            Err(KeyError::NotUtf8)
        );
        let huge = vec![b'a'; 64 * 1024];
        assert_eq!(
            api_key(&head("x-api-key", &huge)),
            Err(KeyError::TooLong {
                len: 65_536,
                max: 16
            })
        );
        assert_eq!(
            api_key(&head("x-api-key", b"0123456789abcdef")),
            Ok("0123456789abcdef".into())
        );
    }

    #[test]
    fn forwarded_ip_parses_the_first_entry_only() {
        let ip = forwarded_ip();
        assert_eq!(
            ip(&head("x-forwarded-for", b" ::1 ,10.0.0.1")),
            Ok("::1".parse().unwrap())
        );
        assert_eq!(ip(&head("x-forwarded-for", b"")), Err(KeyError::Invalid));
        let long = vec![b'1'; MAX_FORWARDED_LEN + 1];
        assert!(matches!(
            ip(&head("x-forwarded-for", &long)),
            Err(KeyError::TooLong { .. })
        ));
    }
}
