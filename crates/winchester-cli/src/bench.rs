//! `winchester bench`: the winchester-bench crate's measurements.

use crate::common::ConfigArgs;
use std::process::ExitCode;

/// `winchester bench`: runs the measurements and prints the figures;
/// `--database-url` is the fallback admin URL.
pub async fn command(config: &ConfigArgs, args: &winchester_bench::BenchOpts) -> anyhow::Result<ExitCode> {
    print!("{}", winchester_bench::run(args, config.database_url.clone()).await?);
    Ok(ExitCode::SUCCESS)
}
