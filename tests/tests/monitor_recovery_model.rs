//! The recovery schedule against a model written from `RecoveryRule`'s
//! documentation, over random pass/fail histories: attempt 1 when the
//! failure streak reaches `after_failures`, then one after each wait of
//! `cooldown × factor^(k−1)` (capped), until the check is healthy again;
//! a new streak after that starts a new episode at once.
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use fusebox_std::monitor::{
    CheckError, CheckSpec, FnCheck, HealthMonitor, MonitorEvent, RecoveryAction, RecoveryRule,
    Thresholds,
};

const RUNS: u64 = 60;

/// What the docs give: the attempts as (ms since start, attempt number),
/// the episodes begun, and when the next attempt is due if an episode is
/// still running at the end. Runs at every whole second; healthy after
/// one pass (and a pass from the start), so an episode ends at the first
/// pass after it began.
fn model(
    script: &[bool],
    after: u32,
    cooldown_ms: u64,
    factor: u64,
    cap_ms: u64,
) -> (Vec<(u64, u32)>, u64, Option<u64>) {
    let delay = |attempt: u32| {
        let mut d = cooldown_ms;
        for _ in 1..attempt {
            if d >= cap_ms.max(cooldown_ms) {
                break;
            }
            d = d.saturating_mul(factor);
        }
        d.min(cap_ms.max(cooldown_ms))
    };
    let end_ms = (RUNS - 1) * 1_000 + 500; // the test looks until then
    let mut attempts = Vec::new();
    let (mut episodes, mut due) = (0, None);
    let mut streak = 0;
    let mut run = 0_usize;
    while run < script.len() {
        if script[run] {
            streak = 0;
            run += 1;
            continue;
        }
        streak += 1;
        if streak < after {
            run += 1;
            continue;
        }
        // An episode starts at this failing run.
        episodes += 1;
        let mut at = run as u64 * 1_000;
        let mut attempt = 1;
        let healthy_at = script[run..]
            .iter()
            .position(|&pass| pass)
            .map(|i| (run + i) as u64 * 1_000);
        loop {
            if at > end_ms || healthy_at.is_some_and(|h| h < at) {
                break;
            }
            attempts.push((at, attempt));
            at += delay(attempt);
            attempt += 1;
        }
        // The episode is over at the first pass; the streak restarts.
        let Some(h) = healthy_at else {
            due = Some(at);
            break;
        };
        run = usize::try_from(h / 1_000).unwrap() + 1;
        streak = 0;
    }
    (attempts, episodes, due)
}

/// 150 random histories of 60 runs (seeded: deterministic), each with a
/// random `after_failures`, cooldown, factor and cap (waits a millisecond
/// past whole seconds, so that no wait ends at the instant of a run): the
/// attempts (instant and number), the episodes and the next attempt due
/// at the end are the model's. The attempts were sound; the next attempt
/// due was not before 5f5954f (an episode whose check was healthy again
/// still had one due: `(9, Some(60001))` for `(9, None)` in case 2).
#[tokio::test(start_paused = true)]
async fn the_recovery_schedule_follows_its_documented_model() {
    let mut rng = fastrand::Rng::with_seed(0x5EED_0F4E_C07E_4700);
    for case in 0..150 {
        let fail_rate = rng.u32(1..10);
        let script: Vec<bool> = (0..RUNS).map(|_| rng.u32(0..10) >= fail_rate).collect();
        let after = rng.u32(1..4);
        // A millisecond past whole seconds: no wait ends at a run's instant.
        let cooldown_ms = rng.u64(1..4) * 1_000 + 1;
        let factor = rng.u64(1..4);
        let cap_ms = rng.u64(1..20) * 1_000 + 1;
        let next = Arc::new(AtomicUsize::new(0));
        let script_run = script.clone();
        let check = FnCheck::new(move || {
            let i = next.fetch_add(1, SeqCst);
            let pass = script_run.get(i).copied().unwrap_or(true);
            async move {
                if pass {
                    Ok(None)
                } else {
                    Err(CheckError::other("down"))
                }
            }
        });
        let rule = RecoveryRule::new(
            after,
            RecoveryAction::new("fix", || async { Ok::<(), String>(()) }),
        )
        .cooldown(Duration::from_millis(cooldown_ms))
        .backoff(
            u32::try_from(factor).unwrap(),
            Duration::from_millis(cap_ms),
        );
        let monitor = HealthMonitor::new()
            .event_capacity(4_096)
            .check(
                CheckSpec::new("c", check)
                    .interval(Duration::from_secs(1))
                    .thresholds(Thresholds::new().healthy_after(1).unhealthy_after(1))
                    .recovery(rule),
            )
            .spawn();
        let mut events = monitor.subscribe();
        tokio::time::sleep(Duration::from_millis((RUNS - 1) * 1_000 + 500)).await;
        let seen: Vec<(u64, u32)> = std::iter::from_fn(|| events.try_recv())
            .filter_map(|e| match e {
                MonitorEvent::RecoveryAttempted { at, attempt, .. } => {
                    Some((u64::try_from(at.as_millis()).unwrap(), attempt))
                }
                _ => None,
            })
            .collect();
        let (expected, episodes, due) = model(&script, after, cooldown_ms, factor, cap_ms);
        let shown: String = script.iter().map(|&p| if p { 'p' } else { 'f' }).collect();
        assert_eq!(
            seen, expected,
            "case {case}: {shown}, after {after}, cooldown {cooldown_ms} ms ×{factor} up to {cap_ms} ms"
        );
        assert_eq!(events.missed(), 0);
        let recovery = monitor.status().checks[0].recovery.clone().unwrap();
        let next = recovery
            .next_attempt_at
            .map(|d| u64::try_from(d.as_millis()).unwrap());
        assert_eq!(
            (recovery.episodes, next),
            (episodes, due),
            "case {case}: {shown}, episodes and the next attempt due"
        );
        monitor.stop().await;
    }
}
