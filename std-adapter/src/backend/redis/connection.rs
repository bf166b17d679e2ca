//! [`RedisBackend`]: one multiplexed connection (the `redis` crate's
//! `ConnectionManager`, which reconnects in the background with
//! exponential backoff, or a Cluster connection; either replaced when it
//! falls silent) and a per-command timeout.

use std::fmt;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::super::{Backend, BackendError, Decision, KeyPrefix, Rules};
use super::cluster::{self, Inner, RedisConnection};
use super::config::RedisConfig;
use super::script;
use super::tls;
use super::watched::Watched;
use crate::redact::redact;

/// Rate-limit state in Redis, shared by every instance that uses the same
/// server and prefix.
///
/// Each decision is one `EVALSHA` of the GCRA script (reloaded on
/// `NOSCRIPT`, as after a restart, `SCRIPT FLUSH` or a failover), bounded
/// by the per-command timeout. A command that finds its connection closed
/// by the server (its idle `timeout`, a proxy's, a `CLIENT KILL`) is sent
/// once more on the connection made in its place, within the same
/// timeout (if the connection closed after the command reached Redis, it
/// runs twice: its tokens are taken twice, never an extra admission).
/// A `READONLY` answer from a standalone server (demoted to a replica by
/// a failover, while the address dialled now leads to the new primary)
/// makes a new connection, used from then on if its server is a primary:
/// the limiter finds the new primary by itself (at most one look per
/// connect timeout, backing off to 16 while none is found).
/// Cheap to clone: clones share the connection.
///
/// # Examples
///
/// This example connects to a Redis server, so the doctests compile
/// it without running it.
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
    /// timeout or a URL that does not parse, [`BackendError::Auth`] for
    /// refused credentials, [`BackendError::Tls`] for a certificate
    /// refused either way (or certificates that cannot be read, or given
    /// for a `redis://` URL), [`BackendError::Unavailable`] for an
    /// unreachable server, [`BackendError::Timeout`] after the connect timeout; no
    /// message carries the URL's password or the client key.
    ///
    /// ```
    /// use std::time::Duration;
    /// use fusebox_std::backend::{BackendError, RedisBackend, RedisConfig};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// // Refused before dialling: a zero timeout never sees a reply.
    /// let zero = RedisConfig::new("redis://127.0.0.1:6379").timeout(Duration::ZERO);
    /// assert!(matches!(RedisBackend::connect(zero).await, Err(BackendError::InvalidConfig(_))));
    /// // Nothing listens on port 1: reported now, as a fault.
    /// let config = RedisConfig::new("redis://127.0.0.1:1").connect_timeout(Duration::from_millis(200));
    /// let err = RedisBackend::connect(config).await.unwrap_err();
    /// assert!(err.is_fault());
    /// # });
    /// ```
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
            // The connection's own timeout (the same length) fires first
            // on a server that accepts and never answers: a timeout, as
            // documented, not `Unavailable("timed out")`.
            Ok(Err(e)) if e.is_timeout() => {
                return Err(BackendError::Timeout(config.connect_timeout))
            }
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
                    Ok(Err(e)) if e.is_timeout() => {
                        return Err(BackendError::Timeout(config.connect_timeout))
                    }
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
    /// A background connection retries whatever fails, refused
    /// credentials too, so a wrong password here, or one rotated on the
    /// server while the process runs (after [`connect`](Self::connect)
    /// too), first reads as an outage: commands time out
    /// ([`BackendError::Timeout`]). Once the connection has been silent
    /// for the connect timeout, its liveness probe makes one connection
    /// without retrying; if the server refuses its credentials, commands
    /// that get no answer fail as [`BackendError::Auth`] from then on
    /// (in `health()` and the logs, one warning), until the connection
    /// answers again or a later probe finds the server no longer refusing
    /// them (one stopped or hung since: timeouts again). On a Cluster,
    /// commands for a node every connection to which was refused fail at
    /// once (`No connections found`, [`BackendError::Unavailable`]) rather
    /// than time out, and turn into `Auth` the same way once a probe found
    /// the refusal (its one connection made through the configured nodes);
    /// from then on they fail at once, unsent, and the next probes (one
    /// connection a node each, at most one every 16 connect timeouts)
    /// look for the refusal again, its end letting commands through.
    /// `connect` at startup reports a refused password as `Auth` at once.
    /// On a standalone server, a server certificate refused (another CA,
    /// another name, expired: wrong from the start here, or renewed on the
    /// server since) or a client certificate the server refuses is found
    /// the same way: the handshake retried in the background reads as
    /// timeouts until the probe has looked, then as [`BackendError::Tls`]
    /// (one warning), until the connection answers again. On a Cluster it
    /// reads as timeouts for as long as it lasts (its connection retries
    /// a failed handshake, so the probe's fresh connection times out, as
    /// one to a hung node does, and is not looked into). `connect`
    /// reports it at once, as `Tls`, either way.
    ///
    /// # Errors
    ///
    /// [`BackendError::InvalidConfig`] for a zero command or connect
    /// timeout, a URL that cannot be parsed, or when called outside a
    /// Tokio runtime; [`BackendError::Tls`] for certificates that cannot be read
    /// (a server's certificate is checked on first use).
    ///
    /// ```
    /// use fusebox_std::backend::{BackendError, RedisBackend, RedisConfig};
    ///
    /// // Outside a Tokio runtime: an error, not a panic.
    /// let outside = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:1"));
    /// assert!(matches!(outside, Err(BackendError::InvalidConfig(_))));
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// // Inside one, no server is needed yet.
    /// let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:1"))?;
    /// assert_eq!(backend.prefix().as_str(), "fusebox");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn connect_lazy(config: RedisConfig) -> Result<Self, BackendError> {
        config.check()?;
        // Both lazy connections spawn on the current Tokio runtime (the
        // Cluster one at once): outside one, an error, not a panic (found
        // by a hostile review).
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(BackendError::InvalidConfig(
                "connect_lazy must be called within a Tokio runtime",
            ));
        }
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
    ///
    /// ```
    /// use fusebox_std::backend::{KeyPrefix, RedisBackend, RedisConfig};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let config = RedisConfig::new("redis://127.0.0.1:1").prefix(KeyPrefix::new("tenant_a")?);
    /// assert_eq!(RedisBackend::connect_lazy(config)?.prefix(), &KeyPrefix::new("tenant_a")?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn prefix(&self) -> &KeyPrefix {
        &self.prefix
    }

    /// The per-command timeout.
    ///
    /// ```
    /// use std::time::Duration;
    /// use fusebox_std::backend::{RedisBackend, RedisConfig};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let config = RedisConfig::new("redis://127.0.0.1:1").timeout(Duration::from_millis(3));
    /// assert_eq!(RedisBackend::connect_lazy(config)?.timeout(), Duration::from_millis(3));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// [`Backend::decide`] at a given time instead of Redis `TIME`: `now`
    /// in microseconds is passed to the script as its optional last
    /// argument. For deterministic tests and replays (the differential
    /// test against the core bucket uses it); the limiter never sends it.
    /// Keys written this way live a day longer than their refill time
    /// (expiry runs on Redis's real clock, not on `now`). Keep such calls
    /// off the keys live limiters use, whose states are times on Redis's
    /// clock: a `now` far behind it reads them as corrupt and writes a
    /// state Redis's clock reads as a full bucket; a `now` far ahead reads
    /// them as full and writes a state the live limiters then read as
    /// corrupt (a drained bucket).
    ///
    /// # Errors
    ///
    /// As [`Backend::decide`].
    ///
    /// ```
    /// use fusebox::bucket::Quota;
    /// use fusebox_std::backend::{BackendError, RedisBackend, RedisConfig, Rules};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let backend = RedisBackend::connect_lazy(RedisConfig::new("redis://127.0.0.1:1"))?;
    /// let rules = Rules::single("per_second", Quota::per_second(10)?)?;
    /// // More tokens than the burst: refused before any round trip.
    /// let err = backend.decide_at("api", "user-1", &rules, 11, 1_000_000).await.unwrap_err();
    /// assert_eq!(err, BackendError::InsufficientCapacity { requested: 11, burst: 10 });
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
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
    /// A command that finds the connection closed by the server (its idle
    /// `timeout`, a proxy's, a `CLIENT KILL`) is sent once more on a new
    /// one: if the server ran it before the connection closed, it runs
    /// twice, so a raw command that is not idempotent (`INCR`, `LPUSH`)
    /// may count twice.
    ///
    /// This example talks to a Redis server, so the doctests compile it
    /// without running it.
    ///
    /// ```no_run
    /// use fusebox_std::backend::{RedisBackend, RedisConfig};
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let backend = RedisBackend::connect(RedisConfig::new("redis://127.0.0.1:6379")).await?;
    /// let mut conn = backend.connection();
    /// let pong: String = redis::cmd("PING").query_async(&mut conn).await?;
    /// assert_eq!(pong, "PONG");
    /// # Ok(()) }
    /// ```
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
        let cmd = self.command(limiter, key, rules, (most, fewest), now)?;
        self.execute(&cmd, rules, (most, fewest)).await
    }

    /// The script call of [`run`](Self::run), built (its keys checked)
    /// without a round trip: an owned command, which a task of its own
    /// can send ([`execute`](Self::execute)).
    pub(super) fn command(
        &self,
        limiter: &str,
        key: &str,
        rules: &Rules,
        (most, fewest): (u32, u32),
        now: Option<u64>,
    ) -> Result<redis::Cmd, BackendError> {
        super::super::check_capacity(rules, most)?;
        let mut base = super::super::key::key_base(&self.prefix, limiter, key, rules)?;
        Ok(script::command(&mut base, rules, most, fewest, now))
    }

    /// Sends a [`command`](Self::command) of `rules` asking for at most
    /// `most` tokens, at least `fewest`, within the command timeout; the
    /// decision and the tokens taken.
    pub(super) async fn execute(
        &self,
        cmd: &redis::Cmd,
        rules: &Rules,
        (most, fewest): (u32, u32),
    ) -> Result<(Decision, u32), BackendError> {
        let mut conn = self.conn.clone();
        match tokio::time::timeout(self.timeout, script::run(cmd, &mut conn)).await {
            Err(_) => Err(self.conn.unanswered(self.timeout)),
            Ok(Err(e)) => Err(self.conn.failed(&e, self.timeout)),
            Ok(Ok(reply)) => {
                let (decision, taken) = script::decision(&reply)?;
                script::check(&decision, taken, rules, (most, fewest))?;
                Ok((decision, taken))
            }
        }
    }
}

impl RedisBackend {
    /// Whether Redis takes writes, for a probe whose decision wrote
    /// nothing (a peek, a refusal): `SET <base>~probe 1 XX PX 1` under
    /// `key`'s hash tag. No such key exists (a rule name never starts
    /// with `~`), so it writes nothing; yet a full server (`OOM`, with
    /// `noeviction`) or a read-only replica (`READONLY`, a client left on
    /// the old primary after a failover) refuses it, as it refuses the
    /// script's own `SET` when a token is taken. Such a server answers
    /// every read: without this, a probe that only read ended the outage,
    /// and the next request that took a token began it again.
    pub(super) async fn writable(
        &self,
        limiter: &str,
        key: &str,
        rules: &Rules,
    ) -> Result<(), BackendError> {
        let cmd = self.writable_command(limiter, key, rules)?;
        self.execute_writable(&cmd).await
    }

    /// The `SET` of [`writable`](Self::writable), built without a round
    /// trip.
    pub(super) fn writable_command(
        &self,
        limiter: &str,
        key: &str,
        rules: &Rules,
    ) -> Result<redis::Cmd, BackendError> {
        let mut probe = super::super::key::key_base(&self.prefix, limiter, key, rules)?;
        probe.push_str("~probe");
        let mut cmd = redis::cmd("SET");
        cmd.arg(probe).arg(1).arg("XX").arg("PX").arg(1);
        Ok(cmd)
    }

    /// Sends a [`writable_command`](Self::writable_command) within the
    /// command timeout.
    pub(super) async fn execute_writable(&self, cmd: &redis::Cmd) -> Result<(), BackendError> {
        let mut conn = self.conn.clone();
        match tokio::time::timeout(self.timeout, cmd.query_async::<redis::Value>(&mut conn)).await {
            Err(_) => Err(self.conn.unanswered(self.timeout)),
            Ok(Err(e)) => Err(self.conn.failed(&e, self.timeout)),
            Ok(Ok(_)) => Ok(()),
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

/// A redis error as a backend error, its message redacted.
pub(super) fn fault(e: &redis::RedisError) -> BackendError {
    let text = redact(&e.to_string()).into_owned();
    // A Cluster client that reached no node wraps each node's error in
    // an `Io` one, keeping its text ("Failed to create initial connections
    // - Io: Password authentication failed - AuthenticationFailed").
    let auth = matches!(e.kind(), redis::ErrorKind::AuthenticationFailed)
        || text.contains("WRONGPASS")
        || text.contains("NOAUTH")
        || text.contains("AuthenticationFailed");
    if auth {
        BackendError::Auth(text)
    } else if tls::is_tls_error(e) {
        BackendError::Tls(text)
    } else if e.is_timeout() && !text.starts_with("timed out") {
        BackendError::Unavailable(format!("timed out: {text}"))
    } else {
        BackendError::Unavailable(text)
    }
}

#[cfg(test)]
mod tests {
    use super::fault;
    use crate::backend::{BackendError, RedisBackend, RedisConfig};
    use std::time::Duration;

    /// A server that accepts and never answers (hung, or not Redis) is a
    /// timeout after the connect timeout, as `connect` documents; it was
    /// `Unavailable("timed out")`, the connection's own timeout firing
    /// before ours (found by a hostile review of the TLS paths).
    #[tokio::test]
    async fn a_silent_server_is_a_timeout() {
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("redis://{}", silent.local_addr().unwrap());
        let wait = Duration::from_millis(200);
        let config = RedisConfig::new(url).connect_timeout(wait);
        let err = RedisBackend::connect(config).await.unwrap_err();
        assert_eq!(err, BackendError::Timeout(wait));
        drop(silent);
    }

    /// The redis crate's own timeout reads "timed out" already: a server
    /// that stopped answering (SIGSTOP) was reported by the storm demo as
    /// "redis unavailable: timed out: timed out".
    #[test]
    fn a_timeout_says_timed_out_once() {
        let e = redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut));
        assert!(e.is_timeout());
        let shown = fault(&e).to_string();
        assert_eq!(shown.matches("timed out").count(), 1, "{shown}");
        assert!(shown.starts_with("redis unavailable: timed out"), "{shown}");
    }
}
