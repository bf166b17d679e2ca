//! [`RedisConfig`]: how to reach Redis (its URL or Cluster nodes, TLS,
//! key prefix) and how long to wait for it; and [`redacted_url`], the URL
//! as it may be shown.

use std::fmt;
use std::time::Duration;

use redis::aio::ConnectionManagerConfig;

use super::super::{BackendError, KeyPrefix};
use super::connection::fault;
use super::tls::{self, Tls};
use crate::redact::redact;

/// How to reach Redis and how long to wait for it.
///
/// The URL carries the credentials and TLS (`redis://user:password@host:port/db`,
/// `rediss://` for TLS on rustls); it is never shown: `Debug` and every
/// error redact it. A `rediss://` server is checked against the system's
/// roots, or against a private CA given to
/// [`tls_root_cert_pem`](Self::tls_root_cert_pem); a client certificate
/// for mutual TLS goes to [`tls_client_cert_pem`](Self::tls_client_cert_pem).
///
/// # TLS
///
/// TLS runs on rustls, built with its ring provider. Before the first
/// `rediss://` connection fusebox installs ring as rustls's process-wide
/// default provider, unless the application installed one already: to use
/// another (aws-lc-rs, a FIPS build), install it before connecting. The
/// server's certificate must name the URL's host (an IP address too, as a
/// SAN) and chain to a trusted root. There is no opt-out:
/// `rediss://…/#insecure` (no checks) is refused as a
/// [`BackendError::Tls`], whatever features the `redis` crate is built
/// with (another crate of the application may enable its
/// `tls-rustls-insecure`, which makes the `redis` crate accept it).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use fusebox_std::backend::{KeyPrefix, RedisConfig};
///
/// let config = RedisConfig::new("redis://app:s3cret@127.0.0.1:6379/0")
///     .prefix(KeyPrefix::new("tenant_a")?)
///     .timeout(Duration::from_millis(3));
/// assert!(!format!("{config:?}").contains("s3cret"));
/// assert_eq!(config.command_timeout(), Duration::from_millis(3));
/// // A Unix socket's password (`pass=`) is never shown either.
/// let socket = RedisConfig::new("redis+unix:///run/redis.sock?pass=s3cret");
/// assert!(!format!("{socket:?}").contains("s3cret"));
/// # Ok::<(), fusebox_std::backend::BackendError>(())
/// ```
#[derive(Clone)]
pub struct RedisConfig {
    pub(super) url: String,
    /// Cluster seed nodes (empty: standalone at `url`).
    pub(super) nodes: Vec<String>,
    pub(super) prefix: KeyPrefix,
    pub(super) timeout: Duration,
    pub(super) connect_timeout: Duration,
    pub(super) reconnect_min: Duration,
    pub(super) reconnect_max: Duration,
    /// Roots and client certificate for `rediss://` (see `tls.rs`).
    pub(super) tls: Tls,
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &shown_url(&self.url))
            .field(
                "nodes",
                &self.nodes.iter().map(|n| shown_url(n)).collect::<Vec<_>>(),
            )
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("reconnect", &(self.reconnect_min, self.reconnect_max))
            .field("tls", &self.tls)
            .finish()
    }
}

impl RedisConfig {
    /// The default per-command timeout: 5 ms (loopback or same-zone Redis
    /// answers in well under a millisecond).
    ///
    /// ```
    /// use std::time::Duration;
    /// use fusebox_std::backend::RedisConfig;
    ///
    /// assert_eq!(RedisConfig::DEFAULT_TIMEOUT, Duration::from_millis(5));
    /// assert_eq!(RedisConfig::new("redis://127.0.0.1:6379").command_timeout(), RedisConfig::DEFAULT_TIMEOUT);
    /// ```
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(5);

    /// Redis at `url`; prefix `fusebox`, a 5 ms command timeout, 1 s to
    /// connect, reconnection backoff from 50 ms to 2 s.
    ///
    /// Nothing is checked or dialled here: the URL is parsed when a
    /// backend is made from the config.
    ///
    /// ```
    /// use fusebox_std::backend::{RedisBackend, RedisConfig};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:6379"))?;
    /// assert_eq!(backend.prefix().as_str(), "fusebox");
    /// assert_eq!(backend.timeout(), RedisConfig::DEFAULT_TIMEOUT);
    /// assert!(RedisBackend::connect_lazy(RedisConfig::new("not a url")).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            nodes: Vec::new(),
            prefix: KeyPrefix::default(),
            timeout: Self::DEFAULT_TIMEOUT,
            connect_timeout: Duration::from_secs(1),
            reconnect_min: Duration::from_millis(50),
            reconnect_max: Duration::from_secs(2),
            tls: Tls::default(),
        }
    }

    /// A Redis Cluster reached through any of `nodes` (URLs with the same
    /// credentials); otherwise as [`new`](Self::new). Every rule of one
    /// request lives in one slot (the keys share a hash tag), so the script
    /// stays atomic on the Cluster.
    ///
    /// ```
    /// use fusebox_std::backend::RedisConfig;
    ///
    /// let config = RedisConfig::cluster(["redis://:pw@10.0.0.1:7000", "redis://:pw@10.0.0.2:7000"]);
    /// assert!(!format!("{config:?}").contains(":pw@"));
    /// ```
    pub fn cluster<S: Into<String>>(nodes: impl IntoIterator<Item = S>) -> Self {
        let nodes: Vec<String> = nodes.into_iter().map(Into::into).collect();
        let mut config = Self::new(nodes.first().cloned().unwrap_or_default());
        config.nodes = nodes;
        config
    }

    /// The key prefix (a tenant's namespace).
    ///
    /// ```
    /// use fusebox_std::backend::{KeyPrefix, RedisBackend, RedisConfig};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let config = RedisConfig::new("redis://127.0.0.1:1").prefix(KeyPrefix::new("tenant_a")?);
    /// assert_eq!(RedisBackend::connect_lazy(config)?.prefix().as_str(), "tenant_a");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    #[must_use]
    pub fn prefix(mut self, prefix: KeyPrefix) -> Self {
        self.prefix = prefix;
        self
    }

    /// The per-command timeout: no decision waits longer for Redis (above
    /// zero: [`RedisBackend::connect`](super::RedisBackend::connect) refuses a zero timeout).
    ///
    /// ```
    /// use std::time::Duration;
    /// use fusebox_std::backend::{BackendError, RedisBackend, RedisConfig};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let config = RedisConfig::new("redis://127.0.0.1:1").timeout(Duration::from_millis(2));
    /// assert_eq!(config.command_timeout(), Duration::from_millis(2));
    /// let zero = RedisConfig::new("redis://127.0.0.1:1").timeout(Duration::ZERO);
    /// assert!(matches!(RedisBackend::connect_lazy(zero), Err(BackendError::InvalidConfig(_))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long [`RedisBackend::connect`](super::RedisBackend::connect) waits for the first connection,
    /// and how long any later connection attempt (a reconnection, or the
    /// first one of [`connect_lazy`](super::RedisBackend::connect_lazy))
    /// may take, however short the [reconnection
    /// backoff](Self::reconnect_backoff) between attempts.
    ///
    /// Above zero, as the command timeout.
    ///
    /// ```
    /// use std::time::Duration;
    /// use fusebox_std::backend::{BackendError, RedisBackend, RedisConfig};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let config = RedisConfig::new("redis://127.0.0.1:1").connect_timeout(Duration::from_millis(200));
    /// assert!(RedisBackend::connect_lazy(config).is_ok());
    /// let zero = RedisConfig::new("redis://127.0.0.1:1").connect_timeout(Duration::ZERO);
    /// assert!(matches!(RedisBackend::connect_lazy(zero), Err(BackendError::InvalidConfig(_))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The reconnection backoff: from `min`, doubling (with jitter), up
    /// to `max`: the waits between connection attempts, each of which
    /// may take the [connect timeout](Self::connect_timeout). Any
    /// durations are safe; a Cluster's retry waits are
    /// clamped to 1 ms ..= ~30 years (its client panicked on `Duration::MAX`).
    /// A `max` below `min` is raised to `min`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use fusebox_std::backend::RedisConfig;
    ///
    /// let config = RedisConfig::new("redis://127.0.0.1:6379")
    ///     .reconnect_backoff(Duration::from_millis(100), Duration::from_secs(5));
    /// assert!(format!("{config:?}").contains("reconnect: (100ms, 5s)"));
    /// let raised = RedisConfig::new("redis://127.0.0.1:6379")
    ///     .reconnect_backoff(Duration::from_secs(1), Duration::from_millis(10));
    /// assert!(format!("{raised:?}").contains("reconnect: (1s, 1s)"));
    /// ```
    #[must_use]
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.reconnect_min = min;
        self.reconnect_max = max.max(min);
        self
    }

    /// The per-command timeout.
    ///
    /// ```
    /// use std::time::Duration;
    /// use fusebox_std::backend::RedisConfig;
    ///
    /// let config = RedisConfig::new("redis://127.0.0.1:6379");
    /// assert_eq!(config.command_timeout(), Duration::from_millis(5));
    /// assert_eq!(config.timeout(Duration::from_millis(20)).command_timeout(), Duration::from_millis(20));
    /// ```
    pub fn command_timeout(&self) -> Duration {
        self.timeout
    }

    /// A zero timeout never sees a reply (the timer fires before any
    /// round trip): every decision would be degraded, or no connection
    /// ever made.
    pub(super) fn check(&self) -> Result<(), BackendError> {
        if self.timeout.is_zero() {
            return Err(BackendError::InvalidConfig(
                "the command timeout must be above zero",
            ));
        }
        if self.connect_timeout.is_zero() {
            return Err(BackendError::InvalidConfig(
                "the connect timeout must be above zero",
            ));
        }
        Ok(())
    }

    /// A standalone client for the configured URL, with the TLS
    /// certificates if any.
    pub(super) fn client(&self) -> Result<redis::Client, BackendError> {
        self.client_for(&self.url)
    }

    /// The URL (a Cluster's first seed node).
    pub(super) fn url(&self) -> &str {
        &self.url
    }

    /// A Cluster's seed nodes (empty: standalone).
    pub(super) fn nodes(&self) -> &[String] {
        &self.nodes
    }

    /// A standalone client for `url` (e.g. one node of this Cluster, or
    /// the URL with options added) with this config's TLS certificates.
    pub(super) fn client_for(&self, url: &str) -> Result<redis::Client, BackendError> {
        match tls::prepare([url], &self.tls)? {
            None => redis::Client::open(url),
            Some(certificates) => redis::Client::build_with_tls(url, certificates),
        }
        .map_err(|e| setup_fault(&e))
    }

    pub(super) fn manager_config(&self) -> ConnectionManagerConfig {
        let min_ms = u64::try_from(self.reconnect_min.as_millis()).unwrap_or(u64::MAX);
        ConnectionManagerConfig::new()
            .set_min_delay(Duration::from_millis(min_ms.max(1)))
            .set_max_delay(self.reconnect_max)
            .set_exponent_base(2.0)
            .set_number_of_retries(usize::MAX >> 1)
            // Each attempt gets the connect timeout, whatever the backoff
            // between attempts (found by a hostile review: bounded by the
            // backoff's maximum, 10 ms of it never reached a server 40 ms
            // away, and every decision failed after `connect` succeeded).
            .set_connection_timeout(Some(self.connect_timeout))
            // The (shorter) command timeout is applied per decision, so a
            // brief stall does not tear the connection down; a connection
            // silent for the connect timeout is replaced (`Watched`).
            .set_response_timeout(Some(self.connect_timeout))
    }
}

/// `url` as [`RedisConfig`]'s `Debug` shows it, for a message or a log
/// line: parsed as the redis crate parses it, with the password and every
/// sensitive query value (`pass`, `password`, …) masked wherever they are
/// and whatever they contain (a space, a quote: a text filter such as
/// [`redact`] stops at those); a URL that does not
/// parse is not shown (the redis crate refuses it too, but the text may
/// hold a password), nor is one with an `@` in its path or fragment
/// (user info a slash away from its place: `redis:///:pw@host`).
///
/// ```
/// use fusebox_std::backend::redacted_url;
///
/// assert_eq!(redacted_url("redis://app:s3cret@127.0.0.1:6379/0"), "redis://app:***@127.0.0.1:6379/0");
/// assert!(!redacted_url("redis://:pa ss@127.0.0.1:6379").contains("pa"));
/// assert_eq!(redacted_url("redis://u:pa/ss@host"), "(not a URL; not shown)");
/// ```
pub fn redacted_url(url: &str) -> String {
    shown_url(url)
}

fn shown_url(url: &str) -> String {
    use crate::redact::{sensitive, MASK};
    let Ok(mut parsed) = url::Url::parse(url) else {
        return "(not a URL; not shown)".to_owned();
    };
    // An `@` past the authority (a slash too many or too few:
    // `redis:///:pw@host`) leaves user info in the path or the fragment,
    // where no parser sees a password: not shown.
    if parsed.path().contains('@') || parsed.fragment().is_some_and(|f| f.contains('@')) {
        return "(not a URL; not shown)".to_owned();
    }
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some(MASK));
    }
    if parsed.query().is_some() {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(name, value)| {
                let value = if sensitive(&name) {
                    MASK.into()
                } else {
                    value.into_owned()
                };
                (name.into_owned(), value)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    // And the text filter's rules on what is left (a token as a user name).
    redact(parsed.as_str()).into_owned()
}

/// A redis error met before anything is dialled (reading a URL, building
/// a client): a URL that does not parse is the configuration's error, not
/// an outage ([`BackendError::is_fault`] is false for it, so no `Degrade`
/// policy hides it); a TLS setting refused stays a TLS error.
pub(super) fn setup_fault(e: &redis::RedisError) -> BackendError {
    if e.kind() == redis::ErrorKind::InvalidClientConfig && !tls::is_tls_error(e) {
        BackendError::InvalidConfig(
            "the Redis URL does not parse (redis://, rediss:// or unix:// with a host or path)",
        )
    } else {
        fault(e)
    }
}

#[cfg(test)]
mod tests {
    use super::RedisConfig;

    /// A password the redis crate accepts (it percent-encodes a space or a
    /// quote) or a URL it refuses never shows in `Debug` (found by a
    /// hostile review: a text filter stopped at the space, the quote or
    /// the `/`, and showed the password).
    #[test]
    fn debug_never_shows_a_password_wherever_it_sits() {
        for url in [
            "redis://app:s3cret@cache:6379/0",
            "redis://:s3cret@cache:6379",
            "redis://app:my s3cret@127.0.0.1:6379",
            "redis://app:ab\"s3cret@cache:6379",
            "redis://app:ab/s3cret@cache:6379/0",
            "redis://app:ab?s3cret@cache:6379",
            "redis://app:ab#s3cret@cache:6379",
            "rediss://app:s3cret@cache:6380/?insecure",
            "redis+unix:///run/redis.sock?user=app&pass=ab s3cret",
            "unix:///run/redis.sock?db=1&password=s3cret",
            "not a url s3cret",
        ] {
            let shown = format!("{:?}", RedisConfig::new(url));
            assert!(!shown.contains("s3cret"), "{url}: {shown}");
            let cluster = format!("{:?}", RedisConfig::cluster([url]));
            assert!(!cluster.contains("s3cret"), "{url}: {cluster}");
        }
        let shown = format!(
            "{:?}",
            RedisConfig::new("redis://app:s3cret@cache:6379/2?protocol=resp3")
        );
        assert!(
            shown.contains("redis://app:***@cache:6379/2?protocol=resp3"),
            "the rest is shown as it is: {shown}"
        );
    }

    #[tokio::test]
    async fn a_url_that_does_not_parse_is_a_config_error_not_an_outage() {
        use crate::backend::{BackendError, RedisBackend};
        for url in [
            "127.0.0.1:6379",
            "http://127.0.0.1:6379",
            "redis://",
            "not a url s3cret",
        ] {
            for result in [
                RedisBackend::connect_lazy(RedisConfig::new(url)).map(drop),
                RedisBackend::connect(RedisConfig::new(url)).await.map(drop),
            ] {
                let e = result.expect_err(url);
                assert!(matches!(e, BackendError::InvalidConfig(_)), "{url}: {e:?}");
                assert!(!e.is_fault(), "a Degrade policy must not apply to {url}");
                assert!(!e.to_string().contains("s3cret"));
            }
        }
    }
}
