//! A fleet breaker's record (`…:record:<nonce>`, its trips' and admin
//! commands' tokens) written by a careless or hostile hand, against a
//! real redis-server. The docs: a record holding a huge number makes the
//! process's commands of that kind read as repeats "until it expires (a
//! day at most)", the script writing every record for a day.
//!
//! Found by a hostile review: a number written by hand with no expiry
//! (a plain `SET`) never expired, so the process's `force_open` answered
//! Ok and changed nothing, and its trips never reached the fleet, for as
//! long as the process ran.

use std::sync::Arc;
use std::time::Duration;

use crate::common::fleet::{backend, raw, run_script, stored};
use crate::common::redis_server::RedisServer;
use fusebox::breaker::{CircuitBreaker, Config, State};
use fusebox_std::backend::FleetBreaker;

const DECISION: &str = "fusebox:{breaker:forged}:decision";
const TRIPPED: &str = "fusebox:{breaker:forged}:record:000000000000000a";
const FORCED: &str = "fusebox:{breaker:forged}:record:000000000000000b";
const HUGE: &str = "99999999999999";
const DAY_MS: i64 = 86_400_000;

type Conn = redis::aio::MultiplexedConnection;

/// Runs `op` (known version 5, the caller closed, open_for 60 s) with
/// the record `record` and its `token`: the reply's flags, and the stored
/// decision after it as (version, state).
async fn run(conn: &mut Conn, op: &str, record: &str, token: &str) -> (i64, (u64, String)) {
    let (reply, decision) = run_script(conn, "forged", op, 5, record, token).await;
    (reply[5], decision)
}

async fn cmd(conn: &mut Conn, args: &[&str]) {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    let _: redis::Value = c.query_async(conn).await.unwrap();
}

async fn pttl(conn: &mut Conn, key: &str) -> i64 {
    redis::cmd("PTTL").arg(key).query_async(conn).await.unwrap()
}

/// A huge admin record with no expiry is forged: replaced (flag 1,
/// corrupt), and the command runs.
#[tokio::test]
async fn an_admin_record_that_never_expires_is_replaced() {
    let server = RedisServer::start();
    let mut conn = raw(&server.url()).await;
    cmd(&mut conn, &["SET", DECISION, "fb1:5:c:0:0"]).await;
    cmd(&mut conn, &["SET", FORCED, HUGE]).await;
    let (flags, decision) = run(&mut conn, "force_open", FORCED, "3").await;
    assert_eq!(decision, (6, "f".into()), "force_open read as a repeat");
    assert_eq!(flags & 1, 1, "not flagged corrupt");
    assert_eq!(stored(&server.url(), FORCED).await, "3");
    let left = pttl(&mut conn, FORCED).await;
    assert!(left > 0 && left <= DAY_MS, "{left}");
}

/// A huge trip record set to outlive a day (ten) is forged too: the
/// trip opens the fleet.
#[tokio::test]
async fn a_trip_record_kept_over_a_day_is_replaced() {
    let server = RedisServer::start();
    let mut conn = raw(&server.url()).await;
    cmd(&mut conn, &["SET", DECISION, "fb1:5:c:0:0"]).await;
    cmd(&mut conn, &["SET", TRIPPED, HUGE, "PX", "864000000"]).await;
    let (flags, decision) = run(&mut conn, "trip", TRIPPED, "1").await;
    assert_eq!(decision, (6, "o".into()), "the trip read as a repeat");
    assert_eq!(flags & 1, 1);
    assert_eq!(stored(&server.url(), TRIPPED).await, "1");
}

/// Sound-but-checked, the documented case: a huge record expiring within
/// a day makes the command a repeat (nothing changes, nothing flagged),
/// and is left as it is.
#[tokio::test]
async fn a_huge_record_expiring_within_a_day_reads_as_a_repeat() {
    let server = RedisServer::start();
    let mut conn = raw(&server.url()).await;
    cmd(&mut conn, &["SET", DECISION, "fb1:5:c:0:0"]).await;
    cmd(&mut conn, &["SET", FORCED, HUGE, "PX", "86400000"]).await;
    let (flags, decision) = run(&mut conn, "force_open", FORCED, "3").await;
    assert_eq!(decision, (5, "c".into()));
    assert_eq!(flags & 1, 0);
    assert_eq!(stored(&server.url(), FORCED).await, HUGE);
}

/// End to end: an operator "pins" the process's admin record by hand
/// (found by its key, `…:record:<nonce>`); the process's next
/// `force_open` still forces the fleet open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_open_still_runs_after_its_record_was_pinned_by_hand() {
    let server = RedisServer::start();
    let url = server.url();
    let core = Arc::new(CircuitBreaker::new(
        Config::builder().consecutive_failures(2).build().unwrap(),
    ));
    let a = FleetBreaker::builder("pinned", core, backend(&url).await)
        .sync_interval(Duration::from_secs(3_600))
        .build()
        .await
        .unwrap();
    a.force_close().await.unwrap();
    let mut conn = raw(&url).await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("fusebox:{breaker:pinned}:record:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    cmd(&mut conn, &["SET", &keys[0], HUGE]).await;
    a.force_open().await.unwrap();
    assert_eq!(a.fleet_state(), Some(State::ForcedOpen));
    assert_eq!(a.state(), State::ForcedOpen);
    assert!(stored(&url, "fusebox:{breaker:pinned}:decision")
        .await
        .contains(":f:"));
    assert_eq!(a.fleet_metrics().corrupt, 1);
}
