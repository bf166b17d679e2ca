//! The watched connection's flags and probe, without a server.

use super::*;

fn standalone(silence: Duration) -> Watched<ConnectionManager> {
    // Nothing listens on port 1; the manager is lazy, so nothing is
    // dialled until a command runs.
    let client = redis::Client::open("redis://127.0.0.1:1").unwrap();
    Watched::new((client, ConnectionManagerConfig::new()), silence).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_silence_is_suspected_only_once_it_has_lasted() {
    let conn = standalone(Duration::from_secs(1));
    let suspect = || conn.0.suspect.load(Ordering::Relaxed);
    conn.0.given_up();
    tokio::time::advance(Duration::from_millis(999)).await;
    conn.0.given_up();
    assert!(!suspect(), "silent for 999 ms");
    tokio::time::advance(Duration::from_millis(1)).await;
    conn.0.given_up();
    assert!(suspect(), "silent for 1 s");
    conn.0.suspect.store(false, Ordering::Relaxed);
    // A new silence starts with the next command given up on.
    conn.0.given_up();
    assert!(!suspect());
    // An answer ends a silence.
    tokio::time::advance(Duration::from_millis(900)).await;
    conn.0.answered();
    tokio::time::advance(Duration::from_millis(900)).await;
    conn.0.given_up();
    tokio::time::advance(Duration::from_millis(900)).await;
    conn.0.given_up();
    assert!(!suspect(), "answered 1.8 s ago, silent for 0.9 s");
    assert_eq!(
        conn.replaced(),
        0,
        "flags only: no replacement outside a probe"
    );
}

#[tokio::test(start_paused = true)]
async fn a_dropped_command_counts_as_given_up() {
    let conn = standalone(Duration::from_secs(1));
    {
        let _watch: Watch<'_, ConnectionManager> = Watch {
            shared: &conn.0,
            done: false,
        };
    }
    let since = conn.0.unanswered_since.lock().unwrap().since;
    assert_eq!(since, Some(Instant::now()));
    Watch {
        shared: &conn.0,
        done: false,
    }
    .end::<()>(&Ok(()));
    assert_eq!(conn.0.unanswered_since.lock().unwrap().since, None);
}

/// On a Cluster an answer may come from a node other than the silent
/// one: it does not end the silence (found by this module's Cluster
/// test: the other nodes' answers kept a silent node's socket in use).
#[tokio::test(start_paused = true)]
async fn on_a_cluster_only_a_probe_ends_a_silence() {
    let client = ClusterClient::new(vec!["redis://127.0.0.1:1"]).unwrap();
    let conn: Watched<ClusterConnection> =
        Watched::new((client, ClusterConfig::new()), Duration::from_secs(1)).unwrap();
    conn.0.given_up();
    Watch {
        shared: &conn.0,
        done: false,
    }
    .end::<()>(&Ok(()));
    assert_eq!(
        conn.0.unanswered_since.lock().unwrap().since,
        Some(Instant::now()),
        "an answer from some node"
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    conn.0.given_up();
    assert!(conn.0.suspect.load(Ordering::Relaxed));
}

/// Dropping a command outside any runtime once the silence has lasted
/// touches flags only (found by a hostile review: the replacement ran
/// in the drop, and its `tokio::spawn` panicked there).
#[test]
fn a_command_dropped_outside_a_runtime_never_panics() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let conn = rt.block_on(async { standalone(Duration::from_millis(1)) });
    for _ in 0..3 {
        conn.0.given_up();
        std::thread::sleep(Duration::from_millis(2));
    }
    drop(Watch {
        shared: &conn.0,
        done: false,
    });
    assert!(conn.0.suspect.load(Ordering::Relaxed));
    assert_eq!(conn.replaced(), 0);
}

/// A probe cut by its runtime's shutdown lets the next silence probe
/// again (found by a hostile review: probing stayed on for good).
#[test]
fn a_probe_cut_by_a_runtime_shutdown_does_not_stop_probing() {
    let first = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let conn = first.block_on(async { standalone(Duration::from_millis(50)) });
    first.block_on(async {
        conn.0.suspect.store(true, Ordering::Relaxed);
        let _ = conn.connection(); // spawns the probe, never polled
    });
    drop(first);
    assert!(!conn.0.probing.load(Ordering::Relaxed), "probing stuck");
}

/// Each probe in a row whose fresh connection did not answer doubles the
/// silence the next probe waits for, up to 16 connect timeouts, without
/// overflowing on any `Duration` (found by a hostile review: a node hung
/// for good was redialled every two silences).
#[tokio::test(start_paused = true)]
async fn failed_trials_back_the_probes_off() {
    let conn = standalone(Duration::from_secs(1));
    let suspect_after = |failed: u32| {
        conn.0.failed.store(failed, Ordering::Relaxed);
        conn.0.silence_after_failures()
    };
    assert_eq!(suspect_after(0), Duration::from_secs(1));
    assert_eq!(suspect_after(1), Duration::from_secs(2));
    assert_eq!(suspect_after(4), Duration::from_secs(16));
    assert_eq!(suspect_after(40), Duration::from_secs(16), "capped");
    conn.0.failed.store(2, Ordering::Relaxed);
    conn.0.given_up();
    tokio::time::advance(Duration::from_millis(3_999)).await;
    conn.0.given_up();
    assert!(
        !conn.0.suspect.load(Ordering::Relaxed),
        "silent 3.999 s of 4"
    );
    tokio::time::advance(Duration::from_millis(1)).await;
    conn.0.given_up();
    assert!(conn.0.suspect.load(Ordering::Relaxed), "silent 4 s");
    let huge = standalone(Duration::MAX);
    huge.0.failed.store(4, Ordering::Relaxed);
    assert_eq!(huge.0.silence_after_failures(), Duration::MAX);
}

/// Review (session 15): the backoff is for "probes in a row whose fresh
/// connection did not answer either". A standalone server hung for a
/// while (its new connections hang too: four failed trials, 16 connect
/// timeouts) that then answers again on the old connection ends that
/// row: its commands are answered. But `failed` is reset only by a
/// probe, and an answered command ends the silence before any probe
/// runs: the backoff stays at 16x for good, so the next silence (a NAT
/// entry expiring hours later) fails commands for 16 connect timeouts
/// before a probe, instead of one.
#[tokio::test(start_paused = true)]
async fn an_answer_on_the_old_connection_ends_the_backoff() {
    let conn = standalone(Duration::from_secs(1));
    conn.0.failed.store(MAX_BACKOFF_SHIFT, Ordering::Relaxed);
    // The server is back: a command on the old connection is answered.
    Watch {
        shared: &conn.0,
        done: false,
    }
    .end::<()>(&Ok(()));
    // Much later, a new silence.
    tokio::time::advance(Duration::from_secs(3_600)).await;
    conn.0.given_up();
    tokio::time::advance(Duration::from_secs(1)).await;
    conn.0.given_up();
    assert!(
        conn.0.suspect.load(Ordering::Relaxed),
        "silent for one connect timeout after the server answered again \
         (backoff still {}x)",
        1u32 << conn.0.failed.load(Ordering::Relaxed)
    );
}

/// A refusal found by a look that an answer overtook is not held: the
/// answer cleared what was held before it, and the credentials work (found
/// by a review: held, it reported the next silence as refused credentials
/// until another answer or probe).
#[tokio::test(start_paused = true)]
async fn a_refusal_an_answer_overtook_is_not_held() {
    let conn = standalone(Duration::from_secs(1));
    let answer = || {
        Watch {
            shared: &conn.0,
            done: false,
        }
        .end::<()>(&Ok(()));
    };
    let before = conn.0.answers();
    answer();
    conn.0.hold_refusal(wrongpass(), before);
    assert_eq!(
        conn.refusal(),
        None,
        "an answer came while it was looked for"
    );

    // With no answer meanwhile it is held, until the next answer.
    let before = conn.0.answers();
    conn.0.hold_refusal(wrongpass(), before);
    assert_eq!(conn.refusal(), Some(wrongpass()));
    answer();
    assert_eq!(conn.refusal(), None);
}

/// An answer clears a held refusal before a look can read the answer
/// count it added: the answer is stopped between its flag's swap and the
/// refusal's lock (held here), and the silence lock is then still its.
/// Found by a hostile review: an answer counted under the silence lock but
/// cleared after leaving it, so a look could read the new count there, find
/// the credentials refused and hold that, and the older answer's clear
/// then wiped the newer refusal (the next silences reported as timeouts
/// until another probe; seen once in 2 000 rounds of the race below).
#[test]
fn an_answer_clears_a_refusal_before_a_look_can_read_its_count() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let _entered = runtime.enter();
    let conn = standalone(Duration::from_secs(1));
    conn.0.hold_refusal(wrongpass(), conn.0.answers());
    let refusal = conn.0.refusal.lock().unwrap();
    let readable = std::thread::scope(|s| {
        let answer = s.spawn(|| {
            Watch {
                shared: &conn.0,
                done: false,
            }
            .end::<()>(&Ok(()));
        });
        // The answer has swapped the flag and waits for the refusal's lock.
        while conn.0.refused.load(Ordering::Relaxed) {
            std::thread::yield_now();
        }
        let readable = conn.0.unanswered_since.try_lock().is_ok();
        drop(refusal);
        answer.join().unwrap();
        readable
    });
    assert!(!readable, "a look could read the count before the clear");
    assert_eq!(conn.refusal(), None);
}

/// Sound, kept as a test: a look and an answer racing on two threads,
/// 20 000 times. The refusal is held afterwards exactly when the answer
/// came before the look read the count (the refusal is then the newer
/// news); an answer after that read either stops the hold (an answer
/// before the check) or clears it. Both take the silence lock, then the
/// refusal's: no deadlock.
#[test]
fn a_look_and_an_answer_racing_leave_the_refusal_right() {
    const ROUNDS: usize = 20_000;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let _entered = runtime.enter();
    let conn = standalone(Duration::from_secs(1));
    let barrier = std::sync::Barrier::new(2);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| {
            for _ in 0..ROUNDS {
                barrier.wait();
                let before = conn.0.answers();
                conn.0.hold_refusal(wrongpass(), before);
                tx.send(before).unwrap();
                barrier.wait();
            }
        });
        for round in 0..ROUNDS {
            let initial = conn.0.answers();
            barrier.wait();
            Watch {
                shared: &conn.0,
                done: false,
            }
            .end::<()>(&Ok(()));
            let before = rx.recv().unwrap();
            assert_eq!(
                conn.refusal().is_some(),
                before == initial.wrapping_add(1),
                "round {round}: the look read {before}, {initial} before the answer"
            );
            conn.0.clear_refusal();
            barrier.wait();
        }
    });
}

/// The refusal the tests hold: refused credentials.
fn wrongpass() -> crate::backend::BackendError {
    crate::backend::BackendError::Auth("WRONGPASS".to_owned())
}
