//! A standalone server that is a replica for good (configured so, or an
//! address that keeps leading to a replica after a failover): every write
//! is answered `READONLY`, and a `READONLY` answer may start a look for
//! the primary (6c68306: a new connection and a `ROLE`). The docs promise
//! at most one look per connect timeout, twice as long after each that
//! found none, up to 16 connect timeouts, and the current connection
//! kept. Sound-but-checked: no test drove many writes at a replica.

use std::time::Duration;

use crate::common::redis_server::{cli, RedisServer};
use fusebox_std::backend::{RedisBackend, RedisConfig};
use tokio::time::Instant;

/// How many `ROLE` commands the server at `port` ran (`INFO commandstats`).
fn role_calls(port: u16) -> u64 {
    cli(port, &["info", "commandstats"])
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_role:calls="))
        .map_or(0, |rest| {
            rest.split(',').next().unwrap().trim().parse().unwrap()
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_to_a_replica_for_good_look_for_the_primary_with_a_backoff() {
    // A replica of a master that never answers: READONLY for good.
    let server = RedisServer::start_with(&["--replicaof", "127.0.0.1", "1"]);
    assert!(cli(server.port(), &["role"]).contains("slave"));
    let config = RedisConfig::new(server.url())
        .timeout(Duration::from_millis(500))
        .connect_timeout(Duration::from_millis(100));
    let backend = RedisBackend::connect(config).await.unwrap();
    let mut conn = backend.connection();
    // Writes every 5 ms for 2.5 s: with the backoff, looks at about 0,
    // 0.1, 0.3, 0.7 and 1.5 s (the next at 3.1 s); without it, one per
    // connect timeout (25), or one per write (hundreds).
    let start = Instant::now();
    let mut writes = 0u32;
    while start.elapsed() < Duration::from_millis(2_500) {
        let answer: redis::RedisResult<()> = redis::cmd("SET")
            .arg("fusebox:replica")
            .arg(1)
            .query_async(&mut conn)
            .await;
        let e = answer.unwrap_err();
        assert_eq!(
            e.kind(),
            redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly),
            "{e}"
        );
        writes += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // A look still running gets its ROLE answered meanwhile.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let looks = role_calls(server.port()) - 1; // the check above ran one
    assert!(writes > 100, "{writes} writes");
    assert!(
        (3..=6).contains(&looks),
        "{looks} looks for the primary in {writes} writes"
    );
    // The connection kept all along still works: a read is answered.
    let value: Option<String> = redis::cmd("GET")
        .arg("fusebox:replica")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(value, None);
}
