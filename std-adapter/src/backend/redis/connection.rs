//! [`RedisConfig`] and [`RedisBackend`]: one multiplexed connection
//! (the `redis` crate's `ConnectionManager`, which reconnects in the
//! background with exponential backoff, or a Cluster connection) and a
//! per-command timeout.

use std::fmt;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::super::{Backend, BackendError, Decision, KeyPrefix, Rules};
use super::cluster::{self, Inner, RedisConnection};
use super::script;
use super::tls::{self, Tls};
use super::watched::Watched;
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
/// SAN) and chain to a trusted root; `rediss://…/#insecure` (no checks) is
/// refused, as the `redis` crate's `tls-rustls-insecure` feature is not
/// enabled.
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
    url: String,
    /// Cluster seed nodes (empty: standalone at `url`).
    nodes: Vec<String>,
    prefix: KeyPrefix,
    timeout: Duration,
    connect_timeout: Duration,
    reconnect_min: Duration,
    reconnect_max: Duration,
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
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(5);

    /// Redis at `url`; prefix `fusebox`, a 5 ms command timeout, 1 s to
    /// connect, reconnection backoff from 50 ms to 2 s.
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
    #[must_use]
    pub fn prefix(mut self, prefix: KeyPrefix) -> Self {
        self.prefix = prefix;
        self
    }

    /// The per-command timeout: no decision waits longer for Redis (above
    /// zero: [`RedisBackend::connect`] refuses a zero timeout).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long [`RedisBackend::connect`] waits for the first connection.
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The reconnection backoff: from `min`, doubling (with jitter), up
    /// to `max`. Any durations are safe; a Cluster's retry waits are
    /// clamped to 1 ms ..= ~30 years (its client panicked on `Duration::MAX`).
    #[must_use]
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.reconnect_min = min;
        self.reconnect_max = max.max(min);
        self
    }

    /// The per-command timeout.
    pub fn command_timeout(&self) -> Duration {
        self.timeout
    }

    /// A zero timeout never sees a reply (the timer fires before any
    /// round trip): every decision would be degraded, or no connection
    /// ever made.
    fn check(&self) -> Result<(), BackendError> {
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
    fn client(&self) -> Result<redis::Client, BackendError> {
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
        .map_err(|e| fault(&e))
    }

    fn manager_config(&self) -> ConnectionManagerConfig {
        let min_ms = u64::try_from(self.reconnect_min.as_millis()).unwrap_or(u64::MAX);
        ConnectionManagerConfig::new()
            .set_min_delay(Duration::from_millis(min_ms.max(1)))
            .set_max_delay(self.reconnect_max)
            .set_exponent_base(2.0)
            .set_number_of_retries(usize::MAX >> 1)
            .set_connection_timeout(Some(self.connect_timeout.min(self.reconnect_max)))
            // The (shorter) command timeout is applied per decision, so a
            // brief stall does not tear the connection down; a connection
            // silent for the connect timeout is replaced (`Watched`).
            .set_response_timeout(Some(self.connect_timeout))
    }
}

/// Rate-limit state in Redis, shared by every instance that uses the same
/// server and prefix.
///
/// Each decision is one `EVALSHA` of the GCRA script (reloaded on
/// `NOSCRIPT`, as after a restart, `SCRIPT FLUSH` or a failover), bounded
/// by the per-command timeout. Cheap to clone: clones
/// share the connection.
///
/// # Examples
///
/// ```no_run
/// use fusebox::bucket::Quota;
/// use fusebox_std::backend::{Backend, RedisBackend, RedisConfig, Rules};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let backend = RedisBackend::connect(RedisConfig::new("redis://127.0.0.1:6379")).await?;
/// let rules = Rules::single("per_second", Quota::per_second(100)?)?;
/// let decision = backend.decide("api", "user-42", &rules, 1).await?;
/// println!("allowed: {}, {} left", decision.allowed, decision.remaining);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisBackend {
    conn: RedisConnection,
    prefix: KeyPrefix,
    timeout: Duration,
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisBackend {
    /// Connects (and authenticates) now.
    ///
    /// # Errors
    ///
    /// [`BackendError::InvalidConfig`] for a zero command or connect
    /// timeout, [`BackendError::Auth`] for refused credentials,
    /// [`BackendError::Tls`] for a certificate refused either way (or
    /// certificates that cannot be read, or given for a `redis://` URL),
    /// [`BackendError::Unavailable`] for a bad URL or an unreachable
    /// server, [`BackendError::Timeout`] after the connect timeout; no
    /// message carries the URL's password or the client key.
    pub async fn connect(config: RedisConfig) -> Result<Self, BackendError> {
        config.check()?;
        if !config.nodes.is_empty() {
            let certificates = tls::prepare(config.nodes.iter().map(String::as_str), &config.tls)?;
            let backoff = (config.reconnect_min, config.reconnect_max);
            return Ok(Self {
                conn: cluster::connect(
                    &config.nodes,
                    certificates,
                    config.connect_timeout,
                    backoff,
                )
                .await?,
                prefix: config.prefix,
                timeout: config.timeout,
            });
        }
        let client = config.client()?;
        // The first connection is not retried: a wrong password or a
        // server that is down is reported now, clearly.
        let first = ConnectionManagerConfig::new()
            .set_number_of_retries(0)
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.connect_timeout));
        match tokio::time::timeout(
            config.connect_timeout,
            ConnectionManager::new_with_config(client.clone(), first),
        )
        .await
        {
            Err(_) => return Err(BackendError::Timeout(config.connect_timeout)),
            Ok(Err(e)) => return Err(fault(&e)),
            Ok(Ok(mut first)) => {
                // A server that wants a password given none connects, then
                // refuses every command (NOAUTH): asked once now, so that is
                // reported at once too (found by a hostile review).
                let ping = redis::cmd("PING");
                match tokio::time::timeout(
                    config.connect_timeout,
                    ping.query_async::<redis::Value>(&mut first),
                )
                .await
                {
                    Err(_) => return Err(BackendError::Timeout(config.connect_timeout)),
                    Ok(Err(e)) => return Err(fault(&e)),
                    Ok(Ok(_)) => {}
                }
            }
        }
        Self::connect_lazy(config)
    }

    /// Connects on first use, and from then on in the background: for a
    /// service that must start while Redis is down (a standalone server,
    /// or a Cluster, whose nodes are then dialled in the background).
    ///
    /// # Errors
    ///
    /// [`BackendError::InvalidConfig`] for a zero command or connect
    /// timeout; [`BackendError::Unavailable`] for a URL that cannot be
    /// parsed; [`BackendError::Tls`] for certificates that cannot be read
    /// (a server's certificate is checked on first use).
    pub fn connect_lazy(config: RedisConfig) -> Result<Self, BackendError> {
        config.check()?;
        let conn = if config.nodes.is_empty() {
            let maker = (config.client()?, config.manager_config());
            let watched = Watched::new(maker, config.connect_timeout).map_err(|e| fault(&e))?;
            RedisConnection(Inner::Single(watched))
        } else {
            let certificates = tls::prepare(config.nodes.iter().map(String::as_str), &config.tls)?;
            let backoff = (config.reconnect_min, config.reconnect_max);
            cluster::connect_lazy(&config.nodes, certificates, config.connect_timeout, backoff)?
        };
        Ok(Self {
            conn,
            prefix: config.prefix,
            timeout: config.timeout,
        })
    }

    /// The key prefix.
    pub fn prefix(&self) -> &KeyPrefix {
        &self.prefix
    }

    /// The per-command timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// [`Backend::decide`] at a given time instead of Redis `TIME`: `now`
    /// in microseconds is passed to the script as its optional last
    /// argument. For deterministic tests and replays (the differential
    /// test against the core bucket uses it); the limiter never sends it.
    /// Keys written this way live a day longer than their refill time
    /// (expiry runs on Redis's real clock, not on `now`).
    ///
    /// # Errors
    ///
    /// As [`Backend::decide`].
    pub async fn decide_at(
        &self,
        limiter: &str,
        key: &str,
        rules: &Rules,
        n: u32,
        now_micros: u64,
    ) -> Result<Decision, BackendError> {
        self.run(limiter, key, rules, (n, n), Some(now_micros))
            .await
            .map(|(d, _)| d)
    }

    /// A clone of the connection, for raw commands next to the limiter.
    pub fn connection(&self) -> RedisConnection {
        self.conn.clone()
    }

    /// One script call: at most `most` tokens, at least `fewest` (equal
    /// for a decision); the decision and the tokens taken.
    pub(super) async fn run(
        &self,
        limiter: &str,
        key: &str,
        rules: &Rules,
        (most, fewest): (u32, u32),
        now: Option<u64>,
    ) -> Result<(Decision, u32), BackendError> {
        super::super::check_capacity(rules, most)?;
        let mut base = super::super::key::key_base(&self.prefix, limiter, key, rules)?;
        let cmd = script::command(&mut base, rules, most, fewest, now);
        let mut conn = self.conn.clone();
        match tokio::time::timeout(self.timeout, script::run(&cmd, &mut conn)).await {
            Err(_) => Err(BackendError::Timeout(self.timeout)),
            Ok(Err(e)) if e.is_timeout() => Err(BackendError::Timeout(self.timeout)),
            Ok(Err(e)) => Err(fault(&e)),
            Ok(Ok(reply)) => script::decision(&reply),
        }
    }
}

impl Backend for RedisBackend {
    async fn decide(
        &self,
        limiter: &str,
        key: &str,
        rules: &Rules,
        n: u32,
    ) -> Result<Decision, BackendError> {
        self.run(limiter, key, rules, (n, n), None)
            .await
            .map(|(d, _)| d)
    }
}

/// `url` as [`RedisConfig`]'s `Debug` shows it, for a message or a log
/// line: parsed as the redis crate parses it, with the password and every
/// sensitive query value (`pass`, `password`, …) masked wherever they are
/// and whatever they contain (a space, a quote: a text filter such as
/// [`redact`](crate::redact::redact) stops at those); a URL that does not
/// parse is not shown (the redis crate refuses it too, but the text may
/// hold a password).
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

/// A redis error as a backend error, its message redacted.
pub(super) fn fault(e: &redis::RedisError) -> BackendError {
    let text = redact(&e.to_string()).into_owned();
    let auth = matches!(e.kind(), redis::ErrorKind::AuthenticationFailed)
        || text.contains("WRONGPASS")
        || text.contains("NOAUTH");
    if auth {
        BackendError::Auth(text)
    } else if tls::is_tls_error(e) {
        BackendError::Tls(text)
    } else if e.is_timeout() {
        BackendError::Unavailable(format!("timed out: {text}"))
    } else {
        BackendError::Unavailable(text)
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
}
