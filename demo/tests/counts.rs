//! The table's counts add up: every request either reached for the
//! upstream (one first attempt, then its retries) or was short-circuited
//! (answered without a single call, from the cache or as an error), as
//! the legend under the table says.

use std::sync::Arc;
use std::time::Duration;

use fusebox_demo::run::{self, Mode, Settings};
use fusebox_demo::scenario::Scenario;
use fusebox_std::{Registry, TokioClock};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_circuited_requests_made_no_call() {
    let settings = Settings {
        seed: 7,
        duration: Duration::from_secs(4),
        clients: 200,
        tty: false,
        rate: None,
    };
    let scenario = Arc::new(Scenario::new(settings.seed, settings.duration));
    let clock = TokioClock::new();
    let registry = Arc::new(Registry::builder().clock(clock).build());
    let r = run::run(Mode::Protected, settings, &scenario, &registry, clock, None)
        .await
        .expect("the run plays");
    assert!(r.refused_locally > 0 && r.retries > 0, "{r:?}");
    assert_eq!(
        r.attempts,
        r.requests - r.refused_locally + r.retries,
        "attempts = requests that made a call + retries: {r:?}"
    );
}
