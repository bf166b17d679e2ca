use super::*;
use crate::backend::{RedisConfig, Rule};
use fusebox::bucket::Quota;

/// A limiter on a port where nothing listens: every command fails at
/// once, so its first request degrades it.
fn unreachable(policy: Degrade, backoff: Duration) -> RedisLimiter {
    let config = RedisConfig::new("redis://127.0.0.1:1").timeout(Duration::from_millis(200));
    let backend = RedisBackend::connect_lazy(config).unwrap();
    let rules =
        Rules::new([Rule::new("per_second", Quota::per_second(5).unwrap()).unwrap()]).unwrap();
    RedisLimiter::builder("unit", rules, backend)
        .degrade(policy)
        .probe_backoff(backoff, backoff)
        .local_keys(1)
        .build()
        .unwrap()
}

/// A peek (`n = 0`) admits no request and, under the `Local` policy,
/// leaves no state: it counted an admission and inserted its key in
/// the local table (a full one refused it with `TableFull`).
#[tokio::test]
async fn a_peek_counts_no_admission_and_leaves_no_local_state() {
    let limiter = unreachable(Degrade::Local { instances: 1 }, Duration::from_secs(3_600));
    let local = || &limiter.shared.local.as_ref().unwrap().0;
    let d = limiter.try_acquire_n("a", 0).await.unwrap();
    assert!(limiter.is_degraded());
    assert_eq!((d.allowed, d.source, d.remaining), (true, Source::Local, 5));
    assert_eq!(limiter.metrics().admitted, 0);
    assert!(local().is_empty());
    assert!(limiter.try_acquire("a").await.unwrap().allowed);
    assert_eq!(limiter.metrics().admitted, 1);
    // The table is full (one key, not idle): a peek at another key
    // is answered, and inserts nothing.
    let d = limiter.try_acquire_n("b", 0).await.unwrap();
    assert_eq!((d.allowed, d.source), (true, Source::Local));
    assert_eq!(limiter.metrics().admitted, 1);
    assert_eq!(local().len(), 1);
    for policy in [Degrade::FailOpen, Degrade::FailClosed] {
        let limiter = unreachable(policy, Duration::from_secs(3_600));
        assert!(limiter.try_acquire_n("a", 0).await.unwrap().allowed);
        assert!(limiter.is_degraded());
        assert_eq!(limiter.metrics().admitted, 0, "{policy:?}");
    }
}

/// The probe task runs while the limiter is degraded, one at most,
/// and ends with the limiter, however far its next probe.
#[tokio::test]
async fn the_probe_task_runs_while_degraded_and_ends_with_the_limiter() {
    let limiter = unreachable(Degrade::FailOpen, Duration::from_secs(3_600));
    assert!(!limiter.shared.probe.is_running(), "no task while healthy");
    let _ = limiter.try_acquire("k").await.unwrap();
    assert!(limiter.is_degraded());
    assert!(limiter.shared.probe.is_running());
    let task = limiter.shared.probe.handle().unwrap();
    let _ = limiter.try_acquire("k").await.unwrap();
    let again = limiter.shared.probe.handle().unwrap();
    assert_eq!(task.id(), again.id(), "one task at most");
    let state = Arc::downgrade(&limiter.shared);
    drop(limiter);
    assert_eq!(state.strong_count(), 0, "the task held the limiter");
    for _ in 0..100 {
        if task.is_finished() {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(task.is_finished(), "the task outlived its limiter");
}

/// A limiter dropped while its task is in a probe (the task holds the
/// state across it, and the drop's abort only lands at its next await):
/// that probe failing afterwards starts no new task. It did (the slot was
/// empty), and the new task slept until the next probe, here an hour,
/// after its limiter was gone.
#[tokio::test]
async fn a_probe_failing_after_the_drop_starts_no_task() {
    let limiter = unreachable(Degrade::FailOpen, Duration::from_secs(3_600));
    let _ = limiter.try_acquire("k").await.unwrap();
    assert!(limiter.shared.probe.is_running());
    // What the task holds while it probes.
    let shared = Arc::clone(&limiter.shared);
    drop(limiter);
    assert!(!shared.probe.is_running());
    assert!(!shared.probe().await, "the port refuses: the probe fails");
    assert!(
        !shared.probe.is_running(),
        "a probe task started for a dropped limiter"
    );
}

/// `background_probe(false)`: a degraded limiter starts no task (for
/// tests on a paused clock, where the task would probe at the virtual
/// rate); requests still probe when one is due.
#[tokio::test]
async fn without_the_background_probe_a_degraded_limiter_starts_no_task() {
    let config = RedisConfig::new("redis://127.0.0.1:1").timeout(Duration::from_millis(200));
    let backend = RedisBackend::connect_lazy(config).unwrap();
    let rules =
        Rules::new([Rule::new("per_second", Quota::per_second(5).unwrap()).unwrap()]).unwrap();
    let limiter = RedisLimiter::builder("quiet", rules, backend)
        .degrade(Degrade::FailOpen)
        .probe_backoff(Duration::ZERO, Duration::ZERO)
        .background_probe(false)
        .build()
        .unwrap();
    for _ in 0..3 {
        assert!(limiter.try_acquire("k").await.unwrap().allowed);
        assert!(limiter.is_degraded());
        assert!(!limiter.shared.probe.is_running());
    }
    // Every request probed (a zero backoff): each one a fault.
    assert_eq!(limiter.metrics().faults, 3);
}
