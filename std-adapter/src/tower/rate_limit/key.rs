//! Key functions for a keyed [`RateLimitLayer`](super::RateLimitLayer):
//! each makes a bounded key of a request head, or a [`KeyError`], never a
//! panic.
//!
//! A key function is any `Fn(&http::request::Parts) -> Result<K, KeyError>`;
//! these cover the usual ones. A client IP as the server saw it lives in
//! the framework's extensions (axum's `ConnectInfo<SocketAddr>`): key on it
//! with a closure, as the examples of
//! [`RateLimitLayer::keyed`](super::RateLimitLayer::keyed) do; behind
//! proxies that append to `X-Forwarded-For`, key on the entry the nearest
//! of them wrote with [`forwarded_ip`] (never on the leftmost one, which
//! the client writes). Either way, [`network`] keys an IPv6 client on its
//! /64, which it owns whole, not on one of its 2⁶⁴ addresses.
//!
//! [`header`] and [`path`] make a `String` (a heap allocation and a free
//! on every request); [`header_as`] makes the same key as any type built
//! from a `&str`, such as an inline string (`smol_str::SmolStr`), for a
//! limiter keyed by that type.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use http::header::{AsHeaderName, HeaderName, InvalidHeaderName};
use http::request::Parts;

use super::KeyError;

/// Bound on what [`forwarded_ip`] reads of `X-Forwarded-For` (bytes):
/// the entries from the right up to the chosen one, separators included.
/// What lies left of the chosen entry is never read, so a client padding
/// the field (the part it writes) changes nothing; an entry your proxies
/// wrote is never this long.
///
/// ```
/// use std::net::IpAddr;
/// use fusebox_std::tower::rate_limit::{key, KeyError};
///
/// // The client's own 2 000 bytes are left of the entry the proxy wrote.
/// let padded = format!("{}, 203.0.113.9", "1".repeat(2_000));
/// let (head, ()) = http::Request::builder().header("x-forwarded-for", &padded).body(()).unwrap().into_parts();
/// assert_eq!(key::forwarded_ip(1)(&head), Ok("203.0.113.9".parse::<IpAddr>().unwrap()));
/// // The entry that counts, past the bound.
/// let (head, ()) = http::Request::builder().header("x-forwarded-for", &padded).body(()).unwrap().into_parts();
/// assert!(matches!(key::forwarded_ip(2)(&head), Err(KeyError::TooLong { max: key::MAX_FORWARDED_LEN, .. })));
/// ```
pub const MAX_FORWARDED_LEN: usize = 1024;

/// The value of header `name`, as a `String` of at most `max_len` bytes.
///
/// `name` is matched case-insensitively, as HTTP field names are
/// (`"X-Api-Key"` and `"x-api-key"` are the same key function).
///
/// The key is the value without leading and trailing spaces and tabs
/// (which RFC 9110 § 5.5 excludes from a field value; hyper strips them
/// from what it parses, a `HeaderValue` built in code may keep them).
///
/// Fails with [`KeyError::Missing`] without the header or with an empty
/// value (an empty key would be a bucket of its own, next to the
/// [default key](super::BadKey::Default) that a request without a key is
/// charged to), [`KeyError::NotUtf8`] if its value is not UTF-8, and
/// [`KeyError::TooLong`] past `max_len` (checked before anything is
/// copied), and [`KeyError::Ambiguous`] if the request carries the header
/// on more than one line: which one a layer before this one checked (an
/// API key's) is not known, and a client that could add a line would
/// choose its bucket with it. (One line listing several values, `a, b`,
/// is one key.) `Cookie` is no key header: over HTTP/2 a browser sends
/// one line per cookie (RFC 9113 § 8.2.3 lets it split the field; hyper
/// passes the lines on unjoined), so `header("cookie", ..)` finds most
/// browsers' requests ambiguous. Key on one cookie, parsed from every
/// `cookie` line, in a key function of your own.
///
/// The value is the client's to write: each distinct one is a bucket of
/// its own, with a whole burst. A client that may send any value (an API
/// key the limit sees before the application checks it) takes a fresh
/// burst per request by changing it, and fills the limiter's table with
/// its own keys. Key on values the client cannot mint (an API key checked
/// by a layer before this one, the tenant it maps to), or put a limit
/// keyed on the client's address in front of this one.
///
/// The key is a `String`, allocated on every request; [`header_as`] makes
/// the same key as another type (an inline string holds a short one
/// without touching the heap).
///
/// # Panics
///
/// If `name` is not a valid header name (empty, or with a character a
/// field name cannot have, such as a space or a colon): a constant in your
/// code, so this fails the first time the layer is built, never on a
/// request. For a name read at run time, [`try_header`] returns the error
/// instead.
///
/// # Examples
///
/// ```
/// use fusebox_std::tower::rate_limit::{key, KeyError};
///
/// let api_key = key::header("X-Api-Key", 8);
/// let (head, ()) = http::Request::builder().header("x-api-key", "k-123").body(()).unwrap().into_parts();
/// assert_eq!(api_key(&head), Ok("k-123".to_owned()));
/// let (head, ()) = http::Request::builder().header("X-API-KEY", "far-too-long").body(()).unwrap().into_parts();
/// assert_eq!(api_key(&head), Err(KeyError::TooLong { len: 12, max: 8 }));
/// let (head, ()) = http::Request::builder().header("x-api-key", "").body(()).unwrap().into_parts();
/// assert_eq!(api_key(&head), Err(KeyError::Missing));
/// // Two lines: ambiguous; one line listing two values: one key.
/// let (head, ()) = http::Request::builder().header("x-api-key", "k-1").header("x-api-key", "k-2").body(()).unwrap().into_parts();
/// assert_eq!(api_key(&head), Err(KeyError::Ambiguous));
/// let (head, ()) = http::Request::builder().header("x-api-key", "k-1, k-2").body(()).unwrap().into_parts();
/// assert_eq!(api_key(&head), Ok("k-1, k-2".to_owned()));
/// // A browser's cookies over HTTP/2, one line each: no key.
/// let (head, ()) = http::Request::builder().header("cookie", "a=1").header("cookie", "b=2").body(()).unwrap().into_parts();
/// assert_eq!(key::header("cookie", 64)(&head), Err(KeyError::Ambiguous));
/// ```
pub fn header(
    name: &str,
    max_len: usize,
) -> impl Fn(&Parts) -> Result<String, KeyError> + Clone + Send + Sync + 'static {
    try_header(name, max_len)
        .unwrap_or_else(|_| panic!("key::header: {name:?} is not a valid header name"))
}

/// [`header`] for a header name read at run time (from a configuration
/// file or the environment): the same key function, or the error `header`
/// panics on.
///
/// # Errors
///
/// [`InvalidHeaderName`] if `name` is empty or has a character a field
/// name cannot have, such as a space or a colon.
///
/// # Examples
///
/// ```
/// use fusebox_std::tower::rate_limit::key;
///
/// assert!(key::try_header("x api key", 64).is_err()); // a space
/// let api_key = key::try_header("X-Api-Key", 64)?;
/// let (head, ()) = http::Request::builder().header("x-api-key", "k-123").body(()).unwrap().into_parts();
/// assert_eq!(api_key(&head), Ok("k-123".to_owned()));
/// # Ok::<(), http::header::InvalidHeaderName>(())
/// ```
pub fn try_header(
    name: &str,
    max_len: usize,
) -> Result<
    impl Fn(&Parts) -> Result<String, KeyError> + Clone + Send + Sync + 'static,
    InvalidHeaderName,
> {
    try_header_as(name, max_len)
}

/// [`header`] into a key type of your choice instead of a `String`: any
/// `K` made from a `&str`, such as `smol_str::SmolStr` or
/// `compact_str::CompactString`, which hold a short key (up to 23 and 24
/// bytes) inline, without the heap allocation and free a `String` costs
/// on every request (benches/analysis.md, "The key without a heap
/// allocation"). The key is the same text, validated the same way; the
/// limiter is keyed by `K`.
///
/// # Panics
///
/// As [`header`], if `name` is not a valid header name;
/// [`try_header_as`] returns the error instead.
///
/// # Examples
///
/// ```
/// use std::convert::Infallible;
/// use std::sync::Arc;
/// use fusebox::bucket::{FullPolicy, KeyedLimiter, Quota};
/// use fusebox::hash::RandomState;
/// use fusebox_std::tower::rate_limit::key;
/// use fusebox_std::tower::RateLimitLayer;
/// use smol_str::SmolStr;
/// use tower::{service_fn, Layer, Service};
///
/// let api_key = key::header_as::<SmolStr>("X-Api-Key", 64);
/// let (head, ()) = http::Request::builder().header("x-api-key", "k-123").body(()).unwrap().into_parts();
/// assert_eq!(api_key(&head), Ok(SmolStr::new("k-123")));
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// let limiter = Arc::new(KeyedLimiter::<SmolStr, 1024, 1, RandomState>::with_hasher(
///     [Quota::per_second(1)?], FullPolicy::Reject, RandomState::new())?);
/// let mut service = RateLimitLayer::keyed("api", limiter, key::header_as("x-api-key", 64))
///     .layer(service_fn(|_: http::Request<()>| async { Ok::<_, Infallible>(http::Response::new(String::new())) }));
/// let from = |k: &str| http::Request::builder().header("x-api-key", k).body(()).unwrap();
/// assert_eq!(service.call(from("k-1")).await?.status(), 200);
/// assert_eq!(service.call(from("k-1")).await?.status(), 429);
/// assert_eq!(service.call(from("k-2")).await?.status(), 200);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub fn header_as<K>(
    name: &str,
    max_len: usize,
) -> impl Fn(&Parts) -> Result<K, KeyError> + Clone + Send + Sync + 'static
where
    K: for<'a> From<&'a str>,
{
    try_header_as(name, max_len)
        .unwrap_or_else(|_| panic!("key::header_as: {name:?} is not a valid header name"))
}

/// [`header_as`] for a header name read at run time: the same key
/// function, or the error `header_as` panics on.
///
/// # Errors
///
/// [`InvalidHeaderName`] if `name` is empty or has a character a field
/// name cannot have, such as a space or a colon.
///
/// # Examples
///
/// ```
/// use fusebox_std::tower::rate_limit::key;
/// use smol_str::SmolStr;
///
/// assert!(key::try_header_as::<SmolStr>("x api key", 64).is_err()); // a space
/// let api_key = key::try_header_as::<SmolStr>("X-Api-Key", 64)?;
/// let (head, ()) = http::Request::builder().header("x-api-key", " k-123 ").body(()).unwrap().into_parts();
/// assert_eq!(api_key(&head), Ok(SmolStr::new("k-123")));
/// # Ok::<(), http::header::InvalidHeaderName>(())
/// ```
pub fn try_header_as<K>(
    name: &str,
    max_len: usize,
) -> Result<impl Fn(&Parts) -> Result<K, KeyError> + Clone + Send + Sync + 'static, InvalidHeaderName>
where
    K: for<'a> From<&'a str>,
{
    // `from_bytes` lowercases; `from_static` would panic on any capital.
    let name = HeaderName::from_bytes(name.as_bytes())?;
    Ok(move |head: &Parts| bounded(head, &name, max_len).map(K::from))
}

/// The request path (without the query), as the client sent it, as a
/// `String` of at most `max_len` bytes: one bucket per path.
///
/// The path is the client's to write and is not normalised: `/search`,
/// `/search/`, `//search` and `/%73earch` are four keys, as are `/users/1`
/// and `/users/2`. A bucket per path is a bucket per *route* only for
/// routes without parameters, on a router that matches the path as sent
/// (axum's does: the other spellings are not `/search`). Wherever several
/// paths reach one handler (a route with a parameter, a file service that
/// decodes percent-escapes), a client takes a fresh bucket per request by
/// varying the path, and fills the limiter's table with its keys. For a
/// bucket per route, key on the route the router matched instead (axum's
/// `MatchedPath`, in the extensions of a request through a layer added
/// with `Router::route_layer`).
///
/// Fails with [`KeyError::TooLong`] past `max_len` (checked before
/// anything is copied).
///
/// # Examples
///
/// ```
/// use fusebox_std::tower::rate_limit::key;
///
/// let (head, ()) = http::Request::builder().uri("/search?q=rust").body(()).unwrap().into_parts();
/// assert_eq!(key::path(64)(&head), Ok("/search".to_owned()));
/// // Not normalised: another key.
/// let (head, ()) = http::Request::builder().uri("/%73earch/").body(()).unwrap().into_parts();
/// assert_eq!(key::path(64)(&head), Ok("/%73earch/".to_owned()));
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

/// The client address that the `trusted_proxies`-th proxy from the
/// server recorded in `X-Forwarded-For`: the entry `trusted_proxies`
/// places from the right (`1`: the rightmost).
///
/// A proxy that *appends* to `X-Forwarded-For` (nginx with
/// `$proxy_add_x_forwarded_for`, HAProxy's `option forwardfor`, AWS ALB,
/// most CDNs) writes the address of the peer it saw after whatever the
/// request already carried, so every entry left of the ones your own
/// proxies wrote is the client's to choose. Keying on the leftmost entry
/// would give a client a fresh bucket per request; keying on the entry
/// your nearest trusted proxy appended cannot be forged.
///
/// * One proxy (or load balancer) in front of the server, that appends:
///   `forwarded_ip(1)`.
/// * A CDN in front of that proxy, both appending: `forwarded_ip(2)` (the
///   CDN's entry, the client's address; the proxy's entry is the CDN's
///   edge).
/// * A proxy that *replaces* the field with the peer address: still `1`.
///
/// Count only proxies that **always** append (or replace), and make sure
/// the server cannot be reached around them: a client that talks to the
/// server directly writes every entry, and this key is then just as forged
/// as the leftmost one (key on the peer address instead, as
/// [`RateLimitLayer::keyed`](super::RateLimitLayer::keyed) shows).
/// Several `X-Forwarded-For` lines are read as one list, in order (RFC
/// 9110 § 5.3; HAProxy adds a line of its own).
///
/// The key is the address the proxy wrote, whole: an IPv6 client picks
/// any address of its /64 for each connection, and so a fresh bucket per
/// address. Key on its network instead, with [`network`] (the last
/// example below).
///
/// Fails with [`KeyError::Missing`] without the field or with fewer than
/// `trusted_proxies` entries (a request that did not come through every
/// trusted proxy), [`KeyError::TooLong`] if what it reads (the entries
/// from the right up to the chosen one) passes [`MAX_FORWARDED_LEN`] bytes,
/// [`KeyError::NotUtf8`] if the chosen entry is not UTF-8, or
/// [`KeyError::Invalid`] if it is not an IP address (with a port, say).
///
/// # Panics
///
/// If `trusted_proxies` is 0 (with no trusted proxy the field is the
/// client's own: key on the peer address instead). A constant in your
/// code: this fails when the layer is built, never on a request. For a
/// count read at run time, [`try_forwarded_ip`] returns `None` instead.
///
/// # Examples
///
/// ```
/// use std::net::IpAddr;
/// use fusebox_std::tower::rate_limit::{key, KeyError};
///
/// // Behind one appending proxy: the client sent "10.9.0.1", the proxy
/// // appended the address it saw.
/// let ip = key::forwarded_ip(1);
/// let (head, ()) = http::Request::builder().header("x-forwarded-for", "10.9.0.1, 203.0.113.9").body(()).unwrap().into_parts();
/// assert_eq!(ip(&head), Ok("203.0.113.9".parse::<IpAddr>().unwrap()));
/// let (head, ()) = http::Request::builder().header("x-forwarded-for", "nobody").body(()).unwrap().into_parts();
/// assert_eq!(ip(&head), Err(KeyError::Invalid));
/// // Behind a CDN and a proxy, a request with one entry skipped one of them.
/// let (head, ()) = http::Request::builder().header("x-forwarded-for", "203.0.113.9").body(()).unwrap().into_parts();
/// assert_eq!(key::forwarded_ip(2)(&head), Err(KeyError::Missing));
///
/// // Two addresses of one IPv6 client: two keys, one network.
/// let per_client = move |head: &http::request::Parts| ip(head).map(key::network);
/// let (a, ()) = http::Request::builder().header("x-forwarded-for", "2001:db8:7:1::1").body(()).unwrap().into_parts();
/// let (b, ()) = http::Request::builder().header("x-forwarded-for", "2001:db8:7:1::2").body(()).unwrap().into_parts();
/// assert_ne!(key::forwarded_ip(1)(&a), key::forwarded_ip(1)(&b));
/// assert_eq!(per_client(&a), per_client(&b));
/// ```
pub fn forwarded_ip(
    trusted_proxies: usize,
) -> impl Fn(&Parts) -> Result<IpAddr, KeyError> + Clone + Send + Sync + 'static {
    try_forwarded_ip(trusted_proxies).unwrap_or_else(|| {
        panic!("key::forwarded_ip(0): with no trusted proxy X-Forwarded-For is the client's own")
    })
}

/// [`forwarded_ip`] for a proxy count read at run time (from a
/// configuration file or the environment): the same key function, or
/// `None` where `forwarded_ip` panics, for 0 trusted proxies (the field is
/// then the client's own: key on the peer address instead).
///
/// # Examples
///
/// ```
/// use std::net::IpAddr;
/// use fusebox_std::tower::rate_limit::key;
///
/// assert!(key::try_forwarded_ip(0).is_none());
/// let ip = key::try_forwarded_ip(1).expect("one trusted proxy");
/// let (head, ()) = http::Request::builder().header("x-forwarded-for", "10.9.0.1, 203.0.113.9").body(()).unwrap().into_parts();
/// assert_eq!(ip(&head), Ok("203.0.113.9".parse::<IpAddr>().unwrap()));
/// ```
pub fn try_forwarded_ip(
    trusted_proxies: usize,
) -> Option<impl Fn(&Parts) -> Result<IpAddr, KeyError> + Clone + Send + Sync + 'static> {
    if trusted_proxies == 0 {
        return None;
    }
    Some(move |head: &Parts| {
        let lines = head.headers.get_all("x-forwarded-for");
        // Read from the right, up to the chosen entry, which alone is
        // decoded: what the client wrote left of it is never read, so it
        // cannot change the result (nor its length the bound).
        let mut skip = trusted_proxies - 1;
        let mut len = 0;
        for line in lines.iter().rev() {
            for entry in line.as_bytes().rsplit(|&b| b == b',') {
                len += entry.len() + 1;
                if len > MAX_FORWARDED_LEN {
                    return Err(KeyError::TooLong {
                        len,
                        max: MAX_FORWARDED_LEN,
                    });
                }
                if skip == 0 {
                    let entry = std::str::from_utf8(entry).map_err(|_| KeyError::NotUtf8)?;
                    return entry.trim().parse().map_err(|_| KeyError::Invalid);
                }
                skip -= 1;
            }
        }
        Err(KeyError::Missing)
    })
}

/// The network a client address stands for, as a rate-limit key: an IPv4
/// address itself, an IPv6 address's /64 (its last 64 bits zeroed), an
/// IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, a dual-stack socket's view
/// of an IPv4 client) its IPv4 address, and so is an address of the
/// well-known NAT64 prefix (`64:ff9b::a.b.c.d`, RFC 6052: an IPv4 client
/// as an IPv6-only server behind a NAT64 gateway sees it), and so is a
/// Teredo address (`2001:0::/32`, RFC 4380: an IPv4 client tunnelled
/// over UDP, keyed on its NAT's IPv4 address, written inverted in its
/// last 32 bits): every IPv4 client of one gateway or Teredo server
/// shares one /64, and keyed on it one of them would drain the bucket of
/// all. (A NAT64 gateway on a network-specific prefix puts
/// its clients in one /64 too: key those on the full address.)
///
/// One IPv6 subscriber is handed a whole /64 at least (RFC 6177; SLAAC
/// needs one), and picks any of its 2⁶⁴ addresses per connection: keyed on
/// the full address, one client gets a fresh bucket per address and can
/// fill the limiter's table with its own keys. Keyed on the /64, it gets
/// one bucket, as an IPv4 client does. A subscriber handed more than a
/// /64 has one bucket per /64 it holds: 256 for a /56 (what many ISPs
/// delegate to a home line), 65 536 for a /48 (and so for a 6to4 site,
/// `2002:<its IPv4 address>::/48`); where that matters, key on a shorter
/// prefix in your own key function (the address as a `u128`, masked).
/// Compose it with how you read the address:
///
/// ```
/// use std::net::{IpAddr, SocketAddr};
/// use fusebox_std::tower::rate_limit::{key, KeyError};
///
/// let per_client = |head: &http::request::Parts| {
///     head.extensions.get::<SocketAddr>().map(|peer| key::network(peer.ip())).ok_or(KeyError::Missing)
/// };
/// let a: IpAddr = "2001:db8:7:1::1".parse()?;
/// let b: IpAddr = "2001:db8:7:1:f00d::42".parse()?;
/// assert_eq!(key::network(a), key::network(b));
/// assert_eq!(key::network(a), "2001:db8:7:1::".parse::<IpAddr>()?);
/// assert_eq!(key::network("::ffff:203.0.113.9".parse()?), "203.0.113.9".parse::<IpAddr>()?);
/// assert_eq!(key::network("64:ff9b::203.0.113.9".parse()?), "203.0.113.9".parse::<IpAddr>()?);
/// // Teredo: 203.0.113.9 inverted (`!cb00:7109`) after server and port.
/// assert_eq!(key::network("2001:0:4136:e378:8000:63bf:34ff:8ef6".parse()?), "203.0.113.9".parse::<IpAddr>()?);
/// // Behind an appending proxy:
/// let forwarded = key::forwarded_ip(1);
/// let behind_proxy = move |head: &http::request::Parts| forwarded(head).map(key::network);
/// # let _ = (per_client, behind_proxy);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use]
pub fn network(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6
            .to_ipv4_mapped()
            .or_else(|| nat64_client(v6))
            .or_else(|| teredo_client(v6))
        {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
    }
}

/// The one value of header `name` (on more than one line: ambiguous),
/// checked for length, then UTF-8, without surrounding spaces and tabs;
/// an empty one is missing.
fn bounded(head: &Parts, name: impl AsHeaderName, max_len: usize) -> Result<&str, KeyError> {
    let mut lines = head.headers.get_all(name).into_iter();
    let value = lines.next().ok_or(KeyError::Missing)?;
    if lines.next().is_some() {
        return Err(KeyError::Ambiguous);
    }
    let len = value.as_bytes().len();
    if len > max_len {
        return Err(KeyError::TooLong { len, max: max_len });
    }
    // Visible ASCII (the usual key) is checked in one pass; anything else
    // (obs-text) is UTF-8 or refused.
    let value = value
        .to_str()
        .or_else(|_| std::str::from_utf8(value.as_bytes()))
        .map_err(|_| KeyError::NotUtf8)?
        .trim_ascii();
    if value.is_empty() {
        return Err(KeyError::Missing);
    }
    Ok(value)
}

/// The IPv4 address (its NAT's) of a Teredo client, `2001:0::/32` (RFC
/// 4380 § 4): the last 32 bits, inverted. The /64 of such an address is
/// the prefix and the Teredo server's IPv4 address, shared by every
/// client of that server.
fn teredo_client(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = u128::from(v6);
    (bits >> 96 == 0x2001_0000).then(|| Ipv4Addr::from(!(bits as u32)))
}

/// The IPv4 client of an address of the well-known NAT64 prefix
/// `64:ff9b::/96` (RFC 6052 § 2.1), its last 32 bits.
fn nat64_client(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    const WELL_KNOWN: u128 = 0x0064_ff9b << 96;
    let bits = u128::from(v6);
    (bits >> 32 == WELL_KNOWN >> 32).then(|| Ipv4Addr::from(bits as u32))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    /// A header name read at run time (from a configuration) is checked by
    /// `try_header` without a panic; `header` panics on the same names.
    /// A proxy count read at run time is checked by `try_forwarded_ip`
    /// without a panic; `forwarded_ip` panics on the same count.
    /// IPv4 clients seen through a NAT64 gateway on the well-known
    /// prefix all sit in one /64 (`64:ff9b::/64`): keyed on it, one client
    /// drained the bucket of every other (found by a hostile review). Each
    /// is its IPv4 address now; addresses off the prefix keep their /64.
    #[test]
    fn nat64_clients_are_their_ipv4_addresses_not_one_network() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(network(ip("64:ff9b::198.51.100.7")), ip("198.51.100.7"));
        assert_eq!(network(ip("64:ff9b::203.0.113.9")), ip("203.0.113.9"));
        assert_ne!(
            network(ip("64:ff9b::198.51.100.7")),
            network(ip("64:ff9b::203.0.113.9"))
        );
        // Same client as over IPv4 itself, or IPv4-mapped.
        assert_eq!(
            network(ip("64:ff9b::198.51.100.7")),
            network(ip("::ffff:198.51.100.7"))
        );
        // The local-use prefix (RFC 8215) and any other address: the /64.
        assert_eq!(network(ip("64:ff9b:1::c000:207")), ip("64:ff9b:1::"));
        assert_eq!(network(ip("64:ff9b:0:0:1::c000:207")), ip("64:ff9b::"));
    }

    /// Teredo clients (RFC 4380: `2001:0:<server v4>:<flags>:<port>:<client
    /// v4>`, port and client address inverted) of one Teredo server all
    /// sit in one /64, the prefix and the server's address: keyed on it,
    /// one client drained the bucket of every other (found by a hostile
    /// review). Each is the IPv4 address its NAT has, as over IPv4.
    #[test]
    fn teredo_clients_are_their_ipv4_addresses_not_one_network() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // Server 65.54.227.120, client 192.0.2.45 port 40000 (RFC 4380 § 4
        // layout; `!c000:022d` is `3fff:fdd2`).
        let a = ip("2001:0:4136:e378:8000:63bf:3fff:fdd2");
        let b = ip("2001:0:4136:e378:8000:63bf:3fff:fdd1"); // 192.0.2.46
        assert_eq!(network(a), ip("192.0.2.45"));
        assert_eq!(network(b), ip("192.0.2.46"));
        assert_eq!(network(a), network(ip("::ffff:192.0.2.45")));
        // Another port of the same client (another socket): the same key.
        assert_eq!(
            network(ip("2001:0:4136:e378:8000:1111:3fff:fdd2")),
            network(a)
        );
        // Off the Teredo prefix (2001:0::/32), the /64 as before.
        assert_eq!(
            network(ip("2001:1:4136:e378:8000:63bf:3fff:fdd2")),
            ip("2001:1:4136:e378::")
        );
        assert_eq!(network(ip("2001:db8:0:1::1")), ip("2001:db8:0:1::"));
    }

    #[test]
    fn try_forwarded_ip_returns_none_where_forwarded_ip_panics() {
        assert!(try_forwarded_ip(0).is_none());
        assert!(std::panic::catch_unwind(|| forwarded_ip(0)).is_err());
        let ip = try_forwarded_ip(1).expect("one trusted proxy");
        let (head, ()) = http::Request::builder()
            .header("x-forwarded-for", "10.9.0.1, 203.0.113.9")
            .body(())
            .unwrap()
            .into_parts();
        assert_eq!(ip(&head), Ok("203.0.113.9".parse::<IpAddr>().unwrap()));
    }

    #[test]
    fn try_header_returns_what_header_panics_on() {
        for bad in ["", "x api key", "x-api-key:", "caf\u{e9}"] {
            assert!(try_header(bad, 8).is_err(), "{bad:?}");
            assert!(
                std::panic::catch_unwind(|| header(bad, 8)).is_err(),
                "{bad:?}"
            );
        }
        let key = try_header("X-Api-Key", 8).expect("a valid name");
        let (head, ()) = http::Request::builder()
            .header("x-api-key", "k-1")
            .body(())
            .unwrap()
            .into_parts();
        assert_eq!(key(&head), Ok("k-1".to_owned()));
    }

    /// Every address of one /64 is one key; neighbouring /64s, the IPv4
    /// space and IPv4-mapped addresses are each their own.
    #[test]
    fn one_key_per_ipv6_slash_64() {
        let net = |s: &str| network(s.parse().unwrap());
        let home = net("2001:db8:0:1::");
        for addr in [
            "2001:db8:0:1::1",
            "2001:db8:0:1:ffff:ffff:ffff:ffff",
            "2001:db8:0:1:a:b:c:d",
        ] {
            assert_eq!(net(addr), home, "{addr}");
        }
        assert_ne!(net("2001:db8:0:2::1"), home);
        assert_ne!(net("2001:db8:0:0:ffff:ffff:ffff:ffff"), home);
        assert_eq!(net("203.0.113.9"), net("::ffff:203.0.113.9"));
        assert_ne!(net("203.0.113.9"), net("203.0.113.10"));
        assert_eq!(net("::1"), net("::"), "loopback is in the zero /64");
    }

    fn head(name: &str, value: &[u8]) -> Parts {
        let mut head = http::Request::new(()).into_parts().0;
        head.headers.insert(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_bytes(value).unwrap(),
        );
        head
    }

    /// The key's header on two lines is ambiguous, whatever the lines;
    /// one line listing two values is one key.
    #[test]
    fn a_key_header_on_two_lines_is_ambiguous() {
        let api_key = header("x-api-key", 16);
        for second in [&b"other"[..], b"same", b""] {
            let mut head = head("x-api-key", b"same");
            head.headers.append(
                HeaderName::from_static("x-api-key"),
                HeaderValue::from_bytes(second).unwrap(),
            );
            assert_eq!(api_key(&head), Err(KeyError::Ambiguous), "{second:?}");
        }
        assert_eq!(api_key(&head("x-api-key", b"a, b")), Ok("a, b".to_owned()));
        assert_eq!(KeyError::Ambiguous.code(), "ambiguous");
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

    /// An empty key was a bucket of its own: a client charged to the
    /// default key got a fresh one by sending the header empty (found by
    /// a hostile review).
    #[test]
    fn an_empty_value_is_a_missing_key() {
        let api_key = header("x-api-key", 16);
        for empty in [&b""[..], b" ", b"\t \t"] {
            assert_eq!(api_key(&head("x-api-key", empty)), Err(KeyError::Missing));
        }
        assert_eq!(api_key(&head("x-api-key", b" k-1\t")), Ok("k-1".into()));
        assert_eq!(api_key(&head("x-api-key", b"k 1")), Ok("k 1".into()));
    }

    #[test]
    fn header_names_are_case_insensitive() {
        // `HeaderName::from_static` panics on capitals: this did.
        let api_key = header("X-Api-Key", 16);
        assert_eq!(api_key(&head("x-api-key", b"k-1")), Ok("k-1".into()));
        assert_eq!(
            header("AUTHORIZATION", 16)(&head("authorization", b"t")),
            Ok("t".into())
        );
    }

    /// `header_as` is `header` into another type: the same key (inline
    /// or spilled to the heap past 23 bytes) or the same error, for
    /// every kind of value.
    #[test]
    fn an_inline_key_is_the_string_key_in_another_type() {
        use smol_str::SmolStr;
        let string = header("x-api-key", 32);
        let inline = header_as::<SmolStr>("X-Api-Key", 32);
        let long = "0123456789abcdef0123456789abcdef";
        let mut two = head("x-api-key", b"a");
        two.headers.append(
            HeaderName::from_static("x-api-key"),
            HeaderValue::from_static("b"),
        );
        let heads = [
            http::Request::new(()).into_parts().0,
            head("x-api-key", b""),
            head("x-api-key", b" \t"),
            head("x-api-key", b" k-1\t"),
            head("x-api-key", b"a, b"),
            head("x-api-key", long.as_bytes()),
            head("x-api-key", &long.as_bytes()[..23]),
            head("x-api-key", &long.as_bytes()[..24]),
            head("x-api-key", b"0123456789abcdef0123456789abcdef!"),
            head("x-api-key", b"caf\xe9"),
            head("x-api-key", "café".as_bytes()),
            two,
        ];
        for head in &heads {
            let want = string(head).map(SmolStr::from);
            assert_eq!(inline(head), want, "{:?}", head.headers);
        }
        assert_eq!(inline(&heads[5]), Ok(SmolStr::new(long)));
        assert!(!inline(&heads[3]).unwrap().is_heap_allocated());
        assert!(try_header_as::<SmolStr>("x api key", 16).is_err());
        assert_eq!(
            try_header_as::<std::sync::Arc<str>>("x-api-key", 16).unwrap()(&heads[3]),
            Ok("k-1".into())
        );
    }

    #[test]
    #[should_panic(expected = "not a valid header name")]
    fn an_invalid_inline_header_name_panics_when_built() {
        let _ = header_as::<smol_str::SmolStr>("x api key", 16);
    }

    #[test]
    #[should_panic(expected = "not a valid header name")]
    fn an_invalid_header_name_panics_when_built() {
        let _ = header("x api key", 16);
    }

    #[test]
    #[should_panic(expected = "no trusted proxy")]
    fn forwarded_ip_needs_a_trusted_proxy() {
        let _ = forwarded_ip(0);
    }

    #[test]
    fn forwarded_ip_counts_trusted_proxies_from_the_right() {
        let ip = |n: usize, value: &[u8]| forwarded_ip(n)(&head("x-forwarded-for", value));
        let chain = b"6.6.6.6, 198.51.100.7 ,203.0.113.9";
        assert_eq!(ip(1, chain), Ok("203.0.113.9".parse().unwrap()));
        assert_eq!(ip(2, chain), Ok("198.51.100.7".parse().unwrap()));
        assert_eq!(ip(3, chain), Ok("6.6.6.6".parse().unwrap()));
        assert_eq!(ip(4, chain), Err(KeyError::Missing));
        assert_eq!(ip(1, b" ::1 "), Ok("::1".parse().unwrap()));
        assert_eq!(ip(1, b"1.2.3.4, "), Err(KeyError::Invalid));
        assert_eq!(ip(1, b""), Err(KeyError::Invalid));
        assert_eq!(ip(1, b"1.2.3.4:80"), Err(KeyError::Invalid));
        assert_eq!(
            forwarded_ip(1)(&http::Request::new(()).into_parts().0),
            Err(KeyError::Missing)
        );
        let long = vec![b'1'; MAX_FORWARDED_LEN + 1];
        assert!(matches!(ip(1, &long), Err(KeyError::TooLong { .. })));
        assert_eq!(
            ip(1, b"\xff, 203.0.113.9"),
            Ok("203.0.113.9".parse().unwrap())
        );
        assert_eq!(ip(2, b"\xff, 203.0.113.9"), Err(KeyError::NotUtf8));
    }

    #[test]
    fn forwarded_ip_reads_several_lines_as_one_list() {
        // HAProxy adds a line of its own after the client's.
        let mut head = head("x-forwarded-for", b"6.6.6.6, 7.7.7.7");
        head.headers
            .append("x-forwarded-for", HeaderValue::from_static("203.0.113.9"));
        assert_eq!(forwarded_ip(1)(&head), Ok("203.0.113.9".parse().unwrap()));
        assert_eq!(forwarded_ip(2)(&head), Ok("7.7.7.7".parse().unwrap()));
        assert_eq!(forwarded_ip(3)(&head), Ok("6.6.6.6".parse().unwrap()));
    }

    /// Whatever the client writes left of the trusted entries, in one line
    /// or in lines of its own, the key is the same (found by a hostile
    /// review: 1 100 bytes of padding made it `TooLong`).
    #[test]
    fn forwarded_ip_ignores_what_it_does_not_read() {
        let ip = "203.0.113.9".parse().unwrap();
        let pad = "1".repeat(MAX_FORWARDED_LEN * 4);
        let padded = head("x-forwarded-for", format!("{pad}, 203.0.113.9").as_bytes());
        assert_eq!(forwarded_ip(1)(&padded), Ok(ip));
        let mut lines = head("x-forwarded-for", pad.as_bytes());
        lines
            .headers
            .append("x-forwarded-for", HeaderValue::from_static("203.0.113.9"));
        assert_eq!(forwarded_ip(1)(&lines), Ok(ip));
        // What it reads is still bounded: the chosen entry itself.
        assert!(matches!(
            forwarded_ip(2)(&padded),
            Err(KeyError::TooLong {
                max: MAX_FORWARDED_LEN,
                ..
            })
        ));
        let many = format!("{}203.0.113.9", "10.0.0.1, ".repeat(200));
        assert!(matches!(
            forwarded_ip(150)(&head("x-forwarded-for", many.as_bytes())),
            Err(KeyError::TooLong { .. })
        ));
        assert_eq!(
            forwarded_ip(100)(&head("x-forwarded-for", many.as_bytes())),
            Ok("10.0.0.1".parse().unwrap())
        );
    }
}
