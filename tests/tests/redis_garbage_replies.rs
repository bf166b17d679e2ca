//! A "Redis" that answers the limiter's script with bytes that are no
//! valid reply, or a reply of the wrong shape (`redis_limit_forged_reply.rs`
//! forges well-formed integer arrays; these are malformed RESP): an
//! unknown type byte, a nil array, an error, RESP3 maps, doubles and
//! booleans where integers belong, an integer past 64 bits, a big number,
//! a negative length, lengths of 2^31 announced and never sent, and
//! 200 000 nested arrays. Each is a fault, counted, and decided by the
//! `FailClosed` policy: never a panic, never an admission.

use crate::common;

use std::time::Duration;

use fusebox::bucket::Quota;
use fusebox_std::backend::{Degrade, RedisBackend, RedisConfig, RedisLimiter, Rules, Source};

/// A server on a free loopback port answering the script (`EVALSHA`) and
/// the probe's write (`SET`) with `reply`, `PING` with `PONG` and
/// anything else (the client's `CLIENT SETINFO`) with `OK`.
async fn garbage(reply: Vec<u8>) -> u16 {
    common::resp::serve(move |name| match name {
        b"EVALSHA" | b"SET" => reply.clone(),
        b"PING" => b"+PONG\r\n".to_vec(),
        _ => b"+OK\r\n".to_vec(),
    })
    .await
}

/// The script's seven integers with `first` in place of the first.
fn seven(first: &str) -> Vec<u8> {
    format!("*7\r\n{first}\r\n:0\r\n:1\r\n:1\r\n:0\r\n:0\r\n:1\r\n").into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_replies_are_faults_never_admissions() {
    let replies: Vec<(&str, Vec<u8>)> = vec![
        ("unknown type", b"?garbage\r\n".to_vec()),
        ("nil array", b"*-1\r\n".to_vec()),
        ("error", b"-ERR nope\r\n".to_vec()),
        ("map", b"%1\r\n+a\r\n:1\r\n".to_vec()),
        ("double", seven(",1.0")),
        ("boolean", seven("#t")),
        ("past 64 bits", seven(":99999999999999999999999")),
        ("big number", seven("(1")),
        ("negative length", b"$-5\r\n".to_vec()),
        ("2^31 bytes announced", b"$2147483647\r\n".to_vec()),
        ("2^31 items announced", b"*2147483647\r\n".to_vec()),
        ("200 000 nested arrays", b"*1\r\n".repeat(200_000)),
    ];
    let rules = Rules::single("per_second", Quota::per_second(5).unwrap()).unwrap();
    for (what, reply) in replies {
        let port = garbage(reply).await;
        let config = RedisConfig::new(format!("redis://127.0.0.1:{port}"))
            .timeout(Duration::from_millis(300))
            .connect_timeout(Duration::from_millis(500));
        let backend = RedisBackend::connect(config).await.expect(what);
        let limiter = RedisLimiter::builder("garbage", rules.clone(), backend)
            .degrade(Degrade::FailClosed)
            .background_probe(false)
            .build()
            .unwrap();
        for _ in 0..3 {
            let d = limiter.try_acquire("k").await.expect(what);
            assert_eq!((d.allowed, d.source), (false, Source::FailClosed), "{what}");
            // Past the probe's backoff: the next request asks again.
            tokio::time::sleep(d.retry_after).await;
        }
        let m = limiter.metrics();
        assert_eq!((m.redis_decisions, m.admitted), (0, 0), "{what}: {m:?}");
        assert!(m.faults >= 2 && limiter.is_degraded(), "{what}: {m:?}");
    }
}
