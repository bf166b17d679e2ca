//! # fusebox-demo: the storm
//!
//! `cargo run --release -p fusebox-demo` starts a simulated flaky upstream
//! (a real HTTP server on `127.0.0.1:0` playing a scripted story: a
//! latency spike, an error burst, an outage and a slow recovery), then
//! sends hundreds of concurrent clients at it twice: unprotected (a naive
//! retry, as people write it), then through fusebox-std (a rate limit, a
//! circuit breaker, retries under a budget, a stale-on-error cache), and
//! prints what each run measured side by side.
//!
//! | module | what |
//! |---|---|
//! | [`cli`] | the command line |
//! | [`scenario`] | the upstream's story, a pure function of the seed |
//! | [`upstream`] | the HTTP server playing it and counting what reaches it |
//! | [`clients`] | the naive caller and the protected one |
//! | [`fleet`] | `--redis`: the connection, the shared breaker, what each storm did to it |
//! | [`run`] | one run: upstream, clients, live progress, results |
//! | [`progress`] | the live bar (terminal) or plain lines (pipe) |
//! | [`report`] | the side-by-side table and the verdict |
//!
//! [`storm`] takes the [`Registry`] the protected run builds its pieces
//! in: whoever calls it keeps an `Arc` of it and may serve the registry's
//! health and Prometheus figures while the storm runs.
//!
//! With `--redis URL` the protected clients' rate limit and circuit
//! breaker live in Redis: several storms started against the same Redis
//! (with the same limit) share both, and each prints what it took from the
//! limit and when, and what it did to the breaker and what the others did
//! to it. `--calm` keeps a storm's upstream healthy: next to a stormy
//! storm, its breaker still opens, without a single failure of its own.

#![forbid(unsafe_code)]

pub mod cli;
pub mod clients;
pub mod fleet;
pub mod progress;
pub mod report;
pub mod run;
pub mod scenario;
pub mod serve;
pub mod upstream;

use std::error::Error;
use std::io::IsTerminal;
use std::sync::Arc;

use fusebox_std::backend::redacted_url;
use fusebox_std::{Registry, TokioClock};

use cli::Args;
use fleet::SharedRedis;
use report::Comparison;
use run::{Mode, Settings};
use scenario::Scenario;

/// Plays the storm `args` describe, unprotected then protected, printing
/// the live progress, the table and the verdict to stdout; returns the
/// figures. The protected run's breaker, limiter, cache and the clients'
/// tracker are built in `registry`, whose clock must be `clock`.
///
/// # Errors
///
/// With `--redis`: a URL without a Redis scheme, or a Redis that cannot
/// be reached at the start (its message shows the URL redacted; one lost
/// during the runs is not an error: each process then decides alone). An
/// upstream that cannot bind, or a configuration error (a bug).
pub async fn storm(
    args: &Args,
    registry: &Arc<Registry>,
    clock: TokioClock,
) -> Result<Comparison, Box<dyn Error>> {
    let seed = args.seed.unwrap_or_else(|| fastrand::u64(..1_000_000));
    let settings = Settings {
        seed,
        duration: args.duration(),
        clients: args.clients,
        tty: std::io::stdout().is_terminal(),
        rate: args.rate_limit,
    };
    let redis = match &args.redis {
        None => None,
        Some(url) => Some(SharedRedis::connect(url).await?),
    };
    let scenario = Arc::new(if args.calm {
        Scenario::calm(settings.duration)
    } else {
        Scenario::new(seed, settings.duration)
    });
    println!(
        "storm: {} clients, {:.1} s per run, seed {seed} (replay with --seed {seed})",
        settings.clients,
        settings.duration.as_secs_f64()
    );
    let story: Vec<String> = scenario
        .phases()
        .iter()
        .map(|p| format!("{} {:.1}s", p.kind.label(), p.start.as_secs_f64()))
        .collect();
    let calm = if args.calm { " (calm: no storm)" } else { "" };
    println!("story: {}{calm}", story.join(" → "));
    let (rate, burst) = (settings.rate_limit(), settings.rate_burst());
    match &args.redis {
        None => println!("rate limit: {rate} calls/s (burst {burst}), in this process"),
        Some(url) => {
            println!(
                "rate limit: {rate} calls/s (burst {burst}), shared through {} by every storm using it",
                redacted_url(url)
            );
            println!(
                "breaker: `{}`, shared through the same Redis: a trip in any storm opens it in all",
                clients::BREAKER
            );
        }
    }
    println!();
    let redis = redis.as_ref();
    let unprotected = run::run(
        Mode::Unprotected,
        settings,
        &scenario,
        registry,
        clock,
        redis,
    )
    .await?;
    let protected = run::run(Mode::Protected, settings, &scenario, registry, clock, redis).await?;
    let comparison = Comparison {
        unprotected,
        protected,
    };
    print_results(&comparison, settings.clients);
    Ok(comparison)
}

/// The table, the verdict, the Redis lines and any warning, after both
/// runs.
fn print_results(comparison: &Comparison, clients: u32) {
    println!();
    println!("{}", report::table(comparison));
    println!("{}", report::LEGEND);
    println!();
    for line in report::verdict(comparison) {
        println!("{line}");
    }
    if let Some(shared) = &comparison.protected.shared {
        println!("{}", report::shared_line(shared));
    }
    if let Some(breaker) = &comparison.protected.fleet {
        println!("{}", fleet::fleet_line(breaker));
        if let Some(line) = fleet::fleet_verdict(breaker) {
            println!("{line}");
        }
    }
    if let Some(warning) = report::unanswered_warning(comparison, clients) {
        eprintln!("storm: warning: {warning}");
    }
}
