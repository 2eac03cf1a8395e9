//! `winchester-ingest`: the AMQP ingest daemon (see the `winchester-amqp` crate
//! for what it guarantees, and docs/ingest.md).

use crate::common::{load_ingest_config, redact, trigger_manager, ConfigArgs, Run};
use anyhow::anyhow;
use clap::Parser;
use winchester_amqp::AmqpIngest;

/// Consume OpenStack notifications from RabbitMQ into the database.
#[derive(Debug, Parser)]
#[command(name = "winchester-ingest", version)]
pub struct IngestOpts {
    #[command(flatten)]
    /// Config and database flags.
    pub config: ConfigArgs,
    /// Broker URL; overrides `amqp_ingest.url`.
    #[arg(long = "amqp-url", env = "WINCHESTER_AMQP_URL")]
    pub amqp_url: Option<String>,
    /// Serve Prometheus metrics at http://ADDR/metrics (overrides `metrics_listen`).
    #[arg(long = "metrics-listen", value_name = "ADDR")]
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// Runs the daemon until SIGINT/SIGTERM.
pub async fn run(opts: &IngestOpts) -> anyhow::Result<()> {
    let cfg = load_ingest_config(&opts.config)?;
    if cfg.distiller_file.is_none() {
        return Err(anyhow!(
            "{}: winchester-ingest needs distiller_config (an event_definitions.yaml) to turn notifications into events",
            opts.config.config.display()
        ));
    }
    let mut amqp = cfg.main.amqp_ingest.clone();
    if let Some(url) = &opts.amqp_url {
        amqp.url = url.clone();
    }
    let metrics = crate::common::start_metrics("winchester-ingest", opts.metrics_listen, &cfg.main)?;
    let tm = trigger_manager(&cfg, &opts.config, 4, Run::Daemon).await?.with_source("amqp");
    if metrics {
        crate::common::start_stream_gauge(tm.storage());
    }
    crate::common::record_versions(&tm, &cfg).await?;
    let reloading = tm.clone();
    crate::common::reload_on_hangup(opts.config.clone(), None, move |cfg, distiller| {
        let tm = reloading.clone();
        async move {
            if distiller.is_none() {
                anyhow::bail!("winchester-ingest needs distiller_config; the new configuration has none");
            }
            crate::common::record_versions(&tm, &cfg).await?;
            // The next batch is matched with the new definitions.
            tm.set_definitions(std::sync::Arc::new(cfg.triggers), distiller);
            Ok(())
        }
    })?;
    tracing::info!(broker = %redact(&amqp.url), batch_size = amqp.batch_size, prefetch = amqp.prefetch, "winchester-ingest started.");
    let daemon = AmqpIngest::new(amqp, tm, cfg.main.statistics_period)?;
    let stats = daemon.run(crate::worker::shutdown_signal()).await?;
    tracing::info!(
        received = stats.received,
        saved = stats.saved,
        duplicates = stats.duplicates,
        dead_lettered = stats.dead_lettered,
        "winchester-ingest stopped."
    );
    Ok(())
}
