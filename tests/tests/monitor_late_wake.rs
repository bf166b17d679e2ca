//! A health check woken late, a whole interval or more after its slot (a
//! host suspended, a runtime stalled, a clock that jumps): it runs once
//! at the wake-up, its missed slots (and a slot less than half an
//! interval after the wake-up) skipped, never twice for one moment.
//! On paused tokio time.
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use fusebox_std::monitor::{
    CheckError, CheckSpec, FnCheck, Health, HealthCheck, HealthMonitor, MonitorHandle, Thresholds,
};
use tokio::time::{sleep, Instant};

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

const fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// Counts its runs in `runs`, noting when each started in `at`, and
/// fails while `failing` is set.
fn counted(
    runs: &Arc<AtomicUsize>,
    at: &Arc<std::sync::Mutex<Vec<Instant>>>,
    failing: &Arc<AtomicBool>,
) -> impl HealthCheck {
    let (runs, at, failing) = (Arc::clone(runs), Arc::clone(at), Arc::clone(failing));
    FnCheck::new(move || {
        runs.fetch_add(1, SeqCst);
        at.lock().unwrap().push(Instant::now());
        std::future::ready(if failing.load(SeqCst) {
            Err(CheckError::other("down"))
        } else {
            Ok(None)
        })
    })
}

/// A 5 s check, degraded after one failure and unhealthy after two,
/// spawned now, with what [`counted`] notes of it.
struct Watched {
    runs: Arc<AtomicUsize>,
    at: Arc<std::sync::Mutex<Vec<Instant>>>,
    failing: Arc<AtomicBool>,
    start: Instant,
    monitor: MonitorHandle,
}

fn watched() -> Watched {
    let runs = Arc::new(AtomicUsize::new(0));
    let at = Arc::new(std::sync::Mutex::new(Vec::new()));
    let failing = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let monitor = HealthMonitor::new()
        .check(
            CheckSpec::new("db", counted(&runs, &at, &failing))
                .interval(secs(5))
                .thresholds(Thresholds::new().degraded_after(1).unhealthy_after(2)),
        )
        .spawn();
    Watched {
        runs,
        at,
        failing,
        start,
        monitor,
    }
}

async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

/// With `unhealthy_after(2)`, one bad moment after a wake-up leaves the
/// check degraded: two failed runs of the same instant were counted as
/// two failures before (the wake-up's run, then a "catch-up" at once),
/// making it unhealthy (and starting its recovery) for one sample. Every
/// later run keeps to the check's slots (`start + k × interval`).
#[tokio::test(start_paused = true)]
async fn a_late_wake_runs_once_and_one_bad_moment_is_one_failure() {
    let Watched {
        runs,
        at,
        failing,
        start,
        monitor,
    } = watched();
    settle().await;
    assert_eq!(runs.load(SeqCst), 1);
    // The host sleeps for an hour and a half second past a slot, and the
    // dependency is down at the wake-up.
    failing.store(true, SeqCst);
    tokio::time::advance(secs(3_600) + Duration::from_millis(500)).await;
    settle().await;
    assert_eq!(runs.load(SeqCst), 2, "one run at the wake-up, not two");
    let status = monitor.status();
    let check = &status.checks[0];
    assert_eq!(
        (check.health, check.consecutive_failures),
        (Health::Degraded, 1)
    );
    // Back in time for its next slot, the dependency up again: healthy,
    // never unhealthy.
    failing.store(false, SeqCst);
    sleep(secs(10)).await;
    settle().await;
    assert_eq!(monitor.status().checks[0].health, Health::Healthy);
    let at = at.lock().unwrap().clone();
    let offsets: Vec<Duration> = at.iter().map(|t| *t - start).collect();
    assert_eq!(
        offsets,
        [
            Duration::ZERO,
            secs(3_600) + Duration::from_millis(500),
            secs(3_605),
            secs(3_610),
        ],
        "the wake-up, then the check's own slots"
    );
    monitor.stop().await;
}

/// A run that overruns its slot is still followed by the next at once
/// (the schedule's documented catch-up of a slow run), and a run that
/// starts on time is followed one interval after its slot, whatever it
/// lasted: only a late start skips slots.
#[tokio::test(start_paused = true)]
async fn a_slow_run_is_still_followed_at_once() {
    let runs = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&runs);
    let start = Instant::now();
    let at = Arc::new(std::sync::Mutex::new(Vec::new()));
    let noted = Arc::clone(&at);
    // The second run takes 12 s (two and a bit slots of 5 s); the others
    // are instant.
    let check = FnCheck::new(move || {
        let run = seen.fetch_add(1, SeqCst);
        noted.lock().unwrap().push(Instant::now());
        async move {
            if run == 1 {
                sleep(secs(12)).await;
            }
            Ok(None)
        }
    });
    let monitor = HealthMonitor::new()
        .check(
            CheckSpec::new("slow", check)
                .interval(secs(5))
                .timeout(secs(60)),
        )
        .spawn();
    sleep(secs(23)).await;
    settle().await;
    let offsets: Vec<Duration> = at.lock().unwrap().iter().map(|t| *t - start).collect();
    // 0, 5 (lasts to 17), 17 at once, then 22 (17's slot + 5).
    assert_eq!(offsets, [secs(0), secs(5), secs(17), secs(22)]);
    monitor.stop().await;
}

/// A wake-up just before a slot (an hour's suspend ending 1 ms before
/// the check's slot at 3 600 s): the slot 1 ms after the wake-up's run
/// would sample the same moment again. With `unhealthy_after(2)` one bad
/// moment made the check unhealthy (runs at 3 599.999 s and 3 600 s,
/// found by a second hostile review); a slot less than half an interval
/// after a late run's start is skipped too, so the next run is at
/// 3 605 s (and healthy again after the passes at 3 605 s and 3 610 s).
#[tokio::test(start_paused = true)]
async fn a_wake_just_before_a_slot_skips_it() {
    let Watched {
        runs: _,
        at,
        failing,
        start,
        monitor,
    } = watched();
    settle().await;
    failing.store(true, SeqCst);
    tokio::time::advance(ms(3_599_999)).await;
    settle().await;
    tokio::time::advance(Duration::from_millis(1)).await;
    settle().await;
    let status = monitor.status();
    assert_eq!(
        (
            status.checks[0].health,
            status.checks[0].consecutive_failures
        ),
        (Health::Degraded, 1)
    );
    failing.store(false, SeqCst);
    sleep(secs(10)).await;
    settle().await;
    assert_eq!(monitor.status().checks[0].health, Health::Healthy);
    let offsets: Vec<Duration> = at.lock().unwrap().iter().map(|t| *t - start).collect();
    assert_eq!(
        offsets,
        [Duration::ZERO, ms(3_599_999), secs(3_605), secs(3_610),]
    );
    monitor.stop().await;
}
