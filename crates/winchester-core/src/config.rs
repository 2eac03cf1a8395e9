//! `winchester.yaml`: the main configuration file, in the original's format.
//!
//! Loading has two phases: the YAML is read into a struct of every key (serde,
//! each value kept as written when it does not fit), validated into
//! [`WinchesterConfig`] (every key checked, every error collected, unknown keys
//! warned about), then [`LoadedConfig::load`] finds
//! and loads the files it names and cross-checks them, returning every problem.

use crate::config_error::{present, show, unknown_keys, Checked, ConfigError, ConfigErrors, Raw, Strings};
use crate::pipeline_config::PipelineConfig;
use crate::timex::TimeExpr;
use crate::trigger::TriggerSet;
use serde::Deserialize;
use serde_yaml::{Mapping, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Hides the password of a URL (`scheme://user:***@host/...`) for messages and logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Settings from `winchester.yaml`, with defaults applied.
#[derive(Debug, Clone)]
pub struct WinchesterConfig {
    /// The file itself.
    pub file: PathBuf,
    /// Directories searched for the other files, in order (then the config file's own directory).
    pub config_path: Vec<PathBuf>,
    /// `database.url`.
    pub database_url: Option<String>,
    /// `database.echo_sql`: log every statement.
    pub echo_sql: bool,
    /// `database.pooler` (new): what stands between the engine and PostgreSQL.
    pub pooler: Pooler,
    /// `database.read_url` (new): a hot standby of `database.url` that
    /// `winchester serve` reads its listings, counts and pages from.
    pub read_url: Option<String>,
    /// `database.max_read_lag` (new; default 5 s): beyond this replica lag,
    /// reads go to the primary.
    pub max_read_lag: Duration,
    /// `trigger_definitions` file name.
    pub trigger_definitions: Option<String>,
    /// `pipeline_config` file name.
    pub pipeline_config: Option<String>,
    /// `distiller_config` file name.
    pub distiller_config: Option<String>,
    /// `catch_all_notifications`.
    pub catch_all_notifications: bool,
    /// `distiller` (new): whose rules turn notifications into events,
    /// `stackdistiller` (default) or `ceilometer`.
    pub distiller: crate::distiller::Flavour,
    /// `pipeline_handlers`: handler name -> type (built-in name, registered type or original class path).
    pub pipeline_handlers: BTreeMap<String, String>,
    /// `distiller_trait_plugins`: extra trait plugin name -> class path
    /// (`module.path:ClassName`), over the built-in `split` and `bitfield`.
    pub distiller_trait_plugins: BTreeMap<String, String>,
    /// `python_path` (new): directories added to Python's module search path
    /// (after `PYTHONPATH`) for Python handlers and plugins; relative ones are
    /// relative to this file's directory.
    pub python_path: Vec<PathBuf>,
    /// `pipeline_worker_batch_size` (default 1000).
    pub pipeline_worker_batch_size: u32,
    /// `pipeline_worker_concurrency` (new; default 8): most pipelines one worker
    /// runs at once.
    pub pipeline_worker_concurrency: u32,
    /// `pipeline_worker_delay` (default 10 s): longest idle sleep of a worker.
    pub pipeline_worker_delay: Duration,
    /// `statistics_period` (default 10 s).
    pub statistics_period: Duration,
    /// `purge_completed_streams` (default true).
    pub purge_completed_streams: bool,
    /// `trim_events` (default false).
    pub trim_events: bool,
    /// `trim_events_age` (default `$timestamp - 14d`).
    pub trim_events_age: TimeExpr,
    /// `trim_events_batch_size` (default 100).
    pub trim_events_batch_size: u32,
    /// `stream_lease_timeout` (new; default 300 s): how long a worker may hold a
    /// firing/expiring stream before another worker reclaims it.
    pub stream_lease_timeout: Duration,
    /// `handler_timeout` (new; default 60 s): longest a handler call may take.
    pub handler_timeout: Duration,
    /// `log_level` (default info).
    pub log_level: String,
    /// `amqp_ingest` (new): the AMQP ingest daemon's settings (defaults when absent).
    pub amqp_ingest: crate::amqp_ingest::AmqpIngestConfig,
    /// `api` (new): `winchester serve`'s settings (defaults when absent).
    pub api: crate::api_config::ApiConfig,
    /// `metrics_listen` (new): where pipeline-worker and winchester-ingest serve `/metrics`.
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// `winchester.yaml` as written: every key it may hold, each value parsed into
/// the type it should have or kept as found (see [`Raw`]); unknown keys in
/// `unknown`. [`WinchesterConfig::from_yaml_str`] validates it into the settings.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawConfig {
    config_path: Option<Raw<Strings>>,
    database: Option<Raw<RawDatabase>>,
    trigger_definitions: Option<Raw<String>>,
    pipeline_config: Option<Raw<String>>,
    distiller_config: Option<Raw<String>>,
    catch_all_notifications: Option<Raw<bool>>,
    distiller: Option<Raw<String>>,
    pipeline_handlers: Option<Raw<Mapping>>,
    pipeline_worker_batch_size: Option<Raw<u64>>,
    pipeline_worker_concurrency: Option<Raw<u64>>,
    pipeline_worker_delay: Option<Raw<f64>>,
    statistics_period: Option<Raw<f64>>,
    purge_completed_streams: Option<Raw<bool>>,
    trim_events: Option<Raw<bool>>,
    trim_events_age: Option<Raw<String>>,
    trim_events_batch_size: Option<Raw<u64>>,
    stream_lease_timeout: Option<Raw<f64>>,
    handler_timeout: Option<Raw<f64>>,
    log_level: Option<Raw<String>>,
    /// The original's log file: accepted, logs go to stderr.
    log_file: Option<Value>,
    #[serde(deserialize_with = "present")]
    logging_config: Option<Value>,
    #[serde(deserialize_with = "present")]
    time_sync_endpoint: Option<Value>,
    distiller_trait_plugins: Option<Raw<Mapping>>,
    python_path: Option<Raw<Strings>>,
    amqp_ingest: Option<Value>,
    api: Option<Value>,
    metrics_listen: Option<Value>,
    #[serde(flatten)]
    unknown: Mapping,
}

/// The `database` section.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawDatabase {
    url: Option<Raw<String>>,
    echo_sql: Option<Raw<bool>>,
    pooler: Option<Raw<String>>,
    read_url: Option<Raw<String>>,
    max_read_lag: Option<Raw<f64>>,
    #[serde(flatten)]
    unknown: Mapping,
}

/// Default of `database.max_read_lag`, in seconds.
pub const DEFAULT_MAX_READ_LAG: f64 = 5.0;

/// `database.pooler`: a connection pooler in front of PostgreSQL.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Pooler {
    /// `none` (default): direct connections, or a pooler in session mode.
    #[default]
    None,
    /// `transaction`: PgBouncer (or similar) in transaction pooling mode. No
    /// session state is relied on: no LISTEN (workers and tails poll), no
    /// named prepared statements.
    Transaction,
}

/// `count` and `seconds` settings of `winchester.yaml`.
impl Checked {
    fn count(&mut self, key: &str, raw: Option<Raw<u64>>, default: u32) -> u32 {
        let ok = |n: &u64| (1..=u32::MAX as u64).contains(n);
        self.get(key, raw, "must be a positive integer", ok).map_or(default, |n| n as u32)
    }

    fn seconds(&mut self, key: &str, raw: Option<Raw<f64>>, default: f64) -> Duration {
        let ok = |f: &f64| f.is_finite() && *f >= 0.0 && *f < 1e9;
        Duration::from_secs_f64(self.get(key, raw, "must be a non-negative number of seconds", ok).unwrap_or(default))
    }
}

impl WinchesterConfig {
    /// Parses the text of a `winchester.yaml` located at `file`. Returns the
    /// config and warnings, or every error.
    pub fn from_yaml_str(text: &str, file: &Path) -> Result<(WinchesterConfig, Vec<ConfigError>), ConfigErrors> {
        let (doc, yaml_warnings) = crate::yaml::load(text, file)?;
        let raw: RawConfig = match doc {
            Value::Mapping(_) => {
                serde_yaml::from_value(doc).map_err(|e| ConfigError::new(e.to_string()).in_file(file))?
            }
            Value::Null => RawConfig::default(),
            other => {
                return Err(ConfigError::new(format!("must be a map, found {}", show(&other))).in_file(file).into())
            }
        };
        let (cfg, warnings, errors) = WinchesterConfig::validate(raw, file);
        if !errors.is_empty() {
            return Err(ConfigErrors(errors.into_iter().map(|e| e.in_file(file)).collect()));
        }
        Ok((cfg, yaml_warnings.into_iter().chain(warnings.into_iter().map(|e| e.in_file(file))).collect()))
    }

    /// The settings of a parsed `winchester.yaml`, its warnings and its errors.
    fn validate(raw: RawConfig, file: &Path) -> (WinchesterConfig, Vec<ConfigError>, Vec<ConfigError>) {
        let mut warnings: Vec<ConfigError> = unknown_keys(&raw.unknown, "").collect();
        let mut c = Checked::default();
        let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
        let config_path: Option<Vec<PathBuf>> =
            c.strings("config_path", raw.config_path, "must be a directory or a list of directories");
        // An absolute entry stays as it is (`join` replaces the base).
        let config_path = config_path.unwrap_or_default().into_iter().map(|p| base.join(p)).collect();
        let trigger_definitions = c.string("trigger_definitions", raw.trigger_definitions);
        let pipeline_config = c.string("pipeline_config", raw.pipeline_config);
        let distiller_config = c.string("distiller_config", raw.distiller_config);
        let log_level = c.string("log_level", raw.log_level).unwrap_or_else(|| "info".into());
        let catch_all_notifications = c.boolean("catch_all_notifications", raw.catch_all_notifications, false);
        let distiller = c
            .get("distiller", raw.distiller, "must be stackdistiller or ceilometer", |n| {
                crate::distiller::Flavour::from_name(n).is_some()
            })
            .and_then(|n| crate::distiller::Flavour::from_name(&n))
            .unwrap_or_default();
        let purge_completed_streams = c.boolean("purge_completed_streams", raw.purge_completed_streams, true);
        let trim_events = c.boolean("trim_events", raw.trim_events, false);
        let pipeline_worker_batch_size = c.count("pipeline_worker_batch_size", raw.pipeline_worker_batch_size, 1000);
        let pipeline_worker_concurrency = c.count("pipeline_worker_concurrency", raw.pipeline_worker_concurrency, 8);
        let trim_events_batch_size = c.count("trim_events_batch_size", raw.trim_events_batch_size, 100);
        let pipeline_worker_delay = c.seconds("pipeline_worker_delay", raw.pipeline_worker_delay, 10.0);
        let statistics_period = c.seconds("statistics_period", raw.statistics_period, 10.0);
        let stream_lease_timeout = c.seconds("stream_lease_timeout", raw.stream_lease_timeout, 300.0);
        let handler_timeout = c.seconds("handler_timeout", raw.handler_timeout, 60.0);
        let default_age = || TimeExpr::parse("$timestamp - 14d").expect("valid default");
        let trim_events_age = match c.string("trim_events_age", raw.trim_events_age) {
            None => default_age(),
            Some(s) => match TimeExpr::parse(&s) {
                Ok(e) if e.variables().iter().all(|v| v == "timestamp") => e,
                Ok(_) => {
                    c.push("trim_events_age", format!("{s:?}: only $timestamp (now) is defined here"));
                    default_age()
                }
                Err(e) => {
                    c.push("trim_events_age", e.to_string());
                    default_age()
                }
            },
        };
        let default_read_lag = Duration::from_secs_f64(DEFAULT_MAX_READ_LAG);
        let (database_url, echo_sql, pooler, read_url, max_read_lag) =
            match raw.database.map(|r| r.expect("must be a map with url", |_| true)) {
                None => (None, false, Pooler::None, None, default_read_lag),
                Some(Err(e)) => {
                    c.0.push(e.key("database"));
                    (None, false, Pooler::None, None, default_read_lag)
                }
                Some(Ok(d)) => {
                    warnings.extend(unknown_keys(&d.unknown, "database."));
                    let url = c.string("database.url", d.url);
                    let echo_sql = c.boolean("database.echo_sql", d.echo_sql, false);
                    let pooler = match c
                        .get("database.pooler", d.pooler, "must be none or transaction", |p| {
                            matches!(p.as_str(), "none" | "transaction")
                        })
                        .as_deref()
                    {
                        Some("transaction") => Pooler::Transaction,
                        _ => Pooler::None,
                    };
                    let read_url = c.get("database.read_url", d.read_url, "must be a postgres:// URL", |u| {
                        u.starts_with("postgres://") || u.starts_with("postgresql://")
                    });
                    let max_read_lag = c.seconds("database.max_read_lag", d.max_read_lag, DEFAULT_MAX_READ_LAG);
                    (url, echo_sql, pooler, read_url, max_read_lag)
                }
            };
        let mut pipeline_handlers = BTreeMap::new();
        let handlers = c.get("pipeline_handlers", raw.pipeline_handlers, "must be a map", |_| true);
        for (k, v) in handlers.unwrap_or_default() {
            match (k.as_str(), v.as_str()) {
                (Some(k), Some(v)) => {
                    pipeline_handlers.insert(k.to_string(), v.to_string());
                }
                _ => c.push(
                    "pipeline_handlers",
                    format!("entries map a handler name to a type, found {}: {}", show(&k), show(&v)),
                ),
            }
        }
        let mut distiller_trait_plugins = BTreeMap::new();
        let plugins = c.get("distiller_trait_plugins", raw.distiller_trait_plugins, "must be a map", |_| true);
        for (k, v) in plugins.unwrap_or_default() {
            match (k.as_str(), v.as_str()) {
                (Some(k), Some(v)) if v.contains(':') => {
                    distiller_trait_plugins.insert(k.to_string(), v.to_string());
                }
                _ => c.push(
                    "distiller_trait_plugins",
                    format!(
                        "entries map a plugin name to a class path (module.path:ClassName), found {}: {}",
                        show(&k),
                        show(&v)
                    ),
                ),
            }
        }
        let python_path: Option<Vec<PathBuf>> =
            c.strings("python_path", raw.python_path, "must be a directory or a list of directories");
        let python_path = python_path.unwrap_or_default().into_iter().map(|p| base.join(p)).collect();
        for (key, present, message) in [
            (
                "time_sync_endpoint",
                raw.time_sync_endpoint.is_some(),
                "not supported; replay archived events with `winchester ingest --event-time` instead",
            ),
            (
                "logging_config",
                raw.logging_config.is_some(),
                "Python logging configs are not read; use log_level or RUST_LOG",
            ),
        ] {
            if present {
                warnings.push(ConfigError::new(message).key(key));
            }
        }
        let amqp_ingest = match &raw.amqp_ingest {
            None => crate::amqp_ingest::AmqpIngestConfig::default(),
            Some(v) => crate::amqp_ingest::AmqpIngestConfig::from_yaml(v, &mut warnings).unwrap_or_else(|e| {
                c.0.extend(e);
                Default::default()
            }),
        };
        let api = match &raw.api {
            None => Default::default(),
            Some(v) => crate::api_config::ApiConfig::from_yaml(v, &base, &mut warnings).unwrap_or_else(|e| {
                c.0.extend(e);
                Default::default()
            }),
        };
        let metrics_listen = crate::api_config::socket_addr(raw.metrics_listen.as_ref(), "metrics_listen", &mut c.0);
        let cfg = WinchesterConfig {
            file: file.to_path_buf(),
            config_path,
            database_url,
            echo_sql,
            pooler,
            read_url,
            max_read_lag,
            trigger_definitions,
            pipeline_config,
            distiller_config,
            catch_all_notifications,
            distiller,
            pipeline_handlers,
            distiller_trait_plugins,
            python_path,
            pipeline_worker_batch_size,
            pipeline_worker_concurrency,
            pipeline_worker_delay,
            statistics_period,
            purge_completed_streams,
            trim_events,
            trim_events_age,
            trim_events_batch_size,
            stream_lease_timeout,
            handler_timeout,
            log_level,
            amqp_ingest,
            api,
            metrics_listen,
        };
        (cfg, warnings, c.0)
    }

    /// Reads and parses a `winchester.yaml`.
    pub fn load(file: &Path) -> Result<(WinchesterConfig, Vec<ConfigError>), ConfigErrors> {
        let text =
            std::fs::read_to_string(file).map_err(|e| ConfigError::new(format!("cannot read: {e}")).in_file(file))?;
        WinchesterConfig::from_yaml_str(&text, file)
    }

    /// Finds a file named in the config: an absolute path as is; otherwise the
    /// first directory of `config_path`, then the config file's own directory,
    /// that holds it.
    pub fn resolve(&self, key: &str, name: &str) -> Result<PathBuf, ConfigError> {
        let p = Path::new(name);
        if p.is_absolute() {
            return if p.exists() {
                Ok(p.to_path_buf())
            } else {
                Err(ConfigError::new(format!("file {name:?} does not exist")).key(key).in_file(&self.file))
            };
        }
        let own = self.file.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut searched = Vec::new();
        for dir in self.config_path.iter().chain(std::iter::once(&own)) {
            let candidate = dir.join(p);
            if candidate.exists() {
                return Ok(candidate);
            }
            searched.push(dir.display().to_string());
        }
        Err(ConfigError::new(format!("file {name:?} not found in {}", searched.join(", ")))
            .key(key)
            .in_file(&self.file))
    }
}

/// Everything a process needs from its configuration: the main file, the trigger
/// definitions and the pipelines, loaded and cross-checked.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// `winchester.yaml`.
    pub main: WinchesterConfig,
    /// Where the trigger definitions came from.
    pub triggers_file: Option<PathBuf>,
    /// Trigger definitions.
    pub triggers: TriggerSet,
    /// Where the pipelines came from.
    pub pipelines_file: Option<PathBuf>,
    /// Pipelines.
    pub pipelines: PipelineConfig,
    /// Where the event definitions are, if configured.
    pub distiller_file: Option<PathBuf>,
    /// Non-fatal findings.
    pub warnings: Vec<ConfigError>,
    /// Each trigger's definition version (also set on the trigger itself).
    pub versions: BTreeMap<String, crate::version::DefinitionVersion>,
}

impl LoadedConfig {
    /// Loads `winchester.yaml` and every file it names, and checks that each
    /// pipeline a trigger names exists and every handler resolves.
    /// `resolve_handler(name, type)` says whether a handler type is known (the
    /// engine's handler registry); `None` skips that check.
    pub fn load(file: &Path, resolve_handler: Option<&dyn Fn(&str) -> bool>) -> Result<LoadedConfig, ConfigErrors> {
        let (main, mut warnings) = WinchesterConfig::load(file)?;
        LoadedConfig::from_main(main, &mut warnings, resolve_handler).map(|mut c| {
            c.warnings = warnings;
            c
        })
    }

    fn from_main(
        main: WinchesterConfig,
        warnings: &mut Vec<ConfigError>,
        resolve_handler: Option<&dyn Fn(&str) -> bool>,
    ) -> Result<LoadedConfig, ConfigErrors> {
        let mut errors = Vec::new();
        let mut triggers = TriggerSet::default();
        let mut triggers_file = None;
        if let Some(name) = &main.trigger_definitions {
            match main.resolve("trigger_definitions", name) {
                Ok(path) => {
                    match TriggerSet::load(&path) {
                        Ok((t, w)) => {
                            triggers = t;
                            warnings.extend(w);
                        }
                        Err(ConfigErrors(e)) => errors.extend(e),
                    }
                    triggers_file = Some(path);
                }
                Err(e) => errors.push(e),
            }
        }
        let mut pipelines = PipelineConfig::default();
        let mut pipelines_file = None;
        match &main.pipeline_config {
            Some(name) => match main.resolve("pipeline_config", name) {
                Ok(path) => {
                    match PipelineConfig::load_warned(&path) {
                        Ok((p, w)) => {
                            pipelines = p;
                            warnings.extend(w);
                        }
                        Err(ConfigErrors(e)) => errors.extend(e),
                    }
                    pipelines_file = Some(path);
                }
                Err(e) => errors.push(e),
            },
            None if !triggers.is_empty() => errors.push(
                ConfigError::new("missing; the triggers name pipelines").key("pipeline_config").in_file(&main.file),
            ),
            None => {}
        }
        let mut distiller_file = None;
        if let Some(name) = &main.distiller_config {
            match main.resolve("distiller_config", name) {
                Ok(p) => {
                    // The distiller is built later (with its trait plugins); its
                    // YAML warnings are gathered here, its errors when it is built.
                    if let Ok((_, w)) = crate::yaml::load_file(&p) {
                        warnings.extend(w);
                    }
                    distiller_file = Some(p)
                }
                Err(e) => errors.push(e),
            }
        }
        if pipelines_file.is_some() {
            for t in triggers.iter() {
                for (key, p) in [("fire_pipeline", &t.fire_pipeline), ("expire_pipeline", &t.expire_pipeline)] {
                    if let Some(p) = p {
                        if pipelines.get(p).is_none() {
                            errors.push(
                                ConfigError::new(format!("pipeline {p:?} is not defined in the pipeline config"))
                                    .context(format!("trigger {:?}", t.name))
                                    .key(key)
                                    .in_file(triggers_file.clone().unwrap_or_default()),
                            );
                        }
                    }
                }
            }
        }
        if let Some(known) = resolve_handler {
            for (pname, handlers) in &pipelines.pipelines {
                for (i, h) in handlers.iter().enumerate() {
                    let ty = main.pipeline_handlers.get(&h.name).map(String::as_str).unwrap_or(&h.name);
                    if !known(ty) {
                        let msg = if main.pipeline_handlers.contains_key(&h.name) && ty.contains(':') {
                            format!(
                                "handler {:?} has type {ty:?}, a Python class path: this build cannot run Python \
                                 handlers (they need winchester-rs built with the `python` feature)",
                                h.name
                            )
                        } else if main.pipeline_handlers.contains_key(&h.name) {
                            format!("handler {:?} has type {ty:?}, which is neither built in nor registered", h.name)
                        } else {
                            format!(
                                "handler {:?} is not listed in pipeline_handlers and is not a built-in handler",
                                h.name
                            )
                        };
                        errors.push(
                            ConfigError::new(msg)
                                .context(format!("pipeline {pname:?}"))
                                .key(format!("[{i}]"))
                                .in_file(pipelines_file.clone().unwrap_or_default()),
                        );
                    }
                }
            }
        }
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        let handler_type = |n: &str| main.pipeline_handlers.get(n).cloned().unwrap_or_else(|| n.to_string());
        let mut versions = BTreeMap::new();
        triggers.update(|t| {
            let v = crate::version::DefinitionVersion::of(t, &pipelines, &handler_type);
            t.version = Some(v.version.clone());
            versions.insert(t.name.clone(), v);
        });
        Ok(LoadedConfig {
            main,
            triggers_file,
            triggers,
            pipelines_file,
            pipelines,
            distiller_file,
            warnings: vec![],
            versions,
        })
    }

    /// The handler type a pipeline handler name resolves to.
    pub fn handler_type<'a>(&'a self, handler_name: &'a str) -> &'a str {
        self.main.pipeline_handlers.get(handler_name).map(String::as_str).unwrap_or(handler_name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_unknown_keys() {
        let (c, w) = WinchesterConfig::from_yaml_str(
            "database: {url: 'postgres://x/y'}\nfoo: 1\n",
            Path::new("/etc/w/winchester.yaml"),
        )
        .unwrap();
        assert_eq!(c.database_url.as_deref(), Some("postgres://x/y"));
        assert_eq!(c.pooler, Pooler::None);
        let (c, _) = WinchesterConfig::from_yaml_str(
            "database: {url: 'postgres://x/y', pooler: transaction}\n",
            Path::new("/etc/w/winchester.yaml"),
        )
        .unwrap();
        assert_eq!(c.pooler, Pooler::Transaction);
        assert_eq!((c.read_url, c.max_read_lag), (None, Duration::from_secs(5)));
        let (c, _) = WinchesterConfig::from_yaml_str(
            "database: {url: 'postgres://x/y', read_url: 'postgres://standby/y', max_read_lag: 2.5}\n",
            Path::new("/etc/w/winchester.yaml"),
        )
        .unwrap();
        assert_eq!(c.read_url.as_deref(), Some("postgres://standby/y"));
        assert_eq!(c.max_read_lag, Duration::from_millis(2500));
        assert_eq!(c.pipeline_worker_batch_size, 1000);
        assert_eq!(c.pipeline_worker_concurrency, 8);
        assert_eq!(c.pipeline_worker_delay, Duration::from_secs(10));
        assert!(c.purge_completed_streams && !c.trim_events);
        assert_eq!(c.trim_events_batch_size, 100);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].key.as_deref(), Some("foo"));
        let e = WinchesterConfig::from_yaml_str(
            "pipeline_worker_batch_size: -1\ntrim_events: maybe\n",
            Path::new("w.yaml"),
        )
        .unwrap_err();
        assert_eq!(e.0.len(), 2, "{e}");
    }

    fn errors(yaml: &str) -> Vec<String> {
        WinchesterConfig::from_yaml_str(yaml, Path::new("/etc/w/winchester.yaml"))
            .unwrap_err()
            .0
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn warnings(yaml: &str) -> Vec<String> {
        let (_, w) = WinchesterConfig::from_yaml_str(yaml, Path::new("/etc/w/winchester.yaml")).unwrap();
        w.iter().map(ToString::to_string).collect()
    }

    /// Every misfit is reported, each with the file, its key and what was found.
    #[test]
    fn every_error_names_file_key_and_value() {
        assert_eq!(
            errors(
                "config_path: [etc, 5]
trigger_definitions: [a]
log_level: 3
catch_all_notifications: yes please
\
                 pipeline_worker_batch_size: 0
trim_events_batch_size: 1.5
pipeline_worker_delay: -1
\
                 statistics_period: soon
trim_events_age: \"$first - 1d\"
\
                 database: {url: 5, echo_sql: sometimes, pooler: statement, read_url: 'sqlite://r.db', max_read_lag: -1}
pipeline_handlers: {a: [b]}
"
            ),
            vec![
                "/etc/w/winchester.yaml: key \"config_path\": entries must be strings, found 5",
                "/etc/w/winchester.yaml: key \"trigger_definitions\": must be a string, found - a",
                "/etc/w/winchester.yaml: key \"log_level\": must be a string, found 3",
                "/etc/w/winchester.yaml: key \"catch_all_notifications\": must be true or false, found \"yes please\"",
                "/etc/w/winchester.yaml: key \"pipeline_worker_batch_size\": must be a positive integer, found 0",
                "/etc/w/winchester.yaml: key \"trim_events_batch_size\": must be a positive integer, found 1.5",
                "/etc/w/winchester.yaml: key \"pipeline_worker_delay\": must be a non-negative number of seconds, found -1",
                "/etc/w/winchester.yaml: key \"statistics_period\": must be a non-negative number of seconds, found \"soon\"",
                "/etc/w/winchester.yaml: key \"trim_events_age\": \"$first - 1d\": only $timestamp (now) is defined here",
                "/etc/w/winchester.yaml: key \"database.url\": must be a string, found 5",
                "/etc/w/winchester.yaml: key \"database.echo_sql\": must be true or false, found \"sometimes\"",
                "/etc/w/winchester.yaml: key \"database.pooler\": must be none or transaction, found \"statement\"",
                "/etc/w/winchester.yaml: key \"database.read_url\": must be a postgres:// URL, found \"sqlite://r.db\"",
                "/etc/w/winchester.yaml: key \"database.max_read_lag\": must be a non-negative number of seconds, found -1",
                "/etc/w/winchester.yaml: key \"pipeline_handlers\": entries map a handler name to a type, found \"a\": - b",
            ]
        );
        assert_eq!(
            errors("config_path: {a: b}\ndatabase: postgres://x\npipeline_handlers: [a]\n"),
            vec![
                "/etc/w/winchester.yaml: key \"config_path\": must be a directory or a list of directories, found a: b",
                "/etc/w/winchester.yaml: key \"database\": must be a map with url, found \"postgres://x\"",
                "/etc/w/winchester.yaml: key \"pipeline_handlers\": must be a map, found - a",
            ]
        );
        assert_eq!(errors("- a\n"), vec!["/etc/w/winchester.yaml: must be a map, found - a"]);
        let syntax = errors("database:\n  url: [\n");
        assert!(syntax[0].starts_with("/etc/w/winchester.yaml:3: invalid YAML: "), "{syntax:?}");
    }

    /// Unknown keys (top level and in database) and the original's unsupported
    /// keys warn, even when empty; empty keys take their defaults.
    #[test]
    fn warnings_and_empty_values() {
        assert_eq!(
            warnings("foo: 1\ndatabase: {url: 'sqlite://x', pool: 3}\ntime_sync_endpoint:\nlogging_config: x.conf\nlog_file: w.log\n"),
            vec![
                "/etc/w/winchester.yaml: key \"foo\": unknown key, ignored",
                "/etc/w/winchester.yaml: key \"database.pool\": unknown key, ignored",
                "/etc/w/winchester.yaml: key \"time_sync_endpoint\": not supported; replay archived events with `winchester ingest --event-time` instead",
                "/etc/w/winchester.yaml: key \"logging_config\": Python logging configs are not read; use log_level or RUST_LOG",
            ]
        );
        let (c, w) = WinchesterConfig::from_yaml_str(
            "config_path: conf\ndatabase:\ntrim_events:\npipeline_worker_delay: 2.5\nstream_lease_timeout: 600\npipeline_handlers: {n: logger}\n",
            Path::new("/etc/w/winchester.yaml"),
        )
        .unwrap();
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.config_path, vec![PathBuf::from("/etc/w/conf")]);
        assert_eq!((c.database_url, c.echo_sql, c.trim_events), (None, false, false));
        assert_eq!(c.pipeline_worker_delay, Duration::from_millis(2500));
        assert_eq!(c.stream_lease_timeout, Duration::from_secs(600));
        assert_eq!(c.pipeline_handlers.get("n").map(String::as_str), Some("logger"));
        let (c, _) = WinchesterConfig::from_yaml_str("", Path::new("w.yaml")).unwrap();
        assert_eq!((c.log_level.as_str(), c.handler_timeout), ("info", Duration::from_secs(60)));
    }

    /// `distiller` picks the flavour; anything else is an error naming the key.
    #[test]
    fn distiller_flavour() {
        use crate::distiller::Flavour;
        let (c, _) = WinchesterConfig::from_yaml_str("", Path::new("w.yaml")).unwrap();
        assert_eq!(c.distiller, Flavour::StackDistiller);
        let (c, _) = WinchesterConfig::from_yaml_str("distiller: ceilometer\n", Path::new("w.yaml")).unwrap();
        assert_eq!(c.distiller, Flavour::Ceilometer);
        let (c, _) = WinchesterConfig::from_yaml_str("distiller: stackdistiller\n", Path::new("w.yaml")).unwrap();
        assert_eq!(c.distiller, Flavour::StackDistiller);
        assert_eq!(
            errors("distiller: panko\n"),
            ["/etc/w/winchester.yaml: key \"distiller\": must be stackdistiller or ceilometer, found \"panko\""]
        );
        assert!(errors("distiller: [ceilometer]\n")[0].contains("key \"distiller\""));
    }

    /// A Python class path the registry cannot run names the feature that
    /// would; `distiller_trait_plugins` and `python_path` are read.
    #[test]
    fn python_class_paths_and_plugins() {
        let dir = std::env::temp_dir().join(format!("winchester-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("winchester.yaml"),
            "pipeline_config: p.yaml\npython_path: [lib, /opt/h]\npipeline_handlers: {mine: 'my.mod:Handler'}\n\
             distiller_trait_plugins: {host: 'my.mod:HostPlugin'}\n",
        )
        .unwrap();
        std::fs::write(dir.join("p.yaml"), "p: [mine]\n").unwrap();
        let known = |t: &str| !t.contains(':');
        let err = LoadedConfig::load(&dir.join("winchester.yaml"), Some(&known)).unwrap_err().to_string();
        assert!(err.contains("\"my.mod:Handler\", a Python class path") && err.contains("`python` feature"), "{err}");
        let cfg = LoadedConfig::load(&dir.join("winchester.yaml"), None).unwrap();
        assert_eq!(cfg.main.python_path, vec![dir.join("lib"), PathBuf::from("/opt/h")]);
        assert_eq!(cfg.main.distiller_trait_plugins["host"], "my.mod:HostPlugin");
        assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(errors("distiller_trait_plugins: {host: 5}\n")[0].contains("module.path:ClassName"));
    }
}
