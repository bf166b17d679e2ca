//! Sound-but-checked: what a lasting refusal of the credentials logs and
//! reports (see `redis_refused_password`), for an ACL user whose password
//! needs URL escapes, disabled on the server (`ACL SETUSER … off`): one
//! warning per cause however many probe rounds, never the password in
//! any form, and recovery by itself once the user is enabled again.

use std::sync::Arc;
use std::time::Duration;

use crate::common::logs::logged;
use crate::common::redis_server::{cli, RedisServer};
use fusebox::bucket::Quota;
use fusebox_std::backend::{Backend, Degrade, RedisBackend, RedisConfig, RedisLimiter, Rules};
use fusebox_std::Registry;

const ADMIN: &str = "admin-password-0123456789";
/// `@`, `:`, `/`, `%` and a space: escaped in the URL.
const PASSWORD: &str = "p@ss:w/rd%20 x-5551234";
const ESCAPED: &str = "p%40ss%3Aw%2Frd%2520%20x-5551234";

fn admin(port: u16, args: &[&str]) -> String {
    cli(
        port,
        &[&["-a", ADMIN, "--no-auth-warning"][..], args].concat(),
    )
}

#[test]
fn redis_a_disabled_user_is_one_warning_and_never_the_password() {
    let server = RedisServer::start_with(&["--requirepass", ADMIN]);
    let port = server.port();
    let set = admin(
        port,
        &[
            "acl",
            "setuser",
            "app",
            "on",
            &format!(">{PASSWORD}"),
            "~*",
            "&*",
            "+@all",
        ],
    );
    assert_eq!(set.trim(), "OK", "ACL SETUSER");
    let ((seen, reasons), logs) = logged(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let url = format!("redis://app:{ESCAPED}@127.0.0.1:{port}");
            let config = RedisConfig::new(url)
                .timeout(Duration::from_millis(50))
                .connect_timeout(Duration::from_millis(50))
                .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200));
            let backend = RedisBackend::connect(config).await.unwrap();
            let rules = Rules::single("per_second", Quota::per_second(1_000).unwrap()).unwrap();
            let registry = Arc::new(Registry::new());
            let limiter = RedisLimiter::builder("shared", rules.clone(), backend.clone())
                .degrade(Degrade::FailClosed)
                .registry(Arc::clone(&registry))
                .build()
                .unwrap();
            assert!(limiter.try_acquire("k").await.unwrap().allowed);

            assert_eq!(admin(port, &["acl", "setuser", "app", "off"]).trim(), "OK");
            admin(port, &["client", "kill", "user", "app"]);
            // 150 rounds of a decide and a request, 100 ms apart: with a
            // 50 ms connect timeout, tens of probe rounds.
            let mut seen = Vec::new();
            for _ in 0..150 {
                let decided = backend.decide("api", "k", &rules, 1).await;
                let admitted = limiter.try_acquire("k").await.map(|d| d.allowed);
                assert!(!matches!(admitted, Ok(true)), "admitted while refused");
                seen.push(match decided {
                    Ok(d) => format!("ok {}", d.allowed),
                    Err(e) => e.to_string(),
                });
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let reasons = registry.health().reasons;

            assert_eq!(admin(port, &["acl", "setuser", "app", "on"]).trim(), "OK");
            let mut back = false;
            for _ in 0..300 {
                back = matches!(limiter.try_acquire("k").await, Ok(d) if d.allowed);
                if back {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(back, "never admitted again");
            (seen, reasons)
        })
    });
    let refused = seen
        .iter()
        .filter(|s| s.contains("refused the credentials"))
        .count();
    assert!(refused > 0, "never reported as refused: {seen:?}");
    assert!(seen.iter().all(|s| !s.starts_with("ok")), "{seen:?}");
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("refused the credentials")),
        "{reasons:?}"
    );
    let warnings = logs.matches("Redis refuses the credentials").count();
    assert_eq!(warnings, 1, "{logs}");
    assert_eq!(logs.matches("limiter degraded").count(), 1, "{logs}");
    for secret in [PASSWORD, ESCAPED, "p@ss", "p%40ss", "5551234"] {
        assert!(!logs.contains(secret), "{secret} in the logs");
        assert!(
            seen.iter().all(|s| !s.contains(secret)),
            "{secret}: {seen:?}"
        );
        assert!(
            reasons.iter().all(|r| !r.contains(secret)),
            "{secret}: {reasons:?}"
        );
    }
    eprintln!(
        "refused {refused}/{}; warnings {warnings}; username in logs: {}",
        seen.len(),
        logs.matches("app:").count()
    );
}
