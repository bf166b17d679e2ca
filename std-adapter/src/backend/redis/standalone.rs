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
//! want of an answer) starts a silence, any answer ends it, and a command
//! given up on once the silence has lasted the connect timeout swaps in a
//! new manager (which connects lazily, with the configured backoff). A
//! slow server that still answers now and then is never torn down.

use std::sync::atomic::{AtomicU64, Ordering};
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
    /// up on.
    silence: Duration,
    /// When the first command given up on since the last answer was.
    unanswered_since: Mutex<Option<Instant>>,
    /// Managers replaced so far.
    replaced: AtomicU64,
}

impl Standalone {
    /// A lazy manager of `client` (it connects on first use), replaced
    /// after `silence` without an answer.
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
            replaced: AtomicU64::new(0),
        })))
    }

    /// How many times the manager was replaced.
    #[cfg(test)]
    fn replaced(&self) -> u64 {
        self.0.replaced.load(Ordering::Relaxed)
    }

    fn manager(&self) -> ConnectionManager {
        self.0
            .manager
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Shared {
    fn answered(&self) {
        let mut since = self
            .unanswered_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *since = None;
    }

    fn given_up(&self) {
        let now = Instant::now();
        let silent_long_enough = {
            let mut since = self
                .unanswered_since
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match *since {
                None => {
                    *since = Some(now);
                    false
                }
                Some(first) if now.duration_since(first) >= self.silence => {
                    *since = None;
                    true
                }
                Some(_) => false,
            }
        };
        if silent_long_enough {
            self.replace();
        }
    }

    fn replace(&self) {
        match ConnectionManager::new_lazy_with_config(self.client.clone(), self.config.clone()) {
            Ok(fresh) => {
                *self.manager.write().unwrap_or_else(PoisonError::into_inner) = fresh;
                self.replaced.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    silence_ms = self.silence.as_millis(),
                    "Redis answered nothing for the connect timeout: reconnecting on a new connection"
                );
            }
            // Cannot happen for a client that made the first manager.
            Err(e) => {
                tracing::debug!(error = %crate::redact::redact(&e.to_string()), "Redis connection not replaced");
            }
        }
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
        let mut manager = self.manager();
        Box::pin(async move {
            let watch = Watch {
                shared: &self.0,
                done: false,
            };
            let result = manager.req_packed_command(cmd).await;
            watch.end(&result);
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let mut manager = self.manager();
        Box::pin(async move {
            let watch = Watch {
                shared: &self.0,
                done: false,
            };
            let result = manager.req_packed_commands(pipeline, offset, count).await;
            watch.end(&result);
            result
        })
    }

    fn get_db(&self) -> i64 {
        self.manager().get_db()
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
    async fn a_manager_is_replaced_only_after_the_silence_has_lasted() {
        let conn = standalone(Duration::from_secs(1));
        conn.0.given_up();
        tokio::time::advance(Duration::from_millis(999)).await;
        conn.0.given_up();
        assert_eq!(conn.replaced(), 0, "silent for 999 ms");
        tokio::time::advance(Duration::from_millis(1)).await;
        conn.0.given_up();
        assert_eq!(conn.replaced(), 1, "silent for 1 s");
        // A new silence starts with the next command given up on.
        conn.0.given_up();
        assert_eq!(conn.replaced(), 1);
        // An answer ends a silence.
        tokio::time::advance(Duration::from_millis(900)).await;
        conn.0.answered();
        tokio::time::advance(Duration::from_millis(900)).await;
        conn.0.given_up();
        tokio::time::advance(Duration::from_millis(900)).await;
        conn.0.given_up();
        assert_eq!(conn.replaced(), 1, "answered 1.8 s ago, silent for 0.9 s");
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
}
