//! [`Watched`]: a Redis connection (a standalone server's
//! `ConnectionManager`, or a Cluster connection) replaced by a fresh one
//! when it falls silent.
//!
//! Neither of the `redis` crate's connections reconnects when its socket
//! goes quiet: the manager reconnects on a reset or a close, the Cluster
//! connection on a dropped node connection, and a command that times out
//! is only retried on the same socket. A peer that vanished without a
//! reset (an expired NAT or load-balancer entry, a partition) leaves
//! every command waiting on the same dead socket until the kernel gives
//! up on it, about 15 minutes, and a command cut short by the
//! per-command timeout never reaches the connection's own response
//! timeout. So every command is watched: one given up on (its future
//! dropped, or failed for want of an answer) starts a silence, and an
//! answer ends it (on a Cluster, only an answered probe does: one node's
//! answer says nothing of another's socket). Once the silence has lasted
//! the connect timeout, the next
//! command starts a liveness probe beside it: a `PING` (on a Cluster, to
//! every primary) given the whole connect timeout. A probe left
//! unanswered that long makes a new connection and pings it too (twice
//! the connect timeout to connect and answer): only one that answers
//! replaces the silent one. One that does not is dropped and the old one
//! kept, and the next probe waits for a silence twice as long, up to 16
//! connect timeouts: a server (or a Cluster node) hung for good, whose
//! new connections hang too, is neither redialled by every command nor
//! left without its old socket's place in the slot map. A slow server
//! that answers after the per-command timeout is never torn down, and a
//! server that refuses connections is left to the connection's own
//! reconnection and its backoff. Nothing but flags is touched when a
//! command is dropped (which may happen outside any runtime).
//!
//! Two more cases, standalone only (a Cluster connection handles both
//! itself): a command that finds its connection closed (an idle timeout,
//! `CLIENT KILL`) is sent once more on the new one; and a `READONLY`
//! answer (or, from Redis before 7.0, a script error quoting `-READONLY`:
//! the server was demoted to a replica by a failover, while the
//! address dialled now leads to the new primary) makes a new connection,
//! which replaces the current one if its server is a primary (`ROLE`):
//! at most one such look per connect timeout, twice as long after each
//! that found none, up to 16 connect timeouts.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo};
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};
use tokio::time::Instant;

use crate::backend::BackendError;
use crate::redact::Redacted;

/// At most `silence · 2⁴` between probes while fresh connections do not
/// answer either: a node hung for good gets one trial connection every
/// 16 connect timeouts (16 s by default), and a server back after such an
/// outage is used again within about that (plus a probe's `PING` and a
/// fresh connection's: about 18 s by default; on a standalone server up
/// to one connect timeout more, the look for refused credentials,
/// [`Renewable::refusal`], that ends an unanswered round).
const MAX_BACKOFF_SHIFT: u32 = 4;

/// A connection that can be made anew, lazily, and probed for liveness.
pub(super) trait Renewable: ConnectionLike + Clone + Send + Sync + 'static {
    /// What a new connection is made of.
    type Maker: Send + Sync + 'static;

    /// Whether any answer shows the connection alive. Not on a Cluster:
    /// one node's answer says nothing of another's socket, so there only
    /// an answered probe ends a silence.
    const ANSWER_ENDS_SILENCE: bool;

    /// Whether a command that finds its connection closed is sent once
    /// more, on the connection made in its place. A `ConnectionManager`
    /// learns of a closed connection only from the command that fails on
    /// it (the connection is made again after): a server (or a proxy)
    /// that closes idle clients (Redis's `timeout` setting) failed the
    /// first command after every idle period, so a limiter whose requests
    /// came further apart than that degraded on every one (found by a
    /// hostile review: with `timeout 1` and a request every 2.5 s, each
    /// was refused by `FailClosed` with `broken pipe`). Not on a Cluster,
    /// whose connection retries such a command itself.
    const RETRY_DROPPED: bool;

    /// Whether a `READONLY` answer makes it look for the primary on a new
    /// connection. A standalone server demoted to a replica (a failover:
    /// Sentinel's, a managed service's) keeps its clients' connections,
    /// while the name or address they connect to now leads to the new
    /// primary; left on the replica, every write was refused for good
    /// and the limiter or fleet breaker stayed degraded until the process
    /// restarted (found by a hostile review). Not on a Cluster, whose
    /// connection follows the slot map.
    const RENEW_ON_READONLY: bool;

    /// Whether a command fails at once, unsent, while a probe holds the
    /// credentials' refusal (or a TLS handshake's: [`Renewable::refusal`]). A Cluster
    /// connection with no node connected reconnects to every configured
    /// node on each retry of each command (up to 16 retries): with every
    /// node refusing the credentials, each command made about 17
    /// connections (and as many `AUTH`s) to every node, some 45 000 a
    /// minute a node from one caller (found by a hostile review). Such a
    /// command counts as given up on, so the probes go on (backing off,
    /// each only a look for the refusal: one connection a node) and the
    /// first that finds the credentials no longer refused ends the
    /// refusal and lets commands through again. Not standalone, whose
    /// manager reconnects with its own backoff.
    const FAIL_WHILE_REFUSED: bool;

    /// A new connection, connecting in the background or on first use.
    fn renew(maker: &Self::Maker) -> RedisResult<Self>;

    /// A `PING` that reaches every server commands go to.
    fn ping(&mut self) -> RedisFuture<'_, Value>;

    /// The refusal a connection made now, once and within `within`,
    /// meets: the server refusing the credentials ([`BackendError::Auth`])
    /// or a failed TLS handshake (a certificate refused either way,
    /// [`BackendError::Tls`]), its text redacted; `None` for any other outcome. The connection's own
    /// reconnection retries whatever fails, a refused password or
    /// certificate included (a password rotated or a certificate expired
    /// on the server, or either wrong from the start under
    /// `connect_lazy`), so without this the refusal showed only as
    /// commands that never got an answer (for a certificate, found by a
    /// hostile review: `redis did not answer within …` for as long as it
    /// was refused).
    /// `fresh` is how the probe's fresh connection's `PING` failed (`None`:
    /// no answer in time): a connection that does not retry its first
    /// connection has the answer there, with no connection more.
    fn refusal(
        maker: &Self::Maker,
        within: Duration,
        fresh: Option<&redis::RedisError>,
    ) -> impl std::future::Future<Output = Option<BackendError>> + Send;
}

impl Renewable for ConnectionManager {
    type Maker = (redis::Client, ConnectionManagerConfig);
    const ANSWER_ENDS_SILENCE: bool = true;
    const RETRY_DROPPED: bool = true;
    const RENEW_ON_READONLY: bool = true;
    const FAIL_WHILE_REFUSED: bool = false;

    fn renew((client, config): &Self::Maker) -> RedisResult<Self> {
        Self::new_lazy_with_config(client.clone(), config.clone())
    }

    fn ping(&mut self) -> RedisFuture<'_, Value> {
        Box::pin(async move { redis::cmd("PING").query_async(self).await })
    }

    fn refusal(
        (client, _): &Self::Maker,
        within: Duration,
        _: Option<&redis::RedisError>,
    ) -> impl std::future::Future<Output = Option<BackendError>> + Send {
        let client = client.clone();
        async move {
            let config = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(within))
                .set_response_timeout(Some(within));
            let once = client.get_multiplexed_async_connection_with_config(&config);
            match tokio::time::timeout(within, once).await {
                Ok(Err(e)) => refused(&e),
                _ => None,
            }
        }
    }
}

impl Renewable for ClusterConnection {
    type Maker = (ClusterClient, ClusterConfig);
    const ANSWER_ENDS_SILENCE: bool = false;
    const RETRY_DROPPED: bool = false;
    const RENEW_ON_READONLY: bool = false;
    const FAIL_WHILE_REFUSED: bool = true;

    fn renew((client, config): &Self::Maker) -> RedisResult<Self> {
        Ok(client.get_pending_async_connection_with_config(config.clone()))
    }

    /// To every primary: a silent one fails the probe (the Cluster
    /// connection keeps one socket per node, and one node's may be the
    /// silent one).
    fn ping(&mut self) -> RedisFuture<'_, Value> {
        let every_primary = RoutingInfo::MultiNode((
            MultipleNodeRoutingInfo::AllMasters,
            Some(ResponsePolicy::AllSucceeded),
        ));
        Box::pin(self.route_command(redis::cmd("PING"), every_primary))
    }

    /// Looked for only when the probe's fresh connection reached no node
    /// at all (its `PING` failed at once for want of a connection: every
    /// node refused it, or is down), with one connection made through the
    /// configured nodes, each dialled once, none retried (the fresh one
    /// does not say why it failed). Refused by every node it reached, its
    /// error carries one node's refusal. A fresh connection that timed
    /// out instead (a node that accepts and hangs) gets no look: it would
    /// open one connection more to every node on each probe.
    fn refusal(
        (client, config): &Self::Maker,
        within: Duration,
        fresh: Option<&redis::RedisError>,
    ) -> impl std::future::Future<Output = Option<BackendError>> + Send {
        let look = fresh.is_some_and(super::cluster::no_node).then(|| {
            let config = config
                .clone()
                .set_connection_timeout(within)
                .set_response_timeout(within);
            (client.clone(), config)
        });
        async move {
            let (client, config) = look?;
            let once = client.get_async_connection_with_config(config);
            match tokio::time::timeout(within, once).await {
                Ok(Err(e)) => refused(&e),
                _ => None,
            }
        }
    }
}

/// `e` as the refusal [`Renewable::refusal`] holds: refused credentials or
/// a failed TLS handshake; `None` for anything else.
fn refused(e: &redis::RedisError) -> Option<BackendError> {
    match super::connection::fault(e) {
        refusal @ (BackendError::Auth(_) | BackendError::Tls(_)) => Some(refusal),
        _ => None,
    }
}

/// A watched connection, cheap to clone: clones share the connection and
/// see its replacement.
pub(super) struct Watched<C: Renewable>(Arc<Shared<C>>);

impl<C: Renewable> Clone for Watched<C> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

/// A run of commands given up on, and the answers that end such runs.
#[derive(Debug, Default)]
struct Silence {
    /// When the first command given up on since the last answer was.
    since: Option<Instant>,
    /// Answers so far (wrapping): a look for a refused password holds
    /// what it found only if none came meanwhile.
    answers: u64,
}

struct Shared<C: Renewable> {
    connection: RwLock<C>,
    /// What a replacement is made of.
    maker: C::Maker,
    /// How long the connection may stay silent while commands are given
    /// up on, and how long the liveness probe waits for its `PING`.
    silence: Duration,
    /// When the first command given up on since the last answer was, and
    /// how many answers came so far.
    unanswered_since: Mutex<Silence>,
    /// The silence has lasted: the next command starts a probe.
    suspect: AtomicBool,
    /// A probe is running (one at a time).
    probing: AtomicBool,
    /// Connections replaced so far (the connection's generation).
    replaced: AtomicU64,
    /// Probes in a row whose fresh connection did not answer either: the
    /// next silence must last `silence * 2^failed` (at most 16 times),
    /// so a node that hangs for good is not redialled every two
    /// silences.
    failed: AtomicU32,
    /// When the next look for the primary may start, after a `READONLY`
    /// answer (`None`: any time).
    read_only_next: Mutex<Option<Instant>>,
    /// Looks for the primary in a row that found none: the next waits
    /// `silence * 2^n` (at most 16 times), so a server configured as a
    /// replica for good costs one connection every 16 s at most.
    read_only_misses: AtomicU32,
    /// The refusal (of the credentials, or of a TLS handshake) a probe
    /// found ([`Renewable::refusal`]), until the connection answers again
    /// or a later probe finds none; `refused` says whether one is held,
    /// so that an answer clears it without taking the lock.
    refusal: Mutex<Option<BackendError>>,
    refused: AtomicBool,
}

impl<C: Renewable> Watched<C> {
    /// A new lazy connection from `maker` (see [`Renewable::renew`]),
    /// replaced when a liveness probe finds it silent for `silence`.
    pub(super) fn new(maker: C::Maker, silence: Duration) -> RedisResult<Self> {
        let first = C::renew(&maker)?;
        Ok(Self::with_first(first, maker, silence))
    }

    /// `first` (already connected), replaced by one from `maker` when a
    /// liveness probe finds it silent for `silence`.
    pub(super) fn with_first(first: C, maker: C::Maker, silence: Duration) -> Self {
        Self(Arc::new(Shared {
            connection: RwLock::new(first),
            maker,
            silence,
            unanswered_since: Mutex::new(Silence::default()),
            suspect: AtomicBool::new(false),
            probing: AtomicBool::new(false),
            replaced: AtomicU64::new(0),
            failed: AtomicU32::new(0),
            read_only_next: Mutex::new(None),
            read_only_misses: AtomicU32::new(0),
            refusal: Mutex::new(None),
            refused: AtomicBool::new(false),
        }))
    }

    /// The refusal (of the credentials, or of a TLS handshake) the last
    /// probe found, while the connection has not answered since: commands
    /// that got no answer are then reported as that refusal, not as
    /// timeouts.
    pub(super) fn refusal(&self) -> Option<BackendError> {
        if !self.0.refused.load(Ordering::Relaxed) {
            return None;
        }
        self.0
            .refusal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// After a command answered `READONLY` (`read_only`): a look for the
    /// primary (see [`Renewable::RENEW_ON_READONLY`]), one at a time, at
    /// most one per `silence` (backing off while none is found), only on
    /// a current Tokio runtime.
    fn after(&self, read_only: bool) {
        if !C::RENEW_ON_READONLY || !read_only || tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let now = Instant::now();
        {
            let mut next = self
                .0
                .read_only_next
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if next.is_some_and(|at| now < at) {
                return;
            }
            let misses = self
                .0
                .read_only_misses
                .load(Ordering::Relaxed)
                .min(MAX_BACKOFF_SHIFT);
            *next = Some(crate::clock::saturating_add(
                now,
                self.0.silence.saturating_mul(1 << misses),
            ));
        }
        if !self.0.probing.swap(true, Ordering::Relaxed) {
            tokio::spawn(find_primary(Probing(Arc::clone(&self.0))));
        }
    }

    /// How many times the connection was replaced.
    #[cfg(test)]
    fn replaced(&self) -> u64 {
        self.0.replaced.load(Ordering::Relaxed)
    }

    /// The connection for a command, after starting a liveness probe if
    /// the silence has lasted (called in the command's future, so inside
    /// the runtime).
    fn connection(&self) -> C {
        if self.0.suspect.swap(false, Ordering::Relaxed)
            && tokio::runtime::Handle::try_current().is_ok()
            && !self.0.probing.swap(true, Ordering::Relaxed)
        {
            // Moved into the task: however it ends (done, panicked, or
            // dropped unpolled with its runtime) the flag is cleared
            // (found by a hostile review: a probe cut by a runtime's
            // shutdown left probing on for good).
            tokio::spawn(probe(Probing(Arc::clone(&self.0))));
        }
        self.0.current()
    }
}

/// Pings the current connection with the whole silence to answer in: no
/// answer replaces it (if no one replaced it meanwhile); an answer, or an
/// error of the connection's own (which reconnects by itself), ends the
/// silence.
async fn probe<C: Renewable>(probing: Probing<C>) {
    let shared = &probing.0;
    if C::FAIL_WHILE_REFUSED && shared.refused.load(Ordering::Relaxed) {
        refused_probe(shared).await;
        return;
    }
    let generation = shared.replaced.load(Ordering::Relaxed);
    let mut connection = shared.current();
    let answer = tokio::time::timeout(shared.silence, connection.ping()).await;
    // No answer: our timeout, or the connection's own response timeout
    // (the same length) firing first, or a Cluster connection with no
    // connection to a node (each refused: a node down, or refusing the
    // credentials, which only a look for the refusal below tells apart;
    // they read as "no connections found" at once, not as a timeout).
    let unanswered = match &answer {
        Err(_) => true,
        Ok(Err(e)) => e.is_timeout() || super::cluster::no_node(e),
        Ok(Ok(_)) => false,
    };
    if matches!(answer, Ok(Ok(_))) {
        shared.failed.store(0, Ordering::Relaxed);
        shared.clear_refusal();
    }
    if unanswered && shared.replaced.load(Ordering::Relaxed) == generation {
        // Only a fresh connection that answers replaces the silent one
        // (found by a hostile review: a Cluster node whose new connections
        // hang too was swapped for a fresh connection with no socket to
        // it, and every command for its slots then went MOVED, opened a
        // new connection to the hung node and stalled the slot refresh,
        // failing ~41 % of the healthy nodes' commands, for good). The
        // fresh one gets the connect timeout to connect and the silence
        // to answer.
        match C::renew(&shared.maker) {
            Ok(mut fresh) => {
                let fresh_answer =
                    tokio::time::timeout(shared.silence.saturating_mul(2), fresh.ping()).await;
                let answered = matches!(fresh_answer, Ok(Ok(_)));
                if answered && shared.replaced.load(Ordering::Relaxed) == generation {
                    shared.failed.store(0, Ordering::Relaxed);
                    shared.clear_refusal();
                    shared.replace_with(fresh);
                } else if !answered {
                    let _ = shared
                        .failed
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |f| {
                            Some(f.saturating_add(1).min(MAX_BACKOFF_SHIFT))
                        });
                    tracing::debug!(
                        "Redis silent, and a new connection did not answer either: kept"
                    );
                    // Why not: a refused password is retried for ever by
                    // both connections, and looks like silence. Any other
                    // outcome (the server gone, hung, or taking the
                    // credentials now) ends a refusal held from an earlier
                    // probe: a server stopped after refusing them read as
                    // refused credentials for as long as it was down
                    // (found by a hostile review).
                    // An answer while the refusal is looked for ends it
                    // first: the refusal is not held then.
                    let answers = shared.answers();
                    let failed = match &fresh_answer {
                        Ok(Err(e)) => Some(e),
                        _ => None,
                    };
                    match C::refusal(&shared.maker, shared.silence, failed).await {
                        Some(refusal) => {
                            if shared.hold_refusal(refusal, answers) && C::FAIL_WHILE_REFUSED {
                                shared.park(generation);
                            }
                        }
                        None => shared.clear_refusal(),
                    }
                }
            }
            Err(e) => {
                tracing::debug!(error = %Redacted(&e.to_string()), "Redis connection not replaced");
            }
        }
    }
    shared.answered();
}

/// A probe while the credentials' refusal is held and commands are not
/// sent (see [`Renewable::FAIL_WHILE_REFUSED`]): only the look for the
/// refusal (one connection a node), no `PING` on the connection parked
/// meanwhile nor on a fresh one, whose retries reconnect to every node
/// again and again. Refused again: held, and the next probe waits longer
/// (as after a fresh connection that did not answer); anything else ends
/// the refusal, and commands go to the parked connection again, which
/// connects on the first.
async fn refused_probe<C: Renewable>(shared: &Shared<C>) {
    let answers = shared.answers();
    let no_node = redis::RedisError::from((
        redis::ErrorKind::ClusterConnectionNotFound,
        "No connections found",
    ));
    if let Some(refusal) = C::refusal(&shared.maker, shared.silence, Some(&no_node)).await {
        let _ = shared
            .failed
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |f| {
                Some(f.saturating_add(1).min(MAX_BACKOFF_SHIFT))
            });
        shared.hold_refusal(refusal, answers);
    } else {
        shared.failed.store(0, Ordering::Relaxed);
        shared.clear_refusal();
    }
    shared.answered();
}

/// A look for the primary after a `READONLY` answer: a new connection
/// (to the same name or address, which may lead elsewhere now) replaces
/// the current one if its server says it is a primary (`ROLE`) within
/// twice the silence; otherwise the current one is kept and the next
/// look waits longer.
async fn find_primary<C: Renewable>(probing: Probing<C>) {
    let shared = &probing.0;
    let generation = shared.replaced.load(Ordering::Relaxed);
    let found = match C::renew(&shared.maker) {
        Ok(mut fresh) => {
            let role = redis::cmd("ROLE");
            let answer = tokio::time::timeout(
                shared.silence.saturating_mul(2),
                role.query_async::<Value>(&mut fresh),
            )
            .await;
            let primary = matches!(
                &answer,
                Ok(Ok(Value::Array(fields))) if matches!(
                    fields.first(),
                    Some(Value::BulkString(role)) if role.as_slice() == b"master"
                ) || matches!(
                    fields.first(),
                    Some(Value::SimpleString(role)) if role == "master"
                )
            );
            primary.then_some(fresh)
        }
        Err(e) => {
            tracing::debug!(error = %Redacted(&e.to_string()), "no new Redis connection to look for the primary");
            None
        }
    };
    match found {
        Some(fresh) if shared.replaced.load(Ordering::Relaxed) == generation => {
            shared.read_only_misses.store(0, Ordering::Relaxed);
            *shared
                .connection
                .write()
                .unwrap_or_else(PoisonError::into_inner) = fresh;
            shared.replaced.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                "Redis answered READONLY (a replica: a failover?): reconnected, to a primary"
            );
        }
        Some(_) => {}
        None => {
            let _ =
                shared
                    .read_only_misses
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |m| {
                        Some(m.saturating_add(1).min(MAX_BACKOFF_SHIFT))
                    });
            tracing::debug!("Redis answered READONLY and a new connection found no primary: kept");
        }
    }
}

/// A running probe: lets the next silence probe again when dropped.
struct Probing<C: Renewable>(Arc<Shared<C>>);

impl<C: Renewable> Drop for Probing<C> {
    fn drop(&mut self) {
        self.0.probing.store(false, Ordering::Relaxed);
    }
}

impl<C: Renewable> Shared<C> {
    /// Answers so far (see [`hold_refusal`](Self::hold_refusal)).
    fn answers(&self) -> u64 {
        self.unanswered_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .answers
    }

    /// Holds `refusal` (of the credentials, or of a TLS handshake), logged
    /// (a warning) when
    /// none was held, unless an answer came since [`answers`](Self::answers)
    /// read `answers_before`: a refusal found by a look that an answer
    /// overtook is already over (the answer cleared what was held before
    /// it, and holding this one would report later silences as refused
    /// credentials until the next answer or probe). Checked, and held,
    /// under the silence lock an answer counts and clears under (see
    /// [`command_answered`](Self::command_answered)): an answer counted
    /// after the look read the count comes either before the check
    /// (nothing held) or after the hold (cleared); one counted before it
    /// cleared before the hold.
    fn hold_refusal(&self, refusal: BackendError, answers_before: u64) -> bool {
        let silence = self
            .unanswered_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if silence.answers != answers_before {
            return false;
        }
        let mut held = self.refusal.lock().unwrap_or_else(PoisonError::into_inner);
        if held.is_none() {
            if let BackendError::Tls(text) = &refusal {
                tracing::warn!(
                    error = %Redacted(text),
                    "Redis's TLS handshake fails: commands get no answer until it is fixed"
                );
            } else if let BackendError::Auth(text) = &refusal {
                tracing::warn!(
                    error = %Redacted(text),
                    "Redis refuses the credentials: commands get no answer until they are fixed"
                );
            }
        }
        *held = Some(refusal);
        self.refused.store(true, Ordering::Relaxed);
        true
    }

    /// While the credentials' refusal is held (see
    /// [`Renewable::FAIL_WHILE_REFUSED`]): the connection (still
    /// `generation`) replaced by a new lazy one, which commands do not
    /// reach. A Cluster connection whose slot refresh fails retries it at
    /// once, for as long as it lives, even with no command: with every
    /// node refusing the credentials, about 4 000 connections a minute a
    /// node (found by a hostile review). The refused one has no node
    /// connected to keep; the new one connects on the first command once
    /// the refusal ends.
    fn park(&self, generation: u64) {
        if self.replaced.load(Ordering::Relaxed) != generation {
            return;
        }
        match C::renew(&self.maker) {
            Ok(idle) => {
                *self
                    .connection
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = idle;
                self.replaced.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::debug!(error = %Redacted(&e.to_string()), "Redis connection not replaced");
            }
        }
    }

    /// The connection answered: no refusal held any more.
    fn clear_refusal(&self) {
        // A load first: every answer comes here, and almost none finds a
        // refusal held (a swap would write the shared line each time).
        if self.refused.load(Ordering::Relaxed) && self.refused.swap(false, Ordering::Relaxed) {
            *self.refusal.lock().unwrap_or_else(PoisonError::into_inner) = None;
        }
    }

    fn current(&self) -> C {
        self.connection
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// A probe ended: a new silence starts (a refusal it found is kept).
    fn answered(&self) {
        drop(self.end_silence());
    }

    /// Ends the silence and counts an answer, returning the lock held.
    fn end_silence(&self) -> std::sync::MutexGuard<'_, Silence> {
        let mut silence = self
            .unanswered_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        silence.since = None;
        silence.answers = silence.answers.wrapping_add(1);
        silence
    }

    /// A command answered: the silence is over, and so is a refusal held.
    /// Both under the silence lock, which [`hold_refusal`](Self::hold_refusal)
    /// holds from its check of the answer count to the refusal held (the
    /// same order: silence, then refusal): an answer counted before a look
    /// read the count also cleared before the look's hold, so it never
    /// clears a refusal found after it. Found by a hostile review: cleared
    /// after the lock, such an answer's clear could come after the hold and
    /// wipe the newer refusal (about 1 in 300 races on two threads), the
    /// next silences then reported as timeouts until another probe.
    fn command_answered(&self) {
        let _silence = self.end_silence();
        self.clear_refusal();
    }

    /// A command given up on: only flags (it may run in a `Drop` outside
    /// any runtime).
    fn given_up(&self) {
        let now = Instant::now();
        let mut silence = self
            .unanswered_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match silence.since {
            None => silence.since = Some(now),
            Some(first) if now.duration_since(first) >= self.silence_after_failures() => {
                silence.since = None;
                self.suspect.store(true, Ordering::Relaxed);
            }
            Some(_) => {}
        }
    }

    /// How long a silence must last before a probe: the connect timeout,
    /// doubled for each probe in a row whose fresh connection did not
    /// answer either (saturating: any `Duration` is safe here).
    fn silence_after_failures(&self) -> Duration {
        let failed = self.failed.load(Ordering::Relaxed).min(MAX_BACKOFF_SHIFT);
        self.silence.saturating_mul(1 << failed)
    }

    fn replace_with(&self, fresh: C) {
        *self
            .connection
            .write()
            .unwrap_or_else(PoisonError::into_inner) = fresh;
        self.replaced.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            silence_ms = self.silence.as_millis(),
            "Redis answered no PING within the connect timeout: reconnecting on a new connection"
        );
    }
}

impl<C: Renewable> Shared<C> {
    /// `command`'s result, its answer (or its want of one) recorded.
    async fn watched<T>(
        &self,
        command: impl std::future::Future<Output = RedisResult<T>>,
    ) -> RedisResult<T> {
        let watch = Watch {
            shared: self,
            done: false,
        };
        let result = command.await;
        watch.end(&result);
        result
    }
}

/// Watches one command: dropped before its answer, it was given up on.
struct Watch<'a, C: Renewable> {
    shared: &'a Shared<C>,
    done: bool,
}

impl<C: Renewable> Watch<'_, C> {
    /// Records how the command ended: an answer (a reply, or an error
    /// the server sent), or none (the connection's own timeout, or an
    /// error of the connection).
    fn end<T>(mut self, result: &RedisResult<T>) {
        self.done = true;
        match result {
            Err(e)
                if e.is_timeout()
                    || e.is_io_error()
                    || e.is_connection_dropped()
                    || super::cluster::no_node(e) =>
            {
                self.shared.given_up();
            }
            _ if C::ANSWER_ENDS_SILENCE => {
                // The connection answers: a run of failed trials, if any,
                // is over (else a server back on its old socket after a
                // hang keeps the longest backoff for the next silence).
                self.shared.command_answered();
                if self.shared.failed.load(Ordering::Relaxed) != 0 {
                    self.shared.failed.store(0, Ordering::Relaxed);
                }
            }
            _ => {}
        }
    }
}

impl<C: Renewable> Drop for Watch<'_, C> {
    fn drop(&mut self) {
        if !self.done {
            self.shared.given_up();
        }
    }
}

/// Whether `result` failed for a connection found closed, so that the
/// command is sent once more (see [`Renewable::RETRY_DROPPED`]). The
/// `redis` crate reports a connection closed before the command was
/// written and one closed while it waited for the answer alike, so a
/// command may run twice: a decision then takes its tokens twice (one
/// request refused that could have been admitted, never one admitted
/// beyond the limit), a fleet breaker's operations are idempotent or
/// guarded by their version, token, or trip or admin record.
fn dropped<T>(result: &RedisResult<T>) -> bool {
    result
        .as_ref()
        .is_err_and(|e| !e.is_timeout() && e.is_connection_dropped())
}

/// Whether the server answered `READONLY` (the `redis` crate hands a
/// command's error reply over as a value; `query` turns it into an error
/// later).
fn read_only(value: &Value) -> bool {
    matches!(value, Value::ServerError(e)
        if e.kind() == Some(redis::ServerErrorKind::ReadOnly)
            || e.details().is_some_and(wrapped_read_only))
}

fn read_only_error(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
        || e.detail().is_some_and(wrapped_read_only)
}

/// Whether an error's text is a write refused inside a script on a
/// replica, as Redis before 7.0 answers it: not `READONLY` but `ERR Error
/// running script (call to f_…): @user_script:94: … -READONLY You can't
/// write against a read only replica.` (at worst, another error quoting
/// that text costs one look).
fn wrapped_read_only(detail: &str) -> bool {
    detail.contains("-READONLY You can't write against a read only replica")
}

impl<C: Renewable> Watched<C> {
    /// The error of a command not sent while the credentials' refusal is
    /// held (see [`Renewable::FAIL_WHILE_REFUSED`]), after starting a
    /// probe if one is due; `None` to send it.
    fn refused_unsent(&self) -> Option<redis::RedisError> {
        if !C::FAIL_WHILE_REFUSED || !self.0.refused.load(Ordering::Relaxed) {
            return None;
        }
        drop(self.connection());
        self.0.given_up();
        // What the connection itself answers with no node connected:
        // mapped to the refusal held (`RedisConnection::failed`).
        Some(redis::RedisError::from((
            redis::ErrorKind::ClusterConnectionNotFound,
            "No connections found",
        )))
    }
}

impl<C: Renewable> ConnectionLike for Watched<C> {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            if let Some(e) = self.refused_unsent() {
                return Err(e);
            }
            let mut connection = self.connection();
            let mut result = self.0.watched(connection.req_packed_command(cmd)).await;
            if C::RETRY_DROPPED && dropped(&result) {
                let mut connection = self.connection();
                result = self.0.watched(connection.req_packed_command(cmd)).await;
            }
            self.after(match &result {
                Ok(value) => read_only(value),
                Err(e) => read_only_error(e),
            });
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            if let Some(e) = self.refused_unsent() {
                return Err(e);
            }
            let mut connection = self.connection();
            let command = connection.req_packed_commands(pipeline, offset, count);
            let mut result = self.0.watched(command).await;
            if C::RETRY_DROPPED && dropped(&result) {
                let mut connection = self.connection();
                let command = connection.req_packed_commands(pipeline, offset, count);
                result = self.0.watched(command).await;
            }
            self.after(match &result {
                Ok(values) => values.iter().any(read_only),
                Err(e) => read_only_error(e),
            });
            result
        })
    }

    fn get_db(&self) -> i64 {
        self.0.current().get_db()
    }
}

#[cfg(test)]
mod tests;
