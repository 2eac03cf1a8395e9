//! The AMQP ingest daemon behind `winchester-ingest`: consumes raw OpenStack
//! notifications from RabbitMQ queues and saves them through
//! [`TriggerManager::add_notifications`], losing nothing.
//!
//! Guarantees:
//! - **Ack after commit.** Deliveries are collected into batches (up to
//!   `batch_size`, or whatever arrived within `batch_max_wait`); a batch is saved
//!   in one transaction and only then are its deliveries acknowledged. A crash
//!   before the ack makes the broker redeliver, and the redelivered notification
//!   is absorbed by `message_id` dedup.
//! - **Poison is set aside, never dropped.** A body that is not JSON, or a
//!   notification that cannot be distilled or is invalid, is published (with
//!   publisher confirms) to the dead-letter exchange with the reason in header
//!   `x-winchester-reason`, then acknowledged, so it never blocks the queue.
//! - **Database trouble** (retryable storage errors): the batch is retried in
//!   place with backoff; nothing is acknowledged until it commits.
//! - **Broker trouble**: the connection is dropped and made again with
//!   exponential backoff (1 s doubling, at most 30 s), topology declared again.
//! - **Stop** (the `shutdown` future): no new batch is started; the batch in hand
//!   is committed and acknowledged; the connection is closed.
//!
//! The [`publish`] module is the other direction: JSON lines of notifications
//! published to an exchange (`winchester publish`), for replaying archives.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod publish;

use futures::stream::{SelectAll, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use winchester::{EventOutcome, TriggerManager};
use winchester_core::amqp_ingest::{AmqpIngestConfig, QueueBinding};
use winchester_core::config::redact_url as redact;

/// Header carrying why a message was dead-lettered.
pub const REASON_HEADER: &str = "x-winchester-reason";
/// Header carrying the routing key the message arrived with.
pub const ROUTING_KEY_HEADER: &str = "x-original-routing-key";
/// Header carrying the exchange the message arrived through.
pub const EXCHANGE_HEADER: &str = "x-original-exchange";
/// Header carrying the queue the message was consumed from.
pub const QUEUE_HEADER: &str = "x-original-queue";

/// Longest wait for connecting or for one broker operation.
const BROKER_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest pause between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// AMQP delivery mode of persistent messages.
const PERSISTENT: u8 = 2;

/// Why the daemon stopped with an error (broker and database trouble are
/// retried, so this is only for things that cannot get better by waiting).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AmqpIngestError {
    /// The configuration cannot be used.
    #[error("amqp_ingest: {0}")]
    Config(String),
    /// The database refused a batch for a reason that will not go away.
    #[error("cannot save notifications: {0}")]
    Engine(#[from] winchester::EngineError),
}

/// Counters since the daemon started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestStats {
    /// Deliveries received (redeliveries included).
    pub received: u64,
    /// Events saved.
    pub saved: u64,
    /// Notifications whose message_id was already stored.
    pub duplicates: u64,
    /// Messages published to the dead-letter exchange.
    pub dead_lettered: u64,
    /// Notifications no definition covers, acknowledged without saving
    /// (only with `dead_letter_uncovered: false`).
    pub dropped: u64,
    /// Connections made to the broker.
    pub connections: u64,
}

/// The daemon: a trigger manager (with a distiller) fed from AMQP queues.
#[derive(Debug)]
pub struct AmqpIngest {
    cfg: AmqpIngestConfig,
    tm: TriggerManager,
    statistics_period: Duration,
    stats: IngestStats,
}

/// One delivery with the queue it came from.
struct Item {
    queue: usize,
    delivery: lapin::message::Delivery,
}

type Deliveries =
    SelectAll<Pin<Box<dyn futures::Stream<Item = (usize, lapin::Result<lapin::message::Delivery>)> + Send>>>;

/// A live connection with its channels.
struct Session {
    conn: Connection,
    dead: Channel,
    deliveries: Deliveries,
}

/// Why a session ended.
enum SessionEnd {
    /// Asked to stop; the batch in hand was finished.
    Stopped,
    /// The broker went away (or refused something): reconnect.
    Broker(String),
}

impl AmqpIngest {
    /// A daemon for `cfg` saving through `tm`, which must have a distiller.
    pub fn new(
        cfg: AmqpIngestConfig,
        tm: TriggerManager,
        statistics_period: Duration,
    ) -> Result<AmqpIngest, AmqpIngestError> {
        if cfg.queues.is_empty() {
            return Err(AmqpIngestError::Config("no queues configured".into()));
        }
        for q in &cfg.queues {
            for name in [&q.queue, &q.exchange].into_iter().chain(q.routing_keys.iter()) {
                if ShortString::try_new(name.as_str()).is_err() {
                    return Err(AmqpIngestError::Config(format!("name {name:?} is longer than 255 bytes")));
                }
            }
        }
        Ok(AmqpIngest { cfg, tm, statistics_period, stats: IngestStats::default() })
    }

    /// Counters so far.
    pub fn stats(&self) -> &IngestStats {
        &self.stats
    }

    /// Consumes until `shutdown` completes, then finishes the batch in hand,
    /// closes the connection and returns the counters.
    pub async fn run(
        mut self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<IngestStats, AmqpIngestError> {
        let (stop_tx, mut stop) = watch::channel(false);
        let watcher = tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let mut backoff = Duration::from_secs(1);
        let mut last_stats = (Instant::now(), self.stats.clone());
        let result = loop {
            if *stop.borrow() {
                break Ok(());
            }
            let session = tokio::select! {
                s = self.connect() => s,
                _ = stop.changed() => break Ok(()),
            };
            let session = match session {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(broker = %redact(&self.cfg.url), error = %e, "AMQP broker unavailable; retrying in {backoff:?}.");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {},
                        _ = stop.changed() => {},
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            self.stats.connections += 1;
            tracing::info!(broker = %redact(&self.cfg.url), queues = ?self.cfg.queues.iter().map(|q| q.queue.as_str()).collect::<Vec<_>>(), "Consuming notifications.");
            let started = Instant::now();
            match self.consume(session, &mut stop, &mut last_stats).await {
                Ok(SessionEnd::Stopped) => break Ok(()),
                Ok(SessionEnd::Broker(e)) => {
                    winchester::metrics::amqp_reconnect();
                    if started.elapsed() > MAX_BACKOFF {
                        backoff = Duration::from_secs(1);
                    }
                    tracing::warn!(error = %e, "Lost the AMQP broker; unacknowledged messages will be redelivered. Reconnecting in {backoff:?}.");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {},
                        _ = stop.changed() => {},
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(e) => break Err(e),
            }
        };
        watcher.abort();
        self.log_stats(&mut last_stats);
        result.map(|_| self.stats)
    }

    /// Connects, declares the dead-letter exchange and queue and every consumed
    /// queue with its bindings, and starts consuming.
    async fn connect(&self) -> Result<Session, String> {
        let props = ConnectionProperties::default().with_connection_name("winchester-ingest".into());
        let conn = timed("connect", Connection::connect(&self.cfg.url, props)).await?;
        let dead = timed("channel.open", conn.create_channel()).await?;
        timed("confirm.select", dead.confirm_select(ConfirmSelectOptions::default())).await?;
        let durable = ExchangeDeclareOptions { durable: true, ..Default::default() };
        timed(
            "exchange.declare (dead letters)",
            dead.exchange_declare(
                self.cfg.dead_letter_exchange.as_str().into(),
                ExchangeKind::Topic,
                durable,
                FieldTable::default(),
            ),
        )
        .await?;
        let qdurable = QueueDeclareOptions { durable: true, ..Default::default() };
        timed(
            "queue.declare (dead letters)",
            dead.queue_declare(self.cfg.dead_letter_queue.as_str().into(), qdurable, FieldTable::default()),
        )
        .await?;
        timed(
            "queue.bind (dead letters)",
            dead.queue_bind(
                self.cfg.dead_letter_queue.as_str().into(),
                self.cfg.dead_letter_exchange.as_str().into(),
                "#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            ),
        )
        .await?;
        let mut deliveries: Deliveries = SelectAll::new();
        for (i, q) in self.cfg.queues.iter().enumerate() {
            let ch = timed("channel.open", conn.create_channel()).await?;
            timed("basic.qos", ch.basic_qos(self.cfg.prefetch, BasicQosOptions::default())).await?;
            declare_queue(&ch, q).await?;
            let tag = format!("winchester-ingest-{}-{i}", std::process::id());
            let consumer = timed(
                "basic.consume",
                ch.basic_consume(
                    q.queue.as_str().into(),
                    tag.as_str().into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                ),
            )
            .await?;
            deliveries.push(Box::pin(consumer.map(move |d| (i, d))));
        }
        Ok(Session { conn, dead, deliveries })
    }

    /// Runs batches on one connection until it fails or a stop is asked for.
    async fn consume(
        &mut self,
        mut s: Session,
        stop: &mut watch::Receiver<bool>,
        last_stats: &mut (Instant, IngestStats),
    ) -> Result<SessionEnd, AmqpIngestError> {
        let tick = self.statistics_period.max(Duration::from_millis(100));
        let end = loop {
            if *stop.borrow() {
                break SessionEnd::Stopped;
            }
            // Wait for the first delivery of a batch.
            let first = tokio::select! {
                d = s.deliveries.next() => d,
                _ = stop.changed() => break SessionEnd::Stopped,
                _ = tokio::time::sleep(tick) => {
                    self.maybe_log_stats(last_stats);
                    continue;
                }
            };
            let mut batch = Vec::with_capacity(self.cfg.batch_size);
            let mut broken = None;
            match first {
                Some((queue, Ok(delivery))) => batch.push(Item { queue, delivery }),
                Some((_, Err(e))) => break SessionEnd::Broker(e.to_string()),
                None => break SessionEnd::Broker("every consumer was cancelled".into()),
            }
            // Fill it up to batch_size or until batch_max_wait has passed.
            let deadline = tokio::time::Instant::now() + self.cfg.batch_max_wait;
            let mut stopping = false;
            while batch.len() < self.cfg.batch_size {
                tokio::select! {
                    d = s.deliveries.next() => match d {
                        Some((queue, Ok(delivery))) => batch.push(Item { queue, delivery }),
                        Some((_, Err(e))) => { broken = Some(e.to_string()); break; }
                        None => { broken = Some("every consumer was cancelled".into()); break; }
                    },
                    _ = tokio::time::sleep_until(deadline) => break,
                    _ = stop.changed() => { stopping = true; break; }
                }
            }
            self.stats.received += batch.len() as u64;
            // A broken channel cannot ack: leave the batch for redelivery.
            if let Some(e) = broken {
                break SessionEnd::Broker(e);
            }
            match self.handle_batch(&s, batch, stop).await? {
                Ok(()) => {}
                Err(e) => break SessionEnd::Broker(e),
            }
            self.maybe_log_stats(last_stats);
            if stopping {
                break SessionEnd::Stopped;
            }
        };
        // Prefetched deliveries not yet handled go back to their queues when the
        // connection closes.
        let _ =
            tokio::time::timeout(Duration::from_secs(5), s.conn.close(200, "winchester-ingest stopping".into())).await;
        Ok(end)
    }

    /// Saves a batch, dead-letters its poison, then acknowledges every delivery.
    /// Outer error: fatal; inner error: broker trouble (nothing acknowledged).
    async fn handle_batch(
        &mut self,
        s: &Session,
        batch: Vec<Item>,
        stop: &watch::Receiver<bool>,
    ) -> Result<Result<(), String>, AmqpIngestError> {
        let mut dead: Vec<(usize, String)> = Vec::new();
        let mut notifications = Vec::with_capacity(batch.len());
        let mut slots = Vec::with_capacity(batch.len());
        for (k, item) in batch.iter().enumerate() {
            match serde_json::from_slice::<serde_json::Value>(&item.delivery.data) {
                Ok(v) => {
                    notifications.push(v);
                    slots.push(k);
                }
                Err(e) => {
                    winchester::metrics::amqp_dead_lettered("not_json", 1);
                    dead.push((k, format!("body is not JSON: {e}")))
                }
            }
        }
        let outcomes = match self.save(&notifications, stop).await? {
            Some(o) => o,
            // Asked to stop while the database is down: leave the batch unacknowledged.
            None => return Ok(Err("stopping while the database is unavailable".into())),
        };
        for (k, outcome) in slots.into_iter().zip(outcomes) {
            match outcome {
                EventOutcome::Saved { .. } => self.stats.saved += 1,
                EventOutcome::Duplicate => self.stats.duplicates += 1,
                EventOutcome::Undistilled { event_type } => {
                    if self.cfg.dead_letter_uncovered {
                        winchester::metrics::amqp_dead_lettered("undistilled", 1);
                        dead.push((k, format!("no event definition covers event_type {event_type:?}")));
                    } else {
                        self.stats.dropped += 1;
                    }
                }
                EventOutcome::Rejected(e) => {
                    winchester::metrics::amqp_dead_lettered("invalid", 1);
                    dead.push((k, format!("invalid event: {e}")))
                }
                EventOutcome::DistillFailed(e) => {
                    winchester::metrics::amqp_dead_lettered("distill_failed", 1);
                    dead.push((k, format!("cannot distill: {e}")))
                }
                EventOutcome::Failed(reason) => {
                    winchester::metrics::amqp_dead_lettered("database", 1);
                    dead.push((k, format!("not saved: {reason}")))
                }
            }
        }
        // Dead letters first (confirmed by the broker), then every ack.
        dead.sort();
        let mut confirms = Vec::with_capacity(dead.len());
        for (k, reason) in &dead {
            let item = &batch[*k];
            let mid = message_id_of(&item.delivery.data);
            tracing::warn!(queue = %self.cfg.queues[item.queue].queue, message_id = mid.as_deref().unwrap_or("?"), %reason, "Dead-lettering message.");
            let confirm = match self.publish_dead(s, item, reason).await {
                Ok(c) => c,
                Err(e) => return Ok(Err(e)),
            };
            confirms.push(confirm);
        }
        for c in confirms {
            match timed("dead-letter confirm", c).await {
                Ok(conf) if conf.is_ack() => {}
                Ok(_) => return Ok(Err("the broker refused a dead letter".into())),
                Err(e) => return Ok(Err(e)),
            }
        }
        self.stats.dead_lettered += dead.len() as u64;
        let acks =
            futures::future::join_all(batch.iter().map(|i| i.delivery.acker.ack(BasicAckOptions::default()))).await;
        for a in acks {
            match a {
                Ok(true) => {}
                Ok(false) => return Ok(Err("channel closed before the batch was acknowledged".into())),
                Err(e) => return Ok(Err(format!("basic.ack: {e}"))),
            }
        }
        Ok(Ok(()))
    }

    /// Saves notifications, retrying while the database is unavailable. `None`:
    /// stopped while waiting for the database.
    async fn save(
        &self,
        notifications: &[serde_json::Value],
        stop: &watch::Receiver<bool>,
    ) -> Result<Option<Vec<EventOutcome>>, AmqpIngestError> {
        if notifications.is_empty() {
            return Ok(Some(vec![]));
        }
        let mut retry = winchester::storage::RetryPolicy::new();
        loop {
            let backoff = match self.tm.add_notifications(notifications).await {
                Ok(o) => {
                    retry.succeeded();
                    return Ok(Some(o));
                }
                Err(winchester::EngineError::Storage(e)) if e.is_retryable() => {
                    retry.failed("saving a batch; nothing acknowledged", &e)
                }
                Err(e) if notifications.len() > 1 => {
                    // One notification sinks the batch for good: save them one by
                    // one so the others go through and it is dead-lettered.
                    tracing::warn!(error = %e, "Batch refused; saving its notifications one by one.");
                    let mut out = Vec::with_capacity(notifications.len());
                    for n in notifications {
                        match Box::pin(self.save(std::slice::from_ref(n), stop)).await? {
                            Some(mut o) => out.push(o.pop().unwrap_or(EventOutcome::Duplicate)),
                            None => return Ok(None),
                        }
                    }
                    return Ok(Some(out));
                }
                Err(e) => return Ok(Some(vec![EventOutcome::Failed(e.to_string())])),
            };
            if *stop.borrow() {
                return Ok(None);
            }
            tokio::time::sleep(backoff).await;
        }
    }

    async fn publish_dead(&self, s: &Session, item: &Item, reason: &str) -> Result<lapin::PublisherConfirm, String> {
        let d = &item.delivery;
        let mut headers = d.properties.headers().clone().unwrap_or_default();
        let text = |v: &str| AMQPValue::LongString(LongString::from(v.as_bytes().to_vec()));
        headers.insert(REASON_HEADER.into(), text(&truncate(reason, 4000)));
        headers.insert(ROUTING_KEY_HEADER.into(), text(d.routing_key.as_str()));
        headers.insert(EXCHANGE_HEADER.into(), text(d.exchange.as_str()));
        headers.insert(QUEUE_HEADER.into(), text(&self.cfg.queues[item.queue].queue));
        let props: BasicProperties = d.properties.clone().with_headers(headers).with_delivery_mode(PERSISTENT);
        timed(
            "basic.publish (dead letter)",
            s.dead.basic_publish(
                self.cfg.dead_letter_exchange.as_str().into(),
                d.routing_key.clone(),
                BasicPublishOptions::default(),
                &d.data,
                props,
            ),
        )
        .await
    }

    fn maybe_log_stats(&self, last: &mut (Instant, IngestStats)) {
        if last.0.elapsed() >= self.statistics_period {
            self.log_stats(last);
        }
    }

    fn log_stats(&self, last: &mut (Instant, IngestStats)) {
        let (now, prev) = (&self.stats, &last.1);
        if now != prev {
            let received = now.received - prev.received;
            let saved = now.saved - prev.saved;
            let duplicates = now.duplicates - prev.duplicates;
            let dead_lettered = now.dead_lettered - prev.dead_lettered;
            tracing::info!(
                received,
                saved,
                duplicates,
                dead_lettered,
                dropped = now.dropped - prev.dropped,
                "Received {received} notifications. Saved {saved} events. {duplicates} duplicates, {dead_lettered} dead-lettered."
            );
        }
        *last = (Instant::now(), self.stats.clone());
    }
}

/// Declares a consumed queue, its exchange and bindings.
async fn declare_queue(ch: &Channel, q: &QueueBinding) -> Result<(), String> {
    if !q.exchange.is_empty() {
        let opts = ExchangeDeclareOptions { durable: q.durable, ..Default::default() };
        timed(
            &format!("exchange.declare {:?}", q.exchange),
            ch.exchange_declare(
                q.exchange.as_str().into(),
                exchange_kind(&q.exchange_type),
                opts,
                FieldTable::default(),
            ),
        )
        .await?;
    }
    let opts = QueueDeclareOptions { durable: q.durable, ..Default::default() };
    timed(
        &format!("queue.declare {:?}", q.queue),
        ch.queue_declare(q.queue.as_str().into(), opts, FieldTable::default()),
    )
    .await?;
    if !q.exchange.is_empty() {
        for key in &q.routing_keys {
            timed(
                &format!("queue.bind {:?} to {:?} with {key:?}", q.queue, q.exchange),
                ch.queue_bind(
                    q.queue.as_str().into(),
                    q.exchange.as_str().into(),
                    key.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                ),
            )
            .await?;
        }
    }
    Ok(())
}

fn exchange_kind(t: &str) -> ExchangeKind {
    match t {
        "topic" => ExchangeKind::Topic,
        "direct" => ExchangeKind::Direct,
        "fanout" => ExchangeKind::Fanout,
        "headers" => ExchangeKind::Headers,
        other => ExchangeKind::Custom(other.to_string()),
    }
}

async fn timed<T>(what: &str, fut: impl Future<Output = lapin::Result<T>>) -> Result<T, String> {
    match tokio::time::timeout(BROKER_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: timed out after {BROKER_TIMEOUT:?}")),
    }
}

/// The message_id of a notification body, for logs (oslo v2 envelopes looked into).
fn message_id_of(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let v = match v.get("oslo.message").and_then(|m| m.as_str()) {
        Some(inner) => serde_json::from_str(inner).ok()?,
        None => v,
    };
    v.get("message_id").and_then(|m| m.as_str()).map(str::to_string)
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_for_logs() {
        assert_eq!(message_id_of(br#"{"message_id": "m1"}"#).as_deref(), Some("m1"));
        assert_eq!(
            message_id_of(br#"{"oslo.version": "2.0", "oslo.message": "{\"message_id\": \"m2\"}"}"#).as_deref(),
            Some("m2")
        );
        assert_eq!(message_id_of(b"not json"), None);
    }

    #[test]
    fn truncates_on_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h...");
        assert_eq!(truncate("abc", 5), "abc");
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("amqp://guest:secret@host:5672/%2f"), "amqp://guest:***@host:5672/%2f");
    }
}
