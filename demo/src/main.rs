//! `storm`: the fusebox demo (see the library's docs).

#![forbid(unsafe_code)]

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use fusebox_demo::cli::Args;
use fusebox_std::{Registry, TokioClock};

/// Ends the process when stdout cannot be written: quietly when its
/// reader goes away (`storm | head`), with a one-line error otherwise
/// (`storm > /dev/full`: no space left). Rust ignores `SIGPIPE`, so
/// `println!` panics on a closed pipe or a failed write (found by hostile
/// reviews: a panic and a backtrace, exit 101). Other panics report as
/// usual.
fn quiet_on_closed_stdout() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if let Some(cause) = message.strip_prefix("failed printing to stdout: ") {
            if cause.contains("Broken pipe") {
                std::process::exit(0);
            }
            let _ = writeln!(std::io::stderr(), "storm: cannot write to stdout: {cause}");
            std::process::exit(1);
        }
        report(info);
    }));
}

/// The fewest file descriptors the storm starts with: tokio's runtime and
/// signal driver, the listeners, a few calls. Under it, building the
/// runtime failed (`ulimit -n 8`) or tokio's signal driver panicked
/// (`ulimit -n 6`), both with a panic and exit 101 (found by a hostile
/// check).
const MIN_DESCRIPTORS: u64 = 16;

fn main() -> ExitCode {
    quiet_on_closed_stdout();
    let args = Args::from_process();
    if let Err(e) = enough_descriptors() {
        eprintln!("storm: {e}");
        return ExitCode::FAILURE;
    }
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(run(args)),
        Err(e) => {
            eprintln!("storm: cannot start tokio's runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Refuses an open-file limit too low for the storm to start with.
#[cfg(unix)]
fn enough_descriptors() -> Result<(), String> {
    match rlimit::getrlimit(rlimit::Resource::NOFILE) {
        Ok((soft, _)) if soft < MIN_DESCRIPTORS => Err(format!(
            "the open-file limit (`ulimit -n`) is {soft}: the storm needs {MIN_DESCRIPTORS} \
             to start, and 2 per client plus 64 to make all its calls; raise it"
        )),
        _ => Ok(()),
    }
}

#[cfg(not(unix))]
fn enough_descriptors() -> Result<(), String> {
    Ok(())
}

/// The storm, with the dashboard when asked for.
async fn run(args: Args) -> ExitCode {
    let started = Instant::now();
    // One clock for the registry and every piece built beside it.
    let clock = TokioClock::new();
    let registry = Arc::new(Registry::builder().clock(clock).build());
    let dashboard = match args.serve {
        Some(addr) => match fusebox_demo::serve::dashboard(addr, Arc::clone(&registry)).await {
            Ok(url) => {
                println!("dashboard: {url}");
                true
            }
            Err(e) => {
                eprintln!("storm: cannot serve the dashboard on {addr}: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => false,
    };
    match fusebox_demo::storm(&args, &registry, clock).await {
        Ok(_) => {
            println!("done in {:.1} s", started.elapsed().as_secs_f64());
            if dashboard {
                println!("the dashboard stays up; Ctrl-C to stop");
                let _ = tokio::signal::ctrl_c().await;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("storm: {e}");
            ExitCode::FAILURE
        }
    }
}
