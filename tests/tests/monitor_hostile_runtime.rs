//! The health monitor under a hostile runtime and careless owners: a
//! recovery episode whose check recovered mid-wait, panics whose payload
//! panics again when dropped, a thousand checks and a clock that jumps by
//! years. On paused tokio time.
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use fusebox_std::monitor::{
    probe, CheckError, CheckSpec, FnCheck, Health, HealthCheck, HealthMonitor, RecoveryAction,
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

/// A value whose `drop` panics: thrown with `panic_any`, the panic's
/// payload panics again when the guard drops it.
struct Bomb;

impl Drop for Bomb {
    fn drop(&mut self) {
        panic!("the panic payload panicked when dropped");
    }
}

/// A check (its future, or the closure making it) or a recovery action
/// that panics with a payload whose `drop` panics fails that run, as any
/// panic does; the monitor's tasks go on. Found by this review: the guard
/// dropped the payload outside `catch_unwind`, the second panic unwound
/// into the check's task and ended it: the check never ran again
/// (0 runs, stale and degraded for ever, its recovery never triggered).
#[tokio::test(start_paused = true)]
async fn a_panic_whose_payload_panics_when_dropped_fails_one_run_only() {
    let runs = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&runs);
    let check = FnCheck::new(move || {
        let run = seen.fetch_add(1, SeqCst);
        if run == 1 {
            std::panic::panic_any(Bomb); // in the closure
        }
        async move {
            if run == 0 {
                std::panic::panic_any(Bomb); // in the future
            }
            Err(CheckError::other("down"))
        }
    });
    let rule = RecoveryRule::new(
        3,
        RecoveryAction::new("restart", || async {
            std::panic::panic_any(Bomb);
            #[allow(unreachable_code)]
            Ok::<(), String>(())
        }),
    )
    .cooldown(secs(1))
    .backoff(1, secs(1));
    let monitor = HealthMonitor::new()
        .check(
            CheckSpec::new("bomb", check)
                .interval(secs(1))
                .recovery(rule),
        )
        .spawn();
    sleep(ms(4_500)).await; // runs at 0 to 4 s; attempts at 2, 3 and 4 s
    let status = monitor.status();
    let check = &status.checks[0];
    assert_eq!(
        (check.runs, check.failed_runs, check.health, check.stale),
        (5, 5, Health::Unhealthy, false)
    );
    let recovery = check.recovery.as_ref().unwrap();
    assert_eq!(recovery.primary.attempts, 3);
    assert_eq!(
        recovery.primary.last_error.as_deref(),
        Some("action panicked: a non-string panic payload")
    );
    monitor.stop().await;

    // `probe`, as the monitor.
    let bomb = FnCheck::new(|| async {
        std::panic::panic_any(Bomb);
        #[allow(unreachable_code)]
        Ok(None)
    });
    let probed = probe(&bomb, secs(1)).await;
    assert_eq!(
        probed.error.map(|e| e.message().to_owned()).as_deref(),
        Some("check panicked: a non-string panic payload")
    );
}

/// A thousand checks run each on its own schedule, and a clock jump of
/// three years (a host suspended, a VM paused) neither panics nor
/// stalls them: each check runs once at the wake-up (its missed slots
/// skipped, not caught up, and a slot under half an interval after the
/// wake-up too), then at its fixed rate again on its own staggered
/// slots; no check reads stale afterwards and stopping leaves
/// no task. Sound when a review checked it; the catch-up it then
/// documented (a second run at once) was later found to count one moment
/// twice (`monitor_late_wake`).
#[tokio::test(start_paused = true)]
async fn a_thousand_checks_survive_a_clock_jump_of_years() {
    let runs = Arc::new(AtomicUsize::new(0));
    let mut monitor = HealthMonitor::new();
    for i in 0..1_000 {
        let seen = Arc::clone(&runs);
        let check = FnCheck::new(move || {
            seen.fetch_add(1, SeqCst);
            async { Ok(None) }
        });
        monitor = monitor.check(CheckSpec::new(format!("c{i}"), check).interval(secs(1)));
    }
    let metrics = tokio::runtime::Handle::current().metrics();
    let alive = metrics.num_alive_tasks();
    let monitor = monitor.spawn();
    // Check i first runs at i ms (staggered over the 1 s interval).
    sleep(ms(999)).await;
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(runs.load(SeqCst), 1_000);
    assert_eq!(metrics.num_alive_tasks(), alive + 1_000);
    // At 999 ms + 3 years: every check's slot `i ms + k s` was missed.
    tokio::time::advance(secs(3 * 365 * 86_400)).await;
    // Time stands still while the thousand woken tasks run.
    for _ in 0..1_000 {
        tokio::task::yield_now().await;
    }
    assert_eq!(runs.load(SeqCst), 2_000, "one run each at the wake-up");
    let status = monitor.status();
    assert!(status.checks.iter().all(|c| !c.stale && c.runs == 2));
    assert_eq!(status.health, Health::Healthy);
    // Back on the grid: check i next runs at its first slot `i ms + k s`
    // at least half an interval after the wake-up W (3 years + 999 ms):
    // W + (i + 1) ms for i >= 499, a second later for the 499 checks
    // whose slot came less than 500 ms after their wake-up run (one
    // moment sampled twice otherwise). So in the next 10 s the 501 run
    // ten times more, the 499 nine times: 2 000 + 5 010 + 4 491.
    sleep(secs(10)).await;
    for _ in 0..1_000 {
        tokio::task::yield_now().await;
    }
    assert_eq!(runs.load(SeqCst), 11_501);
    monitor.stop().await;
    assert_eq!(metrics.num_alive_tasks(), alive);
}

/// `event_capacity(100)` holds 128 events, as tokio rounds a broadcast
/// channel's capacity up to a power of two: a receiver 130 events behind
/// loses 2, not 30. Found by this review: the method's docs promised the
/// capacity asked for (`Events::new` documents the rounding); the docs
/// now say so.
#[tokio::test(start_paused = true)]
async fn an_event_capacity_is_rounded_up_to_a_power_of_two() {
    // Passes and fails in turn, healthy after one pass: every run is a
    // health change, one event each.
    let next = Arc::new(AtomicUsize::new(0));
    let check = FnCheck::new(move || {
        let run = next.fetch_add(1, SeqCst);
        async move {
            if run.is_multiple_of(2) {
                Ok(None)
            } else {
                Err(CheckError::other("down"))
            }
        }
    });
    let monitor = HealthMonitor::new()
        .event_capacity(100)
        .check(
            CheckSpec::new("flappy", check)
                .interval(ms(1))
                .thresholds(Thresholds::new().healthy_after(1)),
        )
        .spawn();
    let mut events = monitor.subscribe();
    sleep(Duration::from_micros(129_500)).await; // runs at 0 to 129 ms
    let received = std::iter::from_fn(|| events.try_recv()).count();
    let status = monitor.status();
    assert_eq!(status.checks[0].runs, 130);
    assert_eq!((received, events.missed()), (128, 2));
    assert_eq!(status.lagged_events, 2);
    monitor.stop().await;
}
