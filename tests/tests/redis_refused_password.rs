//! A Redis whose password changes while the process runs (rotated on the
//! server: `CONFIG SET requirepass`, the clients' connections closed).
//! The connection's own reconnection retries whatever fails, a refused
//! password included, so every command waited for a connection until its
//! timeout: the backend, a limiter's health condition and its outage log
//! said "redis did not answer within 50ms" for as long as it lasted,
//! sending an operator after the network instead of the credentials.
//! Found adopting the crate as a stranger, over real HTTP (`/health`
//! read `redis did not answer within 5ms` five seconds on).

use std::sync::Arc;
use std::time::Duration;

use crate::common::password_rotation::{config, rotate, rules, until, until_refused, NEW, OLD};
use crate::common::redis_server::RedisServer;
use fusebox_std::backend::{Backend, BackendError, Degrade, RedisBackend, RedisLimiter};
use fusebox_std::Registry;

#[tokio::test]
async fn redis_a_password_rotated_on_the_server_is_reported_as_refused_not_as_a_timeout() {
    let server = RedisServer::start_with(&["--requirepass", OLD]);
    let port = server.port();
    let backend = RedisBackend::connect(config(port, Duration::from_millis(200)))
        .await
        .unwrap();
    let rules = rules();
    assert!(backend.decide("api", "k", &rules, 1).await.unwrap().allowed);
    let registry = Arc::new(Registry::new());
    let limiter = RedisLimiter::builder("shared", rules.clone(), backend.clone())
        .degrade(Degrade::FailClosed)
        .registry(Arc::clone(&registry))
        .build()
        .unwrap();
    assert!(limiter.try_acquire("k").await.unwrap().allowed);

    rotate(port, OLD, NEW);
    until_refused(&backend, &rules).await;
    // The limiter says so in the registry's health report.
    let _ = limiter.try_acquire("k").await;
    let reasons = registry.health().reasons;
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("refused the credentials")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().all(|r| !r.contains(OLD) && !r.contains(NEW)),
        "{reasons:?}"
    );

    // The password back: the connection answers again, and the refusal is
    // forgotten: a server that then stops answering is a timeout again.
    rotate(port, NEW, OLD);
    let (seen, back) = until(&backend, &rules, 300, |r| matches!(r, Ok(true))).await;
    assert!(back, "never answered again: {seen:?}");
    server.signal("STOP");
    let stalled = backend.decide("api", "k", &rules, 1).await;
    server.signal("CONT");
    assert!(
        matches!(stalled, Err(BackendError::Timeout(_))),
        "{stalled:?}"
    );
}
