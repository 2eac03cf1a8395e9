//! `winchester.yaml`: the main configuration file, in the original's format.
//!
//! Loading has two phases: the YAML is read into [`WinchesterConfig`] (every
//! key checked, unknown keys warned about), then [`LoadedConfig::load`] finds
//! and loads the files it names and cross-checks them, returning every problem.

use crate::config_error::{show, ConfigError, ConfigErrors};
use crate::pipeline_config::PipelineConfig;
use crate::timex::TimeExpr;
use crate::trigger::TriggerSet;
use serde_yaml::Value;
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
    /// `trigger_definitions` file name.
    pub trigger_definitions: Option<String>,
    /// `pipeline_config` file name.
    pub pipeline_config: Option<String>,
    /// `distiller_config` file name.
    pub distiller_config: Option<String>,
    /// `catch_all_notifications`.
    pub catch_all_notifications: bool,
    /// `pipeline_handlers`: handler name -> type (built-in name, registered type or original class path).
    pub pipeline_handlers: BTreeMap<String, String>,
    /// `pipeline_worker_batch_size` (default 1000).
    pub pipeline_worker_batch_size: u32,
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

const KNOWN_KEYS: &[&str] = &[
    "config_path",
    "database",
    "trigger_definitions",
    "pipeline_config",
    "distiller_config",
    "distiller_trait_plugins",
    "catch_all_notifications",
    "pipeline_handlers",
    "pipeline_worker_batch_size",
    "pipeline_worker_delay",
    "statistics_period",
    "purge_completed_streams",
    "trim_events",
    "trim_events_age",
    "trim_events_batch_size",
    "stream_lease_timeout",
    "handler_timeout",
    "log_level",
    "log_file",
    "logging_config",
    "time_sync_endpoint",
    "amqp_ingest",
    "api",
    "metrics_listen",
];

impl WinchesterConfig {
    /// Parses the text of a `winchester.yaml` located at `file`. Returns the
    /// config and warnings, or every error.
    pub fn from_yaml_str(text: &str, file: &Path) -> Result<(WinchesterConfig, Vec<ConfigError>), ConfigErrors> {
        let doc: Value = serde_yaml::from_str(text).map_err(|e| ConfigError::yaml(file, &e))?;
        let m = match doc {
            Value::Mapping(m) => m,
            Value::Null => Default::default(),
            other => {
                return Err(ConfigError::new(format!("must be a map, found {}", show(&other))).in_file(file).into())
            }
        };
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        for k in m.keys() {
            match k.as_str() {
                Some(s) if KNOWN_KEYS.contains(&s) => {}
                _ => warnings.push(ConfigError::new("unknown key, ignored").key(show(k).trim_matches('"').to_string())),
            }
        }
        let mut err = |key: &str, msg: String| errors.push(ConfigError::new(msg).key(key));
        let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
        let config_path = match m.get("config_path") {
            None | Some(Value::Null) => vec![],
            Some(Value::String(s)) => vec![PathBuf::from(s)],
            Some(Value::Sequence(items)) => items
                .iter()
                .filter_map(|i| match i.as_str() {
                    Some(s) => Some(PathBuf::from(s)),
                    None => {
                        err("config_path", format!("entries must be strings, found {}", show(i)));
                        None
                    }
                })
                .collect(),
            Some(other) => {
                err("config_path", format!("must be a directory or a list of directories, found {}", show(other)));
                vec![]
            }
        };
        let config_path = config_path.into_iter().map(|p| if p.is_absolute() { p } else { base.join(p) }).collect();
        let string = |key: &str, errs: &mut Vec<ConfigError>| -> Option<String> {
            match m.get(key) {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(other) => {
                    errs.push(ConfigError::new(format!("must be a string, found {}", show(other))).key(key));
                    None
                }
            }
        };
        let trigger_definitions = string("trigger_definitions", &mut errors);
        let pipeline_config = string("pipeline_config", &mut errors);
        let distiller_config = string("distiller_config", &mut errors);
        let log_level = string("log_level", &mut errors).unwrap_or_else(|| "info".into());
        let boolean = |key: &str, default: bool, errs: &mut Vec<ConfigError>| -> bool {
            match m.get(key) {
                None | Some(Value::Null) => default,
                Some(Value::Bool(b)) => *b,
                Some(other) => {
                    errs.push(ConfigError::new(format!("must be true or false, found {}", show(other))).key(key));
                    default
                }
            }
        };
        let catch_all_notifications = boolean("catch_all_notifications", false, &mut errors);
        let purge_completed_streams = boolean("purge_completed_streams", true, &mut errors);
        let trim_events = boolean("trim_events", false, &mut errors);
        let count = |key: &str, default: u32, errs: &mut Vec<ConfigError>| -> u32 {
            match m.get(key) {
                None | Some(Value::Null) => default,
                Some(v) => match v.as_u64().filter(|n| *n >= 1 && *n <= u32::MAX as u64) {
                    Some(n) => n as u32,
                    None => {
                        errs.push(ConfigError::new(format!("must be a positive integer, found {}", show(v))).key(key));
                        default
                    }
                },
            }
        };
        let pipeline_worker_batch_size = count("pipeline_worker_batch_size", 1000, &mut errors);
        let trim_events_batch_size = count("trim_events_batch_size", 100, &mut errors);
        let seconds = |key: &str, default: f64, errs: &mut Vec<ConfigError>| -> Duration {
            match m.get(key) {
                None | Some(Value::Null) => Duration::from_secs_f64(default),
                Some(v) => match v.as_f64().filter(|f| f.is_finite() && *f >= 0.0 && *f < 1e9) {
                    Some(f) => Duration::from_secs_f64(f),
                    None => {
                        errs.push(
                            ConfigError::new(format!("must be a non-negative number of seconds, found {}", show(v)))
                                .key(key),
                        );
                        Duration::from_secs_f64(default)
                    }
                },
            }
        };
        let pipeline_worker_delay = seconds("pipeline_worker_delay", 10.0, &mut errors);
        let statistics_period = seconds("statistics_period", 10.0, &mut errors);
        let stream_lease_timeout = seconds("stream_lease_timeout", 300.0, &mut errors);
        let handler_timeout = seconds("handler_timeout", 60.0, &mut errors);
        if handler_timeout >= stream_lease_timeout {
            errors.push(ConfigError::new("must be shorter than stream_lease_timeout, or another worker could reclaim a stream whose handler is still running").key("handler_timeout"));
        }
        let trim_events_age = match string("trim_events_age", &mut errors) {
            None => TimeExpr::parse("$timestamp - 14d").expect("valid default"),
            Some(s) => match TimeExpr::parse(&s) {
                Ok(e) if e.variables().iter().all(|v| v == "timestamp") => e,
                Ok(_) => {
                    errors.push(
                        ConfigError::new(format!("{s:?}: only $timestamp (now) is defined here"))
                            .key("trim_events_age"),
                    );
                    TimeExpr::parse("$timestamp - 14d").expect("valid default")
                }
                Err(e) => {
                    errors.push(ConfigError::new(e.to_string()).key("trim_events_age"));
                    TimeExpr::parse("$timestamp - 14d").expect("valid default")
                }
            },
        };
        let (database_url, echo_sql) = match m.get("database") {
            None | Some(Value::Null) => (None, false),
            Some(Value::Mapping(d)) => {
                for k in d.keys() {
                    if !matches!(k.as_str(), Some("url") | Some("echo_sql")) {
                        warnings.push(
                            ConfigError::new("unknown key, ignored")
                                .key(format!("database.{}", show(k).trim_matches('"'))),
                        );
                    }
                }
                let url = match d.get("url") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(other) => {
                        errors.push(
                            ConfigError::new(format!("must be a string, found {}", show(other))).key("database.url"),
                        );
                        None
                    }
                };
                (url, d.get("echo_sql").and_then(Value::as_bool).unwrap_or(false))
            }
            Some(other) => {
                errors.push(ConfigError::new(format!("must be a map with url, found {}", show(other))).key("database"));
                (None, false)
            }
        };
        let mut pipeline_handlers = BTreeMap::new();
        match m.get("pipeline_handlers") {
            None | Some(Value::Null) => {}
            Some(Value::Mapping(h)) => {
                for (k, v) in h {
                    match (k.as_str(), v.as_str()) {
                        (Some(k), Some(v)) => {
                            pipeline_handlers.insert(k.to_string(), v.to_string());
                        }
                        _ => errors.push(
                            ConfigError::new(format!(
                                "entries map a handler name to a type, found {}: {}",
                                show(k),
                                show(v)
                            ))
                            .key("pipeline_handlers"),
                        ),
                    }
                }
            }
            Some(other) => {
                errors.push(ConfigError::new(format!("must be a map, found {}", show(other))).key("pipeline_handlers"))
            }
        }
        if m.contains_key("time_sync_endpoint") {
            warnings.push(
                ConfigError::new("not supported; replay archived events with `winchester ingest --event-time` instead")
                    .key("time_sync_endpoint"),
            );
        }
        if m.contains_key("distiller_trait_plugins") {
            warnings.push(
                ConfigError::new(
                    "Python trait plugins cannot be loaded; only the built-in split and bitfield plugins exist",
                )
                .key("distiller_trait_plugins"),
            );
        }
        if m.contains_key("logging_config") {
            warnings.push(
                ConfigError::new("Python logging configs are not read; use log_level or RUST_LOG")
                    .key("logging_config"),
            );
        }
        let amqp_ingest = match m.get("amqp_ingest") {
            None => crate::amqp_ingest::AmqpIngestConfig::default(),
            Some(v) => crate::amqp_ingest::AmqpIngestConfig::from_yaml(v, &mut warnings).unwrap_or_else(|e| {
                errors.extend(e);
                Default::default()
            }),
        };
        let api = match m.get("api") {
            None => Default::default(),
            Some(v) => crate::api_config::ApiConfig::from_yaml(v, &base, &mut warnings).unwrap_or_else(|e| {
                errors.extend(e);
                Default::default()
            }),
        };
        let metrics_listen = crate::api_config::socket_addr(m.get("metrics_listen"), "metrics_listen", &mut errors);
        if !errors.is_empty() {
            return Err(ConfigErrors(errors.into_iter().map(|e| e.in_file(file)).collect()));
        }
        let cfg = WinchesterConfig {
            file: file.to_path_buf(),
            config_path,
            database_url,
            echo_sql,
            trigger_definitions,
            pipeline_config,
            distiller_config,
            catch_all_notifications,
            pipeline_handlers,
            pipeline_worker_batch_size,
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
        Ok((cfg, warnings.into_iter().map(|e| e.in_file(file)).collect()))
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
                    match PipelineConfig::load(&path) {
                        Ok(p) => pipelines = p,
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
                Ok(p) => distiller_file = Some(p),
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
                        let msg = if main.pipeline_handlers.contains_key(&h.name) {
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
        Ok(LoadedConfig { main, triggers_file, triggers, pipelines_file, pipelines, distiller_file, warnings: vec![] })
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
        assert_eq!(c.pipeline_worker_batch_size, 1000);
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
}
