//! The health monitor under a hostile runtime and careless owners: a
//! recovery episode whose check recovered mid-wait. On paused tokio time.
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use fusebox_std::monitor::{
    CheckError, CheckSpec, FnCheck, Health, HealthCheck, HealthMonitor, RecoveryAction,
    RecoveryRule, Thresholds,
};
use tokio::time::sleep;

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

const fn ms(m: u64) -> Duration {
    Duration::from_millis(m)
}

/// A check failing while `failing` is set.
fn switchable(failing: &Arc<AtomicBool>) -> impl HealthCheck {
    let flag = Arc::clone(failing);
    FnCheck::new(move || {
        let fail = flag.load(SeqCst);
        async move {
            if fail {
                Err(CheckError::other("down"))
            } else {
                Ok(None)
            }
        }
    })
}

/// The recovery status documents `next_attempt_at` as "when the next
/// attempt may start, while an episode is running", and an episode as
/// over once the check is healthy. Found by this review: the episode
/// only ended when its backoff wait did, so a check healthy again still
/// showed an attempt due that would never run: for up to `max_backoff`
/// (30 s here), and for ever with a cooldown of `Duration::MAX`.
#[tokio::test(start_paused = true)]
async fn an_episode_ends_the_moment_its_check_is_healthy_again() {
    for cooldown in [secs(30), Duration::MAX] {
        let failing = Arc::new(AtomicBool::new(true));
        let attempts = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&attempts);
        let rule = RecoveryRule::new(
            2,
            RecoveryAction::new("reconnect", move || {
                counted.fetch_add(1, SeqCst);
                async { Ok::<(), String>(()) }
            }),
        )
        .cooldown(cooldown);
        let monitor = HealthMonitor::new()
            .check(
                CheckSpec::new("db", switchable(&failing))
                    .interval(secs(1))
                    .thresholds(Thresholds::new().healthy_after(2))
                    .recovery(rule),
            )
            .spawn();
        sleep(ms(1_500)).await; // runs at 0 and 1 s: attempt 1 at 1 s
        let recovery = monitor.status().checks[0].recovery.clone().unwrap();
        let due = secs(1).saturating_add(cooldown);
        assert_eq!(
            (recovery.episode_attempts, recovery.next_attempt_at),
            (1, Some(due)),
            "{cooldown:?}"
        );
        failing.store(false, SeqCst);
        sleep(secs(2)).await; // passes at 2 and 3 s: healthy at 3 s
        let status = monitor.status();
        assert_eq!(status.checks[0].health, Health::Healthy);
        let recovery = status.checks[0].recovery.clone().unwrap();
        assert_eq!(
            (
                recovery.episodes,
                recovery.episode_attempts,
                recovery.next_attempt_at
            ),
            (1, 1, None),
            "{cooldown:?}: healthy at 3 s, no attempt is due"
        );
        // Failing twice again (at 4 and 5 s) starts episode 2 at once.
        failing.store(true, SeqCst);
        sleep(secs(2)).await;
        let recovery = monitor.status().checks[0].recovery.clone().unwrap();
        assert_eq!(
            (recovery.episodes, recovery.episode_attempts),
            (2, 1),
            "{cooldown:?}"
        );
        assert_eq!(attempts.load(SeqCst), 2, "{cooldown:?}");
        monitor.stop().await;
    }
}
