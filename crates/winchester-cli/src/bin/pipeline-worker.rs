//! `pipeline-worker`: fires and expires ready streams.
use clap::Parser;
use std::process::ExitCode;
use winchester_cli::common::{init_tracing, report};
use winchester_cli::worker::{daemonize, run, WorkerOpts};

#[tokio::main]
async fn main() -> ExitCode {
    let opts = WorkerOpts::parse();
    init_tracing("info");
    if opts.daemon {
        return match daemonize(&opts) {
            Ok(pid) => {
                println!("{pid}");
                ExitCode::SUCCESS
            }
            Err(e) => report(&e),
        };
    }
    match run(&opts, winchester_cli::common::registry()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => report(&e),
    }
}
