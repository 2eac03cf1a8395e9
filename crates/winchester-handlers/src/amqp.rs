//! `amqp`: publishes notifications to a RabbitMQ exchange.
//!
//! Replaces the original's `NotabeneHandler`. An earlier handler of the
//! pipeline puts notifications (JSON objects) into [`Env::values`] under some
//! keys; this handler collects them in `handle_events` (in `env_keys` order)
//! and publishes them in `commit`, each as a persistent JSON message, with
//! publisher confirms.
//!
//! Connections are shared by the handlers of one [`HandlerContext`] (one
//! worker), one per (host, port, user, password, vhost), in its [`AmqpPool`];
//! a connection that has closed is replaced on next use, and the worker closes
//! them all when it stops. The first time an exchange is used on a connection
//! it is declared (durable), and a durable queue named `queue_name` is
//! declared and bound to it with routing key `queue_name`, so messages are
//! kept until a consumer shows up.

use async_trait::async_trait;
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::uri::{AMQPAuthority, AMQPQueryString, AMQPScheme, AMQPUri, AMQPUserInfo};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use serde::Deserialize;
use serde_yaml::Mapping;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use winchester::pipeline::params::{self, Checked, Raw, Scalar};
use winchester::pipeline::{Env, Handler, HandlerConfigError, HandlerContext, HandlerError, SharedResource};
use winchester_core::Event;

/// How long connecting to the broker may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one broker operation (declare, publish, confirm) may take.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);

/// AMQP delivery mode of persistent messages.
const PERSISTENT: u8 = 2;

/// Why publishing failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AmqpError {
    /// No channel could be opened on the broker, so nothing was published.
    #[error("cannot reach AMQP broker {broker}: {message}")]
    Connect {
        /// `host:port/vhost`.
        broker: String,
        /// What went wrong.
        message: String,
    },
    /// Declaring the exchange or the queue failed, so nothing was published.
    #[error("cannot declare exchange {exchange:?} / queue {queue:?} on {broker}: {message}")]
    Declare {
        /// `host:port/vhost`.
        broker: String,
        /// The exchange.
        exchange: String,
        /// The queue.
        queue: String,
        /// What went wrong.
        message: String,
    },
    /// The pool's runtime could not be started, so nothing was published.
    #[error("cannot start the AMQP runtime: {0}")]
    Runtime(String),
    /// Some notifications were not published (the others were).
    #[error("{} of {total} notifications not published to exchange {exchange:?}: {}", failures.len(), failures.join("; "))]
    Publish {
        /// The exchange.
        exchange: String,
        /// How many notifications there were.
        total: usize,
        /// One line per failed notification.
        failures: Vec<String>,
    },
}

/// The validated params of an `amqp` handler (its `Debug` hides the password).
#[derive(Clone, PartialEq)]
pub struct AmqpConfig {
    /// Exchange to publish to.
    pub exchange: String,
    /// Its type: `topic` (default), `direct`, `fanout`, `headers` or a plugin's type.
    pub exchange_type: String,
    /// Routing key, and name of the durable queue bound to the exchange with it.
    pub queue_name: String,
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// User name.
    pub user: String,
    /// Password.
    pub password: String,
    /// Virtual host.
    pub vhost: String,
    /// Keys of [`Env::values`] holding the notifications to publish, in order.
    pub env_keys: Vec<String>,
    /// Also publish the stream's events (each as its flat JSON form).
    pub publish_events: bool,
}

impl std::fmt::Debug for AmqpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpConfig")
            .field("exchange", &self.exchange)
            .field("exchange_type", &self.exchange_type)
            .field("queue_name", &self.queue_name)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &"<hidden>")
            .field("vhost", &self.vhost)
            .field("env_keys", &self.env_keys)
            .field("publish_events", &self.publish_events)
            .finish()
    }
}

/// The params of an `amqp` handler as written (see [`params::read`]).
#[derive(Deserialize)]
struct AmqpParams {
    exchange: Option<Raw<Scalar>>,
    exchange_type: Option<Raw<Scalar>>,
    queue_name: Option<Raw<Scalar>>,
    host: Option<Raw<Scalar>>,
    port: Option<Raw<Scalar>>,
    user: Option<Raw<Scalar>>,
    password: Option<Raw<Scalar>>,
    vhost: Option<Raw<Scalar>>,
    env_keys: Option<Raw<Vec<Raw<String>>>>,
    publish_events: Option<Raw<bool>>,
    /// The original's kombu transport: accepted for compatibility and ignored.
    library: Option<Raw<String>>,
}

/// A string param (a number is taken as its text), `default` when absent.
fn text(c: &mut Checked, key: &str, raw: Option<Raw<Scalar>>, non_empty: bool, default: &str) -> String {
    let expected = if non_empty { "must be a non-empty string" } else { "must be a string" };
    let ok = |s: &Scalar| is_text(s) && !(non_empty && s.text().is_empty());
    c.get(key, raw, expected, ok).map_or_else(|| default.to_string(), |s| s.text())
}

/// A string or a number (taken as its text), not a boolean.
fn is_text(s: &Scalar) -> bool {
    !matches!(s, Scalar::Bool(_))
}

/// A port: an integer from 1 to 65535, or a string holding one.
fn port_number(s: &Scalar) -> Option<u16> {
    match s {
        Scalar::Number(n) => n.as_u64().and_then(|p| u16::try_from(p).ok()),
        Scalar::Text(t) => t.trim().parse().ok(),
        Scalar::Bool(_) => None,
    }
    .filter(|p| *p > 0)
}

impl AmqpConfig {
    /// Validates `params`; an `Err` names the param at fault.
    pub fn from_params(params: &Mapping) -> Result<AmqpConfig, HandlerConfigError> {
        let p: AmqpParams = params::read(params)?;
        let short = |non_empty: bool| {
            move |s: &Scalar| is_text(s) && s.text().len() <= 255 && !(non_empty && s.text().is_empty())
        };
        let exchange = params::require("exchange", p.exchange, "must be a string of at most 255 bytes", short(false))?;
        let queue = "must be a non-empty string of at most 255 bytes";
        let queue_name = params::require("queue_name", p.queue_name, queue, short(true))?;
        let mut c = Checked::default();
        let exchange_type = text(&mut c, "exchange_type", p.exchange_type, true, "topic");
        let port = c.get("port", p.port, "must be an integer from 1 to 65535", |s| port_number(s).is_some());
        let env_keys = c.string_list("env_keys", p.env_keys, "must be a list of strings").unwrap_or_default();
        let publish_events = c.boolean("publish_events", p.publish_events, false);
        c.string("library", p.library);
        let host = text(&mut c, "host", p.host, true, "localhost");
        let user = text(&mut c, "user", p.user, false, "guest");
        let password = text(&mut c, "password", p.password, false, "guest");
        let vhost = text(&mut c, "vhost", p.vhost, false, "/");
        params::finish(c)?;
        Ok(AmqpConfig {
            exchange: exchange.text(),
            exchange_type,
            queue_name: queue_name.text(),
            host,
            port: port.as_ref().and_then(port_number).unwrap_or(5672),
            user,
            password,
            vhost,
            env_keys,
            publish_events,
        })
    }

    fn exchange_kind(&self) -> ExchangeKind {
        match self.exchange_type.as_str() {
            "topic" => ExchangeKind::Topic,
            "direct" => ExchangeKind::Direct,
            "fanout" => ExchangeKind::Fanout,
            "headers" => ExchangeKind::Headers,
            other => ExchangeKind::Custom(other.to_string()),
        }
    }

    fn broker(&self) -> String {
        format!(
            "{}:{}{}",
            self.host,
            self.port,
            if self.vhost.starts_with('/') { self.vhost.clone() } else { format!("/{}", self.vhost) }
        )
    }

    fn pool_key(&self) -> PoolKey {
        (self.host.clone(), self.port, self.user.clone(), self.password.clone(), self.vhost.clone())
    }

    fn uri(&self) -> AMQPUri {
        AMQPUri {
            scheme: AMQPScheme::AMQP,
            authority: AMQPAuthority {
                userinfo: AMQPUserInfo { username: self.user.clone(), password: self.password.clone() },
                host: self.host.clone(),
                port: self.port,
            },
            vhost: self.vhost.clone(),
            query: AMQPQueryString {
                connection_timeout: Some(CONNECT_TIMEOUT.as_millis() as u64),
                ..AMQPQueryString::default()
            },
        }
    }
}

/// (host, port, user, password, vhost).
type PoolKey = (String, u16, String, String, String);

struct Pooled {
    conn: Arc<Connection>,
    /// (exchange, exchange type, queue) already declared on this connection.
    declared: HashSet<(String, String, String)>,
}

/// How long closing one connection may take when the pool shuts down.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The AMQP connections the `amqp` handlers of one [`HandlerContext`] share,
/// and the runtime that drives them. A connection's I/O is driven by the
/// runtime that opened it, and callers may come from several runtimes (one
/// per test, or short-lived ones in tools), so all AMQP work runs on the
/// pool's own (one thread). Shutting the context down closes the connections
/// and stops the runtime; dropping the pool stops the runtime too (safe in
/// async context).
pub struct AmqpPool {
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
    handle: tokio::runtime::Handle,
    connections: tokio::sync::Mutex<HashMap<PoolKey, Pooled>>,
}

impl std::fmt::Debug for AmqpPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpPool").finish_non_exhaustive()
    }
}

impl AmqpPool {
    /// `context`'s pool, made (with its runtime) on first use.
    pub fn of(context: &HandlerContext) -> Result<Arc<AmqpPool>, AmqpError> {
        context.resource(|| {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("winchester-amqp")
                .enable_all()
                .build()
                .map_err(|e| AmqpError::Runtime(e.to_string()))?;
            let handle = runtime.handle().clone();
            Ok(AmqpPool { runtime: Mutex::new(Some(runtime)), handle, connections: Default::default() })
        })
    }

    /// The pooled connections (open or not).
    pub async fn connections(&self) -> Vec<Arc<Connection>> {
        self.connections.lock().await.values().map(|p| p.conn.clone()).collect()
    }

    /// Stops the runtime without waiting for its tasks (it may be dropped
    /// from inside another runtime, where blocking is not allowed).
    fn stop_runtime(&self) {
        if let Some(rt) = self.runtime.lock().unwrap_or_else(|e| e.into_inner()).take() {
            rt.shutdown_background();
        }
    }
}

#[async_trait]
impl SharedResource for AmqpPool {
    /// Closes every pooled connection (on the pool's runtime), then stops it.
    async fn shutdown(&self) {
        let pooled: Vec<Arc<Connection>> = self.connections.lock().await.drain().map(|(_, p)| p.conn).collect();
        let closing = self.handle.spawn(async move {
            for conn in pooled.iter().filter(|c| c.status().connected()) {
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, conn.close(200, "winchester worker stopping".into())).await;
            }
        });
        let _ = closing.await;
        self.stop_runtime();
    }
}

impl Drop for AmqpPool {
    fn drop(&mut self) {
        self.stop_runtime();
    }
}

async fn timed<T>(what: &str, fut: impl std::future::Future<Output = lapin::Result<T>>) -> Result<T, String> {
    match tokio::time::timeout(OPERATION_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: timed out after {OPERATION_TIMEOUT:?}")),
    }
}

/// A pooled connection for `cfg`, connecting (or reconnecting) as needed.
/// `fresh` forces a new connection.
async fn connection(pool: &AmqpPool, cfg: &AmqpConfig, fresh: bool) -> Result<Arc<Connection>, AmqpError> {
    let key = cfg.pool_key();
    let mut pool = pool.connections.lock().await;
    if let Some(p) = pool.get(&key) {
        if !fresh && p.conn.status().connected() {
            return Ok(p.conn.clone());
        }
        pool.remove(&key);
    }
    let props = ConnectionProperties::default().with_connection_name("winchester-rs".into());
    let conn = match tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect_uri(cfg.uri(), props)).await {
        Ok(Ok(c)) => Arc::new(c),
        Ok(Err(e)) => return Err(AmqpError::Connect { broker: cfg.broker(), message: e.to_string() }),
        Err(_) => {
            return Err(AmqpError::Connect {
                broker: cfg.broker(),
                message: format!("timed out after {CONNECT_TIMEOUT:?}"),
            })
        }
    };
    tracing::info!(broker = %cfg.broker(), user = %cfg.user, "connected to AMQP broker");
    pool.insert(key, Pooled { conn: conn.clone(), declared: HashSet::new() });
    Ok(conn)
}

/// Opens a channel with publisher confirms, reconnecting once if the pooled
/// connection turns out to be dead.
async fn open_channel(pool: &AmqpPool, cfg: &AmqpConfig) -> Result<(Arc<Connection>, Channel), AmqpError> {
    let mut last = String::new();
    for fresh in [false, true] {
        let conn = connection(pool, cfg, fresh).await?;
        let opened = async {
            let ch = timed("channel.open", conn.create_channel()).await?;
            timed("confirm.select", ch.confirm_select(ConfirmSelectOptions::default())).await?;
            Ok::<_, String>(ch)
        }
        .await;
        match opened {
            Ok(ch) => return Ok((conn, ch)),
            Err(e) => {
                tracing::warn!(broker = %cfg.broker(), "AMQP channel failed ({e})");
                last = e;
            }
        }
    }
    Err(AmqpError::Connect { broker: cfg.broker(), message: last })
}

/// Declares the exchange, the queue and the binding, once per connection.
async fn declare(pool: &AmqpPool, cfg: &AmqpConfig, conn: &Arc<Connection>, ch: &Channel) -> Result<(), AmqpError> {
    let key = cfg.pool_key();
    let topo = (cfg.exchange.clone(), cfg.exchange_type.clone(), cfg.queue_name.clone());
    let already = {
        let pool = pool.connections.lock().await;
        pool.get(&key).is_some_and(|p| Arc::ptr_eq(&p.conn, conn) && p.declared.contains(&topo))
    };
    if already {
        return Ok(());
    }
    let err = |message: String| AmqpError::Declare {
        broker: cfg.broker(),
        exchange: cfg.exchange.clone(),
        queue: cfg.queue_name.clone(),
        message,
    };
    // The default exchange ("") cannot be declared or bound to; it routes by queue name.
    if !cfg.exchange.is_empty() {
        let opts = ExchangeDeclareOptions { durable: true, ..Default::default() };
        timed(
            "exchange.declare",
            ch.exchange_declare(cfg.exchange.as_str().into(), cfg.exchange_kind(), opts, FieldTable::default()),
        )
        .await
        .map_err(err)?;
    }
    let opts = QueueDeclareOptions { durable: true, ..Default::default() };
    timed("queue.declare", ch.queue_declare(cfg.queue_name.as_str().into(), opts, FieldTable::default()))
        .await
        .map_err(err)?;
    if !cfg.exchange.is_empty() {
        timed(
            "queue.bind",
            ch.queue_bind(
                cfg.queue_name.as_str().into(),
                cfg.exchange.as_str().into(),
                cfg.queue_name.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            ),
        )
        .await
        .map_err(err)?;
    }
    let mut pool = pool.connections.lock().await;
    if let Some(p) = pool.get_mut(&key) {
        if Arc::ptr_eq(&p.conn, conn) {
            p.declared.insert(topo);
        }
    }
    tracing::info!(exchange = %cfg.exchange, queue = %cfg.queue_name, "declared AMQP exchange and queue");
    Ok(())
}

/// Makes the next commit declare `cfg`'s exchange and queue again.
async fn forget_declared(pool: &AmqpPool, cfg: &AmqpConfig) {
    let topo = (cfg.exchange.clone(), cfg.exchange_type.clone(), cfg.queue_name.clone());
    if let Some(p) = pool.connections.lock().await.get_mut(&cfg.pool_key()) {
        p.declared.remove(&topo);
    }
}

/// Publishes one message and waits for the broker's confirm.
async fn publish_one(cfg: &AmqpConfig, ch: &Channel, n: &serde_json::Value) -> Result<(), String> {
    let payload = serde_json::to_vec(n).map_err(|e| format!("cannot serialize: {e}"))?;
    let mut props =
        BasicProperties::default().with_content_type("application/json".into()).with_delivery_mode(PERSISTENT);
    if let Some(id) = message_id(n) {
        props = props.with_message_id(id.into());
    }
    let opts = BasicPublishOptions { mandatory: true, ..Default::default() };
    let confirm = timed(
        "basic.publish",
        ch.basic_publish(cfg.exchange.as_str().into(), cfg.queue_name.as_str().into(), opts, &payload, props),
    )
    .await?;
    let confirmation = timed("publisher confirm", confirm).await?;
    if !confirmation.is_ack() {
        return Err("the broker nacked the message".into());
    }
    if let Some(ret) = confirmation.take_message() {
        return Err(format!("the message was returned as unroutable ({} {})", ret.reply_code, ret.reply_text));
    }
    Ok(())
}

/// The notification's `message_id`, when it is a string short enough for AMQP.
fn message_id(n: &serde_json::Value) -> Option<String> {
    match n.get("message_id")? {
        serde_json::Value::String(s) if !s.is_empty() && s.len() <= 255 => Some(s.clone()),
        serde_json::Value::Number(x) => Some(x.to_string()),
        _ => None,
    }
}

/// The `amqp` handler: collects notifications, publishes them in `commit`
/// through its context's [`AmqpPool`].
#[derive(Debug)]
pub struct AmqpHandler {
    config: Arc<AmqpConfig>,
    context: HandlerContext,
    pending: Vec<serde_json::Value>,
}

impl AmqpHandler {
    /// Builds a handler from its YAML params.
    pub fn from_params(params: &Mapping, context: &HandlerContext) -> Result<AmqpHandler, HandlerConfigError> {
        Ok(AmqpHandler::new(Arc::new(AmqpConfig::from_params(params)?), context))
    }

    /// Builds a handler from an already validated configuration.
    pub fn new(config: Arc<AmqpConfig>, context: &HandlerContext) -> AmqpHandler {
        AmqpHandler { config, context: context.clone(), pending: Vec::new() }
    }

    /// The notifications that `commit` will publish.
    pub fn pending(&self) -> &[serde_json::Value] {
        &self.pending
    }

    /// Publishes the pending notifications on the pool's runtime (pooled
    /// connections live there, whatever runtime calls us).
    async fn publish(&mut self, env: &Env) -> Result<(), AmqpError> {
        let pool = AmqpPool::of(&self.context)?;
        let handle = pool.handle.clone();
        let (cfg, pending, env) = (self.config.clone(), std::mem::take(&mut self.pending), env.clone());
        let job = async move { (publish_all(&pool, &cfg, &pending, &env).await, pending) };
        let (result, pending) = handle.spawn(job).await.map_err(|e| AmqpError::Connect {
            broker: self.config.broker(),
            message: format!("publisher task failed: {e}"),
        })?;
        self.pending = pending;
        result
    }
}

/// Publishes `pending` as `cfg` says, on a channel of one of `pool`'s connections.
async fn publish_all(
    pool: &AmqpPool,
    cfg: &AmqpConfig,
    pending: &[serde_json::Value],
    env: &Env,
) -> Result<(), AmqpError> {
    let (conn, ch) = open_channel(pool, cfg).await?;
    let declared = declare(pool, cfg, &conn, &ch).await;
    if let Err(e) = declared {
        let _ = ch.close(200, "declare failed".into()).await;
        return Err(e);
    }
    let mut failures = Vec::new();
    for (i, n) in pending.iter().enumerate() {
        if let Err(e) = publish_one(cfg, &ch, n).await {
            let id = message_id(n).unwrap_or_else(|| format!("#{i}"));
            tracing::error!(
                stream_id = env.stream_id,
                exchange = %cfg.exchange,
                routing_key = %cfg.queue_name,
                "failed to publish notification {id}: {e}"
            );
            failures.push(format!("{id}: {e}"));
        }
    }
    if ch.status().connected() {
        let _ = ch.close(200, "done".into()).await;
    }
    tracing::info!(
        stream_id = env.stream_id,
        exchange = %cfg.exchange,
        routing_key = %cfg.queue_name,
        published = pending.len() - failures.len(),
        failed = failures.len(),
        "published notifications"
    );
    if failures.is_empty() {
        Ok(())
    } else {
        // The exchange or queue may have been deleted behind our back: declare again next time.
        forget_declared(pool, cfg).await;
        Err(AmqpError::Publish { exchange: cfg.exchange.clone(), total: pending.len(), failures })
    }
}

#[async_trait]
impl Handler for AmqpHandler {
    async fn handle_events(&mut self, events: Vec<Event>, env: &mut Env) -> Result<Vec<Event>, HandlerError> {
        let mut pending = Vec::new();
        for key in &self.config.env_keys {
            match env.values.get(key) {
                None | Some(serde_json::Value::Null) => {}
                Some(serde_json::Value::Array(items)) => pending.extend(items.iter().cloned()),
                Some(other) => pending.push(other.clone()),
            }
        }
        if self.config.publish_events {
            pending.extend(events.iter().map(Event::to_json));
        }
        self.pending = pending;
        Ok(events)
    }

    async fn commit(&mut self, env: &Env) -> Result<(), HandlerError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.publish(env).await.map_err(|e| {
            tracing::error!(stream_id = env.stream_id, "{e}");
            Box::new(e) as HandlerError
        })
    }

    async fn rollback(&mut self, _env: &Env) -> Result<(), HandlerError> {
        self.pending.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::options::{BasicAckOptions, BasicGetOptions, ExchangeDeleteOptions, QueueDeleteOptions};
    use std::collections::BTreeMap;
    use winchester::storage::Action;
    use winchester_core::{DistTraits, TraitValue};

    fn params(yaml: &str) -> Mapping {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn handler(yaml: &str, ctx: &HandlerContext) -> AmqpHandler {
        AmqpHandler::from_params(&params(yaml), ctx).unwrap()
    }

    fn env() -> Env {
        Env {
            stream_id: 7,
            stream_name: "t".into(),
            action: Action::Fire,
            distinguishing_traits: DistTraits(BTreeMap::new()),
            idempotency_key: "k".into(),
            values: BTreeMap::new(),
        }
    }

    fn event(id: &str) -> Event {
        let mut traits = BTreeMap::new();
        traits.insert("tenant_id".to_string(), TraitValue::String("t1".into()));
        Event {
            message_id: id.into(),
            event_type: "compute.instance.exists".into(),
            timestamp: chrono::DateTime::parse_from_rfc3339("2026-11-23T10:00:00Z").unwrap().into(),
            traits,
        }
    }

    #[test]
    fn defaults() {
        let c =
            AmqpConfig::from_params(&params("exchange: nova\nqueue_name: notifications.info\nlibrary: librabbitmq"))
                .unwrap();
        assert_eq!(
            c,
            AmqpConfig {
                exchange: "nova".into(),
                exchange_type: "topic".into(),
                queue_name: "notifications.info".into(),
                host: "localhost".into(),
                port: 5672,
                user: "guest".into(),
                password: "guest".into(),
                vhost: "/".into(),
                env_keys: vec![],
                publish_events: false,
            }
        );
        let c = AmqpConfig::from_params(&params(
            "exchange: x\nexchange_type: fanout\nqueue_name: q\nhost: rabbit\nport: 5673\nuser: u\npassword: p\nvhost: v\nenv_keys: [a, b]\npublish_events: true",
        ))
        .unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.user.as_str(), c.password.as_str(), c.vhost.as_str()),
            ("rabbit", 5673, "u", "p", "v")
        );
        assert_eq!(c.env_keys, vec!["a", "b"]);
        assert!(c.publish_events);
        assert_eq!(c.exchange_kind(), ExchangeKind::Fanout);
        assert!(!format!("{c:?}").contains("\"p\""), "password must not be printed");
    }

    #[test]
    fn bad_params_rejected() {
        let err = |y: &str| AmqpConfig::from_params(&params(y)).unwrap_err().to_string();
        assert!(err("queue_name: q").contains("missing required param \"exchange\""));
        assert!(err("exchange: x").contains("missing required param \"queue_name\""));
        assert!(err("exchange: x\nqueue_name: ''").contains("\"queue_name\""));
        assert!(err("exchange: x\nqueue_name: q\nport: 70000").contains("\"port\""));
        assert!(err("exchange: x\nqueue_name: q\nenv_keys: a").contains("\"env_keys\""));
        assert!(err("exchange: x\nqueue_name: q\nenv_keys: [[a]]").contains("\"env_keys\""));
        assert!(err("exchange: x\nqueue_name: q\npublish_events: yes please").contains("\"publish_events\""));
        assert!(err("exchange: x\nqueue_name: q\nqueue: q").contains("unknown param \"queue\""));
        assert!(err("exchange: [x]\nqueue_name: q").contains("\"exchange\""));
    }

    #[tokio::test]
    async fn handle_events_collects_in_env_keys_order() {
        let mut h = handler("exchange: x\nqueue_name: q\nenv_keys: [b, missing, a, single]", &HandlerContext::new());
        let mut env = env();
        env.values.insert("a".into(), serde_json::json!([{"n": 3}]));
        env.values.insert("b".into(), serde_json::json!([{"n": 1}, {"n": 2}]));
        env.values.insert("single".into(), serde_json::json!({"n": 4}));
        env.values.insert("other".into(), serde_json::json!([{"n": 99}]));
        let events = vec![event("m1")];
        let out = h.handle_events(events.clone(), &mut env).await.unwrap();
        assert_eq!(out, events);
        let ns: Vec<_> = h.pending().iter().map(|n| n["n"].as_i64().unwrap()).collect();
        assert_eq!(ns, vec![1, 2, 3, 4]);
        // Re-running does not duplicate.
        h.handle_events(events.clone(), &mut env).await.unwrap();
        assert_eq!(h.pending().len(), 4);
        h.rollback(&env).await.unwrap();
        assert!(h.pending().is_empty());
        // Nothing pending: commit does not touch the broker (none is configured on localhost:5672 needed).
        h.commit(&env).await.unwrap();
    }

    #[tokio::test]
    async fn publish_events_adds_events() {
        let mut h = handler("exchange: x\nqueue_name: q\npublish_events: true", &HandlerContext::new());
        let mut env = env();
        h.handle_events(vec![event("m1")], &mut env).await.unwrap();
        assert_eq!(h.pending(), &[event("m1").to_json()]);
    }

    #[tokio::test]
    async fn unreachable_broker_fails_commit() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let ctx = HandlerContext::new();
        let mut h = handler(&format!("exchange: x\nqueue_name: q\nhost: 127.0.0.1\nport: {port}\nenv_keys: [n]"), &ctx);
        let mut env = env();
        env.values.insert("n".into(), serde_json::json!([{"a": 1}]));
        h.handle_events(vec![], &mut env).await.unwrap();
        let err = h.commit(&env).await.unwrap_err().to_string();
        assert!(err.contains("cannot reach AMQP broker") && err.contains(&port.to_string()), "{err}");
        ctx.shutdown().await;
    }

    async fn rabbit_up() -> bool {
        match tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect("127.0.0.1:5672")).await {
            Ok(Ok(_)) => true,
            _ => {
                println!("skipped: RabbitMQ not reachable");
                false
            }
        }
    }

    async fn consumer_channel() -> (Connection, Channel) {
        let conn = Connection::connect("amqp://guest:guest@127.0.0.1:5672/%2f", ConnectionProperties::default())
            .await
            .unwrap();
        let ch = conn.create_channel().await.unwrap();
        (conn, ch)
    }

    async fn drain(ch: &Channel, queue: &str) -> Vec<lapin::message::Delivery> {
        let mut out = Vec::new();
        while let Some(m) = ch.basic_get(queue.into(), BasicGetOptions::default()).await.unwrap() {
            m.delivery.ack(BasicAckOptions::default()).await.unwrap();
            out.push(m.delivery);
        }
        out
    }

    /// A fresh exchange and queue name for one test.
    fn topology() -> (String, String) {
        let id = uuid::Uuid::new_v4();
        (format!("winchester-test-x-{id}"), format!("winchester-test-q-{id}"))
    }

    /// One stream's run on a new handler of `ctx`: collect `events`, then commit.
    async fn fire(yaml: &str, ctx: &HandlerContext, env: &mut Env, events: Vec<Event>) -> Result<(), HandlerError> {
        let mut h = handler(yaml, ctx);
        h.handle_events(events, env).await.unwrap();
        h.commit(env).await
    }

    async fn cleanup(ch: &Channel, exchange: &str, queue: &str) {
        ch.queue_delete(queue.into(), QueueDeleteOptions::default()).await.unwrap();
        ch.exchange_delete(exchange.into(), ExchangeDeleteOptions::default()).await.unwrap();
    }

    #[tokio::test]
    async fn publishes_to_rabbitmq() {
        if !rabbit_up().await {
            return;
        }
        let (exchange, queue) = topology();
        let yaml = format!(
            "exchange: {exchange}\nqueue_name: {queue}\nhost: 127.0.0.1\nenv_keys: [first, second]\nlibrary: librabbitmq"
        );
        let mut env = env();
        env.values.insert("first".into(), serde_json::json!([{"message_id": "n1", "event_type": "a"}, {"x": 2}]));
        env.values.insert("second".into(), serde_json::json!([{"message_id": "n3", "event_type": "c"}]));

        // Two handler instances (two streams): the second reuses the pooled connection.
        let ctx = HandlerContext::new();
        for _ in 0..2 {
            fire(&yaml, &ctx, &mut env, vec![event("m1")]).await.unwrap();
        }
        let pool = ctx.get::<AmqpPool>().unwrap();
        assert_eq!(pool.connections().await.len(), 1, "one connection for both streams");
        ctx.shutdown().await;

        let (conn, ch) = consumer_channel().await;
        let got = drain(&ch, &queue).await;
        cleanup(&ch, &exchange, &queue).await;
        let _ = conn.close(200, "bye".into()).await;

        assert_eq!(got.len(), 6, "three notifications published twice");
        let bodies: Vec<serde_json::Value> = got.iter().map(|d| serde_json::from_slice(&d.data).unwrap()).collect();
        assert_eq!(bodies[0], serde_json::json!({"message_id": "n1", "event_type": "a"}));
        assert_eq!(bodies[1], serde_json::json!({"x": 2}));
        assert_eq!(bodies[2], serde_json::json!({"message_id": "n3", "event_type": "c"}));
        assert_eq!(bodies[3..], bodies[..3]);
        let d = &got[0];
        assert_eq!(d.routing_key.as_str(), queue);
        assert_eq!(d.exchange.as_str(), exchange);
        assert_eq!(d.properties.content_type().as_ref().map(|s| s.as_str()), Some("application/json"));
        assert_eq!(*d.properties.delivery_mode(), Some(2));
        assert_eq!(d.properties.message_id().as_ref().map(|s| s.as_str()), Some("n1"));
        assert_eq!(*got[1].properties.message_id(), None);
    }

    #[tokio::test]
    async fn publishes_events_and_recreates_deleted_topology() {
        if !rabbit_up().await {
            return;
        }
        let (exchange, queue) = topology();
        let yaml = format!(
            "exchange: {exchange}\nexchange_type: direct\nqueue_name: {queue}\nhost: 127.0.0.1\npublish_events: true"
        );
        let mut env = env();
        let ctx = HandlerContext::new();
        fire(&yaml, &ctx, &mut env, vec![event("m1"), event("m2")]).await.unwrap();

        let (conn, ch) = consumer_channel().await;
        let got = drain(&ch, &queue).await;
        let bodies: Vec<serde_json::Value> = got.iter().map(|d| serde_json::from_slice(&d.data).unwrap()).collect();
        assert_eq!(bodies, vec![event("m1").to_json(), event("m2").to_json()]);
        assert_eq!(got[1].properties.message_id().as_ref().map(|s| s.as_str()), Some("m2"));

        // Someone deletes the queue: publishing reports the unroutable messages instead of losing them silently.
        cleanup(&ch, &exchange, &queue).await;
        let err = fire(&yaml, &ctx, &mut env, vec![event("m3")]).await.unwrap_err().to_string();
        assert!(err.contains("1 of 1") && err.contains("m3"), "{err}");
        // The next stream declares them again and gets through.
        fire(&yaml, &ctx, &mut env, vec![event("m4")]).await.unwrap();
        let got = drain(&ch, &queue).await;
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].properties.message_id().as_ref().map(|s| s.as_str()), Some("m4"));
        let _ = ch.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await;
        let _ = ch.exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default()).await;
        let _ = conn.close(200, "bye".into()).await;
        ctx.shutdown().await;
    }

    /// Each context has its own pool; shutting one down closes its
    /// connections and leaves the other's open.
    #[tokio::test]
    async fn shutdown_closes_the_contexts_connections_only() {
        if !rabbit_up().await {
            return;
        }
        let (exchange, queue) = topology();
        let yaml = format!("exchange: {exchange}\nqueue_name: {queue}\nhost: 127.0.0.1\npublish_events: true");
        let (a, b) = (HandlerContext::new(), HandlerContext::new());
        let mut env = env();
        for ctx in [&a, &b] {
            assert!(ctx.get::<AmqpPool>().is_none(), "no pool before the first publish");
            fire(&yaml, ctx, &mut env, vec![event("m1")]).await.unwrap();
        }
        let (pa, pb) = (a.get::<AmqpPool>().unwrap(), b.get::<AmqpPool>().unwrap());
        assert!(!Arc::ptr_eq(&pa, &pb));
        let (ca, cb) = (pa.connections().await, pb.connections().await);
        assert_eq!((ca.len(), cb.len()), (1, 1));
        assert!(!Arc::ptr_eq(&ca[0], &cb[0]), "each context connects on its own");
        assert!(ca[0].status().connected() && cb[0].status().connected());

        a.shutdown().await;
        assert!(ca[0].status().closed(), "shutdown closes the connection: {:?}", ca[0].status());
        assert!(a.get::<AmqpPool>().is_none() && pa.connections().await.is_empty());
        assert!(cb[0].status().connected(), "the other context's connection stays open");
        // The other context still publishes.
        fire(&yaml, &b, &mut env, vec![event("m2")]).await.unwrap();

        let (conn, ch) = consumer_channel().await;
        assert_eq!(drain(&ch, &queue).await.len(), 3);
        cleanup(&ch, &exchange, &queue).await;
        let _ = conn.close(200, "bye".into()).await;
        b.shutdown().await;
        assert!(cb[0].status().closed());
    }
}
