//! `--redis`: what the storms share through one Redis. The rate limit
//! (see [`clients`](crate::clients)) and the circuit breaker: a
//! [`FleetBreaker`] named [`BREAKER`], so a trip in any storm opens the
//! breaker of every storm using that Redis, and each one prints what it
//! did to the shared breaker and what the others did to it.

use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use fusebox::breaker::{Config, State};
use fusebox::CircuitBreaker;
use fusebox_std::backend::redacted_url;
use fusebox_std::backend::{FleetBreaker, RedisBackend, RedisConfig};
use fusebox_std::Registry;

use crate::clients::BREAKER;
use crate::report::count;
use crate::run::state_label;

/// How often a breaker shared through Redis reconciles with it (changes
/// arrive at once by notification; this is the backstop).
pub const FLEET_SYNC: Duration = Duration::from_millis(100);

/// The URL schemes the redis crate connects with (TCP, TLS, Unix sockets).
const REDIS_SCHEMES: [&str; 6] = ["redis", "rediss", "redis+unix", "unix", "valkey", "valkeys"];

/// The Redis the protected clients share their rate limit and breaker
/// through: the connection, and its URL (the breaker subscribes to its
/// changes on a connection of its own). `Debug` shows the URL redacted.
#[derive(Clone)]
pub struct SharedRedis {
    backend: RedisBackend,
    url: Arc<str>,
}

impl SharedRedis {
    /// The Redis at `url`, connected now (a wrong address or password is
    /// reported at once, redacted), with a 50 ms command timeout: loopback
    /// Redis answers in well under a millisecond, but the storm's clients
    /// keep the cores busy.
    ///
    /// # Errors
    ///
    /// A URL without a Redis scheme, or Redis cannot be reached; the
    /// message shows the URL redacted.
    pub async fn connect(url: &str) -> Result<Self, Box<dyn Error>> {
        // Checked before connecting: a missing scheme (`127.0.0.1:6379`)
        // is a slip in the command line, not a Redis that cannot be reached.
        let scheme = url.split_once("://").map(|(scheme, _)| scheme);
        if !scheme.is_some_and(|scheme| {
            REDIS_SCHEMES
                .iter()
                .any(|known| scheme.eq_ignore_ascii_case(known))
        }) {
            return Err(format!(
                "--redis (or FUSEBOX_REDIS_URL) wants a redis:// or rediss:// URL (redis://[user:password@]host:port[/db]), got {}",
                redacted_url(url)
            )
            .into());
        }
        let config = RedisConfig::new(url).timeout(Duration::from_millis(50));
        let backend = RedisBackend::connect(config)
            .await
            .map_err(|e| format!("cannot reach Redis at {}: {e}", redacted_url(url)))?;
        Ok(Self {
            backend,
            url: url.into(),
        })
    }

    /// The connection.
    pub fn backend(&self) -> &RedisBackend {
        &self.backend
    }
}

impl std::fmt::Debug for SharedRedis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedRedis")
            .field("url", &redacted_url(&self.url))
            .finish_non_exhaustive()
    }
}

/// The breaker every storm using `redis` shares: the fleet breaker
/// [`BREAKER`] of `registry` if an earlier run of this process built it,
/// else a new one over a fresh core breaker with `config`, reconciled every
/// [`FLEET_SYNC`] and notified of changes at once, registered in
/// `registry` (so its health report and dashboard show its state here
/// next to the fleet's, and its Prometheus text the
/// `fusebox_fleet_breaker_*` families), with the registry as its observer
/// (its transitions, its calls' and the fleet's decisions applied here,
/// are the registry's log lines and events, as the in-process breaker's
/// are without `--redis`).
///
/// The protected clients' [`Policy`](fusebox_std::policy::Policy) calls
/// through its local policy ([`FleetBreaker::policy`]): its trips and
/// closes are published, and the fleet's decisions merged into it; but its
/// half-open trials are limited per process, not fleet-wide (that takes
/// [`FleetBreaker::call`], which a `Policy` does not use).
///
/// # Errors
///
/// A name or registry error (a bug in the demo).
pub async fn fleet_breaker(
    registry: &Arc<Registry>,
    config: Config,
    redis: &SharedRedis,
) -> Result<FleetBreaker, Box<dyn Error>> {
    if let Some(fleet) = registry.get_fleet_breaker(BREAKER) {
        return Ok(fleet);
    }
    let core = Arc::new(CircuitBreaker::new(config));
    let fleet = FleetBreaker::builder(BREAKER, core, redis.backend.clone())
        .sync_interval(FLEET_SYNC)
        .notifications(redis.url.to_string())
        .observer(registry.breaker_observer())
        .build()
        .await?;
    registry.register_fleet_breaker(&fleet)?;
    Ok(fleet)
}

/// What one process did to the breaker it shares through Redis, and what
/// it saw of it (protected run with `--redis` only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FleetUse {
    /// Times this process's own calls tripped it.
    pub trips: u64,
    /// Calls of this process it recorded as failures.
    pub failures: u64,
    /// Calls of this process it refused (open here: by a trip here, or by
    /// the fleet's decision).
    pub refused: u64,
    /// Changes of the shared decision this process made.
    pub published: u64,
    /// The newest version of the shared decision applied here.
    pub version: u64,
    /// The fleet's decision as last applied here (`None` before the first
    /// reconciliation).
    pub fleet_state: Option<State>,
    /// Commands to Redis that failed.
    pub errors: u64,
}

impl FleetUse {
    /// `fleet`'s figures now.
    pub fn of(fleet: &FleetBreaker) -> Self {
        let local = fleet.metrics();
        let redis = fleet.fleet_metrics();
        Self {
            trips: local.trips,
            failures: local.failures,
            refused: local.rejected,
            published: redis.published,
            version: fleet.core().merged_version(),
            fleet_state: fleet.fleet_state(),
            errors: redis.errors,
        }
    }
}

/// The start of [`fleet_line`] (the integration test looks for it).
pub const FLEET_LINE: &str = "shared breaker:";

/// `FleetUse` on one line, each figure after its label:
/// `shared breaker: trips here 0, failures here 0, calls refused here 1 234; decision changes made here 1, version applied 17, fleet state closed; Redis errors 0`.
pub fn fleet_line(f: &FleetUse) -> String {
    let fleet = f.fleet_state.map_or("not synced", state_label);
    format!(
        "{FLEET_LINE} trips here {}, failures here {}, calls refused here {}; \
         decision changes made here {}, version applied {}, fleet state {fleet}; Redis errors {}",
        count(f.trips),
        count(f.failures),
        count(f.refused),
        count(f.published),
        count(f.version),
        count(f.errors),
    )
}

/// What the figures say about the sharing, in a sentence, when they say
/// something: this process was refused without failing, or tripped it for
/// everyone.
pub fn fleet_verdict(f: &FleetUse) -> Option<String> {
    if f.trips == 0 && f.failures == 0 && f.refused > 0 {
        Some(format!(
            "This storm failed no call and tripped nothing, yet its breaker refused {}: \
             another storm tripped the breaker they share.",
            count(f.refused)
        ))
    } else if f.trips > 0 && f.published == 0 {
        // Redis never took a change from here (it was out, or refused
        // every command): the trips stayed in this process (found by a
        // hostile review: the sentence said they reached every storm).
        Some(format!(
            "This storm tripped its breaker {} time{}, but Redis took none of the changes \
             ({} Redis errors): the other storms did not see them.",
            count(f.trips),
            if f.trips == 1 { "" } else { "s" },
            count(f.errors)
        ))
    } else if f.trips > 0 {
        Some(format!(
            "This storm tripped the shared breaker {} time{}: each trip opened it for every \
             storm using the same Redis.",
            count(f.trips),
            if f.trips == 1 { "" } else { "s" }
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused_only() -> FleetUse {
        FleetUse {
            trips: 0,
            failures: 0,
            refused: 1_234,
            published: 1,
            version: 17,
            fleet_state: Some(State::Open),
            errors: 0,
        }
    }

    /// A URL without the redis scheme (the usual slip: `127.0.0.1:6379`)
    /// is named as such, not as a Redis that cannot be reached, and a
    /// password in it is still not shown.
    #[tokio::test]
    async fn a_url_without_a_redis_scheme_is_named_as_such() {
        for url in [
            "127.0.0.1:6379",
            "localhost:6379",
            "http://:hunter2@127.0.0.1:6379",
        ] {
            let message = SharedRedis::connect(url).await.unwrap_err().to_string();
            assert!(
                message.contains("redis://") && !message.contains("cannot reach"),
                "{url}: {message}"
            );
            assert!(!message.contains("hunter2"), "{message}");
        }
    }

    #[test]
    fn the_line_names_every_figure() {
        assert_eq!(
            fleet_line(&refused_only()),
            "shared breaker: trips here 0, failures here 0, calls refused here 1 234; \
             decision changes made here 1, version applied 17, fleet state OPEN; Redis errors 0"
        );
        let unsynced = FleetUse {
            fleet_state: None,
            ..refused_only()
        };
        assert!(fleet_line(&unsynced).contains("fleet state not synced;"));
    }

    #[test]
    fn the_verdict_tells_who_tripped_it() {
        let calm = fleet_verdict(&refused_only()).unwrap();
        assert!(calm.contains("refused 1 234") && calm.contains("another storm"));
        let stormy = FleetUse {
            trips: 1,
            failures: 40,
            ..refused_only()
        };
        assert!(fleet_verdict(&stormy).unwrap().contains("1 time:"));
        // Trips Redis never took did not reach the other storms.
        let cut_off = FleetUse {
            trips: 5,
            published: 0,
            errors: 14,
            ..stormy
        };
        let said = fleet_verdict(&cut_off).unwrap();
        assert!(
            said.contains("Redis took none") && said.contains("14 Redis errors"),
            "{said}"
        );
        assert!(!said.contains("every storm"), "{said}");
        let quiet = FleetUse {
            refused: 0,
            ..refused_only()
        };
        assert_eq!(fleet_verdict(&quiet), None);
    }

    #[tokio::test]
    async fn an_unreachable_redis_is_reported_redacted() {
        // A closed loopback port: refused at once.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let url = format!("redis://app:s3cret@127.0.0.1:{port}");
        let err = SharedRedis::connect(&url).await.unwrap_err().to_string();
        assert!(!err.contains("s3cret"), "{err}");
        assert!(err.contains("redis://app:***@127.0.0.1"), "{err}");
    }
}
