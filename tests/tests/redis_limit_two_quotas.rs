//! Two quotas live on one limiter name (a rolling quota change, or two
//! services that picked the same name): each reads the other's state as
//! time. The newer quota's cap on a longer drain must never hand either
//! of them more than its own burst at one instant, nor more than its own
//! rate over time (found by a hostile review: two quotas alternating on
//! one key forgave each other's drain, 460 admitted at one instant under
//! bursts of 100 and 10).

use std::time::Duration;

use crate::common::redis_server::RedisServer;
use fusebox::bucket::Quota;
use fusebox_std::backend::{storage_keys, RedisBackend, RedisConfig, Rules};

/// Far from the epoch, as Redis `TIME` is.
const T0: u64 = 1_800_000_000_000_000;

async fn connect(server: &RedisServer) -> RedisBackend {
    RedisBackend::connect(RedisConfig::new(server.url()).timeout(Duration::from_secs(2)))
        .await
        .unwrap()
}

fn rule(quota: Quota) -> Rules {
    Rules::single("per_second", quota).unwrap()
}

/// Takes single tokens of `key` under `rules` at `now` until refused: how
/// many were admitted.
async fn drain(backend: &RedisBackend, key: &str, rules: &Rules, now: u64) -> u32 {
    let mut admitted = 0;
    while backend
        .decide_at("shared", key, rules, 1, now)
        .await
        .unwrap()
        .allowed
    {
        admitted += 1;
        assert!(admitted < 100_000, "no end to the admissions");
    }
    admitted
}

#[tokio::test]
async fn two_quotas_alternating_at_one_instant_admit_no_more_than_their_bursts() {
    let server = RedisServer::start();
    let backend = connect(&server).await;
    // The same rate, bursts of 100 and 10: the small bucket's cap used to
    // lower the shared time to its own second, handing the large one 90
    // tokens back on every refusal.
    let loose = rule(Quota::per_second(10).unwrap().with_burst(100).unwrap());
    let strict = rule(Quota::per_second(10).unwrap());
    // Rates of 10/s and 100/s, both with a burst of 10.
    let slow = rule(Quota::per_second(10).unwrap());
    let fast = rule(Quota::per_second(100).unwrap().with_burst(10).unwrap());
    // Read as time, one quota's drain binds the other as far as its own
    // bucket reaches: whichever drains first, the two together never
    // take more than their bursts added (here: the larger burst, or
    // 10 + 9 when the fast quota's 100 ms leaves the slow one 0.9 s).
    for (key, first, second, expected) in [
        ("burst", &loose, &strict, 100),
        ("burst-reversed", &strict, &loose, 100),
        ("rate", &slow, &fast, 10),
        ("rate-reversed", &fast, &slow, 19),
    ] {
        let mut admitted = 0;
        for _ in 0..5 {
            admitted += drain(&backend, key, first, T0).await;
            admitted += drain(&backend, key, second, T0).await;
        }
        assert_eq!(admitted, expected, "{key}: admitted at one instant");
    }
}

#[tokio::test]
async fn a_slow_quota_sharing_a_key_with_a_fast_one_keeps_its_own_rate() {
    let server = RedisServer::start();
    let backend = connect(&server).await;
    // 100 an hour next to 10 a second: the fast quota's cap of the hourly
    // drain to its own second must not let the hourly one refill in a
    // second (its key used to expire with the fast bucket, a full hourly
    // burst a second later).
    let hourly = Rules::single("per_second", Quota::per_hour(100).unwrap()).unwrap();
    let fast = rule(Quota::per_second(10).unwrap());
    let (mut by_hourly, mut by_fast) = (0, 0);
    // Two minutes in steps of 100 ms: every step, the fast quota once and
    // the hourly one until refused.
    for step in 0..1_200 {
        let now = T0 + step * 100_000;
        by_fast += u32::from(
            backend
                .decide_at("shared", "u", &fast, 1, now)
                .await
                .unwrap()
                .allowed,
        );
        by_hourly += drain(&backend, "u", &hourly, now).await;
    }
    // The hourly quota: its burst, and two minutes of its rate.
    assert!(by_hourly <= 100 + 4, "hourly: {by_hourly}");
    assert!(by_hourly >= 100, "hourly: {by_hourly}: its burst is taken");
    // The fast one is held by the hourly drain it shares, never more
    // than its own rate.
    assert!(by_fast <= 10 + 1_200, "fast: {by_fast}");
}

#[tokio::test]
async fn a_raised_quota_applies_at_once_and_its_hold_binds_the_old_one() {
    let server = RedisServer::start();
    let backend = connect(&server).await;
    let hourly = Rules::single("per_second", Quota::per_hour(10).unwrap()).unwrap();
    let raised = rule(Quota::per_second(10).unwrap());
    assert_eq!(drain(&backend, "u", &hourly, T0).await, 10);
    // The raised quota reads the hour's drain capped at its second, and
    // writes it back with the hour kept as a hold.
    let d = backend
        .decide_at("shared", "u", &raised, 1, T0)
        .await
        .unwrap();
    assert_eq!((d.allowed, d.corrupt), (false, 0));
    assert_eq!(d.retry_after, Duration::from_millis(100));
    let key = &storage_keys(backend.prefix(), "shared", "u", &raised).unwrap()[0];
    let mut conn = backend.connection();
    let value: String = redis::cmd("GET")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap();
    let hold = T0 + 3_600_000_000;
    assert_eq!(
        value,
        format!("g1:{}:0:1:100000:10:h{hold}", T0 + 1_000_000)
    );
    let pttl: i64 = redis::cmd("PTTL")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(pttl > 3_600_000, "the key outlives the hold: {pttl}");
    // The raised quota ignores the hold: its whole burst a second later,
    // the hold carried along.
    assert_eq!(drain(&backend, "u", &raised, T0 + 1_000_000).await, 10);
    let value: String = redis::cmd("GET")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(value.ends_with(&format!(":h{hold}")), "{value}");
    // The hourly quota, still live somewhere, reads the hold: nothing
    // before its own drain has run (6 minutes a token).
    assert_eq!(
        drain(&backend, "u", &hourly, T0 + 2_000_000).await,
        0,
        "the hourly quota gained from the raised one's cap"
    );
    let d = backend
        .decide_at("shared", "u", &hourly, 1, T0 + 2_000_000)
        .await
        .unwrap();
    assert_eq!(d.corrupt, 0);
    assert_eq!(
        d.retry_after,
        Duration::from_micros(hold - 3_600_000_000 + 360_000_000 - T0 - 2_000_000)
    );
    // Once the hold has passed it is dropped.
    assert_eq!(drain(&backend, "u", &raised, hold + 1).await, 10);
    let value: String = redis::cmd("GET")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!value.contains(":h"), "{value}");
}

#[tokio::test]
async fn a_hostile_hold_is_counted_and_replaced() {
    let server = RedisServer::start();
    let backend = connect(&server).await;
    let rules = rule(Quota::per_second(10).unwrap());
    let key = &storage_keys(backend.prefix(), "shared", "h", &rules).unwrap()[0];
    let mut conn = backend.connection();
    let far = T0 + (1 << 47) + 61_000_000;
    for value in [
        format!("g1:{T0}:0:1:100000:10:h"),
        format!("g1:{T0}:0:1:100000:10:hx"),
        format!("g1:{T0}:0:1:100000:10:h-1"),
        format!("g1:{T0}:0:1:100000:10:h99999999999999999999"),
        format!("g1:{T0}:0:1:100000:10:h{far}"),
        format!("g1:{T0}:0:1:100000:10:h{T0}:h{T0}"),
        format!("g1:{T0}:0:1:100000:10:{T0}"),
    ] {
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg(&value)
            .query_async(&mut conn)
            .await
            .unwrap();
        let d = backend
            .decide_at("shared", "h", &rules, 1, T0)
            .await
            .unwrap();
        assert_eq!((d.allowed, d.corrupt), (false, 1), "{value}: {d:?}");
        let replaced: String = redis::cmd("GET")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(replaced, format!("g1:{}:0:1:100000:10", T0 + 1_000_000));
    }
    // A hold a day ahead (within the longest drain): the quota that wrote
    // it reads its own time, and keeps the hold; another reads the hold,
    // capped at its own bucket (refused, its bucket full for a second),
    // and keeps it too.
    let hold = T0 + 86_400_000_000;
    let _: () = redis::cmd("SET")
        .arg(key)
        .arg(format!("g1:{T0}:0:1:100000:10:h{hold}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let d = backend
        .decide_at("shared", "h", &rules, 10, T0)
        .await
        .unwrap();
    assert_eq!((d.allowed, d.corrupt), (true, 0), "{d:?}");
    let other = rule(Quota::per_second(20).unwrap());
    let d = backend
        .decide_at("shared", "h", &other, 1, T0)
        .await
        .unwrap();
    assert_eq!(
        (d.allowed, d.corrupt, d.retry_after),
        (false, 0, Duration::from_millis(50)),
        "{d:?}"
    );
    let value: String = redis::cmd("GET")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(value, format!("g1:{}:0:1:50000:20:h{hold}", T0 + 1_000_000));
}
