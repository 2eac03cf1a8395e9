//! The `amqp_ingest` section of `winchester.yaml`: where `winchester-ingest`
//! consumes notifications from, and how it batches and dead-letters them.
//!
//! ```yaml
//! amqp_ingest:
//!   url: amqp://guest:guest@127.0.0.1:5672/%2f
//!   queues:
//!     - queue: winchester.notifications
//!       exchange: nova
//!       exchange_type: topic
//!       routing_keys: [notifications.info]
//!       durable: true
//!   prefetch: 1000
//!   batch_size: 500
//!   batch_max_wait_ms: 200
//!   dead_letter_exchange: winchester.dead
//!   dead_letter_queue: winchester.dead
//!   dead_letter_uncovered: true
//! ```

use crate::config_error::{show, ConfigError};
use serde_yaml::Value;
use std::time::Duration;

/// Default broker URL.
pub const DEFAULT_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// One queue the daemon consumes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueBinding {
    /// The queue (declared if absent).
    pub queue: String,
    /// The exchange it is bound to (declared if absent); empty: no binding (the
    /// default exchange routes by queue name).
    pub exchange: String,
    /// The exchange's type (default `topic`).
    pub exchange_type: String,
    /// Binding keys (default `[notifications.info]`).
    pub routing_keys: Vec<String>,
    /// Declare the queue and exchange durable (default true).
    pub durable: bool,
}

/// The `amqp_ingest` section, with defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmqpIngestConfig {
    /// Broker URL (default `amqp://guest:guest@127.0.0.1:5672/%2f`).
    pub url: String,
    /// Queues to consume from (default: one queue `winchester.notifications`
    /// bound to exchange `nova` with `notifications.info`).
    pub queues: Vec<QueueBinding>,
    /// Unacknowledged deliveries the broker may send per queue (default 1000).
    pub prefetch: u16,
    /// Most notifications saved per transaction (default 500).
    pub batch_size: usize,
    /// Longest a partial batch waits for more deliveries (default 200 ms).
    pub batch_max_wait: Duration,
    /// Exchange poison messages are published to (default `winchester.dead`).
    pub dead_letter_exchange: String,
    /// Queue bound to it with `#` (default `winchester.dead`).
    pub dead_letter_queue: String,
    /// Dead-letter notifications no event definition covers (default true);
    /// false: acknowledge and count them as dropped, like the original.
    pub dead_letter_uncovered: bool,
}

impl Default for AmqpIngestConfig {
    fn default() -> Self {
        AmqpIngestConfig {
            url: DEFAULT_URL.into(),
            queues: vec![QueueBinding {
                queue: "winchester.notifications".into(),
                exchange: "nova".into(),
                exchange_type: "topic".into(),
                routing_keys: vec!["notifications.info".into()],
                durable: true,
            }],
            prefetch: 1000,
            batch_size: 500,
            batch_max_wait: Duration::from_millis(200),
            dead_letter_exchange: "winchester.dead".into(),
            dead_letter_queue: "winchester.dead".into(),
            dead_letter_uncovered: true,
        }
    }
}

const KEYS: &[&str] = &[
    "url",
    "queues",
    "prefetch",
    "batch_size",
    "batch_max_wait_ms",
    "dead_letter_exchange",
    "dead_letter_queue",
    "dead_letter_uncovered",
];
const QUEUE_KEYS: &[&str] = &["queue", "exchange", "exchange_type", "routing_keys", "durable"];

impl AmqpIngestConfig {
    /// Parses the section's value. Errors name the key (`amqp_ingest.queues[0].queue`);
    /// unknown keys are warnings.
    pub fn from_yaml(v: &Value, warnings: &mut Vec<ConfigError>) -> Result<AmqpIngestConfig, Vec<ConfigError>> {
        let mut cfg = AmqpIngestConfig::default();
        let m = match v {
            Value::Null => return Ok(cfg),
            Value::Mapping(m) => m,
            other => {
                return Err(vec![ConfigError::new(format!("must be a map, found {}", show(other))).key("amqp_ingest")])
            }
        };
        let mut errors = Vec::new();
        for k in m.keys() {
            if !k.as_str().is_some_and(|s| KEYS.contains(&s)) {
                warnings.push(
                    ConfigError::new("unknown key, ignored").key(format!("amqp_ingest.{}", show(k).trim_matches('"'))),
                );
            }
        }
        let key = |k: &str| format!("amqp_ingest.{k}");
        if let Some(s) = string(m.get("url"), &key("url"), &mut errors) {
            if !(s.starts_with("amqp://") || s.starts_with("amqps://")) {
                errors
                    .push(ConfigError::new(format!("must be an amqp:// or amqps:// URL, found {s:?}")).key(key("url")));
            }
            cfg.url = s;
        }
        if let Some(n) = positive(m.get("prefetch"), &key("prefetch"), u16::MAX as u64, &mut errors) {
            cfg.prefetch = n as u16;
        }
        if let Some(n) = positive(m.get("batch_size"), &key("batch_size"), 1_000_000, &mut errors) {
            cfg.batch_size = n as usize;
        }
        match m.get("batch_max_wait_ms") {
            None | Some(Value::Null) => {}
            Some(v) => match v.as_u64().filter(|n| *n <= 3_600_000) {
                Some(n) => cfg.batch_max_wait = Duration::from_millis(n),
                None => errors.push(
                    ConfigError::new(format!("must be a number of milliseconds from 0 to 3600000, found {}", show(v)))
                        .key(key("batch_max_wait_ms")),
                ),
            },
        }
        for (k, slot) in
            [("dead_letter_exchange", &mut cfg.dead_letter_exchange), ("dead_letter_queue", &mut cfg.dead_letter_queue)]
        {
            if let Some(s) = string(m.get(k), &key(k), &mut errors) {
                if s.is_empty() || s.len() > 255 {
                    errors.push(ConfigError::new("must be a name of 1 to 255 bytes").key(key(k)));
                }
                *slot = s;
            }
        }
        match m.get("dead_letter_uncovered") {
            None | Some(Value::Null) => {}
            Some(Value::Bool(b)) => cfg.dead_letter_uncovered = *b,
            Some(other) => errors.push(
                ConfigError::new(format!("must be true or false, found {}", show(other)))
                    .key(key("dead_letter_uncovered")),
            ),
        }
        match m.get("queues") {
            None | Some(Value::Null) => {}
            Some(Value::Sequence(items)) if !items.is_empty() => {
                cfg.queues = items.iter().enumerate().filter_map(|(i, q)| queue(i, q, warnings, &mut errors)).collect();
            }
            Some(other) => errors.push(
                ConfigError::new(format!("must be a non-empty list of queues, found {}", show(other)))
                    .key(key("queues")),
            ),
        }
        if errors.is_empty() {
            Ok(cfg)
        } else {
            Err(errors)
        }
    }
}

fn queue(i: usize, v: &Value, warnings: &mut Vec<ConfigError>, errors: &mut Vec<ConfigError>) -> Option<QueueBinding> {
    let at = |k: &str| format!("amqp_ingest.queues[{i}].{k}");
    let Value::Mapping(m) = v else {
        errors.push(
            ConfigError::new(format!("must be a map with queue, exchange, routing_keys, found {}", show(v)))
                .key(format!("amqp_ingest.queues[{i}]")),
        );
        return None;
    };
    for k in m.keys() {
        if !k.as_str().is_some_and(|s| QUEUE_KEYS.contains(&s)) {
            warnings.push(ConfigError::new("unknown key, ignored").key(at(show(k).trim_matches('"'))));
        }
    }
    let before = errors.len();
    let queue = match string(m.get("queue"), &at("queue"), errors) {
        Some(q) if !q.is_empty() && q.len() <= 255 => q,
        Some(_) => {
            errors.push(ConfigError::new("must be a name of 1 to 255 bytes").key(at("queue")));
            String::new()
        }
        None => {
            errors.push(ConfigError::new("missing required key").key(at("queue")));
            String::new()
        }
    };
    let exchange = string(m.get("exchange"), &at("exchange"), errors).unwrap_or_default();
    if exchange.len() > 255 {
        errors.push(ConfigError::new("must be at most 255 bytes").key(at("exchange")));
    }
    let exchange_type = string(m.get("exchange_type"), &at("exchange_type"), errors).unwrap_or_else(|| "topic".into());
    if exchange_type.is_empty() {
        errors.push(ConfigError::new("must not be empty").key(at("exchange_type")));
    }
    let routing_keys = match m.get("routing_keys") {
        None | Some(Value::Null) => vec!["notifications.info".to_string()],
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Sequence(keys)) => keys
            .iter()
            .filter_map(|k| match k {
                Value::String(s) => Some(s.clone()),
                other => {
                    errors.push(
                        ConfigError::new(format!("entries must be strings, found {}", show(other)))
                            .key(at("routing_keys")),
                    );
                    None
                }
            })
            .collect(),
        Some(other) => {
            errors.push(
                ConfigError::new(format!("must be a list of binding keys, found {}", show(other)))
                    .key(at("routing_keys")),
            );
            vec![]
        }
    };
    let durable = match m.get("durable") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            errors.push(ConfigError::new(format!("must be true or false, found {}", show(other))).key(at("durable")));
            true
        }
    };
    (errors.len() == before).then_some(QueueBinding { queue, exchange, exchange_type, routing_keys, durable })
}

fn string(v: Option<&Value>, key: &str, errors: &mut Vec<ConfigError>) -> Option<String> {
    match v {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            errors.push(ConfigError::new(format!("must be a string, found {}", show(other))).key(key));
            None
        }
    }
}

fn positive(v: Option<&Value>, key: &str, max: u64, errors: &mut Vec<ConfigError>) -> Option<u64> {
    match v {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64().filter(|n| *n >= 1 && *n <= max) {
            Some(n) => Some(n),
            None => {
                errors
                    .push(ConfigError::new(format!("must be an integer from 1 to {max}, found {}", show(v))).key(key));
                None
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<AmqpIngestConfig, Vec<ConfigError>> {
        let v: Value = serde_yaml::from_str(yaml).expect("yaml");
        AmqpIngestConfig::from_yaml(&v, &mut Vec::new())
    }

    #[test]
    fn defaults() {
        let c = parse("~").expect("ok");
        assert_eq!(c, AmqpIngestConfig::default());
        assert_eq!(c.url, DEFAULT_URL);
        assert_eq!(c.prefetch, 1000);
        assert_eq!(c.batch_size, 500);
        assert_eq!(c.batch_max_wait, Duration::from_millis(200));
        assert_eq!(c.dead_letter_exchange, "winchester.dead");
    }

    #[test]
    fn queues_with_defaults() {
        let c = parse("queues: [{queue: q1, exchange: nova}, {queue: q2, exchange: glance, routing_keys: [a, b], durable: false}]\nbatch_size: 10")
            .expect("ok");
        assert_eq!(c.queues.len(), 2);
        assert_eq!(c.queues[0].routing_keys, vec!["notifications.info"]);
        assert_eq!(c.queues[0].exchange_type, "topic");
        assert!(c.queues[0].durable);
        assert_eq!(c.queues[1].routing_keys, vec!["a", "b"]);
        assert!(!c.queues[1].durable);
        assert_eq!(c.batch_size, 10);
    }

    #[test]
    fn errors_name_the_key() {
        let errs = parse(
            "url: http://x\nprefetch: 0\nqueues: [{exchange: nova}, {queue: q, durable: maybe}]\nbatch_max_wait_ms: -1",
        )
        .unwrap_err();
        let keys: Vec<_> = errs.iter().filter_map(|e| e.key.clone()).collect();
        for k in [
            "amqp_ingest.url",
            "amqp_ingest.prefetch",
            "amqp_ingest.queues[0].queue",
            "amqp_ingest.queues[1].durable",
            "amqp_ingest.batch_max_wait_ms",
        ] {
            assert!(keys.iter().any(|x| x == k), "{k} not in {keys:?}");
        }
    }

    /// Every problem, each with its key and what was found; unknown keys warn.
    #[test]
    fn every_error_and_warning_says_where() {
        let v: Value = serde_yaml::from_str(
            "url: 5\nprefetch: 70000\nbatch_size: x\nbatch_max_wait_ms: 3600001\ndead_letter_exchange: ''\n\
             dead_letter_queue: [q]\ndead_letter_uncovered: 1\ncolour: red\n\
             queues:\n  - 7\n  - {queue: '', exchange: 5, exchange_type: '', routing_keys: [a, 1], durable: ~, extra: 1}\n  \
             - {queue: q, routing_keys: {a: b}}\n  - {queue: [q]}\n  - {queue: q, routing_keys: one, durable: false}\n",
        )
        .unwrap();
        let mut warnings = vec![];
        let errors: Vec<String> =
            AmqpIngestConfig::from_yaml(&v, &mut warnings).unwrap_err().iter().map(ToString::to_string).collect();
        assert_eq!(
            errors,
            vec![
                "key \"amqp_ingest.url\": must be a string, found 5",
                "key \"amqp_ingest.prefetch\": must be an integer from 1 to 65535, found 70000",
                "key \"amqp_ingest.batch_size\": must be an integer from 1 to 1000000, found \"x\"",
                "key \"amqp_ingest.batch_max_wait_ms\": must be a number of milliseconds from 0 to 3600000, found 3600001",
                "key \"amqp_ingest.dead_letter_exchange\": must be a name of 1 to 255 bytes",
                "key \"amqp_ingest.dead_letter_queue\": must be a string, found - q",
                "key \"amqp_ingest.dead_letter_uncovered\": must be true or false, found 1",
                "key \"amqp_ingest.queues[0]\": must be a map with queue, exchange, routing_keys, found 7",
                "key \"amqp_ingest.queues[1].queue\": must be a name of 1 to 255 bytes",
                "key \"amqp_ingest.queues[1].exchange\": must be a string, found 5",
                "key \"amqp_ingest.queues[1].exchange_type\": must not be empty",
                "key \"amqp_ingest.queues[1].routing_keys\": entries must be strings, found 1",
                "key \"amqp_ingest.queues[2].routing_keys\": must be a list of binding keys, found a: b",
                "key \"amqp_ingest.queues[3].queue\": must be a string, found - q",
                "key \"amqp_ingest.queues[3].queue\": missing required key",
            ]
        );
        let warnings: Vec<String> = warnings.iter().map(ToString::to_string).collect();
        assert_eq!(
            warnings,
            vec![
                "key \"amqp_ingest.colour\": unknown key, ignored",
                "key \"amqp_ingest.queues[1].extra\": unknown key, ignored",
            ]
        );
        for (yaml, error) in [
            ("[a]", "key \"amqp_ingest\": must be a map, found - a"),
            ("queues: []", "key \"amqp_ingest.queues\": must be a non-empty list of queues, found []"),
            ("url: http://x", "key \"amqp_ingest.url\": must be an amqp:// or amqps:// URL, found \"http://x\""),
        ] {
            let errors = parse(yaml).unwrap_err();
            assert_eq!(errors.iter().map(ToString::to_string).collect::<Vec<_>>(), vec![error.to_string()], "{yaml}");
        }
        let c = parse("queues: [{queue: q, routing_keys: one, durable: false}]\nbatch_max_wait_ms: 0\n").unwrap();
        assert_eq!(c.queues[0].routing_keys, vec!["one"]);
        assert_eq!(c.batch_max_wait, Duration::ZERO);
    }
}
