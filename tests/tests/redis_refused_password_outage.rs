//! A refused password held by the backend (see `redis_refused_password`)
//! meets a plain outage afterwards, and a refusal that lasts: what the
//! backend reports then, and what the probes cost.

mod common;

use std::time::Duration;

use common::password_rotation::{self, config, rotate, rules, NEW, OLD};
use common::redis_server::{cli, RedisServer};
use fusebox_std::backend::{Backend, BackendError, RedisBackend};

/// A backend on `server` with password `OLD`: commands time out after
/// 50 ms, connections after `connect` (the liveness probe's silence).
async fn backend(server: &RedisServer, connect: Duration) -> RedisBackend {
    RedisBackend::connect(config(server.port(), connect))
        .await
        .unwrap()
}

/// [`password_rotation::until`] under [`rules`].
async fn until<F>(backend: &RedisBackend, tries: usize, done: F) -> (Vec<String>, bool)
where
    F: Fn(&Result<bool, BackendError>) -> bool,
{
    password_rotation::until(backend, &rules(), tries, done).await
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[tokio::test]
async fn redis_a_refusal_found_then_a_hung_or_stopped_server_is_reported_as_an_outage() {
    let mut server = RedisServer::start_with(&["--requirepass", OLD]);
    let backend = backend(&server, Duration::from_millis(200)).await;
    rotate(server.port(), OLD, NEW);
    let (seen, refused) = until(&backend, 300, |r| matches!(r, Err(BackendError::Auth(_)))).await;
    assert!(refused, "never reported as refused: {seen:?}");

    // The server hangs (SIGSTOP: connections accepted, nothing answered):
    // nothing refuses the credentials any more.
    server.signal("STOP");
    let (seen, hung) = until(&backend, 300, |r| {
        matches!(r, Err(BackendError::Timeout(_)))
    })
    .await;
    server.signal("CONT");
    assert!(
        hung,
        "a hung server still read as refused credentials: {seen:?}"
    );
    // Back, still refusing them; then gone (connections refused).
    let (seen, refused) = until(&backend, 300, |r| matches!(r, Err(BackendError::Auth(_)))).await;
    assert!(refused, "never reported as refused again: {seen:?}");
    server.kill();
    let (seen, outage) = until(&backend, 300, |r| {
        matches!(
            r,
            Err(BackendError::Timeout(_) | BackendError::Unavailable(_))
        )
    })
    .await;
    assert!(
        outage,
        "a stopped server still read as refused credentials: {seen:?}"
    );

    // Back (with its configured password, the backend's): it answers.
    server.restart();
    let (seen, back) = until(&backend, 300, |r| matches!(r, Ok(true))).await;
    assert!(back, "never answered again: {seen:?}");
}

/// Sound-but-checked: each probe round of a lasting refusal makes a
/// fresh connection manager and one connection made once, both dropped:
/// over 200 commands (about 40 rounds, with a 50 ms connect timeout) the
/// process holds no more descriptors and the server no more clients.
#[tokio::test]
async fn redis_a_lasting_refusal_leaks_no_connection_nor_descriptor() {
    let server = RedisServer::start_with(&["--requirepass", OLD]);
    let port = server.port();
    let backend = backend(&server, Duration::from_millis(50)).await;
    rotate(port, OLD, NEW);
    let (seen, refused) = until(&backend, 300, |r| matches!(r, Err(BackendError::Auth(_)))).await;
    assert!(refused, "never reported as refused: {seen:?}");
    let fds = open_fds();
    let received = stat(port, "stats", "total_connections_received");
    let (seen, _) = until(&backend, 200, |_| false).await;
    let received = stat(port, "stats", "total_connections_received") - received;
    // The manager's retries alone make one connection per 200 ms at most
    // (about 40 here): the probes' rounds add more.
    assert!(
        received > 20,
        "{received} connections: no probe rounds? {seen:?}"
    );
    assert!(seen.iter().all(|s| !s.starts_with("ok")), "{seen:?}");
    // Slack for a connection being made or closed as it is counted.
    let now = open_fds();
    assert!(
        now <= fds + 4,
        "descriptors {fds} -> {now} over {received} connections"
    );
    // `redis-cli` itself, and one connection being refused at most.
    let clients = stat(port, "clients", "connected_clients");
    assert!(
        clients <= 3,
        "{clients} clients after {received} connections"
    );
}

/// The field `name` of `INFO section` (authenticated with `NEW`).
fn stat(port: u16, section: &str, name: &str) -> u64 {
    cli(port, &["-a", NEW, "--no-auth-warning", "info", section])
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .expect(name)
        .trim()
        .parse()
        .unwrap()
}

/// Sound-but-checked: a server with a password that has no room for
/// another client (`maxclients`) answers a new connection with `-ERR max
/// number of clients reached` where the `AUTH` reply would be, and the
/// `redis` crate takes any error reply to `AUTH` for a refused password;
/// the probe's connection made once must not report that as refused
/// credentials (it does not: the server closes the connection at once,
/// so the connection's setup fails on the close, not on the reply).
#[tokio::test]
async fn redis_a_full_server_is_an_outage_not_refused_credentials() {
    let server = RedisServer::start_with(&["--requirepass", OLD, "--maxclients", "8"]);
    let port = server.port();
    let backend = backend(&server, Duration::from_millis(200)).await;
    assert!(
        backend
            .decide("api", "k", &rules(), 1)
            .await
            .unwrap()
            .allowed
    );
    let auth = ["-a", OLD, "--no-auth-warning"];
    cli(
        port,
        &[&auth[..], &["client", "kill", "type", "normal"]].concat(),
    );
    // Every place taken (unauthenticated clients stay): the backend's
    // reconnection is turned away.
    let mut taken = Vec::new();
    for _ in 0..16 {
        taken.push(std::net::TcpStream::connect(("127.0.0.1", port)).unwrap());
    }
    let (seen, refused) = until(&backend, 150, |r| matches!(r, Err(BackendError::Auth(_)))).await;
    assert!(
        !refused,
        "a full server read as refused credentials: {seen:?}"
    );
    assert!(seen.iter().all(|s| !s.starts_with("ok")), "{seen:?}");
    drop(taken);
    let (seen, back) = until(&backend, 300, |r| matches!(r, Ok(true))).await;
    assert!(back, "never answered again: {seen:?}");
}

/// Sound-but-checked: `connect_lazy` with a password the server refuses
/// from the start (its first connection never made) reads as refused
/// credentials, and once the server takes the password (no client to
/// close: the backend never got in) it answers by itself, the refusal
/// forgotten (a hung server is then a timeout).
#[tokio::test]
async fn redis_connect_lazy_with_a_refused_password_is_reported_and_recovers() {
    let server = RedisServer::start_with(&["--requirepass", NEW]);
    let port = server.port();
    let backend = RedisBackend::connect_lazy(config(port, Duration::from_millis(200))).unwrap();
    let (seen, refused) = until(&backend, 300, |r| matches!(r, Err(BackendError::Auth(_)))).await;
    assert!(refused, "never reported as refused: {seen:?}");
    assert!(seen.iter().all(|s| !s.starts_with("ok")), "{seen:?}");
    let auth = ["-a", NEW, "--no-auth-warning"];
    let set = cli(
        port,
        &[&auth[..], &["config", "set", "requirepass", OLD]].concat(),
    );
    assert_eq!(set.trim(), "OK");
    let (seen, back) = until(&backend, 300, |r| matches!(r, Ok(true))).await;
    assert!(back, "never answered: {seen:?}");
    server.signal("STOP");
    let stalled = backend.decide("api", "k", &rules(), 1).await;
    server.signal("CONT");
    assert!(
        matches!(stalled, Err(BackendError::Timeout(_))),
        "{stalled:?}"
    );
}
