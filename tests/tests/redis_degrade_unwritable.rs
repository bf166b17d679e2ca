//! A Redis that answers reads but refuses writes: full (`maxmemory` with
//! `noeviction`: `OOM command not allowed`) or a read-only replica (a
//! client left on the old primary after a failover: `READONLY`). Every
//! decision that takes a token fails there, so the limiter is degraded;
//! a probe that only reads (the background peek, a user's peek, a
//! refusal) must not end the outage, or the limiter flaps between
//! "degraded" and "Redis answers again" once per probe interval while no
//! token can ever be taken (found by a hostile review: it did, logging a
//! warning and an info line and flipping its health every ~50 ms, and
//! its probe backoff never grew). Once Redis takes writes again, the
//! limiter recovers with no restart and no request.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::redis_server::{cli, RedisServer};
use common::Capture;
use fusebox::bucket::Quota;
use fusebox_std::backend::{Degrade, RedisBackend, RedisLimiter, Rules, Source};
use fusebox_std::Registry;
use tokio::time::Instant;

/// Events so far of the limiter `name` whose message contains `text`.
fn events(name: &str, text: &str) -> usize {
    Capture::global()
        .with("limiter", name)
        .iter()
        .filter(|e| common::field(e, "message").is_some_and(|m| m.contains(text)))
        .count()
}

/// Redis refuses writes (`refuse`), the limiter stays degraded whatever
/// probes it (idle, peeks, refusals), then Redis takes writes again
/// (`accept`) and the limiter recovers by itself.
async fn unwritable_keeps_the_limiter_degraded(name: &str, refuse: &[&[&str]], accept: &[&[&str]]) {
    let _ = Capture::global();
    let server = RedisServer::start();
    let registry = Arc::new(Registry::new());
    let backend = RedisBackend::connect(server.outage_config(Duration::from_millis(200)))
        .await
        .unwrap();
    let rules = Rules::single("per_minute", Quota::per_minute(3).unwrap()).unwrap();
    let limiter = Arc::new(
        RedisLimiter::builder(name, rules, backend)
            .degrade(Degrade::FailClosed)
            .probe_backoff(Duration::from_millis(20), Duration::from_millis(100))
            .registry(Arc::clone(&registry))
            .build()
            .unwrap(),
    );
    // One key drained (a request for it is refused by Redis, writing
    // nothing), another with tokens left.
    assert!(limiter.try_acquire_n("drained", 3).await.unwrap().allowed);
    assert!(limiter.try_acquire("fresh").await.unwrap().allowed);

    for args in refuse {
        cli(server.port(), args);
    }
    // A decision that takes a token fails: degraded.
    let d = limiter.try_acquire("fresh").await.unwrap();
    assert_eq!((d.allowed, d.source), (false, Source::FailClosed), "{d:?}");
    assert!(limiter.is_degraded());

    // Idle for a while (the background probe peeks), then traffic that
    // only reads: peeks and a refused key. Redis still refuses writes.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        limiter.is_degraded() && registry.health().degraded,
        "an idle probe that only read ended the outage"
    );
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(400) {
        let _ = limiter.try_acquire_n("fresh", 0).await.unwrap();
        let _ = limiter.try_acquire("drained").await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(limiter.is_degraded() && registry.health().degraded);
    assert_eq!(
        events(name, "redis answers again"),
        0,
        "the outage was ended by a probe that wrote nothing"
    );
    // Every token-taking request was refused (FailClosed), none admitted
    // by Redis while it could not write.
    let d = limiter.try_acquire("fresh").await.unwrap();
    assert_eq!((d.allowed, d.source), (false, Source::FailClosed), "{d:?}");

    // Redis takes writes again: recovered with no request.
    for args in accept {
        cli(server.port(), args);
    }
    let back = Instant::now();
    while limiter.is_degraded() || registry.health().degraded {
        assert!(
            back.elapsed() < Duration::from_secs(5),
            "still degraded {:?} after Redis took writes again",
            back.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(events(name, "redis answers again"), 1);
    let d = limiter.try_acquire("fresh").await.unwrap();
    assert_eq!((d.allowed, d.source), (true, Source::Redis), "{d:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_redis_keeps_the_limiter_degraded_until_it_takes_writes() {
    unwritable_keeps_the_limiter_degraded(
        "oom",
        &[
            &["config", "set", "maxmemory-policy", "noeviction"],
            &["config", "set", "maxmemory", "1"],
        ],
        &[&["config", "set", "maxmemory", "0"]],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_replica_keeps_the_limiter_degraded_until_it_takes_writes() {
    // A replica of a primary that is gone: it serves its data, read-only.
    unwritable_keeps_the_limiter_degraded(
        "replica",
        &[&["replicaof", "127.0.0.1", "1"]],
        &[&["replicaof", "no", "one"]],
    )
    .await;
}

/// A request sent before the outage began, and refused by Redis after it
/// (it wrote nothing), does not end the outage either: a full Redis
/// answers refusals, so under traffic mixing drained and fresh keys the
/// limiter flapped with every refusal that was in flight when an
/// admission failed. Deterministic: both requests are sent while Redis
/// is stopped, the admission first; Redis resumes and fails it (the
/// outage begins), then refuses the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_in_flight_does_not_end_an_outage_on_a_full_redis() {
    let server = RedisServer::start();
    let backend = RedisBackend::connect(server.outage_config(Duration::from_secs(2)))
        .await
        .unwrap();
    let rules = Rules::single("per_minute", Quota::per_minute(3).unwrap()).unwrap();
    // No probe within the test: only the two requests speak to Redis.
    let limiter = RedisLimiter::builder("in_flight", rules, backend)
        .degrade(Degrade::FailClosed)
        .probe_backoff(Duration::from_secs(60), Duration::from_secs(60))
        .background_probe(false)
        .build()
        .unwrap();
    assert!(limiter.try_acquire_n("drained", 3).await.unwrap().allowed);
    cli(
        server.port(),
        &["config", "set", "maxmemory-policy", "noeviction"],
    );
    cli(server.port(), &["config", "set", "maxmemory", "1"]);

    server.signal("STOP");
    let mut admission = std::pin::pin!(limiter.try_acquire("fresh"));
    let mut refusal = std::pin::pin!(limiter.try_acquire("drained"));
    assert!(common::poll_once(admission.as_mut()).is_pending());
    assert!(common::poll_once(refusal.as_mut()).is_pending());
    server.signal("CONT");
    let failed = admission.await.unwrap();
    assert_eq!(failed.source, Source::FailClosed, "{failed:?}");
    assert!(limiter.is_degraded());
    let refused = refusal.await.unwrap();
    assert_eq!(
        (refused.allowed, refused.source),
        (false, Source::Redis),
        "{refused:?}"
    );
    assert!(
        limiter.is_degraded(),
        "a refusal that wrote nothing ended the outage"
    );
}
