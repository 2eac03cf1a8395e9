//! Publishing JSON lines of notifications to an AMQP exchange, behind
//! `winchester publish`: for replaying archived notifications into a broker
//! (and for demos and tests), the way an OpenStack service sends them.
//!
//! Each non-blank line must be a JSON object (a raw notification, oslo v2
//! envelopes included); it is published unchanged as one persistent message
//! (`delivery_mode` 2, `content_type` `application/json`, `message_id` taken
//! from the notification's `message_id`, looked up inside an envelope too)
//! to [`PublishTarget::exchange`] with [`PublishTarget::routing_key`]. The
//! exchange is declared first (an exchange that exists with other settings
//! makes the broker refuse with `PRECONDITION_FAILED`, so
//! [`PublishTarget::durable`] and [`PublishTarget::exchange_type`] must match
//! it).
//!
//! Publisher confirms are on: a line counts as published only once the broker
//! has confirmed it. Messages are published `mandatory`, so the broker returns
//! those no queue is bound for; they are counted as
//! [`PublishReport::unroutable`] (the broker drops them). Lines that are not
//! JSON objects, and messages the broker refuses (nack), are listed in
//! [`PublishReport::rejected`] with their line numbers; the other lines are
//! still published.
//!
//! ```no_run
//! # async fn demo() -> Result<(), winchester_amqp::publish::PublishError> {
//! use winchester_amqp::publish::{PublishTarget, Publisher};
//! let file = tokio::fs::File::open("archive.jsonl").await.map_err(winchester_amqp::publish::PublishError::Input)?;
//! let publisher = Publisher::connect(PublishTarget::default()).await?;
//! let report = publisher.publish_lines(tokio::io::BufReader::new(file)).await?;
//! publisher.close().await;
//! print!("{}", report.render());
//! # Ok(()) }
//! ```

use crate::{exchange_kind, timed, PERSISTENT};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, PublisherConfirm};
use std::collections::VecDeque;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};
use winchester_core::amqp_ingest::DEFAULT_URL;
use winchester_core::config::redact_url as redact;

/// Messages published before the oldest confirm is waited for.
const CONFIRM_WINDOW: usize = 1000;

/// Why publishing stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The target cannot be used (a name longer than AMQP allows).
    #[error("{0}")]
    Target(String),
    /// Connecting to the broker failed.
    #[error("cannot connect to AMQP broker {url}: {reason}")]
    Connect {
        /// The broker URL, password hidden.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The broker refused an operation or the connection was lost; messages
    /// published but not yet confirmed may or may not have arrived.
    #[error("AMQP broker: {0}")]
    Broker(String),
    /// Reading the input failed.
    #[error("cannot read input: {0}")]
    Input(#[source] std::io::Error),
}

/// Where messages go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishTarget {
    /// Broker URL (default `amqp://guest:guest@127.0.0.1:5672/%2f`).
    pub url: String,
    /// Exchange to publish to (default `nova`); declared first. Empty: the
    /// default exchange (not declared), which routes by queue name.
    pub exchange: String,
    /// Its type when declared (default `topic`).
    pub exchange_type: String,
    /// Declare it durable (default true).
    pub durable: bool,
    /// Routing key of every message (default `notifications.info`).
    pub routing_key: String,
}

impl Default for PublishTarget {
    fn default() -> Self {
        PublishTarget {
            url: DEFAULT_URL.into(),
            exchange: "nova".into(),
            exchange_type: "topic".into(),
            durable: true,
            routing_key: "notifications.info".into(),
        }
    }
}

/// What a run published.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishReport {
    /// Messages the broker confirmed (unroutable ones included).
    pub published: u64,
    /// Confirmed messages the broker returned because no queue was bound for
    /// them (it drops them).
    pub unroutable: u64,
    /// Lines not published: (line number from 1, reason).
    pub rejected: Vec<(u64, String)>,
    /// Exchange and routing key, for the report.
    target: (String, String),
}

impl PublishReport {
    /// Whether every line was published and routed to some queue.
    pub fn is_clean(&self) -> bool {
        self.rejected.is_empty() && self.unroutable == 0
    }

    /// `published: N`, then the unroutable count and the rejected lines if any.
    pub fn render(&self) -> String {
        let mut s = format!("published: {}\n", self.published);
        if self.unroutable > 0 {
            s.push_str(&format!(
                "unroutable: {} (no queue is bound to exchange {:?} for routing key {:?}; the broker dropped them)\n",
                self.unroutable, self.target.0, self.target.1
            ));
        }
        if !self.rejected.is_empty() {
            s.push_str(&format!("rejected: {}\n", self.rejected.len()));
            for (line, reason) in &self.rejected {
                s.push_str(&format!("  line {line}: {reason}\n"));
            }
        }
        s
    }
}

/// A connection with a confirming channel and a declared exchange.
#[derive(Debug)]
pub struct Publisher {
    conn: Connection,
    ch: Channel,
    target: PublishTarget,
}

impl Publisher {
    /// Connects, enables publisher confirms and declares the exchange.
    pub async fn connect(target: PublishTarget) -> Result<Publisher, PublishError> {
        for (what, name) in [
            ("exchange", &target.exchange),
            ("exchange type", &target.exchange_type),
            ("routing key", &target.routing_key),
        ] {
            if ShortString::try_new(name.as_str()).is_err() {
                return Err(PublishError::Target(format!("{what} {name:?} is longer than 255 bytes")));
            }
        }
        let props = ConnectionProperties::default().with_connection_name("winchester-publish".into());
        let conn = timed("connect", Connection::connect(&target.url, props))
            .await
            .map_err(|reason| PublishError::Connect { url: redact(&target.url), reason })?;
        let ch = timed("channel.open", conn.create_channel()).await.map_err(PublishError::Broker)?;
        timed("confirm.select", ch.confirm_select(ConfirmSelectOptions::default()))
            .await
            .map_err(PublishError::Broker)?;
        if !target.exchange.is_empty() {
            let opts = ExchangeDeclareOptions { durable: target.durable, ..Default::default() };
            timed(
                &format!(
                    "exchange.declare {:?} ({}, durable: {})",
                    target.exchange, target.exchange_type, target.durable
                ),
                ch.exchange_declare(
                    target.exchange.as_str().into(),
                    exchange_kind(&target.exchange_type),
                    opts,
                    FieldTable::default(),
                ),
            )
            .await
            .map_err(PublishError::Broker)?;
        }
        Ok(Publisher { conn, ch, target })
    }

    /// Publishes every non-blank line of `input` and waits for the broker's
    /// confirms. Lines that are not JSON objects are rejected (listed in the
    /// report), the others published.
    pub async fn publish_lines<R: AsyncBufRead + Unpin>(&self, mut input: R) -> Result<PublishReport, PublishError> {
        let mut report = PublishReport {
            target: (self.target.exchange.clone(), self.target.routing_key.clone()),
            ..Default::default()
        };
        let mut pending: VecDeque<(u64, PublisherConfirm)> = VecDeque::with_capacity(CONFIRM_WINDOW);
        let mut buf = Vec::new();
        let mut line_no = 0u64;
        loop {
            buf.clear();
            if input.read_until(b'\n', &mut buf).await.map_err(PublishError::Input)? == 0 {
                break;
            }
            line_no += 1;
            let body = buf.trim_ascii();
            if body.is_empty() {
                continue;
            }
            let value = match serde_json::from_slice::<serde_json::Value>(body) {
                Ok(v @ serde_json::Value::Object(_)) => v,
                Ok(other) => {
                    report.rejected.push((line_no, format!("not a JSON object: {}", kind(&other))));
                    continue;
                }
                Err(e) => {
                    report.rejected.push((line_no, format!("invalid JSON: {e}")));
                    continue;
                }
            };
            let mut props =
                BasicProperties::default().with_delivery_mode(PERSISTENT).with_content_type("application/json".into());
            if let Some(id) = message_id_in(&value).and_then(|id| ShortString::try_new(id).ok()) {
                props = props.with_message_id(id);
            }
            if pending.len() >= CONFIRM_WINDOW {
                if let Some((line, confirm)) = pending.pop_front() {
                    settle(&mut report, line, confirm).await?;
                }
            }
            let confirm = timed(
                "basic.publish",
                self.ch.basic_publish(
                    self.target.exchange.as_str().into(),
                    self.target.routing_key.as_str().into(),
                    BasicPublishOptions { mandatory: true, ..Default::default() },
                    body,
                    props,
                ),
            )
            .await
            .map_err(PublishError::Broker)?;
            pending.push_back((line_no, confirm));
        }
        while let Some((line, confirm)) = pending.pop_front() {
            settle(&mut report, line, confirm).await?;
        }
        Ok(report)
    }

    /// Closes the connection (every confirm was already awaited).
    pub async fn close(self) {
        let _ = timed("connection.close", self.conn.close(200, "winchester publish done".into())).await;
    }
}

/// Connects to `target`, publishes the lines of `input` and closes.
pub async fn publish_lines<R: AsyncBufRead + Unpin>(
    target: PublishTarget,
    input: R,
) -> Result<PublishReport, PublishError> {
    let publisher = Publisher::connect(target).await?;
    let report = publisher.publish_lines(input).await;
    publisher.close().await;
    report
}

/// Waits for one confirm and counts it.
async fn settle(report: &mut PublishReport, line: u64, confirm: PublisherConfirm) -> Result<(), PublishError> {
    match timed("publisher confirm", confirm).await.map_err(PublishError::Broker)? {
        Confirmation::Ack(returned) => {
            report.published += 1;
            if returned.is_some() {
                report.unroutable += 1;
            }
        }
        Confirmation::Nack(_) => report.rejected.push((line, "the broker refused the message (nack)".into())),
        // confirm.select was acknowledged, so every publish is confirmed.
        Confirmation::NotRequested => report.published += 1,
    }
    Ok(())
}

/// A notification's message_id, looked up inside an oslo v2 envelope too.
fn message_id_in(v: &serde_json::Value) -> Option<String> {
    let id = |v: &serde_json::Value| v.get("message_id").and_then(|m| m.as_str()).map(str::to_string);
    match v.get("oslo.message").and_then(|m| m.as_str()) {
        Some(inner) => serde_json::from_str::<serde_json::Value>(inner).ok().as_ref().and_then(id),
        None => id(v),
    }
}

fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn message_ids_plain_and_enveloped() {
        assert_eq!(message_id_in(&json!({"message_id": "m1"})).as_deref(), Some("m1"));
        assert_eq!(
            message_id_in(&json!({"oslo.version": "2.0", "oslo.message": "{\"message_id\": \"m2\"}"})).as_deref(),
            Some("m2")
        );
        assert_eq!(message_id_in(&json!({"event_type": "x"})), None);
        assert_eq!(message_id_in(&json!({"message_id": 7})), None);
    }

    #[test]
    fn report_lists_problems_only_when_there_are_some() {
        let mut r =
            PublishReport { published: 3, target: ("nova".into(), "notifications.info".into()), ..Default::default() };
        assert_eq!(r.render(), "published: 3\n");
        assert!(r.is_clean());
        r.unroutable = 1;
        r.rejected.push((2, "invalid JSON: expected value at line 1 column 1".into()));
        assert_eq!(
            r.render(),
            "published: 3\nunroutable: 1 (no queue is bound to exchange \"nova\" for routing key \"notifications.info\"; the broker dropped them)\n\
             rejected: 1\n  line 2: invalid JSON: expected value at line 1 column 1\n"
        );
        assert!(!r.is_clean());
    }
}
