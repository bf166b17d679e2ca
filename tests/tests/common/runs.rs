//! Tracked runs ending on another thread while a test reads reports or
//! scrapes: the set-up of the tracker's and the exposition's read-order
//! tests.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use fusebox_std::Tracker;

/// How the runs of [`in_background`] go.
pub struct Runs {
    /// How many.
    pub count: u64,
    /// Marked failed.
    pub failed: bool,
    /// Run `i`'s length (from 0), on a paused clock.
    pub length: Box<dyn Fn(u64) -> Duration + Send>,
    /// Real time slept after each run (to let a few reads in between).
    pub pause: Duration,
}

/// Runs `runs` operations `operation` of `tracker` on a thread of its own
/// (a paused current-thread runtime, each run as long as `runs.length`
/// says) and sets the flag returned once they have all ended. Read
/// reports or scrapes while it is clear, then join the thread.
pub fn in_background(
    tracker: &Tracker,
    operation: &'static str,
    runs: Runs,
) -> (JoinHandle<()>, Arc<AtomicBool>) {
    let done = Arc::new(AtomicBool::new(false));
    let (tracker, ended) = (tracker.clone(), Arc::clone(&done));
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            for i in 0..runs.count {
                let mut op = tracker.track_operation(operation);
                if runs.failed {
                    op.fail();
                }
                tokio::time::advance((runs.length)(i)).await;
                drop(op);
                if !runs.pause.is_zero() {
                    std::thread::sleep(runs.pause);
                }
            }
        });
        ended.store(true, Ordering::Relaxed);
    });
    (thread, done)
}
