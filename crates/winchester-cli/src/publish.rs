//! `winchester publish`: replay JSON lines of raw notifications into an AMQP
//! exchange (the winchester-amqp crate's publisher).

use crate::common::ConfigArgs;
use anyhow::Context;
use std::process::ExitCode;
use winchester_amqp::publish::{publish_lines, PublishTarget};

/// `winchester publish` flags. (The `[default: ...]` notes are `--help`
/// text, not links.)
#[allow(rustdoc::broken_intra_doc_links)]
#[derive(Debug, Clone, clap::Args)]
pub struct PublishArgs {
    /// Input file, or - for standard input.
    pub file: String,
    /// Broker URL [default: the config's amqp_ingest.url, else amqp://guest:guest@127.0.0.1:5672/%2f].
    #[arg(long = "amqp-url", env = "WINCHESTER_AMQP_URL")]
    pub amqp_url: Option<String>,
    /// Exchange to publish to (declared if absent).
    #[arg(long, default_value = "nova")]
    pub exchange: String,
    /// Exchange type when declaring it [default: the config's amqp_ingest queue on that exchange, else topic].
    #[arg(long)]
    pub exchange_type: Option<String>,
    /// Declare the exchange durable (true/false) [default: the config's amqp_ingest queue on that exchange, else true].
    #[arg(long)]
    pub durable: Option<bool>,
    /// Routing key of every message.
    #[arg(long, default_value = "notifications.info")]
    pub routing_key: String,
}

/// Where to publish: the flags, else the config's `amqp_ingest` section (when
/// there is a config), else the defaults.
fn target(config: &ConfigArgs, args: PublishArgs) -> anyhow::Result<PublishTarget> {
    let amqp = if config.config.exists() {
        Some(winchester_core::WinchesterConfig::load(&config.config).map_err(|e| anyhow::anyhow!("{e}"))?.0.amqp_ingest)
    } else {
        None
    };
    let bound = amqp.as_ref().and_then(|a| a.queues.iter().find(|q| q.exchange == args.exchange));
    Ok(PublishTarget {
        url: args.amqp_url.or(amqp.as_ref().map(|a| a.url.clone())).unwrap_or_else(|| PublishTarget::default().url),
        exchange_type: args.exchange_type.or(bound.map(|q| q.exchange_type.clone())).unwrap_or_else(|| "topic".into()),
        durable: args.durable.or(bound.map(|q| q.durable)).unwrap_or(true),
        exchange: args.exchange,
        routing_key: args.routing_key,
    })
}

/// `winchester publish`: prints the report; exit 2 if a line was rejected or
/// not routed.
pub async fn command(config: &ConfigArgs, args: PublishArgs) -> anyhow::Result<ExitCode> {
    let file = args.file.clone();
    let target = target(config, args)?;
    let report = if file == "-" {
        publish_lines(target, tokio::io::BufReader::new(tokio::io::stdin())).await?
    } else {
        let f = tokio::fs::File::open(&file).await.with_context(|| format!("opening {file}"))?;
        publish_lines(target, tokio::io::BufReader::new(f)).await?
    };
    print!("{}", report.render());
    Ok(if report.is_clean() { ExitCode::SUCCESS } else { ExitCode::from(2) })
}
