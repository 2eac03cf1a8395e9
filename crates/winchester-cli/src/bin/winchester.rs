//! `winchester`: check configuration, ingest events, operate streams. The
//! subcommands live in the library: [`winchester_cli::app`] dispatches them.
use clap::Parser;
use std::process::ExitCode;
use winchester_cli::app::{run, Opts};
use winchester_cli::common::{init_tracing, report};

#[tokio::main]
async fn main() -> ExitCode {
    let opts = Opts::parse();
    init_tracing(opts.log_filter());
    match run(opts).await {
        Ok(code) => code,
        Err(e) => report(&e),
    }
}
