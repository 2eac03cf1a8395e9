//! `winchester-db`: database schema migrations.
use clap::Parser;
use std::process::ExitCode;
use winchester_cli::common::{init_tracing, report};
use winchester_cli::db::{run, DbOpts};

#[tokio::main]
async fn main() -> ExitCode {
    let opts = DbOpts::parse();
    init_tracing("warn");
    match run(&opts).await {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => report(&e),
    }
}
