//! `winchester serve`: the HTTP API (see the `winchester-api` crate and docs/api.md).

use crate::common::{check_ready, database_options, load_config, open_storage, start_stream_gauge, ConfigArgs, Run};
use anyhow::{anyhow, Context};
use std::net::SocketAddr;
use std::sync::Arc;
use winchester::pipeline::HandlerRegistry;
use winchester::TriggerManager;
use winchester_api::{ApiState, ReadyCheck};
use winchester_backends::ReadReplicaOptions;
use winchester_core::{Clock, SystemClock};

/// `winchester serve` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on [default: api.listen, else 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Allow a non-loopback address without a token (anyone who can reach it may retry and purge streams).
    #[arg(long)]
    pub insecure: bool,
}

/// The token from `api.token` or `api.token_file`.
fn token(api: &winchester_core::api_config::ApiConfig) -> anyhow::Result<Option<String>> {
    if let Some(t) = &api.token {
        return Ok(Some(t.clone()));
    }
    let Some(file) = &api.token_file else { return Ok(None) };
    let text = std::fs::read_to_string(file).with_context(|| format!("api.token_file: reading {}", file.display()))?;
    let t = text.trim();
    if t.is_empty() {
        return Err(anyhow!("api.token_file: {} is empty", file.display()));
    }
    Ok(Some(t.to_string()))
}

/// `winchester serve`: [`run`], exit 0 once stopped.
pub async fn command(
    config: &ConfigArgs,
    registry: &HandlerRegistry,
    args: &ServeArgs,
) -> anyhow::Result<std::process::ExitCode> {
    run(args, config, registry).await?;
    Ok(std::process::ExitCode::SUCCESS)
}

/// Serves until SIGINT/SIGTERM.
pub async fn run(args: &ServeArgs, config: &ConfigArgs, registry: &HandlerRegistry) -> anyhow::Result<()> {
    let cfg = load_config(config, registry)?;
    let api = &cfg.main.api;
    let listen = args.listen.unwrap_or(api.listen);
    let token = token(api)?;
    if !listen.ip().is_loopback() && token.is_none() && !args.insecure {
        return Err(anyhow!(
            "refusing to listen on {listen} without a token: set api.token or api.token_file, or pass --insecure"
        ));
    }
    let db = database_options(&cfg.main, config)?;
    winchester::metrics::install("serve")?;
    let storage = open_storage(&db, 8, config.database_wait(Run::Daemon)).await?;
    start_stream_gauge(&storage);
    let primary_db = db.clone();
    let ready: ReadyCheck = Arc::new(move || {
        let db = db.clone();
        Box::pin(async move { check_ready(&db).await })
    });
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    let bound = listener.local_addr()?;
    // POST /v1/events: events are matched with the configured triggers
    // (whose versions are recorded, as every ingester does) and raw
    // notifications distilled with the configured definitions.
    let triggers = Arc::new(cfg.triggers.clone());
    let mut manager = TriggerManager::new(storage.clone(), triggers.clone(), Arc::new(SystemClock) as Arc<dyn Clock>)
        .with_source("http");
    if let Some(d) = crate::common::load_distiller(&cfg)? {
        manager = manager.with_distiller(d);
    }
    if !api.read_only {
        crate::common::record_versions(&manager, &cfg).await?;
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let primary = storage.clone();
    let mut state = ApiState::new(storage, triggers, token.clone(), api.read_only, ready, stop_rx).with_ingest(
        manager.clone(),
        api.ingest_max_body_bytes,
        api.ingest_queue_limit,
    );
    if let Some(read_url) = &cfg.main.read_url {
        let replica = ReadReplicaOptions { url: read_url.clone(), max_lag: cfg.main.max_read_lag };
        let router = winchester_backends::read_router(&primary_db, primary, &replica, 8)?;
        // Where reads go is known (and logged) before the first request.
        router.probe().await;
        winchester::metrics::spawn_replica_gauge(&router);
        state = state.with_replica(router);
    }
    let reloading = state.clone();
    let read_only = api.read_only;
    crate::common::reload_on_hangup(config.clone(), Some(registry.clone()), move |cfg, distiller| {
        let state = reloading.clone();
        async move {
            if !read_only {
                crate::common::record_versions(&state.ingest.manager, &cfg).await?;
            }
            state.set_definitions(Arc::new(cfg.triggers), distiller);
            Ok(())
        }
    })?;
    tracing::info!(address = %bound, read_only = api.read_only, token = token.is_some(), "Serving the API.");
    // Tests and scripts read the bound address (with --listen 127.0.0.1:0) from this line.
    println!("listening on http://{bound}");
    winchester_api::serve(listener, state, stop_tx, crate::worker::shutdown_signal()).await?;
    tracing::info!("API stopped.");
    Ok(())
}
