//! [`Standalone`]: a standalone server's `ConnectionManager`, replaced by
//! a fresh one when the connection falls silent.
//!
//! The `redis` crate's manager reconnects when the socket is reset or
//! closed, not when it goes quiet: a peer that vanished without a reset
//! (an expired NAT or load-balancer entry, a partition) leaves every
//! command waiting on the same dead socket until the kernel gives up on
//! it, about 15 minutes, and a command cut short by the per-command
//! timeout never reaches the manager's own response timeout. So every
//! command is watched: one given up on (its future dropped, or failed for
//! want of an answer) starts a silence, any answer ends it. Once the
//! silence has lasted the connect timeout, the next command starts a
//! liveness probe beside it: a `PING` given the whole connect timeout.
//! Only a `PING` left unanswered that long swaps in a new manager (which
//! connects lazily, with the configured backoff): a slow server that
//! answers after the per-command timeout is never torn down, and a server
//! that refuses connections is left to the manager's own reconnection and
//! its backoff. Nothing but flags is touched when a command is dropped
//! (which may happen outside any runtime).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};
use tokio::time::Instant;

/// A standalone connection, cheap to clone: clones share the manager and
/// see its replacement.
#[derive(Clone)]
pub(super) struct Standalone(Arc<Shared>);

struct Shared {
    manager: RwLock<ConnectionManager>,
    /// What a replacement is made of.
    client: redis::Client,
    config: ConnectionManagerConfig,
    /// How long the connection may stay silent while commands are given
    /// up on, and how long the liveness probe waits for its `PING`.
    silence: Duration,
    /// When the first command given up on since the last answer was.
    unanswered_since: Mutex<Option<Instant>>,
    /// The silence has lasted: the next command starts a probe.
    suspect: AtomicBool,
    /// A probe is running (one at a time).
    probing: AtomicBool,
    /// Managers replaced so far (the manager's generation).
    replaced: AtomicU64,
}

impl Standalone {
    /// A lazy manager of `client` (it connects on first use), replaced
    /// when a liveness probe finds it silent for `silence`.
    pub(super) fn new(
        client: redis::Client,
        config: ConnectionManagerConfig,
        silence: Duration,
    ) -> RedisResult<Self> {
        let manager = ConnectionManager::new_lazy_with_config(client.clone(), config.clone())?;
        Ok(Self(Arc::new(Shared {
            manager: RwLock::new(manager),
            client,
            config,
            silence,
            unanswered_since: Mutex::new(None),
            suspect: AtomicBool::new(false),
            probing: AtomicBool::new(false),
            replaced: AtomicU64::new(0),
        })))
    }

    /// How many times the manager was replaced.
    #[cfg(test)]
    fn replaced(&self) -> u64 {
        self.0.replaced.load(Ordering::Relaxed)
    }

    /// The manager for a command, after starting a liveness probe if the
    /// silence has lasted (called in the command's future, so inside the
    /// runtime).
    fn manager(&self) -> ConnectionManager {
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

/// Pings the current manager with the whole silence to answer in: no
/// answer replaces it (if no one replaced it meanwhile); an answer, or an
/// error of the manager's own (which reconnects by itself), ends the
/// silence.
async fn probe(probing: Probing) {
    let shared = &probing.0;
    let generation = shared.replaced.load(Ordering::Relaxed);
    let mut manager = shared.current();
    let ping = redis::cmd("PING");
    let answer =
        tokio::time::timeout(shared.silence, ping.query_async::<Value>(&mut manager)).await;
    // No answer: our timeout, or the manager's own response timeout (the
    // same length) firing first.
    let unanswered = match &answer {
        Err(_) => true,
        Ok(Err(e)) => e.is_timeout(),
        Ok(Ok(_)) => false,
    };
    if unanswered && shared.replaced.load(Ordering::Relaxed) == generation {
        shared.replace();
    }
    shared.answered();
}

/// A running probe: lets the next silence probe again when dropped.
struct Probing(Arc<Shared>);

impl Drop for Probing {
    fn drop(&mut self) {
        self.0.probing.store(false, Ordering::Relaxed);
    }
}

impl Shared {
    fn current(&self) -> ConnectionManager {
        self.manager
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn answered(&self) {
        let mut since = self
            .unanswered_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *since = None;
    }

    /// A command given up on: only flags (it may run in a `Drop` outside
    /// any runtime).
    fn given_up(&self) {
        let now = Instant::now();
        let mut since = self
            .unanswered_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match *since {
            None => *since = Some(now),
            Some(first) if now.duration_since(first) >= self.silence => {
                *since = None;
                self.suspect.store(true, Ordering::Relaxed);
            }
            Some(_) => {}
        }
    }

    fn replace(&self) {
        match ConnectionManager::new_lazy_with_config(self.client.clone(), self.config.clone()) {
            Ok(fresh) => {
                *self.manager.write().unwrap_or_else(PoisonError::into_inner) = fresh;
                self.replaced.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    silence_ms = self.silence.as_millis(),
                    "Redis answered no PING within the connect timeout: reconnecting on a new connection"
                );
            }
            // Cannot happen for a client that made the first manager.
            Err(e) => {
                tracing::debug!(error = %crate::redact::redact(&e.to_string()), "Redis connection not replaced");
            }
        }
    }
}

impl Shared {
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
struct Watch<'a> {
    shared: &'a Shared,
    done: bool,
}

impl Watch<'_> {
    /// Records how the command ended: an answer (a reply, or an error
    /// the server sent), or none (the connection's own timeout, or an
    /// error of the connection).
    fn end<T>(mut self, result: &RedisResult<T>) {
        self.done = true;
        match result {
            Err(e) if e.is_timeout() || e.is_io_error() || e.is_connection_dropped() => {
                self.shared.given_up();
            }
            _ => self.shared.answered(),
        }
    }
}

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.shared.given_up();
        }
    }
}

impl ConnectionLike for Standalone {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let mut manager = self.manager();
            self.0.watched(manager.req_packed_command(cmd)).await
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let mut manager = self.manager();
            let command = manager.req_packed_commands(pipeline, offset, count);
            self.0.watched(command).await
        })
    }

    fn get_db(&self) -> i64 {
        self.0.current().get_db()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standalone(silence: Duration) -> Standalone {
        // Nothing listens on port 1; the manager is lazy, so nothing is
        // dialled until a command runs.
        let client = redis::Client::open("redis://127.0.0.1:1").unwrap();
        Standalone::new(client, ConnectionManagerConfig::new(), silence).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_silence_is_suspected_only_once_it_has_lasted() {
        let conn = standalone(Duration::from_secs(1));
        let suspect = || conn.0.suspect.load(Ordering::Relaxed);
        conn.0.given_up();
        tokio::time::advance(Duration::from_millis(999)).await;
        conn.0.given_up();
        assert!(!suspect(), "silent for 999 ms");
        tokio::time::advance(Duration::from_millis(1)).await;
        conn.0.given_up();
        assert!(suspect(), "silent for 1 s");
        conn.0.suspect.store(false, Ordering::Relaxed);
        // A new silence starts with the next command given up on.
        conn.0.given_up();
        assert!(!suspect());
        // An answer ends a silence.
        tokio::time::advance(Duration::from_millis(900)).await;
        conn.0.answered();
        tokio::time::advance(Duration::from_millis(900)).await;
        conn.0.given_up();
        tokio::time::advance(Duration::from_millis(900)).await;
        conn.0.given_up();
        assert!(!suspect(), "answered 1.8 s ago, silent for 0.9 s");
        assert_eq!(
            conn.replaced(),
            0,
            "flags only: no replacement outside a probe"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_command_counts_as_given_up() {
        let conn = standalone(Duration::from_secs(1));
        {
            let _watch = Watch {
                shared: &conn.0,
                done: false,
            };
        }
        let since = *conn.0.unanswered_since.lock().unwrap();
        assert_eq!(since, Some(Instant::now()));
        Watch {
            shared: &conn.0,
            done: false,
        }
        .end::<()>(&Ok(()));
        assert_eq!(*conn.0.unanswered_since.lock().unwrap(), None);
    }

    /// Dropping a command outside any runtime once the silence has lasted
    /// touches flags only (found by a hostile review: the replacement ran
    /// in the drop, and its `tokio::spawn` panicked there).
    #[test]
    fn a_command_dropped_outside_a_runtime_never_panics() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let conn = rt.block_on(async { standalone(Duration::from_millis(1)) });
        for _ in 0..3 {
            conn.0.given_up();
            std::thread::sleep(Duration::from_millis(2));
        }
        drop(Watch {
            shared: &conn.0,
            done: false,
        });
        assert!(conn.0.suspect.load(Ordering::Relaxed));
        assert_eq!(conn.replaced(), 0);
    }

    /// A probe cut by its runtime's shutdown lets the next silence probe
    /// again (found by a hostile review: probing stayed on for good).
    #[test]
    fn a_probe_cut_by_a_runtime_shutdown_does_not_stop_probing() {
        let first = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let conn = first.block_on(async { standalone(Duration::from_millis(50)) });
        first.block_on(async {
            conn.0.suspect.store(true, Ordering::Relaxed);
            let _ = conn.manager(); // spawns the probe, never polled
        });
        drop(first);
        assert!(!conn.0.probing.load(Ordering::Relaxed), "probing stuck");
    }
}
