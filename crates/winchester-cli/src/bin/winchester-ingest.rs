//! `winchester-ingest`: consumes OpenStack notifications from RabbitMQ (the
//! `amqp_ingest` section of winchester.yaml) until SIGTERM/SIGINT.
use clap::Parser;
use std::process::ExitCode;
use winchester_cli::amqp_ingest::{run, IngestOpts};
use winchester_cli::common::{init_tracing, report};

#[tokio::main]
async fn main() -> ExitCode {
    let opts = IngestOpts::parse();
    init_tracing("info");
    match run(&opts).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => report(&e),
    }
}
