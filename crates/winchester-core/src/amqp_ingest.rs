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

use crate::config_error::{show, unknown_keys, Checked, ConfigError, Raw, Strings};
use serde::Deserialize;
use serde_yaml::{Mapping, Value};
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

/// The `amqp_ingest` section as written (serde): each value parsed into the
/// type it should have or kept as found (see [`Raw`]); unknown keys in `unknown`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawAmqpIngest {
    url: Option<Raw<String>>,
    queues: Option<Raw<Vec<Raw<RawQueue>>>>,
    prefetch: Option<Raw<u64>>,
    batch_size: Option<Raw<u64>>,
    batch_max_wait_ms: Option<Raw<u64>>,
    dead_letter_exchange: Option<Raw<String>>,
    dead_letter_queue: Option<Raw<String>>,
    dead_letter_uncovered: Option<Raw<bool>>,
    #[serde(flatten)]
    unknown: Mapping,
}

/// One `queues` entry as written.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawQueue {
    queue: Option<Raw<String>>,
    exchange: Option<Raw<String>>,
    exchange_type: Option<Raw<String>>,
    routing_keys: Option<Raw<Strings>>,
    durable: Option<Raw<bool>>,
    #[serde(flatten)]
    unknown: Mapping,
}

/// 1 to 255 bytes: an AMQP short string that names something.
fn is_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 255
}

impl AmqpIngestConfig {
    /// Parses the section's value: read into [`RawAmqpIngest`] (serde), then
    /// validated. Errors name the key (`amqp_ingest.queues[0].queue`); unknown
    /// keys are warnings.
    pub fn from_yaml(v: &Value, warnings: &mut Vec<ConfigError>) -> Result<AmqpIngestConfig, Vec<ConfigError>> {
        let mut cfg = AmqpIngestConfig::default();
        let raw = match v {
            Value::Null => return Ok(cfg),
            Value::Mapping(_) => {
                RawAmqpIngest::deserialize(v).map_err(|e| vec![ConfigError::new(e.to_string()).key("amqp_ingest")])?
            }
            other => {
                return Err(vec![ConfigError::new(format!("must be a map, found {}", show(other))).key("amqp_ingest")])
            }
        };
        warnings.extend(unknown_keys(&raw.unknown, "amqp_ingest."));
        let mut c = Checked::default();
        let key = |k: &str| format!("amqp_ingest.{k}");
        if let Some(s) = c.string(&key("url"), raw.url) {
            if !(s.starts_with("amqp://") || s.starts_with("amqps://")) {
                c.push(&key("url"), format!("must be an amqp:// or amqps:// URL, found {s:?}"));
            }
            cfg.url = s;
        }
        if let Some(n) = c.positive(&key("prefetch"), raw.prefetch, u16::MAX as u64) {
            cfg.prefetch = n as u16;
        }
        if let Some(n) = c.positive(&key("batch_size"), raw.batch_size, 1_000_000) {
            cfg.batch_size = n as usize;
        }
        let wait = "must be a number of milliseconds from 0 to 3600000";
        if let Some(n) = c.get(&key("batch_max_wait_ms"), raw.batch_max_wait_ms, wait, |n| *n <= 3_600_000) {
            cfg.batch_max_wait = Duration::from_millis(n);
        }
        for (k, raw, slot) in [
            ("dead_letter_exchange", raw.dead_letter_exchange, &mut cfg.dead_letter_exchange),
            ("dead_letter_queue", raw.dead_letter_queue, &mut cfg.dead_letter_queue),
        ] {
            if let Some(s) = c.string(&key(k), raw) {
                if !is_name(&s) {
                    c.push(&key(k), "must be a name of 1 to 255 bytes");
                }
                *slot = s;
            }
        }
        cfg.dead_letter_uncovered = c.boolean(&key("dead_letter_uncovered"), raw.dead_letter_uncovered, true);
        if let Some(items) = c.get(&key("queues"), raw.queues, "must be a non-empty list of queues", |q| !q.is_empty())
        {
            cfg.queues = items.into_iter().enumerate().filter_map(|(i, q)| queue(i, q, warnings, &mut c)).collect();
        }
        if c.0.is_empty() {
            Ok(cfg)
        } else {
            Err(c.0)
        }
    }
}

fn queue(i: usize, raw: Raw<RawQueue>, warnings: &mut Vec<ConfigError>, c: &mut Checked) -> Option<QueueBinding> {
    let at = |k: &str| format!("amqp_ingest.queues[{i}].{k}");
    // serde would read null as an empty map.
    let is_map = raw.found.is_mapping();
    let m = c.get(
        &format!("amqp_ingest.queues[{i}]"),
        Some(raw),
        "must be a map with queue, exchange, routing_keys",
        |_| is_map,
    )?;
    warnings.extend(unknown_keys(&m.unknown, &format!("amqp_ingest.queues[{i}].")).collect::<Vec<_>>());
    let before = c.0.len();
    let queue = match c.string(&at("queue"), m.queue) {
        Some(q) if is_name(&q) => q,
        Some(_) => {
            c.push(&at("queue"), "must be a name of 1 to 255 bytes");
            String::new()
        }
        None => {
            c.push(&at("queue"), "missing required key");
            String::new()
        }
    };
    let exchange = c.string(&at("exchange"), m.exchange).unwrap_or_default();
    if exchange.len() > 255 {
        c.push(&at("exchange"), "must be at most 255 bytes");
    }
    let exchange_type = c.string(&at("exchange_type"), m.exchange_type).unwrap_or_else(|| "topic".into());
    if exchange_type.is_empty() {
        c.push(&at("exchange_type"), "must not be empty");
    }
    let routing_keys = match m.routing_keys {
        None => vec!["notifications.info".to_string()],
        raw => c.strings(&at("routing_keys"), raw, "must be a list of binding keys").unwrap_or_default(),
    };
    let durable = c.boolean(&at("durable"), m.durable, true);
    (c.0.len() == before).then_some(QueueBinding { queue, exchange, exchange_type, routing_keys, durable })
}

impl Checked {
    /// An integer from 1 to `max`.
    fn positive(&mut self, key: &str, raw: Option<Raw<u64>>, max: u64) -> Option<u64> {
        self.get(key, raw, &format!("must be an integer from 1 to {max}"), |n| (1..=max).contains(n))
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
            (
                "queues: [~]",
                "key \"amqp_ingest.queues[0]\": must be a map with queue, exchange, routing_keys, found null",
            ),
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
