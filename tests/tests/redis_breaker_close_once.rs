//! A fleet trial's success counts once toward `close_after`, however
//! often its close is sent. Since a command that finds its connection
//! closed is sent once more (d1906c4), a close whose connection closed
//! after Redis ran it runs twice; counted twice, one success closed a
//! fleet breaker that needs two. The script is driven directly here (the
//! second run is what the retry sends: the same arguments, the same
//! trial token), also after another trial's close ran in between.

use crate::common::fleet::raw;
use crate::common::redis_server::RedisServer;

const BREAKER_LUA: &str = include_str!("../../std-adapter/src/backend/redis/scripts/breaker.lua");

const DECISION: &str = "fusebox:{breaker:once}:decision";
const SUCCESSES: &str = "fusebox:{breaker:once}:trial:ok";

/// The script's `close` of the half-open version 5, needing 2 successes,
/// sent for the trial `token`: the stored decision after it.
async fn close(conn: &mut redis::aio::MultiplexedConnection, token: &str) -> String {
    close_of(conn, 2, token).await
}

/// The script's `close` of the half-open version 5, needing `needed`
/// successes, sent for the trial `token`: the stored decision after it.
async fn close_of(conn: &mut redis::aio::MultiplexedConnection, needed: u8, token: &str) -> String {
    let _: redis::Value = redis::Script::new(BREAKER_LUA)
        .key(DECISION)
        .key("fusebox:{breaker:once}:verdicts")
        .key(SUCCESSES)
        // op, known version, open_for, max_open_for (µs), the caller's
        // state (half-open), its open remaining and streak
        .arg("close")
        .arg(5)
        .arg(1_000_000)
        .arg(1_000_000)
        .arg("h")
        .arg(0)
        .arg(0)
        // the version the trial succeeded in, successes needed, its token
        .arg(5)
        .arg(needed)
        .arg(token)
        .arg("p")
        .invoke_async(conn)
        .await
        .unwrap();
    redis::cmd("GET")
        .arg(DECISION)
        .query_async(conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_close_sent_twice_for_one_trial_counts_once() {
    let server = RedisServer::start();
    let mut conn = raw(&server.url()).await;
    let () = redis::cmd("SET")
        .arg(DECISION)
        .arg("fb1:5:h:0:0")
        .query_async(&mut conn)
        .await
        .unwrap();
    // One success of two: still half-open.
    assert_eq!(close(&mut conn, "pod-a:00ff:1").await, "fb1:5:h:0:0");
    // The same close again (a retried command): still one success.
    assert_eq!(
        close(&mut conn, "pod-a:00ff:1").await,
        "fb1:5:h:0:0",
        "one trial's success counted twice"
    );
    // Another trial's success: two, closed.
    assert_eq!(close(&mut conn, "pod-b:0aaa:7").await, "fb1:6:c:0:0");
}

/// The count written by an instance of the previous version (no token)
/// is read as it was meant: a success with a token adds to it.
#[tokio::test]
async fn a_count_without_a_token_still_counts() {
    let server = RedisServer::start();
    let mut conn = raw(&server.url()).await;
    for (key, value) in [(DECISION, "fb1:5:h:0:0"), (SUCCESSES, "5:1")] {
        let () = redis::cmd("SET")
            .arg(key)
            .arg(value)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    assert_eq!(close(&mut conn, "pod-a:00ff:1").await, "fb1:6:c:0:0");
}

/// A close sent again after another trial's close ran in between (its
/// connection closed after Redis ran it; meanwhile another instance's
/// close ran; then the retry) still counts once: with `close_after` 3,
/// two trials' successes must leave the fleet half-open. Found by a
/// hostile review: the count kept only the last token counted, so the
/// first trial's retry, after the second trial's close, counted as a
/// third success and closed the fleet breaker.
#[tokio::test]
async fn a_close_sent_again_after_another_trials_close_counts_once() {
    let server = RedisServer::start();
    let mut conn = raw(&server.url()).await;
    let () = redis::cmd("SET")
        .arg(DECISION)
        .arg("fb1:5:h:0:0")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(close_of(&mut conn, 3, "pod-a:00ff:1").await, "fb1:5:h:0:0");
    assert_eq!(close_of(&mut conn, 3, "pod-b:0aaa:7").await, "fb1:5:h:0:0");
    // pod-a's close again (its retry): still two successes of three.
    assert_eq!(
        close_of(&mut conn, 3, "pod-a:00ff:1").await,
        "fb1:5:h:0:0",
        "one trial's success counted twice"
    );
    assert_eq!(close_of(&mut conn, 3, "pod-b:0aaa:7").await, "fb1:5:h:0:0");
    // A third trial's success: closed.
    assert_eq!(close_of(&mut conn, 3, "pod-c:0bbb:2").await, "fb1:6:c:0:0");
}

/// A count written by the previous version with one token (`<v>:<n>:<token>`)
/// is read as it was meant: that token's close again counts nothing,
/// another adds one.
#[tokio::test]
async fn a_count_with_one_token_still_counts() {
    let server = RedisServer::start();
    let mut conn = raw(&server.url()).await;
    for (key, value) in [(DECISION, "fb1:5:h:0:0"), (SUCCESSES, "5:1:pod-a:00ff:1")] {
        let () = redis::cmd("SET")
            .arg(key)
            .arg(value)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    assert_eq!(close_of(&mut conn, 3, "pod-a:00ff:1").await, "fb1:5:h:0:0");
    assert_eq!(close_of(&mut conn, 3, "pod-b:0aaa:7").await, "fb1:5:h:0:0");
    assert_eq!(close_of(&mut conn, 3, "pod-c:0bbb:2").await, "fb1:6:c:0:0");
}
