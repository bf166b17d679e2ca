//! A "Redis" that answers the limiter's script with replies the script
//! never gives (a proxy or a server answering in its name): each is
//! refused as a protocol fault and counted, and the limiter decides on its
//! degradation policy instead, never admitting on a forged reply.

use crate::common;

use std::time::Duration;

use fusebox::bucket::Quota;
use fusebox_std::backend::{Degrade, RedisBackend, RedisConfig, RedisLimiter, Rules, Source};

/// A server on a free loopback port answering every `EVALSHA` with the
/// integer array `reply`, `PING` with `PONG`, anything else `OK`.
async fn forging(reply: [i64; 7]) -> u16 {
    let array = reply
        .iter()
        .fold(String::from("*7\r\n"), |s, v| s + &format!(":{v}\r\n"))
        .into_bytes();
    common::resp::serve(move |name| match name {
        b"EVALSHA" => array.clone(),
        b"PING" => b"+PONG\r\n".to_vec(),
        _ => b"+OK\r\n".to_vec(),
    })
    .await
}

async fn limiter(port: u16) -> RedisLimiter {
    let backend = RedisBackend::connect(
        RedisConfig::new(format!("redis://127.0.0.1:{port}")).timeout(Duration::from_millis(500)),
    )
    .await
    .expect("connect");
    // 5 a second, burst 5: a 1 s drain.
    let rules = Rules::single("per_second", Quota::per_second(5).unwrap()).unwrap();
    RedisLimiter::builder("forged", rules, backend)
        .degrade(Degrade::FailClosed)
        .build()
        .unwrap()
}

/// Admitted with nothing taken, a million tokens taken for one, a wait
/// of years, a rule that is not there: each reply would have admitted
/// (or refused for years) on the forger's word. Before, all were taken as
/// the script's decisions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_the_script_never_gives_are_faults_not_decisions() {
    const YEARS_US: i64 = 3 * 365 * 86_400 * 1_000_000;
    // {allowed, retry_us, remaining, reset_us, rule, corrupt, taken}
    let forged = [
        [1, 0, 4, 200_000, 0, 0, 0],
        [1, 0, 4, 200_000, 0, 0, 1_000_000],
        [0, YEARS_US, 0, YEARS_US, 0, 0, 0],
        [1, 0, 4, 200_000, 7, 0, 1],
        [1, 0, 1_000_000, 200_000, 0, 0, 1],
    ];
    for reply in forged {
        let limiter = limiter(forging(reply).await).await;
        let d = limiter.try_acquire("k").await.expect("decided");
        assert!(!d.allowed, "{reply:?}: {d:?}");
        assert_eq!(d.source, Source::FailClosed, "{reply:?}: {d:?}");
        let m = limiter.metrics();
        assert_eq!(
            (m.redis_decisions, m.faults, m.admitted),
            (0, 1, 0),
            "{reply:?}"
        );
    }
    // The same server with a reply the script gives is believed.
    let limiter = limiter(forging([1, 0, 4, 200_000, 0, 0, 1]).await).await;
    let d = limiter.try_acquire("k").await.expect("decided");
    assert!(d.allowed && d.source == Source::Redis, "{d:?}");
}
