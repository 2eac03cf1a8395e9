//! Shared flags, config loading, database connection and error reporting.

use anyhow::anyhow;
use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;
use winchester::pipeline::{HandlerRegistry, PipelineRunner};
use winchester::TriggerManager;
use winchester_core::distiller::Distiller;
use winchester_core::{Clock, LoadedConfig, SystemClock};

/// Flags every program takes.
#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// The winchester.yaml to use.
    #[arg(short = 'c', long = "config", env = "WINCHESTER_CONFIG", default_value = "winchester.yaml", global = true)]
    pub config: PathBuf,
    /// Database URL; overrides `database.url` in the config.
    #[arg(long = "database-url", env = "DATABASE_URL", global = true)]
    pub database_url: Option<String>,
    /// How long to wait at start while the database cannot be reached: a
    /// duration (30s, 5m, 1h), `forever`, or 0 not to wait [default: forever
    /// for pipeline-worker, winchester-ingest and serve; 30s for the rest].
    #[arg(long = "wait-for-database", env = "WINCHESTER_WAIT_FOR_DATABASE", value_name = "DURATION", global = true)]
    pub wait_for_database: Option<WaitForDatabase>,
}

/// Whether a program runs until it is stopped or does one job: what it
/// waits for an unreachable database at start by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Run {
    /// pipeline-worker, winchester-ingest, `winchester serve`: forever.
    Daemon,
    /// Every other command: [`WaitForDatabase::ONE_SHOT`] (30 s).
    OneShot,
}

impl ConfigArgs {
    /// How long to wait at start for the database: `--wait-for-database`, else
    /// the default for `run`.
    pub fn database_wait(&self, run: Run) -> WaitForDatabase {
        self.wait_for_database.unwrap_or(match run {
            Run::Daemon => WaitForDatabase::Forever,
            Run::OneShot => WaitForDatabase::ONE_SHOT,
        })
    }
}

/// Sets up logging on stderr: `RUST_LOG` if set, else `level`. Below debug,
/// the connection pool's own warnings (one per broken connection when the
/// database restarts) are left out: the programs log an outage once when it
/// starts and once when it ends.
pub fn init_tracing(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        let level = normalize_level(level);
        if matches!(level.as_str(), "debug" | "trace") {
            tracing_subscriber::EnvFilter::new(level)
        } else {
            tracing_subscriber::EnvFilter::new(format!("{level},sqlx_core::pool=error"))
        }
    });
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal();
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).try_init();
}

fn normalize_level(level: &str) -> String {
    match level.to_ascii_lowercase().as_str() {
        "critical" | "fatal" => "error".into(),
        "warning" => "warn".into(),
        other => other.into(),
    }
}

/// Prints `error: <message>` with its cause chain and returns exit code 1.
pub fn report(err: &anyhow::Error) -> std::process::ExitCode {
    let mut line = format!("error: {err}");
    let mut last = err.to_string();
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        // Some errors repeat their source's text; print each piece once.
        if !last.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        last = text;
    }
    eprintln!("{line}");
    std::process::ExitCode::from(1)
}

/// The handler registry of the shipped programs: the built-ins, the
/// outside-reaching handlers and, with the `python` feature, any Python class path.
pub fn registry() -> HandlerRegistry {
    #[allow(unused_mut)]
    let mut r = winchester_handlers::registry();
    #[cfg(feature = "python")]
    winchester_python::register(&mut r);
    r
}

/// Whether this build runs Python handlers and trait plugins.
pub const PYTHON: bool = cfg!(feature = "python");

/// The trait plugins named in `distiller_trait_plugins` (Python classes);
/// without the `python` feature, an error when there are any.
pub fn trait_plugins(cfg: &LoadedConfig) -> anyhow::Result<winchester_core::distiller::PluginRegistry> {
    #[cfg(feature = "python")]
    {
        winchester_python::trait_plugins(&cfg.main).map_err(|e| anyhow!("{e}"))
    }
    #[cfg(not(feature = "python"))]
    {
        if cfg.main.distiller_trait_plugins.is_empty() {
            Ok(Default::default())
        } else {
            Err(anyhow!(
                "{}: key \"distiller_trait_plugins\": Python trait plugins need winchester-rs built with the `python` feature",
                cfg.main.file.display()
            ))
        }
    }
}

/// Loads and validates the whole configuration (handlers included), printing
/// warnings.
pub fn load_config(args: &ConfigArgs, registry: &HandlerRegistry) -> anyhow::Result<LoadedConfig> {
    let cfg = load_config_quietly(args, registry)?;
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }
    Ok(cfg)
}

/// [`load_config`] for programs that only ingest (`winchester ingest`,
/// `winchester-ingest`): the pipelines are read (they are part of each
/// trigger's definition version) but their handlers are not checked, since an
/// ingester runs none and a custom worker's handler types are unknown to it.
/// So ingesters and workers share one set of config files.
pub fn load_ingest_config(args: &ConfigArgs) -> anyhow::Result<LoadedConfig> {
    let cfg = load_checked(args, None)?;
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }
    Ok(cfg)
}

/// [`load_config`] without logging the warnings (for callers that print them).
pub fn load_config_quietly(args: &ConfigArgs, registry: &HandlerRegistry) -> anyhow::Result<LoadedConfig> {
    load_checked(args, Some(registry))
}

/// Loads and validates the configuration; the pipelines' handlers against
/// `registry` when given.
fn load_checked(args: &ConfigArgs, registry: Option<&HandlerRegistry>) -> anyhow::Result<LoadedConfig> {
    let known = |t: &str| registry.is_none_or(|r| r.knows(t));
    let mut cfg = LoadedConfig::load(&args.config, Some(&known)).map_err(|e| anyhow!("{e}"))?;
    #[cfg(feature = "python")]
    if !cfg.main.python_path.is_empty() || cfg.main.pipeline_handlers.values().any(|t| t.contains(':')) {
        winchester_python::configure(&cfg.main).map_err(|e| anyhow!("{}: {e}", cfg.main.file.display()))?;
    }
    if let Some(registry) = registry {
        PipelineRunner::new(registry.clone(), cfg.clone()).validate().map_err(|e| anyhow!("{e}"))?;
    }
    if let Some(url) = &args.database_url {
        cfg.main.database_url = Some(url.clone());
    }
    Ok(cfg)
}

/// The database used when none is configured: an SQLite file in the current directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://winchester.db";

/// The database URL from flags, environment or config; SQLite
/// ([`DEFAULT_DATABASE_URL`]) when none is set.
pub fn database_url(cfg_url: Option<&str>, args: &ConfigArgs) -> anyhow::Result<String> {
    Ok(args.database_url.as_deref().or(cfg_url).map(str::to_string).unwrap_or_else(|| {
        tracing::info!("No database configured; using {DEFAULT_DATABASE_URL}.");
        DEFAULT_DATABASE_URL.to_string()
    }))
}

pub use winchester_backends::{DatabaseOptions, WaitForDatabase};

/// The storage of `db`, once its schema is known to be current
/// ([`winchester_backends::open_storage`]), waiting for the database as long
/// as `wait` allows ([`winchester_backends::wait_for_database`]).
pub async fn open_storage(
    db: &DatabaseOptions,
    max_connections: u32,
    wait: WaitForDatabase,
) -> anyhow::Result<Arc<dyn winchester_storage::Storage>> {
    Ok(winchester_backends::wait_for_database(db, wait, || winchester_backends::open_storage(db, max_connections))
        .await?)
}

/// The database of `winchester.yaml` (`cfg`) or the flags, and how to reach
/// it (`database.pooler`): what every connection of a program is built from.
pub fn database_options(cfg: &winchester_core::WinchesterConfig, args: &ConfigArgs) -> anyhow::Result<DatabaseOptions> {
    Ok(DatabaseOptions::new(database_url(cfg.database_url.as_deref(), args)?, cfg.pooler))
}

/// For `/readyz`: the database answers and has every migration this build
/// knows (the same check programs make at start-up, [`open_storage`]), now.
pub async fn check_ready(db: &DatabaseOptions) -> Result<(), String> {
    winchester_backends::open_storage(db, 1).await.map(drop).map_err(|e| format!("{:#}", anyhow::Error::new(e)))
}

/// Starts the metrics exporter of `program` on `flag` or the config's
/// `metrics_listen` (nothing when neither is set), before the program
/// connects, so that a wait for the database at start shows
/// (`winchester_database_up 0`). Returns whether it started; then
/// [`start_stream_gauge`] once connected.
pub fn start_metrics(
    program: &'static str,
    flag: Option<std::net::SocketAddr>,
    cfg: &winchester_core::WinchesterConfig,
) -> anyhow::Result<bool> {
    let Some(addr) = flag.or(cfg.metrics_listen) else { return Ok(false) };
    winchester::metrics::serve(program, addr)?;
    tracing::info!(%addr, "Serving Prometheus metrics at /metrics.");
    Ok(true)
}

/// Counts streams for the `winchester_streams` gauge every [`STREAM_GAUGE_PERIOD`].
pub fn start_stream_gauge(storage: &Arc<dyn winchester_storage::Storage>) {
    winchester::metrics::spawn_stream_gauge(storage.clone(), STREAM_GAUGE_PERIOD);
}

/// How often the `winchester_streams` gauge is refreshed.
pub const STREAM_GAUGE_PERIOD: std::time::Duration = std::time::Duration::from_secs(15);

pub use winchester_core::config::redact_url as redact;

/// A trigger manager on the configured database, waiting for it at start
/// as a program of kind `run` does ([`ConfigArgs::database_wait`]).
pub async fn trigger_manager(
    cfg: &LoadedConfig,
    args: &ConfigArgs,
    max_connections: u32,
    run: Run,
) -> anyhow::Result<TriggerManager> {
    let storage = open_storage(&database_options(&cfg.main, args)?, max_connections, args.database_wait(run)).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut tm = TriggerManager::new(storage, Arc::new(cfg.triggers.clone()), clock);
    if let Some(d) = load_distiller(cfg)? {
        tm = tm.with_distiller(d);
    }
    Ok(tm)
}

/// The distiller of `distiller_config` with the config's trait plugins, if configured.
pub fn load_distiller(cfg: &LoadedConfig) -> anyhow::Result<Option<Arc<Distiller>>> {
    let Some(file) = &cfg.distiller_file else { return Ok(None) };
    let plugins = trait_plugins(cfg)?;
    let d = Distiller::load_flavoured(file, cfg.main.catch_all_notifications, cfg.main.distiller, &plugins)
        .map_err(|e| anyhow!("{e}"))?;
    Ok(Some(Arc::new(d)))
}

/// Records the configuration's trigger definition versions (programs that
/// open streams or run pipelines do this before they start).
pub async fn record_versions(tm: &TriggerManager, cfg: &LoadedConfig) -> anyhow::Result<()> {
    winchester::live::record_versions(&**tm.storage(), cfg, tm.clock().now())
        .await
        .map_err(|e| anyhow!("recording trigger definition versions: {e}"))
}

/// On every SIGHUP, reloads every configuration file (winchester.yaml, the
/// trigger definitions, pipelines and event definitions) and hands the
/// validated result to `apply`. An invalid set is refused whole: each error is
/// logged (file, line, key), `winchester_config_reloads_total{result="refused"}`
/// counts it, and the configuration in force keeps running. Settings read at
/// start-up (database, amqp_ingest, api, worker sizes) need a restart.
/// `registry`: the handlers to check the pipelines against (`None` in
/// ingest-only programs, see [`load_ingest_config`]).
pub fn reload_on_hangup<F, Fut>(args: ConfigArgs, registry: Option<HandlerRegistry>, apply: F) -> anyhow::Result<()>
where
    F: Fn(LoadedConfig, Option<Arc<Distiller>>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup()).map_err(|e| anyhow!("cannot handle SIGHUP: {e}"))?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!(config = %args.config.display(), "SIGHUP: reloading the configuration.");
            let loaded = load_checked(&args, registry.as_ref()).and_then(|c| Ok((load_distiller(&c)?, c)));
            let result = match loaded {
                Ok((distiller, cfg)) => {
                    for w in &cfg.warnings {
                        tracing::warn!("{w}");
                    }
                    apply(cfg, distiller).await
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => {
                    winchester::metrics::config_reload(true);
                    tracing::info!("Configuration reload applied.");
                }
                Err(e) => {
                    winchester::metrics::config_reload(false);
                    for line in format!("{e:#}").lines().filter(|l| !l.trim().is_empty()) {
                        tracing::error!("Configuration reload refused: {}", line.trim());
                    }
                    tracing::error!("Configuration reload refused; the configuration in force keeps running.");
                }
            }
        }
    });
    Ok(())
}
