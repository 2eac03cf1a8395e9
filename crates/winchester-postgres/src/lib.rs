//! PostgreSQL backend of winchester-rs.
//!
//! Layout:
//! - [`PgStorage`]: the [`Storage`](winchester_storage::Storage) implementation.
//! - `ingest`: saving events and stream memberships (set-based, one transaction per batch).
//! - `streams`: stream queries and compare-and-set state changes.
//! - `events`: reading events.
//! - [`partitions`]: the daily partitions of events and memberships: created
//!   ahead, trimmed by dropping whole days.
//! - `query`: the operations queries (filters, counts, the transition log).
//! - `rows`: decoding rows into storage types.
//! - `errors`: mapping sqlx errors to [`StorageError`](winchester_storage::StorageError).
//! - [`migrate`]: the embedded migrations (`migrations/` at the workspace root) and
//!   the dialect of their bookkeeping.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

/// Runs `$body` (the contents of an async block returning `Result<$t>`, with
/// `$c: &mut PgConnection`) on a [`Conn`]: a pooled connection, or behind a
/// transaction pooler a transaction of its own, committed when the body
/// succeeded.
macro_rules! on_conn {
    ($pool:expr, |$c:ident| -> $t:ty $body:block) => {{
        let mut conn = $crate::Conn::get($pool).await?;
        let $c = conn.conn();
        let r: $crate::Result<$t> = async move $body.await;
        conn.done(r).await
    }};
}

mod errors;
mod events;
mod ingest;
pub mod migrate;
pub mod partitions;
mod query;
mod rows;
mod streams;
mod versions;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use winchester_core::config::Pooler;
use winchester_core::{DefinitionVersion, Event};
use winchester_storage::{
    Action, EventFilter, EventPlan, Finish, FinishOutcome, IngestOutcome, PollingListener, ReadyListener, Result,
    Storage, StoredEvent, Stream, StreamCount, StreamFilter, StreamState, Transition, TriggerVersion,
};

pub use errors::storage_error;
pub use migrate::MIGRATOR;

/// The NOTIFY channel an ingester signals when a stream becomes ready to fire.
pub const READY_CHANNEL: &str = "winchester_ready";

/// The NOTIFY channel database triggers signal on new events (`e`) and logged
/// stream transitions (`t`) (migration 0002).
pub const CHANGES_CHANNEL: &str = "winchester_changes";

/// How often a worker or a tail polls where LISTEN is off (behind a
/// transaction pooler).
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Whether this process reaches PostgreSQL through a transaction pooler,
/// which hands each transaction whichever server connection is free. Set for
/// the whole process by [`PgStorage::connect_with`] with
/// [`Pooler::Transaction`] (a program talks to one database). Then statements
/// are unnamed (another client's statement of the same name may exist on the
/// server connection, or ours may not) and every statement runs in a
/// transaction (see [`Conn`]).
static TRANSACTION_POOLER: AtomicBool = AtomicBool::new(false);

/// Whether statements may be named (prepared once per connection, reused).
pub(crate) fn named_statements() -> bool {
    !TRANSACTION_POOLER.load(Ordering::Relaxed)
}

/// The connection a statement runs on outside an explicit transaction.
/// Behind a transaction pooler it is a transaction of its own: sqlx answers
/// its Parse with a Sync before the Bind and Execute, and only an open
/// transaction keeps the pooler from handing the server connection (and the
/// unnamed statement on it) to another client in between.
pub(crate) enum Conn {
    Direct(sqlx::pool::PoolConnection<sqlx::Postgres>),
    Tx(sqlx::Transaction<'static, sqlx::Postgres>),
}

impl Conn {
    pub(crate) async fn get(pool: &PgPool) -> Result<Conn> {
        Ok(if named_statements() {
            Conn::Direct(pool.acquire().await.map_err(storage_error)?)
        } else {
            Conn::Tx(pool.begin().await.map_err(storage_error)?)
        })
    }

    pub(crate) fn conn(&mut self) -> &mut sqlx::PgConnection {
        match self {
            Conn::Direct(c) => c,
            Conn::Tx(t) => t,
        }
    }

    /// Commits a transaction whose statement succeeded; passes `r` on.
    pub(crate) async fn done<T>(self, r: Result<T>) -> Result<T> {
        match (self, r) {
            (Conn::Tx(t), Ok(v)) => {
                t.commit().await.map_err(storage_error)?;
                Ok(v)
            }
            (_, r) => r,
        }
    }
}

/// Storage on a PostgreSQL connection pool.
#[derive(Debug, Clone)]
pub struct PgStorage {
    pool: PgPool,
    pooler: Pooler,
    /// The event days known to have partitions.
    days: Arc<partitions::Days>,
}

impl PgStorage {
    /// Connects a pool of at most `max_connections` to `url`.
    pub async fn connect(url: &str, max_connections: u32) -> std::result::Result<PgStorage, sqlx::Error> {
        PgStorage::connect_with(url, max_connections, Pooler::None).await
    }

    /// Connects through `pooler`: with [`Pooler::Transaction`], no session
    /// state is used (no statement cache, unnamed statements, no LISTEN).
    pub async fn connect_with(
        url: &str,
        max_connections: u32,
        pooler: Pooler,
    ) -> std::result::Result<PgStorage, sqlx::Error> {
        let mut options: PgConnectOptions = url.parse()?;
        if pooler == Pooler::Transaction {
            options = options.statement_cache_capacity(0);
            TRANSACTION_POOLER.store(true, Ordering::Relaxed);
        }
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await?;
        Ok(PgStorage { pool, pooler, days: Arc::default() })
    }

    /// Uses an existing pool (direct connections).
    pub fn from_pool(pool: PgPool) -> PgStorage {
        PgStorage { pool, pooler: Pooler::None, days: Arc::default() }
    }

    /// The pool (for migrations and tools).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The pooler this storage was connected through.
    pub fn pooler(&self) -> Pooler {
        self.pooler
    }
}

#[async_trait]
impl Storage for PgStorage {
    async fn ingest(&self, batch: &[EventPlan], now: DateTime<Utc>) -> Result<Vec<IngestOutcome>> {
        ingest::ingest(&self.pool, &self.days, batch, now).await
    }

    async fn ready_streams(&self, action: Action, now: DateTime<Utc>, limit: u32) -> Result<Vec<Stream>> {
        streams::ready(&self.pool, action, now, limit).await
    }

    async fn claim(
        &self,
        stream: &Stream,
        action: Action,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Option<Stream>> {
        streams::claim(&self.pool, stream, action, now, lease).await
    }

    async fn stream_events(
        &self,
        stream_id: i64,
        after: Option<(DateTime<Utc>, i64)>,
        limit: u32,
    ) -> Result<(Vec<Event>, Option<(DateTime<Utc>, i64)>)> {
        events::stream_events(&self.pool, stream_id, after, limit).await
    }

    async fn claim_ready_among(
        &self,
        action: Action,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
        triggers: winchester_storage::TriggerScope<'_>,
    ) -> Result<Vec<winchester_storage::Claimed>> {
        streams::claim_ready(&self.pool, action, now, lease_until, limit, triggers).await
    }

    async fn load_events(&self, stream_ids: &[i64]) -> Result<Vec<(i64, Event)>> {
        events::load_events(&self.pool, stream_ids).await
    }

    async fn finish_many(&self, runs: &[(&Stream, Finish<'_>)], now: DateTime<Utc>) -> Result<Vec<FinishOutcome>> {
        streams::finish_many(&self.pool, &self.days, runs, now).await
    }

    async fn set_state(&self, id: i64, serial: i32, to: StreamState) -> Result<Option<Stream>> {
        streams::set_state(&self.pool, id, serial, to).await
    }

    async fn renew_leases(&self, held: &[(i64, i32)], until: DateTime<Utc>) -> Result<Vec<i64>> {
        streams::renew_leases(&self.pool, held, until).await
    }

    async fn list_streams(&self, filter: &StreamFilter) -> Result<Vec<Stream>> {
        query::list_streams(&self.pool, filter).await
    }

    async fn get_stream(&self, id: i64) -> Result<Option<Stream>> {
        streams::get(&self.pool, id).await
    }

    async fn purge_stream(&self, id: i64) -> Result<bool> {
        streams::purge(&self.pool, id).await
    }

    async fn trim_events(&self, cutoff: DateTime<Utc>, limit: u32) -> Result<u64> {
        partitions::trim(&self.pool, &self.days, cutoff, limit).await
    }

    async fn next_due(&self, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>> {
        streams::next_due(&self.pool, now).await
    }

    async fn latest_event_time(&self) -> Result<Option<DateTime<Utc>>> {
        events::latest_time(&self.pool).await
    }

    async fn ready_listener(&self) -> Result<Box<dyn ReadyListener>> {
        self.listener(READY_CHANNEL).await
    }

    async fn count_streams(&self, filter: &StreamFilter) -> Result<u64> {
        query::count_streams(&self.pool, filter).await
    }

    async fn stream_counts(&self) -> Result<Vec<StreamCount>> {
        query::stream_counts(&self.pool).await
    }

    async fn list_events(&self, filter: &EventFilter) -> Result<Vec<StoredEvent>> {
        query::list_events(&self.pool, filter).await
    }

    async fn count_events(&self, filter: &EventFilter) -> Result<u64> {
        query::count_events(&self.pool, filter).await
    }

    async fn get_event(&self, message_id: &str) -> Result<Option<StoredEvent>> {
        query::get_event(&self.pool, message_id).await
    }

    async fn event_streams(&self, event_id: i64) -> Result<Vec<i64>> {
        query::event_streams(&self.pool, event_id).await
    }

    async fn events_since(&self, after: i64, also: &[i64], limit: u32) -> Result<Vec<StoredEvent>> {
        query::events_since(&self.pool, after, also, limit).await
    }

    async fn transitions_since(&self, after: i64, also: &[i64], limit: u32) -> Result<Vec<Transition>> {
        query::transitions_since(&self.pool, after, also, limit).await
    }

    async fn transitions_from(&self, since: DateTime<Utc>, limit: u32) -> Result<Vec<Transition>> {
        query::transitions_from(&self.pool, since, limit).await
    }

    async fn latest_ids(&self) -> Result<(i64, i64)> {
        query::latest_ids(&self.pool).await
    }

    async fn change_listener(&self) -> Result<Box<dyn ReadyListener>> {
        self.listener(CHANGES_CHANNEL).await
    }

    async fn record_versions(&self, versions: &[DefinitionVersion], now: DateTime<Utc>) -> Result<()> {
        versions::record(&self.pool, versions, now).await
    }

    async fn trigger_version(&self, trigger: &str, version: &str) -> Result<Option<TriggerVersion>> {
        versions::get(&self.pool, trigger, version).await
    }

    async fn trigger_versions(&self, trigger: Option<&str>) -> Result<Vec<TriggerVersion>> {
        versions::list(&self.pool, trigger).await
    }
}

impl PgStorage {
    async fn listener(&self, channel: &str) -> Result<Box<dyn ReadyListener>> {
        if self.pooler == Pooler::Transaction {
            // LISTEN needs a session of its own; a transaction pooler has none.
            return Ok(Box::new(PollingListener(POLL_INTERVAL)));
        }
        let mut listener = PgListener::connect_with(&self.pool).await.map_err(storage_error)?;
        listener.listen(channel).await.map_err(storage_error)?;
        Ok(Box::new(PgReadyListener { listener }))
    }
}

struct PgReadyListener {
    listener: PgListener,
}

#[async_trait]
impl ReadyListener for PgReadyListener {
    async fn wait(&mut self, timeout: Duration) -> Result<bool> {
        match tokio::time::timeout(timeout, self.listener.recv()).await {
            Err(_) => Ok(false),
            Ok(Ok(_)) => {
                // Drain notifications already buffered so one burst wakes us once.
                while self.listener.next_buffered().is_some() {}
                Ok(true)
            }
            Ok(Err(e)) => Err(storage_error(e)),
        }
    }
}
