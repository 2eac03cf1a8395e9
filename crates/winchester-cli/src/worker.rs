//! `pipeline-worker`: fire and expire ready streams.

use crate::common::{load_config, trigger_manager, ConfigArgs, Run};
use anyhow::Context;
use clap::Parser;
use winchester::pipeline::{HandlerRegistry, PipelineRunner};
use winchester::{Worker, WorkerOptions};

/// Fire and expire ready streams through their pipelines.
#[derive(Debug, Parser)]
#[command(name = "pipeline-worker", version)]
pub struct WorkerOpts {
    #[command(flatten)]
    /// Config and database flags.
    pub config: ConfigArgs,
    /// Process name in logs (and of the log file with --daemon).
    #[arg(short = 'n', long = "name", default_value = "pipeline_worker")]
    pub name: String,
    /// Run in the background, logging to NAME.log; prints the pid and returns.
    #[arg(short = 'd', long = "daemon")]
    pub daemon: bool,
    /// Process ready streams until none is left, then exit (for scripts and tests).
    #[arg(long)]
    pub once: bool,
    /// Replay: "now" is the latest event timestamp in the database (read before
    /// each pass), so archived events fire and expire as they did live.
    #[arg(long)]
    pub event_time: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics (overrides `metrics_listen`).
    #[arg(long = "metrics-listen", value_name = "ADDR")]
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// Starts the same program in the background, detached, without `--daemon`.
pub fn daemonize(opts: &WorkerOpts) -> anyhow::Result<u32> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().context("finding this program")?;
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "-d" && a != "--daemon").collect();
    let log_path = format!("{}.log", opts.name);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {log_path}"))?;
    let child = std::process::Command::new(exe)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("starting the background worker")?;
    Ok(child.id())
}

/// Runs the worker until SIGINT/SIGTERM (or, with `--once`, until idle).
pub async fn run(opts: &WorkerOpts, registry: HandlerRegistry) -> anyhow::Result<()> {
    let cfg = load_config(&opts.config, &registry)?;
    let metrics = crate::common::start_metrics("pipeline-worker", opts.metrics_listen, &cfg.main)?;
    let tm = trigger_manager(&cfg, &opts.config, 4, Run::Daemon).await?;
    if metrics {
        crate::common::start_stream_gauge(tm.storage());
    }
    crate::common::record_versions(&tm, &cfg).await?;
    let runner = PipelineRunner::new(registry.clone(), cfg.clone());
    let mut worker = Worker::new(tm.clone(), runner, WorkerOptions::from_config(&cfg.main));
    if opts.event_time {
        worker = worker.with_event_clock(std::sync::Arc::new(winchester::StoredEventClock::new(tm.storage().clone())));
        tracing::info!("Event time: now is the latest event timestamp in the database.");
    }
    let worker = std::sync::Arc::new(worker);
    let reloading = worker.clone();
    crate::common::reload_on_hangup(opts.config.clone(), Some(registry), move |cfg, _| {
        let worker = reloading.clone();
        async move { Ok(worker.reload(cfg).await?) }
    })?;
    tracing::info!(name = %opts.name, "Pipeline worker started.");
    if opts.once {
        while worker.run_once().await? > 0 {}
        worker.close().await;
    } else {
        worker.run(shutdown_signal()).await?;
    }
    let s = worker.stats();
    tracing::info!(
        fired = s.fired,
        expired = s.expired,
        errors = s.errors,
        lock_conflicts = s.lock_conflicts,
        "Pipeline worker stopped."
    );
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
    tracing::info!("Shutdown requested; finishing the stream in hand.");
}
