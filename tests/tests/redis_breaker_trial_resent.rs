//! A fleet trial slot's request sent twice (its standalone connection
//! closed after Redis ran it, and the command sent once more on the new
//! connection, as 6c3a9a1 does) is granted the slot it took, once. The
//! script is driven directly here: the second run is what the retry
//! sends, the same arguments and the same trial token.
//!
//! Found by a hostile review: the second run found the slot taken (by
//! itself) and, with every slot taken, answered "not granted"; the caller
//! was refused and, holding no grant, never gave the slot back, so with
//! one slot (`max_half_open` 1) no instance of the fleet could make a
//! trial until the slot's TTL (the breaker's `open_for`) ran out. With
//! more slots, one trial held two.

use crate::common::fleet::raw;
use crate::common::redis_server::RedisServer;

const BREAKER_LUA: &str = include_str!("../../std-adapter/src/backend/redis/scripts/breaker.lua");

const DECISION: &str = "fusebox:{breaker:resent}:decision";
const SLOTS: [&str; 2] = [
    "fusebox:{breaker:resent}:trial:0",
    "fusebox:{breaker:resent}:trial:1",
];

/// The script's `trial` in the half-open decision 5 with `slots` trial
/// slots, for `token`: whether a slot was granted.
async fn trial(conn: &mut redis::aio::MultiplexedConnection, slots: usize, token: &str) -> bool {
    let script = redis::Script::new(BREAKER_LUA);
    let mut inv = script.key(DECISION);
    inv.key("fusebox:{breaker:resent}:verdicts")
        .key("fusebox:{breaker:resent}:trial:ok");
    for slot in &SLOTS[..slots] {
        inv.key(*slot);
    }
    // op, known version, open_for, max_open_for (µs), the caller's state
    // (half-open), its open remaining and streak, the slot TTL (ms), the
    // token, the close's token (unused), PUBLISH
    let reply: Vec<i64> = inv
        .arg("trial")
        .arg(5)
        .arg(1_000_000)
        .arg(1_000_000)
        .arg("h")
        .arg(0)
        .arg(0)
        .arg(60_000)
        .arg(token)
        .arg("")
        .arg("p")
        .invoke_async(conn)
        .await
        .unwrap();
    reply[5] & 2 != 0
}

/// The values of the first `slots` slots.
async fn held(conn: &mut redis::aio::MultiplexedConnection, slots: usize) -> Vec<Option<String>> {
    let mut values = Vec::new();
    for slot in &SLOTS[..slots] {
        values.push(
            redis::cmd("GET")
                .arg(*slot)
                .query_async(conn)
                .await
                .unwrap(),
        );
    }
    values
}

async fn half_open(conn: &mut redis::aio::MultiplexedConnection) {
    let () = redis::cmd("SET")
        .arg(DECISION)
        .arg("fb1:5:h:0:0")
        .query_async(conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_trial_request_sent_twice_is_granted_its_one_slot() {
    let server = RedisServer::start();
    let mut conn = raw(&server.url()).await;
    half_open(&mut conn).await;
    assert!(trial(&mut conn, 1, "pod-a:00ff:1").await);
    // The same request again (a retried command): the slot it took is
    // its own, granted again.
    assert!(
        trial(&mut conn, 1, "pod-a:00ff:1").await,
        "a trial's own slot refused to it"
    );
    assert_eq!(
        held(&mut conn, 1).await,
        [Some("5:ttl60000:pod-a:00ff:1".to_owned())]
    );
    // Another trial is refused: the one slot is taken.
    assert!(!trial(&mut conn, 1, "pod-b:0aaa:7").await);
}

#[tokio::test]
async fn a_trial_request_sent_twice_holds_one_slot_of_two() {
    let server = RedisServer::start();
    let mut conn = raw(&server.url()).await;
    half_open(&mut conn).await;
    assert!(trial(&mut conn, 2, "pod-a:00ff:1").await);
    assert!(trial(&mut conn, 2, "pod-a:00ff:1").await);
    assert_eq!(
        held(&mut conn, 2).await,
        [Some("5:ttl60000:pod-a:00ff:1".to_owned()), None],
        "one trial took two slots"
    );
    // The other slot is left for another trial, and then none.
    assert!(trial(&mut conn, 2, "pod-b:0aaa:7").await);
    assert!(!trial(&mut conn, 2, "pod-c:0bbb:2").await);
}
