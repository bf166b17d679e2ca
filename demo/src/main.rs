//! `storm`: the fusebox demo (see the library's docs).

#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use fusebox_demo::cli::Args;
use fusebox_std::{Registry, TokioClock};

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let started = Instant::now();
    // One clock for the registry and every piece built beside it.
    let clock = TokioClock::new();
    let registry = Arc::new(Registry::builder().clock(clock).build());
    // The seam for a dashboard: a server given `Arc::clone(&registry)`,
    // spawned here, shows the storm's health and Prometheus figures live.
    match fusebox_demo::storm(&args, &registry, clock).await {
        Ok(_) => {
            println!("done in {:.1} s", started.elapsed().as_secs_f64());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("storm: {e}");
            ExitCode::FAILURE
        }
    }
}
