//! [`RedisConnection`]: a standalone server's connection manager or a
//! Redis Cluster connection, one type for the script and for raw commands.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster::{ClusterClient, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, PushInfo, RedisFuture, TlsCertificates, Value};

use super::super::BackendError;
use super::connection::fault;
use super::watched::Watched;

/// A connection to Redis: standalone (through the `redis` crate's
/// `ConnectionManager`, which reconnects in the background) or Cluster
/// (which follows slot moves and reconnects to nodes itself); either is
/// replaced by a new one when it falls silent for the connect timeout
/// (no answer, and no reset either: an expired NAT entry, a partition). A
/// command that finds a standalone server's connection closed (its idle
/// `timeout`, a proxy's, a `CLIENT KILL`) is sent once more on the
/// connection made in its place (a Cluster connection retries such a
/// command itself); it may then run twice. Cheap to
/// clone: clones share the connection. A `redis::aio::ConnectionLike`, so
/// raw commands can run on it next to the limiter.
///
/// # Examples
///
/// This example connects to a Redis server, so the doctests compile
/// it without running it.
///
/// ```no_run
/// use fusebox_std::backend::{RedisBackend, RedisConfig};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let backend = RedisBackend::connect(RedisConfig::new("redis://127.0.0.1:6379")).await?;
/// let mut conn = backend.connection();
/// let pong: String = redis::cmd("PING").query_async(&mut conn).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisConnection(pub(super) Inner);

#[derive(Clone)]
pub(super) enum Inner {
    Single(Watched<ConnectionManager>),
    Cluster(Watched<ClusterConnection>),
}

impl RedisConnection {
    /// The error of a command that got no answer within `timeout`: the
    /// refusal (of the credentials, [`BackendError::Auth`], or of a TLS
    /// handshake, [`BackendError::Tls`]) a liveness probe found since the
    /// last answer, else [`BackendError::Timeout`].
    pub(super) fn unanswered(&self, timeout: Duration) -> BackendError {
        self.refusal().unwrap_or(BackendError::Timeout(timeout))
    }

    /// The error of a command that failed with `e` (`timeout` its time to
    /// answer): one that got no answer is [`unanswered`](Self::unanswered);
    /// one that found no connection to its Cluster node (every connection
    /// to it refused) is the refusal a probe found, if any;
    /// anything else is `e`, redacted.
    pub(super) fn failed(&self, e: &redis::RedisError, timeout: Duration) -> BackendError {
        if e.is_timeout() {
            return self.unanswered(timeout);
        }
        if no_node(e)
            && let Some(refusal) = self.refusal()
        {
            return refusal;
        }
        fault(e)
    }

    fn refusal(&self) -> Option<BackendError> {
        match &self.0 {
            Inner::Single(watched) => watched.refusal(),
            Inner::Cluster(watched) => watched.refusal(),
        }
    }
}

/// Whether `e` says a Cluster connection has no connection to the node a
/// command is for: it got no answer (a node down, or one refusing every
/// connection, its credentials for one).
pub(super) fn no_node(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::ClusterConnectionNotFound
}

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            Inner::Single(_) => "RedisConnection::Single",
            Inner::Cluster(_) => "RedisConnection::Cluster",
        })
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.0 {
            Inner::Single(c) => c.req_packed_command(cmd),
            Inner::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.0 {
            Inner::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Inner::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match &self.0 {
            Inner::Single(c) => c.get_db(),
            Inner::Cluster(c) => c.get_db(),
        }
    }
}

/// A Cluster client for `nodes` (URLs with the same credentials;
/// `rediss://` for TLS, with `certificates` if given), with `timeout` to
/// connect and to answer, and the configuration its lazy connections take
/// (the same timeouts).
fn client(
    nodes: &[String],
    certificates: Option<TlsCertificates>,
    timeout: Duration,
    backoff: (Duration, Duration),
) -> Result<(ClusterClient, ClusterConfig), BackendError> {
    let mut builder = ClusterClient::builder(nodes.iter().map(String::as_str))
        .connection_timeout(timeout)
        .response_timeout(timeout)
        .min_retry_wait(retry_wait_ms(backoff.0))
        .max_retry_wait(retry_wait_ms(backoff.1));
    if let Some(certificates) = certificates {
        builder = builder.certs(certificates);
    }
    let client = builder.build().map_err(|e| fault(&e))?;
    let config = ClusterConfig::new()
        .set_connection_timeout(timeout)
        .set_response_timeout(timeout);
    Ok((client, config))
}

/// Connects to a Cluster through any of `nodes` (see [`client`]) within
/// `timeout`: a connection replaced when it falls silent for `timeout`.
pub(super) async fn connect(
    nodes: &[String],
    certificates: Option<TlsCertificates>,
    timeout: Duration,
    backoff: (Duration, Duration),
) -> Result<RedisConnection, BackendError> {
    let (client, config) = client(nodes, certificates, timeout, backoff)?;
    match tokio::time::timeout(timeout, client.get_async_connection()).await {
        Err(_) => Err(BackendError::Timeout(timeout)),
        Ok(Err(e)) => Err(fault(&e)),
        Ok(Ok(first)) => Ok(RedisConnection(Inner::Cluster(Watched::with_first(
            first,
            (client, config),
            timeout,
        )))),
    }
}

/// A Cluster connection through any of `nodes` (see [`client`]) that
/// connects in the background: no node need be up yet.
pub(super) fn connect_lazy(
    nodes: &[String],
    certificates: Option<TlsCertificates>,
    timeout: Duration,
    backoff: (Duration, Duration),
) -> Result<RedisConnection, BackendError> {
    let maker = client(nodes, certificates, timeout, backoff)?;
    let watched = Watched::new(maker, timeout).map_err(|e| fault(&e))?;
    Ok(RedisConnection(Inner::Cluster(watched)))
}

impl RedisConnection {
    /// Whether this is a Cluster connection.
    pub(super) fn is_cluster(&self) -> bool {
        matches!(self.0, Inner::Cluster(_))
    }
}

/// A RESP3 connection to the Cluster through any of `nodes` that sends
/// its push messages (sharded pub/sub) to `pushes`.
pub(super) async fn subscriber(
    nodes: &[String],
    certificates: Option<TlsCertificates>,
    timeout: Duration,
    pushes: tokio::sync::mpsc::UnboundedSender<PushInfo>,
) -> redis::RedisResult<ClusterConnection> {
    let mut builder = ClusterClient::builder(nodes.iter().map(String::as_str))
        .connection_timeout(timeout)
        .response_timeout(timeout)
        .use_protocol(redis::ProtocolVersion::RESP3)
        .push_sender(pushes);
    if let Some(certificates) = certificates {
        builder = builder.certs(certificates);
    }
    builder.build()?.get_async_connection().await
}

/// A retry wait for the Cluster client, in milliseconds: at least 1, at
/// most ~30 years. The client computes `min + 1` and samples `min..max`
/// unchecked: `u64::MAX` (from `Duration::MAX`) overflowed, or left an
/// empty range, and panicked its retry.
fn retry_wait_ms(d: Duration) -> u64 {
    u64::try_from(d.min(crate::clock::FAR).as_millis()).map_or(1, |ms| ms.max(1))
}

#[cfg(test)]
mod tests {
    use super::retry_wait_ms;
    use std::time::Duration;

    #[test]
    fn retry_waits_are_clamped_for_the_cluster_client() {
        assert_eq!(retry_wait_ms(Duration::ZERO), 1);
        assert_eq!(retry_wait_ms(Duration::from_millis(50)), 50);
        let far = retry_wait_ms(Duration::MAX);
        assert_eq!(far, 86_400 * 365 * 30 * 1_000);
        assert!(far.checked_add(1).is_some());
        assert_eq!(retry_wait_ms(Duration::from_secs(u64::MAX)), far);
    }
}
