//! A Redis whose password is rotated on the server while a backend uses
//! it, for the tests of refused credentials.

use std::time::Duration;

use fusebox::bucket::Quota;
use fusebox_std::backend::{Backend, BackendError, RedisBackend, RedisConfig, Rules};

use super::redis_server::cli;

/// The password the server starts with.
pub const OLD: &str = "old-password-0123456789";
/// The password it is rotated to.
pub const NEW: &str = "new-password-9876543210";

/// The configuration of a backend on `127.0.0.1:port` with password
/// [`OLD`]: commands time out after 50 ms, connections after `connect`
/// (the liveness probe's silence).
pub fn config(port: u16, connect: Duration) -> RedisConfig {
    RedisConfig::new(format!("redis://:{OLD}@127.0.0.1:{port}"))
        .timeout(Duration::from_millis(50))
        .connect_timeout(connect)
        .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200))
}

/// 1 000 calls a second: never the limit in these tests.
pub fn rules() -> Rules {
    Rules::single("per_second", Quota::per_second(1_000).unwrap()).unwrap()
}

/// Sets the server's password from `from` to `to`, and closes every
/// client connection (the backend's too), as a rotation does.
pub fn rotate(port: u16, from: &str, to: &str) {
    let auth = ["-a", from, "--no-auth-warning"];
    let set = cli(
        port,
        &[&auth[..], &["config", "set", "requirepass", to]].concat(),
    );
    assert_eq!(set.trim(), "OK", "CONFIG SET requirepass");
    let auth = ["-a", to, "--no-auth-warning"];
    cli(
        port,
        &[&auth[..], &["client", "kill", "type", "normal"]].concat(),
    );
}

/// `decide`'s results (of key `k` under `rules`) until one `done`
/// accepts, at most `tries` of them 100 ms apart; whether one did. The
/// probe that finds a refusal needs about 1 s with a 200 ms connect
/// timeout: the silence, its `PING`, a fresh connection's, then one
/// connection made once.
pub async fn until<F>(
    backend: &RedisBackend,
    rules: &Rules,
    tries: usize,
    done: F,
) -> (Vec<String>, bool)
where
    F: Fn(&Result<bool, BackendError>) -> bool,
{
    let mut seen = Vec::new();
    for _ in 0..tries {
        let result = backend
            .decide("api", "k", rules, 1)
            .await
            .map(|d| d.allowed);
        let end = done(&result);
        seen.push(match &result {
            Ok(allowed) => format!("ok {allowed}"),
            Err(e) => e.to_string(),
        });
        if end {
            return (seen, true);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (seen, false)
}

/// [`until`] `decide` is refused for its credentials, asserted: it was,
/// its message says so without either password, and nothing was admitted
/// before (each command went unanswered, or found no connection).
pub async fn until_refused(backend: &RedisBackend, rules: &Rules) {
    let (seen, refused) = until(backend, rules, 300, |r| {
        matches!(r, Err(BackendError::Auth(_)))
    })
    .await;
    assert!(refused, "never reported as refused credentials: {seen:?}");
    let last = seen.last().unwrap();
    assert!(last.starts_with("redis refused the credentials"), "{last}");
    assert!(!last.contains(OLD) && !last.contains(NEW), "{last}");
    assert!(seen.iter().all(|s| !s.starts_with("ok")), "{seen:?}");
}
