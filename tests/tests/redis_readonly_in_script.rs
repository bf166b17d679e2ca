//! A write refused inside a script on a demoted primary, as Redis before
//! 7.0 words it: not a `READONLY` reply but `ERR Error running script …
//! -READONLY You can't write against a read only replica.` The backend
//! must still look for the new primary (`ROLE` on a new connection), as
//! it does on Redis 7's `READONLY` (tests/tests/redis_failover.rs).

use crate::common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fusebox::bucket::Quota;
use fusebox_std::backend::{Degrade, RedisBackend, RedisConfig, RedisLimiter, Rules, Source};
use tokio::time::Instant;

/// Redis 6.2's answer to a script's write on a replica (one line).
const WRAPPED: &[u8] = b"-ERR Error running script (call to f_0123456789abcdef0123456789abcdef01234567): @user_script:94: @user_script: 94: -READONLY You can't write against a read only replica.\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_readonly_error_wrapped_by_a_script_looks_for_the_primary() {
    let roles = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&roles);
    let port = common::resp::serve(move |name| match name {
        b"EVALSHA" => WRAPPED.to_vec(),
        b"PING" => b"+PONG\r\n".to_vec(),
        b"ROLE" => {
            seen.fetch_add(1, Ordering::SeqCst);
            // Still a replica: the look keeps the connection it has.
            b"*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n:6379\r\n$9\r\nconnected\r\n:1\r\n".to_vec()
        }
        _ => b"+OK\r\n".to_vec(),
    })
    .await;
    let backend = RedisBackend::connect(
        RedisConfig::new(format!("redis://127.0.0.1:{port}"))
            .timeout(Duration::from_millis(500))
            .connect_timeout(Duration::from_millis(200)),
    )
    .await
    .expect("connect");
    let rules = Rules::single("per_second", Quota::per_second(5).unwrap()).unwrap();
    let limiter = RedisLimiter::builder("wrapped", rules, backend)
        .degrade(Degrade::FailClosed)
        .build()
        .unwrap();
    let d = limiter.try_acquire("k").await.expect("decided");
    assert_eq!((d.allowed, d.source), (false, Source::FailClosed));
    let start = Instant::now();
    while roles.load(Ordering::SeqCst) == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no look for the primary after a script's READONLY"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
