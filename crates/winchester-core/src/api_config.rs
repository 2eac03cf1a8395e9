//! The `api` section of `winchester.yaml` (`winchester serve`) and the
//! top-level `metrics_listen` key.
//!
//! ```yaml
//! api:
//!   listen: 127.0.0.1:8080     # default
//!   token_file: api-token      # or token: "..."; needed for PUT/DELETE/POST
//!   read_only: false           # true: every mutating request gets 403
//!   ingest_max_body_bytes: 8388608   # POST /v1/events: larger bodies get 413
//!   ingest_queue_limit: 20000  # events waiting for their commit before POST /v1/events answers 429
//! metrics_listen: 127.0.0.1:9464   # pipeline-worker and winchester-ingest serve /metrics here
//! ```

use crate::config_error::{show, ConfigError};
use serde_yaml::Value;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Default address of `winchester serve`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

const KEYS: &[&str] = &["listen", "token", "token_file", "read_only", "ingest_max_body_bytes", "ingest_queue_limit"];

/// Default of `api.ingest_max_body_bytes`: 8 MiB.
pub const DEFAULT_INGEST_MAX_BODY: usize = 8 * 1024 * 1024;
/// Default of `api.ingest_queue_limit`, in events.
pub const DEFAULT_INGEST_QUEUE_LIMIT: usize = 20_000;

/// `winchester serve`'s settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Bearer token mutating requests must carry.
    pub token: Option<String>,
    /// File holding the token (relative to the config file); read at start.
    pub token_file: Option<PathBuf>,
    /// Refuse every mutating request.
    pub read_only: bool,
    /// Largest body `POST /v1/events` accepts (413 beyond).
    pub ingest_max_body_bytes: usize,
    /// Most events waiting for their commit; a `POST /v1/events` that would
    /// go over gets 429 (a request arriving at an empty queue is always taken).
    pub ingest_queue_limit: usize,
}

impl Default for ApiConfig {
    fn default() -> ApiConfig {
        ApiConfig {
            listen: DEFAULT_LISTEN.parse().expect("valid default"),
            token: None,
            token_file: None,
            read_only: false,
            ingest_max_body_bytes: DEFAULT_INGEST_MAX_BODY,
            ingest_queue_limit: DEFAULT_INGEST_QUEUE_LIMIT,
        }
    }
}

/// Parses an address key (`host:port`).
pub fn socket_addr(v: Option<&Value>, key: &str, errors: &mut Vec<ConfigError>) -> Option<SocketAddr> {
    match v {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match s.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                errors.push(ConfigError::new(format!("must be an address like 127.0.0.1:8080, found {s:?}")).key(key));
                None
            }
        },
        Some(other) => {
            errors.push(
                ConfigError::new(format!("must be an address like 127.0.0.1:8080, found {}", show(other))).key(key),
            );
            None
        }
    }
}

impl ApiConfig {
    /// Parses the section; `base` is the config file's directory.
    pub fn from_yaml(
        v: &Value,
        base: &std::path::Path,
        warnings: &mut Vec<ConfigError>,
    ) -> Result<ApiConfig, Vec<ConfigError>> {
        let mut cfg = ApiConfig::default();
        let m = match v {
            Value::Null => return Ok(cfg),
            Value::Mapping(m) => m,
            other => return Err(vec![ConfigError::new(format!("must be a map, found {}", show(other))).key("api")]),
        };
        let mut errors = Vec::new();
        for k in m.keys() {
            if !k.as_str().is_some_and(|s| KEYS.contains(&s)) {
                warnings
                    .push(ConfigError::new("unknown key, ignored").key(format!("api.{}", show(k).trim_matches('"'))));
            }
        }
        if let Some(a) = socket_addr(m.get("listen"), "api.listen", &mut errors) {
            cfg.listen = a;
        }
        for key in ["token", "token_file"] {
            match m.get(key) {
                None | Some(Value::Null) => {}
                Some(Value::String(s)) if !s.trim().is_empty() => {
                    if key == "token" {
                        cfg.token = Some(s.clone());
                    } else {
                        cfg.token_file = Some(base.join(s));
                    }
                }
                Some(other) => errors.push(
                    ConfigError::new(format!("must be a non-empty string, found {}", show(other)))
                        .key(format!("api.{key}")),
                ),
            }
        }
        if cfg.token.is_some() && cfg.token_file.is_some() {
            errors.push(ConfigError::new("give token or token_file, not both").key("api"));
        }
        match m.get("read_only") {
            None | Some(Value::Null) => {}
            Some(Value::Bool(b)) => cfg.read_only = *b,
            Some(other) => errors
                .push(ConfigError::new(format!("must be true or false, found {}", show(other))).key("api.read_only")),
        }
        for (key, slot) in [
            ("ingest_max_body_bytes", &mut cfg.ingest_max_body_bytes),
            ("ingest_queue_limit", &mut cfg.ingest_queue_limit),
        ] {
            match m.get(key) {
                None | Some(Value::Null) => {}
                Some(Value::Number(n)) if n.as_u64().is_some_and(|n| n >= 1) => {
                    *slot = usize::try_from(n.as_u64().unwrap_or(1)).unwrap_or(usize::MAX)
                }
                Some(other) => errors.push(
                    ConfigError::new(format!("must be a whole number of at least 1, found {}", show(other)))
                        .key(format!("api.{key}")),
                ),
            }
        }
        if errors.is_empty() {
            Ok(cfg)
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn parse(yaml: &str) -> Result<ApiConfig, Vec<ConfigError>> {
        let v: Value = serde_yaml::from_str(yaml).unwrap();
        ApiConfig::from_yaml(&v, Path::new("/etc/winchester"), &mut Vec::new())
    }

    #[test]
    fn defaults_values_and_errors() {
        assert_eq!(parse("~").unwrap(), ApiConfig::default());
        let c = parse("{listen: '0.0.0.0:9000', token_file: tok, read_only: true}").unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.token_file.as_deref(), Some(Path::new("/etc/winchester/tok")));
        assert!(c.read_only);
        let text = |y: &str| parse(y).unwrap_err().iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n");
        assert!(text("{listen: 'nope'}").contains("api.listen"));
        assert!(text("{token: x, token_file: y}").contains("not both"));
        assert!(text("{token: ''}").contains("api.token"));
        assert!(text("{read_only: maybe}").contains("api.read_only"));
        assert!(text("[1]").contains("api"));
        assert!(text("{ingest_max_body_bytes: 0}").contains("api.ingest_max_body_bytes"));
        assert!(text("{ingest_queue_limit: lots}").contains("api.ingest_queue_limit"));
        let c = parse("{ingest_max_body_bytes: 1024, ingest_queue_limit: 50}").unwrap();
        assert_eq!((c.ingest_max_body_bytes, c.ingest_queue_limit), (1024, 50));
        let mut w = Vec::new();
        ApiConfig::from_yaml(&serde_yaml::from_str("{listn: x}").unwrap(), Path::new("."), &mut w).unwrap();
        assert!(w[0].to_string().contains("api.listn"));
    }
}
