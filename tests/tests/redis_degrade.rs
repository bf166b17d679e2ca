//! The Redis backend's degradation, as a hostile operator drives it:
//! a limiter dropped or replaced while Redis was out (a quota changed, a
//! config reload) must not leave its health condition behind; requests
//! failing together when Redis stops do not push the first probe to the
//! maximum backoff; the `Local` policy refuses (and names a wait) a
//! request that the configured quota admits but its local share cannot,
//! instead of failing it as if no wait could ever help; a zero timeout,
//! with which no decision could ever reach Redis, is refused when the
//! backend is made, as is a `Local` fallback for no instance; every
//! limiter reports its own outage, whatever its name's length or ending.

use std::sync::Arc;
use std::time::Duration;

use crate::common::redis_server::RedisServer;
use fusebox::bucket::Quota;
use fusebox_std::backend::{
    BackendError, Degrade, RedisBackend, RedisConfig, RedisLimiter, Rules, Source,
};
use fusebox_std::Registry;
use tokio::time::Instant;

fn config(server: &RedisServer) -> RedisConfig {
    server.outage_config(Duration::from_millis(50))
}

fn per_second(tokens: u32) -> Rules {
    Rules::single("per_second", Quota::per_second(tokens).unwrap()).unwrap()
}

/// Requests until Redis decides again (at most 5 s).
async fn until_redis(limiter: &RedisLimiter) {
    let start = Instant::now();
    while limiter.try_acquire("k").await.unwrap().source != Source::Redis {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "redis decisions did not resume"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The limiter is rebuilt (its quota doubled) while Redis is out, the old
/// one dropped (its condition goes with it); Redis comes back and the new limiter decides there. Its
/// health must be clean again: the old limiter's `redis_api` condition
/// stayed set forever (the new limiter, never degraded itself, never
/// cleared it), so `health()` said `degraded` with a stale reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limiter_dropped_while_degraded_leaves_no_stale_health_condition() {
    let mut server = RedisServer::start();
    let registry = Arc::new(Registry::new());
    let backend = RedisBackend::connect(config(&server)).await.unwrap();
    let build = |rules: Rules| {
        RedisLimiter::builder("api", rules, backend.clone())
            .degrade(Degrade::Local { instances: 2 })
            .probe_backoff(Duration::from_millis(20), Duration::from_millis(200))
            .registry(Arc::clone(&registry))
            .build()
            .unwrap()
    };
    let old = build(per_second(20));
    assert_eq!(old.try_acquire("k").await.unwrap().source, Source::Redis);
    server.kill();
    assert_eq!(old.try_acquire("k").await.unwrap().source, Source::Local);
    assert!(registry.health().degraded);
    drop(old);
    // Dropped and not (yet) replaced: no limiter of the name is degraded,
    // and health says so (the condition stayed until a rebuild).
    let health = registry.health();
    assert!(!health.degraded, "stale after drop: {:?}", health.reasons);

    server.restart();
    let new = build(per_second(40));
    until_redis(&new).await;
    assert!(!new.is_degraded());
    let health = registry.health();
    assert!(!health.degraded, "stale: {:?}", health.reasons);

    // And the new limiter still reports an outage of its own.
    server.kill();
    assert_eq!(new.try_acquire("k").await.unwrap().source, Source::Local);
    assert!(registry.health().degraded);
    server.restart();
    until_redis(&new).await;
    assert!(
        !registry.health().degraded,
        "{:?}",
        registry.health().reasons
    );
}

/// Building a limiter of a name does not clear the condition of a live,
/// degraded limiter of the same name (it did: the builder cleared any
/// condition of its name, taking it for a dropped limiter's, and health
/// read clean while the first limiter was still out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_limiter_of_a_name_keeps_a_live_degraded_ones_condition() {
    let mut server = RedisServer::start();
    let registry = Arc::new(Registry::new());
    let backend = RedisBackend::connect(config(&server)).await.unwrap();
    let build = || {
        RedisLimiter::builder("api", per_second(20), backend.clone())
            .degrade(Degrade::Local { instances: 2 })
            .probe_backoff(Duration::from_secs(60), Duration::from_secs(60))
            .registry(Arc::clone(&registry))
            .build()
            .unwrap()
    };
    let first = build();
    server.kill();
    assert_eq!(first.try_acquire("k").await.unwrap().source, Source::Local);
    assert!(registry.health().degraded);
    let second = build();
    assert!(first.is_degraded() && !second.is_degraded());
    let health = registry.health();
    assert!(health.degraded, "the live limiter's outage vanished");
    assert!(health.reasons[0].starts_with("redis_api: "), "{health:?}");
    // Dropped, its condition goes with it.
    drop(first);
    assert!(!registry.health().degraded);
    drop(second);
}

/// Every request in flight when Redis stops answering times out at about
/// the same moment; only the first starts the outage. Each of the others
/// used to double the probe backoff, so a burst of them took it straight
/// to its maximum and the limiter stayed degraded that long after Redis
/// was back (here a minute). Now the first probe is due after the minimum.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_failing_together_do_not_push_the_first_probe_to_the_maximum() {
    let server = RedisServer::start();
    let backend = RedisBackend::connect(config(&server)).await.unwrap();
    let limiter = Arc::new(
        RedisLimiter::builder("burst", per_second(1_000), backend)
            .degrade(Degrade::Local { instances: 1 })
            .probe_backoff(Duration::from_millis(50), Duration::from_secs(60))
            .build()
            .unwrap(),
    );
    assert_eq!(
        limiter.try_acquire("k").await.unwrap().source,
        Source::Redis
    );
    // Stopped, not killed: every request sent now waits for its 50 ms
    // command timeout, so all of them are in flight before any fails.
    server.signal("STOP");
    let mut burst = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let limiter = Arc::clone(&limiter);
        burst.spawn(async move { limiter.try_acquire("k").await.unwrap().source });
    }
    while let Some(source) = burst.join_next().await {
        assert_eq!(source.unwrap(), Source::Local);
    }
    let faults = limiter.metrics().faults;
    // Ten doublings from 50 ms would put the first probe 25 s away.
    assert!(faults >= 10, "only {faults} requests failed together");

    server.signal("CONT");
    // Within 5 s (probes at 50, 150, 350 ms... after the outage began).
    until_redis(&limiter).await;
}

/// 20/s with a burst of 20 among 4 instances: a local share of burst 5.
/// Ten tokens are a valid request (Redis admits them); while Redis is out
/// the `Local` policy cannot admit them, and must say so as a refusal
/// with a wait, like every other degraded decision. It failed with
/// `InsufficientCapacity { requested: 10, burst: 5 }` — the error that
/// means "no wait could help", a burst the operator never configured —
/// so `until_n_ready_by` gave up at once on a brief outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_fallback_refuses_a_request_larger_than_its_share_instead_of_failing() {
    let mut server = RedisServer::start();
    let backend = RedisBackend::connect(config(&server)).await.unwrap();
    let limiter = RedisLimiter::builder("share", per_second(20), backend)
        .degrade(Degrade::Local { instances: 4 })
        .probe_backoff(Duration::from_millis(20), Duration::from_millis(200))
        .build()
        .unwrap();
    let d = limiter.try_acquire_n("k", 10).await.unwrap();
    assert_eq!((d.allowed, d.source), (true, Source::Redis));
    server.kill();
    for _ in 0..3 {
        let d = limiter
            .try_acquire_n("k", 10)
            .await
            .expect("a refusal, not an error");
        assert!(!d.allowed, "{d:?}");
        assert!(d.retry_after > Duration::ZERO, "{d:?}");
    }
    // Beyond the configured burst it is still the error it always was.
    assert!(matches!(
        limiter.try_acquire_n("k", 21).await,
        Err(BackendError::InsufficientCapacity {
            requested: 21,
            burst: 20
        })
    ));
    // A waiter rides the outage out: Redis back, the wait ends admitted.
    let waiter = async {
        limiter
            .until_n_ready_by("k", 10, Some(Instant::now() + Duration::from_secs(5)))
            .await
    };
    let restart = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        server.restart();
    };
    let (waited, ()) = tokio::join!(waiter, restart);
    let d = waited.expect("admitted once Redis is back");
    assert_eq!((d.allowed, d.source), (true, Source::Redis));
}

/// A zero command timeout can never see a reply (the timer fires before
/// any round trip): every decision was degraded for the process's life
/// and a fleet breaker never synced. A zero connect timeout never
/// connects. Both are refused when the backend is made, with a typed
/// error that is not a fault.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_timeouts_are_rejected_at_construction() {
    let server = RedisServer::start();
    for config in [
        config(&server).timeout(Duration::ZERO),
        config(&server).connect_timeout(Duration::ZERO),
    ] {
        let connected = RedisBackend::connect(config.clone()).await;
        assert!(
            matches!(connected, Err(BackendError::InvalidConfig(_))),
            "{config:?}: {:?}",
            connected.map(drop)
        );
        let lazy = RedisBackend::connect_lazy(config.clone());
        assert!(
            matches!(lazy, Err(BackendError::InvalidConfig(_))),
            "{config:?}: {:?}",
            lazy.map(drop)
        );
        assert!(!BackendError::InvalidConfig("x").is_fault());
    }
    // The smallest non-zero timeouts are accepted.
    let tiny = config(&server).timeout(Duration::from_micros(1));
    assert!(RedisBackend::connect_lazy(tiny).is_ok());
}

/// Every limiter reports its own outage under `redis_<name>`: a name near
/// the 64-byte limit (whose condition is longer) and two names that differ
/// by a trailing underscore (found by a hostile review: the first never
/// reached the report, the other two shared one condition).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_limiter_reports_its_own_outage_whatever_its_name() {
    let mut server = RedisServer::start();
    let registry = Arc::new(Registry::new());
    let backend = RedisBackend::connect(config(&server)).await.unwrap();
    let long = "a".repeat(fusebox_std::registry::MAX_NAME_LEN);
    let names = [long.as_str(), "api", "api_"];
    let limiters: Vec<RedisLimiter> = names
        .iter()
        .map(|name| {
            RedisLimiter::builder(name, per_second(10), backend.clone())
                .degrade(Degrade::FailOpen)
                .registry(Arc::clone(&registry))
                .build()
                .unwrap()
        })
        .collect();
    for limiter in &limiters {
        assert_eq!(
            limiter.try_acquire("k").await.unwrap().source,
            Source::Redis
        );
    }
    server.kill();
    for limiter in &limiters {
        let d = limiter.try_acquire("k").await.unwrap();
        assert_eq!(d.source, Source::FailOpen);
    }
    let health = registry.health();
    assert!(health.degraded, "{health:?}");
    let mut sources: Vec<&str> = health
        .reasons
        .iter()
        .map(|r| r.split(": ").next().unwrap())
        .collect();
    sources.sort_unstable();
    let mut expected: Vec<String> = names.iter().map(|n| format!("redis_{n}")).collect();
    expected.sort_unstable();
    assert_eq!(sources, expected, "{:?}", health.reasons);
}

/// `Local { instances: 0 }` is refused when the limiter is built: read as
/// one, it handed one instance the whole fleet's quota.
#[tokio::test]
async fn a_local_fallback_for_no_instance_is_refused() {
    let server = RedisServer::start();
    let backend = RedisBackend::connect(config(&server)).await.unwrap();
    let built = RedisLimiter::builder("zero", per_second(10), backend.clone())
        .degrade(Degrade::Local { instances: 0 })
        .build();
    assert!(
        matches!(built, Err(BackendError::InvalidConfig(_))),
        "{:?}",
        built.map(drop)
    );
    assert!(RedisLimiter::builder("one", per_second(10), backend)
        .degrade(Degrade::Local { instances: 1 })
        .build()
        .is_ok());
}

/// A peek (`n = 0`) takes nothing, so every policy answers it as Redis
/// would, admitted, also while Redis is out: `FailClosed` protects by
/// refusing tokens, and a peek asks for none. It reports no tokens left
/// (`remaining: 0`): a request for one would be refused. Before, the
/// `FailClosed` policy refused the peek with a wait, so a caller peeking
/// before a batch (or `until_n_ready_by(_, 0, _)`) waited out the outage
/// for nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_admits_a_peek_that_takes_nothing() {
    let mut server = RedisServer::start();
    // A killed server fails commands at once (a closed connection), so
    // the outage needs no short timeout here; 50 ms was too short for
    // the first peek (a script load and a call) on a loaded machine, and
    // its timeout began a 30 s outage before Redis was killed (1 run in
    // 3 of the binary with two busy loops and a second test stream).
    let backend = RedisBackend::connect(server.outage_config(Duration::from_secs(1)))
        .await
        .unwrap();
    let limiter = RedisLimiter::builder("peek", per_second(5), backend)
        .degrade(Degrade::FailClosed)
        .probe_backoff(Duration::from_secs(30), Duration::from_secs(30))
        .build()
        .unwrap();
    let d = limiter.try_acquire_n("k", 0).await.unwrap();
    assert_eq!((d.allowed, d.source, d.remaining), (true, Source::Redis, 5));
    server.kill();
    // The outage starts (the first request's fault), then the policy decides.
    let _ = limiter.try_acquire("k").await.unwrap();
    assert!(limiter.is_degraded());
    let one = limiter.try_acquire("k").await.unwrap();
    assert_eq!((one.allowed, one.source), (false, Source::FailClosed));
    assert!(one.retry_after > Duration::ZERO);
    let peek = limiter.try_acquire_n("k", 0).await.unwrap();
    assert_eq!(
        (peek.allowed, peek.source, peek.remaining, peek.retry_after),
        (true, Source::FailClosed, 0, Duration::ZERO),
        "{peek:?}"
    );
    let waited = limiter
        .until_n_ready_by("k", 0, Some(Instant::now() + Duration::from_secs(1)))
        .await
        .expect("a peek never waits");
    assert!(waited.allowed);
}

/// A peek (`n = 0`) is what the core's `KeyedLimiter::try_acquire_n(key,
/// 0)` is: answered, with no side effect. It admits no request (it was
/// counted in `admitted`, under every policy) and creates no state: no
/// key in Redis, no entry in the `Local` policy's table (it inserted one,
/// and a full table refused the peek with `TableFull`). A leased
/// limiter's peek takes no lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peek_counts_no_admission_and_creates_no_state() {
    let mut server = RedisServer::start();
    let backend = RedisBackend::connect(config(&server)).await.unwrap();
    let mut conn = backend.connection();
    let build = |name: &str, policy: Degrade| {
        RedisLimiter::builder(name, per_second(5), backend.clone())
            .degrade(policy)
            .probe_backoff(Duration::from_secs(30), Duration::from_secs(30))
            .local_keys(1)
            .build()
            .unwrap()
    };
    let local = build("peek_local", Degrade::Local { instances: 1 });
    let open = build("peek_open", Degrade::FailOpen);
    let closed = build("peek_closed", Degrade::FailClosed);
    let leased = fusebox_std::backend::LeasedLimiter::new(
        build("peek_leased", Degrade::FailClosed),
        "all",
        2,
        Duration::from_secs(60),
    )
    .unwrap();
    for limiter in [&local, &open, &closed] {
        let d = limiter.try_acquire_n("fresh", 0).await.unwrap();
        assert_eq!((d.allowed, d.source, d.remaining), (true, Source::Redis, 5));
        assert_eq!(limiter.metrics().admitted, 0, "{}", limiter.name());
    }
    let d = leased.try_acquire_n(0).await.unwrap();
    assert!(d.allowed, "{d:?}");
    assert_eq!(leased.limiter().metrics().admitted, 0);
    let keys: i64 = redis::cmd("DBSIZE").query_async(&mut conn).await.unwrap();
    assert_eq!(keys, 0, "a peek wrote a key");

    server.kill();
    // Each degraded by a request, which is admitted (and counted).
    for limiter in [&local, &open, &closed] {
        let d = limiter.try_acquire("k").await.unwrap();
        assert_ne!(d.source, Source::Redis);
        assert!(limiter.is_degraded());
    }
    // The local table holds one key ("k", not idle): full.
    let d = local
        .try_acquire_n("other", 0)
        .await
        .expect("a peek is answered, a full table or not");
    assert_eq!((d.allowed, d.source, d.remaining), (true, Source::Local, 5));
    assert_eq!(
        local.try_acquire("other").await,
        Err(BackendError::TableFull),
        "the peek inserted its key"
    );
    for limiter in [&local, &open, &closed] {
        let admitted = limiter.metrics().admitted;
        assert!(limiter.try_acquire_n("k", 0).await.unwrap().allowed);
        assert_eq!(limiter.metrics().admitted, admitted, "{}", limiter.name());
    }
}

/// A refusal by the degradation policy names a wait above zero: the time
/// until the probe that refused it. Before, the request found the probe
/// not yet due on one clock reading and named the wait on another, so a
/// request that straddled the probe's instant was refused with
/// `retry_after == 0` (a `Retry-After: 0` 429, an immediate retry): 8 in
/// 100 000 requests with a 1 ms probe interval (found by a hostile
/// review). A race test: many requests, a count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_degraded_refusal_never_names_a_zero_wait() {
    let mut server = RedisServer::start();
    let backend = RedisBackend::connect(config(&server)).await.unwrap();
    server.kill();
    for (policy, n) in [
        (Degrade::FailClosed, 1),
        // A request larger than the local share's burst of 1.
        (Degrade::Local { instances: 10 }, 5),
    ] {
        let limiter = RedisLimiter::builder("zero_wait", per_second(5), backend.clone())
            .degrade(policy)
            .probe_backoff(Duration::from_millis(1), Duration::from_millis(1))
            .background_probe(false)
            .build()
            .unwrap();
        let (mut refused, mut zero) = (0, 0);
        for _ in 0..100_000 {
            let d = limiter.try_acquire_n("k", n).await.unwrap();
            assert!(!d.allowed, "{policy:?}: {d:?}");
            refused += 1;
            zero += u32::from(d.retry_after.is_zero());
        }
        assert_eq!((refused, zero), (100_000, 0), "{policy:?}");
    }
}

/// `Local` over the switch back: Redis never learns what the instances
/// admitted locally, so when it answers again it admits from the state
/// it kept. A window spanning an outage's end may admit the local
/// buckets' tokens and Redis's: here 10 locally, then Redis's 10, within
/// seconds, on 10 a minute. The behaviour is the design's; the docs said
/// only how the switch *into* an outage adds up (found by a hostile
/// review; `Degrade::Local` now says both).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_fallback_and_redis_add_up_across_the_switch_back() {
    let server = RedisServer::start();
    let backend = RedisBackend::connect(config(&server)).await.unwrap();
    let rules = Rules::single("per_minute", Quota::per_minute(10).unwrap()).unwrap();
    let limiter = RedisLimiter::builder("switch_back", rules, backend)
        .degrade(Degrade::Local { instances: 1 })
        .probe_backoff(Duration::from_millis(20), Duration::from_millis(100))
        .build()
        .unwrap();
    assert!(limiter.try_acquire("other").await.unwrap().allowed); // connected
    server.signal("STOP"); // Redis keeps its state: nothing for the key
    let mut local = 0;
    for _ in 0..20 {
        let d = limiter.try_acquire("k").await.unwrap();
        if d.allowed {
            assert_eq!(d.source, Source::Local, "{d:?}");
            local += 1;
        }
    }
    server.signal("CONT");
    let start = Instant::now();
    while limiter.is_degraded() {
        assert!(start.elapsed() < Duration::from_secs(5), "never recovered");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut redis = 0;
    for _ in 0..20 {
        let d = limiter.try_acquire("k").await.unwrap();
        assert_eq!(d.source, Source::Redis, "{d:?}");
        redis += u32::from(d.allowed);
    }
    // Requests sent into the stall (the first, a probe or two) may have
    // taken a token each when Redis resumed; the rest is Redis's burst.
    assert_eq!(local, 10);
    assert!((8..=10).contains(&redis), "{redis} admitted by Redis");
}

/// Requests sent just before Redis stalls, with a command timeout longer
/// than the probe backoff, fail after the first one began the outage, some
/// once its first probe was due: each is refused with a wait above zero.
/// Before, a request that failed after the probe's instant (nobody having
/// probed yet) changed nothing and named the time until that probe: zero
/// (found by a hostile review: most of the late ones, a count).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_failing_late_in_a_stall_never_name_a_zero_wait() {
    let server = RedisServer::start();
    let backend = RedisBackend::connect(server.outage_config(Duration::from_millis(300)))
        .await
        .unwrap();
    let limiter = Arc::new(
        RedisLimiter::builder("late_zero_wait", per_second(1_000), backend)
            .degrade(Degrade::FailClosed)
            .probe_backoff(Duration::from_millis(10), Duration::from_millis(10))
            .background_probe(false)
            .build()
            .unwrap(),
    );
    assert_eq!(
        limiter.try_acquire("k").await.unwrap().source,
        Source::Redis
    );
    server.signal("STOP");
    // Twenty requests, one every 10 ms: all sent before the first one
    // fails (300 ms), so none is a probe, and most fail after the probe
    // that failure booked (10 ms later) was due.
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let limiter = Arc::clone(&limiter);
        tasks.push(tokio::spawn(async move {
            limiter.try_acquire("k").await.unwrap()
        }));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (mut refused, mut zero) = (0, 0);
    for task in tasks {
        let d = task.await.unwrap();
        if !d.allowed {
            refused += 1;
            zero += u32::from(d.retry_after.is_zero());
        }
    }
    server.signal("CONT");
    assert_eq!((refused, zero), (20, 0));
}
