//! A fleet breaker's `force_close`/`force_open` sent twice: the backend
//! sends a command once more on a new connection when the server closed
//! the old one, and if it closed after Redis ran the command, the command
//! runs twice. What another instance decided between the two runs must
//! stay. The script is driven directly here (the second run is what the
//! retry sends: the same arguments, the same record and token), as in
//! `redis_breaker_close_once` and `redis_breaker_trial_resent`.
//!
//! Found by a hostile review: A's `force_close` ran, B tripped the fleet,
//! A's `force_close` ran again and closed it: B's trip was undone.

use crate::common::fleet::{raw, run_script};
use crate::common::redis_server::RedisServer;

const DECISION: &str = "fusebox:{breaker:resent}:decision";
/// Process A's and process B's records (one per process, for its trips
/// and admin commands alike).
const A_FORCED: &str = "fusebox:{breaker:resent}:record:000000000000000a";
const B_TRIPPED: &str = "fusebox:{breaker:resent}:record:000000000000000b";
const B_FORCED: &str = B_TRIPPED;

type Conn = redis::aio::MultiplexedConnection;

/// Runs the script's `op` with the caller's known version `known` (its
/// local state closed), the record `record` and its `token`: the stored
/// decision after it, as (version, state).
async fn run(conn: &mut Conn, op: &str, known: u64, record: &str, token: &str) -> (u64, String) {
    run_script(conn, "resent", op, known, record, token).await.1
}

async fn set(conn: &mut Conn, key: &str, value: &str) {
    let () = redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query_async(conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_force_close_sent_twice_does_not_undo_a_trip_made_between() {
    let server = RedisServer::start();
    let mut conn = raw(&server.url()).await;
    set(&mut conn, DECISION, "fb1:5:o:0:0").await;
    // A closes the fleet.
    assert_eq!(
        run(&mut conn, "force_close", 5, A_FORCED, "7").await,
        (6, "c".into())
    );
    // B trips it.
    assert_eq!(
        run(&mut conn, "trip", 6, B_TRIPPED, "1").await,
        (7, "o".into())
    );
    // A's force_close again (the retry): B's trip stays.
    assert_eq!(
        run(&mut conn, "force_close", 5, A_FORCED, "7").await,
        (7, "o".into()),
        "a force_close run twice undid a trip made between its runs"
    );
    // A's next force_close (a new token) closes it.
    assert_eq!(
        run(&mut conn, "force_close", 7, A_FORCED, "8").await,
        (8, "c".into())
    );
}

#[tokio::test]
async fn a_force_open_sent_twice_does_not_undo_a_close_made_between() {
    let server = RedisServer::start();
    let mut conn = raw(&server.url()).await;
    set(&mut conn, DECISION, "fb1:5:c:0:0").await;
    assert_eq!(
        run(&mut conn, "force_open", 5, A_FORCED, "3").await,
        (6, "f".into())
    );
    // Another operator closes it, on B.
    assert_eq!(
        run(&mut conn, "force_close", 6, B_FORCED, "3").await,
        (7, "c".into())
    );
    assert_eq!(
        run(&mut conn, "force_open", 5, A_FORCED, "3").await,
        (7, "c".into()),
        "a force_open run twice undid a close made between its runs"
    );
}

/// A force_close whose first send never ran (the connection closed
/// before Redis read it) runs on its retry: the record of A's previous
/// command (another token) is no repeat.
#[tokio::test]
async fn a_force_close_whose_first_send_never_ran_runs_once() {
    let server = RedisServer::start();
    let mut conn = raw(&server.url()).await;
    set(&mut conn, DECISION, "fb1:5:o:0:0").await;
    set(&mut conn, A_FORCED, "6").await;
    assert_eq!(
        run(&mut conn, "force_close", 5, A_FORCED, "7").await,
        (6, "c".into())
    );
}

/// A record key holding another type (written by a careless or hostile
/// hand) is no error: counted corrupt, replaced, and the command runs.
#[tokio::test]
async fn a_record_of_another_type_is_replaced() {
    let server = RedisServer::start();
    let mut conn = raw(&server.url()).await;
    set(&mut conn, DECISION, "fb1:5:o:0:0").await;
    let () = redis::cmd("HSET")
        .arg(A_FORCED)
        .arg("f")
        .arg("7")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        run(&mut conn, "force_close", 5, A_FORCED, "7").await,
        (6, "c".into())
    );
    let kept: String = redis::cmd("GET")
        .arg(A_FORCED)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(kept, "7");
    let ttl: i64 = redis::cmd("PTTL")
        .arg(A_FORCED)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ttl > 0 && ttl <= 86_400_000, "{ttl}");
}

/// An older admin command of A's arriving late (it timed out, and ran
/// after A's newer one, sent on the connection made in its place while
/// Redis stalled) changes nothing: A's newer command stays.
#[tokio::test]
async fn an_older_admin_command_arriving_late_changes_nothing() {
    let server = RedisServer::start();
    let mut conn = raw(&server.url()).await;
    set(&mut conn, DECISION, "fb1:5:c:0:0").await;
    // A's force_open (token 3) timed out; its force_close (4) ran.
    assert_eq!(
        run(&mut conn, "force_close", 5, A_FORCED, "4").await,
        (6, "c".into())
    );
    assert_eq!(
        run(&mut conn, "force_open", 5, A_FORCED, "3").await,
        (6, "c".into()),
        "an older force_open undid a newer force_close"
    );
}

/// A record that is no number (written by hand) is replaced: the command
/// runs, and the reply flags a corrupt value.
#[tokio::test]
async fn a_record_that_is_no_number_is_replaced() {
    let server = RedisServer::start();
    let mut conn = raw(&server.url()).await;
    set(&mut conn, DECISION, "fb1:5:o:0:0").await;
    set(&mut conn, A_FORCED, "x7").await;
    assert_eq!(
        run(&mut conn, "force_close", 5, A_FORCED, "7").await,
        (6, "c".into())
    );
    let kept: String = redis::cmd("GET")
        .arg(A_FORCED)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(kept, "7");
}

/// One record per process for both kinds: A's force_close (token 3)
/// timed out, A tripped (4) on the connection made in its place, then
/// the force_close arrives: older, it does not close the fleet A's trip
/// opened.
#[tokio::test]
async fn an_older_admin_command_arriving_after_a_newer_trip_changes_nothing() {
    let server = RedisServer::start();
    let mut conn = raw(&server.url()).await;
    set(&mut conn, DECISION, "fb1:5:c:0:0").await;
    assert_eq!(
        run(&mut conn, "trip", 5, A_FORCED, "4").await,
        (6, "o".into())
    );
    assert_eq!(
        run(&mut conn, "force_close", 5, A_FORCED, "3").await,
        (6, "o".into()),
        "an older force_close undid a newer trip"
    );
}
